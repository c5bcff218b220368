//! Request plumbing shared by the forge clients: sending with a secret header, mapping
//! failures to [`ForgeError`], summarising error bodies, bounded body reads and pagination.

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{ForgeError, Paged};

/// Largest error body read for a summary.
const MAX_ERROR_BODY: usize = 64 * 1024;
/// Largest success body accepted (one page of 100 repositories is well under 1 MiB).
const MAX_BODY: usize = 32 * 1024 * 1024;
/// Longest forge message kept in an error.
const MAX_SUMMARY_CHARS: usize = 200;

/// A header value carrying a token, marked sensitive (hidden from debug output).
pub(crate) fn secret_header(value: String) -> Result<HeaderValue, ForgeError> {
    let mut v = HeaderValue::from_str(&value).map_err(|_| ForgeError::InvalidToken)?;
    v.set_sensitive(true);
    Ok(v)
}

/// Sends a request carrying `token` in `auth_header`; non-success statuses become errors.
pub(crate) async fn send(
    req: RequestBuilder,
    auth_header: HeaderName,
    auth_value: String,
    token: &str,
) -> Result<Response, ForgeError> {
    let req = req.header(auth_header, secret_header(auth_value)?);
    let resp = req.send().await.map_err(network_error)?;
    if resp.status().is_success() {
        Ok(resp)
    } else {
        Err(error_from_response(resp, token).await)
    }
}

/// Reads and decodes a JSON body (bounded).
pub(crate) async fn read_json<T: DeserializeOwned>(
    resp: Response,
    what: &str,
) -> Result<T, ForgeError> {
    let body = read_limited(resp, MAX_BODY)
        .await?
        .ok_or_else(|| ForgeError::InvalidResponse(format!("{what} response is too large")))?;
    serde_json::from_slice(&body).map_err(|_| {
        ForgeError::InvalidResponse(format!("{what} response is not the expected JSON"))
    })
}

