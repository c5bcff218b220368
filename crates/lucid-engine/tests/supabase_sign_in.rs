//! Supabase sign-in against the fake Supabase Auth (lucid-testkit `supabase_auth`): the whole
//! PKCE flow (also through `Engine::sign_in()` with the engine's own token verifier and store,
//! against a local Supabase project fronted by the fake), a wrong
//! verifier, a replayed callback and code, a stale state, refresh rotation, an expired
//! session, refresh after the machine slept (wall clock), restore and sign-out.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lucid_engine::auth::session_keeper::{KeeperError, SessionKeeper, TokenVault};
use lucid_engine::auth::sign_in::{Callback, SignInPolicy};
use lucid_engine::auth::{
    AuthSession, Credentials, GoTrueClient, Provider, SignIn, SignInError, SupabaseTokenVerifier,
};
use lucid_engine::store::NewChat;
use lucid_testkit::jwks::TestKey;
use lucid_testkit::supabase::SupabaseProject;
use lucid_testkit::supabase_auth::{FakeIdentity, FakeSupabaseAuth};

const ANON: &str = "anon-key-for-tests";
const SECRET: &[u8] = b"supabase-jwt-secret-for-tests-0123456789";

fn gotrue(fake: &FakeSupabaseAuth) -> GoTrueClient {
    GoTrueClient::new(fake.url(), ANON, reqwest::Client::new())
}

/// The browser: opens the authorize URL, returns where Supabase Auth sends it back.
async fn follow(url: &str) -> String {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = client.get(url).send().await.unwrap();
    assert!(response.status().is_redirection(), "{}", response.status());
    response.headers()["location"].to_str().unwrap().to_string()
}

async fn signed_in(fake: &FakeSupabaseAuth, sign_in: &SignIn, provider: Provider) -> AuthSession {
    let started = sign_in
        .start(provider, "http://127.0.0.1:1/auth/callback")
        .unwrap();
    let back = follow(&started.url).await;
    sign_in
        .complete_url(&back)
        .await
        .unwrap_or_else(|e| panic!("{e}: {back} ({})", fake.url()))
}

#[derive(Default)]
struct MemoryVault(Mutex<Option<String>>, AtomicI64);

impl TokenVault for MemoryVault {
    fn load(&self) -> Result<Option<String>, String> {
        Ok(self.0.lock().unwrap().clone())
    }
    fn store(&self, token: Option<&str>) -> Result<(), String> {
        self.1.fetch_add(1, Ordering::SeqCst);
        *self.0.lock().unwrap() = token.map(str::to_string);
        Ok(())
    }
}

impl MemoryVault {
    fn token(&self) -> Option<String> {
        self.0.lock().unwrap().clone()
    }
}

/// A wall clock the test moves (a suspended machine wakes up hours later).
fn test_clock() -> (
    Arc<AtomicI64>,
    lucid_engine::auth::session_keeper::WallClock,
) {
    let offset = Arc::new(AtomicI64::new(0));
    let o = offset.clone();
    (
        offset,
        Arc::new(move || chrono::Utc::now().timestamp() + o.load(Ordering::SeqCst)),
    )
}

#[tokio::test]
async fn the_whole_flow_signs_in_and_the_verifier_accepts_the_token() {
    let key = TestKey::es256("project-es256");
    let fake = FakeSupabaseAuth::start_with_key(ANON, SECRET, key).await;
    fake.set_identity(
        "gitlab",
        FakeIdentity::new("77", "lin@example.test", "Lin Example"),
    );
    let sign_in = SignIn::new(gotrue(&fake));
    let started = sign_in
        .start(Provider::Gitlab, "lucid://auth/callback")
        .unwrap();
    let back = follow(&started.url).await;
    assert!(back.starts_with("lucid://auth/callback?state="), "{back}");
    let session = sign_in.complete_url(&back).await.unwrap();
    assert_eq!(session.user.email.as_deref(), Some("lin@example.test"));
    assert_eq!(session.user.name.as_deref(), Some("Lin Example"));
    assert_eq!(session.user.provider.as_deref(), Some("gitlab"));
    assert!(session
        .user
        .avatar_url
        .as_deref()
        .unwrap()
        .starts_with("https://"));
    assert!(session.expires_at > chrono::Utc::now().timestamp() + 3000);
    assert_eq!(sign_in.pending(), 0);

    // The engine's verifier accepts the access token (ES256 from the project's JWKS).
    let verifier = SupabaseTokenVerifier::new(fake.url(), SECRET.to_vec(), reqwest::Client::new());
    let claims = verifier.verify(&session.access_token).await.unwrap();
    assert_eq!(claims.sub, session.user.id);
    // Supabase Auth knows the user behind the token.
    let user = sign_in.gotrue().user(&session.access_token).await.unwrap();
    assert_eq!(user, session.user);
    // The same person signs in again: the same user id.
    let again = signed_in(&fake, &sign_in, Provider::Gitlab).await;
    assert_eq!(again.user.id, session.user.id);
}

