//! Attack: processes in a real Docker sandbox keep swapping workspace directories with
//! symlinks to a host directory outside the workspace while the host runs thousands of
//! editor operations and files-API reads and tree walks under them: a shell loop swaps `d`
//! (`mv`/`ln`, not atomic) and, when a static C toolchain is available, a tiny binary swaps
//! `e` atomically with `renameat2(RENAME_EXCHANGE)`.
//!
//! The symlink's target is the *host* absolute path of the outside directory (dangling inside
//! the container, which does not matter: only the host follows it, if it follows at all).
//! Nothing outside the workspace may change, the canary content and names there may never
//! appear in any result, and operations that succeed must have acted on the workspace.
//!
//! Needs a Docker daemon (fails with a message saying so otherwise). Bounded: the hammering
//! stops after [`HAMMER_FOR`] or [`MAX_ROUNDS`] rounds; the container is removed at the end,
//! even when the test panics.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bollard::query_parameters::{ListContainersOptionsBuilder, RemoveContainerOptionsBuilder};
use bollard::Docker;
use lucid_engine::agent::editor::Editor;
use lucid_engine::config::{SandboxConfig, SandboxMode};
use lucid_engine::files::{build_tree, read_file, TreeLimits};
use lucid_engine::sandbox::docker::{DockerSandboxes, LABEL_INSTANCE};
use lucid_engine::sandbox::Sandbox;
use lucid_testkit::image::{ensure_test_image, require_docker};
use serde_json::json;

const MOUNT: &str = "/workspace";
/// How long the host hammers the workspace (a round takes about 1-2 ms here: tens of
/// thousands of operations; the old check-then-reopen code escaped within the first second).
const HAMMER_FOR: Duration = Duration::from_secs(8);
/// Most rounds (each round is 11 editor/files operations, plus a tree walk every 2nd).
const MAX_ROUNDS: usize = 20_000;

/// Removes every container of the test's instance id when dropped, even after a panic.
struct ContainerCleanup {
    instance_id: String,
}

impl Drop for ContainerCleanup {
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
                let filters = std::collections::HashMap::from([(
                    "label",
                    vec![format!("{LABEL_INSTANCE}={instance_id}")],
                )]);
                let options = ListContainersOptionsBuilder::default()
                    .all(true)
                    .filters(&filters)
                    .build();
                let ids: Vec<String> = docker
                    .list_containers(Some(options))
                    .await
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|c| c.id)
                    .collect();
                for id in ids {
                    let options = RemoveContainerOptionsBuilder::default().force(true).build();
                    let _ = docker.remove_container(&id, Some(options)).await;
                }
            });
        })
        .join();
    }
}

fn sandbox_config(image: &str) -> SandboxConfig {
    SandboxConfig {
        mode: SandboxMode::Docker,
        image: image.to_string(),
        memory_bytes: 256 * 1024 * 1024,
        cpu_limit: 1.0,
        pids_limit: 256,
        network: Some("none".to_string()),
        mount_path: MOUNT.to_string(),
        container_prefix: format!(
            "lucid-race-{}-",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        ),
        host_workspace_path: None,
        owned_network: lucid_engine::config::DEFAULT_SANDBOX_NETWORK.to_string(),
        run_as_root: false,
        run_as: None,
    }
}

/// Every entry under `dir` (not following symlinks) with its type, mode and content.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (u32, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        for entry in std::fs::read_dir(&current).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let content = if meta.is_file() {
                std::fs::read(&path).unwrap()
            } else {
                Vec::new()
            };
            if meta.is_dir() {
                stack.push(path.clone());
            }
            out.insert(path, (meta.mode(), content));
        }
    }
    out
}

/// What the hammering saw.
#[derive(Default, Debug)]
struct Tally {
    ok: usize,
    failed: usize,
    /// Successful results that did not come from the workspace (or showed a canary).
    violations: Vec<String>,
}

impl Tally {
    fn check(&mut self, what: &str, result: Result<String, String>, canary: &str) {
        match result {
            Ok(text) => {
                self.ok += 1;
                if text.contains(canary) {
                    self.violations
                        .push(format!("{what} returned outside data: {text:.200}"));
                }
            }
            Err(message) => {
                self.failed += 1;
                if message.contains(canary) {
                    self.violations
                        .push(format!("{what} error showed outside data: {message:.200}"));
                }
            }
        }
    }

    fn violation(&mut self, message: String) {
        self.violations.push(message);
    }
}

