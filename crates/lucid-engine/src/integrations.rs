//! The integrations service: a user's GitHub/GitLab personal access tokens, validated against
//! the forge, stored encrypted ([`TokenCipher`]) through the [`Store`], and used to list
//! repositories and branches, open pull/merge requests, and hand credentials to host-side git.
//!
//! Wire shapes follow the original's `/api/v1/integrations` contract, with its holes closed:
//! GitLab instance URLs must be https (http only for loopback hosts) and are validated before
//! any token is sent; merge requests go to the instance stored at save time, never to a URL
//! from the request; the self-hosted URL kept in `scopes` (`scopes||url`, the original's
//! storage format) is stripped from listings; forge errors are summarised without secrets;
//! an unreadable stored token is a clear "reconnect" error. Tokens never appear in a
//! response, an error or a log line.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::auth::User;
use crate::config::Config;
use crate::crypto::{CryptoError, TokenCipher};
use crate::error::{EngineError, EngineResult, ErrorKind};
use crate::forge::{
    self, normalize_gitlab_url, BranchInfo, ForgeError, GithubClient, GitlabClient, NewPullRequest,
    Provider, RepoInfo, RepoPath, RepoUrl, GITLAB_COM,
};
use crate::store::{IntegrationRow, Store};

/// Scopes recorded for a GitHub token (the original's constant; not checked).
const GITHUB_SCOPES: &str = "repo,workflow";
/// Scopes recorded for a GitLab token (the original's constant; not checked).
const GITLAB_SCOPES: &str = "api,read_repository,write_repository";
/// Separator of the self-hosted GitLab URL appended to `scopes` in storage.
const SCOPES_URL_SEPARATOR: &str = "||";
/// Longest accepted token.
const MAX_TOKEN_LEN: usize = 4096;

// ---------------------------------------------------------------------------------------------
// Wire types

/// `POST /api/v1/integrations` body. Deliberately not `Serialize` and with a redacting
/// `Debug`: the token must not end up in logs or JSON.
#[derive(Clone, Deserialize, utoipa::ToSchema, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct SaveIntegrationRequest {
    /// `github` or `gitlab` (trimmed, case-insensitive).
    pub provider: String,
    /// The personal access token.
    pub token: String,
    /// GitLab instance URL (default: the configured GitLab URL, normally `https://gitlab.com`).
    #[serde(default)]
    pub gitlab_url: Option<String>,
}

impl std::fmt::Debug for SaveIntegrationRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaveIntegrationRequest")
            .field("provider", &self.provider)
            .field("token", &"[redacted]")
            .field("gitlab_url", &self.gitlab_url)
            .finish()
    }
}

/// `POST /api/v1/integrations` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct SaveIntegrationResponse {
    /// Always `connected`.
    pub status: String,
    /// `github` / `gitlab`.
    pub provider: String,
    /// GitHub login / GitLab username of the token's owner.
    pub username: String,
    /// `Connected as <username>`.
    pub message: String,
}

/// One stored integration as listed (never with its token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct IntegrationInfo {
    pub id: String,
    /// `github` / `gitlab`.
    pub provider: String,
    pub label: Option<String>,
    pub external_username: Option<String>,
    /// Recorded scopes, without the storage-only GitLab URL suffix.
    pub scopes: Option<String>,
    #[schema(value_type = String)]
    pub created_at: DateTime<Utc>,
    /// Always `true`.
    pub connected: bool,
    /// The GitLab instance the token belongs to (GitLab only; not in the original's shape).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gitlab_url: Option<String>,
}

/// `GET /api/v1/integrations` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct IntegrationsList {
    pub integrations: Vec<IntegrationInfo>,
}

/// `DELETE /api/v1/integrations/{provider}` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeleteIntegrationResponse {
    /// Always `disconnected`.
    pub status: String,
    pub provider: String,
}

impl DeleteIntegrationResponse {
    pub fn new(provider: impl Into<String>) -> Self {
        Self {
            status: "disconnected".into(),
            provider: provider.into(),
        }
    }
}

/// `GET /api/v1/integrations/{provider}/repos` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema, specta::Type)]
pub struct ReposResponse {
    pub provider: String,
    pub repos: Vec<RepoInfo>,
    pub count: usize,
}

/// Branches of one repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct BranchesResponse {
    pub provider: String,
    /// `owner/repo` or GitLab `path_with_namespace`.
    pub full_name: String,
    pub branches: Vec<BranchInfo>,
    pub count: usize,
}

fn default_base_branch() -> String {
    "main".into()
}

/// `POST /api/v1/integrations/{provider}/pr` body.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct CreatePrRequest {
    /// Repository URL: `https://host/owner/repo(.git)` or `git@host:owner/repo.git`.
    pub repo_url: String,
    /// Source branch (already pushed).
    pub branch: String,
    #[serde(default = "default_base_branch")]
    pub base_branch: String,
    pub title: String,
    #[serde(default)]
    pub body: String,
    /// Accepted for compatibility and ignored: merge requests always go to the GitLab instance
    /// stored with the token.
    #[serde(default)]
    pub gitlab_url: Option<String>,
    /// The session whose workspace the branch comes from (handled by the caller).
    #[serde(default)]
    pub session_id: Option<String>,
}

/// `POST /api/v1/integrations/{provider}/pr` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct CreatePrResponse {
    /// Always `created`.
    pub status: String,
    pub provider: String,
    pub pr_url: String,
    /// GitHub PR number / GitLab MR iid.
    pub pr_number: u64,
    pub title: String,
    /// `open` (GitHub) / `opened` (GitLab).
    pub state: String,
}

/// A decrypted token and where it applies, for host-side git operations. Never serialised;
/// `Debug` hides the token.
#[derive(Clone, PartialEq, Eq)]
pub struct ForgeCredentials {
    pub provider: Provider,
    pub token: String,
    /// GitHub login / GitLab username recorded at save time.
    pub username: Option<String>,
    /// GitHub API base URL, or the GitLab instance URL.
    pub base_url: String,
}

impl std::fmt::Debug for ForgeCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForgeCredentials")
            .field("provider", &self.provider)
            .field("token", &"[redacted]")
            .field("username", &self.username)
            .field("base_url", &self.base_url)
            .finish()
    }
}

// ---------------------------------------------------------------------------------------------
// Service

/// The integrations service. Every call takes the authenticated [`User`] and only ever reads
/// or writes that user's integration.
pub struct Integrations {
    store: Arc<dyn Store>,
    cipher: TokenCipher,
    github_api_url: String,
    default_gitlab_url: String,
    /// Where user-supplied URLs (a GitLab instance) may lead; see [`crate::outbound`].
    outbound: crate::outbound::OutboundPolicy,
    http: Result<reqwest::Client, ForgeError>,
}

/// A stored integration whose token has not been decrypted yet.
struct StoredRow {
    provider: Provider,
    row: IntegrationRow,
    /// GitLab: the instance URL from storage (`https://gitlab.com` when none was stored).
    gitlab_url: Option<String>,
}

impl Integrations {
    /// Builds the service with its own HTTP client (see [`forge::http_client`]).
    pub fn new(store: Arc<dyn Store>, config: &Config) -> Self {
        let http = forge::http_client_with(&crate::outbound::OutboundPolicy::from_config(config));
        if let Err(e) = &http {
            tracing::error!(error = %e, "forge HTTP client could not be built");
        }
        Self::build(store, config, http)
    }

    /// Builds the service around an existing HTTP client (it should have a timeout and must
    /// not follow cross-origin redirects; [`forge::http_client`] builds a suitable one).
    pub fn with_http_client(store: Arc<dyn Store>, config: &Config, http: reqwest::Client) -> Self {
        Self::build(store, config, Ok(http))
    }

    fn build(
        store: Arc<dyn Store>,
        config: &Config,
        http: Result<reqwest::Client, ForgeError>,
    ) -> Self {
        Self {
            store,
            cipher: TokenCipher::new(config.encryption_key.as_deref()),
            github_api_url: config.github_api_url.trim_end_matches('/').to_string(),
            default_gitlab_url: config.gitlab_url.trim_end_matches('/').to_string(),
            outbound: crate::outbound::OutboundPolicy::from_config(config),
            http,
        }
    }

