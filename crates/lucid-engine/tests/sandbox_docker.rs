//! Docker sandboxes against the real daemon, with the local busybox test image.
//!
//! These tests need Docker: without a reachable daemon they fail with a message saying so.
//! Every test uses its own engine instance id and container prefix, and removes whatever it
//! created when it ends (even on failure), so they run in parallel without touching each
//! other or other users of the daemon.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, RemoveContainerOptionsBuilder,
};
use bollard::Docker;
use lucid_engine::config::{SandboxConfig, SandboxMode};
use lucid_engine::sandbox::docker::{
    load_or_create_instance_id, DockerSandboxes, DockerShellHost, KEPT_CAPABILITIES,
    LABEL_INSTANCE, LABEL_MANAGED, LABEL_SESSION, LABEL_USER,
};
use lucid_engine::sandbox::shell::{PersistentShell, ShellMode};
use lucid_engine::sandbox::{Sandbox, SandboxError, SandboxKind, OUTPUT_STORE_CAP_BYTES};
use lucid_testkit::image::{ensure_test_image, require_docker};

const SECOND: Duration = Duration::from_secs(1);

/// Removes every container of an instance id when dropped, even when the test panicked.
struct InstanceCleanup {
    instance_id: String,
}

impl Drop for InstanceCleanup {
    fn drop(&mut self) {
        let instance_id = self.instance_id.clone();
        // A separate thread with its own runtime: Drop may run inside the test's runtime.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("cleanup runtime");
            runtime.block_on(async move {
                let Ok(docker) = Docker::connect_with_local_defaults() else {
                    return;
                };
                for id in containers_with_label(&docker, LABEL_INSTANCE, &instance_id).await {
                    remove(&docker, &id).await;
                }
            });
        })
        .join();
    }
}

async fn containers_with_label(docker: &Docker, key: &str, value: &str) -> Vec<String> {
    let filters = HashMap::from([("label", vec![format!("{key}={value}")])]);
    let options = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    docker
        .list_containers(Some(options))
        .await
        .unwrap_or_default()
        .into_iter()
        .filter_map(|c| c.id)
        .collect()
}

async fn remove(docker: &Docker, id: &str) {
    let options = RemoveContainerOptionsBuilder::default().force(true).build();
    let _ = docker.remove_container(id, Some(options)).await;
}

fn test_config(image: &str) -> SandboxConfig {
    SandboxConfig {
        mode: SandboxMode::Docker,
        image: image.to_string(),
        memory_bytes: 256 * 1024 * 1024,
        cpu_limit: 1.0,
        pids_limit: 256,
        network: Some("none".to_string()),
        owned_network: lucid_engine::config::DEFAULT_SANDBOX_NETWORK.to_string(),
        run_as_root: false,
        run_as: None,
        mount_path: "/workspace".to_string(),
        container_prefix: format!(
            "lucid-test-{}-",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        ),
        host_workspace_path: None,
    }
}

/// A manager with a fresh instance id, plus the guard removing its containers.
async fn manager(config: &SandboxConfig) -> (DockerSandboxes, InstanceCleanup) {
    require_docker().await;
    let instance_id = format!("test-{}", uuid::Uuid::new_v4());
    let cleanup = InstanceCleanup {
        instance_id: instance_id.clone(),
    };
    let sandboxes = DockerSandboxes::connect(config, instance_id)
        .await
        .expect("connect to the Docker daemon");
    (sandboxes, cleanup)
}

struct Fixture {
    sandboxes: DockerSandboxes,
    sandbox: Arc<lucid_engine::sandbox::docker::DockerSandbox>,
    workspace: tempfile::TempDir,
    _cleanup: InstanceCleanup,
}

async fn fixture_with(config: SandboxConfig) -> Fixture {
    let (sandboxes, cleanup) = manager(&config).await;
    let workspace = tempfile::tempdir().unwrap();
    let sandbox = sandboxes
        .create("s1", "user-1", workspace.path())
        .await
        .expect("sandbox starts");
    Fixture {
        sandboxes,
        sandbox,
        workspace,
        _cleanup: cleanup,
    }
}

async fn fixture() -> Fixture {
    fixture_with(test_config(&ensure_test_image().await)).await
}

