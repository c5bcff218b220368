//! The chats this engine marked active (`<data>/supabase/active-chats.json`).
//!
//! Crash recovery must not depend on a local database, and it must not touch the chats of
//! other engines sharing the Supabase project (a team server beside a desktop): so the engine
//! remembers, in a small file rewritten atomically on every change, exactly the chats it
//! marked active. At start-up, the ones still listed were left active by a run that ended
//! without closing them.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::store::{StoreError, StoreResult};

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ActiveChat {
    pub user_id: String,
    pub chat_id: String,
}

pub struct ActiveChats {
    path: PathBuf,
    set: Mutex<BTreeSet<ActiveChat>>,
}

impl ActiveChats {
    /// Loads the file (a missing or unreadable file is an empty set, with a warning).
    pub fn open(path: &Path) -> ActiveChats {
        let set = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice::<Vec<ActiveChat>>(&bytes)
                .map(|v| v.into_iter().collect())
                .unwrap_or_else(|e| {
                    tracing::warn!(file = %path.display(), error = %e, "unreadable list of active chats ignored");
                    BTreeSet::new()
                }),
            Err(_) => BTreeSet::new(),
        };
        ActiveChats {
            path: path.to_path_buf(),
            set: Mutex::new(set),
        }
    }

    /// Records that the chat is (not) active; the file is rewritten only on a change.
    pub fn mark(&self, user_id: &str, chat_id: &str, active: bool) -> StoreResult<()> {
        let entry = ActiveChat {
            user_id: user_id.to_string(),
            chat_id: chat_id.to_string(),
        };
        let mut set = self.set.lock().unwrap_or_else(|e| e.into_inner());
        let changed = if active {
            set.insert(entry)
        } else {
            set.remove(&entry)
        };
        if changed {
            self.save(&set)?;
        }
        Ok(())
    }

    /// Every chat still listed.
    pub fn entries(&self) -> Vec<ActiveChat> {
        let set = self.set.lock().unwrap_or_else(|e| e.into_inner());
        set.iter().cloned().collect()
    }

    fn save(&self, set: &BTreeSet<ActiveChat>) -> StoreResult<()> {
        let list: Vec<&ActiveChat> = set.iter().collect();
        let bytes = serde_json::to_vec_pretty(&list)
            .map_err(|e| StoreError::Database(format!("cannot encode the active chats: {e}")))?;
        let tmp = self.path.with_extension("json.tmp");
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)
        };
        write().map_err(|e| {
            StoreError::Unavailable(format!("cannot write {}: {e}", self.path.display()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_persist_across_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("active-chats.json");
        let chats = ActiveChats::open(&path);
        chats.mark("u1", "c1", true).unwrap();
        chats.mark("u1", "c2", true).unwrap();
        chats.mark("u1", "c1", false).unwrap();
        chats.mark("u2", "c3", false).unwrap();
        let reopened = ActiveChats::open(&path);
        assert_eq!(
            reopened.entries(),
            vec![ActiveChat {
                user_id: "u1".into(),
                chat_id: "c2".into()
            }]
        );
        std::fs::write(&path, b"garbage").unwrap();
        assert!(ActiveChats::open(&path).entries().is_empty());
    }
}
