//! End-to-end cost of the session event pipeline, and its memory across many sessions.
//!
//! 1. **Throughput.** `EventLog::emit` of realistic `CommandOutput` events (~200 bytes of
//!    output each) → bounded queue → writer → a real `SqliteStore` file in a temp dir →
//!    publish → `EventStream::next()` → `to_wire()` → a text frame on an axum WebSocket on
//!    127.0.0.1 → a tokio-tungstenite client that parses every frame as JSON and asserts
//!    gap-free, in-order `seq`. The store must hold every event at the end. A baseline in the
//!    same process sends the same number of events, built and rendered the same way, through
//!    the same WebSocket handler without the event log or the store, so the ratio shows what
//!    persistence and fan-out cost.
//! 2. **Memory.** RSS (`/proc/self/statm`), heap in use (`mallinfo2`) and thread count
//!    before, while 1,000 event logs are open (each emitted 200 events, one subscriber read
//!    them), and after closing them all; then two more rounds of 1,000. A later round must
//!    not grow RSS by more than 16 MiB over the one before (flat), or the benchmark fails.
//!
//! Run: `cargo bench -p lucid-server --bench event_pipeline` (release profile; append
//! `-- throughput` or `-- memory` to run one part). Any lost, duplicated or reordered event
//! panics, so a broken pipeline fails the benchmark. CPU time per event is printed beside the
//! wall-clock rates because the machine is shared: it is the steadier figure.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::routing::get;
use axum::Router;
use futures::{SinkExt, StreamExt};
use lucid_engine::events::{Event, EventKind};
use lucid_engine::sessions::{EventLog, EventStream};
use lucid_engine::store::{NewChat, SqliteStore, Store};
use lucid_engine::User;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite;

/// Events per throughput run.
const EVENTS: u64 = 200_000;
/// Throughput runs per variant; the median is reported.
const RUNS: usize = 5;
/// Sessions per memory round.
const SESSIONS: usize = 1_000;
/// Events emitted into each session of a memory round.
const EVENTS_PER_SESSION: u64 = 200;
/// Memory rounds (the figures of round 2 onwards must stay flat).
const ROUNDS: usize = 3;
/// A round may grow RSS by at most this much over the previous one once closed.
const FLAT_TOLERANCE_BYTES: u64 = 16 * 1024 * 1024;
/// Upper bound for any single wait, so a stuck pipeline fails instead of hanging.
const STALL_TIMEOUT: Duration = Duration::from_secs(120);

/// The command whose output every benchmark event carries.
const COMMAND: &str = "cargo test --workspace -- --nocapture";

/// A `CommandOutput` event like the agent emits after a short command (~200 bytes of output).
fn command_output(seq: u64) -> EventKind {
    let mut output = format!(
        "running 3 tests\ntest parser::tokenizer_handles_utf8 ... ok\n\
         test parser::empty_input_is_an_error ... ok\ntest agent::step_{seq:08} ... ok\n\n\
         test result: ok. 3 passed; 0 failed; 0 ignored; finished in 0.02s\n"
    );
    // The sandbox hands over output buffers of their exact size; keep `format!`'s slack
    // out of the memory figures.
    output.shrink_to_fit();
    EventKind::CommandOutput {
        call_id: format!("call_{seq:08}"),
        command: COMMAND.to_string(),
        total_bytes: output.len() as u64,
        output,
        exit_code: Some(0),
        timed_out: false,
        interrupted: false,
    }
}

// ---------------------------------------------------------------------------------------------
// Measurement helpers
// ---------------------------------------------------------------------------------------------

/// Resident set size of this process, from `/proc/self/statm` (second field, in pages).
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("read /proc/self/statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|f| f.parse().ok())
        .expect("statm has a resident field");
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * u64::try_from(page).unwrap_or(4096)
}