    /// Validates the token against the forge, encrypts it and stores it (replacing the user's
    /// previous token for that provider).
    pub async fn save(
        &self,
        user: &User,
        req: SaveIntegrationRequest,
    ) -> EngineResult<SaveIntegrationResponse> {
        let provider = parse_provider(&req.provider)?;
        let token = check_token_input(&req.token)?;
        // Refuse before the token is sent anywhere if it could not be stored afterwards.
        if !self.cipher.is_configured() {
            return Err(crypto_error(provider, CryptoError::MissingKey));
        }
        let (username, scopes) = match provider {
            Provider::Github => {
                let user = self
                    .github()?
                    .current_user(token)
                    .await
                    .map_err(validation_failed)?;
                (user.username, GITHUB_SCOPES.to_string())
            }
            Provider::Gitlab => {
                let url = self.requested_gitlab_url(req.gitlab_url.as_deref())?;
                self.check_outbound(&url).await?;
                let user = self
                    .gitlab(&url)?
                    .current_user(token)
                    .await
                    .map_err(validation_failed)?;
                (user.username, encode_scopes(GITLAB_SCOPES, &url))
            }
        };
        let encrypted = self
            .cipher
            .encrypt(token)
            .map_err(|e| crypto_error(provider, e))?;
        let row = IntegrationRow {
            id: uuid::Uuid::new_v4().to_string(),
            user_id: user.id.clone(),
            provider: provider.db_name().to_string(),
            label: Some(format!("{username} ({provider})")),
            access_token_encrypted: encrypted.ciphertext_hex,
            iv: encrypted.iv_hex,
            external_username: Some(username.clone()),
            scopes: Some(scopes),
            created_at: Utc::now(),
        };
        self.store.upsert_integration(user, row).await?;
        tracing::info!(user_id = %user.id, %provider, "forge integration saved");
        Ok(SaveIntegrationResponse {
            status: "connected".into(),
            provider: provider.as_str().into(),
            message: format!("Connected as {username}"),
            username,
        })
    }

    /// The user's integrations, oldest first, without tokens.
    pub async fn list(&self, user: &User) -> EngineResult<Vec<IntegrationInfo>> {
        let mut rows = self.store.list_integrations(user).await?;
        rows.retain(|r| r.user_id.is_empty() || r.user_id == user.id);
        rows.sort_by_key(|r| r.created_at);
        Ok(rows
            .into_iter()
            .map(|row| {
                let (scopes, url) = match row.scopes.as_deref() {
                    Some(raw) => {
                        let (s, u) = split_scopes(raw);
                        (Some(s.to_string()), u.map(str::to_string))
                    }
                    None => (None, None),
                };
                let provider = row.provider.to_ascii_lowercase();
                let gitlab_url = (provider == Provider::Gitlab.as_str())
                    .then(|| url.unwrap_or_else(|| GITLAB_COM.to_string()));
                IntegrationInfo {
                    id: row.id,
                    provider,
                    label: row.label,
                    external_username: row.external_username,
                    scopes,
                    created_at: row.created_at,
                    connected: true,
                    gitlab_url,
                }
            })
            .collect())
    }

    /// Deletes the user's integration for `provider`; returns the lower-case provider.
    pub async fn delete(&self, user: &User, provider: &str) -> EngineResult<String> {
        let provider = parse_provider(provider)?;
        if !self
            .store
            .delete_integration(user, provider.db_name())
            .await?
        {
            return Err(EngineError::not_found(format!(
                "No {provider} integration found for this user."
            )));
        }
        tracing::info!(user_id = %user.id, %provider, "forge integration deleted");
        Ok(provider.as_str().to_string())
    }

    /// The user's repositories (GitHub) or member projects (GitLab, on the stored instance).
    pub async fn repos(&self, user: &User, provider: &str) -> EngineResult<ReposResponse> {
        let provider = parse_provider(provider)?;
        let (stored, token) = self.require(user, provider).await?;
        let listed = match provider {
            Provider::Github => self.github()?.list_repos(&token).await,
            Provider::Gitlab => {
                self.gitlab(stored_gitlab_url(&stored)?)?
                    .list_projects(&token)
                    .await
            }
        }
        .map_err(|e| forge_failure(format!("Failed to fetch repos from {provider}"), e))?;
        if listed.truncated {
            tracing::info!(user_id = %user.id, %provider, count = listed.items.len(), "repository list truncated at the page cap");
        }
        Ok(ReposResponse {
            provider: provider.as_str().into(),
            count: listed.items.len(),
            repos: listed.items,
        })
    }

    /// Branches of `full_name` (`owner/repo`, a GitLab `group/sub/project`, or a repository URL).
    pub async fn branches(
        &self,
        user: &User,
        provider: &str,
        full_name: &str,
    ) -> EngineResult<BranchesResponse> {
        let provider = parse_provider(provider)?;
        let target = RepoRef::parse(full_name)?;
        let (stored, token) = self.require(user, provider).await?;
        let (repo, listed) = match provider {
            Provider::Github => {
                let repo = target.github()?;
                let listed = self.github()?.list_branches(&token, &repo).await;
                (repo, listed)
            }
            Provider::Gitlab => {
                let url = stored_gitlab_url(&stored)?;
                let project = target.gitlab(url)?;
                let listed = self.gitlab(url)?.list_branches(&token, &project).await;
                (project, listed)
            }
        };
        let listed = listed
            .map_err(|e| forge_failure(format!("Failed to fetch branches from {provider}"), e))?;
        Ok(BranchesResponse {
            provider: provider.as_str().into(),
            full_name: repo.full_name(),
            count: listed.items.len(),
            branches: listed.items,
        })
    }

    /// Opens a GitHub pull request or a GitLab merge request (on the stored GitLab instance).
    pub async fn create_pr(
        &self,
        user: &User,
        provider: &str,
        req: CreatePrRequest,
    ) -> EngineResult<CreatePrResponse> {
        let provider = parse_provider(provider)?;
        let branch = required_field("branch", &req.branch)?;
        let base = required_field("baseBranch", &req.base_branch)?;
        let title = required_field("title", &req.title)?;
        let repo_url = RepoUrl::parse(&req.repo_url).map_err(|e| invalid_input("repoUrl", e))?;
        let (stored, token) = self.require(user, provider).await?;
        let new_pr = NewPullRequest {
            title: title.to_string(),
            body: req.body.clone(),
            head: branch.to_string(),
            base: base.to_string(),
        };
        let (repo, created) = match provider {
            Provider::Github => {
                let repo = repo_url
                    .github_repo()
                    .map_err(|e| invalid_input("repoUrl", e))?;
                let created = self
                    .github()?
                    .create_pull_request(&token, &repo, &new_pr)
                    .await;
                (repo, created)
            }
            Provider::Gitlab => {
                let url = stored_gitlab_url(&stored)?;
                if req
                    .gitlab_url
                    .as_deref()
                    .is_some_and(|u| u.trim().trim_end_matches('/') != url)
                {
                    tracing::debug!(user_id = %user.id, "request gitlabUrl ignored: using the stored GitLab instance");
                }
                let project = repo_url
                    .gitlab_project(url)
                    .map_err(|e| invalid_input("repoUrl", e))?;
                let created = self
                    .gitlab(url)?
                    .create_merge_request(&token, &project, &new_pr)
                    .await;
                (project, created)
            }
        };
        let created = created.map_err(|e| forge_failure("Failed to create PR".into(), e))?;
        tracing::info!(user_id = %user.id, %provider, repo = %repo, number = created.number, "pull request created");
        Ok(CreatePrResponse {
            status: "created".into(),
            provider: provider.as_str().into(),
            pr_url: created.url,
            pr_number: created.number,
            title: created.title,
            state: created.state,
        })
    }

    /// Decrypted token + instance URL for a provider (used by host-side git clone/push).
    /// Never logged. `None` when the user has no integration for it.
    pub async fn credentials(
        &self,
        user: &User,
        provider: &str,
    ) -> EngineResult<Option<ForgeCredentials>> {
        let provider = parse_provider(provider)?;
        match self.load_row(user, provider).await? {
            Some(stored) => Ok(Some(self.decrypt(&stored)?)),
            None => Ok(None),
        }
    }

