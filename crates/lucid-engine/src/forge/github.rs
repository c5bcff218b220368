//! GitHub REST API v3 client (`api.github.com` or any configured base URL, e.g. GitHub
//! Enterprise's `https://host/api/v3` or a test fake).
//!
//! Headers on every call: `Authorization: Bearer <token>` (marked sensitive),
//! `Accept: application/vnd.github.v3+json`, `X-GitHub-Api-Version: 2022-11-28`.

use reqwest::header::{HeaderMap, ACCEPT, AUTHORIZATION};
use reqwest::{RequestBuilder, Response};
use serde::Deserialize;
use serde_json::json;

use super::http::{fetch_pages, read_json, send};
use super::{
    normalize_base_url, BranchInfo, ForgeError, ForgeUser, NewPullRequest, Paged, PullRequestInfo,
    RepoInfo, RepoPath, DEFAULT_MAX_PAGES, PER_PAGE,
};

/// A GitHub API client. Cheap to clone; tokens are passed per call.
#[derive(Debug, Clone)]
pub struct GithubClient {
    http: reqwest::Client,
    api_url: String,
    max_pages: usize,
}

#[derive(Deserialize)]
struct GhUser {
    login: String,
}

#[derive(Deserialize)]
struct GhRepo {
    name: String,
    full_name: String,
    html_url: String,
    clone_url: Option<String>,
    default_branch: Option<String>,
    private: Option<bool>,
    description: Option<String>,
}

#[derive(Deserialize)]
struct GhBranch {
    name: String,
    #[serde(default)]
    protected: bool,
    commit: Option<GhCommit>,
}

#[derive(Deserialize)]
struct GhCommit {
    sha: Option<String>,
}

#[derive(Deserialize)]
struct GhPull {
    html_url: String,
    number: u64,
    title: String,
    state: String,
}

impl GithubClient {
    /// A client for the API at `api_url` (https, or http on a loopback host; trailing slashes
    /// are removed).
    pub fn new(http: reqwest::Client, api_url: &str) -> Result<Self, ForgeError> {
        Ok(Self {
            http,
            api_url: normalize_base_url("the GitHub API URL", api_url)?,
            max_pages: DEFAULT_MAX_PAGES,
        })
    }

    /// Changes the page cap of list calls (at least 1).
    pub fn with_max_pages(mut self, max_pages: usize) -> Self {
        self.max_pages = max_pages.max(1);
        self
    }

    pub fn api_url(&self) -> &str {
        &self.api_url
    }

    fn request(&self, method: reqwest::Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.api_url))
            .header(ACCEPT, "application/vnd.github.v3+json")
            .header("X-GitHub-Api-Version", "2022-11-28")
    }

    async fn send(&self, req: RequestBuilder, token: &str) -> Result<Response, ForgeError> {
        send(req, AUTHORIZATION, format!("Bearer {token}"), token).await
    }

    /// `GET /user`: the token's owner (`login`). Also how a token is validated.
    pub async fn current_user(&self, token: &str) -> Result<ForgeUser, ForgeError> {
        let resp = self
            .send(self.request(reqwest::Method::GET, "/user"), token)
            .await?;
        let user: GhUser = read_json(resp, "GitHub user").await?;
        Ok(ForgeUser {
            username: user.login,
        })
    }

    /// `GET /user/repos?sort=updated&per_page=100&page=N`, up to the page cap.
    pub async fn list_repos(&self, token: &str) -> Result<Paged<RepoInfo>, ForgeError> {
        let per_page = PER_PAGE.to_string();
        let paged: Paged<GhRepo> = fetch_pages(
            self.max_pages,
            "GitHub repository list",
            |page: usize| {
                let req = self.request(reqwest::Method::GET, "/user/repos").query(&[
                    ("sort", "updated"),
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

    /// `GET /repos/{owner}/{repo}/branches?per_page=100&page=N`, up to the page cap.
    pub async fn list_branches(
        &self,
        token: &str,
        repo: &RepoPath,
    ) -> Result<Paged<BranchInfo>, ForgeError> {
        let (owner, name) = repo.github_owner_repo()?;
        let path = format!("/repos/{owner}/{name}/branches");
        let per_page = PER_PAGE.to_string();
        let paged: Paged<GhBranch> = fetch_pages(
            self.max_pages,
            "GitHub branch list",
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
                    commit_sha: b.commit.and_then(|c| c.sha),
                })
                .collect(),
            truncated: paged.truncated,
        })
    }

    /// `POST /repos/{owner}/{repo}/pulls` with `{title, body, head, base}`.
    pub async fn create_pull_request(
        &self,
        token: &str,
        repo: &RepoPath,
        pr: &NewPullRequest,
    ) -> Result<PullRequestInfo, ForgeError> {
        let (owner, name) = repo.github_owner_repo()?;
        let req = self
            .request(
                reqwest::Method::POST,
                &format!("/repos/{owner}/{name}/pulls"),
            )
            .json(&json!({
                "title": pr.title,
                "body": pr.body,
                "head": pr.head,
                "base": pr.base,
            }));
        let resp = self.send(req, token).await?;
        let pull: GhPull = read_json(resp, "GitHub pull request").await?;
        Ok(PullRequestInfo {
            url: pull.html_url,
            number: pull.number,
            title: pull.title,
            state: pull.state,
        })
    }
}

fn repo_info(r: GhRepo) -> RepoInfo {
    RepoInfo {
        clone_url: r.clone_url.unwrap_or_else(|| format!("{}.git", r.html_url)),
        name: r.name,
        full_name: r.full_name,
        url: r.html_url,
        default_branch: r
            .default_branch
            .filter(|b| !b.is_empty())
            .unwrap_or_else(|| "main".into()),
        private: r.private.unwrap_or(false),
        description: r.description,
    }
}

/// GitHub paginates with an RFC 8288 `Link` header; without one, a full page may be followed
/// by more.
fn has_next_page(headers: &HeaderMap, items: usize) -> bool {
    match headers.get("link").and_then(|v| v.to_str().ok()) {
        Some(link) => link_has_next(link),
        None => items >= PER_PAGE,
    }
}

/// Whether a `Link` header has a `rel="next"` entry.
fn link_has_next(link: &str) -> bool {
    link.split(',').any(|entry| {
        entry.split(';').skip(1).any(|param| {
            let param = param.trim();
            param
                .strip_prefix("rel=")
                .map(|rels| {
                    rels.trim_matches('"')
                        .split_whitespace()
                        .any(|r| r == "next")
                })
                .unwrap_or(false)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_header_next_detection() {
        assert!(link_has_next(
            r#"<https://api.github.com/user/repos?page=2>; rel="next", <https://api.github.com/user/repos?page=5>; rel="last""#
        ));
        assert!(!link_has_next(
            r#"<https://api.github.com/user/repos?page=4>; rel="prev", <https://api.github.com/user/repos?page=1>; rel="first""#
        ));
        assert!(link_has_next(r#"<https://x/?page=2>; rel="next last""#));
        assert!(!link_has_next(""));
    }

    #[test]
    fn null_default_branch_becomes_main() {
        let r: GhRepo = serde_json::from_value(json!({
            "name": "r", "full_name": "o/r", "html_url": "https://github.com/o/r",
            "clone_url": null, "default_branch": null, "private": true, "description": null
        }))
        .unwrap();
        let info = repo_info(r);
        assert_eq!(info.default_branch, "main");
        assert_eq!(info.clone_url, "https://github.com/o/r.git");
        assert!(info.private);
    }
}
