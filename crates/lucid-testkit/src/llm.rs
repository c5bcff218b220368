//! A scripted LLM server on 127.0.0.1 speaking the real wire format of one provider.
//!
//! Each request consumes the next [`Step`] of the script and gets an answer in the provider's
//! real JSON shape (ids, stop reasons, usage with cached tokens). Paths:
//! - [`Format::Anthropic`]: `POST /v1/messages`
//! - [`Format::Gemini`]: `POST /v1beta/models/{model}:generateContent` and
//!   `:streamGenerateContent?alt=sse`
//! - [`Format::OpenAi`]: `POST /v1/chat/completions` and `POST /chat/completions`
//!
//! Streaming requests (`"stream": true` for Anthropic and OpenAI, `streamGenerateContent` for
//! Gemini) get the answer as server-sent events in the provider's real event format: text in
//! several small deltas, a tool call's JSON arguments split across several deltas (Anthropic
//! `input_json_delta`, OpenAI `tool_calls[].function.arguments` by `index`; Gemini sends calls
//! whole, as Gemini does), usage where the provider puts it. [`Step::thinking`] puts the
//! model's thinking before the answer in the provider's real shape (Anthropic `thinking`
//! block with `thinking_delta` and `signature_delta`; OpenAI-compatible `reasoning_content`
//! deltas as DeepSeek/vLLM send them; Gemini parts with `"thought": true`). [`Step::paced`] waits between
//! events; [`Step::cut_after`] breaks the connection after some events (a stream cut mid-way).
//!
//! Anthropic requests that ask for extended thinking are held to the Messages API's rules
//! (budget at least 1024 and below `max_tokens`; the current turn's first tool-calling answer
//! starts with its thinking block; thinking blocks keep the signature they were given) and refused
//! with a 400 like the API's, consuming no step.
//!
//! Every request is recorded (path with query, headers, JSON body) before it is answered. With
//! [`ScriptedLlm::start_with_key`] a wrong or missing key gets the provider's real
//! authentication error and does not consume a step. When the script is exhausted the server
//! answers with a final text message starting with [`EXHAUSTED_MARKER`].
//!
//! Chat-title requests (a body containing [`TITLE_REQUEST_MARKER`], which the engine's title
//! instructions contain) are answered outside the script and recorded apart from the
//! conversation ([`ScriptedLlm::title_requests`], not in [`ScriptedLlm::recorded`] or
//! [`ScriptedLlm::request_count`]): they run beside the agent, in no fixed order. They get
//! [`DEFAULT_TITLE`] unless [`ScriptedLlm::set_title_answer`] says otherwise.
//!
//! Token usage is deterministic: the prompt counts one token per 4 bytes of the request body,
//! and the previous request's prompt tokens are reported as cached when the prompt grew.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};

/// Text that marks a request for a chat title (part of the engine's title instructions).
pub const TITLE_REQUEST_MARKER: &str = "Write a short title for this chat";

/// What title requests get by default.
pub const DEFAULT_TITLE: &str = "Scripted chat title";

/// Start of the text answered once the script has no steps left.
pub const EXHAUSTED_MARKER: &str = "[scripted LLM] script exhausted";

/// The wire format (and paths) the server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Anthropic,
    Gemini,
    OpenAi,
}

impl Format {
    fn name(self) -> &'static str {
        match self {
            Format::Anthropic => "Anthropic",
            Format::Gemini => "Gemini",
            Format::OpenAi => "OpenAI",
        }
    }

    fn paths(self) -> &'static str {
        match self {
            Format::Anthropic => "POST /v1/messages",
            Format::Gemini => "POST /v1beta/models/{model}:generateContent",
            Format::OpenAi => "POST /v1/chat/completions or POST /chat/completions",
        }
    }
}

/// One scripted answer.
#[derive(Debug, Clone)]
pub enum Step {
    /// A final text answer (`end_turn` / `STOP` / `stop`).
    Text(String),
    /// One tool call (`tool_use` / `STOP` / `tool_calls`).
    ToolCall { name: String, args: Value },
    /// Several tool calls in one answer.
    ToolCalls(Vec<(String, Value)>),
    /// An error status with a JSON body (see [`Step::provider_error`] for real shapes).
    HttpError { status: u16, body: Value },
    /// Any status, headers and raw body (malformed JSON, `Retry-After`, ...).
    Raw {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    },
    /// Never answers; the request stays open until the client goes away.
    Hang,
    /// Waits, then answers with the inner step.
    Delay(Duration, Box<Step>),
    /// Text followed by tool calls in one answer.
    TextAndTools(String, Vec<(String, Value)>),
    /// The inner step streamed with this pause before each event after the first.
    Paced(Duration, Box<Step>),
    /// The inner step with its body cut after this many events (streams) or half its bytes
    /// (whole JSON answers): the connection breaks without the answer's end.
    CutAfter(usize, Box<Step>),
    /// The inner step reporting exactly this usage instead of the computed one.
    WithUsage(ScriptedUsage, Box<Step>),
    /// The inner step preceded by the model's thinking (see the module docs).
    Thinking(String, Box<Step>),
}

/// Token counts a step reports, in the provider's fields: Anthropic `input_tokens`,
/// `cache_read_input_tokens`, `cache_creation_input_tokens`, `output_tokens`; OpenAI
/// `prompt_tokens` = input + cache_read, `cached_tokens` = cache_read; Gemini
/// `promptTokenCount` = input + cache_read, `cachedContentTokenCount` = cache_read (OpenAI and
/// Gemini have no cache writes: `cache_write` counts as plain input there).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScriptedUsage {
    /// Input tokens neither read from nor written to the cache.
    pub input: u64,
    pub output: u64,
    pub cache_read: u64,
    pub cache_write: u64,
}

