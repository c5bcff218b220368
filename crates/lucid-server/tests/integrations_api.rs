//! `/api/v1/integrations` over real HTTP on 127.0.0.1 with a real SQLite file, against the
//! fake GitHub and GitLab APIs: connect, list, repositories (paginated), branches, PRs/MRs,
//! disconnect, bad input, cross-user isolation, forge outages, and the token never showing up
//! in any response body. The tests in `in_both_modes!` also run in Supabase mode (PostgREST
//! stand-in on a real PostgreSQL, row-level security).

#[macro_use]
mod common;

use common::{Mode, TestServer};
use lucid_testkit::forge::{FakeFailure, FakeGithub, FakeGitlab, RecordedRequest};
use reqwest::StatusCode;
use serde_json::{json, Value};

const GH_TOKEN: &str = "ghp_fake-Integrat-ionApiTo-ken01234-56789abc-defABCD";
const GL_TOKEN: &str = "glpat.fake.Integrat.ionApiGi.tlab.012.3456789";
const WRONG_TOKEN: &str = "ghp_fake-WrongTok-enZZZZZZ-ZZZZZZZZ-ZZZZZZZZ-ZZZZZZZ";

/// Every answer as raw text and parsed JSON; fails if a forge token appears anywhere in it.
async fn send(rb: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let resp = rb.send().await.expect("request");
    let status = resp.status();
    let text = resp.text().await.expect("body");
    for secret in [GH_TOKEN, GL_TOKEN, WRONG_TOKEN] {
        assert!(
            !text.contains(secret),
            "a token leaked into a response body ({status}): {text}"
        );
    }
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("answer is not JSON ({e}): {status} {text}"));
    (status, body)
}

fn detail(body: &Value) -> &str {
    body["detail"]
        .as_str()
        .unwrap_or_else(|| panic!("no detail in {body}"))
}

async fn github_server(mode: Mode, gh: &FakeGithub) -> TestServer {
    TestServer::start_in(mode, &[("LUCID_GITHUB_API_URL", &gh.base_url())]).await
}

