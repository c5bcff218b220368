//! The REST contract over real HTTP on 127.0.0.1 with a real SQLite file: auth, health,
//! chats, bad input, OpenAPI, sessions errors. The tests in `in_both_modes!` also run in
//! Supabase mode (PostgREST stand-in on a real PostgreSQL, row-level security).

#[macro_use]
mod common;

use common::{TestServer, INTERNAL_KEY};
use lucid_engine::events::{Event, EventKind};
use lucid_engine::store::NewChat;
use serde_json::{json, Value};

async fn seed_chat(server: &TestServer, user: &str, title: &str, messages: &[&str]) -> String {
    let u = server.user(user);
    let id = uuid::Uuid::new_v4().to_string();
    server
        .engine
        .store()
        .create_chat(
            &u,
            NewChat {
                id: id.clone(),
                agent_session_id: Some(uuid::Uuid::new_v4().to_string()),
                title: Some(title.into()),
                model_provider: Some("anthropic".into()),
                ..NewChat::default()
            },
        )
        .await
        .unwrap();
    let events: Vec<Event> = messages
        .iter()
        .enumerate()
        .map(|(i, m)| {
            Event::new(
                "s",
                i as u64 + 1,
                if i == 0 {
                    EventKind::UserMessage {
                        content: m.to_string(),
                        follow_up: false,
                    }
                } else {
                    EventKind::AssistantMessage {
                        content: m.to_string(),
                    }
                },
            )
        })
        .collect();
    if !events.is_empty() {
        server
            .engine
            .store()
            .append_events(&u, &id, &events)
            .await
            .unwrap();
    }
    id
}

#[tokio::test]
async fn health_and_service_info() {
    let s = TestServer::start(&[]).await;
    let r = s.http.get(s.url("/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"status": "ok"}));

    let info: Value = s
        .http
        .get(s.url("/"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["service"], "Lucid AI Engine");
    assert_eq!(info["status"], "healthy");
    assert_eq!(info["mode"], "local");
    for field in ["docker_available", "openhands_available"] {
        assert!(info[field].is_boolean(), "{field}: {info}");
    }
    for field in ["active_sandboxes", "active_sessions"] {
        assert!(info[field].is_u64(), "{field}: {info}");
    }
    assert!(info["llm_model"].is_string());
}

in_both_modes! {
    async fn no_token_is_403_bad_token_is_401_valid_token_passes(mode) {
    let s = TestServer::start_in(mode, &[]).await;
    let r = s.http.get(s.url("/api/v1/chats")).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.json::<Value>().await.unwrap()["detail"].is_string());

    let r = s
        .http
        .get(s.url("/api/v1/chats"))
        .bearer_auth("bad.token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<Value>().await.unwrap()["detail"], "Invalid token");

    let other = lucid_engine::auth::issue_token(
        "u",
        b"some-other-secret-entirely",
        std::time::Duration::from_secs(60),
    );
    let r = s
        .http
        .get(s.url("/api/v1/chats"))
        .bearer_auth(other)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    let r = s.get("/api/v1/chats", "user-a").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"chats": []}));
    }
}

