//! Limits that hold, the sandbox network, file ownership and the WS start contract (issue 7).
//!
//! Every test attacks one guarantee and fails if it does not hold: parallel starts against
//! the per-user limit, a flood of follow-ups, a chat row deleted under a running session,
//! destroys and abandoned creations racing container creation, the default network's
//! options, the sandbox user, and the order of the first WS frames.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lucid_engine::config::{SandboxConfig, SandboxMode, DEFAULT_SANDBOX_NETWORK};
use lucid_engine::events::EventKind;
use lucid_engine::sandbox::docker::{
    ensure_network, DockerSandboxes, LABEL_INSTANCE, LABEL_MANAGED, NETWORK_ICC_OPTION,
};
use lucid_engine::sandbox::Sandbox;
use lucid_engine::sessions::event_log::CHAT_GONE_MESSAGE;
use lucid_engine::sessions::{StartSession, MAX_QUEUED_FOLLOW_UPS};
use lucid_engine::{ErrorKind, User};
use lucid_testkit::image::{ensure_test_image, require_docker};
use lucid_testkit::llm::{Format, ScriptedLlm, Step};
use serde_json::{json, Value};

use crate::common::{containers_of_session, Harness};
use crate::support::*;

const SECOND: Duration = Duration::from_secs(1);

/// Tool calls that keep a turn busy for a long time (more than any test waits).
fn busy_steps(n: usize) -> Vec<Step> {
    (0..n)
        .map(|_| Step::tool_call("execute_bash", json!({"command": "sleep 120"})))
        .collect()
}

/// Waits for the next event matching `pred` on an attachment, with a time limit.
async fn wait_event(
    events: &mut lucid_engine::sessions::EventStream,
    limit: Duration,
    pred: impl Fn(&EventKind) -> bool,
) -> lucid_engine::events::Event {
    tokio::time::timeout(limit, async {
        loop {
            let e = events
                .next()
                .await
                .unwrap()
                .expect("stream ended before the event");
            if pred(&e.kind) {
                return e;
            }
        }
    })
    .await
    .expect("event not seen in time")
}

