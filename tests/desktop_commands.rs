//! The desktop app's commands on Tauri's mock runtime, over a real engine (scripted LLM, real
//! Docker sandbox with the test image, network `none`) and an in-memory credential store:
//! each command group through IPC, errors in the UI's shape, session events through the
//! channel in order with `since` replay, settings with provider keys, and the optional HTTP
//! API bound, answering with its token, and unbound.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use lucid_desktop::secrets::Secrets;
use lucid_desktop::settings::Settings;
use lucid_desktop::state::{Shell, ShellPaths};
use lucid_testkit::forge::FakeGithub;
use lucid_testkit::llm::{Format, ScriptedLlm, Step};
use serde_json::{json, Value};
use tauri::test::{get_ipc_response, mock_builder, mock_context, noop_assets, INVOKE_KEY};
use tauri::webview::InvokeRequest;
use tauri::Manager;

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
    let dir = tempfile::tempdir().unwrap();
    let vars = tauri::async_runtime::block_on(common::env_for(Some(llm), dir.path()));
    let mut env = vars.clone();
    env.insert("LUCID_GITHUB_API_URL".into(), gh.base_url());
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
    let app = mock_builder()
        .manage(shell)
        .invoke_handler(lucid_desktop::handler())
        .build(mock_context(noop_assets()))
        .unwrap();
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
                .attach(&shell.user, &session_id, since)
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
    assert_eq!(err["status"], 404, "{err}");
    assert!(
        err["message"].as_str().unwrap().contains("not found"),
        "{err}"
    );

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

    // Keys: set and removed in the credential store; never shown back.
    let view = app
        .invoke(
            "set_provider_key",
            json!({"req": {"provider": "gemini", "key": "AIza-fake-desktop-key"}}),
        )
        .unwrap();
    assert_eq!(view["keysSet"], json!(["anthropic", "google"]));
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
    let err = app
        .invoke(
            "set_provider_key",
            json!({"req": {"provider": "nope", "key": "k"}}),
        )
        .unwrap_err();
    assert_eq!(err["status"], 400);

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
