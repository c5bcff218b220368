//! The chats service: a user's stored chats (one per agent session) and their messages.
//!
//! Validates input the way the original HTTP API did (`limit` 1..=100, `offset` >= 0, a
//! non-empty title) and maps "missing" and "someone else's" to the same 404. Deleting a chat
//! also removes its session's workspace directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use crate::auth::User;
use crate::error::{EngineError, EngineResult};
use crate::store::{ChatMessage, ChatSession, Store};
use crate::workspace::session_workspace;

/// Default page size of [`Chats::list`].
pub const DEFAULT_LIMIT: i64 = 50;
/// Largest page size of [`Chats::list`].
pub const MAX_LIMIT: i64 = 100;
/// Longest title accepted by [`Chats::rename`], in characters (the original's VARCHAR(255)).
pub const MAX_TITLE_CHARS: usize = 255;

const NOT_FOUND: &str = "Chat not found";

/// A chat with its messages, in the original's `GET /api/v1/chats/{id}` shape.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct ChatDetail {
    #[serde(flatten)]
    pub chat: ChatSession,
    pub messages: Vec<ChatMessage>,
}

/// The chats service over any [`Store`].
pub struct Chats {
    store: Arc<dyn Store>,
    workspace_base: PathBuf,
}

impl Chats {
    /// `workspace_base` is `WORKSPACE_BASE_PATH`, where session workspaces live.
    pub fn new(store: Arc<dyn Store>, workspace_base: PathBuf) -> Self {
        Self {
            store,
            workspace_base,
        }
    }

    /// The user's chats, most recently updated first. `limit` defaults to 50 and must be
    /// within 1..=100; `offset` defaults to 0 and must not be negative.
    pub async fn list(
        &self,
        user: &User,
        limit: Option<i64>,
        offset: Option<i64>,
    ) -> EngineResult<Vec<ChatSession>> {
        let limit = limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(EngineError::bad_request(format!(
                "'limit' must be between 1 and {MAX_LIMIT}"
            )));
        }
        let offset = offset.unwrap_or(0);
        if offset < 0 {
            return Err(EngineError::bad_request(
                "'offset' must be greater than or equal to 0",
            ));
        }
        // An offset past u32::MAX can only ever yield an empty page.
        let offset = u32::try_from(offset).unwrap_or(u32::MAX);
        Ok(self.store.list_chats(user, limit as u32, offset).await?)
    }

    /// One chat with its messages (oldest first).
    pub async fn get(&self, user: &User, chat_id: &str) -> EngineResult<ChatDetail> {
        let chat = self.find(user, chat_id).await?;
        let messages = self.store.chat_messages(user, chat_id).await?;
        Ok(ChatDetail { chat, messages })
    }

    /// Sets a chat's title (trimmed) and returns it.
    pub async fn rename(
        &self,
        user: &User,
        chat_id: &str,
        title: Option<&str>,
    ) -> EngineResult<String> {
        let title = valid_title(title)?;
        if !self.store.rename_chat(user, chat_id, title).await? {
            return Err(EngineError::not_found(NOT_FOUND));
        }
        Ok(title.to_string())
    }

    /// Deletes a chat and its messages, then its session workspace if there is one.
    /// Returns the chat as it was. A workspace that cannot be removed is logged, not fatal.
    pub async fn delete(&self, user: &User, chat_id: &str) -> EngineResult<ChatSession> {
        let chat = self.find(user, chat_id).await?;
        if !self.store.delete_chat(user, chat_id).await? {
            return Err(EngineError::not_found(NOT_FOUND));
        }
        if let Some(session_id) = chat.agent_session_id.as_deref() {
            remove_workspace(&self.workspace_base, &user.id, session_id).await;
        }
        Ok(chat)
    }

    async fn find(&self, user: &User, chat_id: &str) -> EngineResult<ChatSession> {
        self.store
            .get_chat(user, chat_id)
            .await?
            .ok_or_else(|| EngineError::not_found(NOT_FOUND))
    }
}

