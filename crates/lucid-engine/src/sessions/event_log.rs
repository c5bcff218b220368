//! A session's event log: gap-free `seq`, persisted before anyone sees it, replayable from any
//! point, live for any number of subscribers.
//!
//! `emit` assigns the next `seq` and queues the event on a bounded channel (backpressure: a
//! producer waits rather than anything being dropped). One writer task per session takes
//! whatever is queued (up to a batch), appends it to the store in one transaction — retrying
//! until it succeeds — and only then publishes it to live subscribers and the in-memory tail.
//! A client therefore never sees an event that is not in the history, and a crash loses
//! nothing a client was shown.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, Mutex, Notify};

use crate::auth::User;
use crate::error::{EngineError, EngineResult};
use crate::events::{Event, EventKind};
use crate::store::Store;

/// Events waiting for persistence per session; a full queue makes `emit` wait.
const QUEUE_CAPACITY: usize = 1024;
/// Largest batch written in one transaction.
const MAX_BATCH: usize = 512;
/// Persisted events kept in memory for fast replay; must exceed QUEUE_CAPACITY + MAX_BATCH so
/// anything evicted from it is already in the store.
const RECENT_CAPACITY: usize = 2048;
/// Live fan-out buffer; a subscriber that falls further behind catches up from the log.
const LIVE_CAPACITY: usize = 4096;
/// Page size when replaying from the store.
const REPLAY_PAGE: u32 = 1000;

struct Tail {
    /// Highest persisted seq.
    persisted: u64,
    recent: VecDeque<Event>,
    /// Set when the writer stopped (log closed and drained).
    closed: bool,
}

/// The event log of one session.
pub struct EventLog {
    session_id: String,
    chat_id: String,
    user: User,
    store: Arc<dyn Store>,
    /// Next seq to assign, and the queue sender (taken on close).
    producer: Mutex<Producer>,
    tail: std::sync::Mutex<Tail>,
    /// Live fan-out; dropped when the log closes so subscribers see the end.
    live: std::sync::Mutex<Option<broadcast::Sender<Event>>>,
    drained: Notify,
}

struct Producer {
    next_seq: u64,
    queue: Option<mpsc::Sender<Event>>,
}

impl EventLog {
    /// Opens the log of a chat, continuing after the highest stored seq, and starts its writer.
    pub async fn open(
        store: Arc<dyn Store>,
        user: User,
        chat_id: String,
        session_id: String,
    ) -> EngineResult<Arc<EventLog>> {
        let last = store.last_seq(&user, &chat_id).await?;
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let (live, _) = broadcast::channel(LIVE_CAPACITY);
        let log = Arc::new(EventLog {
            session_id,
            chat_id,
            user,
            store,
            producer: Mutex::new(Producer {
                next_seq: last + 1,
                queue: Some(tx),
            }),
            tail: std::sync::Mutex::new(Tail {
                persisted: last,
                recent: VecDeque::new(),
                closed: false,
            }),
            live: std::sync::Mutex::new(Some(live)),
            drained: Notify::new(),
        });
        tokio::spawn(writer(Arc::clone(&log), rx));
        Ok(log)
    }

    /// A read-only view of a finished session's stored log (replay only, no writer).
    pub async fn closed(
        store: Arc<dyn Store>,
        user: User,
        chat_id: String,
        session_id: String,
    ) -> EngineResult<Arc<EventLog>> {
        let last = store.last_seq(&user, &chat_id).await?;
        Ok(Arc::new(EventLog {
            session_id,
            chat_id,
            user,
            store,
            producer: Mutex::new(Producer {
                next_seq: last + 1,
                queue: None,
            }),
            tail: std::sync::Mutex::new(Tail {
                persisted: last,
                recent: VecDeque::new(),
                closed: true,
            }),
            live: std::sync::Mutex::new(None),
            drained: Notify::new(),
        }))
    }

    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    pub fn chat_id(&self) -> &str {
        &self.chat_id
    }

    /// Appends an event. Waits (backpressure) when the persistence queue is full; after
    /// [`EventLog::close`] the event is refused with an error.
    pub async fn emit(&self, kind: EventKind) -> EngineResult<u64> {
        let mut producer = self.producer.lock().await;
        let seq = producer.next_seq;
        let event = Event::new(self.session_id.clone(), seq, kind);
        let queue = producer
            .queue
            .as_ref()
            .ok_or_else(|| EngineError::internal("event log is closed"))?;
        queue
            .send(event)
            .await
            .map_err(|_| EngineError::internal("event log writer stopped"))?;
        producer.next_seq += 1;
        Ok(seq)
    }

    /// Highest seq assigned so far (persisted or not).
    pub async fn last_assigned(&self) -> u64 {
        self.producer.lock().await.next_seq - 1
    }

    /// Highest seq durably stored and published.
    pub fn last_persisted(&self) -> u64 {
        self.tail.lock().map(|t| t.persisted).unwrap_or(0)
    }

    /// Stops accepting events and waits until everything queued is persisted.
    pub async fn close(&self) {
        let had_queue = self.producer.lock().await.queue.take().is_some();
        if had_queue || !self.is_closed() {
            loop {
                let notified = self.drained.notified();
                if self.is_closed() {
                    break;
                }
                notified.await;
            }
        }
    }

    fn is_closed(&self) -> bool {
        self.tail.lock().map(|t| t.closed).unwrap_or(true)
    }

