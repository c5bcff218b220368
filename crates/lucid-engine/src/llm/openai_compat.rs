//! OpenAI-compatible chat-completions client (`POST {base}/chat/completions`).
//!
//! Works with OpenAI itself and with compatible endpoints: LiteLLM proxy, OpenRouter, Ollama,
//! vLLM. The key is optional (local endpoints such as Ollama need none); without a key no
//! `Authorization` header is sent.
//!
//! Streaming (`"stream": true` with `stream_options.include_usage`): `data:` chunks of
//! `chat.completion.chunk` whose `choices[0].delta` carries text (`content`) and tool calls in
//! pieces (`tool_calls[]` by `index`: the first piece has `id` and `function.name`, later ones
//! fragments of `function.arguments`), `finish_reason` in the last choice chunk, then a chunk
//! with `usage` and no choices, then `data: [DONE]`. The chunks are assembled into the body a
//! non-streaming request would have returned and read by the same parser.

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

const PROVIDER: &str = "openai";
/// Default base URL (the OpenAI API, including `/v1`).
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";
/// Prefix of call ids Lucid made up for tool calls that came without an id.
pub const SYNTHETIC_ID_PREFIX: &str = "call_lucid_";

/// A client for an OpenAI-compatible chat-completions endpoint.
pub struct OpenAiCompatClient {
    http: reqwest::Client,
    base_url: String,
    authorization: Option<HeaderValue>,
    api_key_text: Option<String>,
    retry: RetryPolicy,
    /// OpenAI's own API wants `max_completion_tokens`; compatible servers know `max_tokens`.
    uses_max_completion_tokens: bool,
}

impl std::fmt::Debug for OpenAiCompatClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiCompatClient")
            .field("base_url", &self.base_url)
            .field("has_key", &self.authorization.is_some())
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl OpenAiCompatClient {
    /// A client for `base_url` (e.g. `https://api.openai.com/v1` or `http://localhost:11434/v1`)
    /// with the default retry policy. Fails when the key cannot be sent in an HTTP header.
    pub fn new(
        http: reqwest::Client,
        base_url: &str,
        api_key: Option<&str>,
    ) -> Result<Self, LlmError> {
        let base_url = base_url.trim_end_matches('/').to_string();
        let authorization = api_key
            .map(|key| secret_header(PROVIDER, &format!("Bearer {key}")))
            .transpose()?;
        let uses_max_completion_tokens = url::Url::parse(&base_url)
            .ok()
            .and_then(|u| {
                u.host_str()
                    .map(|h| h.eq_ignore_ascii_case("api.openai.com"))
            })
            .unwrap_or(false);
        Ok(Self {
            http,
            base_url,
            authorization,
            api_key_text: api_key.map(str::to_string),
            retry: RetryPolicy::default(),
            uses_max_completion_tokens,
        })
    }

    /// Replaces the retry policy (attempts, backoff base, caps).
    pub fn with_retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The JSON body sent for `request`.
    pub fn request_body(&self, request: &LlmRequest) -> Value {
        let mut body = Map::new();
        body.insert("model".into(), json!(request.model));
        body.insert("messages".into(), Value::Array(messages(request)));
        if !request.tools.is_empty() {
            body.insert("tools".into(), Value::Array(tools(&request.tools)));
        }
        let limit_key = if self.uses_max_completion_tokens {
            "max_completion_tokens"
        } else {
            "max_tokens"
        };
        body.insert(limit_key.into(), json!(request.max_tokens.max(1)));
        Value::Object(body)
    }

    /// Reads a chat-completions answer.
    pub fn parse_response(body: &Value) -> Result<LlmResponse, LlmError> {
        let invalid = |message: String| LlmError::InvalidResponse {
            provider: PROVIDER,
            message,
        };
        let Some(choice) = body
            .get("choices")
            .and_then(Value::as_array)
            .and_then(|c| c.first())
        else {
            return Err(invalid(match super::retry::summarize_error_value(body) {
                Some(error) => format!("an error instead of an answer: {error}"),
                None => "the answer has no `choices`".to_string(),
            }));
        };
        let message = choice
            .get("message")
            .filter(|m| m.is_object())
            .ok_or_else(|| invalid("the first choice has no `message`".into()))?;

        let text = match message.get("content") {
            Some(Value::String(text)) if !text.is_empty() => Some(text.clone()),
            // Some servers send content as a list of parts.
            Some(Value::Array(parts)) => {
                let joined: String = parts
                    .iter()
                    .filter_map(|p| p.get("text").and_then(Value::as_str))
                    .collect();
                (!joined.is_empty()).then_some(joined)
            }
            _ => None,
        };

        let mut tool_calls = Vec::new();
        for (index, call) in message
            .get("tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let function = call.get("function");
            let Some(name) = function.and_then(|f| f.get("name")).and_then(Value::as_str) else {
                return Err(invalid("a tool call without `function.name`".into()));
            };
            let id = call
                .get("id")
                .and_then(Value::as_str)
                .filter(|id| !id.is_empty())
                .map(str::to_string)
                .unwrap_or_else(|| {
                    format!(
                        "{SYNTHETIC_ID_PREFIX}{index}_{}",
                        uuid::Uuid::new_v4().simple()
                    )
                });
            tool_calls.push(ToolCall {
                id,
                name: name.to_string(),
                arguments: parse_arguments(function.and_then(|f| f.get("arguments"))),
            });
        }

        Ok(LlmResponse {
            text,
            tool_calls,
            usage: usage(body.get("usage")),
            stop_reason: choice
                .get("finish_reason")
                .and_then(Value::as_str)
                .map(str::to_string),
            reasoning: Vec::new(),
        })
    }
}

