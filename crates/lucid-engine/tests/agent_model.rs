//! The model, used well, through the real engine (sessions, event log, agent) with the local
//! sandbox (`SANDBOX_MODE=local`, no Docker) and a scripted LLM in each wire format:
//! streamed text reaches live subscribers (the stream the WebSocket handler forwards) before
//! the message is stored, and is never stored itself; stop ends a streaming turn within 2 s; a
//! stream cut mid-way is retried; the session's cost follows each provider's cache pricing
//! and a cost budget stops the agent; extended thinking streams and its signed blocks go back
//! with their turn.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lucid_engine::events::{Event, EventKind, SessionStatus, TransientKind, UsageReport};
use lucid_engine::sessions::event_log::{LiveItem, LiveStream};
use lucid_engine::sessions::{AttachGuard, StartSession};
use lucid_engine::{Config, Engine, User};
use lucid_testkit::llm::{Format, ScriptedLlm, ScriptedUsage, Step};
use serde_json::json;

const FORMATS: [Format; 3] = [Format::Anthropic, Format::Gemini, Format::OpenAi];

struct Harness {
    engine: Arc<Engine>,
    _dir: tempfile::TempDir,
    user: User,
}

impl Harness {
    async fn start(llm: &ScriptedLlm, model: &str, extra: &[(&str, &str)]) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let mut vars: HashMap<String, String> = HashMap::new();
        vars.insert("LUCID_DATA_DIR".into(), dir.path().display().to_string());
        vars.insert("SANDBOX_MODE".into(), "local".into());
        vars.insert(
            "LUCID_JWT_SECRET".into(),
            "agent-model-secret-0123456789-abcdef".into(),
        );
        let (provider, url_var, key_var) = match llm.format() {
            Format::Anthropic => ("anthropic", "ANTHROPIC_BASE_URL", "ANTHROPIC_API_KEY"),
            Format::Gemini => ("google", "GOOGLE_BASE_URL", "GOOGLE_API_KEY"),
            Format::OpenAi => ("openai", "LLM_BASE_URL", "LLM_API_KEY"),
        };
        vars.insert("DEFAULT_MODEL_PROVIDER".into(), provider.into());
        vars.insert("LLM_MODEL".into(), model.into());
        vars.insert(url_var.into(), llm.base_url());
        vars.insert(key_var.into(), "agent-model-key".into());
        for (k, v) in extra {
            vars.insert(k.to_string(), v.to_string());
        }
        let engine = Engine::start(Config::from_map(&vars).unwrap())
            .await
            .unwrap();
        Harness {
            engine,
            _dir: dir,
            user: User::with_id("model-user"),
        }
    }

    /// Starts a session on `task` and follows it live from the first event.
    async fn start_task(&self, task: &str) -> (String, Live) {
        let started = self
            .engine
            .sessions()
            .start(
                &self.user,
                StartSession {
                    task: task.into(),
                    ..StartSession::default()
                },
            )
            .await
            .unwrap();
        let attachment = self
            .engine
            .sessions()
            .attach(&self.user, &started.session_id, 0)
            .await
            .unwrap();
        // The stream is what the WS handler reads.
        let live = Live {
            stream: attachment.events.live(),
            _guard: attachment.guard,
        };
        (started.session_id, live)
    }
}

/// A live stream and the attachment that keeps the session attached.
struct Live {
    stream: LiveStream,
    _guard: AttachGuard,
}

fn model_for(format: Format) -> &'static str {
    match format {
        Format::Anthropic => "claude-sonnet-4-5",
        Format::Gemini => "gemini-2.5-flash",
        Format::OpenAi => "gpt-4.1-mini",
    }
}

