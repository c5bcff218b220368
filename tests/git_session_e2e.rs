//! Sessions on a git repository, end to end: the engine in-process, a real container (test
//! image, network `none`), a token-protected git smart-HTTP server and the fake GitHub API on
//! 127.0.0.1. Covers cloning with a request token, with a stored integration and with
//! credentials in the URL, a pull request from a session's work (commit on `lucid/<short-id>`,
//! push, PR), and a clone with a wrong token. The token must never reach the workspace files,
//! `.git/config`, the container, the stored history, the model or an error message.

mod common;

use std::time::Duration;

use common::*;
use lucid_engine::events::{Event, EventKind, SessionStatus};
use lucid_engine::integrations::SaveIntegrationRequest;
use lucid_engine::sessions::{StartSession, StartedSession};
use lucid_engine::User;
use lucid_testkit::forge::FakeGithub;
use lucid_testkit::git_server::GitServer;
use lucid_testkit::llm::{Format, ScriptedLlm, Step};
use serde_json::{json, Value};

/// Accepted by the git server (as the password of `x-access-token`) and by the fake GitHub.
const GIT_TOKEN: &str = "ghp_fake-GitSessi-onE2eTok-en012345-6789abcd-efgh";
const WRONG_TOKEN: &str = "ghp_fake-WrongGit-SessionT-oken9876-543210zy-xwvu";
/// Parses as GitHub `owner/repo` and exists on the fake GitHub.
const REPO: &str = "octocat/repo-001";
const README: &str = "# Demo\n\nA repository for Lucid's tests.\n";

async fn git_server() -> GitServer {
    let git = GitServer::start(lucid_engine::git::TOKEN_ONLY_USERNAME, GIT_TOKEN)
        .await
        .expect("git server");
    create_nested_repo(
        &git,
        REPO,
        &[("README.md", README), ("src/app.txt", "version = 1\n")],
        &["dev"],
    )
    .await;
    git
}

fn command_outputs(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::CommandOutput { output, .. } => Some(output.clone()),
            _ => None,
        })
        .collect()
}

/// Fails if `secret` appears in the events, the stored chat and messages, or any model request.
async fn assert_secret_not_in_history(
    h: &Harness,
    user: &User,
    started: &StartedSession,
    events: &[Event],
    llm: &ScriptedLlm,
    secret: &str,
) {
    let events_text = serde_json::to_string(events).unwrap();
    assert!(
        !events_text.contains(secret),
        "secret in events: {events_text}"
    );
    let chat = h.engine.chats().get(user, &started.chat_id).await.unwrap();
    assert!(!chat.messages.is_empty());
    let chat_text = serde_json::to_string(&chat).unwrap();
    assert!(
        !chat_text.contains(secret),
        "secret in history: {chat_text}"
    );
    for request in llm.requests() {
        assert!(
            !request.to_string().contains(secret),
            "secret sent to the model: {request}"
        );
    }
}