#[tokio::test]
async fn persistent_shell_keeps_cwd_and_exports_and_reports_exit_codes() {
    let f = fixture().await;
    let sandbox = &f.sandbox;
    assert_eq!(sandbox.kind(), SandboxKind::Docker);
    assert_eq!(sandbox.workspace_path(), "/workspace");
    assert_eq!(sandbox.shell_mode(), ShellMode::Persistent);

    let r = sandbox.exec("pwd", SECOND * 10).await.unwrap();
    assert_eq!(r.output, "/workspace\n");
    let r = sandbox
        .exec(
            "mkdir -p deep/dir && cd deep/dir && export TOKEN_FREE=yes",
            SECOND * 10,
        )
        .await
        .unwrap();
    assert_eq!(r.exit_code, Some(0));
    let r = sandbox
        .exec("pwd; echo $TOKEN_FREE", SECOND * 10)
        .await
        .unwrap();
    assert_eq!(r.output, "/workspace/deep/dir\nyes\n");

    for (command, code) in [
        ("true", 0),
        ("false", 1),
        ("(exit 3)", 3),
        ("sh -c 'exit 42'", 42),
        ("definitely-not-a-command", 127),
    ] {
        let r = sandbox.exec(command, SECOND * 10).await.unwrap();
        assert_eq!(r.exit_code, Some(code), "{command}: {}", r.output);
    }
    let r = sandbox
        .exec("echo to-out; echo to-err >&2", SECOND * 10)
        .await
        .unwrap();
    assert_eq!(r.output, "to-out\nto-err\n");
    let r = sandbox
        .exec("cat; echo stdin-closed", SECOND * 5)
        .await
        .unwrap();
    assert_eq!(
        r.output, "stdin-closed\n",
        "commands cannot read the protocol"
    );
    let r = sandbox
        .exec("echo \"unterminated", SECOND * 5)
        .await
        .unwrap();
    assert_eq!(r.exit_code, Some(2));
    assert_eq!(
        sandbox.exec("pwd", SECOND * 5).await.unwrap().output,
        "/workspace/deep/dir\n"
    );
}

#[tokio::test]
async fn container_is_hardened_labelled_and_isolated() {
    let f = fixture().await;
    let docker = f.sandboxes.docker();
    let info = docker
        .inspect_container(f.sandbox.container_id(), None)
        .await
        .unwrap();
    assert_eq!(
        info.name.as_deref(),
        Some(format!("/{}", f.sandbox.container_name()).as_str())
    );
    assert!(f.sandbox.container_name().ends_with("s1"));
    let config = info.config.unwrap();
    let labels = config.labels.unwrap();
    assert_eq!(labels.get(LABEL_MANAGED).map(String::as_str), Some("true"));
    assert_eq!(labels.get(LABEL_SESSION).map(String::as_str), Some("s1"));
    assert_eq!(labels.get(LABEL_USER).map(String::as_str), Some("user-1"));
    assert_eq!(
        labels.get(LABEL_INSTANCE).map(String::as_str),
        Some(f.sandboxes.instance_id())
    );
    let env = config.env.unwrap_or_default();
    assert!(
        env.iter().all(|e| e.starts_with("PATH=")),
        "no engine variables in the container: {env:?}"
    );

    let host = info.host_config.unwrap();
    assert_eq!(host.memory, Some(256 * 1024 * 1024));
    assert_eq!(host.memory_swap, Some(256 * 1024 * 1024));
    assert_eq!(host.nano_cpus, Some(1_000_000_000));
    assert_eq!(host.pids_limit, Some(256));
    assert_eq!(host.cap_drop, Some(vec!["ALL".to_string()]));
    let mut added = host.cap_add.unwrap_or_default();
    added.sort();
    let mut expected: Vec<String> = KEPT_CAPABILITIES.iter().map(|c| c.to_string()).collect();
    expected.sort();
    assert_eq!(added, expected);
    assert_eq!(
        host.security_opt,
        Some(vec!["no-new-privileges".to_string()])
    );
    assert_eq!(host.init, Some(true));
    assert_eq!(host.network_mode.as_deref(), Some("none"));
    let source = f.workspace.path().canonicalize().unwrap();
    assert_eq!(
        host.binds,
        Some(vec![format!("{}:/workspace:rw", source.display())])
    );

    // Seen from inside: only loopback, no-new-privileges, the reduced capability set.
    let r = f
        .sandbox
        .exec(
            "ls /sys/class/net; grep -E '^(NoNewPrivs|CapEff)' /proc/self/status",
            SECOND * 10,
        )
        .await
        .unwrap();
    let lines: Vec<&str> = r.output.lines().collect();
    assert_eq!(lines[0], "lo", "{}", r.output);
    assert_eq!(lines.len(), 3, "{}", r.output);
    assert!(r.output.contains("NoNewPrivs:\t1"), "{}", r.output);
    let cap_eff = lines
        .iter()
        .find_map(|l| l.strip_prefix("CapEff:\t"))
        .map(|hex| u64::from_str_radix(hex.trim(), 16).unwrap())
        .unwrap();
    // CHOWN 0, DAC_OVERRIDE 1, FOWNER 3, FSETID 4, SETGID 6, SETUID 7.
    assert_eq!(cap_eff, 0b1101_1011, "{}", r.output);
}

