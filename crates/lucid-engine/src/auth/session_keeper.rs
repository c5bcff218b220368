//! Keeps one signed-in Supabase session alive for an app (the desktop shell): refreshes the
//! access token before it expires, by the **wall clock** — a timer alone would sleep through
//! a suspended machine (monotonic clocks stop during suspend) and wake with an expired token —
//! stores the single-use refresh token in a [`TokenVault`] (the OS keyring) after every
//! rotation, restores the session at start-up, and signs out by revoking the session at
//! Supabase Auth and forgetting the token.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use super::gotrue::{AuthSession, AuthUser, GoTrueClient, GoTrueError, LogoutScope};
use super::TokenSource;

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
/// After Supabase Auth could not be reached, no new attempt before this much time has passed
/// (commands meanwhile use the access token they have while it is valid).
pub const RETRY_AFTER: Duration = Duration::from_secs(10);
/// A cached access token this close to its expiry is no longer handed out (the store would
/// not use it either).
const STILL_VALID_MARGIN: i64 = super::TOKEN_EXPIRY_MARGIN_SECS;

/// What went wrong keeping the session.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum KeeperError {
    #[error("Your session has ended ({0}); sign in again.")]
    SessionEnded(String),
    /// Supabase Auth could not be reached (offline, an outage) and there is no valid access
    /// token to go on with; the keeper tries again by itself.
    #[error("Supabase Auth cannot be reached to renew your session ({0}). Lucid keeps trying; check your connection.")]
    Unavailable(String),
    #[error("{0}")]
    Auth(GoTrueError),
    #[error("The refresh token could not be stored: {0}")]
    Vault(String),
}

/// The signed-in user and a valid access token, read together.
#[derive(Clone)]
pub struct SignedIn {
    pub user: AuthUser,
    pub access_token: String,
}

impl std::fmt::Debug for SignedIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedIn")
            .field("user", &self.user.id)
            .finish_non_exhaustive()
    }
}

/// What the keeper holds, behind one lock.
#[derive(Default)]
struct Kept {
    session: Option<AuthSession>,
    /// A stored refresh token waits to be used: the start-up restore could not reach
    /// Supabase Auth.
    restore_pending: bool,
    /// No new attempt to reach Supabase Auth before this wall-clock time (after a failure).
    retry_at: i64,
    /// Why the last attempt failed.
    last_failure: String,
}

