//! Sign-in with a provider through Supabase Auth, PKCE flow (one implementation for the
//! desktop app's deep links and the server's browser flow):
//!
//! 1. [`SignIn::start`] makes a PKCE verifier and S256 challenge (`oauth2` crate) and a random
//!    `state`, keeps `state → verifier` (at most [`SignInPolicy::max_pending`], each for
//!    [`SignInPolicy::ttl`]) and returns the authorize URL; the `redirect_to` it names carries
//!    the `state` in its query, which Supabase Auth keeps when it adds `code`.
//! 2. The provider and Supabase Auth send the browser to `redirect_to?state=…&code=…`;
//!    [`SignIn::complete`] takes the pending sign-in for that `state` (once: a replayed
//!    callback finds nothing), checks it is still fresh and, when the front door bound the
//!    sign-in to a browser, that the browser is the same, then exchanges code + verifier.
//!
//! Every refusal says what happened and what to do (start again), never "invalid request".

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use oauth2::{CsrfToken, PkceCodeChallenge, PkceCodeVerifier};
use subtle::ConstantTimeEq;
use thiserror::Error;

use super::gotrue::{AuthSession, GoTrueClient, GoTrueError, LogoutScope};

/// The providers Lucid offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Provider {
    Google,
    Github,
    Gitlab,
}

impl Provider {
    pub const ALL: [Provider; 3] = [Provider::Google, Provider::Github, Provider::Gitlab];

    /// Supabase Auth's name of the provider.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Google => "google",
            Provider::Github => "github",
            Provider::Gitlab => "gitlab",
        }
    }

    pub fn parse(name: &str) -> Result<Self, SignInError> {
        Provider::ALL
            .into_iter()
            .find(|p| p.as_str() == name)
            .ok_or_else(|| SignInError::UnknownProvider(name.chars().take(40).collect()))
    }
}

/// Why a sign-in did not complete.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum SignInError {
    #[error("Unknown sign-in provider {0:?}: use google, github or gitlab.")]
    UnknownProvider(String),
    #[error("The sign-in address must be an http(s) or lucid:// URL without a fragment: {0}")]
    BadRedirect(String),
    #[error("This sign-in link is incomplete (no {0}). Start the sign-in again.")]
    IncompleteCallback(&'static str),
    #[error(
        "This sign-in link was already used. If you are not signed in, start the sign-in again."
    )]
    Replayed,
    #[error("This sign-in link has expired (a sign-in must be finished within {0} minutes). Start the sign-in again.")]
    Expired(u64),
    #[error("This sign-in link does not belong to a sign-in started here (or Lucid restarted since). Start the sign-in again.")]
    UnknownState,
    #[error("This sign-in was started in another browser. Finish it in the browser where you started it, or start again here.")]
    OtherBrowser,
    #[error("The provider did not sign you in: {0}")]
    ProviderRefused(String),
    #[error("Supabase Auth refused the sign-in: {0}. Start the sign-in again.")]
    ExchangeRefused(GoTrueError),
    #[error("{0}")]
    Unavailable(GoTrueError),
}

impl SignInError {
    fn from_exchange(e: GoTrueError) -> Self {
        match e {
            GoTrueError::Api { .. } => SignInError::ExchangeRefused(e),
            other => SignInError::Unavailable(other),
        }
    }
}

impl From<SignInError> for crate::error::EngineError {
    fn from(e: SignInError) -> Self {
        use crate::error::{EngineError, ErrorKind};
        let kind = match &e {
            SignInError::Unavailable(_) => ErrorKind::Upstream,
            SignInError::ExchangeRefused(_) | SignInError::ProviderRefused(_) => {
                ErrorKind::InvalidCredentials
            }
            _ => ErrorKind::BadRequest,
        };
        EngineError::new(kind, e.to_string())
    }
}

/// Limits on pending sign-ins.
#[derive(Debug, Clone)]
pub struct SignInPolicy {
    /// How long a started sign-in may take.
    pub ttl: Duration,
    /// At most this many sign-ins wait at once (the oldest is dropped beyond).
    pub max_pending: usize,
}

impl Default for SignInPolicy {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(600),
            max_pending: 64,
        }
    }
}

/// A started sign-in: open `url` in a browser.
#[derive(Debug, Clone)]
pub struct StartedSignIn {
    pub url: String,
    /// The sign-in's `state` (a front door may bind it to the browser, e.g. in a cookie).
    pub state: String,
}

