//! The three LLM clients against the scripted LLM server over real HTTP on 127.0.0.1.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use lucid_engine::config::Config;
use std::sync::{Arc, Mutex};

use lucid_engine::llm::{
    resolve_provider_with_policy, AnthropicClient, GeminiClient, LlmClient, LlmError, LlmRequest,
    Message, OpenAiCompatClient, RetryPolicy, StreamDelta, ToolCall, ToolSpec,
};
use lucid_testkit::llm::{Format, ScriptedLlm, Step};
use serde_json::json;

const KEY: &str = "test-key-0123456789";

fn fast() -> RetryPolicy {
    RetryPolicy::with_base_delay(Duration::from_millis(5))
}

fn client_for(format: Format, base_url: &str, key: &str) -> Box<dyn LlmClient> {
    let http = reqwest::Client::new();
    match format {
        Format::Anthropic => Box::new(
            AnthropicClient::new(http, base_url, key)
                .unwrap()
                .with_retry_policy(fast()),
        ),
        Format::Gemini => Box::new(
            GeminiClient::new(http, base_url, key)
                .unwrap()
                .with_retry_policy(fast()),
        ),
        Format::OpenAi => Box::new(
            OpenAiCompatClient::new(http, base_url, Some(key))
                .unwrap()
                .with_retry_policy(fast()),
        ),
    }
}

fn tools() -> Vec<ToolSpec> {
    vec![ToolSpec {
        name: "execute_bash".into(),
        description: "Run a shell command".into(),
        parameters: json!({
            "type": "object",
            "additionalProperties": false,
            "properties": {"command": {"type": "string"}},
            "required": ["command"],
        }),
    }]
}

fn first_request(model: &str) -> LlmRequest {
    LlmRequest {
        model: model.into(),
        system: "You are Lucid.".into(),
        messages: vec![Message::User {
            content: "List the files.".into(),
        }],
        tools: tools(),
        max_tokens: 512,
        cache_prompt: true,
        thinking_budget: None,
    }
}

/// The first request plus the model's tool call and its result.
fn follow_up(model: &str, call: &ToolCall) -> LlmRequest {
    let mut request = first_request(model);
    request.messages.push(Message::Assistant {
        text: None,
        tool_calls: vec![call.clone()],
    });
    request.messages.push(Message::Tool {
        call_id: call.id.clone(),
        name: call.name.clone(),
        content: "README.md\nsrc".into(),
        is_error: false,
    });
    request
}

fn simple_request(model: &str) -> LlmRequest {
    LlmRequest {
        tools: vec![],
        ..first_request(model)
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

#[tokio::test]
async fn anthropic_round_trip_sends_cache_markers_and_paired_tool_results() {
    let llm = ScriptedLlm::start_with_key(
        Format::Anthropic,
        vec![
            Step::tool_call("execute_bash", json!({"command": "ls"})),
            Step::text("Two entries."),
        ],
        KEY,
    )
    .await;
    let client = client_for(Format::Anthropic, &llm.base_url(), KEY);

    let first = client
        .complete(&first_request("claude-sonnet-4-5"))
        .await
        .unwrap();
    assert_eq!(first.stop_reason.as_deref(), Some("tool_use"));
    assert_eq!(first.tool_calls.len(), 1);
    let call = &first.tool_calls[0];
    assert_eq!(call.name, "execute_bash");
    assert_eq!(call.arguments, json!({"command": "ls"}));
    assert!(call.id.starts_with("toolu_"));

    let second = client
        .complete(&follow_up("claude-sonnet-4-5", call))
        .await
        .unwrap();
    assert_eq!(second.text.as_deref(), Some("Two entries."));
    assert_eq!(second.stop_reason.as_deref(), Some("end_turn"));
    // The second prompt repeats the first: the server reports it as cache reads, and the
    // total input adds uncached, cache-read and cache-write tokens.
    assert!(second.usage.cached_input_tokens > 0);
    assert!(second.usage.input_tokens > second.usage.cached_input_tokens);

    let sent = llm.requests();
    assert_eq!(
        sent[1],
        json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 512,
            "system": [{"type": "text", "text": "You are Lucid.", "cache_control": {"type": "ephemeral"}}],
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "List the files."}]},
                {"role": "assistant", "content": [
                    {"type": "tool_use", "id": call.id, "name": "execute_bash", "input": {"command": "ls"}},
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": call.id, "content": "README.md\nsrc",
                     "is_error": false, "cache_control": {"type": "ephemeral"}},
                ]},
            ],
            "tools": [{
                "name": "execute_bash",
                "description": "Run a shell command",
                "input_schema": {
                    "type": "object",
                    "additionalProperties": false,
                    "properties": {"command": {"type": "string"}},
                    "required": ["command"],
                },
                "cache_control": {"type": "ephemeral"},
            }],
        })
    );
    let recorded = llm.recorded();
    assert_eq!(recorded[0].path_and_query, "/v1/messages");
    let headers = &recorded[0].headers;
    assert_eq!(header(headers, "x-api-key"), Some(KEY));
    assert_eq!(header(headers, "anthropic-version"), Some("2023-06-01"));
    assert_eq!(header(headers, "content-type"), Some("application/json"));
    assert_eq!(header(headers, "authorization"), None);
}

