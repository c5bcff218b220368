//! Tests of the SQLite store against real database files in temporary directories.

use std::time::Duration;

use chrono::{TimeZone, Utc};
use tempfile::TempDir;

use super::*;
use crate::events::{EventKind, SessionStatus};

fn user(id: &str) -> User {
    User::with_id(id)
}

fn open_tmp() -> (TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("data").join("lucid.sqlite3")).unwrap();
    (dir, store)
}

fn new_chat(id: &str, session: &str) -> NewChat {
    NewChat {
        id: id.into(),
        agent_session_id: Some(session.into()),
        project_id: Some("proj".into()),
        title: Some(format!("title of {id}")),
        model_provider: Some("anthropic".into()),
        model: Some("claude".into()),
        repo_url: Some("https://example.invalid/r.git".into()),
        branch: Some("main".into()),
    }
}

fn assistant(session: &str, seq: u64, text: &str) -> Event {
    Event::new(
        session,
        seq,
        EventKind::AssistantMessage {
            content: text.into(),
        },
    )
}

fn raw(store: &SqliteStore) -> Connection {
    Connection::open(store.path()).unwrap()
}

async fn pause() {
    tokio::time::sleep(Duration::from_millis(3)).await;
}

#[tokio::test]
async fn chat_crud_round_trip() {
    let (_d, store) = open_tmp();
    let u = user("u1");
    let created = store.create_chat(&u, new_chat("c1", "s1")).await.unwrap();
    assert!(created.is_active);
    assert_eq!(created.user_id, "u1");
    let got = store.get_chat(&u, "c1").await.unwrap().unwrap();
    assert_eq!(got, created);

    pause().await;
    assert!(store.rename_chat(&u, "c1", "New name").await.unwrap());
    let renamed = store.get_chat(&u, "c1").await.unwrap().unwrap();
    assert_eq!(renamed.title.as_deref(), Some("New name"));
    assert!(renamed.updated_at > created.updated_at);
    assert_eq!(renamed.created_at, created.created_at);

    store.set_chat_active(&u, "c1", false).await.unwrap();
    assert!(!store.get_chat(&u, "c1").await.unwrap().unwrap().is_active);

    let dup = store.create_chat(&u, new_chat("c1", "s9")).await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");

    assert!(store.delete_chat(&u, "c1").await.unwrap());
    assert!(store.get_chat(&u, "c1").await.unwrap().is_none());
    assert!(!store.delete_chat(&u, "c1").await.unwrap());
    assert!(!store.rename_chat(&u, "c1", "x").await.unwrap());
    store.ping().await.unwrap();
}

#[tokio::test]
async fn empty_chat_id_is_refused() {
    let (_d, store) = open_tmp();
    let err = store.create_chat(&user("u"), new_chat(" ", "s")).await;
    assert!(matches!(err, Err(StoreError::Database(_))));
}

#[tokio::test]
async fn data_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lucid.sqlite3");
    let u = user("u1");
    {
        let store = SqliteStore::open(&path).unwrap();
        store.create_chat(&u, new_chat("c1", "s1")).await.unwrap();
        store
            .append_events(&u, "c1", &[assistant("s1", 1, "hello")])
            .await
            .unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.last_seq(&u, "c1").await.unwrap(), 1);
    assert_eq!(store.list_chats(&u, 10, 0).await.unwrap().len(), 1);
}

