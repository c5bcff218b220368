//! Sending one JSON request to a provider with retries.
//!
//! Rate limits (429), overload (529) and server errors (500, 502, 503, 504) as well as
//! connection failures and timeouts are retried with exponential backoff and jitter, honouring a
//! `Retry-After` (or `retry-after-ms`) header up to a cap. Authentication failures (401/403) and
//! request errors (400/404/422 and other 4xx) fail at once, after exactly one request.
//!
//! Error messages summarise the provider's error body (`error.message` where there is one),
//! truncated, with the API key redacted. Dropping the returned future aborts the request.
//!
//! Streams ([`send_stream`]) follow the same rules until the answer starts; after that, a
//! stream that breaks (read error), ends before its terminal event, or reports a transient
//! error inside the stream (Anthropic `overloaded_error`, an OpenRouter/Gemini error chunk with
//! a retryable code) is retried like a failed request, with the same backoff and attempt limit.

use std::time::Duration;

use rand::Rng;
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{RequestBuilder, StatusCode};
use serde_json::Value;

use super::sse::{SseEvent, SseParser};
use super::{LlmError, StreamDelta};

/// Longest provider message kept in an error.
const MAX_MESSAGE_CHARS: usize = 300;

/// How often and how patiently a client retries.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Total attempts including the first one (at least 1).
    pub max_attempts: u32,
    /// Delay before the first retry; doubled for each further retry.
    pub base_delay: Duration,
    /// Upper bound of a computed backoff delay.
    pub max_delay: Duration,
    /// Upper bound of a delay requested by the provider with `Retry-After`.
    pub max_retry_after: Duration,
    /// Time limit of one attempt (connect, send, wait and read the whole answer).
    pub attempt_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(60),
            attempt_timeout: Duration::from_secs(600),
        }
    }
}

impl RetryPolicy {
    /// The default policy with another backoff base (tests use a few milliseconds).
    pub fn with_base_delay(base_delay: Duration) -> Self {
        Self {
            base_delay,
            max_delay: base_delay.saturating_mul(30).max(base_delay),
            ..Self::default()
        }
    }

    /// The delay before retry number `retry` (1 = first retry): the provider's `Retry-After`
    /// when given (capped at [`Self::max_retry_after`]), else exponential backoff with jitter
    /// (a random value between half and all of `base * 2^(retry-1)`, capped at `max_delay`).
    pub fn delay_before_retry(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(wait) = retry_after {
            return wait.min(self.max_retry_after);
        }
        let factor = 2u32.saturating_pow(retry.saturating_sub(1));
        let full = self.base_delay.saturating_mul(factor).min(self.max_delay);
        let millis = full.as_millis().min(u64::MAX as u128) as u64;
        if millis < 2 {
            return full;
        }
        Duration::from_millis(rand::rng().random_range(millis / 2..=millis))
    }
}

/// Provider-specific recognition of authentication failures that do not use 401/403
/// (Gemini answers a bad key with 400 `API_KEY_INVALID`).
pub(crate) type AuthFailureCheck = fn(status: u16, body: &Value) -> bool;

/// Everything [`send_json`] needs besides the request itself.
pub(crate) struct Endpoint<'a> {
    pub provider: &'static str,
    pub http: &'a reqwest::Client,
    pub policy: &'a RetryPolicy,
    /// The API key, redacted from every message.
    pub secret: Option<&'a str>,
    pub auth_failure: Option<AuthFailureCheck>,
}

/// Sends the request built by `build` (called once per attempt) and returns the parsed JSON
/// body of the first successful answer.
pub(crate) async fn send_json(
    endpoint: &Endpoint<'_>,
    build: impl Fn(&reqwest::Client) -> RequestBuilder,
) -> Result<Value, LlmError> {
    let max_attempts = endpoint.policy.max_attempts.max(1);
    let mut attempt = 1;
    loop {
        let request = build(endpoint.http).timeout(endpoint.policy.attempt_timeout);
        let failure = match run_attempt(endpoint, request).await {
            Attempt::Done(value) => return Ok(value),
            Attempt::Fatal(err) => return Err(err),
            Attempt::Retryable(failure) => failure,
        };
        if attempt >= max_attempts {
            return Err(failure.give_up(endpoint.provider, attempt));
        }
        backoff(endpoint, attempt, &failure).await;
        attempt += 1;
    }
}

