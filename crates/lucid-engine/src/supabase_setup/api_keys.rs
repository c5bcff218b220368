//! What can be checked about the project's API keys without the network.
//!
//! Supabase's legacy `anon` and `service_role` keys are long-lived HS256 JWTs signed with the
//! project's JWT secret, with a `role` claim naming the Postgres role they map to (and, on
//! hosted projects, `ref` = the project reference that also starts the project's URL). The
//! newer API keys (`sb_publishable_…`, `sb_secret_…`) are opaque: only the project's API
//! gateway can tell whether they are valid.

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{decode, Algorithm, DecodingKey, Validation};

/// Which of the two keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Anon,
    Service,
}

impl KeyKind {
    /// The setting's name.
    pub fn setting(self) -> &'static str {
        match self {
            KeyKind::Anon => "SUPABASE_ANON_KEY",
            KeyKind::Service => "SUPABASE_SERVICE_KEY",
        }
    }

    /// The Postgres role a legacy JWT key of this kind names.
    pub fn role(self) -> &'static str {
        match self {
            KeyKind::Anon => "anon",
            KeyKind::Service => "service_role",
        }
    }

    /// The prefix of a new-style key of this kind.
    fn opaque_prefix(self) -> &'static str {
        match self {
            KeyKind::Anon => "sb_publishable_",
            KeyKind::Service => "sb_secret_",
        }
    }

    /// Where the dashboard shows the key.
    pub fn dashboard_hint(self) -> &'static str {
        match self {
            KeyKind::Anon => "the anon (publishable) key",
            KeyKind::Service => "the service_role (secret) key",
        }
    }
}

/// The verdict on a key read offline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyShape {
    /// A JWT of the expected role, signed with the project's JWT secret.
    SignedJwt,
    /// A new-style opaque key of the expected kind (checked by the REST API only).
    Opaque,
    /// Something is wrong; the text says what.
    Wrong(String),
}

/// Whether `key` looks like a JWT (three base64url parts).
pub fn is_jwt(key: &str) -> bool {
    let parts: Vec<&str> = key.split('.').collect();
    parts.len() == 3 && parts.iter().all(|p| !p.is_empty())
}

/// Checks one key against the project's JWT secret and URL.
pub fn check_key(kind: KeyKind, key: &str, jwt_secret: &str, project_url: &str) -> KeyShape {
    let name = kind.setting();
    if key.starts_with("sb_publishable_") || key.starts_with("sb_secret_") {
        return if key.starts_with(kind.opaque_prefix()) {
            KeyShape::Opaque
        } else {
            KeyShape::Wrong(format!(
                "{name} is a {} key; expected {}",
                key.split('_').nth(1).unwrap_or("different"),
                kind.dashboard_hint()
            ))
        };
    }
    if !is_jwt(key) {
        return KeyShape::Wrong(format!(
            "{name} is neither a JWT (legacy key) nor an sb_… API key"
        ));
    }
    let mut validation = Validation::new(Algorithm::HS256);
    validation.algorithms = vec![Algorithm::HS256];
    validation.validate_aud = false;
    validation.required_spec_claims = ["exp".to_string()].into_iter().collect();
    let claims = match decode::<serde_json::Value>(
        key,
        &DecodingKey::from_secret(jwt_secret.as_bytes()),
        &validation,
    ) {
        Ok(data) => data.claims,
        Err(e) => {
            return KeyShape::Wrong(match e.kind() {
                ErrorKind::InvalidSignature => format!(
                    "{name} is not signed with SUPABASE_JWT_SECRET: the key or the secret \
                     belongs to another project"
                ),
                ErrorKind::ExpiredSignature => format!("{name} has expired"),
                ErrorKind::InvalidAlgorithm => {
                    format!("{name} is not an HS256 JWT (Supabase's legacy keys are)")
                }
                _ => format!("{name} is not a valid JWT: {e}"),
            });
        }
    };
    let role = claims.get("role").and_then(|r| r.as_str()).unwrap_or("");
    if role != kind.role() {
        return KeyShape::Wrong(format!(
            "{name} is a key for role {:?}; expected role {:?} ({})",
            role,
            kind.role(),
            kind.dashboard_hint()
        ));
    }
    if let (Some(key_ref), Some(url_ref)) = (
        claims.get("ref").and_then(|r| r.as_str()),
        hosted_project_ref(project_url),
    ) {
        if key_ref != url_ref {
            return KeyShape::Wrong(format!(
                "{name} belongs to project {key_ref:?} but SUPABASE_URL to project {url_ref:?}"
            ));
        }
    }
    KeyShape::SignedJwt
}

