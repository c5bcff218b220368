//! Git and pull requests against a hostile sandbox: the workspace's `.git` is written by the
//! agent (reflog symlinks pointing at host files, command-running config swapped in a loop
//! while the host works), pull requests aimed at host paths, and tokens offered to the wrong
//! host.

use std::path::Path;

use lucid_engine::events::{EventKind, SessionStatus};
use lucid_engine::integrations::{CreatePrRequest, SaveIntegrationRequest};
use lucid_engine::sessions::StartSession;
use lucid_engine::{ErrorKind, User};
use lucid_testkit::forge::FakeGithub;
use lucid_testkit::git_server::GitServer;
use lucid_testkit::llm::{Format, ScriptedLlm, Step};
use serde_json::json;

use crate::common::*;

/// Accepted by the git server (as the password of `x-access-token`) and by the fake GitHub.
const GIT_TOKEN: &str = "ghp_fake-SecurityB-oundaryTo-ken01234-56789abc-defg";
const REPO: &str = "octocat/repo-001";

async fn git_server() -> GitServer {
    let git = GitServer::start(lucid_engine::git::TOKEN_ONLY_USERNAME, GIT_TOKEN)
        .await
        .expect("git server");
    create_nested_repo(
        &git,
        REPO,
        &[("README.md", "# Demo\n"), ("src/app.txt", "version = 1\n")],
        &[],
    )
    .await;
    git
}

async fn save_github(h: &Harness, user: &User) {
    h.engine
        .integrations()
        .save(
            user,
            SaveIntegrationRequest {
                provider: "github".into(),
                token: GIT_TOKEN.into(),
                gitlab_url: None,
            },
        )
        .await
        .unwrap();
}

fn pr_request(session_id: &str, repo_url: &str) -> CreatePrRequest {
    serde_json::from_value(json!({
        "repoUrl": repo_url,
        "branch": "",
        "baseBranch": "main",
        "title": "Agent work",
        "body": "",
        "sessionId": session_id,
    }))
    .unwrap()
}

