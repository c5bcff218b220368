//! The Supabase store through HTTP against the PostgREST stand-in on a real PostgreSQL 15 with
//! Lucid's migrations and row-level security (lucid-testkit's `SupabaseProject`).

use std::sync::Arc;
use std::time::Duration;

use lucid_engine::config::SupabaseConfig;
use lucid_engine::events::{Event, EventKind};
use lucid_engine::store::supabase::SupabaseStore;
use lucid_engine::store::{IntegrationRow, NewChat, Store};
use lucid_engine::User;
use lucid_testkit::supabase::SupabaseProject;
use serde_json::{json, Value};

fn config(project: &SupabaseProject) -> SupabaseConfig {
    SupabaseConfig {
        url: project.url().to_string(),
        anon_key: project.anon_key.clone(),
        jwt_secret: project.jwt_secret.clone(),
        service_key: project.service_key.clone(),
    }
}

fn open(project: &SupabaseProject, dir: &std::path::Path) -> SupabaseStore {
    SupabaseStore::open(&config(project), dir).expect("open the Supabase store")
}

/// A signed-in user (their own access token: row-level security applies).
async fn signed_in(project: &SupabaseProject, email: &str) -> User {
    let id = project.create_user(email).await;
    User {
        raw_jwt: Some(project.token(&id, Duration::from_secs(3600))),
        email: Some(email.into()),
        id,
        token_source: None,
    }
}

fn new_chat(title: &str) -> NewChat {
    NewChat {
        id: uuid::Uuid::new_v4().to_string(),
        agent_session_id: Some(uuid::Uuid::new_v4().to_string()),
        title: Some(title.into()),
        model_provider: Some("anthropic".into()),
        model: Some("claude".into()),
        repo_url: Some("https://example.test/r.git".into()),
        branch: Some("main".into()),
        ..NewChat::default()
    }
}

fn events(session: &str, seqs: std::ops::RangeInclusive<u64>) -> Vec<Event> {
    seqs.map(|seq| {
        Event::new(
            session,
            seq,
            if seq == 1 {
                EventKind::UserMessage {
                    content: "fix the bug".into(),
                    follow_up: false,
                }
            } else {
                EventKind::AssistantMessage {
                    content: format!("step {seq}"),
                }
            },
        )
    })
    .collect()
}

fn integration(provider: &str, token: &str) -> IntegrationRow {
    IntegrationRow {
        id: String::new(),
        user_id: String::new(),
        provider: provider.into(),
        label: Some("work".into()),
        access_token_encrypted: token.into(),
        iv: "00ff".into(),
        external_username: Some("octo".into()),
        scopes: Some("repo".into()),
        created_at: chrono::Utc::now(),
    }
}

async fn stored_seqs(project: &SupabaseProject, chat_id: &str) -> Vec<i64> {
    let chat: uuid::Uuid = chat_id.parse().unwrap();
    project
        .admin()
        .query(
            "select seq from chat_messages where session_id = $1 order by seq",
            &[&chat],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<_, i64>(0))
        .collect()
}

