//! GitLab REST API v4 client for gitlab.com or a self-hosted instance (API at
//! `{instance}/api/v4`). Header on every call: `PRIVATE-TOKEN: <token>` (marked sensitive).

use reqwest::header::{HeaderMap, HeaderName};
use reqwest::{RequestBuilder, Response};
use serde::Deserialize;
use serde_json::json;

use super::http::{fetch_pages, read_json, send};
use super::{
    normalize_base_url, BranchInfo, ForgeError, ForgeUser, NewPullRequest, Paged, PullRequestInfo,
    RepoInfo, RepoPath, DEFAULT_MAX_PAGES, PER_PAGE,
};

const PRIVATE_TOKEN: HeaderName = HeaderName::from_static("private-token");

/// Validates a GitLab instance URL (https, or http on a loopback host; no credentials, query
/// or fragment) and strips trailing slashes.
pub fn normalize_gitlab_url(url: &str) -> Result<String, ForgeError> {
    normalize_base_url("the GitLab URL", url)
}

/// A GitLab API client bound to one instance. Cheap to clone; tokens are passed per call.
#[derive(Debug, Clone)]
pub struct GitlabClient {
    http: reqwest::Client,
    instance_url: String,
    max_pages: usize,
}

#[derive(Deserialize)]
struct GlUser {
    username: String,
}

#[derive(Deserialize)]
struct GlProject {
    name: String,
    path_with_namespace: String,
    web_url: String,
    http_url_to_repo: Option<String>,
    default_branch: Option<String>,
    visibility: Option<String>,
    description: Option<String>,
}

#[derive(Deserialize)]
struct GlBranch {
    name: String,
    #[serde(default)]
    protected: bool,
    commit: Option<GlCommit>,
}

#[derive(Deserialize)]
struct GlCommit {
    id: Option<String>,
}

#[derive(Deserialize)]
struct GlMergeRequest {
    web_url: String,
    iid: u64,
    title: String,
    state: String,
}

impl GitlabClient {
    /// A client for the instance at `instance_url` (validated by [`normalize_gitlab_url`]).
    pub fn new(http: reqwest::Client, instance_url: &str) -> Result<Self, ForgeError> {
        Ok(Self {
            http,
            instance_url: normalize_gitlab_url(instance_url)?,
            max_pages: DEFAULT_MAX_PAGES,
        })
    }

    /// Changes the page cap of list calls (at least 1).
    pub fn with_max_pages(mut self, max_pages: usize) -> Self {
        self.max_pages = max_pages.max(1);
        self
    }

    /// The normalised instance URL (no trailing slash).
    pub fn instance_url(&self) -> &str {
        &self.instance_url
    }

    fn request(&self, method: reqwest::Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}/api/v4{path}", self.instance_url))
    }

    async fn send(&self, req: RequestBuilder, token: &str) -> Result<Response, ForgeError> {
        send(req, PRIVATE_TOKEN, token.to_string(), token).await
    }

    /// `GET /api/v4/user`: the token's owner (`username`). Also how a token is validated.
    pub async fn current_user(&self, token: &str) -> Result<ForgeUser, ForgeError> {
        let resp = self
            .send(self.request(reqwest::Method::GET, "/user"), token)
            .await?;
        let user: GlUser = read_json(resp, "GitLab user").await?;
        Ok(ForgeUser {
            username: user.username,
        })
    }

    /// `GET /api/v4/projects?membership=true&order_by=last_activity_at&per_page=100&page=N`,
    /// up to the page cap.
    pub async fn list_projects(&self, token: &str) -> Result<Paged<RepoInfo>, ForgeError> {
        let per_page = PER_PAGE.to_string();
        let paged: Paged<GlProject> = fetch_pages(
            self.max_pages,
            "GitLab project list",
            |page: usize| {
                let req = self.request(reqwest::Method::GET, "/projects").query(&[
                    ("membership", "true"),
                    ("order_by", "last_activity_at"),
                    ("per_page", per_page.as_str()),
                    ("page", page.to_string().as_str()),
                ]);
                self.send(req, token)
            },
            has_next_page,
        )
        .await?;
        Ok(Paged {
            items: paged.items.into_iter().map(repo_info).collect(),
            truncated: paged.truncated,
        })
    }

    /// `GET /api/v4/projects/{url-encoded path}/repository/branches`, up to the page cap.
    pub async fn list_branches(
        &self,
        token: &str,
        project: &RepoPath,
    ) -> Result<Paged<BranchInfo>, ForgeError> {
        let path = format!("/projects/{}/repository/branches", project.gitlab_id());
        let per_page = PER_PAGE.to_string();
        let paged: Paged<GlBranch> = fetch_pages(
            self.max_pages,
            "GitLab branch list",
            |page: usize| {
                let req = self.request(reqwest::Method::GET, &path).query(&[
                    ("per_page", per_page.as_str()),
                    ("page", page.to_string().as_str()),
                ]);
                self.send(req, token)
            },
            has_next_page,
        )
        .await?;
        Ok(Paged {
            items: paged
                .items
                .into_iter()
                .map(|b| BranchInfo {
                    name: b.name,
                    protected: b.protected,
                    commit_sha: b.commit.and_then(|c| c.id),
                })
                .collect(),
            truncated: paged.truncated,
        })
    }

    /// `POST /api/v4/projects/{id}/merge_requests` with
    /// `{title, description, source_branch, target_branch}`.
    pub async fn create_merge_request(
        &self,
        token: &str,
        project: &RepoPath,
        mr: &NewPullRequest,
    ) -> Result<PullRequestInfo, ForgeError> {
        let req = self
            .request(
                reqwest::Method::POST,
                &format!("/projects/{}/merge_requests", project.gitlab_id()),
            )
            .json(&json!({
                "title": mr.title,
                "description": mr.body,
                "source_branch": mr.head,
                "target_branch": mr.base,
            }));
        let resp = self.send(req, token).await?;
        let created: GlMergeRequest = read_json(resp, "GitLab merge request").await?;
        Ok(PullRequestInfo {
            url: created.web_url,
            number: created.iid,
            title: created.title,
            state: created.state,
        })
    }
}

