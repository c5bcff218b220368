//! The Supabase store (Supabase mode): everything lives in the user's Supabase project and is
//! read and written through PostgREST (`{SUPABASE_URL}/rest/v1`) with `postgrest-rs`.
//!
//! - Requests for a signed-in user carry the user's access token and the anon key, so
//!   row-level security applies; the service key is used only without a valid user token
//!   (see [`rest`]), and every query filters on the caller's `user_id` whichever key it uses.
//!   Messages have no `user_id`: with the service key, the chat's ownership is checked first.
//! - Another user's id, an id that is not a UUID, or zero rows all read as "not found".
//! - Events go through an on-disk outbox ([`outbox`]): one request per batch; a batch the
//!   database cannot take now (network or database outage) stays on disk and a background
//!   flusher retries it with backoff, so nothing is lost; reads merge the batches still
//!   waiting, so replay stays complete and gap-free meanwhile.
//! - Crash recovery uses a local list of the chats this engine marked active ([`active`]).
//! - Rows written by the original engine (missing, extra or null columns) are read
//!   leniently ([`rows`]).

mod active;
mod outbox;
mod rest;
mod rows;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::{json, Value};
use tokio::sync::Notify;

use self::active::ActiveChats;
use self::outbox::{Outbox, Pending};
use self::rest::{Caller, Rest, RestError};
use self::rows::{
    chat_from_json, event_from_json, event_row, integration_from_json, message_from_json,
    CHAT_COLUMNS, INTEGRATION_COLUMNS, MESSAGE_COLUMNS,
};
use crate::auth::User;
use crate::config::SupabaseConfig;
use crate::events::Event;
use crate::store::sqlite::timestamps;
use crate::store::{
    ChatMessage, ChatSession, IntegrationRow, NewChat, Store, StoreError, StoreResult,
};

pub use self::active::ActiveChat;
pub use self::outbox::OnDisk as OutboxOnDisk;
pub use self::rest::token_expired;

/// Rows per page when reading a whole history (Supabase caps responses at 1000 rows).
const PAGE_ROWS: usize = 1000;
/// `updated_at` of a chat is bumped by its events at most this often.
const TOUCH_INTERVAL: Duration = Duration::from_secs(5);
/// Flusher backoff bounds.
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(10);

/// Tuning knobs of [`SupabaseStore::open_with`].
#[derive(Debug, Clone)]
pub struct SupabaseOptions {
    /// Timeout of one PostgREST request.
    pub request_timeout: Duration,
}

impl Default for SupabaseOptions {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(15),
        }
    }
}

/// The store. Cheap to clone; clones share the outbox and its flusher.
#[derive(Clone)]
pub struct SupabaseStore {
    inner: Arc<Inner>,
}

struct Inner {
    rest: Rest,
    outbox: Outbox,
    active: ActiveChats,
    /// Wakes the flusher when a batch is queued.
    wake: Arc<Notify>,
    /// `(user, chat)` pairs whose ownership was checked with the service key.
    verified: Mutex<HashSet<(String, String)>>,
    /// When each chat's `updated_at` was last bumped by its events.
    touched: Mutex<HashMap<String, Instant>>,
}

impl std::fmt::Debug for SupabaseStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SupabaseStore")
            .field("backlog", &self.inner.outbox.backlog())
            .finish_non_exhaustive()
    }
}

/// Why a batch could not be sent.
enum SendError {
    /// Retrying later can succeed.
    Transient(StoreError),
    /// The chat is gone or was never the user's: the batch can never be stored.
    ChatGone(String),
    /// The database refused the rows themselves.
    Refused(StoreError),
}

fn is_uuid(s: &str) -> bool {
    uuid::Uuid::parse_str(s).is_ok()
}

