//! Anthropic Messages API client (`POST {base}/v1/messages`).
//!
//! The stable prefix of every request is marked for prompt caching: the system prompt, the last
//! tool definition and the last user turn carry `cache_control: {"type": "ephemeral"}`.
//!
//! Streaming (`"stream": true`): `message_start` (the message with its input usage), per
//! content block `content_block_start` / `content_block_delta` (`text_delta`,
//! `input_json_delta` fragments of a tool call's input, `thinking_delta`, `signature_delta`) /
//! `content_block_stop`, `message_delta` (stop reason, cumulative usage), `message_stop`; `ping`
//! anywhere; `error` (e.g. `overloaded_error`, retried). The events are assembled into the body
//! a non-streaming request would have returned and read by the same parser.
//!
//! Extended thinking (`LlmRequest::thinking_budget`): the request asks for `thinking` with that
//! budget on top of `max_tokens`. The API requires the thinking blocks of the assistant turn
//! whose tool calls are being answered to come back unchanged (with their signatures): the
//! client remembers them by the turn's first tool call id and sends them with that turn. A
//! turn it has no blocks for (a session continued after a restart) is answered without
//! thinking for that one request, never with a request the API would refuse.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use async_trait::async_trait;
use reqwest::header::HeaderValue;
use serde_json::{json, Map, Value};

use super::retry::{
    secret_header, send_json, send_stream, Endpoint, RetryPolicy, StreamFailure, StreamReader,
};
use super::sse::SseEvent;
use super::{
    LlmClient, LlmError, LlmRequest, LlmResponse, Message, StreamDelta, ToolCall, ToolSpec, Usage,
};

const PROVIDER: &str = "anthropic";
/// Default base URL of the Anthropic API.
pub const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";
/// The API version Lucid speaks.
pub const API_VERSION: &str = "2023-06-01";
/// Sent in place of an empty tool result.
const EMPTY_RESULT: &str = "(no output)";
/// How many assistant turns' thinking blocks a client remembers.
const MAX_REMEMBERED_TURNS: usize = 256;

/// Thinking blocks of assistant turns, by the turn's first tool call id; oldest dropped first.
#[derive(Default)]
pub struct ReasoningCache {
    by_call: HashMap<String, Vec<Value>>,
    order: VecDeque<String>,
}

impl ReasoningCache {
    /// Remembers the reasoning of a turn that called tools.
    pub fn remember(&mut self, response: &LlmResponse) {
        let Some(first) = response.tool_calls.first() else {
            return;
        };
        if response.reasoning.is_empty() {
            return;
        }
        if self
            .by_call
            .insert(first.id.clone(), response.reasoning.clone())
            .is_none()
        {
            self.order.push_back(first.id.clone());
        }
        while self.order.len() > MAX_REMEMBERED_TURNS {
            if let Some(old) = self.order.pop_front() {
                self.by_call.remove(&old);
            }
        }
    }

    fn of(&self, tool_calls: &[ToolCall]) -> Option<&Vec<Value>> {
        tool_calls.first().and_then(|c| self.by_call.get(&c.id))
    }
}

/// A client for the Anthropic Messages API.
pub struct AnthropicClient {
    http: reqwest::Client,
    base_url: String,
    api_key: HeaderValue,
    api_key_text: String,
    retry: RetryPolicy,
    reasoning: Mutex<ReasoningCache>,
}

