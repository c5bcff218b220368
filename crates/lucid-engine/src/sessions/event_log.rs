//! A session's event log: gap-free `seq`, persisted before anyone sees it, replayable from any
//! point, live for any number of subscribers.
//!
//! `emit` assigns the next `seq` and queues the event on a bounded channel (backpressure: a
//! producer waits rather than anything being dropped). One writer task per session takes
//! whatever is queued (up to a batch), appends it to the store in one transaction — retrying
//! until it succeeds — and only then adds it to the in-memory tail and wakes the live
//! subscribers, which read it from there (or from the store once it has been evicted from
//! memory). A client therefore never sees an event that is not in the history, and a crash
//! loses nothing a client was shown.
//!
//! If the chat itself disappears (deleted underneath a running session), retrying can never
//! succeed: the writer stops, refuses every further event (producers get an error instead of
//! waiting forever), publishes a final in-memory error event to live subscribers and signals
//! [`EventLog::chat_gone`], on which the session ends.
//!
//! Memory: the tail keeps only events that some live subscriber has not read yet, within a
//! count and size budget. An idle session, or one nobody follows, holds none; a subscriber
//! that falls further behind than the budget continues from the store.
//!
//! Transient events (partial assistant text, see [`crate::events::TransientEvent`]) bypass
//! the store: [`EventLog::publish_transient`] stamps them with the last assigned seq and sends
//! them on a bounded broadcast channel. A [`LiveStream`] merges them into the stored stream at
//! their position (after the stored event they follow), drops them once it has moved past that
//! position, and loses them, never stored events, when it falls too far behind. The partial
//! answer being written is also kept in memory ([`super::partial_text`]) so a stream opened
//! mid-message starts with the text so far.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, watch, Mutex, Notify};
use tokio_util::sync::CancellationToken;

use crate::auth::User;
use crate::error::{EngineError, EngineResult};
use crate::events::{Event, EventKind, TransientEvent, TransientKind};
use crate::store::{Store, StoreError};

use super::partial_text::PartialText;

/// The last word of a session whose chat was deleted underneath it.
pub const CHAT_GONE_MESSAGE: &str =
    "This session's chat was deleted; the session has ended and its events are no longer kept.";

/// Events waiting for persistence per session; a full queue makes `emit` wait.
const QUEUE_CAPACITY: usize = 1024;
/// Largest batch written in one transaction.
const MAX_BATCH: usize = 512;
/// Persisted events kept in memory for subscribers that have not read them yet, at most this
/// many…
const RECENT_CAPACITY: usize = 4096;
/// …and at most about this many bytes, so a session printing large outputs stays small (a
/// writer batch of typical events, ~250 KiB, fits several times). Everything in memory is
/// already in the store: a subscriber that needs an evicted event reads it from there.
const RECENT_MAX_BYTES: usize = 2 * 1024 * 1024;
/// Events a subscriber takes at once, from memory or from the store.
const REPLAY_PAGE: u32 = 1000;
/// Transient events buffered for live streams (a stream further behind loses the oldest).
const TRANSIENT_CAPACITY: usize = 1024;
/// Transient events a live stream holds back until it reaches their position, at most.
const HELD_TRANSIENT_MAX: usize = 4096;

struct Tail {
    /// Highest persisted seq.
    persisted: u64,
    /// The latest persisted events, consecutive and oldest first.
    recent: VecDeque<Event>,
    /// Approximate heap footprint of `recent` (see [`approx_size`]).
    recent_bytes: usize,
    /// Set when the writer stopped (log closed and drained).
    closed: bool,
    /// Highest seq each live stream has read, by stream id: events up to the lowest of them
    /// are needed by no one.
    cursors: HashMap<u64, u64>,
    next_stream: u64,
}

impl Tail {
    fn new(persisted: u64, closed: bool) -> Self {
        Tail {
            persisted,
            recent: VecDeque::new(),
            recent_bytes: 0,
            closed,
            cursors: HashMap::new(),
            next_stream: 0,
        }
    }

    /// Records that `stream` has read up to `seq` and drops what nobody needs any more.
    fn advance(&mut self, stream: u64, seq: u64) {
        if let Some(cursor) = self.cursors.get_mut(&stream) {
            *cursor = (*cursor).max(seq);
        }
        self.trim();
    }