impl SupabaseStore {
    /// Sets a chat's title, only while it is `expected` when given. Whether a row changed.
    async fn update_title(
        &self,
        user: &User,
        chat_id: &str,
        expected: Option<&str>,
        title: &str,
    ) -> StoreResult<bool> {
        if !is_uuid(chat_id) || !is_uuid(&user.id) {
            return Ok(false);
        }
        let mut query = self
            .inner
            .rest
            .from(&Caller::for_user(user), "chat_sessions")
            .select("id")
            .eq("id", chat_id)
            .eq("user_id", &user.id);
        if let Some(expected) = expected {
            query = query.eq("title", expected);
        }
        let query = query.update(json!({ "title": title }).to_string());
        let rows = not_found_is_ok(self.inner.rest.rows(query, None).await, Vec::new())?;
        Ok(!rows.is_empty())
    }

    /// Opens the store for the project in `config`, keeping its outbox and active-chat list
    /// under `<data_dir>/supabase/`, and starts the outbox flusher (which first sends what a
    /// previous run left). Needs a Tokio runtime. Contacts no server.
    pub fn open(config: &SupabaseConfig, data_dir: &Path) -> StoreResult<SupabaseStore> {
        Self::open_with(config, data_dir, SupabaseOptions::default())
    }

    pub fn open_with(
        config: &SupabaseConfig,
        data_dir: &Path,
        options: SupabaseOptions,
    ) -> StoreResult<SupabaseStore> {
        let dir = data_dir.join("supabase");
        let outbox = Outbox::open(&Self::outbox_dir(data_dir))?;
        let active = ActiveChats::open(&dir.join("active-chats.json"));
        let rest = Rest::new(
            &config.url,
            &config.anon_key,
            &config.service_key,
            options.request_timeout,
        );
        let inner = Arc::new(Inner {
            rest,
            outbox,
            active,
            wake: Arc::new(Notify::new()),
            verified: Mutex::default(),
            touched: Mutex::default(),
        });
        tokio::spawn(flusher(Arc::downgrade(&inner), Arc::clone(&inner.wake)));
        Ok(SupabaseStore { inner })
    }

    /// The outbox directory of the store kept under `data_dir`.
    pub fn outbox_dir(data_dir: &Path) -> std::path::PathBuf {
        data_dir.join("supabase").join("outbox")
    }

    /// What the outbox under `data_dir` holds, read from disk without opening the store.
    pub fn outbox_on_disk(data_dir: &Path) -> std::io::Result<outbox::OnDisk> {
        outbox::on_disk(&Self::outbox_dir(data_dir))
    }

    /// Event batches waiting in the outbox.
    pub fn outbox_backlog(&self) -> usize {
        self.inner.outbox.backlog()
    }

    /// Waits until the outbox is empty, at most `timeout`; returns whether it is.
    pub async fn flushed(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.inner.outbox.backlog() > 0 {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }
}

impl Inner {
    async fn get_chat(
        &self,
        caller: &Caller,
        user: &User,
        chat_id: &str,
    ) -> StoreResult<Option<ChatSession>> {
        if !is_uuid(chat_id) || !is_uuid(&user.id) {
            return Ok(None);
        }
        let query = self
            .rest
            .from(caller, "chat_sessions")
            .select(CHAT_COLUMNS)
            .eq("id", chat_id)
            .eq("user_id", &user.id)
            .limit(1);
        let rows = self.rest.rows(query, None).await?;
        Ok(rows.first().map(chat_from_json))
    }