/// The body, or `None` when it exceeds `limit` bytes.
async fn read_limited(mut resp: Response, limit: usize) -> Result<Option<Vec<u8>>, ForgeError> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(network_error)? {
        if body.len() + chunk.len() > limit {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

/// A transport failure, described without the URL's path or query.
pub(crate) fn network_error(e: reqwest::Error) -> ForgeError {
    let host = e
        .url()
        .and_then(|u| u.host_str())
        .map(|h| format!(" {h}"))
        .unwrap_or_default();
    let what = if e.is_timeout() {
        format!("request to{host} timed out")
    } else if e.is_connect() {
        format!("could not connect to{host}")
    } else if e.is_redirect() {
        format!("too many redirects from{host}")
    } else if e.is_body() || e.is_decode() {
        format!("the response from{host} was interrupted")
    } else {
        format!("request to{host} failed")
    };
    ForgeError::Network(what)
}

async fn error_from_response(resp: Response, token: &str) -> ForgeError {
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = read_limited(resp, MAX_ERROR_BODY)
        .await
        .ok()
        .flatten()
        .unwrap_or_default();
    classify(status, &headers, summarise(&body, token))
}

/// Maps a failed status (and its summarised message) to a [`ForgeError`].
pub(crate) fn classify(
    status: StatusCode,
    headers: &HeaderMap,
    message: Option<String>,
) -> ForgeError {
    let code = status.as_u16();
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let retry_after = || {
        header("retry-after")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .or_else(|| {
                let reset = header("x-ratelimit-reset")?.trim().parse::<i64>().ok()?;
                let now = chrono::Utc::now().timestamp();
                Some(reset.saturating_sub(now).max(0) as u64)
            })
    };
    let rate_limited_403 = header("x-ratelimit-remaining").is_some_and(|v| v.trim() == "0")
        || message
            .as_deref()
            .is_some_and(|m| m.to_ascii_lowercase().contains("rate limit"));
    match code {
        401 => ForgeError::Unauthorized { message },
        429 => ForgeError::RateLimited {
            status: code,
            retry_after_secs: retry_after(),
        },
        403 if rate_limited_403 => ForgeError::RateLimited {
            status: code,
            retry_after_secs: retry_after(),
        },
        403 => ForgeError::Forbidden { message },
        404 => ForgeError::NotFound { message },
        400 | 409 | 422 => ForgeError::Rejected {
            status: code,
            message,
        },
        300..=399 => ForgeError::Upstream {
            status: code,
            message: Some("redirect to another host not followed".into()),
        },
        _ => ForgeError::Upstream {
            status: code,
            message,
        },
    }
}

/// A short, single-line summary of a forge error body: its `message` (GitHub, GitLab), the
/// GitHub `errors[].message` details, or GitLab's `error`/`error_description`. Non-JSON bodies
/// give `None`. The token is redacted and the result truncated.
pub(crate) fn summarise(body: &[u8], token: &str) -> Option<String> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let obj = value.as_object()?;
    let mut parts: Vec<String> = Vec::new();
    if let Some(m) = obj.get("message").and_then(flatten_message) {
        parts.push(m);
    }
    if let Some(errors) = obj.get("errors").and_then(Value::as_array) {
        let details: Vec<String> = errors
            .iter()
            .filter_map(|e| match e {
                Value::String(s) => Some(s.clone()),
                Value::Object(o) => o
                    .get("message")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .or_else(|| {
                        let field = o.get("field").and_then(Value::as_str)?;
                        let code = o.get("code").and_then(Value::as_str).unwrap_or("invalid");
                        Some(format!("{field} {code}"))
                    }),
                _ => None,
            })
            .collect();
        if !details.is_empty() {
            parts.push(details.join("; "));
        }
    }
    if parts.is_empty() {
        for key in ["error_description", "error"] {
            if let Some(m) = obj.get(key).and_then(flatten_message) {
                parts.push(m);
                break;
            }
        }
    }
    let joined = parts.join(": ");
    let cleaned = clean(&joined, token);
    (!cleaned.is_empty()).then_some(cleaned)
}

/// GitLab messages may be a string, a list, or an object of field → list of messages.
fn flatten_message(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().filter_map(flatten_message).collect();
            (!parts.is_empty()).then(|| parts.join("; "))
        }
        Value::Object(map) => {
            let parts: Vec<String> = map
                .iter()
                .filter_map(|(k, v)| flatten_message(v).map(|m| format!("{k} {m}")))
                .collect();
            (!parts.is_empty()).then(|| parts.join("; "))
        }
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Tokens shorter than this are not real forge tokens; redacting them would only mangle text.
const MIN_REDACTED_TOKEN: usize = 6;

/// Redacts the token, drops control characters, collapses whitespace, truncates.
fn clean(text: &str, token: &str) -> String {
    let redacted = if token.len() < MIN_REDACTED_TOKEN {
        text.to_string()
    } else {
        text.replace(token, "[redacted]")
    };
    let single_line: String = redacted
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let collapsed = single_line.split_whitespace().collect::<Vec<_>>().join(" ");
    if collapsed.chars().count() > MAX_SUMMARY_CHARS {
        let cut: String = collapsed.chars().take(MAX_SUMMARY_CHARS).collect();
        format!("{cut}…")
    } else {
        collapsed
    }
}

/// Fetches pages 1.. until `has_next` says no or `max_pages` were read.
///
/// `request(page)` builds the request of one page; `has_next(headers, items_on_page)` decides
/// from the forge's pagination headers whether another page exists.
pub(crate) async fn fetch_pages<T, F, Fut, N>(
    max_pages: usize,
    what: &str,
    mut request: F,
    has_next: N,
) -> Result<Paged<T>, ForgeError>
where
    T: DeserializeOwned,
    // A plain closure returning a future (not `AsyncFnMut`): the futures of async closures
    // are not provably `Send` for every lifetime, which axum handlers require.
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = Result<Response, ForgeError>>,
    N: Fn(&HeaderMap, usize) -> bool,
{
    let mut items = Vec::new();
    let mut page = 1;
    loop {
        let resp = request(page).await?;
        let headers = resp.headers().clone();
        let batch: Vec<T> = read_json(resp, what).await?;
        let count = batch.len();
        items.extend(batch);
        let more = count > 0 && has_next(&headers, count);
        if !more {
            return Ok(Paged {
                items,
                truncated: false,
            });
        }
        if page >= max_pages {
            tracing::warn!(what, pages = page, "forge list truncated at the page cap");
            return Ok(Paged {
                items,
                truncated: true,
            });
        }
        page += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn github_validation_errors_are_summarised() {
        let body = br#"{"message":"Validation Failed","errors":[{"resource":"PullRequest","code":"custom","message":"A pull request already exists for octocat:feature."}],"documentation_url":"https://docs.github.com/rest","status":"422"}"#;
        assert_eq!(
            summarise(body, "tok").as_deref(),
            Some("Validation Failed: A pull request already exists for octocat:feature.")
        );
        let missing = br#"{"message":"Validation Failed","errors":[{"resource":"PullRequest","field":"head","code":"missing_field"}]}"#;
        assert_eq!(
            summarise(missing, "tok").as_deref(),
            Some("Validation Failed: head missing_field")
        );
    }

    #[test]
    fn gitlab_message_shapes_are_flattened() {
        assert_eq!(
            summarise(br#"{"message":"401 Unauthorized"}"#, "tok-secret").as_deref(),
            Some("401 Unauthorized")
        );
        assert_eq!(
            summarise(
                br#"{"message":["Another open merge request already exists"]}"#,
                "tok-secret"
            )
            .as_deref(),
            Some("Another open merge request already exists")
        );
        assert_eq!(
            summarise(br#"{"message":{"title":["can't be blank"]}}"#, "tok-secret").as_deref(),
            Some("title can't be blank")
        );
        assert_eq!(
            summarise(
                br#"{"error":"invalid_token","error_description":"Token was revoked"}"#,
                "tok-secret"
            )
            .as_deref(),
            Some("Token was revoked")
        );
    }

    #[test]
    fn summaries_redact_the_token_and_are_truncated_single_lines() {
        let body = br#"{"message":"token glpat-SECRET123 is\nnot valid"}"#;
        let s = summarise(body, "glpat-SECRET123").unwrap();
        assert_eq!(s, "token [redacted] is not valid");
        let long = format!(r#"{{"message":"{}"}}"#, "x".repeat(5000));
        let s = summarise(long.as_bytes(), "tok-secret").unwrap();
        assert_eq!(s.chars().count(), MAX_SUMMARY_CHARS + 1);
        assert!(s.ends_with('…'));
    }

    #[test]
    fn non_json_bodies_are_not_echoed() {
        assert_eq!(
            summarise(b"<html><body>Bad Gateway</body></html>", "tok-secret"),
            None
        );
        assert_eq!(summarise(b"Retry later\n", "tok-secret"), None);
        assert_eq!(summarise(b"{}", "tok-secret"), None);
    }

    #[test]
    fn statuses_are_classified() {
        let none = HeaderMap::new();
        assert!(matches!(
            classify(StatusCode::UNAUTHORIZED, &none, None),
            ForgeError::Unauthorized { .. }
        ));
        assert!(matches!(
            classify(
                StatusCode::FORBIDDEN,
                &none,
                Some("Resource not accessible".into())
            ),
            ForgeError::Forbidden { .. }
        ));
        let mut limited = HeaderMap::new();
        limited.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
        assert!(matches!(
            classify(StatusCode::FORBIDDEN, &limited, None),
            ForgeError::RateLimited { status: 403, .. }
        ));
        let mut retry = HeaderMap::new();
        retry.insert("retry-after", HeaderValue::from_static("60"));
        assert_eq!(
            classify(StatusCode::TOO_MANY_REQUESTS, &retry, None),
            ForgeError::RateLimited {
                status: 429,
                retry_after_secs: Some(60)
            }
        );
        assert!(matches!(
            classify(StatusCode::UNPROCESSABLE_ENTITY, &none, None),
            ForgeError::Rejected { status: 422, .. }
        ));
        assert!(matches!(
            classify(StatusCode::NOT_FOUND, &none, None),
            ForgeError::NotFound { .. }
        ));
        assert!(matches!(
            classify(StatusCode::SERVICE_UNAVAILABLE, &none, None),
            ForgeError::Upstream { status: 503, .. }
        ));
        assert!(matches!(
            classify(StatusCode::MOVED_PERMANENTLY, &none, None),
            ForgeError::Upstream { status: 301, .. }
        ));
    }
}