    /// Evicts the oldest events while over budget or read by every live stream.
    fn trim(&mut self) {
        let needed_after = self.cursors.values().copied().min();
        while let Some(front) = self.recent.front() {
            let over_budget =
                self.recent.len() > RECENT_CAPACITY || self.recent_bytes > RECENT_MAX_BYTES;
            let read_by_all = needed_after.is_none_or(|cursor| front.seq <= cursor);
            if !(over_budget || read_by_all) {
                break;
            }
            if let Some(evicted) = self.recent.pop_front() {
                self.recent_bytes -= approx_size(&evicted);
            }
        }
        if self.recent.is_empty() && self.recent.capacity() > 0 {
            self.recent = VecDeque::new();
        }
    }

    /// Up to `limit` events after `since` from memory, or `None` when memory does not reach
    /// back to `since + 1` (the store has them).
    fn after(&self, since: u64, limit: usize) -> Option<Vec<Event>> {
        let front = self.recent.front()?;
        if front.seq > since.saturating_add(1) {
            return None;
        }
        let start = self.recent.partition_point(|e| e.seq <= since);
        Some(self.recent.range(start..).take(limit).cloned().collect())
    }
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
    /// Wakes subscribers whenever events are published or the log closes. Subscribers read
    /// the events themselves from the tail (or the store), so the live fan-out holds no
    /// copies of its own and a slow subscriber can never be overrun.
    wake: watch::Sender<u64>,
    drained: Notify,
    /// Cancelled when the chat turned out to be deleted (see the module documentation).
    chat_gone: CancellationToken,
    /// Live-only events (never stored).
    transient: broadcast::Sender<TransientEvent>,
    /// Highest seq assigned so far (what transient events are positioned after).
    assigned: AtomicU64,
    /// The answer being written (held while publishing a transient event or subscribing).
    partial: std::sync::Mutex<PartialText>,
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
        let log = Arc::new(EventLog {
            session_id,
            chat_id,
            user,
            store,
            producer: Mutex::new(Producer {
                next_seq: last + 1,
                queue: Some(tx),
            }),
            tail: std::sync::Mutex::new(Tail::new(last, false)),
            wake: watch::Sender::new(last),
            drained: Notify::new(),
            chat_gone: CancellationToken::new(),
            transient: broadcast::Sender::new(TRANSIENT_CAPACITY),
            assigned: AtomicU64::new(last),
            partial: std::sync::Mutex::new(PartialText::default()),
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
            tail: std::sync::Mutex::new(Tail::new(last, true)),
            wake: watch::Sender::new(last),
            drained: Notify::new(),
            chat_gone: CancellationToken::new(),
            transient: broadcast::Sender::new(TRANSIENT_CAPACITY),
            assigned: AtomicU64::new(last),
            partial: std::sync::Mutex::new(PartialText::default()),
        }))
    }

    /// Completes when the chat of this log was found deleted (the log is then closed).
    pub async fn chat_gone(&self) {
        self.chat_gone.cancelled().await
    }

    /// Whether the chat of this log was found deleted.
    pub fn is_chat_gone(&self) -> bool {
        self.chat_gone.is_cancelled()
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
        self.assigned.store(seq, Ordering::SeqCst);
        Ok(seq)
    }

    /// Publishes a live-only event to the current live streams: not stored, not replayed,
    /// positioned after the last event emitted so far. Never waits.
    pub fn publish_transient(&self, kind: TransientKind) {
        let after_seq = self.assigned.load(Ordering::SeqCst);
        let event = TransientEvent::new(self.session_id.clone(), after_seq, kind);
        let mut partial = self.partial.lock().unwrap_or_else(|p| p.into_inner());
        partial.apply(&event);
        // No receiver is not an error: nobody is watching.
        let _ = self.transient.send(event);
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

    /// Highest persisted seq and whether the log is closed, read together.
    fn state(&self) -> (u64, bool) {
        self.tail
            .lock()
            .map(|t| (t.persisted, t.closed))
            .unwrap_or((0, true))
    }

    /// Subscribes from `since` (exclusive): every persisted event after it, then live events,
    /// in order, without gaps or duplicates.
    pub fn subscribe(self: &Arc<Self>, since: u64) -> EventStream {
        let id = {
            let mut tail = self.tail.lock().expect("event log tail poisoned");
            let id = tail.next_stream;
            tail.next_stream += 1;
            tail.cursors.insert(id, since);
            id
        };
        // The partial answer so far and the channel's next pieces, taken together.
        let (transient, catch_up) = {
            let partial = self.partial.lock().unwrap_or_else(|p| p.into_inner());
            let assigned = self.assigned.load(Ordering::SeqCst);
            (
                self.transient.subscribe(),
                partial.catch_up(&self.session_id, assigned),
            )
        };
        EventStream {
            log: Arc::clone(self),
            id,
            wake: self.wake.subscribe(),
            last_seq: since,
            pending: Vec::new().into_iter(),
            transient: Some(transient),
            catch_up,
        }
    }

    /// The next page after `since` for stream `id` (memory first, then store), recording
    /// how far the stream has read.
    async fn fetch(&self, id: u64, since: u64) -> EngineResult<Vec<Event>> {
        {
            let mut tail = self.tail.lock().expect("event log tail poisoned");
            if let Some(page) = tail.after(since, REPLAY_PAGE as usize) {
                if let Some(last) = page.last() {
                    tail.advance(id, last.seq);
                }
                return Ok(page);
            }
        }
        let page = self
            .store
            .events_since(&self.user, &self.chat_id, since, REPLAY_PAGE)
            .await?;
        if let Some(last) = page.last() {
            self.advance(id, last.seq);
        }
        Ok(page)
    }

    fn advance(&self, id: u64, seq: u64) {
        if let Ok(mut tail) = self.tail.lock() {
            tail.advance(id, seq);
        }
    }

    /// Forgets a dropped stream's cursor and what only it still needed.
    fn unsubscribe(&self, id: u64) {
        if let Ok(mut tail) = self.tail.lock() {
            tail.cursors.remove(&id);
            tail.trim();
        }
    }

    /// Persisted events after `since`, oldest first, at most `limit` (memory first, then store).
    pub async fn replay(&self, since: u64, limit: u32) -> EngineResult<Vec<Event>> {
        let from_memory = self
            .tail
            .lock()
            .expect("event log tail poisoned")
            .after(since, limit as usize);
        match from_memory {
            Some(events) => Ok(events),
            None => Ok(self
                .store
                .events_since(&self.user, &self.chat_id, since, limit)
                .await?),
        }
    }

    /// Whatever events after `since` memory holds for stream `id`, even if memory does not
    /// reach back to `since + 1`.
    fn in_memory_after(&self, id: u64, since: u64) -> Vec<Event> {
        let mut tail = self.tail.lock().expect("event log tail poisoned");
        let start = tail.recent.partition_point(|e| e.seq <= since);
        let page: Vec<Event> = tail
            .recent
            .range(start..)
            .take(REPLAY_PAGE as usize)
            .cloned()
            .collect();
        if let Some(last) = page.last() {
            tail.advance(id, last.seq);
        }
        page
    }

    /// Makes a persisted batch visible: appends it to the in-memory tail (evicting what no
    /// live stream needs and whatever exceeds the budgets) and wakes every subscriber.
    fn publish(&self, events: Vec<Event>) {
        let Some(last) = events.last().map(|e| e.seq) else {
            return;
        };
        {
            let mut tail = self.tail.lock().expect("event log tail poisoned");
            for event in events {
                tail.recent_bytes += approx_size(&event);
                tail.recent.push_back(event);
            }
            tail.trim();
            tail.persisted = last;
        }
        self.wake.send_replace(last);
    }

    /// The chat is gone: `notice` (never stored) follows what memory still holds for live
    /// subscribers (the store no longer has anything), the log is closed, and whoever waits
    /// for [`EventLog::chat_gone`] is told.
    fn mark_chat_gone(&self, notice: Event) {
        let seq = notice.seq;
        if let Ok(mut tail) = self.tail.lock() {
            tail.recent_bytes += approx_size(&notice);
            tail.recent.push_back(notice);
            tail.persisted = seq;
            tail.closed = true;
        }
        self.wake.send_replace(seq);
        self.drained.notify_waiters();
        self.chat_gone.cancel();
    }

    fn mark_closed(&self) {
        if let Ok(mut tail) = self.tail.lock() {
            tail.closed = true;
            // Finished sessions keep nothing in memory; replay reads the store.
            tail.recent = VecDeque::new();
            tail.recent_bytes = 0;
        }
        // Every stream delivers what is left (from the store) and then ends.
        self.wake.send_modify(|_| {});
        self.drained.notify_waiters();
    }
}

