//! The persistent-shell protocol, independent of how the shell is reached.
//!
//! A [`ShellHost`] starts `sh` somewhere (a local process, an attached `docker exec`) and gives
//! back its stdin and its output as a byte stream. [`PersistentShell`] drives it:
//!
//! * at start the shell runs `exec 2>&1` (stderr merged into stdout), restores the exported
//!   variables and cwd of the previous shell if there was one, and prints a *ready* trailer
//!   carrying its pid (`$$`);
//! * each command is sent as `command eval '<command>' </dev/null 2>&1` followed by a trailer
//!   carrying `$?`, `$PWD` and `export -p`, framed by markers holding a fresh random nonce, so
//!   look-alike text in the output cannot end a command early. The framing uses builtins only
//!   (`printf`, `export`): no process is started per command. `command eval` keeps syntax
//!   errors from killing the shell; stdin from `/dev/null` keeps commands from reading (and
//!   eating) the protocol;
//! * output is stored up to [`OUTPUT_STORE_CAP_BYTES`] while every byte is counted, and decoded
//!   lossily as UTF-8;
//! * on timeout or interrupt the shell and every process it started are killed
//!   ([`ShellHost::kill_shell`]) — killing only the running program would let the rest of a
//!   command list (`make; rm -rf build`) go on — and a fresh shell is started with the last
//!   known cwd and exported variables. Processes detached with `setsid` survive;
//! * if the shell dies (`exit`, OOM kill), the result says so and a fresh shell is started.
//!
//! [`ShellMode::PerCommand`] is the fallback for hosts where a long-lived attached shell cannot
//! be started: each command runs in a fresh `sh -c` with the same framing; cwd and exported
//! variables are still carried over.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::StreamExt;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{ExecOutput, SandboxError, OUTPUT_STORE_CAP_BYTES};

/// How long a freshly started shell may take to print its ready trailer.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
/// How long to wait for a dead shell's exit status.
const EXIT_STATUS_TIMEOUT: Duration = Duration::from_secs(2);
/// A trailer longer than this (it carries `export -p`) means the protocol is broken.
const MAX_TRAILER_BYTES: usize = 8 * 1024 * 1024;

/// A started shell: its stdin (absent for one-shot scripts) and its merged output.
pub struct ShellChannels {
    pub input: Option<Pin<Box<dyn AsyncWrite + Send>>>,
    pub output: BoxStream<'static, io::Result<Bytes>>,
    /// Resolves to the shell's exit status once its output has ended (`None` if unknown).
    pub exit_status: BoxFuture<'static, Option<i64>>,
}

/// What to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShellLaunch {
    /// `sh` reading commands from its stdin.
    Persistent,
    /// `sh -c SCRIPT`, stdin not attached.
    Script(String),
}

/// A place where shells run: a local process group, a Docker container…
#[async_trait]
pub trait ShellHost: Send + Sync {
    /// Starts a shell in the host's base directory (the workspace).
    async fn launch(&self, launch: ShellLaunch) -> Result<ShellChannels, SandboxError>;
    /// Kills the shell whose pid (as the shell sees it, `$$`) is `shell_pid` and every process
    /// it started that did not detach itself (`setsid`).
    async fn kill_shell(&self, shell_pid: u32) -> Result<(), SandboxError>;
}

/// How commands reach the shell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShellMode {
    /// One long-lived shell.
    Persistent,
    /// A fresh `sh -c` per command.
    PerCommand,
}

/// Quotes `text` as one single-quoted shell word.
pub fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

/// The random markers framing one trailer: `START<number>SEP<pwd>SEP<export -p>END\n`.
struct Markers {
    start: Vec<u8>,
    sep: Vec<u8>,
    end: Vec<u8>,
}

impl Markers {
    fn new() -> Self {
        let nonce = format!("{:032x}", rand::random::<u128>());
        Markers {
            start: format!("__LUCID_{nonce}_BEGIN__").into_bytes(),
            sep: format!("__LUCID_{nonce}_SEP__").into_bytes(),
            end: format!("__LUCID_{nonce}_END__\n").into_bytes(),
        }
    }