#[async_trait]
impl LlmClient for OpenAiCompatClient {
    fn provider(&self) -> &'static str {
        PROVIDER
    }

    async fn complete(&self, request: &LlmRequest) -> Result<LlmResponse, LlmError> {
        let body = self.request_body(request);
        let url = format!("{}/chat/completions", self.base_url);
        let endpoint = Endpoint {
            provider: PROVIDER,
            http: &self.http,
            policy: &self.retry,
            secret: self.api_key_text.as_deref(),
            auth_failure: None,
        };
        let answer = send_json(&endpoint, |http| {
            let builder = http.post(&url).json(&body);
            match &self.authorization {
                Some(value) => builder.header("authorization", value.clone()),
                None => builder,
            }
        })
        .await?;
        Self::parse_response(&answer)
    }

    async fn stream(
        &self,
        request: &LlmRequest,
        on_delta: &(dyn Fn(StreamDelta) + Send + Sync),
    ) -> Result<LlmResponse, LlmError> {
        let mut body = self.request_body(request);
        body["stream"] = json!(true);
        body["stream_options"] = json!({"include_usage": true});
        let url = format!("{}/chat/completions", self.base_url);
        let endpoint = Endpoint {
            provider: PROVIDER,
            http: &self.http,
            policy: &self.retry,
            secret: self.api_key_text.as_deref(),
            auth_failure: None,
        };
        send_stream(
            &endpoint,
            |http| {
                let builder = http
                    .post(&url)
                    .header("accept", "text/event-stream")
                    .json(&body);
                match &self.authorization {
                    Some(value) => builder.header("authorization", value.clone()),
                    None => builder,
                }
            },
            OpenAiStream::default,
            on_delta,
        )
        .await
    }
}

/// Assembles a streamed chat-completions answer.
#[derive(Default)]
pub struct OpenAiStream {
    text: String,
    /// Tool calls by their `index`: id, name, arguments text so far.
    calls: Vec<(Option<String>, String, String)>,
    finish_reason: Option<Value>,
    usage: Option<Value>,
    done: bool,
}

impl StreamReader for OpenAiStream {
    type Output = LlmResponse;