/// Items with the time each arrived, until the turn's final status.
async fn until_turn_ends(live: &mut Live) -> Vec<(Instant, LiveItem)> {
    let mut items = Vec::new();
    loop {
        let item = tokio::time::timeout(Duration::from_secs(60), live.stream.next())
            .await
            .expect("the session stalled")
            .unwrap()
            .expect("the stream ended before the turn");
        let done = matches!(
            &item,
            LiveItem::Stored(Event {
                kind: EventKind::Status {
                    status: SessionStatus::Completed
                        | SessionStatus::Failed
                        | SessionStatus::Stopped,
                    ..
                },
                ..
            })
        );
        items.push((Instant::now(), item));
        if done {
            return items;
        }
    }
}

fn stored(items: &[(Instant, LiveItem)]) -> Vec<Event> {
    items
        .iter()
        .filter_map(|(_, i)| match i {
            LiveItem::Stored(e) => Some(e.clone()),
            LiveItem::Transient(_) => None,
        })
        .collect()
}

fn final_status(items: &[(Instant, LiveItem)]) -> (SessionStatus, String) {
    stored(items)
        .into_iter()
        .rev()
        .find_map(|e| match e.kind {
            EventKind::Status { status, message } => Some((status, message)),
            _ => None,
        })
        .unwrap()
}

fn usage_reports(items: &[(Instant, LiveItem)]) -> Vec<UsageReport> {
    stored(items)
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::Usage(u) => Some(u),
            _ => None,
        })
        .collect()
}

