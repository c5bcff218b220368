//! Embedded SQLite store (local mode).
//!
//! One file, WAL mode. A single writer connection (behind a mutex) serialises writes; a
//! small set of read-only connections serves reads from WAL snapshots, so a read never waits
//! behind a large write batch. All SQLite work runs on Tokio's blocking pool, and callers
//! queue for a connection *before* taking a blocking thread: however many sessions write at
//! once, at most one thread per connection is busy (or blocked) on the database, and reads
//! never wait for a blocking thread held by a queued writer. Every query is
//! scoped to the calling user; another user's id behaves exactly like a missing one.

mod chats;
mod errors;
pub(crate) mod events;
mod integrations;
mod migrations;
mod rows;
pub mod timestamps;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, OpenFlags};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use self::errors::{map_io, map_sqlite};
use self::migrations::{Migration, MIGRATIONS};
use crate::auth::User;
use crate::events::Event;
use crate::store::{
    ChatMessage, ChatSession, IntegrationRow, NewChat, Store, StoreError, StoreResult,
};

/// Tuning knobs of [`SqliteStore::open_with`].
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// How long a statement waits for a lock held by another connection or process before
    /// failing with [`StoreError::Unavailable`].
    pub busy_timeout: Duration,
    /// Number of read-only connections (at least one is always opened).
    pub readers: usize,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            busy_timeout: Duration::from_secs(5),
            readers: 2,
        }
    }
}

/// The embedded store. Cheap to clone; clones share the connections.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
    /// One permit: the turn to use the writer connection.
    write_turn: Arc<Semaphore>,
    /// One permit per reader connection.
    read_turn: Arc<Semaphore>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.path)
            .finish()
    }
}

impl SqliteStore {
    /// Opens (creating it and its parent directories if needed) and migrates the database
    /// at `path` with default options.
    pub fn open(path: &Path) -> StoreResult<SqliteStore> {
        Self::open_with(path, SqliteOptions::default())
    }

    /// Like [`SqliteStore::open`] with explicit options.
    pub fn open_with(path: &Path, options: SqliteOptions) -> StoreResult<SqliteStore> {
        Self::open_with_migrations(path, options, MIGRATIONS)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    fn open_with_migrations(
        path: &Path,
        options: SqliteOptions,
        migrations: &[Migration],
    ) -> StoreResult<SqliteStore> {
        if path.as_os_str().is_empty() {
            return Err(StoreError::Unavailable(
                "the database path is empty".to_string(),
            ));
        }
        if path.is_dir() {
            return Err(StoreError::Unavailable(format!(
                "the database path {} is a directory",
                path.display()
            )));
        }
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                map_io(
                    &format!("cannot create the data directory {}", parent.display()),
                    e,
                )
            })?;
        }

        let mut writer = open_connection(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
            &options,
        )?;
        // Refuse a newer schema before anything (even the journal mode) writes to the file.
        migrations::check_not_newer(&writer, migrations)?;
        if writer.is_readonly(rusqlite::MAIN_DB).map_err(map_sqlite)? {
            return Err(StoreError::Unavailable(format!(
                "the database {} is read-only",
                path.display()
            )));
        }
        let mode: String = writer
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            .map_err(map_sqlite)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Unavailable(format!(
                "the database could not switch to WAL mode (got {mode})"
            )));
        }
        writer
            .pragma_update(None, "synchronous", "NORMAL")
            .map_err(map_sqlite)?;
        // SQLite's default page cache (2 MiB) is kept on purpose: with time-ordered message
        // ids a batch touches few pages, and a larger cache made every commit slower (the
        // pager scans the whole cache when a write transaction ends).
        migrations::migrate(&mut writer, path, migrations)?;

        let mut readers = Vec::new();
        for _ in 0..options.readers.max(1) {
            let reader = open_connection(path, OpenFlags::SQLITE_OPEN_READ_WRITE, &options)?;
            reader
                .pragma_update(None, "query_only", true)
                .map_err(map_sqlite)?;
            readers.push(Mutex::new(reader));
        }
        tracing::debug!(path = %path.display(), "opened the SQLite store");
        let read_turn = Arc::new(Semaphore::new(readers.len()));
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                writer: Mutex::new(writer),
                readers,
                next_reader: AtomicUsize::new(0),
                write_turn: Arc::new(Semaphore::new(1)),
                read_turn,
            }),
        })
    }

    /// Runs `f` on the writer connection on the blocking pool.
    async fn write<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> StoreResult<T> + Send + 'static,
    {
        let turn = wait_turn(&self.inner.write_turn).await?;
        self.write_in_turn(turn, f).await
    }

    /// Runs `f` on the writer connection, with the turn already taken.
    async fn write_in_turn<T, F>(&self, turn: OwnedSemaphorePermit, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> StoreResult<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        run_blocking(move || {
            // Held until the connection is released, even if the caller stopped waiting.
            let _turn = turn;
            let mut conn = lock(&inner.writer);
            f(&mut conn)
        })
        .await
    }

    /// Runs `f` on a free reader connection (or waits for one) on the blocking pool.
    async fn read<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let turn = wait_turn(&self.inner.read_turn).await?;
        let inner = self.inner.clone();
        run_blocking(move || {
            let _turn = turn;
            let conn = inner.reader();
            f(&conn)
        })
        .await
    }
}