/// The query of a callback (`redirect_to?state=&code=` or `?state=&error=&error_description=`).
#[derive(Debug, Clone, Default)]
pub struct Callback {
    pub state: Option<String>,
    pub code: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

impl Callback {
    /// Reads a callback URL (`lucid://auth/callback?…`, `http://127.0.0.1:…/callback?…`).
    pub fn from_url(url: &str) -> Result<Self, SignInError> {
        let parsed =
            url::Url::parse(url).map_err(|_| SignInError::IncompleteCallback("valid address"))?;
        let mut cb = Callback::default();
        for (k, v) in parsed.query_pairs() {
            let v = Some(v.into_owned());
            match k.as_ref() {
                "state" => cb.state = v,
                "code" => cb.code = v,
                "error" => cb.error = v,
                "error_description" => cb.error_description = v,
                _ => {}
            }
        }
        Ok(cb)
    }
}

struct Pending {
    verifier: PkceCodeVerifier,
    started: Instant,
}

#[derive(Default)]
struct Book {
    pending: HashMap<String, Pending>,
    /// Start order, for the cap.
    order: VecDeque<String>,
    /// Recently finished or dropped states and why, to explain a late callback.
    finished: HashMap<String, Finished>,
    finished_order: VecDeque<String>,
}

#[derive(Clone, Copy)]
enum Finished {
    Used,
    Expired,
}

/// PKCE sign-in through Supabase Auth (see the module docs).
pub struct SignIn {
    gotrue: GoTrueClient,
    policy: SignInPolicy,
    book: Mutex<Book>,
}

impl std::fmt::Debug for SignIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignIn")
            .field("gotrue", &self.gotrue)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl SignIn {
    pub fn new(gotrue: GoTrueClient) -> Self {
        Self::with_policy(gotrue, SignInPolicy::default())
    }

    pub fn with_policy(gotrue: GoTrueClient, policy: SignInPolicy) -> Self {
        Self {
            gotrue,
            policy,
            book: Mutex::new(Book::default()),
        }
    }

    pub fn gotrue(&self) -> &GoTrueClient {
        &self.gotrue
    }

    /// Starts a sign-in with `provider` that comes back to `redirect_to` (its query gets the
    /// `state`).
    pub fn start(
        &self,
        provider: Provider,
        redirect_to: &str,
    ) -> Result<StartedSignIn, SignInError> {
        let mut redirect = url::Url::parse(redirect_to)
            .map_err(|_| SignInError::BadRedirect(short(redirect_to)))?;
        if !matches!(redirect.scheme(), "http" | "https" | "lucid") || redirect.fragment().is_some()
        {
            return Err(SignInError::BadRedirect(short(redirect_to)));
        }
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let state = CsrfToken::new_random().secret().clone();
        redirect.query_pairs_mut().append_pair("state", &state);
        let url =
            self.gotrue
                .authorize_url(provider.as_str(), redirect.as_str(), challenge.as_str());

        let mut book = self.lock();
        self.expire(&mut book);
        while book.pending.len() >= self.policy.max_pending.max(1) {
            match book.order.pop_front() {
                Some(oldest) => {
                    if book.pending.remove(&oldest).is_some() {
                        remember(
                            &mut book,
                            oldest,
                            Finished::Expired,
                            self.policy.max_pending,
                        );
                    }
                }
                None => break,
            }
        }
        book.pending.insert(
            state.clone(),
            Pending {
                verifier,
                started: Instant::now(),
            },
        );
        book.order.push_back(state.clone());
        Ok(StartedSignIn { url, state })
    }

    /// Completes a sign-in from its callback. `browser_state`: the state the front door
    /// bound to the browser that started the sign-in (e.g. a cookie), when it did.
    pub async fn complete(
        &self,
        callback: &Callback,
        browser_state: Option<&str>,
    ) -> Result<AuthSession, SignInError> {
        let state = callback
            .state
            .as_deref()
            .filter(|s| !s.is_empty())
            .ok_or(SignInError::IncompleteCallback("state"))?;
        if let Some(bound) = browser_state {
            let same =
                bound.len() == state.len() && bool::from(bound.as_bytes().ct_eq(state.as_bytes()));
            if !same {
                return Err(SignInError::OtherBrowser);
            }
        }
        let pending = {
            let mut book = self.lock();
            self.expire(&mut book);
            match book.pending.remove(state) {
                Some(p) => {
                    book.order.retain(|s| s != state);
                    remember(
                        &mut book,
                        state.to_string(),
                        Finished::Used,
                        self.policy.max_pending,
                    );
                    p
                }
                None => {
                    return Err(match book.finished.get(state) {
                        Some(Finished::Used) => SignInError::Replayed,
                        Some(Finished::Expired) => SignInError::Expired(self.ttl_minutes()),
                        None => SignInError::UnknownState,
                    })
                }
            }
        };
        if let Some(error) = callback.error.as_deref().filter(|e| !e.is_empty()) {
            let description = callback
                .error_description
                .clone()
                .filter(|d| !d.is_empty())
                .unwrap_or_else(|| error.to_string());
            return Err(SignInError::ProviderRefused(short(&description)));
        }
        let code = callback
            .code
            .as_deref()
            .filter(|c| !c.is_empty())
            .ok_or(SignInError::IncompleteCallback("code"))?;
        self.gotrue
            .exchange_code(code, pending.verifier.secret())
            .await
            .map_err(SignInError::from_exchange)
    }

    /// Completes a sign-in from a callback URL (a deep link, the loopback redirect).
    pub async fn complete_url(&self, url: &str) -> Result<AuthSession, SignInError> {
        self.complete(&Callback::from_url(url)?, None).await
    }

    /// A fresh session for a refresh token (single use: keep the new one).
    pub async fn refresh(&self, refresh_token: &str) -> Result<AuthSession, GoTrueError> {
        self.gotrue.refresh(refresh_token).await
    }

    /// Signs the session of `access_token` out at Supabase Auth.
    pub async fn sign_out(&self, access_token: &str) -> Result<(), GoTrueError> {
        self.gotrue.logout(access_token, LogoutScope::Local).await
    }

    /// Number of sign-ins waiting for their callback.
    pub fn pending(&self) -> usize {
        let mut book = self.lock();
        self.expire(&mut book);
        book.pending.len()
    }

    fn ttl_minutes(&self) -> u64 {
        self.policy.ttl.as_secs().div_ceil(60).max(1)
    }

    fn expire(&self, book: &mut Book) {
        let ttl = self.policy.ttl;
        let stale: Vec<String> = book
            .pending
            .iter()
            .filter(|(_, p)| p.started.elapsed() > ttl)
            .map(|(s, _)| s.clone())
            .collect();
        for state in stale {
            book.pending.remove(&state);
            book.order.retain(|s| *s != state);
            remember(book, state, Finished::Expired, self.policy.max_pending);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn remember(book: &mut Book, state: String, how: Finished, cap: usize) {
    let cap = cap.max(1) * 4;
    if book.finished.insert(state.clone(), how).is_none() {
        book.finished_order.push_back(state);
    }
    while book.finished_order.len() > cap {
        if let Some(old) = book.finished_order.pop_front() {
            book.finished.remove(&old);
        }
    }
}

fn short(s: &str) -> String {
    let mut out: String = s.chars().take(200).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign_in(policy: SignInPolicy) -> SignIn {
        SignIn::with_policy(
            GoTrueClient::new("http://127.0.0.1:9", "anon", reqwest::Client::new()),
            policy,
        )
    }

    #[test]
    fn start_binds_state_into_the_redirect_and_uses_s256() {
        let s = sign_in(SignInPolicy::default());
        let started = s.start(Provider::Github, "lucid://auth/callback").unwrap();
        let url = url::Url::parse(&started.url).unwrap();
        let q: HashMap<_, _> = url.query_pairs().into_owned().collect();
        assert_eq!(q["provider"], "github");
        assert_eq!(q["code_challenge_method"], "s256");
        assert_eq!(q["code_challenge"].len(), 43, "base64url SHA-256");
        assert_eq!(
            q["redirect_to"],
            format!("lucid://auth/callback?state={}", started.state)
        );
        assert!(started.state.len() >= 16);
        assert!(s.start(Provider::Google, "javascript:alert(1)").is_err());
        assert!(s.start(Provider::Google, "http://x/#frag").is_err());
        assert_eq!(
            Provider::parse("bitbucket").unwrap_err(),
            SignInError::UnknownProvider("bitbucket".into())
        );
    }

    #[test]
    fn the_pending_book_is_capped() {
        let s = sign_in(SignInPolicy {
            ttl: Duration::from_secs(60),
            max_pending: 3,
        });
        let first = s.start(Provider::Google, "http://127.0.0.1:1/cb").unwrap();
        for _ in 0..5 {
            s.start(Provider::Google, "http://127.0.0.1:1/cb").unwrap();
        }
        assert_eq!(s.pending(), 3);
        // The dropped one explains itself.
        let cb = Callback {
            state: Some(first.state),
            code: Some("c".into()),
            ..Default::default()
        };
        let err = futures::executor::block_on(s.complete(&cb, None)).unwrap_err();
        assert!(matches!(err, SignInError::Expired(1)), "{err}");
    }

    #[tokio::test]
    async fn unknown_other_browser_and_provider_errors() {
        let s = sign_in(SignInPolicy::default());
        let unknown = Callback {
            state: Some("never-started".into()),
            code: Some("c".into()),
            ..Default::default()
        };
        assert_eq!(
            s.complete(&unknown, None).await.unwrap_err(),
            SignInError::UnknownState
        );
        let started = s.start(Provider::Gitlab, "http://127.0.0.1:1/cb").unwrap();
        let cb = Callback {
            state: Some(started.state.clone()),
            error: Some("access_denied".into()),
            error_description: Some("The user denied the request".into()),
            ..Default::default()
        };
        assert_eq!(
            s.complete(&cb, Some("another-browsers-state"))
                .await
                .unwrap_err(),
            SignInError::OtherBrowser
        );
        let err = s.complete(&cb, Some(&started.state)).await.unwrap_err();
        assert!(matches!(err, SignInError::ProviderRefused(ref d) if d.contains("denied")));
        // Consumed even though the provider refused.
        assert_eq!(
            s.complete(&cb, None).await.unwrap_err(),
            SignInError::Replayed
        );
        assert_eq!(
            s.complete(&Callback::default(), None).await.unwrap_err(),
            SignInError::IncompleteCallback("state")
        );
    }
}
