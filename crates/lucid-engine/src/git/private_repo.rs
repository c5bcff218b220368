//! The host-private repository of a session: the only place where git runs with a token.
//!
//! It is a bare repository outside every workspace (the sandbox never sees it), created when
//! the session clones its repository (or, for older sessions and sessions without one, from
//! the remote when a pull request is opened). `refs/lucid/base` holds the commit the session
//! started from. A pull request commits a snapshot of the workspace's worktree, read through
//! directory handles while the sandbox is frozen ([`super::snapshot`]), with `git
//! fast-import` — no worktree, no index, no attributes, no hooks — on top of the session
//! branch (or the base), and pushes that branch from here. Nothing the sandbox wrote can take
//! part in a git command: its `.git` is never read, and file contents are only ever data.

use std::ffi::OsString;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use async_trait::async_trait;

use super::askpass::Askpass;
use super::command::{failure, run, run_checked, run_raw_stdout, Invocation};
use super::error::{summarise_output, GitError};
use super::refname::validate_branch_name;
use super::snapshot::{self, SnapshotLimits, SnapshotStats, TrackedPaths};
use super::url::{RemoteKind, RepoUrl};
use super::{CommitOutcome, Git, GitCredentials, GitIdentity};

/// How a snapshot relates to the parent commit (see [`Git::commit_workspace`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotMode {
    /// The workspace is a checkout: its files are the new tree (deletions kept).
    ReplaceTree,
    /// The workspace is laid over the parent's tree (nothing deleted).
    Overlay,
}

/// The ref holding the commit a session started from.
pub(crate) const BASE_REF: &str = "refs/lucid/base";

/// Stops the sandbox from changing the workspace while a snapshot is read.
#[async_trait]
pub trait WorkspaceFreeze: Send + Sync {
    /// Freezes every process that can write the workspace (e.g. pauses the container).
    async fn freeze(&self) -> Result<(), String>;
    /// Lets them run again. Always called after a successful `freeze`.
    async fn thaw(&self);
}

/// Nothing to freeze (no sandbox is running on the workspace).
pub struct NoFreeze;

#[async_trait]
impl WorkspaceFreeze for NoFreeze {
    async fn freeze(&self) -> Result<(), String> {
        Ok(())
    }
    async fn thaw(&self) {}
}

impl Git {
    /// Clones `url` for a session: a bare clone (with the credentials) into the host-private
    /// `private` directory, then a local clone of it, without credentials, into `workspace`,
    /// whose `origin` is set to the clean URL. Both directories are put back as they were if
    /// anything fails.
    pub async fn clone_for_session(
        &self,
        url: &str,
        branch: Option<&str>,
        private: &Path,
        workspace: &Path,
        creds: Option<&GitCredentials>,
        progress: impl Fn(String) + Send + Sync,
    ) -> Result<(), GitError> {
        let repo = RepoUrl::parse(url)?;
        let private = &super::command::absolute(private)?;
        let mut private_guard = super::clone::DestinationGuard::prepare(private)?;
        self.clone_inner(url, branch, private, creds, &progress, true)
            .await?;
        run_checked(
            self.program(),
            self.bare(private, "update-ref", &["update-ref", BASE_REF, "HEAD"]),
            None,
        )
        .await?;
        let private_str = private.to_str().ok_or_else(|| {
            GitError::InvalidInput("the private repository path is not UTF-8".into())
        })?;
        self.clone_inner(private_str, None, workspace, None, &|_| {}, false)
            .await?;
        let mut set_origin = Invocation::local(
            "config",
            workspace,
            &["config", "--local", "remote.origin.url", &repo.clean],
            self.options.local_timeout,
        );
        set_origin.safe_directory = Some(workspace);
        if let Err(e) = run_checked(self.program(), set_origin, None).await {
            // Leave the workspace empty again: the caller sees one failed clone.
            let _ = std::fs::remove_dir_all(workspace.join(".git"));
            return Err(e);
        }
        private_guard.keep();
        Ok(())
    }

