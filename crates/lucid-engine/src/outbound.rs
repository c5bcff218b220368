//! Where the engine may connect on a user's behalf.
//!
//! In Supabase mode many users share one engine, and some URLs come from them (a self-hosted
//! GitLab URL, a repository URL). Such a URL must not make the engine talk to the machine's
//! own services or its private network (loopback, private ranges, link-local and cloud
//! metadata addresses, ...). The check happens where the connection is made: the forge HTTP
//! client resolves names through [`GuardedResolver`], which hands the connector only allowed
//! addresses, and host-side git gets the checked address pinned (`http.curloptResolve`), so a
//! name that resolves differently the second time (DNS rebinding) gains nothing. Hosts the
//! operator configured (the GitHub API, the default GitLab, Supabase) and hosts listed in
//! `LUCID_ALLOWED_INTERNAL_HOSTS` are allowed. Local mode is unrestricted: its only user is
//! the machine's owner.
//!
//! A refusal says only that the address is internal; nothing is sent there, so nothing about
//! what listens there can be learned.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use thiserror::Error;

/// Why an outbound connection is not made.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum OutboundError {
    #[error(
        "{host} is on a private or internal network, which this server does not connect to on \
         behalf of users (an operator can allow the host with LUCID_ALLOWED_INTERNAL_HOSTS)"
    )]
    Internal { host: String },
    #[error("could not resolve {host}")]
    Unresolved { host: String },
}

/// The outbound connection policy of an engine.
#[derive(Debug, Clone, Default)]
pub struct OutboundPolicy {
    restricted: bool,
    /// Lower-case host names (or IP literals) that may be internal.
    allowed_hosts: Arc<Vec<String>>,
}

impl OutboundPolicy {
    /// No restriction (local mode).
    pub fn unrestricted() -> Self {
        Self::default()
    }

    /// Internal addresses refused except for `allowed_hosts`.
    pub fn restricted<I, S>(allowed_hosts: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let hosts = allowed_hosts
            .into_iter()
            .map(|h| normalize_host(h.as_ref()))
            .filter(|h| !h.is_empty())
            .collect();
        Self {
            restricted: true,
            allowed_hosts: Arc::new(hosts),
        }
    }

    /// The policy of an engine: unrestricted in local mode; in Supabase mode restricted, with
    /// the operator's own URLs and `LUCID_ALLOWED_INTERNAL_HOSTS` allowed.
    pub fn from_config(config: &crate::config::Config) -> Self {
        if config.is_local_mode() {
            return Self::unrestricted();
        }
        let mut hosts: Vec<String> = config.allowed_internal_hosts.clone();
        let operator_urls = [
            Some(config.github_api_url.as_str()),
            Some(config.gitlab_url.as_str()),
            config.supabase.as_ref().map(|s| s.url.as_str()),
        ];
        for url in operator_urls.into_iter().flatten() {
            if let Some(host) = url::Url::parse(url)
                .ok()
                .and_then(|u| u.host_str().map(str::to_string))
            {
                hosts.push(host);
            }
        }
        Self::restricted(hosts)
    }

    pub fn is_restricted(&self) -> bool {
        self.restricted
    }

    fn host_allowed(&self, host: &str) -> bool {
        !self.restricted || self.allowed_hosts.contains(&normalize_host(host))
    }

    /// Whether a connection to `ip` for `host` is allowed.
    pub fn allows(&self, host: &str, ip: IpAddr) -> bool {
        self.host_allowed(host) || !is_internal(ip)
    }

    /// Refuses a URL whose host is an internal IP literal (names are checked when they are
    /// resolved).
    pub fn check_url(&self, url: &url::Url) -> Result<(), OutboundError> {
        let Some(host) = url.host_str() else {
            return Ok(());
        };
        match normalize_host(host).parse::<IpAddr>() {
            Ok(ip) if !self.allows(host, ip) => Err(OutboundError::Internal {
                host: host.to_string(),
            }),
            _ => Ok(()),
        }
    }

