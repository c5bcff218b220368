//! [`GitError`], and the helpers that keep secrets out of everything git prints: every message
//! built from git's output goes through [`Secrets::scrub`] and [`summarise_output`].

use std::path::PathBuf;
use std::time::Duration;

use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use thiserror::Error;

use crate::error::{EngineError, ErrorKind};

/// Why a host-side git operation failed. Messages never contain a token: URLs in them have no
/// userinfo and text from git's output is scrubbed.
#[derive(Debug, Error)]
pub enum GitError {
    /// The repository URL is not one Lucid accepts (wrong scheme, option-like, malformed).
    #[error("unsupported repository URL {shown}: {reason}")]
    InvalidUrl { shown: String, reason: String },
    /// The branch name is not a plain, valid git branch name.
    #[error("invalid branch name {name:?}: {reason}")]
    InvalidBranch { name: String, reason: String },
    /// Some other argument (identity, message, path) is not acceptable.
    #[error("{0}")]
    InvalidInput(String),
    /// Clone destination exists and is not an empty directory.
    #[error("clone destination {0} already exists and is not empty")]
    DestinationNotEmpty(PathBuf),
    /// The remote refused the credentials, or asked for credentials and none were given.
    #[error(
        "authentication failed for {url}: check that the token is valid and allows this operation"
    )]
    AuthenticationFailed { url: String },
    /// The remote says the repository does not exist (or is hidden from these credentials).
    #[error("repository not found at {url}")]
    RemoteNotFound { url: String },
    /// The remote rejected the pushed branch (non-fast-forward, protected branch, hook).
    #[error("push of branch {branch} was rejected: {message}")]
    PushRejected { branch: String, message: String },
    /// git ran and failed; `message` is a scrubbed summary of what it printed.
    #[error("git {operation} failed: {message}")]
    CommandFailed {
        operation: &'static str,
        message: String,
    },
    /// git did not finish in time and was killed (with all its child processes).
    #[error("git {operation} timed out after {}s", after.as_secs())]
    TimedOut {
        operation: &'static str,
        after: Duration,
    },
    /// The git program could not be started.
    #[error("git is not available: {0}")]
    GitUnavailable(String),
    /// The workspace could not be read into a commit (too large, unreadable, changed).
    #[error("cannot commit the workspace: {0}")]
    Snapshot(String),
    /// A local file-system step failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl GitError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }

    /// The engine-level kind of this failure.
    pub fn kind(&self) -> ErrorKind {
        match self {
            GitError::InvalidUrl { .. }
            | GitError::InvalidBranch { .. }
            | GitError::InvalidInput(_) => ErrorKind::BadRequest,
            GitError::DestinationNotEmpty(_) | GitError::PushRejected { .. } => ErrorKind::Conflict,
            GitError::Snapshot(_) => ErrorKind::Unprocessable,
            GitError::AuthenticationFailed { .. } => ErrorKind::Unprocessable,
            GitError::RemoteNotFound { .. } => ErrorKind::NotFound,
            GitError::CommandFailed { .. } | GitError::TimedOut { .. } => ErrorKind::Upstream,
            GitError::GitUnavailable(_) => ErrorKind::Unavailable,
            GitError::Io { .. } => ErrorKind::Internal,
        }
    }
}

impl From<GitError> for EngineError {
    fn from(err: GitError) -> Self {
        EngineError::new(err.kind(), err.to_string())
    }
}

/// Strings that must never leave this module: the token in its raw and percent-encoded forms.
#[derive(Default, Clone)]
pub(crate) struct Secrets {
    values: Vec<String>,
}

impl Secrets {
    pub(crate) fn new(token: Option<&str>) -> Self {
        let mut values = Vec::new();
        if let Some(token) = token.filter(|t| !t.is_empty()) {
            values.push(token.to_string());
            let encoded = utf8_percent_encode(token, NON_ALPHANUMERIC).to_string();
            if encoded != token {
                values.push(encoded);
            }
        }
        // Longest first, so that a secret containing another is replaced whole.
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        Self { values }
    }

    /// `text` with every occurrence of a secret replaced by `***`.
    pub(crate) fn scrub(&self, text: &str) -> String {
        let mut out = text.to_string();
        for secret in &self.values {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), "***");
            }
        }
        out
    }
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secrets({} redacted)", self.values.len())
    }
}

/// Longest summary kept in an error message.
const SUMMARY_MAX_CHARS: usize = 600;
/// Meaningful lines kept (the last ones: git prints the cause at the end).
const SUMMARY_MAX_LINES: usize = 6;

/// A short, scrubbed summary of git's output: progress lines and hints dropped, the last few
/// meaningful lines joined with ` | `, capped in length.
pub(crate) fn summarise_output(output: &str, secrets: &Secrets) -> String {
    let lines: Vec<&str> = output
        .split(['\n', '\r'])
        .map(str::trim)
        .filter(|l| !l.is_empty() && !is_noise_line(l))
        .collect();
    let start = lines.len().saturating_sub(SUMMARY_MAX_LINES);
    let joined = lines[start..].join(" | ");
    let scrubbed = secrets.scrub(&joined);
    if scrubbed.is_empty() {
        return "no error output".to_string();
    }
    truncate_chars(&scrubbed, SUMMARY_MAX_CHARS)
}

fn is_noise_line(line: &str) -> bool {
    line.starts_with("hint:")
        || line.starts_with("Cloning into")
        || line.contains("objects:")
        || line.contains("deltas:")
}

pub(crate) fn truncate_chars(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_replaces_raw_and_percent_encoded_token() {
        let secrets = Secrets::new(Some("s3cr/t+x"));
        let text = "fatal: https://u:s3cr/t+x@h/x and https://u:s3cr%2Ft%2Bx@h/x";
        let out = secrets.scrub(text);
        assert!(!out.contains("s3cr"), "{out}");
        assert_eq!(out.matches("***").count(), 2);
    }

    #[test]
    fn empty_token_scrubs_nothing() {
        let secrets = Secrets::new(Some(""));
        assert_eq!(secrets.scrub("abc"), "abc");
        assert_eq!(Secrets::new(None).scrub("abc"), "abc");
    }

    #[test]
    fn summary_keeps_the_cause_and_drops_progress() {
        let secrets = Secrets::new(Some("tok123"));
        let out = "Cloning into 'x'...\nremote: Counting objects: 10% (1/10)\rremote: Counting objects: 100% (10/10), done.\nhint: do this\nfatal: unable to access 'https://h/x/': token tok123 refused\n";
        let summary = summarise_output(out, &secrets);
        assert_eq!(
            summary,
            "fatal: unable to access 'https://h/x/': token *** refused"
        );
    }

    #[test]
    fn summary_is_capped() {
        let long = "x".repeat(5000);
        let summary = summarise_output(&long, &Secrets::default());
        assert!(summary.chars().count() <= SUMMARY_MAX_CHARS + 1);
        assert_eq!(summarise_output("", &Secrets::default()), "no error output");
    }

    #[test]
    fn kinds_map_to_engine_errors() {
        let err: EngineError = GitError::AuthenticationFailed {
            url: "https://h/x.git".into(),
        }
        .into();
        assert_eq!(err.kind, ErrorKind::Unprocessable);
        assert!(err.message.contains("https://h/x.git"));
        let err: EngineError = GitError::InvalidInput("bad".into()).into();
        assert_eq!(err.kind, ErrorKind::BadRequest);
    }
}
