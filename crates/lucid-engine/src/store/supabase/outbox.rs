//! The on-disk outbox of event batches (`<data>/supabase/outbox/`).
//!
//! Every batch is written to its own file and `fsync`'d (file and directory) before it is
//! sent, so an outage of the network or the database, or a crash, loses nothing: a batch
//! whose send failed stays here and the store's flusher retries it with backoff; files left
//! by a previous run are loaded at start and sent first. A file is deleted once the database
//! has the batch (inserts skip `(chat, seq)` pairs already stored, so sending twice is
//! harmless). A batch the database refuses for good (not a transient failure, not a deleted
//! chat) is moved to `failed/` and kept for inspection instead of blocking the queue.
//!
//! File names are a zero-padded counter, so name order is write order.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::auth::User;
use crate::store::{StoreError, StoreResult};

const FAILED_DIR: &str = "failed";

/// What one file holds. The user's token is never written to disk: a batch replayed after a
/// restart is sent with the service key and an explicit ownership check.
#[derive(Serialize, Deserialize)]
struct OutboxFile {
    version: u32,
    user_id: String,
    chat_id: String,
    rows: Vec<Value>,
}

/// A batch waiting to be sent.
#[derive(Clone)]
pub struct Pending {
    pub id: u64,
    pub user: User,
    pub chat_id: String,
    pub rows: Vec<Value>,
}

impl Pending {
    /// Highest `seq` among the rows.
    pub fn max_seq(&self) -> u64 {
        self.rows
            .iter()
            .filter_map(|r| r.get("seq").and_then(Value::as_u64))
            .max()
            .unwrap_or(0)
    }
}

pub struct Outbox {
    dir: PathBuf,
    next_id: AtomicU64,
    /// Batches handed to the flusher, oldest first.
    queued: Mutex<BTreeMap<u64, Pending>>,
}

impl Outbox {
    /// Opens (creating) the outbox directory and loads the batches a previous run left.
    pub fn open(dir: &Path) -> StoreResult<Outbox> {
        std::fs::create_dir_all(dir.join(FAILED_DIR)).map_err(|e| io_error(dir, e))?;
        let mut queued = BTreeMap::new();
        let mut max_id = 0;
        let entries = std::fs::read_dir(dir).map_err(|e| io_error(dir, e))?;
        for entry in entries {
            let path = entry.map_err(|e| io_error(dir, e))?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if name.ends_with(".tmp") {
                // A write that never completed was never sent nor acknowledged to anyone.
                let _ = std::fs::remove_file(&path);
                continue;
            }
            let Some(id) = name
                .strip_suffix(".json")
                .and_then(|stem| stem.parse::<u64>().ok())
            else {
                continue;
            };
            max_id = max_id.max(id);
            let parsed = std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|bytes| {
                    serde_json::from_slice::<OutboxFile>(&bytes).map_err(|e| e.to_string())
                });
            match parsed {
                Ok(file) => {
                    queued.insert(
                        id,
                        Pending {
                            id,
                            user: User::with_id(file.user_id),
                            chat_id: file.chat_id,
                            rows: file.rows,
                        },
                    );
                }
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "unreadable outbox file set aside");
                    let _ = std::fs::rename(&path, dir.join(FAILED_DIR).join(name));
                }
            }
        }
        if !queued.is_empty() {
            tracing::info!(
                batches = queued.len(),
                "event batches of a previous run are waiting to be sent to Supabase"
            );
        }
        Ok(Outbox {
            dir: dir.to_path_buf(),
            next_id: AtomicU64::new(max_id + 1),
            queued: Mutex::new(queued),
        })
    }

    fn path(&self, id: u64) -> PathBuf {
        self.dir.join(format!("{id:020}.json"))
    }

    /// Writes a batch durably and returns it (not yet queued for the flusher).
    pub fn write(&self, user: &User, chat_id: &str, rows: Vec<Value>) -> StoreResult<Pending> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let file = OutboxFile {
            version: 1,
            user_id: user.id.clone(),
            chat_id: chat_id.to_string(),
            rows,
        };
        let bytes = serde_json::to_vec(&file)
            .map_err(|e| StoreError::Database(format!("cannot encode an event batch: {e}")))?;
        let tmp = self.dir.join(format!("{id:020}.tmp"));
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, self.path(id))?;
            std::fs::File::open(&self.dir)?.sync_all()
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io_error(&self.dir, e)
        })?;
        Ok(Pending {
            id,
            user: user.clone(),
            chat_id: file.chat_id,
            rows: file.rows,
        })
    }

    /// Hands a written batch to the flusher.
    pub fn queue(&self, pending: Pending) {
        lock(&self.queued).insert(pending.id, pending);
    }

    /// The batch has reached the database (or can never be stored): forget it.
    pub fn remove(&self, id: u64) {
        lock(&self.queued).remove(&id);
        let _ = std::fs::remove_file(self.path(id));
    }

    /// The database refused the batch for good: keep its file aside, out of the queue.
    pub fn set_aside(&self, id: u64) {
        lock(&self.queued).remove(&id);
        let from = self.path(id);
        let _ = std::fs::rename(
            &from,
            self.dir.join(FAILED_DIR).join(format!("{id:020}.json")),
        );
    }

    /// The oldest queued batch.
    pub fn oldest(&self) -> Option<Pending> {
        lock(&self.queued).values().next().cloned()
    }

    /// Whether batches of this chat are waiting (new ones must queue behind them).
    pub fn has_queued(&self, chat_id: &str) -> bool {
        lock(&self.queued).values().any(|p| p.chat_id == chat_id)
    }

    /// Rows of this chat's queued batches, oldest first.
    pub fn queued_rows(&self, chat_id: &str) -> Vec<Value> {
        lock(&self.queued)
            .values()
            .filter(|p| p.chat_id == chat_id)
            .flat_map(|p| p.rows.iter().cloned())
            .collect()
    }

    /// Highest queued `seq` of this chat (0 when none).
    pub fn queued_max_seq(&self, chat_id: &str) -> u64 {
        lock(&self.queued)
            .values()
            .filter(|p| p.chat_id == chat_id)
            .map(Pending::max_seq)
            .max()
            .unwrap_or(0)
    }

    /// Number of batches waiting.
    pub fn backlog(&self) -> usize {
        lock(&self.queued).len()
    }
}