    /// Subscribes from `since` (exclusive): every persisted event after it, then live events,
    /// in order, without gaps or duplicates.
    pub fn subscribe(self: &Arc<Self>, since: u64) -> EventStream {
        // The receiver is created while holding the tail lock, so every event published after
        // the snapshot below reaches it.
        let tail = self.tail.lock().expect("event log tail poisoned");
        let rx = match self.live.lock().expect("event log live poisoned").as_ref() {
            Some(live) => live.subscribe(),
            None => broadcast::channel(1).1,
        };
        let recent: Vec<Event> = tail
            .recent
            .iter()
            .filter(|e| e.seq > since)
            .cloned()
            .collect();
        let oldest_recent = tail
            .recent
            .front()
            .map(|e| e.seq)
            .unwrap_or(tail.persisted + 1);
        drop(tail);
        EventStream {
            log: Arc::clone(self),
            rx,
            last_seq: since,
            pending: recent.into(),
            needs_store_until: if since + 1 < oldest_recent {
                Some(oldest_recent)
            } else {
                None
            },
            catching_up: false,
        }
    }

    /// Persisted events after `since`, oldest first, at most `limit` (memory first, then store).
    pub async fn replay(&self, since: u64, limit: u32) -> EngineResult<Vec<Event>> {
        {
            let tail = self.tail.lock().expect("event log tail poisoned");
            if let Some(front) = tail.recent.front() {
                if front.seq <= since + 1 {
                    return Ok(tail
                        .recent
                        .iter()
                        .filter(|e| e.seq > since)
                        .take(limit as usize)
                        .cloned()
                        .collect());
                }
            }
        }
        Ok(self
            .store
            .events_since(&self.user, &self.chat_id, since, limit)
            .await?)
    }

    fn publish(&self, events: Vec<Event>) {
        let mut tail = self.tail.lock().expect("event log tail poisoned");
        for event in events {
            tail.persisted = event.seq;
            tail.recent.push_back(event.clone());
            if tail.recent.len() > RECENT_CAPACITY {
                tail.recent.pop_front();
            }
            // No receivers is fine: the event is in the log.
            if let Some(live) = self.live.lock().expect("event log live poisoned").as_ref() {
                let _ = live.send(event);
            }
        }
    }

    fn mark_closed(&self) {
        if let Ok(mut tail) = self.tail.lock() {
            tail.closed = true;
            // Finished sessions keep nothing in memory; replay reads the store.
            tail.recent = VecDeque::new();
            // Dropping the sender ends every live stream once it has delivered what it has.
            self.live.lock().expect("event log live poisoned").take();
        }
        self.drained.notify_waiters();
    }
}

async fn writer(log: Arc<EventLog>, mut rx: mpsc::Receiver<Event>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        batch.clear();
        if rx.recv_many(&mut batch, MAX_BATCH).await == 0 {
            break;
        }
        let mut delay = Duration::from_millis(50);
        loop {
            match log
                .store
                .append_events(&log.user, &log.chat_id, &batch)
                .await
            {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(
                        session = %log.session_id,
                        events = batch.len(),
                        error = %e,
                        "could not persist events; retrying"
                    );
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
        log.publish(std::mem::take(&mut batch));
    }
    log.mark_closed();
}

/// An ordered stream of a session's events from some point on.
pub struct EventStream {
    log: Arc<EventLog>,
    rx: broadcast::Receiver<Event>,
    last_seq: u64,
    pending: VecDeque<Event>,
    /// When set, events in `(last_seq, until)` must first be read from the store.
    needs_store_until: Option<u64>,
    /// Set after the live receiver lagged: re-read the log until caught up.
    catching_up: bool,
}

impl EventStream {
    /// The next event, or `None` once the log is closed and everything was delivered.
    /// Cancel-safe: dropping the future loses nothing.
    pub async fn next(&mut self) -> EngineResult<Option<Event>> {
        loop {
            if let Some(until) = self.needs_store_until {
                if self.last_seq + 1 >= until {
                    self.needs_store_until = None;
                } else {
                    let page = self
                        .log
                        .store
                        .events_since(
                            &self.log.user,
                            &self.log.chat_id,
                            self.last_seq,
                            REPLAY_PAGE,
                        )
                        .await?;
                    if page.is_empty() {
                        self.needs_store_until = None;
                    }
                    for e in page {
                        if e.seq < until {
                            self.pending.push_back(e);
                        }
                    }
                }
            }
            while let Some(event) = self.pending.pop_front() {
                if event.seq > self.last_seq {
                    self.last_seq = event.seq;
                    return Ok(Some(event));
                }
            }
            if self.needs_store_until.is_some() {
                continue;
            }
            if self.catching_up {
                let missed = self.log.replay(self.last_seq, REPLAY_PAGE).await?;
                self.catching_up = missed.len() == REPLAY_PAGE as usize;
                self.pending.extend(missed);
                continue;
            }
            match self.rx.recv().await {
                Ok(event) => {
                    if event.seq > self.last_seq {
                        self.last_seq = event.seq;
                        return Ok(Some(event));
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    // Fell behind the live buffer: catch up from the log.
                    self.catching_up = true;
                }
                Err(broadcast::error::RecvError::Closed) => return Ok(None),
            }
        }
    }

    /// Seq of the last event returned.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }
}
