//! Per-user running-session slots: the `LUCID_MAX_SESSIONS_PER_USER` limit, checked and
//! reserved in one step.
//!
//! A start reserves a slot before it creates anything (chat row, workspace, container) and
//! the slot is held until the session has ended and released its sandbox. Counting live
//! sessions instead would let parallel starts all pass the check before any of them is
//! registered; reserving under one lock makes the limit exact.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::error::{EngineError, ErrorKind};

/// Running sessions per user id.
#[derive(Default)]
pub(crate) struct SessionSlots {
    running: Mutex<HashMap<String, usize>>,
}

impl SessionSlots {
    /// Reserves one of `limit` slots for `user_id`, or refuses with a 409 naming the limit.
    pub(crate) fn reserve(
        self: &Arc<Self>,
        user_id: &str,
        limit: usize,
    ) -> Result<SessionSlot, EngineError> {
        let mut running = self.running.lock().expect("session slots poisoned");
        let count = running.entry(user_id.to_string()).or_insert(0);
        if *count >= limit {
            let held = *count;
            if held == 0 {
                running.remove(user_id);
            }
            return Err(EngineError::new(
                ErrorKind::Conflict,
                format!(
                    "You already have {held} running sessions (the limit is {limit}); stop one \
                     first."
                ),
            ));
        }
        *count += 1;
        Ok(SessionSlot {
            slots: Arc::clone(self),
            user_id: user_id.to_string(),
        })
    }

    /// Slots held by `user_id` (reserved or running).
    #[cfg(test)]
    pub(crate) fn held(&self, user_id: &str) -> usize {
        self.running
            .lock()
            .map(|r| r.get(user_id).copied().unwrap_or(0))
            .unwrap_or(0)
    }
}

/// A reserved slot, given back when dropped.
pub(crate) struct SessionSlot {
    slots: Arc<SessionSlots>,
    user_id: String,
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        if let Ok(mut running) = self.slots.running.lock() {
            if let Some(count) = running.get_mut(&self.user_id) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    running.remove(&self.user_id);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parallel_reservations_never_exceed_the_limit() {
        let slots = Arc::new(SessionSlots::default());
        let granted: Vec<_> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..20)
                .map(|_| {
                    let slots = Arc::clone(&slots);
                    scope.spawn(move || slots.reserve("u", 8).ok())
                })
                .collect();
            handles
                .into_iter()
                .filter_map(|h| h.join().unwrap())
                .collect()
        });
        assert_eq!(granted.len(), 8);
        assert_eq!(slots.held("u"), 8);
        let err = slots.reserve("u", 8).err().unwrap();
        assert_eq!(err.kind, ErrorKind::Conflict);
        assert!(err.message.contains("the limit is 8"), "{}", err.message);
        // Another user has their own slots.
        let other = slots.reserve("v", 8).unwrap();
        drop(granted);
        assert_eq!(slots.held("u"), 0);
        assert_eq!(slots.held("v"), 1);
        drop(other);
        assert!(slots.running.lock().unwrap().is_empty(), "no entries leak");
    }
}
