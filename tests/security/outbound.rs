//! In Supabase mode (many users, one engine) URLs that come from users must not make the
//! engine talk to the machine's own services or its private network: a GitLab instance URL
//! or a repository URL on a loopback, private or link-local address is refused before
//! anything is sent, with the same answer whether something listens there or not, unless the
//! operator allowed the host.

use std::collections::HashMap;
use std::sync::Arc;

use lucid_engine::git::{Git, GitError, GitOptions};
use lucid_engine::integrations::{Integrations, SaveIntegrationRequest};
use lucid_engine::outbound::OutboundPolicy;
use lucid_engine::store::SqliteStore;
use lucid_engine::{Config, ErrorKind, User};
use lucid_testkit::forge::FakeGitlab;
use lucid_testkit::git_server::GitServer;

const TOKEN: &str = "fake-gitlab-token-security-outbound-0000";

fn supabase_config(data_dir: &std::path::Path, allowed: Option<&str>) -> Config {
    let mut vars: HashMap<String, String> = HashMap::from([
        ("LUCID_DATA_DIR".into(), data_dir.display().to_string()),
        // A loopback *name* for the project itself: the operator's own URL is allowed, and
        // the addresses under test stay unlisted.
        ("SUPABASE_URL".into(), "http://localhost:54321".into()),
        ("SUPABASE_ANON_KEY".into(), "anon-key".into()),
        (
            "SUPABASE_JWT_SECRET".into(),
            "supabase-jwt-secret-0123456789-0123456789".into(),
        ),
        ("SUPABASE_SERVICE_KEY".into(), "service-key".into()),
        (
            "ENCRYPTION_KEY".into(),
            "security-encryption-key-0123".into(),
        ),
    ]);
    if let Some(hosts) = allowed {
        vars.insert("LUCID_ALLOWED_INTERNAL_HOSTS".into(), hosts.into());
    }
    let config = Config::from_map(&vars).unwrap();
    assert!(!config.is_local_mode());
    config
}

fn integrations(config: &Config, data_dir: &std::path::Path) -> Integrations {
    let store = Arc::new(SqliteStore::open(&data_dir.join("db.sqlite3")).unwrap());
    Integrations::new(store, config)
}

fn gitlab(url: &str) -> SaveIntegrationRequest {
    SaveIntegrationRequest {
        provider: "gitlab".into(),
        token: TOKEN.into(),
        gitlab_url: Some(url.into()),
    }
}

#[tokio::test]
async fn gitlab_urls_on_internal_addresses_are_refused_in_supabase_mode() {
    let fake = FakeGitlab::start(TOKEN, 2).await;
    let open_port = fake.base_url();
    // A port where nothing listens.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://127.0.0.1:{}", l.local_addr().unwrap().port())
    };
    let data = tempfile::tempdir().unwrap();
    let config = supabase_config(data.path(), None);
    let service = integrations(&config, data.path());
    let user = User::with_id("security-outbound");

    let mut messages = Vec::new();
    for url in [
        open_port.as_str(),
        closed.as_str(),
        "https://10.20.30.40",
        "https://169.254.169.254",
        "https://[::1]:8443",
        "https://[::ffff:127.0.0.1]",
    ] {
        let err = service.save(&user, gitlab(url)).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::BadRequest, "{url}: {err:?}");
        assert!(
            err.message.contains("private or internal network"),
            "{url}: {err:?}"
        );
        assert!(!err.message.contains(TOKEN));
        messages.push(
            err.message
                .replace(url.trim_start_matches("https://"), "HOST"),
        );
    }
    assert!(
        fake.requests().is_empty(),
        "a request reached the internal address"
    );
    // Open and closed ports answer alike: nothing about the address is learnt.
    let open_msg = messages[0].replace(open_port.trim_start_matches("http://"), "");
    let closed_msg = messages[1].replace(closed.trim_start_matches("http://"), "");
    assert_eq!(
        open_msg.replace(&open_port, ""),
        closed_msg.replace(&closed, "")
    );

    // The operator can allow a host (a self-hosted GitLab on the internal network).
    let allowed = supabase_config(data.path(), Some("127.0.0.1"));
    let service = integrations(&allowed, data.path());
    let saved = service.save(&user, gitlab(&open_port)).await.unwrap();
    assert_eq!(saved.username, "gitlab-user");
    assert!(!fake.requests().is_empty());

    // Local mode keeps its freedom: the user is the operator.
    let mut local = allowed.clone();
    local.supabase = None;
    local.allowed_internal_hosts.clear();
    assert!(!OutboundPolicy::from_config(&local).is_restricted());
}

#[tokio::test]
async fn git_never_connects_to_internal_addresses_under_a_restricted_policy() {
    let server = GitServer::start(lucid_engine::git::TOKEN_ONLY_USERNAME, TOKEN)
        .await
        .unwrap();
    server.create_repo("app", &[("a", "a")], &[]).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let restricted = Git::new(GitOptions {
        outbound: OutboundPolicy::restricted(Vec::<String>::new()),
        ..GitOptions::default()
    });
    for url in [
        server.url_for("app"),
        server.url_for("app").replace("127.0.0.1", "localhost"),
    ] {
        let err = restricted
            .clone_repo(&url, None, &tmp.path().join("c"), None, |_| {})
            .await
            .unwrap_err();
        assert!(matches!(err, GitError::InvalidUrl { .. }), "{url}: {err}");
        assert!(err.to_string().contains("internal network"), "{err}");
        let err = restricted
            .push_private(tmp.path(), &url, "main", None)
            .await
            .unwrap_err();
        assert!(matches!(err, GitError::InvalidUrl { .. }), "{err}");
    }
    assert!(
        server.requests().is_empty(),
        "git reached the internal address"
    );

    // Allowed by the operator: the clone goes through, pinned to the checked address.
    let allowed = Git::new(GitOptions {
        outbound: OutboundPolicy::restricted(["127.0.0.1"]),
        ..GitOptions::default()
    });
    let creds = lucid_engine::git::GitCredentials {
        username: lucid_engine::git::TOKEN_ONLY_USERNAME.into(),
        token: TOKEN.into(),
    };
    allowed
        .clone_repo(
            &server.url_for("app"),
            None,
            &tmp.path().join("ok"),
            Some(&creds),
            |_| {},
        )
        .await
        .unwrap();
    assert!(tmp.path().join("ok/a").exists());
}