    /// Shell code printing the trailer with `number` (e.g. `$?`), all builtins.
    fn trailer_code(&self, number: &str) -> String {
        let start = String::from_utf8_lossy(&self.start);
        let sep = String::from_utf8_lossy(&self.sep);
        let end = String::from_utf8_lossy(&self.end[..self.end.len() - 1]);
        format!(
            "printf '{start}%d{sep}%s{sep}' \"{number}\" \"$PWD\"; export -p; printf '{end}\\n'"
        )
    }
}

/// The fields of a trailer.
struct Trailer {
    number: i64,
    cwd: String,
    /// `export -p` output: shell code re-creating the exported variables.
    exports: String,
}

/// Output kept up to a cap, every byte counted.
struct CappedOutput {
    kept: Vec<u8>,
    total: u64,
}

impl CappedOutput {
    fn new() -> Self {
        CappedOutput {
            kept: Vec::new(),
            total: 0,
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        self.total += bytes.len() as u64;
        let room = OUTPUT_STORE_CAP_BYTES.saturating_sub(self.kept.len());
        self.kept.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.kept).into_owned()
    }
}

/// Why reading stopped before a trailer.
enum StreamEnd {
    /// The output ended (or failed): the shell is gone.
    Closed(String),
    /// Garbage where a trailer should be.
    Protocol(String),
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    let first = needle[0];
    let last_start = haystack.len() - needle.len();
    let mut i = 0;
    while i <= last_start {
        match haystack[i..=last_start].iter().position(|&b| b == first) {
            None => return None,
            Some(offset) => {
                let at = i + offset;
                if &haystack[at..at + needle.len()] == needle {
                    return Some(at);
                }
                i = at + 1;
            }
        }
    }
    None
}

/// One running shell process.
struct ShellProcess {
    input: Option<Pin<Box<dyn AsyncWrite + Send>>>,
    output: BoxStream<'static, io::Result<Bytes>>,
    exit_status: Option<BoxFuture<'static, Option<i64>>>,
    /// The shell's pid as it sees itself; 0 until the ready trailer arrived.
    pid: u32,
    /// Bytes read but not yet attributed.
    pending: Vec<u8>,
}

impl ShellProcess {
    fn new(channels: ShellChannels) -> Self {
        ShellProcess {
            input: channels.input,
            output: channels.output,
            exit_status: Some(channels.exit_status),
            pid: 0,
            pending: Vec::new(),
        }
    }

    async fn write(&mut self, text: &str) -> io::Result<()> {
        let input = self.input.as_mut().ok_or_else(|| {
            io::Error::new(io::ErrorKind::BrokenPipe, "the shell has no stdin attached")
        })?;
        input.write_all(text.as_bytes()).await?;
        input.flush().await
    }

    /// Reads output into `sink` until the trailer framed by `markers`. Cancel-safe: dropping
    /// the future loses no byte (they stay in `pending` or are already in `sink`).
    async fn read_trailer(
        &mut self,
        markers: &Markers,
        sink: &mut CappedOutput,
    ) -> Result<Trailer, StreamEnd> {
        loop {
            if let Some(trailer) = self.take_trailer(markers, sink)? {
                return Ok(trailer);
            }
            let ended = match self.output.next().await {
                Some(Ok(chunk)) => {
                    self.pending.extend_from_slice(&chunk);
                    continue;
                }
                Some(Err(e)) => e.to_string(),
                None => "its output ended".to_string(),
            };
            // No trailer will come: whatever is left was printed by the command.
            self.flush_pending(sink);
            return Err(StreamEnd::Closed(ended));
        }
    }

    /// Moves output bytes from `pending` to `sink` and extracts a complete trailer if present.
    fn take_trailer(
        &mut self,
        markers: &Markers,
        sink: &mut CappedOutput,
    ) -> Result<Option<Trailer>, StreamEnd> {
        let Some(start) = find(&self.pending, &markers.start) else {
            // Keep only a tail that could be the beginning of a marker split across chunks.
            let keep = marker_prefix_suffix(&self.pending, &markers.start);
            let flush = self.pending.len() - keep;
            sink.push(&self.pending[..flush]);
            self.pending.drain(..flush);
            return Ok(None);
        };
        sink.push(&self.pending[..start]);
        self.pending.drain(..start);
        let body_start = markers.start.len();
        let Some(end) = find(&self.pending[body_start..], &markers.end) else {
            if self.pending.len() > MAX_TRAILER_BYTES {
                return Err(StreamEnd::Protocol("unterminated trailer".into()));
            }
            return Ok(None);
        };
        let body = &self.pending[body_start..body_start + end];
        let trailer = parse_trailer(body, &markers.sep)
            .ok_or_else(|| StreamEnd::Protocol("malformed trailer".into()))?;
        self.pending.drain(..body_start + end + markers.end.len());
        Ok(Some(trailer))
    }