/// `<ref>` of a hosted project URL `https://<ref>.supabase.co`.
fn hosted_project_ref(project_url: &str) -> Option<String> {
    let url = url::Url::parse(project_url).ok()?;
    let host = url.host_str()?;
    let reference = host.strip_suffix(".supabase.co")?;
    (!reference.is_empty() && !reference.contains('.')).then(|| reference.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    const SECRET: &str = "project-jwt-secret-with-at-least-32-chars";

    fn key(claims: serde_json::Value, secret: &str) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    fn far() -> i64 {
        chrono::Utc::now().timestamp() + 3600 * 24 * 365
    }

    #[test]
    fn legacy_keys_are_checked_for_secret_role_expiry_and_project() {
        let url = "https://abcdefgh.supabase.co";
        let anon = key(
            json!({"role": "anon", "ref": "abcdefgh", "exp": far()}),
            SECRET,
        );
        assert_eq!(
            check_key(KeyKind::Anon, &anon, SECRET, url),
            KeyShape::SignedJwt
        );
        let service = key(json!({"role": "service_role", "exp": far()}), SECRET);
        assert_eq!(
            check_key(KeyKind::Service, &service, SECRET, url),
            KeyShape::SignedJwt
        );

        let wrong = |shape: KeyShape, needle: &str| match shape {
            KeyShape::Wrong(text) => assert!(text.contains(needle), "{text}"),
            other => panic!("expected a problem with {needle:?}, got {other:?}"),
        };
        wrong(
            check_key(KeyKind::Anon, &service, SECRET, url),
            "role \"service_role\"",
        );
        wrong(
            check_key(
                KeyKind::Anon,
                &anon,
                "another-secret-of-another-project!",
                url,
            ),
            "not signed with SUPABASE_JWT_SECRET",
        );
        let old = key(json!({"role": "anon", "exp": 1_000_000}), SECRET);
        wrong(check_key(KeyKind::Anon, &old, SECRET, url), "expired");
        let other_project = key(json!({"role": "anon", "ref": "zzzz", "exp": far()}), SECRET);
        wrong(
            check_key(KeyKind::Anon, &other_project, SECRET, url),
            "belongs to project \"zzzz\"",
        );
        // A self-hosted or local URL has no project reference to compare.
        assert_eq!(
            check_key(
                KeyKind::Anon,
                &other_project,
                SECRET,
                "http://127.0.0.1:54321"
            ),
            KeyShape::SignedJwt
        );
        wrong(
            check_key(KeyKind::Anon, "not-a-key", SECRET, url),
            "neither a JWT",
        );
    }

    #[test]
    fn new_style_keys_must_be_of_the_right_kind() {
        let url = "https://abcdefgh.supabase.co";
        assert_eq!(
            check_key(KeyKind::Anon, "sb_publishable_abc", SECRET, url),
            KeyShape::Opaque
        );
        assert_eq!(
            check_key(KeyKind::Service, "sb_secret_abc", SECRET, url),
            KeyShape::Opaque
        );
        assert!(matches!(
            check_key(KeyKind::Anon, "sb_secret_abc", SECRET, url),
            KeyShape::Wrong(t) if t.contains("secret key")
        ));
    }
}
