//! Building and running one `git` process on the host.
//!
//! Every invocation gets the same hardening: a clean environment (inherited `GIT_*` variables
//! removed, `GIT_CONFIG_NOSYSTEM=1`, `GIT_TERMINAL_PROMPT=0`), `-c` overrides that disable
//! credential helpers, hooks, fsmonitor, automatic gc and signing, and a protocol allow-list
//! with only the transport of the operation's URL. Credentials travel only through the
//! [`Askpass`] helper and two environment variables of the child process — never in argv.
//! Each git runs in its own process group, which is killed on timeout or cancellation.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use super::askpass::{
    prompts, Askpass, PASSWORD_PROMPT_VAR, PASSWORD_VAR, USERNAME_PROMPT_VAR, USERNAME_VAR,
};
use super::error::{summarise_output, GitError, Secrets};
use super::url::RemoteKind;
use super::GitCredentials;

/// Config overrides applied to every git run (`-c key=value`, highest precedence).
const HARDENING: &[&str] = &[
    // An empty value resets the list: no configured helper sees or stores the token.
    "credential.helper=",
    // Prompts name only scheme, host and port (what the askpass helper matches).
    "credential.useHttpPath=false",
    // No hook of the repository runs on the host.
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    // No background `gc --auto` / maintenance process outlives the operation.
    "gc.auto=0",
    "maintenance.auto=false",
    "commit.gpgSign=false",
    // Only the transport named by the operation's URL is allowed (added per invocation).
    "protocol.allow=never",
];

/// Output kept from stderr (the tail: git prints the cause last).
const STDERR_KEEP_BYTES: usize = 64 * 1024;
/// Output kept from stdout.
const STDOUT_KEEP_BYTES: usize = 4 * 1024 * 1024;
/// Minimum time between two progress lines of the same phase.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(250);

/// A receiver of progress lines (already scrubbed of secrets).
pub(crate) type ProgressFn<'a> = &'a (dyn Fn(String) + Send + Sync);

/// One git run: what to run, where, with which transport and credentials.
pub(crate) struct Invocation<'a> {
    /// Short name for messages (`clone`, `push`, …).
    pub(crate) operation: &'static str,
    pub(crate) cwd: &'a Path,
    pub(crate) args: Vec<OsString>,
    /// The one transport this run may use; `None` for purely local commands.
    pub(crate) transport: Option<RemoteKind>,
    /// Added as `safe.directory` so a workspace written by the sandbox's user is accepted
    /// (the workspace is checked by `repo_check` first).
    pub(crate) safe_directory: Option<&'a Path>,
    pub(crate) credentials: Option<&'a GitCredentials>,
    /// `scheme://host[:port]` the credentials are for; the helper answers no other origin.
    pub(crate) credential_origin: Option<String>,
    /// Set for every run that talks to a remote, with or without credentials.
    pub(crate) askpass: Option<&'a Askpass>,
    pub(crate) env: Vec<(&'static str, String)>,
    pub(crate) stdin: Option<Vec<u8>>,
    /// A file given to git as its standard input (instead of `stdin`).
    pub(crate) stdin_file: Option<&'a Path>,
    /// Further `-c key=value` settings of this run (after the hardening).
    pub(crate) config: Vec<String>,
    /// Drop proxy variables from the environment (a restricted outbound policy: the checked
    /// address must be the one connected to).
    pub(crate) no_proxy: bool,
    pub(crate) timeout: Duration,
}

impl<'a> Invocation<'a> {
    /// A local command in `cwd` with the given arguments.
    pub(crate) fn local(
        operation: &'static str,
        cwd: &'a Path,
        args: &[&str],
        timeout: Duration,
    ) -> Self {
        Self {
            operation,
            cwd,
            args: args.iter().map(OsString::from).collect(),
            transport: None,
            safe_directory: None,
            credentials: None,
            credential_origin: None,
            askpass: None,
            env: Vec::new(),
            stdin: None,
            stdin_file: None,
            config: Vec::new(),
            no_proxy: false,
            timeout,
        }
    }

    pub(crate) fn secrets(&self) -> Secrets {
        Secrets::new(self.credentials.map(|c| c.token.as_str()))
    }
}

