//! The embedded UI on the API's server: content negotiation on `/`, cache headers, client-side
//! routes, the status endpoint, and the generated OpenAPI document the UI's types come from.

mod common;

use common::TestServer;

#[tokio::test]
async fn root_gives_browsers_the_ui_and_api_clients_json() {
    let s = TestServer::start(&[]).await;
    let html = s
        .http
        .get(s.url("/"))
        .header("accept", "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8")
        .send()
        .await
        .unwrap();
    assert_eq!(html.status(), 200);
    assert_eq!(html.headers()["content-type"], "text/html; charset=utf-8");
    assert_eq!(html.headers()["cache-control"], "no-cache");
    assert_eq!(html.headers()["vary"], "accept");
    assert!(html.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("default-src 'self'"));
    let body = html.text().await.unwrap();
    assert!(body.contains("<html"), "{body}");
    if lucid_server::ui::UI_BUILT {
        assert!(body.contains("/ui/assets/"), "the built UI: {body}");
    } else {
        // Built without `ui/dist`: a page that says how to build the UI.
        assert!(body.contains("npm run build"), "{body}");
    }

    let json = s.http.get(s.url("/")).send().await.unwrap();
    assert_eq!(json.status(), 200);
    assert!(json.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let info: serde_json::Value = json.json().await.unwrap();
    assert_eq!(info["service"], "Lucid AI Engine");
}

#[tokio::test]
async fn client_side_routes_load_the_app_and_unknown_assets_are_404() {
    let s = TestServer::start(&[]).await;
    let index = s
        .http
        .get(s.url("/"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    let index = index.text().await.unwrap();
    for route in ["/ui", "/ui/", "/ui/history", "/ui/s/1234-abcd"] {
        let r = s.http.get(s.url(route)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{route}");
        assert_eq!(r.headers()["cache-control"], "no-cache", "{route}");
        assert_eq!(r.text().await.unwrap(), index, "{route}");
    }
    let missing = s
        .http
        .get(s.url("/ui/assets/nope-123.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    // The JSON 404 of the API is unchanged.
    let api = s.http.get(s.url("/api/v1/nope")).send().await.unwrap();
    assert_eq!(api.status(), 404);
}

/// With the real UI built (the test command builds it first), every asset index.html
/// references is served with a long-lived cache header and the right type.
#[tokio::test]
async fn hashed_assets_are_cached_for_long() {
    if !lucid_server::ui::UI_BUILT {
        eprintln!("ui/dist was not built: only the placeholder page is embedded");
        return;
    }
    let s = TestServer::start(&[]).await;
    let index = s
        .http
        .get(s.url("/ui/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let assets: Vec<&str> = index
        .split('"')
        .filter(|p| p.starts_with("/ui/assets/"))
        .collect();
    assert!(assets.iter().any(|a| a.ends_with(".js")), "{index}");
    for a in assets {
        let r = s.http.get(s.url(a)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{a}");
        assert_eq!(
            r.headers()["cache-control"],
            "public, max-age=31536000, immutable",
            "{a}"
        );
        let ct = r.headers()["content-type"].to_str().unwrap().to_string();
        if a.ends_with(".js") {
            assert!(ct.contains("javascript"), "{a}: {ct}");
        }
        if a.ends_with(".css") {
            assert!(ct.starts_with("text/css"), "{a}: {ct}");
        }
    }
}

#[tokio::test]
async fn status_reports_setup_problems_with_fixes() {
    let s = TestServer::start(&[("SANDBOX_MODE", "local")]).await;
    let unauth = s.http.get(s.url("/api/v1/status")).send().await.unwrap();
    assert_eq!(unauth.status(), 403);
    let r = s.get("/api/v1/status", "u1").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["mode"], "local");
    assert_eq!(v["sandbox"], "local");
    assert_eq!(v["integrationsEnabled"], true);
    let providers = v["providers"].as_array().unwrap();
    assert_eq!(providers.len(), 3);
    assert!(providers
        .iter()
        .all(|p| p["configured"] == false && p["problem"].is_string()));
    let problems = v["problems"].as_array().unwrap();
    assert!(
        problems.iter().any(
            |p| p["what"].as_str().unwrap().contains("without isolation")
                && p["fix"].as_str().unwrap().contains("Unset SANDBOX_MODE")
        ),
        "{v}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p["what"] == "No LLM provider is configured."),
        "{v}"
    );
}

/// `ui/src/generated/openapi.json` (input of the UI's generated API types) matches the
/// server's OpenAPI document; `UPDATE_GENERATED=1` rewrites it.
#[test]
fn generated_openapi_document_is_current() {
    use utoipa::OpenApi;
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../ui/src/generated/openapi.json");
    let fresh = lucid_server::openapi::ApiDoc::openapi()
        .to_pretty_json()
        .expect("OpenAPI JSON")
        + "\n";
    if std::env::var_os("UPDATE_GENERATED").is_some() {
        std::fs::write(&path, &fresh).expect("write openapi.json");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == fresh,
        "{} is stale: run `UPDATE_GENERATED=1 cargo test -p lucid-server --test ui_routes` \
         and then `npm run gen:api` in ui/",
        path.display()
    );
}