/// Approximate memory held by an event: its inline size plus its strings.
fn approx_size(event: &Event) -> usize {
    let strings = match &event.kind {
        EventKind::Status { message, .. }
        | EventKind::Progress { message }
        | EventKind::Error { message } => message.len(),
        EventKind::UserMessage { content, .. } | EventKind::AssistantMessage { content } => {
            content.len()
        }
        EventKind::Thought { call_id, thought } => call_id.len() + thought.len(),
        EventKind::CommandRun { call_id, command } => call_id.len() + command.len(),
        EventKind::CommandOutput {
            call_id,
            command,
            output,
            ..
        } => call_id.len() + command.len() + output.len(),
        EventKind::FileEdit {
            call_id,
            command,
            path,
            edit,
        } => call_id.len() + command.len() + path.len() + edit.as_ref().map_or(0, |e| e.text_len()),
        EventKind::FileEditResult {
            call_id,
            command,
            path,
            output,
            ..
        } => call_id.len() + command.len() + path.len() + output.len(),
        EventKind::Finish { call_id, message } => call_id.len() + message.len(),
        EventKind::Usage(usage) => usage.model.len(),
        EventKind::Condensation { summary, .. } => summary.len(),
        EventKind::ModelMessage { message } => crate::agent::context::message_chars(message),
    };
    std::mem::size_of::<Event>() + event.session_id.len() + strings
}