#[tokio::test]
async fn chats_are_listed_most_recent_first_with_pagination() {
    let (_d, store) = open_tmp();
    let u = user("u1");
    for i in 0..5 {
        store
            .create_chat(&u, new_chat(&format!("c{i}"), &format!("s{i}")))
            .await
            .unwrap();
        pause().await;
    }
    let ids = |chats: Vec<ChatSession>| chats.into_iter().map(|c| c.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.list_chats(&u, 50, 0).await.unwrap()),
        ["c4", "c3", "c2", "c1", "c0"]
    );
    // Touching the oldest chat moves it to the front.
    store.rename_chat(&u, "c0", "renamed").await.unwrap();
    pause().await;
    store
        .append_events(&u, "c1", &[assistant("s1", 1, "x")])
        .await
        .unwrap();
    assert_eq!(ids(store.list_chats(&u, 2, 0).await.unwrap()), ["c1", "c0"]);
    assert_eq!(ids(store.list_chats(&u, 2, 2).await.unwrap()), ["c4", "c3"]);
    assert_eq!(ids(store.list_chats(&u, 2, 4).await.unwrap()), ["c2"]);
    assert!(store.list_chats(&u, 2, 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn chat_by_session_finds_the_latest_chat_of_a_session() {
    let (_d, store) = open_tmp();
    let u = user("u1");
    store.create_chat(&u, new_chat("old", "s1")).await.unwrap();
    pause().await;
    store.create_chat(&u, new_chat("new", "s1")).await.unwrap();
    let found = store.chat_by_session(&u, "s1").await.unwrap().unwrap();
    assert_eq!(found.id, "new");
    assert!(store.chat_by_session(&u, "s2").await.unwrap().is_none());
}

#[tokio::test]
async fn messages_come_back_in_seq_order_with_their_fields() {
    let (_d, store) = open_tmp();
    let u = user("u1");
    store.create_chat(&u, new_chat("c1", "s1")).await.unwrap();
    let ts = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap()
        + chrono::Duration::microseconds(123_456);
    let mut first = Event::new(
        "s1",
        1,
        EventKind::UserMessage {
            content: "do it".into(),
            follow_up: false,
        },
    );
    first.timestamp = ts;
    let run = Event::new(
        "s1",
        2,
        EventKind::CommandRun {
            call_id: "k".into(),
            command: "ls".into(),
        },
    );
    let status = Event::new(
        "s1",
        3,
        EventKind::Status {
            status: SessionStatus::Running,
            message: "running".into(),
        },
    );
    // Stored out of order, in two batches.
    store
        .append_events(&u, "c1", &[status.clone(), first.clone()])
        .await
        .unwrap();
    store
        .append_events(&u, "c1", std::slice::from_ref(&run))
        .await
        .unwrap();

    let messages = store.chat_messages(&u, "c1").await.unwrap();
    let seqs: Vec<_> = messages.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, [Some(1), Some(2), Some(3)]);
    let m = &messages[0];
    assert_eq!(m.role, "user");
    assert_eq!(m.content, "do it");
    assert_eq!(m.event_type.as_deref(), Some("InitialTask"));
    assert_eq!(m.metadata_json.as_ref(), Some(&first.metadata()));
    assert_eq!(m.created_at, ts);
    assert_eq!(messages[1].role, "assistant");
    assert_eq!(messages[1].event_type.as_deref(), Some("CmdRunAction"));
    assert_eq!(messages[2].role, "system");

    let v = serde_json::to_value(m).unwrap();
    let mut keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "content",
            "createdAt",
            "eventType",
            "id",
            "metadataJson",
            "role"
        ]
    );
    assert_eq!(v["createdAt"], "2024-01-01T00:00:00.123456+00:00");
}

#[tokio::test]
async fn chat_json_has_the_original_shape() {
    let (_d, store) = open_tmp();
    let chat = store
        .create_chat(&user("u1"), new_chat("c1", "s1"))
        .await
        .unwrap();
    let v = serde_json::to_value(&chat).unwrap();
    let mut keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "agentSessionId",
            "createdAt",
            "id",
            "isActive",
            "modelProvider",
            "projectId",
            "title",
            "updatedAt"
        ]
    );
    assert!(v["createdAt"].as_str().unwrap().ends_with("+00:00"));
    assert_eq!(v["isActive"], true);
}

