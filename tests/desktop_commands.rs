//! The desktop app's commands on Tauri's mock runtime, over a real engine (scripted LLM, real
//! Docker sandbox with the test image, network `none`) and an in-memory credential store:
//! each command group through IPC, errors in the UI's shape, session events through the
//! channel in order with `since` replay, settings with provider keys, and the optional HTTP
//! API bound, answering with its token, and unbound.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use lucid_desktop::account::Account;
use lucid_desktop::secrets::Secrets;
use lucid_desktop::settings::Settings;
use lucid_desktop::state::{Shell, ShellPaths};
use lucid_testkit::forge::FakeGithub;
use lucid_testkit::llm::{Format, ScriptedLlm, Step};
use serde_json::{json, Value};
use tauri::test::{get_ipc_response, mock_builder, mock_context, noop_assets, INVOKE_KEY};
use tauri::webview::InvokeRequest;
use tauri::{Listener, Manager};

/// The credential store is process-wide: the tests of this file run one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

const GH_TOKEN: &str = "ghp_fake-DesktopCom-mandsTok-en012345-6789abcd-efgh";

struct App {
    _app: tauri::App<tauri::test::MockRuntime>,
    webview: tauri::WebviewWindow<tauri::test::MockRuntime>,
    _dir: tempfile::TempDir,
}

impl App {
    fn invoke(&self, cmd: &str, args: Value) -> Result<Value, Value> {
        get_ipc_response(
            &self.webview,
            InvokeRequest {
                cmd: cmd.into(),
                callback: tauri::ipc::CallbackFn(0),
                error: tauri::ipc::CallbackFn(1),
                url: "tauri://localhost".parse().unwrap(),
                body: tauri::ipc::InvokeBody::Json(args),
                headers: Default::default(),
                invoke_key: INVOKE_KEY.to_string(),
            },
        )
        .map(|body| body.deserialize::<Value>().unwrap())
    }

    fn shell(&self) -> tauri::State<'_, Shell> {
        self.webview.state::<Shell>()
    }
}

fn start_app(llm: &ScriptedLlm, gh: &FakeGithub) -> App {
    start_app_with(llm, gh, Vec::new())
}

/// [`start_app`] with more settings in the environment (e.g. a Supabase project's).
fn start_app_with(llm: &ScriptedLlm, gh: &FakeGithub, extra: Vec<(&str, String)>) -> App {
    let dir = tempfile::tempdir().unwrap();
    let vars = tauri::async_runtime::block_on(common::env_for(Some(llm), dir.path()));
    let mut env = vars.clone();
    env.insert("LUCID_GITHUB_API_URL".into(), gh.base_url());
    for (name, value) in extra {
        env.insert(name.into(), value);
    }
    // The desktop keeps provider keys in the credential store, not the environment.
    env.remove("ANTHROPIC_API_KEY");
    env.remove("ENCRYPTION_KEY");
    env.remove("LUCID_JWT_SECRET");
    let secrets = Secrets::open_memory_store();
    secrets
        .set("ANTHROPIC_API_KEY", common::LLM_KEY)
        .expect("memory store");
    let paths = ShellPaths {
        data_dir: dir.path().join("data"),
        settings_file: dir.path().join("config/settings.json"),
    };
    let shell = tauri::async_runtime::block_on(Shell::start(paths, secrets, move |name| {
        env.get(name).cloned()
    }))
    .expect("shell starts");
    let account = Account::new(shell.engine.clone(), shell.session_keeper().cloned());
    let app = mock_builder()
        .manage(account)
        .manage(lucid_desktop::account::SystemBrowser::new(|_| Ok(())))
        .manage(shell)
        .invoke_handler(lucid_desktop::handler())
        .build(mock_context(noop_assets()))
        .unwrap();
    app.manage(lucid_desktop::quit::QuitGate::for_app(app.handle().clone()));
    let webview = tauri::WebviewWindowBuilder::new(&app, "main", Default::default())
        .build()
        .unwrap();
    App {
        _app: app,
        webview,
        _dir: dir,
    }
}

fn wait_for_status(app: &App, session_id: &str, done: &[&str]) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let summary = app
            .invoke("get_session", json!({"sessionId": session_id}))
            .unwrap();
        let status = summary["status"].as_str().unwrap_or_default().to_string();
        if done.contains(&status.as_str()) {
            return status;
        }
        assert!(std::time::Instant::now() < deadline, "stuck at {status}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Checks an error in the UI's shape: its HTTP status and words of its message.
fn assert_refused(err: &Value, status: u16, says: &str) {
    assert_eq!(err["status"], status, "{err}");
    assert!(err["message"].as_str().unwrap().contains(says), "{err}");
}

/// One provider's entry in the engine status.
fn provider_status(status: &Value, name: &str) -> Value {
    status["providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no {name} in {status}"))
}

