//! The desktop account over the engine (no window): the loopback fallback
//! (`http://127.0.0.1:<port>/callback`) completes a sign-in and ignores callbacks of other
//! sign-ins, the "copy sign-in link" URL comes
//! back through `lucid://`, a link that arrives before the account is ready is queued and then
//! completed, and sign-out revokes the session and forgets the refresh token (credential store:
//! keyring-core's in-memory mock, process-global, hence this separate test binary).

use std::collections::HashMap;

use lucid_desktop::account::{Account, REFRESH_TOKEN_KEY};
use lucid_desktop::secrets::Secrets;
use lucid_testkit::supabase_auth::FakeSupabaseAuth;

const ANON: &str = "desktop-account-anon";
const SECRET: &str = "desktop-account-jwt-secret-0123456789";

async fn location(url: &str) -> String {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap();
    let r = client.get(url).send().await.unwrap();
    assert!(r.status().is_redirection(), "{}", r.status());
    r.headers()["location"].to_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn loopback_copy_link_queued_link_and_sign_out() {
    let fake = FakeSupabaseAuth::start(ANON, SECRET.as_bytes()).await;
    let data = tempfile::tempdir().unwrap();
    let vars: HashMap<String, String> = [
        ("SUPABASE_URL", fake.url()),
        ("SUPABASE_ANON_KEY", ANON),
        ("SUPABASE_JWT_SECRET", SECRET),
        ("SUPABASE_SERVICE_KEY", "service"),
        ("LUCID_DATA_DIR", data.path().to_str().unwrap()),
        ("SANDBOX_MODE", "local"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let engine = lucid_engine::Engine::start(lucid_engine::Config::from_map(&vars).unwrap())
        .await
        .unwrap();
    let secrets = Secrets::open_memory_store();
    let account = Account::new(
        engine.clone(),
        lucid_desktop::account::session_keeper(&engine, secrets.clone()),
    );
    let state = account.state();
    assert_eq!(state.mode, "supabase");
    assert_eq!(state.providers, ["google", "github", "gitlab"]);
    assert!(state.user.is_none());

    // A deep link that arrives while the app is starting is queued, then completed.
    let copied = account.start("github").unwrap();
    assert!(
        copied.contains("redirect_to=lucid%3A%2F%2Fauth%2Fcallback%3Fstate%3D"),
        "{copied}"
    );
    let link = location(&copied).await;
    account.on_link(link).await;
    assert_eq!(fake.count("pkce"), 0, "queued until ready");
    account.become_ready().await;
    assert_eq!(fake.count("pkce"), 1);
    assert_eq!(
        account.state().user.unwrap().email.as_deref(),
        Some("grace@example.test")
    );
    account.sign_out().await.unwrap();
    assert_eq!(fake.live_sessions(), 0);
    assert_eq!(secrets.get(REFRESH_TOKEN_KEY).unwrap(), None);

    // Loopback fallback.
    let url = account.start_loopback("gitlab").await.unwrap();
    let callback = location(&url).await;
    assert!(callback.starts_with("http://127.0.0.1:"), "{callback}");
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    // Something else on this machine knocks first (no state, a wrong state): refused, and the
    // fallback keeps waiting for the real callback.
    let origin = callback.split("/callback").next().unwrap();
    for bogus in [
        format!("{origin}/callback"),
        format!("{origin}/callback?state=not-ours&code=stolen"),
    ] {
        let r = http.get(&bogus).send().await.unwrap();
        assert_eq!(r.status(), 400, "{bogus}");
        assert!(r.text().await.unwrap().contains("not the sign-in"));
    }
    assert_eq!(fake.count("pkce"), 1, "no exchange for a bogus callback");
    assert!(account.state().last_error.is_none());
    let page = http
        .get(&callback)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("You are signed in"), "{page}");
    let user = account
        .state()
        .user
        .expect("signed in through the loopback");
    assert_eq!(user.provider.as_deref(), Some("gitlab"));
    let stored = secrets.get(REFRESH_TOKEN_KEY).unwrap().expect("stored");
    assert_eq!(stored.len(), 12);

    // A replayed callback is refused in words.
    assert!(account.complete(&callback).await.is_none());
    assert!(account.state().last_error.unwrap().contains("already used"));

    account.sign_out().await.unwrap();
    assert_eq!(fake.live_sessions(), 0);
    assert_eq!(secrets.get(REFRESH_TOKEN_KEY).unwrap(), None);
    assert!(account.state().user.is_none());
    engine.shutdown().await;
}