#[tokio::test]
async fn append_is_idempotent_per_seq() {
    let (_d, store) = open_tmp();
    let u = user("u1");
    store.create_chat(&u, new_chat("c1", "s1")).await.unwrap();
    let batch: Vec<Event> = (1..=10)
        .map(|i| assistant("s1", i, &format!("m{i}")))
        .collect();
    store.append_events(&u, "c1", &batch).await.unwrap();
    // A retried batch (with different text) plus two new events.
    let retry: Vec<Event> = (1..=12)
        .map(|i| assistant("s1", i, &format!("retry{i}")))
        .collect();
    store.append_events(&u, "c1", &retry).await.unwrap();
    let messages = store.chat_messages(&u, "c1").await.unwrap();
    assert_eq!(messages.len(), 12);
    assert_eq!(messages[0].content, "m1");
    assert_eq!(messages[9].content, "m10");
    assert_eq!(messages[10].content, "retry11");
    assert_eq!(store.last_seq(&u, "c1").await.unwrap(), 12);
    // An empty batch is fine.
    store.append_events(&u, "c1", &[]).await.unwrap();
}

#[tokio::test]
async fn events_since_replays_the_log() {
    let (_d, store) = open_tmp();
    let u = user("u1");
    store
        .create_chat(&u, new_chat("c1", "agent-1"))
        .await
        .unwrap();
    assert_eq!(store.last_seq(&u, "c1").await.unwrap(), 0);
    let events: Vec<Event> = (1..=20)
        .map(|i| {
            let mut e = Event::new(
                "agent-1",
                i,
                EventKind::CommandOutput {
                    call_id: format!("c{i}"),
                    command: "echo".into(),
                    output: format!("out {i} ✓"),
                    exit_code: Some(i as i64 % 2),
                    total_bytes: 7,
                    timed_out: false,
                    interrupted: i == 3,
                },
            );
            e.timestamp = crate::store::sqlite::timestamps::truncate_to_micros(e.timestamp);
            e
        })
        .collect();
    store.append_events(&u, "c1", &events).await.unwrap();
    assert_eq!(store.last_seq(&u, "c1").await.unwrap(), 20);

    let got = store.events_since(&u, "c1", 5, 10).await.unwrap();
    assert_eq!(got.len(), 10);
    assert_eq!(got, events[5..15].to_vec());
    assert!(store
        .events_since(&u, "c1", 20, 10)
        .await
        .unwrap()
        .is_empty());
    assert!(store.events_since(&u, "c1", 0, 0).await.unwrap().is_empty());
    assert_eq!(store.events_since(&u, "c1", 0, 100).await.unwrap(), events);
    assert_eq!(
        store.events_since(&u, "c1", u64::MAX, 100).await.unwrap(),
        Vec::<Event>::new()
    );
    // Unknown chat: nothing, not an error.
    assert!(store
        .events_since(&u, "nope", 0, 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.last_seq(&u, "nope").await.unwrap(), 0);
}

#[tokio::test]
async fn huge_content_is_capped_but_the_event_is_kept_whole() {
    let (_d, store) = open_tmp();
    let u = user("u1");
    store.create_chat(&u, new_chat("c1", "s1")).await.unwrap();
    // 3-byte characters: 1 MiB is not a multiple of 3, so the cut must step back.
    let text = "€".repeat(700_000);
    let mut e = assistant("s1", 1, &text);
    e.timestamp = crate::store::sqlite::timestamps::truncate_to_micros(e.timestamp);
    store.append_events(&u, "c1", &[e.clone()]).await.unwrap();
    let m = &store.chat_messages(&u, "c1").await.unwrap()[0];
    assert!(m.content.len() <= events::MAX_CONTENT_BYTES);
    assert!(m.content.len() > events::MAX_CONTENT_BYTES - 3);
    assert!(m.content.chars().all(|c| c == '€'));
    assert_eq!(store.events_since(&u, "c1", 0, 10).await.unwrap(), vec![e]);
}

#[tokio::test]
async fn seq_beyond_sqlite_integers_is_a_clear_error_and_writes_nothing() {
    let (_d, store) = open_tmp();
    let u = user("u1");
    store.create_chat(&u, new_chat("c1", "s1")).await.unwrap();
    let batch = [assistant("s1", 1, "ok"), assistant("s1", u64::MAX, "bad")];
    let err = store.append_events(&u, "c1", &batch).await.unwrap_err();
    assert!(err.to_string().contains("out of range"), "{err}");
    assert!(store.chat_messages(&u, "c1").await.unwrap().is_empty());
}

#[tokio::test]
async fn users_never_see_each_others_rows() {
    let (_d, store) = open_tmp();
    let (a, b) = (user("alice"), user("bob"));
    store.create_chat(&a, new_chat("ca", "sa")).await.unwrap();
    store
        .append_events(&a, "ca", &[assistant("sa", 1, "secret")])
        .await
        .unwrap();
    store
        .upsert_integration(&a, integration("GITHUB", "tok-a"))
        .await
        .unwrap();

    assert!(store.get_chat(&b, "ca").await.unwrap().is_none());
    assert!(store.list_chats(&b, 50, 0).await.unwrap().is_empty());
    assert!(store.chat_by_session(&b, "sa").await.unwrap().is_none());
    assert!(store.chat_messages(&b, "ca").await.unwrap().is_empty());
    assert!(store
        .events_since(&b, "ca", 0, 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.last_seq(&b, "ca").await.unwrap(), 0);
    assert!(!store.rename_chat(&b, "ca", "pwned").await.unwrap());
    assert!(!store.delete_chat(&b, "ca").await.unwrap());
    store.set_chat_active(&b, "ca", false).await.unwrap();
    let err = store
        .append_events(&b, "ca", &[assistant("sa", 2, "forged")])
        .await;
    assert!(matches!(err, Err(StoreError::ChatNotFound(_))), "{err:?}");
    // Bob's error reads exactly like a missing chat's.
    let missing = store
        .append_events(&b, "zz", &[assistant("sa", 2, "forged")])
        .await
        .unwrap_err();
    assert_eq!(
        err.unwrap_err().to_string().replace("chat ca ", "chat zz "),
        missing.to_string()
    );
    assert!(store.get_integration(&b, "GITHUB").await.unwrap().is_none());
    assert!(store.list_integrations(&b).await.unwrap().is_empty());
    assert!(!store.delete_integration(&b, "GITHUB").await.unwrap());
    // Bob saving his own token does not touch Alice's.
    store
        .upsert_integration(&b, integration("GITHUB", "tok-b"))
        .await
        .unwrap();

    // Alice's data is intact.
    let chat = store.get_chat(&a, "ca").await.unwrap().unwrap();
    assert_eq!(chat.title.as_deref(), Some("title of ca"));
    assert!(chat.is_active);
    let messages = store.chat_messages(&a, "ca").await.unwrap();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].content, "secret");
    let tok = store.get_integration(&a, "GITHUB").await.unwrap().unwrap();
    assert_eq!(tok.access_token_encrypted, "tok-a");
    assert_eq!(tok.user_id, "alice");
}