/// Reads one provider's stream of server-sent events into a complete answer.
pub(crate) trait StreamReader: Send {
    type Output;
    /// Handles the next event; text (and thinking) for the user goes to `on_delta` as it
    /// arrives.
    fn on_event(
        &mut self,
        event: SseEvent,
        on_delta: &mut dyn FnMut(StreamDelta),
    ) -> Result<(), StreamFailure>;
    /// Whether the stream's terminal event was seen (a stream that ends before is cut).
    fn is_complete(&self) -> bool;
    /// The answer assembled from the events.
    fn finish(self) -> Result<Self::Output, LlmError>;
    /// The answer when the server replied with a whole JSON body instead of a stream.
    fn whole(self, body: &Value) -> Result<Self::Output, LlmError>;
}

/// Why a stream could not be read to its end.
#[derive(Debug)]
pub(crate) enum StreamFailure {
    /// A transient failure reported inside the stream (e.g. Anthropic's `overloaded_error`):
    /// the request is sent again.
    Retryable(String),
    Fatal(LlmError),
}

/// Sends the streaming request built by `build` (called once per attempt) and reads its
/// events with a fresh reader from `new_reader` per attempt. Text goes to `on_delta` as it
/// arrives. Failures before the stream starts follow the rules of [`send_json`]; a stream that
/// breaks or ends early, or reports a transient error, is retried the same way (after
/// [`StreamDelta::Restart`] when text of the broken attempt was already reported).
pub(crate) async fn send_stream<R: StreamReader>(
    endpoint: &Endpoint<'_>,
    build: impl Fn(&reqwest::Client) -> RequestBuilder,
    new_reader: impl Fn() -> R,
    on_delta: &(dyn Fn(StreamDelta) + Send + Sync),
) -> Result<R::Output, LlmError> {
    let max_attempts = endpoint.policy.max_attempts.max(1);
    let mut attempt = 1;
    loop {
        let request = build(endpoint.http).timeout(endpoint.policy.attempt_timeout);
        let mut reported = false;
        let outcome = run_stream_attempt(endpoint, request, new_reader(), &mut |delta| {
            reported = true;
            on_delta(delta);
        })
        .await;
        let failure = match outcome {
            Attempt::Done(output) => return Ok(output),
            Attempt::Fatal(err) => return Err(err),
            Attempt::Retryable(failure) => failure,
        };
        if attempt >= max_attempts {
            return Err(failure.give_up(endpoint.provider, attempt));
        }
        if reported {
            on_delta(StreamDelta::Restart {
                reason: failure.message.clone(),
            });
        }
        backoff(endpoint, attempt, &failure).await;
        attempt += 1;
    }
}

/// A failed attempt that may be retried.
struct Failure {
    status: Option<u16>,
    message: String,
    retry_after: Option<Duration>,
}

impl Failure {
    fn network(message: String) -> Self {
        Failure {
            status: None,
            message,
            retry_after: None,
        }
    }

    /// The error after the last attempt.
    fn give_up(self, provider: &'static str, attempts: u32) -> LlmError {
        match self.status {
            Some(status) => LlmError::Unavailable {
                provider,
                status,
                attempts,
                message: self.message,
            },
            None => LlmError::Network {
                provider,
                message: format!("{} (after {attempts} attempts)", self.message),
            },
        }
    }
}

async fn backoff(endpoint: &Endpoint<'_>, attempt: u32, failure: &Failure) {
    let delay = endpoint
        .policy
        .delay_before_retry(attempt, failure.retry_after);
    tracing::warn!(
        provider = endpoint.provider,
        status = failure.status.unwrap_or(0),
        attempt,
        delay_ms = delay.as_millis() as u64,
        "LLM request failed, retrying: {}",
        failure.message
    );
    tokio::time::sleep(delay).await;
}

/// What one attempt ended with, before deciding whether to retry.
enum Attempt<T> {
    Done(T),
    Retryable(Failure),
    Fatal(LlmError),
}

/// Sends the request; an answer (any status) or what went wrong before it.
async fn send(
    endpoint: &Endpoint<'_>,
    request: RequestBuilder,
) -> Result<reqwest::Response, Attempt<std::convert::Infallible>> {
    match request.send().await {
        Ok(response) => Ok(response),
        Err(err) if err.is_builder() => Err(Attempt::Fatal(LlmError::Network {
            provider: endpoint.provider,
            message: redact(&describe_reqwest_error(err), endpoint.secret),
        })),
        Err(err) => Err(Attempt::Retryable(Failure::network(redact(
            &describe_reqwest_error(err),
            endpoint.secret,
        )))),
    }
}