// ---- 1a: the follow-up queue -------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_follow_ups_is_bounded_and_refused_clearly() {
    let llm = ScriptedLlm::start(Format::Anthropic, busy_steps(4)).await;
    let s = Server::start(Harness::start(Some(&llm), &[]).await).await;
    let _cleanup = LabelCleanup(LABEL_INSTANCE.into(), instance_id(&s.h));
    let user = User::with_id("flooder");
    let sessions = s.h.engine.sessions();
    let started = s.h.start_task(&user, "keep busy").await;
    let sid = started.session_id.clone();
    let mut a = s.h.attach_from_start(&user, &sid).await;
    // The turn is busy in a long command: nothing takes follow-ups off the queue.
    wait_event(&mut a.events, SECOND * 60, |k| {
        matches!(k, EventKind::CommandRun { .. })
    })
    .await;

    let big = "x".repeat(90_000);
    let mut accepted = 0;
    let mut refused = Vec::new();
    for _ in 0..300 {
        match sessions.follow_up(&user, &sid, &big).await {
            Ok(()) => accepted += 1,
            Err(e) => refused.push(e),
        }
    }
    assert_eq!(accepted, MAX_QUEUED_FOLLOW_UPS, "the queue bound holds");
    assert_eq!(refused.len(), 300 - MAX_QUEUED_FOLLOW_UPS);
    assert!(
        refused
            .iter()
            .all(|e| e.kind == ErrorKind::TooManyRequests
                && e.message.contains("Too many follow-ups"))
    );

    // REST: 429 with the same clear message.
    let (status, body) = s
        .post(
            &format!("/api/v1/sessions/{sid}/messages"),
            "flooder",
            json!({"content": "one more"}),
        )
        .await;
    assert_eq!(status, 429, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("Too many follow-ups"),
        "{body}"
    );
    // Another user cannot even see the queue.
    let (status, _) = s
        .post(
            &format!("/api/v1/sessions/{sid}/messages"),
            "intruder",
            json!({"content": "hi"}),
        )
        .await;
    assert_eq!(status, 403);

    // WS: an `error` frame with the message; the connection stays usable.
    let mut ws = s.ws("flooder").await;
    send(
        &mut ws,
        json!({"type": "attach", "sessionId": sid, "since": u64::MAX}),
    )
    .await;
    send(
        &mut ws,
        json!({"type": "message", "content": "and another"}),
    )
    .await;
    let error = tokio::time::timeout(SECOND * 20, async {
        loop {
            let f = recv(&mut ws).await.expect("open");
            if f["type"] == "error" {
                return f;
            }
        }
    })
    .await
    .expect("an error frame");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("Too many follow-ups"),
        "{error}"
    );
    send(&mut ws, json!({"type": "ping"})).await;
    loop {
        if recv(&mut ws).await.expect("open")["type"] == "pong" {
            break;
        }
    }

    // Stopping lets the runner take the queued follow-ups (each cancelled by the stop): the
    // queue empties and takes a full load again, so its count neither leaks nor wraps.
    sessions.stop(&user, &sid).unwrap();
    let mut taken = 0;
    while taken < MAX_QUEUED_FOLLOW_UPS {
        wait_event(&mut a.events, SECOND * 60, |k| {
            matches!(
                k,
                EventKind::UserMessage {
                    follow_up: true,
                    ..
                }
            )
        })
        .await;
        taken += 1;
    }
    assert!(
        eventually(SECOND * 10, || async {
            sessions
                .status(&user, &sid)
                .is_ok_and(|st| matches!(st, lucid_engine::events::SessionStatus::Stopped))
        })
        .await
    );
    llm.push_steps(busy_steps(2));
    let mut again = 0;
    for _ in 0..MAX_QUEUED_FOLLOW_UPS {
        if sessions.follow_up(&user, &sid, "again").await.is_ok() {
            again += 1;
        }
    }
    assert_eq!(again, MAX_QUEUED_FOLLOW_UPS, "the queue is usable again");
    sessions.destroy(&user, &sid).await.unwrap();
    s.h.engine.shutdown().await;
}