    /// Sends one batch of rows in one request. With the service key, the chat's ownership
    /// is checked first (once per chat and user).
    async fn send_batch(
        &self,
        user: &User,
        chat_id: &str,
        rows: &[Value],
    ) -> Result<(), SendError> {
        let caller = Caller::for_user(user);
        if !is_uuid(chat_id) || !is_uuid(&user.id) {
            return Err(SendError::ChatGone(format!("chat {chat_id} not found")));
        }
        if caller.is_service() {
            let key = (user.id.clone(), chat_id.to_string());
            let known = lock(&self.verified).contains(&key);
            if !known {
                match self.get_chat(&Caller::Service, user, chat_id).await {
                    Ok(Some(_)) => {
                        lock(&self.verified).insert(key);
                    }
                    Ok(None) => {
                        return Err(SendError::ChatGone(format!("chat {chat_id} not found")))
                    }
                    Err(e @ StoreError::Unavailable(_)) => return Err(SendError::Transient(e)),
                    Err(e) => return Err(SendError::Refused(e)),
                }
            }
        }
        let query = self
            .rest
            .from(&caller, "chat_messages")
            .insert(Value::Array(rows.to_vec()).to_string())
            .on_conflict("session_id,seq");
        match self
            .rest
            .send(query, Some("return=minimal,resolution=ignore-duplicates"))
            .await
        {
            Ok(_) => {
                self.touch(&caller, user, chat_id).await;
                Ok(())
            }
            Err(e) if e.is_not_owned() || e.is_invalid_value() => {
                lock(&self.verified).remove(&(user.id.clone(), chat_id.to_string()));
                Err(SendError::ChatGone(format!(
                    "cannot append events: chat {chat_id} not found ({e})"
                )))
            }
            Err(e) if e.is_transient() => Err(SendError::Transient(e.into())),
            Err(e) => Err(SendError::Refused(e.into())),
        }
    }

    /// Moves the chat up the list (`updated_at`), at most once per [`TOUCH_INTERVAL`]; best
    /// effort (the events are stored either way).
    async fn touch(&self, caller: &Caller, user: &User, chat_id: &str) {
        {
            let mut touched = lock(&self.touched);
            let now = Instant::now();
            if touched
                .get(chat_id)
                .is_some_and(|t| now.duration_since(*t) < TOUCH_INTERVAL)
            {
                return;
            }
            touched.insert(chat_id.to_string(), now);
        }
        let now = timestamps::to_db(&timestamps::now_micros());
        let query = self
            .rest
            .from(caller, "chat_sessions")
            .eq("id", chat_id)
            .eq("user_id", &user.id)
            .update(json!({ "updated_at": now }).to_string());
        if let Err(e) = self.rest.send(query, Some("return=minimal")).await {
            tracing::debug!(error = %e, "could not bump a chat's updated_at");
        }
    }