    /// Creates the bare `private` repository from the remote when the session has none
    /// (sessions without a repository, or from before private repositories existed):
    /// fetches `base_branch` (or the remote's HEAD) into [`BASE_REF`], and `branch` too when
    /// the remote already has it (so a second pull request continues it).
    pub async fn init_private_from_remote(
        &self,
        private: &Path,
        remote_url: &str,
        base_branch: Option<&str>,
        branch: &str,
        creds: Option<&GitCredentials>,
    ) -> Result<(), GitError> {
        let repo = RepoUrl::parse(remote_url)?;
        if let Some(base) = base_branch {
            validate_branch_name(base)?;
        }
        validate_branch_name(branch)?;
        let mut guard = super::clone::DestinationGuard::prepare(private)?;
        std::fs::create_dir_all(private)
            .map_err(|e| GitError::io("could not create the private repository", e))?;
        run_checked(
            self.program(),
            Invocation::local(
                "init",
                private,
                &["init", "--quiet", "--bare", "."],
                self.options.local_timeout,
            ),
            None,
        )
        .await?;
        let base_src = match base_branch {
            Some(b) => format!("refs/heads/{b}"),
            None => "HEAD".to_string(),
        };
        let base_spec = format!("+{base_src}:{BASE_REF}");
        self.fetch(private, &repo, &[base_spec.as_str()], creds)
            .await?;
        // The session branch may exist from an earlier pull request; its absence is fine.
        let branch_spec = format!("+refs/heads/{branch}:refs/heads/{branch}");
        if let Err(e) = self
            .fetch(private, &repo, &[branch_spec.as_str()], creds)
            .await
        {
            tracing::debug!(error = %e, "session branch not on the remote yet");
        }
        guard.keep();
        Ok(())
    }

    /// Commits the worktree of `workspace` on `branch` of the private repository: on top of
    /// the branch if it exists there, else of [`BASE_REF`]. `freeze` holds the sandbox still
    /// while the worktree is read. Returns [`CommitOutcome::NothingToCommit`] (and leaves the
    /// branch where it was, or at the base) when the content equals the parent's.
    ///
    /// `mode` says whether the workspace is a checkout of the repository (its files replace
    /// the parent's tree: deletions are kept) or an unrelated directory whose files are laid
    /// over the parent's tree (a session without a repository: nothing of the base is
    /// deleted).
    #[allow(clippy::too_many_arguments)]
    pub async fn commit_workspace(
        &self,
        private: &Path,
        workspace: &Path,
        branch: &str,
        identity: &GitIdentity,
        message: &str,
        mode: SnapshotMode,
        freeze: &dyn WorkspaceFreeze,
    ) -> Result<(CommitOutcome, SnapshotStats), GitError> {
        validate_branch_name(branch)?;
        super::commit::validate_identity(identity)?;
        super::commit::validate_message(message)?;
        let branch_ref = format!("refs/heads/{branch}");
        let parent = match self.resolve(private, &branch_ref).await? {
            Some(sha) => sha,
            None => self.resolve(private, BASE_REF).await?.ok_or_else(|| {
                GitError::InvalidInput("the session's private repository has no base commit".into())
            })?,
        };
        let had_branch = self.resolve(private, &branch_ref).await?.is_some();
        let tracked = match mode {
            SnapshotMode::ReplaceTree => {
                // Complete and byte-exact: a truncated list would turn tracked paths that
                // `.gitignore` matches into deletions.
                let listed = run_raw_stdout(
                    self.program(),
                    self.bare(
                        private,
                        "ls-tree",
                        &["ls-tree", "-r", "-z", "--name-only", &parent],
                    ),
                )
                .await?;
                TrackedPaths::from_ls_tree(&listed)
            }
            SnapshotMode::Overlay => TrackedPaths::default(),
        };

        let stream_path = private.join(format!(
            "lucid-snapshot-{}.fi",
            hex::encode(rand::random::<[u8; 8]>())
        ));
        let header = commit_header(
            &branch_ref,
            identity,
            message,
            &parent,
            mode == SnapshotMode::ReplaceTree,
        );
        freeze
            .freeze()
            .await
            .map_err(|e| GitError::Snapshot(format!("could not pause the sandbox: {e}")))?;
        let written = {
            let workspace = workspace.to_path_buf();
            let stream_path = stream_path.clone();
            tokio::task::spawn_blocking(move || {
                write_stream(&workspace, &stream_path, &header, &tracked)
            })
            .await
        };
        freeze.thaw().await;
        let stats =
            written.map_err(|e| GitError::Snapshot(format!("snapshot task failed: {e}")))??;

        let mut import = self.bare(
            private,
            "fast-import",
            &["fast-import", "--quiet", "--done", "--date-format=raw"],
        );
        import.stdin_file = Some(&stream_path);
        let imported = run_checked(self.program(), import, None).await;
        let _ = std::fs::remove_file(&stream_path);
        imported?;

        let new_tree = self
            .resolve(private, &format!("{branch_ref}^{{tree}}"))
            .await?;
        let old_tree = self.resolve(private, &format!("{parent}^{{tree}}")).await?;
        if new_tree == old_tree {
            // Leave the branch as it was: where it was, or absent.
            let args: Vec<&str> = if had_branch {
                vec!["update-ref", &branch_ref, &parent]
            } else {
                vec!["update-ref", "-d", &branch_ref]
            };
            run_checked(
                self.program(),
                self.bare(private, "update-ref", &args),
                None,
            )
            .await?;
            return Ok((
                CommitOutcome::NothingToCommit {
                    branch: branch.to_string(),
                },
                stats,
            ));
        }
        let sha = self
            .resolve(private, &branch_ref)
            .await?
            .ok_or_else(|| GitError::Snapshot("the snapshot commit was not recorded".into()))?;
        tracing::info!(branch, sha = %sha, files = stats.files, "committed workspace snapshot");
        Ok((
            CommitOutcome::Committed {
                branch: branch.to_string(),
                sha,
            },
            stats,
        ))
    }