#[tokio::test]
async fn deleting_a_chat_deletes_its_messages() {
    let (_d, store) = open_tmp();
    let u = user("u1");
    store.create_chat(&u, new_chat("c1", "s1")).await.unwrap();
    store
        .append_events(&u, "c1", &[assistant("s1", 1, "x")])
        .await
        .unwrap();
    assert!(store.delete_chat(&u, "c1").await.unwrap());
    let left: i64 = raw(&store)
        .query_row("SELECT count(*) FROM chat_messages", [], |r| r.get(0))
        .unwrap();
    assert_eq!(left, 0);
}

#[tokio::test]
async fn deactivate_all_chats_clears_every_users_active_flag() {
    let (_d, store) = open_tmp();
    let (a, b) = (user("a"), user("b"));
    store.create_chat(&a, new_chat("a1", "s1")).await.unwrap();
    store.create_chat(&a, new_chat("a2", "s2")).await.unwrap();
    store.create_chat(&b, new_chat("b1", "s3")).await.unwrap();
    store.set_chat_active(&a, "a2", false).await.unwrap();
    let before = store.get_chat(&a, "a1").await.unwrap().unwrap();
    assert_eq!(store.deactivate_all_chats().await.unwrap(), 2);
    for (u, id) in [(&a, "a1"), (&a, "a2"), (&b, "b1")] {
        assert!(!store.get_chat(u, id).await.unwrap().unwrap().is_active);
    }
    let after = store.get_chat(&a, "a1").await.unwrap().unwrap();
    assert_eq!(after.updated_at, before.updated_at);
    assert_eq!(store.deactivate_all_chats().await.unwrap(), 0);
}

