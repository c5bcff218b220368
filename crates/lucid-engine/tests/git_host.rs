//! Host-side git against a real, token-protected git smart-HTTP server on 127.0.0.1
//! (`lucid_testkit::git_server`), with the real `git` binary.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lucid_engine::git::{
    branch_for_session, CommitOutcome, Git, GitCredentials, GitError, GitIdentity, GitOptions,
};
use lucid_testkit::git_server::{GitServer, SEED_AUTHOR_EMAIL};

const USER: &str = "alice";
const TOKEN: &str = "tok-Zq81-very-secret-4242";

fn creds() -> GitCredentials {
    GitCredentials {
        username: USER.into(),
        token: TOKEN.into(),
    }
}

fn identity() -> GitIdentity {
    GitIdentity {
        name: "Lucid Agent".into(),
        email: "agent@lucid.test".into(),
    }
}

async fn server_with_app() -> GitServer {
    let server = GitServer::start(USER, TOKEN).await.unwrap();
    server
        .create_repo(
            "app",
            &[("README.md", "hello\n"), ("src/main.rs", "fn main() {}\n")],
            &["feature/x"],
        )
        .await
        .unwrap();
    server
}

/// Files under `root` (not following symlinks) whose bytes contain `needle`.
fn files_containing(root: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() {
                let bytes = std::fs::read(entry.path()).unwrap();
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    hits.push(entry.path());
                }
            }
        }
    }
    hits
}

fn assert_token_absent(root: &Path) {
    for needle in [TOKEN.as_bytes(), b"very-secret".as_slice()] {
        let hits = files_containing(root, needle);
        assert!(hits.is_empty(), "token found in {hits:?}");
    }
    // Sanity check of the search itself.
    assert!(!files_containing(root, b"hello").is_empty());
}

/// A stand-in `git` that logs its argv (one argument per line) and has the real git trace
/// every process it starts (GIT_TRACE), so argv of git's helpers is captured too.
struct LoggingGit {
    dir: tempfile::TempDir,
}

impl LoggingGit {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("git");
        let argv = dir.path().join("argv.log");
        let trace = dir.path().join("trace.log");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done >> '{}'\nGIT_TRACE='{}' exec git \"$@\"\n",
                argv.display(),
                trace.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        Self { dir }
    }

    fn git(&self) -> Git {
        Git::new(GitOptions {
            program: self.dir.path().join("git"),
            ..GitOptions::default()
        })
    }

    fn argv(&self) -> Option<String> {
        std::fs::read_to_string(self.dir.path().join("argv.log")).ok()
    }

    fn trace(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("trace.log")).unwrap_or_default()
    }
}

fn progress_sink() -> (Arc<Mutex<Vec<String>>>, impl Fn(String) + Send + Sync) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    (lines, move |line: String| sink.lock().unwrap().push(line))
}

async fn git_out(dir: &Path, args: &[&str]) -> String {
    let out = tokio::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test]
async fn clone_with_token_checks_out_default_and_named_branch() {
    let server = server_with_app().await;
    let tmp = tempfile::tempdir().unwrap();
    let git = Git::default();

    let ws = tmp.path().join("default");
    let (lines, progress) = progress_sink();
    git.clone_repo(&server.url_for("app"), None, &ws, Some(&creds()), progress)
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(ws.join("README.md")).unwrap(),
        "hello\n"
    );
    assert!(!ws.join("BRANCH.txt").exists());
    assert_eq!(git.current_branch(&ws).await.unwrap(), "main");
    let lines = lines.lock().unwrap().clone();
    assert!(
        lines.iter().any(|l| l.starts_with("Cloning into")),
        "{lines:?}"
    );
    assert!(lines.iter().all(|l| !l.contains(TOKEN)));

    let ws = tmp.path().join("feature");
    git.clone_repo(
        &server.url_for("app"),
        Some("feature/x"),
        &ws,
        Some(&creds()),
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(
        std::fs::read_to_string(ws.join("BRANCH.txt")).unwrap(),
        "feature/x"
    );
    assert_eq!(git.current_branch(&ws).await.unwrap(), "feature/x");

    // The server saw Basic auth with exactly these credentials.
    let requests = server.requests();
    assert!(requests
        .iter()
        .any(|r| r.authorized && r.path_and_query.contains("git-upload-pack")));
    assert!(requests
        .iter()
        .filter(|r| r.authorization.is_some())
        .all(|r| r.authorization.as_deref() == Some(server.expected_authorization())));
}

