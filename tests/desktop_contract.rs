//! The UI's Tauri transport (`ui/src/transport/tauri.ts`) and the shell's commands
//! (`src-tauri/commands/`) must agree: every command the UI invokes exists, is registered in
//! the app's handler, and takes exactly the arguments the UI sends (Tauri maps the Rust
//! parameter `session_id` to the JavaScript key `sessionId`). Fails when either side drifts.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

fn read(rel: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)).unwrap()
}

fn camel(snake: &str) -> String {
    let mut out = String::new();
    let mut upper = false;
    for c in snake.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// Commands of the shell: name → argument keys as JavaScript sends them.
fn rust_commands() -> BTreeMap<String, BTreeSet<String>> {
    let fn_re = regex::Regex::new(r"#\[tauri::command\]\s*pub async fn (\w+)\(([^)]*)\)").unwrap();
    let mut out = BTreeMap::new();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src-tauri/commands");
    for entry in std::fs::read_dir(dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for cap in fn_re.captures_iter(&text) {
            let args = cap[2]
                .split(',')
                .filter_map(|p| p.split_once(':').map(|(name, _)| name.trim().to_string()))
                .filter(|name| name != "shell")
                .map(|name| camel(&name))
                .collect();
            out.insert(cap[1].to_string(), args);
        }
    }
    out
}

/// Commands the UI invokes: name → argument keys.
fn ui_invocations() -> BTreeMap<String, BTreeSet<String>> {
    let text = read("ui/src/transport/tauri.ts");
    let call_re = regex::Regex::new(
        r"(?s)(?:call(?:<[^>]*>)?\(this\.run,\s*|this\.run(?:<\w+>)?\()'(\w+)'(?:,\s*\{([^}]*)\})?",
    )
    .unwrap();
    let mut out = BTreeMap::new();
    for cap in call_re.captures_iter(&text) {
        let args = cap
            .get(2)
            .map(|m| {
                m.as_str()
                    .split(',')
                    .map(|a| a.split(':').next().unwrap().trim().to_string())
                    .filter(|a| !a.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        out.insert(cap[1].to_string(), args);
    }
    out
}

#[test]
fn the_ui_and_the_shell_agree_on_every_command() {
    let rust = rust_commands();
    let ui = ui_invocations();
    assert!(
        rust.len() >= 20 && ui.len() >= 20,
        "parsing failed: {rust:?} {ui:?}"
    );
    let handler = read("src-tauri/lib.rs");
    for name in rust.keys() {
        assert!(
            handler.contains(&format!("::{name},")),
            "command {name} is not registered in src-tauri/lib.rs"
        );
    }
    for (name, args) in &ui {
        let expected = rust
            .get(name)
            .unwrap_or_else(|| panic!("the UI invokes {name}, which the shell does not have"));
        assert_eq!(args, expected, "arguments of {name}");
    }
}