#[tokio::test]
async fn chats_messages_events_and_integrations_round_trip_under_rls() {
    let project = SupabaseProject::start().await;
    let dir = tempfile::tempdir().unwrap();
    let store = open(&project, dir.path());
    let alice = signed_in(&project, "alice@example.test").await;

    let chat = store.create_chat(&alice, new_chat("first")).await.unwrap();
    assert!(chat.is_active);
    assert_eq!(chat.user_id, alice.id);
    let second = store.create_chat(&alice, new_chat("second")).await.unwrap();
    let session = chat.agent_session_id.clone().unwrap();

    // One request per batch.
    let before = project.rest.route_requests("POST chat_messages");
    store
        .append_events(&alice, &chat.id, &events(&session, 1..=3))
        .await
        .unwrap();
    assert_eq!(
        project.rest.route_requests("POST chat_messages"),
        before + 1
    );
    // A retried batch does not duplicate.
    store
        .append_events(&alice, &chat.id, &events(&session, 2..=5))
        .await
        .unwrap();
    assert_eq!(stored_seqs(&project, &chat.id).await, vec![1, 2, 3, 4, 5]);
    assert_eq!(store.last_seq(&alice, &chat.id).await.unwrap(), 5);

    let replay = store.events_since(&alice, &chat.id, 2, 2).await.unwrap();
    assert_eq!(replay.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![3, 4]);
    assert_eq!(replay[0].session_id, session);
    assert_eq!(
        replay[0].kind,
        EventKind::AssistantMessage {
            content: "step 3".into()
        }
    );
    let messages = store.chat_messages(&alice, &chat.id).await.unwrap();
    assert_eq!(messages.len(), 5);
    assert_eq!(messages[0].role, "user");
    assert_eq!(messages[0].content, "fix the bug");
    assert_eq!(messages[0].event_type.as_deref(), Some("InitialTask"));
    assert_eq!(messages[4].seq, Some(5));

    // The chat with events moved up; list order and paging.
    let listed = store.list_chats(&alice, 10, 0).await.unwrap();
    assert_eq!(
        listed.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
        vec![chat.id.as_str(), second.id.as_str()]
    );
    assert!(store.list_chats(&alice, 10, 50).await.unwrap().is_empty());
    let page = store.list_chats(&alice, 1, 1).await.unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].id, second.id);
    let got = store.get_chat(&alice, &chat.id).await.unwrap().unwrap();
    assert_eq!(got.repo_url.as_deref(), Some("https://example.test/r.git"));
    assert_eq!(got.model.as_deref(), Some("claude"));
    let by_session = store
        .chat_by_session(&alice, &session)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(by_session.id, chat.id);

    assert!(store
        .rename_chat(&alice, &chat.id, "renamed")
        .await
        .unwrap());
    // A conditional rename applies only while the title is what it expects (one update,
    // `title=eq.…`), with a title full of PostgREST's reserved characters.
    assert!(!store
        .rename_chat_if(&alice, &chat.id, "not the title", "generated")
        .await
        .unwrap());
    let odd = "a, (b). c=\"d\" & e";
    assert!(store
        .rename_chat_if(&alice, &chat.id, "renamed", odd)
        .await
        .unwrap());
    assert!(store
        .rename_chat_if(&alice, &chat.id, odd, "renamed")
        .await
        .unwrap());
    store
        .set_chat_active(&alice, &chat.id, false)
        .await
        .unwrap();
    let got = store.get_chat(&alice, &chat.id).await.unwrap().unwrap();
    assert_eq!(got.title.as_deref(), Some("renamed"));
    assert!(!got.is_active);

    // Integrations: one row per provider, replaced in place.
    let id = store
        .upsert_integration(&alice, integration("GITHUB", "cipher-1"))
        .await
        .unwrap();
    let again = store
        .upsert_integration(&alice, integration("GITHUB", "cipher-2"))
        .await
        .unwrap();
    assert_eq!(id, again);
    store
        .upsert_integration(&alice, integration("GITLAB", "cipher-3"))
        .await
        .unwrap();
    let github = store
        .get_integration(&alice, "GITHUB")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(github.access_token_encrypted, "cipher-2");
    assert_eq!(github.user_id, alice.id);
    let all = store.list_integrations(&alice).await.unwrap();
    assert_eq!(
        all.iter().map(|i| i.provider.as_str()).collect::<Vec<_>>(),
        vec!["GITHUB", "GITLAB"]
    );
    assert!(store.delete_integration(&alice, "GITLAB").await.unwrap());
    assert!(!store.delete_integration(&alice, "GITLAB").await.unwrap());

    assert!(store.delete_chat(&alice, &chat.id).await.unwrap());
    assert!(store.get_chat(&alice, &chat.id).await.unwrap().is_none());
    assert!(stored_seqs(&project, &chat.id).await.is_empty());
    store.ping().await.unwrap();
}