#[test]
fn every_command_group_works_through_ipc_with_errors_in_the_uis_shape() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (llm, gh) = tauri::async_runtime::block_on(async {
        let llm = ScriptedLlm::start(
            Format::Anthropic,
            vec![
                Step::tool_call(
                    "str_replace_editor",
                    json!({"command": "create", "path": "/workspace/hello.py", "file_text": "print('hi')\n"}),
                ),
                Step::tool_call("execute_bash", json!({"command": "echo from-the-sandbox"})),
                Step::tool_call("finish", json!({"message": "done"})),
            ],
        )
        .await;
        (llm, FakeGithub::start(GH_TOKEN, 3).await)
    });
    let app = start_app(&llm, &gh);

    // Status.
    let info = app.invoke("service_info", json!({})).unwrap();
    assert_eq!(info["mode"], "local");
    assert_eq!(info["sandbox"], "docker");

    // Sessions: the key comes from the credential store (none in the environment).
    let started = app
        .invoke("start_session", json!({"req": {"task": "write hello.py"}}))
        .unwrap();
    let session_id = started["sessionId"].as_str().unwrap().to_string();
    let chat_id = started["chatId"].as_str().unwrap().to_string();
    assert_eq!(
        wait_for_status(&app, &session_id, &["completed", "failed"]),
        "completed"
    );
    let request = llm
        .requests()
        .into_iter()
        .next()
        .expect("the model was asked");
    assert!(request.to_string().contains("write hello.py"));
    let listed = app.invoke("list_sessions", json!({})).unwrap();
    assert!(listed
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["sessionId"] == session_id.as_str()));

    // Events through the channel: replay from 0, then from a later seq, in order, no gaps.
    let attach = |since: u64| {
        tauri::async_runtime::block_on(async {
            let shell = app.shell();
            let attachment = shell
                .engine
                .sessions()
                .attach(&shell.current_user().unwrap(), &session_id, since)
                .await
                .unwrap();
            let got = Arc::new(Mutex::new(Vec::<Value>::new()));
            let sink = got.clone();
            let channel = tauri::ipc::Channel::<Value>::new(move |body| {
                if let tauri::ipc::InvokeResponseBody::Json(text) = body {
                    sink.lock()
                        .unwrap()
                        .push(serde_json::from_str(&text).unwrap());
                }
                Ok(())
            });
            // The session stays live (it waits for follow-ups): read up to its completion,
            // then go away like a closed window.
            tokio::time::timeout(
                Duration::from_secs(10),
                lucid_desktop::commands::sessions::forward_events(attachment, move |v| {
                    let completed = v["status"] == "completed";
                    channel.send(v).is_ok() && !completed
                }),
            )
            .await
            .expect("the replay reaches the completion");
            let frames = got.lock().unwrap().clone();
            frames
        })
    };
    let all = attach(0);
    let seqs: Vec<u64> = all.iter().filter_map(|f| f["seq"].as_u64()).collect();
    assert!(seqs.len() > 5, "{all:#?}");
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "gap-free, in order"
    );
    assert_eq!(all.last().unwrap()["status"], "completed", "{all:#?}");
    assert!(all
        .iter()
        .any(|f| f.to_string().contains("from-the-sandbox")));
    let later = attach(3);
    let later_seqs: Vec<u64> = later.iter().filter_map(|f| f["seq"].as_u64()).collect();
    assert_eq!(later_seqs, seqs[3..].to_vec());
    // The IPC form of the subscription answers with an id.
    let sub = app.invoke(
        "subscribe_session",
        json!({"sessionId": session_id, "since": 0, "onEvent": "__CHANNEL__:7"}),
    );
    assert!(sub.is_ok(), "{sub:?}");
    assert_eq!(
        app.invoke("unsubscribe", json!({"subscription": sub.unwrap()}))
            .unwrap(),
        json!(true)
    );

    // Files.
    let tree = app
        .invoke("list_files", json!({"sessionId": session_id}))
        .unwrap();
    assert!(tree.to_string().contains("hello.py"), "{tree}");
    let file = app
        .invoke(
            "read_file",
            json!({"sessionId": session_id, "path": "/hello.py"}),
        )
        .unwrap();
    assert_eq!(file["content"], "print('hi')\n");
    let err = app
        .invoke(
            "read_file",
            json!({"sessionId": session_id, "path": "../../etc/passwd"}),
        )
        .unwrap_err();
    assert_eq!(err["status"], 400, "{err}");

    // History.
    let chats = app.invoke("list_chats", json!({})).unwrap();
    assert!(chats
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["id"] == chat_id.as_str()));
    app.invoke("rename_chat", json!({"chatId": chat_id, "title": "Hello"}))
        .unwrap();
    let chat = app.invoke("get_chat", json!({"chatId": chat_id})).unwrap();
    assert_eq!(chat["title"], "Hello", "{chat}");
    let err = app
        .invoke("get_chat", json!({"chatId": "no-such-chat"}))
        .unwrap_err();
    assert_refused(&err, 404, "not found");

    // Integrations.
    let saved = app
        .invoke(
            "save_integration",
            json!({"req": {"provider": "github", "token": GH_TOKEN}}),
        )
        .unwrap();
    assert_eq!(saved["username"], "octocat");
    let listed = app.invoke("list_integrations", json!({})).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let repos = app
        .invoke("list_repos", json!({"provider": "github"}))
        .unwrap();
    assert_eq!(repos["count"], 3);
    let err = app
        .invoke(
            "save_integration",
            json!({"req": {"provider": "github", "token": "ghp_fake-rejected-token-000000000000000"}}),
        )
        .unwrap_err();
    assert_eq!(err["status"], 422, "{err}");
    assert!(!err.to_string().contains("rejected-token"), "{err}");

    // Bad input is a clear error, not a crash.
    let err = app
        .invoke("start_session", json!({"req": {"task": "  "}}))
        .unwrap_err();
    assert_eq!(err["status"], 400, "{err}");
    assert!(app.invoke("get_chat", json!({})).is_err());

    app.invoke("delete_chat", json!({"chatId": chat_id}))
        .unwrap();
    let err = app
        .invoke("get_chat", json!({"chatId": chat_id}))
        .unwrap_err();
    assert_eq!(err["status"], 404);
}