impl std::fmt::Debug for AnthropicClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnthropicClient")
            .field("base_url", &self.base_url)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl AnthropicClient {
    /// A client for `base_url` (e.g. `https://api.anthropic.com`, no `/v1`) with the default
    /// retry policy. Fails when the key cannot be sent in an HTTP header.
    pub fn new(http: reqwest::Client, base_url: &str, api_key: &str) -> Result<Self, LlmError> {
        Ok(Self {
            http,
            base_url: base_url.trim_end_matches('/').to_string(),
            api_key: secret_header(PROVIDER, api_key)?,
            api_key_text: api_key.to_string(),
            retry: RetryPolicy::default(),
            reasoning: Mutex::new(ReasoningCache::default()),
        })
    }

    /// Replaces the retry policy (attempts, backoff base, caps).
    pub fn with_retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The JSON body sent for `request` by a client that remembers no thinking blocks.
    pub fn request_body(request: &LlmRequest) -> Value {
        Self::request_body_with(request, &ReasoningCache::default())
    }

    /// The JSON body sent for `request`, with the thinking blocks `reasoning` remembers.
    pub fn request_body_with(request: &LlmRequest, reasoning: &ReasoningCache) -> Value {
        let max_tokens = request.max_tokens.max(1);
        let thinking = request
            .thinking_budget
            .and_then(|budget| thinking_budget_for(&request.model, max_tokens, budget))
            .filter(|_| can_think(&request.messages, reasoning));
        let mut body = Map::new();
        body.insert("model".into(), json!(request.model));
        match thinking {
            Some(budget) => {
                // The budget counts toward `max_tokens`.
                body.insert(
                    "max_tokens".into(),
                    json!(max_tokens.saturating_add(budget)),
                );
                body.insert(
                    "thinking".into(),
                    json!({"type": "enabled", "budget_tokens": budget}),
                );
            }
            None => {
                body.insert("max_tokens".into(), json!(max_tokens));
            }
        }
        let cache = request.cache_prompt;
        if !request.system.is_empty() {
            let mut system = json!({"type": "text", "text": request.system});
            if cache {
                system["cache_control"] = json!({"type": "ephemeral"});
            }
            body.insert("system".into(), json!([system]));
        }
        let reasoning = thinking.map(|_| reasoning);
        body.insert(
            "messages".into(),
            Value::Array(messages(&request.messages, cache, reasoning)),
        );
        if !request.tools.is_empty() {
            body.insert("tools".into(), Value::Array(tools(&request.tools, cache)));
        }
        Value::Object(body)
    }

    /// Reads a Messages API answer.
    pub fn parse_response(body: &Value) -> Result<LlmResponse, LlmError> {
        let invalid = |message: String| LlmError::InvalidResponse {
            provider: PROVIDER,
            message,
        };
        let content = body
            .get("content")
            .and_then(Value::as_array)
            .ok_or_else(|| {
                invalid(match super::retry::summarize_error_value(body) {
                    Some(error) => format!("an error instead of a message: {error}"),
                    None => "the answer has no `content` list".to_string(),
                })
            })?;

        let mut texts = Vec::new();
        let mut tool_calls = Vec::new();
        let mut reasoning = Vec::new();
        for block in content {
            match block.get("type").and_then(Value::as_str) {
                // Kept exactly as sent: the API checks them when they come back.
                Some("thinking") => reasoning.push(json!({
                    "type": "thinking",
                    "thinking": block.get("thinking").cloned().unwrap_or(json!("")),
                    "signature": block.get("signature").cloned().unwrap_or(json!("")),
                })),
                Some("redacted_thinking") => reasoning.push(json!({
                    "type": "redacted_thinking",
                    "data": block.get("data").cloned().unwrap_or(json!("")),
                })),
                Some("text") => {
                    if let Some(text) = block.get("text").and_then(Value::as_str) {
                        if !text.is_empty() {
                            texts.push(text.to_string());
                        }
                    }
                }
                Some("tool_use") => {
                    let id = block.get("id").and_then(Value::as_str);
                    let name = block.get("name").and_then(Value::as_str);
                    let (Some(id), Some(name)) = (id, name) else {
                        return Err(invalid(
                            "a tool_use block without `id` or `name`".to_string(),
                        ));
                    };
                    let arguments = match block.get("input") {
                        Some(Value::Object(input)) => Value::Object(input.clone()),
                        None | Some(Value::Null) => json!({}),
                        Some(other) => json!({"_raw": other.to_string()}),
                    };
                    tool_calls.push(ToolCall {
                        id: id.to_string(),
                        name: name.to_string(),
                        arguments,
                    });
                }
                // Server tool blocks and types added later: nothing the agent uses.
                _ => {}
            }
        }

        Ok(LlmResponse {
            text: (!texts.is_empty()).then(|| texts.join("\n")),
            tool_calls,
            usage: usage(body.get("usage")),
            stop_reason: body
                .get("stop_reason")
                .and_then(Value::as_str)
                .map(str::to_string),
            reasoning,
        })
    }
}

