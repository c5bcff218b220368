//! Google Gemini API client (`POST {base}/v1beta/models/{model}:generateContent`).
//!
//! The key travels in the `x-goog-api-key` header, never in the URL. Gemini function calls
//! usually carry no id: the client synthesises one (prefix [`SYNTHETIC_ID_PREFIX`]) and leaves
//! synthesised ids out when the call goes back to Gemini. Thought signatures that Gemini
//! attaches to function calls are remembered per call id and sent back with the call, as
//! thinking models require.
//!
//! Streaming uses `:streamGenerateContent?alt=sse`: every `data:` event is a whole
//! `GenerateContentResponse` holding the next parts (text in pieces; function calls whole), the
//! last one with `finishReason` and `usageMetadata`. There is no end marker: a stream that ends
//! without a finish reason (or a blocked prompt's `promptFeedback`) was cut. The parts are
//! assembled into the body a non-streaming request would have returned and read by the same
//! parser.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use async_trait::async_trait;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::header::HeaderValue;
use serde_json::{json, Map, Value};

use super::retry::{
    secret_header, send_json, send_stream, Endpoint, RetryPolicy, StreamFailure, StreamReader,
};
use super::sse::SseEvent;
use super::{
    LlmClient, LlmError, LlmRequest, LlmResponse, Message, StreamDelta, ToolCall, ToolSpec, Usage,
};

const PROVIDER: &str = "google";
/// Default base URL of the Gemini API.
pub const DEFAULT_BASE_URL: &str = "https://generativelanguage.googleapis.com";
/// Prefix of call ids Lucid made up for function calls Gemini sent without an id.
pub const SYNTHETIC_ID_PREFIX: &str = "gemini_call_";
/// Harm categories for which blocking is turned off, as the original engine did.
pub const SAFETY_CATEGORIES: [&str; 4] = [
    "HARM_CATEGORY_HARASSMENT",
    "HARM_CATEGORY_HATE_SPEECH",
    "HARM_CATEGORY_SEXUALLY_EXPLICIT",
    "HARM_CATEGORY_DANGEROUS_CONTENT",
];
/// How many thought signatures a client remembers.
const MAX_SIGNATURES: usize = 512;
/// Characters left as they are in the model path segment.
const MODEL_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_');
/// JSON Schema keywords Gemini's function declarations accept.
const SCHEMA_KEYS: [&str; 15] = [
    "type",
    "format",
    "title",
    "description",
    "nullable",
    "enum",
    "items",
    "minItems",
    "maxItems",
    "properties",
    "required",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
];

/// A client for the Gemini `generateContent` API.
pub struct GeminiClient {
    http: reqwest::Client,
    base_url: String,
    api_key: HeaderValue,
    api_key_text: String,
    retry: RetryPolicy,
    signatures: Mutex<SignatureCache>,
}

impl std::fmt::Debug for GeminiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeminiClient")
            .field("base_url", &self.base_url)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

/// Thought signatures by call id, oldest dropped first.
#[derive(Default)]
struct SignatureCache {
    by_call: HashMap<String, String>,
    order: VecDeque<String>,
}

impl SignatureCache {
    fn insert(&mut self, call_id: String, signature: String) {
        if self.by_call.insert(call_id.clone(), signature).is_none() {
            self.order.push_back(call_id);
        }
        while self.order.len() > MAX_SIGNATURES {
            if let Some(old) = self.order.pop_front() {
                self.by_call.remove(&old);
            }
        }
    }
}

impl GeminiClient {
    /// A client for `base_url` (e.g. `https://generativelanguage.googleapis.com`) with the
    /// default retry policy. Fails when the key cannot be sent in an HTTP header.
    pub fn new(http: reqwest::Client, base_url: &str, api_key: &str) -> Result<Self, LlmError> {
        Ok(Self {
            http,
            base_url: base_url.trim_end_matches('/').to_string(),
            api_key: secret_header(PROVIDER, api_key)?,
            api_key_text: api_key.to_string(),
            retry: RetryPolicy::default(),
            signatures: Mutex::new(SignatureCache::default()),
        })
    }