/// The host side: editor operations, file reads and tree walks on `<dir>/...` for each of
/// `dirs` in turn, until the time or round budget is spent.
fn hammer(workspace: &Path, dirs: &[&str], canary: &str) -> Tally {
    let mut editor = Editor::new(workspace.to_path_buf(), MOUNT.to_string());
    let mut tally = Tally::default();
    let started = Instant::now();
    let mut round = 0;
    while round < MAX_ROUNDS && started.elapsed() < HAMMER_FOR {
        round += 1;
        let d = dirs[round % dirs.len()];
        let text = format!("workspace {round}\nmarker\n");
        let mut edit = |args: serde_json::Value| -> Result<String, String> {
            editor.run(&args).map(|o| o.output).map_err(|e| e.message)
        };
        let created =
            edit(json!({"command": "create", "path": format!("{d}/f.txt"), "file_text": text}));
        tally.check("create", created, canary);
        let replaced = edit(json!({
            "command": "str_replace", "path": format!("/workspace/{d}/f.txt"),
            "old_str": "marker", "new_str": format!("edited {round}")
        }));
        if let Ok(out) = &replaced {
            if !out.contains(&format!("edited {round}")) {
                tally.violation(format!("str_replace edited something else: {out:.200}"));
            }
        }
        tally.check("str_replace", replaced, canary);
        let viewed = edit(json!({"command": "view", "path": format!("{d}/f.txt")}));
        if let Ok(out) = &viewed {
            if !out.contains("\tworkspace ") {
                tally.violation(format!("view showed a file we never wrote: {out:.200}"));
            }
        }
        tally.check("view", viewed, canary);
        let listed = edit(json!({"command": "view", "path": d}));
        tally.check("view dir", listed, canary);
        for _ in 0..2 {
            let undone = edit(json!({"command": "undo_edit", "path": format!("{d}/f.txt")}));
            tally.check("undo_edit", undone, canary);
        }

        let read = read_file(workspace, MOUNT, &format!("/{d}/f.txt"), 4096)
            .map(|c| c.content)
            .map_err(|e| e.to_string());
        if let Ok(content) = &read {
            if !content.starts_with("workspace ") {
                tally.violation(format!(
                    "files read returned a file we never wrote: {content:.200}"
                ));
            }
        }
        tally.check("read_file", read, canary);
        for _ in 0..4 {
            let secret = read_file(
                workspace,
                MOUNT,
                &format!("/workspace/{d}/secret.txt"),
                4096,
            )
            .map(|c| c.content)
            .map_err(|e| e.to_string());
            if let Ok(content) = &secret {
                if content != "workspace secret\n" {
                    tally.violation(format!("files read returned another file: {content:.200}"));
                }
            }
            tally.check("read_file secret", secret, canary);
        }
        if round % 2 == 0 {
            let tree = build_tree(workspace, TreeLimits::default())
                .map(|t| serde_json::to_string(&t).unwrap())
                .map_err(|e| e.to_string());
            tally.check("build_tree", tree, canary);
        }
    }
    eprintln!(
        "workspace race: {round} rounds in {:?}: {} operations succeeded, {} failed, {} \
         acted outside the workspace",
        started.elapsed(),
        tally.ok,
        tally.failed,
        tally.violations.len()
    );
    tally
}

/// The atomic attacker: exchanges two paths with `renameat2(RENAME_EXCHANGE)` forever.
const EXCHANGER_C: &str = r#"
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>
#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif
int main(int argc, char **argv) {
    if (argc != 3) return 2;
    for (;;) syscall(SYS_renameat2, AT_FDCWD, argv[1], AT_FDCWD, argv[2], RENAME_EXCHANGE);
}
"#;