in_both_modes! {
    async fn internal_key_path(mode) {
    let s = TestServer::start_in(mode, &[]).await;
    let ok = s
        .http
        .get(s.url("/api/v1/chats"))
        .header("X-User-ID", "svc-user")
        .header("X-Internal-Key", INTERNAL_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let bad = s
        .http
        .get(s.url("/api/v1/chats"))
        .header("X-User-ID", "svc-user")
        .header("X-Internal-Key", "wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
    assert_eq!(
        bad.json::<Value>().await.unwrap()["detail"],
        "Invalid internal API key"
    );
    // A present but invalid bearer is final even with a good internal key.
    let r = s
        .http
        .get(s.url("/api/v1/chats"))
        .bearer_auth("nope")
        .header("X-User-ID", "svc-user")
        .header("X-Internal-Key", INTERNAL_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    }
}

#[tokio::test]
async fn internal_key_refused_when_not_configured() {
    let s = TestServer::start(&[("INTERNAL_API_KEY", "")]).await;
    let r = s
        .http
        .get(s.url("/api/v1/chats"))
        .header("X-User-ID", "victim")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

in_both_modes! {
    async fn chats_list_get_rename_delete_with_isolation(mode) {
    let s = TestServer::start_in(mode, &[]).await;
    let first = seed_chat(&s, "alice", "first", &["hello", "hi there"]).await;
    let second = seed_chat(&s, "alice", "second", &["task two"]).await;
    let bobs = seed_chat(&s, "bob", "bob's", &["secret"]).await;

    let list: Value = s
        .get("/api/v1/chats", "alice")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = list["chats"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        vec![second.as_str(), first.as_str()],
        "most recently updated first"
    );
    let chat = &list["chats"][0];
    for field in [
        "id",
        "agentSessionId",
        "projectId",
        "title",
        "modelProvider",
        "isActive",
        "createdAt",
        "updatedAt",
    ] {
        assert!(chat.get(field).is_some(), "missing {field} in {chat}");
    }
    assert!(chat["createdAt"].as_str().unwrap().ends_with("+00:00"));

    let page: Value = s
        .get("/api/v1/chats?limit=1&offset=1", "alice")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["chats"].as_array().unwrap().len(), 1);
    assert_eq!(page["chats"][0]["id"], first.as_str());

    let detail: Value = s
        .get(&format!("/api/v1/chats/{first}"), "alice")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let messages = detail["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0]["content"], "hello");
    assert_eq!(messages[0]["role"], "user");
    assert_eq!(messages[0]["eventType"], "InitialTask");
    assert_eq!(messages[1]["role"], "assistant");
    for field in [
        "id",
        "role",
        "content",
        "eventType",
        "metadataJson",
        "createdAt",
    ] {
        assert!(messages[0].get(field).is_some(), "missing {field}");
    }

    // Bob sees none of Alice's chats and cannot touch them.
    let bob_list: Value = s
        .get("/api/v1/chats", "bob")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(bob_list["chats"].as_array().unwrap().len(), 1);
    assert_eq!(bob_list["chats"][0]["id"], bobs.as_str());
    for r in [
        s.get(&format!("/api/v1/chats/{first}"), "bob")
            .send()
            .await
            .unwrap(),
        s.patch(&format!("/api/v1/chats/{first}"), "bob")
            .json(&json!({"title": "x"}))
            .send()
            .await
            .unwrap(),
        s.delete(&format!("/api/v1/chats/{first}"), "bob")
            .send()
            .await
            .unwrap(),
    ] {
        assert_eq!(r.status(), 404);
        assert_eq!(r.json::<Value>().await.unwrap()["detail"], "Chat not found");
    }

    // Rename.
    for body in [
        json!({}),
        json!({"title": ""}),
        json!({"title": "   "}),
        json!({"title": 5}),
    ] {
        let r = s
            .patch(&format!("/api/v1/chats/{first}"), "alice")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{body}");
        assert_eq!(
            r.json::<Value>().await.unwrap()["detail"],
            "Missing 'title'"
        );
    }
    let r = s
        .patch(&format!("/api/v1/chats/{first}"), "alice")
        .json(&json!({"title": "New title"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"status": "updated", "id": first, "title": "New title"})
    );

    // Delete.
    let r = s
        .delete(&format!("/api/v1/chats/{first}"), "alice")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"status": "deleted", "id": first})
    );
    let r = s
        .delete(&format!("/api/v1/chats/{first}"), "alice")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = s
        .get(&format!("/api/v1/chats/{first}"), "alice")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    }
}

in_both_modes! {
    async fn chat_pagination_bounds_are_validated(mode) {
    let s = TestServer::start_in(mode, &[]).await;
    for query in ["limit=0", "limit=101", "offset=-1", "limit=abc"] {
        let r = s
            .get(&format!("/api/v1/chats?{query}"), "alice")
            .send()
            .await
            .unwrap();
        assert!(r.status().is_client_error(), "{query}: {}", r.status());
        assert!(
            r.json::<Value>().await.unwrap()["detail"].is_string(),
            "{query}"
        );
    }
    let r = s
        .get("/api/v1/chats?limit=100", "alice")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    }
}

in_both_modes! {
    async fn bad_bodies_get_clear_errors_and_write_nothing(mode) {
    let s = TestServer::start_in(mode, &[]).await;
    let chat = seed_chat(&s, "alice", "keep me", &["x"]).await;
    let path = format!("/api/v1/chats/{chat}");

    let r = s
        .patch(&path, "alice")
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.json::<Value>().await.unwrap()["detail"]
        .as_str()
        .unwrap()
        .contains("Malformed JSON"));

    let r = s
        .patch(&path, "alice")
        .header("content-type", "application/json")
        .body("[1,2]")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);

    let r = s
        .patch(&path, "alice")
        .body("title=x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);

    let huge = format!("{{\"title\": \"{}\"}}", "a".repeat(2 * 1024 * 1024));
    let r = s
        .patch(&path, "alice")
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert!(r.json::<Value>().await.unwrap()["detail"]
        .as_str()
        .unwrap()
        .contains("too large"));

    let detail: Value = s
        .get(&path, "alice")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(detail["title"], "keep me", "nothing was written");

    let r = s
        .post("/api/v1/sessions", "alice")
        .header("content-type", "application/json")
        .body("{\"task\": 5}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let r = s
        .post("/api/v1/sessions", "alice")
        .json(&json!({"repoUrl": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422, "task is required");
    }
}

in_both_modes! {
    async fn session_request_errors(mode) {
    let s = TestServer::start_in(mode, &[]).await;
    let r = s
        .post("/api/v1/sessions", "alice")
        .json(&json!({"task": "  "}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = s
        .post("/api/v1/sessions", "alice")
        .json(&json!({"task": "t", "model_provider": "skynet", "api_key": "k"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.json::<Value>().await.unwrap()["detail"]
        .as_str()
        .unwrap()
        .contains("skynet"));
    let r = s
        .post("/api/v1/sessions", "alice")
        .json(&json!({"task": "t", "modelProvider": "anthropic"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "no API key anywhere");
    let r = s
        .delete("/api/v1/sessions/nonexistent-id", "alice")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = s.get("/api/v1/sessions", "alice").send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"sessions": []}));
    // No chat rows were created by the refused requests.
    let chats: Value = s
        .get("/api/v1/chats", "alice")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(chats["chats"].as_array().unwrap().len(), 0);
    }
}

#[tokio::test]
async fn openapi_document_lists_the_routes() {
    let s = TestServer::start(&[]).await;
    let doc: Value = s
        .http
        .get(s.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/health",
        "/api/v1/sessions",
        "/api/v1/sessions/{session_id}",
        "/api/v1/chats",
        "/api/v1/chats/{chat_id}",
        "/api/v1/files/list",
        "/api/v1/files/read",
        "/api/v1/integrations",
        "/api/v1/integrations/{provider}/repos",
        "/api/v1/integrations/{provider}/repos/{repo}/branches",
        "/api/v1/integrations/{provider}/pr",
    ] {
        assert!(paths.contains_key(p), "missing {p}");
    }
}

#[tokio::test]
async fn unknown_route_is_json_404() {
    let s = TestServer::start(&[]).await;
    let r = s.get("/api/v1/nope", "alice").send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.json::<Value>().await.unwrap()["detail"].is_string());
}

#[tokio::test]
async fn supabase_mode_keeps_history_in_the_project_across_servers() {
    let a = TestServer::start_in(common::Mode::Supabase, &[]).await;
    let b = TestServer::start_with(a.project.clone(), &[]).await;
    let info: Value = b
        .http
        .get(b.url("/"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["mode"], "supabase");

    // Written through one server, read through another: the history lives in the project.
    let chat = seed_chat(&a, "alice", "roaming", &["hello", "hi there"]).await;
    let detail: Value = b
        .get(&format!("/api/v1/chats/{chat}"), "alice")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(detail["title"], "roaming");
    assert_eq!(detail["messages"].as_array().unwrap().len(), 2);
    let r = b
        .get(&format!("/api/v1/chats/{chat}"), "bob")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    for s in [&a, &b] {
        assert!(
            !s.data_dir.path().join("lucid.sqlite3").exists(),
            "Supabase mode keeps no SQLite database"
        );
    }
}