fn integration(provider: &str, token: &str) -> IntegrationRow {
    IntegrationRow {
        id: String::new(),
        user_id: "ignored".into(),
        provider: provider.into(),
        label: Some("me (github)".into()),
        access_token_encrypted: token.into(),
        iv: "00112233445566778899aabbccddeeff".into(),
        external_username: Some("me".into()),
        scopes: Some("repo,workflow".into()),
        created_at: crate::store::sqlite::timestamps::now_micros(),
    }
}

#[tokio::test]
async fn integrations_upsert_replaces_the_token_and_keeps_identity() {
    let (_d, store) = open_tmp();
    let u = user("u1");
    let id = store
        .upsert_integration(&u, integration("GITHUB", "t1"))
        .await
        .unwrap();
    let first = store.get_integration(&u, "GITHUB").await.unwrap().unwrap();
    assert_eq!(first.id, id);
    assert_eq!(first.user_id, "u1");
    pause().await;
    let mut replacement = integration("GITHUB", "t2");
    replacement.external_username = Some("other".into());
    let id2 = store.upsert_integration(&u, replacement).await.unwrap();
    assert_eq!(id2, id);
    let second = store.get_integration(&u, "GITHUB").await.unwrap().unwrap();
    assert_eq!(second.access_token_encrypted, "t2");
    assert_eq!(second.external_username.as_deref(), Some("other"));
    assert_eq!(second.created_at, first.created_at);

    pause().await;
    let mut gl = integration("GITLAB", "t3");
    gl.id = "fixed-id".into();
    assert_eq!(store.upsert_integration(&u, gl).await.unwrap(), "fixed-id");
    let providers: Vec<_> = store
        .list_integrations(&u)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.provider)
        .collect();
    assert_eq!(providers, ["GITHUB", "GITLAB"]);
    assert!(store.delete_integration(&u, "GITHUB").await.unwrap());
    assert!(!store.delete_integration(&u, "GITHUB").await.unwrap());
    assert!(store.get_integration(&u, "GITHUB").await.unwrap().is_none());
    assert_eq!(store.list_integrations(&u).await.unwrap().len(), 1);
}