#[tokio::test]
async fn gemini_round_trip_uses_the_key_header_and_function_responses() {
    let llm = ScriptedLlm::start_with_key(
        Format::Gemini,
        vec![
            Step::tool_call("execute_bash", json!({"command": "ls"})),
            Step::text("Two entries."),
        ],
        KEY,
    )
    .await;
    let client = client_for(Format::Gemini, &llm.base_url(), KEY);

    let first = client
        .complete(&first_request("gemini-2.5-flash"))
        .await
        .unwrap();
    assert_eq!(first.stop_reason.as_deref(), Some("STOP"));
    let call = &first.tool_calls[0];
    assert_eq!(call.name, "execute_bash");
    assert!(call
        .id
        .starts_with(lucid_engine::llm::gemini::SYNTHETIC_ID_PREFIX));
    let second = client
        .complete(&follow_up("gemini-2.5-flash", call))
        .await
        .unwrap();
    assert_eq!(second.text.as_deref(), Some("Two entries."));
    assert!(second.usage.cached_input_tokens > 0);
    assert!(second.usage.input_tokens >= second.usage.cached_input_tokens);

    let sent = llm.requests();
    assert_eq!(
        sent[1]["contents"],
        json!([
            {"role": "user", "parts": [{"text": "List the files."}]},
            {"role": "model", "parts": [{"functionCall": {"name": "execute_bash", "args": {"command": "ls"}}}]},
            {"role": "user", "parts": [{"functionResponse": {
                "name": "execute_bash", "response": {"content": "README.md\nsrc"}}}]},
        ])
    );
    assert_eq!(
        sent[1]["tools"],
        json!([{"functionDeclarations": [{
            "name": "execute_bash",
            "description": "Run a shell command",
            "parameters": {"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]},
        }]}])
    );
    assert_eq!(
        sent[1]["systemInstruction"],
        json!({"parts": [{"text": "You are Lucid."}]})
    );
    let categories: Vec<&str> = sent[1]["safetySettings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            assert_eq!(s["threshold"], "BLOCK_NONE");
            s["category"].as_str().unwrap()
        })
        .collect();
    assert_eq!(
        categories,
        [
            "HARM_CATEGORY_HARASSMENT",
            "HARM_CATEGORY_HATE_SPEECH",
            "HARM_CATEGORY_SEXUALLY_EXPLICIT",
            "HARM_CATEGORY_DANGEROUS_CONTENT"
        ]
    );
    for request in llm.recorded() {
        assert_eq!(
            request.path_and_query,
            "/v1beta/models/gemini-2.5-flash:generateContent"
        );
        assert!(!request.path_and_query.contains(KEY));
        assert_eq!(request.header("x-goog-api-key"), Some(KEY));
    }
}

