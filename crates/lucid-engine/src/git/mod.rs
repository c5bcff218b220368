//! Host-side git: clone a session's repository, and commit and push the agent's work on a
//! `lucid/<short-id>` branch for a pull request.
//!
//! The sandbox is hostile, its `.git` included, so git with a token never runs on a
//! repository the sandbox controls. Each session has a host-private bare repository outside
//! every workspace (module `private_repo`): the clone lands there first (with the token) and
//! the workspace gets a local clone of it (without); a pull request commits a snapshot of the
//! workspace's files, read through directory handles while the sandbox is frozen (module
//! `snapshot`), into the private repository with `git fast-import`, and pushes from there.
//!
//! git runs on the host (never inside the sandbox) through `tokio::process`, each run with a
//! clean environment, credential helpers, hooks and fsmonitor disabled, only the operation's
//! transport allowed, its own process group and a timeout (module `command`). The token
//! reaches git only through a private `GIT_ASKPASS` helper that answers only the operation's
//! own origin, via environment variables of the git child process (module `askpass`) — never
//! argv, never any `.git/config`, never logs or error messages. URLs are validated before
//! anything runs (accepted forms on [`Git::clone_repo`]); under a restricted
//! [`crate::outbound::OutboundPolicy`] the remote's address is checked and pinned.
//!
//! The free functions use [`Git::default`]; build a [`Git`] with [`GitOptions`] to change the
//! git program, the timeouts or the outbound policy.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod askpass;
mod clone;
mod command;
mod commit;
mod error;
mod private_repo;
mod refname;
mod snapshot;
mod url;

pub use error::GitError;
pub use private_repo::{NoFreeze, SnapshotMode, WorkspaceFreeze};
pub use refname::{branch_for_session, validate_branch_name};
pub use snapshot::{SnapshotLimits, SnapshotStats};
pub use url::{redact_url, TOKEN_ONLY_USERNAME};

/// Credentials for an HTTPS remote: a username and a personal access token. `Debug` never
/// prints the token.
#[derive(Clone, PartialEq, Eq)]
pub struct GitCredentials {
    pub username: String,
    pub token: String,
}

impl fmt::Debug for GitCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitCredentials")
            .field("username", &self.username)
            .field("token", &"***")
            .finish()
    }
}

impl GitCredentials {
    /// Checks that both parts are non-empty and free of control characters (they travel in
    /// environment variables and git's prompts). The error never shows the values.
    pub fn validate(&self) -> Result<(), GitError> {
        let bad = |v: &str| v.is_empty() || v.chars().any(char::is_control);
        if bad(&self.username) || bad(&self.token) {
            return Err(GitError::InvalidInput(
                "the git username and token must be non-empty and contain no control characters"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// Author and committer of the commits Lucid makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitIdentity {
    pub name: String,
    pub email: String,
}

/// What [`Git::commit_workspace`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitOutcome {
    /// A commit was made on `branch`.
    Committed { branch: String, sha: String },
    /// The workspace had no changes; `branch` is checked out.
    NothingToCommit { branch: String },
}

/// The git program and the time limits of host-side git.
#[derive(Debug, Clone)]
pub struct GitOptions {
    /// The git executable (a name looked up in `PATH`, or a path).
    pub program: PathBuf,
    /// Limit for operations that talk to a remote (clone, push).
    pub network_timeout: Duration,
    /// Limit for local operations (add, commit, config).
    pub local_timeout: Duration,
    /// Where git may connect (checked and pinned under a restricted policy).
    pub outbound: crate::outbound::OutboundPolicy,
}

impl Default for GitOptions {
    fn default() -> Self {
        Self {
            program: PathBuf::from("git"),
            network_timeout: Duration::from_secs(10 * 60),
            local_timeout: Duration::from_secs(2 * 60),
            outbound: crate::outbound::OutboundPolicy::unrestricted(),
        }
    }
}

/// Host-side git with a given set of [`GitOptions`].
#[derive(Debug, Clone, Default)]
pub struct Git {
    options: GitOptions,
}

impl Git {
    pub fn new(options: GitOptions) -> Self {
        Self { options }
    }

    pub fn options(&self) -> &GitOptions {
        &self.options
    }

    fn program(&self) -> &Path {
        &self.options.program
    }
}

/// Clones `url` into `dest` with [`Git::default`]; see [`Git::clone_repo`].
pub async fn clone_repo(
    url: &str,
    branch: Option<&str>,
    dest: &Path,
    creds: Option<&GitCredentials>,
    progress: impl Fn(String) + Send + Sync,
) -> Result<(), GitError> {
    Git::default()
        .clone_repo(url, branch, dest, creds, progress)
        .await
}

/// Checks a repository URL before a session starts (the same rules as [`clone_repo`]).
/// `allow_local` permits local paths and `file://` URLs: right for a single-user machine,
/// wrong for a server whose users must not read the host's files.
pub fn validate_clone_url(url: &str, allow_local: bool) -> Result<(), GitError> {
    split_clone_url(url, allow_local).map(|_| ())
}

/// Validates a repository URL like [`validate_clone_url`] and splits it into the URL git is
/// given (userinfo removed: the form to store, show and push to) and the credentials that
/// were embedded in its userinfo, if any.
pub fn split_clone_url(
    url: &str,
    allow_local: bool,
) -> Result<(String, Option<GitCredentials>), GitError> {
    let parsed = url::RepoUrl::parse(url)?;
    if !allow_local && parsed.kind == url::RemoteKind::Local {
        return Err(GitError::InvalidUrl {
            shown: redact_url(url),
            reason: "local repositories are not allowed on this server".to_string(),
        });
    }
    Ok((parsed.clean, parsed.embedded))
}

/// The username sent with a forge token over HTTPS (GitHub and GitLab accept it for PATs).
pub fn default_username_for(_url: &str) -> &'static str {
    TOKEN_ONLY_USERNAME
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_debug_hides_the_token() {
        let creds = GitCredentials {
            username: "alice".into(),
            token: "ghp_supersecret".into(),
        };
        let shown = format!("{creds:?} {creds:#?}");
        assert!(!shown.contains("ghp_supersecret"), "{shown}");
        assert!(shown.contains("alice"));
    }

    #[test]
    fn credentials_are_validated_without_echoing_them() {
        let ok = GitCredentials {
            username: "alice".into(),
            token: "ghp_x".into(),
        };
        ok.validate().unwrap();
        for (username, token) in [("", "t"), ("a", ""), ("a", "tok\nen-secret"), ("a\0", "t")] {
            let err = GitCredentials {
                username: username.into(),
                token: token.into(),
            }
            .validate()
            .unwrap_err();
            assert!(!err.to_string().contains("en-secret"));
        }
    }
}
