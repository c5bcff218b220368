//! `Git::push_branch`: push a workspace branch to the session's remote.

use std::ffi::OsString;
use std::path::Path;

use super::askpass::Askpass;
use super::command::{failure, run, run_checked, Invocation};
use super::error::{summarise_output, GitError};
use super::refname::validate_branch_name;
use super::repo_check::check_workspace;
use super::url::{RemoteKind, RepoUrl};
use super::{Git, GitCredentials};

impl Git {
    /// Pushes `branch` of `workspace` to `remote_url` and sets it as the branch's upstream.
    ///
    /// `remote_url` is the repository the session was started from (as stored by Lucid), not
    /// whatever the workspace's `origin` says: the agent can rewrite `origin`, and the token
    /// must only ever go to the session's own remote. `origin` is set back to the clean
    /// `remote_url` before the push. URL rules and credential handling are those of
    /// [`Git::clone_repo`].
    pub async fn push_branch(
        &self,
        workspace: &Path,
        remote_url: &str,
        branch: &str,
        creds: Option<&GitCredentials>,
    ) -> Result<(), GitError> {
        validate_branch_name(branch)?;
        let repo = RepoUrl::parse(remote_url)?;
        let credentials = match repo.kind {
            RemoteKind::Local => None,
            _ => creds.cloned().or_else(|| repo.embedded.clone()),
        };
        if let Some(credentials) = &credentials {
            credentials.validate()?;
        }
        let ws = check_workspace(self.program(), workspace, self.options.local_timeout).await?;
        if !self.branch_exists(&ws, branch).await? {
            return Err(GitError::InvalidInput(format!(
                "branch {branch} does not exist in the workspace"
            )));
        }
        run_checked(
            self.program(),
            self.local(
                &ws,
                "config",
                &[
                    "config",
                    "--local",
                    "--replace-all",
                    "remote.origin.url",
                    &repo.clean,
                ],
            ),
            None,
        )
        .await?;

        let askpass = Askpass::create(&ws.root)?;
        let refspec = format!("refs/heads/{branch}:refs/heads/{branch}");
        let args: Vec<OsString> = [
            "push",
            "--porcelain",
            "--no-verify",
            "--set-upstream",
            "origin",
            refspec.as_str(),
        ]
        .iter()
        .map(OsString::from)
        .collect();
        let inv = Invocation {
            operation: "push",
            cwd: &ws.root,
            args,
            transport: Some(repo.kind),
            safe_directory: Some(&ws.root),
            credentials: credentials.as_ref(),
            credential_origin: repo.credential_origin(),
            askpass: Some(&askpass),
            env: Vec::new(),
            stdin: None,
            timeout: self.options.network_timeout,
        };
        let secrets = inv.secrets();
        tracing::info!(url = %repo.clean, branch, "pushing branch");
        let output = run(self.program(), inv, None).await?;
        if output.success() {
            return Ok(());
        }
        let rejected = output
            .stdout
            .lines()
            .any(|l| l.starts_with('!') && l.contains("rejected"));
        if rejected {
            return Err(GitError::PushRejected {
                branch: branch.to_string(),
                message: summarise_output(
                    &format!("{}\n{}", output.stderr, output.stdout),
                    &secrets,
                ),
            });
        }
        Err(failure("push", &output, Some(&repo.clean)))
    }
}