#[async_trait]
impl LlmClient for AnthropicClient {
    fn provider(&self) -> &'static str {
        PROVIDER
    }

    async fn complete(&self, request: &LlmRequest) -> Result<LlmResponse, LlmError> {
        let body = self.body(request);
        let url = format!("{}/v1/messages", self.base_url);
        let endpoint = Endpoint {
            provider: PROVIDER,
            http: &self.http,
            policy: &self.retry,
            secret: Some(&self.api_key_text),
            auth_failure: None,
        };
        let answer = send_json(&endpoint, |http| {
            http.post(&url)
                .header("x-api-key", self.api_key.clone())
                .header("anthropic-version", API_VERSION)
                .json(&body)
        })
        .await?;
        let response = Self::parse_response(&answer)?;
        self.remember(&response);
        Ok(response)
    }

    async fn stream(
        &self,
        request: &LlmRequest,
        on_delta: &(dyn Fn(StreamDelta) + Send + Sync),
    ) -> Result<LlmResponse, LlmError> {
        let mut body = self.body(request);
        body["stream"] = json!(true);
        let url = format!("{}/v1/messages", self.base_url);
        let endpoint = Endpoint {
            provider: PROVIDER,
            http: &self.http,
            policy: &self.retry,
            secret: Some(&self.api_key_text),
            auth_failure: None,
        };
        send_stream(
            &endpoint,
            |http| {
                http.post(&url)
                    .header("x-api-key", self.api_key.clone())
                    .header("anthropic-version", API_VERSION)
                    .header("accept", "text/event-stream")
                    .json(&body)
            },
            AnthropicStream::default,
            on_delta,
        )
        .await
        .inspect(|response| self.remember(response))
    }
}

impl AnthropicClient {
    fn body(&self, request: &LlmRequest) -> Value {
        let reasoning = self.reasoning.lock().unwrap_or_else(|e| e.into_inner());
        Self::request_body_with(request, &reasoning)
    }

    fn remember(&self, response: &LlmResponse) {
        self.reasoning
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remember(response);
    }
}

/// The thinking budget to ask `model` for, if it takes extended thinking (`type: enabled`):
/// at least the API's minimum of 1024, and cut so that `max_tokens` plus the budget stays
/// within the model's output limit; `None` for models without it or without room.
fn thinking_budget_for(model: &str, max_tokens: u32, budget: u32) -> Option<u32> {
    let name = model.rsplit('/').next().unwrap_or(model);
    let opus_4 = name.strip_prefix("claude-opus-4-").is_some_and(|rest| {
        let first = rest.split('-').next().unwrap_or("");
        // claude-opus-4-20250514, -4-0 and -4-1 (32k output), -4-5 and -4-6 (64k).
        first.len() == 8 || matches!(first, "0" | "1" | "5" | "6")
    });
    let output_limit: u32 = if ["claude-opus-4-2", "claude-opus-4-0", "claude-opus-4-1"]
        .iter()
        .any(|p| name.starts_with(p))
    {
        32_000
    } else {
        64_000
    };
    let thinks = opus_4
        || ["claude-3-7-sonnet", "claude-sonnet-4", "claude-haiku-4"]
            .iter()
            .any(|p| name.starts_with(p));
    if !thinks {
        return None;
    }
    let budget = budget
        .max(1024)
        .min(output_limit.saturating_sub(max_tokens));
    (budget >= 1024).then_some(budget)
}

/// Whether a request may ask for thinking. The API wants the current turn (everything since
/// the user's last message) to start with the thinking blocks of its first tool-calling
/// answer; without them (unknown to this client: a session continued after a restart, or a
/// turn that began without thinking) the rest of the turn goes without thinking.
fn can_think(conversation: &[Message], reasoning: &ReasoningCache) -> bool {
    let turn_start = conversation
        .iter()
        .rposition(|m| matches!(m, Message::User { .. }))
        .map_or(0, |i| i + 1);
    match conversation[turn_start..]
        .iter()
        .find(|m| matches!(m, Message::Assistant { tool_calls, .. } if !tool_calls.is_empty()))
    {
        Some(Message::Assistant { tool_calls, .. }) => reasoning.of(tool_calls).is_some(),
        _ => true,
    }
}

/// Assembles a streamed Messages answer.
#[derive(Default)]
pub struct AnthropicStream {
    /// The message from `message_start`, completed as events arrive.
    message: Map<String, Value>,
    /// Content blocks by index; tool inputs as their JSON text so far.
    blocks: Vec<(Value, String)>,
    usage: Map<String, Value>,
    stopped: bool,
    /// Text was already reported (a later text block starts on a new line, as in the
    /// assembled message).
    reported_text: bool,
}

impl AnthropicStream {
    /// Reports the first text of a block, after a line break when an earlier block had text.
    fn report(&mut self, text: String, on_delta: &mut dyn FnMut(StreamDelta)) {
        if self.reported_text {
            on_delta(StreamDelta::Text("\n".to_string()));
        }
        self.reported_text = true;
        on_delta(StreamDelta::Text(text));
    }