const STREAMED_ANSWER: &str = "I looked at the workspace: it is empty, so there is nothing \
                               to fix yet. Tell me what to build and I will start.";

/// Reads `attachment` through the shell's channel forwarding until the turn's final status.
fn frames_until_turn_ends(app: &App, session_id: &str, since: u64) -> Vec<Value> {
    tauri::async_runtime::block_on(async {
        let shell = app.shell();
        let attachment = shell
            .engine
            .sessions()
            .attach(&shell.current_user().unwrap(), session_id, since)
            .await
            .unwrap();
        let got = Arc::new(Mutex::new(Vec::<Value>::new()));
        let sink = got.clone();
        let channel = tauri::ipc::Channel::<Value>::new(move |body| {
            if let tauri::ipc::InvokeResponseBody::Json(text) = body {
                sink.lock()
                    .unwrap()
                    .push(serde_json::from_str(&text).unwrap());
            }
            Ok(())
        });
        tokio::time::timeout(
            Duration::from_secs(60),
            lucid_desktop::commands::sessions::forward_events(attachment, move |v| {
                let done = ["completed", "failed", "stopped"]
                    .contains(&v["status"].as_str().unwrap_or(""));
                channel.send(v).is_ok() && !done
            }),
        )
        .await
        .expect("the turn ends");
        let frames = got.lock().unwrap().clone();
        frames
    })
}

/// Starts a sign-in (`sign_in_link`) and follows it in a "browser" as far as the `lucid://`
/// link Supabase Auth sends it back to.
fn deep_link_back_from_sign_in(app: &App, provider: &str) -> String {
    let url = app
        .invoke("sign_in_link", json!({ "provider": provider }))
        .unwrap();
    tauri::async_runtime::block_on(async {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .unwrap()
            .get(url.as_str().unwrap())
            .send()
            .await
            .unwrap()
            .headers()["location"]
            .to_str()
            .unwrap()
            .to_string()
    })
}

