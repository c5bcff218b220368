//! HS256 JWTs (and the shared verification of Supabase's asymmetric ones, see `supabase`):
//! `exp` and `sub` required; `alg: none`, other algorithms, expired, not-yet-valid,
//! wrong-secret and malformed tokens are rejected.

use std::collections::HashSet;
use std::time::Duration;

use jsonwebtoken::errors::ErrorKind as JwtErrorKind;
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::AuthError;

/// Allowed clock skew between the token issuer and this machine.
const LEEWAY_SECS: u64 = 30;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

pub fn verify_token(token: &str, secret: &[u8]) -> Result<Claims, AuthError> {
    verify_with(
        token,
        &DecodingKey::from_secret(secret),
        Algorithm::HS256,
        None,
    )
}

/// Verifies `token` with `key` for exactly `alg` (the header must name it): signature, `exp`
/// (required), `nbf`, and — when `audience` is given — an `aud` claim naming it.
pub(crate) fn verify_with(
    token: &str,
    key: &DecodingKey,
    alg: Algorithm,
    audience: Option<&str>,
) -> Result<Claims, AuthError> {
    let mut validation = Validation::new(alg);
    validation.algorithms = vec![alg];
    validation.required_spec_claims = HashSet::from(["exp".to_string(), "sub".to_string()]);
    validation.validate_exp = true;
    validation.validate_nbf = true;
    validation.leeway = LEEWAY_SECS;
    match audience {
        Some(aud) => {
            validation.set_audience(&[aud]);
            validation.required_spec_claims.insert("aud".to_string());
        }
        None => validation.validate_aud = false,
    }
    let data =
        decode::<serde_json::Value>(token, key, &validation).map_err(|e| match e.kind() {
            JwtErrorKind::ExpiredSignature => AuthError::Expired,
            JwtErrorKind::MissingRequiredClaim(c) if c == "sub" => AuthError::MissingSub,
            _ => AuthError::InvalidToken,
        })?;
    claims_from(&data.claims)
}

fn claims_from(claims: &serde_json::Value) -> Result<Claims, AuthError> {
    let sub = claims
        .get("sub")
        .and_then(|s| s.as_str())
        .map(str::trim)
        .unwrap_or("");
    if sub.is_empty() {
        return Err(AuthError::MissingSub);
    }
    let exp = claims
        .get("exp")
        .and_then(|v| v.as_u64())
        .ok_or(AuthError::InvalidToken)?;
    Ok(Claims {
        sub: sub.to_string(),
        exp,
        iat: claims.get("iat").and_then(|v| v.as_u64()),
        nbf: claims.get("nbf").and_then(|v| v.as_u64()),
        email: claims
            .get("email")
            .and_then(|v| v.as_str())
            .map(str::to_string),
        role: claims
            .get("role")
            .and_then(|v| v.as_str())
            .map(str::to_string),
    })
}

pub fn issue_token(user_id: &str, secret: &[u8], ttl: Duration) -> String {
    let now = chrono::Utc::now().timestamp().max(0) as u64;
    let claims = Claims {
        sub: user_id.to_string(),
        exp: now + ttl.as_secs(),
        iat: Some(now),
        nbf: None,
        email: None,
        role: Some("authenticated".into()),
    };
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret),
    )
    .expect("HS256 encoding with an in-memory key cannot fail")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SECRET: &[u8] = b"unit-test-secret-unit-test-secret";

    fn now() -> i64 {
        chrono::Utc::now().timestamp()
    }

    fn sign(claims: serde_json::Value, alg: Algorithm, secret: &[u8]) -> String {
        encode(
            &Header::new(alg),
            &claims,
            &EncodingKey::from_secret(secret),
        )
        .unwrap()
    }

    fn b64(v: &serde_json::Value) -> String {
        use base64_url::encode;
        encode(&v.to_string())
    }

    mod base64_url {
        pub fn encode(s: &str) -> String {
            const T: &[u8; 64] =
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
            let b = s.as_bytes();
            let mut out = String::new();
            for chunk in b.chunks(3) {
                let n = match chunk.len() {
                    3 => (chunk[0] as u32) << 16 | (chunk[1] as u32) << 8 | chunk[2] as u32,
                    2 => (chunk[0] as u32) << 16 | (chunk[1] as u32) << 8,
                    _ => (chunk[0] as u32) << 16,
                };
                let chars = chunk.len() + 1;
                for i in 0..chars {
                    out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
                }
            }
            out
        }
    }

    #[test]
    fn valid_token() {
        let t = sign(
            json!({"sub": "u1", "exp": now() + 600}),
            Algorithm::HS256,
            SECRET,
        );
        assert_eq!(verify_token(&t, SECRET).unwrap().sub, "u1");
    }

    #[test]
    fn rejects_the_bad_input_matrix() {
        let exp = now() + 600;
        let cases: Vec<(&str, String, AuthError)> = vec![
            (
                "wrong secret",
                sign(
                    json!({"sub":"u","exp":exp}),
                    Algorithm::HS256,
                    b"other-secret",
                ),
                AuthError::InvalidToken,
            ),
            (
                "expired",
                sign(
                    json!({"sub":"u","exp":now() - 3600}),
                    Algorithm::HS256,
                    SECRET,
                ),
                AuthError::Expired,
            ),
            (
                "not yet valid",
                sign(
                    json!({"sub":"u","exp":exp,"nbf":now() + 3600}),
                    Algorithm::HS256,
                    SECRET,
                ),
                AuthError::InvalidToken,
            ),
            (
                "no exp",
                sign(json!({"sub":"u"}), Algorithm::HS256, SECRET),
                AuthError::InvalidToken,
            ),
            (
                "no sub",
                sign(json!({"exp":exp}), Algorithm::HS256, SECRET),
                AuthError::MissingSub,
            ),
            (
                "empty sub",
                sign(json!({"sub":"","exp":exp}), Algorithm::HS256, SECRET),
                AuthError::MissingSub,
            ),
            (
                "HS512",
                sign(json!({"sub":"u","exp":exp}), Algorithm::HS512, SECRET),
                AuthError::InvalidToken,
            ),
            (
                "alg none",
                format!(
                    "{}.{}.",
                    b64(&json!({"alg":"none","typ":"JWT"})),
                    b64(&json!({"sub":"u","exp":exp}))
                ),
                AuthError::InvalidToken,
            ),
            (
                "malformed",
                "bad.token".to_string(),
                AuthError::InvalidToken,
            ),
            (
                "garbage",
                "not a jwt at all".to_string(),
                AuthError::InvalidToken,
            ),
            ("empty", String::new(), AuthError::InvalidToken),
        ];
        for (name, token, expected) in cases {
            assert_eq!(
                verify_token(&token, SECRET).unwrap_err(),
                expected,
                "case {name}"
            );
        }
    }

    #[test]
    fn issued_token_round_trips() {
        let t = issue_token("abc", SECRET, Duration::from_secs(30));
        let c = verify_token(&t, SECRET).unwrap();
        assert_eq!(c.sub, "abc");
        assert!(c.exp as i64 > now());
    }
}