#[tokio::test]
async fn another_users_ids_read_as_missing_and_anon_sees_nothing() {
    let project = SupabaseProject::start().await;
    let dir = tempfile::tempdir().unwrap();
    let store = open(&project, dir.path());
    let alice = signed_in(&project, "a@example.test").await;
    let bob = signed_in(&project, "b@example.test").await;
    let chat = store
        .create_chat(&alice, new_chat("alice's"))
        .await
        .unwrap();
    store
        .append_events(&alice, &chat.id, &events("s", 1..=2))
        .await
        .unwrap();
    store
        .upsert_integration(&alice, integration("GITHUB", "alice-cipher"))
        .await
        .unwrap();

    // Bob, with his own token and through the service key (internal-key path) alike.
    for (name, bob) in [
        ("token", bob.clone()),
        ("service key", User::with_id(bob.id.clone())),
    ] {
        assert!(
            store.get_chat(&bob, &chat.id).await.unwrap().is_none(),
            "{name}"
        );
        assert!(
            store.list_chats(&bob, 10, 0).await.unwrap().is_empty(),
            "{name}"
        );
        assert!(
            store
                .chat_messages(&bob, &chat.id)
                .await
                .unwrap()
                .is_empty(),
            "{name}"
        );
        assert!(
            store
                .events_since(&bob, &chat.id, 0, 10)
                .await
                .unwrap()
                .is_empty(),
            "{name}"
        );
        assert_eq!(store.last_seq(&bob, &chat.id).await.unwrap(), 0, "{name}");
        assert!(
            !store.rename_chat(&bob, &chat.id, "x").await.unwrap(),
            "{name}"
        );
        assert!(!store.delete_chat(&bob, &chat.id).await.unwrap(), "{name}");
        store.set_chat_active(&bob, &chat.id, false).await.unwrap();
        assert!(
            store
                .get_integration(&bob, "GITHUB")
                .await
                .unwrap()
                .is_none(),
            "{name}"
        );
        assert!(
            !store.delete_integration(&bob, "GITHUB").await.unwrap(),
            "{name}"
        );
        let err = store
            .append_events(&bob, &chat.id, &events("s", 3..=3))
            .await
            .unwrap_err();
        assert!(
            matches!(err, lucid_engine::store::StoreError::ChatNotFound(_)),
            "{name}: {err:?}"
        );
    }
    // Ids that are not UUIDs are "not found", not errors.
    assert!(store
        .get_chat(&alice, "not-a-uuid")
        .await
        .unwrap()
        .is_none());
    assert!(!store.rename_chat(&alice, "nope", "x").await.unwrap());
    assert!(store
        .list_chats(&User::with_id("user-a"), 10, 0)
        .await
        .unwrap()
        .is_empty());
    // Nothing of Alice's changed.
    let still = store.get_chat(&alice, &chat.id).await.unwrap().unwrap();
    assert_eq!(still.title.as_deref(), Some("alice's"));
    assert!(still.is_active);
    assert_eq!(stored_seqs(&project, &chat.id).await, vec![1, 2]);

    // The anon key alone reads nothing, whatever the table.
    let http = reqwest::Client::new();
    for table in ["chat_sessions", "chat_messages", "integrations", "users"] {
        let r = http
            .get(format!("{}/rest/v1/{table}?select=*", project.url()))
            .header("apikey", &project.anon_key)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap();
        assert!(
            status == 401 || body == json!([]),
            "anon read {table}: {status} {body}"
        );
    }
}

