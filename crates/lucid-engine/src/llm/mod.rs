//! LLM providers behind one interface: Anthropic Messages ([`anthropic`]), Google Gemini
//! ([`gemini`]) and any OpenAI-compatible chat-completions endpoint ([`openai_compat`]).
//!
//! The agent speaks the provider-neutral types below; each client translates them to its wire
//! format. Cancellation is by dropping the future (the HTTP request is aborted).
//!
//! [`LlmClient::stream`] asks for a streamed answer (server-sent events in each provider's
//! format, see [`sse`]) and reports text as it arrives through a [`StreamDelta`] callback; the
//! result is the same [`LlmResponse`] as [`LlmClient::complete`], assembled from the deltas
//! (tool calls included). A stream that breaks mid-way is retried like a failed request; the
//! callback then gets [`StreamDelta::Restart`] so partial text shown so far can be discarded.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

pub mod anthropic;
pub mod gemini;
pub mod openai_compat;
pub mod pricing;
pub mod provider;
pub mod retry;
pub mod sse;

pub use anthropic::AnthropicClient;
pub use gemini::GeminiClient;
pub use openai_compat::OpenAiCompatClient;
pub use pricing::estimate_cost_usd;
pub use provider::{
    provider_spec, resolve_provider, resolve_provider_with_policy, ProviderSpec, ResolvedModel,
};
pub use retry::RetryPolicy;

/// A tool the model may call; `parameters` is a JSON Schema object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    pub parameters: Value,
}

/// A tool call requested by the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// Provider id of the call (synthesised for providers without ids, e.g. Gemini).
    pub id: String,
    pub name: String,
    /// Parsed arguments (an object); malformed argument JSON becomes `{"_raw": "..."}`.
    pub arguments: Value,
}

/// One conversation turn in provider-neutral form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "snake_case")]
pub enum Message {
    User {
        content: String,
    },
    Assistant {
        text: Option<String>,
        tool_calls: Vec<ToolCall>,
    },
    /// The result of a tool call, paired with the call by `call_id` (and `name` for Gemini).
    Tool {
        call_id: String,
        name: String,
        content: String,
        is_error: bool,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct LlmRequest {
    pub model: String,
    /// Stable system prompt (marked for prompt caching where the provider supports it).
    pub system: String,
    pub messages: Vec<Message>,
    pub tools: Vec<ToolSpec>,
    pub max_tokens: u32,
    /// Mark the stable prefix for prompt caching (Anthropic `cache_control`). One-off requests
    /// (history summaries) leave it off: a cache write costs more than plain input and would
    /// never be read.
    pub cache_prompt: bool,
    /// Let the model think before it answers, with up to this many tokens of reasoning on top
    /// of `max_tokens` (Anthropic extended thinking, Gemini `thinkingBudget` with thought
    /// summaries); `None` leaves it to the model's default.
    pub thinking_budget: Option<u32>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Input tokens served from the provider's prompt cache (cache reads).
    pub cached_input_tokens: u64,
    /// Input tokens written to the provider's prompt cache (Anthropic
    /// `cache_creation_input_tokens`; billed above the input price).
    #[serde(default)]
    pub cache_write_tokens: u64,
}

impl Usage {
    /// Adds `other` to these totals.
    pub fn add(&mut self, other: &Usage) {
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.cached_input_tokens += other.cached_input_tokens;
        self.cache_write_tokens += other.cache_write_tokens;
    }
}

/// What a streaming request reports while the answer is being written.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamDelta {
    /// The next piece of the assistant's text.
    Text(String),
    /// The next piece of the model's thinking (reasoning) text, where the provider sends it;
    /// not part of the answer.
    Thinking(String),
    /// The stream broke and the request is being sent again: text reported so far for this
    /// request is void (the retried answer starts from the beginning).
    Restart { reason: String },
}

#[derive(Debug, Clone, PartialEq)]
pub struct LlmResponse {
    pub text: Option<String>,
    pub tool_calls: Vec<ToolCall>,
    pub usage: Usage,
    /// Provider stop reason as reported (`end_turn`, `tool_use`, `STOP`, `stop`, ...).
    pub stop_reason: Option<String>,
    /// The model's reasoning as the provider's own blocks, where they must go back with the
    /// turn (Anthropic `thinking` blocks with their signatures, `redacted_thinking`).
    pub reasoning: Vec<Value>,
}

#[derive(Debug, Error)]
pub enum LlmError {
    /// 401/403: the key is wrong. Never retried.
    #[error("the {provider} API rejected the API key ({status}): {message}")]
    Auth {
        provider: &'static str,
        status: u16,
        message: String,
    },
    /// 400/404/422: the request is wrong (model name, payload). Never retried.
    #[error("the {provider} API rejected the request ({status}): {message}")]
    BadRequest {
        provider: &'static str,
        status: u16,
        message: String,
    },
    /// 429/5xx after all retries.
    #[error("the {provider} API is unavailable ({status}) after {attempts} attempts: {message}")]
    Unavailable {
        provider: &'static str,
        status: u16,
        attempts: u32,
        message: String,
    },
    #[error("could not reach the {provider} API: {message}")]
    Network {
        provider: &'static str,
        message: String,
    },
    #[error("the {provider} API sent a response Lucid could not read: {message}")]
    InvalidResponse {
        provider: &'static str,
        message: String,
    },
    #[error("no API key for {provider}: set {env} or pass an API key with the task")]
    MissingKey {
        provider: &'static str,
        env: &'static str,
    },
    #[error("unsupported model provider '{0}'. Choose from: anthropic, google, openai")]
    UnsupportedProvider(String),
}

/// A chat model that can call tools.
#[async_trait]
pub trait LlmClient: Send + Sync {
    /// Provider key (`anthropic`, `google`, `openai`).
    fn provider(&self) -> &'static str;
    async fn complete(&self, request: &LlmRequest) -> Result<LlmResponse, LlmError>;

    /// Like [`LlmClient::complete`], streaming: text is reported through `on_delta` as it
    /// arrives. The default implementation does not stream (one delta with the whole text).
    async fn stream(
        &self,
        request: &LlmRequest,
        on_delta: &(dyn Fn(StreamDelta) + Send + Sync),
    ) -> Result<LlmResponse, LlmError> {
        let response = self.complete(request).await?;
        if let Some(text) = response.text.as_ref().filter(|t| !t.is_empty()) {
            on_delta(StreamDelta::Text(text.clone()));
        }
        Ok(response)
    }
}