impl Inner {
    fn reader(&self) -> MutexGuard<'_, Connection> {
        for r in &self.readers {
            if let Ok(guard) = r.try_lock() {
                return guard;
            }
        }
        let i = self.next_reader.fetch_add(1, Ordering::Relaxed) % self.readers.len();
        lock(&self.readers[i])
    }
}

/// Locks a connection mutex. A panic while holding it cannot leave a transaction open
/// (rusqlite rolls back on drop), so a poisoned connection is still usable.
fn lock(m: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Waits (without holding a thread) for a turn on a connection.
async fn wait_turn(turn: &Arc<Semaphore>) -> StoreResult<OwnedSemaphorePermit> {
    Arc::clone(turn)
        .acquire_owned()
        .await
        .map_err(|_| StoreError::Unavailable("the database is closed".to_string()))
}

async fn run_blocking<T, F>(f: F) -> StoreResult<T>
where
    T: Send + 'static,
    F: FnOnce() -> StoreResult<T> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Database(format!("store task failed: {e}")))?
}

fn open_connection(
    path: &Path,
    flags: OpenFlags,
    options: &SqliteOptions,
) -> StoreResult<Connection> {
    let conn = Connection::open_with_flags(path, flags | OpenFlags::SQLITE_OPEN_NO_MUTEX).map_err(
        |e| match map_sqlite(e) {
            StoreError::Database(m) | StoreError::Conflict(m) => {
                StoreError::Unavailable(format!("cannot open the database {}: {m}", path.display()))
            }
            other => other,
        },
    )?;
    conn.busy_timeout(options.busy_timeout)
        .map_err(map_sqlite)?;
    conn.pragma_update(None, "foreign_keys", true)
        .map_err(map_sqlite)?;
    Ok(conn)
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_chat(&self, user: &User, chat: NewChat) -> StoreResult<ChatSession> {
        let user_id = user.id.clone();
        self.write(move |c| chats::create(c, &user_id, chat)).await
    }

    async fn list_chats(
        &self,
        user: &User,
        limit: u32,
        offset: u32,
    ) -> StoreResult<Vec<ChatSession>> {
        let user_id = user.id.clone();
        self.read(move |c| chats::list(c, &user_id, limit, offset))
            .await
    }

    async fn get_chat(&self, user: &User, chat_id: &str) -> StoreResult<Option<ChatSession>> {
        let (user_id, chat_id) = (user.id.clone(), chat_id.to_string());
        self.read(move |c| chats::get(c, &user_id, &chat_id)).await
    }

    async fn chat_by_session(
        &self,
        user: &User,
        session_id: &str,
    ) -> StoreResult<Option<ChatSession>> {
        let (user_id, session_id) = (user.id.clone(), session_id.to_string());
        self.read(move |c| chats::by_session(c, &user_id, &session_id))
            .await
    }

    async fn chat_messages(&self, user: &User, chat_id: &str) -> StoreResult<Vec<ChatMessage>> {
        let (user_id, chat_id) = (user.id.clone(), chat_id.to_string());
        self.read(move |c| events::messages(c, &user_id, &chat_id))
            .await
    }

    async fn rename_chat(&self, user: &User, chat_id: &str, title: &str) -> StoreResult<bool> {
        let (user_id, chat_id, title) = (user.id.clone(), chat_id.to_string(), title.to_string());
        self.write(move |c| chats::rename(c, &user_id, &chat_id, &title))
            .await
    }

    async fn rename_chat_if(
        &self,
        user: &User,
        chat_id: &str,
        expected: &str,
        title: &str,
    ) -> StoreResult<bool> {
        let (user_id, chat_id) = (user.id.clone(), chat_id.to_string());
        let (expected, title) = (expected.to_string(), title.to_string());
        self.write(move |c| chats::rename_if(c, &user_id, &chat_id, &expected, &title))
            .await
    }

    async fn delete_chat(&self, user: &User, chat_id: &str) -> StoreResult<bool> {
        let (user_id, chat_id) = (user.id.clone(), chat_id.to_string());
        self.write(move |c| chats::delete(c, &user_id, &chat_id))
            .await
    }

    async fn set_chat_active(&self, user: &User, chat_id: &str, active: bool) -> StoreResult<()> {
        let (user_id, chat_id) = (user.id.clone(), chat_id.to_string());
        self.write(move |c| chats::set_active(c, &user_id, &chat_id, active))
            .await
    }

    async fn deactivate_all_chats(&self) -> StoreResult<u64> {
        self.write(chats::deactivate_all).await
    }

    async fn active_chats(&self) -> StoreResult<Vec<ChatSession>> {
        self.read(chats::active).await
    }

    async fn append_events(&self, user: &User, chat_id: &str, events: &[Event]) -> StoreResult<()> {
        if events.is_empty() {
            return Ok(());
        }
        // The rows are rendered (instead of the events being copied to the blocking pool)
        // once it is this batch's turn, so batches queued for the writer are not held twice.
        let turn = wait_turn(&self.inner.write_turn).await?;
        let rows = events::new_rows(events)?;
        let (user_id, chat_id) = (user.id.clone(), chat_id.to_string());
        self.write_in_turn(turn, move |c| events::append(c, &user_id, &chat_id, &rows))
            .await
    }

    async fn events_since(
        &self,
        user: &User,
        chat_id: &str,
        since: u64,
        limit: u32,
    ) -> StoreResult<Vec<Event>> {
        let (user_id, chat_id) = (user.id.clone(), chat_id.to_string());
        self.read(move |c| events::since(c, &user_id, &chat_id, since, limit))
            .await
    }

    async fn last_seq(&self, user: &User, chat_id: &str) -> StoreResult<u64> {
        let (user_id, chat_id) = (user.id.clone(), chat_id.to_string());
        self.read(move |c| events::last_seq(c, &user_id, &chat_id))
            .await
    }

    async fn upsert_integration(&self, user: &User, row: IntegrationRow) -> StoreResult<String> {
        let user_id = user.id.clone();
        self.write(move |c| integrations::upsert(c, &user_id, row))
            .await
    }

    async fn get_integration(
        &self,
        user: &User,
        provider: &str,
    ) -> StoreResult<Option<IntegrationRow>> {
        let (user_id, provider) = (user.id.clone(), provider.to_string());
        self.read(move |c| integrations::get(c, &user_id, &provider))
            .await
    }

    async fn list_integrations(&self, user: &User) -> StoreResult<Vec<IntegrationRow>> {
        let user_id = user.id.clone();
        self.read(move |c| integrations::list(c, &user_id)).await
    }

    async fn delete_integration(&self, user: &User, provider: &str) -> StoreResult<bool> {
        let (user_id, provider) = (user.id.clone(), provider.to_string());
        self.write(move |c| integrations::delete(c, &user_id, &provider))
            .await
    }

    async fn ping(&self) -> StoreResult<()> {
        self.read(|c| {
            c.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|_| ())
            .map_err(map_sqlite)
        })
        .await
    }
}

#[cfg(test)]
mod tests;
