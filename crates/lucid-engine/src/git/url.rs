//! Repository URL validation. Only `https://` URLs, `http://` URLs of loopback hosts,
//! `file://` URLs and absolute local paths are accepted; everything else — `ext::` and other
//! transport helpers, `ssh://`, scp-like `host:path`, option-like `-…` strings — is rejected
//! before any git process starts. Userinfo (`https://user:token@host/…`) is taken out of the
//! URL and returned as credentials, so git only ever sees the clean URL.

use percent_encoding::percent_decode_str;
use url::Url;

use super::error::{truncate_chars, GitError};
use super::GitCredentials;
use crate::config::is_loopback_host;

/// The username sent with a token that came alone in a URL's userinfo
/// (`https://<token>@host/…`); GitHub and GitLab accept any username with a personal token.
pub const TOKEN_ONLY_USERNAME: &str = "x-access-token";

/// How git reaches a repository; decides which git protocol is allowed for the operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RemoteKind {
    Https,
    /// `http://` to a loopback host (tests, local forges).
    LoopbackHttp,
    /// An absolute local path or a `file://` URL.
    Local,
}

impl RemoteKind {
    /// The name git uses for this transport in `protocol.<name>.allow`.
    pub(crate) fn protocol(self) -> &'static str {
        match self {
            RemoteKind::Https => "https",
            RemoteKind::LoopbackHttp => "http",
            RemoteKind::Local => "file",
        }
    }
}

/// A validated repository location.
#[derive(Clone)]
pub(crate) struct RepoUrl {
    /// What is passed to git: never contains userinfo.
    pub(crate) clean: String,
    pub(crate) kind: RemoteKind,
    /// Credentials that were embedded in the URL (only for remote kinds).
    pub(crate) embedded: Option<GitCredentials>,
}

impl std::fmt::Debug for RepoUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RepoUrl")
            .field("clean", &self.clean)
            .field("kind", &self.kind)
            .field("embedded", &self.embedded)
            .finish()
    }
}

const SUPPORTED: &str =
    "only https:// URLs (http:// for loopback hosts), file:// URLs and absolute local paths are supported";

impl RepoUrl {
    /// Validates `input` and splits off any credentials in its userinfo.
    pub(crate) fn parse(input: &str) -> Result<Self, GitError> {
        let reject = |reason: &str| GitError::InvalidUrl {
            shown: redact_url(input),
            reason: reason.to_string(),
        };
        let value = input.trim();
        if value.is_empty() {
            return Err(reject("the URL is empty"));
        }
        if value.chars().any(char::is_control) {
            return Err(reject("the URL contains control characters"));
        }
        if value.starts_with('-') {
            return Err(reject("a URL must not start with '-'"));
        }
        if value.starts_with('/') {
            return Ok(Self {
                clean: value.to_string(),
                kind: RemoteKind::Local,
                embedded: None,
            });
        }
        let scheme_end = value.find("://").ok_or_else(|| reject(SUPPORTED))?;
        let scheme = value[..scheme_end].to_ascii_lowercase();
        if !matches!(scheme.as_str(), "https" | "http" | "file") {
            return Err(reject(SUPPORTED));
        }
        let mut url = Url::parse(value).map_err(|e| reject(&format!("not a valid URL ({e})")))?;
        if scheme == "file" {
            if url.host_str().is_some_and(|h| !h.is_empty()) {
                return Err(reject("file:// URLs must not name a host"));
            }
            return Ok(Self {
                clean: url.as_str().to_string(),
                kind: RemoteKind::Local,
                embedded: None,
            });
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(reject("the URL has no host"));
        }
        let kind = if scheme == "https" {
            RemoteKind::Https
        } else if is_loopback_host(&url) {
            RemoteKind::LoopbackHttp
        } else {
            return Err(reject(
                "http:// is allowed only for loopback hosts; use https://",
            ));
        };
        let embedded = embedded_credentials(&url);
        // Both setters only fail for URLs that cannot have userinfo, excluded above.
        let _ = url.set_username("");
        let _ = url.set_password(None);
        Ok(Self {
            clean: url.as_str().to_string(),
            kind,
            embedded,
        })
    }
}

impl RepoUrl {
    /// `scheme://host[:port]` as git names it in credential prompts; `None` for local
    /// repositories, which never take credentials.
    pub(crate) fn credential_origin(&self) -> Option<String> {
        if self.kind == RemoteKind::Local {
            return None;
        }
        let url = Url::parse(&self.clean).ok()?;
        let host = url.host_str()?;
        Some(match url.port() {
            Some(port) => format!("{}://{host}:{port}", url.scheme()),
            None => format!("{}://{host}", url.scheme()),
        })
    }
}

fn decode(part: &str) -> String {
    percent_decode_str(part).decode_utf8_lossy().into_owned()
}

fn embedded_credentials(url: &Url) -> Option<GitCredentials> {
    let username = decode(url.username());
    let password = url.password().map(decode).unwrap_or_default();
    match (username.is_empty(), password.is_empty()) {
        (true, true) => None,
        (_, false) => Some(GitCredentials {
            username: if username.is_empty() {
                TOKEN_ONLY_USERNAME.to_string()
            } else {
                username
            },
            token: password,
        }),
        // A lone userinfo value can only be a token: there is no prompt to ask for a password.
        (false, true) => Some(GitCredentials {
            username: TOKEN_ONLY_USERNAME.to_string(),
            token: username,
        }),
    }
}