    fn block(&mut self, index: Option<u64>) -> Result<&mut (Value, String), StreamFailure> {
        let index = index.unwrap_or(0) as usize;
        self.blocks.get_mut(index).ok_or_else(|| {
            StreamFailure::Fatal(LlmError::InvalidResponse {
                provider: PROVIDER,
                message: format!("a delta for content block {index}, which was never started"),
            })
        })
    }
}

impl StreamReader for AnthropicStream {
    type Output = LlmResponse;

    fn on_event(
        &mut self,
        event: SseEvent,
        on_text: &mut dyn FnMut(StreamDelta),
    ) -> Result<(), StreamFailure> {
        let Ok(data) = serde_json::from_str::<Value>(&event.data) else {
            return Err(StreamFailure::Fatal(LlmError::InvalidResponse {
                provider: PROVIDER,
                message: format!(
                    "a stream event is not JSON: {}",
                    super::retry::truncate(&event.data)
                ),
            }));
        };
        let kind = data
            .get("type")
            .and_then(Value::as_str)
            .or(event.event.as_deref())
            .unwrap_or("");
        let index = data.get("index").and_then(Value::as_u64);
        match kind {
            "message_start" => {
                if let Some(Value::Object(message)) = data.get("message") {
                    self.message = message.clone();
                    if let Some(Value::Object(usage)) = message.get("usage") {
                        self.usage = usage.clone();
                    }
                }
            }
            "content_block_start" => {
                let block = match data.get("content_block") {
                    Some(block @ Value::Object(_)) => block.clone(),
                    _ => json!({}),
                };
                let i = index.unwrap_or(self.blocks.len() as u64) as usize;
                if self.blocks.len() <= i {
                    self.blocks.resize(i + 1, (json!({}), String::new()));
                }
                self.blocks[i] = (block, String::new());
                let block = &self.blocks[i].0;
                if block.get("type").and_then(Value::as_str) == Some("text") {
                    let text = block.get("text").and_then(Value::as_str).unwrap_or("");
                    if !text.is_empty() {
                        let text = text.to_string();
                        self.report(text, on_text);
                    }
                }
            }
            "content_block_delta" => {
                let delta = data.get("delta").cloned().unwrap_or(json!({}));
                let (block, partial_json) = self.block(index)?;
                match delta.get("type").and_then(Value::as_str) {
                    Some("text_delta") => {
                        let piece = delta.get("text").and_then(Value::as_str).unwrap_or("");
                        let before = block["text"].as_str().unwrap_or("").to_string();
                        let starts_block = before.is_empty();
                        block["text"] = json!(before + piece);
                        if !piece.is_empty() {
                            let piece = piece.to_string();
                            if starts_block {
                                self.report(piece, on_text);
                            } else {
                                on_text(StreamDelta::Text(piece));
                            }
                        }
                    }
                    Some("input_json_delta") => {
                        partial_json.push_str(
                            delta
                                .get("partial_json")
                                .and_then(Value::as_str)
                                .unwrap_or(""),
                        );
                    }
                    Some("thinking_delta") => {
                        let piece = delta.get("thinking").and_then(Value::as_str).unwrap_or("");
                        let text = block["thinking"].as_str().unwrap_or("").to_string() + piece;
                        block["thinking"] = json!(text);
                        if !piece.is_empty() {
                            on_text(StreamDelta::Thinking(piece.to_string()));
                        }
                    }
                    Some("signature_delta") => {
                        if let Some(signature) = delta.get("signature") {
                            block["signature"] = signature.clone();
                        }
                    }
                    _ => {}
                }
            }
            "content_block_stop" => {
                let (block, partial_json) = self.block(index)?;
                if block.get("type").and_then(Value::as_str) == Some("tool_use") {
                    block["input"] = tool_input(partial_json);
                }
            }
            "message_delta" => {
                if let Some(Value::Object(delta)) = data.get("delta") {
                    for (key, value) in delta {
                        self.message.insert(key.clone(), value.clone());
                    }
                }
                // Counts in `message_delta` are cumulative: they replace earlier ones.
                if let Some(Value::Object(usage)) = data.get("usage") {
                    for (key, value) in usage {
                        if !value.is_null() {
                            self.usage.insert(key.clone(), value.clone());
                        }
                    }
                }
            }
            "message_stop" => self.stopped = true,
            "error" => {
                let message = super::retry::summarize_error_value(&data)
                    .unwrap_or_else(|| super::retry::truncate(&event.data));
                let error_type = data["error"]["type"].as_str().unwrap_or("");
                return Err(match error_type {
                    "overloaded_error" | "api_error" | "rate_limit_error" | "timeout_error" => {
                        StreamFailure::Retryable(format!("error in the stream: {message}"))
                    }
                    _ => StreamFailure::Fatal(LlmError::InvalidResponse {
                        provider: PROVIDER,
                        message: format!("error in the stream: {message}"),
                    }),
                });
            }
            // `ping` and event types added later.
            _ => {}
        }
        Ok(())
    }