    /// The stored integration ("github"/"gitlab") whose host matches a repository URL's host,
    /// if any. GitHub matches `github.com` and the host of the configured GitHub API
    /// (`api.` removed); GitLab matches the host of the stored instance URL. http(s) URLs
    /// must match host and port; an ssh URL (only to find the integration, git never uses
    /// it) matches on host, below an exact match.
    pub async fn credentials_for_repo_url(
        &self,
        user: &User,
        repo_url: &str,
    ) -> EngineResult<Option<ForgeCredentials>> {
        let url = RepoUrl::parse(repo_url).map_err(|e| invalid_input("repoUrl", e))?;
        let mut best: Option<(u8, StoredRow)> = None;
        for provider in [Provider::Gitlab, Provider::Github] {
            let Some(stored) = self.load_row(user, provider).await? else {
                continue;
            };
            let score = match provider {
                Provider::Github => github_host_score(&url, &self.github_api_url),
                Provider::Gitlab => stored
                    .gitlab_url
                    .as_deref()
                    .map(|u| host_score(&url, u))
                    .unwrap_or(0),
            };
            if score > 0 && best.as_ref().is_none_or(|(s, _)| score > *s) {
                best = Some((score, stored));
            }
        }
        match best {
            Some((_, stored)) => Ok(Some(self.decrypt(&stored)?)),
            None => Ok(None),
        }
    }

    /// The credentials to push to `remote_url` for a pull request on `provider`: the user's
    /// `provider` integration, and only if its host is the repository's host (the same
    /// matching as for clones). A token is never sent to another host.
    pub async fn credentials_for_push(
        &self,
        user: &User,
        provider: &str,
        remote_url: &str,
    ) -> EngineResult<ForgeCredentials> {
        let provider = parse_provider(provider)?;
        let stored = self.load_row(user, provider).await?.ok_or_else(|| {
            EngineError::not_found(format!(
                "No {} token saved. Add one via POST /api/v1/integrations first.",
                provider.as_str()
            ))
        })?;
        let url = RepoUrl::parse(remote_url).map_err(|e| invalid_input("repoUrl", e))?;
        let (score, expected) = match provider {
            Provider::Github => (
                github_host_score(&url, &self.github_api_url),
                self.github_api_url.clone(),
            ),
            Provider::Gitlab => {
                let instance = stored_gitlab_url(&stored)?.to_string();
                (host_score(&url, &instance), instance)
            }
        };
        if score == 0 {
            return Err(EngineError::bad_request(format!(
                "The repository's host {} does not belong to your {} integration ({expected}): \
                 its token is only ever sent to its own host.",
                url.host(),
                provider.as_str()
            )));
        }
        self.decrypt(&stored)
    }

    // ---- helpers ----

    fn http(&self) -> EngineResult<reqwest::Client> {
        self.http
            .clone()
            .map_err(|e| EngineError::unavailable(format!("Forge HTTP client is unavailable: {e}")))
    }

    fn github(&self) -> EngineResult<GithubClient> {
        GithubClient::new(self.http()?, &self.github_api_url)
            .map_err(|e| EngineError::internal(format!("LUCID_GITHUB_API_URL is not usable: {e}")))
    }

    fn gitlab(&self, instance_url: &str) -> EngineResult<GitlabClient> {
        if let Ok(parsed) = url::Url::parse(instance_url) {
            self.outbound
                .check_url(&parsed)
                .map_err(|e| EngineError::bad_request(format!("Invalid gitlabUrl: {e}")))?;
        }
        GitlabClient::new(self.http()?, instance_url).map_err(|e| invalid_input("gitlabUrl", e))
    }

    /// Refuses a user-supplied URL whose host resolves only to internal addresses under a
    /// restricted outbound policy, with a message that says so (the connection itself is
    /// guarded too, see [`crate::outbound`]). Nothing is sent to the address.
    async fn check_outbound(&self, raw: &str) -> EngineResult<()> {
        if !self.outbound.is_restricted() {
            return Ok(());
        }
        let parsed = url::Url::parse(raw)
            .map_err(|_| EngineError::bad_request("Invalid gitlabUrl: not a valid URL"))?;
        let host = parsed.host_str().unwrap_or_default();
        let port = parsed.port_or_known_default().unwrap_or(443);
        self.outbound
            .resolve(host, port)
            .await
            .map(|_| ())
            .map_err(|e| EngineError::bad_request(format!("Invalid gitlabUrl: {e}")))
    }

    /// The GitLab instance URL of a save request (or the configured default), validated.
    fn requested_gitlab_url(&self, requested: Option<&str>) -> EngineResult<String> {
        let raw = requested
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .unwrap_or(&self.default_gitlab_url);
        normalize_gitlab_url(raw).map_err(|e| invalid_input("gitlabUrl", e))
    }

    async fn load_row(&self, user: &User, provider: Provider) -> EngineResult<Option<StoredRow>> {
        let Some(row) = self.store.get_integration(user, provider.db_name()).await? else {
            return Ok(None);
        };
        if !row.user_id.is_empty() && row.user_id != user.id {
            tracing::error!(user_id = %user.id, %provider, "store returned another user's integration; ignored");
            return Ok(None);
        }
        let gitlab_url = (provider == Provider::Gitlab).then(|| {
            row.scopes
                .as_deref()
                .and_then(|s| split_scopes(s).1)
                .unwrap_or(GITLAB_COM)
                .to_string()
        });
        Ok(Some(StoredRow {
            provider,
            row,
            gitlab_url,
        }))
    }

    fn decrypt(&self, stored: &StoredRow) -> EngineResult<ForgeCredentials> {
        let token = self
            .cipher
            .decrypt(&stored.row.access_token_encrypted, &stored.row.iv)
            .map_err(|e| crypto_error(stored.provider, e))?;
        let base_url = match stored.provider {
            Provider::Github => self.github_api_url.clone(),
            Provider::Gitlab => stored_gitlab_url(stored)?.to_string(),
        };
        Ok(ForgeCredentials {
            provider: stored.provider,
            token,
            username: stored.row.external_username.clone(),
            base_url,
        })
    }

    /// The stored integration and its decrypted token, or the original's 404.
    async fn require(&self, user: &User, provider: Provider) -> EngineResult<(StoredRow, String)> {
        let stored = self.load_row(user, provider).await?.ok_or_else(|| {
            EngineError::not_found(format!(
                "No {provider} token saved. Add one via POST /api/v1/integrations first."
            ))
        })?;
        let creds = self.decrypt(&stored)?;
        Ok((stored, creds.token))
    }
}

/// A repository named by path (`owner/repo`, `group/sub/project`) or by URL.
enum RepoRef {
    Path(RepoPath),
    Url(RepoUrl),
}

impl RepoRef {
    fn parse(input: &str) -> EngineResult<Self> {
        let parsed = if input.contains("://") || input.contains(':') {
            RepoUrl::parse(input).map(RepoRef::Url)
        } else {
            RepoPath::parse(input).map(RepoRef::Path)
        };
        parsed.map_err(|e| invalid_input("repository", e))
    }

    fn github(&self) -> EngineResult<RepoPath> {
        match self {
            RepoRef::Path(p) => p.github_owner_repo().map(|_| p.clone()),
            RepoRef::Url(u) => u.github_repo(),
        }
        .map_err(|e| invalid_input("repository", e))
    }

    fn gitlab(&self, instance_url: &str) -> EngineResult<RepoPath> {
        match self {
            RepoRef::Path(p) => Ok(p.clone()),
            RepoRef::Url(u) => u
                .gitlab_project(instance_url)
                .map_err(|e| invalid_input("repository", e)),
        }
    }
}

fn parse_provider(name: &str) -> EngineResult<Provider> {
    Provider::parse(name).ok_or_else(|| {
        let shown: String = name.trim().chars().take(40).collect();
        EngineError::bad_request(format!(
            "Unsupported provider '{shown}'. Use 'github' or 'gitlab'."
        ))
    })
}

