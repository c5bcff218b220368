//! Read-only questions about a workspace's repository.

use std::path::Path;

use super::command::{failure, run};
use super::error::GitError;
use super::repo_check::check_workspace;
use super::url::without_userinfo;
use super::Git;

impl Git {
    /// The branch checked out in `workspace`; [`GitError::DetachedHead`] when HEAD is detached.
    pub async fn current_branch(&self, workspace: &Path) -> Result<String, GitError> {
        let ws = check_workspace(self.program(), workspace, self.options.local_timeout).await?;
        self.head_branch(&ws).await?.ok_or(GitError::DetachedHead)
    }

    /// The URL of the workspace's `origin` remote with any userinfo removed, or `None` when
    /// there is no `origin`.
    pub async fn origin_url(&self, workspace: &Path) -> Result<Option<String>, GitError> {
        let ws = check_workspace(self.program(), workspace, self.options.local_timeout).await?;
        let out = run(
            self.program(),
            self.local(
                &ws,
                "config",
                &["config", "--local", "--get", "remote.origin.url"],
            ),
            None,
        )
        .await?;
        match out.status.code() {
            Some(0) => Ok(Some(without_userinfo(out.stdout.trim()))),
            Some(1) => Ok(None),
            _ => Err(failure("config", &out, None)),
        }
    }
}