const LONG_ANSWER: &str = "I looked at the workspace. It is empty, so there is nothing to fix \
                           yet; tell me what to build and I will start right away.";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_text_reaches_live_subscribers_before_the_message_and_is_never_stored() {
    for format in FORMATS {
        let llm = ScriptedLlm::start(
            format,
            vec![Step::text(LONG_ANSWER).paced(Duration::from_millis(60))],
        )
        .await;
        let h = Harness::start(&llm, model_for(format), &[]).await;
        let (session_id, mut live) = h.start_task("look around").await;
        let items = until_turn_ends(&mut live).await;
        assert_eq!(final_status(&items).0, SessionStatus::Completed);

        let first_delta = items
            .iter()
            .position(|(_, i)| {
                matches!(i, LiveItem::Transient(t) if matches!(t.kind, TransientKind::AssistantDelta { .. }))
            })
            .unwrap_or_else(|| panic!("{format:?}: no partial text"));
        let message = items
            .iter()
            .position(|(_, i)| {
                matches!(i, LiveItem::Stored(e) if matches!(e.kind, EventKind::AssistantMessage { .. }))
            })
            .unwrap_or_else(|| panic!("{format:?}: no message"));
        assert!(first_delta < message, "{format:?}");
        // Live: the first piece came well before the message was complete.
        let lead = items[message].0.duration_since(items[first_delta].0);
        assert!(lead >= Duration::from_millis(300), "{format:?}: {lead:?}");

        // The pieces make up the stored message, and sit between the events they came after.
        let deltas: Vec<_> = items
            .iter()
            .filter_map(|(_, i)| match i {
                LiveItem::Transient(t) => Some(t.clone()),
                _ => None,
            })
            .collect();
        assert!(deltas.len() >= 5, "{format:?}: {} pieces", deltas.len());
        let text: String = deltas
            .iter()
            .map(|t| match &t.kind {
                TransientKind::AssistantDelta { text } => text.as_str(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(text, LONG_ANSWER);
        let before_message = match &items[message - 1].1 {
            LiveItem::Stored(e) => e.seq,
            LiveItem::Transient(_) => {
                match &items[..message].iter().rev().find_map(|(_, i)| match i {
                    LiveItem::Stored(e) => Some(e.seq),
                    _ => None,
                }) {
                    Some(seq) => *seq,
                    None => 0,
                }
            }
        };
        for delta in &deltas {
            assert!(delta.after_seq <= before_message, "{format:?}");
            assert_eq!(delta.session_id, session_id);
        }
        // Wire frames of the WebSocket: `agent_delta`, no seq.
        let wire = deltas[0].to_wire();
        assert_eq!(wire["type"], "agent_delta");
        assert_eq!(wire["eventType"], "AssistantDelta");
        assert!(wire.get("seq").is_none());

        // Stored events: gap-free, no deltas; a replay has the same events and no deltas.
        let live_stored = stored(&items);
        for pair in live_stored.windows(2) {
            assert_eq!(pair[1].seq, pair[0].seq + 1);
        }
        let replay = h
            .engine
            .sessions()
            .attach(&h.user, &session_id, 0)
            .await
            .unwrap();
        let _replay_guard = replay.guard;
        let mut replay = replay.events.live();
        let mut replayed = Vec::new();
        while replayed.len() < live_stored.len() {
            match tokio::time::timeout(Duration::from_secs(10), replay.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap()
            {
                LiveItem::Stored(e) => replayed.push(e),
                LiveItem::Transient(t) => panic!("{format:?}: replayed a transient event {t:?}"),
            }
        }
        let key = |events: &[Event]| -> Vec<(u64, EventKind)> {
            events.iter().map(|e| (e.seq, e.kind.clone())).collect()
        };
        assert_eq!(key(&replayed), key(&live_stored));
        h.engine
            .sessions()
            .destroy(&h.user, &session_id)
            .await
            .unwrap();
        h.engine.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_during_a_stream_ends_the_turn_within_two_seconds() {
    for format in FORMATS {
        let llm = ScriptedLlm::start(
            format,
            vec![Step::text(LONG_ANSWER).paced(Duration::from_millis(700))],
        )
        .await;
        let h = Harness::start(&llm, model_for(format), &[]).await;
        let (session_id, mut live) = h.start_task("talk slowly").await;
        // Wait for the first piece of text: the answer is streaming.
        loop {
            let item = tokio::time::timeout(Duration::from_secs(30), live.stream.next())
                .await
                .expect("no partial text")
                .unwrap()
                .unwrap();
            if matches!(item, LiveItem::Transient(_)) {
                break;
            }
        }
        let stopped_at = Instant::now();
        h.engine.sessions().stop(&h.user, &session_id).unwrap();
        let items = until_turn_ends(&mut live).await;
        let elapsed = stopped_at.elapsed();
        assert_eq!(final_status(&items).0, SessionStatus::Stopped, "{format:?}");
        assert!(elapsed < Duration::from_secs(2), "{format:?}: {elapsed:?}");
        // The streaming request was abandoned, not finished.
        let deadline = Instant::now() + Duration::from_secs(2);
        while llm.open_requests() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(llm.open_requests(), 0, "{format:?}");
        assert!(!stored(&items)
            .iter()
            .any(|e| matches!(e.kind, EventKind::AssistantMessage { .. })));
        h.engine
            .sessions()
            .destroy(&h.user, &session_id)
            .await
            .unwrap();
        h.engine.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_cut_mid_way_is_retried_and_subscribers_see_the_restart() {
    for format in FORMATS {
        let cut = match format {
            Format::Anthropic => 6,
            Format::OpenAi => 4,
            Format::Gemini => 3,
        };
        let llm = ScriptedLlm::start(
            format,
            vec![
                Step::text(LONG_ANSWER).cut_after(cut),
                Step::text("Second try: all here."),
            ],
        )
        .await;
        let h = Harness::start(&llm, model_for(format), &[]).await;
        let (session_id, mut live) = h.start_task("answer").await;
        let items = until_turn_ends(&mut live).await;
        assert_eq!(
            final_status(&items).0,
            SessionStatus::Completed,
            "{format:?}"
        );
        assert_eq!(llm.request_count(), 2);
        let transient: Vec<TransientKind> = items
            .iter()
            .filter_map(|(_, i)| match i {
                LiveItem::Transient(t) => Some(t.kind.clone()),
                _ => None,
            })
            .collect();
        let restart = transient
            .iter()
            .position(|k| matches!(k, TransientKind::AssistantRestart { .. }))
            .unwrap_or_else(|| panic!("{format:?}: {transient:?}"));
        assert!(restart > 0, "{format:?}: text came before the cut");
        let after: String = transient[restart + 1..]
            .iter()
            .map(|k| match k {
                TransientKind::AssistantDelta { text } => text.as_str(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(after, "Second try: all here.");
        let messages: Vec<String> = stored(&items)
            .into_iter()
            .filter_map(|e| match e.kind {
                EventKind::AssistantMessage { content } => Some(content),
                _ => None,
            })
            .collect();
        assert_eq!(messages, vec!["Second try: all here.".to_string()]);
        h.engine
            .sessions()
            .destroy(&h.user, &session_id)
            .await
            .unwrap();
        h.engine.shutdown().await;
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 * b.abs().max(1e-9)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_cost_prices_anthropic_cache_writes_and_reads_across_turns() {
    // claude-sonnet-4-5: input $3, output $15 per million; cache writes 1.25× ($3.75), cache
    // reads 0.1× ($0.30).
    let steps = vec![
        Step::tool_call("think", json!({"thought": "plan"})).with_usage(ScriptedUsage {
            input: 1_000,
            output: 500,
            cache_read: 0,
            cache_write: 20_000,
        }),
        Step::text("Planned.").with_usage(ScriptedUsage {
            input: 200,
            output: 100,
            cache_read: 20_000,
            cache_write: 1_500,
        }),
        // The follow-up turn.
        Step::text("Still planned.").with_usage(ScriptedUsage {
            input: 50,
            output: 40,
            cache_read: 21_500,
            cache_write: 0,
        }),
    ];
    let llm = ScriptedLlm::start(Format::Anthropic, steps).await;
    let h = Harness::start(&llm, "claude-sonnet-4-5", &[]).await;
    let (session_id, mut live) = h.start_task("plan").await;
    let mut items = until_turn_ends(&mut live).await;
    h.engine
        .sessions()
        .follow_up(&h.user, &session_id, "and now?")
        .await
        .unwrap();
    items.extend(until_turn_ends(&mut live).await);
    assert_eq!(final_status(&items).0, SessionStatus::Completed);

    let reports = usage_reports(&items);
    assert_eq!(reports.len(), 3);
    let step_costs = [
        (1_000.0 * 3.0 + 20_000.0 * 3.75 + 500.0 * 15.0) / 1e6,
        (200.0 * 3.0 + 20_000.0 * 0.3 + 1_500.0 * 3.75 + 100.0 * 15.0) / 1e6,
        (50.0 * 3.0 + 21_500.0 * 0.3 + 40.0 * 15.0) / 1e6,
    ];
    let mut running = 0.0;
    for (report, cost) in reports.iter().zip(step_costs) {
        running += cost;
        let total = report.total_cost_usd.expect("claude has a price");
        assert!(close(total, running), "{total} vs {running}");
    }
    let last = reports.last().unwrap();
    assert!(close(
        last.total_cost_usd.unwrap(),
        0.0855 + 0.013725 + 0.0072
    ));
    assert_eq!(last.total_input_tokens, 21_000 + 21_700 + 21_550);
    assert_eq!(last.total_output_tokens, 640);
    assert_eq!(last.total_cached_input_tokens, 41_500);
    assert_eq!(last.total_cache_write_input_tokens, 21_500);
    assert_eq!(reports[1].cache_write_input_tokens, 1_500);
    h.engine
        .sessions()
        .destroy(&h.user, &session_id)
        .await
        .unwrap();
    h.engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_and_gemini_cached_tokens_are_priced_at_their_cached_rates() {
    for (format, model, input, cached, output, expected) in [
        // gpt-4.1: $2 input, $0.50 cached, $8 output.
        (
            Format::OpenAi,
            "gpt-4.1",
            4_000,
            6_000,
            300,
            (4_000.0 * 2.0 + 6_000.0 * 0.5 + 300.0 * 8.0) / 1e6,
        ),
        // gemini-2.5-flash: $0.30 input, $0.075 cached, $2.50 output.
        (
            Format::Gemini,
            "gemini-2.5-flash",
            4_000,
            6_000,
            300,
            (4_000.0 * 0.3 + 6_000.0 * 0.075 + 300.0 * 2.5) / 1e6,
        ),
    ] {
        let llm = ScriptedLlm::start(
            format,
            vec![Step::text("ok").with_usage(ScriptedUsage {
                input,
                output,
                cache_read: cached,
                cache_write: 0,
            })],
        )
        .await;
        let h = Harness::start(&llm, model, &[]).await;
        let (session_id, mut live) = h.start_task("hi").await;
        let items = until_turn_ends(&mut live).await;
        let report = usage_reports(&items).pop().unwrap();
        assert_eq!(report.input_tokens, input + cached);
        assert_eq!(report.cached_input_tokens, cached);
        let total = report.total_cost_usd.unwrap();
        assert!(close(total, expected), "{format:?}: {total} vs {expected}");
        h.engine
            .sessions()
            .destroy(&h.user, &session_id)
            .await
            .unwrap();
        h.engine.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_budget_stops_the_agent_with_a_clear_message() {
    // The first answer costs $0.0855 (see above); the budget is $0.05.
    let llm = ScriptedLlm::start(
        Format::Anthropic,
        vec![
            Step::tool_call("think", json!({"thought": "expensive"})).with_usage(ScriptedUsage {
                input: 1_000,
                output: 500,
                cache_read: 0,
                cache_write: 20_000,
            }),
            Step::text("never asked for"),
        ],
    )
    .await;
    let h = Harness::start(
        &llm,
        "claude-sonnet-4-5",
        &[("LUCID_SESSION_BUDGET_USD", "0.05")],
    )
    .await;
    let (session_id, mut live) = h.start_task("spend").await;
    let items = until_turn_ends(&mut live).await;
    let (status, message) = final_status(&items);
    assert_eq!(status, SessionStatus::Failed);
    assert!(
        message.contains("cost budget") && message.contains("$0.0855") && message.contains("$0.05"),
        "{message}"
    );
    assert_eq!(
        llm.request_count(),
        1,
        "no request after the budget was reached"
    );
    // A follow-up does not spend more either.
    h.engine
        .sessions()
        .follow_up(&h.user, &session_id, "go on")
        .await
        .unwrap();
    let items = until_turn_ends(&mut live).await;
    assert_eq!(final_status(&items).0, SessionStatus::Failed);
    assert_eq!(llm.request_count(), 1);
    h.engine
        .sessions()
        .destroy(&h.user, &session_id)
        .await
        .unwrap();
    h.engine.shutdown().await;
}

/// `body` without any `cache_control` markers (they move to the newest user turn).
fn without_cache_markers(value: &serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => serde_json::Value::Object(
            map.iter()
                .filter(|(k, _)| k.as_str() != "cache_control")
                .map(|(k, v)| (k.clone(), without_cache_markers(v)))
                .collect(),
        ),
        serde_json::Value::Array(items) => {
            serde_json::Value::Array(items.iter().map(without_cache_markers).collect())
        }
        other => other.clone(),
    }
}

/// 300 steps with large outputs against a 32k-token window: every request fits, the history
/// is condensed in steps (summaries stored as events, their cost counted), and between two
/// condensations every Anthropic request extends the previous one (same system, tools and
/// messages, so the cached prefix is reused).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_session_stays_within_a_small_window_by_condensing_in_steps() {
    const WINDOW: u64 = 32_000;
    const STEPS: usize = 300;
    let mut steps: Vec<Step> = (0..STEPS)
        .map(|i| {
            Step::tool_call(
                "execute_bash",
                json!({"command": format!("yes 'step {i}: a line of build output' | head -n 250")}),
            )
        })
        .collect();
    steps.push(Step::tool_call(
        "finish",
        json!({"message": "all steps done"}),
    ));
    let llm = ScriptedLlm::start(Format::Anthropic, steps).await;
    llm.answer_requests_containing(
        lucid_engine::agent::context::CONDENSER_MARKER,
        "Ran many steps; each printed 250 lines of build output. Nothing failed.",
    );
    let h = Harness::start(
        &llm,
        "claude-sonnet-4-5",
        &[("LUCID_CONTEXT_WINDOW", "32000"), ("MAX_ITERATIONS", "400")],
    )
    .await;
    let started = Instant::now();
    let (session_id, mut live) = h.start_task("run the 300 steps").await;
    let items = until_turn_ends(&mut live).await;
    let elapsed = started.elapsed();
    assert_eq!(
        final_status(&items).0,
        SessionStatus::Completed,
        "{:?}",
        final_status(&items)
    );

    let recorded = llm.recorded();
    let is_summary = |r: &lucid_testkit::llm::RecordedRequest| {
        r.body
            .to_string()
            .contains(lucid_engine::agent::context::CONDENSER_MARKER)
    };
    let main: Vec<usize> = (0..recorded.len())
        .filter(|&i| !is_summary(&recorded[i]))
        .collect();
    let summaries = recorded.len() - main.len();
    assert_eq!(main.len(), STEPS + 1);

    // Summaries are one-off prompts: no cache markers (no 1.25× cache write).
    assert!(recorded
        .iter()
        .filter(|r| is_summary(r))
        .all(|r| !r.body.to_string().contains("cache_control")));

    // Every request within the window (the server counts 4 bytes per token).
    let mut prompt_bytes = Vec::new();
    for request in &recorded {
        let bytes = request.body.to_string().len() as u64;
        assert!(bytes / 4 <= WINDOW, "a request of {bytes} bytes");
        if !is_summary(request) {
            prompt_bytes.push(bytes);
        }
    }

    // Condensations: stored, in steps (not every request), each with its summary.
    let condensations: Vec<Event> = stored(&items)
        .into_iter()
        .filter(|e| matches!(e.kind, EventKind::Condensation { .. }))
        .collect();
    assert_eq!(condensations.len(), summaries);
    assert!(
        (5..=STEPS / 4).contains(&summaries),
        "{summaries} condensations"
    );
    let chat = h
        .engine
        .chats()
        .get(
            &h.user,
            &h.engine
                .sessions()
                .get(&h.user, &session_id)
                .await
                .unwrap()
                .chat_id,
        )
        .await
        .unwrap();
    let stored_condensations = chat
        .messages
        .iter()
        .filter(|m| {
            serde_json::to_value(m)
                .unwrap()
                .to_string()
                .contains("CondensationObservation")
        })
        .count();
    assert_eq!(stored_condensations, summaries);

    // Between condensations each request extends the previous one.
    let mut extended = 0;
    for pair in main.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if b != a + 1 {
            continue; // a summary request came between: the history was condensed
        }
        let (ra, rb) = (
            without_cache_markers(&recorded[a].body),
            without_cache_markers(&recorded[b].body),
        );
        assert_eq!(ra["system"], rb["system"]);
        assert_eq!(ra["tools"], rb["tools"]);
        let (ma, mb) = (
            ra["messages"].as_array().unwrap(),
            rb["messages"].as_array().unwrap(),
        );
        assert!(mb.len() > ma.len());
        assert_eq!(
            ma[..],
            mb[..ma.len()],
            "request {b} changed the prefix of {a}"
        );
        assert!(recorded[b].body["system"][0]["cache_control"].is_object());
        extended += 1;
    }
    assert_eq!(extended, main.len() - 1 - summaries);

    // Condensation cost is part of the session's cost: the usage just before each
    // condensation event is its summary request.
    let stored_events = stored(&items);
    let mut condensation_cost = 0.0;
    let mut previous_total = 0.0;
    for (i, event) in stored_events.iter().enumerate() {
        if let EventKind::Usage(u) = &event.kind {
            let total = u.total_cost_usd.unwrap();
            let is_condensation = matches!(
                stored_events.get(i + 1).map(|e| &e.kind),
                Some(EventKind::Condensation { .. })
            );
            if is_condensation {
                condensation_cost += total - previous_total;
            }
            previous_total = total;
        }
    }
    assert!(condensation_cost > 0.0);
    let reports = usage_reports(&items);
    assert_eq!(reports.len(), recorded.len());

    let avg = prompt_bytes.iter().sum::<u64>() / prompt_bytes.len() as u64;
    println!(
        "BENCH context: {STEPS} steps, window {WINDOW} tokens: {} requests, {summaries} \
         condensations; prompt bytes per step min {} / avg {avg} / max {}; condensation cost \
         ${condensation_cost:.4} of ${previous_total:.4} total; {:.1} s",
        recorded.len(),
        prompt_bytes.iter().min().unwrap(),
        prompt_bytes.iter().max().unwrap(),
        elapsed.as_secs_f64()
    );
    h.engine
        .sessions()
        .destroy(&h.user, &session_id)
        .await
        .unwrap();
    h.engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_thinking_streams_and_its_blocks_go_back_with_their_turn() {
    // The scripted Anthropic server refuses, as the API does, a request with thinking whose
    // turn does not start with its signed thinking block. Without interleaved thinking the
    // model thinks at the start of a turn only: the second answer comes without.
    let llm = ScriptedLlm::start(
        Format::Anthropic,
        vec![
            Step::tool_call("execute_bash", json!({"command": "echo hi"}))
                .thinking("I should look at the workspace first."),
            Step::tool_call("finish", json!({"message": "done"})),
            Step::text("Nothing else to do.").thinking("A follow-up."),
        ],
    )
    .await;
    let h = Harness::start(
        &llm,
        "claude-sonnet-4-5",
        &[("LUCID_THINKING_BUDGET", "2048")],
    )
    .await;
    let (session_id, mut live) = h.start_task("look around").await;
    let items = until_turn_ends(&mut live).await;
    assert_eq!(
        final_status(&items).0,
        SessionStatus::Completed,
        "{items:#?}"
    );
    let thought: String = items
        .iter()
        .filter_map(|(_, i)| match i {
            LiveItem::Transient(t) => match &t.kind {
                TransientKind::ThinkingDelta { text } => Some(text.clone()),
                _ => None,
            },
            _ => None,
        })
        .collect();
    assert!(
        thought.contains("I should look at the workspace first."),
        "{thought}"
    );

    h.engine
        .sessions()
        .follow_up(&h.user, &session_id, "anything else?")
        .await
        .unwrap();
    let items = until_turn_ends(&mut live).await;
    assert_eq!(
        final_status(&items).0,
        SessionStatus::Completed,
        "{items:#?}"
    );

    let requests = llm.requests();
    assert_eq!(requests.len(), 3, "no request was refused");
    for request in &requests {
        assert_eq!(
            request["thinking"],
            json!({"type": "enabled", "budget_tokens": 2048})
        );
        assert_eq!(request["max_tokens"], json!(8192 + 2048));
    }
    // The turn's first answer goes back starting with its own signed thinking block.
    let turns = requests[2]["messages"].as_array().unwrap();
    let assistant: Vec<&serde_json::Value> =
        turns.iter().filter(|m| m["role"] == "assistant").collect();
    assert_eq!(assistant.len(), 2, "{turns:#?}");
    let first = &assistant[0]["content"][0];
    assert_eq!(first["type"], "thinking", "{turns:#?}");
    assert_eq!(first["thinking"], "I should look at the workspace first.");
    assert!(first["signature"].as_str().is_some_and(|s| !s.is_empty()));
    assert_eq!(assistant[1]["content"][0]["type"], "tool_use", "{turns:#?}");
    // Thinking streams live but is not stored as the answer.
    let kept = format!("{:?}", stored(&items));
    assert!(kept.contains("Nothing else to do."), "{kept}");
    assert!(!kept.contains("A follow-up."), "{kept}");
    h.engine
        .sessions()
        .destroy(&h.user, &session_id)
        .await
        .unwrap();
    h.engine.shutdown().await;
}