#[tokio::test]
async fn engine_sign_in_in_supabase_mode_hs256() {
    // A whole project: its Auth (the fake) and its REST API behind one URL.
    let project = SupabaseProject::start_with_auth().await;
    let fake = project.auth();
    let data = tempfile::tempdir().unwrap();
    let mut vars: std::collections::HashMap<String, String> = project
        .env()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    vars.insert("LUCID_DATA_DIR".into(), data.path().display().to_string());
    vars.insert("SANDBOX_MODE".into(), "local".into());
    let config = lucid_engine::Config::from_map(&vars).unwrap();
    let engine = lucid_engine::Engine::start(config).await.unwrap();
    let session = signed_in(fake, engine.sign_in().unwrap(), Provider::Github).await;
    let user = engine
        .authenticate(Credentials::Bearer(&session.access_token))
        .await
        .unwrap();
    assert_eq!(user.id, session.user.id);
    assert_eq!(user.email.as_deref(), Some("grace@example.test"));
    // The signed-in user stores and reads chats through the project's REST API (the sign-up
    // made the profile the chat rows belong to).
    let chat = engine
        .store()
        .create_chat(
            &user,
            NewChat {
                id: uuid::Uuid::new_v4().to_string(),
                title: Some("after sign-in".into()),
                ..NewChat::default()
            },
        )
        .await
        .unwrap();
    let listed = engine.chats().list(&user, None, None).await.unwrap();
    assert_eq!(
        listed.iter().map(|c| c.id.clone()).collect::<Vec<_>>(),
        vec![chat.id]
    );
    engine.shutdown().await;

    // Local mode has no sign-in.
    let local_dir = tempfile::tempdir().unwrap();
    let local = lucid_engine::Config::from_map(
        &[
            ("LUCID_DATA_DIR", local_dir.path().to_str().unwrap()),
            ("SANDBOX_MODE", "local"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
    )
    .unwrap();
    let engine = lucid_engine::Engine::start(local).await.unwrap();
    let err = engine.sign_in().unwrap_err();
    assert!(err.message.contains("Supabase mode"), "{err}");
    engine.shutdown().await;
}

#[tokio::test]
async fn a_wrong_verifier_is_refused() {
    let fake = FakeSupabaseAuth::start(ANON, SECRET).await;
    let sign_in = SignIn::new(gotrue(&fake));
    // Two sign-ins; A's code arrives with B's state, so B's verifier is presented for A's
    // challenge.
    let a = sign_in
        .start(Provider::Google, "http://127.0.0.1:1/cb")
        .unwrap();
    let b = sign_in
        .start(Provider::Google, "http://127.0.0.1:1/cb")
        .unwrap();
    let back_a = Callback::from_url(&follow(&a.url).await).unwrap();
    let crossed = Callback {
        state: Some(b.state.clone()),
        code: back_a.code.clone(),
        ..Default::default()
    };
    let err = sign_in.complete(&crossed, None).await.unwrap_err();
    match &err {
        SignInError::ExchangeRefused(e) => assert_eq!(e.code(), Some("bad_code_verifier")),
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("Start the sign-in again"), "{err}");
    // Directly: a made-up verifier.
    let err = sign_in
        .gotrue()
        .exchange_code(back_a.code.as_deref().unwrap(), &"x".repeat(50))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("bad_code_verifier"));
    // A's own flow still completes (GoTrue keeps the flow state after a mismatch).
    assert!(sign_in.complete(&back_a, None).await.is_ok());
}

#[tokio::test]
async fn a_replayed_callback_and_code_are_refused() {
    let fake = FakeSupabaseAuth::start(ANON, SECRET).await;
    let sign_in = SignIn::new(gotrue(&fake));
    let started = sign_in
        .start(Provider::Github, "http://127.0.0.1:1/cb")
        .unwrap();
    let back = follow(&started.url).await;
    let session = sign_in.complete_url(&back).await.unwrap();
    assert!(!session.access_token.is_empty());
    let err = sign_in.complete_url(&back).await.unwrap_err();
    assert_eq!(err, SignInError::Replayed);
    assert!(err.to_string().contains("already used"), "{err}");
    // The code itself is single-use at Supabase Auth too.
    let code = Callback::from_url(&back).unwrap().code.unwrap();
    let verifier_like = "v".repeat(64);
    let err = sign_in
        .gotrue()
        .exchange_code(&code, &verifier_like)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("flow_state_not_found"));
    assert_eq!(
        fake.count("pkce"),
        2,
        "the replayed callback never reached Supabase"
    );
}