impl Step {
    pub fn text(text: impl Into<String>) -> Self {
        Step::Text(text.into())
    }

    pub fn tool_call(name: impl Into<String>, args: Value) -> Self {
        Step::ToolCall {
            name: name.into(),
            args,
        }
    }

    /// An error with the provider's real error body shape for `status`.
    pub fn provider_error(format: Format, status: u16, message: &str) -> Self {
        Step::HttpError {
            status,
            body: error_body(format, status, message),
        }
    }

    /// This step streamed with `pause` before each event after the first.
    pub fn paced(self, pause: Duration) -> Self {
        Step::Paced(pause, Box::new(self))
    }

    /// This step with its body cut after `events` events (see [`Step::CutAfter`]).
    pub fn cut_after(self, events: usize) -> Self {
        Step::CutAfter(events, Box::new(self))
    }

    /// This step preceded by the model's thinking `text`.
    pub fn thinking(self, text: impl Into<String>) -> Self {
        Step::Thinking(text.into(), Box::new(self))
    }

    /// This step reporting exactly `usage`.
    pub fn with_usage(self, usage: ScriptedUsage) -> Self {
        Step::WithUsage(usage, Box::new(self))
    }

    /// A provider error with a `Retry-After` header (seconds).
    pub fn retry_after(format: Format, status: u16, seconds: u32) -> Self {
        Step::Raw {
            status,
            headers: vec![("retry-after".into(), seconds.to_string())],
            body: error_body(format, status, "Please retry later.").to_string(),
        }
    }
}

/// The provider's real error body for `status`.
pub fn error_body(format: Format, status: u16, message: &str) -> Value {
    match format {
        Format::Anthropic => {
            let kind = match status {
                400 => "invalid_request_error",
                401 => "authentication_error",
                403 => "permission_error",
                404 => "not_found_error",
                413 => "request_too_large",
                429 => "rate_limit_error",
                529 => "overloaded_error",
                _ => "api_error",
            };
            json!({"type": "error", "error": {"type": kind, "message": message},
                   "request_id": "req_scripted"})
        }
        Format::Gemini => {
            let kind = match status {
                400 => "INVALID_ARGUMENT",
                401 => "UNAUTHENTICATED",
                403 => "PERMISSION_DENIED",
                404 => "NOT_FOUND",
                429 => "RESOURCE_EXHAUSTED",
                503 => "UNAVAILABLE",
                504 => "DEADLINE_EXCEEDED",
                _ => "INTERNAL",
            };
            json!({"error": {"code": status, "message": message, "status": kind}})
        }
        Format::OpenAi => {
            let (kind, code) = match status {
                401 => ("invalid_request_error", json!("invalid_api_key")),
                404 => ("invalid_request_error", json!("model_not_found")),
                429 => ("requests", json!("rate_limit_exceeded")),
                400..=499 => ("invalid_request_error", Value::Null),
                _ => ("server_error", Value::Null),
            };
            json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
        }
    }
}

/// What the server saw of one request.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    /// Path and query string, exactly as received.
    pub path_and_query: String,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body as JSON (a JSON string holding the raw text when it is not JSON).
    pub body: Value,
}

impl RecordedRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

struct Script {
    steps: VecDeque<Step>,
    requests: Vec<RecordedRequest>,
    /// Steps consumed so far (answers numbered from 1).
    answered: usize,
    /// Prompt tokens of the previous answered request, reported as cached next time.
    previous_prompt_tokens: u64,
    /// Requests whose body contains the needle get this text, outside the script.
    side_answers: Vec<(String, String)>,
    /// Chat-title requests received, and what they get.
    title_requests: Vec<RecordedRequest>,
    title_answer: Step,
}

struct Shared {
    format: Format,
    api_key: Option<String>,
    script: Mutex<Script>,
    open: AtomicUsize,
}

/// A running scripted server; stops when dropped.
pub struct ScriptedLlm {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl ScriptedLlm {
    /// Starts a server on 127.0.0.1 (a free port) that accepts any key.
    pub async fn start(format: Format, steps: Vec<Step>) -> Self {
        Self::launch(format, steps, None).await
    }

    /// Starts a server that accepts only `api_key` (in the provider's header) and answers
    /// anything else with the provider's real authentication error.
    pub async fn start_with_key(format: Format, steps: Vec<Step>, api_key: &str) -> Self {
        Self::launch(format, steps, Some(api_key.to_string())).await
    }

    async fn launch(format: Format, steps: Vec<Step>, api_key: Option<String>) -> Self {
        let shared = Arc::new(Shared {
            format,
            api_key,
            script: Mutex::new(Script {
                steps: steps.into(),
                requests: Vec::new(),
                answered: 0,
                previous_prompt_tokens: 0,
                side_answers: Vec::new(),
                title_requests: Vec::new(),
                title_answer: Step::text(DEFAULT_TITLE),
            }),
            open: AtomicUsize::new(0),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the scripted LLM server on 127.0.0.1");
        let addr = listener
            .local_addr()
            .expect("local address of the listener");
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let task = tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, app).await {
                tracing::error!("scripted LLM server stopped: {err}");
            }
        });
        Self { addr, shared, task }
    }

