//! The fake Supabase Auth driven by the official `@supabase/auth-js` client
//! (`tests/auth-js/fidelity.mjs`): PKCE sign-in, code exchange, getUser, getClaims (JWKS),
//! refresh rotation and reuse detection, a replayed code, a wrong verifier, sign-out.
//! `scripts/test.sh` runs `npm ci` in `tests/auth-js` first.

use std::path::PathBuf;
use std::time::Duration;

use lucid_testkit::jwks::TestKey;
use lucid_testkit::supabase_auth::FakeSupabaseAuth;

const ANON_KEY: &str = "fidelity-anon-key";
const SECRET: &[u8] = b"fidelity-jwt-secret-0123456789abcdef";

fn script_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/auth-js")
}

async fn run_auth_js(fake: &FakeSupabaseAuth, asymmetric: bool) {
    let dir = script_dir();
    assert!(
        dir.join("node_modules/@supabase/auth-js").is_dir(),
        "@supabase/auth-js is not installed: run `npm ci` in {}",
        dir.display()
    );
    let run = tokio::process::Command::new("node")
        .arg("fidelity.mjs")
        .current_dir(&dir)
        .env("SUPABASE_URL", fake.url())
        .env("SUPABASE_ANON_KEY", ANON_KEY)
        .env("EXPECT_ASYMMETRIC", if asymmetric { "1" } else { "0" })
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the auth-js script finished in time")
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "auth-js fidelity failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("all checks passed"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread")]
async fn auth_js_fidelity_hs256() {
    let fake = FakeSupabaseAuth::start(ANON_KEY, SECRET).await;
    run_auth_js(&fake, false).await;
    assert!(fake.count("pkce") >= 3);
    assert!(fake.count("logout") >= 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn auth_js_fidelity_es256_jwks() {
    let fake = FakeSupabaseAuth::start_with_key(ANON_KEY, SECRET, TestKey::es256("fake-es")).await;
    run_auth_js(&fake, true).await;
    assert!(fake.count("jwks") >= 1, "getClaims fetched the JWKS");
}

#[tokio::test]
async fn requests_without_the_project_key_are_refused() {
    let fake = FakeSupabaseAuth::start(ANON_KEY, SECRET).await;
    let http = reqwest_like(&format!("{}/auth/v1/user", fake.url())).await;
    assert!(http.starts_with("HTTP/1.1 401"), "{http}");
    assert!(http.contains("No API key found in request"), "{http}");
}

/// A minimal HTTP GET (the testkit has no HTTP client dependency).
async fn reqwest_like(url: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let u = url::Url::parse(url).unwrap();
    let mut stream = tokio::net::TcpStream::connect((u.host_str().unwrap(), u.port().unwrap()))
        .await
        .unwrap();
    let req = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        u.path(),
        u.host_str().unwrap()
    );
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).await.unwrap();
    out
}