/// A title as [`Chats::rename`] accepts it: trimmed, not empty, at most
/// [`MAX_TITLE_CHARS`] characters.
pub fn valid_title(title: Option<&str>) -> EngineResult<&str> {
    let title = title.map(str::trim).unwrap_or_default();
    if title.is_empty() {
        return Err(EngineError::bad_request("Missing 'title'"));
    }
    if title.chars().count() > MAX_TITLE_CHARS {
        return Err(EngineError::bad_request(format!(
            "'title' must be at most {MAX_TITLE_CHARS} characters"
        )));
    }
    Ok(title)
}

/// Renames a chat like [`Chats::rename`], but only while its title is still `expected`: a
/// generated title never replaces one the user chose meanwhile. Returns whether it was set.
pub async fn rename_if_unchanged(
    store: &dyn Store,
    user: &User,
    chat_id: &str,
    expected: &str,
    title: &str,
) -> EngineResult<bool> {
    let title = valid_title(Some(title))?;
    Ok(store.rename_chat_if(user, chat_id, expected, title).await?)
}

/// Removes `<base>/<user>/<session>` if it exists. Never follows a symlink at that path
/// (the link itself is removed). Failures are logged.
async fn remove_workspace(base: &Path, user_id: &str, session_id: &str) {
    let dir = match session_workspace(base, user_id, session_id) {
        Ok(dir) => dir,
        Err(e) => {
            tracing::warn!(session_id, error = %e, "not removing the workspace of an unsafe session id");
            return;
        }
    };
    let meta = match tokio::fs::symlink_metadata(&dir).await {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => {
            tracing::warn!(path = %dir.display(), error = %e, "cannot inspect the session workspace");
            return;
        }
    };
    let result = if meta.is_dir() {
        tokio::fs::remove_dir_all(&dir).await
    } else {
        tokio::fs::remove_file(&dir).await
    };
    match result {
        Ok(()) => tracing::info!(path = %dir.display(), "removed the session workspace"),
        Err(e) => {
            tracing::warn!(path = %dir.display(), error = %e, "cannot remove the session workspace")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use crate::events::{Event, EventKind};
    use crate::store::{NewChat, SqliteStore};
    use tempfile::TempDir;

    struct Fixture {
        dir: TempDir,
        chats: Chats,
        store: Arc<dyn Store>,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&dir.path().join("lucid.sqlite3")).unwrap());
        let chats = Chats::new(store.clone(), dir.path().join("workspaces"));
        Fixture { dir, chats, store }
    }

    async fn add_chat(store: &Arc<dyn Store>, user: &User, id: &str, session: Option<&str>) {
        store
            .create_chat(
                user,
                NewChat {
                    id: id.into(),
                    agent_session_id: session.map(String::from),
                    title: Some("Build a thing".into()),
                    model_provider: Some("anthropic".into()),
                    ..NewChat::default()
                },
            )
            .await
            .unwrap();
    }

    fn kind(r: EngineResult<impl std::fmt::Debug>) -> (ErrorKind, String) {
        let e = r.unwrap_err();
        (e.kind, e.message)
    }

    #[tokio::test]
    async fn list_validates_limit_and_offset() {
        let f = fixture();
        let u = User::with_id("u1");
        for i in 0..3 {
            add_chat(&f.store, &u, &format!("c{i}"), None).await;
        }
        assert_eq!(f.chats.list(&u, None, None).await.unwrap().len(), 3);
        assert_eq!(f.chats.list(&u, Some(2), None).await.unwrap().len(), 2);
        assert_eq!(f.chats.list(&u, Some(2), Some(2)).await.unwrap().len(), 1);
        assert_eq!(
            f.chats
                .list(&u, Some(100), Some(i64::MAX))
                .await
                .unwrap()
                .len(),
            0
        );
        for bad in [0, -1, 101] {
            let (k, m) = kind(f.chats.list(&u, Some(bad), None).await);
            assert_eq!(k, ErrorKind::BadRequest);
            assert!(m.contains("limit"), "{m}");
        }
        let (k, m) = kind(f.chats.list(&u, None, Some(-1)).await);
        assert_eq!(k, ErrorKind::BadRequest);
        assert!(m.contains("offset"), "{m}");
        assert!(f
            .chats
            .list(&User::with_id("u2"), None, None)
            .await
            .unwrap()
            .is_empty());
    }

    #[tokio::test]
    async fn get_returns_the_chat_with_messages_in_the_original_shape() {
        let f = fixture();
        let u = User::with_id("u1");
        add_chat(&f.store, &u, "c1", Some("s1")).await;
        let events = [
            Event::new(
                "s1",
                1,
                EventKind::UserMessage {
                    content: "task".into(),
                    follow_up: false,
                },
            ),
            Event::new(
                "s1",
                2,
                EventKind::AssistantMessage {
                    content: "done".into(),
                },
            ),
        ];
        f.store.append_events(&u, "c1", &events).await.unwrap();
        let detail = f.chats.get(&u, "c1").await.unwrap();
        assert_eq!(detail.chat.id, "c1");
        assert_eq!(detail.messages.len(), 2);
        let v = serde_json::to_value(&detail).unwrap();
        let mut keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "agentSessionId",
                "createdAt",
                "id",
                "isActive",
                "messages",
                "modelProvider",
                "projectId",
                "title",
                "updatedAt"
            ]
        );
        assert_eq!(v["agentSessionId"], "s1");
        assert_eq!(v["projectId"], serde_json::Value::Null);
        assert_eq!(v["messages"][0]["role"], "user");
        assert_eq!(v["messages"][0]["eventType"], "InitialTask");
        assert_eq!(v["messages"][1]["content"], "done");
        assert!(v["messages"][1]["createdAt"]
            .as_str()
            .unwrap()
            .ends_with("+00:00"));

        let (k, m) = kind(f.chats.get(&u, "missing").await);
        assert_eq!((k, m.as_str()), (ErrorKind::NotFound, "Chat not found"));
        let (k, m) = kind(f.chats.get(&User::with_id("u2"), "c1").await);
        assert_eq!((k, m.as_str()), (ErrorKind::NotFound, "Chat not found"));
    }

    #[tokio::test]
    async fn rename_validates_the_title() {
        let f = fixture();
        let u = User::with_id("u1");
        add_chat(&f.store, &u, "c1", None).await;
        for missing in [None, Some(""), Some("   \n")] {
            let (k, m) = kind(f.chats.rename(&u, "c1", missing).await);
            assert_eq!((k, m.as_str()), (ErrorKind::BadRequest, "Missing 'title'"));
        }
        let long = "é".repeat(256);
        let (k, m) = kind(f.chats.rename(&u, "c1", Some(&long)).await);
        assert_eq!(k, ErrorKind::BadRequest);
        assert!(m.contains("255"), "{m}");
        // 255 two-byte characters are fine: the limit counts characters.
        let max = "é".repeat(255);
        assert_eq!(f.chats.rename(&u, "c1", Some(&max)).await.unwrap(), max);
        assert_eq!(
            f.chats
                .rename(&u, "c1", Some("  New title "))
                .await
                .unwrap(),
            "New title"
        );
        assert_eq!(
            f.chats.get(&u, "c1").await.unwrap().chat.title.as_deref(),
            Some("New title")
        );
        let (k, m) = kind(f.chats.rename(&u, "nope", Some("x")).await);
        assert_eq!((k, m.as_str()), (ErrorKind::NotFound, "Chat not found"));
        let (k, _) = kind(f.chats.rename(&User::with_id("u2"), "c1", Some("x")).await);
        assert_eq!(k, ErrorKind::NotFound);
        assert_eq!(
            f.chats.get(&u, "c1").await.unwrap().chat.title.as_deref(),
            Some("New title")
        );
    }

    #[tokio::test]
    async fn delete_removes_the_chat_and_its_workspace_only() {
        let f = fixture();
        let (u, other) = (User::with_id("u1"), User::with_id("u2"));
        add_chat(&f.store, &u, "c1", Some("s1")).await;
        add_chat(&f.store, &u, "c2", Some("s2")).await;
        let base = f.dir.path().join("workspaces");
        let ws1 = session_workspace(&base, "u1", "s1").unwrap();
        let ws2 = session_workspace(&base, "u1", "s2").unwrap();
        for ws in [&ws1, &ws2] {
            std::fs::create_dir_all(ws.join("src")).unwrap();
            std::fs::write(ws.join("src/main.py"), "print(1)").unwrap();
        }

        // Another user cannot delete it, and nothing is removed.
        let (k, _) = kind(f.chats.delete(&other, "c1").await);
        assert_eq!(k, ErrorKind::NotFound);
        assert!(ws1.exists());

        let deleted = f.chats.delete(&u, "c1").await.unwrap();
        assert_eq!(deleted.id, "c1");
        assert_eq!(deleted.agent_session_id.as_deref(), Some("s1"));
        assert!(!ws1.exists());
        assert!(ws2.join("src/main.py").exists());
        let (k, m) = kind(f.chats.get(&u, "c1").await);
        assert_eq!((k, m.as_str()), (ErrorKind::NotFound, "Chat not found"));
        let (k, _) = kind(f.chats.delete(&u, "c1").await);
        assert_eq!(k, ErrorKind::NotFound);
    }

    #[tokio::test]
    async fn delete_survives_missing_or_unsafe_workspaces_and_never_follows_links() {
        let f = fixture();
        let u = User::with_id("u1");
        add_chat(&f.store, &u, "no-session", None).await;
        add_chat(&f.store, &u, "no-dir", Some("s-never-created")).await;
        add_chat(&f.store, &u, "unsafe", Some("../../etc")).await;
        add_chat(&f.store, &u, "linked", Some("s-link")).await;
        let outside = f.dir.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("keep.txt"), "keep").unwrap();
        let link = session_workspace(&f.dir.path().join("workspaces"), "u1", "s-link").unwrap();
        std::fs::create_dir_all(link.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(&outside, &link).unwrap();

        for id in ["no-session", "no-dir", "unsafe", "linked"] {
            assert_eq!(f.chats.delete(&u, id).await.unwrap().id, id);
        }
        assert!(
            std::fs::symlink_metadata(&link).is_err(),
            "the link is gone"
        );
        assert_eq!(
            std::fs::read_to_string(outside.join("keep.txt")).unwrap(),
            "keep"
        );
        assert!(f.chats.list(&u, None, None).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_locked_database_is_reported_as_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lucid.sqlite3");
        let store: Arc<dyn Store> = Arc::new(
            SqliteStore::open_with(
                &path,
                crate::store::sqlite::SqliteOptions {
                    busy_timeout: std::time::Duration::from_millis(50),
                    readers: 1,
                },
            )
            .unwrap(),
        );
        let u = User::with_id("u1");
        add_chat(&store, &u, "c1", None).await;
        let chats = Chats::new(store, dir.path().join("workspaces"));
        let other = rusqlite::Connection::open(&path).unwrap();
        other.execute_batch("BEGIN EXCLUSIVE").unwrap();
        let (k, m) = kind(chats.rename(&u, "c1", Some("x")).await);
        assert_eq!(k, ErrorKind::Unavailable);
        assert!(
            !m.contains("lucid.sqlite3"),
            "no internals in the message: {m}"
        );
        // WAL readers are not blocked by the writer's lock.
        assert_eq!(chats.list(&u, None, None).await.unwrap().len(), 1);
        other.execute_batch("ROLLBACK").unwrap();
        assert_eq!(chats.rename(&u, "c1", Some("x")).await.unwrap(), "x");
    }

    #[test]
    fn openapi_schema_describes_the_flattened_chat_and_its_messages() {
        let detail = serde_json::to_value(<ChatDetail as utoipa::PartialSchema>::schema()).unwrap();
        let text = detail.to_string();
        assert!(text.contains("#/components/schemas/ChatSession"), "{text}");
        assert!(text.contains("#/components/schemas/ChatMessage"), "{text}");
        assert_eq!(detail["allOf"][1]["required"][0], "messages");
        let chat = serde_json::to_value(<ChatSession as utoipa::PartialSchema>::schema())
            .unwrap()
            .to_string();
        for field in ["agentSessionId", "isActive", "createdAt", "updatedAt"] {
            assert!(chat.contains(field), "{field} missing from {chat}");
        }
        assert!(!chat.contains("userId"), "private fields stay out: {chat}");
    }
}