    /// Resolves `host` and returns the addresses a connection may use (every one when the
    /// host is allowed or the policy unrestricted). An error when none is left.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, OutboundError> {
        let bare = normalize_host(host);
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return if self.allows(host, ip) {
                Ok(vec![SocketAddr::new(ip, port)])
            } else {
                Err(OutboundError::Internal {
                    host: host.to_string(),
                })
            };
        }
        let found: Vec<SocketAddr> = tokio::net::lookup_host((bare.as_str(), port))
            .await
            .map_err(|_| OutboundError::Unresolved {
                host: host.to_string(),
            })?
            .collect();
        if found.is_empty() {
            return Err(OutboundError::Unresolved {
                host: host.to_string(),
            });
        }
        let allowed: Vec<SocketAddr> = found
            .into_iter()
            .filter(|a| self.allows(host, a.ip()))
            .collect();
        if allowed.is_empty() {
            return Err(OutboundError::Internal {
                host: host.to_string(),
            });
        }
        Ok(allowed)
    }

    /// A DNS resolver for reqwest that applies this policy.
    pub fn resolver(&self) -> GuardedResolver {
        GuardedResolver {
            policy: self.clone(),
        }
    }
}

/// reqwest resolver that drops addresses the policy refuses (see the module docs).
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    policy: OutboundPolicy,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs = policy.resolve(&host, 0).await?;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Lower-case host without IPv6 brackets or a trailing dot.
fn normalize_host(host: &str) -> String {
    host.trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

/// Loopback, private, shared (CGNAT), link-local (incl. cloud metadata), unspecified,
/// multicast, broadcast, documentation and other special-purpose addresses; IPv6 forms that
/// embed an IPv4 address are judged by it.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_internal_v4(v4),
        IpAddr::V6(v6) => is_internal_v6(v6),
    }
}

fn is_internal_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240 // reserved
}

fn is_internal_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_internal_v4(v4);
    }
    let segments = ip.segments();
    // IPv4-compatible (::a.b.c.d), NAT64 (64:ff9b::/96) and 6to4 (2002::/16) embed an IPv4.
    let embedded =
        |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    if segments[..6] == [0, 0, 0, 0, 0, 0] && !ip.is_loopback() && !ip.is_unspecified() {
        return is_internal_v4(embedded(segments[6], segments[7]));
    }
    if segments[0] == 0x64 && segments[1] == 0xff9b && segments[2..6] == [0, 0, 0, 0] {
        return is_internal_v4(embedded(segments[6], segments[7]));
    }
    if segments[0] == 0x2002 {
        return is_internal_v4(embedded(segments[1], segments[2]));
    }
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (segments[0] & 0xfe00) == 0xfc00 // unique local
        || (segments[0] & 0xffc0) == 0xfe80 // link-local
        || (segments[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
        || (segments[0] == 0x2001 && segments[1] == 0x0db8) // documentation
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_recognised() {
        for internal in [
            "127.0.0.1",
            "127.1.2.3",
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::a00:1",
            "2002:7f00:1::",
        ] {
            assert!(is_internal(internal.parse().unwrap()), "{internal}");
        }
        for public in [
            "1.1.1.1",
            "140.82.112.3",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(!is_internal(public.parse().unwrap()), "{public}");
        }
    }

    #[tokio::test]
    async fn restricted_policy_refuses_internal_names_and_literals_unless_allowed() {
        let policy = OutboundPolicy::restricted(["gitlab.internal.example", "127.0.0.2"]);
        for url in [
            "https://127.0.0.1/x",
            "https://[::1]:8443/",
            "https://10.1.2.3",
        ] {
            let err = policy
                .check_url(&url::Url::parse(url).unwrap())
                .unwrap_err();
            assert!(matches!(err, OutboundError::Internal { .. }), "{url}");
        }
        policy
            .check_url(&url::Url::parse("https://127.0.0.2:9/").unwrap())
            .unwrap();
        let err = policy.resolve("localhost", 443).await.unwrap_err();
        assert!(
            err.to_string().contains("LUCID_ALLOWED_INTERNAL_HOSTS"),
            "{err}"
        );
        assert_eq!(
            policy.resolve("127.0.0.2", 80).await.unwrap(),
            vec!["127.0.0.2:80".parse().unwrap()]
        );
        let open = OutboundPolicy::unrestricted();
        assert!(!open.resolve("localhost", 80).await.unwrap().is_empty());
        open.check_url(&url::Url::parse("https://127.0.0.1/").unwrap())
            .unwrap();
    }
}