async fn writer(log: Arc<EventLog>, mut rx: mpsc::Receiver<Event>) {
    let mut batch = Vec::new();
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
                Err(StoreError::ChatNotFound(reason)) => {
                    tracing::warn!(
                        session = %log.session_id,
                        error = %reason,
                        "the session's chat was deleted; its events can no longer be stored"
                    );
                    // Refuse everything from now on: blocked producers get an error at once.
                    rx.close();
                    let mut last = batch.last().map_or(0, |e| e.seq);
                    while let Some(event) = rx.recv().await {
                        last = last.max(event.seq);
                    }
                    let notice = Event::new(
                        log.session_id.clone(),
                        last + 1,
                        EventKind::Error {
                            message: CHAT_GONE_MESSAGE.to_string(),
                        },
                    );
                    log.mark_chat_gone(notice);
                    return;
                }
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
    /// This stream's key in the log's read cursors.
    id: u64,
    /// Signals that the log published events or closed.
    wake: watch::Receiver<u64>,
    last_seq: u64,
    /// Events read but not yet returned; its buffer is released as soon as it is drained,
    /// so an idle subscriber holds no copies.
    pending: std::vec::IntoIter<Event>,
    /// Transient events since subscribing (taken by [`EventStream::live`]).
    transient: Option<broadcast::Receiver<TransientEvent>>,
    /// The partial answer being written when the stream was opened (for [`EventStream::live`]).
    catch_up: Vec<TransientEvent>,
}

impl EventStream {
    /// The next event, or `None` once the log is closed and everything was delivered.
    /// Cancel-safe: dropping the future loses nothing.
    pub async fn next(&mut self) -> EngineResult<Option<Event>> {
        loop {
            for event in self.pending.by_ref() {
                if event.seq > self.last_seq {
                    self.last_seq = event.seq;
                    return Ok(Some(event));
                }
            }
            self.pending = Vec::new().into_iter();
            // Mark the current signal as seen *before* looking, so anything published after
            // the look wakes `changed()` below.
            self.wake.borrow_and_update();
            let (persisted, closed) = self.log.state();
            if persisted > self.last_seq {
                let page = self.log.fetch(self.id, self.last_seq).await?;
                if page.iter().any(|e| e.seq > self.last_seq) {
                    self.pending = page.into_iter();
                    continue;
                }
                // The store no longer has them (the chat was deleted under a live session):
                // go on with whatever newer events memory still holds.
                tracing::warn!(
                    session = %self.log.session_id,
                    since = self.last_seq,
                    persisted,
                    "persisted events are missing from the store"
                );
                let newer = self.log.in_memory_after(self.id, self.last_seq);
                if !newer.is_empty() {
                    self.pending = newer.into_iter();
                    continue;
                }
            }
            if closed {
                return Ok(None);
            }
            // The sender lives as long as the log this stream holds, so this cannot fail.
            let _ = self.wake.changed().await;
        }
    }

    /// Seq of the last event returned.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// This stream with the log's transient events merged in (see [`LiveStream`]).
    pub fn live(mut self) -> LiveStream {
        let transient = self.transient.take();
        let held = std::mem::take(&mut self.catch_up).into();
        LiveStream {
            events: self,
            transient,
            held,
        }
    }
}

/// What a [`LiveStream`] yields.
#[derive(Debug, Clone, PartialEq)]
pub enum LiveItem {
    Stored(Event),
    Transient(TransientEvent),
}

/// A session's stored events (exactly as [`EventStream`] yields them) with its transient
/// events in between: a transient event comes right after the stored event it follows
/// (`after_seq`) and before the next one; one whose position the stream has already passed
/// is dropped (the stored event that completes it has been delivered).
pub struct LiveStream {
    events: EventStream,
    transient: Option<broadcast::Receiver<TransientEvent>>,
    /// Transient events received before the stream reached their position.
    held: VecDeque<TransientEvent>,
}

enum Woken {
    Transient(Result<TransientEvent, broadcast::error::RecvError>),
    Stored(EngineResult<Option<Event>>),
}

