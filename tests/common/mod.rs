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
    // No pre-started sandbox unless a test asks for one (`extra`): tests count containers.
    vars.insert("LUCID_WARM_SANDBOX".into(), "false".into());
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

impl Harness {
    /// Starts a session on `task` with every other option at its default.
    pub async fn start_task(
        &self,
        user: &lucid_engine::User,
        task: &str,
    ) -> lucid_engine::sessions::StartedSession {
        self.engine
            .sessions()
            .start(
                user,
                lucid_engine::sessions::StartSession {
                    task: task.into(),
                    ..Default::default()
                },
            )
            .await
            .unwrap()
    }

    /// Attaches to a session from its first event.
    pub async fn attach_from_start(
        &self,
        user: &lucid_engine::User,
        session_id: &str,
    ) -> lucid_engine::sessions::Attachment {
        self.engine
            .sessions()
            .attach(user, session_id, 0)
            .await
            .unwrap()
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

/// Creates bare repository `full_name` (`owner/repo`, served at
/// `git.url_for(full_name)` = `http://127.0.0.1:<port>/owner/repo.git`) with the content of
/// [`lucid_testkit::git_server::GitServer::create_repo`], which only takes flat names: the
/// repository is seeded under a flat name and copied to the nested path.
pub async fn create_nested_repo(
    git: &lucid_testkit::git_server::GitServer,
    full_name: &str,
    files: &[(&str, &str)],
    branches: &[&str],
) {
    let seed = format!("seed-{}", uuid::Uuid::new_v4().simple());
    git.create_repo(&seed, files, branches).await.unwrap();
    let target = git.bare_path(full_name);
    std::fs::create_dir_all(target.parent().unwrap()).unwrap();
    let out = tokio::process::Command::new("git")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .args(["clone", "--quiet", "--bare", "--"])
        .arg(git.bare_path(&seed))
        .arg(&target)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    git.git_in_repo(full_name, &["config", "http.receivepack", "true"])
        .await
        .unwrap();
}

/// Every regular file under `dir` (recursively, symlinks not followed).
pub fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(ty) = entry.file_type() else { continue };
            if ty.is_dir() {
                stack.push(entry.path());
            } else if ty.is_file() {
                out.push(entry.path());
            }
        }
    }
    out
}

/// Fails if any file under `dir` contains `secret`; returns how many files were checked.
pub fn assert_secret_absent_under(dir: &std::path::Path, secret: &str) -> usize {
    let files = files_under(dir);
    for file in &files {
        let bytes = std::fs::read(file).unwrap_or_default();
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "secret found in {}",
            file.display()
        );
    }
    files.len()
}

/// `docker inspect` of the (single) container of a session, as JSON text.
pub async fn inspect_session_container(session_id: &str) -> serde_json::Value {
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
    let list = docker.list_containers(Some(opts)).await.unwrap();
    assert_eq!(
        list.len(),
        1,
        "containers of session {session_id}: {list:?}"
    );
    let id = list[0].id.clone().unwrap();
    let inspect = docker
        .inspect_container(
            &id,
            None::<bollard::query_parameters::InspectContainerOptions>,
        )
        .await
        .unwrap();
    serde_json::to_value(inspect).unwrap()
}

/// Starts a session and reads its events until it completes, fails or stops (gap-free).
pub async fn run_session(
    h: &Harness,
    user: &lucid_engine::User,
    req: lucid_engine::sessions::StartSession,
) -> (lucid_engine::sessions::StartedSession, Vec<Event>) {
    let started = h.engine.sessions().start(user, req).await.unwrap();
    let mut attachment = h
        .engine
        .sessions()
        .attach(user, &started.session_id, 0)
        .await
        .unwrap();
    let events = collect_until_done(&mut attachment.events, Duration::from_secs(120)).await;
    assert_gap_free(&events);
    (started, events)
}

/// The status of the last event (the session's final status).
pub fn final_status(events: &[Event]) -> SessionStatus {
    match &events.last().unwrap().kind {
        EventKind::Status { status, .. } => *status,
        other => panic!("last event is not a status: {other:?}"),
    }
}
