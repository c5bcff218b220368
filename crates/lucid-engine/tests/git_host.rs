//! Host-side git against a real, token-protected git smart-HTTP server on 127.0.0.1
//! (`lucid_testkit::git_server`), with the real `git` binary.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lucid_engine::git::{
    branch_for_session, CommitOutcome, Git, GitCredentials, GitError, GitIdentity, GitOptions,
    NoFreeze, SnapshotMode,
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
    assert_eq!(
        git_out(&ws, &["symbolic-ref", "--short", "HEAD"]).await,
        "main"
    );
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
    assert_eq!(
        git_out(&ws, &["symbolic-ref", "--short", "HEAD"]).await,
        "feature/x"
    );

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

/// A session's two repositories: the host-private bare one and the workspace.
struct Session {
    private: PathBuf,
    ws: PathBuf,
}

async fn clone_session(git: &Git, url: &str, root: &Path, name: &str) -> Session {
    let session = Session {
        private: root.join(format!("{name}-private.git")),
        ws: root.join(name),
    };
    git.clone_for_session(
        url,
        None,
        &session.private,
        &session.ws,
        Some(&creds()),
        |_| {},
    )
    .await
    .unwrap();
    session
}

async fn commit(git: &Git, s: &Session, branch: &str, message: &str) -> CommitOutcome {
    git.commit_workspace(
        &s.private,
        &s.ws,
        branch,
        &identity(),
        message,
        SnapshotMode::ReplaceTree,
        &NoFreeze,
    )
    .await
    .unwrap()
    .0
}