    /// Replaces the retry policy (attempts, backoff base, caps).
    pub fn with_retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The URL of `generateContent` for `model` (a `models/` prefix is accepted).
    pub fn endpoint_url(&self, model: &str) -> String {
        let model = model.strip_prefix("models/").unwrap_or(model);
        format!(
            "{}/v1beta/models/{}:generateContent",
            self.base_url,
            utf8_percent_encode(model, MODEL_SEGMENT)
        )
    }

    /// The URL of `streamGenerateContent` (server-sent events) for `model`.
    pub fn stream_url(&self, model: &str) -> String {
        let url = self.endpoint_url(model);
        let base = url.strip_suffix(":generateContent").unwrap_or(&url);
        format!("{base}:streamGenerateContent?alt=sse")
    }

    fn remember(&self, signatures: Signatures) {
        if signatures.is_empty() {
            return;
        }
        let mut cache = self
            .signatures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for (call_id, signature) in signatures {
            cache.insert(call_id, signature);
        }
    }

    /// The JSON body sent for `request`.
    pub fn request_body(&self, request: &LlmRequest) -> Value {
        let cache = self
            .signatures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        request_body(request, &cache.by_call)
    }

    /// Reads a `generateContent` answer, remembering thought signatures of function calls.
    pub fn parse_response(&self, body: &Value) -> Result<LlmResponse, LlmError> {
        let (response, signatures) = parse_response(body)?;
        self.remember(signatures);
        Ok(response)
    }
}

#[async_trait]
impl LlmClient for GeminiClient {
    fn provider(&self) -> &'static str {
        PROVIDER
    }

    async fn complete(&self, request: &LlmRequest) -> Result<LlmResponse, LlmError> {
        let body = self.request_body(request);
        let url = self.endpoint_url(&request.model);
        let endpoint = Endpoint {
            provider: PROVIDER,
            http: &self.http,
            policy: &self.retry,
            secret: Some(&self.api_key_text),
            auth_failure: Some(is_invalid_key),
        };
        let answer = send_json(&endpoint, |http| {
            http.post(&url)
                .header("x-goog-api-key", self.api_key.clone())
                .json(&body)
        })
        .await?;
        self.parse_response(&answer)
    }

    async fn stream(
        &self,
        request: &LlmRequest,
        on_delta: &(dyn Fn(StreamDelta) + Send + Sync),
    ) -> Result<LlmResponse, LlmError> {
        let body = self.request_body(request);
        let url = self.stream_url(&request.model);
        let endpoint = Endpoint {
            provider: PROVIDER,
            http: &self.http,
            policy: &self.retry,
            secret: Some(&self.api_key_text),
            auth_failure: Some(is_invalid_key),
        };
        let (response, signatures) = send_stream(
            &endpoint,
            |http| {
                http.post(&url)
                    .header("x-goog-api-key", self.api_key.clone())
                    .header("accept", "text/event-stream")
                    .json(&body)
            },
            GeminiStream::default,
            on_delta,
        )
        .await?;
        self.remember(signatures);
        Ok(response)
    }
}

/// Assembles a streamed `GenerateContentResponse`.
#[derive(Default)]
pub struct GeminiStream {
    parts: Vec<Value>,
    finish_reason: Option<Value>,
    usage: Option<Value>,
    prompt_feedback: Option<Value>,
}

impl StreamReader for GeminiStream {
    type Output = (LlmResponse, Signatures);