async fn connect_github(s: &TestServer, user: &str) {
    let (status, body) = send(
        s.post("/api/v1/integrations", user)
            .json(&json!({"provider": "github", "token": GH_TOKEN})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

fn paths(requests: &[RecordedRequest]) -> Vec<String> {
    requests.iter().map(|r| r.path.clone()).collect()
}

in_both_modes! {
    async fn github_connect_list_repos_branches_pr_and_disconnect(mode) {
    let gh = FakeGithub::start(GH_TOKEN, 250).await;
    let s = github_server(mode, &gh).await;

    // A token the forge refuses: 422, nothing stored.
    let (status, body) = send(
        s.post("/api/v1/integrations", "alice")
            .json(&json!({"provider": "github", "token": WRONG_TOKEN})),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        detail(&body).starts_with("Token validation failed — check that the token is valid:"),
        "{body}"
    );
    let (_, list) = send(s.get("/api/v1/integrations", "alice")).await;
    assert_eq!(list, json!({"integrations": []}));

    // A valid token; the provider name is trimmed and case-insensitive.
    let (status, body) = send(
        s.post("/api/v1/integrations", "alice")
            .json(&json!({"provider": "  GitHub ", "token": GH_TOKEN})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({
            "status": "connected",
            "provider": "github",
            "username": "octocat",
            "message": "Connected as octocat",
        })
    );
    assert_no_plaintext_token_in_supabase(&s, GH_TOKEN).await;
    let validation = gh.requests().pop().unwrap();
    assert_eq!(validation.path, "/user");
    assert_eq!(
        validation.header("authorization"),
        Some(format!("Bearer {GH_TOKEN}").as_str())
    );

    // Listing: the original's shape, no token (checked on the raw text by `send`).
    let (status, list) = send(s.get("/api/v1/integrations", "alice")).await;
    assert_eq!(status, 200);
    let items = list["integrations"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{list}");
    let item = &items[0];
    assert_eq!(item["provider"], "github");
    assert_eq!(item["connected"], true);
    assert_eq!(item["externalUsername"], "octocat");
    assert_eq!(item["label"], "octocat (github)");
    assert_eq!(item["scopes"], "repo,workflow");
    assert!(item["id"].as_str().is_some_and(|id| !id.is_empty()));
    assert!(item["createdAt"].is_string());
    let mut keys: Vec<&str> = item
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "connected",
            "createdAt",
            "externalUsername",
            "id",
            "label",
            "provider",
            "scopes"
        ],
        "no token or ciphertext field in listings"
    );

    // Repositories: 250 across three pages of 100, followed through the Link header.
    gh.clear_requests();
    let (status, repos) = send(s.get("/api/v1/integrations/github/repos", "alice")).await;
    assert_eq!(status, 200, "{repos}");
    assert_eq!(repos["provider"], "github");
    assert_eq!(repos["count"], 250);
    let list = repos["repos"].as_array().unwrap();
    assert_eq!(list.len(), 250);
    assert_eq!(
        list[0],
        json!({
            "name": "repo-001",
            "fullName": "octocat/repo-001",
            "url": "https://github.com/octocat/repo-001",
            "cloneUrl": "https://github.com/octocat/repo-001.git",
            "defaultBranch": "main",
            "private": false,
            "description": "Fixture repository 1",
        })
    );
    assert_eq!(list[249]["fullName"], "octocat/repo-250");
    let pages: Vec<String> = gh
        .requests()
        .iter()
        .map(|r| {
            assert_eq!(r.path, "/user/repos");
            assert_eq!(r.query_param("per_page").as_deref(), Some("100"));
            r.query_param("page").unwrap()
        })
        .collect();
    assert_eq!(pages, ["1", "2", "3"]);

    // Branches of a URL-encoded full name.
    gh.clear_requests();
    gh.set_branches_per_repo(4);
    let (status, branches) = send(s.get(
        "/api/v1/integrations/github/repos/octocat%2Frepo-007/branches",
        "alice",
    ))
    .await;
    assert_eq!(status, 200, "{branches}");
    assert_eq!(branches["provider"], "github");
    assert_eq!(branches["fullName"], "octocat/repo-007");
    assert_eq!(branches["count"], 4);
    let names: Vec<&str> = branches["branches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["main", "feature-001", "feature-002", "feature-003"]);
    assert_eq!(branches["branches"][0]["protected"], true);
    assert!(branches["branches"][0]["commitSha"].is_string());
    assert_eq!(paths(&gh.requests()), ["/repos/octocat/repo-007/branches"]);

    // A pull request in the plain API form (no session).
    gh.clear_requests();
    let (status, pr) = send(
        s.post("/api/v1/integrations/github/pr", "alice")
            .json(&json!({
                "repoUrl": "https://github.com/octocat/repo-003.git",
                "branch": "lucid/feature",
                "title": "Add the feature",
                "body": "Made by Lucid",
            })),
    )
    .await;
    assert_eq!(status, 200, "{pr}");
    assert_eq!(
        pr,
        json!({
            "status": "created",
            "provider": "github",
            "prUrl": "https://github.com/octocat/repo-003/pull/1",
            "prNumber": 1,
            "title": "Add the feature",
            "state": "open",
        })
    );
    let post = gh.requests().pop().unwrap();
    assert_eq!(post.method, "POST");
    assert_eq!(post.path, "/repos/octocat/repo-003/pulls");
    assert_eq!(
        post.body,
        Some(json!({
            "title": "Add the feature", "body": "Made by Lucid",
            "head": "lucid/feature", "base": "main",
        }))
    );

    // The same PR again: the forge refuses its content → 422 with the forge's reason.
    let (status, body) = send(
        s.post("/api/v1/integrations/github/pr", "alice")
            .json(&json!({
                "repoUrl": "https://github.com/octocat/repo-003",
                "branch": "lucid/feature",
                "title": "Again",
            })),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert!(detail(&body).contains("already exists"), "{body}");

    // Disconnect, then everything that needs the token is 404.
    let (status, body) = send(s.delete("/api/v1/integrations/GitHub", "alice")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"status": "disconnected", "provider": "github"})
    );
    gh.clear_requests();
    let (status, body) = send(s.get("/api/v1/integrations/github/repos", "alice")).await;
    assert_eq!(status, 404);
    assert_eq!(
        detail(&body),
        "No github token saved. Add one via POST /api/v1/integrations first."
    );
    let (status, body) = send(s.delete("/api/v1/integrations/github", "alice")).await;
    assert_eq!(status, 404);
    assert_eq!(detail(&body), "No github integration found for this user.");
    let (_, list) = send(s.get("/api/v1/integrations", "alice")).await;
    assert_eq!(list, json!({"integrations": []}));
    assert!(gh.requests().is_empty(), "{:?}", paths(&gh.requests()));

    // The database file holds the token only encrypted.
    assert_no_plaintext_token_on_disk(&s, GH_TOKEN);
    }
}

/// In Supabase mode, there are saved integrations and no row of `integrations` (read as the
/// superuser) contains `token` in clear.
async fn assert_no_plaintext_token_in_supabase(s: &TestServer, token: &str) {
    let Some(project) = &s.project else {
        return;
    };
    let rows = project
        .admin()
        .query("select i::text from public.integrations i", &[])
        .await
        .unwrap();
    assert!(!rows.is_empty(), "no integration stored in Supabase");
    for row in &rows {
        let text: String = row.get(0);
        assert!(!text.contains(token), "token stored in clear: {text}");
    }
}

/// No file under the data dir (SQLite database, WAL, workspaces) contains `token` in clear.
fn assert_no_plaintext_token_on_disk(s: &TestServer, token: &str) {
    let mut stack = vec![s.data_dir.path().to_path_buf()];
    let mut files = 0;
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let ty = entry.file_type().unwrap();
            if ty.is_dir() {
                stack.push(entry.path());
            } else if ty.is_file() {
                files += 1;
                let bytes = std::fs::read(entry.path()).unwrap();
                assert!(
                    !bytes.windows(token.len()).any(|w| w == token.as_bytes()),
                    "token stored in clear in {}",
                    entry.path().display()
                );
            }
        }
    }
    assert!(files > 0, "no database file found under the data dir");
}

in_both_modes! {
    async fn gitlab_with_a_trailing_slash_url_nested_groups_and_merge_requests(mode) {
    let gl = FakeGitlab::start(GL_TOKEN, 150).await;
    let s = TestServer::start_in(mode, &[]).await;

    let (status, body) = send(s.post("/api/v1/integrations", "carol").json(&json!({
        "provider": "gitlab", "token": GL_TOKEN, "gitlabUrl": format!("{}//", gl.base_url()),
    })))
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({
            "status": "connected",
            "provider": "gitlab",
            "username": "gitlab-user",
            "message": "Connected as gitlab-user",
        })
    );
    let validation = gl.requests().pop().unwrap();
    assert_eq!(validation.path, "/api/v4/user");
    assert_eq!(validation.header("private-token"), Some(GL_TOKEN));

    // The self-hosted URL is kept apart from the scopes in listings.
    let (_, list) = send(s.get("/api/v1/integrations", "carol")).await;
    let item = &list["integrations"][0];
    assert_eq!(item["provider"], "gitlab");
    assert_eq!(item["scopes"], "api,read_repository,write_repository");
    assert_eq!(item["gitlabUrl"], gl.base_url());
    assert_eq!(item["externalUsername"], "gitlab-user");

    // Projects: 150 over two pages (X-Next-Page).
    let (status, repos) = send(s.get("/api/v1/integrations/gitlab/repos", "carol")).await;
    assert_eq!(status, 200, "{repos}");
    assert_eq!(repos["count"], 150);
    assert_eq!(repos["repos"].as_array().unwrap().len(), 150);
    let first = &repos["repos"][0];
    assert_eq!(first["fullName"], "lucid-group/backend/project-001");
    assert_eq!(
        first["cloneUrl"],
        format!("{}/lucid-group/backend/project-001.git", gl.base_url())
    );
    // project-001 is "internal": counted as private.
    assert_eq!(first["private"], true);
    let project_pages: Vec<String> = gl
        .requests()
        .iter()
        .filter(|r| r.path == "/api/v4/projects")
        .map(|r| r.query_param("page").unwrap())
        .collect();
    assert_eq!(project_pages, ["1", "2"]);

    // Branches of a nested project, the full path URL-encoded in our path and in GitLab's.
    let (status, branches) = send(s.get(
        "/api/v1/integrations/gitlab/repos/lucid-group%2Fbackend%2Fproject-002/branches",
        "carol",
    ))
    .await;
    assert_eq!(status, 200, "{branches}");
    assert_eq!(branches["fullName"], "lucid-group/backend/project-002");
    assert_eq!(branches["count"], 3);
    assert_eq!(
        gl.requests().pop().unwrap().path,
        "/api/v4/projects/lucid-group%2Fbackend%2Fproject-002/repository/branches"
    );

    // A merge request, from a clone URL of the stored instance.
    let (status, mr) = send(
        s.post("/api/v1/integrations/gitlab/pr", "carol")
            .json(&json!({
                "repoUrl": format!("{}/lucid-group/backend/project-001.git", gl.base_url()),
                "branch": "lucid/fix",
                "baseBranch": "develop",
                "title": "Fix it",
            })),
    )
    .await;
    assert_eq!(status, 200, "{mr}");
    assert_eq!(
        mr,
        json!({
            "status": "created",
            "provider": "gitlab",
            "prUrl": format!("{}/lucid-group/backend/project-001/-/merge_requests/1", gl.base_url()),
            "prNumber": 1,
            "title": "Fix it",
            "state": "opened",
        })
    );
    let post = gl.requests().pop().unwrap();
    assert_eq!(
        post.path,
        "/api/v4/projects/lucid-group%2Fbackend%2Fproject-001/merge_requests"
    );
    assert_eq!(
        post.body,
        Some(json!({
            "title": "Fix it", "description": "",
            "source_branch": "lucid/fix", "target_branch": "develop",
        }))
    );

    // The trailing slashes never produced a `//` in any request path.
    let all = paths(&gl.requests());
    assert!(all.len() >= 5, "{all:?}");
    for p in &all {
        assert!(!p.contains("//"), "double slash in {p}: {all:?}");
    }

    let (status, body) = send(s.delete("/api/v1/integrations/gitlab", "carol")).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"status": "disconnected", "provider": "gitlab"})
    );
    let (status, _) = send(s.get("/api/v1/integrations/gitlab/repos", "carol")).await;
    assert_eq!(status, 404);
    }
}

