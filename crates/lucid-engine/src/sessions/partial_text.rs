//! The partial answer of the message the model is writing right now, kept in memory so a
//! client that attaches mid-message sees the text so far (never stored, never replayed).
//!
//! The event log feeds every transient event through [`PartialText::apply`]; a subscriber
//! taken while a message is being written gets [`PartialText::catch_up`]: the thinking and
//! text so far as one delta each, positioned like the deltas they stand for. The log takes the
//! catch-up and subscribes to the transient channel under the same lock as it publishes, so a
//! subscriber sees every piece exactly once: in the catch-up or on the channel, never both.

use crate::events::{TransientEvent, TransientKind};

/// Most bytes of partial text kept (per kind); a longer answer keeps its beginning only: a
/// late subscriber then sees the start and the live deltas, with the middle missing until
/// the stored message replaces it.
const MAX_KEPT_BYTES: usize = 1024 * 1024;

/// The text and thinking streamed since the last stored event.
#[derive(Debug, Default)]
pub(crate) struct PartialText {
    /// The stored event the partial answer follows.
    after_seq: u64,
    text: String,
    thinking: String,
    /// Whether pieces were left out (over [`MAX_KEPT_BYTES`]); a catch-up would have a hole.
    incomplete: bool,
}

impl PartialText {
    /// Takes a transient event into account.
    pub(crate) fn apply(&mut self, event: &TransientEvent) {
        if event.after_seq != self.after_seq {
            // A stored event came in between: what was kept belongs to a completed message.
            *self = PartialText {
                after_seq: event.after_seq,
                ..PartialText::default()
            };
        }
        match &event.kind {
            TransientKind::AssistantDelta { text } => {
                append(&mut self.text, text, &mut self.incomplete)
            }
            TransientKind::ThinkingDelta { text } => {
                append(&mut self.thinking, text, &mut self.incomplete)
            }
            TransientKind::AssistantRestart { .. } => {
                self.text.clear();
                self.thinking.clear();
                self.incomplete = false;
            }
        }
    }

    /// What a subscriber joining now has missed of the message being written after stored
    /// event `last_assigned`: the thinking and the text so far (each as one delta), or nothing
    /// when no message is being written.
    pub(crate) fn catch_up(&self, session_id: &str, last_assigned: u64) -> Vec<TransientEvent> {
        if self.after_seq != last_assigned || self.incomplete {
            return Vec::new();
        }
        let mut events = Vec::new();
        if !self.thinking.is_empty() {
            events.push(TransientEvent::new(
                session_id,
                self.after_seq,
                TransientKind::ThinkingDelta {
                    text: self.thinking.clone(),
                },
            ));
        }
        if !self.text.is_empty() {
            events.push(TransientEvent::new(
                session_id,
                self.after_seq,
                TransientKind::AssistantDelta {
                    text: self.text.clone(),
                },
            ));
        }
        events
    }
}

