//! Keeps one signed-in Supabase session alive for an app (the desktop shell): refreshes the
//! access token before it expires, by the **wall clock** — a timer alone would sleep through
//! a suspended machine (monotonic clocks stop during suspend) and wake with an expired token —
//! stores the single-use refresh token in a [`TokenVault`] (the OS keyring) after every
//! rotation, restores the session at start-up, and signs out by revoking the session at
//! Supabase Auth and forgetting the token.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use super::gotrue::{AuthSession, AuthUser, GoTrueClient, GoTrueError, LogoutScope};

/// Where the refresh token lives between runs (the OS keyring in the desktop app).
pub trait TokenVault: Send + Sync {
    fn load(&self) -> Result<Option<String>, String>;
    /// Stores the token, or deletes it (`None`).
    fn store(&self, refresh_token: Option<&str>) -> Result<(), String>;
}

/// The wall clock, in Unix seconds (replaceable in tests to simulate a sleeping machine).
pub type WallClock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// Refresh this long before the access token expires.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(60);
/// How often the background refresher looks at the wall clock.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(15);

/// What went wrong keeping the session.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum KeeperError {
    #[error("Your session has ended ({0}); sign in again.")]
    SessionEnded(String),
    #[error("{0}")]
    Auth(GoTrueError),
    #[error("The refresh token could not be stored: {0}")]
    Vault(String),
}

/// See the module docs.
pub struct SessionKeeper {
    gotrue: GoTrueClient,
    vault: Arc<dyn TokenVault>,
    clock: WallClock,
    margin: Duration,
    current: tokio::sync::Mutex<Option<AuthSession>>,
    user: Mutex<Option<AuthUser>>,
    changes: watch::Sender<Option<AuthUser>>,
}

impl SessionKeeper {
    pub fn new(gotrue: GoTrueClient, vault: Arc<dyn TokenVault>) -> Arc<Self> {
        Self::with_clock(
            gotrue,
            vault,
            Arc::new(|| chrono::Utc::now().timestamp()),
            REFRESH_MARGIN,
        )
    }

    pub fn with_clock(
        gotrue: GoTrueClient,
        vault: Arc<dyn TokenVault>,
        clock: WallClock,
        margin: Duration,
    ) -> Arc<Self> {
        Arc::new(Self {
            gotrue,
            vault,
            clock,
            margin,
            current: tokio::sync::Mutex::new(None),
            user: Mutex::new(None),
            changes: watch::channel(None).0,
        })
    }