#[tokio::test]
async fn openai_round_trip_sends_tool_call_ids_and_bearer_auth() {
    let llm = ScriptedLlm::start_with_key(
        Format::OpenAi,
        vec![
            Step::tool_call("execute_bash", json!({"command": "ls"})),
            Step::text("Two entries."),
        ],
        KEY,
    )
    .await;
    let client = client_for(Format::OpenAi, &llm.base_url(), KEY);
    let first = client
        .complete(&first_request("gpt-4.1-mini"))
        .await
        .unwrap();
    assert_eq!(first.stop_reason.as_deref(), Some("tool_calls"));
    assert_eq!(first.text, None);
    let call = &first.tool_calls[0];
    assert!(call.id.starts_with("call_"));
    assert_eq!(call.arguments, json!({"command": "ls"}));
    let second = client
        .complete(&follow_up("gpt-4.1-mini", call))
        .await
        .unwrap();
    assert_eq!(second.text.as_deref(), Some("Two entries."));
    assert_eq!(second.stop_reason.as_deref(), Some("stop"));
    assert!(second.usage.cached_input_tokens > 0);

    let sent = llm.requests();
    assert_eq!(
        sent[1]["messages"],
        json!([
            {"role": "system", "content": "You are Lucid."},
            {"role": "user", "content": "List the files."},
            {"role": "assistant", "content": null, "tool_calls": [{
                "id": call.id, "type": "function",
                "function": {"name": "execute_bash", "arguments": "{\"command\":\"ls\"}"}}]},
            {"role": "tool", "tool_call_id": call.id, "content": "README.md\nsrc"},
        ])
    );
    assert_eq!(sent[1]["tools"][0]["type"], "function");
    assert_eq!(sent[1]["tools"][0]["function"]["name"], "execute_bash");
    assert_eq!(sent[1]["max_tokens"], 512);
    let recorded = llm.recorded();
    assert_eq!(recorded[0].path_and_query, "/v1/chat/completions");
    assert_eq!(
        recorded[0].header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
}

#[tokio::test]
async fn openai_without_a_key_sends_no_authorization_header() {
    let llm = ScriptedLlm::start(Format::OpenAi, vec![Step::text("hi")]).await;
    let client = OpenAiCompatClient::new(reqwest::Client::new(), &llm.base_url(), None).unwrap();
    let response = client
        .complete(&simple_request("llama3.1:8b"))
        .await
        .unwrap();
    assert_eq!(response.text.as_deref(), Some("hi"));
    assert_eq!(llm.recorded()[0].header("authorization"), None);
}

#[tokio::test]
async fn a_wrong_key_is_an_auth_error_after_exactly_one_request() {
    for format in [Format::Anthropic, Format::Gemini, Format::OpenAi] {
        let llm = ScriptedLlm::start_with_key(format, vec![Step::text("never")], KEY).await;
        let wrong = "wrong-key-abcdef";
        let client = client_for(format, &llm.base_url(), wrong);
        let err = client
            .complete(&simple_request("some-model"))
            .await
            .unwrap_err();
        assert!(matches!(err, LlmError::Auth { .. }), "{format:?}: {err}");
        assert!(!err.to_string().contains(wrong), "{err}");
        assert_eq!(llm.request_count(), 1, "{format:?}");
    }
}

#[tokio::test]
async fn rate_limits_are_retried_then_succeed() {
    for format in [Format::Anthropic, Format::Gemini, Format::OpenAi] {
        let llm = ScriptedLlm::start(
            format,
            vec![
                Step::provider_error(format, 429, "Rate limited"),
                Step::text("ok"),
            ],
        )
        .await;
        let client = client_for(format, &llm.base_url(), KEY);
        let response = client.complete(&simple_request("m")).await.unwrap();
        assert_eq!(response.text.as_deref(), Some("ok"), "{format:?}");
        assert_eq!(llm.request_count(), 2, "{format:?}");
    }
}

#[tokio::test]
async fn overload_and_retry_after_are_honoured() {
    let llm = ScriptedLlm::start(
        Format::Anthropic,
        vec![
            Step::retry_after(Format::Anthropic, 529, 1),
            Step::text("ok"),
        ],
    )
    .await;
    let policy = RetryPolicy {
        max_retry_after: Duration::from_millis(300),
        ..fast()
    };
    let client = AnthropicClient::new(reqwest::Client::new(), &llm.base_url(), KEY)
        .unwrap()
        .with_retry_policy(policy);
    let started = Instant::now();
    let response = client.complete(&simple_request("m")).await.unwrap();
    let waited = started.elapsed();
    assert_eq!(response.text.as_deref(), Some("ok"));
    assert_eq!(llm.request_count(), 2);
    // Retry-After: 1 s, capped at 300 ms: far longer than the 5 ms backoff.
    assert!(waited >= Duration::from_millis(300), "{waited:?}");
    assert!(waited < Duration::from_millis(1000), "{waited:?}");
}

#[tokio::test]
async fn persistent_server_errors_end_as_unavailable_after_all_attempts() {
    for format in [Format::Anthropic, Format::Gemini, Format::OpenAi] {
        let steps = (0..6)
            .map(|_| Step::provider_error(format, 500, "Internal error"))
            .collect();
        let llm = ScriptedLlm::start(format, steps).await;
        let client = client_for(format, &llm.base_url(), KEY);
        let err = client.complete(&simple_request("m")).await.unwrap_err();
        match &err {
            LlmError::Unavailable {
                status,
                attempts,
                message,
                ..
            } => {
                assert_eq!((*status, *attempts), (500, 4));
                assert!(message.contains("Internal error"), "{message}");
            }
            other => panic!("{format:?}: expected Unavailable, got {other}"),
        }
        assert_eq!(llm.request_count(), 4, "{format:?}");
    }
}

#[tokio::test]
async fn bad_requests_fail_at_once_with_the_provider_message() {
    for (format, status) in [
        (Format::Anthropic, 400),
        (Format::Gemini, 404),
        (Format::OpenAi, 422),
    ] {
        let llm = ScriptedLlm::start(
            format,
            vec![Step::provider_error(format, status, "model: unknown-model")],
        )
        .await;
        let client = client_for(format, &llm.base_url(), KEY);
        let err = client.complete(&simple_request("m")).await.unwrap_err();
        assert!(
            matches!(err, LlmError::BadRequest { status: s, .. } if s == status),
            "{format:?}: {err}"
        );
        assert!(err.to_string().contains("model: unknown-model"), "{err}");
        assert_eq!(llm.request_count(), 1);
    }
}

#[tokio::test]
async fn malformed_json_is_an_invalid_response() {
    for format in [Format::Anthropic, Format::Gemini, Format::OpenAi] {
        let llm = ScriptedLlm::start(
            format,
            vec![Step::Raw {
                status: 200,
                headers: vec![("content-type".into(), "application/json".into())],
                body: "{\"content\": [".into(),
            }],
        )
        .await;
        let client = client_for(format, &llm.base_url(), KEY);
        let err = client.complete(&simple_request("m")).await.unwrap_err();
        assert!(
            matches!(err, LlmError::InvalidResponse { .. }),
            "{format:?}: {err}"
        );
        assert_eq!(llm.request_count(), 1);
    }
}

#[tokio::test]
async fn well_formed_json_of_the_wrong_shape_is_an_invalid_response() {
    let llm = ScriptedLlm::start(
        Format::OpenAi,
        vec![Step::HttpError {
            status: 200,
            body: json!({"object": "list", "data": []}),
        }],
    )
    .await;
    let client = client_for(Format::OpenAi, &llm.base_url(), KEY);
    let err = client.complete(&simple_request("m")).await.unwrap_err();
    assert!(err.to_string().contains("choices"), "{err}");
}

#[tokio::test]
async fn error_messages_never_contain_the_key() {
    let echo = format!("Key {KEY} is not allowed to use this model");
    let llm = ScriptedLlm::start(
        Format::OpenAi,
        vec![Step::provider_error(Format::OpenAi, 403, &echo)],
    )
    .await;
    let client = client_for(Format::OpenAi, &llm.base_url(), KEY);
    let err = client.complete(&simple_request("m")).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, LlmError::Auth { status: 403, .. }));
    assert!(!text.contains(KEY), "{text}");
    assert!(text.contains("[redacted]"), "{text}");
}