#[tokio::test]
async fn workspace_is_shared_with_the_host() {
    let f = fixture().await;
    std::fs::write(f.workspace.path().join("from-host.txt"), "host side\n").unwrap();
    let r = f
        .sandbox
        .exec(
            "cat from-host.txt && mkdir -p out && echo 'made inside' > out/result.txt",
            SECOND * 10,
        )
        .await
        .unwrap();
    assert_eq!(r.output, "host side\n");
    assert_eq!(r.exit_code, Some(0));
    assert_eq!(
        std::fs::read_to_string(f.workspace.path().join("out/result.txt")).unwrap(),
        "made inside\n"
    );
}

#[tokio::test]
async fn host_workspace_path_maps_the_mount_source() {
    let image = ensure_test_image().await;
    let engine_side = tempfile::tempdir().unwrap();
    let host_side = tempfile::tempdir().unwrap();
    let mut config = test_config(&image);
    config.host_workspace_path = Some(host_side.path().to_path_buf());
    let (sandboxes, _cleanup) = manager(&config).await;

    let workspace = engine_side.path().join("user-9").join("session-9");
    // Without the workspace base the mapping cannot be computed: a clear error.
    let err = sandboxes
        .create("s9", "user-9", &workspace)
        .await
        .err()
        .expect("missing workspace base is refused");
    assert!(err.to_string().contains("workspace base"), "{err}");

    let sandboxes = sandboxes.with_workspace_base(engine_side.path());
    let sandbox = sandboxes.create("s9", "user-9", &workspace).await.unwrap();
    sandbox
        .exec("echo mapped > proof.txt", SECOND * 10)
        .await
        .unwrap();
    let host_file = host_side.path().join("user-9/session-9/proof.txt");
    assert_eq!(std::fs::read_to_string(host_file).unwrap(), "mapped\n");
    assert!(!workspace.join("proof.txt").exists());

    let outside = tempfile::tempdir().unwrap();
    let err = sandboxes
        .create("s10", "user-9", outside.path())
        .await
        .err()
        .expect("a workspace outside the base is refused");
    assert!(err.to_string().contains("not under"), "{err}");
    sandbox.shutdown().await.unwrap();
}

#[tokio::test]
async fn large_output_is_capped_and_counted() {
    let f = fixture().await;
    let r = f
        .sandbox
        .exec("head -c 10000000 /dev/zero | tr '\\0' y", SECOND * 60)
        .await
        .unwrap();
    assert_eq!(r.exit_code, Some(0));
    assert_eq!(r.total_bytes, 10_000_000);
    assert_eq!(r.output.len(), OUTPUT_STORE_CAP_BYTES);
    assert!(r.output.bytes().all(|b| b == b'y'));
    let r = f.sandbox.exec("seq 3", SECOND * 10).await.unwrap();
    assert_eq!(r.output, "1\n2\n3\n");
}

#[tokio::test]
async fn fake_markers_in_output_do_not_end_the_command() {
    let f = fixture().await;
    let fake = "__LUCID_0123456789abcdef0123456789abcdef_BEGIN__0__LUCID_0123456789abcdef0123456789abcdef_SEP__/x__LUCID_0123456789abcdef0123456789abcdef_SEP____LUCID_0123456789abcdef0123456789abcdef_END__";
    let r = f
        .sandbox
        .exec(
            &format!("echo '{fake}'; printf '__LUCID_'; (exit 6)"),
            SECOND * 10,
        )
        .await
        .unwrap();
    assert_eq!(r.output, format!("{fake}\n__LUCID_"));
    assert_eq!(r.exit_code, Some(6));
}