    /// Hands every byte not yet attributed to `sink` (when no trailer is coming any more).
    fn flush_pending(&mut self, sink: &mut CappedOutput) {
        sink.push(&self.pending);
        self.pending.clear();
    }

    /// The exit status of a shell whose output has ended.
    async fn exit_status(&mut self) -> Option<i64> {
        let status = self.exit_status.take()?;
        tokio::time::timeout(EXIT_STATUS_TIMEOUT, status)
            .await
            .ok()
            .flatten()
    }
}

/// Length of the longest suffix of `data` that is a proper prefix of `marker`.
fn marker_prefix_suffix(data: &[u8], marker: &[u8]) -> usize {
    let longest = data.len().min(marker.len().saturating_sub(1));
    (1..=longest)
        .rev()
        .find(|&k| data[data.len() - k..] == marker[..k])
        .unwrap_or(0)
}

fn parse_trailer(body: &[u8], sep: &[u8]) -> Option<Trailer> {
    let first = find(body, sep)?;
    let number = std::str::from_utf8(&body[..first]).ok()?.parse().ok()?;
    let rest = &body[first + sep.len()..];
    let second = find(rest, sep)?;
    Some(Trailer {
        number,
        cwd: String::from_utf8_lossy(&rest[..second]).into_owned(),
        exports: String::from_utf8_lossy(&rest[second + sep.len()..]).into_owned(),
    })
}

/// What a new shell must restore.
struct ShellState {
    process: Option<ShellProcess>,
    /// The last cwd the shell reported.
    cwd: String,
    /// The last `export -p` the shell reported.
    exports: String,
}

/// Drives a shell on a [`ShellHost`]: one command at a time, cwd and exported variables kept
/// between commands.
pub struct PersistentShell {
    host: Arc<dyn ShellHost>,
    mode: ShellMode,
    state: tokio::sync::Mutex<ShellState>,
    /// Cancellation tokens of the commands running or waiting to run.
    running: StdMutex<HashMap<u64, CancellationToken>>,
    next_token: AtomicU64,
    /// pid of the current persistent shell (0 = none), for synchronous cleanup on drop.
    current_pid: AtomicU32,
}

/// Removes a command's token from the running set when the command ends.
struct TokenGuard<'a> {
    shell: &'a PersistentShell,
    id: u64,
}

impl Drop for TokenGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut running) = self.shell.running.lock() {
            running.remove(&self.id);
        }
    }
}

/// How a command's wait ended.
enum Waited {
    Done(Trailer),
    Ended(StreamEnd),
    TimedOut,
    Interrupted,
}

impl PersistentShell {
    /// Starts a persistent shell in `cwd` (staying in the host's base directory if `cwd` does
    /// not exist) and waits until it is ready.
    pub async fn start(host: Arc<dyn ShellHost>, cwd: &str) -> Result<Self, SandboxError> {
        let shell = Self::new(host, ShellMode::Persistent, cwd);
        {
            let mut state = shell.state.lock().await;
            shell.ensure_process(&mut state).await?;
        }
        Ok(shell)
    }

    /// A shell that starts a fresh `sh -c` for every command (fallback mode).
    pub fn per_command(host: Arc<dyn ShellHost>, cwd: &str) -> Self {
        Self::new(host, ShellMode::PerCommand, cwd)
    }

    fn new(host: Arc<dyn ShellHost>, mode: ShellMode, cwd: &str) -> Self {
        PersistentShell {
            host,
            mode,
            state: tokio::sync::Mutex::new(ShellState {
                process: None,
                cwd: cwd.to_string(),
                exports: String::new(),
            }),
            running: StdMutex::new(HashMap::new()),
            next_token: AtomicU64::new(0),
            current_pid: AtomicU32::new(0),
        }
    }

    pub fn mode(&self) -> ShellMode {
        self.mode
    }

    /// The pid of the current persistent shell as it sees itself, if one is running.
    pub fn current_pid(&self) -> Option<u32> {
        match self.current_pid.load(Ordering::SeqCst) {
            0 => None,
            pid => Some(pid),
        }
    }

