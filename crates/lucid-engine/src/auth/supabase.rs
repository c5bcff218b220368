//! Supabase access tokens: HS256 signed with the project's JWT secret (legacy projects), or
//! ES256 / RS256 signed with a key the project publishes at
//! `{SUPABASE_URL}/auth/v1/.well-known/jwks.json` (asymmetric signing keys).
//!
//! Every token must carry `exp`, `sub` and `aud` = `authenticated` (Supabase's audience for
//! signed-in users); the header's `alg` must be HS256, ES256 or RS256 and, for the asymmetric
//! ones, match the algorithm of the key its `kid` names. An expired token is
//! [`AuthError::Expired`]; anything else wrong is [`AuthError::InvalidToken`] (both 401).
//!
//! Keys are cached. The JWKS is fetched on first use, again when the cache is older than
//! [`JwksPolicy::max_age`], and once when a token names an unknown `kid` (a key rotation) —
//! at most once per [`JwksPolicy::min_refresh_interval`], however many such tokens arrive, so
//! forged `kid`s cannot turn into a request flood against Supabase. Concurrent callers wait
//! for the one fetch in flight. When a fetch fails, the keys already known stay in use.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{decode_header, Algorithm, DecodingKey};
use tokio::sync::{Mutex, RwLock};

use super::jwt::{verify_with, Claims};
use super::AuthError;

/// The audience of a signed-in user's Supabase access token.
pub const SUPABASE_AUDIENCE: &str = "authenticated";
/// Where a Supabase project publishes its token-signing public keys.
pub const JWKS_PATH: &str = "/auth/v1/.well-known/jwks.json";
/// A JWKS larger than this is refused.
const MAX_JWKS_BYTES: usize = 256 * 1024;

/// How keys are cached and refreshed.
#[derive(Debug, Clone)]
pub struct JwksPolicy {
    /// Keys older than this are fetched again before use (falling back to them if that fails).
    pub max_age: Duration,
    /// At most one JWKS request per this interval.
    pub min_refresh_interval: Duration,
    /// Timeout of one JWKS request.
    pub fetch_timeout: Duration,
}

impl Default for JwksPolicy {
    fn default() -> Self {
        Self {
            max_age: Duration::from_secs(600),
            min_refresh_interval: Duration::from_secs(30),
            fetch_timeout: Duration::from_secs(5),
        }
    }
}

#[derive(Clone)]
struct CachedKey {
    alg: Algorithm,
    key: DecodingKey,
}

#[derive(Default)]
struct KeyCache {
    keys: HashMap<String, CachedKey>,
    fetched_at: Option<Instant>,
}