#[test]
fn in_supabase_mode_every_command_acts_as_the_signed_in_user() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (project, llm, gh) = tauri::async_runtime::block_on(async {
        let project = lucid_testkit::supabase::SupabaseProject::start_with_auth().await;
        let llm = ScriptedLlm::start(
            Format::Anthropic,
            vec![
                Step::tool_call("finish", json!({"message": "done"})),
                Step::tool_call("finish", json!({"message": "done again"})),
            ],
        )
        .await;
        (project, llm, FakeGithub::start(GH_TOKEN, 3).await)
    });
    let env = project
        .env()
        .into_iter()
        .chain([("LUCID_CHAT_TITLES", "false".to_string())])
        .collect();
    let app = start_app_with(&llm, &gh, env);
    let account = app.webview.state::<Arc<Account>>().inner().clone();
    tauri::async_runtime::block_on(account.become_ready());

    // Signed out: every command that touches a user's data says to sign in.
    for (cmd, args) in [
        ("list_chats", json!({})),
        ("list_sessions", json!({})),
        ("start_session", json!({"req": {"task": "nobody's task"}})),
        ("list_integrations", json!({})),
    ] {
        let err = app.invoke(cmd, args).unwrap_err();
        assert_eq!(err["status"], 403, "{cmd}: {err}");
        assert!(
            err["message"].as_str().unwrap().contains("Sign in"),
            "{cmd}: {err}"
        );
    }
    assert!(llm.requests().is_empty(), "nothing ran");

    // Sign in through the deep link.
    let link = deep_link_back_from_sign_in(&app, "github");
    assert!(link.starts_with("lucid://auth/callback"), "{link}");
    let signed_in = tauri::async_runtime::block_on(account.complete(&link)).expect("signed in");

    // Now the commands act as that user, and the rows the store writes through PostgREST
    // (with the user's own access token, under row-level security) are theirs.
    let started = app
        .invoke(
            "start_session",
            json!({"req": {"task": "a task in Supabase mode"}}),
        )
        .unwrap();
    let session_id = started["sessionId"].as_str().unwrap().to_string();
    let chat_id = started["chatId"].as_str().unwrap().to_string();
    assert_eq!(
        wait_for_status(&app, &session_id, &["completed", "failed"]),
        "completed"
    );
    let chats = app.invoke("list_chats", json!({})).unwrap();
    assert!(
        chats
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["id"] == chat_id.as_str()),
        "{chats}"
    );
    let owner: uuid::Uuid = tauri::async_runtime::block_on(async {
        project
            .admin()
            .query_one(
                "select user_id from public.chat_sessions where id = $1",
                &[&uuid::Uuid::parse_str(&chat_id).unwrap()],
            )
            .await
            .unwrap()
            .get(0)
    });
    assert_eq!(owner.to_string(), signed_in.id);
    let listed = app.invoke("list_sessions", json!({})).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    // The window follows the session's events (a stream that never ends by itself).
    let stream = tauri::async_runtime::spawn(std::future::pending::<()>());
    let stream_handle = stream.inner().abort_handle();
    app.shell()
        .add_subscription(&signed_in.id, stream_handle.clone());
    assert_eq!(app.shell().engine.sessions().active_count(), 1);

    // Signed out again: nothing of theirs is reachable, their live session is stopped and
    // its sandbox released, and the window's stream of it ends.
    app.invoke("sign_out", json!({})).unwrap();
    let err = app.invoke("list_chats", json!({})).unwrap_err();
    assert_eq!(err["status"], 403, "{err}");
    let err = app
        .invoke("get_chat", json!({"chatId": chat_id}))
        .unwrap_err();
    assert_eq!(err["status"], 403, "{err}");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while app.shell().engine.sessions().active_count() > 0 || !stream_handle.is_finished() {
        assert!(
            std::time::Instant::now() < deadline,
            "the signed-out user's session and stream still run"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(app.shell().live_subscriptions(), 0);

    // Signing in again brings the history back, whole.
    let link = deep_link_back_from_sign_in(&app, "github");
    let again = tauri::async_runtime::block_on(account.complete(&link)).expect("signed in");
    assert_eq!(again.id, signed_in.id);
    let chat = app.invoke("get_chat", json!({"chatId": chat_id})).unwrap();
    assert_eq!(chat["id"], chat_id.as_str(), "{chat}");

    // Another account signs in on the same app: the first one's work stops, and the new
    // user sees none of it.
    let started = app
        .invoke(
            "start_session",
            json!({"req": {"task": "grace's second task"}}),
        )
        .unwrap();
    let second = started["sessionId"].as_str().unwrap().to_string();
    assert_eq!(
        wait_for_status(&app, &second, &["completed", "failed"]),
        "completed"
    );
    assert_eq!(app.shell().engine.sessions().active_count(), 1);
    let link = deep_link_back_from_sign_in(&app, "google");
    let ada = tauri::async_runtime::block_on(account.complete(&link)).expect("signed in");
    assert_ne!(ada.id, signed_in.id);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while app.shell().engine.sessions().active_count() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the replaced user's session still runs"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let listed = app.invoke("list_chats", json!({})).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 0, "{listed}");
    let err = app
        .invoke("get_chat", json!({"chatId": chat_id}))
        .unwrap_err();
    assert_eq!(err["status"], 404, "{err}");
}

#[test]
fn streamed_text_reaches_the_channel_as_agent_delta_frames_between_stored_events() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (llm, gh) = tauri::async_runtime::block_on(async {
        (
            ScriptedLlm::start(
                Format::Anthropic,
                vec![Step::text(STREAMED_ANSWER).paced(Duration::from_millis(40))],
            )
            .await,
            FakeGithub::start(GH_TOKEN, 1).await,
        )
    });
    let app = start_app(&llm, &gh);
    let started = app
        .invoke("start_session", json!({"req": {"task": "look around"}}))
        .unwrap();
    let session_id = started["sessionId"].as_str().unwrap().to_string();
    let chat_id = started["chatId"].as_str().unwrap().to_string();

    let live = frames_until_turn_ends(&app, &session_id, 0);
    assert_eq!(live.last().unwrap()["status"], "completed", "{live:#?}");
    let deltas: Vec<&Value> = live.iter().filter(|f| f["type"] == "agent_delta").collect();
    assert!(deltas.len() >= 5, "{live:#?}");
    let text: String = deltas
        .iter()
        .filter(|f| f["eventType"] == "AssistantDelta")
        .map(|f| f["content"].as_str().unwrap())
        .collect();
    assert_eq!(text, STREAMED_ANSWER);
    // The WebSocket's frame: no seq (not part of the log), the stored event it follows, ids.
    for delta in &deltas {
        assert!(delta.get("seq").is_none(), "{delta}");
        assert_eq!(delta["sessionId"], session_id.as_str());
        assert_eq!(delta["chatId"], chat_id.as_str());
        assert!(delta["afterSeq"].is_u64(), "{delta}");
    }
    // Every frame of the channel carries the chat id, like the WebSocket's.
    assert!(
        live.iter().all(|f| f["chatId"] == chat_id.as_str()),
        "{live:#?}"
    );
    // The partial text comes before the stored message that completes it, after the event
    // it follows.
    let first_delta = live
        .iter()
        .position(|f| f["type"] == "agent_delta")
        .unwrap();
    let message = live
        .iter()
        .position(|f| f["type"] == "agent_event" && f["content"] == STREAMED_ANSWER)
        .unwrap_or_else(|| panic!("no stored message: {live:#?}"));
    assert!(first_delta < message);
    let last_stored_before = live[..first_delta]
        .iter()
        .rev()
        .find_map(|f| f["seq"].as_u64())
        .unwrap_or(0);
    assert_eq!(deltas[0]["afterSeq"].as_u64().unwrap(), last_stored_before);
    let seqs: Vec<u64> = live.iter().filter_map(|f| f["seq"].as_u64()).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());

    // A replay (a reloaded window) has the stored events only.
    let replay = frames_until_turn_ends(&app, &session_id, 0);
    assert!(
        replay.iter().all(|f| f["type"] != "agent_delta"),
        "{replay:#?}"
    );
    assert_eq!(
        replay
            .iter()
            .filter_map(|f| f["seq"].as_u64())
            .collect::<Vec<_>>(),
        seqs
    );
}