    /// Rows of the chat still waiting in the outbox (merged into reads).
    fn queued_events(&self, chat_id: &str, session_id: &str, since: u64) -> Vec<Event> {
        self.outbox
            .queued_rows(chat_id)
            .iter()
            .filter_map(|row| event_from_json(row, session_id))
            .filter(|e| e.seq > since)
            .collect()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Sends queued batches, oldest first, retrying with backoff. Ends when the store is dropped.
async fn flusher(inner: Weak<Inner>, wake: Arc<Notify>) {
    let mut delay = RETRY_MIN;
    loop {
        let Some(store) = inner.upgrade() else {
            return;
        };
        let Some(batch) = store.outbox.oldest() else {
            // Re-check now and then so a dropped store ends this task.
            let woken = wake.notified();
            drop(store);
            let _ = tokio::time::timeout(Duration::from_secs(1), woken).await;
            continue;
        };
        match store
            .send_batch(&batch.user, &batch.chat_id, &batch.rows)
            .await
        {
            Ok(()) => {
                store.outbox.remove(batch.id);
                delay = RETRY_MIN;
                tracing::debug!(chat = %batch.chat_id, "outbox batch sent");
            }
            Err(SendError::ChatGone(reason)) => {
                tracing::warn!(chat = %batch.chat_id, %reason, "dropping an outbox batch: its chat is gone");
                store.outbox.remove(batch.id);
            }
            Err(SendError::Refused(e)) => {
                tracing::error!(chat = %batch.chat_id, error = %e, "the database refused an event batch; it is kept in outbox/failed");
                store.outbox.set_aside(batch.id);
            }
            Err(SendError::Transient(e)) => {
                tracing::warn!(
                    chat = %batch.chat_id,
                    backlog = store.outbox.backlog(),
                    error = %e,
                    retry_in_ms = delay.as_millis() as u64,
                    "Supabase unavailable; event batches wait in the outbox"
                );
                drop(store);
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(RETRY_MAX);
            }
        }
    }
}

fn not_found_is_ok<T>(result: Result<T, RestError>, fallback: T) -> StoreResult<T> {
    match result {
        Ok(v) => Ok(v),
        Err(e) if e.is_invalid_value() => Ok(fallback),
        Err(e) => Err(e.into()),
    }
}

#[async_trait]
impl Store for SupabaseStore {
    async fn create_chat(&self, user: &User, chat: NewChat) -> StoreResult<ChatSession> {
        if !is_uuid(&chat.id) {
            return Err(StoreError::Database("a chat id must be a UUID".into()));
        }
        if !is_uuid(&user.id) {
            return Err(StoreError::Conflict(
                "in Supabase mode user ids are Supabase Auth user ids (UUIDs)".into(),
            ));
        }
        let caller = Caller::for_user(user);
        let body = json!({
            "id": chat.id,
            "user_id": user.id,
            "agent_session_id": chat.agent_session_id,
            "project_id": chat.project_id,
            "title": chat.title,
            "model_provider": chat.model_provider,
            "model": chat.model,
            "repo_url": chat.repo_url,
            "branch": chat.branch,
            "is_active": true,
        })
        .to_string();
        let insert = || {
            self.inner
                .rest
                .from(&caller, "chat_sessions")
                .select(CHAT_COLUMNS)
                .insert(body.clone())
        };
        let rows = match self.inner.rest.rows(insert(), None).await {
            Err(e) if e.code() == Some("23503") => {
                // The user's profile is missing (signed up before the migrations ran):
                // create it (own row only) and try once more.
                let profile = self
                    .inner
                    .rest
                    .from(&caller, "users")
                    .insert(json!({ "id": user.id, "email": user.email }).to_string())
                    .on_conflict("id");
                self.inner
                    .rest
                    .send(profile, Some("return=minimal,resolution=ignore-duplicates"))
                    .await?;
                self.inner.rest.rows(insert(), None).await?
            }
            other => other?,
        };
        let created = rows
            .first()
            .map(chat_from_json)
            .ok_or_else(|| StoreError::Database("the new chat was not returned".into()))?;
        self.inner.active.mark(&user.id, &created.id, true)?;
        Ok(created)
    }

    async fn list_chats(
        &self,
        user: &User,
        limit: u32,
        offset: u32,
    ) -> StoreResult<Vec<ChatSession>> {
        if limit == 0 || !is_uuid(&user.id) {
            return Ok(Vec::new());
        }
        let low = offset as usize;
        let query = self
            .inner
            .rest
            .from(&Caller::for_user(user), "chat_sessions")
            .select(CHAT_COLUMNS)
            .eq("user_id", &user.id)
            .order("updated_at.desc,created_at.desc,id.desc")
            .range(low, low + limit as usize - 1);
        let rows = self.inner.rest.rows(query, None).await?;
        Ok(rows.iter().map(chat_from_json).collect())
    }

    async fn get_chat(&self, user: &User, chat_id: &str) -> StoreResult<Option<ChatSession>> {
        self.inner
            .get_chat(&Caller::for_user(user), user, chat_id)
            .await
    }

    async fn chat_by_session(
        &self,
        user: &User,
        session_id: &str,
    ) -> StoreResult<Option<ChatSession>> {
        if !is_uuid(&user.id) {
            return Ok(None);
        }
        let query = self
            .inner
            .rest
            .from(&Caller::for_user(user), "chat_sessions")
            .select(CHAT_COLUMNS)
            .eq("user_id", &user.id)
            .eq("agent_session_id", session_id)
            .order("created_at.desc,id.desc")
            .limit(1);
        let rows = self.inner.rest.rows(query, None).await?;
        Ok(rows.first().map(chat_from_json))
    }

    async fn chat_messages(&self, user: &User, chat_id: &str) -> StoreResult<Vec<ChatMessage>> {
        let caller = Caller::for_user(user);
        if self.inner.get_chat(&caller, user, chat_id).await?.is_none() {
            return Ok(Vec::new());
        }
        let mut messages = Vec::new();
        loop {
            let low = messages.len();
            let query = self
                .inner
                .rest
                .from(&caller, "chat_messages")
                .select(MESSAGE_COLUMNS)
                .eq("session_id", chat_id)
                .order("seq.asc.nullsfirst,created_at.asc,id.asc")
                .range(low, low + PAGE_ROWS - 1);
            let page = self.inner.rest.rows(query, None).await?;
            let full = page.len() == PAGE_ROWS;
            messages.extend(page.iter().map(message_from_json));
            if !full {
                break;
            }
        }
        // Events still waiting in the outbox belong to the history too.
        let stored: HashSet<u64> = messages.iter().filter_map(|m| m.seq).collect();
        for row in self.inner.outbox.queued_rows(chat_id) {
            let message = message_from_json(&row);
            if message.seq.is_some_and(|s| !stored.contains(&s)) {
                messages.push(message);
            }
        }
        messages.sort_by_key(|m| (m.seq.is_some(), m.seq, m.created_at));
        Ok(messages)
    }

    async fn rename_chat(&self, user: &User, chat_id: &str, title: &str) -> StoreResult<bool> {
        self.update_title(user, chat_id, None, title).await
    }

    /// One conditional update (`title=eq.<expected>`): a rename that lands between a read and
    /// a write is never overwritten.
    async fn rename_chat_if(
        &self,
        user: &User,
        chat_id: &str,
        expected: &str,
        title: &str,
    ) -> StoreResult<bool> {
        self.update_title(user, chat_id, Some(expected), title)
            .await
    }

    async fn delete_chat(&self, user: &User, chat_id: &str) -> StoreResult<bool> {
        if !is_uuid(chat_id) || !is_uuid(&user.id) {
            return Ok(false);
        }
        let query = self
            .inner
            .rest
            .from(&Caller::for_user(user), "chat_sessions")
            .select("id")
            .eq("id", chat_id)
            .eq("user_id", &user.id)
            .delete();
        let rows = not_found_is_ok(self.inner.rest.rows(query, None).await, Vec::new())?;
        if !rows.is_empty() {
            self.inner.active.mark(&user.id, chat_id, false)?;
            lock(&self.inner.verified).remove(&(user.id.clone(), chat_id.to_string()));
        }
        Ok(!rows.is_empty())
    }

    async fn set_chat_active(&self, user: &User, chat_id: &str, active: bool) -> StoreResult<()> {
        if !is_uuid(chat_id) || !is_uuid(&user.id) {
            return Ok(());
        }
        let query = self
            .inner
            .rest
            .from(&Caller::for_user(user), "chat_sessions")
            .select("id")
            .eq("id", chat_id)
            .eq("user_id", &user.id)
            .update(json!({ "is_active": active }).to_string());
        let rows = self.inner.rest.rows(query, None).await?;
        // A chat that is gone is not active anywhere.
        self.inner
            .active
            .mark(&user.id, chat_id, active && !rows.is_empty())
    }

    /// Chats this engine marked active and has not closed (of every user): at start-up,
    /// those a previous run left active. Read with the service key. A chat that cannot be
    /// read now (Supabase unreachable) is skipped and stays listed for the next start, so an
    /// outage does not keep the engine from starting.
    async fn active_chats(&self) -> StoreResult<Vec<ChatSession>> {
        let mut chats = Vec::new();
        for entry in self.inner.active.entries() {
            let user = User::with_id(entry.user_id.clone());
            match self
                .inner
                .get_chat(&Caller::Service, &user, &entry.chat_id)
                .await
            {
                Ok(Some(chat)) if chat.is_active => chats.push(chat),
                Ok(_) => self
                    .inner
                    .active
                    .mark(&entry.user_id, &entry.chat_id, false)?,
                Err(e) => {
                    tracing::warn!(chat = %entry.chat_id, error = %e, "cannot check a chat of a previous run yet");
                }
            }
        }
        Ok(chats)
    }

    /// Marks inactive the chats this engine left active (see [`active`]), never those of
    /// other engines sharing the project. A chat that cannot be reached now stays listed and
    /// is retried at the next start.
    async fn deactivate_all_chats(&self) -> StoreResult<u64> {
        let mut changed = 0;
        for entry in self.inner.active.entries() {
            if !is_uuid(&entry.chat_id) || !is_uuid(&entry.user_id) {
                self.inner
                    .active
                    .mark(&entry.user_id, &entry.chat_id, false)?;
                continue;
            }
            let query = self
                .inner
                .rest
                .from(&Caller::Service, "chat_sessions")
                .select("id")
                .eq("id", &entry.chat_id)
                .eq("user_id", &entry.user_id)
                .eq("is_active", "true")
                .update(json!({ "is_active": false }).to_string());
            match self.inner.rest.rows(query, None).await {
                Ok(rows) => {
                    changed += rows.len() as u64;
                    self.inner
                        .active
                        .mark(&entry.user_id, &entry.chat_id, false)?;
                }
                Err(e) => {
                    tracing::warn!(chat = %entry.chat_id, error = %e, "cannot mark a chat of a previous run inactive yet");
                }
            }
        }
        Ok(changed)
    }

    async fn append_events(&self, user: &User, chat_id: &str, events: &[Event]) -> StoreResult<()> {
        if events.is_empty() {
            return Ok(());
        }
        for event in events {
            if i64::try_from(event.seq).is_err() {
                return Err(StoreError::Database(format!(
                    "event seq {} is out of range",
                    event.seq
                )));
            }
        }
        let rows: Vec<Value> = events.iter().map(|e| event_row(chat_id, e)).collect();
        // Durable first: from here on an outage or a crash loses nothing.
        let pending: Pending = self.inner.outbox.write(user, chat_id, rows)?;
        if self.inner.outbox.has_queued(chat_id) {
            // Earlier batches of this chat are waiting: keep the order, queue behind them.
            self.inner.outbox.queue(pending);
            self.inner.wake.notify_one();
            return Ok(());
        }
        match self.inner.send_batch(user, chat_id, &pending.rows).await {
            Ok(()) => {
                self.inner.outbox.remove(pending.id);
                Ok(())
            }
            Err(SendError::ChatGone(reason)) => {
                self.inner.outbox.remove(pending.id);
                Err(StoreError::ChatNotFound(reason))
            }
            Err(SendError::Refused(e)) => {
                self.inner.outbox.set_aside(pending.id);
                Err(e)
            }
            Err(SendError::Transient(e)) => {
                tracing::warn!(
                    chat = %chat_id,
                    error = %e,
                    "Supabase unavailable; the events wait in the outbox"
                );
                self.inner.outbox.queue(pending);
                self.inner.wake.notify_one();
                Ok(())
            }
        }
    }

    async fn events_since(
        &self,
        user: &User,
        chat_id: &str,
        since: u64,
        limit: u32,
    ) -> StoreResult<Vec<Event>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let caller = Caller::for_user(user);
        let Some(chat) = self.inner.get_chat(&caller, user, chat_id).await? else {
            return Ok(Vec::new());
        };
        let session_id = chat.agent_session_id.clone().unwrap_or(chat.id.clone());
        let query = self
            .inner
            .rest
            .from(&caller, "chat_messages")
            .select(MESSAGE_COLUMNS)
            .eq("session_id", chat_id)
            .gt("seq", since.min(i64::MAX as u64).to_string())
            .order("seq.asc")
            .limit(limit as usize);
        let rows = self.inner.rest.rows(query, None).await?;
        let mut events: Vec<Event> = rows
            .iter()
            .filter_map(|row| event_from_json(row, &session_id))
            .collect();
        let queued = self.inner.queued_events(chat_id, &session_id, since);
        if !queued.is_empty() {
            events.extend(queued);
            events.sort_by_key(|e| e.seq);
            events.dedup_by_key(|e| e.seq);
            events.truncate(limit as usize);
        }
        Ok(events)
    }

    async fn last_seq(&self, user: &User, chat_id: &str) -> StoreResult<u64> {
        let caller = Caller::for_user(user);
        if self.inner.get_chat(&caller, user, chat_id).await?.is_none() {
            return Ok(0);
        }
        let query = self
            .inner
            .rest
            .from(&caller, "chat_messages")
            .select("seq")
            .eq("session_id", chat_id)
            .not("is", "seq", "null")
            .order("seq.desc")
            .limit(1);
        let rows = self.inner.rest.rows(query, None).await?;
        let stored = rows
            .first()
            .and_then(|r| r.get("seq"))
            .and_then(Value::as_u64)
            .unwrap_or(0);
        Ok(stored.max(self.inner.outbox.queued_max_seq(chat_id)))
    }

    async fn upsert_integration(&self, user: &User, row: IntegrationRow) -> StoreResult<String> {
        if row.provider.trim().is_empty() {
            return Err(StoreError::Database(
                "an integration needs a provider".into(),
            ));
        }
        if !is_uuid(&user.id) {
            return Err(StoreError::Conflict(
                "in Supabase mode user ids are Supabase Auth user ids (UUIDs)".into(),
            ));
        }
        // No id or created_at: a new row gets the database's, an existing one keeps its own.
        let body = json!({
            "user_id": user.id,
            "provider": row.provider,
            "label": row.label,
            "access_token_encrypted": row.access_token_encrypted,
            "iv": row.iv,
            "external_username": row.external_username,
            "scopes": row.scopes,
        })
        .to_string();
        let query = self
            .inner
            .rest
            .from(&Caller::for_user(user), "integrations")
            .select("id")
            .upsert(body)
            .on_conflict("user_id,provider");
        let rows = self.inner.rest.rows(query, None).await?;
        rows.first()
            .and_then(|r| r.get("id"))
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| StoreError::Database("the saved integration was not returned".into()))
    }

