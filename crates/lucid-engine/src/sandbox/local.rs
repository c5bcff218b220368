//! The local-process sandbox: no isolation, only for users who chose `SANDBOX_MODE=local`.
//!
//! Commands run through the same persistent-shell protocol as in Docker ([`super::shell`]),
//! with a host `/bin/sh` in the workspace directory. The shell gets its own process group, so
//! an interrupt can kill what the command started without touching the engine. Its environment
//! is cleared down to a short allowlist: the engine's secrets (API keys, the encryption key,
//! Supabase keys) never reach the agent's commands.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use tokio::io::AsyncReadExt;
use tokio::process::{ChildStdout, Command};

use super::shell::{PersistentShell, ShellChannels, ShellHost, ShellLaunch};
use super::{ExecOutput, Sandbox, SandboxError, SandboxKind};

/// Environment variables passed from the engine to local commands; everything else is dropped.
const ENV_ALLOWLIST: &[&str] = &[
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TERM", "TZ", "TMPDIR",
    "SHELL",
];
const READ_CHUNK: usize = 64 * 1024;

/// Starts host shells in a directory, each in its own process group.
pub struct LocalShellHost {
    base_dir: PathBuf,
}

impl LocalShellHost {
    pub fn new(base_dir: PathBuf) -> Self {
        LocalShellHost { base_dir }
    }
}

fn output_stream(stdout: ChildStdout) -> futures::stream::BoxStream<'static, io::Result<Bytes>> {
    futures::stream::unfold(Some(stdout), |stdout| async move {
        let mut stdout = stdout?;
        let mut buf = vec![0u8; READ_CHUNK];
        match stdout.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(Bytes::from(buf)), Some(stdout)))
            }
            Err(e) => Some((Err(e), None)),
        }
    })
    .boxed()
}

#[async_trait]
impl ShellHost for LocalShellHost {
    async fn launch(&self, launch: ShellLaunch) -> Result<ShellChannels, SandboxError> {
        let mut command = Command::new("/bin/sh");
        if let ShellLaunch::Script(script) = &launch {
            command.arg("-c").arg(script);
        }
        command
            .current_dir(&self.base_dir)
            .env_clear()
            .envs(
                ENV_ALLOWLIST.iter().filter_map(|name| {
                    std::env::var_os(name).map(|value| (name.to_string(), value))
                }),
            )
            .stdin(match launch {
                ShellLaunch::Persistent => Stdio::piped(),
                ShellLaunch::Script(_) => Stdio::null(),
            })
            .stdout(Stdio::piped())
            // The shell merges stderr into stdout itself (`exec 2>&1`) as its first step.
            .stderr(Stdio::null())
            .kill_on_drop(true);
        #[cfg(unix)]
        command.process_group(0);
        let mut child = command.spawn().map_err(|e| {
            SandboxError::ShellGone(format!(
                "cannot start /bin/sh in {}: {e}",
                self.base_dir.display()
            ))
        })?;
        let input = child
            .stdin
            .take()
            .map(|stdin| Box::pin(stdin) as std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>);
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| SandboxError::ShellGone("the shell has no stdout".into()))?;
        let exit_status = Box::pin(async move {
            let status = child.wait().await.ok()?;
            exit_code_of(status)
        });
        Ok(ShellChannels {
            input,
            output: output_stream(stdout),
            exit_status,
        })
    }

    async fn kill_shell(&self, shell_pid: u32) -> Result<(), SandboxError> {
        kill_group(shell_pid)
    }
}

fn exit_code_of(status: std::process::ExitStatus) -> Option<i64> {
    if let Some(code) = status.code() {
        return Some(i64::from(code));
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        status.signal().map(|signal| 128 + i64::from(signal))
    }
    #[cfg(not(unix))]
    None
}

/// Refuses pids whose process group must never be signalled: init, nothing, the engine's own.
#[cfg(unix)]
fn checked_group(shell_pid: u32) -> Result<libc::pid_t, SandboxError> {
    let pid = libc::pid_t::try_from(shell_pid).unwrap_or(0);
    // SAFETY: getpgrp has no preconditions and cannot fail.
    let own_group = unsafe { libc::getpgrp() };
    if pid <= 1 || pid == own_group || pid == std::process::id() as libc::pid_t {
        return Err(SandboxError::Io(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("refusing to signal process group {shell_pid}"),
        )));
    }
    Ok(pid)
}

/// Sends SIGKILL to the shell's process group: the shell and everything it started (unless
/// detached with `setsid`).
#[cfg(unix)]
fn kill_group(shell_pid: u32) -> Result<(), SandboxError> {
    let group = checked_group(shell_pid)?;
    // SAFETY: kill(2) of a process group checked above not to be ours or init's.
    unsafe { libc::kill(-group, libc::SIGKILL) };
    Ok(())
}

#[cfg(not(unix))]
fn kill_group(_shell_pid: u32) -> Result<(), SandboxError> {
    Err(SandboxError::Io(io::Error::new(
        io::ErrorKind::Unsupported,
        "the local sandbox needs a Unix system",
    )))
}

/// A sandbox running commands as local processes in the workspace directory.
pub struct LocalSandbox {
    shell: PersistentShell,
    workspace: String,
    closed: AtomicBool,
}