#[test]
fn settings_keys_and_the_http_api_toggle() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (llm, gh) = tauri::async_runtime::block_on(async {
        (
            ScriptedLlm::start(Format::Anthropic, vec![]).await,
            FakeGithub::start(GH_TOKEN, 1).await,
        )
    });
    let app = start_app(&llm, &gh);

    let view = app.invoke("get_settings", json!({})).unwrap();
    assert_eq!(view["keysSet"], json!(["anthropic"]));
    assert_eq!(view["restartRequired"], false);
    assert!(view["httpApi"].is_null());
    assert_eq!(view["secretStore"], "memory");

    // Keys: set and removed in the credential store; never shown back. The engine status
    // counts a provider configured as soon as its key is stored (sessions get it at once).
    let google = |status: &Value| provider_status(status, "google");
    let status = app.invoke("engine_status", json!({})).unwrap();
    assert_eq!(google(&status)["configured"], false, "{status}");
    let view = app
        .invoke(
            "set_provider_key",
            json!({"req": {"provider": "gemini", "key": "AIza-fake-desktop-key"}}),
        )
        .unwrap();
    assert_eq!(view["keysSet"], json!(["anthropic", "google"]));
    let status = app.invoke("engine_status", json!({})).unwrap();
    assert_eq!(google(&status)["configured"], true, "{status}");
    assert!(google(&status)["model"]
        .as_str()
        .is_some_and(|m| m.starts_with("gemini")));
    assert!(!status.to_string().contains("AIza-fake-desktop-key"));
    assert!(!view.to_string().contains("AIza-fake-desktop-key"));
    let shell = app.shell();
    assert_eq!(
        shell.secrets.get("GOOGLE_API_KEY").unwrap().as_deref(),
        Some("AIza-fake-desktop-key")
    );
    let view = app
        .invoke(
            "set_provider_key",
            json!({"req": {"provider": "google", "key": ""}}),
        )
        .unwrap();
    assert_eq!(view["keysSet"], json!(["anthropic"]));
    let status = app.invoke("engine_status", json!({})).unwrap();
    assert_eq!(google(&status)["configured"], false, "{status}");
    let err = app
        .invoke(
            "set_provider_key",
            json!({"req": {"provider": "nope", "key": "k"}}),
        )
        .unwrap_err();
    assert_eq!(err["status"], 400);

    // Settings the engine could not start with are refused, and the file stays as it was.
    let before = std::fs::read_to_string(&app.shell().paths.settings_file).ok();
    let bad = Settings {
        sandbox_cpu_limit: Some("lots".into()),
        ..Settings::default()
    };
    let err = app
        .invoke("save_settings", json!({"settings": bad}))
        .unwrap_err();
    assert_refused(&err, 400, "SANDBOX_CPU_LIMIT");
    assert_eq!(
        std::fs::read_to_string(&app.shell().paths.settings_file).ok(),
        before
    );

    // A sandbox image change is saved and needs a restart; the HTTP API starts at once.
    let mut settings = Settings {
        sandbox_image: Some("python:3.12-slim".into()),
        ..Settings::default()
    };
    settings.http_api.enabled = true;
    settings.http_api.port = 0;
    let view = app
        .invoke("save_settings", json!({"settings": settings}))
        .unwrap();
    assert_eq!(view["restartRequired"], true);
    assert_eq!(view["settings"]["sandboxImage"], "python:3.12-slim");
    let saved = std::fs::read_to_string(&shell.paths.settings_file).unwrap();
    assert!(saved.contains("python:3.12-slim"));
    let url = view["httpApi"]["url"].as_str().unwrap().to_string();
    let token = view["httpApi"]["token"].as_str().unwrap().to_string();
    let client = reqwest::blocking_free_client();
    let (health, listed, unauthorised) = tauri::async_runtime::block_on(async {
        let health = client.get(format!("{url}/health")).send().await.unwrap();
        let listed = client
            .get(format!("{url}/api/v1/chats"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        let unauthorised = client
            .get(format!("{url}/api/v1/chats"))
            .bearer_auth("not-a-token")
            .send()
            .await
            .unwrap();
        (health.status(), listed.status(), unauthorised.status())
    });
    assert_eq!(health.as_u16(), 200);
    assert_eq!(listed.as_u16(), 200);
    assert_eq!(unauthorised.as_u16(), 401);

    // Saving the same address again (here a name and port 0) keeps the running API as it is.
    settings.http_api.host = "localhost".into();
    let view = app
        .invoke("save_settings", json!({"settings": settings}))
        .unwrap();
    let url = view["httpApi"]["url"].as_str().unwrap().to_string();
    let view = app
        .invoke("save_settings", json!({"settings": settings}))
        .unwrap();
    assert_eq!(
        view["httpApi"]["url"],
        url.as_str(),
        "restarted for nothing"
    );

    // A port that is taken: saved, said, and the page sees that no API runs.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    settings.http_api.host = "127.0.0.1".into();
    settings.http_api.port = taken.local_addr().unwrap().port();
    let err = app
        .invoke("save_settings", json!({"settings": settings}))
        .unwrap_err();
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .starts_with("Saved, but the HTTP API could not start"),
        "{err}"
    );
    let view = app.invoke("get_settings", json!({})).unwrap();
    assert!(view["httpApi"].is_null(), "{view}");
    assert_eq!(view["settings"]["httpApi"]["port"], settings.http_api.port);
    drop(taken);

    settings.http_api.enabled = false;
    let view = app
        .invoke("save_settings", json!({"settings": settings}))
        .unwrap();
    assert!(view["httpApi"].is_null());
    let refused =
        tauri::async_runtime::block_on(async { client.get(format!("{url}/health")).send().await });
    assert!(
        refused.is_err(),
        "the API still answers after being switched off"
    );
}

