//! The `GIT_ASKPASS` helper: a tiny shell script in a private directory (mode 0700) outside
//! the workspace. It holds no secret: it prints the username or password from environment
//! variables that are set only on the git child process ([`USERNAME_VAR`], [`PASSWORD_VAR`]),
//! and fails when they are absent, so git never falls back to a prompt. The directory is
//! removed when the [`Askpass`] is dropped.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::error::GitError;

/// Environment variable carrying the username to the helper.
pub const USERNAME_VAR: &str = "LUCID_GIT_USERNAME";
/// Environment variable carrying the token to the helper.
pub const PASSWORD_VAR: &str = "LUCID_GIT_PASSWORD";

/// `printf` is a shell builtin, so the value never appears in any process's argv.
const SCRIPT: &str = r#"#!/bin/sh
# Lucid git askpass helper: answers git's prompts from the environment of this git process.
case "$1" in
  [Uu]sername*) [ -n "${LUCID_GIT_USERNAME+set}" ] || exit 1; printf '%s\n' "$LUCID_GIT_USERNAME" ;;
  [Pp]assword*) [ -n "${LUCID_GIT_PASSWORD+set}" ] || exit 1; printf '%s\n' "$LUCID_GIT_PASSWORD" ;;
  *) exit 1 ;;
esac
"#;

/// A private directory holding the askpass script; removed on drop.
#[derive(Debug)]
pub(crate) struct Askpass {
    dir: PathBuf,
    script: PathBuf,
}

impl Askpass {
    /// Creates the helper under the system temp directory. `avoid` is a directory the helper
    /// must not live in (the workspace): an error if the temp directory is inside it.
    pub(crate) fn create(avoid: &Path) -> Result<Self, GitError> {
        let base = std::env::temp_dir();
        if path_is_within(&base, avoid) {
            return Err(GitError::InvalidInput(
                "the system temp directory is inside the workspace; set TMPDIR elsewhere".into(),
            ));
        }
        let dir = base.join(format!("lucid-askpass-{}", uuid::Uuid::new_v4().simple()));
        // create (not create_all): fails if anything already exists at that path.
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| GitError::io("could not create the git credential helper directory", e))?;
        let askpass = Self {
            script: dir.join("askpass.sh"),
            dir,
        };
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o700)
            .open(&askpass.script)
            .map_err(|e| GitError::io("could not write the git credential helper", e))?;
        file.write_all(SCRIPT.as_bytes())
            .and_then(|_| file.sync_all())
            .map_err(|e| GitError::io("could not write the git credential helper", e))?;
        Ok(askpass)
    }

    pub(crate) fn script(&self) -> &Path {
        &self.script
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Askpass {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.dir) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "could not remove the git askpass directory");
        }
    }
}

/// Whether `path` is `root` or below it, comparing canonical forms where they exist.
fn path_is_within(path: &Path, root: &Path) -> bool {
    let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let root = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
    path.starts_with(root)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::process::Command;

    fn run(askpass: &Askpass, prompt: &str, env: &[(&str, &str)]) -> (bool, String) {
        let mut cmd = Command::new(askpass.script());
        cmd.arg(prompt)
            .env_remove(USERNAME_VAR)
            .env_remove(PASSWORD_VAR);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        (out.status.success(), String::from_utf8(out.stdout).unwrap())
    }

    #[test]
    fn helper_is_private_answers_from_env_and_is_removed() {
        let ws = tempfile::tempdir().unwrap();
        let askpass = Askpass::create(ws.path()).unwrap();
        let dir_mode = fs::metadata(askpass.dir()).unwrap().permissions().mode();
        assert_eq!(dir_mode & 0o777, 0o700);
        let file_mode = fs::metadata(askpass.script()).unwrap().permissions().mode();
        assert_eq!(file_mode & 0o777, 0o700);
        assert!(!askpass.dir().starts_with(ws.path()));
        let text = fs::read_to_string(askpass.script()).unwrap();
        assert!(!text.contains("tok-xyz"));

        let env = [(USERNAME_VAR, "alice"), (PASSWORD_VAR, "tok-xyz")];
        assert_eq!(
            run(&askpass, "Username for 'https://h': ", &env),
            (true, "alice\n".into())
        );
        assert_eq!(
            run(&askpass, "Password for 'https://alice@h': ", &env),
            (true, "tok-xyz\n".into())
        );
        assert!(!run(&askpass, "Password for 'https://h': ", &[]).0);
        assert!(!run(&askpass, "Something else", &env).0);

        let dir = askpass.dir().to_path_buf();
        drop(askpass);
        assert!(!dir.exists());
    }

    #[test]
    fn refuses_a_temp_dir_inside_the_workspace() {
        let root = std::env::temp_dir();
        assert!(matches!(
            Askpass::create(&root),
            Err(GitError::InvalidInput(_))
        ));
    }
}
