//! Throughput of the SQLite event log: `append_events` in batches of 500 (one transaction
//! each) and a full replay with `events_since`, on a real database file in a temp dir.
//!
//! Run: `cargo bench -p lucid-engine --bench store_events`. Prints the median of several
//! runs and events per second.

use std::time::{Duration, Instant};

use lucid_engine::events::{Event, EventKind};
use lucid_engine::store::{NewChat, SqliteStore, Store};
use lucid_engine::User;

const BATCH: usize = 500;
const BATCHES_PER_RUN: usize = 100;
const RUNS: usize = 7;

/// A realistic mix: commands, their output, thoughts and messages.
fn event(session: &str, seq: u64) -> Event {
    let kind = match seq % 4 {
        0 => EventKind::CommandRun {
            call_id: format!("call-{seq}"),
            command: "cargo test --workspace -- --nocapture".into(),
        },
        1 => EventKind::CommandOutput {
            call_id: format!("call-{seq}"),
            command: "cargo test --workspace -- --nocapture".into(),
            output: "running 12 tests\ntest a ... ok\ntest b ... ok\n".repeat(4),
            exit_code: Some(0),
            total_bytes: 180,
            timed_out: false,
            interrupted: false,
        },
        2 => EventKind::Thought {
            call_id: format!("call-{seq}"),
            thought: "The failing test points at the parser; check the tokenizer first.".into(),
        },
        _ => EventKind::AssistantMessage {
            content: "I fixed the off-by-one in the tokenizer and all tests pass now.".into(),
        },
    };
    Event::new(session, seq, kind)
}

/// CPU time (user + system) of the whole process so far; on a busy machine this shows what
/// the work costs independently of how much of a core the benchmark got.
fn cpu_time() -> Duration {
    // SAFETY: getrusage only writes into the zeroed struct we pass.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

fn rate(events: usize, d: Duration) -> f64 {
    events as f64 / d.as_secs_f64()
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("lucid.sqlite3")).expect("open store");
    let user = User::with_id("bench-user");
    let per_run = BATCH * BATCHES_PER_RUN;

    let mut appends = Vec::new();
    let mut append_cpu = Vec::new();
    let mut replays = Vec::new();
    rt.block_on(async {
        for run in 0..RUNS {
            let chat = format!("chat-{run}");
            store
                .create_chat(
                    &user,
                    NewChat {
                        id: chat.clone(),
                        agent_session_id: Some(format!("session-{run}")),
                        ..NewChat::default()
                    },
                )
                .await
                .expect("create chat");
            let batches: Vec<Vec<Event>> = (0..BATCHES_PER_RUN)
                .map(|b| {
                    (0..BATCH)
                        .map(|i| event(&chat, (b * BATCH + i + 1) as u64))
                        .collect()
                })
                .collect();

            let start = Instant::now();
            let cpu_start = cpu_time();
            for batch in &batches {
                store
                    .append_events(&user, &chat, batch)
                    .await
                    .expect("append");
            }
            appends.push(start.elapsed());
            append_cpu.push(cpu_time() - cpu_start);

            let start = Instant::now();
            let mut since = 0;
            let mut read = 0;
            loop {
                let page = store
                    .events_since(&user, &chat, since, 1000)
                    .await
                    .expect("replay");
                let Some(last) = page.last() else { break };
                since = last.seq;
                read += page.len();
            }
            replays.push(start.elapsed());
            assert_eq!(read, per_run, "replay returned every event");
        }
    });

    let describe = |name: &str, xs: &[Duration]| {
        let min = *xs.iter().min().expect("runs");
        let max = *xs.iter().max().expect("runs");
        let med = median(xs.to_vec());
        println!(
            "{name:<28} median {:>8.1} ms  {:>10.0} events/s  (best {:.0}, worst {:.0})",
            med.as_secs_f64() * 1e3,
            rate(per_run, med),
            rate(per_run, min),
            rate(per_run, max),
        );
    };
    println!(
        "store_events: {RUNS} runs of {per_run} events ({BATCHES_PER_RUN} batches of {BATCH}), \
         one SQLite file, WAL, synchronous=NORMAL"
    );
    describe("append_events (batch 500)", &appends);
    describe("  same, CPU time", &append_cpu);
    describe("events_since (page 1000)", &replays);
}