fn widen<T>(attempt: Attempt<std::convert::Infallible>) -> Attempt<T> {
    match attempt {
        Attempt::Done(never) => match never {},
        Attempt::Retryable(failure) => Attempt::Retryable(failure),
        Attempt::Fatal(err) => Attempt::Fatal(err),
    }
}

/// Reads a whole body; a read error is a retryable cut.
async fn read_body(
    endpoint: &Endpoint<'_>,
    response: reqwest::Response,
) -> Result<bytes::Bytes, Failure> {
    response.bytes().await.map_err(|err| {
        Failure::network(redact(
            &format!(
                "the answer was cut off: {}",
                describe_reqwest_error(err.without_url())
            ),
            endpoint.secret,
        ))
    })
}

async fn run_attempt(endpoint: &Endpoint<'_>, request: RequestBuilder) -> Attempt<Value> {
    let response = match send(endpoint, request).await {
        Ok(response) => response,
        Err(failed) => return widen(failed),
    };
    let status = response.status();
    let retry_after = retry_after(response.headers());
    let body = match read_body(endpoint, response).await {
        Ok(body) => body,
        Err(failure) => return Attempt::Retryable(failure),
    };
    if status.is_success() {
        return match parse_json(endpoint, &body) {
            Ok(value) => Attempt::Done(value),
            Err(err) => Attempt::Fatal(err),
        };
    }
    classify_failure(endpoint, status, retry_after, &body)
}

fn parse_json(endpoint: &Endpoint<'_>, body: &[u8]) -> Result<Value, LlmError> {
    serde_json::from_slice::<Value>(body).map_err(|err| LlmError::InvalidResponse {
        provider: endpoint.provider,
        message: format!(
            "the body is not JSON ({err}): {}",
            summarize_raw(body, endpoint.secret)
        ),
    })
}

async fn run_stream_attempt<R: StreamReader>(
    endpoint: &Endpoint<'_>,
    request: RequestBuilder,
    mut reader: R,
    on_text: &mut (dyn FnMut(StreamDelta) + Send),
) -> Attempt<R::Output> {
    let mut response = match send(endpoint, request).await {
        Ok(response) => response,
        Err(failed) => return widen(failed),
    };
    let status = response.status();
    let retry_after = retry_after(response.headers());
    if !status.is_success() {
        return match read_body(endpoint, response).await {
            Ok(body) => classify_failure(endpoint, status, retry_after, &body),
            Err(failure) => Attempt::Retryable(failure),
        };
    }
    let is_event_stream = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    if !is_event_stream {
        // A server that ignores `stream: true` answers with the whole message.
        let body = match read_body(endpoint, response).await {
            Ok(body) => body,
            Err(failure) => return Attempt::Retryable(failure),
        };
        if let Ok(value) = serde_json::from_slice::<Value>(&body) {
            return match reader.whole(&value) {
                Ok(output) => Attempt::Done(output),
                Err(err) => Attempt::Fatal(err),
            };
        }
        let mut parser = SseParser::new();
        let mut events = parser.push(&body);
        events.extend(parser.push(b"\n\n"));
        for event in events {
            if let Some(failed) = feed(&mut reader, event, on_text) {
                return failed;
            }
        }
    } else {
        let mut parser = SseParser::new();
        loop {
            match response.chunk().await {
                Ok(Some(bytes)) => {
                    for event in parser.push(&bytes) {
                        if let Some(failed) = feed(&mut reader, event, on_text) {
                            return failed;
                        }
                    }
                }
                Ok(None) => {
                    // A last event without its blank line still counts.
                    for event in parser.push(b"\n\n") {
                        if let Some(failed) = feed(&mut reader, event, on_text) {
                            return failed;
                        }
                    }
                    break;
                }
                // Gemini has no end marker: a break after the finish reason loses nothing.
                Err(_) if reader.is_complete() => break,
                Err(err) => {
                    return Attempt::Retryable(Failure::network(redact(
                        &format!(
                            "the stream was cut off: {}",
                            describe_reqwest_error(err.without_url())
                        ),
                        endpoint.secret,
                    )))
                }
            }
        }
    }
    if !reader.is_complete() {
        return Attempt::Retryable(Failure::network(
            "the stream ended before the answer was complete".to_string(),
        ));
    }
    match reader.finish() {
        Ok(output) => Attempt::Done(output),
        Err(err) => Attempt::Fatal(err),
    }
}