/// What a finished git printed, with secrets already scrubbed.
#[derive(Debug)]
pub(crate) struct GitOutput {
    pub(crate) status: ExitStatus,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl GitOutput {
    pub(crate) fn success(&self) -> bool {
        self.status.success()
    }
}

/// Builds the `git` command for `inv` without running it.
pub(crate) fn build_command(program: &Path, inv: &Invocation<'_>) -> Command {
    let mut cmd = Command::new(program);
    cmd.current_dir(inv.cwd);
    for (key, _) in std::env::vars_os() {
        let inherited_git_setting = key.to_str().is_none_or(|k| {
            k.starts_with("GIT_")
                || k == "SSH_ASKPASS"
                || k == USERNAME_VAR
                || k == PASSWORD_VAR
                || (inv.no_proxy && k.to_ascii_lowercase().ends_with("_proxy"))
        });
        if inherited_git_setting {
            cmd.env_remove(&key);
        }
    }
    // Neither the system's nor the user's git configuration takes part: a global LFS filter
    // or `insteadOf` rule would otherwise run or redirect on untrusted repository content.
    cmd.env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_LFS_SKIP_SMUDGE", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GCM_INTERACTIVE", "never")
        .env("LC_ALL", "C");
    for (key, value) in &inv.env {
        cmd.env(key, value);
    }
    if let Some(askpass) = inv.askpass {
        cmd.env("GIT_ASKPASS", askpass.script());
        if let (Some(creds), Some(origin)) = (inv.credentials, &inv.credential_origin) {
            let (user_prompt, pass_prompt) = prompts(origin, &creds.username);
            cmd.env(USERNAME_VAR, &creds.username)
                .env(PASSWORD_VAR, &creds.token)
                .env(USERNAME_PROMPT_VAR, user_prompt)
                .env(PASSWORD_PROMPT_VAR, pass_prompt);
        }
    }
    for setting in HARDENING {
        cmd.arg("-c").arg(setting);
    }
    if let Some(kind) = inv.transport {
        cmd.arg("-c")
            .arg(format!("protocol.{}.allow=always", kind.protocol()));
    }
    for setting in &inv.config {
        cmd.arg("-c").arg(setting);
    }
    if let Some(dir) = inv.safe_directory {
        let mut setting = OsString::from("safe.directory=");
        setting.push(dir.as_os_str());
        cmd.arg("-c").arg(setting);
    }
    cmd.args(&inv.args);
    cmd.stdin(if inv.stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .kill_on_drop(true)
    .process_group(0);
    cmd
}

/// Runs `inv` to completion (or its timeout). A non-zero exit is not an error here: callers
/// decide, usually through [`failure`].
pub(crate) async fn run(
    program: &Path,
    inv: Invocation<'_>,
    progress: Option<ProgressFn<'_>>,
) -> Result<GitOutput, GitError> {
    let secrets = inv.secrets();
    let mut cmd = build_command(program, &inv);
    if let Some(path) = inv.stdin_file {
        let file = std::fs::File::open(path).map_err(|e| {
            GitError::io(format!("git {} could not read its input", inv.operation), e)
        })?;
        cmd.stdin(Stdio::from(file));
    }
    tracing::debug!(operation = inv.operation, cwd = %inv.cwd.display(), "running git");
    let mut child = cmd.spawn().map_err(|e| {
        GitError::GitUnavailable(format!("could not start {}: {e}", program.display()))
    })?;
    let mut group = ProcessGroupKiller::new(child.id());
    let stdin = child.stdin.take();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let input = inv.stdin;

    let work = async {
        let feed = async {
            if let (Some(mut pipe), Some(bytes)) = (stdin, input) {
                // git may exit without reading everything; a broken pipe is not our failure.
                let _ = pipe.write_all(&bytes).await;
                let _ = pipe.shutdown().await;
            }
        };
        let (_, out, err) = tokio::join!(
            feed,
            read_capped(stdout, STDOUT_KEEP_BYTES),
            read_stderr(stderr, &secrets, progress)
        );
        let status = child.wait().await;
        (status, out, err)
    };
    let (status, out, err) = match tokio::time::timeout(inv.timeout, work).await {
        Ok(done) => done,
        Err(_) => {
            tracing::warn!(operation = inv.operation, "git timed out; killing it");
            return Err(GitError::TimedOut {
                operation: inv.operation,
                after: inv.timeout,
            });
        }
    };
    let status = status.map_err(|e| GitError::io(format!("git {} failed", inv.operation), e))?;
    group.disarm();
    Ok(GitOutput {
        status,
        stdout: secrets.scrub(&String::from_utf8_lossy(&out)),
        stderr: err,
    })
}

/// Runs a local `inv` and returns its whole standard output as raw bytes (no cap, no text
/// conversion), for listings that must be complete; a non-zero exit is an error.
pub(crate) async fn run_raw_stdout(
    program: &Path,
    inv: Invocation<'_>,
) -> Result<Vec<u8>, GitError> {
    let operation = inv.operation;
    let mut cmd = build_command(program, &inv);
    let output = match tokio::time::timeout(inv.timeout, cmd.output()).await {
        Ok(result) => result.map_err(|e| {
            GitError::GitUnavailable(format!("could not start {}: {e}", program.display()))
        })?,
        Err(_) => {
            return Err(GitError::TimedOut {
                operation,
                after: inv.timeout,
            })
        }
    };
    if !output.status.success() {
        return Err(GitError::CommandFailed {
            operation,
            message: String::from_utf8_lossy(&output.stderr)
                .lines()
                .last()
                .unwrap_or("failed")
                .to_string(),
        });
    }
    Ok(output.stdout)
}

/// Runs `inv` and turns a non-zero exit into an error (see [`failure`]).
pub(crate) async fn run_checked(
    program: &Path,
    inv: Invocation<'_>,
    remote: Option<&str>,
) -> Result<GitOutput, GitError> {
    let operation = inv.operation;
    let output = run(program, inv, None).await?;
    if output.success() {
        Ok(output)
    } else {
        Err(failure(operation, &output, remote))
    }
}

/// The error for a failed git run: authentication and missing-repository failures are
/// recognised from git's (C-locale) messages; anything else is a scrubbed summary.
pub(crate) fn failure(
    operation: &'static str,
    output: &GitOutput,
    remote: Option<&str>,
) -> GitError {
    let text = format!("{}\n{}", output.stderr, output.stdout);
    if let Some(url) = remote {
        let lower = text.to_ascii_lowercase();
        let auth_markers = [
            "authentication failed",
            "could not read username",
            "could not read password",
            "terminal prompts disabled",
            "http basic: access denied",
            "invalid username or password",
            "the requested url returned error: 401",
            "the requested url returned error: 403",
        ];
        if auth_markers.iter().any(|m| lower.contains(m)) {
            return GitError::AuthenticationFailed {
                url: url.to_string(),
            };
        }
        let missing = lower.contains("the requested url returned error: 404")
            || lower.contains("does not appear to be a git repository")
            || (lower.contains("repository") && lower.contains("not found"));
        if missing {
            return GitError::RemoteNotFound {
                url: url.to_string(),
            };
        }
    }
    GitError::CommandFailed {
        operation,
        message: summarise_output(&text, &Secrets::default()),
    }
}

async fn read_capped(pipe: Option<impl AsyncRead + Unpin>, cap: usize) -> Vec<u8> {
    let mut kept = Vec::new();
    let Some(mut pipe) = pipe else { return kept };
    let mut buf = [0u8; 8192];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = cap.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
    kept
}

/// Reads stderr to its end: keeps a scrubbed tail for error messages and feeds complete
/// lines (split on `\r` and `\n`) to the progress callback, throttled.
async fn read_stderr(
    pipe: Option<impl AsyncRead + Unpin>,
    secrets: &Secrets,
    progress: Option<ProgressFn<'_>>,
) -> String {
    let Some(mut pipe) = pipe else {
        return String::new();
    };
    let mut tail = String::new();
    let mut pending: Vec<u8> = Vec::new();
    let mut throttle = ProgressThrottle::default();
    let mut buf = [0u8; 8192];
    let mut handle_line = |raw: &[u8], tail: &mut String| {
        let line = secrets.scrub(String::from_utf8_lossy(raw).trim_end());
        if line.is_empty() {
            return;
        }
        tail.push_str(&line);
        tail.push('\n');
        if tail.len() > STDERR_KEEP_BYTES {
            let mut cut = tail.len() - STDERR_KEEP_BYTES;
            while !tail.is_char_boundary(cut) {
                cut += 1;
            }
            tail.drain(..cut);
        }
        if let Some(report) = progress {
            if throttle.should_emit(&line) {
                report(line);
            }
        }
    };
    loop {
        let n = match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        for &byte in &buf[..n] {
            if byte == b'\n' || byte == b'\r' {
                handle_line(&pending, &mut tail);
                pending.clear();
            } else if pending.len() < STDERR_KEEP_BYTES {
                pending.push(byte);
            }
        }
    }
    handle_line(&pending, &mut tail);
    tail
}

/// Lets through the first line of each phase (`Receiving objects: …`), lines that finish a
/// phase (`…, done.`), other messages, and otherwise at most one line per interval.
#[derive(Default)]
struct ProgressThrottle {
    phase: String,
    last: Option<Instant>,
}

impl ProgressThrottle {
    fn should_emit(&mut self, line: &str) -> bool {
        let phase = match line.find(": ") {
            Some(i) if line[i..].contains('%') => &line[..i],
            _ => {
                self.phase.clear();
                return true;
            }
        };
        let now = Instant::now();
        let due = self
            .last
            .is_none_or(|t| now.duration_since(t) >= PROGRESS_INTERVAL);
        if phase != self.phase || line.ends_with("done.") || due {
            self.phase = phase.to_string();
            self.last = Some(now);
            true
        } else {
            false
        }
    }
}

/// Kills a child's whole process group (git and the helpers it started) when dropped armed.
struct ProcessGroupKiller {
    pgid: Option<i32>,
}

impl ProcessGroupKiller {
    fn new(pid: Option<u32>) -> Self {
        Self {
            pgid: pid.and_then(|p| i32::try_from(p).ok()).filter(|p| *p > 0),
        }
    }