#[tokio::test]
async fn token_never_lands_in_the_workspace() {
    let server = server_with_app().await;
    let tmp = tempfile::tempdir().unwrap();
    let git = Git::default();
    let s = Session {
        private: tmp.path().join("private.git"),
        ws: tmp.path().join("ws"),
    };
    // Credentials embedded in the URL are used, then dropped from it.
    let url = server
        .url_for("app")
        .replace("http://", &format!("http://{USER}:{TOKEN}@"));
    git.clone_for_session(&url, None, &s.private, &s.ws, None, |_| {})
        .await
        .unwrap();
    assert!(server.requests().iter().any(|r| r.authorized));

    assert_token_absent(&s.ws);
    let config = std::fs::read_to_string(s.ws.join(".git/config")).unwrap();
    assert!(!config.contains(TOKEN) && !config.contains(&format!("{USER}@")));
    assert_eq!(
        git_out(&s.ws, &["config", "remote.origin.url"]).await,
        server.url_for("app")
    );
    // The workspace knows nothing of the private repository.
    assert!(!config.contains(s.private.to_str().unwrap()), "{config}");

    // Commit and push with the token: nowhere in the workspace or the private repository.
    std::fs::write(s.ws.join("new.txt"), "new\n").unwrap();
    let branch = branch_for_session("0d15ea5e-1234");
    commit(&git, &s, &branch, "Add new.txt").await;
    git.push_private(&s.private, &server.url_for("app"), &branch, Some(&creds()))
        .await
        .unwrap();
    assert_token_absent(&s.ws);
    for needle in [TOKEN.as_bytes(), b"very-secret".as_slice()] {
        assert!(files_containing(&s.private, needle).is_empty());
    }
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
    let s = clone_session(&git, &server.url_for("app"), tmp.path(), "ws").await;
    std::fs::write(s.ws.join("README.md"), "changed\n").unwrap();
    let branch = branch_for_session("feedbeef99");
    commit(&git, &s, &branch, "Change README").await;
    git.push_private(&s.private, &server.url_for("app"), &branch, Some(&creds()))
        .await
        .unwrap();

    let argv = logging.argv().expect("the logging git was not used");
    let trace = logging.trace();
    // The logs really captured the operations, the URL and git's helper processes.
    assert!(argv.lines().any(|l| l == "clone"), "{argv}");
    assert!(argv.lines().any(|l| l == "push"), "{argv}");
    assert!(argv.lines().any(|l| l == "fast-import"), "{argv}");
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
async fn commit_and_push_carry_files_deletions_modes_and_links_with_the_right_author() {
    let server = server_with_app().await;
    let tmp = tempfile::tempdir().unwrap();
    let git = Git::default();
    let s = clone_session(&git, &server.url_for("app"), tmp.path(), "ws").await;
    let main_before = server.branch_sha("app", "main").await.unwrap().unwrap();

    std::fs::write(s.ws.join("README.md"), "hello, changed\n").unwrap();
    std::fs::create_dir_all(s.ws.join("docs")).unwrap();
    std::fs::write(s.ws.join("docs/notes.md"), "# Notes\n").unwrap();
    std::fs::remove_file(s.ws.join("src/main.rs")).unwrap();
    std::fs::write(s.ws.join("run.sh"), "#!/bin/sh\necho hi\n").unwrap();
    std::fs::set_permissions(
        s.ws.join("run.sh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    std::os::unix::fs::symlink("docs/notes.md", s.ws.join("notes-link")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", s.ws.join("abs-link")).unwrap();
    // Ignored, untracked: left out like `git add -A` would.
    std::fs::write(s.ws.join(".gitignore"), "*.tmp\n").unwrap();
    std::fs::write(s.ws.join("scratch.tmp"), "scratch\n").unwrap();
    // The agent's own commits and `.git` content are not what the PR is built from.
    git_out(&s.ws, &["config", "user.name", "$(touch /tmp/x)"]).await;

    let branch = branch_for_session("3f2a9c1e-7b4d-4e2a-9f00-123456789abc");
    assert_eq!(branch, "lucid/3f2a9c1e");
    let message = "Update README and add notes\n\n# Kept: markdown heading";
    let sha = match commit(&git, &s, &branch, message).await {
        CommitOutcome::Committed { branch: b, sha } => {
            assert_eq!(b, branch);
            sha
        }
        other => panic!("expected a commit, got {other:?}"),
    };
    assert_eq!(sha.len(), 40);

    git.push_private(&s.private, &server.url_for("app"), &branch, Some(&creds()))
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
            &["log", "-1", "--format=%an|%ae|%cn|%ce|%P|%B", &reference],
        )
        .await
        .unwrap();
    assert!(
        meta.starts_with(&format!(
            "Lucid Agent|agent@lucid.test|Lucid Agent|agent@lucid.test|{main_before}|"
        )),
        "{meta}"
    );
    assert!(meta.contains("# Kept: markdown heading"), "{meta}");
    assert!(!meta.contains(SEED_AUTHOR_EMAIL));
    let tree = server
        .git_in_repo("app", &["ls-tree", "-r", &reference])
        .await
        .unwrap();
    let entries: Vec<(String, String)> = tree
        .lines()
        .map(|l| {
            let (meta, path) = l.split_once('\t').unwrap();
            (
                path.to_string(),
                meta.split(' ').next().unwrap().to_string(),
            )
        })
        .collect();
    let expect = |path: &str, mode: &str| (path.to_string(), mode.to_string());
    assert_eq!(
        entries,
        vec![
            expect(".gitignore", "100644"),
            expect("README.md", "100644"),
            expect("abs-link", "120000"),
            expect("docs/notes.md", "100644"),
            expect("notes-link", "120000"),
            expect("run.sh", "100755"),
        ]
    );
    let link = server
        .git_in_repo("app", &["cat-file", "-p", &format!("{reference}:abs-link")])
        .await
        .unwrap();
    assert_eq!(
        link, "/etc/passwd",
        "links are stored as links, never followed"
    );

    // Nothing changed since: NothingToCommit, and the branch stays.
    assert_eq!(
        commit(&git, &s, &branch, "again").await,
        CommitOutcome::NothingToCommit {
            branch: branch.clone()
        }
    );
    // A further change goes on the same branch and pushes as a fast-forward.
    std::fs::write(s.ws.join("more.txt"), "more\n").unwrap();
    let CommitOutcome::Committed { sha: sha2, .. } = commit(&git, &s, &branch, "More").await else {
        panic!("expected a commit");
    };
    git.push_private(&s.private, &server.url_for("app"), &branch, Some(&creds()))
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
    let s = clone_session(&git, &server.url_for("app"), tmp.path(), "ws").await;
    let head_before = git_out(&s.ws, &["rev-parse", "HEAD"]).await;
    let outcome = commit(&git, &s, "lucid/abcd1234", "nothing").await;
    assert_eq!(
        outcome,
        CommitOutcome::NothingToCommit {
            branch: "lucid/abcd1234".into()
        }
    );
    assert_eq!(git_out(&s.ws, &["rev-parse", "HEAD"]).await, head_before);
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
            .push_private(tmp.path(), url, "main", Some(&creds()))
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
async fn nothing_in_the_workspace_git_takes_part_in_host_side_git() {
    let server = server_with_app().await;
    server
        .create_repo("decoy", &[("a", "a")], &[])
        .await
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let git = Git::default();
    let s = clone_session(&git, &server.url_for("app"), tmp.path(), "ws").await;
    let marker = tmp.path().join("ran");
    for hook in [
        "pre-commit",
        "commit-msg",
        "post-commit",
        "pre-push",
        "reference-transaction",
        "post-checkout",
    ] {
        let path = s.ws.join(".git/hooks").join(hook);
        std::fs::write(
            &path,
            format!("#!/bin/sh\necho {hook} >> '{}'\n", marker.display()),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
    }
    // Config that would run commands or redirect the push, a clean filter for every file, a
    // reflog that points outside, and an origin pointing at a decoy.
    let decoy = server.bare_path("decoy");
    git_out(
        &s.ws,
        &["remote", "set-url", "origin", decoy.to_str().unwrap()],
    )
    .await;
    let touch = format!("touch {}", marker.display());
    for (key, value) in [
        ("core.fsmonitor", touch.as_str()),
        ("filter.x.clean", touch.as_str()),
        ("filter.x.process", touch.as_str()),
        ("core.pager", touch.as_str()),
        (
            "url.http://127.0.0.1:9/.insteadOf",
            server.base_url().as_str(),
        ),
        ("remote.origin.pushurl", "http://127.0.0.1:9/evil.git"),
        ("http.proxy", "http://127.0.0.1:9"),
        ("core.worktree", "/"),
        ("include.path", "/etc/passwd"),
    ] {
        git_out(&s.ws, &["config", key, value]).await;
    }
    std::fs::write(s.ws.join(".gitattributes"), "* filter=x\n").unwrap();
    let outside = tmp.path().join("outside-log");
    std::fs::write(&outside, "untouched\n").unwrap();
    std::fs::remove_file(s.ws.join(".git/logs/HEAD")).unwrap();
    std::os::unix::fs::symlink(&outside, s.ws.join(".git/logs/HEAD")).unwrap();
    std::fs::write(s.ws.join("x.txt"), "x\n").unwrap();

    let CommitOutcome::Committed { sha, .. } = commit(&git, &s, "lucid/target", "x").await else {
        panic!("expected a commit");
    };
    git.push_private(
        &s.private,
        &server.url_for("app"),
        "lucid/target",
        Some(&creds()),
    )
    .await
    .unwrap();
    assert!(
        !marker.exists(),
        "something from the workspace ran on the host"
    );
    assert_eq!(std::fs::read_to_string(&outside).unwrap(), "untouched\n");
    assert_eq!(
        server
            .branch_sha("app", "lucid/target")
            .await
            .unwrap()
            .as_deref(),
        Some(sha.as_str())
    );
    assert!(server
        .branch_sha("decoy", "lucid/target")
        .await
        .unwrap()
        .is_none());
    // The file content went in unfiltered.
    let content = server
        .git_in_repo("app", &["cat-file", "-p", "lucid/target:x.txt"])
        .await
        .unwrap();
    assert_eq!(content.trim_end(), "x");
}

#[tokio::test]
async fn diverged_push_is_rejected_clearly() {
    let server = server_with_app().await;
    let tmp = tempfile::tempdir().unwrap();
    let git = Git::default();
    let mut sessions = Vec::new();
    for name in ["one", "two"] {
        let s = clone_session(&git, &server.url_for("app"), tmp.path(), name).await;
        std::fs::write(s.ws.join("who.txt"), name).unwrap();
        commit(&git, &s, "lucid/same", name).await;
        sessions.push(s);
    }
    git.push_private(
        &sessions[0].private,
        &server.url_for("app"),
        "lucid/same",
        Some(&creds()),
    )
    .await
    .unwrap();
    let err = git
        .push_private(
            &sessions[1].private,
            &server.url_for("app"),
            "lucid/same",
            Some(&creds()),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, GitError::PushRejected { .. }), "{err}");
    assert!(!err.to_string().contains(TOKEN));
    // Pushing a branch that was never committed is a clear input error.
    let err = git
        .push_private(
            &sessions[1].private,
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

#[tokio::test]
async fn a_workspace_without_a_repository_is_laid_over_the_base_without_deleting_it() {
    let server = server_with_app().await;
    let tmp = tempfile::tempdir().unwrap();
    let git = Git::default();
    let private = tmp.path().join("private.git");
    let ws = tmp.path().join("ws");
    std::fs::create_dir_all(ws.join("docs")).unwrap();
    let branch = branch_for_session("0a0b0c0d-none");
    git.init_private_from_remote(
        &private,
        &server.url_for("app"),
        Some("main"),
        &branch,
        Some(&creds()),
    )
    .await
    .unwrap();
    // Nothing in the workspace: nothing to propose, and no branch is made.
    let (outcome, _) = git
        .commit_workspace(
            &private,
            &ws,
            &branch,
            &identity(),
            "empty",
            SnapshotMode::Overlay,
            &NoFreeze,
        )
        .await
        .unwrap();
    assert!(matches!(outcome, CommitOutcome::NothingToCommit { .. }));
    assert!(!git.has_branch(&private, &branch).await.unwrap());

    std::fs::write(ws.join("docs/new.md"), "new\n").unwrap();
    let (outcome, _) = git
        .commit_workspace(
            &private,
            &ws,
            &branch,
            &identity(),
            "Add docs",
            SnapshotMode::Overlay,
            &NoFreeze,
        )
        .await
        .unwrap();
    assert!(matches!(outcome, CommitOutcome::Committed { .. }));
    git.push_private(&private, &server.url_for("app"), &branch, Some(&creds()))
        .await
        .unwrap();
    let files = server
        .git_in_repo("app", &["ls-tree", "-r", "--name-only", &branch])
        .await
        .unwrap();
    let files: Vec<&str> = files.lines().collect();
    assert_eq!(files, ["README.md", "docs/new.md", "src/main.rs"]);
}