#[tokio::test]
async fn a_database_outage_mid_session_loses_no_event_and_is_flushed_after_recovery() {
    let project = SupabaseProject::start().await;
    let dir = tempfile::tempdir().unwrap();
    let store = open(&project, dir.path());
    let alice = signed_in(&project, "a@example.test").await;
    let chat = store.create_chat(&alice, new_chat("t")).await.unwrap();
    store
        .append_events(&alice, &chat.id, &events("s", 1..=2))
        .await
        .unwrap();

    // The database goes away: batches are accepted into the outbox.
    project.rest.set_database_down(true);
    store
        .append_events(&alice, &chat.id, &events("s", 3..=4))
        .await
        .unwrap();
    store
        .append_events(&alice, &chat.id, &events("s", 5..=5))
        .await
        .unwrap();
    assert!(store.outbox_backlog() >= 1);
    assert_eq!(stored_seqs(&project, &chat.id).await, vec![1, 2]);
    let outbox = dir.path().join("supabase/outbox");
    let files = std::fs::read_dir(&outbox)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().is_file())
        .count();
    assert!(files >= 1, "the waiting batches are on disk");

    // Then the network too: the stand-in stops listening.
    project.rest.stop().await;
    store
        .append_events(&alice, &chat.id, &events("s", 6..=7))
        .await
        .unwrap();
    project.rest.restart().await;
    project.rest.set_database_down(false);

    assert!(
        store.flushed(Duration::from_secs(30)).await,
        "outbox drained"
    );
    assert_eq!(
        stored_seqs(&project, &chat.id).await,
        vec![1, 2, 3, 4, 5, 6, 7]
    );
    let replay = store.events_since(&alice, &chat.id, 0, 100).await.unwrap();
    assert_eq!(
        replay.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=7).collect::<Vec<_>>()
    );
    let left = std::fs::read_dir(&outbox)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().is_file())
        .count();
    assert_eq!(left, 0, "sent batches are removed from disk");
}

#[tokio::test]
async fn waiting_events_are_part_of_replay_while_the_database_is_down() {
    let project = SupabaseProject::start().await;
    let dir = tempfile::tempdir().unwrap();
    let store = open(&project, dir.path());
    let alice = signed_in(&project, "a@example.test").await;
    let chat = store.create_chat(&alice, new_chat("t")).await.unwrap();
    store
        .append_events(&alice, &chat.id, &events("s", 1..=2))
        .await
        .unwrap();
    // The database refuses these rows (a constraint they violate).
    project
        .admin()
        .batch_execute("alter table public.chat_messages add constraint no_three check (seq <> 3)")
        .await
        .unwrap();
    store
        .append_events(&alice, &chat.id, &events("s", 3..=4))
        .await
        .unwrap_err();
    // A refusal that is not an outage is not retried forever: the batch is set aside on disk.
    assert_eq!(store.outbox_backlog(), 0);
    let failed = dir.path().join("supabase/outbox/failed");
    assert_eq!(std::fs::read_dir(&failed).unwrap().count(), 1);
    project
        .admin()
        .batch_execute("alter table public.chat_messages drop constraint no_three")
        .await
        .unwrap();

    project.rest.set_database_down(true);
    store
        .append_events(&alice, &chat.id, &events("s", 3..=4))
        .await
        .unwrap();
    project.rest.set_database_down(false);
    // Merged with the stored ones until flushed, in order and without gaps.
    let replay = store.events_since(&alice, &chat.id, 1, 10).await.unwrap();
    assert_eq!(
        replay.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![2, 3, 4]
    );
    assert_eq!(store.last_seq(&alice, &chat.id).await.unwrap(), 4);
    assert!(store.flushed(Duration::from_secs(30)).await);
    assert_eq!(stored_seqs(&project, &chat.id).await, vec![1, 2, 3, 4]);
}