fn repo_info(p: GlProject) -> RepoInfo {
    RepoInfo {
        clone_url: p
            .http_url_to_repo
            .unwrap_or_else(|| format!("{}.git", p.web_url)),
        name: p.name,
        full_name: p.path_with_namespace,
        url: p.web_url,
        default_branch: p
            .default_branch
            .filter(|b| !b.is_empty())
            .unwrap_or_else(|| "main".into()),
        // `internal` projects are not public either; a missing visibility is treated as private.
        private: p.visibility.as_deref() != Some("public"),
        description: p.description,
    }
}

/// GitLab sends `X-Next-Page` (empty on the last page); without it (very large collections
/// omit some headers), a full page may be followed by more.
fn has_next_page(headers: &HeaderMap, items: usize) -> bool {
    match headers.get("x-next-page").and_then(|v| v.to_str().ok()) {
        Some(next) => !next.trim().is_empty(),
        None => items >= PER_PAGE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_urls_are_validated_and_normalised() {
        assert_eq!(
            normalize_gitlab_url("https://gitlab.example.com/").unwrap(),
            "https://gitlab.example.com"
        );
        assert_eq!(
            normalize_gitlab_url(" https://example.com/gitlab// ").unwrap(),
            "https://example.com/gitlab"
        );
        assert_eq!(
            normalize_gitlab_url("http://127.0.0.1:8080/").unwrap(),
            "http://127.0.0.1:8080"
        );
        for bad in [
            "http://gitlab.example.com",
            "ftp://gitlab.example.com",
            "gitlab.example.com",
            "",
            "https://user:pass@gitlab.example.com",
            "https://gitlab.example.com/?x=1",
            "file:///etc/passwd",
        ] {
            let err = normalize_gitlab_url(bad).unwrap_err();
            assert!(matches!(err, ForgeError::InvalidUrl(_)), "{bad}");
            assert!(!err.to_string().contains("pass"), "{err}");
        }
    }

    #[test]
    fn visibility_and_default_branch_mapping() {
        let project = |visibility: Option<&str>, branch: Option<&str>| GlProject {
            name: "p".into(),
            path_with_namespace: "g/p".into(),
            web_url: "https://gitlab.com/g/p".into(),
            http_url_to_repo: None,
            default_branch: branch.map(str::to_string),
            visibility: visibility.map(str::to_string),
            description: None,
        };
        assert!(repo_info(project(Some("private"), None)).private);
        assert!(repo_info(project(Some("internal"), None)).private);
        assert!(!repo_info(project(Some("public"), None)).private);
        assert!(repo_info(project(None, None)).private);
        assert_eq!(repo_info(project(None, None)).default_branch, "main");
        assert_eq!(
            repo_info(project(None, Some("develop"))).default_branch,
            "develop"
        );
        assert_eq!(
            repo_info(project(None, None)).clone_url,
            "https://gitlab.com/g/p.git"
        );
    }
}