    /// The last working directory the shell reported.
    pub async fn cwd(&self) -> String {
        self.state.lock().await.cwd.clone()
    }

    /// Interrupts the running command and any command waiting to run.
    pub fn interrupt(&self) {
        if let Ok(running) = self.running.lock() {
            for token in running.values() {
                token.cancel();
            }
        }
    }

    /// Kills the shell and everything it started. The next command starts a fresh shell.
    pub async fn close(&self) {
        self.interrupt();
        let mut state = self.state.lock().await;
        if let Some(process) = state.process.take() {
            self.discard(process).await;
        }
    }

    /// Runs one command. Errors only when no shell can be started; a command that fails,
    /// times out, is interrupted or kills its shell gives an [`ExecOutput`] saying so.
    pub async fn exec(&self, command: &str, timeout: Duration) -> Result<ExecOutput, SandboxError> {
        if command.contains('\0') {
            return Err(SandboxError::Io(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the command contains a NUL byte",
            )));
        }
        let token = CancellationToken::new();
        let id = self.next_token.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut running) = self.running.lock() {
            running.insert(id, token.clone());
        }
        let _guard = TokenGuard { shell: self, id };

        let mut state = self.state.lock().await;
        if token.is_cancelled() {
            return Ok(ExecOutput {
                output: String::new(),
                exit_code: None,
                total_bytes: 0,
                timed_out: false,
                interrupted: true,
            });
        }
        let deadline = Instant::now() + timeout;
        let markers = Markers::new();
        let frame = format!(
            "command eval {} </dev/null 2>&1; {}\n",
            shell_quote(command),
            markers.trailer_code("$?")
        );

        let mut process = match self.mode {
            ShellMode::Persistent => {
                self.ensure_process(&mut state).await?;
                match state.process.take() {
                    Some(process) => process,
                    None => return Err(SandboxError::ShellGone("no shell is running".into())),
                }
            }
            ShellMode::PerCommand => {
                let ready = Markers::new();
                let script = format!("{}{frame}", init_script(&state, &ready));
                let channels = self.host.launch(ShellLaunch::Script(script)).await?;
                let mut process = ShellProcess::new(channels);
                let trailer = wait_ready(&mut process, &ready).await?;
                process.pid = trailer_pid(&trailer)?;
                process
            }
        };

        let mut sink = CappedOutput::new();
        let waited = {
            let run = async {
                if self.mode == ShellMode::Persistent {
                    if let Err(e) = process.write(&frame).await {
                        return Waited::Ended(StreamEnd::Closed(format!(
                            "cannot send the command: {e}"
                        )));
                    }
                }
                match process.read_trailer(&markers, &mut sink).await {
                    Ok(trailer) => Waited::Done(trailer),
                    Err(end) => Waited::Ended(end),
                }
            };
            tokio::select! {
                waited = run => waited,
                _ = tokio::time::sleep_until(deadline) => Waited::TimedOut,
                _ = token.cancelled() => Waited::Interrupted,
            }
        };

        let mut note = None;
        let (exit_code, timed_out, interrupted) = match waited {
            Waited::Done(trailer) => {
                state.cwd = trailer.cwd;
                state.exports = trailer.exports;
                match self.mode {
                    ShellMode::Persistent => state.process = Some(process),
                    ShellMode::PerCommand => drop(process),
                }
                (Some(trailer.number), false, false)
            }
            Waited::TimedOut | Waited::Interrupted => {
                process.flush_pending(&mut sink);
                self.discard(process).await;
                (
                    None,
                    matches!(waited, Waited::TimedOut),
                    matches!(waited, Waited::Interrupted),
                )
            }
            Waited::Ended(end) => {
                let status = match &end {
                    StreamEnd::Closed(_) => process.exit_status().await,
                    StreamEnd::Protocol(_) => None,
                };
                self.discard(process).await;
                let code = match (self.mode, status, end) {
                    // A one-shot shell ending early is the command exiting: its status is the
                    // command's.
                    (ShellMode::PerCommand, Some(code), _) => Some(code),
                    (_, Some(code), _) => {
                        note = Some(format!("the shell exited with status {code}"));
                        None
                    }
                    (_, None, StreamEnd::Closed(reason) | StreamEnd::Protocol(reason)) => {
                        note = Some(format!("the shell stopped ({reason})"));
                        None
                    }
                };
                (code, false, false)
            }
        };

        if self.mode == ShellMode::Persistent && state.process.is_none() {
            if let Err(e) = self.ensure_process(&mut state).await {
                tracing::warn!(error = %e, "could not restart the sandbox shell");
            }
        }
        let mut output = sink.text();
        if let Some(note) = note {
            if !output.is_empty() && !output.ends_with('\n') {
                output.push('\n');
            }
            output.push_str(&format!(
                "[{note}; a new shell was started in {}]",
                state.cwd
            ));
        }
        Ok(ExecOutput {
            output,
            exit_code,
            total_bytes: sink.total,
            timed_out,
            interrupted,
        })
    }

    /// Kills a shell that is no longer trusted, with everything it started, and forgets it.
    async fn discard(&self, process: ShellProcess) {
        if process.pid > 1 {
            if let Err(e) = self.host.kill_shell(process.pid).await {
                tracing::warn!(error = %e, "could not kill the old sandbox shell");
            }
        }
        let _ =
            self.current_pid
                .compare_exchange(process.pid, 0, Ordering::SeqCst, Ordering::SeqCst);
        drop(process);
    }

    /// Starts a persistent shell if none is running.
    async fn ensure_process(&self, state: &mut ShellState) -> Result<(), SandboxError> {
        if state.process.is_some() {
            return Ok(());
        }
        let channels = self.host.launch(ShellLaunch::Persistent).await?;
        let mut process = ShellProcess::new(channels);
        let ready = Markers::new();
        if let Err(e) = process.write(&init_script(state, &ready)).await {
            return Err(SandboxError::ShellGone(format!(
                "the shell did not start: cannot write to it: {e}"
            )));
        }
        let trailer = wait_ready(&mut process, &ready).await?;
        process.pid = trailer_pid(&trailer)?;
        self.current_pid.store(process.pid, Ordering::SeqCst);
        state.cwd = trailer.cwd;
        state.exports = trailer.exports;
        state.process = Some(process);
        Ok(())
    }
}