// ---- 1b: the per-user running-session limit ----------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_starts_never_exceed_the_per_user_limit() {
    const LIMIT: usize = 3;
    let llm = ScriptedLlm::start(Format::Anthropic, busy_steps(10)).await;
    let h = Harness::start(Some(&llm), &[("LUCID_MAX_SESSIONS_PER_USER", "3")]).await;
    let s = Arc::new(Server::start(h).await);
    let _cleanup = LabelCleanup(LABEL_INSTANCE.into(), instance_id(&s.h));
    let starts: Vec<_> = (0..20)
        .map(|i| {
            let s = Arc::clone(&s);
            tokio::spawn(async move {
                s.post(
                    "/api/v1/sessions",
                    "racer",
                    json!({"task": format!("task {i}")}),
                )
                .await
            })
        })
        .collect();
    let mut ok = Vec::new();
    let mut refused = 0;
    for start in starts {
        let (status, body) = start.await.unwrap();
        match status {
            200 => ok.push(body["sessionId"].as_str().unwrap().to_string()),
            409 => {
                assert!(
                    body["detail"].as_str().unwrap().contains("the limit is 3"),
                    "{body}"
                );
                refused += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(ok.len(), LIMIT, "exactly the limit started");
    assert_eq!(refused, 20 - LIMIT);
    let user = User::with_id("racer");
    assert_eq!(s.h.engine.sessions().list(&user).len(), LIMIT);
    // The refused starts created nothing: once the admitted ones are up, there are exactly
    // LIMIT containers of this engine.
    assert!(
        eventually(SECOND * 60, || async {
            instance_containers(&s.h).await.len() == LIMIT
        })
        .await,
        "containers: {:?}",
        instance_containers(&s.h).await
    );
    tokio::time::sleep(SECOND).await;
    assert_eq!(instance_containers(&s.h).await.len(), LIMIT);
    // Over WS, the same clear refusal.
    let mut ws = s.ws("racer").await;
    send(&mut ws, json!({"task": "one too many"})).await;
    let refusal = recv(&mut ws).await.expect("an error frame");
    assert_eq!(refusal["type"], "error", "{refusal}");
    assert!(
        refusal["message"]
            .as_str()
            .unwrap()
            .contains("the limit is 3"),
        "{refusal}"
    );
    assert_eq!(recv(&mut ws).await, Err(1011));
    assert_eq!(s.h.engine.sessions().list(&user).len(), LIMIT);
    // Another user is not affected; a freed slot is usable again.
    let (status, body) = s
        .post("/api/v1/sessions", "bystander", json!({"task": "mine"}))
        .await;
    assert_eq!(status, 200, "{body}");
    let bystander = body["sessionId"].as_str().unwrap().to_string();
    s.h.engine.sessions().destroy(&user, &ok[0]).await.unwrap();
    let (status, body) = s
        .post("/api/v1/sessions", "racer", json!({"task": "after a stop"}))
        .await;
    assert_eq!(status, 200, "{body}");
    ok[0] = body["sessionId"].as_str().unwrap().to_string();

    for sid in &ok {
        s.h.engine.sessions().destroy(&user, sid).await.unwrap();
    }
    s.h.engine
        .sessions()
        .destroy(&User::with_id("bystander"), &bystander)
        .await
        .unwrap();
    assert!(
        instance_containers(&s.h).await.is_empty(),
        "no container leaked"
    );
    s.h.engine.shutdown().await;
}

// ---- 1c: the chat row deleted under a running session -------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_deleted_under_a_running_session_ends_it() {
    let script = vec![
        Step::tool_call("execute_bash", json!({"command": "sleep 2; echo late"})),
        Step::tool_call("finish", json!({"message": "done"})),
    ];
    let llm = ScriptedLlm::start(Format::Anthropic, script).await;
    let h = Harness::start(Some(&llm), &[]).await;
    let _cleanup = LabelCleanup(LABEL_INSTANCE.into(), instance_id(&h));
    let user = User::with_id("deleted-under");
    let started = h.start_task(&user, "work").await;
    let sid = started.session_id.clone();
    let mut a = h.attach_from_start(&user, &sid).await;
    wait_event(&mut a.events, SECOND * 60, |k| {
        matches!(k, EventKind::CommandRun { .. })
    })
    .await;
    // Underneath the engine: the row goes, the session does not know.
    assert!(h
        .engine
        .store()
        .delete_chat(&user, &started.chat_id)
        .await
        .unwrap());

    // The subscriber is told, then its stream ends.
    let last = tokio::time::timeout(SECOND * 30, async {
        let mut last = None;
        while let Some(e) = a.events.next().await.unwrap() {
            last = Some(e);
        }
        last
    })
    .await
    .expect("the stream ends");
    assert_eq!(
        last.map(|e| e.kind),
        Some(EventKind::Error {
            message: CHAT_GONE_MESSAGE.into()
        })
    );
    // The session ends on its own (no destroy), its sandbox is released, its slot freed.
    tokio::time::timeout(SECOND * 30, h.engine.sessions().wait_ended(&sid))
        .await
        .expect("the session ended");
    assert!(h.engine.sessions().list(&user).is_empty());
    assert!(
        eventually(SECOND * 10, || async {
            containers_of_session(&sid).await == 0
        })
        .await,
        "the sandbox is released"
    );
    let err = h.engine.sessions().follow_up(&user, &sid, "hello?").await;
    assert!(err.is_err());

    // Nothing else is lost: the same user's next session works and is stored.
    llm.push_steps([Step::tool_call("finish", json!({"message": "ok"}))]);
    let next = h.start_task(&user, "next").await;
    let mut b = h.attach_from_start(&user, &next.session_id).await;
    crate::common::collect_until_done(&mut b.events, SECOND * 60).await;
    let stored = h
        .engine
        .store()
        .chat_messages(&user, &next.chat_id)
        .await
        .unwrap();
    assert!(stored
        .iter()
        .any(|m| m.event_type.as_deref() == Some("InitialTask")));
    h.engine
        .sessions()
        .destroy(&user, &next.session_id)
        .await
        .unwrap();
    h.engine.shutdown().await;
}

// ---- 1d: destroy during setup ---------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destroy_during_setup_never_leaves_a_container() {
    let llm = ScriptedLlm::start(Format::Anthropic, busy_steps(40)).await;
    let h = Harness::start(Some(&llm), &[]).await;
    let instance = instance_id(&h);
    let _cleanup = LabelCleanup(LABEL_INSTANCE.into(), instance.clone());
    let user = User::with_id("early-destroyer");
    // Sweep the destroy across setup: before, during and after container creation.
    for step in 0..16u64 {
        let started = h.start_task(&user, "t").await;
        tokio::time::sleep(Duration::from_millis(step * 40)).await;
        h.engine
            .sessions()
            .destroy(&user, &started.session_id)
            .await
            .unwrap();
        let left = containers_labelled("lucid.session_id", &started.session_id).await;
        assert!(
            left.is_empty(),
            "destroy after {} ms left {:?}",
            step * 40,
            left.iter().map(|c| &c.state).collect::<Vec<_>>()
        );
    }
    // Nothing appears later either (a creation finishing after the destroy).
    tokio::time::sleep(SECOND * 2).await;
    let left = containers_labelled(LABEL_INSTANCE, &instance).await;
    assert!(left.is_empty(), "late containers: {left:?}");
    h.engine.shutdown().await;
}