    fn disarm(&mut self) {
        self.pgid = None;
    }
}

impl Drop for ProcessGroupKiller {
    fn drop(&mut self) {
        if let Some(pgid) = self.pgid {
            // SAFETY: kill(2) with a negative pid signals the process group we created for
            // this child (process_group(0) makes its pgid equal to its pid); no memory is
            // touched.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
    }
}

/// Absolute form of `path` for use as an argument (relative paths resolved against the
/// process's current directory).
pub(crate) fn absolute(path: &Path) -> Result<PathBuf, GitError> {
    std::path::absolute(path).map_err(|e| GitError::io("invalid path", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> GitCredentials {
        GitCredentials {
            username: "alice".into(),
            token: "tok-SECRET-42".into(),
        }
    }

    #[test]
    fn token_goes_to_the_environment_never_to_argv() {
        let ws = tempfile::tempdir().unwrap();
        let askpass = Askpass::create(ws.path()).unwrap();
        let c = creds();
        let mut inv = Invocation::local(
            "clone",
            ws.path(),
            &["clone", "--", "https://h/x"],
            Duration::from_secs(1),
        );
        inv.transport = Some(RemoteKind::Https);
        inv.credentials = Some(&c);
        inv.credential_origin = Some("https://h".into());
        inv.askpass = Some(&askpass);
        let cmd = build_command(Path::new("git"), &inv);
        let std = cmd.as_std();
        let args: Vec<String> = std
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert!(
            args.iter().all(|a| !a.contains("tok-SECRET-42")),
            "{args:?}"
        );
        assert!(args.windows(2).any(|w| w == ["-c", "credential.helper="]));
        assert!(args
            .windows(2)
            .any(|w| w == ["-c", "core.hooksPath=/dev/null"]));
        assert!(args.windows(2).any(|w| w == ["-c", "protocol.allow=never"]));
        assert!(args
            .windows(2)
            .any(|w| w == ["-c", "protocol.https.allow=always"]));
        assert!(!args.iter().any(|a| a.starts_with("protocol.file")));
        assert_eq!(&args[args.len() - 3..], ["clone", "--", "https://h/x"]);

        let env: Vec<(String, Option<String>)> = std
            .get_envs()
            .map(|(k, v)| {
                (
                    k.to_string_lossy().into_owned(),
                    v.map(|v| v.to_string_lossy().into_owned()),
                )
            })
            .collect();
        let get = |name: &str| {
            env.iter()
                .find(|(k, _)| k == name)
                .and_then(|(_, v)| v.clone())
        };
        assert_eq!(get(PASSWORD_VAR).as_deref(), Some("tok-SECRET-42"));
        assert_eq!(get(USERNAME_VAR).as_deref(), Some("alice"));
        assert_eq!(
            get(PASSWORD_PROMPT_VAR).as_deref(),
            Some("Password for 'https://alice@h': ")
        );
        assert_eq!(get("GIT_TERMINAL_PROMPT").as_deref(), Some("0"));
        assert_eq!(get("GIT_CONFIG_NOSYSTEM").as_deref(), Some("1"));
        assert_eq!(
            get("GIT_ASKPASS").map(PathBuf::from).as_deref(),
            Some(askpass.script())
        );
    }

    #[test]
    fn local_runs_get_no_credentials_and_no_transport() {
        let ws = tempfile::tempdir().unwrap();
        let inv = Invocation::local("status", ws.path(), &["status"], Duration::from_secs(1));
        let cmd = build_command(Path::new("git"), &inv);
        let std = cmd.as_std();
        assert!(std
            .get_envs()
            .all(|(k, v)| v.is_none() || (k != PASSWORD_VAR && k != "GIT_ASKPASS")));
        assert!(!std
            .get_args()
            .any(|a| a.to_string_lossy().ends_with(".allow=always")));
    }

    #[tokio::test]
    async fn timeout_kills_the_process_group() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("survived");
        // A stand-in "git" that starts a grandchild which would write a marker later.
        let script = dir.path().join("slow-git");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\n(sleep 2; touch {}) &\nsleep 30\n",
                marker.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let inv = Invocation::local("fetch", dir.path(), &[], Duration::from_millis(300));
        let started = Instant::now();
        let err = run(&script, inv, None).await.unwrap_err();
        assert!(
            matches!(
                err,
                GitError::TimedOut {
                    operation: "fetch",
                    ..
                }
            ),
            "{err}"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(
            !marker.exists(),
            "a process of the group outlived the timeout"
        );
    }

    #[test]
    fn failures_are_classified() {
        let out = |stderr: &str| GitOutput {
            status: std::os::unix::process::ExitStatusExt::from_raw(128 << 8),
            stdout: String::new(),
            stderr: stderr.into(),
        };
        let remote = Some("https://h/x.git");
        assert!(matches!(
            failure(
                "clone",
                &out("fatal: Authentication failed for 'https://h/x.git/'"),
                remote
            ),
            GitError::AuthenticationFailed { .. }
        ));
        assert!(matches!(
            failure(
                "clone",
                &out("fatal: could not read Username for 'https://h': terminal prompts disabled"),
                remote
            ),
            GitError::AuthenticationFailed { .. }
        ));
        assert!(matches!(
            failure(
                "clone",
                &out("fatal: repository 'https://h/x.git/' not found"),
                remote
            ),
            GitError::RemoteNotFound { .. }
        ));
        assert!(matches!(
            failure("commit", &out("error: something broke"), None),
            GitError::CommandFailed {
                operation: "commit",
                ..
            }
        ));
    }

    #[test]
    fn progress_is_throttled_per_phase() {
        let mut t = ProgressThrottle::default();
        assert!(t.should_emit("Cloning into 'x'..."));
        assert!(t.should_emit("Receiving objects:   1% (1/100)"));
        assert!(!t.should_emit("Receiving objects:   2% (2/100)"));
        assert!(t.should_emit("Receiving objects: 100% (100/100), done."));
        assert!(t.should_emit("Resolving deltas:   0% (0/10)"));
        assert!(t.should_emit("remote: hello"));
    }
}