#[tokio::test]
async fn unreachable_servers_are_network_errors_after_retries() {
    // A port that was just free: nothing listens there any more.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let client = client_for(Format::Anthropic, &format!("http://{addr}"), KEY);
    let err = client.complete(&simple_request("m")).await.unwrap_err();
    match &err {
        LlmError::Network { message, .. } => {
            assert!(message.contains("after 4 attempts"), "{message}");
            assert!(!message.contains(KEY));
        }
        other => panic!("expected Network, got {other}"),
    }
}

#[tokio::test]
async fn dropping_the_future_aborts_a_hanging_request_promptly() {
    for format in [Format::Anthropic, Format::Gemini, Format::OpenAi] {
        let llm = ScriptedLlm::start(format, vec![Step::Hang]).await;
        let client = client_for(format, &llm.base_url(), KEY);
        let started = Instant::now();
        let outcome = tokio::time::timeout(
            Duration::from_millis(300),
            client.complete(&simple_request("m")),
        )
        .await;
        assert!(outcome.is_err(), "{format:?}: the hanging request answered");
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(llm.request_count(), 1);
        // The server sees the connection go away and ends the hanging handler.
        let deadline = Instant::now() + Duration::from_secs(5);
        while llm.open_requests() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(llm.open_requests(), 0, "{format:?}: request still open");
    }
}

fn config(pairs: &[(&str, &str)]) -> Config {
    let mut vars: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    vars.insert("LUCID_DATA_DIR".into(), "/tmp/lucid-llm-tests".into());
    Config::from_map(&vars).unwrap()
}

/// Resolves a client against `llm` and returns the key the server received.
async fn key_seen(
    llm: &ScriptedLlm,
    pairs: &[(&str, &str)],
    provider: &str,
    request_key: Option<&str>,
) -> String {
    let resolved = resolve_provider_with_policy(
        &config(pairs),
        Some(provider),
        None,
        request_key,
        reqwest::Client::new(),
        fast(),
    )
    .unwrap();
    let request = simple_request(&resolved.model);
    resolved.client.complete(&request).await.unwrap();
    let recorded = llm.recorded();
    let last = recorded.last().unwrap();
    match llm.format() {
        Format::Anthropic => last.header("x-api-key").unwrap().to_string(),
        Format::Gemini => last.header("x-goog-api-key").unwrap().to_string(),
        Format::OpenAi => last
            .header("authorization")
            .unwrap()
            .trim_start_matches("Bearer ")
            .to_string(),
    }
}

