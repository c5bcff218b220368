//! Where the agent's commands run: one Docker container per session ([`docker`]), or — only
//! when the user chose `SANDBOX_MODE=local` — plain local processes ([`local`]).
//!
//! Both run commands through a persistent shell ([`shell`]): cwd and exported variables persist
//! between commands, each command is framed by unique markers so its output and exit code are
//! captured exactly.

use std::time::Duration;

use async_trait::async_trait;
use thiserror::Error;

pub mod docker;
pub mod freeze;
pub mod local;
pub mod ownership;
pub mod shell;

/// Output kept in memory per command; the rest is counted but dropped.
pub const OUTPUT_STORE_CAP_BYTES: usize = 1024 * 1024;

#[derive(Debug, Error)]
pub enum SandboxError {
    #[error("Docker is not available: {0}")]
    DockerUnavailable(String),
    #[error("sandbox image {image} could not be prepared: {reason}")]
    Image { image: String, reason: String },
    #[error("sandbox container failed: {0}")]
    Container(String),
    #[error("the sandbox shell stopped unexpectedly: {0}")]
    ShellGone(String),
    #[error("sandbox I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The sandbox was not (or no longer) wanted: its session was stopped while it started.
    #[error("the sandbox start was cancelled")]
    Cancelled,
}

/// The result of one command.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecOutput {
    /// Combined stdout and stderr, lossily decoded, capped at [`OUTPUT_STORE_CAP_BYTES`].
    pub output: String,
    /// Exit code; `None` when the command did not finish (timeout, interrupt, shell died).
    pub exit_code: Option<i64>,
    /// Total bytes printed, including what was dropped past the cap.
    pub total_bytes: u64,
    pub timed_out: bool,
    pub interrupted: bool,
}

/// Which kind of sandbox a session got, for labelling in the UI and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SandboxKind {
    Docker,
    /// No isolation: commands run as the engine's user on the host.
    Local,
}

/// A running sandbox of one session.
#[async_trait]
pub trait Sandbox: Send + Sync {
    /// Runs a command in the persistent shell. Only one command runs at a time.
    async fn exec(&self, command: &str, timeout: Duration) -> Result<ExecOutput, SandboxError>;
    /// Interrupts the running command, if any; the running `exec` returns with `interrupted`.
    async fn interrupt(&self);
    /// The workspace path as commands see it (e.g. `/workspace`).
    fn workspace_path(&self) -> &str;
    fn kind(&self) -> SandboxKind;
    /// Releases the sandbox (container stopped and removed). Idempotent.
    async fn shutdown(&self) -> Result<(), SandboxError>;
}