#[test]
fn a_provider_key_set_or_removed_in_settings_applies_to_the_next_session_without_a_restart() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    const SECOND_KEY: &str = "sk-ant-second-desktop-key";
    let (llm, gh) = tauri::async_runtime::block_on(async {
        let finish = || Step::tool_call("finish", json!({"message": "done"}));
        (
            ScriptedLlm::start(Format::Anthropic, vec![finish(), finish()]).await,
            FakeGithub::start(GH_TOKEN, 1).await,
        )
    });
    let app = start_app(&llm, &gh);
    let key_of = |task: &str| {
        llm.recorded()
            .into_iter()
            .find(|r| r.body.to_string().contains(task))
            .and_then(|r| r.header("x-api-key").map(str::to_string))
    };
    let run = |task: &str| {
        let started = app
            .invoke("start_session", json!({"req": {"task": task}}))
            .unwrap();
        let session_id = started["sessionId"].as_str().unwrap().to_string();
        assert_eq!(
            wait_for_status(&app, &session_id, &["completed", "failed"]),
            "completed"
        );
    };

    run("first task with the stored key");
    assert_eq!(
        key_of("first task with the stored key").as_deref(),
        Some(common::LLM_KEY)
    );

    // Replaced: the next session uses the new key, no restart.
    app.invoke(
        "set_provider_key",
        json!({"req": {"provider": "anthropic", "key": SECOND_KEY}}),
    )
    .unwrap();
    run("second task with the replaced key");
    assert_eq!(
        key_of("second task with the replaced key").as_deref(),
        Some(SECOND_KEY)
    );

    // Removed: no session starts with it any more, and the status says so.
    app.invoke(
        "set_provider_key",
        json!({"req": {"provider": "anthropic", "key": ""}}),
    )
    .unwrap();
    let asked = llm.request_count();
    let err = app
        .invoke(
            "start_session",
            json!({"req": {"task": "third task without a key"}}),
        )
        .unwrap_err();
    assert_refused(&err, 400, "ANTHROPIC_API_KEY");
    assert_eq!(
        llm.request_count(),
        asked,
        "the model was asked without a key"
    );
    let status = app.invoke("engine_status", json!({})).unwrap();
    assert_eq!(
        provider_status(&status, "anthropic")["configured"],
        false,
        "{status}"
    );
}