    async fn get_integration(
        &self,
        user: &User,
        provider: &str,
    ) -> StoreResult<Option<IntegrationRow>> {
        if !is_uuid(&user.id) {
            return Ok(None);
        }
        let query = self
            .inner
            .rest
            .from(&Caller::for_user(user), "integrations")
            .select(INTEGRATION_COLUMNS)
            .eq("user_id", &user.id)
            .eq("provider", provider)
            .limit(1);
        let rows = self.inner.rest.rows(query, None).await?;
        Ok(rows.first().map(integration_from_json))
    }

    async fn list_integrations(&self, user: &User) -> StoreResult<Vec<IntegrationRow>> {
        if !is_uuid(&user.id) {
            return Ok(Vec::new());
        }
        let query = self
            .inner
            .rest
            .from(&Caller::for_user(user), "integrations")
            .select(INTEGRATION_COLUMNS)
            .eq("user_id", &user.id)
            .order("created_at.asc,id.asc");
        let rows = self.inner.rest.rows(query, None).await?;
        Ok(rows.iter().map(integration_from_json).collect())
    }

    async fn delete_integration(&self, user: &User, provider: &str) -> StoreResult<bool> {
        if !is_uuid(&user.id) {
            return Ok(false);
        }
        let query = self
            .inner
            .rest
            .from(&Caller::for_user(user), "integrations")
            .select("id")
            .eq("user_id", &user.id)
            .eq("provider", provider)
            .delete();
        let rows = self.inner.rest.rows(query, None).await?;
        Ok(!rows.is_empty())
    }

    async fn ping(&self) -> StoreResult<()> {
        let query = self
            .inner
            .rest
            .from(&Caller::Service, "chat_sessions")
            .select("id")
            .limit(1);
        self.inner.rest.send(query, None).await?;
        Ok(())
    }

    fn unsent_event_batches(&self) -> usize {
        self.inner.outbox.backlog()
    }
}