#[tokio::test]
async fn key_precedence_is_request_then_provider_variable_then_llm_api_key() {
    for (format, provider, base_var, key_var) in [
        (
            Format::Anthropic,
            "Anthropic",
            "ANTHROPIC_BASE_URL",
            "ANTHROPIC_API_KEY",
        ),
        (
            Format::Gemini,
            "gemini",
            "GOOGLE_BASE_URL",
            "GOOGLE_API_KEY",
        ),
    ] {
        let llm = ScriptedLlm::start(format, vec![]).await;
        let base = llm.base_url();
        let all = [
            (base_var, base.as_str()),
            (key_var, "env-provider"),
            ("LLM_API_KEY", "env-generic"),
        ];
        assert_eq!(
            key_seen(&llm, &all, provider, Some("from-request")).await,
            "from-request"
        );
        assert_eq!(key_seen(&llm, &all, provider, None).await, "env-provider");
        let generic_only = [all[0], all[2]];
        assert_eq!(
            key_seen(&llm, &generic_only, provider, None).await,
            "env-generic"
        );
        let err = resolve_provider_with_policy(
            &config(&all[..1]),
            Some(provider),
            None,
            None,
            reqwest::Client::new(),
            fast(),
        )
        .unwrap_err();
        assert!(
            matches!(err, LlmError::MissingKey { env, .. } if env == key_var),
            "{err}"
        );
        assert_eq!(llm.request_count(), 3);
    }

    let llm = ScriptedLlm::start(Format::OpenAi, vec![]).await;
    let base = llm.base_url();
    let all = [
        ("LLM_BASE_URL", base.as_str()),
        ("ANTHROPIC_API_KEY", "env-anthropic"),
        ("LLM_API_KEY", "env-generic"),
    ];
    assert_eq!(
        key_seen(&llm, &all, "litellm", Some("from-request")).await,
        "from-request"
    );
    assert_eq!(key_seen(&llm, &all, "openai", None).await, "env-generic");
}

#[tokio::test]
async fn resolved_clients_use_the_configured_base_url_and_model() {
    let llm = ScriptedLlm::start(Format::Gemini, vec![Step::text("hello")]).await;
    let base = llm.base_url();
    let resolved = resolve_provider_with_policy(
        &config(&[
            ("DEFAULT_MODEL_PROVIDER", "google"),
            ("GOOGLE_BASE_URL", base.as_str()),
            ("GOOGLE_API_KEY", KEY),
            ("LLM_MODEL", "gemini/gemini-2.5-pro"),
        ]),
        None,
        None,
        None,
        reqwest::Client::new(),
        fast(),
    )
    .unwrap();
    assert_eq!(
        (resolved.provider, resolved.model.as_str()),
        ("google", "gemini-2.5-pro")
    );
    let response = resolved
        .client
        .complete(&simple_request(&resolved.model))
        .await
        .unwrap();
    assert_eq!(response.text.as_deref(), Some("hello"));
    assert_eq!(
        llm.request_paths(),
        ["/v1beta/models/gemini-2.5-pro:generateContent"]
    );

    let err = resolve_provider_with_policy(
        &config(&[("LLM_API_KEY", KEY)]),
        Some("watsonx"),
        None,
        None,
        reqwest::Client::new(),
        fast(),
    )
    .unwrap_err();
    assert!(
        matches!(err, LlmError::UnsupportedProvider(ref p) if p == "watsonx"),
        "{err}"
    );
}

// ---- Streaming ------------------------------------------------------------------------------

const FORMATS: [Format; 3] = [Format::Anthropic, Format::Gemini, Format::OpenAi];

fn model_for(format: Format) -> &'static str {
    match format {
        Format::Anthropic => "claude-sonnet-4-5",
        Format::Gemini => "gemini-2.5-flash",
        Format::OpenAi => "gpt-4.1-mini",
    }
}

/// Collects the deltas a streaming request reports.
#[derive(Clone, Default)]
struct Deltas(Arc<Mutex<Vec<StreamDelta>>>);

