//! Sandbox benchmarks against the real Docker daemon (plain `Instant`, medians).
//!
//! (a) session start → sandbox ready: container create + start + persistent shell ready;
//! (b) tool round trip: `exec("true")` through the persistent shell;
//! (c) baseline in the same run: one fresh `docker exec` per command through bollard
//!     (create_exec + start_exec + inspect_exec) of `true`.
//!
//! Run: `cargo bench -p lucid-engine --bench sandbox`. Needs Docker; the busybox test image is
//! imported if missing. Targets: (a) < 500 ms, (b) < 2 ms and at least 20x faster than (c).

use std::time::{Duration, Instant};

use bollard::exec::{CreateExecOptions, StartExecResults};
use futures::StreamExt;
use lucid_engine::config::{SandboxConfig, SandboxMode};
use lucid_engine::sandbox::docker::DockerSandboxes;
use lucid_engine::sandbox::Sandbox;

const STARTS: usize = 30;
const ROUND_TRIPS: usize = 200;
const FRESH_EXECS: usize = 50;

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let index = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[index]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn report(name: &str, samples: &mut [Duration]) -> Duration {
    let med = median(samples);
    println!(
        "{name:<48} n={:<4} median {:>8.3} ms   p90 {:>8.3} ms   min {:>8.3} ms",
        samples.len(),
        ms(med),
        ms(percentile(samples, 0.9)),
        ms(samples[0]),
    );
    med
}

#[tokio::main]
async fn main() {
    let image = lucid_testkit::image::ensure_test_image().await;
    let config = SandboxConfig {
        mode: SandboxMode::Docker,
        image,
        memory_bytes: 512 * 1024 * 1024,
        cpu_limit: 1.0,
        pids_limit: 256,
        network: Some("none".to_string()),
        owned_network: lucid_engine::config::DEFAULT_SANDBOX_NETWORK.to_string(),
        run_as_root: false,
        run_as: None,
        mount_path: "/workspace".to_string(),
        container_prefix: "lucid-bench-".to_string(),
        host_workspace_path: None,
    };
    let instance = format!("bench-{}", uuid::Uuid::new_v4());
    let sandboxes = DockerSandboxes::connect(&config, instance)
        .await
        .expect("the benchmarks need a running Docker daemon");
    let workspace = tempfile::tempdir().expect("temporary workspace");

    // (a) session start to sandbox ready.
    let mut starts = Vec::with_capacity(STARTS);
    let mut shutdowns = Vec::with_capacity(STARTS);
    for i in 0..STARTS {
        let started = Instant::now();
        let sandbox = sandboxes
            .create(&format!("start-{i}"), "bench", workspace.path())
            .await
            .expect("sandbox starts");
        starts.push(started.elapsed());
        let stopping = Instant::now();
        sandbox.shutdown().await.expect("sandbox shuts down");
        shutdowns.push(stopping.elapsed());
    }

    let sandbox = sandboxes
        .create("round-trips", "bench", workspace.path())
        .await
        .expect("sandbox starts");

    // (b) exec("true") through the persistent shell (after a short warm-up).
    for _ in 0..10 {
        sandbox.exec("true", Duration::from_secs(10)).await.unwrap();
    }
    let mut round_trips = Vec::with_capacity(ROUND_TRIPS);
    for _ in 0..ROUND_TRIPS {
        let started = Instant::now();
        let r = sandbox.exec("true", Duration::from_secs(10)).await.unwrap();
        round_trips.push(started.elapsed());
        assert_eq!(r.exit_code, Some(0));
    }

    // (c) one fresh docker exec per command.
    let docker = sandboxes.docker().clone();
    let mut fresh = Vec::with_capacity(FRESH_EXECS);
    for _ in 0..FRESH_EXECS {
        let started = Instant::now();
        let exec = docker
            .create_exec(
                sandbox.container_id(),
                CreateExecOptions {
                    cmd: Some(vec!["true".to_string()]),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        if let StartExecResults::Attached { mut output, .. } =
            docker.start_exec(&exec.id, None).await.unwrap()
        {
            while output.next().await.is_some() {}
        }
        let code = docker.inspect_exec(&exec.id).await.unwrap().exit_code;
        fresh.push(started.elapsed());
        assert_eq!(code, Some(0));
    }
    sandbox.shutdown().await.unwrap();
    sandboxes.shutdown_all().await;

    println!();
    let a = report("(a) session start -> sandbox ready", &mut starts);
    report("    (sandbox shutdown, for reference)", &mut shutdowns);
    let b = report(
        "(b) exec(\"true\") via the persistent shell",
        &mut round_trips,
    );
    let c = report("(c) fresh docker exec of `true` (baseline)", &mut fresh);
    let ratio = c.as_secs_f64() / b.as_secs_f64();
    println!("\nratio (c)/(b): {ratio:.1}x faster through the persistent shell");
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    println!(
        "targets: (a) < 500 ms {}; (b) < 2 ms {}; (b) >= 20x faster than (c) {}",
        verdict(a < Duration::from_millis(500)),
        verdict(b < Duration::from_millis(2)),
        verdict(ratio >= 20.0),
    );
}