#[tokio::test]
async fn a_restart_with_a_non_empty_outbox_sends_it_with_an_ownership_check() {
    let project = SupabaseProject::start().await;
    let dir = tempfile::tempdir().unwrap();
    let alice = signed_in(&project, "a@example.test").await;
    let bob = signed_in(&project, "b@example.test").await;
    let chat = {
        let store = open(&project, dir.path());
        let chat = store.create_chat(&alice, new_chat("t")).await.unwrap();
        project.rest.set_database_down(true);
        store
            .append_events(&alice, &chat.id, &events("s", 1..=3))
            .await
            .unwrap();
        // A batch claiming Alice's chat for Bob (a tampered outbox) must not be stored.
        store
            .append_events(&bob, &chat.id, &events("s", 10..=10))
            .await
            .unwrap();
        assert_eq!(store.outbox_backlog(), 2);
        chat
    };
    // The first engine is gone (its flusher ends with it); the files stay.
    tokio::time::sleep(Duration::from_millis(100)).await;
    project.rest.set_database_down(false);
    let store = open(&project, dir.path());
    assert!(store.flushed(Duration::from_secs(30)).await);
    assert_eq!(stored_seqs(&project, &chat.id).await, vec![1, 2, 3]);
}

#[tokio::test]
async fn an_expired_user_token_falls_back_to_the_service_key_for_the_users_own_rows() {
    let project = SupabaseProject::start().await;
    let dir = tempfile::tempdir().unwrap();
    let store = open(&project, dir.path());
    let alice = signed_in(&project, "a@example.test").await;
    let chat = store.create_chat(&alice, new_chat("t")).await.unwrap();
    // A long session outlives the token it started with.
    let expired = User {
        raw_jwt: Some(project.token_expiring_at(&alice.id, chrono::Utc::now().timestamp() - 60)),
        ..alice.clone()
    };
    store
        .append_events(&expired, &chat.id, &events("s", 1..=2))
        .await
        .unwrap();
    store
        .set_chat_active(&expired, &chat.id, false)
        .await
        .unwrap();
    assert_eq!(stored_seqs(&project, &chat.id).await, vec![1, 2]);
    assert!(
        !store
            .get_chat(&alice, &chat.id)
            .await
            .unwrap()
            .unwrap()
            .is_active
    );
}

#[tokio::test]
async fn a_long_session_keeps_writing_as_its_user_with_tokens_from_its_token_source() {
    let project = SupabaseProject::start().await;
    let dir = tempfile::tempdir().unwrap();
    // This engine has no working service key: whatever it writes, it writes as the user.
    let store = SupabaseStore::open(
        &SupabaseConfig {
            service_key: "not-the-service-key".into(),
            ..config(&project)
        },
        dir.path(),
    )
    .unwrap();
    let alice = signed_in(&project, "long@example.test").await;
    let chat = store.create_chat(&alice, new_chat("t")).await.unwrap();
    // The session started with a token that has expired since; the desktop app's keeper
    // has a fresh one.
    let fresh = Arc::new(std::sync::Mutex::new(Some(
        project.token(&alice.id, Duration::from_secs(3600)),
    )));
    let source = fresh.clone();
    let session_user = User {
        raw_jwt: Some(project.token_expiring_at(&alice.id, chrono::Utc::now().timestamp() - 60)),
        token_source: Some(lucid_engine::auth::TokenSource::new(move || {
            source.lock().unwrap().clone()
        })),
        ..alice.clone()
    };
    store
        .append_events(&session_user, &chat.id, &events("s", 1..=2))
        .await
        .unwrap();
    assert_eq!(stored_seqs(&project, &chat.id).await, vec![1, 2]);
    // Without a token (the keeper signed out), the refused service key leaves the events
    // waiting in the outbox: nothing is written with another identity, nothing is lost.
    *fresh.lock().unwrap() = None;
    store
        .append_events(&session_user, &chat.id, &events("s", 3..=3))
        .await
        .unwrap();
    assert_eq!(stored_seqs(&project, &chat.id).await, vec![1, 2]);
    assert_eq!(store.outbox_backlog(), 1, "event 3 waits");
}