impl Deltas {
    fn sink(&self) -> impl Fn(StreamDelta) + Send + Sync + 'static {
        let seen = self.0.clone();
        move |delta| seen.lock().unwrap().push(delta)
    }

    fn all(&self) -> Vec<StreamDelta> {
        self.0.lock().unwrap().clone()
    }

    fn texts(&self) -> Vec<String> {
        self.all()
            .into_iter()
            .filter_map(|d| match d {
                StreamDelta::Text(t) => Some(t),
                StreamDelta::Thinking(_) | StreamDelta::Restart { .. } => None,
            })
            .collect()
    }

    fn thinking(&self) -> Vec<String> {
        self.all()
            .into_iter()
            .filter_map(|d| match d {
                StreamDelta::Thinking(t) => Some(t),
                StreamDelta::Text(_) | StreamDelta::Restart { .. } => None,
            })
            .collect()
    }

    /// The text since the last restart.
    fn current_text(&self) -> String {
        let all = self.all();
        let start = all
            .iter()
            .rposition(|d| matches!(d, StreamDelta::Restart { .. }))
            .map(|i| i + 1)
            .unwrap_or(0);
        all[start..]
            .iter()
            .filter_map(|d| match d {
                StreamDelta::Text(t) => Some(t.as_str()),
                StreamDelta::Thinking(_) | StreamDelta::Restart { .. } => None,
            })
            .collect()
    }

    fn restarts(&self) -> usize {
        self.all()
            .iter()
            .filter(|d| matches!(d, StreamDelta::Restart { .. }))
            .count()
    }
}

#[tokio::test]
async fn streamed_text_arrives_in_pieces_and_tool_calls_are_assembled_from_deltas() {
    let args = json!({"command": "ls -la /workspace && echo \"done: ✓\"", "timeout": 30});
    for format in FORMATS {
        let llm = ScriptedLlm::start_with_key(
            format,
            vec![
                Step::TextAndTools(
                    "Let me look at the files first.".into(),
                    vec![("execute_bash".into(), args.clone())],
                ),
                Step::text("Two entries: README.md and src."),
            ],
            KEY,
        )
        .await;
        let client = client_for(format, &llm.base_url(), KEY);
        let model = model_for(format);
        let deltas = Deltas::default();
        let first = client
            .stream(&first_request(model), &deltas.sink())
            .await
            .unwrap_or_else(|e| panic!("{format:?}: {e}"));
        let pieces = deltas.texts();
        assert!(
            pieces.len() >= 2,
            "{format:?}: text in one piece: {pieces:?}"
        );
        assert_eq!(pieces.concat(), "Let me look at the files first.");
        assert_eq!(
            first.text.as_deref(),
            Some("Let me look at the files first.")
        );
        assert_eq!(first.tool_calls.len(), 1, "{format:?}");
        assert_eq!(first.tool_calls[0].name, "execute_bash");
        assert_eq!(first.tool_calls[0].arguments, args, "{format:?}");
        assert!(first.usage.input_tokens > 0 && first.usage.output_tokens > 0);

        let second_deltas = Deltas::default();
        let second = client
            .stream(
                &follow_up(model, &first.tool_calls[0]),
                &second_deltas.sink(),
            )
            .await
            .unwrap();
        assert_eq!(
            second.text.as_deref(),
            Some("Two entries: README.md and src.")
        );
        assert_eq!(
            second_deltas.current_text(),
            "Two entries: README.md and src."
        );
        assert!(second.tool_calls.is_empty());
        assert!(
            second.usage.cached_input_tokens > 0,
            "{format:?}: {:?}",
            second.usage
        );

        // The requests asked for a stream in the provider's way.
        let recorded = llm.recorded();
        assert_eq!(recorded.len(), 2);
        for request in &recorded {
            match format {
                Format::Anthropic => {
                    assert_eq!(request.body["stream"], json!(true));
                    assert_eq!(request.path_and_query, "/v1/messages");
                }
                Format::OpenAi => {
                    assert_eq!(request.body["stream"], json!(true));
                    assert_eq!(request.body["stream_options"]["include_usage"], json!(true));
                }
                Format::Gemini => {
                    assert_eq!(
                        request.path_and_query,
                        format!("/v1beta/models/{model}:streamGenerateContent?alt=sse")
                    );
                    assert!(request.body.get("stream").is_none());
                }
            }
        }
        // The tool call went back with its id (Gemini: by name) and its result.
        let back = recorded[1].body.to_string();
        assert!(back.contains("README.md\\nsrc"), "{format:?}: {back}");
        if format != Format::Gemini {
            assert!(back.contains(&first.tool_calls[0].id), "{format:?}: {back}");
        }
    }
}