    /// Pushes `branch` of the private repository to `remote_url` with `creds` (never to any
    /// other URL). In a restricted outbound policy the remote's address is checked and pinned.
    pub async fn push_private(
        &self,
        private: &Path,
        remote_url: &str,
        branch: &str,
        creds: Option<&GitCredentials>,
    ) -> Result<(), GitError> {
        validate_branch_name(branch)?;
        let repo = RepoUrl::parse(remote_url)?;
        let config = self.network_config(&repo).await?;
        let credentials = match repo.kind {
            RemoteKind::Local => None,
            _ => creds.cloned().or_else(|| repo.embedded.clone()),
        };
        if let Some(c) = &credentials {
            c.validate()?;
        }
        let branch_ref = format!("refs/heads/{branch}");
        if self.resolve(private, &branch_ref).await?.is_none() {
            return Err(GitError::InvalidInput(format!(
                "branch {branch} has not been committed"
            )));
        }
        let refspec = format!("{branch_ref}:{branch_ref}");
        let askpass = Askpass::create(private)?;
        let mut args: Vec<OsString> =
            vec!["push".into(), "--porcelain".into(), "--no-verify".into()];
        if repo.kind == RemoteKind::Local {
            // The local transport drops our `-c` settings for the receiving side: its hooks
            // must not run on the host either.
            args.push("--receive-pack=git -c core.hooksPath=/dev/null receive-pack".into());
        }
        args.extend([
            "--".into(),
            OsString::from(&repo.clean),
            OsString::from(&refspec),
        ]);
        let inv = self.remote_run(
            "push",
            private,
            &repo,
            args,
            credentials.as_ref(),
            &askpass,
            config,
        );
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

    /// Whether `branch` has a commit in the private repository.
    pub async fn has_branch(&self, private: &Path, branch: &str) -> Result<bool, GitError> {
        validate_branch_name(branch)?;
        Ok(self
            .resolve(private, &format!("refs/heads/{branch}"))
            .await?
            .is_some())
    }

    async fn fetch(
        &self,
        private: &Path,
        repo: &RepoUrl,
        refspecs: &[&str],
        creds: Option<&GitCredentials>,
    ) -> Result<(), GitError> {
        let credentials = match repo.kind {
            RemoteKind::Local => None,
            _ => creds.cloned().or_else(|| repo.embedded.clone()),
        };
        let askpass = Askpass::create(private)?;
        let mut args: Vec<OsString> = ["fetch", "--quiet", "--no-tags", "--"]
            .iter()
            .map(OsString::from)
            .collect();
        args.push(repo.clean.clone().into());
        args.extend(refspecs.iter().map(OsString::from));
        let config = self.network_config(repo).await?;
        let inv = self.remote_run(
            "fetch",
            private,
            repo,
            args,
            credentials.as_ref(),
            &askpass,
            config,
        );
        let output = run(self.program(), inv, None).await?;
        if output.success() {
            Ok(())
        } else {
            Err(failure("fetch", &output, Some(&repo.clean)))
        }
    }

    /// A git run in the bare `private` repository that talks to `repo`.
    #[allow(clippy::too_many_arguments)]
    fn remote_run<'a>(
        &self,
        operation: &'static str,
        private: &'a Path,
        repo: &RepoUrl,
        args: Vec<OsString>,
        credentials: Option<&'a GitCredentials>,
        askpass: &'a Askpass,
        config: Vec<String>,
    ) -> Invocation<'a> {
        Invocation {
            operation,
            cwd: private,
            args,
            transport: Some(repo.kind),
            safe_directory: None,
            credentials,
            credential_origin: repo.credential_origin(),
            askpass: Some(askpass),
            env: vec![("GIT_DIR", private.to_string_lossy().into_owned())],
            stdin: None,
            stdin_file: None,
            config,
            no_proxy: self.options.outbound.is_restricted(),
            timeout: self.options.network_timeout,
        }
    }

    /// A local git command in the bare `private` repository.
    fn bare<'a>(
        &self,
        private: &'a Path,
        operation: &'static str,
        args: &[&str],
    ) -> Invocation<'a> {
        let mut inv = Invocation::local(operation, private, args, self.options.local_timeout);
        inv.env = vec![("GIT_DIR", private.to_string_lossy().into_owned())];
        inv
    }

    /// The object a revision names, or `None` when it does not exist.
    async fn resolve(&self, private: &Path, rev: &str) -> Result<Option<String>, GitError> {
        let out = run(
            self.program(),
            self.bare(
                private,
                "rev-parse",
                &["rev-parse", "--verify", "--quiet", "--end-of-options", rev],
            ),
            None,
        )
        .await?;
        match out.status.code() {
            Some(0) => Ok(Some(out.stdout.trim().to_string())),
            Some(1) => Ok(None),
            _ => Err(failure("rev-parse", &out, None)),
        }
    }
}