    fn on_event(
        &mut self,
        event: SseEvent,
        on_text: &mut dyn FnMut(StreamDelta),
    ) -> Result<(), StreamFailure> {
        if event.data.trim().is_empty() {
            return Ok(());
        }
        let chunk: Value = serde_json::from_str(&event.data).map_err(|_| {
            StreamFailure::Fatal(LlmError::InvalidResponse {
                provider: PROVIDER,
                message: format!(
                    "a stream chunk is not JSON: {}",
                    super::retry::truncate(&event.data)
                ),
            })
        })?;
        if let Some(error) = chunk.get("error") {
            let message = super::retry::summarize_error_value(&chunk)
                .unwrap_or_else(|| super::retry::truncate(&error.to_string()));
            return Err(match error.get("code").and_then(Value::as_u64) {
                Some(code) if super::retry::is_retryable_status(code as u16) => {
                    StreamFailure::Retryable(format!("error in the stream ({code}): {message}"))
                }
                _ => StreamFailure::Fatal(LlmError::InvalidResponse {
                    provider: PROVIDER,
                    message: format!("error in the stream: {message}"),
                }),
            });
        }
        if let Some(usage) = chunk.get("usageMetadata").filter(|u| u.is_object()) {
            self.usage = Some(usage.clone());
        }
        if let Some(feedback) = chunk.get("promptFeedback").filter(|f| f.is_object()) {
            self.prompt_feedback = Some(feedback.clone());
        }
        let Some(candidate) = chunk
            .get("candidates")
            .and_then(Value::as_array)
            .and_then(|c| c.first())
        else {
            return Ok(());
        };
        for part in candidate["content"]["parts"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let thought = part.get("thought").and_then(Value::as_bool) == Some(true);
            if let Some(text) = part.get("text").and_then(Value::as_str) {
                if !text.is_empty() && part.get("functionCall").is_none() {
                    // Thought summaries (`"thought": true`, with `includeThoughts`) are thinking.
                    on_text(if thought {
                        StreamDelta::Thinking(text.to_string())
                    } else {
                        StreamDelta::Text(text.to_string())
                    });
                }
            }
            self.parts.push(part.clone());
        }
        if let Some(reason) = candidate.get("finishReason").filter(|r| !r.is_null()) {
            self.finish_reason = Some(reason.clone());
        }
        Ok(())
    }

    fn is_complete(&self) -> bool {
        self.finish_reason.is_some()
            || self
                .prompt_feedback
                .as_ref()
                .is_some_and(|f| f.get("blockReason").is_some())
    }

    fn finish(self) -> Result<(LlmResponse, Signatures), LlmError> {
        let mut body = Map::new();
        if !self.parts.is_empty() || self.finish_reason.is_some() {
            let mut candidate = json!({"content": {"role": "model", "parts": self.parts}});
            if let Some(reason) = self.finish_reason {
                candidate["finishReason"] = reason;
            }
            body.insert("candidates".into(), json!([candidate]));
        }
        if let Some(usage) = self.usage {
            body.insert("usageMetadata".into(), usage);
        }
        if let Some(feedback) = self.prompt_feedback {
            body.insert("promptFeedback".into(), feedback);
        }
        parse_response(&Value::Object(body))
    }

    fn whole(self, body: &Value) -> Result<(LlmResponse, Signatures), LlmError> {
        // `alt=sse` ignored: a JSON array of chunks, or one response.
        match body {
            Value::Array(chunks) => {
                let mut reader = self;
                for chunk in chunks {
                    let event = SseEvent {
                        event: None,
                        data: chunk.to_string(),
                    };
                    reader.on_event(event, &mut |_| {}).map_err(|e| match e {
                        StreamFailure::Fatal(err) => err,
                        StreamFailure::Retryable(message) => LlmError::InvalidResponse {
                            provider: PROVIDER,
                            message,
                        },
                    })?;
                }
                reader.finish()
            }
            _ => parse_response(body),
        }
    }
}

/// Gemini answers a wrong key with 400 `INVALID_ARGUMENT` and reason `API_KEY_INVALID`.
fn is_invalid_key(status: u16, body: &Value) -> bool {
    if status != 400 {
        return false;
    }
    let error = &body["error"];
    let reason_invalid = error["details"].as_array().is_some_and(|details| {
        details
            .iter()
            .any(|d| d["reason"].as_str() == Some("API_KEY_INVALID"))
    });
    reason_invalid
        || error["message"]
            .as_str()
            .is_some_and(|m| m.contains("API key not valid"))
}