#[tokio::test]
async fn thinking_streams_as_its_own_kind_before_the_answer_and_stays_out_of_it() {
    const THINKING: &str = "The user wants a number; recall the classic answer first.";
    const ANSWER: &str = "The answer is 42.";
    for format in FORMATS {
        let llm = ScriptedLlm::start_with_key(
            format,
            vec![
                Step::text(ANSWER).thinking(THINKING),
                Step::text(ANSWER).thinking(THINKING),
            ],
            KEY,
        )
        .await;
        let client = client_for(format, &llm.base_url(), KEY);
        let deltas = Deltas::default();
        let streamed = client
            .stream(&simple_request(model_for(format)), &deltas.sink())
            .await
            .unwrap_or_else(|e| panic!("{format:?}: {e}"));
        let thinking = deltas.thinking();
        assert!(
            thinking.len() >= 2,
            "{format:?}: thinking in one piece: {thinking:?}"
        );
        assert_eq!(thinking.concat(), THINKING, "{format:?}");
        assert_eq!(deltas.texts().concat(), ANSWER, "{format:?}");
        let all = deltas.all();
        let last_thinking = all
            .iter()
            .rposition(|d| matches!(d, StreamDelta::Thinking(_)))
            .unwrap();
        let first_text = all
            .iter()
            .position(|d| matches!(d, StreamDelta::Text(_)))
            .unwrap();
        assert!(last_thinking < first_text, "{format:?}: {all:?}");
        assert_eq!(streamed.text.as_deref(), Some(ANSWER), "{format:?}");
        // The whole (non-streamed) answer keeps thinking out of the text too.
        let whole = client
            .complete(&simple_request(model_for(format)))
            .await
            .unwrap_or_else(|e| panic!("{format:?}: {e}"));
        assert_eq!(whole.text.as_deref(), Some(ANSWER), "{format:?}");
    }
}

/// Events of each format after which the scripted stream is cut: a few text deltas in.
fn cut_point(format: Format) -> usize {
    match format {
        // message_start, content_block_start, ping, then text deltas.
        Format::Anthropic => 5,
        // The role chunk, then text chunks.
        Format::OpenAi => 3,
        Format::Gemini => 2,
    }
}

#[tokio::test]
async fn a_stream_cut_mid_way_is_retried_and_the_partial_text_voided() {
    let cut_text = "The first attempt streams for a while and then the connection breaks.";
    for format in FORMATS {
        let llm = ScriptedLlm::start(
            format,
            vec![
                Step::text(cut_text).cut_after(cut_point(format)),
                Step::TextAndTools(
                    "Second attempt, whole.".into(),
                    vec![("finish".into(), json!({"message": "ok"}))],
                ),
            ],
        )
        .await;
        let client = client_for(format, &llm.base_url(), KEY);
        let deltas = Deltas::default();
        let response = client
            .stream(&first_request(model_for(format)), &deltas.sink())
            .await
            .unwrap_or_else(|e| panic!("{format:?}: {e}"));
        assert_eq!(llm.request_count(), 2, "{format:?}");
        assert_eq!(response.text.as_deref(), Some("Second attempt, whole."));
        assert_eq!(response.tool_calls[0].arguments, json!({"message": "ok"}));
        // Some of the cut text was shown, then voided, then the new answer streamed.
        let all = deltas.all();
        let restart = all
            .iter()
            .position(|d| matches!(d, StreamDelta::Restart { .. }))
            .unwrap_or_else(|| panic!("{format:?}: no restart in {all:?}"));
        let before: String = all[..restart]
            .iter()
            .filter_map(|d| match d {
                StreamDelta::Text(t) => Some(t.as_str()),
                _ => None,
            })
            .collect();
        assert!(
            !before.is_empty() && cut_text.starts_with(&before) && before != cut_text,
            "{format:?}: {before:?}"
        );
        assert_eq!(deltas.restarts(), 1);
        assert_eq!(deltas.current_text(), "Second attempt, whole.");
    }
}

#[tokio::test]
async fn streams_cut_on_every_attempt_end_as_a_network_error() {
    for format in FORMATS {
        let steps = (0..4)
            .map(|_| Step::text("never finished, never finished").cut_after(cut_point(format)))
            .collect();
        let llm = ScriptedLlm::start(format, steps).await;
        let client = client_for(format, &llm.base_url(), KEY);
        let err = client
            .stream(&simple_request("m"), &|_| {})
            .await
            .unwrap_err();
        assert!(
            matches!(&err, LlmError::Network { message, .. } if message.contains("cut off") && message.contains("after 4 attempts")),
            "{format:?}: {err}"
        );
        assert_eq!(llm.request_count(), 4);
    }
}