/// Starts a session whose answer streams slowly, and waits until it is running.
fn start_working_session(app: &App) -> String {
    let started = app
        .invoke("start_session", json!({"req": {"task": "take your time"}}))
        .unwrap();
    let session_id = started["sessionId"].as_str().unwrap().to_string();
    wait_for_status(app, &session_id, &["running"]);
    session_id
}

fn slow_llm() -> ScriptedLlm {
    tauri::async_runtime::block_on(ScriptedLlm::start(
        Format::Anthropic,
        vec![Step::text(STREAMED_ANSWER).paced(Duration::from_millis(1500))],
    ))
}

#[test]
fn quitting_with_a_working_session_asks_first_then_stops_it_and_removes_its_container() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let llm = slow_llm();
    let gh = tauri::async_runtime::block_on(FakeGithub::start(GH_TOKEN, 1));
    let app = start_app(&llm, &gh);
    let session_id = start_working_session(&app);
    assert_eq!(
        tauri::async_runtime::block_on(common::containers_of_session(&session_id)),
        1
    );

    let (asked_tx, asked) = std::sync::mpsc::channel::<String>();
    app.webview
        .listen_any(lucid_desktop::quit::QUIT_REQUESTED, move |event| {
            let _ = asked_tx.send(event.payload().to_string());
        });
    let App {
        _app: tauri_app,
        webview,
        _dir,
    } = app;
    let (ready_tx, ready) = std::sync::mpsc::channel::<()>();
    let user = std::thread::spawn(move || {
        ready.recv().unwrap();
        // The user closes the window: the app asks instead of closing.
        webview.close().unwrap();
        let question = asked
            .recv_timeout(Duration::from_secs(10))
            .expect("the window is asked before closing");
        std::thread::sleep(Duration::from_millis(2500));
        let handle = webview.app_handle().clone();
        let still_open = handle.webview_windows().len();
        let status = handle
            .state::<Shell>()
            .engine
            .sessions()
            .status(
                &handle.state::<Shell>().current_user().unwrap(),
                &session_id,
            )
            .unwrap();
        // The user agrees.
        let answer = get_ipc_response(
            &webview,
            InvokeRequest {
                cmd: "quit_app".into(),
                callback: tauri::ipc::CallbackFn(0),
                error: tauri::ipc::CallbackFn(1),
                url: "tauri://localhost".parse().unwrap(),
                body: tauri::ipc::InvokeBody::Json(json!({})),
                headers: Default::default(),
                invoke_key: INVOKE_KEY.to_string(),
            },
        );
        (question, still_open, status, answer.is_ok(), session_id)
    });
    // The app's event loop with the app's own lifecycle handler; returns once the app exits.
    let started = std::time::Instant::now();
    tauri_app.run(move |handle, event| {
        if matches!(event, tauri::RunEvent::Ready) {
            let _ = ready_tx.send(());
        }
        lucid_desktop::quit::on_run_event(handle, &event)
    });
    let (question, still_open, status_while_asking, answered, session_id) = user.join().unwrap();
    let question: Value = serde_json::from_str(&question).unwrap();
    assert_eq!(
        question["sessions"][0]["sessionId"],
        session_id.as_str(),
        "{question}"
    );
    assert_eq!(question["sessions"][0]["task"], "take your time");
    assert_eq!(still_open, 1, "the window closed without asking");
    assert_eq!(
        status_while_asking,
        lucid_engine::events::SessionStatus::Running,
        "asking stops nothing"
    );
    assert!(answered);
    assert!(started.elapsed() < Duration::from_secs(60));
    // On exit the session was stopped and its container removed.
    assert_eq!(
        tauri::async_runtime::block_on(common::containers_of_session(&session_id)),
        0
    );
}

