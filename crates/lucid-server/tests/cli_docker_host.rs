//! `DOCKER_HOST=tcp://…` (how a container reaches the daemon through a socket proxy, see the
//! README's "Running Lucid for a team"): `lucid doctor` talks to the daemon through a local TCP
//! forwarder in front of the real Docker socket, and says so when nothing listens there.

mod cli_support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cli_support::*;

const SHORT: Duration = Duration::from_secs(60);

/// The daemon's Unix socket (`DOCKER_HOST=unix://…` of the test's environment, else the
/// default one).
fn daemon_socket() -> String {
    std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|h| h.strip_prefix("unix://").map(str::to_string))
        .unwrap_or_else(|| "/var/run/docker.sock".to_string())
}

/// A TCP listener on 127.0.0.1 forwarding every connection to the daemon's socket; counts the
/// connections it forwarded.
async fn forwarder() -> (u16, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the forwarder");
    let port = listener.local_addr().unwrap().port();
    let count = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&count);
    let task = tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                if let Ok(mut daemon) = tokio::net::UnixStream::connect(daemon_socket()).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut daemon).await;
                }
            });
        }
    });
    (port, count, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_reaches_the_daemon_through_a_tcp_docker_host() {
    // The daemon must be up for this test (and the whole suite): fail, never skip.
    let _docker = lucid_testkit::image::require_docker().await;
    let dirs = TestDirs::new();
    let (port, connections, task) = forwarder().await;
    let mut env = base_env(&dirs);
    env.push(("DOCKER_HOST".into(), format!("tcp://127.0.0.1:{port}")));
    env.push(("SANDBOX_IMAGE".into(), "lucid-no-such-image:never".into()));
    let out = Lucid::run(&["doctor"], &env, &dirs, SHORT).await;
    assert!(
        out.stdout.contains("ok    Docker ") && out.stdout.contains(" reachable"),
        "{out:#?}"
    );
    assert!(
        out.stdout
            .contains("warn  sandbox image lucid-no-such-image:never is not present"),
        "the image question went through too: {out:#?}"
    );
    assert!(
        connections.load(Ordering::SeqCst) > 0,
        "doctor did not use DOCKER_HOST"
    );
    task.abort();

    // Nothing listens at DOCKER_HOST: Docker is reported unreachable, not the local socket.
    let closed = free_port();
    let mut env = base_env(&dirs);
    env.push(("DOCKER_HOST".into(), format!("tcp://127.0.0.1:{closed}")));
    let out = Lucid::run(&["doctor"], &env, &dirs, SHORT).await;
    assert_eq!(out.code(), Some(1), "{out:#?}");
    assert!(
        out.stdout.contains("FAIL  Docker is not reachable"),
        "{out:#?}"
    );
}