impl LocalSandbox {
    /// Starts a persistent shell in `workspace_dir` (created if missing).
    pub async fn start(workspace_dir: &Path) -> Result<Arc<LocalSandbox>, SandboxError> {
        std::fs::create_dir_all(workspace_dir).map_err(|e| {
            SandboxError::Io(io::Error::new(
                e.kind(),
                format!(
                    "cannot create the workspace {}: {e}",
                    workspace_dir.display()
                ),
            ))
        })?;
        let dir = workspace_dir.canonicalize()?;
        if !dir.is_dir() {
            return Err(SandboxError::Io(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("the workspace {} is not a directory", dir.display()),
            )));
        }
        let workspace = dir.to_string_lossy().into_owned();
        let host = Arc::new(LocalShellHost::new(dir));
        let shell = PersistentShell::start(host, &workspace).await?;
        Ok(Arc::new(LocalSandbox {
            shell,
            workspace,
            closed: AtomicBool::new(false),
        }))
    }
}

#[async_trait]
impl Sandbox for LocalSandbox {
    async fn exec(&self, command: &str, timeout: Duration) -> Result<ExecOutput, SandboxError> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(SandboxError::ShellGone("the sandbox was shut down".into()));
        }
        self.shell.exec(command, timeout).await
    }

    async fn interrupt(&self) {
        self.shell.interrupt();
    }

    fn workspace_path(&self) -> &str {
        &self.workspace
    }

    fn kind(&self) -> SandboxKind {
        SandboxKind::Local
    }

    async fn shutdown(&self) -> Result<(), SandboxError> {
        self.closed.store(true, Ordering::SeqCst);
        self.shell.close().await;
        Ok(())
    }
}

impl Drop for LocalSandbox {
    fn drop(&mut self) {
        #[cfg(unix)]
        if let Some(pid) = self.shell.current_pid() {
            let _ = kill_group(pid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[tokio::test]
    async fn local_sandbox_runs_in_the_workspace_and_hides_engine_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let workspace = dir.path().join("ws");
        // A variable of the engine's environment outside the allowlist (cargo sets several
        // for test binaries) stands for a secret: it must not reach commands.
        let (hidden, _) = std::env::vars()
            .find(|(name, value)| {
                !ENV_ALLOWLIST.contains(&name.as_str())
                    && !value.is_empty()
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            })
            .expect("the test process has environment variables outside the allowlist");
        let sandbox = LocalSandbox::start(&workspace).await.unwrap();
        assert_eq!(sandbox.kind(), SandboxKind::Local);
        let canonical = workspace.canonicalize().unwrap();
        assert_eq!(sandbox.workspace_path(), canonical.to_string_lossy());
        let r = sandbox
            .exec(
                &format!("pwd; echo \"secret=${hidden}\"; echo hi > made.txt"),
                SECOND * 5,
            )
            .await
            .unwrap();
        assert_eq!(
            r.output,
            format!("{}\nsecret=\n", canonical.display()),
            "commands start in the workspace with a filtered environment"
        );
        assert_eq!(
            std::fs::read_to_string(canonical.join("made.txt")).unwrap(),
            "hi\n"
        );
        sandbox.shutdown().await.unwrap();
        sandbox.shutdown().await.unwrap();
        assert!(sandbox.exec("true", SECOND).await.is_err());
    }

    #[tokio::test]
    async fn interrupt_kills_the_command_group_within_two_seconds() {
        let dir = tempfile::tempdir().unwrap();
        let sandbox = LocalSandbox::start(dir.path()).await.unwrap();
        let marker = dir.path().join("late");
        let runner = {
            let sandbox = sandbox.clone();
            let marker = marker.clone();
            tokio::spawn(async move {
                sandbox
                    .exec(
                        &format!("sleep 30; touch '{}'", marker.display()),
                        SECOND * 60,
                    )
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        let started = std::time::Instant::now();
        sandbox.interrupt().await;
        let r = runner.await.unwrap().unwrap();
        assert!(started.elapsed() < SECOND * 2);
        assert!(r.interrupted);
        assert_eq!(r.exit_code, None);
        // The rest of the command line did not run either.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!marker.exists());
        assert_eq!(
            sandbox.exec("echo alive", SECOND * 5).await.unwrap().output,
            "alive\n"
        );
    }

    #[tokio::test]
    async fn shutdown_kills_background_processes() {
        let dir = tempfile::tempdir().unwrap();
        let sandbox = LocalSandbox::start(dir.path()).await.unwrap();
        let r = sandbox
            .exec("sleep 60 >/dev/null & echo $!", SECOND * 5)
            .await
            .unwrap();
        let pid: i32 = r.output.trim().parse().unwrap();
        assert_eq!(unsafe { libc::kill(pid, 0) }, 0, "background sleep runs");
        sandbox.shutdown().await.unwrap();
        let deadline = std::time::Instant::now() + SECOND * 2;
        loop {
            let alive = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| !s.contains(") Z "))
                .unwrap_or(false);
            if !alive {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "background process survived shutdown"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[test]
    fn refuses_to_signal_init_or_its_own_group() {
        assert!(kill_group(1).is_err());
        assert!(kill_group(0).is_err());
        assert!(kill_group(std::process::id()).is_err());
    }
}