/// The trimmed token, or a 400 for an empty, oversized or non-printable one.
fn check_token_input(token: &str) -> EngineResult<&str> {
    let token = token.trim();
    if token.is_empty() {
        return Err(EngineError::bad_request("Token must not be empty."));
    }
    if token.len() > MAX_TOKEN_LEN {
        return Err(EngineError::bad_request("Token is too long."));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(EngineError::bad_request(
            "Token contains invalid characters (only printable ASCII without spaces is allowed).",
        ));
    }
    Ok(token)
}

fn required_field<'a>(name: &str, value: &'a str) -> EngineResult<&'a str> {
    let v = value.trim();
    if v.is_empty() {
        Err(EngineError::bad_request(format!(
            "'{name}' must not be empty."
        )))
    } else {
        Ok(v)
    }
}

/// `scopes` as stored: the original appends `||<url>` for GitLab instances other than gitlab.com.
fn encode_scopes(scopes: &str, gitlab_url: &str) -> String {
    if gitlab_url == GITLAB_COM {
        scopes.to_string()
    } else {
        format!("{scopes}{SCOPES_URL_SEPARATOR}{gitlab_url}")
    }
}

/// Splits stored `scopes` into the scopes and the GitLab URL suffix, if any.
fn split_scopes(raw: &str) -> (&str, Option<&str>) {
    match raw.split_once(SCOPES_URL_SEPARATOR) {
        Some((scopes, url)) => (scopes, Some(url).filter(|u| !u.is_empty())),
        None => (raw, None),
    }
}

/// The stored GitLab instance URL, re-validated: a tampered row must not redirect the token.
fn stored_gitlab_url(stored: &StoredRow) -> EngineResult<&str> {
    let url = stored.gitlab_url.as_deref().unwrap_or(GITLAB_COM);
    normalize_gitlab_url(url).map_err(|_| {
        EngineError::new(
            ErrorKind::Unprocessable,
            "The saved GitLab URL is not allowed (https:// is required). Reconnect the GitLab integration.",
        )
    })?;
    Ok(url)
}

fn validation_failed(e: ForgeError) -> EngineError {
    EngineError::new(
        ErrorKind::Unprocessable,
        format!("Token validation failed — check that the token is valid: {e}"),
    )
}

fn invalid_input(field: &str, e: ForgeError) -> EngineError {
    let reason = match e {
        ForgeError::InvalidUrl(reason) => reason,
        other => other.to_string(),
    };
    EngineError::bad_request(format!("Invalid {field}: {reason}"))
}

/// A forge call failure: the forge refusing the request's content is 422, a bad URL 400,
/// anything else (auth, rate limit, 5xx, network) 502.
fn forge_failure(prefix: String, e: ForgeError) -> EngineError {
    let kind = match e {
        ForgeError::InvalidUrl(_) => ErrorKind::BadRequest,
        ForgeError::Rejected { .. } => ErrorKind::Unprocessable,
        _ => ErrorKind::Upstream,
    };
    EngineError::new(kind, format!("{prefix}: {e}"))
}

fn crypto_error(provider: Provider, e: CryptoError) -> EngineError {
    match e {
        CryptoError::MissingKey => EngineError::internal(e.to_string()),
        other => {
            tracing::warn!(%provider, error = %other, "stored forge token cannot be decrypted");
            EngineError::new(
                ErrorKind::Unprocessable,
                format!(
                    "The saved {provider} token cannot be read (it was stored with a different ENCRYPTION_KEY or is corrupted). Reconnect the integration: save the token again."
                ),
            )
        }
    }
}

