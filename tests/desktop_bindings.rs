//! The UI's bindings for the shell's commands (`ui/src/generated/commands.ts`) are generated
//! from the commands' Rust signatures by tauri-specta (`src-tauri/bindings.rs`). This test
//! fails when the committed file is stale;
//! `UPDATE_GENERATED=1 cargo test -p lucid-desktop --test desktop_bindings` rewrites it.

use std::path::Path;

#[test]
fn generated_command_bindings_are_current() {
    let committed_path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join(lucid_desktop::bindings::BINDINGS_PATH);
    if std::env::var_os("UPDATE_GENERATED").is_some() {
        lucid_desktop::bindings::export(&committed_path).expect("export the bindings");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let fresh_path = dir.path().join("commands.ts");
    lucid_desktop::bindings::export(&fresh_path).expect("export the bindings");
    let fresh = std::fs::read_to_string(&fresh_path).unwrap();
    let committed = std::fs::read_to_string(&committed_path).unwrap_or_default();
    assert!(
        committed == fresh,
        "{} is stale: run `UPDATE_GENERATED=1 cargo test -p lucid-desktop --test desktop_bindings`",
        committed_path.display()
    );
    // Every command is in the bindings, by its Tauri name.
    for name in [
        "start_session",
        "subscribe_session",
        "get_settings",
        "quit_app",
    ] {
        assert!(fresh.contains(&format!("\"{name}\"")), "{name} is missing");
    }
}