/// The start of the fast-import stream: one commit replacing the whole tree of `parent`.
fn commit_header(
    branch_ref: &str,
    identity: &GitIdentity,
    message: &str,
    parent: &str,
    replace: bool,
) -> Vec<u8> {
    let now = chrono::Utc::now().timestamp();
    let who = format!(
        "{} <{}> {now} +0000",
        identity.name.trim(),
        identity.email.trim()
    );
    let mut out = Vec::new();
    out.extend_from_slice(format!("commit {branch_ref}\n").as_bytes());
    out.extend_from_slice(format!("author {who}\ncommitter {who}\n").as_bytes());
    let message = format!("{}\n", message.trim_end());
    out.extend_from_slice(format!("data {}\n", message.len()).as_bytes());
    out.extend_from_slice(message.as_bytes());
    out.extend_from_slice(format!("from {parent}\n").as_bytes());
    if replace {
        out.extend_from_slice(b"deleteall\n");
    }
    out
}

/// Writes the whole fast-import stream for `workspace` to `path` (a file in the private
/// repository, created fresh).
fn write_stream(
    workspace: &Path,
    path: &PathBuf,
    header: &[u8],
    tracked: &TrackedPaths,
) -> Result<SnapshotStats, GitError> {
    let _ = std::fs::remove_file(path);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| GitError::io("could not create the snapshot file", e))?;
    let mut out = BufWriter::new(file);
    let write_err = |e| GitError::io("could not write the snapshot", e);
    out.write_all(header).map_err(write_err)?;
    let stats = snapshot::write_worktree(workspace, tracked, SnapshotLimits::default(), &mut out)?;
    out.write_all(b"\ndone\n").map_err(write_err)?;
    out.flush().map_err(write_err)?;
    Ok(stats)
}