/// Passes one event to the reader; `Some` when the attempt ends with a failure.
fn feed<R: StreamReader>(
    reader: &mut R,
    event: SseEvent,
    on_text: &mut (dyn FnMut(StreamDelta) + Send),
) -> Option<Attempt<R::Output>> {
    match reader.on_event(event, on_text) {
        Ok(()) => None,
        Err(StreamFailure::Retryable(message)) => {
            Some(Attempt::Retryable(Failure::network(message)))
        }
        Err(StreamFailure::Fatal(err)) => Some(Attempt::Fatal(err)),
    }
}

/// An unsuccessful status: authentication failure, retryable, or a request error.
fn classify_failure<T>(
    endpoint: &Endpoint<'_>,
    status: StatusCode,
    retry_after: Option<Duration>,
    body: &[u8],
) -> Attempt<T> {
    let provider = endpoint.provider;
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let message = match &parsed {
        Some(value) => summarize_error_value(value)
            .map(|m| redact(&truncate(&m), endpoint.secret))
            .unwrap_or_else(|| summarize_raw(body, endpoint.secret)),
        None => summarize_raw(body, endpoint.secret),
    };
    let code = status.as_u16();
    let auth_failure = endpoint
        .auth_failure
        .zip(parsed.as_ref())
        .is_some_and(|(check, body)| check(code, body));

    if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) || auth_failure {
        Attempt::Fatal(LlmError::Auth {
            provider,
            status: code,
            message,
        })
    } else if is_retryable_status(code) {
        Attempt::Retryable(Failure {
            status: Some(code),
            message,
            retry_after,
        })
    } else if status.is_client_error() {
        Attempt::Fatal(LlmError::BadRequest {
            provider,
            status: code,
            message,
        })
    } else {
        Attempt::Fatal(LlmError::Unavailable {
            provider,
            status: code,
            attempts: 1,
            message,
        })
    }
}

/// An API key as a sensitive header value (hidden from debug output).
pub(crate) fn secret_header(provider: &'static str, key: &str) -> Result<HeaderValue, LlmError> {
    let mut value = HeaderValue::from_str(key).map_err(|_| LlmError::Auth {
        provider,
        status: 0,
        message: "the API key contains characters that cannot be sent in an HTTP header \
                  (check for spaces, quotes or line breaks)"
            .to_string(),
    })?;
    value.set_sensitive(true);
    Ok(value)
}

/// Statuses that mean "try again later": rate limit, overload, transient server errors.
pub fn is_retryable_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504 | 529)
}

/// Parses `retry-after-ms` (milliseconds) or `Retry-After` (seconds; HTTP dates are ignored).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(ms) = text("retry-after-ms").and_then(|v| v.trim().parse::<f64>().ok()) {
        if ms.is_finite() && ms >= 0.0 {
            return Some(Duration::from_secs_f64(ms / 1000.0));
        }
    }
    let secs = text("retry-after")?.trim().parse::<f64>().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(86_400.0)))
}

/// The human-readable message of a provider error body: `error.message` (Anthropic, OpenAI,
/// Gemini), `error` as a string, or a top-level `message` / `detail`.
pub fn summarize_error_value(body: &Value) -> Option<String> {
    let as_text = |v: &Value| v.as_str().map(str::to_string);
    if let Some(error) = body.get("error") {
        if let Some(message) = error.get("message").and_then(as_text) {
            let kind = error
                .get("type")
                .or_else(|| error.get("status"))
                .and_then(Value::as_str);
            return Some(match kind {
                Some(kind) if !kind.is_empty() => format!("{kind}: {message}"),
                _ => message,
            });
        }
        if let Some(message) = as_text(error) {
            return Some(message);
        }
    }
    body.get("message")
        .and_then(as_text)
        .or_else(|| body.get("detail").and_then(as_text))
}

fn summarize_raw(body: &[u8], secret: Option<&str>) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        "(empty body)".to_string()
    } else {
        redact(&truncate(text), secret)
    }
}

/// Cuts a message to [`MAX_MESSAGE_CHARS`] characters, marking the cut.
pub fn truncate(text: &str) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((cut, _)) => format!("{}…", &one_line[..cut]),
        None => one_line,
    }
}