impl LiveStream {
    /// The next item, or `None` once the log is closed and every stored event was delivered.
    /// Cancel-safe.
    pub async fn next(&mut self) -> EngineResult<Option<LiveItem>> {
        loop {
            let position = self.events.last_seq();
            while let Some(front) = self.held.front() {
                if front.after_seq < position {
                    self.held.pop_front();
                    continue;
                }
                if front.after_seq == position {
                    return Ok(self.held.pop_front().map(LiveItem::Transient));
                }
                break;
            }
            let Some(transient) = self.transient.as_mut() else {
                return Ok(self.events.next().await?.map(LiveItem::Stored));
            };
            // Transient events first: one that precedes the next stored event is always
            // already in the channel when that stored event is published.
            let woken = tokio::select! {
                biased;
                t = transient.recv() => Woken::Transient(t),
                e = self.events.next() => Woken::Stored(e),
            };
            match woken {
                Woken::Stored(event) => return Ok(event?.map(LiveItem::Stored)),
                Woken::Transient(Ok(event)) => {
                    if self.held.len() >= HELD_TRANSIENT_MAX {
                        self.held.pop_front();
                    }
                    self.held.push_back(event);
                }
                Woken::Transient(Err(broadcast::error::RecvError::Lagged(missed))) => {
                    tracing::debug!(
                        session = %self.events.log.session_id,
                        missed,
                        "live stream fell behind; partial text skipped"
                    );
                }
                Woken::Transient(Err(broadcast::error::RecvError::Closed)) => {
                    self.transient = None;
                }
            }
        }
    }