    fn on_event(
        &mut self,
        event: SseEvent,
        on_text: &mut dyn FnMut(StreamDelta),
    ) -> Result<(), StreamFailure> {
        let data = event.data.trim();
        if data == "[DONE]" {
            self.done = true;
            return Ok(());
        }
        if data.is_empty() {
            return Ok(());
        }
        let chunk: Value = serde_json::from_str(data).map_err(|_| {
            StreamFailure::Fatal(LlmError::InvalidResponse {
                provider: PROVIDER,
                message: format!(
                    "a stream chunk is not JSON: {}",
                    super::retry::truncate(data)
                ),
            })
        })?;
        if let Some(error) = chunk.get("error") {
            // OpenRouter and LiteLLM report upstream failures inside the stream.
            let message = super::retry::summarize_error_value(&chunk)
                .unwrap_or_else(|| super::retry::truncate(&error.to_string()));
            let status = error
                .get("code")
                .and_then(|c| c.as_u64().or_else(|| c.as_str()?.parse().ok()));
            return Err(match status {
                Some(code) if super::retry::is_retryable_status(code as u16) => {
                    StreamFailure::Retryable(format!("error in the stream ({code}): {message}"))
                }
                _ => StreamFailure::Fatal(LlmError::InvalidResponse {
                    provider: PROVIDER,
                    message: format!("error in the stream: {message}"),
                }),
            });
        }
        if let Some(usage) = chunk.get("usage").filter(|u| u.is_object()) {
            self.usage = Some(usage.clone());
        }
        let Some(choice) = chunk
            .get("choices")
            .and_then(Value::as_array)
            .and_then(|c| c.first())
        else {
            return Ok(());
        };
        if let Some(reason) = choice.get("finish_reason").filter(|r| !r.is_null()) {
            self.finish_reason = Some(reason.clone());
        }
        let Some(delta) = choice.get("delta") else {
            return Ok(());
        };
        // Reasoning text, where an OpenAI-compatible server exposes it: `reasoning_content`
        // (DeepSeek, vLLM, LiteLLM) or `reasoning` (OpenRouter, Ollama). OpenAI itself sends
        // none in Chat Completions.
        if let Some(piece) = ["reasoning_content", "reasoning"]
            .iter()
            .find_map(|k| delta.get(*k).and_then(Value::as_str))
        {
            if !piece.is_empty() {
                on_text(StreamDelta::Thinking(piece.to_string()));
            }
        }
        if let Some(piece) = delta.get("content").and_then(Value::as_str) {
            if !piece.is_empty() {
                self.text.push_str(piece);
                on_text(StreamDelta::Text(piece.to_string()));
            }
        }
        for (position, call) in delta
            .get("tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let index = call
                .get("index")
                .and_then(Value::as_u64)
                .unwrap_or(position as u64) as usize;
            if index > 1024 {
                return Err(StreamFailure::Fatal(LlmError::InvalidResponse {
                    provider: PROVIDER,
                    message: format!("a tool call with index {index}"),
                }));
            }
            if self.calls.len() <= index {
                self.calls
                    .resize(index + 1, (None, String::new(), String::new()));
            }
            let slot = &mut self.calls[index];
            if let Some(id) = call.get("id").and_then(Value::as_str) {
                if !id.is_empty() {
                    slot.0 = Some(id.to_string());
                }
            }
            let function = call.get("function");
            if let Some(name) = function.and_then(|f| f.get("name")).and_then(Value::as_str) {
                slot.1.push_str(name);
            }
            match function.and_then(|f| f.get("arguments")) {
                Some(Value::String(fragment)) => slot.2.push_str(fragment),
                Some(Value::Object(map)) => slot.2 = Value::Object(map.clone()).to_string(),
                _ => {}
            }
        }
        Ok(())
    }

    fn is_complete(&self) -> bool {
        self.done || self.finish_reason.is_some()
    }

    fn finish(self) -> Result<LlmResponse, LlmError> {
        let tool_calls: Vec<Value> = self
            .calls
            .into_iter()
            .filter(|(_, name, _)| !name.is_empty())
            .map(|(id, name, arguments)| {
                json!({"id": id, "type": "function",
                       "function": {"name": name, "arguments": arguments}})
            })
            .collect();
        let mut message = json!({"role": "assistant", "content": self.text});
        if !tool_calls.is_empty() {
            message["tool_calls"] = Value::Array(tool_calls);
        }
        let mut body = json!({
            "choices": [{"index": 0, "message": message,
                         "finish_reason": self.finish_reason.unwrap_or(Value::Null)}],
        });
        if let Some(usage) = self.usage {
            body["usage"] = usage;
        }
        OpenAiCompatClient::parse_response(&body)
    }