#[test]
fn quitting_with_nothing_working_closes_without_asking() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (llm, gh) = tauri::async_runtime::block_on(async {
        (
            ScriptedLlm::start(Format::Anthropic, vec![Step::text("All done.")]).await,
            FakeGithub::start(GH_TOKEN, 1).await,
        )
    });
    let app = start_app(&llm, &gh);
    // A session that finished its turn waits for a follow-up: quitting loses nothing.
    let started = app
        .invoke("start_session", json!({"req": {"task": "say done"}}))
        .unwrap();
    let session_id = started["sessionId"].as_str().unwrap().to_string();
    assert_eq!(
        wait_for_status(&app, &session_id, &["completed", "failed"]),
        "completed"
    );
    let asked = Arc::new(Mutex::new(0));
    let count = asked.clone();
    app.webview
        .listen_any(lucid_desktop::quit::QUIT_REQUESTED, move |_| {
            *count.lock().unwrap() += 1;
        });
    let App {
        _app: tauri_app,
        webview,
        _dir,
    } = app;
    tauri_app.run(move |handle, event| {
        if matches!(event, tauri::RunEvent::Ready) {
            // The user closes the window once the app runs.
            webview.close().unwrap();
        }
        lucid_desktop::quit::on_run_event(handle, &event)
    });
    assert_eq!(*asked.lock().unwrap(), 0);
    assert_eq!(
        tauri::async_runtime::block_on(common::containers_of_session(&session_id)),
        0,
        "the exit removes the idle session's container too"
    );
}

#[test]
fn a_finished_or_failed_session_notifies_only_while_the_window_is_not_focused() {
    use lucid_desktop::notifications::{notice_for, SessionWatch};
    use lucid_engine::events::SessionStatus::{self, *};

    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // The decision: which changes notify, focused or not.
    let summary = |status: SessionStatus| lucid_engine::sessions::SessionSummary {
        session_id: "s1".into(),
        user_id: "u".into(),
        task: "fix the tests".into(),
        is_alive: true,
        created_at: String::new(),
        chat_id: "c1".into(),
        status,
        repository: None,
        branch: None,
    };
    for (before, now, notifies) in [
        (Some(Running), Completed, true),
        (Some(Running), Failed, true),
        (Some(Initializing), Failed, true),
        (None, Completed, true),
        (Some(Running), Stopped, false),
        (Some(Stopping), Stopped, false),
        (Some(Initializing), Running, false),
        (Some(Completed), Running, false),
        (Some(Completed), Completed, false),
        (Some(Failed), Failed, false),
    ] {
        assert_eq!(
            notice_for(before, now, false, &summary(now)).is_some(),
            notifies,
            "{before:?} -> {now:?}"
        );
        assert!(notice_for(before, now, true, &summary(now)).is_none());
    }
    let failed = notice_for(Some(Running), Failed, false, &summary(Failed)).unwrap();
    assert!(failed.title.contains("failed") && failed.body.contains("fix the tests"));
    let waiting = notice_for(Some(Running), Completed, false, &summary(Completed)).unwrap();
    assert!(waiting.title.contains("waiting"), "{waiting:?}");

    // The watcher on the app (mock runtime: its window is never focused) over a real session.
    let (llm, gh) = tauri::async_runtime::block_on(async {
        (
            ScriptedLlm::start(
                Format::Anthropic,
                vec![Step::text("Ready when you are.").paced(Duration::from_millis(300))],
            )
            .await,
            FakeGithub::start(GH_TOKEN, 1).await,
        )
    });
    let app = start_app(&llm, &gh);
    assert!(!lucid_desktop::notifications::window_focused(
        app.webview.app_handle()
    ));
    let shown = Arc::new(Mutex::new(Vec::new()));
    let sink = shown.clone();
    let watcher = lucid_desktop::notifications::watch(
        app.webview.app_handle().clone(),
        Duration::from_millis(100),
        move |_, notice| sink.lock().unwrap().push(notice),
    );
    std::thread::sleep(Duration::from_millis(300));
    let started = app
        .invoke("start_session", json!({"req": {"task": "wait for me"}}))
        .unwrap();
    let session_id = started["sessionId"].as_str().unwrap().to_string();
    assert_eq!(
        wait_for_status(&app, &session_id, &["completed", "failed"]),
        "completed"
    );
    std::thread::sleep(Duration::from_millis(500));
    watcher.abort();
    let shown = shown.lock().unwrap().clone();
    assert_eq!(shown.len(), 1, "{shown:?}");
    assert_eq!(shown[0].session_id, session_id);
    assert!(shown[0].body.contains("wait for me"), "{shown:?}");

    // A watcher that sees the window focused shows nothing.
    let mut watch = SessionWatch::default();
    let shell = app.shell();
    let mut listing = shell.engine.sessions().list(&shell.current_user().unwrap());
    assert!(watch.update(&listing, true).is_empty());
    listing[0].status = Running;
    assert!(watch.update(&listing, true).is_empty());
    listing[0].status = Failed;
    assert!(watch.update(&listing, true).is_empty());
    listing[0].status = Running;
    watch.update(&listing, false);
    listing[0].status = Failed;
    assert_eq!(watch.update(&listing, false).len(), 1);
}

/// reqwest without system proxies (the tests talk to 127.0.0.1 only).
mod reqwest {
    pub use ::reqwest::*;
    pub fn blocking_free_client() -> Client {
        Client::builder()
            .no_proxy()
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .unwrap()
    }
}
