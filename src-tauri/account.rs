//! Sign-in in the desktop app (Supabase mode): a thin adapter over the engine's PKCE sign-in
//! (`Engine::sign_in()`) and `SessionKeeper`.
//!
//! - The system browser opens the authorize URL; Supabase Auth sends it back to
//!   `lucid://auth/callback?state=…&code=…`. Linux delivers that URL as the argument of a new
//!   process; `tauri-plugin-single-instance` (deep-link feature) hands it to the running app
//!   and `tauri-plugin-deep-link` reports it here. A link that arrives while the app is still
//!   starting (the argument of the first process) is queued and handled once the account is
//!   ready, never lost.
//! - Fallback where the scheme is not registered: a one-shot loopback redirect
//!   (`http://127.0.0.1:<port>/callback`), and the sign-in link itself can be copied.
//! - The refresh token lives in the OS keyring (`SUPABASE_REFRESH_TOKEN`), never in a file;
//!   the app opens signed in after a restart; sign-out revokes the session and forgets it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use lucid_engine::auth::session_keeper::{SessionKeeper, TokenVault, CHECK_INTERVAL};
use lucid_engine::auth::{AuthUser, Provider};
use lucid_engine::Engine;
use serde::Serialize;

use crate::secrets::Secrets;

/// The keyring entry of the refresh token.
pub const REFRESH_TOKEN_KEY: &str = "SUPABASE_REFRESH_TOKEN";
/// Where the browser sends the user back to.
pub const DEEP_LINK_CALLBACK: &str = "lucid://auth/callback";
/// How long the loopback fallback waits for its one callback.
const LOOPBACK_WAIT: Duration = Duration::from_secs(600);

/// The refresh token in the OS keyring.
pub struct KeyringVault(pub Secrets);

impl TokenVault for KeyringVault {
    fn load(&self) -> Result<Option<String>, String> {
        self.0.get(REFRESH_TOKEN_KEY).map_err(|e| e.to_string())
    }

    fn store(&self, refresh_token: Option<&str>) -> Result<(), String> {
        match refresh_token {
            Some(token) => self.0.set(REFRESH_TOKEN_KEY, token),
            None => self.0.delete(REFRESH_TOKEN_KEY),
        }
        .map_err(|e| e.to_string())
    }
}

/// The keeper of the app's Supabase session, its refresh token in `secrets`; `None` in local
/// mode.
pub fn session_keeper(engine: &Engine, secrets: Secrets) -> Option<Arc<SessionKeeper>> {
    let sign_in = engine.sign_in().ok()?;
    Some(SessionKeeper::new(
        sign_in.gotrue().clone(),
        Arc::new(KeyringVault(secrets)),
    ))
}

/// Opens a URL in the user's browser (the opener plugin in the app; managed as state so the
/// sign-in command does not depend on the runtime).
pub struct SystemBrowser(Box<OpenUrl>);

type OpenUrl = dyn Fn(&str) -> Result<(), String> + Send + Sync;

impl SystemBrowser {
    pub fn new(open: impl Fn(&str) -> Result<(), String> + Send + Sync + 'static) -> Self {
        Self(Box::new(open))
    }

    pub fn open(&self, url: &str) -> Result<(), String> {
        (self.0)(url)
    }
}

/// What the UI shows about the account.
#[derive(Debug, Clone, Serialize, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct AccountState {
    /// `local` (no accounts) or `supabase`.
    pub mode: String,
    pub providers: Vec<String>,
    pub user: Option<AuthUser>,
    /// A stored session waits for Supabase Auth to be reachable again (the app started
    /// offline): neither signed in nor signed out yet; the app retries by itself.
    pub reconnecting: bool,
    /// Why the last sign-in attempt failed, in words.
    pub last_error: Option<String>,
}

enum Readiness {
    /// Start-up: links wait here.
    Starting(Vec<String>),
    Ready,
}

/// The app's account (managed Tauri state).
pub struct Account {
    engine: Arc<Engine>,
    keeper: Option<Arc<SessionKeeper>>,
    readiness: Mutex<Readiness>,
    last_error: Mutex<Option<String>>,
}

impl Account {
    /// `keeper`: the shell's (`Shell::session_keeper`), `Some` in Supabase mode.
    pub fn new(engine: Arc<Engine>, keeper: Option<Arc<SessionKeeper>>) -> Arc<Self> {
        Arc::new(Self {
            engine,
            keeper,
            readiness: Mutex::new(Readiness::Starting(Vec::new())),
            last_error: Mutex::new(None),
        })
    }

    pub fn keeper(&self) -> Option<&Arc<SessionKeeper>> {
        self.keeper.as_ref()
    }

    pub fn state(&self) -> AccountState {
        let supabase = self.keeper.is_some();
        AccountState {
            mode: if supabase { "supabase" } else { "local" }.into(),
            providers: if supabase {
                Provider::ALL
                    .iter()
                    .map(|p| p.as_str().to_string())
                    .collect()
            } else {
                Vec::new()
            },
            user: self.keeper.as_ref().and_then(|k| k.current_user()),
            reconnecting: self.keeper.as_ref().is_some_and(|k| k.is_reconnecting()),
            last_error: self.lock_error().clone(),
        }
    }