/// Fails if `secret` is in the container's configuration (environment, command, labels, …);
/// returns the container's environment.
async fn assert_secret_not_in_container(session_id: &str, secret: &str) -> Vec<String> {
    let inspect = inspect_session_container(session_id).await;
    let text = inspect.to_string();
    assert!(!text.contains(secret), "secret in the container: {text}");
    assert_eq!(inspect["HostConfig"]["NetworkMode"], "none");
    inspect["Config"]["Env"]
        .as_array()
        .map(|env| {
            env.iter()
                .map(|v| v.as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn git_config_of(workspace: &std::path::Path) -> String {
    std::fs::read_to_string(workspace.join(".git/config")).expect(".git/config")
}

async fn git_out(dir: &std::path::Path, args: &[&str]) -> String {
    let out = tokio::process::Command::new("git")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .arg("-c")
        .arg(format!("safe.directory={}", dir.display()))
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clone_with_a_request_token_checks_out_the_branch_and_keeps_the_token_out() {
    let git = git_server().await;
    let llm = ScriptedLlm::start(
        Format::Anthropic,
        vec![
            Step::tool_call(
                "execute_bash",
                json!({"command": "cd /workspace && cat BRANCH.txt && echo && ls && env"}),
            ),
            Step::tool_call("finish", json!({"message": "Looked around"})),
        ],
    )
    .await;
    let h = Harness::start(Some(&llm), &[]).await;
    let user = User::with_id("git-user-a");
    let repo_url = git.url_for(REPO);
    let (started, events) = run_session(
        &h,
        &user,
        StartSession {
            task: "Look at the repository".into(),
            repo_url: Some(repo_url.clone()),
            branch: Some("dev".into()),
            git_token: Some(GIT_TOKEN.into()),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        final_status(&events),
        SessionStatus::Completed,
        "{events:#?}"
    );

    // The agent saw the checked-out branch inside the container; the shell has no token.
    let outputs = command_outputs(&events);
    assert_eq!(outputs.len(), 1, "{events:#?}");
    assert!(outputs[0].starts_with("dev"), "{}", outputs[0]);
    assert!(outputs[0].contains("README.md"), "{}", outputs[0]);
    assert!(!outputs[0].contains(GIT_TOKEN));

    // The workspace on the host is the repository at `dev`.
    let workspace = h
        .engine
        .sessions()
        .workspace_of(&user, &started.session_id)
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(workspace.join("README.md")).unwrap(),
        README
    );
    assert_eq!(
        std::fs::read_to_string(workspace.join("src/app.txt")).unwrap(),
        "version = 1\n"
    );
    assert_eq!(
        std::fs::read_to_string(workspace.join("BRANCH.txt")).unwrap(),
        "dev"
    );
    assert_eq!(
        git_out(&workspace, &["symbolic-ref", "--short", "HEAD"])
            .await
            .trim(),
        "dev"
    );
    assert_eq!(
        git_out(&workspace, &["config", "remote.origin.url"])
            .await
            .trim(),
        repo_url
    );
    assert_eq!(
        git_out(&workspace, &["rev-parse", "HEAD"]).await.trim(),
        git.branch_sha(REPO, "dev").await.unwrap().unwrap()
    );

    // The token was used (the server only answers it) but is kept nowhere.
    let requests = git.requests();
    assert!(requests.iter().any(|r| r.authorized), "{requests:?}");
    assert!(requests
        .iter()
        .filter(|r| r.authorization.is_some())
        .all(|r| r.authorized));
    let config = git_config_of(&workspace);
    assert!(!config.contains(GIT_TOKEN), "{config}");
    assert!(
        !config.contains('@'),
        "credentials in .git/config: {config}"
    );
    assert!(assert_secret_absent_under(&workspace, GIT_TOKEN) > 5);
    let env = assert_secret_not_in_container(&started.session_id, GIT_TOKEN).await;
    assert!(!env.is_empty(), "the container has an environment to check");
    assert_secret_not_in_history(&h, &user, &started, &events, &llm, GIT_TOKEN).await;
    let chat = h.engine.chats().get(&user, &started.chat_id).await.unwrap();
    assert_eq!(chat.chat.repo_url.as_deref(), Some(repo_url.as_str()));
    assert_eq!(chat.chat.branch.as_deref(), Some("dev"));
    // SQLite database, its journal and the workspace: no copy of the token anywhere.
    assert_secret_absent_under(h.data_dir.path(), GIT_TOKEN);

    h.engine
        .sessions()
        .destroy(&user, &started.session_id)
        .await
        .unwrap();
    assert_eq!(containers_of_session(&started.session_id).await, 0);
    h.engine.shutdown().await;
}

/// A `lucid serve` router on 127.0.0.1 for the harness's engine.
async fn serve(h: &Harness) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = lucid_server::router(h.engine.clone());
    let task = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, task)
}

async fn post_pr(base: &str, user: &str, body: Value) -> (u16, Value) {
    let token = lucid_engine::auth::issue_token(user, SECRET.as_bytes(), Duration::from_secs(3600));
    let resp = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap()
        .post(format!("{base}/api/v1/integrations/github/pr"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    assert!(!text.contains(GIT_TOKEN), "token in the answer: {text}");
    (status, serde_json::from_str(&text).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pr_from_a_session_pushes_the_agents_work_and_opens_the_pr() {
    let git = git_server().await;
    let gh = FakeGithub::start(GIT_TOKEN, 3).await;
    let llm = ScriptedLlm::start(
        Format::Anthropic,
        vec![
            Step::tool_call(
                "str_replace_editor",
                json!({
                    "command": "str_replace", "path": "/workspace/README.md",
                    "old_str": "A repository for Lucid's tests.",
                    "new_str": "A repository for Lucid's tests.\n\nEdited by the agent.",
                }),
            ),
            Step::tool_call(
                "str_replace_editor",
                json!({"command": "create", "path": "/workspace/docs/NOTES.md", "file_text": "notes\n"}),
            ),
            Step::tool_call("finish", json!({"message": "Edited the README"})),
        ],
    )
    .await;
    let gh_url = gh.base_url();
    let h = Harness::start(Some(&llm), &[("LUCID_GITHUB_API_URL", &gh_url)]).await;
    let user = User::with_id("git-user-pr");

    // A stored GitHub integration whose token the git server also accepts; the session is
    // started without a token, so the clone uses the integration matching the URL's host.
    let saved = h
        .engine
        .integrations()
        .save(
            &user,
            SaveIntegrationRequest {
                provider: "github".into(),
                token: GIT_TOKEN.into(),
                gitlab_url: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(saved.username, "octocat");

    // The repository lives at the forge's own address, as on GitHub.
    gh.serve_git_from(&git);
    let repo_url = gh.git_url_for(REPO);
    let (started, events) = run_session(
        &h,
        &user,
        StartSession {
            task: "Edit the README".into(),
            repo_url: Some(repo_url.clone()),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        final_status(&events),
        SessionStatus::Completed,
        "{events:#?}"
    );
    let workspace = h
        .engine
        .sessions()
        .workspace_of(&user, &started.session_id)
        .await
        .unwrap();
    assert!(std::fs::read_to_string(workspace.join("README.md"))
        .unwrap()
        .contains("Edited by the agent."));
    assert_eq!(
        git_out(&workspace, &["symbolic-ref", "--short", "HEAD"])
            .await
            .trim(),
        "main"
    );
    let main_sha = git.branch_sha(REPO, "main").await.unwrap().unwrap();
    let (base, server) = serve(&h).await;

    // Another user cannot open a PR from this session: nothing is pushed or opened.
    let (status, body) = post_pr(
        &base,
        "someone-else",
        json!({"sessionId": started.session_id, "repoUrl": "", "branch": "", "title": "steal"}),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        git.branch_sha(REPO, &format!("lucid/{}", &started.session_id[..8]))
            .await
            .unwrap(),
        None
    );
    assert!(gh.created().is_empty());

    // The PR, over HTTP, from the session.
    gh.clear_requests();
    let (status, pr) = post_pr(
        &base,
        &user.id,
        json!({
            "sessionId": started.session_id,
            "repoUrl": "",
            "branch": "",
            "title": "Lucid: edit the README",
            "body": "Made in a Lucid session.",
        }),
    )
    .await;
    assert_eq!(status, 200, "{pr}");
    assert_eq!(
        pr,
        json!({
            "status": "created",
            "provider": "github",
            "prUrl": "https://github.com/octocat/repo-001/pull/1",
            "prNumber": 1,
            "title": "Lucid: edit the README",
            "state": "open",
        })
    );

    // The branch is on the server with the agent's change, authored by the integration's
    // account, on top of `main`.
    let branch = format!("lucid/{}", &started.session_id[..8]);
    let pushed = git
        .branch_sha(REPO, &branch)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{branch} was not pushed"));
    let log = git
        .git_in_repo(
            REPO,
            &["log", "-1", "--format=%an|%ae|%cn|%ce|%s|%P", &branch],
        )
        .await
        .unwrap();
    assert_eq!(
        log.trim(),
        format!(
            "octocat|octocat@users.noreply.github.com|octocat|octocat@users.noreply.github.com|Lucid: edit the README|{main_sha}"
        )
    );
    let readme = git
        .git_in_repo(REPO, &["show", &format!("{branch}:README.md")])
        .await
        .unwrap();
    assert_eq!(
        readme,
        "# Demo\n\nA repository for Lucid's tests.\n\nEdited by the agent.\n"
    );
    let notes = git
        .git_in_repo(REPO, &["show", &format!("{branch}:docs/NOTES.md")])
        .await
        .unwrap();
    assert_eq!(notes, "notes\n");
    assert_eq!(
        git.branch_sha(REPO, "main").await.unwrap().as_deref(),
        Some(main_sha.as_str()),
        "main is untouched"
    );
    assert!(git
        .requests()
        .iter()
        .any(|r| r.authorized && r.path_and_query.contains("git-receive-pack")));

    // The fake GitHub received the PR for that branch, with the integration's token.
    let created = gh.created();
    assert_eq!(created.len(), 1);
    assert_eq!(created[0]["head"]["ref"], json!(branch));
    assert_eq!(created[0]["base"]["ref"], "main");
    assert_eq!(created[0]["body"], "Made in a Lucid session.");
    let post = gh.requests().pop().unwrap();
    assert_eq!(post.path, "/repos/octocat/repo-001/pulls");
    assert_eq!(
        post.header("authorization"),
        Some(format!("Bearer {GIT_TOKEN}").as_str())
    );

    // The host never ran git in the workspace: it is still on its branch, with a clean
    // origin and no token anywhere.
    assert_eq!(
        git_out(&workspace, &["symbolic-ref", "--short", "HEAD"])
            .await
            .trim(),
        "main"
    );
    assert_eq!(
        git_out(&workspace, &["rev-parse", "HEAD"]).await.trim(),
        main_sha
    );
    let config = git_config_of(&workspace);
    assert!(!config.contains(GIT_TOKEN), "{config}");
    assert!(!config.contains('@'), "{config}");
    assert_secret_absent_under(&workspace, GIT_TOKEN);
    assert_secret_not_in_container(&started.session_id, GIT_TOKEN).await;
    assert_secret_not_in_history(&h, &user, &started, &events, &llm, GIT_TOKEN).await;
    assert_secret_absent_under(h.data_dir.path(), GIT_TOKEN);

    // The same PR again: the push has nothing new, the forge refuses a duplicate (422).
    let (status, body) = post_pr(
        &base,
        &user.id,
        json!({"sessionId": started.session_id, "repoUrl": "", "branch": "", "title": "again"}),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("already exists"));
    assert_eq!(
        git.branch_sha(REPO, &branch).await.unwrap().as_deref(),
        Some(pushed.as_str())
    );

    server.abort();
    h.engine
        .sessions()
        .destroy(&user, &started.session_id)
        .await
        .unwrap();
    h.engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_fails_the_session_with_a_clear_error_without_the_token() {
    let git = git_server().await;
    let llm = ScriptedLlm::start(
        Format::Anthropic,
        vec![Step::tool_call("finish", json!({"message": "unreachable"}))],
    )
    .await;
    let h = Harness::start(Some(&llm), &[]).await;
    let user = User::with_id("git-user-wrong");
    let (started, events) = run_session(
        &h,
        &user,
        StartSession {
            task: "Clone it".into(),
            repo_url: Some(git.url_for(REPO)),
            git_token: Some(WRONG_TOKEN.into()),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(final_status(&events), SessionStatus::Failed, "{events:#?}");
    let error = events
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::Error { message } => Some(message.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no error event: {events:#?}"));
    assert!(error.starts_with("Could not clone"), "{error}");
    assert!(error.contains(&git.url_for(REPO)), "{error}");
    let lower = error.to_lowercase();
    assert!(
        lower.contains("authentication") || lower.contains("credentials") || lower.contains("401"),
        "the error does not say why: {error}"
    );

    // The wrong token was offered and refused; it is nowhere in what was kept.
    let requests = git.requests();
    assert!(
        requests.iter().any(|r| r.authorization.is_some()),
        "{requests:?}"
    );
    assert!(requests.iter().all(|r| !r.authorized));
    for secret in [WRONG_TOKEN, GIT_TOKEN] {
        assert_secret_not_in_history(&h, &user, &started, &events, &llm, secret).await;
        assert_secret_absent_under(h.data_dir.path(), secret);
    }
    // No container was started, the model was never called, the workspace is empty.
    assert_eq!(containers_of_session(&started.session_id).await, 0);
    assert_eq!(llm.request_count(), 0);
    let workspace = h
        .engine
        .sessions()
        .workspace_of(&user, &started.session_id)
        .await
        .unwrap();
    assert!(files_under(&workspace).is_empty(), "half-cloned workspace");
    h.engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_in_the_repo_url_clone_but_are_never_stored_or_shown() {
    let git = git_server().await;
    let llm = ScriptedLlm::start(
        Format::Anthropic,
        vec![Step::tool_call("finish", json!({"message": "done"}))],
    )
    .await;
    let h = Harness::start(Some(&llm), &[]).await;
    let user = User::with_id("git-user-url");
    let clean = git.url_for(REPO);
    let with_token = clean.replacen(
        "http://",
        &format!(
            "http://{}:{GIT_TOKEN}@",
            lucid_engine::git::TOKEN_ONLY_USERNAME
        ),
        1,
    );
    let (started, events) = run_session(
        &h,
        &user,
        StartSession {
            task: "Clone with the URL's credentials".into(),
            repo_url: Some(with_token),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        final_status(&events),
        SessionStatus::Completed,
        "{events:#?}"
    );
    let workspace = h
        .engine
        .sessions()
        .workspace_of(&user, &started.session_id)
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(workspace.join("README.md")).unwrap(),
        README
    );
    assert_secret_not_in_history(&h, &user, &started, &events, &llm, GIT_TOKEN).await;
    let chat = h.engine.chats().get(&user, &started.chat_id).await.unwrap();
    assert_eq!(chat.chat.repo_url.as_deref(), Some(clean.as_str()));
    let config = git_config_of(&workspace);
    assert!(!config.contains(GIT_TOKEN), "{config}");
    assert_secret_absent_under(&workspace, GIT_TOKEN);
    assert_secret_not_in_container(&started.session_id, GIT_TOKEN).await;
    assert_secret_absent_under(h.data_dir.path(), GIT_TOKEN);
    h.engine
        .sessions()
        .destroy(&user, &started.session_id)
        .await
        .unwrap();
    h.engine.shutdown().await;
}