/// Compiles [`EXCHANGER_C`] into a static binary at `output` (inside the workspace, so the
/// container can run it). Returns false, with a notice, when no C compiler is available: the
/// test then runs with the shell attacker only.
fn build_exchanger(output: &Path) -> bool {
    let src_dir = tempfile::tempdir().unwrap();
    let source = src_dir.path().join("exchange.c");
    std::fs::write(&source, EXCHANGER_C).unwrap();
    let status = std::process::Command::new("cc")
        .args(["-static", "-O2", "-o"])
        .arg(output)
        .arg(&source)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    let built = status.is_ok_and(|s| s.success());
    if !built {
        eprintln!("workspace race: no static C toolchain (cc -static); atomic attacker skipped");
    }
    built
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_swapping_a_directory_for_a_symlink_cannot_redirect_host_access() {
    require_docker().await;
    let image = ensure_test_image().await;
    let config = sandbox_config(&image);
    let instance_id = format!("test-race-{}", uuid::Uuid::new_v4());
    let _cleanup = ContainerCleanup {
        instance_id: instance_id.clone(),
    };
    let sandboxes = DockerSandboxes::connect(&config, instance_id)
        .await
        .expect("connect to the Docker daemon");

    // The host directory the sandbox aims at, with a canary in content and in names.
    let canary = format!("CANARY{}", uuid::Uuid::new_v4().simple());
    let outside = tempfile::Builder::new()
        .prefix("lucid-outside-")
        .tempdir()
        .unwrap();
    let outside_path = std::fs::canonicalize(outside.path()).unwrap();
    std::fs::write(outside_path.join("f.txt"), format!("{canary}\nmarker\n")).unwrap();
    std::fs::write(
        outside_path.join("secret.txt"),
        format!("{canary} secret\n"),
    )
    .unwrap();
    std::fs::write(outside_path.join(format!("{canary}.name")), "x").unwrap();
    std::fs::create_dir(outside_path.join("sub")).unwrap();
    std::fs::write(outside_path.join("sub/f.txt"), format!("{canary}\n")).unwrap();
    let before = snapshot(&outside_path);

    let workspace = tempfile::tempdir().unwrap();
    for dir in ["d", "e"] {
        std::fs::create_dir(workspace.path().join(dir)).unwrap();
        // Same names as outside: a check-then-reopen reader finds them, then reopens by name.
        std::fs::write(
            workspace.path().join(dir).join("secret.txt"),
            "workspace secret\n",
        )
        .unwrap();
    }
    // The atomic attacker's binary, when a C compiler is available (see `build_exchanger`).
    let exchanger = build_exchanger(&workspace.path().join(".exchange"));
    let sandbox: Arc<_> = sandboxes
        .create("race", "user-race", workspace.path())
        .await
        .expect("sandbox starts");

    // Attacker 1: a shell loop in the container swapping `d` and `d -> <outside>` as fast as
    // busybox allows (not atomic: `d` is briefly missing). `mv -T` never moves into an
    // existing directory; a directory the host re-created in the gap is removed.
    let out = outside_path.display().to_string();
    assert!(!out.contains('\''));
    let attack = format!(
        "cd {MOUNT} && (while :; do \
           mv -T d d.real 2>/dev/null; ln -s '{out}' d 2>/dev/null; \
           rm -f d 2>/dev/null || rm -rf d; mv -T d.real d 2>/dev/null; \
         done) </dev/null >/dev/null 2>&1 & echo started"
    );
    let started = sandbox
        .exec(&attack, Duration::from_secs(10))
        .await
        .expect("start the attack loop");
    assert!(started.output.contains("started"), "{}", started.output);
    let mut dirs = vec!["d"];
    // Attacker 2: `renameat2(RENAME_EXCHANGE)` in a tight loop atomically exchanges the
    // directory `e` with the symlink `e.link -> <outside>`, so `e` is always one or the other.
    if exchanger {
        let attack = format!(
            "cd {MOUNT} && ln -s '{out}' e.link && \
             (./.exchange e e.link </dev/null >/dev/null 2>&1 &) && echo started"
        );
        let started = sandbox
            .exec(&attack, Duration::from_secs(10))
            .await
            .expect("start the exchange loop");
        assert!(started.output.contains("started"), "{}", started.output);
        dirs.push("e");
    }
    // Make sure the attackers really swap: the host must see each as a symlink at some point.
    for dir in &dirs {
        let mut seen_link = false;
        let deadline = Instant::now() + Duration::from_secs(5);
        while !seen_link && Instant::now() < deadline {
            seen_link = std::fs::symlink_metadata(workspace.path().join(dir))
                .is_ok_and(|m| m.file_type().is_symlink());
        }
        assert!(seen_link, "the attacker does not swap {dir} for a symlink");
    }

    let root = workspace.path().to_path_buf();
    let canary_for_hammer = canary.clone();
    let tally = tokio::task::spawn_blocking(move || hammer(&root, &dirs, &canary_for_hammer))
        .await
        .expect("hammer task");

    // Stop the attacker before inspecting anything.
    let _ = sandbox.shutdown().await;
    sandboxes.shutdown_all().await;

    let after = snapshot(&outside_path);
    let changed: Vec<String> = before
        .keys()
        .chain(after.keys())
        .filter(|k| before.get(*k) != after.get(*k))
        .map(|k| k.display().to_string())
        .collect();
    assert!(
        changed.is_empty(),
        "the host wrote, created or deleted {} entries outside the workspace, e.g. {:?}",
        changed.len(),
        &changed[..changed.len().min(5)]
    );
    assert!(
        tally.violations.is_empty(),
        "{} host operations acted outside the workspace, e.g. {:?}",
        tally.violations.len(),
        &tally.violations[..tally.violations.len().min(5)]
    );
    // The test exercised both outcomes: operations on the real directory succeeded, and
    // operations that met the symlink were refused.
    assert!(tally.ok >= 50, "too few successful operations: {tally:?}");
    assert!(tally.failed >= 50, "too few refused operations: {tally:?}");
}
