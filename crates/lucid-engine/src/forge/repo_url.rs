//! Parsing of repository URLs and repository paths.
//!
//! Accepted URL forms: `https://host[:port]/owner/repo[.git][/...]` (also `http://`),
//! `ssh://[user@]host[:port]/owner/repo[.git]` and the scp-like `[user@]host:owner/repo[.git]`.
//! GitLab paths may have nested groups (`group/sub/project`) and web URLs may carry a
//! `/-/...` suffix (`/-/tree/main`, `/-/merge_requests/1`). Error messages never echo the
//! input, which may carry credentials (`https://user:token@host/...`).

use url::Url;

use super::ForgeError;

const URL_FORMS: &str = "expected https://host/owner/repo(.git) or git@host:owner/repo.git";

/// A validated repository path: `owner/repo` on GitHub, `group[/subgroup…]/project` on GitLab.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RepoPath {
    segments: Vec<String>,
}

impl RepoPath {
    /// Parses `owner/repo` or `group/sub/project` (surrounding slashes and a trailing `.git`
    /// are ignored).
    pub fn parse(full_name: &str) -> Result<Self, ForgeError> {
        let segments: Vec<String> = full_name
            .trim()
            .trim_matches('/')
            .split('/')
            .map(str::to_string)
            .collect();
        Self::from_segments(segments)
    }

    fn from_segments(mut segments: Vec<String>) -> Result<Self, ForgeError> {
        if let Some(last) = segments.last_mut() {
            if let Some(stripped) = last.strip_suffix(".git") {
                *last = stripped.to_string();
            }
        }
        if segments.len() < 2 {
            return Err(ForgeError::InvalidUrl(
                "a repository path needs an owner and a name (owner/repo)".into(),
            ));
        }
        if segments.len() > 20 || !segments.iter().all(|s| valid_segment(s)) {
            return Err(ForgeError::InvalidUrl(
                "a repository path may only contain letters, digits, '.', '-' and '_' separated by '/'"
                    .into(),
            ));
        }
        Ok(Self { segments })
    }

    pub fn segments(&self) -> &[String] {
        &self.segments
    }

    /// `owner/repo` or `group/sub/project`.
    pub fn full_name(&self) -> String {
        self.segments.join("/")
    }

    /// The GitLab project id form: the full path with `/` encoded as `%2F`.
    pub fn gitlab_id(&self) -> String {
        self.segments.join("%2F")
    }

    /// `(owner, repo)`; GitHub repositories have exactly two segments.
    pub fn github_owner_repo(&self) -> Result<(&str, &str), ForgeError> {
        match self.segments.as_slice() {
            [owner, repo] => Ok((owner, repo)),
            _ => Err(ForgeError::InvalidUrl(
                "a GitHub repository is owner/repo".into(),
            )),
        }
    }
}

impl std::fmt::Display for RepoPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.full_name())
    }
}

fn valid_segment(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && s != "."
        && s != ".."
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// A repository URL split into host and path segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoUrl {
    /// `https`, `http` or `ssh` (scp-like URLs are `ssh`).
    scheme: String,
    /// Lower-case host name or IP literal (IPv6 without brackets).
    host: String,
    port: Option<u16>,
    /// Path segments, without empty ones.
    segments: Vec<String>,
}

impl RepoUrl {
    pub fn parse(input: &str) -> Result<Self, ForgeError> {
        let input = input.trim();
        if input.is_empty() {
            return Err(ForgeError::InvalidUrl(format!(
                "repository URL is empty ({URL_FORMS})"
            )));
        }
        if input.contains("://") {
            let url = Url::parse(input).map_err(|_| {
                ForgeError::InvalidUrl(format!("unparsable repository URL ({URL_FORMS})"))
            })?;
            let scheme = url.scheme().to_ascii_lowercase();
            if !matches!(scheme.as_str(), "https" | "http" | "ssh") {
                return Err(ForgeError::InvalidUrl(format!(
                    "unsupported repository URL scheme ({URL_FORMS})"
                )));
            }
            let host = url
                .host_str()
                .filter(|h| !h.is_empty())
                .ok_or_else(|| {
                    ForgeError::InvalidUrl(format!("repository URL has no host ({URL_FORMS})"))
                })?
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_ascii_lowercase();
            let segments = url
                .path_segments()
                .map(|s| s.filter(|p| !p.is_empty()).map(str::to_string).collect())
                .unwrap_or_default();
            return Ok(Self {
                scheme,
                host,
                port: url.port(),
                segments,
            });
        }
        // scp-like: [user@]host:path
        let (host_part, path) = input.split_once(':').ok_or_else(|| {
            ForgeError::InvalidUrl(format!("unrecognised repository URL ({URL_FORMS})"))
        })?;
        let host = host_part.rsplit('@').next().unwrap_or_default();
        if host.is_empty()
            || host.contains('/')
            || !host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.'))
        {
            return Err(ForgeError::InvalidUrl(format!(
                "unrecognised repository URL ({URL_FORMS})"
            )));
        }
        let path = path.split(['?', '#']).next().unwrap_or_default();
        let segments = path
            .split('/')
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .collect();
        Ok(Self {
            scheme: "ssh".into(),
            host: host.to_ascii_lowercase(),
            port: None,
            segments,
        })
    }

    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    /// The explicit port of an http(s)/ssh URL, if any.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// The GitHub `owner/repo`: the first two path segments (web URLs like
    /// `/owner/repo/tree/main` are accepted).
    pub fn github_repo(&self) -> Result<RepoPath, ForgeError> {
        if self.segments.len() < 2 {
            return Err(ForgeError::InvalidUrl(format!(
                "repository URL has no owner/repo path ({URL_FORMS})"
            )));
        }
        RepoPath::from_segments(self.segments[..2].to_vec())
    }