    /// Restores the stored session, starts the refresher, then handles the links that
    /// arrived meanwhile. Call once after start-up.
    pub async fn become_ready(self: &Arc<Self>) {
        if let Some(keeper) = &self.keeper {
            match keeper.restore().await {
                Ok(Some(user)) => tracing::info!(user = %user.id, "signed in (restored)"),
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "the stored session could not be restored"),
            }
            keeper.spawn_refresher(CHECK_INTERVAL);
        }
        let queued = match std::mem::replace(&mut *self.lock_readiness(), Readiness::Ready) {
            Readiness::Starting(links) => links,
            Readiness::Ready => Vec::new(),
        };
        for link in queued {
            self.complete(&link).await;
        }
    }

    /// A `lucid://` link arrived (deep link, second instance, cold start).
    pub async fn on_link(self: &Arc<Self>, link: String) {
        {
            let mut readiness = self.lock_readiness();
            if let Readiness::Starting(queue) = &mut *readiness {
                tracing::info!("a sign-in link arrived during start-up: queued");
                queue.push(link);
                return;
            }
        }
        self.complete(&link).await;
    }

    /// Completes a sign-in from its callback URL.
    pub async fn complete(&self, link: &str) -> Option<AuthUser> {
        let result = async {
            let keeper = self
                .keeper
                .as_ref()
                .ok_or("Sign-in needs Supabase mode; this app runs in local mode.")?;
            let sign_in = self.engine.sign_in().map_err(|e| e.message)?;
            let session = sign_in
                .complete_url(link)
                .await
                .map_err(|e| e.to_string())?;
            keeper.install(session).await.map_err(|e| e.to_string())
        }
        .await;
        match result {
            Ok(user) => {
                tracing::info!(user = %user.id, provider = ?user.provider, "signed in");
                *self.lock_error() = None;
                Some(user)
            }
            Err(e) => {
                let e = e.to_string();
                tracing::warn!(error = %e, "sign-in link refused");
                *self.lock_error() = Some(e);
                None
            }
        }
    }

    /// Starts a sign-in that comes back through the `lucid://` deep link; returns the URL to
    /// open (or copy).
    pub fn start(&self, provider: &str) -> Result<String, String> {
        let provider = Provider::parse(provider).map_err(|e| e.to_string())?;
        let sign_in = self.engine.sign_in().map_err(|e| e.message)?;
        sign_in
            .start(provider, DEEP_LINK_CALLBACK)
            .map(|s| s.url)
            .map_err(|e| e.to_string())
    }

    /// Fallback without the scheme: a one-shot server on 127.0.0.1 receives the callback.
    /// Returns the URL to open; the sign-in completes in the background.
    pub async fn start_loopback(self: &Arc<Self>, provider: &str) -> Result<String, String> {
        let provider = Provider::parse(provider).map_err(|e| e.to_string())?;
        let sign_in = self.engine.sign_in().map_err(|e| e.message)?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("cannot listen on 127.0.0.1: {e}"))?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        let started = sign_in
            .start(provider, &format!("http://127.0.0.1:{port}/callback"))
            .map_err(|e| e.to_string())?;
        let account = Arc::clone(self);
        let expected = started.state.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(
                LOOPBACK_WAIT,
                serve_one_callback(listener, account, port, expected),
            )
            .await;
        });
        Ok(started.url)
    }

    pub async fn sign_out(&self) -> Result<(), String> {
        match &self.keeper {
            Some(keeper) => keeper.sign_out().await.map_err(|e| e.to_string()),
            None => Ok(()),
        }
    }

    fn lock_readiness(&self) -> std::sync::MutexGuard<'_, Readiness> {
        self.readiness.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_error(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        self.last_error.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The loopback fallback: completes the sign-in from the first `GET /callback?…` that carries
/// this sign-in's `state`, then stops. Anything else that reaches the port (another program,
/// a stale tab) is answered 400 and changes nothing.
async fn serve_one_callback(
    listener: tokio::net::TcpListener,
    account: Arc<Account>,
    port: u16,
    expected_state: String,
) {
    use axum::extract::RawQuery;
    use axum::http::StatusCode;
    use axum::response::Html;
    use axum::routing::get;
    use subtle::ConstantTimeEq;
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let done = Arc::new(Mutex::new(Some(done_tx)));
    let expected_state = Arc::new(expected_state);
    let app = axum::Router::new().route(
        "/callback",
        get(move |RawQuery(query): RawQuery| {
            let account = Arc::clone(&account);
            let done = Arc::clone(&done);
            let expected = Arc::clone(&expected_state);
            async move {
                let link = format!(
                    "http://127.0.0.1:{port}/callback?{}",
                    query.unwrap_or_default()
                );
                let state = lucid_engine::auth::Callback::from_url(&link)
                    .ok()
                    .and_then(|cb| cb.state)
                    .unwrap_or_default();
                let ours = state.len() == expected.len()
                    && bool::from(state.as_bytes().ct_eq(expected.as_bytes()));
                if !ours {
                    return (
                        StatusCode::BAD_REQUEST,
                        Html("<!doctype html><title>Lucid</title><p>This is not the sign-in Lucid is waiting for. Start the sign-in again from the Lucid window.</p>".to_string()),
                    );
                }
                let user = account.complete(&link).await;
                if let Some(tx) = done.lock().unwrap_or_else(|e| e.into_inner()).take() {
                    let _ = tx.send(());
                }
                (
                    StatusCode::OK,
                    Html(match user {
                        Some(_) => "<!doctype html><title>Lucid</title><p>You are signed in to Lucid. You can close this tab.</p>".to_string(),
                        None => "<!doctype html><title>Lucid</title><p>The sign-in did not complete; see the Lucid window.</p>".to_string(),
                    }),
                )
            }
        }),
    );
    let _ = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = done_rx.await;
        })
        .await;
}