/// Reads a new shell's ready trailer.
async fn wait_ready(process: &mut ShellProcess, ready: &Markers) -> Result<Trailer, SandboxError> {
    let mut ignored = CappedOutput::new();
    match tokio::time::timeout(STARTUP_TIMEOUT, process.read_trailer(ready, &mut ignored)).await {
        Ok(Ok(trailer)) => Ok(trailer),
        Ok(Err(StreamEnd::Closed(reason) | StreamEnd::Protocol(reason))) => Err(
            SandboxError::ShellGone(format!("the shell did not start: {reason}")),
        ),
        Err(_) => Err(SandboxError::ShellGone(
            "the shell did not start in time".into(),
        )),
    }
}

/// Merges stderr into stdout, restores the exported variables and cwd of the previous shell
/// (staying in the base directory if the cwd is gone) and prints the ready trailer with the
/// shell's pid.
fn init_script(state: &ShellState, ready: &Markers) -> String {
    let mut script = String::from("exec 2>&1\n");
    if !state.exports.trim().is_empty() {
        script.push_str(&format!(
            "command eval {} >/dev/null 2>&1\n",
            shell_quote(&state.exports)
        ));
    }
    script.push_str(&format!(
        "cd -- {} >/dev/null 2>&1\n{}\n",
        shell_quote(&state.cwd),
        ready.trailer_code("$$")
    ));
    script
}

