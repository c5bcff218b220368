//! Browser sign-in routes over real HTTP against a local Supabase project whose Auth is the
//! fake Supabase Auth (one project URL for `/auth/v1` and `/rest/v1`): options, the authorize
//! redirect with the state cookie, the callback handing the session to the page, refresh,
//! sign-out; a callback in another browser, a replayed callback and local mode are refused.

mod common;

use std::sync::Arc;

use common::TestServer;
use lucid_testkit::supabase::SupabaseProject;
use serde_json::Value;

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap()
}

async fn supabase_server(project: &Arc<SupabaseProject>) -> TestServer {
    TestServer::start_with(Some(project.clone()), &[("SANDBOX_MODE", "local")]).await
}

fn location(r: &reqwest::Response) -> String {
    r.headers()["location"].to_str().unwrap().to_string()
}

/// Starts a sign-in like a browser: returns the callback URL and the state cookie.
async fn through_provider(server: &TestServer, provider: &str) -> (String, String) {
    let http = no_redirects();
    let start = http
        .get(server.url(&format!("/api/v1/auth/sign-in/{provider}")))
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), 302);
    let cookie = start.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    let cookie = cookie.split(';').next().unwrap().to_string();
    let authorize = location(&start);
    assert!(
        authorize.contains(&format!("provider={provider}")),
        "{authorize}"
    );
    let back = http.get(&authorize).send().await.unwrap();
    let callback = location(&back);
    assert!(
        callback.starts_with(&server.url("/api/v1/auth/callback?state=")),
        "{callback}"
    );
    (callback, cookie)
}

fn session_from_fragment(location: &str) -> Value {
    let encoded = location.strip_prefix("/#session=").expect(location);
    let json = percent_encoding::percent_decode_str(encoded)
        .decode_utf8()
        .unwrap();
    serde_json::from_str(&json).unwrap()
}

#[tokio::test]
async fn a_browser_signs_in_refreshes_and_signs_out() {
    let project = Arc::new(SupabaseProject::start_with_auth().await);
    let fake = project.auth();
    let server = supabase_server(&project).await;
    let http = no_redirects();

    let options: Value = http
        .get(server.url("/api/v1/auth/options"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(options["mode"], "supabase");
    assert_eq!(
        options["providers"],
        serde_json::json!(["google", "github", "gitlab"])
    );

    let (callback, cookie) = through_provider(&server, "github").await;
    let done = http
        .get(&callback)
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), 302, "{:?}", done.text().await);
    let session = session_from_fragment(&location(&done));
    assert_eq!(session["user"]["email"], "grace@example.test");
    assert_eq!(session["user"]["name"], "Grace Hopper");
    let access = session["accessToken"].as_str().unwrap().to_string();
    let refresh = session["refreshToken"].as_str().unwrap().to_string();
    assert!(session["expiresAt"].as_i64().unwrap() > chrono::Utc::now().timestamp());

    // The access token opens the API.
    let chats = server
        .http
        .get(server.url("/api/v1/chats"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(chats.status(), 200);
    // Supabase Auth signed the user up in the project: the profile has the token's `sub`.
    let user_id = session["user"]["id"].as_str().unwrap();
    assert_eq!(
        project.profile(user_id).await,
        Some((
            Some("grace@example.test".to_string()),
            Some("Grace Hopper".to_string())
        ))
    );

    // Refresh rotates.
    let fresh: Value = http
        .post(server.url("/api/v1/auth/refresh"))
        .json(&serde_json::json!({ "refreshToken": refresh }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let fresh_refresh = fresh["refreshToken"].as_str().unwrap().to_string();
    assert_ne!(fresh_refresh, refresh);
    let reused = http
        .post(server.url("/api/v1/auth/refresh"))
        .json(&serde_json::json!({ "refreshToken": refresh }))
        .send()
        .await
        .unwrap();
    assert_eq!(reused.status(), 401);
    let detail: Value = reused.json().await.unwrap();
    assert!(
        detail["detail"].as_str().unwrap().contains("Already Used"),
        "{detail}"
    );

    // Sign-out revokes at Supabase Auth.
    let (callback, cookie) = through_provider(&server, "google").await;
    let done = http
        .get(&callback)
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    let session = session_from_fragment(&location(&done));
    let before = fake.live_sessions();
    let out = http
        .post(server.url("/api/v1/auth/sign-out"))
        .bearer_auth(session["accessToken"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 204);
    assert_eq!(fake.live_sessions(), before - 1);
    let after = http
        .post(server.url("/api/v1/auth/refresh"))
        .json(&serde_json::json!({ "refreshToken": session["refreshToken"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 401);
    assert_eq!(
        http.post(server.url("/api/v1/auth/sign-out"))
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
}

#[tokio::test]
async fn foreign_replayed_and_refused_callbacks_get_an_error_page() {
    let project = Arc::new(SupabaseProject::start_with_auth().await);
    let fake = project.auth();
    let server = supabase_server(&project).await;
    let http = no_redirects();

    // Another browser (no cookie) opens the callback link: refused, and the sign-in is not
    // consumed, so the right browser still completes it.
    let (callback, cookie) = through_provider(&server, "gitlab").await;
    let foreign = http.get(&callback).send().await.unwrap();
    assert_eq!(foreign.status(), 400);
    let page = foreign.text().await.unwrap();
    assert!(page.contains("started in another browser"), "{page}");
    let ok = http
        .get(&callback)
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 302);
    // Replayed.
    let again = http
        .get(&callback)
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 400);
    assert!(again.text().await.unwrap().contains("already used"));

    // The provider refused; its words are shown, escaped.
    fake.set_provider_refuses(Some("google"));
    let (callback, cookie) = through_provider(&server, "google").await;
    let refused = http
        .get(&callback)
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    let page = refused.text().await.unwrap();
    assert!(page.contains("The provider did not sign you in"), "{page}");
    let crafted = format!(
        "{}&error=x&error_description=%3Cscript%3Ealert(1)%3C%2Fscript%3E",
        callback
    );
    let page = http
        .get(&crafted)
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!page.contains("<script>"), "{page}");

    // Unknown provider.
    let unknown = http
        .get(server.url("/api/v1/auth/sign-in/bitbucket"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 400);
}

#[tokio::test]
async fn local_mode_offers_no_providers() {
    let server = TestServer::start(&[]).await;
    let http = no_redirects();
    let options: Value = http
        .get(server.url("/api/v1/auth/options"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(options["mode"], "local");
    assert_eq!(options["providers"], serde_json::json!([]));
    let start = http
        .get(server.url("/api/v1/auth/sign-in/github"))
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), 400);
    // The local link's token keeps working.
    let chats = server
        .http
        .get(server.url("/api/v1/chats"))
        .bearer_auth(server.token("local"))
        .send()
        .await
        .unwrap();
    assert_eq!(chats.status(), 200);
}
