//! `Git::commit_all`: switch to (or create) the session branch, stage everything and commit
//! with Lucid's identity.

use super::command::{failure, run, run_checked, Invocation};
use super::error::GitError;
use super::refname::validate_branch_name;
use super::repo_check::{check_workspace, CheckedWorkspace};
use super::{CommitOutcome, Git, GitIdentity};

/// Longest commit message accepted.
const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Longest identity name or e-mail accepted.
const MAX_IDENTITY_CHARS: usize = 256;

impl Git {
    /// Commits every change in `workspace` (`git add -A`) on `branch`, creating the branch
    /// from the current HEAD if needed, with `identity` as author and committer. Hooks do not
    /// run. Returns [`CommitOutcome::NothingToCommit`] when there is nothing to commit.
    pub async fn commit_all(
        &self,
        workspace: &std::path::Path,
        branch: &str,
        identity: &GitIdentity,
        message: &str,
    ) -> Result<CommitOutcome, GitError> {
        validate_branch_name(branch)?;
        validate_identity(identity)?;
        validate_message(message)?;
        let ws = check_workspace(self.program(), workspace, self.options.local_timeout).await?;
        self.switch_to_branch(&ws, branch).await?;

        run_checked(self.program(), self.local(&ws, "add", &["add", "-A"]), None).await?;
        let diff = run(
            self.program(),
            self.local(&ws, "diff", &["diff", "--cached", "--quiet", "--exit-code"]),
            None,
        )
        .await?;
        match diff.status.code() {
            Some(0) => {
                return Ok(CommitOutcome::NothingToCommit {
                    branch: branch.to_string(),
                })
            }
            Some(1) => {}
            _ => return Err(failure("diff", &diff, None)),
        }

        let mut inv = self.local(
            &ws,
            "commit",
            &[
                "commit",
                "--quiet",
                "--no-verify",
                "--cleanup=whitespace",
                "--file=-",
            ],
        );
        inv.stdin = Some(message.as_bytes().to_vec());
        inv.env = vec![
            ("GIT_AUTHOR_NAME", identity.name.clone()),
            ("GIT_AUTHOR_EMAIL", identity.email.clone()),
            ("GIT_COMMITTER_NAME", identity.name.clone()),
            ("GIT_COMMITTER_EMAIL", identity.email.clone()),
        ];
        run_checked(self.program(), inv, None).await?;
        let head = run_checked(
            self.program(),
            self.local(&ws, "rev-parse", &["rev-parse", "--verify", "HEAD"]),
            None,
        )
        .await?;
        let sha = head.stdout.trim().to_string();
        tracing::info!(branch, sha = %sha, "committed workspace changes");
        Ok(CommitOutcome::Committed {
            branch: branch.to_string(),
            sha,
        })
    }

    /// A local git run in a checked workspace.
    pub(super) fn local<'a>(
        &self,
        ws: &'a CheckedWorkspace,
        operation: &'static str,
        args: &[&str],
    ) -> Invocation<'a> {
        let mut inv = Invocation::local(operation, &ws.root, args, self.options.local_timeout);
        inv.safe_directory = Some(&ws.root);
        inv
    }

    /// The checked-out branch, or `None` on a detached HEAD.
    pub(super) async fn head_branch(
        &self,
        ws: &CheckedWorkspace,
    ) -> Result<Option<String>, GitError> {
        let out = run(
            self.program(),
            self.local(
                ws,
                "symbolic-ref",
                &["symbolic-ref", "--quiet", "--short", "HEAD"],
            ),
            None,
        )
        .await?;
        match out.status.code() {
            Some(0) => Ok(Some(out.stdout.trim().to_string())),
            Some(1) => Ok(None),
            _ => Err(failure("symbolic-ref", &out, None)),
        }
    }

    /// Whether `refs/heads/<branch>` exists.
    pub(super) async fn branch_exists(
        &self,
        ws: &CheckedWorkspace,
        branch: &str,
    ) -> Result<bool, GitError> {
        let reference = format!("refs/heads/{branch}");
        let out = run(
            self.program(),
            self.local(
                ws,
                "rev-parse",
                &["rev-parse", "--verify", "--quiet", &reference],
            ),
            None,
        )
        .await?;
        match out.status.code() {
            Some(0) => Ok(true),
            Some(1) => Ok(false),
            _ => Err(failure("rev-parse", &out, None)),
        }
    }

    async fn switch_to_branch(&self, ws: &CheckedWorkspace, branch: &str) -> Result<(), GitError> {
        if self.head_branch(ws).await?.as_deref() == Some(branch) {
            return Ok(());
        }
        let args: &[&str] = if self.branch_exists(ws, branch).await? {
            &["switch", "--quiet", "--no-guess", branch]
        } else {
            &["switch", "--quiet", "--create", branch]
        };
        run_checked(self.program(), self.local(ws, "switch", args), None).await?;
        Ok(())
    }
}

fn validate_identity(identity: &GitIdentity) -> Result<(), GitError> {
    for (what, value) in [("name", &identity.name), ("e-mail", &identity.email)] {
        let value = value.trim();
        if value.is_empty() {
            return Err(GitError::InvalidInput(format!(
                "the commit author {what} is empty"
            )));
        }
        if value.chars().count() > MAX_IDENTITY_CHARS
            || value
                .chars()
                .any(|c| c.is_control() || c == '<' || c == '>')
        {
            return Err(GitError::InvalidInput(format!(
                "the commit author {what} is too long or contains '<', '>' or control characters"
            )));
        }
    }
    Ok(())
}

fn validate_message(message: &str) -> Result<(), GitError> {
    if message.trim().is_empty() {
        return Err(GitError::InvalidInput("the commit message is empty".into()));
    }
    if message.len() > MAX_MESSAGE_BYTES || message.contains('\0') {
        return Err(GitError::InvalidInput(
            "the commit message is too long or contains NUL characters".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(name: &str, email: &str) -> GitIdentity {
        GitIdentity {
            name: name.into(),
            email: email.into(),
        }
    }

    #[test]
    fn identity_and_message_are_validated() {
        validate_identity(&id("Lucid", "lucid@example.com")).unwrap();
        assert!(validate_identity(&id("", "a@b")).is_err());
        assert!(validate_identity(&id("a", " ")).is_err());
        assert!(validate_identity(&id("a <evil@x>", "a@b")).is_err());
        assert!(validate_identity(&id("a\nb", "a@b")).is_err());
        validate_message("Fix the bug\n\n# Details kept").unwrap();
        assert!(validate_message("  \n").is_err());
        assert!(validate_message("a\0b").is_err());
        assert!(validate_message(&"x".repeat(MAX_MESSAGE_BYTES + 1)).is_err());
    }
}
