//! The UI's TypeScript event types (`ui/src/generated/events.ts`) are generated from the
//! engine's event types with ts-rs. This test fails when the committed file is stale;
//! `UPDATE_GENERATED=1 cargo test -p lucid-engine --test ts_bindings` rewrites it.

use std::path::PathBuf;

use lucid_engine::events::{EventKind, FileEditArgs, SessionStatus, TransientKind, UsageReport};
use ts_rs::{Config, TS};

fn render() -> String {
    let cfg = Config::new().with_large_int("number");
    let mut out = String::from(
        "// Generated from crates/lucid-engine/src/events.rs by\n\
         // `UPDATE_GENERATED=1 cargo test -p lucid-engine --test ts_bindings`. Do not edit.\n",
    );
    for decl in [
        SessionStatus::decl(&cfg),
        UsageReport::decl(&cfg),
        FileEditArgs::decl(&cfg),
        EventKind::decl(&cfg),
        TransientKind::decl(&cfg),
    ] {
        out.push_str("\nexport ");
        out.push_str(decl.trim());
        out.push('\n');
    }
    out
}

#[test]
fn generated_event_types_are_current() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../ui/src/generated/events.ts");
    let fresh = render();
    if std::env::var_os("UPDATE_GENERATED").is_some() {
        std::fs::write(&path, &fresh).expect("write events.ts");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == fresh,
        "{} is stale: run `UPDATE_GENERATED=1 cargo test -p lucid-engine --test ts_bindings`",
        path.display()
    );
}