#[tokio::test]
async fn clone_of_a_missing_branch_fails_and_leaves_nothing() {
    let server = server_with_app().await;
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("ws");
    let err = Git::default()
        .clone_repo(
            &server.url_for("app"),
            Some("nope"),
            &ws,
            Some(&creds()),
            |_| {},
        )
        .await
        .unwrap_err();
    assert!(matches!(err, GitError::CommandFailed { .. }), "{err}");
    assert!(err.to_string().contains("nope"), "{err}");
    assert!(!ws.exists());
}

#[tokio::test]
async fn clone_with_wrong_or_missing_token_fails_without_leaking_it() {
    let server = server_with_app().await;
    let tmp = tempfile::tempdir().unwrap();
    let git = Git::default();
    let wrong = GitCredentials {
        username: USER.into(),
        token: "wrong-token-77-secret".into(),
    };

    let ws = tmp.path().join("wrong");
    let err = git
        .clone_repo(&server.url_for("app"), None, &ws, Some(&wrong), |_| {})
        .await
        .unwrap_err();
    assert!(
        matches!(err, GitError::AuthenticationFailed { .. }),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        !msg.contains("wrong-token-77-secret") && !msg.contains(TOKEN),
        "{msg}"
    );
    assert!(msg.contains(&server.url_for("app")), "{msg}");
    assert!(!ws.exists(), "a failed clone left its directory behind");
    // The wrong token was offered (so askpass was used) and refused.
    assert!(server
        .requests()
        .iter()
        .any(|r| r.authorization.is_some() && !r.authorized));

    // No credentials at all: git must not hang on a prompt, and an existing empty
    // destination stays as it was.
    let ws = tmp.path().join("none");
    std::fs::create_dir(&ws).unwrap();
    let err = git
        .clone_repo(&server.url_for("app"), None, &ws, None, |_| {})
        .await
        .unwrap_err();
    assert!(
        matches!(err, GitError::AuthenticationFailed { .. }),
        "{err}"
    );
    assert!(ws.is_dir());
    assert_eq!(std::fs::read_dir(&ws).unwrap().count(), 0);

    // Token embedded in the URL but wrong: same error, URL shown without userinfo.
    let url = server
        .url_for("app")
        .replace("http://", "http://alice:wrong-token-77-secret@");
    let err = git
        .clone_repo(&url, None, &tmp.path().join("embedded"), None, |_| {})
        .await
        .unwrap_err();
    assert!(
        matches!(err, GitError::AuthenticationFailed { .. }),
        "{err}"
    );
    assert!(!err.to_string().contains("wrong-token-77-secret"), "{err}");
}

#[tokio::test]
async fn token_never_lands_in_the_workspace() {
    let server = server_with_app().await;
    let tmp = tempfile::tempdir().unwrap();
    let git = Git::default();
    let ws = tmp.path().join("ws");
    // Credentials embedded in the URL are used, then dropped from it.
    let url = server
        .url_for("app")
        .replace("http://", &format!("http://{USER}:{TOKEN}@"));
    git.clone_repo(&url, None, &ws, None, |_| {}).await.unwrap();
    assert!(server.requests().iter().any(|r| r.authorized));

    assert_token_absent(&ws);
    let config = std::fs::read_to_string(ws.join(".git/config")).unwrap();
    assert!(!config.contains(TOKEN) && !config.contains(&format!("{USER}@")));
    assert_eq!(
        git.origin_url(&ws).await.unwrap().as_deref(),
        Some(server.url_for("app").as_str())
    );
    assert_eq!(
        git_out(&ws, &["config", "remote.origin.url"]).await,
        server.url_for("app")
    );

    // Commit and push with the token: still nowhere in the workspace.
    std::fs::write(ws.join("new.txt"), "new\n").unwrap();
    let branch = branch_for_session("0d15ea5e-1234");
    git.commit_all(&ws, &branch, &identity(), "Add new.txt")
        .await
        .unwrap();
    git.push_branch(&ws, &server.url_for("app"), &branch, Some(&creds()))
        .await
        .unwrap();
    assert_token_absent(&ws);
    // No askpass helper was left behind in the temp directory's lucid-askpass-* dirs
    // that contains the token (the helper never holds it).
    for entry in std::fs::read_dir(std::env::temp_dir()).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("lucid-askpass-") && entry.path().is_dir() {
            assert!(files_containing(&entry.path(), TOKEN.as_bytes()).is_empty());
        }
    }
}

