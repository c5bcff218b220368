//! `Git::clone_repo`: clone into a fresh directory, restoring the directory on any failure or
//! cancellation.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::askpass::Askpass;
use super::command::{absolute, failure, run, Invocation, ProgressFn};
use super::error::GitError;
use super::refname::validate_branch_name;
use super::url::{RemoteKind, RepoUrl};
use super::{Git, GitCredentials};

impl Git {
    /// Clones `url` into `dest` and checks out `branch` (or the remote's default branch).
    ///
    /// Accepted URLs: `https://…`, `http://…` for loopback hosts, `file://…` and absolute
    /// local paths; anything else is rejected before git runs. Userinfo in the URL
    /// (`https://user:token@host/…`) is used as credentials (explicit `creds` win) and never
    /// given to git: the clone's `origin` is the clean URL. `dest` must not exist or be an
    /// empty directory; if the clone fails, times out or is cancelled, `dest` is put back as
    /// it was. `progress` receives git's progress lines, scrubbed and throttled.
    pub async fn clone_repo(
        &self,
        url: &str,
        branch: Option<&str>,
        dest: &Path,
        creds: Option<&GitCredentials>,
        progress: impl Fn(String) + Send + Sync,
    ) -> Result<(), GitError> {
        self.clone_inner(url, branch, dest, creds, &progress, false)
            .await
    }

    /// [`Git::clone_repo`], optionally as a bare repository.
    pub(super) async fn clone_inner(
        &self,
        url: &str,
        branch: Option<&str>,
        dest: &Path,
        creds: Option<&GitCredentials>,
        progress: ProgressFn<'_>,
        bare: bool,
    ) -> Result<(), GitError> {
        let repo = RepoUrl::parse(url)?;
        if let Some(branch) = branch {
            validate_branch_name(branch)?;
        }
        let dest = absolute(dest)?;
        let credentials = match repo.kind {
            RemoteKind::Local => None,
            _ => creds.cloned().or_else(|| repo.embedded.clone()),
        };
        if let Some(credentials) = &credentials {
            credentials.validate()?;
        }
        let mut guard = DestinationGuard::prepare(&dest)?;
        let askpass = Askpass::create(&dest)?;

        let mut args: Vec<OsString> = vec!["clone".into(), "--progress".into()];
        if bare {
            args.push("--bare".into());
        }
        if repo.kind == RemoteKind::Local {
            // Objects are copied, never hard-linked: a workspace must share no inode with
            // the repository it was cloned from.
            args.push("--no-hardlinks".into());
        }
        if let Some(branch) = branch {
            args.push("--branch".into());
            args.push(branch.into());
        }
        args.push("--".into());
        args.push(repo.clean.clone().into());
        args.push(dest.clone().into_os_string());
        let config = self.network_config(&repo).await?;
        let inv = Invocation {
            operation: "clone",
            // A directory of our own, so git discovers no repository around its cwd.
            cwd: askpass.dir(),
            args,
            transport: Some(repo.kind),
            safe_directory: None,
            credentials: credentials.as_ref(),
            credential_origin: repo.credential_origin(),
            askpass: Some(&askpass),
            env: Vec::new(),
            stdin: None,
            stdin_file: None,
            config,
            no_proxy: self.options.outbound.is_restricted(),
            timeout: self.options.network_timeout,
        };
        tracing::info!(url = %repo.clean, branch = ?branch, dest = %dest.display(), bare, "cloning repository");
        let output = run(self.program(), inv, Some(progress)).await?;
        if !output.success() {
            return Err(failure("clone", &output, Some(&repo.clean)));
        }
        guard.keep();
        Ok(())
    }

    /// `-c` settings for a run that connects to `repo`: under a restricted outbound policy
    /// the remote's host is resolved and checked here and the checked address pinned for
    /// git's HTTP connections, and redirects are not followed (they could lead elsewhere).
    pub(super) async fn network_config(&self, repo: &RepoUrl) -> Result<Vec<String>, GitError> {
        let policy = &self.options.outbound;
        if !policy.is_restricted() || repo.kind == RemoteKind::Local {
            return Ok(Vec::new());
        }
        let parsed = url::Url::parse(&repo.clean).map_err(|_| GitError::InvalidUrl {
            shown: repo.clean.clone(),
            reason: "not a valid URL".into(),
        })?;
        let port = parsed.port_or_known_default().unwrap_or(443);
        let host = parsed.host_str().unwrap_or_default().to_string();
        let bare_host = host.trim_start_matches('[').trim_end_matches(']');
        if bare_host
            .split('.')
            .any(|label| label.starts_with('-') || label.ends_with('-'))
        {
            // curl reads a resolve entry that starts with '-' as a removal: never let a host
            // name turn the pin off.
            return Err(GitError::InvalidUrl {
                shown: repo.clean.clone(),
                reason: "the host name is not valid".into(),
            });
        }
        let addrs = policy
            .resolve(&host, port)
            .await
            .map_err(|e| GitError::InvalidUrl {
                shown: repo.clean.clone(),
                reason: e.to_string(),
            })?;
        let mut config = vec![
            // No proxy: the checked address is the one connected to.
            "http.proxy=".to_string(),
            "http.followRedirects=false".to_string(),
        ];
        if bare_host.parse::<std::net::IpAddr>().is_err() {
            let pinned: Vec<String> = addrs
                .iter()
                .map(|a| match a.ip() {
                    std::net::IpAddr::V6(v6) => format!("[{v6}]"),
                    std::net::IpAddr::V4(v4) => v4.to_string(),
                })
                .collect();
            config.push(format!(
                "http.curloptResolve={bare_host}:{port}:{}",
                pinned.join(",")
            ));
        }
        Ok(config)
    }
}

/// Restores the clone destination on drop unless [`DestinationGuard::keep`] was called: a
/// directory that did not exist is removed, one that existed (empty) is emptied again.
pub(super) struct DestinationGuard {
    dest: PathBuf,
    existed: bool,
    armed: bool,
}

impl DestinationGuard {
    pub(super) fn prepare(dest: &Path) -> Result<Self, GitError> {
        let existed = match std::fs::symlink_metadata(dest) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => return Err(GitError::io("cannot inspect the clone destination", e)),
            Ok(meta) if meta.is_dir() => {
                let mut entries = std::fs::read_dir(dest)
                    .map_err(|e| GitError::io("cannot read the clone destination", e))?;
                if entries.next().is_some() {
                    return Err(GitError::DestinationNotEmpty(dest.to_path_buf()));
                }
                true
            }
            Ok(_) => return Err(GitError::DestinationNotEmpty(dest.to_path_buf())),
        };
        Ok(Self {
            dest: dest.to_path_buf(),
            existed,
            armed: true,
        })
    }

    pub(super) fn keep(&mut self) {
        self.armed = false;
    }
}

impl Drop for DestinationGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let result = if self.existed {
            std::fs::read_dir(&self.dest).and_then(|entries| {
                for entry in entries {
                    let path = entry?.path();
                    match std::fs::symlink_metadata(&path) {
                        Ok(m) if m.is_dir() => std::fs::remove_dir_all(&path)?,
                        _ => std::fs::remove_file(&path)?,
                    }
                }
                Ok(())
            })
        } else {
            match std::fs::remove_dir_all(&self.dest) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                other => other,
            }
        };
        if let Err(e) = result {
            tracing::warn!(dest = %self.dest.display(), error = %e, "could not clean up after a failed clone");
        }
    }
}