/// CPU time (user + system) of the whole process so far. On a shared machine it shows what
/// the work costs independently of how much of the cores the benchmark got.
fn cpu_time() -> Duration {
    // SAFETY: getrusage only writes into the zeroed struct we pass.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| {
        Duration::new(
            u64::try_from(t.tv_sec).unwrap_or(0),
            u32::try_from(t.tv_usec).unwrap_or(0) * 1000,
        )
    };
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Threads of this process (`/proc/self/status`).
fn thread_count() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .expect("read /proc/self/status")
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("status has a Threads line")
}

/// Bytes the program holds in malloc'ed blocks right now (`mallinfo2`: in-use arena bytes
/// plus mmapped blocks). Unlike RSS it drops as soon as memory is freed, so it separates a
/// leak from memory the allocator keeps for reuse.
fn heap_in_use() -> u64 {
    // SAFETY: mallinfo2 only reads the allocator's statistics.
    let info = unsafe { libc::mallinfo2() };
    (info.uordblks + info.hblkhd) as u64
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn signed_mib(after: u64, before: u64) -> String {
    let delta = after as f64 - before as f64;
    format!("{:+.1} MiB", delta / (1024.0 * 1024.0))
}

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(STALL_TIMEOUT, fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: nothing happened for {STALL_TIMEOUT:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// The WebSocket side: the same per-event work as `lucid_server::ws`
// ---------------------------------------------------------------------------------------------

/// Where the WebSocket handler takes its events from.
enum Source {
    /// A subscriber of a real event log (the pipeline under test).
    Log(EventStream),
    /// Events built on the spot, with no log or store behind them (the baseline).
    Generated {
        session_id: String,
        next_seq: u64,
        last_seq: u64,
    },
}

impl Source {
    /// The next event, `None` at the end. Cancel-safe, like `EventStream::next`.
    async fn next(&mut self) -> Option<Event> {
        match self {
            Source::Log(stream) => stream.next().await.expect("event stream failed"),
            Source::Generated {
                session_id,
                next_seq,
                last_seq,
            } => {
                if *next_seq > *last_seq {
                    return None;
                }
                let seq = *next_seq;
                *next_seq += 1;
                Some(Event::new(session_id.clone(), seq, command_output(seq)))
            }
        }
    }
}

/// Forwards events like `ws.rs` does: `next()` raced against client frames in a `select!`,
/// `to_wire()`, the `chatId` field, one text frame per event; close 1000 at the end.
async fn forward(socket: WebSocket, mut source: Source, chat_id: String) {
    let (mut tx, mut rx) = socket.split();
    loop {
        tokio::select! {
            event = source.next() => match event {
                Some(event) => {
                    let mut frame = event.to_wire();
                    frame["chatId"] = json!(chat_id);
                    let text = Message::Text(Utf8Bytes::from(frame.to_string()));
                    if tx.send(text).await.is_err() {
                        return;
                    }
                }
                None => {
                    let close = CloseFrame {
                        code: 1000,
                        reason: Utf8Bytes::from("Session ended"),
                    };
                    let _ = tx.send(Message::Close(Some(close))).await;
                    let _ = tx.close().await;
                    return;
                }
            },
            frame = rx.next() => match frame {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

/// Serves one WebSocket route on 127.0.0.1 that streams `source` to the first client.
async fn serve_once(source: Source, chat_id: String) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let slot = Arc::new(Mutex::new(Some(source)));
    let app = Router::new().route(
        "/ws",
        get(move |ws: WebSocketUpgrade| {
            let source = slot.lock().expect("source slot").take();
            let chat_id = chat_id.clone();
            async move {
                let source = source.expect("one client per benchmark run");
                ws.on_upgrade(move |socket| forward(socket, source, chat_id))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1");
    let addr = listener.local_addr().expect("local addr");
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.expect("serve");
    });
    (addr, server)
}

type Client =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Reads frames until `expected` events arrived, parsing each one and asserting the wire
/// shape and gap-free `seq`; returns when the last one arrived.
async fn receive_all(client: &mut Client, session_id: &str, expected: u64) -> Instant {
    let mut next_seq = 1u64;
    while next_seq <= expected {
        let msg = within("client waiting for an event", client.next())
            .await
            .unwrap_or_else(|| panic!("connection ended after {} events", next_seq - 1))
            .expect("websocket read");
        let text = match msg {
            tungstenite::Message::Text(text) => text,
            tungstenite::Message::Close(frame) => {
                panic!("server closed ({frame:?}) after {} events", next_seq - 1)
            }
            _ => continue,
        };
        let frame: Value = serde_json::from_str(text.as_str()).expect("frame is JSON");
        let seq = frame["seq"].as_u64().expect("frame has a seq");
        assert_eq!(seq, next_seq, "events arrive in order without gaps");
        assert_eq!(frame["type"], "agent_event");
        assert_eq!(frame["eventType"], "CmdOutputObservation");
        assert_eq!(frame["sessionId"], session_id);
        next_seq += 1;
    }
    Instant::now()
}

/// Waits for the server's close frame (code 1000) after the last event.
async fn expect_close(client: &mut Client) {
    loop {
        match within("client waiting for the close frame", client.next()).await {
            Some(Ok(tungstenite::Message::Close(frame))) => {
                let code = frame.map(|f| u16::from(f.code)).unwrap_or(1005);
                assert_eq!(code, 1000, "normal close after the session ended");
                return;
            }
            Some(Ok(tungstenite::Message::Text(t))) => {
                panic!("unexpected frame after the end: {t}")
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("connection failed before the close frame: {e}"),
            None => panic!("connection dropped without a close frame"),
        }
    }
}

async fn connect(addr: SocketAddr) -> Client {
    let (client, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
        .await
        .expect("connect to the benchmark server");
    client
}

// ---------------------------------------------------------------------------------------------
// 1. Throughput
// ---------------------------------------------------------------------------------------------

struct RunResult {
    elapsed: Duration,
    cpu: Duration,
}

async fn create_chat(store: &SqliteStore, user: &User, chat_id: &str, session_id: &str) {
    store
        .create_chat(
            user,
            NewChat {
                id: chat_id.to_string(),
                agent_session_id: Some(session_id.to_string()),
                ..NewChat::default()
            },
        )
        .await
        .expect("create chat");
}

/// Agent → EventLog → SQLite → EventStream → WebSocket → client, with a fresh store file.
async fn pipeline_run(run: usize) -> RunResult {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("lucid.sqlite3")).expect("open store");
    let user = User::with_id("bench-user");
    let (chat_id, session_id) = (format!("chat-{run}"), format!("session-{run}"));
    create_chat(&store, &user, &chat_id, &session_id).await;
    let log = EventLog::open(
        Arc::new(store.clone()),
        user.clone(),
        chat_id.clone(),
        session_id.clone(),
    )
    .await
    .expect("open event log");

    let (addr, server) = serve_once(Source::Log(log.subscribe(0)), chat_id.clone()).await;
    let mut client = connect(addr).await;

    let cpu_start = cpu_time();
    let start = Instant::now();
    let agent = {
        let log = Arc::clone(&log);
        tokio::spawn(async move {
            for seq in 1..=EVENTS {
                let assigned = log.emit(command_output(seq)).await.expect("emit");
                assert_eq!(assigned, seq, "emit assigns consecutive seqs");
            }
        })
    };
    let done = receive_all(&mut client, &session_id, EVENTS).await;
    let cpu = cpu_time() - cpu_start;
    within("agent task", agent).await.expect("agent task");

    within("closing the log", log.close()).await;
    expect_close(&mut client).await;
    let stored = store.last_seq(&user, &chat_id).await.expect("last_seq");
    assert_eq!(stored, EVENTS, "the store holds every event");
    server.abort();
    RunResult {
        elapsed: done - start,
        cpu,
    }
}

/// The same events, built and rendered the same way, through the same WebSocket handler,
/// without the event log or the store.
async fn baseline_run(run: usize) -> RunResult {
    let session_id = format!("baseline-{run}");
    let source = Source::Generated {
        session_id: session_id.clone(),
        next_seq: 1,
        last_seq: EVENTS,
    };
    let (addr, server) = serve_once(source, format!("chat-{run}")).await;
    let cpu_start = cpu_time();
    let start = Instant::now();
    let mut client = connect(addr).await;
    let done = receive_all(&mut client, &session_id, EVENTS).await;
    let cpu = cpu_time() - cpu_start;
    expect_close(&mut client).await;
    server.abort();
    RunResult {
        elapsed: done - start,
        cpu,
    }
}

fn report(name: &str, results: &[RunResult]) -> f64 {
    let walls: Vec<Duration> = results.iter().map(|r| r.elapsed).collect();
    let cpus: Vec<Duration> = results.iter().map(|r| r.cpu).collect();
    let rate = |d: Duration| EVENTS as f64 / d.as_secs_f64();
    let med = median(walls.clone());
    let best = *walls.iter().min().expect("runs");
    let worst = *walls.iter().max().expect("runs");
    let cpu = median(cpus);
    println!(
        "{name:<34} median {:>9.0} events/s  ({:>7.1} ms; best {:.0}, worst {:.0}; \
         CPU {:.2} µs/event)",
        rate(med),
        med.as_secs_f64() * 1e3,
        rate(best),
        rate(worst),
        cpu.as_secs_f64() * 1e6 / EVENTS as f64,
    );
    rate(med)
}

async fn throughput() {
    println!(
        "event_pipeline: {RUNS} runs of {EVENTS} CommandOutput events (~{} B of output each), \
         client on 127.0.0.1 parsing every frame",
        match command_output(1) {
            EventKind::CommandOutput { output, .. } => output.len(),
            _ => 0,
        }
    );
    let mut pipeline = Vec::new();
    let mut baseline = Vec::new();
    // Interleaved so both variants see the same background load.
    for run in 0..RUNS {
        baseline.push(baseline_run(run).await);
        pipeline.push(pipeline_run(run).await);
    }
    let base = report("WebSocket alone (baseline)", &baseline);
    let full = report("EventLog + SQLite + WebSocket", &pipeline);
    println!(
        "pipeline / baseline throughput: {:.2}  (target: pipeline >= 50000 events/s: {})",
        full / base,
        if full >= 50_000.0 { "met" } else { "NOT met" }
    );
}

// ---------------------------------------------------------------------------------------------
// 2. Memory across 1,000 sessions
// ---------------------------------------------------------------------------------------------

/// A subscriber that reads a session's log to the end, asserting gap-free seqs.
async fn read_to_end(mut stream: EventStream, received: Arc<tokio::sync::Semaphore>) -> u64 {
    let mut count = 0u64;
    while let Some(event) = stream.next().await.expect("event stream") {
        count += 1;
        assert_eq!(event.seq, count, "subscriber sees gap-free seqs");
        if count == EVENTS_PER_SESSION {
            received.add_permits(1);
        }
    }
    count
}

/// RSS and heap in use at one point of a round.
#[derive(Clone, Copy)]
struct Snapshot {
    rss: u64,
    heap: u64,
    threads: u64,
}

impl Snapshot {
    fn now() -> Self {
        Snapshot {
            rss: rss_bytes(),
            heap: heap_in_use(),
            threads: thread_count(),
        }
    }
}

struct RoundFigures {
    open: Snapshot,
    closed: Snapshot,
}

async fn memory_round(store: &SqliteStore, user: &User, round: usize) -> RoundFigures {
    let received = Arc::new(tokio::sync::Semaphore::new(0));
    let mut logs = Vec::with_capacity(SESSIONS);
    let mut readers = Vec::with_capacity(SESSIONS);
    for i in 0..SESSIONS {
        let (chat_id, session_id) = (format!("r{round}-chat-{i}"), format!("r{round}-s-{i}"));
        create_chat(store, user, &chat_id, &session_id).await;
        let log = EventLog::open(Arc::new(store.clone()), user.clone(), chat_id, session_id)
            .await
            .expect("open event log");
        readers.push(tokio::spawn(read_to_end(
            log.subscribe(0),
            Arc::clone(&received),
        )));
        logs.push(log);
    }
    // Every session's agent emits concurrently, like many live sessions would.
    let agents: Vec<_> = logs
        .iter()
        .map(|log| {
            let log = Arc::clone(log);
            tokio::spawn(async move {
                for seq in 1..=EVENTS_PER_SESSION {
                    log.emit(command_output(seq)).await.expect("emit");
                }
            })
        })
        .collect();
    for agent in agents {
        within("session agent", agent).await.expect("agent task");
    }
    let all = u32::try_from(SESSIONS).expect("session count fits u32");
    within(
        "subscribers reading every event",
        received.acquire_many(all),
    )
    .await
    .expect("semaphore")
    .forget();
    let open = Snapshot::now();

    for log in &logs {
        within("closing a log", log.close()).await;
        assert_eq!(log.last_persisted(), EVENTS_PER_SESSION);
    }
    for reader in readers {
        let count = within("subscriber end", reader).await.expect("subscriber");
        assert_eq!(count, EVENTS_PER_SESSION, "subscriber read every event");
    }
    drop(logs);
    // Let detached writer tasks finish dropping their last references.
    tokio::task::yield_now().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    RoundFigures {
        open,
        closed: Snapshot::now(),
    }
}

fn print_snapshot(label: &str, at: Snapshot, before: Snapshot) {
    println!(
        "{label:<30} RSS {:>7.1} MiB ({:>11})   heap in use {:>7.1} MiB ({:>11})   {} threads",
        mib(at.rss),
        signed_mib(at.rss, before.rss),
        mib(at.heap),
        signed_mib(at.heap, before.heap),
        at.threads,
    );
}

async fn memory() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("lucid.sqlite3")).expect("open store");
    let user = User::with_id("bench-user");
    println!(
        "\nmemory: {ROUNDS} rounds of {SESSIONS} event logs open at once, {EVENTS_PER_SESSION} \
         events each, one subscriber each (size_of::<Event>() = {} B); deltas vs before",
        std::mem::size_of::<Event>()
    );
    let before = Snapshot::now();
    print_snapshot("before", before, before);
    let mut previous: Option<RoundFigures> = None;
    let mut failures = Vec::new();
    for round in 1..=ROUNDS {
        let f = memory_round(&store, &user, round).await;
        print_snapshot(
            &format!("round {round}: {SESSIONS} logs open"),
            f.open,
            before,
        );
        println!(
            "{:<30} {:.1} KiB RSS, {:.1} KiB heap per open session",
            "",
            (f.open.rss as f64 - before.rss as f64) / SESSIONS as f64 / 1024.0,
            (f.open.heap as f64 - before.heap as f64) / SESSIONS as f64 / 1024.0,
        );
        print_snapshot(&format!("round {round}: all closed"), f.closed, before);
        if let Some(prev) = &previous {
            println!(
                "{:<30} RSS {} open, {} closed vs round {}",
                "",
                signed_mib(f.open.rss, prev.open.rss),
                signed_mib(f.closed.rss, prev.closed.rss),
                round - 1
            );
            for (what, now, then) in [
                ("open", f.open.rss, prev.open.rss),
                ("closed", f.closed.rss, prev.closed.rss),
            ] {
                let growth = now.saturating_sub(then);
                if growth > FLAT_TOLERANCE_BYTES {
                    failures.push(format!(
                        "RSS ({what}) grew by {:.1} MiB from round {} to round {round}",
                        mib(growth),
                        round - 1
                    ));
                }
            }
        }
        previous = Some(f);
    }
    assert!(failures.is_empty(), "memory is not flat: {failures:?}");
}

/// Which parts to run: every non-flag argument is a filter (`throughput`, `memory`); none
/// runs both. Flags such as the `--bench` that cargo passes are ignored.
fn selected(part: &str) -> bool {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    filters.is_empty() || filters.iter().any(|f| part.contains(f.as_str()))
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        if selected("throughput") {
            throughput().await;
        }
        if selected("memory") {
            memory().await;
        }
    });
}