    /// Seq of the last stored event returned.
    pub fn last_seq(&self) -> u64 {
        self.events.last_seq()
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        self.log.unsubscribe(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{
        ChatMessage, ChatSession, IntegrationRow, NewChat, SqliteStore, StoreResult,
    };

    struct Fixture {
        _dir: tempfile::TempDir,
        store: SqliteStore,
        user: User,
    }

    impl Fixture {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let store = SqliteStore::open(&dir.path().join("lucid.sqlite3")).unwrap();
            Fixture {
                _dir: dir,
                store,
                user: User::with_id("u1"),
            }
        }

        async fn chat(&self, chat_id: &str) {
            self.store
                .create_chat(
                    &self.user,
                    NewChat {
                        id: chat_id.into(),
                        agent_session_id: Some(format!("s-{chat_id}")),
                        ..NewChat::default()
                    },
                )
                .await
                .unwrap();
        }

        async fn open(&self, chat_id: &str) -> Arc<EventLog> {
            EventLog::open(
                Arc::new(self.store.clone()),
                self.user.clone(),
                chat_id.into(),
                format!("s-{chat_id}"),
            )
            .await
            .unwrap()
        }
    }

    fn output(seq: u64, bytes: usize) -> EventKind {
        EventKind::CommandOutput {
            call_id: format!("c{seq}"),
            command: "make".into(),
            output: format!("{seq:08}").repeat(bytes / 8),
            exit_code: Some(0),
            total_bytes: bytes as u64,
            timed_out: false,
            interrupted: false,
        }
    }

    async fn emit_n(log: &EventLog, from: u64, to: u64) {
        for seq in from..=to {
            assert_eq!(log.emit(output(seq, 64)).await.unwrap(), seq);
        }
    }

    /// Reads until the end, asserting consecutive seqs starting after `since`.
    async fn read_all(stream: &mut EventStream, since: u64) -> u64 {
        let mut last = since;
        while let Some(e) = tokio::time::timeout(Duration::from_secs(30), stream.next())
            .await
            .expect("stream stalled")
            .unwrap()
        {
            assert_eq!(e.seq, last + 1, "gap-free, in order, no duplicates");
            last = e.seq;
        }
        last
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn live_subscriber_sees_every_event_only_after_it_is_stored() {
        let f = Fixture::new();
        f.chat("c").await;
        let log = f.open("c").await;
        let mut stream = log.subscribe(0);
        let (store, user) = (f.store.clone(), f.user.clone());
        let reader = tokio::spawn(async move {
            let mut last = 0;
            while let Some(e) = stream.next().await.unwrap() {
                assert_eq!(e.seq, last + 1);
                let stored = store.last_seq(&user, "c").await.unwrap();
                assert!(stored >= e.seq, "event {} published before stored", e.seq);
                last = e.seq;
            }
            last
        });
        emit_n(&log, 1, 5000).await;
        log.close().await;
        assert_eq!(reader.await.unwrap(), 5000);
        assert_eq!(log.last_persisted(), 5000);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn late_and_slow_subscribers_catch_up_from_the_store() {
        let f = Fixture::new();
        f.chat("c").await;
        let log = f.open("c").await;
        // Subscribed from the start but not read while far more than memory holds goes by.
        let mut slow = log.subscribe(0);
        emit_n(&log, 1, 3 * RECENT_CAPACITY as u64).await;
        while log.last_persisted() < 3 * RECENT_CAPACITY as u64 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut late = log.subscribe(10);
        emit_n(
            &log,
            3 * RECENT_CAPACITY as u64 + 1,
            3 * RECENT_CAPACITY as u64 + 10,
        )
        .await;
        log.close().await;
        let end = 3 * RECENT_CAPACITY as u64 + 10;
        assert_eq!(read_all(&mut slow, 0).await, end);
        assert_eq!(read_all(&mut late, 10).await, end);
        assert_eq!(log.replay(end - 5, 100).await.unwrap().len(), 5);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn memory_tail_respects_its_byte_budget() {
        let f = Fixture::new();
        f.chat("c").await;
        let log = f.open("c").await;
        // A subscriber that has read nothing yet keeps events in memory, within the budget.
        let mut stream = log.subscribe(0);
        let big = 200 * 1024;
        for seq in 1..=20 {
            log.emit(output(seq, big)).await.unwrap();
        }
        while log.last_persisted() < 20 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        {
            let tail = log.tail.lock().unwrap();
            assert!(tail.recent_bytes <= RECENT_MAX_BYTES);
            assert!(tail.recent.len() < 20 && !tail.recent.is_empty());
            let sum: usize = tail.recent.iter().map(approx_size).sum();
            assert_eq!(sum, tail.recent_bytes);
        }
        // Evicted events are still served, in full, from the store.
        for seq in 1..=20 {
            let e = stream.next().await.unwrap().unwrap();
            assert_eq!(e.seq, seq);
            assert_eq!(e.kind, output(seq, big));
        }
        log.close().await;
        assert!(stream.next().await.unwrap().is_none());
    }

    fn in_memory(log: &EventLog) -> (usize, usize) {
        let tail = log.tail.lock().unwrap();
        (tail.recent.len(), tail.recent_bytes)
    }

    async fn persisted(log: &EventLog, seq: u64) {
        while log.last_persisted() < seq {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn memory_holds_only_what_live_subscribers_have_not_read() {
        let f = Fixture::new();
        f.chat("c").await;
        let log = f.open("c").await;
        // Nobody follows: nothing stays in memory.
        emit_n(&log, 1, 100).await;
        persisted(&log, 100).await;
        assert_eq!(in_memory(&log), (0, 0));

        // Two followers: memory keeps what the slower one has not read.
        let mut fast = log.subscribe(100);
        let mut slow = log.subscribe(100);
        emit_n(&log, 101, 300).await;
        persisted(&log, 300).await;
        assert_eq!(in_memory(&log).0, 200);
        for seq in 101..=300 {
            assert_eq!(fast.next().await.unwrap().unwrap().seq, seq);
        }
        assert_eq!(in_memory(&log).0, 200, "the slow one still needs them");
        for seq in 101..=150 {
            assert_eq!(slow.next().await.unwrap().unwrap().seq, seq);
        }
        // The slow one fetched a whole page: nothing is left that anyone needs.
        assert_eq!(in_memory(&log), (0, 0));

        // A follower that goes away releases what only it needed.
        emit_n(&log, 301, 350).await;
        persisted(&log, 350).await;
        assert_eq!(in_memory(&log).0, 50);
        drop(slow);
        drop(fast);
        assert_eq!(in_memory(&log), (0, 0));

        // A new follower from the start reads it all from the store.
        let mut late = log.subscribe(0);
        // And one from beyond the end (a client's bogus `since`) simply gets nothing.
        let mut beyond = log.subscribe(u64::MAX);
        assert!(log.replay(u64::MAX, 10).await.unwrap().is_empty());
        log.close().await;
        assert_eq!(read_all(&mut late, 0).await, 350);
        assert!(beyond.next().await.unwrap().is_none());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cancelled_next_calls_lose_nothing() {
        let f = Fixture::new();
        f.chat("c").await;
        let log = f.open("c").await;
        let mut stream = log.subscribe(0);
        let producer = {
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                for seq in 1..=2000 {
                    log.emit(output(seq, 64)).await.unwrap();
                    if seq % 100 == 0 {
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                }
                log.close().await;
            })
        };
        let mut last = 0;
        let mut cancelled = 0;
        loop {
            tokio::select! {
                e = stream.next() => match e.unwrap() {
                    Some(e) => {
                        assert_eq!(e.seq, last + 1);
                        last = e.seq;
                    }
                    None => break,
                },
                _ = tokio::time::sleep(Duration::from_micros(200)) => cancelled += 1,
            }
        }
        producer.await.unwrap();
        assert_eq!(last, 2000);
        assert!(cancelled > 0, "the test must actually cancel some waits");
    }

    /// The SQLite store, with appends failing as "unavailable" while `down` is set.
    struct FlakyStore {
        inner: SqliteStore,
        down: std::sync::atomic::AtomicBool,
    }

    #[async_trait::async_trait]
    impl Store for FlakyStore {
        async fn create_chat(&self, u: &User, c: NewChat) -> StoreResult<ChatSession> {
            self.inner.create_chat(u, c).await
        }
        async fn list_chats(&self, u: &User, l: u32, o: u32) -> StoreResult<Vec<ChatSession>> {
            self.inner.list_chats(u, l, o).await
        }
        async fn get_chat(&self, u: &User, c: &str) -> StoreResult<Option<ChatSession>> {
            self.inner.get_chat(u, c).await
        }
        async fn chat_by_session(&self, u: &User, s: &str) -> StoreResult<Option<ChatSession>> {
            self.inner.chat_by_session(u, s).await
        }
        async fn chat_messages(&self, u: &User, c: &str) -> StoreResult<Vec<ChatMessage>> {
            self.inner.chat_messages(u, c).await
        }
        async fn rename_chat(&self, u: &User, c: &str, t: &str) -> StoreResult<bool> {
            self.inner.rename_chat(u, c, t).await
        }
        async fn delete_chat(&self, u: &User, c: &str) -> StoreResult<bool> {
            self.inner.delete_chat(u, c).await
        }
        async fn set_chat_active(&self, u: &User, c: &str, a: bool) -> StoreResult<()> {
            self.inner.set_chat_active(u, c, a).await
        }
        async fn deactivate_all_chats(&self) -> StoreResult<u64> {
            self.inner.deactivate_all_chats().await
        }
        async fn active_chats(&self) -> StoreResult<Vec<ChatSession>> {
            self.inner.active_chats().await
        }
        async fn append_events(&self, u: &User, c: &str, e: &[Event]) -> StoreResult<()> {
            if self.down.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(StoreError::Unavailable("disk full".into()));
            }
            self.inner.append_events(u, c, e).await
        }
        async fn events_since(&self, u: &User, c: &str, s: u64, l: u32) -> StoreResult<Vec<Event>> {
            self.inner.events_since(u, c, s, l).await
        }
        async fn last_seq(&self, u: &User, c: &str) -> StoreResult<u64> {
            self.inner.last_seq(u, c).await
        }
        async fn upsert_integration(&self, u: &User, r: IntegrationRow) -> StoreResult<String> {
            self.inner.upsert_integration(u, r).await
        }
        async fn get_integration(&self, u: &User, p: &str) -> StoreResult<Option<IntegrationRow>> {
            self.inner.get_integration(u, p).await
        }
        async fn list_integrations(&self, u: &User) -> StoreResult<Vec<IntegrationRow>> {
            self.inner.list_integrations(u).await
        }
        async fn delete_integration(&self, u: &User, p: &str) -> StoreResult<bool> {
            self.inner.delete_integration(u, p).await
        }
        async fn ping(&self) -> StoreResult<()> {
            self.inner.ping().await
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_store_blocks_producers_and_loses_nothing() {
        let f = Fixture::new();
        f.chat("c").await;
        let flaky = Arc::new(FlakyStore {
            inner: f.store.clone(),
            down: std::sync::atomic::AtomicBool::new(true),
        });
        // The database is down: every append fails and the writer retries.
        let log = EventLog::open(
            Arc::clone(&flaky) as Arc<dyn Store>,
            f.user.clone(),
            "c".into(),
            "s-c".into(),
        )
        .await
        .unwrap();
        let mut stream = log.subscribe(0);
        let accepted = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let producer = {
            let (log, accepted) = (Arc::clone(&log), Arc::clone(&accepted));
            tokio::spawn(async move {
                for seq in 1..=3000 {
                    log.emit(output(seq, 64)).await.unwrap();
                    accepted.store(seq, std::sync::atomic::Ordering::SeqCst);
                }
            })
        };
        tokio::time::sleep(Duration::from_millis(500)).await;
        let queued = accepted.load(std::sync::atomic::Ordering::SeqCst);
        assert!(
            queued <= (QUEUE_CAPACITY + MAX_BATCH + 1) as u64,
            "{queued} events accepted"
        );
        assert!(!producer.is_finished(), "the producer waits (backpressure)");
        assert_eq!(log.last_persisted(), 0);
        assert!(
            tokio::time::timeout(Duration::from_millis(50), stream.next())
                .await
                .is_err(),
            "nothing is published before it is stored"
        );
        // The store recovers: the writer's retry goes through and everything follows.
        flaky.down.store(false, std::sync::atomic::Ordering::SeqCst);
        tokio::time::timeout(Duration::from_secs(30), producer)
            .await
            .unwrap()
            .unwrap();
        log.close().await;
        assert_eq!(read_all(&mut stream, 0).await, 3000);
        assert_eq!(f.store.last_seq(&f.user, "c").await.unwrap(), 3000);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_deleted_chat_ends_the_log_and_unblocks_its_producers() {
        let f = Fixture::new();
        f.chat("c").await;
        let log = f.open("c").await;
        let mut stream = log.subscribe(0);
        emit_n(&log, 1, 10).await;
        persisted(&log, 10).await;
        assert!(!log.is_chat_gone());
        f.store.delete_chat(&f.user, "c").await.unwrap();
        // Several producers flood the log: none of them may stay blocked.
        let producers: Vec<_> = (0..4)
            .map(|p| {
                let log = Arc::clone(&log);
                tokio::spawn(async move {
                    let mut refused = 0;
                    for seq in 0..5000u64 {
                        if log.emit(output(p * 10_000 + seq, 64)).await.is_err() {
                            refused += 1;
                        }
                    }
                    refused
                })
            })
            .collect();
        for producer in producers {
            let refused = tokio::time::timeout(Duration::from_secs(20), producer)
                .await
                .expect("a producer is blocked")
                .unwrap();
            assert!(refused > 0, "events after the deletion are refused");
        }
        tokio::time::timeout(Duration::from_secs(5), log.chat_gone())
            .await
            .expect("the session is told");
        tokio::time::timeout(Duration::from_secs(5), log.close())
            .await
            .expect("close does not hang");
        // The subscriber gets what was stored, then the final error, then the end.
        let mut last = None;
        while let Some(e) = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .expect("the stream ends")
            .unwrap()
        {
            last = Some(e);
        }
        let last = last.expect("events");
        assert_eq!(
            last.kind,
            EventKind::Error {
                message: CHAT_GONE_MESSAGE.into()
            }
        );
        assert!(log.emit(output(1, 8)).await.is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reopening_continues_and_closed_views_replay() {
        let f = Fixture::new();
        f.chat("c").await;
        let log = f.open("c").await;
        emit_n(&log, 1, 3).await;
        log.close().await;
        let err = log.emit(output(4, 8)).await.unwrap_err();
        assert!(err.message.contains("closed"));

        let again = f.open("c").await;
        assert_eq!(again.last_assigned().await, 3);
        emit_n(&again, 4, 5).await;
        again.close().await;

        let view = EventLog::closed(
            Arc::new(f.store.clone()),
            f.user.clone(),
            "c".into(),
            "s-c".into(),
        )
        .await
        .unwrap();
        assert_eq!(read_all(&mut view.subscribe(0), 0).await, 5);
        assert_eq!(read_all(&mut view.subscribe(2), 2).await, 5);
        assert!(view.emit(output(6, 8)).await.is_err());
        view.close().await;
    }
}

#[cfg(test)]
mod replay_gap_tests {
    use super::*;
    use crate::store::{NewChat, SqliteStore};

    /// A subscriber from an early `since` on a long log gets every event exactly once, in
    /// order: the part evicted from memory from the store, then memory, then live events.
    #[tokio::test]
    async fn subscribe_from_zero_after_eviction_has_no_gap() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&dir.path().join("db.sqlite")).unwrap());
        let user = User::with_id("u1");
        store
            .create_chat(
                &user,
                NewChat {
                    id: "c1".into(),
                    agent_session_id: Some("s1".into()),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let log = EventLog::open(store, user, "c1".into(), "s1".into())
            .await
            .unwrap();
        let n = RECENT_CAPACITY as u64 + 500;
        for i in 0..n {
            log.emit(EventKind::Progress {
                message: format!("m{i}"),
            })
            .await
            .unwrap();
        }
        while log.last_persisted() < n {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut stream = log.subscribe(0);
        let producer = {
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                for i in 0..3000u64 {
                    log.emit(EventKind::Progress {
                        message: format!("l{i}"),
                    })
                    .await
                    .unwrap();
                }
                log.close().await;
            })
        };
        let mut expect = 1;
        while let Some(e) = stream.next().await.unwrap() {
            assert_eq!(e.seq, expect);
            expect += 1;
        }
        producer.await.unwrap();
        assert_eq!(expect, n + 3000 + 1);
    }
}