fn append(kept: &mut String, piece: &str, incomplete: &mut bool) {
    if kept.len() + piece.len() > MAX_KEPT_BYTES {
        *incomplete = true;
        return;
    }
    kept.push_str(piece);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delta(after_seq: u64, text: &str) -> TransientEvent {
        TransientEvent::new(
            "s",
            after_seq,
            TransientKind::AssistantDelta { text: text.into() },
        )
    }

    fn thinking(after_seq: u64, text: &str) -> TransientEvent {
        TransientEvent::new(
            "s",
            after_seq,
            TransientKind::ThinkingDelta { text: text.into() },
        )
    }

    fn kinds(events: Vec<TransientEvent>) -> Vec<(u64, TransientKind)> {
        events.into_iter().map(|e| (e.after_seq, e.kind)).collect()
    }

    #[test]
    fn catch_up_gives_thinking_then_text_so_far() {
        let mut p = PartialText::default();
        p.apply(&thinking(4, "let me "));
        p.apply(&thinking(4, "see"));
        p.apply(&delta(4, "Hello, "));
        p.apply(&delta(4, "world"));
        assert_eq!(
            kinds(p.catch_up("s", 4)),
            vec![
                (
                    4,
                    TransientKind::ThinkingDelta {
                        text: "let me see".into()
                    }
                ),
                (
                    4,
                    TransientKind::AssistantDelta {
                        text: "Hello, world".into()
                    }
                ),
            ]
        );
    }

    #[test]
    fn a_stored_event_or_a_restart_voids_the_partial_text() {
        let mut p = PartialText::default();
        p.apply(&delta(4, "old answer"));
        // The message was stored (seq 5, 6): nothing is being written after 6.
        assert!(p.catch_up("s", 6).is_empty());
        p.apply(&delta(6, "new"));
        assert_eq!(
            kinds(p.catch_up("s", 6)),
            vec![(6, TransientKind::AssistantDelta { text: "new".into() })]
        );
        p.apply(&TransientEvent::new(
            "s",
            6,
            TransientKind::AssistantRestart {
                reason: "stream broke".into(),
            },
        ));
        assert!(p.catch_up("s", 6).is_empty());
        p.apply(&delta(6, "again"));
        assert_eq!(
            kinds(p.catch_up("s", 6)),
            vec![(
                6,
                TransientKind::AssistantDelta {
                    text: "again".into()
                }
            )]
        );
    }

    /// Through the event log: a stream opened mid-message starts with the text so far, then
    /// gets every later piece exactly once, and the stored message after it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_subscriber_joining_mid_message_gets_the_text_so_far_once() {
        use crate::auth::User;
        use crate::events::EventKind;
        use crate::sessions::event_log::{EventLog, LiveItem};
        use crate::store::{NewChat, SqliteStore, Store};
        use std::sync::Arc;
        use std::time::Duration;

        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("lucid.sqlite3")).unwrap();
        let user = User::with_id("u1");
        store
            .create_chat(
                &user,
                NewChat {
                    id: "c".into(),
                    agent_session_id: Some("s".into()),
                    ..NewChat::default()
                },
            )
            .await
            .unwrap();
        let log = EventLog::open(Arc::new(store), user, "c".into(), "s".into())
            .await
            .unwrap();
        let task = EventKind::UserMessage {
            content: "hi".into(),
            follow_up: false,
        };
        assert_eq!(log.emit(task).await.unwrap(), 1);
        let text = |t: &str| TransientKind::AssistantDelta { text: t.into() };
        log.publish_transient(TransientKind::ThinkingDelta {
            text: "greet back".into(),
        });
        log.publish_transient(text("Hel"));
        log.publish_transient(text("lo"));

        let mut late = log.subscribe(0).live();
        log.publish_transient(text(", world"));
        log.emit(EventKind::AssistantMessage {
            content: "Hello, world".into(),
        })
        .await
        .unwrap();
        let mut got = Vec::new();
        while got.len() < 5 {
            let item = tokio::time::timeout(Duration::from_secs(10), late.next())
                .await
                .expect("stream stalled")
                .unwrap()
                .expect("log open");
            got.push(match item {
                LiveItem::Stored(e) => format!("stored {}", e.seq),
                LiveItem::Transient(t) => format!("{} {:?}", t.after_seq, t.kind),
            });
        }
        assert_eq!(
            got,
            vec![
                "stored 1".to_string(),
                format!(
                    "1 {:?}",
                    TransientKind::ThinkingDelta {
                        text: "greet back".into()
                    }
                ),
                format!("1 {:?}", text("Hello")),
                format!("1 {:?}", text(", world")),
                "stored 2".to_string(),
            ]
        );
        // After the message is stored, a new subscriber gets no partial text.
        let mut fresh = log.subscribe(0).live();
        log.close().await;
        let mut kinds = Vec::new();
        while let Some(item) = fresh.next().await.unwrap() {
            kinds.push(matches!(item, LiveItem::Stored(_)));
        }
        assert_eq!(kinds, vec![true, true]);
    }

    #[test]
    fn an_oversized_answer_gives_no_catch_up_rather_than_one_with_a_hole() {
        let mut p = PartialText::default();
        let big = "x".repeat(MAX_KEPT_BYTES / 2 + 1);
        p.apply(&delta(1, &big));
        p.apply(&delta(1, &big));
        p.apply(&delta(1, "tail"));
        assert!(p.catch_up("s", 1).is_empty());
    }
}
