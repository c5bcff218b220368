//! Persistence behind one interface: the embedded SQLite store ([`sqlite`], local mode) and
//! the Supabase store over PostgREST ([`supabase`], Supabase mode). Every method takes the calling [`User`] and only
//! ever touches that user's rows.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use thiserror::Error;

use crate::auth::User;
use crate::events::Event;

pub mod sqlite;
pub mod supabase;

pub use sqlite::SqliteStore;
pub use supabase::SupabaseStore;

#[derive(Debug, Error)]
pub enum StoreError {
    /// The database cannot be reached or written (disk full, locked, server down).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A migration or a schema invariant failed.
    #[error("database error: {0}")]
    Database(String),
    /// A unique constraint was violated.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The chat written to does not exist (any more) for this user, e.g. it was deleted
    /// under a running session. Retrying cannot succeed.
    #[error("{0}")]
    ChatNotFound(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A chat (one agent session's history), in the original's JSON shape.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct ChatSession {
    pub id: String,
    #[serde(skip)]
    pub user_id: String,
    pub agent_session_id: Option<String>,
    pub project_id: Option<String>,
    pub title: Option<String>,
    pub model_provider: Option<String>,
    pub is_active: bool,
    #[schema(value_type = String)]
    #[serde(serialize_with = "crate::store::sqlite::timestamps::serialize_postgrest")]
    #[specta(type = String)]
    pub created_at: DateTime<Utc>,
    #[schema(value_type = String)]
    #[serde(serialize_with = "crate::store::sqlite::timestamps::serialize_postgrest")]
    #[specta(type = String)]
    pub updated_at: DateTime<Utc>,
    /// Repository the session works on (not part of the original's JSON).
    #[serde(skip)]
    pub repo_url: Option<String>,
    #[serde(skip)]
    pub branch: Option<String>,
    #[serde(skip)]
    pub model: Option<String>,
}

/// What is needed to create a chat row.
#[derive(Debug, Clone, Default)]
pub struct NewChat {
    /// Chat id (a UUID chosen by the caller).
    pub id: String,
    pub agent_session_id: Option<String>,
    pub project_id: Option<String>,
    pub title: Option<String>,
    pub model_provider: Option<String>,
    pub model: Option<String>,
    pub repo_url: Option<String>,
    pub branch: Option<String>,
}

/// One stored message of a chat: an event of the session's log.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct ChatMessage {
    pub id: String,
    pub role: String,
    pub content: String,
    pub event_type: Option<String>,
    pub metadata_json: Option<Value>,
    #[schema(value_type = String)]
    #[serde(serialize_with = "crate::store::sqlite::timestamps::serialize_postgrest")]
    #[specta(type = String)]
    pub created_at: DateTime<Utc>,
    /// Position in the session's event log (not part of the original's JSON).
    #[serde(skip)]
    pub seq: Option<u64>,
}

/// A stored forge token (encrypted) in the original's column layout.
#[derive(Debug, Clone, PartialEq)]
pub struct IntegrationRow {
    pub id: String,
    pub user_id: String,
    /// `GITHUB` or `GITLAB`.
    pub provider: String,
    pub label: Option<String>,
    pub access_token_encrypted: String,
    pub iv: String,
    pub external_username: Option<String>,
    pub scopes: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[async_trait]
pub trait Store: Send + Sync {
    // ---- chats ----
    async fn create_chat(&self, user: &User, chat: NewChat) -> StoreResult<ChatSession>;
    /// The user's chats, most recently updated first.
    async fn list_chats(
        &self,
        user: &User,
        limit: u32,
        offset: u32,
    ) -> StoreResult<Vec<ChatSession>>;
    async fn get_chat(&self, user: &User, chat_id: &str) -> StoreResult<Option<ChatSession>>;
    /// Finds the chat of an agent session.
    async fn chat_by_session(
        &self,
        user: &User,
        session_id: &str,
    ) -> StoreResult<Option<ChatSession>>;
    /// Messages of a chat, oldest first (by seq, then time). Empty if the chat is not the user's.
    async fn chat_messages(&self, user: &User, chat_id: &str) -> StoreResult<Vec<ChatMessage>>;
    /// Returns false when the chat does not exist or is not the user's.
    async fn rename_chat(&self, user: &User, chat_id: &str, title: &str) -> StoreResult<bool>;
    /// Sets the title only while it is still `expected` (so a title chosen meanwhile, e.g. a
    /// user's rename, is never overwritten). Returns whether it was set. The default reads
    /// then writes; stores override it with one conditional update.
    async fn rename_chat_if(
        &self,
        user: &User,
        chat_id: &str,
        expected: &str,
        title: &str,
    ) -> StoreResult<bool> {
        match self.get_chat(user, chat_id).await? {
            Some(chat) if chat.title.as_deref() == Some(expected) => {
                self.rename_chat(user, chat_id, title).await
            }
            _ => Ok(false),
        }
    }
    /// Deletes the chat and its messages. Returns false when not found / not the user's.
    async fn delete_chat(&self, user: &User, chat_id: &str) -> StoreResult<bool>;
    async fn set_chat_active(&self, user: &User, chat_id: &str, active: bool) -> StoreResult<()>;
    /// Marks every active chat inactive (startup after a crash). Returns how many changed.
    async fn deactivate_all_chats(&self) -> StoreResult<u64>;
    /// Every user's chats marked active (`is_active`), oldest first: at startup, before
    /// [`Store::deactivate_all_chats`], the sessions a previous run left live (a chat is active
    /// while its session is live). System-level like `deactivate_all_chats`: not scoped to one
    /// user; `user_id` must be filled in.
    async fn active_chats(&self) -> StoreResult<Vec<ChatSession>>;

    // ---- event log ----
    /// Appends events to a chat's log in one transaction. Idempotent per `(chat, seq)`: an event
    /// already stored is skipped, so a retried batch never duplicates.
    async fn append_events(&self, user: &User, chat_id: &str, events: &[Event]) -> StoreResult<()>;
    /// Events with `seq > since`, oldest first, at most `limit`.
    async fn events_since(
        &self,
        user: &User,
        chat_id: &str,
        since: u64,
        limit: u32,
    ) -> StoreResult<Vec<Event>>;
    /// Highest stored seq of a chat (0 when none).
    async fn last_seq(&self, user: &User, chat_id: &str) -> StoreResult<u64>;

    // ---- integrations ----
    /// Inserts or replaces the user's token for `row.provider`; returns the row id.
    async fn upsert_integration(&self, user: &User, row: IntegrationRow) -> StoreResult<String>;
    async fn get_integration(
        &self,
        user: &User,
        provider: &str,
    ) -> StoreResult<Option<IntegrationRow>>;
    /// The user's integrations, oldest first.
    async fn list_integrations(&self, user: &User) -> StoreResult<Vec<IntegrationRow>>;
    async fn delete_integration(&self, user: &User, provider: &str) -> StoreResult<bool>;

    /// Cheap liveness check (for `/` and `lucid doctor`).
    async fn ping(&self) -> StoreResult<()>;

    /// Event batches accepted but not yet in the database (the Supabase store's outbox
    /// during an outage); 0 for stores that write synchronously.
    fn unsent_event_batches(&self) -> usize {
        0
    }
}

impl From<StoreError> for crate::error::EngineError {
    fn from(e: StoreError) -> Self {
        use crate::error::{EngineError, ErrorKind};
        tracing::error!(error = %e, "store error");
        match e {
            StoreError::Unavailable(_) => {
                EngineError::new(ErrorKind::Unavailable, "Database unavailable, try again")
            }
            StoreError::Conflict(m) => EngineError::new(ErrorKind::Conflict, m),
            StoreError::ChatNotFound(_) => EngineError::new(ErrorKind::NotFound, "Chat not found"),
            StoreError::Database(_) => EngineError::new(ErrorKind::Internal, "Database error"),
        }
    }
}
