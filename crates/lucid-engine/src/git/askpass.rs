//! The `GIT_ASKPASS` helper: a tiny shell script in a private directory (mode 0700) outside
//! the workspace. It holds no secret: it prints the username or password from environment
//! variables that are set only on the git child process ([`USERNAME_VAR`], [`PASSWORD_VAR`]).
//! It answers only git's exact prompts for the operation's own origin ([`USERNAME_PROMPT_VAR`],
//! [`PASSWORD_PROMPT_VAR`], see [`prompts`]), so a redirect to another host never gets the
//! token, and fails otherwise, so git never falls back to a terminal prompt. The directory is
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

/// The exact username prompt the helper answers.
pub const USERNAME_PROMPT_VAR: &str = "LUCID_GIT_USERNAME_PROMPT";
/// The exact password prompt the helper answers.
pub const PASSWORD_PROMPT_VAR: &str = "LUCID_GIT_PASSWORD_PROMPT";

/// `printf` is a shell builtin, so the value never appears in any process's argv.
const SCRIPT: &str = r#"#!/bin/sh
# Lucid git askpass helper: answers git's prompts for one origin from this process's environment.
if [ -n "${LUCID_GIT_USERNAME_PROMPT+set}" ] && [ "$1" = "$LUCID_GIT_USERNAME_PROMPT" ]; then
  printf '%s\n' "$LUCID_GIT_USERNAME"
elif [ -n "${LUCID_GIT_PASSWORD_PROMPT+set}" ] && [ "$1" = "$LUCID_GIT_PASSWORD_PROMPT" ]; then
  printf '%s\n' "$LUCID_GIT_PASSWORD"
else
  exit 1
fi
"#;

/// The prompts git (C locale) shows for `username` at `origin` (`scheme://host[:port]`):
/// `Username for '<origin>': ` and `Password for '<scheme>://<username>@<host[:port]>': `.
pub(crate) fn prompts(origin: &str, username: &str) -> (String, String) {
    let user_prompt = format!("Username for '{origin}': ");
    let with_user = match origin.split_once("://") {
        Some((scheme, host)) => format!("{scheme}://{username}@{host}"),
        None => format!("{username}@{origin}"),
    };
    (user_prompt, format!("Password for '{with_user}': "))
}

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
        // Run through `sh` rather than exec'ing the file: a parallel test forking while the
        // script was being written could hold a write handle and make exec fail (ETXTBSY).
        // (git runs the helper much later, after that window; its mode is checked below.)
        let mut cmd = Command::new("/bin/sh");
        cmd.arg(askpass.script()).arg(prompt);
        for var in [
            USERNAME_VAR,
            PASSWORD_VAR,
            USERNAME_PROMPT_VAR,
            PASSWORD_PROMPT_VAR,
        ] {
            cmd.env_remove(var);
        }
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

        let (user_prompt, pass_prompt) = prompts("https://h:8443", "alice");
        assert_eq!(user_prompt, "Username for 'https://h:8443': ");
        assert_eq!(pass_prompt, "Password for 'https://alice@h:8443': ");
        let env = [
            (USERNAME_VAR, "alice"),
            (PASSWORD_VAR, "tok-xyz"),
            (USERNAME_PROMPT_VAR, user_prompt.as_str()),
            (PASSWORD_PROMPT_VAR, pass_prompt.as_str()),
        ];
        assert_eq!(run(&askpass, &user_prompt, &env), (true, "alice\n".into()));
        assert_eq!(
            run(&askpass, &pass_prompt, &env),
            (true, "tok-xyz\n".into())
        );
        // Another host (e.g. after a redirect), or no credentials: no answer.
        assert!(!run(&askpass, "Password for 'https://alice@evil:8443': ", &env).0);
        assert!(!run(&askpass, "Username for 'https://h': ", &env).0);
        assert!(!run(&askpass, &pass_prompt, &[]).0);
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