#[tokio::test]
async fn damaged_rows_do_not_hide_the_rest_of_the_history() {
    let (_d, store) = open_tmp();
    let u = user("u1");
    for i in 0..3 {
        store
            .create_chat(&u, new_chat(&format!("c{i}"), &format!("s{i}")))
            .await
            .unwrap();
    }
    let events: Vec<Event> = (1..=5)
        .map(|i| assistant("s0", i, &format!("m{i}")))
        .collect();
    store.append_events(&u, "c0", &events).await.unwrap();
    store
        .upsert_integration(&u, integration("GITHUB", "t"))
        .await
        .unwrap();
    store
        .upsert_integration(&u, integration("GITLAB", "t"))
        .await
        .unwrap();

    let conn = raw(&store);
    conn.execute_batch(
        "UPDATE chat_sessions SET created_at = 'not a time', is_active = NULL, title = 42 WHERE id = 'c1';
         UPDATE chat_sessions SET updated_at = NULL, project_id = X'FF00' WHERE id = 'c2';
         UPDATE chat_messages SET metadata_json = '{broken' WHERE seq = 2;
         UPDATE chat_messages SET created_at = NULL, event_type = 3.5 WHERE seq = 3;
         UPDATE chat_messages SET content = X'C3' WHERE seq = 4;
         UPDATE chat_messages SET metadata_json = '\"a string\"', role = 'user' WHERE seq = 5;
         UPDATE integrations SET created_at = 'garbage', label = NULL WHERE provider = 'GITLAB';",
    )
    .unwrap();

    let chats = store.list_chats(&u, 50, 0).await.unwrap();
    assert_eq!(chats.len(), 3);
    let c1 = chats.iter().find(|c| c.id == "c1").unwrap();
    assert_eq!(c1.created_at, chrono::DateTime::UNIX_EPOCH);
    assert!(!c1.is_active);
    assert_eq!(c1.title.as_deref(), Some("42"));
    // A NULL updated_at sorts last.
    assert_eq!(chats.last().unwrap().id, "c2");
    assert_eq!(
        chats.last().unwrap().updated_at,
        chrono::DateTime::UNIX_EPOCH
    );
    assert!(store.get_chat(&u, "c2").await.unwrap().is_some());

    let messages = store.chat_messages(&u, "c0").await.unwrap();
    assert_eq!(messages.len(), 5);
    assert_eq!(messages[1].metadata_json, None);
    assert_eq!(messages[1].content, "m2");
    assert_eq!(messages[2].created_at, chrono::DateTime::UNIX_EPOCH);
    assert_eq!(messages[2].event_type.as_deref(), Some("3.5"));
    assert_eq!(messages[3].content, "\u{FFFD}");

    // The event log keeps every seq; unreadable metadata is rebuilt from the text.
    let replay = store.events_since(&u, "c0", 0, 100).await.unwrap();
    let seqs: Vec<u64> = replay.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5]);
    assert_eq!(replay[0], {
        let mut e = events[0].clone();
        e.timestamp = crate::store::sqlite::timestamps::truncate_to_micros(e.timestamp);
        e
    });
    assert_eq!(
        replay[1].kind,
        EventKind::AssistantMessage {
            content: "m2".into()
        }
    );
    assert_eq!(replay[2].timestamp, chrono::DateTime::UNIX_EPOCH);
    assert_eq!(
        replay[4].kind,
        EventKind::UserMessage {
            content: "m5".into(),
            follow_up: false
        }
    );
    assert_eq!(replay[4].session_id, "s0");

    let integrations = store.list_integrations(&u).await.unwrap();
    assert_eq!(integrations.len(), 2);
    let gl = store.get_integration(&u, "GITLAB").await.unwrap().unwrap();
    assert_eq!(gl.label, None);
    assert_eq!(gl.created_at, chrono::DateTime::UNIX_EPOCH);

    // A corrupt seq is skipped by the log readers instead of breaking them.
    conn.execute("UPDATE chat_messages SET seq = 'x' WHERE seq = 5", [])
        .unwrap();
    assert_eq!(store.last_seq(&u, "c0").await.unwrap(), 4);
    assert_eq!(store.events_since(&u, "c0", 0, 100).await.unwrap().len(), 4);
    assert_eq!(store.chat_messages(&u, "c0").await.unwrap().len(), 5);
}

#[tokio::test]
async fn reads_do_not_wait_behind_an_open_write_transaction() {
    let (_d, store) = open_tmp();
    let u = user("u1");
    store.create_chat(&u, new_chat("c1", "s1")).await.unwrap();
    let inner = store.inner.clone();
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let writer = std::thread::spawn(move || {
        let mut conn = lock(&inner.writer);
        let tx = conn.transaction().unwrap();
        tx.execute(
            "INSERT INTO chat_sessions (id, user_id, created_at, updated_at) \
             VALUES ('c2', 'u1', '2030-01-01T00:00:00.000000Z', '2030-01-01T00:00:00.000000Z')",
            [],
        )
        .unwrap();
        locked_tx.send(()).unwrap();
        release_rx.recv().unwrap();
        tx.commit().unwrap();
    });
    locked_rx.recv().unwrap();
    let chats = tokio::time::timeout(Duration::from_secs(2), store.list_chats(&u, 50, 0))
        .await
        .expect("a read waited for the writer")
        .unwrap();
    assert_eq!(chats.len(), 1, "uncommitted rows are invisible");
    release_tx.send(()).unwrap();
    writer.join().unwrap();
    assert_eq!(store.list_chats(&u, 50, 0).await.unwrap().len(), 2);
}

