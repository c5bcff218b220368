//! The UI's Tauri transport (`ui/src/transport/tauri.ts`) and the shell's commands
//! (`src-tauri/commands/`) agree by construction: every command is registered through the
//! one list in `src-tauri/bindings.rs`, the TypeScript bindings are generated from that list
//! (`tests/desktop_bindings.rs` fails when they are stale), and the transport calls the
//! shell only through those bindings. This test fails when a command is left out of the
//! list or the transport invokes a command by a hand-written name.

use std::collections::BTreeSet;
use std::path::Path;

fn read(rel: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)).unwrap()
}

/// Names of the shell's commands, from their sources.
fn rust_commands() -> BTreeSet<String> {
    let fn_re =
        regex::Regex::new(r"#\[tauri::command\]\s*(?:#\[specta::specta\]\s*)?pub async fn (\w+)")
            .unwrap();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src-tauri/commands");
    let mut out = BTreeSet::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for cap in fn_re.captures_iter(&text) {
            out.insert(cap[1].to_string());
        }
    }
    out
}

#[test]
fn every_command_is_registered_and_typed_and_the_ui_uses_only_the_bindings() {
    let rust = rust_commands();
    assert!(rust.len() >= 20, "parsing failed: {rust:?}");
    let list = read("src-tauri/bindings.rs");
    let typed = regex::Regex::new(r"#\[tauri::command\]\s*#\[specta::specta\]").unwrap();
    for name in &rust {
        assert!(
            list.contains(&format!("::{name},")),
            "command {name} is not in the list of src-tauri/bindings.rs"
        );
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src-tauri/commands");
    for entry in std::fs::read_dir(dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        assert_eq!(
            text.matches("#[tauri::command]").count(),
            typed.find_iter(&text).count(),
            "every command needs #[specta::specta] for its bindings"
        );
    }
    let generated = read("ui/src/generated/commands.ts");
    for name in &rust {
        assert!(
            generated.contains(&format!("\"{name}\"")),
            "{name} is missing from the bindings"
        );
    }
    // The transport calls the shell through `commands.*` only; the one string-named
    // invocation left is the opener plugin's.
    let transport = read("ui/src/transport/tauri.ts");
    let by_name = regex::Regex::new(r#"\brun\(\s*'([^']+)'"#).unwrap();
    let named: Vec<_> = by_name
        .captures_iter(&transport)
        .map(|c| c[1].to_string())
        .collect();
    assert_eq!(named, ["plugin:opener|open_url"], "{named:?}");
    assert!(transport.contains("from '../generated/commands'"));
    for name in &rust {
        assert!(
            !transport.contains(&format!("'{name}'")),
            "tauri.ts names the command {name} by hand"
        );
    }
}