#[tokio::test]
async fn token_is_never_in_the_argv_of_git_or_its_helpers() {
    let server = server_with_app().await;
    let tmp = tempfile::tempdir().unwrap();
    let logging = LoggingGit::new();
    let git = logging.git();
    let ws = tmp.path().join("ws");
    git.clone_repo(&server.url_for("app"), None, &ws, Some(&creds()), |_| {})
        .await
        .unwrap();
    std::fs::write(ws.join("README.md"), "changed\n").unwrap();
    let branch = branch_for_session("feedbeef99");
    git.commit_all(&ws, &branch, &identity(), "Change README")
        .await
        .unwrap();
    git.push_branch(&ws, &server.url_for("app"), &branch, Some(&creds()))
        .await
        .unwrap();

    let argv = logging.argv().expect("the logging git was not used");
    let trace = logging.trace();
    // The logs really captured the operations, the URL and git's helper processes.
    assert!(argv.lines().any(|l| l == "clone"), "{argv}");
    assert!(argv.lines().any(|l| l == "push"), "{argv}");
    assert!(argv.lines().any(|l| l == "credential.helper="), "{argv}");
    assert!(argv.contains(&server.url_for("app")), "{argv}");
    assert!(trace.contains("remote-http"), "{trace}");
    assert!(trace.contains("askpass"), "askpass was not used: {trace}");
    for log in [&argv, &trace] {
        assert!(!log.contains(TOKEN), "token in argv: {log}");
        assert!(!log.contains("very-secret"));
        assert!(!log.contains(&format!("{USER}:")));
    }
}

#[tokio::test]
async fn commit_and_push_create_the_session_branch_with_the_right_author() {
    let server = server_with_app().await;
    let tmp = tempfile::tempdir().unwrap();
    let git = Git::default();
    let ws = tmp.path().join("ws");
    git.clone_repo(&server.url_for("app"), None, &ws, Some(&creds()), |_| {})
        .await
        .unwrap();
    let main_before = server.branch_sha("app", "main").await.unwrap().unwrap();

    std::fs::write(ws.join("README.md"), "hello, changed\n").unwrap();
    std::fs::create_dir_all(ws.join("docs")).unwrap();
    std::fs::write(ws.join("docs/notes.md"), "# Notes\n").unwrap();
    std::fs::remove_file(ws.join("src/main.rs")).unwrap();

    let branch = branch_for_session("3f2a9c1e-7b4d-4e2a-9f00-123456789abc");
    assert_eq!(branch, "lucid/3f2a9c1e");
    let message = "Update README and add notes\n\n# Kept: markdown heading";
    let outcome = git
        .commit_all(&ws, &branch, &identity(), message)
        .await
        .unwrap();
    let sha = match outcome {
        CommitOutcome::Committed { branch: b, sha } => {
            assert_eq!(b, branch);
            sha
        }
        other => panic!("expected a commit, got {other:?}"),
    };
    assert_eq!(sha.len(), 40);
    assert_eq!(git.current_branch(&ws).await.unwrap(), branch);

    git.push_branch(&ws, &server.url_for("app"), &branch, Some(&creds()))
        .await
        .unwrap();
    assert_eq!(
        server.branch_sha("app", &branch).await.unwrap().as_deref(),
        Some(sha.as_str())
    );
    assert_eq!(
        server.branch_sha("app", "main").await.unwrap().unwrap(),
        main_before,
        "main must not move"
    );
    let reference = format!("refs/heads/{branch}");
    let meta = server
        .git_in_repo(
            "app",
            &["log", "-1", "--format=%an|%ae|%cn|%ce|%B", &reference],
        )
        .await
        .unwrap();
    assert!(
        meta.starts_with("Lucid Agent|agent@lucid.test|Lucid Agent|agent@lucid.test|"),
        "{meta}"
    );
    assert!(meta.contains("# Kept: markdown heading"), "{meta}");
    assert!(!meta.contains(SEED_AUTHOR_EMAIL));
    let files = server
        .git_in_repo("app", &["ls-tree", "-r", "--name-only", &reference])
        .await
        .unwrap();
    let files: Vec<&str> = files.lines().collect();
    assert_eq!(files, ["README.md", "docs/notes.md"]);
    // Upstream is set to origin.
    assert_eq!(
        git_out(&ws, &["config", &format!("branch.{branch}.remote")]).await,
        "origin"
    );

    // Nothing changed since: NothingToCommit, and the branch stays.
    assert_eq!(
        git.commit_all(&ws, &branch, &identity(), "again")
            .await
            .unwrap(),
        CommitOutcome::NothingToCommit {
            branch: branch.clone()
        }
    );
    // A further change goes on the same branch and pushes as a fast-forward.
    std::fs::write(ws.join("more.txt"), "more\n").unwrap();
    let CommitOutcome::Committed { sha: sha2, .. } = git
        .commit_all(&ws, &branch, &identity(), "More")
        .await
        .unwrap()
    else {
        panic!("expected a commit");
    };
    git.push_branch(&ws, &server.url_for("app"), &branch, Some(&creds()))
        .await
        .unwrap();
    assert_eq!(
        server.branch_sha("app", &branch).await.unwrap().as_deref(),
        Some(sha2.as_str())
    );
}