#[tokio::test]
async fn a_stale_state_is_refused() {
    let fake = FakeSupabaseAuth::start(ANON, SECRET).await;
    let sign_in = SignIn::with_policy(
        gotrue(&fake),
        SignInPolicy {
            ttl: Duration::from_millis(200),
            max_pending: 8,
        },
    );
    let started = sign_in
        .start(Provider::Google, "http://127.0.0.1:1/cb")
        .unwrap();
    let back = follow(&started.url).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let err = sign_in.complete_url(&back).await.unwrap_err();
    assert_eq!(err, SignInError::Expired(1));
    assert!(err.to_string().contains("expired"), "{err}");
    assert_eq!(fake.count("pkce"), 0);
    // A state that was never started here.
    let forged = back.replace(&started.state, "forged-state");
    assert_eq!(
        sign_in.complete_url(&forged).await.unwrap_err(),
        SignInError::UnknownState
    );
}

#[tokio::test]
async fn refresh_rotates_and_a_spent_token_is_refused() {
    let fake = FakeSupabaseAuth::start(ANON, SECRET).await;
    let sign_in = SignIn::new(gotrue(&fake));
    let first = signed_in(&fake, &sign_in, Provider::Github).await;
    let second = sign_in.refresh(&first.refresh_token).await.unwrap();
    assert_ne!(second.refresh_token, first.refresh_token);
    assert_eq!(second.user.id, first.user.id);
    let third = sign_in.refresh(&second.refresh_token).await.unwrap();
    assert_ne!(third.refresh_token, second.refresh_token);
    let err = sign_in.refresh(&first.refresh_token).await.unwrap_err();
    assert_eq!(err.code(), Some("refresh_token_already_used"));
    assert!(err.ends_session());
}

#[tokio::test]
async fn the_keeper_refreshes_by_the_wall_clock_after_a_sleep() {
    let fake = FakeSupabaseAuth::start(ANON, SECRET).await;
    let sign_in = SignIn::new(gotrue(&fake));
    let vault = Arc::new(MemoryVault::default());
    let (offset, clock) = test_clock();
    let keeper =
        SessionKeeper::with_clock(gotrue(&fake), vault.clone(), clock, Duration::from_secs(60));
    let session = signed_in(&fake, &sign_in, Provider::Google).await;
    let first_refresh = session.refresh_token.clone();
    keeper.install(session.clone()).await.unwrap();
    assert_eq!(vault.token().as_deref(), Some(first_refresh.as_str()));
    assert_eq!(
        keeper.current_user().unwrap().email.as_deref(),
        Some("ada@example.test")
    );

    // Not due yet: the same token, no refresh.
    assert_eq!(
        keeper.access_token().await.unwrap().as_deref(),
        Some(session.access_token.as_str())
    );
    assert_eq!(fake.count("refresh_token"), 0);

    // The machine slept for two hours; the background refresher's next look at the wall
    // clock refreshes.
    let refresher = keeper.spawn_refresher(Duration::from_millis(50));
    offset.store(2 * 3600, Ordering::SeqCst);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while fake.count("refresh_token") == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no refresh after the sleep"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    refresher.abort();
    let rotated = vault.token().unwrap();
    assert_ne!(
        rotated, first_refresh,
        "the rotated refresh token is stored"
    );
    // The old token is spent.
    assert_eq!(
        sign_in.refresh(&first_refresh).await.unwrap_err().code(),
        Some("refresh_token_already_used")
    );
}