async fn git_out(dir: &Path, args: &[&str]) -> String {
    let out = tokio::process::Command::new("git")
        .env("GIT_CONFIG_NOSYSTEM", "1")
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
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The agent plants a reflog symlink to a host file, command-running config and a clean
/// filter for every file, then leaves a loop running in the container that keeps swapping
/// `.git/config` between an inert and a hostile version, re-pointing the reflog and flipping a
/// file while the user opens a pull request. Nothing may run on the host or touch the host
/// file, the PR must carry the agent's work, and the sandbox must not be left paused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflog_symlinks_and_a_config_swapping_loop_never_reach_the_host() {
    let outside = tempfile::tempdir().unwrap();
    let canary = outside.path().join("bashrc");
    std::fs::write(&canary, "# the user's shell startup file\n").unwrap();
    let marker = outside.path().join("host-code-ran");
    let (canary_s, marker_s) = (canary.display(), marker.display());
    let plant = format!(
        r#"cd /workspace && cp .git/config /tmp/good && \
cat >> .git/config <<'EOF'
[user]
	name = "$(touch {marker_s})"
	email = "x@y"
[core]
	fsmonitor = "touch {marker_s}"
	pager = "touch {marker_s}"
[filter "x"]
	clean = "touch {marker_s}"
	smudge = "touch {marker_s}"
	process = "touch {marker_s}"
[http]
	proxy = http://127.0.0.1:9
	sslVerify = false
EOF
cp .git/config /tmp/evil && echo '* filter=x' > .gitattributes && \
rm -f .git/logs/HEAD && ln -s {canary_s} .git/logs/HEAD && \
mkdir -p .git/logs/refs/heads/lucid && ln -sf {canary_s} .git/logs/refs/heads/lucid/x && \
echo agent-work > work.txt && \
setsid sh -c 'while :; do cp /tmp/evil .git/config; cp /tmp/good .git/config; ln -sfn {canary_s} .git/logs/HEAD; echo a > flip.txt; echo b > flip.txt; done' </dev/null >/dev/null 2>&1 &
sleep 0.2; echo planted"#
    );
    let git = git_server().await;
    let gh = FakeGithub::start(GIT_TOKEN, 3).await;
    let llm = ScriptedLlm::start(
        Format::Anthropic,
        vec![
            Step::tool_call("execute_bash", json!({ "command": plant })),
            Step::tool_call("finish", json!({"message": "done"})),
        ],
    )
    .await;
    let gh_url = gh.base_url();
    let h = Harness::start(Some(&llm), &[("LUCID_GITHUB_API_URL", &gh_url)]).await;
    let user = User::with_id("security-reflog");
    save_github(&h, &user).await;
    // The repository lives at the forge's own address, as on GitHub.
    gh.serve_git_from(&git);
    let (started, events) = run_session(
        &h,
        &user,
        StartSession {
            task: "work".into(),
            repo_url: Some(gh.git_url_for(REPO)),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        final_status(&events),
        SessionStatus::Completed,
        "{events:#?}"
    );
    let planted = events.iter().any(|e| {
        matches!(&e.kind, EventKind::CommandOutput { output, .. } if output.contains("planted"))
    });
    assert!(planted, "the attack was not set up: {events:#?}");

    // Two pull requests while the loop runs (the second continues the branch).
    for round in 0..2 {
        let created = h
            .engine
            .create_pr(
                &user,
                "github",
                pr_request(&started.session_id, &gh.git_url_for(REPO)),
            )
            .await;
        match (round, created) {
            (0, Ok(pr)) => assert_eq!(pr.status, "created"),
            // Round 2: nothing new beyond the flip, or the fake refuses a duplicate PR.
            (_, Ok(_)) => {}
            (_, Err(e)) => assert!(
                e.kind == ErrorKind::Upstream || e.kind == ErrorKind::Unprocessable,
                "{e:?}"
            ),
        }
        assert!(!marker.exists(), "host code ran (round {round})");
        assert_eq!(
            std::fs::read_to_string(&canary).unwrap(),
            "# the user's shell startup file\n",
            "a host file was written through the reflog (round {round})"
        );
        let state = inspect_session_container(&started.session_id).await;
        assert_eq!(
            state["State"]["Paused"], false,
            "the sandbox was left paused"
        );
        assert_eq!(state["State"]["Running"], true);
    }

    // The PR carries the agent's work, with the agent's `.gitattributes` as plain content.
    let branch = lucid_engine::git::branch_for_session(&started.session_id);
    let tree = git
        .git_in_repo(REPO, &["ls-tree", "-r", "--name-only", &branch])
        .await
        .unwrap();
    for path in [
        ".gitattributes",
        "README.md",
        "flip.txt",
        "src/app.txt",
        "work.txt",
    ] {
        assert!(tree.lines().any(|l| l == path), "{path} missing: {tree}");
    }
    assert!(!tree.contains(".git/"), "{tree}");
    let work = git
        .git_in_repo(REPO, &["cat-file", "-p", &format!("{branch}:work.txt")])
        .await
        .unwrap();
    assert_eq!(work.trim(), "agent-work");
    let author = git
        .git_in_repo(REPO, &["log", "-1", "--format=%an", &branch])
        .await
        .unwrap();
    assert!(!author.contains("touch"), "{author}");
    h.engine
        .sessions()
        .destroy(&user, &started.session_id)
        .await
        .ok();
}

/// A session without a repository asks for its pull request on a repository that is a path
/// on the host (or a `file://` URL) whose own config would run code on receive: refused
/// before anything is pushed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_request_never_pushes_to_a_host_path() {
    let gh = FakeGithub::start(GIT_TOKEN, 3).await;
    let llm = ScriptedLlm::start(
        Format::Anthropic,
        vec![
            Step::tool_call(
                "str_replace_editor",
                json!({"command": "create", "path": "/workspace/a.txt", "file_text": "a\n"}),
            ),
            Step::tool_call("finish", json!({"message": "done"})),
        ],
    )
    .await;
    let gh_url = gh.base_url();
    let h = Harness::start(Some(&llm), &[("LUCID_GITHUB_API_URL", &gh_url)]).await;
    let user = User::with_id("security-hostpath");
    save_github(&h, &user).await;
    let (started, events) = run_session(
        &h,
        &user,
        StartSession {
            task: "work".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(final_status(&events), SessionStatus::Completed);

    let target = tempfile::tempdir().unwrap();
    let repo = target.path().join("victim");
    let marker = target.path().join("ran");
    std::fs::create_dir(&repo).unwrap();
    git_out(&repo, &["init", "--quiet", "-b", "main"]).await;
    std::fs::write(repo.join("f"), "f\n").unwrap();
    git_out(&repo, &["add", "f"]).await;
    git_out(
        &repo,
        &[
            "-c",
            "user.name=u",
            "-c",
            "user.email=u@x",
            "commit",
            "-qm",
            "init",
        ],
    )
    .await;
    git_out(
        &repo,
        &["config", "receive.denyCurrentBranch", "updateInstead"],
    )
    .await;
    git_out(
        &repo,
        &[
            "config",
            "filter.x.smudge",
            &format!("touch {}", marker.display()),
        ],
    )
    .await;
    std::fs::write(repo.join(".gitattributes"), "* filter=x\n").unwrap();
    let refs_before = git_out(&repo, &["for-each-ref"]).await;

    let file_url = format!("file://{}", repo.display());
    for url in [repo.display().to_string(), file_url] {
        let err = h
            .engine
            .create_pr(&user, "github", pr_request(&started.session_id, &url))
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::BadRequest, "{url}: {err:?}");
        assert!(err.message.contains("remote repository"), "{err:?}");
    }
    assert_eq!(git_out(&repo, &["for-each-ref"]).await, refs_before);
    assert!(!marker.exists());
    assert!(gh.requests().iter().all(|r| !r.path.ends_with("/pulls")));
}

/// A session cloned (with a token given for it) from a host that no integration belongs to
/// (another host name, or the integration's host on another port, i.e. another service):
/// opening a pull request with the GitHub integration must not send the GitHub token there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_is_never_pushed_to_a_host_it_does_not_belong_to() {
    let git = git_server().await;
    let gh = FakeGithub::start(GIT_TOKEN, 3).await;
    let edit = |name: &str| {
        Step::tool_call(
            "str_replace_editor",
            json!({"command": "create", "path": format!("/workspace/{name}"), "file_text": "b\n"}),
        )
    };
    let llm = ScriptedLlm::start(
        Format::Anthropic,
        vec![
            edit("b.txt"),
            Step::tool_call("finish", json!({"message": "done"})),
            edit("c.txt"),
            Step::tool_call("finish", json!({"message": "done"})),
        ],
    )
    .await;
    let gh_url = gh.base_url();
    let h = Harness::start(Some(&llm), &[("LUCID_GITHUB_API_URL", &gh_url)]).await;
    let user = User::with_id("security-foreign-host");
    save_github(&h, &user).await;
    // The GitHub integration lives on 127.0.0.1:<the fake's port>. One repository is named by
    // another host, the other sits on the same host but another port.
    let other_host = git.url_for(REPO).replace("127.0.0.1", "localhost");
    let other_port = git.url_for(REPO);
    assert!(!other_port.starts_with(&gh.base_url()));
    for foreign in [other_host, other_port] {
        let (started, events) = run_session(
            &h,
            &user,
            StartSession {
                task: "work".into(),
                repo_url: Some(foreign.clone()),
                git_token: Some(GIT_TOKEN.into()),
                ..Default::default()
            },
        )
        .await;
        assert_eq!(
            final_status(&events),
            SessionStatus::Completed,
            "{foreign}: {events:#?}"
        );
        let seen_before = git.requests().len();

        let err = h
            .engine
            .create_pr(&user, "github", pr_request(&started.session_id, ""))
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::BadRequest, "{foreign}: {err:?}");
        assert!(err.message.contains("does not belong"), "{err:?}");
        assert!(!err.message.contains(GIT_TOKEN));
        assert_eq!(
            git.requests().len(),
            seen_before,
            "something was sent to {foreign}"
        );
        // Naming another repository than the session's is refused too.
        let err = h
            .engine
            .create_pr(
                &user,
                "github",
                pr_request(&started.session_id, &gh.base_url()),
            )
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::BadRequest, "{err:?}");
        assert_eq!(git.requests().len(), seen_before);
    }
    assert!(gh.requests().iter().all(|r| !r.path.ends_with("/pulls")));
    // Without a token given for it, a repository on another port is cloned without the
    // integration's token: the server saw no credentials at all.
    let seen_before = git.requests().len();
    let (_, events) = run_session(
        &h,
        &user,
        StartSession {
            task: "work".into(),
            repo_url: Some(git.url_for(REPO)),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(final_status(&events), SessionStatus::Failed, "{events:#?}");
    let clone = &git.requests()[seen_before..];
    assert!(!clone.is_empty(), "the clone never knocked");
    assert!(
        clone.iter().all(|r| r.authorization.is_none()),
        "credentials went to another port: {clone:?}"
    );
}
