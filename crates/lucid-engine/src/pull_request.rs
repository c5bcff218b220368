//! Opening a pull request from a session: the agent's work is committed in the session's
//! host-private repository from a frozen snapshot of its workspace and pushed from there (see
//! [`crate::git`]), only to the session's own repository and only with the token of the
//! integration whose host that repository is on.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use crate::auth::User;
use crate::error::ErrorKind;
use crate::error::{EngineError, EngineResult};
use crate::git::{
    CommitOutcome, Git, GitCredentials, GitIdentity, NoFreeze, SnapshotMode, WorkspaceFreeze,
};
use crate::integrations::{CreatePrRequest, Integrations};
use crate::sandbox::freeze::SessionFreeze;
use crate::sessions::SandboxBackend;
use crate::store::ChatSession;

/// Commits and pushes sessions' work; one pull request at a time per session.
pub(crate) struct PullRequests {
    git: Git,
    data_dir: PathBuf,
    workspace_base: PathBuf,
    local_mode: bool,
    locks: Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>,
}

/// What the caller needs to know about the session.
pub(crate) struct SessionForPr<'a> {
    pub session_id: &'a str,
    pub workspace: PathBuf,
    pub chat: ChatSession,
}

impl PullRequests {
    pub(crate) fn new(
        git: Git,
        data_dir: PathBuf,
        workspace_base: PathBuf,
        local_mode: bool,
    ) -> Self {
        Self {
            git,
            data_dir,
            workspace_base,
            local_mode,
            locks: Mutex::new(HashMap::new()),
        }
    }

    /// The host-private repository of a session (for removal with its chat).
    pub(crate) fn private_repo(&self, user: &User, session_id: &str) -> EngineResult<PathBuf> {
        crate::workspace::session_private_repo(&self.data_dir, &user.id, session_id)
    }

    /// Commits the session's workspace on `lucid/<short-id>` and pushes it. Returns the
    /// request completed with the repository, branch and title actually used.
    pub(crate) async fn commit_and_push(
        &self,
        user: &User,
        provider: &str,
        session: SessionForPr<'_>,
        mut req: CreatePrRequest,
        integrations: &Integrations,
        backend: &SandboxBackend,
    ) -> EngineResult<CreatePrRequest> {
        let (remote, base_branch) = self.remote_of(&session.chat, &req)?;
        let local_remote = is_local(&remote);
        if local_remote && !self.local_mode {
            return Err(EngineError::bad_request(
                "Local repositories cannot be pushed to on this server.",
            ));
        }
        if local_remote && self.is_engine_owned(&remote) {
            // A workspace (or a private repository) is written by a sandbox: pushing into it
            // would run what that sandbox put there.
            return Err(EngineError::bad_request(
                "A pull request cannot be pushed into a Lucid workspace or data directory.",
            ));
        }
        let forge = if local_remote {
            // The forge API still needs the integration; git needs no token for a path.
            integrations
                .credentials(user, provider)
                .await?
                .ok_or_else(|| no_token(provider))?
        } else {
            integrations
                .credentials_for_push(user, provider, &remote)
                .await?
        };
        let identity: GitIdentity = forge.git_identity();
        let token: Option<GitCredentials> = (!local_remote).then(|| forge.into_git_credentials());

        let branch = crate::git::branch_for_session(session.session_id);
        let title = if req.title.trim().is_empty() {
            "Changes by Lucid".to_string()
        } else {
            req.title.clone()
        };
        let private = self.private_repo(user, session.session_id)?;
        let mode = if session.chat.repo_url.is_some() {
            SnapshotMode::ReplaceTree
        } else {
            SnapshotMode::Overlay
        };
        // Held until the commit task ends, even if this request is dropped first.
        let held = self.lock_for(session.session_id).lock_owned().await;

        if !private.exists() {
            self.git
                .init_private_from_remote(
                    &private,
                    &remote,
                    base_branch.as_deref(),
                    &branch,
                    token.as_ref(),
                )
                .await?;
        }
        let freeze: Box<dyn WorkspaceFreeze> = match backend {
            SandboxBackend::Docker(docker) => Box::new(SessionFreeze::new(
                docker.docker().clone(),
                session.session_id,
            )),
            _ => Box::new(NoFreeze),
        };
        // In its own task: a request dropped half-way must still thaw the sandbox.
        let committed = {
            let git = self.git.clone();
            let (private, workspace, branch, title) = (
                private.clone(),
                session.workspace.clone(),
                branch.clone(),
                title.clone(),
            );
            tokio::spawn(async move {
                let committed = git
                    .commit_workspace(
                        &private,
                        &workspace,
                        &branch,
                        &identity,
                        &title,
                        mode,
                        freeze.as_ref(),
                    )
                    .await;
                drop(held);
                committed
            })
            .await
            .map_err(|e| EngineError::internal(format!("commit task failed: {e}")))?
        };
        let (outcome, stats) = committed?;
        if matches!(outcome, CommitOutcome::NothingToCommit { .. })
            && !self.git.has_branch(&private, &branch).await?
        {
            return Err(EngineError::new(
                ErrorKind::Unprocessable,
                "There are no changes to propose: the workspace matches the repository.",
            ));
        }
        tracing::info!(
            session = session.session_id,
            ?outcome,
            files = stats.files,
            "session work committed"
        );
        self.git
            .push_private(&private, &remote, &branch, token.as_ref())
            .await?;
        req.repo_url = remote;
        req.branch = branch;
        req.title = title;
        Ok(req)
    }