/// A keyring that takes the first token, then refuses every write (a locked Secret Service).
#[derive(Default)]
struct LockedAfterFirstWrite(Mutex<Option<String>>, AtomicI64);

impl TokenVault for LockedAfterFirstWrite {
    fn load(&self) -> Result<Option<String>, String> {
        Ok(self.0.lock().unwrap().clone())
    }
    fn store(&self, token: Option<&str>) -> Result<(), String> {
        if self.1.fetch_add(1, Ordering::SeqCst) > 0 {
            return Err("the keyring is locked".into());
        }
        *self.0.lock().unwrap() = token.map(str::to_string);
        Ok(())
    }
}

#[tokio::test]
async fn a_keyring_that_refuses_the_rotated_token_does_not_end_the_session() {
    let fake = FakeSupabaseAuth::start(ANON, SECRET).await;
    let sign_in = SignIn::new(gotrue(&fake));
    let vault = Arc::new(LockedAfterFirstWrite::default());
    let (offset, clock) = test_clock();
    let keeper =
        SessionKeeper::with_clock(gotrue(&fake), vault.clone(), clock, Duration::from_secs(60));
    let session = signed_in(&fake, &sign_in, Provider::Google).await;
    keeper.install(session.clone()).await.unwrap();
    // Two refreshes in a row, the keyring refusing both: the second uses the rotated token
    // kept in memory (a spent one would be refused and revoke the session).
    offset.store(2 * 3600, Ordering::SeqCst);
    assert!(keeper.access_token().await.unwrap().is_some());
    assert_eq!(fake.count("refresh_token"), 1);
    offset.store(4 * 3600, Ordering::SeqCst);
    assert!(keeper.access_token().await.unwrap().is_some());
    assert_eq!(fake.count("refresh_token"), 2);
    // The token the keyring still holds is the spent first one.
    let kept = vault.0.lock().unwrap().clone().unwrap();
    assert_eq!(
        sign_in.refresh(&kept).await.unwrap_err().code(),
        Some("refresh_token_already_used")
    );
    assert!(keeper.current_user().is_some(), "still signed in");
}

#[tokio::test]
async fn an_expired_session_ends_and_is_forgotten() {
    let fake = FakeSupabaseAuth::start(ANON, SECRET).await;
    fake.set_session_timebox(Some(Duration::from_millis(300)));
    let sign_in = SignIn::new(gotrue(&fake));
    let vault = Arc::new(MemoryVault::default());
    let (offset, clock) = test_clock();
    let keeper =
        SessionKeeper::with_clock(gotrue(&fake), vault.clone(), clock, Duration::from_secs(60));
    keeper
        .install(signed_in(&fake, &sign_in, Provider::Github).await)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    offset.store(3 * 3600, Ordering::SeqCst);
    let err = keeper.access_token().await.unwrap_err();
    assert!(
        matches!(err, KeeperError::SessionEnded(ref m) if m.contains("Session Expired")),
        "{err}"
    );
    assert!(err.to_string().contains("sign in again"), "{err}");
    assert_eq!(vault.token(), None, "the dead refresh token is forgotten");
    assert_eq!(keeper.current_user(), None);
    assert_eq!(keeper.access_token().await.unwrap(), None);
}

#[tokio::test]
async fn restore_after_restart_then_sign_out_revokes_and_forgets() {
    let fake = FakeSupabaseAuth::start(ANON, SECRET).await;
    let sign_in = SignIn::new(gotrue(&fake));
    let vault = Arc::new(MemoryVault::default());
    {
        let keeper = SessionKeeper::new(gotrue(&fake), vault.clone());
        keeper
            .install(signed_in(&fake, &sign_in, Provider::Gitlab).await)
            .await
            .unwrap();
    }
    // "Restart": a new keeper over the same vault.
    let keeper = SessionKeeper::new(gotrue(&fake), vault.clone());
    let mut changes = keeper.subscribe();
    let user = keeper.restore().await.unwrap().expect("signed in again");
    assert_eq!(user.email.as_deref(), Some("alan@example.test"));
    assert!(changes.has_changed().unwrap());
    assert_eq!(changes.borrow_and_update().clone(), Some(user.clone()));
    assert_eq!(keeper.user().await.unwrap(), Some(user));
    let stored = vault.token().unwrap();
    assert_eq!(fake.live_sessions(), 1);

    keeper.sign_out().await.unwrap();
    assert_eq!(
        fake.live_sessions(),
        0,
        "the session is revoked at Supabase Auth"
    );
    assert_eq!(vault.token(), None);
    assert_eq!(keeper.current_user(), None);
    assert_eq!(
        sign_in.refresh(&stored).await.unwrap_err().code(),
        Some("refresh_token_not_found")
    );
    // Nothing to restore now.
    assert_eq!(
        SessionKeeper::new(gotrue(&fake), vault.clone())
            .restore()
            .await
            .unwrap(),
        None
    );

    // A stored token the project no longer accepts is forgotten at start-up.
    vault.store(Some("revoked-elsewhere")).unwrap();
    let keeper = SessionKeeper::new(gotrue(&fake), vault.clone());
    assert_eq!(keeper.restore().await.unwrap(), None);
    assert_eq!(vault.token(), None);
}