#[tokio::test]
async fn clean_workspace_reports_nothing_to_commit() {
    let server = server_with_app().await;
    let tmp = tempfile::tempdir().unwrap();
    let git = Git::default();
    let ws = tmp.path().join("ws");
    git.clone_repo(&server.url_for("app"), None, &ws, Some(&creds()), |_| {})
        .await
        .unwrap();
    let head_before = git_out(&ws, &["rev-parse", "HEAD"]).await;
    let outcome = git
        .commit_all(&ws, "lucid/abcd1234", &identity(), "nothing")
        .await
        .unwrap();
    assert_eq!(
        outcome,
        CommitOutcome::NothingToCommit {
            branch: "lucid/abcd1234".into()
        }
    );
    assert_eq!(git_out(&ws, &["rev-parse", "HEAD"]).await, head_before);

    // A brand-new repository without commits is also "nothing to commit".
    let fresh = tmp.path().join("fresh");
    std::fs::create_dir(&fresh).unwrap();
    git_out(&fresh, &["init", "--quiet"]).await;
    assert!(matches!(
        git.commit_all(&fresh, "lucid/x", &identity(), "m")
            .await
            .unwrap(),
        CommitOutcome::NothingToCommit { .. }
    ));
    std::fs::write(fresh.join("a.txt"), "a\n").unwrap();
    assert!(matches!(
        git.commit_all(&fresh, "lucid/x", &identity(), "first")
            .await
            .unwrap(),
        CommitOutcome::Committed { .. }
    ));
}

#[tokio::test]
async fn rejected_urls_and_branches_never_run_git() {
    let logging = LoggingGit::new();
    let git = logging.git();
    let tmp = tempfile::tempdir().unwrap();
    let marker = tmp.path().join("pwned");
    let ext = format!("ext::sh -c touch% {}", marker.display());
    let upload_pack = format!("--upload-pack=touch {}", marker.display());
    let bad_urls = [
        ext.as_str(),
        upload_pack.as_str(),
        "-u",
        "http://example.com/x.git",
        "http://alice:tok@192.168.1.10/x.git",
        "ssh://-oProxyCommand=touch/x",
        "ssh://git@github.com/o/r.git",
        "git@github.com:o/r.git",
        "fd::3",
        "relative/dir",
        "",
    ];
    for (i, url) in bad_urls.iter().enumerate() {
        let dest = tmp.path().join(format!("dest{i}"));
        let err = git
            .clone_repo(url, None, &dest, Some(&creds()), |_| {})
            .await
            .unwrap_err();
        assert!(matches!(err, GitError::InvalidUrl { .. }), "{url}: {err}");
        assert!(!err.to_string().contains("tok@"), "{err}");
        assert!(!dest.exists());
        let err = git
            .push_branch(tmp.path(), url, "main", Some(&creds()))
            .await
            .unwrap_err();
        assert!(matches!(err, GitError::InvalidUrl { .. }), "{url}: {err}");
    }
    for branch in ["--force", "-b", "@{-1}", "a..b", "main:evil", "x y"] {
        let err = git
            .clone_repo(
                "https://github.com/o/r.git",
                Some(branch),
                &tmp.path().join("b"),
                None,
                |_| {},
            )
            .await
            .unwrap_err();
        assert!(
            matches!(err, GitError::InvalidBranch { .. }),
            "{branch}: {err}"
        );
    }
    assert!(logging.argv().is_none(), "git ran: {:?}", logging.argv());
    assert!(!marker.exists());
}

