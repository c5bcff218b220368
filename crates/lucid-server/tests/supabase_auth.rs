//! Supabase mode over real HTTP: bearer tokens are Supabase access tokens — HS256 with the
//! project's JWT secret or ES256/RS256 with a key from the project's JWKS (a local project:
//! PostgREST stand-in with the JWKS, on a real PostgreSQL) — with `aud` = `authenticated`;
//! expired or wrong-audience tokens get 401, no credentials 403.

mod common;

use common::TestServer;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use lucid_testkit::jwks::TestKey;
use lucid_testkit::supabase::SupabaseProject;
use serde_json::{json, Value};

fn claims(sub: &str, aud: &str, exp_in: i64) -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({"sub": sub, "aud": aud, "role": "authenticated", "iat": now, "exp": now + exp_in})
}

async fn status(server: &TestServer, token: Option<&str>) -> u16 {
    let mut request = server.http.get(server.url("/api/v1/chats"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.expect("request").status().as_u16()
}

#[tokio::test]
async fn supabase_access_tokens_are_accepted_and_bad_ones_get_401() {
    let es = TestKey::es256("project-es256");
    let rs = TestKey::rs256("project-rs256");
    let project = SupabaseProject::start_with_keys(&[&es, &rs]).await;
    let env = project.env();
    let vars: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = TestServer::start(&vars).await;
    let user = project.create_user("a@example.test").await;

    let hs256 = |c: &Value| {
        encode(
            &Header::new(Algorithm::HS256),
            c,
            &EncodingKey::from_secret(project.jwt_secret.as_bytes()),
        )
        .unwrap()
    };
    let good = claims(&user, "authenticated", 600);
    for (name, token) in [
        ("ES256", es.sign(&good)),
        ("RS256", rs.sign(&good)),
        ("HS256", hs256(&good)),
    ] {
        assert_eq!(status(&server, Some(&token)).await, 200, "{name}");
    }
    assert_eq!(project.rest.jwks_requests(), 1, "the JWKS is cached");

    let expired = claims(&user, "authenticated", -3600);
    let wrong_aud = claims(&user, "anon", 600);
    let unknown_key = TestKey::es256("not-published");
    for (name, token) in [
        ("expired ES256", es.sign(&expired)),
        ("expired RS256", rs.sign(&expired)),
        ("expired HS256", hs256(&expired)),
        ("wrong audience ES256", es.sign(&wrong_aud)),
        ("wrong audience HS256", hs256(&wrong_aud)),
        ("unknown kid", unknown_key.sign(&good)),
        ("local-mode token", server.token(&user)),
    ] {
        assert_eq!(status(&server, Some(&token)).await, 401, "{name}");
    }
    assert_eq!(status(&server, None).await, 403, "no credentials");
}