fn request_body(request: &LlmRequest, signatures: &HashMap<String, String>) -> Value {
    let mut body = Map::new();
    if !request.system.is_empty() {
        body.insert(
            "systemInstruction".into(),
            json!({"parts": [{"text": request.system}]}),
        );
    }
    body.insert(
        "contents".into(),
        Value::Array(contents(&request.messages, signatures)),
    );
    if !request.tools.is_empty() {
        body.insert(
            "tools".into(),
            json!([{"functionDeclarations": declarations(&request.tools)}]),
        );
    }
    body.insert(
        "safetySettings".into(),
        Value::Array(
            SAFETY_CATEGORIES
                .iter()
                .map(|category| json!({"category": category, "threshold": "BLOCK_NONE"}))
                .collect(),
        ),
    );
    let max_tokens = request.max_tokens.max(1);
    let generation = match request
        .thinking_budget
        .and_then(|budget| thinking_budget_for(&request.model, budget))
    {
        // Thinking counts toward `maxOutputTokens`; thought summaries stream as thinking.
        Some(budget) => json!({
            "maxOutputTokens": max_tokens.saturating_add(budget),
            "thinkingConfig": {"thinkingBudget": budget, "includeThoughts": true},
        }),
        None => json!({"maxOutputTokens": max_tokens}),
    };
    body.insert("generationConfig".into(), generation);
    Value::Object(body)
}

/// The thinking budget to ask `model` for: Gemini 2.5 and 3 text models take one (others,
/// e.g. 2.0, Gemma, image and speech models, refuse it), at most 32768 tokens on Pro and 24576
/// on Flash and Flash-Lite.
fn thinking_budget_for(model: &str, budget: u32) -> Option<u32> {
    let name = model.trim_start_matches("models/");
    let family = name.starts_with("gemini-2.5") || name.starts_with("gemini-3");
    let text_only = !["image", "tts", "audio", "live", "embedding"]
        .iter()
        .any(|kind| name.contains(kind));
    if !(family && text_only) {
        return None;
    }
    let limit = if name.contains("pro") { 32_768 } else { 24_576 };
    Some(budget.min(limit))
}

fn declarations(tools: &[ToolSpec]) -> Vec<Value> {
    tools
        .iter()
        .map(|tool| {
            let mut declaration = json!({"name": tool.name, "description": tool.description});
            let parameters = gemini_schema(&tool.parameters);
            let empty_object = parameters
                .get("properties")
                .is_none_or(|p| p.as_object().is_some_and(Map::is_empty))
                && parameters.get("type").and_then(Value::as_str) == Some("object");
            // Gemini rejects object schemas without properties: a tool without parameters
            // is declared without `parameters`.
            if !empty_object && parameters.as_object().is_some_and(|p| !p.is_empty()) {
                declaration["parameters"] = parameters;
            }
            declaration
        })
        .collect()
}

/// Converts a JSON Schema to the OpenAPI subset Gemini accepts: unsupported keywords
/// (`additionalProperties`, `$schema`, `default`, ...) are dropped, `const` becomes a one-value
/// `enum`, `["string", "null"]` types become `nullable`, `oneOf` becomes `anyOf`, and enums keep
/// only string values.
pub fn gemini_schema(schema: &Value) -> Value {
    let Value::Object(source) = schema else {
        return json!({});
    };
    let mut out = Map::new();
    for (key, value) in source {
        match key.as_str() {
            "type" => match value {
                Value::String(_) => {
                    out.insert(key.clone(), value.clone());
                }
                Value::Array(types) => {
                    let non_null: Vec<&Value> = types
                        .iter()
                        .filter(|t| t.as_str() != Some("null"))
                        .collect();
                    if non_null.len() < types.len() {
                        out.insert("nullable".into(), json!(true));
                    }
                    if let Some(first) = non_null.first() {
                        out.insert(key.clone(), (*first).clone());
                    }
                }
                _ => {}
            },
            "properties" => {
                if let Value::Object(properties) = value {
                    let converted: Map<String, Value> = properties
                        .iter()
                        .map(|(name, prop)| (name.clone(), gemini_schema(prop)))
                        .collect();
                    out.insert(key.clone(), Value::Object(converted));
                }
            }
            "items" => {
                out.insert(key.clone(), gemini_schema(value));
            }
            "anyOf" | "oneOf" => {
                if let Value::Array(options) = value {
                    out.insert(
                        "anyOf".into(),
                        Value::Array(options.iter().map(gemini_schema).collect()),
                    );
                }
            }
            "enum" => {
                if let Value::Array(values) = value {
                    let strings: Vec<Value> =
                        values.iter().filter(|v| v.is_string()).cloned().collect();
                    if !strings.is_empty() {
                        out.insert(key.clone(), Value::Array(strings));
                    }
                }
            }
            "const" if value.is_string() => {
                out.insert("enum".into(), json!([value]));
            }
            _ if SCHEMA_KEYS.contains(&key.as_str()) => {
                out.insert(key.clone(), value.clone());
            }
            _ => {}
        }
    }
    if let (Some(Value::Array(required)), Some(Value::Object(properties))) =
        (out.get("required"), out.get("properties"))
    {
        let kept: Vec<Value> = required
            .iter()
            .filter(|name| name.as_str().is_some_and(|n| properties.contains_key(n)))
            .cloned()
            .collect();
        out.insert("required".into(), Value::Array(kept));
    }
    if out.contains_key("enum") && !out.contains_key("type") {
        out.insert("type".into(), json!("string"));
    }
    Value::Object(out)
}

