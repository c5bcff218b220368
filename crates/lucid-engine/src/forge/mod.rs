//! REST clients for the code forges: GitHub ([`github`]) and GitLab ([`gitlab`], including
//! self-hosted instances).
//!
//! Both clients share one [`reqwest::Client`] built by [`http_client`] (15 s timeout,
//! `User-Agent: lucid`, redirects followed only within the same origin so a token header is
//! never forwarded to another host). Tokens are passed per call, sent in headers marked
//! sensitive, and never appear in a [`ForgeError`]: forge error bodies are reduced to their
//! `message` field, truncated, with any occurrence of the token redacted.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

pub mod github;
pub mod gitlab;
mod http;
pub mod repo_url;

pub use github::GithubClient;
pub use gitlab::{normalize_gitlab_url, GitlabClient};
pub use repo_url::{RepoPath, RepoUrl};

/// Timeout of every forge request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Items requested per page.
pub const PER_PAGE: usize = 100;
/// Default maximum number of pages fetched by a list call (10 × 100 items).
pub const DEFAULT_MAX_PAGES: usize = 10;
/// The public GitLab instance (the default when no instance URL is given).
pub const GITLAB_COM: &str = "https://gitlab.com";

/// A supported forge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Github,
    Gitlab,
}

impl Provider {
    /// Parses a provider name, trimmed and case-insensitive.
    pub fn parse(name: &str) -> Option<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "github" => Some(Provider::Github),
            "gitlab" => Some(Provider::Gitlab),
            _ => None,
        }
    }

    /// Lower-case wire name: `github` / `gitlab`.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Github => "github",
            Provider::Gitlab => "gitlab",
        }
    }

    /// Upper-case name stored in the `integrations.provider` column: `GITHUB` / `GITLAB`.
    pub fn db_name(self) -> &'static str {
        match self {
            Provider::Github => "GITHUB",
            Provider::Gitlab => "GITLAB",
        }
    }
}

impl std::fmt::Display for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a forge call failed. Messages carry at most a short summary of the forge's own error
/// message; never a token, a request header or a whole response body.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ForgeError {
    #[error("the forge rejected the token (HTTP 401){}", detail(.message))]
    Unauthorized { message: Option<String> },
    #[error("the token is not allowed to do this (HTTP 403){}", detail(.message))]
    Forbidden { message: Option<String> },
    #[error("not found on the forge (HTTP 404){}", detail(.message))]
    NotFound { message: Option<String> },
    #[error("rate limited by the forge (HTTP {status}){}", retry_hint(.retry_after_secs))]
    RateLimited {
        status: u16,
        retry_after_secs: Option<u64>,
    },
    /// The forge refused the request's content (HTTP 400/409/422), e.g. a PR that already exists.
    #[error("the forge refused the request (HTTP {status}){}", detail(.message))]
    Rejected {
        status: u16,
        message: Option<String>,
    },
    /// Any other non-success answer (5xx, unexpected redirects, …).
    #[error("the forge answered HTTP {status}{}", detail(.message))]
    Upstream {
        status: u16,
        message: Option<String>,
    },
    #[error("could not reach the forge: {0}")]
    Network(String),
    #[error("unexpected response from the forge: {0}")]
    InvalidResponse(String),
    #[error("invalid URL: {0}")]
    InvalidUrl(String),
    #[error("the token contains characters that cannot be sent in an HTTP header")]
    InvalidToken,
}

fn detail(message: &Option<String>) -> String {
    message
        .as_deref()
        .map(|m| format!(": {m}"))
        .unwrap_or_default()
}

fn retry_hint(secs: &Option<u64>) -> String {
    secs.map(|s| format!(", retry in {s} s"))
        .unwrap_or_default()
}

/// The account a token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForgeUser {
    /// GitHub `login` / GitLab `username`.
    pub username: String,
}

/// A repository (GitHub) or project (GitLab) in the original's JSON shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct RepoInfo {
    pub name: String,
    /// `owner/repo` (GitHub) or `path_with_namespace` (GitLab, may have nested groups).
    pub full_name: String,
    /// Web page of the repository.
    pub url: String,
    /// HTTPS clone URL.
    pub clone_url: String,
    /// Default branch; `main` when the forge reports none (e.g. an empty GitLab project).
    pub default_branch: String,
    /// Not publicly visible (GitLab `private` and `internal` projects count as private).
    pub private: bool,
    pub description: Option<String>,
}

/// A branch of a repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct BranchInfo {
    pub name: String,
    pub protected: bool,
    /// Head commit id, when the forge reports it.
    pub commit_sha: Option<String>,
}

/// What to open: a GitHub pull request or a GitLab merge request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPullRequest {
    pub title: String,
    pub body: String,
    /// Source branch.
    pub head: String,
    /// Target branch.
    pub base: String,
}

/// A created pull/merge request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRequestInfo {
    /// Web page of the PR/MR.
    pub url: String,
    /// GitHub `number` / GitLab `iid`.
    pub number: u64,
    pub title: String,
    /// `open` (GitHub) / `opened` (GitLab).
    pub state: String,
}

/// A list call's result: the items and whether the page cap cut the list short.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paged<T> {
    pub items: Vec<T>,
    pub truncated: bool,
}

/// Validates and normalises a forge base URL: `https://` (or `http://` on a loopback host),
/// no credentials, query or fragment; trailing slashes removed. `what` names the setting in
/// the error message (the URL itself is not echoed).
pub(crate) fn normalize_base_url(what: &str, url: &str) -> Result<String, ForgeError> {
    let trimmed = url.trim().trim_end_matches('/');
    let invalid = |why: &str| ForgeError::InvalidUrl(format!("{what} {why}"));
    let parsed = url::Url::parse(trimmed).map_err(|_| invalid("is not a valid URL"))?;
    if crate::config::check_https_or_loopback("forge URL", trimmed).is_err() {
        return Err(invalid(
            "must use https:// (http:// is allowed only for loopback hosts)",
        ));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(invalid("must not contain credentials"));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(invalid("must not contain a query or fragment"));
    }
    Ok(trimmed.to_string())
}

/// Builds the HTTP client shared by the forge clients: 15 s timeout, `User-Agent: lucid`,
/// redirects followed (at most 5) only when they stay on the same scheme, host and port.
pub fn http_client() -> Result<reqwest::Client, ForgeError> {
    http_client_with(&crate::outbound::OutboundPolicy::unrestricted())
}

/// [`http_client`] whose connections follow `policy` (names are resolved through it, so a
/// restricted policy never connects to an internal address, also after a redirect).
pub fn http_client_with(
    policy: &crate::outbound::OutboundPolicy,
) -> Result<reqwest::Client, ForgeError> {
    let mut builder = reqwest::Client::builder();
    if policy.is_restricted() {
        // Every connection is to the checked address: no proxy resolves names for us.
        builder = builder.dns_resolver(policy.resolver()).no_proxy();
    }
    builder
        .user_agent("lucid")
        .timeout(REQUEST_TIMEOUT)
        .redirect(reqwest::redirect::Policy::custom(|attempt| {
            let same_origin = attempt
                .previous()
                .first()
                .is_some_and(|first| first.origin() == attempt.url().origin());
            if attempt.previous().len() > 5 {
                attempt.error("too many redirects")
            } else if same_origin {
                attempt.follow()
            } else {
                attempt.stop()
            }
        }))
        .build()
        .map_err(|e| ForgeError::Network(format!("HTTP client unavailable: {}", e.without_url())))
}

#[cfg(test)]
mod tests;