in_both_modes! {
    async fn bad_save_requests_are_refused_before_any_forge_call(mode) {
    let gh = FakeGithub::start(GH_TOKEN, 3).await;
    let gl = FakeGitlab::start(GL_TOKEN, 3).await;
    let s = github_server(mode, &gh).await;

    let (status, body) = send(
        s.post("/api/v1/integrations", "dave")
            .json(&json!({"provider": "gitea", "token": GH_TOKEN})),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        detail(&body),
        "Unsupported provider 'gitea'. Use 'github' or 'gitlab'."
    );

    for token in ["", "   "] {
        let (status, body) = send(
            s.post("/api/v1/integrations", "dave")
                .json(&json!({"provider": "github", "token": token})),
        )
        .await;
        assert!(
            status == 400 || status == 422,
            "empty token {token:?}: {status} {body}"
        );
        assert!(detail(&body).contains("Token"), "{body}");
    }

    // Malformed JSON → 400; missing or mistyped fields → 422; not JSON at all → 415.
    let (status, body) = send(
        s.post("/api/v1/integrations", "dave")
            .header("content-type", "application/json")
            .body("{\"provider\": \"github\", \"token\": "),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(detail(&body).starts_with("Malformed JSON body"), "{body}");
    for bad in [
        json!({"provider": "github"}),
        json!({"token": GH_TOKEN}),
        json!({"provider": "github", "token": 12345}),
        json!("github"),
    ] {
        let (status, body) = send(s.post("/api/v1/integrations", "dave").json(&bad)).await;
        assert_eq!(status, 422, "{bad}: {body}");
        assert!(detail(&body).starts_with("Invalid request body"), "{body}");
    }
    let (status, _) = send(
        s.post("/api/v1/integrations", "dave")
            .body(format!("provider=github&token={GH_TOKEN}")),
    )
    .await;
    assert_eq!(status, 415);

    // GitLab instance URLs: http only on loopback, and only http(s). The addresses below
    // would reach this machine if they were wrongly accepted, so the fake would see them.
    let port = gl.addr().port();
    for url in [
        format!("http://0.0.0.0:{port}"),
        format!("http://[::ffff:127.0.0.1]:{port}"),
        format!("ftp://127.0.0.1:{port}"),
        "not a url".to_string(),
        format!("http://user:{GL_TOKEN}@127.0.0.1:{port}"),
    ] {
        let (status, body) = send(s.post("/api/v1/integrations", "dave").json(&json!({
            "provider": "gitlab", "token": GL_TOKEN, "gitlabUrl": url,
        })))
        .await;
        assert_eq!(status, 400, "{url}: {body}");
        assert!(detail(&body).starts_with("Invalid gitlabUrl"), "{body}");
    }

    assert!(gh.requests().is_empty(), "{:?}", paths(&gh.requests()));
    assert!(gl.requests().is_empty(), "{:?}", paths(&gl.requests()));
    let (_, list) = send(s.get("/api/v1/integrations", "dave")).await;
    assert_eq!(list, json!({"integrations": []}));

    // Other routes: unknown providers are 400 too.
    let (status, _) = send(s.get("/api/v1/integrations/gitea/repos", "dave")).await;
    assert_eq!(status, 400);
    let (status, _) = send(s.delete("/api/v1/integrations/gitea", "dave")).await;
    assert_eq!(status, 400);
    }
}

in_both_modes! {
    async fn pr_requests_with_bad_fields_are_400_without_a_forge_call(mode) {
    let gh = FakeGithub::start(GH_TOKEN, 3).await;
    let s = github_server(mode, &gh).await;
    connect_github(&s, "erin").await;
    gh.clear_requests();
    for (body, expected) in [
        (
            json!({"repoUrl": "https://github.com/only-owner", "branch": "b", "title": "t"}),
            "Invalid repoUrl",
        ),
        (
            json!({"repoUrl": "ftp://github.com/o/r", "branch": "b", "title": "t"}),
            "Invalid repoUrl",
        ),
        (
            json!({"repoUrl": "https://github.com/octocat/repo-001", "branch": " ", "title": "t"}),
            "'branch' must not be empty.",
        ),
        (
            json!({"repoUrl": "https://github.com/octocat/repo-001", "branch": "b", "title": ""}),
            "'title' must not be empty.",
        ),
    ] {
        let (status, answer) =
            send(s.post("/api/v1/integrations/github/pr", "erin").json(&body)).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(detail(&answer).starts_with(expected), "{answer}");
    }
    let (status, _) = send(
        s.post("/api/v1/integrations/github/pr", "erin")
            .json(&json!({"repoUrl": "https://github.com/octocat/repo-001"})),
    )
    .await;
    assert_eq!(status, 422);
    assert!(gh.requests().is_empty(), "{:?}", paths(&gh.requests()));
    }
}

in_both_modes! {
    async fn users_cannot_see_use_or_delete_each_others_integrations(mode) {
    let gh = FakeGithub::start(GH_TOKEN, 5).await;
    let s = github_server(mode, &gh).await;
    connect_github(&s, "alice").await;
    gh.clear_requests();

    let (status, list) = send(s.get("/api/v1/integrations", "bob")).await;
    assert_eq!(status, 200);
    assert_eq!(list, json!({"integrations": []}));
    let (status, body) = send(s.get("/api/v1/integrations/github/repos", "bob")).await;
    assert_eq!(status, 404, "{body}");
    let (status, _) = send(s.get(
        "/api/v1/integrations/github/repos/octocat%2Frepo-001/branches",
        "bob",
    ))
    .await;
    assert_eq!(status, 404);
    let (status, _) = send(
        s.post("/api/v1/integrations/github/pr", "bob")
            .json(&json!({
                "repoUrl": "https://github.com/octocat/repo-001", "branch": "x", "title": "t",
            })),
    )
    .await;
    assert_eq!(status, 404);
    let (status, body) = send(s.delete("/api/v1/integrations/github", "bob")).await;
    assert_eq!(status, 404, "{body}");
    assert!(
        gh.requests().is_empty(),
        "bob's calls used alice's token: {:?}",
        paths(&gh.requests())
    );
    assert!(gh.created().is_empty());

    // Alice's integration is untouched.
    let (_, list) = send(s.get("/api/v1/integrations", "alice")).await;
    assert_eq!(list["integrations"].as_array().unwrap().len(), 1);
    let (status, repos) = send(s.get("/api/v1/integrations/github/repos", "alice")).await;
    assert_eq!(status, 200);
    assert_eq!(repos["count"], 5);

    // Bob connecting his own token does not replace alice's.
    gh.add_user("ghp_BobsOwnToken", "bobcat");
    let (status, body) = send(
        s.post("/api/v1/integrations", "bob")
            .json(&json!({"provider": "github", "token": "ghp_BobsOwnToken"})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["username"], "bobcat");
    let (_, list) = send(s.get("/api/v1/integrations", "alice")).await;
    assert_eq!(list["integrations"][0]["externalUsername"], "octocat");
    gh.clear_requests();
    send(s.get("/api/v1/integrations/github/repos", "alice")).await;
    assert!(gh
        .requests()
        .iter()
        .all(|r| r.header("authorization") == Some(format!("Bearer {GH_TOKEN}").as_str())));
    }
}

in_both_modes! {
    async fn forge_outages_are_502_without_the_token(mode) {
    let gh = FakeGithub::start(GH_TOKEN, 3).await;
    let gl = FakeGitlab::start(GL_TOKEN, 3).await;
    let s = github_server(mode, &gh).await;
    connect_github(&s, "frank").await;
    let (status, _) = send(s.post("/api/v1/integrations", "frank").json(&json!({
        "provider": "gitlab", "token": GL_TOKEN, "gitlabUrl": gl.base_url(),
    })))
    .await;
    assert_eq!(status, 200);

    gh.set_failure(Some(FakeFailure::Status(500)));
    gl.set_failure(Some(FakeFailure::Status(503)));
    let (status, body) = send(s.get("/api/v1/integrations/github/repos", "frank")).await;
    assert_eq!(status, 502, "{body}");
    assert!(
        detail(&body).starts_with("Failed to fetch repos from github:"),
        "{body}"
    );
    assert!(detail(&body).contains("500"), "{body}");
    let (status, body) = send(s.get(
        "/api/v1/integrations/github/repos/octocat%2Frepo-001/branches",
        "frank",
    ))
    .await;
    assert_eq!(status, 502, "{body}");
    assert!(
        detail(&body).starts_with("Failed to fetch branches from github:"),
        "{body}"
    );
    let (status, body) = send(
        s.post("/api/v1/integrations/github/pr", "frank")
            .json(&json!({
                "repoUrl": "https://github.com/octocat/repo-001", "branch": "x", "title": "t",
            })),
    )
    .await;
    assert_eq!(status, 502, "{body}");
    assert!(detail(&body).starts_with("Failed to create PR:"), "{body}");
    let (status, body) = send(s.get("/api/v1/integrations/gitlab/repos", "frank")).await;
    assert_eq!(status, 502, "{body}");
    assert!(detail(&body).contains("503"), "{body}");

    // Rate limiting is reported as such.
    gh.set_failure(Some(FakeFailure::RateLimit));
    let (status, body) = send(s.get("/api/v1/integrations/github/repos", "frank")).await;
    assert_eq!(status, 502, "{body}");
    assert!(detail(&body).contains("rate limited"), "{body}");

    // Validating a new token while the forge is down: 422, the old token stays.
    gh.set_failure(Some(FakeFailure::Status(500)));
    let (status, body) = send(
        s.post("/api/v1/integrations", "frank")
            .json(&json!({"provider": "github", "token": GH_TOKEN})),
    )
    .await;
    assert_eq!(status, 422, "{body}");

    // Back up: everything works again with the stored token.
    gh.set_failure(None);
    gl.set_failure(None);
    let (status, repos) = send(s.get("/api/v1/integrations/github/repos", "frank")).await;
    assert_eq!(status, 200);
    assert_eq!(repos["count"], 3);
    let (status, _) = send(s.get("/api/v1/integrations/gitlab/repos", "frank")).await;
    assert_eq!(status, 200);
    }
}

#[tokio::test]
async fn an_unreachable_forge_is_a_clear_error() {
    // A port that was just free: nothing listens there.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let s = TestServer::start(&[]).await;
    let (status, body) = send(s.post("/api/v1/integrations", "gina").json(&json!({
        "provider": "gitlab", "token": GL_TOKEN, "gitlabUrl": format!("http://127.0.0.1:{port}"),
    })))
    .await;
    assert_eq!(status, 422, "{body}");
    assert!(detail(&body).contains("could not reach"), "{body}");

    // Connected while the instance was up, then it goes away: 502.
    let gl = FakeGitlab::start(GL_TOKEN, 2).await;
    let (status, _) = send(s.post("/api/v1/integrations", "gina").json(&json!({
        "provider": "gitlab", "token": GL_TOKEN, "gitlabUrl": gl.base_url(),
    })))
    .await;
    assert_eq!(status, 200);
    let addr = gl.addr();
    drop(gl);
    // Wait until the port is closed and the fake's idle keep-alive connections (which shut
    // down once the server is gone) have had time to close.
    for _ in 0..50 {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let (status, body) = send(s.get("/api/v1/integrations/gitlab/repos", "gina")).await;
    assert_eq!(status, 502, "{body}");
    assert!(
        detail(&body).starts_with("Failed to fetch repos from gitlab: could not reach"),
        "{body}"
    );
}

#[tokio::test]
async fn local_mode_without_an_encryption_key_uses_a_generated_one() {
    let gh = FakeGithub::start(GH_TOKEN, 3).await;
    let s = TestServer::start(&[
        ("LUCID_GITHUB_API_URL", &gh.base_url()),
        ("ENCRYPTION_KEY", ""),
    ])
    .await;
    let (status, body) = send(
        s.post("/api/v1/integrations", "hank")
            .json(&json!({"provider": "github", "token": GH_TOKEN})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let key_file = s
        .data_dir
        .path()
        .join(lucid_engine::engine::ENCRYPTION_KEY_FILE);
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&key_file).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let key = std::fs::read_to_string(&key_file).unwrap();
    assert_eq!(key.trim().len(), 64);
    let (status, list) = send(s.get("/api/v1/integrations", "hank")).await;
    assert_eq!(status, 200);
    assert_eq!(list["integrations"].as_array().unwrap().len(), 1);
    // The stored token is encrypted, not the token itself.
    let db = std::fs::read(s.data_dir.path().join("lucid.sqlite3")).unwrap();
    assert!(!db.windows(GH_TOKEN.len()).any(|w| w == GH_TOKEN.as_bytes()));
}