#[tokio::test]
async fn a_stream_that_ends_without_its_end_is_retried() {
    // A clean end of the body before `message_stop` / `[DONE]` / `finishReason`.
    let truncated = |format: Format| -> String {
        match format {
            Format::Anthropic => "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"usage\":{\"input_tokens\":5,\"output_tokens\":1}}}\n\nevent: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\nevent: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hal\"}}\n\n".into(),
            Format::OpenAi => "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hal\"},\"finish_reason\":null}]}\n\n".into(),
            Format::Gemini => "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"Hal\"}],\"role\":\"model\"},\"index\":0}]}\n\n".into(),
        }
    };
    for format in FORMATS {
        let llm = ScriptedLlm::start(
            format,
            vec![
                Step::Raw {
                    status: 200,
                    headers: vec![("content-type".into(), "text/event-stream".into())],
                    body: truncated(format),
                },
                Step::text("Whole answer."),
            ],
        )
        .await;
        let client = client_for(format, &llm.base_url(), KEY);
        let deltas = Deltas::default();
        let response = client
            .stream(&simple_request(model_for(format)), &deltas.sink())
            .await
            .unwrap_or_else(|e| panic!("{format:?}: {e}"));
        assert_eq!(response.text.as_deref(), Some("Whole answer."));
        assert_eq!(llm.request_count(), 2);
        assert_eq!(deltas.texts()[0], "Hal");
        assert_eq!(deltas.restarts(), 1);
    }
}

#[tokio::test]
async fn anthropic_overload_inside_the_stream_is_retried_and_other_stream_errors_are_not() {
    let stream_error = |kind: &str| {
        format!(
            "event: message_start\ndata: {{\"type\":\"message_start\",\"message\":{{\"id\":\"m\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"usage\":{{\"input_tokens\":5,\"output_tokens\":1}}}}}}\n\nevent: ping\ndata: {{\"type\": \"ping\"}}\n\nevent: error\ndata: {{\"type\":\"error\",\"error\":{{\"type\":\"{kind}\",\"message\":\"Overloaded\"}}}}\n\n"
        )
    };
    let raw = |body: String| Step::Raw {
        status: 200,
        headers: vec![("content-type".into(), "text/event-stream".into())],
        body,
    };
    let llm = ScriptedLlm::start(
        Format::Anthropic,
        vec![
            raw(stream_error("overloaded_error")),
            Step::text("Fine now."),
            raw(stream_error("invalid_request_error")),
        ],
    )
    .await;
    let client = client_for(Format::Anthropic, &llm.base_url(), KEY);
    let response = client
        .stream(&simple_request("claude-sonnet-4-5"), &|_| {})
        .await
        .unwrap();
    assert_eq!(response.text.as_deref(), Some("Fine now."));
    assert_eq!(llm.request_count(), 2);
    let err = client
        .stream(&simple_request("claude-sonnet-4-5"), &|_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, LlmError::InvalidResponse { .. }), "{err}");
    assert_eq!(llm.request_count(), 3);
}

#[tokio::test]
async fn servers_that_ignore_stream_true_still_work() {
    for format in [Format::Anthropic, Format::OpenAi] {
        let body = match format {
            Format::Anthropic => json!({"id": "m", "type": "message", "role": "assistant",
                "content": [{"type": "text", "text": "whole"}], "stop_reason": "end_turn",
                "usage": {"input_tokens": 3, "output_tokens": 1}}),
            _ => {
                json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": "whole"},
                "finish_reason": "stop"}], "usage": {"prompt_tokens": 3, "completion_tokens": 1}})
            }
        };
        let llm = ScriptedLlm::start(format, vec![Step::HttpError { status: 200, body }]).await;
        let client = client_for(format, &llm.base_url(), KEY);
        let response = client.stream(&simple_request("m"), &|_| {}).await.unwrap();
        assert_eq!(response.text.as_deref(), Some("whole"), "{format:?}");
    }
}

#[tokio::test]
async fn dropping_a_stream_mid_way_closes_the_connection_promptly() {
    for format in FORMATS {
        let llm = ScriptedLlm::start(
            format,
            vec![
                Step::text("a slow answer that keeps coming for a long time")
                    .paced(Duration::from_millis(600)),
            ],
        )
        .await;
        let client = client_for(format, &llm.base_url(), KEY);
        let first_piece = Arc::new(tokio::sync::Notify::new());
        let notify = first_piece.clone();
        let on_delta = move |_: StreamDelta| notify.notify_one();
        let request = simple_request(model_for(format));
        tokio::select! {
            r = client.stream(&request, &on_delta) => panic!("{format:?}: the slow stream ended: {r:?}"),
            _ = first_piece.notified() => {}
        }
        // The future is dropped here, mid-stream: the server sees the connection go.
        let dropped = Instant::now();
        while llm.open_requests() > 0 && dropped.elapsed() < Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(dropped.elapsed() < Duration::from_secs(2), "{format:?}");
        assert_eq!(llm.open_requests(), 0, "{format:?}: stream still open");
    }
}