    fn whole(self, body: &Value) -> Result<LlmResponse, LlmError> {
        OpenAiCompatClient::parse_response(body)
    }
}

/// Arguments arrive as a JSON string; an empty string means no arguments, malformed JSON (or
/// JSON that is not an object) is kept as `{"_raw": "..."}`. Some servers send an object.
fn parse_arguments(arguments: Option<&Value>) -> Value {
    match arguments {
        None | Some(Value::Null) => json!({}),
        Some(Value::Object(map)) => Value::Object(map.clone()),
        Some(Value::String(text)) if text.trim().is_empty() => json!({}),
        Some(Value::String(text)) => match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(map)) => Value::Object(map),
            _ => json!({"_raw": text}),
        },
        Some(other) => json!({"_raw": other.to_string()}),
    }
}

fn messages(request: &LlmRequest) -> Vec<Value> {
    let mut out = Vec::with_capacity(request.messages.len() + 1);
    if !request.system.is_empty() {
        out.push(json!({"role": "system", "content": request.system}));
    }
    for message in &request.messages {
        if let Message::Assistant { text, tool_calls } = message {
            // An assistant turn with neither text nor calls is refused by several servers.
            if tool_calls.is_empty() && text.as_deref().is_none_or(str::is_empty) {
                continue;
            }
        }
        out.push(match message {
            Message::User { content } => json!({"role": "user", "content": content}),
            Message::Assistant { text, tool_calls } => {
                let mut turn = json!({
                    "role": "assistant",
                    "content": text.as_deref().filter(|t| !t.is_empty()),
                });
                if !tool_calls.is_empty() {
                    turn["tool_calls"] = tool_calls
                        .iter()
                        .map(|call| {
                            let arguments = if call.arguments.is_object() {
                                call.arguments.to_string()
                            } else {
                                "{}".to_string()
                            };
                            json!({
                                "id": call.id,
                                "type": "function",
                                "function": {"name": call.name, "arguments": arguments},
                            })
                        })
                        .collect();
                }
                turn
            }
            Message::Tool {
                call_id, content, ..
            } => json!({"role": "tool", "tool_call_id": call_id, "content": content}),
        });
    }
    out
}

fn tools(specs: &[ToolSpec]) -> Vec<Value> {
    specs
        .iter()
        .map(|spec| {
            let parameters = if spec.parameters.is_object()
                && spec.parameters.as_object().is_some_and(|p| !p.is_empty())
            {
                spec.parameters.clone()
            } else {
                json!({"type": "object", "properties": {}})
            };
            json!({
                "type": "function",
                "function": {
                    "name": spec.name,
                    "description": spec.description,
                    "parameters": parameters,
                },
            })
        })
        .collect()
}