fn trailer_pid(trailer: &Trailer) -> Result<u32, SandboxError> {
    u32::try_from(trailer.number)
        .ok()
        .filter(|pid| *pid > 1)
        .ok_or_else(|| SandboxError::ShellGone(format!("implausible shell pid {}", trailer.number)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::local::LocalShellHost;

    const SECOND: Duration = Duration::from_secs(1);

    async fn local_shell(dir: &std::path::Path) -> PersistentShell {
        let host = Arc::new(LocalShellHost::new(dir.to_path_buf()));
        PersistentShell::start(host, &dir.to_string_lossy())
            .await
            .expect("local shell starts")
    }

    #[test]
    fn quoting_survives_single_quotes() {
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn find_locates_needles_across_false_starts() {
        assert_eq!(find(b"aaab", b"ab"), Some(2));
        assert_eq!(find(b"abc", b"abcd"), None);
        assert_eq!(find(b"xx__L__LU", b"__LU"), Some(5));
        assert_eq!(find(b"", b"a"), None);
    }

    #[test]
    fn trailer_split_across_chunks_is_found_and_output_is_exact() {
        let markers = Markers::new();
        let mut stream_bytes = b"hello world".to_vec();
        stream_bytes.extend_from_slice(&markers.start);
        stream_bytes.extend_from_slice(b"7");
        stream_bytes.extend_from_slice(&markers.sep);
        stream_bytes.extend_from_slice(b"/tmp/a b");
        stream_bytes.extend_from_slice(&markers.sep);
        stream_bytes.extend_from_slice(b"export X='1'\n");
        stream_bytes.extend_from_slice(&markers.end);
        stream_bytes.extend_from_slice(b"next");
        for split in 1..stream_bytes.len() {
            let mut process = ShellProcess::new(ShellChannels {
                input: None,
                output: futures::stream::empty().boxed(),
                exit_status: Box::pin(async { None }),
            });
            let mut sink = CappedOutput::new();
            process.pending.extend_from_slice(&stream_bytes[..split]);
            let trailer = match process.take_trailer(&markers, &mut sink).ok().flatten() {
                Some(t) => {
                    process.pending.extend_from_slice(&stream_bytes[split..]);
                    t
                }
                None => {
                    process.pending.extend_from_slice(&stream_bytes[split..]);
                    process
                        .take_trailer(&markers, &mut sink)
                        .ok()
                        .flatten()
                        .expect("trailer after the second chunk")
                }
            };
            assert_eq!(trailer.number, 7);
            assert_eq!(trailer.cwd, "/tmp/a b");
            assert_eq!(trailer.exports, "export X='1'\n");
            assert_eq!(sink.kept, b"hello world", "split at {split}");
            assert_eq!(process.pending, b"next");
        }
    }

    #[test]
    fn malformed_trailers_are_protocol_errors() {
        let markers = Markers::new();
        let mut process = ShellProcess::new(ShellChannels {
            input: None,
            output: futures::stream::empty().boxed(),
            exit_status: Box::pin(async { None }),
        });
        process.pending.extend_from_slice(&markers.start);
        process.pending.extend_from_slice(b"notanumber");
        process.pending.extend_from_slice(&markers.end);
        let mut sink = CappedOutput::new();
        assert!(matches!(
            process.take_trailer(&markers, &mut sink),
            Err(StreamEnd::Protocol(_))
        ));
    }

    #[test]
    fn only_a_possible_marker_start_is_held_back() {
        assert_eq!(marker_prefix_suffix(b"before\n", b"__LUCID_x"), 0);
        assert_eq!(marker_prefix_suffix(b"abc__LU", b"__LUCID_x"), 4);
        assert_eq!(marker_prefix_suffix(b"_", b"__LUCID_x"), 1);
        assert_eq!(marker_prefix_suffix(b"__LUCID_x", b"__LUCID_x"), 0);
    }

    #[test]
    fn capped_output_counts_everything_and_keeps_the_cap() {
        let mut out = CappedOutput::new();
        let chunk = vec![b'x'; 300 * 1024];
        for _ in 0..10 {
            out.push(&chunk);
        }
        assert_eq!(out.kept.len(), OUTPUT_STORE_CAP_BYTES);
        assert_eq!(out.total, 10 * 300 * 1024);
    }

    #[tokio::test]
    async fn cwd_and_exported_variables_persist() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub dir")).unwrap();
        let shell = local_shell(dir.path()).await;
        let r = shell
            .exec("cd 'sub dir' && export GREETING=hi", SECOND * 5)
            .await
            .unwrap();
        assert_eq!(r.exit_code, Some(0));
        let r = shell.exec("echo $GREETING; pwd", SECOND * 5).await.unwrap();
        let expected_dir = dir.path().canonicalize().unwrap().join("sub dir");
        assert_eq!(r.output, format!("hi\n{}\n", expected_dir.display()));
        assert_eq!(shell.cwd().await, expected_dir.to_string_lossy());
    }

    #[tokio::test]
    async fn exit_codes_and_stderr_are_captured() {
        let dir = tempfile::tempdir().unwrap();
        let shell = local_shell(dir.path()).await;
        let cases = [
            ("true", Some(0)),
            ("false", Some(1)),
            ("(exit 3)", Some(3)),
            ("sh -c 'exit 42'", Some(42)),
            ("no-such-command-xyz", Some(127)),
        ];
        for (command, code) in cases {
            let r = shell.exec(command, SECOND * 5).await.unwrap();
            assert_eq!(r.exit_code, code, "{command}");
            assert!(!r.timed_out && !r.interrupted);
        }
        let r = shell
            .exec("echo out; echo err >&2", SECOND * 5)
            .await
            .unwrap();
        assert_eq!(r.output, "out\nerr\n");
        let r = shell.exec("printf 'no newline'", SECOND * 5).await.unwrap();
        assert_eq!(r.output, "no newline");
        assert_eq!(r.total_bytes, 10);
    }

    #[tokio::test]
    async fn syntax_errors_and_quotes_do_not_break_the_shell() {
        let dir = tempfile::tempdir().unwrap();
        let shell = local_shell(dir.path()).await;
        let r = shell.exec("echo \"unterminated", SECOND * 5).await.unwrap();
        assert_eq!(r.exit_code, Some(2));
        let r = shell.exec("if then fi", SECOND * 5).await.unwrap();
        assert_ne!(r.exit_code, Some(0));
        let r = shell
            .exec("echo 'single' \"double\" $((1+2))", SECOND * 5)
            .await
            .unwrap();
        assert_eq!(r.output, "single double 3\n");
        let r = shell
            .exec("cat <<'EOF'\nline 1\n$HOME stays\nEOF", SECOND * 5)
            .await
            .unwrap();
        assert_eq!(r.output, "line 1\n$HOME stays\n");
        assert!(shell.exec("bad\0command", SECOND).await.is_err());
    }

    #[tokio::test]
    async fn commands_cannot_read_the_protocol_stream() {
        let dir = tempfile::tempdir().unwrap();
        let shell = local_shell(dir.path()).await;
        let r = shell
            .exec("cat; read x; echo got=$x", SECOND * 5)
            .await
            .unwrap();
        assert_eq!(r.output, "got=\n");
        assert_eq!(r.exit_code, Some(0));
        let r = shell.exec("echo still here", SECOND * 5).await.unwrap();
        assert_eq!(r.output, "still here\n");
    }

    #[tokio::test]
    async fn output_with_fake_markers_is_not_mistaken_for_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let shell = local_shell(dir.path()).await;
        let fake = "__LUCID_00000000000000000000000000000000_BEGIN__0 /x__LUCID_00000000000000000000000000000000_END__";
        let r = shell
            .exec(&format!("echo '{fake}'; echo after; exit_status_is_5() {{ return 5; }}; exit_status_is_5"), SECOND * 5)
            .await
            .unwrap();
        assert_eq!(r.output, format!("{fake}\nafter\n"));
        assert_eq!(r.exit_code, Some(5));
    }

    #[tokio::test]
    async fn large_output_is_capped_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let shell = local_shell(dir.path()).await;
        let r = shell
            .exec("head -c 10000000 /dev/zero | tr '\\0' x", SECOND * 30)
            .await
            .unwrap();
        assert_eq!(r.exit_code, Some(0));
        assert_eq!(r.total_bytes, 10_000_000);
        assert_eq!(r.output.len(), OUTPUT_STORE_CAP_BYTES);
        assert!(r.output.bytes().all(|b| b == b'x'));
        let r = shell.exec("echo ok", SECOND * 5).await.unwrap();
        assert_eq!(r.output, "ok\n");
    }

    #[tokio::test]
    async fn invalid_utf8_is_converted_lossily() {
        let dir = tempfile::tempdir().unwrap();
        let shell = local_shell(dir.path()).await;
        let r = shell.exec("printf 'a\\377b'", SECOND * 5).await.unwrap();
        assert_eq!(r.output, "a\u{FFFD}b");
        assert_eq!(r.total_bytes, 3);
    }

    #[tokio::test]
    async fn timeout_kills_the_command_and_keeps_the_shell() {
        let dir = tempfile::tempdir().unwrap();
        let shell = local_shell(dir.path()).await;
        shell
            .exec("export KEEP='it''s kept'; cd /", SECOND * 5)
            .await
            .unwrap();
        let started = std::time::Instant::now();
        let r = shell
            .exec("echo before; sleep 30", Duration::from_millis(300))
            .await
            .unwrap();
        assert!(started.elapsed() < SECOND * 3, "{:?}", started.elapsed());
        assert!(r.timed_out);
        assert!(!r.interrupted);
        assert_eq!(r.exit_code, None);
        assert_eq!(r.output, "before\n");
        let r = shell.exec("echo $KEEP; pwd", SECOND * 5).await.unwrap();
        assert_eq!(
            r.output, "its kept\n/\n",
            "exports and cwd survive the restart"
        );
    }

    #[tokio::test]
    async fn interrupt_stops_sleep_quickly_and_the_shell_still_works() {
        let dir = tempfile::tempdir().unwrap();
        let shell = Arc::new(local_shell(dir.path()).await);
        shell.exec("cd /tmp", SECOND * 5).await.unwrap();
        let runner = {
            let shell = shell.clone();
            tokio::spawn(async move { shell.exec("sleep 30", SECOND * 60).await })
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        let started = std::time::Instant::now();
        shell.interrupt();
        let r = runner.await.unwrap().unwrap();
        assert!(started.elapsed() < SECOND * 2, "{:?}", started.elapsed());
        assert!(r.interrupted);
        assert_eq!(r.exit_code, None);
        let r = shell.exec("pwd", SECOND * 5).await.unwrap();
        assert_eq!(r.output, "/tmp\n");
    }

    #[tokio::test]
    async fn a_busy_builtin_loop_is_stopped_by_restarting_in_the_same_cwd() {
        let dir = tempfile::tempdir().unwrap();
        let shell = local_shell(dir.path()).await;
        shell.exec("cd /tmp", SECOND * 5).await.unwrap();
        let old_pid = shell.current_pid().unwrap();
        let started = std::time::Instant::now();
        let r = shell
            .exec(
                "trap '' INT TERM; while :; do :; done",
                Duration::from_millis(200),
            )
            .await
            .unwrap();
        assert!(started.elapsed() < SECOND * 3);
        assert!(r.timed_out);
        let r = shell.exec("pwd", SECOND * 5).await.unwrap();
        assert_eq!(r.output, "/tmp\n");
        assert_ne!(shell.current_pid(), Some(old_pid));
    }

    #[tokio::test]
    async fn a_dead_shell_is_reported_and_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let shell = local_shell(dir.path()).await;
        shell.exec("cd /tmp", SECOND * 5).await.unwrap();
        let r = shell.exec("echo bye; exit 3", SECOND * 5).await.unwrap();
        assert_eq!(r.exit_code, None);
        assert!(r.output.starts_with("bye\n"), "{}", r.output);
        assert!(r.output.contains("status 3"), "{}", r.output);
        let r = shell.exec("pwd", SECOND * 5).await.unwrap();
        assert_eq!(r.output, "/tmp\n");
        assert_eq!(r.exit_code, Some(0));
    }

    #[tokio::test]
    async fn interrupt_without_a_running_command_is_harmless() {
        let dir = tempfile::tempdir().unwrap();
        let shell = local_shell(dir.path()).await;
        shell.interrupt();
        let r = shell.exec("echo fine", SECOND * 5).await.unwrap();
        assert_eq!(r.output, "fine\n");
        assert!(!r.interrupted);
    }

    #[tokio::test]
    async fn per_command_mode_keeps_the_cwd_and_exported_variables() {
        let dir = tempfile::tempdir().unwrap();
        let host = Arc::new(LocalShellHost::new(dir.path().to_path_buf()));
        let shell = PersistentShell::per_command(host, &dir.path().to_string_lossy());
        assert_eq!(shell.mode(), ShellMode::PerCommand);
        let r = shell
            .exec("cd /tmp; export X=1; Y=2", SECOND * 5)
            .await
            .unwrap();
        assert_eq!(r.exit_code, Some(0));
        let r = shell
            .exec("pwd; echo x=$X y=$Y; exit 4", SECOND * 5)
            .await
            .unwrap();
        assert_eq!(
            r.output, "/tmp\nx=1 y=\n",
            "exported variables persist, plain ones do not"
        );
        assert_eq!(r.exit_code, Some(4));
        let r = shell.exec("(exit 4)", SECOND * 5).await.unwrap();
        assert_eq!(r.exit_code, Some(4));
        let started = std::time::Instant::now();
        let r = shell
            .exec("sleep 30", Duration::from_millis(200))
            .await
            .unwrap();
        assert!(r.timed_out);
        assert!(started.elapsed() < SECOND * 3);
    }
}