    fn is_complete(&self) -> bool {
        self.stopped
    }

    fn finish(mut self) -> Result<LlmResponse, LlmError> {
        let content: Vec<Value> = self
            .blocks
            .into_iter()
            .map(|(mut block, partial_json)| {
                // A tool block whose stop event never came still gets its input.
                if block.get("type").and_then(Value::as_str) == Some("tool_use")
                    && !partial_json.is_empty()
                {
                    block["input"] = tool_input(&partial_json);
                }
                block
            })
            .collect();
        self.message.insert("content".into(), Value::Array(content));
        self.message
            .insert("usage".into(), Value::Object(self.usage));
        AnthropicClient::parse_response(&Value::Object(self.message))
    }

    fn whole(self, body: &Value) -> Result<LlmResponse, LlmError> {
        AnthropicClient::parse_response(body)
    }
}

/// A tool call's input from its streamed JSON text: empty means no arguments, text that is
/// not a JSON object is kept as `{"_raw": ...}`.
fn tool_input(partial_json: &str) -> Value {
    if partial_json.trim().is_empty() {
        return json!({});
    }
    match serde_json::from_str::<Value>(partial_json) {
        Ok(Value::Object(input)) => Value::Object(input),
        _ => json!({"_raw": partial_json}),
    }
}

fn tools(specs: &[ToolSpec], cache: bool) -> Vec<Value> {
    let last = specs.len().saturating_sub(1);
    specs
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            let mut tool = json!({
                "name": spec.name,
                "description": spec.description,
                "input_schema": input_schema(&spec.parameters),
            });
            if cache && i == last {
                tool["cache_control"] = json!({"type": "ephemeral"});
            }
            tool
        })
        .collect()
}

/// Anthropic requires an object schema; anything else becomes an empty object schema.
fn input_schema(parameters: &Value) -> Value {
    match parameters {
        Value::Object(map) if map.get("type").and_then(Value::as_str) == Some("object") => {
            parameters.clone()
        }
        Value::Object(map) if !map.contains_key("type") && map.contains_key("properties") => {
            let mut schema = map.clone();
            schema.insert("type".into(), json!("object"));
            Value::Object(schema)
        }
        _ => json!({"type": "object", "properties": {}}),
    }
}

/// Converts the conversation to Messages API turns: consecutive turns of the same role are
/// merged (so consecutive tool results form one user turn), and the last block of the last
/// user turn carries a cache marker.
/// The conversation as Messages API turns; with `reasoning` (thinking enabled), assistant
/// turns that called tools start with their remembered thinking blocks.
fn messages(
    conversation: &[Message],
    cache: bool,
    reasoning: Option<&ReasoningCache>,
) -> Vec<Value> {
    let mut turns: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for message in conversation {
        let (role, blocks) = match message {
            Message::User { content } => ("user", vec![json!({"type": "text", "text": content})]),
            Message::Assistant { text, tool_calls } => {
                let mut blocks: Vec<Value> = reasoning
                    .and_then(|r| r.of(tool_calls))
                    .cloned()
                    .unwrap_or_default();
                if let Some(text) = text.as_deref().filter(|t| !t.trim().is_empty()) {
                    blocks.push(json!({"type": "text", "text": text}));
                }
                for call in tool_calls {
                    let input = if call.arguments.is_object() {
                        call.arguments.clone()
                    } else {
                        json!({})
                    };
                    blocks.push(json!({
                        "type": "tool_use",
                        "id": call.id,
                        "name": call.name,
                        "input": input,
                    }));
                }
                ("assistant", blocks)
            }
            Message::Tool {
                call_id,
                content,
                is_error,
                ..
            } => (
                "user",
                vec![json!({
                    "type": "tool_result",
                    "tool_use_id": call_id,
                    // The API refuses empty error results; an explicit marker reads better.
                    "content": if content.is_empty() { EMPTY_RESULT } else { content },
                    "is_error": is_error,
                })],
            ),
        };
        if blocks.is_empty() {
            continue;
        }
        match turns.last_mut() {
            Some((last_role, last_blocks)) if *last_role == role => last_blocks.extend(blocks),
            _ => turns.push((role, blocks)),
        }
    }

    if let Some((_, blocks)) = turns
        .iter_mut()
        .rev()
        .find(|(role, _)| cache && *role == "user")
    {
        if let Some(Value::Object(block)) = blocks.last_mut() {
            block.insert("cache_control".into(), json!({"type": "ephemeral"}));
        }
    }

    turns
        .into_iter()
        .map(|(role, blocks)| json!({"role": role, "content": blocks}))
        .collect()
}