/// `prompt_tokens` includes cached tokens (`prompt_tokens_details.cached_tokens`, or DeepSeek's
/// `prompt_cache_hit_tokens` through OpenRouter/LiteLLM).
fn usage(usage: Option<&Value>) -> Usage {
    let count = |value: Option<&Value>| value.and_then(Value::as_u64).unwrap_or(0);
    let Some(usage) = usage else {
        return Usage::default();
    };
    let cached = count(usage.pointer("/prompt_tokens_details/cached_tokens"))
        .max(count(usage.get("prompt_cache_hit_tokens")));
    Usage {
        input_tokens: count(usage.get("prompt_tokens")),
        output_tokens: count(usage.get("completion_tokens")),
        cached_input_tokens: cached,
        cache_write_tokens: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_system_tool_calls_and_tool_results() {
        let client =
            OpenAiCompatClient::new(reqwest::Client::new(), "http://127.0.0.1:4000/v1/", None)
                .unwrap();
        let request = LlmRequest {
            model: "gpt-4.1-mini".into(),
            system: "sys".into(),
            messages: vec![
                Message::User {
                    content: "go".into(),
                },
                Message::Assistant {
                    text: None,
                    tool_calls: vec![ToolCall {
                        id: "call_1".into(),
                        name: "execute_bash".into(),
                        arguments: json!({"command": "ls"}),
                    }],
                },
                Message::Tool {
                    call_id: "call_1".into(),
                    name: "execute_bash".into(),
                    content: "a.txt".into(),
                    is_error: false,
                },
            ],
            tools: vec![ToolSpec {
                name: "finish".into(),
                description: "done".into(),
                parameters: json!({}),
            }],
            max_tokens: 50,
            cache_prompt: true,
            thinking_budget: None,
        };
        assert_eq!(
            client.request_body(&request),
            json!({
                "model": "gpt-4.1-mini",
                "messages": [
                    {"role": "system", "content": "sys"},
                    {"role": "user", "content": "go"},
                    {"role": "assistant", "content": null, "tool_calls": [
                        {"id": "call_1", "type": "function",
                         "function": {"name": "execute_bash", "arguments": "{\"command\":\"ls\"}"}}
                    ]},
                    {"role": "tool", "tool_call_id": "call_1", "content": "a.txt"},
                ],
                "tools": [{"type": "function", "function": {"name": "finish", "description": "done",
                           "parameters": {"type": "object", "properties": {}}}}],
                "max_tokens": 50,
            })
        );
        let openai =
            OpenAiCompatClient::new(reqwest::Client::new(), DEFAULT_BASE_URL, Some("k")).unwrap();
        let body = openai.request_body(&request);
        assert_eq!(body["max_completion_tokens"], json!(50));
        assert!(body.get("max_tokens").is_none());
    }

    #[test]
    fn response_with_null_content_and_malformed_arguments() {
        let response = OpenAiCompatClient::parse_response(&json!({
            "id": "chatcmpl-1", "object": "chat.completion",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_a", "type": "function", "function": {"name": "execute_bash", "arguments": "{\"command\": \"ls\"}"}},
                    {"id": "call_b", "type": "function", "function": {"name": "execute_bash", "arguments": "{not json"}},
                    {"type": "function", "function": {"name": "finish", "arguments": ""}},
                ]}}],
            "usage": {"prompt_tokens": 2000, "completion_tokens": 25,
                      "prompt_tokens_details": {"cached_tokens": 1536}},
        }))
        .unwrap();
        assert_eq!(response.text, None);
        assert_eq!(response.stop_reason.as_deref(), Some("tool_calls"));
        assert_eq!(response.tool_calls[0].arguments, json!({"command": "ls"}));
        assert_eq!(
            response.tool_calls[1].arguments,
            json!({"_raw": "{not json"})
        );
        assert_eq!(response.tool_calls[2].arguments, json!({}));
        assert!(response.tool_calls[2].id.starts_with(SYNTHETIC_ID_PREFIX));
        assert_eq!(
            response.usage,
            Usage {
                input_tokens: 2000,
                output_tokens: 25,
                cached_input_tokens: 1536,
                cache_write_tokens: 0,
            }
        );
    }

    #[test]
    fn error_bodies_with_status_200_are_invalid_responses() {
        let err = OpenAiCompatClient::parse_response(
            &json!({"error": {"message": "Provider returned error", "code": 502}}),
        )
        .unwrap_err();
        assert!(matches!(err, LlmError::InvalidResponse { .. }));
        assert!(err.to_string().contains("Provider returned error"));
    }

    #[test]
    fn empty_assistant_turns_are_skipped() {
        let client =
            OpenAiCompatClient::new(reqwest::Client::new(), "http://127.0.0.1:1/v1", None).unwrap();
        let request = LlmRequest {
            model: "m".into(),
            system: String::new(),
            messages: vec![
                Message::User {
                    content: "a".into(),
                },
                Message::Assistant {
                    text: Some(String::new()),
                    tool_calls: vec![],
                },
                Message::User {
                    content: "b".into(),
                },
            ],
            tools: vec![],
            max_tokens: 10,
            cache_prompt: true,
            thinking_budget: None,
        };
        let body = client.request_body(&request);
        assert_eq!(
            body["messages"],
            json!([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}])
        );
        assert!(body.get("tools").is_none());
    }

    #[test]
    fn debug_output_hides_the_key() {
        let client =
            OpenAiCompatClient::new(reqwest::Client::new(), DEFAULT_BASE_URL, Some("sk-xyz-123"))
                .unwrap();
        assert!(!format!("{client:?}").contains("sk-xyz-123"));
    }
}