    /// The GitLab project path. When the URL is on the instance `instance_url` and that
    /// instance lives under a sub-path (`https://host/gitlab`), the sub-path is removed; a web
    /// URL's `/-/...` suffix is dropped.
    pub fn gitlab_project(&self, instance_url: &str) -> Result<RepoPath, ForgeError> {
        let mut segments: &[String] = &self.segments;
        if let Ok(instance) = Url::parse(instance_url) {
            let same_host = instance.host_str().is_some_and(|h| {
                h.trim_start_matches('[')
                    .trim_end_matches(']')
                    .eq_ignore_ascii_case(&self.host)
            });
            if same_host {
                let prefix: Vec<&str> = instance
                    .path_segments()
                    .map(|s| s.filter(|p| !p.is_empty()).collect())
                    .unwrap_or_default();
                if !prefix.is_empty()
                    && segments.len() > prefix.len()
                    && segments.iter().zip(&prefix).all(|(a, b)| a == b)
                {
                    segments = &segments[prefix.len()..];
                }
            }
        }
        let end = segments
            .iter()
            .position(|s| s == "-")
            .unwrap_or(segments.len());
        if end < 2 {
            return Err(ForgeError::InvalidUrl(format!(
                "repository URL has no group/project path ({URL_FORMS})"
            )));
        }
        RepoPath::from_segments(segments[..end].to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gh(url: &str) -> Result<String, ForgeError> {
        RepoUrl::parse(url)?.github_repo().map(|p| p.full_name())
    }

    fn gl(url: &str, instance: &str) -> Result<String, ForgeError> {
        RepoUrl::parse(url)?
            .gitlab_project(instance)
            .map(|p| p.full_name())
    }

    #[test]
    fn github_url_forms() {
        for url in [
            "https://github.com/octocat/hello-world",
            "https://github.com/octocat/hello-world.git",
            "https://github.com/octocat/hello-world/",
            "https://github.com/octocat/hello-world/tree/main/src",
            "http://127.0.0.1:9000/octocat/hello-world.git",
            "git@github.com:octocat/hello-world.git",
            "git@github.com:octocat/hello-world",
            "ssh://git@github.com/octocat/hello-world.git",
            "ssh://git@github.com:2222/octocat/hello-world.git",
            "https://x-access-token:secret@github.com/octocat/hello-world.git",
            "  https://github.com/octocat/hello-world?tab=readme#top  ",
        ] {
            assert_eq!(gh(url).unwrap(), "octocat/hello-world", "{url}");
        }
        let parsed = RepoUrl::parse("git@GitHub.com:o/r.git").unwrap();
        assert_eq!(parsed.host(), "github.com");
        assert_eq!(parsed.scheme(), "ssh");
        let parsed = RepoUrl::parse("http://127.0.0.1:9000/o/r").unwrap();
        assert_eq!(parsed.port(), Some(9000));
    }

    #[test]
    fn gitlab_nested_groups_sub_paths_and_web_suffixes() {
        let i = "https://gitlab.com";
        assert_eq!(gl("https://gitlab.com/a/b/c.git", i).unwrap(), "a/b/c");
        assert_eq!(gl("git@gitlab.com:a/b/c.git", i).unwrap(), "a/b/c");
        assert_eq!(
            gl("https://gitlab.com/a/b/c/-/tree/main", i).unwrap(),
            "a/b/c"
        );
        assert_eq!(
            gl("https://gitlab.com/a/b/-/merge_requests/3", i).unwrap(),
            "a/b"
        );
        let sub = "https://code.example.org/gitlab";
        assert_eq!(
            gl("https://code.example.org/gitlab/team/app.git", sub).unwrap(),
            "team/app"
        );
        // The ssh form has no sub-path.
        assert_eq!(
            gl("git@code.example.org:team/app.git", sub).unwrap(),
            "team/app"
        );
        assert_eq!(
            RepoPath::parse("team/app").unwrap().gitlab_id(),
            "team%2Fapp"
        );
        assert_eq!(
            RepoPath::parse("/a/b/c.git/").unwrap().gitlab_id(),
            "a%2Fb%2Fc"
        );
    }

    #[test]
    fn bad_urls_are_errors_that_do_not_echo_the_input() {
        for url in [
            "",
            "   ",
            "not a url",
            "https://github.com/",
            "https://github.com/only-owner",
            "ftp://github.com/o/r",
            "file:///etc/passwd",
            "https://github.com/o/r%2F..",
            "https://user:s3cr3t@github.com/o",
            "git@github.com:",
            "https://github.com/o/..",
        ] {
            let err = gh(url).unwrap_err();
            assert!(matches!(err, ForgeError::InvalidUrl(_)), "{url}: {err}");
            assert!(!err.to_string().contains("s3cr3t"));
        }
        assert!(gl("https://gitlab.com/group", "https://gitlab.com").is_err());
        assert!(gl("https://gitlab.com/group/-/tree/x", "https://gitlab.com").is_err());
        assert!(RepoPath::parse("a/b/c")
            .unwrap()
            .github_owner_repo()
            .is_err());
        assert!(RepoPath::parse("a b/c").is_err());
        assert!(RepoPath::parse("a/../c").is_err());
        assert_eq!(
            RepoPath::parse("o/r").unwrap().github_owner_repo().unwrap(),
            ("o", "r")
        );
    }
}