/// Converts the conversation to Gemini contents; consecutive turns of the same role are merged
/// so the function responses of one model turn arrive together in one user turn.
fn contents(conversation: &[Message], signatures: &HashMap<String, String>) -> Vec<Value> {
    let mut turns: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for message in conversation {
        let (role, parts) = match message {
            Message::User { content } => ("user", vec![json!({"text": content})]),
            Message::Assistant { text, tool_calls } => {
                let mut parts = Vec::new();
                if let Some(text) = text.as_deref().filter(|t| !t.is_empty()) {
                    parts.push(json!({"text": text}));
                }
                for call in tool_calls {
                    let args = if call.arguments.is_object() {
                        call.arguments.clone()
                    } else {
                        json!({})
                    };
                    let mut function_call = json!({"name": call.name, "args": args});
                    if !call.id.starts_with(SYNTHETIC_ID_PREFIX) {
                        function_call["id"] = json!(call.id);
                    }
                    let mut part = json!({"functionCall": function_call});
                    if let Some(signature) = signatures.get(&call.id) {
                        part["thoughtSignature"] = json!(signature);
                    }
                    parts.push(part);
                }
                ("model", parts)
            }
            Message::Tool {
                call_id,
                name,
                content,
                is_error,
            } => {
                let mut response = json!({"content": content});
                if *is_error {
                    response["is_error"] = json!(true);
                }
                let mut function_response = json!({"name": name, "response": response});
                if !call_id.starts_with(SYNTHETIC_ID_PREFIX) {
                    function_response["id"] = json!(call_id);
                }
                ("user", vec![json!({"functionResponse": function_response})])
            }
        };
        if parts.is_empty() {
            continue;
        }
        match turns.last_mut() {
            Some((last_role, last_parts)) if *last_role == role => last_parts.extend(parts),
            _ => turns.push((role, parts)),
        }
    }
    turns
        .into_iter()
        .map(|(role, parts)| json!({"role": role, "parts": parts}))
        .collect()
}

/// Finish reasons after which an answer without content is an error, not an empty reply.
fn describe_finish(reason: &str) -> &'static str {
    match reason {
        "SAFETY" | "IMAGE_SAFETY" => "blocked by Gemini's safety filters",
        "RECITATION" => "stopped because it recited training data",
        "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" => "blocked by Gemini's content policy",
        "MALFORMED_FUNCTION_CALL" => "the model produced a malformed function call",
        "UNEXPECTED_TOOL_CALL" => "the model called a tool that was not declared",
        "MAX_TOKENS" => "the output token limit was reached before any content",
        "LANGUAGE" => "the language is not supported",
        _ => "the model stopped without content",
    }
}

/// Thought signatures of function calls, by call id.
pub type Signatures = Vec<(String, String)>;