/// Verifies Supabase access tokens (see the module docs).
pub struct SupabaseTokenVerifier {
    secret: Vec<u8>,
    jwks_url: String,
    http: reqwest::Client,
    policy: JwksPolicy,
    cache: RwLock<KeyCache>,
    /// Time of the last JWKS request; held while a request is in flight.
    last_fetch: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for SupabaseTokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SupabaseTokenVerifier")
            .field("jwks_url", &self.jwks_url)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl SupabaseTokenVerifier {
    /// `supabase_url` is the project URL (`SUPABASE_URL`), `jwt_secret` its legacy HS256 secret.
    pub fn new(supabase_url: &str, jwt_secret: impl Into<Vec<u8>>, http: reqwest::Client) -> Self {
        Self {
            secret: jwt_secret.into(),
            jwks_url: format!("{}{JWKS_PATH}", supabase_url.trim_end_matches('/')),
            http,
            policy: JwksPolicy::default(),
            cache: RwLock::new(KeyCache::default()),
            last_fetch: Mutex::new(None),
        }
    }

    pub fn with_policy(mut self, policy: JwksPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The JWKS address.
    pub fn jwks_url(&self) -> &str {
        &self.jwks_url
    }

    /// Fetches the JWKS once (not cached) and counts the usable signing keys in it, the way
    /// token verification reads it (`lucid doctor`).
    pub async fn probe_jwks(&self) -> Result<usize, String> {
        self.fetch().await.map(|keys| keys.len())
    }

    /// Verifies a Supabase access token and returns its claims.
    pub async fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let header = decode_header(token).map_err(|_| AuthError::InvalidToken)?;
        match header.alg {
            Algorithm::HS256 => verify_with(
                token,
                &DecodingKey::from_secret(&self.secret),
                Algorithm::HS256,
                Some(SUPABASE_AUDIENCE),
            ),
            alg @ (Algorithm::ES256 | Algorithm::RS256) => {
                let kid = header
                    .kid
                    .filter(|k| !k.is_empty())
                    .ok_or(AuthError::InvalidToken)?;
                let key = self.key_for(&kid, alg).await?;
                verify_with(token, &key, alg, Some(SUPABASE_AUDIENCE))
            }
            _ => Err(AuthError::InvalidToken),
        }
    }

    async fn key_for(&self, kid: &str, alg: Algorithm) -> Result<DecodingKey, AuthError> {
        if let Some(found) = self.lookup(kid, alg, true).await {
            return found;
        }
        // Unknown kid, or keys too old: refresh (rate-limited), then use what we have.
        self.refresh().await;
        self.lookup(kid, alg, false)
            .await
            .unwrap_or(Err(AuthError::InvalidToken))
    }

    /// `None` when the key is not cached (or, with `fresh_only`, the cache is too old).
    async fn lookup(
        &self,
        kid: &str,
        alg: Algorithm,
        fresh_only: bool,
    ) -> Option<Result<DecodingKey, AuthError>> {
        let cache = self.cache.read().await;
        let fresh = cache
            .fetched_at
            .is_some_and(|at| at.elapsed() < self.policy.max_age);
        if fresh_only && !fresh {
            return None;
        }
        let cached = cache.keys.get(kid)?;
        if cached.alg != alg {
            // A token may not pick another algorithm than its key's.
            return Some(Err(AuthError::InvalidToken));
        }
        Some(Ok(cached.key.clone()))
    }

    /// Fetches the JWKS unless a fetch happened within the refresh interval. Callers arriving
    /// while a fetch is in flight wait for it and do not fetch again.
    async fn refresh(&self) {
        let mut last = self.last_fetch.lock().await;
        if last.is_some_and(|at| at.elapsed() < self.policy.min_refresh_interval) {
            return;
        }
        *last = Some(Instant::now());
        match self.fetch().await {
            Ok(keys) => {
                tracing::debug!(url = %self.jwks_url, keys = keys.len(), "fetched the Supabase JWKS");
                let mut cache = self.cache.write().await;
                cache.keys = keys;
                cache.fetched_at = Some(Instant::now());
            }
            Err(error) => {
                tracing::warn!(url = %self.jwks_url, %error, "cannot fetch the Supabase JWKS; keeping the keys already known");
            }
        }
    }

    async fn fetch(&self) -> Result<HashMap<String, CachedKey>, String> {
        let response = self
            .http
            .get(&self.jwks_url)
            .timeout(self.policy.fetch_timeout)
            .send()
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("HTTP {}", response.status()));
        }
        if response
            .content_length()
            .is_some_and(|n| n > MAX_JWKS_BYTES as u64)
        {
            return Err("the JWKS is too large".to_string());
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| format!("cannot read the JWKS: {e}"))?;
        if body.len() > MAX_JWKS_BYTES {
            return Err("the JWKS is too large".to_string());
        }
        parse_jwks(&body)
    }
}