    /// The signed-in user, if any.
    pub fn current_user(&self) -> Option<AuthUser> {
        self.user.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Signed-in / signed-out changes (the user, or `None`).
    pub fn subscribe(&self) -> watch::Receiver<Option<AuthUser>> {
        self.changes.subscribe()
    }

    /// Starts keeping a session that was just signed in; stores its refresh token.
    pub async fn install(&self, session: AuthSession) -> Result<AuthUser, KeeperError> {
        let mut current = self.current.lock().await;
        self.vault
            .store(Some(&session.refresh_token))
            .map_err(KeeperError::Vault)?;
        let user = session.user.clone();
        *current = Some(session);
        self.set_user(Some(user.clone()));
        Ok(user)
    }

    /// At start-up: signs in again with the stored refresh token, if there is one. A token
    /// Supabase Auth no longer accepts is forgotten (`Ok(None)`); an unreachable Supabase
    /// keeps it for the next try (`Err`).
    pub async fn restore(&self) -> Result<Option<AuthUser>, KeeperError> {
        let Some(token) = self.vault.load().map_err(KeeperError::Vault)? else {
            return Ok(None);
        };
        let mut current = self.current.lock().await;
        match self.gotrue.refresh(&token).await {
            Ok(session) => {
                self.vault
                    .store(Some(&session.refresh_token))
                    .map_err(KeeperError::Vault)?;
                let user = session.user.clone();
                *current = Some(session);
                self.set_user(Some(user.clone()));
                Ok(Some(user))
            }
            Err(e) if e.ends_session() => {
                tracing::info!(code = ?e.code(), "the stored session has ended");
                self.forget(&mut current);
                Ok(None)
            }
            Err(e) => Err(KeeperError::Auth(e)),
        }
    }

    /// A valid access token: refreshed first when it expires within the margin (by the wall
    /// clock). `Ok(None)` when signed out.
    pub async fn access_token(&self) -> Result<Option<String>, KeeperError> {
        let mut current = self.current.lock().await;
        self.refresh_if_due(&mut current).await?;
        Ok(current.as_ref().map(|s| s.access_token.clone()))
    }

    /// Refreshes when due; the background refresher calls this every [`CHECK_INTERVAL`].
    pub async fn tick(&self) -> Result<(), KeeperError> {
        let mut current = self.current.lock().await;
        self.refresh_if_due(&mut current).await
    }

    /// Asks Supabase Auth who the current token belongs to (a revoked session is noticed).
    pub async fn user(&self) -> Result<Option<AuthUser>, KeeperError> {
        let Some(token) = self.access_token().await? else {
            return Ok(None);
        };
        match self.gotrue.user(&token).await {
            Ok(user) => {
                self.set_user(Some(user.clone()));
                Ok(Some(user))
            }
            Err(e) if e.ends_session() => {
                let mut current = self.current.lock().await;
                self.forget(&mut current);
                Err(KeeperError::SessionEnded(e.to_string()))
            }
            Err(e) => Err(KeeperError::Auth(e)),
        }
    }

    /// Signs out: revokes this session at Supabase Auth (best effort: the token is forgotten
    /// here even when Supabase cannot be reached) and deletes the stored refresh token.
    pub async fn sign_out(&self) -> Result<(), KeeperError> {
        let mut current = self.current.lock().await;
        let revoked = match current.as_ref() {
            Some(session) => self
                .gotrue
                .logout(&session.access_token, LogoutScope::Local)
                .await
                .or_else(|e| if e.ends_session() { Ok(()) } else { Err(e) }),
            None => Ok(()),
        };
        let forgotten = self.vault.store(None).map_err(KeeperError::Vault);
        *current = None;
        self.set_user(None);
        revoked.map_err(KeeperError::Auth)?;
        forgotten
    }

    /// Runs [`SessionKeeper::tick`] every `interval` until the keeper is dropped.
    pub fn spawn_refresher(self: &Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                let Some(keeper) = weak.upgrade() else { break };
                if let Err(e) = keeper.tick().await {
                    tracing::warn!(error = %e, "session refresh failed");
                }
            }
        })
    }

    async fn refresh_if_due(&self, current: &mut Option<AuthSession>) -> Result<(), KeeperError> {
        let Some(session) = current.as_ref() else {
            return Ok(());
        };
        let now = (self.clock)();
        if now + (self.margin.as_secs() as i64) < session.expires_at {
            return Ok(());
        }
        match self.gotrue.refresh(&session.refresh_token).await {
            Ok(fresh) => {
                // The old refresh token is spent now: keep the new session in memory even if
                // the keyring refuses it, or the next refresh would reuse a spent token and
                // Supabase Auth would revoke the whole session.
                let stored = self.vault.store(Some(&fresh.refresh_token));
                let user = fresh.user.clone();
                *current = Some(fresh);
                self.set_user(Some(user));
                if let Err(e) = stored {
                    tracing::warn!(error = %e, "the refreshed session could not be kept in the keyring; it stays signed in until the app quits");
                }
                Ok(())
            }
            Err(e) if e.ends_session() => {
                let message = e.to_string();
                self.forget(current);
                Err(KeeperError::SessionEnded(message))
            }
            Err(e) => Err(KeeperError::Auth(e)),
        }
    }

    fn forget(&self, current: &mut Option<AuthSession>) {
        *current = None;
        if let Err(e) = self.vault.store(None) {
            tracing::warn!(error = %e, "could not delete the stored refresh token");
        }
        self.set_user(None);
    }

    fn set_user(&self, user: Option<AuthUser>) {
        *self.user.lock().unwrap_or_else(|e| e.into_inner()) = user.clone();
        self.changes.send_replace(user);
    }
}