fn parse_response(body: &Value) -> Result<(LlmResponse, Signatures), LlmError> {
    let invalid = |message: String| LlmError::InvalidResponse {
        provider: PROVIDER,
        message,
    };
    let usage = usage(body.get("usageMetadata"));
    let candidates = match body.get("candidates") {
        Some(Value::Array(candidates)) => candidates.as_slice(),
        None | Some(Value::Null) => &[],
        Some(_) => return Err(invalid("`candidates` is not a list".into())),
    };
    let Some(candidate) = candidates.first() else {
        if let Some(error) = super::retry::summarize_error_value(body) {
            return Err(invalid(format!("an error instead of an answer: {error}")));
        }
        let block = body["promptFeedback"]["blockReason"].as_str();
        return Err(invalid(match block {
            Some(reason) => {
                format!("Gemini returned no answer: the prompt was blocked (blockReason {reason})")
            }
            None => "Gemini returned no candidates".to_string(),
        }));
    };

    let finish = candidate.get("finishReason").and_then(Value::as_str);
    let parts = candidate["content"]["parts"].as_array();
    let mut texts = Vec::new();
    let mut tool_calls = Vec::new();
    let mut signatures = Vec::new();
    for part in parts.into_iter().flatten() {
        if let Some(call) = part.get("functionCall") {
            let Some(name) = call.get("name").and_then(Value::as_str) else {
                return Err(invalid("a functionCall without `name`".into()));
            };
            let id = call
                .get("id")
                .and_then(Value::as_str)
                .filter(|id| !id.is_empty())
                .map(str::to_string)
                .unwrap_or_else(|| {
                    format!("{SYNTHETIC_ID_PREFIX}{}", uuid::Uuid::new_v4().simple())
                });
            let arguments = match call.get("args") {
                Some(Value::Object(args)) => Value::Object(args.clone()),
                None | Some(Value::Null) => json!({}),
                Some(other) => json!({"_raw": other.to_string()}),
            };
            if let Some(signature) = part.get("thoughtSignature").and_then(Value::as_str) {
                signatures.push((id.clone(), signature.to_string()));
            }
            tool_calls.push(ToolCall {
                id,
                name: name.to_string(),
                arguments,
            });
        } else if part.get("thought").and_then(Value::as_bool) == Some(true) {
            continue;
        } else if let Some(text) = part.get("text").and_then(Value::as_str) {
            if !text.is_empty() {
                texts.push(text);
            }
        }
    }

    if texts.is_empty() && tool_calls.is_empty() {
        if let Some(reason) = finish.filter(|r| *r != "STOP") {
            return Err(invalid(format!(
                "Gemini returned no content: {} (finishReason {reason})",
                describe_finish(reason)
            )));
        }
    }

    Ok((
        LlmResponse {
            text: (!texts.is_empty()).then(|| texts.concat()),
            tool_calls,
            usage,
            stop_reason: finish.map(str::to_string),
            reasoning: Vec::new(),
        },
        signatures,
    ))
}

