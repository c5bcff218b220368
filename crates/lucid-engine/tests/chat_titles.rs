//! Chat titles written by the session's model, through the real engine (local sandbox, no
//! Docker) and a scripted LLM in each wire format: the title arrives through the rename path,
//! a user's rename is never overwritten, a failed or unusable answer keeps the task, the
//! request is the session's model with the task, and `LUCID_CHAT_TITLES=off` asks nothing.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lucid_engine::sessions::StartSession;
use lucid_engine::{Config, Engine, User};
use lucid_testkit::llm::{Format, ScriptedLlm, Step, DEFAULT_TITLE, TITLE_REQUEST_MARKER};

const FORMATS: [Format; 3] = [Format::Anthropic, Format::Gemini, Format::OpenAi];
const TASK: &str = "Please find out why the login form rejects valid passwords and fix it";

struct Harness {
    engine: Arc<Engine>,
    _dir: tempfile::TempDir,
    user: User,
}

fn model_for(format: Format) -> &'static str {
    match format {
        Format::Anthropic => "claude-sonnet-4-5",
        Format::Gemini => "gemini-2.5-flash",
        Format::OpenAi => "gpt-4.1-mini",
    }
}

impl Harness {
    async fn start(llm: &ScriptedLlm, extra: &[(&str, &str)]) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let mut vars: HashMap<String, String> = HashMap::new();
        vars.insert("LUCID_DATA_DIR".into(), dir.path().display().to_string());
        vars.insert("SANDBOX_MODE".into(), "local".into());
        vars.insert(
            "LUCID_JWT_SECRET".into(),
            "chat-titles-secret-0123456789-abcdef".into(),
        );
        let (provider, url_var, key_var) = match llm.format() {
            Format::Anthropic => ("anthropic", "ANTHROPIC_BASE_URL", "ANTHROPIC_API_KEY"),
            Format::Gemini => ("google", "GOOGLE_BASE_URL", "GOOGLE_API_KEY"),
            Format::OpenAi => ("openai", "LLM_BASE_URL", "LLM_API_KEY"),
        };
        vars.insert("DEFAULT_MODEL_PROVIDER".into(), provider.into());
        vars.insert("LLM_MODEL".into(), model_for(llm.format()).into());
        vars.insert(url_var.into(), llm.base_url());
        vars.insert(key_var.into(), "chat-titles-key".into());
        for (k, v) in extra {
            vars.insert(k.to_string(), v.to_string());
        }
        let engine = Engine::start(Config::from_map(&vars).unwrap())
            .await
            .unwrap();
        Harness {
            engine,
            _dir: dir,
            user: User::with_id("titles-user"),
        }
    }

    /// Starts a session on `task`; returns its chat id.
    async fn start_task(&self, task: &str) -> String {
        self.engine
            .sessions()
            .start(
                &self.user,
                StartSession {
                    task: task.into(),
                    ..StartSession::default()
                },
            )
            .await
            .unwrap()
            .chat_id
    }

    async fn title(&self, chat_id: &str) -> String {
        self.engine
            .chats()
            .get(&self.user, chat_id)
            .await
            .unwrap()
            .chat
            .title
            .unwrap_or_default()
    }

    /// Waits until the chat's title is `expected` (or fails after 20 s).
    async fn wait_for_title(&self, chat_id: &str, expected: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let title = self.title(chat_id).await;
            if title == expected {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "title stayed {title:?}, expected {expected:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the scripted LLM answered `n` title requests (and a moment more).
    async fn wait_for_title_requests(&self, llm: &ScriptedLlm, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while llm.title_requests().len() < n || llm.open_requests() > 0 {
            assert!(Instant::now() < deadline, "no title request");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_model_titles_a_new_chat_from_its_task() {
    for format in FORMATS {
        let llm = ScriptedLlm::start(format, vec![Step::text("Fixed.")]).await;
        llm.set_title_answer(Step::text("\"Fix login password check.\""));
        let h = Harness::start(&llm, &[]).await;
        let chat_id = h.start_task(TASK).await;
        // Cleaned (quotes and the final period dropped) and saved as the chat's title.
        h.wait_for_title(&chat_id, "Fix login password check").await;

        // One request, to the session's model, with the task, apart from the conversation.
        let requests = llm.title_requests();
        assert_eq!(requests.len(), 1, "{format:?}");
        let body = requests[0].body.to_string();
        assert!(body.contains(TITLE_REQUEST_MARKER), "{format:?}: {body}");
        assert!(
            body.contains("login form rejects valid passwords"),
            "{format:?}"
        );
        match format {
            Format::Gemini => assert!(
                requests[0].path_and_query.contains(model_for(format)),
                "{}",
                requests[0].path_and_query
            ),
            _ => assert_eq!(requests[0].body["model"], model_for(format), "{format:?}"),
        }
        assert!(
            !body.contains("execute_bash"),
            "{format:?}: tools were offered"
        );
        // The conversation's own requests are untouched by it.
        for r in llm.recorded() {
            assert!(!r.body.to_string().contains(TITLE_REQUEST_MARKER));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rename_by_the_user_is_never_overwritten() {
    let llm = ScriptedLlm::start(Format::Anthropic, vec![Step::text("Fixed.")]).await;
    // The title comes late: the user renames first.
    llm.set_title_answer(Step::Delay(
        Duration::from_millis(800),
        Box::new(Step::text("Generated title")),
    ));
    let h = Harness::start(&llm, &[]).await;
    let chat_id = h.start_task(TASK).await;
    h.engine
        .chats()
        .rename(&h.user, &chat_id, Some("My own name"))
        .await
        .unwrap();
    h.wait_for_title_requests(&llm, 1).await;
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(h.title(&chat_id).await, "My own name");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_or_unusable_answer_keeps_the_task_as_title() {
    let answers = [
        Step::provider_error(Format::Anthropic, 400, "model not found"),
        Step::text("  \n \"\" \n"),
        Step::Raw {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: "{not json".into(),
        },
    ];
    for answer in answers {
        let llm = ScriptedLlm::start(Format::Anthropic, vec![Step::text("Fixed.")]).await;
        llm.set_title_answer(answer.clone());
        let h = Harness::start(&llm, &[]).await;
        let chat_id = h.start_task(TASK).await;
        h.wait_for_title_requests(&llm, 1).await;
        assert_eq!(h.title(&chat_id).await, TASK, "{answer:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn titles_can_be_turned_off() {
    let llm = ScriptedLlm::start(Format::Anthropic, vec![Step::text("Fixed.")]).await;
    let h = Harness::start(&llm, &[("LUCID_CHAT_TITLES", "off")]).await;
    let chat_id = h.start_task(TASK).await;
    // The agent's own request arrives; no title request comes with it.
    let deadline = Instant::now() + Duration::from_secs(20);
    while llm.request_count() == 0 {
        assert!(Instant::now() < deadline, "the agent asked nothing");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(llm.title_requests().is_empty());
    assert_eq!(h.title(&chat_id).await, TASK);
    assert_ne!(TASK, DEFAULT_TITLE);
}