/// What an outbox directory holds, read without opening it (for `lucid doctor`, while a server
/// may own it): batches waiting to be sent and batches set aside in `failed/`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OnDisk {
    pub waiting: usize,
    pub set_aside: usize,
}

/// Counts the batch files under `dir` (a missing directory holds none).
pub fn on_disk(dir: &Path) -> std::io::Result<OnDisk> {
    fn batches(dir: &Path) -> std::io::Result<usize> {
        match std::fs::read_dir(dir) {
            Ok(entries) => Ok(entries
                .filter_map(Result::ok)
                .filter(|e| {
                    e.file_name()
                        .to_str()
                        .and_then(|n| n.strip_suffix(".json"))
                        .is_some_and(|stem| stem.parse::<u64>().is_ok())
                })
                .count()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(e),
        }
    }
    Ok(OnDisk {
        waiting: batches(dir)?,
        set_aside: batches(&dir.join(FAILED_DIR))?,
    })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn io_error(dir: &Path, e: std::io::Error) -> StoreError {
    StoreError::Unavailable(format!(
        "the outbox {} cannot be written: {e}",
        dir.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn batches_survive_a_restart_in_order_and_damaged_files_are_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(dir.path()).unwrap();
        let user = User {
            id: "u1".into(),
            email: None,
            raw_jwt: Some("secret-token".into()),
            token_source: None,
        };
        let a = outbox.write(&user, "c1", vec![json!({"seq": 1})]).unwrap();
        let b = outbox
            .write(&user, "c1", vec![json!({"seq": 2}), json!({"seq": 3})])
            .unwrap();
        let c = outbox.write(&user, "c2", vec![json!({"seq": 1})]).unwrap();
        outbox.queue(a.clone());
        outbox.queue(b.clone());
        outbox.remove(c.id);
        assert!(outbox.has_queued("c1") && !outbox.has_queued("c2"));
        assert_eq!(outbox.queued_max_seq("c1"), 3);
        assert_eq!(outbox.queued_rows("c1").len(), 3);
        std::fs::write(dir.path().join("00000000000000000099.json"), b"{not json").unwrap();
        std::fs::write(dir.path().join("00000000000000000100.tmp"), b"half").unwrap();
        drop(outbox);

        // The token never reaches the disk.
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                let text = std::fs::read_to_string(&path).unwrap();
                assert!(!text.contains("secret-token"), "{}", path.display());
            }
        }

        let reopened = Outbox::open(dir.path()).unwrap();
        assert_eq!(reopened.backlog(), 2);
        let first = reopened.oldest().unwrap();
        assert_eq!((first.id, first.user.id.as_str()), (a.id, "u1"));
        assert_eq!(first.user.raw_jwt, None);
        reopened.remove(first.id);
        assert_eq!(reopened.oldest().unwrap().id, b.id);
        reopened.set_aside(b.id);
        assert_eq!(reopened.backlog(), 0);
        assert!(dir
            .path()
            .join(FAILED_DIR)
            .join(format!("{:020}.json", b.id))
            .exists());
        assert!(dir
            .path()
            .join(FAILED_DIR)
            .join("00000000000000000099.json")
            .exists());
        assert!(!dir.path().join("00000000000000000100.tmp").exists());
        // New ids continue after the highest seen, so order holds across restarts.
        let next = reopened.write(&user, "c3", vec![]).unwrap();
        assert!(next.id > 99);
    }
}
