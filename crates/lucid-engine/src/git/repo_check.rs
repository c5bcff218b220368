//! Checks a workspace's repository before host-side git runs in it.
//!
//! The workspace is written by the agent inside the sandbox, so its `.git` is untrusted: a
//! repository config can make git run arbitrary host commands (`core.fsmonitor`,
//! `core.sshCommand`, filter drivers, `remote.*.uploadpack`), redirect pushes and the token
//! (`url.*.insteadOf`, `remote.*.pushurl`, `http.proxy`), or point git at files outside the
//! workspace (`core.worktree`, includes, `commondir`, alternates, a `.git` file or symlink).
//! Hooks are disabled separately by `core.hooksPath=/dev/null` on every run.
//!
//! The rule is an allow-list: `.git` must be a real directory with a regular `config` file
//! whose every key is one of a small set of inert settings. The config file is read by git's
//! own parser (`git config --file … --list`, which neither follows includes nor runs anything)
//! from a neutral directory.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::command::{run, Invocation};
use super::error::{truncate_chars, GitError};

/// The canonical workspace path of a repository that passed [`check_workspace`].
#[derive(Debug, Clone)]
pub(crate) struct CheckedWorkspace {
    pub(crate) root: PathBuf,
}

/// Verifies that `workspace` holds a repository host-side git may run in.
pub(crate) async fn check_workspace(
    program: &Path,
    workspace: &Path,
    timeout: Duration,
) -> Result<CheckedWorkspace, GitError> {
    let root = workspace
        .canonicalize()
        .map_err(|_| GitError::NotARepository(workspace.to_path_buf()))?;
    if !root.is_dir() {
        return Err(GitError::NotARepository(workspace.to_path_buf()));
    }
    let git_dir = root.join(".git");
    let meta = match std::fs::symlink_metadata(&git_dir) {
        Ok(meta) => meta,
        Err(_) => return Err(GitError::NotARepository(workspace.to_path_buf())),
    };
    if meta.file_type().is_symlink() {
        return Err(unsafe_repo(".git is a symbolic link"));
    }
    if meta.is_file() {
        return Err(unsafe_repo(
            ".git is a file pointing to another git directory (worktree or submodule)",
        ));
    }
    for (relative, what) in [
        ("commondir", "a commondir file (linked worktree)"),
        ("objects/info/alternates", "alternate object directories"),
        ("config.worktree", "a per-worktree config file"),
    ] {
        if std::fs::symlink_metadata(git_dir.join(relative)).is_ok() {
            return Err(unsafe_repo(&format!("the repository uses {what}")));
        }
    }
    let config = git_dir.join("config");
    match std::fs::symlink_metadata(&config) {
        Ok(m) if m.is_file() => {}
        Ok(_) => return Err(unsafe_repo(".git/config is not a regular file")),
        Err(_) => return Err(GitError::NotARepository(workspace.to_path_buf())),
    }

    let neutral = std::env::temp_dir();
    let mut inv = Invocation::local(
        "config",
        &neutral,
        &["config", "--no-includes", "--null", "--list", "--file"],
        timeout,
    );
    inv.args.push(config.into_os_string());
    let output = run(program, inv, None).await?;
    if !output.success() {
        return Err(unsafe_repo(&format!(
            ".git/config cannot be parsed ({})",
            truncate_chars(output.stderr.trim(), 200)
        )));
    }
    for entry in output.stdout.split('\0').filter(|e| !e.is_empty()) {
        let (key, value) = entry.split_once('\n').unwrap_or((entry, ""));
        if !is_allowed(key, value) {
            return Err(unsafe_repo(&format!(
                "its .git/config sets {:?}, which Lucid does not allow when it runs git on the host",
                truncate_chars(key, 120)
            )));
        }
    }
    Ok(CheckedWorkspace { root })
}

fn unsafe_repo(reason: &str) -> GitError {
    GitError::UnsafeRepository(reason.to_string())
}

/// Whether a repository config entry is inert for host-side git. `key` is as git lists it:
/// section and name lower-cased, subsection verbatim.
fn is_allowed(key: &str, value: &str) -> bool {
    let Some((section_and_sub, name)) = key.rsplit_once('.') else {
        return false;
    };
    let (section, subsection) = match section_and_sub.split_once('.') {
        Some((section, sub)) => (section, Some(sub)),
        None => (section_and_sub, None),
    };
    let value = value.trim().to_ascii_lowercase();
    match (section, subsection, name) {
        ("core", None, "repositoryformatversion") => value == "0" || value == "1",
        ("core", None, "bare") => value == "false",
        ("core", None, n) => matches!(
            n,
            "filemode"
                | "logallrefupdates"
                | "ignorecase"
                | "precomposeunicode"
                | "symlinks"
                | "autocrlf"
                | "eol"
                | "safecrlf"
                | "quotepath"
                | "checkstat"
                | "trustctime"
                | "untrackedcache"
        ),
        ("extensions", None, n) => matches!(n, "objectformat" | "refstorage"),
        ("remote", Some(_), n) => matches!(n, "url" | "fetch" | "tagopt" | "prune"),
        ("branch", Some(_), n) => matches!(n, "remote" | "merge" | "rebase" | "description"),
        ("submodule", Some(_), n) => matches!(n, "url" | "active"),
        ("user", None, n) => matches!(n, "name" | "email"),
        ("init", None, "defaultbranch") => true,
        ("pull", None, n) => matches!(n, "rebase" | "ff"),
        ("push", None, n) => matches!(n, "default" | "autosetupremote"),
        ("fetch", None, "prune") => true,
        ("lfs", None, "repositoryformatversion") => true,
        ("advice", None, _) | ("color", _, _) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inert_settings_are_allowed() {
        for (k, v) in [
            ("core.repositoryformatversion", "0"),
            ("core.filemode", "true"),
            ("core.bare", "false"),
            ("core.logallrefupdates", "true"),
            ("remote.origin.url", "https://h/x.git"),
            ("remote.origin.fetch", "+refs/heads/*:refs/remotes/origin/*"),
            ("branch.main.remote", "origin"),
            ("branch.lucid/abc.merge", "refs/heads/lucid/abc"),
            ("user.email", "a@b"),
            ("color.diff.meta", "blue"),
        ] {
            assert!(is_allowed(k, v), "{k}");
        }
    }

    #[test]
    fn settings_that_run_commands_or_redirect_are_refused() {
        for (k, v) in [
            ("core.fsmonitor", "touch /tmp/x"),
            ("core.sshcommand", "x"),
            ("core.hookspath", "/tmp"),
            ("core.worktree", "/etc"),
            ("core.pager", "x"),
            ("core.bare", "true"),
            ("core.repositoryformatversion", "2"),
            ("filter.x.clean", "touch /tmp/x"),
            ("diff.x.textconv", "x"),
            ("remote.origin.pushurl", "https://evil/x"),
            ("remote.origin.uploadpack", "x"),
            ("remote.origin.receivepack", "x"),
            ("remote.origin.proxy", "http://evil"),
            ("url.https://evil/.insteadof", "https://github.com/"),
            ("http.proxy", "http://evil"),
            ("http.extraheader", "x"),
            ("credential.helper", "x"),
            ("include.path", "/etc/x"),
            ("includeif.gitdir:/.path", "/etc/x"),
            ("extensions.worktreeconfig", "true"),
            ("submodule.x.update", "!touch /tmp/x"),
            ("branch.main.pushremote", "evil"),
            ("nodot", ""),
        ] {
            assert!(!is_allowed(k, v), "{k} was allowed");
        }
    }
}