/// Replaces every occurrence of the secret with `[redacted]`.
pub fn redact(text: &str, secret: Option<&str>) -> String {
    match secret {
        Some(secret) if secret.len() >= 4 => text.replace(secret, "[redacted]"),
        _ => text.to_string(),
    }
}

/// A reqwest error as text without the URL, with its causes (`connection refused`, ...).
fn describe_reqwest_error(err: reqwest::Error) -> String {
    let kind = if err.is_timeout() {
        "the request timed out"
    } else if err.is_connect() {
        "the connection failed"
    } else if err.is_builder() {
        "the request could not be built"
    } else {
        "the request failed"
    };
    let err = err.without_url();
    let mut causes = Vec::new();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !causes.contains(&text) {
            causes.push(text);
        }
        source = cause.source();
    }
    if causes.is_empty() {
        format!("{kind}: {err}")
    } else {
        format!("{kind}: {}", causes.join(": "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;
    use serde_json::json;

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let policy = RetryPolicy {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(350),
            ..RetryPolicy::default()
        };
        for _ in 0..20 {
            let first = policy.delay_before_retry(1, None);
            assert!((50..=100).contains(&first.as_millis()), "{first:?}");
            let second = policy.delay_before_retry(2, None);
            assert!((100..=200).contains(&second.as_millis()), "{second:?}");
            let capped = policy.delay_before_retry(10, None);
            assert!((175..=350).contains(&capped.as_millis()), "{capped:?}");
        }
    }

    #[test]
    fn retry_after_is_honoured_up_to_the_cap() {
        let policy = RetryPolicy {
            max_retry_after: Duration::from_secs(5),
            ..RetryPolicy::default()
        };
        assert_eq!(
            policy.delay_before_retry(1, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
        assert_eq!(
            policy.delay_before_retry(1, Some(Duration::from_secs(120))),
            Duration::from_secs(5)
        );
    }

    #[test]
    fn retry_after_headers_are_parsed() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert("retry-after", HeaderValue::from_static("3"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(3)));
        headers.insert("retry-after-ms", HeaderValue::from_static("250"));
        assert_eq!(retry_after(&headers), Some(Duration::from_millis(250)));
        let mut dated = HeaderMap::new();
        dated.insert(
            "retry-after",
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&dated), None);
        let mut negative = HeaderMap::new();
        negative.insert("retry-after", HeaderValue::from_static("-1"));
        assert_eq!(retry_after(&negative), None);
    }

    #[test]
    fn error_bodies_of_each_provider_are_summarised() {
        let anthropic = json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}});
        assert_eq!(
            summarize_error_value(&anthropic).unwrap(),
            "overloaded_error: Overloaded"
        );
        let gemini = json!({"error": {"code": 400, "message": "API key not valid.", "status": "INVALID_ARGUMENT"}});
        assert_eq!(
            summarize_error_value(&gemini).unwrap(),
            "INVALID_ARGUMENT: API key not valid."
        );
        let openai =
            json!({"error": {"message": "Rate limit reached", "type": "requests", "code": null}});
        assert_eq!(
            summarize_error_value(&openai).unwrap(),
            "requests: Rate limit reached"
        );
        assert_eq!(
            summarize_error_value(&json!({"error": "model not found"})).unwrap(),
            "model not found"
        );
        assert_eq!(
            summarize_error_value(&json!({"detail": "nope"})).unwrap(),
            "nope"
        );
        assert_eq!(summarize_error_value(&json!({"other": 1})), None);
    }

    #[test]
    fn messages_are_truncated_and_secrets_redacted() {
        let long = "x".repeat(1000);
        let cut = truncate(&long);
        assert_eq!(cut.chars().count(), MAX_MESSAGE_CHARS + 1);
        assert!(cut.ends_with('…'));
        assert_eq!(truncate("a\n  b"), "a b");
        assert_eq!(
            redact("bad key sk-secret-1 given", Some("sk-secret-1")),
            "bad key [redacted] given"
        );
        assert_eq!(redact("abc", None), "abc");
    }

    #[test]
    fn retryable_statuses() {
        for status in [429, 500, 502, 503, 504, 529] {
            assert!(is_retryable_status(status), "{status}");
        }
        for status in [400, 401, 403, 404, 422, 501] {
            assert!(!is_retryable_status(status), "{status}");
        }
    }
}