#[tokio::test]
async fn interrupt_returns_within_two_seconds_and_the_shell_keeps_its_state() {
    let f = fixture().await;
    let sandbox = f.sandbox.clone();
    sandbox
        .exec(
            "mkdir -p /tmp/here && cd /tmp/here && export KEPT=1",
            SECOND * 10,
        )
        .await
        .unwrap();
    let runner = {
        let sandbox = sandbox.clone();
        tokio::spawn(async move {
            sandbox
                .exec(
                    "echo started; sleep 30; touch /tmp/here/too-late",
                    SECOND * 120,
                )
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    sandbox.interrupt().await;
    let r = runner.await.unwrap().unwrap();
    let took = started.elapsed();
    assert!(took < SECOND * 2, "interrupt took {took:?}");
    assert!(r.interrupted);
    assert!(!r.timed_out);
    assert_eq!(r.exit_code, None);
    assert_eq!(r.output, "started\n");

    let r = sandbox
        .exec(
            "pwd; echo $KEPT; ls; ps -o comm | grep -c '^sleep' || true",
            SECOND * 10,
        )
        .await
        .unwrap();
    // The keep-alive `sleep` of the container is the only one left.
    assert_eq!(r.output, "/tmp/here\n1\n1\n", "{}", r.output);
}

#[tokio::test]
async fn timeouts_stop_commands_and_busy_loops() {
    let f = fixture().await;
    let sandbox = &f.sandbox;
    sandbox.exec("cd /tmp", SECOND * 10).await.unwrap();
    for command in ["sleep 30", "while :; do :; done"] {
        let started = Instant::now();
        let r = sandbox
            .exec(command, Duration::from_millis(500))
            .await
            .unwrap();
        assert!(
            started.elapsed() < SECOND * 3,
            "{command}: {:?}",
            started.elapsed()
        );
        assert!(r.timed_out, "{command}");
        assert_eq!(r.exit_code, None);
        let r = sandbox.exec("pwd", SECOND * 10).await.unwrap();
        assert_eq!(r.output, "/tmp\n", "after {command}");
    }
}

#[tokio::test]
async fn a_dead_shell_is_reported_and_replaced() {
    let f = fixture().await;
    f.sandbox.exec("cd /tmp", SECOND * 10).await.unwrap();
    let r = f
        .sandbox
        .exec("echo bye; exit 3", SECOND * 10)
        .await
        .unwrap();
    assert_eq!(r.exit_code, None);
    assert!(r.output.starts_with("bye\n"), "{}", r.output);
    assert!(r.output.contains("exited with status 3"), "{}", r.output);
    let r = f.sandbox.exec("pwd", SECOND * 10).await.unwrap();
    assert_eq!(r.output, "/tmp\n");
}

#[tokio::test]
async fn exceeding_the_memory_limit_kills_the_hog_not_the_sandbox() {
    let image = ensure_test_image().await;
    let mut config = test_config(&image);
    config.memory_bytes = 64 * 1024 * 1024;
    let f = fixture_with(config).await;
    f.sandbox
        .exec("cd /tmp && export AFTER=ok", SECOND * 10)
        .await
        .unwrap();

    // A child process doubling a string until it passes the limit: the OOM killer takes it.
    let r = f
        .sandbox
        .exec("awk 'BEGIN { s = \"x\"; while (1) s = s s }'", SECOND * 60)
        .await
        .unwrap();
    assert_eq!(r.exit_code, Some(137), "{}", r.output);
    let r = f
        .sandbox
        .exec("echo $AFTER; pwd", SECOND * 10)
        .await
        .unwrap();
    assert_eq!(r.output, "ok\n/tmp\n");

    // The shell itself holding too much: it is the process killed; a new shell takes over.
    let r = f
        .sandbox
        .exec(
            "v=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived",
            SECOND * 60,
        )
        .await
        .unwrap();
    assert!(
        r.exit_code.is_none() || r.exit_code == Some(137),
        "the allocation cannot have succeeded: {r:?}"
    );
    assert!(!r.output.contains("survived"));
    let r = f
        .sandbox
        .exec("echo $AFTER; pwd", SECOND * 10)
        .await
        .unwrap();
    assert_eq!(r.output, "ok\n/tmp\n");
}

#[tokio::test]
async fn per_command_fallback_keeps_cwd_exports_and_exit_codes() {
    let f = fixture().await;
    let host = Arc::new(DockerShellHost::new(
        f.sandboxes.docker().clone(),
        f.sandbox.container_id(),
        "/workspace",
    ));
    let shell = PersistentShell::per_command(host, "/workspace");
    let r = shell
        .exec("mkdir -p a && cd a && export V=2", SECOND * 10)
        .await
        .unwrap();
    assert_eq!(r.exit_code, Some(0));
    let r = shell
        .exec("pwd; echo $V; exit 4", SECOND * 10)
        .await
        .unwrap();
    assert_eq!(r.output, "/workspace/a\n2\n");
    assert_eq!(r.exit_code, Some(4));
    let started = Instant::now();
    let r = shell
        .exec("sleep 30", Duration::from_millis(500))
        .await
        .unwrap();
    assert!(r.timed_out);
    assert!(started.elapsed() < SECOND * 3);
}

#[tokio::test]
async fn orphan_cleanup_only_touches_this_instance() {
    let image = ensure_test_image().await;
    let config = test_config(&image);
    let docker = require_docker().await;
    let instance = format!("test-{}", uuid::Uuid::new_v4());
    let other = format!("test-{}", uuid::Uuid::new_v4());
    let _cleanup_mine = InstanceCleanup {
        instance_id: instance.clone(),
    };
    let _cleanup_other = InstanceCleanup {
        instance_id: other.clone(),
    };

    // A previous run of this instance: a sandbox that was never shut down (crash).
    let workspace = tempfile::tempdir().unwrap();
    {
        let crashed = DockerSandboxes::connect(&config, instance.clone())
            .await
            .unwrap();
        let sandbox = crashed.create("left", "u", workspace.path()).await.unwrap();
        assert_eq!(crashed.active_count(), 1);
        drop(sandbox);
        drop(crashed);
    }
    // Plus a stopped container of this instance and a live one of another instance.
    let make = |owner: String, name: String| {
        let docker = docker.clone();
        let image = image.clone();
        async move {
            let body = ContainerCreateBody {
                image: Some(image),
                cmd: Some(vec!["sleep".into(), "600".into()]),
                labels: Some(HashMap::from([
                    (LABEL_MANAGED.to_string(), "true".to_string()),
                    (LABEL_INSTANCE.to_string(), owner),
                ])),
                host_config: Some(bollard::models::HostConfig {
                    network_mode: Some("none".into()),
                    ..Default::default()
                }),
                ..Default::default()
            };
            let options = CreateContainerOptionsBuilder::default().name(&name).build();
            docker
                .create_container(Some(options), body)
                .await
                .unwrap()
                .id
        }
    };
    let prefix = &config.container_prefix;
    let _stopped_mine = make(instance.clone(), format!("{prefix}stopped")).await;
    let others = make(other.clone(), format!("{prefix}other")).await;
    docker.start_container(&others, None).await.unwrap();

    let restarted = DockerSandboxes::connect(&config, instance.clone())
        .await
        .unwrap();
    let live = restarted
        .create("live", "u", workspace.path())
        .await
        .unwrap();
    // Dropped without shutdown: no longer owned, so an orphan too.
    let dropped = restarted
        .create("dropped", "u", workspace.path())
        .await
        .unwrap();
    drop(dropped);
    assert_eq!(restarted.active_count(), 2);
    assert_eq!(restarted.cleanup_orphans().await, 3);
    assert_eq!(restarted.active_count(), 1);
    assert!(containers_with_label(&docker, LABEL_INSTANCE, &instance)
        .await
        .contains(&live.container_id().to_string()));
    assert_eq!(
        containers_with_label(&docker, LABEL_INSTANCE, &instance)
            .await
            .len(),
        1,
        "only the live sandbox of this instance is left"
    );
    assert_eq!(
        containers_with_label(&docker, LABEL_INSTANCE, &other).await,
        vec![others.clone()],
        "another instance's container is untouched"
    );
    assert_eq!(restarted.cleanup_orphans().await, 0);
    assert_eq!(restarted.shutdown_all().await, 1);
    assert_eq!(restarted.active_count(), 0);
}

#[tokio::test]
async fn a_leftover_container_with_the_same_name_is_replaced() {
    let image = ensure_test_image().await;
    let config = test_config(&image);
    let (first, _cleanup) = manager(&config).await;
    let workspace = tempfile::tempdir().unwrap();
    let old = first.create("same", "u", workspace.path()).await.unwrap();
    let old_id = old.container_id().to_string();
    // The same instance restarted without cleanup creates the same session again.
    let second = DockerSandboxes::connect(&config, first.instance_id().to_string())
        .await
        .unwrap();
    let new = second.create("same", "u", workspace.path()).await.unwrap();
    assert_ne!(new.container_id(), old_id);
    // A live sandbox of the same manager is never replaced.
    let err = second
        .create("same", "u", workspace.path())
        .await
        .err()
        .expect("a live container name is refused");
    assert!(matches!(err, SandboxError::Container(_)), "{err}");
    assert_eq!(second.shutdown_all().await, 1);
}

#[tokio::test]
async fn shutdown_removes_the_container_and_is_idempotent() {
    let f = fixture().await;
    let docker = f.sandboxes.docker();
    assert_eq!(f.sandboxes.active_count(), 1);
    let started = Instant::now();
    f.sandbox.shutdown().await.unwrap();
    assert!(started.elapsed() < SECOND * 5, "{:?}", started.elapsed());
    assert!(docker
        .inspect_container(f.sandbox.container_id(), None)
        .await
        .is_err());
    f.sandbox.shutdown().await.unwrap();
    assert_eq!(f.sandboxes.active_count(), 0);
    assert!(matches!(
        f.sandbox.exec("true", SECOND).await,
        Err(SandboxError::ShellGone(_))
    ));
    assert_eq!(f.sandboxes.shutdown_all().await, 0);
}

#[tokio::test]
async fn image_checks_and_missing_images() {
    let image = ensure_test_image().await;
    let (sandboxes, _cleanup) = manager(&test_config(&image)).await;
    assert!(sandboxes.ping().await);
    let messages = std::sync::Mutex::new(Vec::new());
    sandboxes
        .ensure_image(|m| messages.lock().unwrap().push(m))
        .await
        .unwrap();
    assert!(
        messages.lock().unwrap().is_empty(),
        "present image: no pull"
    );

    // A registry on a closed loopback port: the pull fails at once, with a clear error.
    let mut config = test_config(&image);
    config.image = "127.0.0.1:9/lucid-missing-image:never".to_string();
    let (missing, _cleanup2) = manager(&config).await;
    let started = Instant::now();
    let messages = std::sync::Mutex::new(Vec::new());
    let err = missing
        .ensure_image(|m| messages.lock().unwrap().push(m))
        .await
        .unwrap_err();
    assert!(started.elapsed() < SECOND * 30, "{:?}", started.elapsed());
    match &err {
        SandboxError::Image { image, reason } => {
            assert_eq!(image, "127.0.0.1:9/lucid-missing-image:never");
            assert!(!reason.is_empty());
        }
        other => panic!("expected an image error, got {other}"),
    }
    assert!(err.to_string().contains("lucid-missing-image"), "{err}");
    assert!(messages.lock().unwrap()[0].contains("Pulling"));

    let workspace = tempfile::tempdir().unwrap();
    let err = missing
        .create("nope", "u", workspace.path())
        .await
        .err()
        .expect("no container without the image");
    assert!(matches!(err, SandboxError::Container(_)), "{err}");
    assert_eq!(missing.active_count(), 0);
}

#[tokio::test]
async fn bad_session_ids_are_refused_before_touching_docker() {
    let image = ensure_test_image().await;
    let (sandboxes, _cleanup) = manager(&test_config(&image)).await;
    let workspace = tempfile::tempdir().unwrap();
    for bad in ["", "../x", "a b", "semi;colon"] {
        let err = sandboxes
            .create(bad, "u", workspace.path())
            .await
            .err()
            .expect("invalid session id refused");
        assert!(err.to_string().contains("invalid container name"), "{err}");
    }
    assert_eq!(sandboxes.active_count(), 0);
}

#[test]
fn instance_id_survives_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let first = load_or_create_instance_id(dir.path()).unwrap();
    assert_eq!(load_or_create_instance_id(dir.path()).unwrap(), first);
    assert!(Path::new(&dir.path().join("instance-id")).exists());
}
