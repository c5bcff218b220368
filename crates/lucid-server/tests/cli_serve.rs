//! `lucid serve` and `lucid doctor` as real child processes: the printed local-mode token and
//! the generated secret behind it, bad user ids, a busy port, clean shutdown on SIGTERM and
//! SIGINT (sessions stopped, sandboxes removed), and doctor's verdicts.

mod cli_support;

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use cli_support::*;
use futures::{SinkExt, StreamExt};
use lucid_engine::store::{SqliteStore, Store};
use lucid_engine::User;
use lucid_testkit::llm::{Format, ScriptedLlm, Step};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

const SHORT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn printed_token_is_accepted_by_a_later_serve_and_sigterm_stops_it() {
    let dirs = TestDirs::new();
    let env = lucid_env(&dirs, None).await;
    assert!(env_value(&env, "LUCID_JWT_SECRET").is_none());

    let token = print_token(&env, &dirs).await;
    // The generated secret is stored, owner-only.
    let secret_path = dirs.data().join("jwt-secret");
    let secret = std::fs::read_to_string(&secret_path).expect("jwt-secret written");
    assert_eq!(secret.trim().len(), 64, "32 random bytes in hex");
    let mode = std::fs::metadata(&secret_path)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");

    let mut served = Served::start(&env, &dirs).await;
    let client = http();
    let chats = |t: Option<String>| {
        let req = client.get(served.url("/api/v1/chats"));
        match t {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
        .send()
    };
    let ok = chats(Some(token.clone())).await.unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.json::<Value>().await.unwrap(), json!({"chats": []}));

    // No token is 403 (the original's contract); anything not signed with the stored secret
    // is 401.
    assert_eq!(chats(None).await.unwrap().status(), 403);
    let forged = lucid_engine::auth::issue_token(
        "local",
        b"some-other-secret-0123456789-0123456789",
        Duration::from_secs(3600),
    );
    assert_eq!(chats(Some(forged)).await.unwrap().status(), 401);
    let mut tampered = token.clone();
    tampered.pop();
    tampered.push(if token.ends_with('A') { 'B' } else { 'A' });
    assert_eq!(chats(Some(tampered)).await.unwrap().status(), 401);

    // The secret survived the server start; a token printed now works too.
    assert_eq!(std::fs::read_to_string(&secret_path).unwrap(), secret);
    let second = print_token(&env, &dirs).await;
    assert_eq!(chats(Some(second)).await.unwrap().status(), 200);

    let sent = Instant::now();
    served.process.signal("TERM");
    let status = served.process.wait_exit(SHORT).await;
    assert_eq!(
        status.code(),
        Some(0),
        "stderr:\n{}",
        served.process.stderr()
    );
    assert!(sent.elapsed() < Duration::from_secs(10));
    assert!(served.process.stderr().contains("Shutting down"));
    assert!(
        client.get(served.url("/health")).send().await.is_err(),
        "nothing listens any more"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_runs_agree_on_one_secret() {
    // Several `--print-token` (and a server) started at once on a fresh data directory must
    // all end up with the one secret that is stored.
    const RUNS: usize = 8;
    let dirs = TestDirs::new();
    let env = lucid_env(&dirs, None).await;
    let runs = (0..RUNS).map(|_| Lucid::run(&["serve", "--print-token"], &env, &dirs, SHORT));
    let outs = futures::future::join_all(runs).await;
    let mut tokens = Vec::new();
    for out in outs {
        assert_eq!(out.code(), Some(0), "{out:#?}");
        tokens.push(out.stdout.trim().to_string());
    }
    let leftovers: Vec<String> = std::fs::read_dir(dirs.data())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("jwt-secret") && name != "jwt-secret")
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");

    let mut served = Served::start(&env, &dirs).await;
    let client = http();
    for token in &tokens {
        let r = client
            .get(served.url("/api/v1/chats"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "a printed token is not accepted");
    }
    served.process.signal("TERM");
    assert_eq!(served.process.wait_exit(SHORT).await.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn print_token_refuses_bad_user_ids() {
    let dirs = TestDirs::new();
    let env = base_env(&dirs);
    for bad in ["bad/id", "../local", "a b", ""] {
        let out = Lucid::run(
            &["serve", "--print-token", "--user", bad],
            &env,
            &dirs,
            SHORT,
        )
        .await;
        assert_eq!(out.code(), Some(1), "{bad:?}: {out:#?}");
        assert!(
            out.stdout.trim().is_empty(),
            "no token for {bad:?}: {out:#?}"
        );
        assert!(
            out.stderr
                .contains("User ids may contain only letters, digits, '-' and '_'"),
            "{bad:?}: {out:#?}"
        );
    }
    // Nothing was half-created.
    assert!(!dirs.data().join("jwt-secret").exists());

    // `--user` without `--print-token` is a usage error.
    let out = Lucid::run(&["serve", "--user", "alice"], &env, &dirs, SHORT).await;
    assert_eq!(out.code(), Some(2), "{out:#?}");
    assert!(out.stderr.contains("--print-token"), "{out:#?}");

    // A good one works.
    let out = Lucid::run(
        &["serve", "--print-token", "--user", "alice_2-b"],
        &env,
        &dirs,
        SHORT,
    )
    .await;
    assert_eq!(out.code(), Some(0), "{out:#?}");
    assert_eq!(out.stdout.trim().split('.').count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_on_a_busy_port_fails_clearly() {
    let dirs = TestDirs::new();
    let env = lucid_env(&dirs, None).await;
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port().to_string();
    let out = Lucid::run(&["serve", "--port", &port], &env, &dirs, SHORT).await;
    assert_eq!(out.code(), Some(1), "{out:#?}");
    assert!(
        out.stderr
            .contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{out:#?}"
    );
    drop(busy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_stops_running_sessions_and_removes_their_sandboxes() {
    let llm = ScriptedLlm::start(
        Format::Anthropic,
        vec![Step::tool_call(
            "execute_bash",
            json!({"command": "sleep 30"}),
        )],
    )
    .await;
    let dirs = TestDirs::new();
    let env = lucid_env(&dirs, Some(&llm)).await;
    let token = print_token(&env, &dirs).await;
    let mut served = Served::start(&env, &dirs).await;
    let client = http();

    let started: Value = client
        .post(served.url("/api/v1/sessions"))
        .bearer_auth(&token)
        .json(&json!({"task": "sleep a while"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(started["status"], "ready", "{started}");
    let session_id = started["sessionId"].as_str().unwrap().to_string();
    let chat_id = started["chatId"].as_str().unwrap().to_string();

    // Wait until the command runs in its container.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let chat: Value = client
            .get(served.url(&format!("/api/v1/chats/{chat_id}")))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let running = chat["messages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["eventType"] == "CmdRunAction" && m["content"] == "sleep 30");
        if running {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the command never started: {chat:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(dirs.containers().await.len(), 1);
    let listed: Value = client
        .get(served.url("/api/v1/sessions"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["sessions"][0]["sessionId"], session_id.as_str());
    assert_eq!(listed["sessions"][0]["isAlive"], true);

    // A client follows the session while the server shuts down.
    let (mut ws, _) = tokio_tungstenite::connect_async(served.ws_url(&token))
        .await
        .expect("WebSocket connect");
    ws.send(Message::Text(
        json!({"type": "attach", "sessionId": session_id, "since": 0})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    let first = tokio::time::timeout(SHORT, ws.next())
        .await
        .expect("a replayed frame")
        .expect("open")
        .expect("frame");
    assert!(first.is_text(), "{first:?}");

    let sent = Instant::now();
    served.process.signal("INT");
    let status = served.process.wait_exit(SHORT).await;
    let stderr = served.process.stderr();
    assert_eq!(status.code(), Some(0), "stderr:\n{stderr}");
    assert!(
        sent.elapsed() < Duration::from_secs(10),
        "shutdown took {:?}",
        sent.elapsed()
    );
    assert!(stderr.contains("Shutting down"), "{stderr}");
    assert_eq!(dirs.containers().await.len(), 0, "sandbox left behind");
    // The client's stream ended (the last frames may report the stop).
    let ended = tokio::time::timeout(SHORT, async {
        while let Some(Ok(msg)) = ws.next().await {
            if msg.is_close() {
                break;
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the WebSocket stayed open after shutdown");

    // The history stays, inactive.
    let store = SqliteStore::open(&dirs.data().join("lucid.sqlite3")).unwrap();
    let chat = store
        .get_chat(&User::with_id("local"), &chat_id)
        .await
        .unwrap()
        .expect("chat kept");
    assert!(!chat.is_active);
    let messages = store
        .chat_messages(&User::with_id("local"), &chat_id)
        .await
        .unwrap();
    assert!(messages
        .iter()
        .any(|m| m.event_type.as_deref() == Some("CmdRunAction")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_without_docker_or_provider_fails_and_names_the_fixes() {
    let dirs = TestDirs::new();
    let mut env = base_env(&dirs);
    env.push((
        "DOCKER_HOST".to_string(),
        "unix:///nonexistent.sock".to_string(),
    ));
    let out = Lucid::run(&["doctor"], &env, &dirs, SHORT).await;
    assert_eq!(out.code(), Some(1), "{out:#?}");
    let text = &out.stdout;
    assert!(
        text.contains(&format!("ok    {} is writable", dirs.data().display())),
        "{text}"
    );
    assert!(text.contains("FAIL  Docker is not reachable"), "{text}");
    assert!(
        text.contains("fix: start Docker") && text.contains("check DOCKER_HOST"),
        "{text}"
    );
    assert!(
        text.contains("FAIL  no LLM provider is configured"),
        "{text}"
    );
    assert!(
        text.contains("fix: set ANTHROPIC_API_KEY or GOOGLE_API_KEY, or LLM_BASE_URL"),
        "{text}"
    );
    assert!(
        text.contains("ok    saved GitHub/GitLab tokens are encrypted with a generated key"),
        "{text}"
    );
    assert!(text.contains("2 problem(s) found."), "{text}");
    assert!(!text.contains("All good."), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_with_docker_and_a_provider_reports_ok() {
    let llm = ScriptedLlm::start(Format::Anthropic, vec![]).await;
    let dirs = TestDirs::new();
    let env = lucid_env(&dirs, Some(&llm)).await;
    let out = Lucid::run(&["doctor"], &env, &dirs, SHORT).await;
    assert_eq!(out.code(), Some(0), "{out:#?}");
    let text = &out.stdout;
    for expected in [
        "ok    local (embedded store, no account) mode",
        "ok    database ",
        "ok    Docker ",
        "ok    sandbox image lucid-test-sandbox:latest present",
        "ok    sandbox network none ready",
        "ok    anthropic configured",
        "ok    default provider: anthropic",
        "All good.",
    ] {
        assert!(text.contains(expected), "{expected:?} missing:\n{text}");
    }
    assert!(!text.contains("FAIL"), "{text}");
    assert!(!text.contains(LLM_KEY), "{text}");
    assert_eq!(llm.request_count(), 0, "doctor does not call the LLM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_checks_the_sandbox_network_without_changing_it() {
    let docker = lucid_testkit::image::require_docker().await;
    let llm = ScriptedLlm::start(Format::Anthropic, vec![]).await;
    let dirs = TestDirs::new();
    let base = lucid_env(&dirs, Some(&llm)).await;
    let with = |network: Option<(&str, &str)>| {
        let mut env: Vec<(String, String)> = base
            .iter()
            .filter(|(k, _)| k != "DOCKER_NETWORK")
            .cloned()
            .collect();
        if let Some((k, v)) = network {
            env.push((k.to_string(), v.to_string()));
        }
        env
    };
    let suffix = uuid::Uuid::new_v4().simple().to_string();

    // A DOCKER_NETWORK that does not exist.
    let missing = format!("lucid-doctor-missing-{suffix}");
    let out = Lucid::run(
        &["doctor"],
        &with(Some(("DOCKER_NETWORK", &missing))),
        &dirs,
        SHORT,
    )
    .await;
    assert_eq!(out.code(), Some(1), "{out:#?}");
    assert!(
        out.stdout.contains(&format!(
            "the network {missing} (DOCKER_NETWORK) does not exist"
        )),
        "{}",
        out.stdout
    );

    // Lucid's own network, not there yet: created on first use, and doctor creates nothing.
    let owned = format!("lucid-doctor-owned-{suffix}");
    let out = Lucid::run(
        &["doctor"],
        &with(Some(("LUCID_SANDBOX_NETWORK", &owned))),
        &dirs,
        SHORT,
    )
    .await;
    assert_eq!(out.code(), Some(0), "{out:#?}");
    assert!(
        out.stdout
            .contains(&format!("sandbox network {owned} is created on first use")),
        "{}",
        out.stdout
    );
    assert!(
        docker.inspect_network(&owned, None).await.is_err(),
        "doctor created it"
    );

    // A network of that name that would let sandboxes reach each other is refused.
    docker
        .create_network(bollard::models::NetworkCreateRequest {
            name: owned.clone(),
            driver: Some("bridge".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let out = Lucid::run(
        &["doctor"],
        &with(Some(("LUCID_SANDBOX_NETWORK", &owned))),
        &dirs,
        SHORT,
    )
    .await;
    let _ = docker.remove_network(&owned).await;
    assert_eq!(out.code(), Some(1), "{out:#?}");
    assert!(
        out.stdout.contains("could reach each other"),
        "{}",
        out.stdout
    );
}