    /// What to put in `ANTHROPIC_BASE_URL` / `GOOGLE_BASE_URL` / `LLM_BASE_URL`
    /// (`http://127.0.0.1:PORT`, plus `/v1` for the OpenAI format).
    pub fn base_url(&self) -> String {
        match self.shared.format {
            Format::OpenAi => format!("http://{}/v1", self.addr),
            Format::Anthropic | Format::Gemini => format!("http://{}", self.addr),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn format(&self) -> Format {
        self.shared.format
    }

    /// Every request received so far, in order.
    pub fn recorded(&self) -> Vec<RecordedRequest> {
        self.script().requests.clone()
    }

    /// The JSON bodies of the requests received so far.
    pub fn requests(&self) -> Vec<Value> {
        self.script()
            .requests
            .iter()
            .map(|r| r.body.clone())
            .collect()
    }

    /// The headers of the requests received so far (names in lower case).
    pub fn request_headers(&self) -> Vec<Vec<(String, String)>> {
        self.script()
            .requests
            .iter()
            .map(|r| r.headers.clone())
            .collect()
    }

    /// Path and query of the requests received so far.
    pub fn request_paths(&self) -> Vec<String> {
        self.script()
            .requests
            .iter()
            .map(|r| r.path_and_query.clone())
            .collect()
    }

    pub fn request_count(&self) -> usize {
        self.script().requests.len()
    }

    /// Requests whose answer is still pending (e.g. [`Step::Hang`]); drops to zero once the
    /// clients went away.
    pub fn open_requests(&self) -> usize {
        self.shared.open.load(Ordering::SeqCst)
    }

    /// Steps not yet consumed.
    pub fn remaining_steps(&self) -> usize {
        self.script().steps.len()
    }

    /// Answers every request whose body contains `needle` with `text` (streamed when asked
    /// for), without consuming a step of the script: for requests made besides the main
    /// conversation, such as history summaries.
    pub fn answer_requests_containing(&self, needle: &str, text: &str) {
        self.script()
            .side_answers
            .push((needle.to_string(), text.to_string()));
    }

    /// What chat-title requests get from now on (any step: a text, an error, a delay...).
    pub fn set_title_answer(&self, step: Step) {
        self.script().title_answer = step;
    }

    /// The chat-title requests received so far (kept apart from [`ScriptedLlm::recorded`]).
    pub fn title_requests(&self) -> Vec<RecordedRequest> {
        self.script().title_requests.clone()
    }

    /// Appends steps to the script.
    pub fn push_steps(&self, steps: impl IntoIterator<Item = Step>) {
        self.script().steps.extend(steps);
    }

    fn script(&self) -> std::sync::MutexGuard<'_, Script> {
        self.shared
            .script
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for ScriptedLlm {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Counts a request as open for as long as its handler runs.
struct OpenGuard(Arc<Shared>);

impl OpenGuard {
    fn new(shared: Arc<Shared>) -> Self {
        shared.open.fetch_add(1, Ordering::SeqCst);
        Self(shared)
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let open = OpenGuard::new(shared.clone());
    let format = shared.format;
    let body_json = serde_json::from_slice::<Value>(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    let recorded = RecordedRequest {
        method: method.to_string(),
        path_and_query: uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| uri.path().to_string()),
        headers: headers
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_ascii_lowercase(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body_json.clone(),
    };
    let is_title = String::from_utf8_lossy(&body).contains(TITLE_REQUEST_MARKER);
    if is_title {
        lock(&shared).title_requests.push(recorded);
    } else {
        lock(&shared).requests.push(recorded);
    }

    let Some((model, streaming)) = route(format, &method, uri.path(), &body_json) else {
        let message = format!(
            "this scripted LLM speaks the {} format: {} (got {} {})",
            format.name(),
            format.paths(),
            method,
            uri.path()
        );
        return json_response(404, &error_body(format, 404, &message), &[]);
    };

    if let Some(expected) = &shared.api_key {
        if presented_key(format, &headers).as_deref() != Some(expected.as_str()) {
            return auth_failure(format);
        }
    }
    if format == Format::Anthropic {
        if let Err(message) = check_anthropic_thinking(&body_json) {
            return json_response(400, &error_body(format, 400, &message), &[]);
        }
    }

    if is_title {
        let step = lock(&shared).title_answer.clone();
        let mode = Mode {
            streaming,
            cacheable: false,
            include_usage: true,
        };
        return answer(
            format,
            step,
            &model,
            0,
            (prompt_tokens(&body), 0),
            mode,
            open,
        )
        .await;
    }
    let side = {
        let text = String::from_utf8_lossy(&body);
        lock(&shared)
            .side_answers
            .iter()
            .find(|(needle, _)| text.contains(needle.as_str()))
            .map(|(_, answer)| answer.clone())
    };
    if let Some(answer) = side {
        let prompt = prompt_tokens(&body);
        let mode = Mode {
            streaming,
            cacheable: format != Format::Anthropic
                || String::from_utf8_lossy(&body).contains("cache_control"),
            include_usage: true,
        };
        return self::answer(
            format,
            Step::Text(answer),
            &model,
            0,
            (prompt, 0),
            mode,
            open,
        )
        .await;
    }

    let (step, number, cached) = {
        let mut script = lock(&shared);
        script.answered += 1;
        let number = script.answered;
        let step = script.steps.pop_front();
        let prompt = prompt_tokens(&body);
        let cached = if script.previous_prompt_tokens <= prompt {
            script.previous_prompt_tokens
        } else {
            0
        };
        script.previous_prompt_tokens = prompt;
        let step = step.unwrap_or_else(|| {
            Step::Text(format!(
                "{EXHAUSTED_MARKER}: request #{number} arrived but only {} steps were scripted",
                number - 1
            ))
        });
        (step, number, (prompt, cached))
    };
    let include_usage = body_json["stream_options"]["include_usage"] == json!(true);
    let mode = Mode {
        streaming,
        cacheable: format != Format::Anthropic || body_json.to_string().contains("cache_control"),
        include_usage: format != Format::OpenAi || include_usage,
    };
    answer(format, step, &model, number, cached, mode, open).await
}

/// How the request wants its answer.
#[derive(Debug, Clone, Copy)]
struct Mode {
    streaming: bool,
    /// Anthropic: the request marks a prefix for caching (else nothing is written or read).
    cacheable: bool,
    /// OpenAI sends the usage chunk only with `stream_options.include_usage`.
    include_usage: bool,
}

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, Script> {
    shared
        .script
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The model named by the request and whether it asks for a stream, when method and path fit
/// the format.
fn route(format: Format, method: &Method, path: &str, body: &Value) -> Option<(String, bool)> {
    if method != Method::POST {
        return None;
    }
    let body_model = || {
        body.get("model")
            .and_then(Value::as_str)
            .unwrap_or("scripted-model")
            .to_string()
    };
    let wants_stream = body.get("stream") == Some(&Value::Bool(true));
    match format {
        Format::Anthropic => (path == "/v1/messages").then(|| (body_model(), wants_stream)),
        Format::OpenAi => matches!(path, "/v1/chat/completions" | "/chat/completions")
            .then(|| (body_model(), wants_stream)),
        Format::Gemini => {
            let rest = path.strip_prefix("/v1beta/models/")?;
            let (model, action) = rest.rsplit_once(':')?;
            let streaming = match action {
                "generateContent" => false,
                "streamGenerateContent" => true,
                _ => return None,
            };
            (!model.is_empty()).then(|| (model.to_string(), streaming))
        }
    }
}

/// Anthropic's rules for extended thinking, as the Messages API enforces them (a refused
/// request consumes no step): `budget_tokens` at least 1024 and below `max_tokens`; the current
/// turn's first tool-calling answer starts with its thinking block(s); a thinking block
/// sent back carries the signature it was given.
fn check_anthropic_thinking(body: &Value) -> Result<(), String> {
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for (i, message) in messages.iter().enumerate() {
        for (j, block) in message["content"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            if block["type"] == "thinking" && block["signature"] != SCRIPTED_SIGNATURE {
                return Err(format!(
                    "messages.{i}.content.{j}: Invalid `signature` in `thinking` block"
                ));
            }
        }
    }
    let Some(thinking) = body.get("thinking").filter(|t| t["type"] == "enabled") else {
        return Ok(());
    };
    let budget = thinking["budget_tokens"].as_u64().unwrap_or(0);
    if budget < 1024 {
        return Err(
            "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024".into(),
        );
    }
    if budget >= body["max_tokens"].as_u64().unwrap_or(0) {
        return Err("`max_tokens` must be greater than `thinking.budget_tokens`".into());
    }
    // The current assistant turn starts after the user's last own message (not a message of
    // tool results); its first tool-calling answer must start with its thinking.
    let is_tool_results = |m: &Value| {
        m["content"].as_array().is_some_and(|blocks| {
            !blocks.is_empty() && blocks.iter().all(|b| b["type"] == "tool_result")
        })
    };
    let turn_start = messages
        .iter()
        .rposition(|m| m["role"] == "user" && !is_tool_results(m))
        .map_or(0, |i| i + 1);
    let first_tool_answer = messages.iter().enumerate().skip(turn_start).find(|(_, m)| {
        m["role"] == "assistant"
            && m["content"]
                .as_array()
                .is_some_and(|b| b.iter().any(|b| b["type"] == "tool_use"))
    });
    if let Some((i, message)) = first_tool_answer {
        let first = message["content"][0]["type"].clone();
        if first != "thinking" && first != "redacted_thinking" {
            return Err(format!(
                "messages.{i}.content.0.type: Expected `thinking` or `redacted_thinking`, but found {first}. When `thinking` is enabled, a final `assistant` message must start with a thinking block (preceeding the lastmost set of `tool_use` and `tool_result` blocks). We recommend you include thinking blocks from previous turns. To avoid this requirement, disable `thinking`."
            ));
        }
    }
    Ok(())
}

fn presented_key(format: Format, headers: &HeaderMap) -> Option<String> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    match format {
        Format::Anthropic => header("x-api-key"),
        Format::Gemini => header("x-goog-api-key"),
        Format::OpenAi => {
            header("authorization").and_then(|v| v.strip_prefix("Bearer ").map(str::to_string))
        }
    }
}

/// The provider's real answer to a wrong or missing key.
fn auth_failure(format: Format) -> Response {
    match format {
        Format::Anthropic => json_response(401, &error_body(format, 401, "invalid x-api-key"), &[]),
        Format::Gemini => json_response(
            400,
            &json!({"error": {
                "code": 400,
                "message": "API key not valid. Please pass a valid API key.",
                "status": "INVALID_ARGUMENT",
                "details": [{
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "API_KEY_INVALID",
                    "domain": "googleapis.com",
                    "metadata": {"service": "generativelanguage.googleapis.com"},
                }],
            }}),
            &[],
        ),
        Format::OpenAi => json_response(
            401,
            &error_body(
                format,
                401,
                "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.",
            ),
            &[],
        ),
    }
}

fn prompt_tokens(body: &[u8]) -> u64 {
    (body.len() as u64 / 4).max(1)
}

fn output_tokens(content: &Value) -> u64 {
    (content.to_string().len() as u64 / 4).max(1)
}

/// What a successful step answers.
struct Answer {
    text: Option<String>,
    calls: Vec<(String, Value)>,
    thinking: Option<String>,
}

async fn answer(
    format: Format,
    step: Step,
    model: &str,
    number: usize,
    tokens: (u64, u64),
    mode: Mode,
    open: OpenGuard,
) -> Response {
    let mut step = step;
    let mut pace = Duration::ZERO;
    let mut cut = None;
    let mut usage = None;
    let mut thinking = None;
    let mut answer = loop {
        match step {
            Step::Delay(wait, inner) => {
                tokio::time::sleep(wait).await;
                step = *inner;
            }
            Step::Paced(wait, inner) => {
                pace = wait;
                step = *inner;
            }
            Step::CutAfter(events, inner) => {
                cut = Some(events);
                step = *inner;
            }
            Step::WithUsage(counts, inner) => {
                usage = Some(counts);
                step = *inner;
            }
            Step::Thinking(text, inner) => {
                thinking = Some(text);
                step = *inner;
            }
            Step::Hang => return std::future::pending::<Response>().await,
            Step::HttpError { status, body } => return json_response(status, &body, &[]),
            Step::Raw {
                status,
                headers,
                body,
            } => return raw_response(status, &headers, body),
            Step::Text(text) => {
                break Answer {
                    text: Some(text),
                    calls: Vec::new(),
                    thinking: None,
                }
            }
            Step::ToolCall { name, args } => {
                break Answer {
                    text: None,
                    calls: vec![(name, args)],
                    thinking: None,
                }
            }
            Step::ToolCalls(calls) => {
                break Answer {
                    text: None,
                    calls,
                    thinking: None,
                }
            }
            Step::TextAndTools(text, calls) => {
                break Answer {
                    text: Some(text),
                    calls,
                    thinking: None,
                }
            }
        }
    };
    answer.thinking = thinking;
    let counts = usage.unwrap_or_else(|| computed_usage(format, &answer, tokens, mode.cacheable));
    if mode.streaming {
        let events = stream_events(format, &answer, model, number, counts, mode);
        return event_stream_response(events, pace, cut, open);
    }
    let body = success(format, &answer, model, number, counts);
    if cut.is_none() {
        return json_response(200, &body, &[]);
    }
    // Half of the JSON (ASCII-escaped by serde_json only where needed: cut at a boundary).
    let text = body.to_string();
    let mut half = text.len() / 2;
    while !text.is_char_boundary(half) {
        half -= 1;
    }
    event_stream_like_cut(
        "application/json",
        vec![text[..half].to_string(), String::new()],
        Duration::ZERO,
        Some(1),
        open,
    )
}

/// The usage the server reports when the step does not fix it: the prompt counts one token per
/// 4 bytes of the request body, the previous request's prompt is a cache read when the prompt
/// grew, and (Anthropic) all but 8 of the remaining prompt tokens are cache writes; an
/// Anthropic request without `cache_control` reads and writes no cache.
fn computed_usage(
    format: Format,
    answer: &Answer,
    (prompt, cached): (u64, u64),
    cacheable: bool,
) -> ScriptedUsage {
    let output = output_tokens(&json!([answer.text, answer.calls]));
    match format {
        Format::Anthropic if !cacheable => ScriptedUsage {
            input: prompt,
            output,
            cache_read: 0,
            cache_write: 0,
        },
        Format::Anthropic => {
            let fresh = (prompt - cached).min(8);
            ScriptedUsage {
                input: fresh,
                output,
                cache_read: cached,
                cache_write: prompt - cached - fresh,
            }
        }
        Format::Gemini | Format::OpenAi => ScriptedUsage {
            input: prompt - cached,
            output,
            cache_read: cached,
            cache_write: 0,
        },
    }
}

/// The usage object in the provider's shape.
fn usage_value(format: Format, u: ScriptedUsage) -> Value {
    let prompt = u.input + u.cache_read + u.cache_write;
    match format {
        Format::Anthropic => json!({
            "input_tokens": u.input,
            "cache_creation_input_tokens": u.cache_write,
            "cache_read_input_tokens": u.cache_read,
            "output_tokens": u.output,
        }),
        Format::Gemini => {
            let mut usage = json!({
                "promptTokenCount": prompt,
                "candidatesTokenCount": u.output,
                "totalTokenCount": prompt + u.output,
            });
            if u.cache_read > 0 {
                usage["cachedContentTokenCount"] = json!(u.cache_read);
            }
            usage
        }
        Format::OpenAi => json!({
            "prompt_tokens": prompt,
            "completion_tokens": u.output,
            "total_tokens": prompt + u.output,
            "prompt_tokens_details": {"cached_tokens": u.cache_read, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0},
        }),
    }
}

/// Splits `text` into pieces of about `size` bytes (at character boundaries), at least `min`
/// pieces when the text has that many characters.
fn pieces(text: &str, size: usize, min: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    if chars.is_empty() {
        return Vec::new();
    }
    let by_size = text.len().div_ceil(size.max(1));
    let count = by_size.max(min).min(chars.len()).max(1);
    let per = chars.len().div_ceil(count);
    chars.chunks(per).map(|c| c.iter().collect()).collect()
}

/// The signature of scripted Anthropic thinking blocks (opaque to clients).
const SCRIPTED_SIGNATURE: &str = "c2NyaXB0ZWQtc2lnbmF0dXJl";

/// Text deltas: a few words each.
const TEXT_PIECE_BYTES: usize = 12;

/// The SSE events (`event:` name, JSON data) of a streamed answer.
fn stream_events(
    format: Format,
    answer: &Answer,
    model: &str,
    number: usize,
    u: ScriptedUsage,
    mode: Mode,
) -> Vec<(Option<&'static str>, String)> {
    let mut events: Vec<(Option<&'static str>, String)> = Vec::new();
    let text_pieces = answer
        .text
        .as_deref()
        .map(|t| pieces(t, TEXT_PIECE_BYTES, 2))
        .unwrap_or_default();
    match format {
        Format::Anthropic => {
            let mut push = |name: &'static str, data: Value| {
                events.push((Some(name), data.to_string()));
            };
            push(
                "message_start",
                json!({"type": "message_start", "message": {
                    "id": format!("msg_scripted_{number}"), "type": "message", "role": "assistant",
                    "model": model, "content": [], "stop_reason": null, "stop_sequence": null,
                    "usage": {"input_tokens": u.input, "cache_creation_input_tokens": u.cache_write,
                              "cache_read_input_tokens": u.cache_read, "output_tokens": 1},
                }}),
            );
            let mut index = 0;
            if let Some(thinking) = &answer.thinking {
                push(
                    "content_block_start",
                    json!({"type": "content_block_start", "index": index,
                           "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
                );
                for piece in pieces(thinking, TEXT_PIECE_BYTES, 2) {
                    push(
                        "content_block_delta",
                        json!({"type": "content_block_delta", "index": index,
                               "delta": {"type": "thinking_delta", "thinking": piece}}),
                    );
                }
                push(
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": index,
                           "delta": {"type": "signature_delta", "signature": SCRIPTED_SIGNATURE}}),
                );
                push(
                    "content_block_stop",
                    json!({"type": "content_block_stop", "index": index}),
                );
                index += 1;
            }
            if !text_pieces.is_empty() {
                push(
                    "content_block_start",
                    json!({"type": "content_block_start", "index": index,
                           "content_block": {"type": "text", "text": ""}}),
                );
                push("ping", json!({"type": "ping"}));
                for piece in &text_pieces {
                    push(
                        "content_block_delta",
                        json!({"type": "content_block_delta", "index": index,
                               "delta": {"type": "text_delta", "text": piece}}),
                    );
                }
                push(
                    "content_block_stop",
                    json!({"type": "content_block_stop", "index": index}),
                );
                index += 1;
            }
            for (i, (name, args)) in answer.calls.iter().enumerate() {
                push(
                    "content_block_start",
                    json!({"type": "content_block_start", "index": index, "content_block": {
                        "type": "tool_use", "id": format!("toolu_scripted_{number}_{i}"),
                        "name": name, "input": {}}}),
                );
                push(
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": index,
                           "delta": {"type": "input_json_delta", "partial_json": ""}}),
                );
                for piece in pieces(&args.to_string(), 16, 3) {
                    push(
                        "content_block_delta",
                        json!({"type": "content_block_delta", "index": index,
                               "delta": {"type": "input_json_delta", "partial_json": piece}}),
                    );
                }
                push(
                    "content_block_stop",
                    json!({"type": "content_block_stop", "index": index}),
                );
                index += 1;
            }
            push(
                "message_delta",
                json!({"type": "message_delta",
                       "delta": {"stop_reason": if answer.calls.is_empty() { "end_turn" } else { "tool_use" },
                                 "stop_sequence": null},
                       "usage": {"output_tokens": u.output}}),
            );
            push("message_stop", json!({"type": "message_stop"}));
        }
        Format::OpenAi => {
            let chunk = |delta: Value, finish: Value| {
                json!({
                    "id": format!("chatcmpl-scripted-{number}"),
                    "object": "chat.completion.chunk",
                    "created": 1_700_000_000 + number as u64,
                    "model": model,
                    "choices": [{"index": 0, "delta": delta, "logprobs": null,
                                 "finish_reason": finish}],
                    "usage": null,
                })
                .to_string()
            };
            events.push((
                None,
                chunk(
                    json!({"role": "assistant", "content": "", "refusal": null}),
                    Value::Null,
                ),
            ));
            if let Some(thinking) = &answer.thinking {
                for piece in pieces(thinking, TEXT_PIECE_BYTES, 2) {
                    events.push((
                        None,
                        chunk(json!({"reasoning_content": piece}), Value::Null),
                    ));
                }
            }
            for piece in &text_pieces {
                events.push((None, chunk(json!({"content": piece}), Value::Null)));
            }
            for (i, (name, args)) in answer.calls.iter().enumerate() {
                events.push((
                    None,
                    chunk(
                        json!({"tool_calls": [{"index": i, "id": format!("call_scripted_{number}_{i}"),
                               "type": "function", "function": {"name": name, "arguments": ""}}]}),
                        Value::Null,
                    ),
                ));
                for piece in pieces(&args.to_string(), 16, 3) {
                    events.push((
                        None,
                        chunk(
                            json!({"tool_calls": [{"index": i, "function": {"arguments": piece}}]}),
                            Value::Null,
                        ),
                    ));
                }
            }
            let finish = if answer.calls.is_empty() {
                "stop"
            } else {
                "tool_calls"
            };
            events.push((None, chunk(json!({}), json!(finish))));
            if mode.include_usage {
                events.push((
                    None,
                    json!({
                        "id": format!("chatcmpl-scripted-{number}"),
                        "object": "chat.completion.chunk",
                        "created": 1_700_000_000 + number as u64,
                        "model": model,
                        "choices": [],
                        "usage": usage_value(format, u),
                    })
                    .to_string(),
                ));
            }
            events.push((None, "[DONE]".to_string()));
        }
        Format::Gemini => {
            let mut parts: Vec<Value> = answer
                .thinking
                .as_deref()
                .map(|t| pieces(t, TEXT_PIECE_BYTES, 2))
                .unwrap_or_default()
                .into_iter()
                .map(|p| json!({"text": p, "thought": true}))
                .collect();
            parts.extend(text_pieces.iter().map(|p| json!({"text": p})));
            for (name, args) in &answer.calls {
                parts.push(json!({"functionCall": {"name": name, "args": args}}));
            }
            if parts.is_empty() {
                parts.push(json!({"text": ""}));
            }
            let last = parts.len() - 1;
            let prompt = u.input + u.cache_read + u.cache_write;
            for (i, part) in parts.into_iter().enumerate() {
                let mut candidate =
                    json!({"content": {"parts": [part], "role": "model"}, "index": 0});
                let usage = if i == last {
                    candidate["finishReason"] = json!("STOP");
                    usage_value(format, u)
                } else {
                    json!({"promptTokenCount": prompt, "totalTokenCount": prompt})
                };
                events.push((
                    None,
                    json!({"candidates": [candidate], "usageMetadata": usage,
                           "modelVersion": model, "responseId": format!("scripted-{number}")})
                    .to_string(),
                ));
            }
        }
    }
    events
}

/// A `text/event-stream` answer sending `events` with `pace` between them, broken after
/// `cut` events. The open-request guard lives as long as the body.
fn event_stream_response(
    events: Vec<(Option<&'static str>, String)>,
    pace: Duration,
    cut: Option<usize>,
    open: OpenGuard,
) -> Response {
    let frames = events
        .into_iter()
        .map(|(name, data)| match name {
            Some(name) => format!("event: {name}\ndata: {data}\n\n"),
            None => format!("data: {data}\n\n"),
        })
        .collect();
    event_stream_like_cut("text/event-stream", frames, pace, cut, open)
}

/// A chunked 200 answer sending `frames` (the first at once, then one per `pace`); after
/// `cut` frames the body fails, which breaks the connection mid-answer.
fn event_stream_like_cut(
    content_type: &str,
    frames: Vec<String>,
    pace: Duration,
    cut: Option<usize>,
    open: OpenGuard,
) -> Response {
    let limit = cut.unwrap_or(usize::MAX);
    let state = (frames.into_iter().enumerate(), open, limit);
    let body = futures::stream::unfold(state, move |(mut frames, open, limit)| async move {
        let (index, frame) = match frames.next() {
            Some(next) => next,
            None => return None,
        };
        if index >= limit {
            // Let what was sent reach the client first, then break the connection.
            tokio::time::sleep(Duration::from_millis(50)).await;
            return Some((
                Err(std::io::Error::other("scripted cut")),
                (Vec::new().into_iter().enumerate(), open, 0),
            ));
        }
        if index > 0 && !pace.is_zero() {
            tokio::time::sleep(pace).await;
        }
        Some((Ok(Bytes::from(frame)), (frames, open, limit)))
    });
    let mut response = Response::new(axum::body::Body::from_stream(body));
    if let Ok(value) = axum::http::HeaderValue::from_str(content_type) {
        response
            .headers_mut()
            .insert(axum::http::header::CONTENT_TYPE, value);
    }
    response.headers_mut().insert(
        "cache-control",
        axum::http::HeaderValue::from_static("no-cache"),
    );
    response
}

/// A successful answer in the provider's real shape.
fn success(format: Format, answer: &Answer, model: &str, number: usize, u: ScriptedUsage) -> Value {
    let text = answer.text.clone();
    let calls = &answer.calls;
    match format {
        Format::Anthropic => {
            let mut content: Vec<Value> = Vec::new();
            if let Some(thinking) = &answer.thinking {
                content.push(
                    json!({"type": "thinking", "thinking": thinking, "signature": SCRIPTED_SIGNATURE}),
                );
            }
            if let Some(text) = text {
                content.push(json!({"type": "text", "text": text}));
            }
            for (i, (name, args)) in calls.iter().enumerate() {
                content.push(json!({
                    "type": "tool_use",
                    "id": format!("toolu_scripted_{number}_{i}"),
                    "name": name,
                    "input": args,
                }));
            }
            json!({
                "id": format!("msg_scripted_{number}"),
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": content,
                "stop_reason": if calls.is_empty() { "end_turn" } else { "tool_use" },
                "stop_sequence": null,
                "usage": usage_value(format, u),
            })
        }
        Format::Gemini => {
            let mut parts: Vec<Value> = Vec::new();
            if let Some(thinking) = &answer.thinking {
                parts.push(json!({"text": thinking, "thought": true}));
            }
            if let Some(text) = text {
                parts.push(json!({"text": text}));
            }
            for (name, args) in calls {
                parts.push(json!({"functionCall": {"name": name, "args": args}}));
            }
            json!({
                "candidates": [{
                    "content": {"role": "model", "parts": parts},
                    "finishReason": "STOP",
                    "index": 0,
                }],
                "usageMetadata": usage_value(format, u),
                "modelVersion": model,
                "responseId": format!("scripted-{number}"),
            })
        }
        Format::OpenAi => {
            let tool_calls: Vec<Value> = calls
                .iter()
                .enumerate()
                .map(|(i, (name, args))| {
                    json!({
                        "id": format!("call_scripted_{number}_{i}"),
                        "type": "function",
                        "function": {"name": name, "arguments": args.to_string()},
                    })
                })
                .collect();
            let mut message = json!({"role": "assistant", "content": text, "refusal": null});
            if let Some(thinking) = &answer.thinking {
                message["reasoning_content"] = json!(thinking);
            }
            if !tool_calls.is_empty() {
                message["tool_calls"] = Value::Array(tool_calls);
            }
            json!({
                "id": format!("chatcmpl-scripted-{number}"),
                "object": "chat.completion",
                "created": 1_700_000_000 + number as u64,
                "model": model,
                "choices": [{
                    "index": 0,
                    "message": message,
                    "logprobs": null,
                    "finish_reason": if calls.is_empty() { "stop" } else { "tool_calls" },
                }],
                "usage": usage_value(format, u),
            })
        }
    }
}

fn json_response(status: u16, body: &Value, headers: &[(String, String)]) -> Response {
    let mut all = vec![("content-type".to_string(), "application/json".to_string())];
    all.extend_from_slice(headers);
    raw_response(status, &all, body.to_string())
}

fn raw_response(status: u16, headers: &[(String, String)], body: String) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, body).into_response();
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) = (
            axum::http::HeaderName::from_bytes(name.as_bytes()),
            axum::http::HeaderValue::from_str(value),
        ) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn post(url: &str, body: &str, headers: &[(&str, &str)]) -> (u16, Value) {
        let (status, text) = post_raw(url, body, headers).await;
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Status and raw body (chunked framing left in).
    async fn post_raw(url: &str, body: &str, headers: &[(&str, &str)]) -> (u16, String) {
        // A minimal HTTP/1.1 client over a TCP socket keeps the testkit free of reqwest.
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let url = url.strip_prefix("http://").unwrap();
        let (host, path) = url.split_once('/').unwrap();
        let mut stream = tokio::net::TcpStream::connect(host).await.unwrap();
        let mut request = format!(
            "POST /{path} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
            body.len()
        );
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        request.push_str(body);
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.unwrap();
        let text = String::from_utf8(raw).unwrap();
        let status: u16 = text[9..12].parse().unwrap();
        let body = text.split_once("\r\n\r\n").unwrap().1;
        (status, body.to_string())
    }

    #[tokio::test]
    async fn streams_split_tool_arguments_across_several_deltas() {
        let args = json!({"command": "echo one two three four five"});
        for (format, path, body, marker) in [
            (
                Format::Anthropic,
                "/v1/messages",
                r#"{"model":"m","stream":true}"#,
                "\"input_json_delta\"",
            ),
            (
                Format::OpenAi,
                "/chat/completions",
                r#"{"model":"m","stream":true,"stream_options":{"include_usage":true}}"#,
                "\"arguments\":\"",
            ),
        ] {
            let llm =
                ScriptedLlm::start(format, vec![Step::tool_call("execute_bash", args.clone())])
                    .await;
            let (status, raw) = post_raw(
                &format!("{}{path}", llm.base_url().trim_end_matches("/v1")),
                body,
                &[],
            )
            .await;
            assert_eq!(status, 200);
            // Non-empty argument fragments, in order, make up the arguments.
            let fragments: Vec<String> = raw
                .lines()
                .filter_map(|l| l.strip_prefix("data: "))
                .filter(|d| d.contains(marker))
                .filter_map(|d| serde_json::from_str::<Value>(d).ok())
                .filter_map(|v| {
                    v["delta"]["partial_json"]
                        .as_str()
                        .or(
                            v["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
                                .as_str(),
                        )
                        .map(str::to_string)
                })
                .filter(|f| !f.is_empty())
                .collect();
            assert!(fragments.len() >= 3, "{format:?}: {fragments:?}");
            let joined: Value = serde_json::from_str(&fragments.concat()).unwrap();
            assert_eq!(joined, args, "{format:?}");
            if format == Format::OpenAi {
                assert!(raw.contains("data: [DONE]"));
                assert!(raw.contains("\"choices\":[],"), "usage chunk: {raw}");
            } else {
                assert!(raw.contains("event: message_stop"));
            }
        }
    }

    #[tokio::test]
    async fn anthropic_steps_are_answered_in_order_then_exhaustion_is_obvious() {
        let llm = ScriptedLlm::start(
            Format::Anthropic,
            vec![
                Step::tool_call("execute_bash", json!({"command": "ls"})),
                Step::text("done"),
            ],
        )
        .await;
        let url = format!("{}/v1/messages", llm.base_url());
        let cached =
            r#""system":[{"type":"text","text":"s","cache_control":{"type":"ephemeral"}}]"#;
        let (status, first) = post(
            &url,
            &format!(r#"{{"model":"claude-x","messages":[],{cached}}}"#),
            &[],
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(first["stop_reason"], "tool_use");
        assert_eq!(first["content"][0]["name"], "execute_bash");
        assert_eq!(first["model"], "claude-x");
        let (_, second) = post(
            &url,
            &format!(r#"{{"model":"claude-x","messages":[1],{cached}}}"#),
            &[],
        )
        .await;
        assert_eq!(second["stop_reason"], "end_turn");
        assert_eq!(second["content"][0]["text"], "done");
        assert!(second["usage"]["cache_read_input_tokens"].as_u64().unwrap() > 0);
        let (_, third) = post(&url, "{}", &[]).await;
        assert!(third["content"][0]["text"]
            .as_str()
            .unwrap()
            .starts_with(EXHAUSTED_MARKER));
        assert_eq!(llm.request_count(), 3);
        assert_eq!(llm.requests()[1]["messages"], json!([1]));
    }

    #[tokio::test]
    async fn wrong_paths_and_keys_get_real_errors_without_consuming_steps() {
        let llm =
            ScriptedLlm::start_with_key(Format::OpenAi, vec![Step::text("hi")], "sk-good").await;
        let (status, body) = post(&format!("{}/messages", llm.base_url()), "{}", &[]).await;
        assert_eq!(status, 404);
        assert!(body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("OpenAI"));
        let url = format!("{}/chat/completions", llm.base_url());
        let (status, body) = post(&url, "{}", &[("authorization", "Bearer sk-bad")]).await;
        assert_eq!(status, 401);
        assert_eq!(body["error"]["code"], "invalid_api_key");
        let root = format!("http://{}/chat/completions", llm.addr());
        let (status, body) = post(&root, "{}", &[("authorization", "Bearer sk-good")]).await;
        assert_eq!(status, 200);
        assert_eq!(body["choices"][0]["message"]["content"], "hi");
        assert_eq!(body["choices"][0]["finish_reason"], "stop");
        assert_eq!(llm.remaining_steps(), 0);
    }

    #[tokio::test]
    async fn gemini_path_names_the_model() {
        let llm = ScriptedLlm::start(
            Format::Gemini,
            vec![Step::ToolCalls(vec![
                ("a".into(), json!({})),
                ("b".into(), json!({"x": 1})),
            ])],
        )
        .await;
        let url = format!(
            "{}/v1beta/models/gemini-2.5-flash:generateContent",
            llm.base_url()
        );
        let (status, body) = post(&url, "{}", &[]).await;
        assert_eq!(status, 200);
        assert_eq!(body["modelVersion"], "gemini-2.5-flash");
        let parts = &body["candidates"][0]["content"]["parts"];
        assert_eq!(
            parts[1]["functionCall"],
            json!({"name": "b", "args": {"x": 1}})
        );
        assert_eq!(body["candidates"][0]["finishReason"], "STOP");
    }
}