/// Many queued writes (more than the blocking pool has threads) must not take every
/// blocking thread while they wait for the writer connection: reads still get one.
#[test]
fn queued_writers_leave_blocking_threads_for_reads() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (_d, store) = open_tmp();
        let u = user("u1");
        store.create_chat(&u, new_chat("c1", "s1")).await.unwrap();
        let inner = store.inner.clone();
        let (locked_tx, locked_rx) = std::sync::mpsc::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let holder = std::thread::spawn(move || {
            let _conn = lock(&inner.writer);
            locked_tx.send(()).unwrap();
            release_rx.recv().unwrap();
        });
        locked_rx.recv().unwrap();
        let writes: Vec<_> = (0..8)
            .map(|i| {
                let (store, u) = (store.clone(), u.clone());
                tokio::spawn(async move {
                    store
                        .create_chat(&u, new_chat(&format!("w{i}"), &format!("sw{i}")))
                        .await
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let chats = tokio::time::timeout(Duration::from_secs(3), store.list_chats(&u, 50, 0))
            .await
            .expect("a read found no blocking thread: queued writers hold them all")
            .unwrap();
        assert_eq!(chats.len(), 1);
        release_tx.send(()).unwrap();
        holder.join().unwrap();
        for w in writes {
            w.await.unwrap().unwrap();
        }
        assert_eq!(store.list_chats(&u, 50, 0).await.unwrap().len(), 9);
    });
}

#[tokio::test]
async fn a_locked_database_is_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lucid.sqlite3");
    let store = SqliteStore::open_with(
        &path,
        SqliteOptions {
            busy_timeout: Duration::from_millis(100),
            readers: 1,
        },
    )
    .unwrap();
    let other = Connection::open(&path).unwrap();
    other.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let err = store
        .create_chat(&user("u"), new_chat("c1", "s1"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    other.execute_batch("ROLLBACK").unwrap();
    store
        .create_chat(&user("u"), new_chat("c1", "s1"))
        .await
        .unwrap();
}

#[test]
fn unusable_paths_are_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    // The parent "directory" is a regular file.
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"x").unwrap();
    let err = SqliteStore::open(&file.join("lucid.sqlite3")).unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    // The path is a directory.
    let err = SqliteStore::open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    // Empty path.
    let err = SqliteStore::open(Path::new("")).unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    // A read-only database file (SQLite's own read-only open, effective even for root).
    let ro = dir.path().join("ro.sqlite3");
    drop(SqliteStore::open(&ro).unwrap());
    let conn = Connection::open_with_flags(&ro, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let err = conn
        .execute("CREATE TABLE t (x)", [])
        .map_err(errors::map_sqlite)
        .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    // File permissions only bind a non-root user.
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o444)).unwrap();
        let err = SqliteStore::open(&ro).unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    }
}

#[test]
fn a_file_that_is_not_a_database_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lucid.sqlite3");
    let garbage = vec![0x42u8; 8192];
    std::fs::write(&path, &garbage).unwrap();
    let err = SqliteStore::open(&path).unwrap_err();
    assert!(err.to_string().contains("not a database"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), garbage);
}

#[test]
fn a_newer_schema_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lucid.sqlite3");
    drop(SqliteStore::open(&path).unwrap());
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("PRAGMA journal_mode = DELETE; PRAGMA user_version = 99;")
            .unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    let err = SqliteStore::open(&path).unwrap_err();
    assert!(matches!(err, StoreError::Database(_)), "{err:?}");
    assert!(err.to_string().contains("newer"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), before);
    assert!(!dir.path().join("lucid.sqlite3-wal").exists());
    let backups = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains(".bak-")
        })
        .count();
    assert_eq!(backups, 0);
}