#[tokio::test]
async fn crash_recovery_deactivates_only_the_chats_this_engine_left_active() {
    let project = SupabaseProject::start().await;
    let alice = signed_in(&project, "a@example.test").await;
    let dir = tempfile::tempdir().unwrap();
    let other_engine = tempfile::tempdir().unwrap();
    let (mine, theirs) = {
        let store = open(&project, dir.path());
        let other = open(&project, other_engine.path());
        let mine = store.create_chat(&alice, new_chat("mine")).await.unwrap();
        let closed = store.create_chat(&alice, new_chat("closed")).await.unwrap();
        store
            .set_chat_active(&alice, &closed.id, false)
            .await
            .unwrap();
        let theirs = other.create_chat(&alice, new_chat("theirs")).await.unwrap();
        (mine, theirs)
    };
    // The engine crashed; a new one starts on the same data directory.
    let store = Arc::new(open(&project, dir.path()));
    let active = store.active_chats().await.unwrap();
    assert_eq!(
        active.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
        vec![mine.id.as_str()]
    );
    assert_eq!(store.deactivate_all_chats().await.unwrap(), 1);
    assert!(
        !store
            .get_chat(&alice, &mine.id)
            .await
            .unwrap()
            .unwrap()
            .is_active
    );
    assert!(
        store
            .get_chat(&alice, &theirs.id)
            .await
            .unwrap()
            .unwrap()
            .is_active
    );
    assert_eq!(store.deactivate_all_chats().await.unwrap(), 0);
    assert!(store.active_chats().await.unwrap().is_empty());
}

#[tokio::test]
async fn rows_written_by_the_original_engine_are_read() {
    let project = SupabaseProject::start().await;
    let dir = tempfile::tempdir().unwrap();
    let store = open(&project, dir.path());
    let alice = signed_in(&project, "a@example.test").await;
    let chat_id = uuid::Uuid::new_v4();
    let user_id: uuid::Uuid = alice.id.parse().unwrap();
    // The original's shape: no Lucid columns set, messages without seq, metadata as a JSON
    // string or absent.
    project
        .admin()
        .execute(
            "insert into chat_sessions (id, user_id, title, model_provider) values ($1, $2, 'old', null)",
            &[&chat_id, &user_id],
        )
        .await
        .unwrap();
    project
        .admin()
        .batch_execute(&format!(
            "insert into chat_messages (session_id, role, content, event_type, metadata_json, created_at) values \
             ('{chat_id}', 'user', 'hello', null, null, '2024-01-01 00:00:00+00'), \
             ('{chat_id}', 'assistant', 'hi there', 'MessageAction', to_jsonb('{{\"x\":1}}'::text), '2024-01-01 00:00:01+00'), \
             ('{chat_id}', 'assistant', 'bad meta', 'AgentErrorEvent', '{{\"unknown\":true}}', '2024-01-01 00:00:02+00')"
        ))
        .await
        .unwrap();
    let chat = store
        .get_chat(&alice, &chat_id.to_string())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(chat.title.as_deref(), Some("old"));
    assert_eq!(chat.repo_url, None);
    let messages = store
        .chat_messages(&alice, &chat_id.to_string())
        .await
        .unwrap();
    assert_eq!(
        messages
            .iter()
            .map(|m| m.content.as_str())
            .collect::<Vec<_>>(),
        vec!["hello", "hi there", "bad meta"]
    );
    assert_eq!(messages[1].metadata_json, Some(json!({"x": 1})));
    assert_eq!(messages[0].seq, None);
    // Rows without a seq are history, not part of the replayable event log.
    assert!(store
        .events_since(&alice, &chat_id.to_string(), 0, 10)
        .await
        .unwrap()
        .is_empty());
    // A new session on the old chat continues after them.
    assert_eq!(
        store.last_seq(&alice, &chat_id.to_string()).await.unwrap(),
        0
    );
    store
        .append_events(&alice, &chat_id.to_string(), &events("s", 1..=1))
        .await
        .unwrap();
    let messages = store
        .chat_messages(&alice, &chat_id.to_string())
        .await
        .unwrap();
    assert_eq!(messages.len(), 4);
    assert_eq!(messages[3].seq, Some(1));
}
