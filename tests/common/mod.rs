//! Shared set-up for end-to-end tests: an engine on a temp data dir with the local test
//! sandbox image, network `none`, and a scripted LLM.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use lucid_engine::events::{Event, EventKind, SessionStatus};
use lucid_engine::sessions::EventStream;
use lucid_engine::{Config, Engine};
use lucid_testkit::llm::{Format, ScriptedLlm};

pub const SECRET: &str = "e2e-secret-0123456789-0123456789-abcdef";
pub const LLM_KEY: &str = "test-llm-key";

pub struct Harness {
    pub engine: Arc<Engine>,
    pub data_dir: tempfile::TempDir,
    pub vars: HashMap<String, String>,
}

/// Environment for an engine whose LLM is `llm`, sandboxed in the local test image.
pub async fn env_for(
    llm: Option<&ScriptedLlm>,
    data_dir: &std::path::Path,
) -> HashMap<String, String> {
    let image = lucid_testkit::image::ensure_test_image().await;
    let mut vars: HashMap<String, String> = HashMap::new();
    vars.insert("LUCID_DATA_DIR".into(), data_dir.display().to_string());
    vars.insert("LUCID_JWT_SECRET".into(), SECRET.into());
    vars.insert("SANDBOX_IMAGE".into(), image);
    vars.insert("DOCKER_NETWORK".into(), "none".into());
    vars.insert("SANDBOX_MEMORY_LIMIT".into(), "256m".into());
    vars.insert(
        "ENCRYPTION_KEY".into(),
        "e2e-encryption-key-0123456789".into(),
    );
    if let Some(llm) = llm {
        let (provider, url_var, key_var) = match llm.format() {
            Format::Anthropic => ("anthropic", "ANTHROPIC_BASE_URL", "ANTHROPIC_API_KEY"),
            Format::Gemini => ("google", "GOOGLE_BASE_URL", "GOOGLE_API_KEY"),
            Format::OpenAi => ("openai", "LLM_BASE_URL", "LLM_API_KEY"),
        };
        vars.insert("DEFAULT_MODEL_PROVIDER".into(), provider.into());
        vars.insert(url_var.into(), llm.base_url());
        vars.insert(key_var.into(), LLM_KEY.into());
    }
    vars
}

impl Harness {
    pub async fn start(llm: Option<&ScriptedLlm>, extra: &[(&str, &str)]) -> Harness {
        let data_dir = tempfile::tempdir().unwrap();
        let mut vars = env_for(llm, data_dir.path()).await;
        for (k, v) in extra {
            vars.insert(k.to_string(), v.to_string());
        }
        let engine = Engine::start(Config::from_map(&vars).unwrap())
            .await
            .unwrap();
        Harness {
            engine,
            data_dir,
            vars,
        }
    }
}

/// Reads events until a terminal status (completed / failed / stopped), with a time limit.
pub async fn collect_until_done(events: &mut EventStream, limit: Duration) -> Vec<Event> {
    let mut out = Vec::new();
    let result = tokio::time::timeout(limit, async {
        while let Some(event) = events.next().await.unwrap() {
            let done = matches!(
                &event.kind,
                EventKind::Status {
                    status: SessionStatus::Completed
                        | SessionStatus::Failed
                        | SessionStatus::Stopped,
                    ..
                }
            );
            out.push(event);
            if done {
                break;
            }
        }
    })
    .await;
    assert!(result.is_ok(), "timed out; events so far: {out:#?}");
    out
}

/// Asserts seqs are 1..=n without gaps.
pub fn assert_gap_free(events: &[Event]) {
    for (i, e) in events.iter().enumerate() {
        assert_eq!(
            e.seq,
            i as u64 + 1,
            "gap or reorder at index {i}: {events:#?}"
        );
    }
}

/// Containers on the daemon labelled with this session id (any state).
pub async fn containers_of_session(session_id: &str) -> usize {
    use bollard::query_parameters::ListContainersOptionsBuilder;
    let docker = lucid_testkit::image::require_docker().await;
    let filters: HashMap<String, Vec<String>> = HashMap::from([(
        "label".to_string(),
        vec![format!("lucid.session_id={session_id}")],
    )]);
    let opts = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    docker.list_containers(Some(opts)).await.unwrap().len()
}
