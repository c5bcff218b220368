//! The stored status of sessions that are not live, and what an engine start does about the
//! sessions a previous run left working (crash, `kill -9`, app quit): each gets an
//! `interrupted` status event, visible in its history, and can be continued like any other.

use crate::auth::User;
use crate::error::EngineResult;
use crate::events::{Event, EventKind, SessionStatus};
use crate::store::{Store, StoreResult};

/// Events looked at per step when searching the log backwards for its last status.
const WINDOW: u64 = 64;

/// What an interrupted session's history says.
pub const INTERRUPTED_MESSAGE: &str =
    "The engine stopped while the agent was working; send a message to continue the session.";

/// The status of the last `status` event of a chat's log, if it has one.
pub async fn last_stored(
    store: &dyn Store,
    user: &User,
    chat_id: &str,
) -> EngineResult<Option<SessionStatus>> {
    let mut end = store.last_seq(user, chat_id).await?;
    while end > 0 {
        let start = end.saturating_sub(WINDOW);
        let page = store
            .events_since(user, chat_id, start, (end - start) as u32)
            .await?;
        let found = page.iter().rev().find_map(|e| match &e.kind {
            EventKind::Status { status, .. } => Some(*status),
            _ => None,
        });
        if found.is_some() {
            return Ok(found);
        }
        end = start;
    }
    Ok(None)
}

/// Marks the chats a previous run left active: those whose agent was working (their last
/// status says so) get an `interrupted` status event; every one is marked inactive. Only
/// called when no other engine uses the data directory. Returns how many were interrupted.
pub async fn recover_after_restart(store: &dyn Store) -> StoreResult<usize> {
    let mut interrupted = 0;
    for chat in store.active_chats().await? {
        let user = User::with_id(chat.user_id.clone());
        let status = match last_stored(store, &user, &chat.id).await {
            Ok(status) => status,
            Err(e) => {
                tracing::warn!(chat = %chat.id, error = %e.message, "could not read a chat's status");
                None
            }
        };
        let was_working = !matches!(
            status,
            Some(
                SessionStatus::Completed
                    | SessionStatus::Stopped
                    | SessionStatus::Failed
                    | SessionStatus::Interrupted
            )
        );
        if was_working {
            let seq = store.last_seq(&user, &chat.id).await? + 1;
            let event = Event::new(
                chat.agent_session_id.clone().unwrap_or_default(),
                seq,
                EventKind::Status {
                    status: SessionStatus::Interrupted,
                    message: INTERRUPTED_MESSAGE.to_string(),
                },
            );
            store.append_events(&user, &chat.id, &[event]).await?;
            interrupted += 1;
        }
        store.set_chat_active(&user, &chat.id, false).await?;
    }
    Ok(interrupted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{NewChat, SqliteStore};

    async fn chat(store: &SqliteStore, user: &User, id: &str, statuses: &[SessionStatus]) {
        store
            .create_chat(
                user,
                NewChat {
                    id: id.into(),
                    agent_session_id: Some(format!("s-{id}")),
                    ..NewChat::default()
                },
            )
            .await
            .unwrap();
        // A status, then more than a window of other events after it.
        let mut events = Vec::new();
        for status in statuses {
            events.push(EventKind::Status {
                status: *status,
                message: String::new(),
            });
        }
        for i in 0..(WINDOW + 10) {
            events.push(EventKind::Progress {
                message: format!("p{i}"),
            });
        }
        let events: Vec<Event> = events
            .into_iter()
            .enumerate()
            .map(|(i, kind)| Event::new(format!("s-{id}"), i as u64 + 1, kind))
            .collect();
        store.append_events(user, id, &events).await.unwrap();
    }

    #[tokio::test]
    async fn working_sessions_are_marked_interrupted_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("db.sqlite3")).unwrap();
        let (a, b) = (User::with_id("a"), User::with_id("b"));
        chat(
            &store,
            &a,
            "working",
            &[SessionStatus::Ready, SessionStatus::Running],
        )
        .await;
        chat(
            &store,
            &b,
            "done",
            &[SessionStatus::Running, SessionStatus::Completed],
        )
        .await;
        chat(&store, &b, "empty", &[]).await;
        assert_eq!(
            last_stored(&store, &a, "working").await.unwrap(),
            Some(SessionStatus::Running)
        );
        assert_eq!(last_stored(&store, &b, "empty").await.unwrap(), None);
        assert_eq!(store.active_chats().await.unwrap().len(), 3);

        assert_eq!(recover_after_restart(&store).await.unwrap(), 2);
        assert_eq!(
            last_stored(&store, &a, "working").await.unwrap(),
            Some(SessionStatus::Interrupted)
        );
        assert_eq!(
            last_stored(&store, &b, "done").await.unwrap(),
            Some(SessionStatus::Completed)
        );
        let last = store.last_seq(&a, "working").await.unwrap();
        let tail = store
            .events_since(&a, "working", last - 1, 10)
            .await
            .unwrap();
        assert_eq!(tail.last().unwrap().session_id, "s-working");
        // Still active until the engine deactivates them: a second recovery adds nothing.
        assert_eq!(recover_after_restart(&store).await.unwrap(), 0);
        assert_eq!(store.last_seq(&a, "working").await.unwrap(), last);
        store.deactivate_all_chats().await.unwrap();
        assert!(store.active_chats().await.unwrap().is_empty());
    }
}