#[tokio::test]
async fn workspace_hooks_and_dangerous_config_never_run_on_the_host() {
    let server = server_with_app().await;
    let tmp = tempfile::tempdir().unwrap();
    let git = Git::default();
    let ws = tmp.path().join("ws");
    git.clone_repo(&server.url_for("app"), None, &ws, Some(&creds()), |_| {})
        .await
        .unwrap();
    let marker = tmp.path().join("hook-ran");
    for hook in [
        "pre-commit",
        "commit-msg",
        "post-commit",
        "pre-push",
        "reference-transaction",
    ] {
        let path = ws.join(".git/hooks").join(hook);
        std::fs::write(
            &path,
            format!("#!/bin/sh\necho {hook} >> '{}'\n", marker.display()),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
    }
    std::fs::write(ws.join("x.txt"), "x\n").unwrap();
    git.commit_all(&ws, "lucid/hooks", &identity(), "x")
        .await
        .unwrap();
    git.push_branch(&ws, &server.url_for("app"), "lucid/hooks", Some(&creds()))
        .await
        .unwrap();
    assert!(!marker.exists(), "a workspace hook ran on the host");

    // Config that would run commands or redirect the push: refused before git runs in it.
    let dangerous = [
        ("core.fsmonitor", format!("touch {}", marker.display())),
        ("filter.x.clean", format!("touch {}", marker.display())),
        ("url.http://127.0.0.1:9/.insteadOf", server.base_url()),
        (
            "remote.origin.pushurl",
            "http://127.0.0.1:9/evil.git".to_string(),
        ),
        ("core.worktree", "/".to_string()),
    ];
    for (key, value) in &dangerous {
        git_out(&ws, &["config", key, value]).await;
        std::fs::write(ws.join("y.txt"), key).unwrap();
        let err = git
            .commit_all(&ws, "lucid/hooks", &identity(), "y")
            .await
            .unwrap_err();
        assert!(matches!(err, GitError::UnsafeRepository(_)), "{key}: {err}");
        let err = git
            .push_branch(&ws, &server.url_for("app"), "lucid/hooks", Some(&creds()))
            .await
            .unwrap_err();
        assert!(matches!(err, GitError::UnsafeRepository(_)), "{key}: {err}");
        git_out(&ws, &["config", "--unset-all", key]).await;
    }
    assert!(!marker.exists());

    // A `.git` file pointing elsewhere is refused too.
    let other = tmp.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(
        other.join(".git"),
        format!("gitdir: {}\n", ws.join(".git").display()),
    )
    .unwrap();
    assert!(matches!(
        git.commit_all(&other, "lucid/x", &identity(), "m").await,
        Err(GitError::UnsafeRepository(_))
    ));
    assert!(matches!(
        git.current_branch(&tmp.path().join("missing")).await,
        Err(GitError::NotARepository(_))
    ));
}

#[tokio::test]
async fn push_goes_to_the_session_remote_even_if_origin_was_changed() {
    let server = server_with_app().await;
    server
        .create_repo("decoy", &[("a", "a")], &[])
        .await
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let git = Git::default();
    let ws = tmp.path().join("ws");
    git.clone_repo(&server.url_for("app"), None, &ws, Some(&creds()), |_| {})
        .await
        .unwrap();
    // The agent points origin elsewhere.
    let decoy = server.bare_path("decoy");
    git_out(
        &ws,
        &["remote", "set-url", "origin", decoy.to_str().unwrap()],
    )
    .await;
    std::fs::write(ws.join("z.txt"), "z\n").unwrap();
    git.commit_all(&ws, "lucid/target", &identity(), "z")
        .await
        .unwrap();
    git.push_branch(&ws, &server.url_for("app"), "lucid/target", Some(&creds()))
        .await
        .unwrap();
    assert!(server
        .branch_sha("app", "lucid/target")
        .await
        .unwrap()
        .is_some());
    assert!(server
        .branch_sha("decoy", "lucid/target")
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        git.origin_url(&ws).await.unwrap().as_deref(),
        Some(server.url_for("app").as_str())
    );
}

#[tokio::test]
async fn diverged_push_is_rejected_clearly() {
    let server = server_with_app().await;
    let tmp = tempfile::tempdir().unwrap();
    let git = Git::default();
    let mut workspaces = Vec::new();
    for name in ["one", "two"] {
        let ws = tmp.path().join(name);
        git.clone_repo(&server.url_for("app"), None, &ws, Some(&creds()), |_| {})
            .await
            .unwrap();
        std::fs::write(ws.join("who.txt"), name).unwrap();
        git.commit_all(&ws, "lucid/same", &identity(), name)
            .await
            .unwrap();
        workspaces.push(ws);
    }
    git.push_branch(
        &workspaces[0],
        &server.url_for("app"),
        "lucid/same",
        Some(&creds()),
    )
    .await
    .unwrap();
    let err = git
        .push_branch(
            &workspaces[1],
            &server.url_for("app"),
            "lucid/same",
            Some(&creds()),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, GitError::PushRejected { .. }), "{err}");
    assert!(!err.to_string().contains(TOKEN));
    // Pushing a branch that does not exist locally is a clear input error.
    let err = git
        .push_branch(
            &workspaces[1],
            &server.url_for("app"),
            "lucid/none",
            Some(&creds()),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, GitError::InvalidInput(_)), "{err}");
}