#[tokio::test]
async fn offline_the_keeper_keeps_using_a_valid_token_and_renews_once_back() {
    let fake = FakeSupabaseAuth::start(ANON, SECRET).await;
    let sign_in = SignIn::new(gotrue(&fake));
    let vault = Arc::new(MemoryVault::default());
    let (offset, clock) = test_clock();
    let keeper =
        SessionKeeper::with_clock(gotrue(&fake), vault.clone(), clock, Duration::from_secs(60));
    let session = signed_in(&fake, &sign_in, Provider::Google).await;
    keeper.install(session.clone()).await.unwrap();

    // 45 s before expiry the refresh is due, but Supabase Auth is down: the token, still
    // valid (also for the store, which wants 30 s left), is used; the next request within
    // the back-off does not knock again.
    fake.set_unavailable(true);
    let to_expiry = session.expires_at - chrono::Utc::now().timestamp();
    offset.store(to_expiry - 45, Ordering::SeqCst);
    assert_eq!(
        keeper.access_token().await.unwrap().as_deref(),
        Some(session.access_token.as_str())
    );
    assert_eq!(
        keeper.access_token().await.unwrap().as_deref(),
        Some(session.access_token.as_str())
    );
    assert_eq!(fake.count("unavailable"), 1, "one attempt, answered 503");
    assert!(keeper.current_user().is_some());

    // Past expiry, still down: no token to hand out, a clear "unavailable", still signed in.
    offset.store(to_expiry + 120, Ordering::SeqCst);
    let err = keeper.access_token().await.unwrap_err();
    assert!(matches!(err, KeeperError::Unavailable(_)), "{err}");
    assert!(err.to_string().contains("keeps trying"), "{err}");
    assert!(
        keeper.current_user().is_some(),
        "an outage does not sign out"
    );
    assert_eq!(
        vault.token().as_deref(),
        Some(session.refresh_token.as_str())
    );

    // Back online: the next look renews with the stored refresh token.
    fake.set_unavailable(false);
    offset.store(to_expiry + 120 + 11, Ordering::SeqCst);
    assert!(keeper.access_token().await.unwrap().is_some());
    assert_eq!(fake.count("refresh_token"), 1);
    assert_ne!(vault.token().unwrap(), session.refresh_token);
}

#[tokio::test]
async fn a_restore_that_found_supabase_down_is_retried_by_the_keeper() {
    let fake = FakeSupabaseAuth::start(ANON, SECRET).await;
    let sign_in = SignIn::new(gotrue(&fake));
    let vault = Arc::new(MemoryVault::default());
    vault
        .store(Some(
            &signed_in(&fake, &sign_in, Provider::Github)
                .await
                .refresh_token,
        ))
        .unwrap();

    // The app starts while Supabase Auth is down.
    fake.set_unavailable(true);
    let (offset, clock) = test_clock();
    let keeper =
        SessionKeeper::with_clock(gotrue(&fake), vault.clone(), clock, Duration::from_secs(60));
    let err = keeper.restore().await.unwrap_err();
    assert!(matches!(err, KeeperError::Unavailable(_)), "{err}");
    assert!(keeper.is_reconnecting());
    assert_eq!(keeper.current_user(), None);
    assert!(vault.token().is_some(), "the stored session is kept");
    // Commands meanwhile hear "unavailable", not "signed out".
    assert!(matches!(
        keeper.access_token().await.unwrap_err(),
        KeeperError::Unavailable(_)
    ));
    keeper.tick().await.unwrap();
    assert!(keeper.is_reconnecting());
    assert_eq!(
        fake.count("unavailable"),
        1,
        "within the back-off nothing is tried"
    );

    // Supabase Auth is back, and the wall clock was set back an hour meanwhile (an offline
    // machine gets the time right): the back-off does not stretch, the next tick restores.
    fake.set_unavailable(false);
    offset.store(-3600, Ordering::SeqCst);
    let mut changes = keeper.subscribe();
    keeper.tick().await.unwrap();
    assert!(!keeper.is_reconnecting());
    let user = keeper.current_user().expect("signed in again");
    assert_eq!(user.email.as_deref(), Some("grace@example.test"));
    assert_eq!(changes.borrow_and_update().clone(), Some(user));
    assert!(keeper.access_token().await.unwrap().is_some());
}