/// See the module docs.
pub struct SessionKeeper {
    gotrue: GoTrueClient,
    vault: Arc<dyn TokenVault>,
    clock: WallClock,
    margin: Duration,
    kept: tokio::sync::Mutex<Kept>,
    user: Mutex<Option<AuthUser>>,
    /// The current session's user id and access token, readable without waiting for a
    /// refresh (see [`SessionKeeper::token_source_for`]).
    latest: Mutex<Option<(String, String)>>,
    reconnecting: AtomicBool,
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
            kept: tokio::sync::Mutex::new(Kept::default()),
            user: Mutex::new(None),
            latest: Mutex::new(None),
            reconnecting: AtomicBool::new(false),
            changes: watch::channel(None).0,
        })
    }

    /// The signed-in user, if any.
    pub fn current_user(&self) -> Option<AuthUser> {
        self.user.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// True while a stored session waits for Supabase Auth to be reachable again (the app
    /// started offline): neither signed in nor signed out yet.
    pub fn is_reconnecting(&self) -> bool {
        self.reconnecting.load(Ordering::SeqCst)
    }

    /// The current access token of `user_id` for work that outlives the token it started with
    /// (a long session's writes): whatever this keeper holds for that user at the time, kept
    /// fresh by the background refresher; nothing once that user signed out or another one
    /// signed in.
    pub fn token_source_for(self: &Arc<Self>, user_id: &str) -> TokenSource {
        let keeper = Arc::downgrade(self);
        let user_id = user_id.to_string();
        TokenSource::new(move || {
            let keeper = keeper.upgrade()?;
            let latest = keeper.latest.lock().unwrap_or_else(|e| e.into_inner());
            latest
                .as_ref()
                .filter(|(id, _)| *id == user_id)
                .map(|(_, token)| token.clone())
        })
    }

    /// Signed-in / signed-out changes (the user, or `None`).
    pub fn subscribe(&self) -> watch::Receiver<Option<AuthUser>> {
        self.changes.subscribe()
    }

    /// Starts keeping a session that was just signed in; stores its refresh token. A session
    /// kept before (another sign-in, maybe another account) is revoked at Supabase Auth.
    pub async fn install(&self, session: AuthSession) -> Result<AuthUser, KeeperError> {
        let user = session.user.clone();
        let previous = {
            let mut kept = self.kept.lock().await;
            self.vault
                .store(Some(&session.refresh_token))
                .map_err(KeeperError::Vault)?;
            let previous = kept.session.replace(session);
            kept.retry_at = 0;
            self.set_restore_pending(&mut kept, false);
            self.publish(kept.session.as_ref());
            previous
        };
        if let Some(old) = previous {
            self.revoke(old).await;
        }
        Ok(user)
    }

    /// Revokes a session this keeper no longer keeps (best effort). Logging out needs a valid
    /// access token: an expired one is refreshed first (with the session's own refresh token,
    /// which nothing else uses any more).
    async fn revoke(&self, old: AuthSession) {
        let now = (self.clock)();
        let access_token = if now + STILL_VALID_MARGIN < old.expires_at {
            Ok(old.access_token)
        } else {
            self.gotrue
                .refresh(&old.refresh_token)
                .await
                .map(|fresh| fresh.access_token)
        };
        let result = match access_token {
            Ok(token) => self.gotrue.logout(&token, LogoutScope::Local).await,
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            if !e.ends_session() {
                tracing::warn!(error = %e, "the replaced session could not be revoked");
            }
        }
    }

    /// At start-up: signs in again with the stored refresh token, if there is one. A token
    /// Supabase Auth no longer accepts is forgotten (`Ok(None)`); while Supabase Auth cannot
    /// be reached the token is kept and the keeper retries by itself ([`Self::tick`], and any
    /// request for a token), reporting [`KeeperError::Unavailable`] meanwhile.
    pub async fn restore(&self) -> Result<Option<AuthUser>, KeeperError> {
        let mut kept = self.kept.lock().await;
        if let Some(session) = &kept.session {
            return Ok(Some(session.user.clone()));
        }
        self.restore_locked(&mut kept).await
    }

    /// A valid access token: refreshed first when it expires within the margin (by the wall
    /// clock). `Ok(None)` when signed out.
    pub async fn access_token(&self) -> Result<Option<String>, KeeperError> {
        Ok(self.signed_in().await?.map(|s| s.access_token))
    }

    /// The signed-in user with a valid access token (refreshed first when due), read under
    /// one lock. `Ok(None)` when signed out. While Supabase Auth cannot be reached, the
    /// current token is used as long as it is valid.
    pub async fn signed_in(&self) -> Result<Option<SignedIn>, KeeperError> {
        let mut kept = self.kept.lock().await;
        if kept.session.is_none() && kept.restore_pending {
            if self.backing_off(&kept) {
                return Err(KeeperError::Unavailable(kept.last_failure.clone()));
            }
            self.restore_locked(&mut kept).await?;
        }
        self.refresh_if_due(&mut kept).await?;
        Ok(kept.session.as_ref().map(|s| SignedIn {
            user: s.user.clone(),
            access_token: s.access_token.clone(),
        }))
    }

    /// Refreshes when due (or retries a pending restore); the background refresher calls
    /// this every [`CHECK_INTERVAL`].
    pub async fn tick(&self) -> Result<(), KeeperError> {
        let mut kept = self.kept.lock().await;
        if kept.session.is_none() && kept.restore_pending {
            if !self.backing_off(&kept) {
                self.restore_locked(&mut kept).await?;
            }
            return Ok(());
        }
        self.refresh_if_due(&mut kept).await
    }

    /// Asks Supabase Auth who the current token belongs to (a revoked session is noticed).
    pub async fn user(&self) -> Result<Option<AuthUser>, KeeperError> {
        let Some(signed_in) = self.signed_in().await? else {
            return Ok(None);
        };
        let answer = self.gotrue.user(&signed_in.access_token).await;
        // Meanwhile the session may have been replaced (sign-out, another sign-in, a
        // refresh): the answer is about the session that was asked about, nothing else.
        let mut kept = self.kept.lock().await;
        let same_session = kept
            .session
            .as_ref()
            .is_some_and(|s| s.user.id == signed_in.user.id);
        match answer {
            Ok(user) if same_session && user.id == signed_in.user.id => {
                self.set_user(Some(user.clone()));
                Ok(Some(user))
            }
            Ok(user) => Ok(Some(user)),
            Err(e) if e.ends_session() => {
                let still_that_token = kept
                    .session
                    .as_ref()
                    .is_some_and(|s| s.access_token == signed_in.access_token);
                if still_that_token {
                    self.forget(&mut kept);
                }
                Err(KeeperError::SessionEnded(e.to_string()))
            }
            Err(e) => Err(KeeperError::Auth(e)),
        }
    }

    /// Signs out: revokes this session at Supabase Auth (best effort: the token is forgotten
    /// here even when Supabase cannot be reached) and deletes the stored refresh token.
    pub async fn sign_out(&self) -> Result<(), KeeperError> {
        let mut kept = self.kept.lock().await;
        let revoked = match kept.session.as_ref() {
            Some(session) => self
                .gotrue
                .logout(&session.access_token, LogoutScope::Local)
                .await
                .or_else(|e| if e.ends_session() { Ok(()) } else { Err(e) }),
            None => Ok(()),
        };
        let forgotten = self.vault.store(None).map_err(KeeperError::Vault);
        kept.session = None;
        self.set_restore_pending(&mut kept, false);
        self.publish(None);
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

    async fn restore_locked(&self, kept: &mut Kept) -> Result<Option<AuthUser>, KeeperError> {
        let Some(token) = self.vault.load().map_err(KeeperError::Vault)? else {
            self.set_restore_pending(kept, false);
            return Ok(None);
        };
        match self.gotrue.refresh(&token).await {
            Ok(session) => {
                // The stored token is spent now: keep the new session even if the keyring
                // refuses it (see `refresh_if_due`).
                if let Err(e) = self.vault.store(Some(&session.refresh_token)) {
                    tracing::warn!(error = %e, "the restored session could not be kept in the keyring; it stays signed in until the app quits");
                }
                let user = session.user.clone();
                kept.session = Some(session);
                kept.retry_at = 0;
                self.set_restore_pending(kept, false);
                self.publish(kept.session.as_ref());
                Ok(Some(user))
            }
            Err(e) if e.ends_session() => {
                tracing::info!(code = ?e.code(), "the stored session has ended");
                self.forget(kept);
                Ok(None)
            }
            Err(e) if e.is_transient() => {
                self.set_restore_pending(kept, true);
                Err(self.unavailable(kept, e))
            }
            Err(e) => {
                // Refused for another reason (e.g. the project's anon key changed): not an
                // outage to wait out. The token stays for the next start; sign-in is offered.
                self.set_restore_pending(kept, false);
                Err(KeeperError::Auth(e))
            }
        }
    }

    async fn refresh_if_due(&self, kept: &mut Kept) -> Result<(), KeeperError> {
        let Some(session) = kept.session.as_ref() else {
            return Ok(());
        };
        let now = (self.clock)();
        if now + (self.margin.as_secs() as i64) < session.expires_at {
            return Ok(());
        }
        let still_valid = now + STILL_VALID_MARGIN < session.expires_at;
        if self.backing_off(kept) {
            return if still_valid {
                Ok(())
            } else {
                Err(KeeperError::Unavailable(kept.last_failure.clone()))
            };
        }
        match self.gotrue.refresh(&session.refresh_token).await {
            Ok(fresh) => {
                // The old refresh token is spent now: keep the new session in memory even if
                // the keyring refuses it, or the next refresh would reuse a spent token and
                // Supabase Auth would revoke the whole session.
                let stored = self.vault.store(Some(&fresh.refresh_token));
                kept.session = Some(fresh);
                kept.retry_at = 0;
                self.publish(kept.session.as_ref());
                if let Err(e) = stored {
                    tracing::warn!(error = %e, "the refreshed session could not be kept in the keyring; it stays signed in until the app quits");
                }
                Ok(())
            }
            Err(e) if e.ends_session() => {
                let message = e.to_string();
                self.forget(kept);
                Err(KeeperError::SessionEnded(message))
            }
            Err(e) => {
                // Not an outage (e.g. the anon key changed) backs off all the same, and says
                // what Supabase Auth said.
                let err = if e.is_transient() {
                    self.unavailable(kept, e)
                } else {
                    self.note_failure(kept, &e);
                    KeeperError::Auth(e)
                };
                if still_valid {
                    tracing::warn!(error = %err, "the session could not be renewed yet; the current access token is still valid");
                    Ok(())
                } else {
                    Err(err)
                }
            }
        }
    }

    /// Whether the last failure was too recent to try again. A wall clock that jumped back
    /// (set right after starting offline) does not stretch the wait beyond one back-off.
    fn backing_off(&self, kept: &Kept) -> bool {
        let wait = kept.retry_at - (self.clock)();
        wait > 0 && wait <= RETRY_AFTER.as_secs() as i64
    }

    /// Remembers a failure to reach Supabase Auth and when to try again.
    fn unavailable(&self, kept: &mut Kept, e: GoTrueError) -> KeeperError {
        self.note_failure(kept, &e);
        KeeperError::Unavailable(kept.last_failure.clone())
    }

    fn note_failure(&self, kept: &mut Kept, e: &GoTrueError) {
        kept.retry_at = (self.clock)() + RETRY_AFTER.as_secs() as i64;
        kept.last_failure = e.to_string();
    }

    fn forget(&self, kept: &mut Kept) {
        kept.session = None;
        self.set_restore_pending(kept, false);
        if let Err(e) = self.vault.store(None) {
            tracing::warn!(error = %e, "could not delete the stored refresh token");
        }
        self.publish(None);
    }

    fn set_restore_pending(&self, kept: &mut Kept, pending: bool) {
        kept.restore_pending = pending;
        self.reconnecting.store(pending, Ordering::SeqCst);
    }

    /// Makes the kept session (or none) visible: its user, to [`Self::current_user`] and the
    /// subscribers, and its access token, to the token sources.
    fn publish(&self, session: Option<&AuthSession>) {
        *self.latest.lock().unwrap_or_else(|e| e.into_inner()) =
            session.map(|s| (s.user.id.clone(), s.access_token.clone()));
        self.set_user(session.map(|s| s.user.clone()));
    }

    fn set_user(&self, user: Option<AuthUser>) {
        *self.user.lock().unwrap_or_else(|e| e.into_inner()) = user.clone();
        self.changes.send_replace(user);
    }
}