/// `input_tokens` counts only uncached input: the total adds cache reads and cache writes.
fn usage(usage: Option<&Value>) -> Usage {
    let count = |name: &str| {
        usage
            .and_then(|u| u.get(name))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    let cache_read = count("cache_read_input_tokens");
    let cache_write = count("cache_creation_input_tokens");
    Usage {
        input_tokens: count("input_tokens")
            .saturating_add(cache_read)
            .saturating_add(cache_write),
        output_tokens: count("output_tokens"),
        cached_input_tokens: cache_read,
        cache_write_tokens: cache_write,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(messages: Vec<Message>) -> LlmRequest {
        LlmRequest {
            model: "claude-sonnet-4-5".into(),
            system: "You are Lucid.".into(),
            messages,
            tools: vec![
                ToolSpec {
                    name: "execute_bash".into(),
                    description: "Run a command".into(),
                    parameters: json!({"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}),
                },
                ToolSpec {
                    name: "finish".into(),
                    description: "Finish".into(),
                    parameters: json!({}),
                },
            ],
            max_tokens: 1024,
            cache_prompt: true,
            thinking_budget: None,
        }
    }

    #[test]
    fn body_marks_system_last_tool_and_last_user_turn_for_caching() {
        let body = AnthropicClient::request_body(&request(vec![
            Message::User {
                content: "fix it".into(),
            },
            Message::Assistant {
                text: Some("Looking.".into()),
                tool_calls: vec![
                    ToolCall {
                        id: "toolu_1".into(),
                        name: "execute_bash".into(),
                        arguments: json!({"command": "ls"}),
                    },
                    ToolCall {
                        id: "toolu_2".into(),
                        name: "execute_bash".into(),
                        arguments: json!({"command": "pwd"}),
                    },
                ],
            },
            Message::Tool {
                call_id: "toolu_1".into(),
                name: "execute_bash".into(),
                content: "a.txt".into(),
                is_error: false,
            },
            Message::Tool {
                call_id: "toolu_2".into(),
                name: "execute_bash".into(),
                content: "no such dir".into(),
                is_error: true,
            },
        ]));
        let expected = json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 1024,
            "system": [{"type": "text", "text": "You are Lucid.", "cache_control": {"type": "ephemeral"}}],
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "fix it"}]},
                {"role": "assistant", "content": [
                    {"type": "text", "text": "Looking."},
                    {"type": "tool_use", "id": "toolu_1", "name": "execute_bash", "input": {"command": "ls"}},
                    {"type": "tool_use", "id": "toolu_2", "name": "execute_bash", "input": {"command": "pwd"}},
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "a.txt", "is_error": false},
                    {"type": "tool_result", "tool_use_id": "toolu_2", "content": "no such dir", "is_error": true,
                     "cache_control": {"type": "ephemeral"}},
                ]},
            ],
            "tools": [
                {"name": "execute_bash", "description": "Run a command",
                 "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}},
                {"name": "finish", "description": "Finish",
                 "input_schema": {"type": "object", "properties": {}},
                 "cache_control": {"type": "ephemeral"}},
            ],
        });
        assert_eq!(body, expected);
    }

    #[test]
    fn one_off_requests_carry_no_cache_markers() {
        let mut req = request(vec![Message::User {
            content: "summarise".into(),
        }]);
        req.cache_prompt = false;
        let body = AnthropicClient::request_body(&req);
        assert!(!body.to_string().contains("cache_control"), "{body}");
        assert_eq!(body["system"][0]["text"], "You are Lucid.");
    }

    #[test]
    fn empty_system_and_no_tools_are_omitted() {
        let mut req = request(vec![Message::User {
            content: "hi".into(),
        }]);
        req.system.clear();
        req.tools.clear();
        let body = AnthropicClient::request_body(&req);
        assert!(body.get("system").is_none());
        assert!(body.get("tools").is_none());
        assert_eq!(
            body["messages"][0]["content"][0]["cache_control"],
            json!({"type": "ephemeral"})
        );
    }

    #[test]
    fn response_text_tool_use_and_usage_are_parsed() {
        let body = json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
            "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "x"},
                {"type": "text", "text": "Running ls."},
                {"type": "tool_use", "id": "toolu_9", "name": "execute_bash", "input": {"command": "ls"}},
            ],
            "stop_reason": "tool_use",
            "usage": {"input_tokens": 12, "output_tokens": 30,
                      "cache_read_input_tokens": 1000, "cache_creation_input_tokens": 200},
        });
        let response = AnthropicClient::parse_response(&body).unwrap();
        assert_eq!(response.text.as_deref(), Some("Running ls."));
        assert_eq!(
            response.tool_calls,
            vec![ToolCall {
                id: "toolu_9".into(),
                name: "execute_bash".into(),
                arguments: json!({"command": "ls"}),
            }]
        );
        assert_eq!(response.stop_reason.as_deref(), Some("tool_use"));
        assert_eq!(
            response.usage,
            Usage {
                input_tokens: 1212,
                output_tokens: 30,
                cached_input_tokens: 1000,
                cache_write_tokens: 200,
            }
        );
    }

    fn tool_turn(id: &str) -> Vec<Message> {
        vec![
            Message::User {
                content: "fix it".into(),
            },
            Message::Assistant {
                text: None,
                tool_calls: vec![ToolCall {
                    id: id.into(),
                    name: "execute_bash".into(),
                    arguments: json!({"command": "ls"}),
                }],
            },
            Message::Tool {
                call_id: id.into(),
                name: "execute_bash".into(),
                content: "a.txt".into(),
                is_error: false,
            },
        ]
    }

    #[test]
    fn thinking_blocks_are_kept_and_go_back_with_their_turn() {
        let answer = AnthropicClient::parse_response(&json!({
            "content": [
                {"type": "thinking", "thinking": "look first", "signature": "sig-1"},
                {"type": "redacted_thinking", "data": "opaque"},
                {"type": "tool_use", "id": "toolu_7", "name": "execute_bash", "input": {"command": "ls"}},
            ],
            "stop_reason": "tool_use",
        }))
        .unwrap();
        assert_eq!(
            answer.reasoning,
            vec![
                json!({"type": "thinking", "thinking": "look first", "signature": "sig-1"}),
                json!({"type": "redacted_thinking", "data": "opaque"}),
            ]
        );
        let mut cache = ReasoningCache::default();
        cache.remember(&answer);
        let mut req = request(tool_turn("toolu_7"));
        req.thinking_budget = Some(4000);
        let body = AnthropicClient::request_body_with(&req, &cache);
        assert_eq!(
            body["thinking"],
            json!({"type": "enabled", "budget_tokens": 4000})
        );
        assert_eq!(body["max_tokens"], json!(1024 + 4000));
        let assistant = &body["messages"][1];
        assert_eq!(assistant["role"], "assistant");
        assert_eq!(assistant["content"][0], answer.reasoning[0]);
        assert_eq!(assistant["content"][1], answer.reasoning[1]);
        assert_eq!(assistant["content"][2]["type"], "tool_use");

        // A tool turn this client has no thinking for (a continued session): no thinking for
        // this request, and no blocks.
        let body = AnthropicClient::request_body_with(&request(tool_turn("toolu_other")), &cache);
        assert!(body.get("thinking").is_none());
        let mut req = request(tool_turn("toolu_other"));
        req.thinking_budget = Some(4000);
        let body = AnthropicClient::request_body_with(&req, &cache);
        assert!(body.get("thinking").is_none(), "{body}");
        assert_eq!(body["max_tokens"], json!(1024));
        assert_eq!(body["messages"][1]["content"][0]["type"], "tool_use");
        // Thinking off: remembered blocks stay home.
        let body = AnthropicClient::request_body_with(&request(tool_turn("toolu_7")), &cache);
        assert!(body.get("thinking").is_none());
        assert_eq!(body["messages"][1]["content"][0]["type"], "tool_use");
        // A conversation whose last assistant turn answered in text may think.
        let mut req = request(vec![Message::User {
            content: "hi".into(),
        }]);
        req.thinking_budget = Some(500);
        let body = AnthropicClient::request_body_with(&req, &ReasoningCache::default());
        assert_eq!(
            body["thinking"]["budget_tokens"],
            json!(1024),
            "the API's minimum"
        );
    }

    #[test]
    fn thinking_is_asked_only_of_models_that_take_it_within_their_output_limit() {
        assert_eq!(
            thinking_budget_for("claude-sonnet-4-5", 8192, 4096),
            Some(4096)
        );
        assert_eq!(
            thinking_budget_for("claude-3-7-sonnet-latest", 8192, 500),
            Some(1024)
        );
        assert_eq!(
            thinking_budget_for("claude-haiku-4-5", 8192, 2048),
            Some(2048)
        );
        // Output limits: 32k for Opus 4 and 4.1, 64k for the others.
        assert_eq!(
            thinking_budget_for("claude-opus-4-1-20250805", 8192, 30_000),
            Some(23_808)
        );
        assert_eq!(
            thinking_budget_for("claude-opus-4-20250514", 8192, 30_000),
            Some(23_808)
        );
        assert_eq!(
            thinking_budget_for("claude-opus-4-5", 8192, 100_000),
            Some(55_808)
        );
        assert_eq!(
            thinking_budget_for("anthropic/claude-sonnet-4-5", 8192, 2048),
            Some(2048)
        );
        // Models without extended thinking, or unknown to this client, get none.
        for model in [
            "claude-3-5-sonnet-latest",
            "claude-3-haiku-20240307",
            "claude-opus-4-7",
            "my-proxy-model",
        ] {
            assert_eq!(thinking_budget_for(model, 8192, 4096), None, "{model}");
        }
        assert_eq!(
            thinking_budget_for("claude-opus-4-1", 31_500, 4096),
            None,
            "no room"
        );
    }

    #[test]
    fn the_reasoning_cache_is_bounded() {
        let mut cache = ReasoningCache::default();
        for i in 0..MAX_REMEMBERED_TURNS + 20 {
            cache.remember(&LlmResponse {
                text: None,
                tool_calls: vec![ToolCall {
                    id: format!("toolu_{i}"),
                    name: "x".into(),
                    arguments: json!({}),
                }],
                usage: Usage::default(),
                stop_reason: None,
                reasoning: vec![json!({"type": "redacted_thinking", "data": "d"})],
            });
        }
        assert_eq!(cache.by_call.len(), MAX_REMEMBERED_TURNS);
        assert!(!cache.by_call.contains_key("toolu_0"));
    }

    #[test]
    fn responses_without_content_are_invalid() {
        let err = AnthropicClient::parse_response(&json!({"id": "x"})).unwrap_err();
        assert!(matches!(err, LlmError::InvalidResponse { .. }), "{err}");
        let err = AnthropicClient::parse_response(
            &json!({"content": [{"type": "tool_use", "input": {}}]}),
        )
        .unwrap_err();
        assert!(err.to_string().contains("tool_use"), "{err}");
    }

    #[test]
    fn empty_tool_results_are_marked_and_empty_assistant_turns_dropped() {
        let body = AnthropicClient::request_body(&request(vec![
            Message::User {
                content: "go".into(),
            },
            Message::Assistant {
                text: Some("  ".into()),
                tool_calls: vec![],
            },
            Message::Assistant {
                text: None,
                tool_calls: vec![ToolCall {
                    id: "toolu_1".into(),
                    name: "execute_bash".into(),
                    arguments: json!("not an object"),
                }],
            },
            Message::Tool {
                call_id: "toolu_1".into(),
                name: "execute_bash".into(),
                content: String::new(),
                is_error: true,
            },
        ]));
        let messages = body["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 3);
        assert_eq!(messages[1]["content"][0]["input"], json!({}));
        assert_eq!(messages[2]["content"][0]["content"], "(no output)");
    }

    #[test]
    fn keys_that_cannot_be_headers_are_rejected_without_echoing_them() {
        let err = AnthropicClient::new(reqwest::Client::new(), DEFAULT_BASE_URL, "sk-bad\nkey")
            .unwrap_err();
        assert!(matches!(err, LlmError::Auth { .. }));
        assert!(!err.to_string().contains("sk-bad"));
    }
}