/// 2 = same host and port; 1 = same host of an ssh URL (its port says nothing about the
/// forge's web port; host-side git never uses ssh, so no token travels that way); 0 = another
/// host, or the same host on another port (another service: a token never goes there).
fn host_score(repo: &RepoUrl, base_url: &str) -> u8 {
    let Ok(base) = url::Url::parse(base_url) else {
        return 0;
    };
    let Some(host) = base.host_str() else {
        return 0;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if !host.eq_ignore_ascii_case(repo.host()) {
        return 0;
    }
    let repo_port = match repo.scheme() {
        "https" => Some(repo.port().unwrap_or(443)),
        "http" => Some(repo.port().unwrap_or(80)),
        _ => None,
    };
    match repo_port {
        Some(port) if Some(port) == base.port_or_known_default() => 2,
        Some(_) => 0,
        None => 1,
    }
}

fn github_host_score(repo: &RepoUrl, api_url: &str) -> u8 {
    // github.com's repositories go with the public API's tokens only: a GitHub Enterprise
    // server's token (LUCID_GITHUB_API_URL on another host) is never sent to github.com.
    if matches!(repo.host(), "github.com" | "www.github.com") {
        let public_api = url::Url::parse(api_url)
            .ok()
            .and_then(|u| {
                u.host_str()
                    .map(|h| h.eq_ignore_ascii_case("api.github.com"))
            })
            .unwrap_or(false);
        return if public_api { 2 } else { 0 };
    }
    let direct = host_score(repo, api_url);
    if direct > 0 {
        return direct;
    }
    // `https://api.example.com` serves repositories on `https://example.com`.
    match url::Url::parse(api_url) {
        Ok(mut u) => match u
            .host_str()
            .and_then(|h| h.strip_prefix("api."))
            .map(str::to_string)
        {
            Some(web) if u.set_host(Some(&web)).is_ok() => host_score(repo, u.as_str()),
            _ => 0,
        },
        Err(_) => 0,
    }
}

impl ForgeCredentials {
    /// Credentials for host-side git over HTTPS (token as the password).
    pub fn into_git_credentials(self) -> crate::git::GitCredentials {
        crate::git::GitCredentials {
            username: crate::git::TOKEN_ONLY_USERNAME.to_string(),
            token: self.token,
        }
    }

    /// The identity commits are made with: the forge account recorded at save time, with the
    /// forge's no-reply address.
    pub fn git_identity(&self) -> crate::git::GitIdentity {
        let user = self.username.clone().filter(|u| !u.is_empty());
        let name = user.clone().unwrap_or_else(|| "Lucid".to_string());
        let email = match (&self.provider, user) {
            (Provider::Github, Some(u)) => format!("{u}@users.noreply.github.com"),
            (Provider::Gitlab, Some(u)) => format!("{u}@users.noreply.gitlab.com"),
            _ => "lucid@localhost".to_string(),
        };
        crate::git::GitIdentity { name, email }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use async_trait::async_trait;
    use lucid_testkit::forge::{FakeFailure, FakeGithub, FakeGitlab};
    use serde_json::Value;

    use super::*;
    use crate::events::Event;
    use crate::store::{ChatMessage, ChatSession, NewChat, StoreError, StoreResult};

    const KEY: &str = "integration-test-encryption-key";
    const GH_TOKEN: &str = "ghp_fake-AliceTok-en012345-6789abcd-efghijkl-mn";
    const GL_TOKEN: &str = "glpat.fake.AliceGit.labToken.0123";

    /// An in-memory [`Store`] holding only integrations (the SQLite store lands separately).
    #[derive(Default)]
    struct MemoryStore {
        rows: Mutex<Vec<IntegrationRow>>,
    }

    impl MemoryStore {
        fn rows(&self) -> Vec<IntegrationRow> {
            self.rows.lock().unwrap().clone()
        }
        fn edit(&self, f: impl FnOnce(&mut Vec<IntegrationRow>)) {
            f(&mut self.rows.lock().unwrap());
        }
    }

    fn unsupported<T>() -> StoreResult<T> {
        Err(StoreError::Database(
            "chats are not part of the in-memory integrations store".into(),
        ))
    }

    #[async_trait]
    impl Store for MemoryStore {
        async fn create_chat(&self, _: &User, _: NewChat) -> StoreResult<ChatSession> {
            unsupported()
        }
        async fn list_chats(&self, _: &User, _: u32, _: u32) -> StoreResult<Vec<ChatSession>> {
            unsupported()
        }
        async fn get_chat(&self, _: &User, _: &str) -> StoreResult<Option<ChatSession>> {
            unsupported()
        }
        async fn chat_by_session(&self, _: &User, _: &str) -> StoreResult<Option<ChatSession>> {
            unsupported()
        }
        async fn chat_messages(&self, _: &User, _: &str) -> StoreResult<Vec<ChatMessage>> {
            unsupported()
        }
        async fn rename_chat(&self, _: &User, _: &str, _: &str) -> StoreResult<bool> {
            unsupported()
        }
        async fn delete_chat(&self, _: &User, _: &str) -> StoreResult<bool> {
            unsupported()
        }
        async fn set_chat_active(&self, _: &User, _: &str, _: bool) -> StoreResult<()> {
            unsupported()
        }
        async fn deactivate_all_chats(&self) -> StoreResult<u64> {
            unsupported()
        }
        async fn active_chats(&self) -> StoreResult<Vec<ChatSession>> {
            unsupported()
        }
        async fn append_events(&self, _: &User, _: &str, _: &[Event]) -> StoreResult<()> {
            unsupported()
        }
        async fn events_since(&self, _: &User, _: &str, _: u64, _: u32) -> StoreResult<Vec<Event>> {
            unsupported()
        }
        async fn last_seq(&self, _: &User, _: &str) -> StoreResult<u64> {
            unsupported()
        }
        async fn upsert_integration(
            &self,
            user: &User,
            row: IntegrationRow,
        ) -> StoreResult<String> {
            let mut rows = self.rows.lock().unwrap();
            match rows
                .iter_mut()
                .find(|r| r.user_id == user.id && r.provider == row.provider)
            {
                Some(existing) => {
                    let id = existing.id.clone();
                    *existing = IntegrationRow {
                        id: id.clone(),
                        created_at: existing.created_at,
                        ..row
                    };
                    Ok(id)
                }
                None => {
                    let id = row.id.clone();
                    rows.push(IntegrationRow {
                        user_id: user.id.clone(),
                        ..row
                    });
                    Ok(id)
                }
            }
        }
        async fn get_integration(
            &self,
            user: &User,
            provider: &str,
        ) -> StoreResult<Option<IntegrationRow>> {
            Ok(self
                .rows
                .lock()
                .unwrap()
                .iter()
                .find(|r| r.user_id == user.id && r.provider == provider)
                .cloned())
        }
        async fn list_integrations(&self, user: &User) -> StoreResult<Vec<IntegrationRow>> {
            Ok(self
                .rows
                .lock()
                .unwrap()
                .iter()
                .filter(|r| r.user_id == user.id)
                .cloned()
                .collect())
        }
        async fn delete_integration(&self, user: &User, provider: &str) -> StoreResult<bool> {
            let mut rows = self.rows.lock().unwrap();
            let before = rows.len();
            rows.retain(|r| !(r.user_id == user.id && r.provider == provider));
            Ok(rows.len() != before)
        }
        async fn ping(&self) -> StoreResult<()> {
            Ok(())
        }
    }

    /// A loopback URL nothing listens on: using it by mistake fails the test loudly.
    fn dead_url() -> String {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    }

    fn config(github: &str, gitlab: &str, key: Option<&str>) -> Config {
        let mut vars = HashMap::from([
            (
                "LUCID_DATA_DIR".to_string(),
                "/tmp/lucid-integrations-test".to_string(),
            ),
            ("LUCID_GITHUB_API_URL".to_string(), github.to_string()),
            ("LUCID_GITLAB_URL".to_string(), gitlab.to_string()),
        ]);
        if let Some(k) = key {
            vars.insert("ENCRYPTION_KEY".into(), k.into());
        }
        Config::from_map(&vars).unwrap()
    }

    struct Setup {
        store: Arc<MemoryStore>,
        svc: Integrations,
        gh: FakeGithub,
        gl: FakeGitlab,
    }

    async fn setup() -> Setup {
        let gh = FakeGithub::start(GH_TOKEN, 3).await;
        let gl = FakeGitlab::start(GL_TOKEN, 3).await;
        let store = Arc::new(MemoryStore::default());
        // The default GitLab URL points nowhere: self-hosted calls must use the saved URL.
        let svc = Integrations::new(
            store.clone(),
            &config(&gh.base_url(), &dead_url(), Some(KEY)),
        );
        Setup { store, svc, gh, gl }
    }

    fn alice() -> User {
        User::with_id("user-alice")
    }

    fn bob() -> User {
        User::with_id("user-bob")
    }

    fn save_req(provider: &str, token: &str, gitlab_url: Option<String>) -> SaveIntegrationRequest {
        SaveIntegrationRequest {
            provider: provider.into(),
            token: token.into(),
            gitlab_url,
        }
    }

    fn pr_req(repo_url: &str, branch: &str) -> CreatePrRequest {
        serde_json::from_value(serde_json::json!({
            "repoUrl": repo_url, "branch": branch, "title": "Lucid: fix the bug",
        }))
        .unwrap()
    }

    async fn save_github(s: &Setup, user: &User) {
        s.svc
            .save(user, save_req("github", GH_TOKEN, None))
            .await
            .unwrap();
    }

    async fn save_gitlab(s: &Setup, user: &User) {
        s.svc
            .save(user, save_req("gitlab", GL_TOKEN, Some(s.gl.base_url())))
            .await
            .unwrap();
    }

    fn assert_no_token(text: &str) {
        for secret in [GH_TOKEN, GL_TOKEN] {
            assert!(!text.contains(secret), "token leaked: {text}");
        }
    }

    fn assert_err(err: &EngineError, kind: ErrorKind, message: &str) {
        assert_eq!(err.kind, kind, "{}", err.message);
        assert_eq!(err.message, message);
        assert_no_token(&err.message);
    }

    #[tokio::test]
    async fn saving_a_github_token_validates_encrypts_and_stores_it() {
        let s = setup().await;
        let resp = s
            .svc
            .save(
                &alice(),
                save_req(" GitHub ", &format!("  {GH_TOKEN}\n"), None),
            )
            .await
            .unwrap();
        assert_eq!(
            serde_json::to_value(&resp).unwrap(),
            serde_json::json!({
                "status": "connected", "provider": "github",
                "username": "octocat", "message": "Connected as octocat",
            })
        );
        let reqs = s.gh.requests();
        assert_eq!(reqs.len(), 1);
        assert_eq!(reqs[0].path, "/user");
        assert_eq!(
            reqs[0].header("authorization"),
            Some(format!("Bearer {GH_TOKEN}").as_str())
        );

        let rows = s.store.rows();
        assert_eq!(rows.len(), 1);
        let row = &rows[0];
        assert_eq!(row.user_id, "user-alice");
        assert_eq!(row.provider, "GITHUB");
        assert_eq!(row.label.as_deref(), Some("octocat (github)"));
        assert_eq!(row.external_username.as_deref(), Some("octocat"));
        assert_eq!(row.scopes.as_deref(), Some("repo,workflow"));
        assert_eq!(row.iv.len(), 32);
        assert_no_token(&format!("{row:?}"));
        let plain = TokenCipher::new(Some(KEY))
            .decrypt(&row.access_token_encrypted, &row.iv)
            .unwrap();
        assert_eq!(plain, GH_TOKEN);

        let list = s.svc.list(&alice()).await.unwrap();
        let json = serde_json::to_value(IntegrationsList {
            integrations: list.clone(),
        })
        .unwrap();
        assert_no_token(&json.to_string());
        let item = &json["integrations"][0];
        let mut keys: Vec<_> = item.as_object().unwrap().keys().cloned().collect();
        keys.sort();
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
            ]
        );
        assert_eq!(item["provider"], "github");
        assert_eq!(item["scopes"], "repo,workflow");
        assert_eq!(item["connected"], true);
    }

    #[tokio::test]
    async fn saving_again_replaces_the_token() {
        let s = setup().await;
        save_github(&s, &alice()).await;
        let second = "ghp_fake-SecondTo-ken00000-00000000-00000000-0000";
        s.gh.add_user(second, "octo-second");
        let resp = s
            .svc
            .save(&alice(), save_req("github", second, None))
            .await
            .unwrap();
        assert_eq!(resp.username, "octo-second");
        let rows = s.store.rows();
        assert_eq!(rows.len(), 1);
        let creds = s
            .svc
            .credentials(&alice(), "github")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(creds.token, second);
        assert_eq!(creds.username.as_deref(), Some("octo-second"));
    }

    #[tokio::test]
    async fn bad_save_requests_are_refused_before_any_forge_call() {
        let s = setup().await;
        let err = s
            .svc
            .save(&alice(), save_req("bitbucket", GH_TOKEN, None))
            .await
            .unwrap_err();
        assert_err(
            &err,
            ErrorKind::BadRequest,
            "Unsupported provider 'bitbucket'. Use 'github' or 'gitlab'.",
        );
        for bad in ["", "   ", "tok en", "tok\u{e9}n"] {
            let err = s
                .svc
                .save(&alice(), save_req("github", bad, None))
                .await
                .unwrap_err();
            assert_eq!(err.kind, ErrorKind::BadRequest, "{bad:?}");
        }
        let err = s
            .svc
            .save(
                &alice(),
                save_req("gitlab", GL_TOKEN, Some("http://gitlab.example.com".into())),
            )
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::BadRequest);
        assert!(
            err.message.starts_with("Invalid gitlabUrl:"),
            "{}",
            err.message
        );
        assert!(err.message.contains("https://"));
        let err = s
            .svc
            .save(
                &alice(),
                save_req(
                    "gitlab",
                    GL_TOKEN,
                    Some("https://u:p@gitlab.example.com".into()),
                ),
            )
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::BadRequest);

        assert!(s.gh.requests().is_empty());
        assert!(s.gl.requests().is_empty());
        assert!(s.store.rows().is_empty());
    }

    #[tokio::test]
    async fn a_rejected_token_is_a_422_without_the_token_and_nothing_is_stored() {
        let s = setup().await;
        let wrong = "ghp_fake-WrongWro-ngWrong0-00000000-00000000-000";
        let err = s
            .svc
            .save(&alice(), save_req("github", wrong, None))
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Unprocessable);
        assert_eq!(
            err.message,
            "Token validation failed — check that the token is valid: the forge rejected the token (HTTP 401): Bad credentials"
        );
        assert!(!err.message.contains(wrong));

        let err = s
            .svc
            .save(
                &alice(),
                save_req("gitlab", "glpat-wrong-token-0000", Some(s.gl.base_url())),
            )
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Unprocessable);
        assert!(
            err.message.ends_with("(HTTP 401): 401 Unauthorized"),
            "{}",
            err.message
        );
        assert!(s.store.rows().is_empty());
    }

    #[tokio::test]
    async fn a_missing_encryption_key_fails_clearly_before_the_token_is_sent() {
        let s = setup().await;
        let svc = Integrations::new(
            s.store.clone(),
            &config(&s.gh.base_url(), &dead_url(), None),
        );
        let err = svc
            .save(&alice(), save_req("github", GH_TOKEN, None))
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Internal);
        assert!(err.message.contains("ENCRYPTION_KEY"), "{}", err.message);
        assert!(s.gh.requests().is_empty());
        assert!(s.store.rows().is_empty());
    }

    #[tokio::test]
    async fn self_hosted_gitlab_url_is_stored_apart_from_the_listed_scopes() {
        let s = setup().await;
        // Trailing slash on save: stripped, so no `//api/v4`.
        let resp = s
            .svc
            .save(
                &alice(),
                save_req("GITLAB", GL_TOKEN, Some(format!("{}/", s.gl.base_url()))),
            )
            .await
            .unwrap();
        assert_eq!(resp.provider, "gitlab");
        assert_eq!(resp.username, "gitlab-user");
        let reqs = s.gl.requests();
        assert_eq!(reqs[0].path, "/api/v4/user");
        assert_eq!(reqs[0].header("private-token"), Some(GL_TOKEN));

        let row = &s.store.rows()[0];
        assert_eq!(row.provider, "GITLAB");
        assert_eq!(
            row.scopes.as_deref(),
            Some(format!("api,read_repository,write_repository||{}", s.gl.base_url()).as_str())
        );
        let list = s.svc.list(&alice()).await.unwrap();
        assert_eq!(
            list[0].scopes.as_deref(),
            Some("api,read_repository,write_repository")
        );
        assert_eq!(
            list[0].gitlab_url.as_deref(),
            Some(s.gl.base_url().as_str())
        );
        assert_eq!(list[0].provider, "gitlab");
    }

    #[tokio::test]
    async fn gitlab_rows_without_a_url_suffix_mean_gitlab_com() {
        let s = setup().await;
        save_gitlab(&s, &alice()).await;
        s.store
            .edit(|rows| rows[0].scopes = Some(GITLAB_SCOPES.into()));
        let creds = s
            .svc
            .credentials(&alice(), "gitlab")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(creds.base_url, "https://gitlab.com");
        let list = s.svc.list(&alice()).await.unwrap();
        assert_eq!(list[0].gitlab_url.as_deref(), Some("https://gitlab.com"));
    }

    #[tokio::test]
    async fn repos_and_branches_use_the_stored_token_and_gitlab_instance() {
        let s = setup().await;
        save_github(&s, &alice()).await;
        save_gitlab(&s, &alice()).await;

        let gh = s.svc.repos(&alice(), "github").await.unwrap();
        assert_eq!(gh.provider, "github");
        assert_eq!(gh.count, 3);
        assert_eq!(gh.repos[0].full_name, "octocat/repo-001");
        let json = serde_json::to_value(&gh).unwrap();
        assert_eq!(json["count"], 3);
        assert!(json["repos"][0]["cloneUrl"].is_string());

        let gl = s.svc.repos(&alice(), "GitLab").await.unwrap();
        assert_eq!(gl.provider, "gitlab");
        assert_eq!(gl.count, 3);
        assert_eq!(gl.repos[0].full_name, "lucid-group/backend/project-001");
        let last = s.gl.requests().pop().unwrap();
        assert_eq!(last.path, "/api/v4/projects");
        assert_eq!(last.header("private-token"), Some(GL_TOKEN));

        let b = s
            .svc
            .branches(&alice(), "github", "octocat/repo-002")
            .await
            .unwrap();
        assert_eq!((b.full_name.as_str(), b.count), ("octocat/repo-002", 3));
        assert_eq!(b.branches[0].name, "main");
        let b = s
            .svc
            .branches(
                &alice(),
                "github",
                "https://github.com/octocat/repo-001.git",
            )
            .await
            .unwrap();
        assert_eq!(b.full_name, "octocat/repo-001");
        let b = s
            .svc
            .branches(&alice(), "gitlab", "lucid-group/backend/project-003")
            .await
            .unwrap();
        assert_eq!(b.count, 3);
        let url = format!("{}/lucid-group/backend/project-002.git", s.gl.base_url());
        let b = s.svc.branches(&alice(), "gitlab", &url).await.unwrap();
        assert_eq!(b.full_name, "lucid-group/backend/project-002");
        assert_eq!(
            s.gl.requests().pop().unwrap().path,
            "/api/v4/projects/lucid-group%2Fbackend%2Fproject-002/repository/branches"
        );

        let err = s
            .svc
            .branches(&alice(), "github", "a/b/c")
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::BadRequest);
        let err = s
            .svc
            .branches(&alice(), "github", "not a repo")
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::BadRequest);
        let err = s
            .svc
            .branches(&alice(), "github", "octocat/missing")
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Upstream);
        assert!(err
            .message
            .starts_with("Failed to fetch branches from github: not found"));
    }

    #[tokio::test]
    async fn missing_integrations_are_404_with_the_original_text() {
        let s = setup().await;
        let err = s.svc.repos(&alice(), "github").await.unwrap_err();
        assert_err(
            &err,
            ErrorKind::NotFound,
            "No github token saved. Add one via POST /api/v1/integrations first.",
        );
        let err = s
            .svc
            .create_pr(&alice(), "gitlab", pr_req("https://gitlab.com/a/b", "x"))
            .await
            .unwrap_err();
        assert_err(
            &err,
            ErrorKind::NotFound,
            "No gitlab token saved. Add one via POST /api/v1/integrations first.",
        );
        let err = s.svc.delete(&alice(), "github").await.unwrap_err();
        assert_err(
            &err,
            ErrorKind::NotFound,
            "No github integration found for this user.",
        );
        let err = s.svc.repos(&alice(), "svn").await.unwrap_err();
        assert_err(
            &err,
            ErrorKind::BadRequest,
            "Unsupported provider 'svn'. Use 'github' or 'gitlab'.",
        );
        assert!(s
            .svc
            .credentials(&alice(), "github")
            .await
            .unwrap()
            .is_none());
    }

    #[tokio::test]
    async fn forge_failures_are_502_with_a_summary() {
        let s = setup().await;
        save_github(&s, &alice()).await;
        s.gh.set_failure(Some(FakeFailure::Status(503)));
        let err = s.svc.repos(&alice(), "github").await.unwrap_err();
        assert_err(
            &err,
            ErrorKind::Upstream,
            "Failed to fetch repos from github: the forge answered HTTP 503: Service Unavailable",
        );
        s.gh.set_failure(Some(FakeFailure::RateLimit));
        let err = s.svc.repos(&alice(), "github").await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Upstream);
        assert!(err.message.contains("rate limited"), "{}", err.message);
        s.gh.set_failure(Some(FakeFailure::Status(500)));
        let err = s
            .svc
            .create_pr(
                &alice(),
                "github",
                pr_req("https://github.com/octocat/repo-001", "fix"),
            )
            .await
            .unwrap_err();
        assert_err(
            &err,
            ErrorKind::Upstream,
            "Failed to create PR: the forge answered HTTP 500: Internal Server Error",
        );
    }

    #[tokio::test]
    async fn github_pull_requests_from_https_and_ssh_urls() {
        let s = setup().await;
        save_github(&s, &alice()).await;
        let mut req = pr_req("git@github.com:octocat/repo-001.git", "lucid/fix-bug");
        req.body = "Fixes #1".into();
        req.session_id = Some("session-1".into());
        let resp = s.svc.create_pr(&alice(), "github", req).await.unwrap();
        assert_eq!(
            serde_json::to_value(&resp).unwrap(),
            serde_json::json!({
                "status": "created", "provider": "github",
                "prUrl": "https://github.com/octocat/repo-001/pull/1",
                "prNumber": 1, "title": "Lucid: fix the bug", "state": "open",
            })
        );
        let post = s.gh.requests().pop().unwrap();
        assert_eq!(post.path, "/repos/octocat/repo-001/pulls");
        assert_eq!(
            post.body,
            Some(serde_json::json!({
                "title": "Lucid: fix the bug", "body": "Fixes #1",
                "head": "lucid/fix-bug", "base": "main",
            }))
        );
        let resp = s
            .svc
            .create_pr(
                &alice(),
                "github",
                pr_req("https://github.com/octocat/repo-002", "feat"),
            )
            .await
            .unwrap();
        assert_eq!(resp.pr_number, 1);

        // The same head again: the forge refuses the content → 422, not 502.
        let err = s
            .svc
            .create_pr(
                &alice(),
                "github",
                pr_req("https://github.com/octocat/repo-001.git", "lucid/fix-bug"),
            )
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Unprocessable);
        assert!(err.message.starts_with("Failed to create PR: "));
        assert!(err.message.contains("already exists"));
    }

    #[tokio::test]
    async fn unparsable_repo_urls_and_empty_fields_are_400_without_a_forge_call() {
        let s = setup().await;
        save_github(&s, &alice()).await;
        s.gh.clear_requests();
        for url in [
            "",
            "not a url",
            "https://github.com/only-owner",
            "ftp://github.com/o/r",
        ] {
            let err = s
                .svc
                .create_pr(&alice(), "github", pr_req(url, "fix"))
                .await
                .unwrap_err();
            assert_eq!(err.kind, ErrorKind::BadRequest, "{url}");
            assert!(
                err.message.starts_with("Invalid repoUrl:"),
                "{}",
                err.message
            );
        }
        let err = s
            .svc
            .create_pr(&alice(), "github", pr_req("https://github.com/o/r", "  "))
            .await
            .unwrap_err();
        assert_err(&err, ErrorKind::BadRequest, "'branch' must not be empty.");
        let mut req = pr_req("https://github.com/o/r", "fix");
        req.title = String::new();
        let err = s.svc.create_pr(&alice(), "github", req).await.unwrap_err();
        assert_err(&err, ErrorKind::BadRequest, "'title' must not be empty.");
        assert!(s.gh.requests().is_empty());
    }

    #[tokio::test]
    async fn merge_requests_go_to_the_stored_instance_not_the_request_url() {
        let s = setup().await;
        save_gitlab(&s, &alice()).await;
        let other = FakeGitlab::start(GL_TOKEN, 3).await;
        let url = format!("{}/lucid-group/backend/project-001.git", s.gl.base_url());
        let mut req = pr_req(&url, "lucid/feature");
        req.base_branch = "develop".into();
        req.gitlab_url = Some(other.base_url());
        let resp = s.svc.create_pr(&alice(), "gitlab", req).await.unwrap();
        assert_eq!(resp.provider, "gitlab");
        assert_eq!(resp.pr_number, 1);
        assert_eq!(resp.state, "opened");
        assert_eq!(
            resp.pr_url,
            format!(
                "{}/lucid-group/backend/project-001/-/merge_requests/1",
                s.gl.base_url()
            )
        );
        assert!(
            other.requests().is_empty(),
            "token sent to the request's gitlabUrl"
        );
        let post = s.gl.requests().pop().unwrap();
        assert_eq!(
            post.path,
            "/api/v4/projects/lucid-group%2Fbackend%2Fproject-001/merge_requests"
        );
        assert_eq!(
            post.body,
            Some(serde_json::json!({
                "title": "Lucid: fix the bug", "description": "",
                "source_branch": "lucid/feature", "target_branch": "develop",
            }))
        );
    }

    #[tokio::test]
    async fn gitlab_under_a_sub_path_derives_the_project_from_the_url() {
        let s = setup().await;
        let sub = FakeGitlab::start_at(GL_TOKEN, 2, "/gitlab").await;
        s.svc
            .save(&alice(), save_req("gitlab", GL_TOKEN, Some(sub.base_url())))
            .await
            .unwrap();
        let url = format!("{}/lucid-group/backend/project-002", sub.base_url());
        let resp = s
            .svc
            .create_pr(&alice(), "gitlab", pr_req(&url, "fix"))
            .await
            .unwrap();
        assert_eq!(resp.pr_number, 1);
        assert_eq!(
            sub.requests().pop().unwrap().path,
            "/gitlab/api/v4/projects/lucid-group%2Fbackend%2Fproject-002/merge_requests"
        );
    }

    #[tokio::test]
    async fn a_tampered_insecure_gitlab_url_is_never_used() {
        let s = setup().await;
        save_gitlab(&s, &alice()).await;
        s.store.edit(|rows| {
            rows[0].scopes = Some(format!("{GITLAB_SCOPES}||http://gitlab.example.com"));
        });
        let err = s.svc.repos(&alice(), "gitlab").await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Unprocessable);
        assert!(err.message.contains("Reconnect"), "{}", err.message);
        assert!(s.svc.credentials(&alice(), "gitlab").await.is_err());
    }

    #[tokio::test]
    async fn users_cannot_see_use_or_delete_each_others_integrations() {
        let s = setup().await;
        save_github(&s, &alice()).await;
        save_gitlab(&s, &alice()).await;

        assert!(s.svc.list(&bob()).await.unwrap().is_empty());
        let err = s.svc.repos(&bob(), "github").await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::NotFound);
        let err = s
            .svc
            .branches(&bob(), "gitlab", "lucid-group/backend/project-001")
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::NotFound);
        let err = s
            .svc
            .create_pr(
                &bob(),
                "github",
                pr_req("https://github.com/octocat/repo-001", "x"),
            )
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::NotFound);
        let err = s.svc.delete(&bob(), "github").await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::NotFound);
        assert!(s.svc.credentials(&bob(), "github").await.unwrap().is_none());
        assert!(s
            .svc
            .credentials_for_repo_url(&bob(), "https://github.com/octocat/repo-001.git")
            .await
            .unwrap()
            .is_none());

        assert_eq!(s.svc.list(&alice()).await.unwrap().len(), 2);
        assert!(s.gh.created().is_empty());

        // A store that returned another user's row is not trusted.
        s.store.edit(|rows| {
            for r in rows.iter_mut() {
                if r.provider == "GITHUB" {
                    let mut copy = r.clone();
                    copy.user_id = "user-bob".into();
                    copy.id = "bob-row".into();
                    *r = copy;
                }
            }
        });
        assert!(s
            .svc
            .credentials(&alice(), "github")
            .await
            .unwrap()
            .is_none());
    }

    #[tokio::test]
    async fn delete_returns_the_lowercase_provider_and_removes_the_row() {
        let s = setup().await;
        save_github(&s, &alice()).await;
        save_gitlab(&s, &alice()).await;
        assert_eq!(s.svc.delete(&alice(), " GITHUB ").await.unwrap(), "github");
        let list = s.svc.list(&alice()).await.unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].provider, "gitlab");
        let err = s.svc.delete(&alice(), "github").await.unwrap_err();
        assert_eq!(err.message, "No github integration found for this user.");
        let err = s.svc.delete(&alice(), "gitea").await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::BadRequest);
        assert_eq!(
            serde_json::to_value(DeleteIntegrationResponse::new("github")).unwrap(),
            serde_json::json!({"status": "disconnected", "provider": "github"})
        );
    }

    #[tokio::test]
    async fn unreadable_stored_tokens_ask_to_reconnect_and_never_reach_the_forge() {
        let s = setup().await;
        save_github(&s, &alice()).await;
        s.gh.clear_requests();
        let good = s.store.rows()[0].clone();

        // A different ENCRYPTION_KEY over the same rows.
        let other_key = Integrations::new(
            s.store.clone(),
            &config(&s.gh.base_url(), &dead_url(), Some("some-other-key")),
        );
        let err = other_key.repos(&alice(), "github").await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Unprocessable);
        assert_eq!(
            err.message,
            "The saved github token cannot be read (it was stored with a different ENCRYPTION_KEY or is corrupted). Reconnect the integration: save the token again."
        );

        for (ct, iv) in [
            ("zz", good.iv.as_str()),
            (good.access_token_encrypted.as_str(), "00"),
            (
                &good.access_token_encrypted[..good.access_token_encrypted.len() - 2],
                good.iv.as_str(),
            ),
            ("", ""),
        ] {
            s.store.edit(|rows| {
                rows[0].access_token_encrypted = ct.to_string();
                rows[0].iv = iv.to_string();
            });
            let err = s.svc.repos(&alice(), "github").await.unwrap_err();
            assert_eq!(err.kind, ErrorKind::Unprocessable);
            assert!(err.message.contains("Reconnect"));
            let err = s.svc.credentials(&alice(), "github").await.unwrap_err();
            assert_eq!(err.kind, ErrorKind::Unprocessable);
        }
        assert!(s.gh.requests().is_empty());

        // Without any key: the configuration problem is named.
        let no_key = Integrations::new(
            s.store.clone(),
            &config(&s.gh.base_url(), &dead_url(), None),
        );
        let err = no_key.credentials(&alice(), "github").await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Internal);
        assert!(err.message.contains("ENCRYPTION_KEY"));
    }

    #[tokio::test]
    async fn credentials_match_repository_hosts() {
        let s = setup().await;
        save_github(&s, &alice()).await;
        save_gitlab(&s, &alice()).await;

        // The GitHub of this engine is not github.com (LUCID_GITHUB_API_URL is the fake on
        // 127.0.0.1, as a GitHub Enterprise server would be): its token never goes there.
        assert!(s
            .svc
            .credentials_for_repo_url(&alice(), "git@github.com:octocat/repo-001.git")
            .await
            .unwrap()
            .is_none());
        let url = format!("{}/octocat/repo-001.git", s.gh.base_url());
        let gh = s
            .svc
            .credentials_for_repo_url(&alice(), &url)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(gh.provider, Provider::Github);
        assert_eq!(gh.token, GH_TOKEN);
        assert_eq!(gh.base_url, s.gh.base_url());
        assert_no_token(&format!("{gh:?}"));

        let url = format!("{}/lucid-group/backend/project-001.git", s.gl.base_url());
        let gl = s
            .svc
            .credentials_for_repo_url(&alice(), &url)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(gl.provider, Provider::Gitlab);
        assert_eq!(gl.token, GL_TOKEN);
        assert_eq!(gl.base_url, s.gl.base_url());
        assert_eq!(gl.username.as_deref(), Some("gitlab-user"));

        // The GitHub API fake is also on 127.0.0.1: its port decides.
        let url = format!("{}/octocat/repo-001.git", s.gh.base_url());
        let by_port = s
            .svc
            .credentials_for_repo_url(&alice(), &url)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(by_port.provider, Provider::Github);

        assert!(s
            .svc
            .credentials_for_repo_url(&alice(), "https://bitbucket.org/a/b.git")
            .await
            .unwrap()
            .is_none());
        let err = s
            .svc
            .credentials_for_repo_url(&alice(), "nonsense")
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::BadRequest);
    }

    #[test]
    fn api_hosts_map_to_web_hosts() {
        let repo = RepoUrl::parse("https://ghe.example.com/team/app.git").unwrap();
        assert_eq!(github_host_score(&repo, "https://api.ghe.example.com"), 2);
        assert_eq!(
            github_host_score(&repo, "https://ghe.example.com/api/v3"),
            2
        );
        assert_eq!(github_host_score(&repo, "https://api.github.com"), 0);
        // A GitHub Enterprise token never goes to github.com.
        let public = RepoUrl::parse("https://github.com/team/app.git").unwrap();
        assert_eq!(github_host_score(&public, "https://api.github.com"), 2);
        assert_eq!(github_host_score(&public, "https://api.ghe.example.com"), 0);
        assert_eq!(
            github_host_score(&public, "https://ghe.example.com/api/v3"),
            0
        );
        let ssh_public = RepoUrl::parse("git@github.com:team/app.git").unwrap();
        assert_eq!(github_host_score(&ssh_public, "http://127.0.0.1:9/api"), 0);
        let ssh = RepoUrl::parse("git@ghe.example.com:team/app.git").unwrap();
        assert_eq!(github_host_score(&ssh, "https://ghe.example.com/api/v3"), 1);
        // The same host on another port is another service: no match.
        let other_port = RepoUrl::parse("https://ghe.example.com:8443/team/app.git").unwrap();
        assert_eq!(
            github_host_score(&other_port, "https://ghe.example.com/api/v3"),
            0
        );
        let local = RepoUrl::parse("http://127.0.0.1:9000/team/app.git").unwrap();
        assert_eq!(host_score(&local, "http://127.0.0.1:9001/gitlab"), 0);
        assert_eq!(host_score(&local, "http://127.0.0.1:9000/gitlab"), 2);
        let default_port = RepoUrl::parse("https://gitlab.example.com:443/g/p").unwrap();
        assert_eq!(host_score(&default_port, "https://gitlab.example.com"), 2);
    }

    #[test]
    fn request_types_follow_the_wire_contract() {
        let req: CreatePrRequest = serde_json::from_value(serde_json::json!({
            "repoUrl": "https://github.com/o/r", "branch": "b", "title": "t",
        }))
        .unwrap();
        assert_eq!(req.base_branch, "main");
        assert_eq!(req.body, "");
        assert_eq!(req.gitlab_url, None);
        assert_eq!(req.session_id, None);
        let req: SaveIntegrationRequest = serde_json::from_value(serde_json::json!({
            "provider": "gitlab", "token": GL_TOKEN, "gitlabUrl": "https://gitlab.example.com",
        }))
        .unwrap();
        assert_eq!(
            req.gitlab_url.as_deref(),
            Some("https://gitlab.example.com")
        );
        assert_no_token(&format!("{req:?}"));
        let missing: Result<CreatePrRequest, _> =
            serde_json::from_value(serde_json::json!({"repoUrl": "x"}));
        assert!(missing.is_err());
        let v: Value = serde_json::to_value(IntegrationInfo {
            id: "1".into(),
            provider: "github".into(),
            label: None,
            external_username: None,
            scopes: None,
            created_at: Utc::now(),
            connected: true,
            gitlab_url: None,
        })
        .unwrap();
        assert!(v.get("gitlabUrl").is_none());
    }
}