/// The usable signing keys of a JWKS, by `kid`. Entries that are malformed, unsupported,
/// without a `kid` or meant for encryption are skipped, so one odd key does not hide the rest.
fn parse_jwks(body: &[u8]) -> Result<HashMap<String, CachedKey>, String> {
    let set: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("the JWKS is not JSON: {e}"))?;
    let entries = set
        .get("keys")
        .and_then(|k| k.as_array())
        .ok_or_else(|| "the JWKS has no `keys` array".to_string())?;
    let mut keys = HashMap::new();
    for entry in entries {
        let Ok(jwk) = serde_json::from_value::<Jwk>(entry.clone()) else {
            continue;
        };
        let Some(kid) = jwk.common.key_id.clone().filter(|k| !k.is_empty()) else {
            continue;
        };
        if matches!(
            jwk.common.public_key_use,
            Some(PublicKeyUse::Encryption) | Some(PublicKeyUse::Other(_))
        ) {
            continue;
        }
        let alg = match (&jwk.common.key_algorithm, &jwk.algorithm) {
            (Some(KeyAlgorithm::ES256) | None, AlgorithmParameters::EllipticCurve(p))
                if p.curve == EllipticCurve::P256 =>
            {
                Algorithm::ES256
            }
            (Some(KeyAlgorithm::RS256) | None, AlgorithmParameters::RSA(_)) => Algorithm::RS256,
            _ => continue,
        };
        let Ok(key) = DecodingKey::from_jwk(&jwk) else {
            continue;
        };
        keys.insert(kid, CachedKey { alg, key });
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use lucid_testkit::jwks::{JwksServer, TestKey};
    use serde_json::{json, Value};

    const SECRET: &[u8] = b"fake-supabase-jwt-secret-for-tests-only";

    fn now() -> i64 {
        chrono::Utc::now().timestamp()
    }

    fn claims(sub: &str) -> Value {
        json!({"sub": sub, "aud": "authenticated", "role": "authenticated",
               "exp": now() + 600, "iat": now(), "email": "u@example.test"})
    }

    fn with(mut base: Value, key: &str, value: Value) -> Value {
        base[key] = value;
        base
    }

    fn hs256(claims: &Value) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap()
    }

    fn fast_policy() -> JwksPolicy {
        JwksPolicy {
            max_age: Duration::from_secs(600),
            min_refresh_interval: Duration::from_secs(1),
            fetch_timeout: Duration::from_secs(5),
        }
    }

    fn verifier(server: &JwksServer) -> SupabaseTokenVerifier {
        SupabaseTokenVerifier::new(server.base_url(), SECRET, reqwest::Client::new())
            .with_policy(fast_policy())
    }

    #[tokio::test]
    async fn hs256_tokens_need_the_secret_and_the_authenticated_audience() {
        let server = JwksServer::start(&[]).await;
        let v = verifier(&server);
        let ok = v.verify(&hs256(&claims("user-1"))).await.unwrap();
        assert_eq!(ok.sub, "user-1");
        assert_eq!(ok.email.as_deref(), Some("u@example.test"));
        // `aud` as an array naming it is fine too.
        let arr = with(claims("u"), "aud", json!(["other", "authenticated"]));
        assert!(v.verify(&hs256(&arr)).await.is_ok());
        let cases = [
            (
                "wrong audience",
                hs256(&with(claims("u"), "aud", json!("anon"))),
                AuthError::InvalidToken,
            ),
            (
                "no audience",
                hs256(&{
                    let mut c = claims("u");
                    c.as_object_mut().unwrap().remove("aud");
                    c
                }),
                AuthError::InvalidToken,
            ),
            (
                "expired",
                hs256(&with(claims("u"), "exp", json!(now() - 3600))),
                AuthError::Expired,
            ),
            (
                "no sub",
                hs256(&{
                    let mut c = claims("u");
                    c.as_object_mut().unwrap().remove("sub");
                    c
                }),
                AuthError::MissingSub,
            ),
            (
                "other secret",
                encode(
                    &Header::new(Algorithm::HS256),
                    &claims("u"),
                    &EncodingKey::from_secret(b"not-the-secret"),
                )
                .unwrap(),
                AuthError::InvalidToken,
            ),
            (
                "HS512",
                encode(
                    &Header::new(Algorithm::HS512),
                    &claims("u"),
                    &EncodingKey::from_secret(SECRET),
                )
                .unwrap(),
                AuthError::InvalidToken,
            ),
            (
                "garbage",
                "not.a.token".to_string(),
                AuthError::InvalidToken,
            ),
        ];
        for (name, token, expected) in cases {
            assert_eq!(v.verify(&token).await.unwrap_err(), expected, "{name}");
        }
        assert_eq!(server.requests(), 0, "HS256 never needs the JWKS");
    }

    #[tokio::test]
    async fn es256_and_rs256_tokens_verify_against_the_cached_jwks() {
        let es = TestKey::es256("es-key-1");
        let rs = TestKey::rs256("rs-key-1");
        let server = JwksServer::start(&[&es, &rs]).await;
        let v = verifier(&server);
        for _ in 0..3 {
            assert_eq!(
                v.verify(&es.sign(&claims("user-es"))).await.unwrap().sub,
                "user-es"
            );
            assert_eq!(
                v.verify(&rs.sign(&claims("user-rs"))).await.unwrap().sub,
                "user-rs"
            );
        }
        assert_eq!(server.requests(), 1, "the JWKS is fetched once and cached");

        let expired = with(claims("u"), "exp", json!(now() - 3600));
        assert_eq!(
            v.verify(&es.sign(&expired)).await.unwrap_err(),
            AuthError::Expired
        );
        assert_eq!(
            v.verify(&rs.sign(&expired)).await.unwrap_err(),
            AuthError::Expired
        );
        let wrong_aud = with(claims("u"), "aud", json!("anon"));
        assert_eq!(
            v.verify(&es.sign(&wrong_aud)).await.unwrap_err(),
            AuthError::InvalidToken
        );
        assert_eq!(
            v.verify(&rs.sign(&wrong_aud)).await.unwrap_err(),
            AuthError::InvalidToken
        );
    }

    #[tokio::test]
    async fn forged_and_confused_tokens_are_refused() {
        let es = TestKey::es256("es-key-1");
        let rs = TestKey::rs256("rs-key-1");
        let server = JwksServer::start(&[&es, &rs]).await;
        let v = verifier(&server);
        assert!(v.verify(&es.sign(&claims("u"))).await.is_ok());

        // An attacker's key claiming a published kid.
        let impostor = TestKey::es256("es-key-1");
        assert_eq!(
            v.verify(&impostor.sign(&claims("u"))).await.unwrap_err(),
            AuthError::InvalidToken
        );
        // No kid.
        let no_kid = es.sign_with_header(Header::new(Algorithm::ES256), &claims("u"));
        assert_eq!(
            v.verify(&no_kid).await.unwrap_err(),
            AuthError::InvalidToken
        );
        // The RSA key's kid with an EC signature (the header's alg must be the key's).
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some("rs-key-1".into());
        let confused = es.sign_with_header(header, &claims("u"));
        assert_eq!(
            v.verify(&confused).await.unwrap_err(),
            AuthError::InvalidToken
        );
        // HS256 signed with the RSA key's public JWK as the secret (classic confusion).
        let public_as_secret = serde_json::to_vec(&rs.jwk()).unwrap();
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("rs-key-1".into());
        let hs = encode(
            &header,
            &claims("u"),
            &EncodingKey::from_secret(&public_as_secret),
        )
        .unwrap();
        assert_eq!(v.verify(&hs).await.unwrap_err(), AuthError::InvalidToken);
        // Other asymmetric algorithms and `none`.
        let none = format!(
            "{}.{}.",
            b64url(br#"{"alg":"none","typ":"JWT","kid":"es-key-1"}"#),
            b64url(claims("u").to_string().as_bytes())
        );
        assert_eq!(v.verify(&none).await.unwrap_err(), AuthError::InvalidToken);
    }

    fn b64url(bytes: &[u8]) -> String {
        const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, b)| n | (*b as u32) << (16 - 8 * i));
            for i in 0..=chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
    }

    #[tokio::test]
    async fn an_unknown_kid_triggers_one_rate_limited_refresh() {
        let old = TestKey::es256("old");
        let new = TestKey::rs256("new");
        let server = JwksServer::start(&[&old]).await;
        let v = verifier(&server);
        assert!(v.verify(&old.sign(&claims("u"))).await.is_ok());
        assert_eq!(server.requests(), 1);

        // Rotation: the project now publishes the new key too.
        server.set_keys(&[&old, &new]);
        // A token with the new kid right after the first fetch: the refresh is rate-limited,
        // so it is refused without a request…
        assert_eq!(
            v.verify(&new.sign(&claims("u"))).await.unwrap_err(),
            AuthError::InvalidToken
        );
        assert_eq!(server.requests(), 1);
        // …and once the interval has passed, one refresh finds it.
        tokio::time::sleep(fast_policy().min_refresh_interval + Duration::from_millis(50)).await;
        assert!(v.verify(&new.sign(&claims("u"))).await.is_ok());
        assert_eq!(server.requests(), 2);
        assert!(v.verify(&new.sign(&claims("u"))).await.is_ok());
        assert_eq!(server.requests(), 2);

        // A flood of forged kids costs at most one request per interval.
        tokio::time::sleep(fast_policy().min_refresh_interval + Duration::from_millis(50)).await;
        let forged = TestKey::es256("forged");
        let mut tasks = Vec::new();
        let v = std::sync::Arc::new(v);
        for i in 0..20 {
            let v = v.clone();
            let token = TestKey::es256(&format!("forged-{i}")).sign(&claims("u"));
            tasks.push(tokio::spawn(async move { v.verify(&token).await }));
        }
        for task in tasks {
            assert_eq!(task.await.unwrap().unwrap_err(), AuthError::InvalidToken);
        }
        assert_eq!(
            v.verify(&forged.sign(&claims("u"))).await.unwrap_err(),
            AuthError::InvalidToken
        );
        assert_eq!(server.requests(), 3, "one refresh for the whole flood");
    }

    #[tokio::test]
    async fn a_failing_jwks_keeps_known_keys_and_hs256_working() {
        let es = TestKey::es256("es");
        let server = JwksServer::start(&[&es]).await;
        let policy = JwksPolicy {
            max_age: Duration::from_millis(100),
            ..fast_policy()
        };
        let down = JwksServer::start(&[]).await;
        down.set_failing(true);
        let cold = SupabaseTokenVerifier::new(down.base_url(), SECRET, reqwest::Client::new())
            .with_policy(policy.clone());
        // Never fetched: asymmetric tokens cannot be checked; HS256 still works.
        assert_eq!(
            cold.verify(&es.sign(&claims("u"))).await.unwrap_err(),
            AuthError::InvalidToken
        );
        assert!(cold.verify(&hs256(&claims("u"))).await.is_ok());

        let v = SupabaseTokenVerifier::new(server.base_url(), SECRET, reqwest::Client::new())
            .with_policy(policy.clone());
        assert!(v.verify(&es.sign(&claims("u"))).await.is_ok());
        server.set_failing(true);
        tokio::time::sleep(policy.min_refresh_interval + Duration::from_millis(50)).await;
        // The cache is stale and the refresh fails: the known key stays in use.
        assert!(v.verify(&es.sign(&claims("u"))).await.is_ok());
        assert_eq!(server.requests(), 2);
        // Once the JWKS answers again, a removed key is gone after the next refresh.
        server.set_failing(false);
        server.set_keys(&[]);
        tokio::time::sleep(policy.min_refresh_interval + Duration::from_millis(50)).await;
        assert_eq!(
            v.verify(&es.sign(&claims("u"))).await.unwrap_err(),
            AuthError::InvalidToken
        );
    }

    #[tokio::test]
    async fn odd_jwks_entries_are_skipped() {
        let es = TestKey::es256("good");
        let server = JwksServer::start(&[]).await;
        server.set_raw_keys(vec![
            json!({"kty": "oct", "kid": "sym", "k": "c2VjcmV0"}),
            json!({"kty": "EC", "kid": "bad-curve", "crv": "P-384", "x": "AA", "y": "AA"}),
            json!({"kty": "RSA", "kid": "enc", "use": "enc", "n": "AQAB", "e": "AQAB"}),
            json!({"kty": "weird"}),
            json!("not an object"),
            es.jwk(),
        ]);
        let v = verifier(&server);
        assert!(v.verify(&es.sign(&claims("u"))).await.is_ok());
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("sym".into());
        let sym = encode(&header, &claims("u"), &EncodingKey::from_secret(b"secret")).unwrap();
        assert_eq!(v.verify(&sym).await.unwrap_err(), AuthError::InvalidToken);
    }

    #[test]
    fn the_jwks_url_is_under_the_project_url() {
        let v =
            SupabaseTokenVerifier::new("https://abc.supabase.co/", SECRET, reqwest::Client::new());
        assert_eq!(
            v.jwks_url(),
            "https://abc.supabase.co/auth/v1/.well-known/jwks.json"
        );
    }
}