/// `promptTokenCount` includes cached tokens; thinking tokens are billed as output.
fn usage(metadata: Option<&Value>) -> Usage {
    let count = |name: &str| {
        metadata
            .and_then(|m| m.get(name))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    Usage {
        input_tokens: count("promptTokenCount"),
        output_tokens: count("candidatesTokenCount").saturating_add(count("thoughtsTokenCount")),
        cached_input_tokens: count("cachedContentTokenCount"),
        cache_write_tokens: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> GeminiClient {
        GeminiClient::new(reqwest::Client::new(), "http://127.0.0.1:9/", "g-key").unwrap()
    }

    #[test]
    fn url_has_the_model_and_no_key() {
        let c = client();
        assert_eq!(
            c.endpoint_url("models/gemini-2.5-flash"),
            "http://127.0.0.1:9/v1beta/models/gemini-2.5-flash:generateContent"
        );
        assert_eq!(
            c.endpoint_url("odd/model?x"),
            "http://127.0.0.1:9/v1beta/models/odd%2Fmodel%3Fx:generateContent"
        );
    }

    #[test]
    fn schema_conversion_drops_what_gemini_rejects() {
        let schema = json!({
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "command": {"type": "string", "description": "shell", "default": "ls"},
                "timeout": {"type": ["integer", "null"], "minimum": 1},
                "mode": {"const": "fast"},
                "level": {"enum": ["a", 2, "b"]},
                "paths": {"type": "array", "items": {"type": "string", "additionalProperties": false}},
                "additionalProperties": {"type": "string"},
            },
            "required": ["command", "missing"],
        });
        assert_eq!(
            gemini_schema(&schema),
            json!({
                "type": "object",
                "properties": {
                    "command": {"type": "string", "description": "shell"},
                    "timeout": {"type": "integer", "nullable": true, "minimum": 1},
                    "mode": {"type": "string", "enum": ["fast"]},
                    "level": {"type": "string", "enum": ["a", "b"]},
                    "paths": {"type": "array", "items": {"type": "string"}},
                    "additionalProperties": {"type": "string"},
                },
                "required": ["command"],
            })
        );
    }

    #[test]
    fn a_thinking_budget_asks_for_thought_summaries_on_models_that_think() {
        let request = |model: &str, budget: Option<u32>| LlmRequest {
            model: model.into(),
            system: String::new(),
            messages: vec![Message::User {
                content: "hi".into(),
            }],
            tools: vec![],
            max_tokens: 1000,
            cache_prompt: false,
            thinking_budget: budget,
        };
        let none = HashMap::new();
        let body = request_body(&request("gemini-2.5-pro", Some(2048)), &none);
        assert_eq!(
            body["generationConfig"],
            json!({"maxOutputTokens": 3048,
                   "thinkingConfig": {"thinkingBudget": 2048, "includeThoughts": true}})
        );
        let body = request_body(&request("gemini-2.5-flash", Some(100_000)), &none);
        assert_eq!(
            body["generationConfig"]["thinkingConfig"]["thinkingBudget"],
            json!(24_576)
        );
        for model in [
            "gemini-2.0-flash",
            "models/gemini-1.5-pro",
            "gemma-3-27b-it",
            "gemini-2.5-flash-image",
            "gemini-2.5-flash-preview-tts",
        ] {
            let body = request_body(&request(model, Some(2048)), &none);
            assert_eq!(
                body["generationConfig"],
                json!({"maxOutputTokens": 1000}),
                "{model}"
            );
        }
        let body = request_body(&request("gemini-2.5-pro", None), &none);
        assert_eq!(body["generationConfig"], json!({"maxOutputTokens": 1000}));
    }

    #[test]
    fn body_pairs_calls_and_responses_and_keeps_real_ids_and_signatures() {
        let c = client();
        c.parse_response(
            &json!({"candidates": [{"content": {"role": "model", "parts": [
            {"functionCall": {"name": "execute_bash", "args": {"command": "ls"}, "id": "real-1"},
             "thoughtSignature": "sig-abc"}
        ]}, "finishReason": "STOP"}]}),
        )
        .unwrap();
        let request = LlmRequest {
            model: "gemini-2.5-flash".into(),
            system: "sys".into(),
            messages: vec![
                Message::User {
                    content: "go".into(),
                },
                Message::Assistant {
                    text: None,
                    tool_calls: vec![
                        ToolCall {
                            id: "real-1".into(),
                            name: "execute_bash".into(),
                            arguments: json!({"command": "ls"}),
                        },
                        ToolCall {
                            id: format!("{SYNTHETIC_ID_PREFIX}x"),
                            name: "think".into(),
                            arguments: json!({"thought": "t"}),
                        },
                    ],
                },
                Message::Tool {
                    call_id: "real-1".into(),
                    name: "execute_bash".into(),
                    content: "a.txt".into(),
                    is_error: false,
                },
                Message::Tool {
                    call_id: format!("{SYNTHETIC_ID_PREFIX}x"),
                    name: "think".into(),
                    content: "bad".into(),
                    is_error: true,
                },
            ],
            tools: vec![ToolSpec {
                name: "finish".into(),
                description: "done".into(),
                parameters: json!({"type": "object", "properties": {}}),
            }],
            max_tokens: 100,
            cache_prompt: true,
            thinking_budget: None,
        };
        let body = c.request_body(&request);
        assert_eq!(
            body["contents"],
            json!([
                {"role": "user", "parts": [{"text": "go"}]},
                {"role": "model", "parts": [
                    {"functionCall": {"name": "execute_bash", "args": {"command": "ls"}, "id": "real-1"},
                     "thoughtSignature": "sig-abc"},
                    {"functionCall": {"name": "think", "args": {"thought": "t"}}},
                ]},
                {"role": "user", "parts": [
                    {"functionResponse": {"name": "execute_bash", "response": {"content": "a.txt"}, "id": "real-1"}},
                    {"functionResponse": {"name": "think", "response": {"content": "bad", "is_error": true}}},
                ]},
            ])
        );
        assert_eq!(
            body["tools"],
            json!([{"functionDeclarations": [{"name": "finish", "description": "done"}]}])
        );
        assert_eq!(
            body["systemInstruction"],
            json!({"parts": [{"text": "sys"}]})
        );
        assert_eq!(body["safetySettings"].as_array().unwrap().len(), 4);
        assert_eq!(body["generationConfig"], json!({"maxOutputTokens": 100}));
    }

    #[test]
    fn response_ids_are_synthesised_and_usage_read() {
        let response = client()
            .parse_response(&json!({
                "candidates": [{"content": {"role": "model", "parts": [
                    {"text": "thinking...", "thought": true},
                    {"text": "Let me "}, {"text": "look."},
                    {"functionCall": {"name": "execute_bash", "args": {"command": "ls"}}},
                    {"functionCall": {"name": "execute_bash", "args": {"command": "pwd"}}},
                ]}, "finishReason": "STOP"}],
                "usageMetadata": {"promptTokenCount": 900, "candidatesTokenCount": 40,
                                  "thoughtsTokenCount": 10, "cachedContentTokenCount": 512},
            }))
            .unwrap();
        assert_eq!(response.text.as_deref(), Some("Let me look."));
        assert_eq!(response.tool_calls.len(), 2);
        assert!(response.tool_calls[0].id.starts_with(SYNTHETIC_ID_PREFIX));
        assert_ne!(response.tool_calls[0].id, response.tool_calls[1].id);
        assert_eq!(response.tool_calls[1].arguments, json!({"command": "pwd"}));
        assert_eq!(
            response.usage,
            Usage {
                input_tokens: 900,
                output_tokens: 50,
                cached_input_tokens: 512,
                cache_write_tokens: 0,
            }
        );
        assert_eq!(response.stop_reason.as_deref(), Some("STOP"));
    }

    #[test]
    fn blocked_prompts_and_empty_safety_stops_are_clear_errors() {
        let err = client()
            .parse_response(
                &json!({"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {}}),
            )
            .unwrap_err();
        assert!(matches!(err, LlmError::InvalidResponse { .. }));
        assert!(err.to_string().contains("blockReason SAFETY"), "{err}");
        let err = client()
            .parse_response(&json!({"candidates": [{"finishReason": "SAFETY"}]}))
            .unwrap_err();
        assert!(err.to_string().contains("safety"), "{err}");
        let err = client()
            .parse_response(&json!({"candidates": [{"content": {"parts": []}, "finishReason": "MALFORMED_FUNCTION_CALL"}]}))
            .unwrap_err();
        assert!(err.to_string().contains("MALFORMED_FUNCTION_CALL"), "{err}");
        let empty_stop = client()
            .parse_response(
                &json!({"candidates": [{"content": {"parts": []}, "finishReason": "STOP"}]}),
            )
            .unwrap();
        assert_eq!(empty_stop.text, None);
    }

    #[test]
    fn the_signature_cache_is_bounded() {
        let mut cache = SignatureCache::default();
        for i in 0..MAX_SIGNATURES + 10 {
            cache.insert(format!("call-{i}"), "sig".into());
        }
        cache.insert("call-20".into(), "new".into());
        assert_eq!(cache.by_call.len(), MAX_SIGNATURES);
        assert_eq!(cache.order.len(), MAX_SIGNATURES);
        assert!(!cache.by_call.contains_key("call-0"));
        assert_eq!(cache.by_call["call-20"], "new");
    }

    #[test]
    fn invalid_key_bodies_are_recognised() {
        let body = json!({"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.",
            "status": "INVALID_ARGUMENT",
            "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}]}});
        assert!(is_invalid_key(400, &body));
        assert!(!is_invalid_key(
            400,
            &json!({"error": {"message": "bad schema"}})
        ));
        assert!(!is_invalid_key(500, &body));
    }
}