fn sandbox_config(image: &str) -> SandboxConfig {
    SandboxConfig {
        mode: SandboxMode::Docker,
        image: image.to_string(),
        memory_bytes: 256 * 1024 * 1024,
        cpu_limit: 1.0,
        pids_limit: 256,
        network: Some("none".to_string()),
        owned_network: DEFAULT_SANDBOX_NETWORK.to_string(),
        run_as_root: false,
        run_as: None,
        mount_path: "/workspace".to_string(),
        container_prefix: format!(
            "lucid-sec-{}-",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        ),
        host_workspace_path: None,
    }
}

async fn sandboxes(config: &SandboxConfig) -> (DockerSandboxes, LabelCleanup) {
    require_docker().await;
    let instance = format!("sec-{}", uuid::Uuid::new_v4());
    let cleanup = LabelCleanup(LABEL_INSTANCE.into(), instance.clone());
    let s = DockerSandboxes::connect(config, instance).await.unwrap();
    (s, cleanup)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_sandbox_creation_leaves_no_container() {
    let image = ensure_test_image().await;
    let (sandboxes, _cleanup) = sandboxes(&sandbox_config(&image)).await;
    let workspace = tempfile::tempdir().unwrap();
    let mut abandoned = 0;
    for step in 0..12u64 {
        let created = tokio::time::timeout(
            Duration::from_millis(step * 30),
            sandboxes.create(&format!("s{step}"), "u", workspace.path()),
        )
        .await;
        match created {
            Ok(sandbox) => sandbox.unwrap().shutdown().await.unwrap(),
            Err(_) => abandoned += 1,
        }
    }
    assert!(abandoned > 0, "the sweep must abandon some creations");
    let instance = sandboxes.instance_id().to_string();
    assert!(
        eventually(SECOND * 20, || async {
            containers_labelled(LABEL_INSTANCE, &instance)
                .await
                .is_empty()
        })
        .await,
        "abandoned creations left {:?}",
        containers_labelled(LABEL_INSTANCE, &instance).await
    );
}

// ---- 2: the sandbox network -----------------------------------------------------------------

/// Removes a network when dropped.
struct NetworkCleanup(String);

impl Drop for NetworkCleanup {
    fn drop(&mut self) {
        let name = self.0.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                if let Ok(docker) = bollard::Docker::connect_with_local_defaults() {
                    let _ = docker.remove_network(&name).await;
                }
            });
        })
        .join();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandboxes_get_lucids_own_network_without_inter_container_traffic() {
    let docker = require_docker().await;
    let image = ensure_test_image().await;
    let name = format!(
        "lucid-test-net-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let _net = NetworkCleanup(name.clone());

    // Created on demand, with the option and the label.
    ensure_network(&docker, &name).await.unwrap();
    let net = docker.inspect_network(&name, None).await.unwrap();
    assert_eq!(net.driver.as_deref(), Some("bridge"));
    assert_eq!(
        net.options
            .as_ref()
            .unwrap()
            .get(NETWORK_ICC_OPTION)
            .map(String::as_str),
        Some("false")
    );
    assert_eq!(
        net.labels
            .as_ref()
            .unwrap()
            .get(LABEL_MANAGED)
            .map(String::as_str),
        Some("true")
    );
    // Reused, not recreated, when it exists with the right options (also concurrently).
    let (a, b) = tokio::join!(
        ensure_network(&docker, &name),
        ensure_network(&docker, &name)
    );
    a.unwrap();
    b.unwrap();
    assert_eq!(
        docker.inspect_network(&name, None).await.unwrap().id,
        net.id
    );

    // A network of that name that lets containers talk is refused, not used.
    let open_name = format!("{name}-open");
    let _open = NetworkCleanup(open_name.clone());
    docker
        .create_network(bollard::models::NetworkCreateRequest {
            name: open_name.clone(),
            driver: Some("bridge".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let err = ensure_network(&docker, &open_name).await.unwrap_err();
    assert!(err.to_string().contains(NETWORK_ICC_OPTION), "{err}");

    // Without DOCKER_NETWORK, sandboxes join it.
    let mut config = sandbox_config(&image);
    config.network = None;
    config.owned_network = name.clone();
    let (sandboxes, _cleanup) = sandboxes(&config).await;
    let workspace = tempfile::tempdir().unwrap();
    let sandbox = sandboxes
        .create("net", "u", workspace.path())
        .await
        .unwrap();
    let info = docker
        .inspect_container(sandbox.container_id(), None)
        .await
        .unwrap();
    assert_eq!(
        info.host_config.unwrap().network_mode.as_deref(),
        Some(name.as_str())
    );
    let nets = info.network_settings.unwrap().networks.unwrap_or_default();
    assert!(nets.contains_key(&name), "{nets:?}");
    sandbox.shutdown().await.unwrap();

    // Removed while the engine runs (e.g. `docker network prune`): created again on demand.
    docker.remove_network(&name).await.unwrap();
    let again = sandboxes
        .create("net2", "u", workspace.path())
        .await
        .unwrap();
    let net2 = docker.inspect_network(&name, None).await.unwrap();
    assert_ne!(net2.id, net.id);
    assert_eq!(
        net2.options
            .as_ref()
            .unwrap()
            .get(NETWORK_ICC_OPTION)
            .map(String::as_str),
        Some("false")
    );
    again.shutdown().await.unwrap();

    // The configuration default is Lucid's network; DOCKER_NETWORK overrides it.
    let vars: HashMap<String, String> =
        HashMap::from([("LUCID_DATA_DIR".to_string(), "/tmp/x".to_string())]);
    let c = lucid_engine::Config::from_map(&vars).unwrap();
    assert_eq!(c.sandbox.network, None);
    assert_eq!(c.sandbox.owned_network, DEFAULT_SANDBOX_NETWORK);
}

// ---- 3: files belong to the user ------------------------------------------------------------

fn owner(path: &Path) -> (u32, u32) {
    let m = std::fs::symlink_metadata(path).unwrap();
    (m.uid(), m.gid())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_processes_run_as_the_user_and_their_files_are_theirs() {
    let image = ensure_test_image().await;
    let mut config = sandbox_config(&image);
    config.run_as = Some((4242, 4343));
    let (sandboxes, _cleanup) = sandboxes(&config).await;
    let workspace = tempfile::tempdir().unwrap();
    std::fs::write(workspace.path().join("cloned.txt"), "from the host").unwrap();
    let sandbox = sandboxes
        .create("uid", "u", workspace.path())
        .await
        .unwrap();
    let r = sandbox
        .exec(
            "id -u; id -g; echo \"$HOME\"; touch \"$HOME/ok\" && echo home-writable; \
             echo hi > /workspace/made-inside; mkdir -p /workspace/dir/sub; \
             echo more >> /workspace/cloned.txt && echo cloned-writable; \
             cp /bin/busybox /workspace/suid && chmod 4755 /workspace/suid; \
             chown 0:0 /workspace/made-inside 2>&1 || echo chown-refused",
            SECOND * 20,
        )
        .await
        .unwrap();
    let lines: Vec<&str> = r.output.lines().collect();
    assert_eq!(
        &lines[..5],
        [
            "4242",
            "4343",
            "/tmp/lucid-home",
            "home-writable",
            "cloned-writable"
        ],
        "{}",
        r.output
    );
    assert!(r.output.contains("chown-refused"), "{}", r.output);
    for p in ["made-inside", "dir", "dir/sub", "suid", "cloned.txt"] {
        assert_eq!(owner(&workspace.path().join(p)), (4242, 4343), "{p}");
    }
    assert_eq!(owner(workspace.path()), (4242, 4343));
    // Interrupting an unprivileged user's command works, and the shell carries on.
    let r = sandbox.exec("sleep 30", SECOND).await.unwrap();
    assert!(r.timed_out);
    let r = sandbox
        .exec("echo still; id -u", SECOND * 10)
        .await
        .unwrap();
    assert_eq!(r.output, "still\n4242\n");
    sandbox.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_session_with_sandbox_user_leaves_the_users_files() {
    let script = vec![
        Step::tool_call(
            "execute_bash",
            json!({"command": "id -u > /workspace/by-agent; mkdir /workspace/out"}),
        ),
        Step::tool_call("finish", json!({"message": "done"})),
    ];
    let llm = ScriptedLlm::start(Format::Anthropic, script).await;
    let h = Harness::start(Some(&llm), &[("SANDBOX_USER", "4242:4343")]).await;
    let _cleanup = LabelCleanup(LABEL_INSTANCE.into(), instance_id(&h));
    let user = User::with_id("desktop-user");
    let started = h.start_task(&user, "make files").await;
    let mut a = h.attach_from_start(&user, &started.session_id).await;
    let events = crate::common::collect_until_done(&mut a.events, SECOND * 60).await;
    assert!(
        events.iter().any(|e| matches!(
            &e.kind,
            EventKind::CommandOutput {
                exit_code: Some(0),
                ..
            }
        )),
        "{events:#?}"
    );
    let workspace = h
        .engine
        .sessions()
        .workspace_of(&user, &started.session_id)
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(workspace.join("by-agent")).unwrap(),
        "4242\n"
    );
    assert_eq!(owner(&workspace.join("by-agent")), (4242, 4343));
    assert_eq!(owner(&workspace.join("out")), (4242, 4343));
    h.engine
        .sessions()
        .destroy(&user, &started.session_id)
        .await
        .unwrap();
    h.engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_sandboxes_hand_the_workspace_back_without_following_symlinks() {
    if lucid_engine::sandbox::ownership::engine_user().0 != 0 {
        eprintln!("skipped: needs root to observe ownership changes");
        return;
    }
    let image = ensure_test_image().await;
    let mut config = sandbox_config(&image);
    config.run_as_root = true;
    config.run_as = Some((4242, 4343));
    let (sandboxes, _cleanup) = sandboxes(&config).await;
    let outside = tempfile::tempdir().unwrap();
    let victim = outside.path().join("host-file");
    std::fs::write(&victim, "not the sandbox's").unwrap();
    let workspace = tempfile::tempdir().unwrap();
    let sandbox = sandboxes
        .create("root", "u", workspace.path())
        .await
        .unwrap();
    let script = format!(
        "id -u; mkdir -p /workspace/d; echo x > /workspace/d/f; \
         cp /bin/busybox /workspace/suid && chmod 4755 /workspace/suid; \
         ln -s {} /workspace/escape; ln -s {} /workspace/escape-dir",
        victim.display(),
        outside.path().display()
    );
    let r = sandbox.exec(&script, SECOND * 20).await.unwrap();
    assert_eq!(r.output.lines().next(), Some("0"), "{}", r.output);
    // While it runs, root owns what it made.
    assert_eq!(owner(&workspace.path().join("suid")), (0, 0));
    sandbox.shutdown().await.unwrap();
    // Released: everything is the user's, set-user-ID is gone, symlink targets untouched.
    for p in ["", "d", "d/f", "suid", "escape", "escape-dir"] {
        assert_eq!(owner(&workspace.path().join(p)), (4242, 4343), "{p}");
    }
    let mode = std::fs::metadata(workspace.path().join("suid"))
        .unwrap()
        .mode();
    assert_eq!(mode & 0o6000, 0, "mode {mode:o}");
    assert_eq!(owner(&victim), (0, 0));
    assert_eq!(owner(outside.path()), (0, 0));
}

// ---- 4: the WS start contract ---------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_says_initializing_once_then_ready_then_the_task() {
    let llm = ScriptedLlm::start(
        Format::Anthropic,
        vec![Step::tool_call("finish", json!({"message": "done"}))],
    )
    .await;
    let s = Server::start(Harness::start(Some(&llm), &[]).await).await;
    let _cleanup = LabelCleanup(LABEL_INSTANCE.into(), instance_id(&s.h));
    let mut ws = s.ws("orderly").await;
    send(&mut ws, json!({"task": "do it"})).await;
    let frames = until_status(&mut ws, &["completed", "failed"]).await;
    let first = &frames[0];
    assert_eq!(first["type"], "status", "{frames:#?}");
    assert_eq!(first["status"], "initializing");
    assert_eq!(first["seq"], 1, "the session's own status, with its seq");
    let initializing = frames
        .iter()
        .filter(|f| f["status"] == "initializing")
        .count();
    assert_eq!(initializing, 1, "said exactly once: {frames:#?}");
    let pos = |pred: &dyn Fn(&Value) -> bool| frames.iter().position(pred);
    let ready = pos(&|f| f["type"] == "status" && f["status"] == "ready").expect("ready");
    let task =
        pos(&|f| f["type"] == "agent_event" && f["eventType"] == "InitialTask").expect("the task");
    assert!(ready < task, "ready before the task: {frames:#?}");
    let first_agent_event_after_ready = frames[ready..]
        .iter()
        .position(|f| f["type"] == "agent_event")
        .map(|i| i + ready);
    assert_eq!(first_agent_event_after_ready, Some(task), "{frames:#?}");
    let started = Instant::now();
    let sid = first["sessionId"].as_str().unwrap().to_string();
    s.h.engine
        .sessions()
        .destroy(&User::with_id("orderly"), &sid)
        .await
        .unwrap();
    assert!(started.elapsed() < SECOND * 15);
    s.h.engine.shutdown().await;
}

#[test]
fn the_configuration_documents_its_new_settings() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    for name in [
        "DOCKER_NETWORK",
        "LUCID_SANDBOX_NETWORK",
        "SANDBOX_RUN_AS_ROOT",
        "SANDBOX_USER",
    ] {
        assert!(
            readme.contains(&format!("`{name}`")),
            "{name} is not documented"
        );
    }
    let _ = StartSession::default();
}