/// A form of `input` that is safe to show in messages and logs: userinfo removed from URLs;
/// for anything that does not parse, whatever precedes an `@` is masked.
/// The result is quoted (Rust string syntax), so control characters are visible.
pub fn redact_url(input: &str) -> String {
    format!("{:?}", truncate_chars(&without_userinfo(input), 200))
}

/// `input` with the userinfo of a URL removed; for anything that does not parse as a URL
/// with a host, whatever precedes the last `@` is masked.
pub(crate) fn without_userinfo(input: &str) -> String {
    let value = input.trim();
    match Url::parse(value) {
        Ok(mut url) if url.has_host() => {
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.as_str().to_string()
        }
        _ => match value.rfind('@') {
            Some(at) => format!("***{}", &value[at..]),
            None => value.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(input: &str) -> RepoUrl {
        RepoUrl::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"))
    }

    #[test]
    fn accepts_https_loopback_http_and_local() {
        let u = ok("https://github.com/o/r.git");
        assert_eq!(u.clean, "https://github.com/o/r.git");
        assert_eq!(u.kind, RemoteKind::Https);
        assert!(u.embedded.is_none());
        assert_eq!(
            ok("http://127.0.0.1:8080/r.git").kind,
            RemoteKind::LoopbackHttp
        );
        assert_eq!(ok("http://localhost/r.git").kind, RemoteKind::LoopbackHttp);
        assert_eq!(ok("http://[::1]:9/r.git").kind, RemoteKind::LoopbackHttp);
        assert_eq!(ok("/srv/repos/r.git").kind, RemoteKind::Local);
        let f = ok("file:///srv/repos/r.git");
        assert_eq!(f.kind, RemoteKind::Local);
        assert_eq!(f.clean, "file:///srv/repos/r.git");
        assert_eq!(
            ok("  HTTPS://Example.com/x  ").clean,
            "https://example.com/x"
        );
    }

    #[test]
    fn userinfo_becomes_credentials_and_leaves_the_url() {
        let u = ok("https://alice:to%2Fk%40en@gitlab.example/g/r.git");
        assert_eq!(u.clean, "https://gitlab.example/g/r.git");
        let c = u.embedded.unwrap();
        assert_eq!(c.username, "alice");
        assert_eq!(c.token, "to/k@en");

        let u = ok("https://ghp_abc@github.com/o/r.git");
        assert_eq!(u.clean, "https://github.com/o/r.git");
        let c = u.embedded.unwrap();
        assert_eq!(c.username, TOKEN_ONLY_USERNAME);
        assert_eq!(c.token, "ghp_abc");

        let u = ok("https://:tok@github.com/o/r.git");
        assert_eq!(u.embedded.unwrap().username, TOKEN_ONLY_USERNAME);
    }

    #[test]
    fn credential_origin_is_scheme_host_and_port() {
        assert_eq!(
            ok("https://u:t@github.com/o/r.git")
                .credential_origin()
                .as_deref(),
            Some("https://github.com")
        );
        assert_eq!(
            ok("https://gitlab.example:8443/g/r.git")
                .credential_origin()
                .as_deref(),
            Some("https://gitlab.example:8443")
        );
        assert_eq!(
            ok("https://github.com:443/o/r")
                .credential_origin()
                .as_deref(),
            Some("https://github.com")
        );
        assert_eq!(
            ok("http://127.0.0.1:9000/r.git")
                .credential_origin()
                .as_deref(),
            Some("http://127.0.0.1:9000")
        );
        assert_eq!(ok("/srv/r.git").credential_origin(), None);
    }

    #[test]
    fn rejects_dangerous_and_unsupported_urls() {
        for input in [
            "",
            "   ",
            "ext::sh -c touch /tmp/x",
            "--upload-pack=touch /tmp/x",
            "-oProxyCommand=x",
            "ssh://-oProxyCommand=x/r",
            "ssh://git@github.com/o/r.git",
            "git://github.com/o/r.git",
            "git@github.com:o/r.git",
            "http://example.com/r.git",
            "http://10.0.0.1/r.git",
            "relative/path",
            "./r",
            "fd::17",
            "https://github.com/o/r\n.git",
            "file://evil.example/r.git",
            "transport::https://github.com/o/r",
        ] {
            assert!(
                matches!(RepoUrl::parse(input), Err(GitError::InvalidUrl { .. })),
                "{input:?} was accepted"
            );
        }
    }

    #[test]
    fn rejection_messages_never_show_the_token() {
        let err = RepoUrl::parse("http://bob:sekret-tok@example.com/r.git").unwrap_err();
        let msg = err.to_string();
        assert!(!msg.contains("sekret-tok"), "{msg}");
        assert!(msg.contains("example.com"), "{msg}");
        let err = RepoUrl::parse("bob:sekret-tok@example.com:r.git").unwrap_err();
        assert!(!err.to_string().contains("sekret-tok"), "{err}");
    }
}