fn backups_in(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains(".bak-"))
        .collect()
}

#[tokio::test]
async fn migrating_a_populated_older_database_writes_a_backup_first() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lucid.sqlite3");
    let u = user("u1");
    {
        let v1 =
            SqliteStore::open_with_migrations(&path, SqliteOptions::default(), &MIGRATIONS[..1])
                .unwrap();
        v1.create_chat(&u, new_chat("c1", "s1")).await.unwrap();
        v1.append_events(&u, "c1", &[assistant("s1", 1, "kept")])
            .await
            .unwrap();
    }
    assert!(
        backups_in(dir.path()).is_empty(),
        "a fresh database needs no backup"
    );

    let store = SqliteStore::open(&path).unwrap();
    let backups = backups_in(dir.path());
    assert_eq!(backups.len(), 1);
    let name = backups[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(name.starts_with("lucid.sqlite3.bak-v1-"), "{name}");
    let ts: i64 = name["lucid.sqlite3.bak-v1-".len()..].parse().unwrap();
    assert!((Utc::now().timestamp() - ts).abs() < 60);

    // The backup is the old database, complete.
    let backup = Connection::open(&backups[0]).unwrap();
    let version: i64 = backup
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 1);
    let content: String = backup
        .query_row("SELECT content FROM chat_messages", [], |r| r.get(0))
        .unwrap();
    assert_eq!(content, "kept");

    // The migrated database has the data and the new table.
    assert_eq!(
        migrations::current_version(&raw(&store)).unwrap(),
        migrations::latest_version(MIGRATIONS)
    );
    assert_eq!(
        store.chat_messages(&u, "c1").await.unwrap()[0].content,
        "kept"
    );
    store
        .upsert_integration(&u, integration("GITHUB", "t"))
        .await
        .unwrap();
    drop(store);
    // Reopening an up-to-date database writes no further backup.
    drop(SqliteStore::open(&path).unwrap());
    assert_eq!(backups_in(dir.path()).len(), 1);
}

#[test]
fn a_failing_migration_leaves_the_previous_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lucid.sqlite3");
    drop(
        SqliteStore::open_with_migrations(&path, SqliteOptions::default(), &MIGRATIONS[..1])
            .unwrap(),
    );
    let broken = [
        Migration {
            version: 1,
            name: MIGRATIONS[0].name,
            sql: MIGRATIONS[0].sql,
        },
        Migration {
            version: 2,
            name: "broken",
            sql: "CREATE TABLE half_done (x); THIS IS NOT SQL;",
        },
    ];
    let err =
        SqliteStore::open_with_migrations(&path, SqliteOptions::default(), &broken).unwrap_err();
    assert!(
        err.to_string().contains("migration 2 (broken) failed"),
        "{err}"
    );
    let conn = Connection::open(&path).unwrap();
    assert_eq!(migrations::current_version(&conn).unwrap(), 1);
    let half: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name = 'half_done'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(half, 0);
}

#[tokio::test]
async fn many_concurrent_writers_and_readers_agree() {
    let (_d, store) = open_tmp();
    let u = user("u1");
    let mut tasks = Vec::new();
    for c in 0..8 {
        let store = store.clone();
        let u = u.clone();
        tasks.push(tokio::spawn(async move {
            let chat = format!("c{c}");
            store.create_chat(&u, new_chat(&chat, &chat)).await.unwrap();
            for batch in 0..5u64 {
                let events: Vec<Event> = (1..=50)
                    .map(|i| assistant(&chat, batch * 50 + i, "x"))
                    .collect();
                store.append_events(&u, &chat, &events).await.unwrap();
                assert_eq!(store.last_seq(&u, &chat).await.unwrap(), batch * 50 + 50);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(store.list_chats(&u, 100, 0).await.unwrap().len(), 8);
    let total: i64 = raw(&store)
        .query_row("SELECT count(*) FROM chat_messages", [], |r| r.get(0))
        .unwrap();
    assert_eq!(total, 8 * 250);
}