    /// The repository a session's work may go to, and the base branch for a private
    /// repository made from the remote: the session's own repository (a different `repoUrl`
    /// in the request is refused); for a session without one, the request's `repoUrl`, which
    /// must then be a remote (never a path on this machine).
    fn remote_of(
        &self,
        chat: &ChatSession,
        req: &CreatePrRequest,
    ) -> EngineResult<(String, Option<String>)> {
        let requested = req.repo_url.trim();
        match chat.repo_url.as_deref().filter(|u| !u.trim().is_empty()) {
            Some(own) => {
                if !requested.is_empty() && !same_repository(requested, own) {
                    return Err(EngineError::bad_request(format!(
                        "This session works on {}: its pull request can only go to that \
                         repository.",
                        crate::git::redact_url(own)
                    )));
                }
                Ok((own.to_string(), chat.branch.clone()))
            }
            None => {
                if requested.is_empty() {
                    return Err(EngineError::bad_request(
                        "The session has no repository: pass repoUrl.",
                    ));
                }
                let (clean, _) = crate::git::split_clone_url(requested, false).map_err(|e| {
                    EngineError::bad_request(format!(
                        "A session without a repository can only push to a remote repository: \
                         {e}"
                    ))
                })?;
                let base = Some(req.base_branch.trim().to_string()).filter(|b| !b.is_empty());
                Ok((clean, base))
            }
        }
    }

    /// Whether a local path lies inside the engine's workspaces or data directory.
    fn is_engine_owned(&self, remote: &str) -> bool {
        let path = remote
            .trim()
            .strip_prefix("file://")
            .unwrap_or(remote.trim());
        let resolved = std::fs::canonicalize(path).unwrap_or_else(|_| PathBuf::from(path));
        [&self.workspace_base, &self.data_dir].iter().any(|dir| {
            let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
            resolved.starts_with(&dir)
        })
    }

    fn lock_for(&self, session_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().expect("pull request locks poisoned");
        locks.retain(|_, weak| weak.strong_count() > 0);
        if let Some(lock) = locks.get(session_id).and_then(Weak::upgrade) {
            return lock;
        }
        let lock = Arc::new(tokio::sync::Mutex::new(()));
        locks.insert(session_id.to_string(), Arc::downgrade(&lock));
        lock
    }
}

fn no_token(provider: &str) -> EngineError {
    EngineError::not_found(format!(
        "No {} token saved. Add one via POST /api/v1/integrations first.",
        provider.trim().to_ascii_lowercase()
    ))
}

fn is_local(url: &str) -> bool {
    let url = url.trim();
    url.starts_with('/') || url.to_ascii_lowercase().starts_with("file:")
}

/// Whether two repository URLs name the same repository (userinfo, case of the host, a
/// trailing `/` or `.git` aside).
fn same_repository(a: &str, b: &str) -> bool {
    normalize(a) == normalize(b)
}

fn normalize(url: &str) -> String {
    let clean = crate::git::split_clone_url(url, true)
        .map(|(clean, _)| clean)
        .unwrap_or_else(|_| url.trim().to_string());
    let trimmed = clean.trim_end_matches('/');
    let trimmed = trimmed.strip_suffix(".git").unwrap_or(trimmed);
    match url::Url::parse(trimmed) {
        Ok(parsed) if parsed.scheme() != "file" => {
            parsed.as_str().trim_end_matches('/').to_string()
        }
        _ => Path::new(trimmed).to_string_lossy().into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_repository_ignores_userinfo_case_and_suffixes() {
        assert!(same_repository(
            "https://tok@GitHub.com/o/r.git",
            "https://github.com/o/r"
        ));
        assert!(same_repository("/srv/repo/", "/srv/repo"));
        assert!(!same_repository(
            "https://github.com/o/r",
            "https://evil.example/o/r"
        ));
        assert!(!same_repository("https://github.com/o/r", "/srv/r"));
    }
}
