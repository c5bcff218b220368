//! Read-only questions to the project's REST API (PostgREST behind Supabase's gateway): does
//! it answer, does it accept a key, does a table with given columns exist. Every probe is a
//! `GET /rest/v1/<table>?select=<columns>&limit=0`, which reads no row.

use std::time::Duration;

use serde::Deserialize;

use super::api_keys::is_jwt;

/// What a probe request got back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// 2xx: the key was accepted and the table and columns exist.
    Ok,
    /// The key was refused (by the gateway, or PostgREST refused the JWT).
    KeyRefused(String),
    /// The key was accepted but its role has no rights on the table (PostgreSQL 42501).
    PermissionDenied,
    /// No such table (PostgREST 404: `PGRST205`, or `42P01` before PostgREST 12.2).
    NoTable,
    /// A selected column does not exist (`42703`).
    NoColumn,
    /// Anything else (status and the start of the body).
    Unexpected(String),
}

/// PostgREST's (and PostgreSQL's) error body.
#[derive(Debug, Default, Deserialize)]
struct ErrorBody {
    code: Option<String>,
    message: Option<String>,
}

/// A REST client for one project.
pub struct RestProbe {
    http: reqwest::Client,
    rest_url: String,
}

impl RestProbe {
    pub fn new(project_url: &str) -> Result<RestProbe, String> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("lucid-doctor/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(15))
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        Ok(RestProbe {
            http,
            rest_url: format!("{}/rest/v1", project_url.trim_end_matches('/')),
        })
    }

    /// `GET /rest/v1/` with the key: an HTTP status if anything answered, else why not.
    pub async fn reach(&self, key: &str) -> Result<u16, String> {
        self.with_key(self.http.get(format!("{}/", self.rest_url)), key)
            .send()
            .await
            .map(|r| r.status().as_u16())
            .map_err(|e| describe_transport(&e))
    }

    /// Reads zero rows of `columns` of `table` with `key`. `Err` = no HTTP answer at all.
    pub async fn select_nothing(
        &self,
        key: &str,
        table: &str,
        columns: &[String],
    ) -> Result<Answer, String> {
        let select = if columns.is_empty() {
            "*".to_string()
        } else {
            columns.join(",")
        };
        let request = self
            .http
            .get(format!("{}/{table}", self.rest_url))
            .query(&[("select", select.as_str()), ("limit", "0")]);
        let response = self
            .with_key(request, key)
            .send()
            .await
            .map_err(|e| describe_transport(&e))?;
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        Ok(classify(status, &text))
    }

    /// The `apikey` header, plus the key as bearer token when it is a (legacy) JWT — what
    /// supabase-js sends; opaque `sb_…` keys are never bearer tokens.
    fn with_key(&self, request: reqwest::RequestBuilder, key: &str) -> reqwest::RequestBuilder {
        let request = request.header("apikey", key);
        if is_jwt(key) {
            request.bearer_auth(key)
        } else {
            request
        }
    }
}

/// Sorts an answer into what it says about the key and the schema.
pub fn classify(status: u16, body: &str) -> Answer {
    let error: ErrorBody = serde_json::from_str(body).unwrap_or_default();
    let code = error.code.as_deref().unwrap_or("");
    let message = error.message.clone().unwrap_or_default();
    match status {
        200..=299 => Answer::Ok,
        _ if code == "42501" => Answer::PermissionDenied,
        // PGRST3xx: the JWT was refused (missing secret, invalid, expired, bad claims). No
        // PostgREST code at all on a 401/403: the gateway refused the `apikey`.
        401 | 403 if code.starts_with("PGRST3") || code.is_empty() => {
            Answer::KeyRefused(if message.is_empty() {
                format!("HTTP {status}")
            } else {
                format!("HTTP {status}: {message}")
            })
        }
        404 if code == "PGRST205" || code == "42P01" => Answer::NoTable,
        400 if code == "42703" => Answer::NoColumn,
        _ => {
            let snippet: String = body.chars().take(200).collect();
            Answer::Unexpected(format!("HTTP {status}: {snippet}"))
        }
    }
}

fn describe_transport(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        text.push_str(&format!(": {inner}"));
        source = inner.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_sorted_by_postgrest_codes() {
        assert_eq!(classify(200, "[]"), Answer::Ok);
        assert_eq!(
            classify(
                401,
                r#"{"code":"42501","message":"permission denied for table users"}"#
            ),
            Answer::PermissionDenied
        );
        assert_eq!(
            classify(401, r#"{"message":"Invalid API key"}"#),
            Answer::KeyRefused("HTTP 401: Invalid API key".into())
        );
        assert_eq!(
            classify(
                401,
                r#"{"code":"PGRST301","message":"JWSError JWSInvalidSignature"}"#
            ),
            Answer::KeyRefused("HTTP 401: JWSError JWSInvalidSignature".into())
        );
        assert_eq!(
            classify(
                404,
                r#"{"code":"PGRST205","message":"Could not find the table 'public.x' in the schema cache"}"#
            ),
            Answer::NoTable
        );
        assert_eq!(
            classify(
                404,
                r#"{"code":"42P01","message":"relation \"public.x\" does not exist"}"#
            ),
            Answer::NoTable
        );
        assert_eq!(
            classify(
                400,
                r#"{"code":"42703","message":"column x.y does not exist"}"#
            ),
            Answer::NoColumn
        );
        assert!(matches!(classify(404, "<html>"), Answer::Unexpected(t) if t.contains("404")));
    }
}