#[tokio::test]
async fn a_restore_refused_for_another_reason_than_an_outage_offers_sign_in() {
    let fake = FakeSupabaseAuth::start(ANON, SECRET).await;
    let sign_in = SignIn::new(gotrue(&fake));
    let vault = Arc::new(MemoryVault::default());
    let token = signed_in(&fake, &sign_in, Provider::Google)
        .await
        .refresh_token;
    vault.store(Some(&token)).unwrap();
    // The app's anon key no longer matches the project.
    let keeper = SessionKeeper::new(
        GoTrueClient::new(fake.url(), "an-old-anon-key", reqwest::Client::new()),
        vault.clone(),
    );
    let err = keeper.restore().await.unwrap_err();
    assert!(matches!(err, KeeperError::Auth(_)), "{err}");
    assert!(err.to_string().contains("Invalid API key"), "{err}");
    assert!(!keeper.is_reconnecting(), "not an outage to wait out");
    assert_eq!(keeper.access_token().await.unwrap(), None, "signed out");
    assert_eq!(
        vault.token(),
        Some(token),
        "kept for a start with the right key"
    );
}

#[tokio::test]
async fn signing_in_again_revokes_the_session_it_replaces() {
    let fake = FakeSupabaseAuth::start(ANON, SECRET).await;
    let sign_in = SignIn::new(gotrue(&fake));
    let vault = Arc::new(MemoryVault::default());
    let (offset, clock) = test_clock();
    let keeper =
        SessionKeeper::with_clock(gotrue(&fake), vault.clone(), clock, Duration::from_secs(60));
    let first = signed_in(&fake, &sign_in, Provider::Google).await;
    keeper.install(first.clone()).await.unwrap();
    let first_users_tokens = keeper.token_source_for(&first.user.id);
    assert_eq!(
        first_users_tokens.current().as_deref(),
        Some(first.access_token.as_str())
    );
    // Another account signs in on the same app.
    let second = signed_in(&fake, &sign_in, Provider::Gitlab).await;
    assert_eq!(fake.live_sessions(), 2);
    let user = keeper.install(second.clone()).await.unwrap();
    assert_eq!(user.id, second.user.id);
    assert_eq!(keeper.current_user().unwrap().id, second.user.id);
    assert_eq!(fake.live_sessions(), 1, "the replaced session is revoked");
    // Work of the first user never gets the second user's token.
    assert_eq!(first_users_tokens.current(), None);
    assert_eq!(
        keeper
            .token_source_for(&second.user.id)
            .current()
            .as_deref(),
        Some(second.access_token.as_str())
    );

    assert_eq!(
        sign_in
            .refresh(&first.refresh_token)
            .await
            .unwrap_err()
            .code(),
        Some("refresh_token_not_found")
    );
    assert_eq!(
        vault.token().as_deref(),
        Some(second.refresh_token.as_str())
    );

    // A replaced session whose access token expired meanwhile (the app was offline for
    // hours) is refreshed once to be revoked.
    let third = signed_in(&fake, &sign_in, Provider::Github).await;
    offset.store(5 * 3600, Ordering::SeqCst);
    let refreshes = fake.count("refresh_token");
    keeper.install(third).await.unwrap();
    assert_eq!(fake.count("refresh_token"), refreshes + 1);
    assert_eq!(fake.live_sessions(), 1, "only the new session is left");
    keeper.sign_out().await.unwrap();
    assert_eq!(keeper.token_source_for(&second.user.id).current(), None);
}