#[tokio::test]
async fn clone_into_a_non_empty_destination_is_refused_without_network() {
    let server = server_with_app().await;
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("ws");
    std::fs::create_dir(&ws).unwrap();
    std::fs::write(ws.join("keep.txt"), "mine").unwrap();
    let err = Git::default()
        .clone_repo(&server.url_for("app"), None, &ws, Some(&creds()), |_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, GitError::DestinationNotEmpty(_)), "{err}");
    assert_eq!(
        std::fs::read_to_string(ws.join("keep.txt")).unwrap(),
        "mine"
    );
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn local_paths_and_file_urls_can_be_cloned() {
    let server = server_with_app().await;
    let tmp = tempfile::tempdir().unwrap();
    let git = Git::default();
    let bare = server.bare_path("app");
    let a = tmp.path().join("a");
    git.clone_repo(bare.to_str().unwrap(), None, &a, None, |_| {})
        .await
        .unwrap();
    assert!(a.join("README.md").is_file());
    let b = tmp.path().join("b");
    let url = format!("file://{}", bare.display());
    git.clone_repo(&url, Some("feature/x"), &b, Some(&creds()), |_| {})
        .await
        .unwrap();
    assert!(b.join("BRANCH.txt").is_file());
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn clone_times_out_against_a_silent_server_and_cleans_up() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // Accept connections and never answer.
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let git = Git::new(GitOptions {
        network_timeout: Duration::from_secs(2),
        ..GitOptions::default()
    });
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("ws");
    let started = std::time::Instant::now();
    let err = git
        .clone_repo(
            &format!("http://{addr}/x.git"),
            None,
            &ws,
            Some(&creds()),
            |_| {},
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            GitError::TimedOut {
                operation: "clone",
                ..
            }
        ),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(!ws.exists());
    holder.abort();
}

#[tokio::test]
async fn token_is_not_given_to_a_host_the_remote_redirects_to() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = server_with_app().await;
    let base = server.base_url();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // Redirects every request to the same path on the git server (another origin).
    let redirector = tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut buf = vec![0u8; 8192];
            let n = socket.read(&mut buf).await.unwrap_or(0);
            let request = String::from_utf8_lossy(&buf[..n]).into_owned();
            let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
            let response = format!(
                "HTTP/1.1 302 Found\r\nLocation: {base}{path}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            let _ = socket.write_all(response.as_bytes()).await;
        }
    });
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("ws");
    let err = Git::default()
        .clone_repo(
            &format!("http://{addr}/app.git"),
            None,
            &ws,
            Some(&creds()),
            |_| {},
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, GitError::AuthenticationFailed { .. }),
        "{err}"
    );
    let requests = server.requests();
    assert!(!requests.is_empty(), "the redirect was not followed");
    assert!(
        requests.iter().all(|r| r.authorization.is_none()),
        "credentials went to the redirect target: {requests:?}"
    );
    assert!(!ws.exists());
    redirector.abort();
}
