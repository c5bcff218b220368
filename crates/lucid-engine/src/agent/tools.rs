//! Tool definitions offered to the model and the parsing of their arguments.

use serde_json::{json, Value};

use crate::llm::ToolSpec;

pub const EXECUTE_BASH: &str = "execute_bash";
pub const STR_REPLACE_EDITOR: &str = "str_replace_editor";
pub const THINK: &str = "think";
pub const FINISH: &str = "finish";

/// Longest per-command timeout the model may ask for.
pub const MAX_COMMAND_TIMEOUT_SECS: u64 = 1800;
/// Timeout when the model does not ask for one.
pub const DEFAULT_COMMAND_TIMEOUT_SECS: u64 = 120;

pub fn execute_bash_spec() -> ToolSpec {
    ToolSpec {
        name: EXECUTE_BASH.into(),
        description: "Run a shell command in the sandbox. The shell is persistent: the working \
            directory and exported variables carry over between calls. Commands cannot read \
            stdin; use non-interactive flags (e.g. `-y`). Long outputs are truncated (head and \
            tail kept). Long-running servers should be started in the background with output \
            redirected to a file."
            .into(),
        parameters: json!({
            "type": "object",
            "properties": {
                "command": {"type": "string", "description": "The shell command to run."},
                "timeout": {
                    "type": "integer",
                    "description": "Seconds before the command is killed (default 120, max 1800)."
                }
            },
            "required": ["command"]
        }),
    }
}

pub fn think_spec() -> ToolSpec {
    ToolSpec {
        name: THINK.into(),
        description: "Think out loud: plan, reason about a bug, or weigh options. Changes \
            nothing; the thought is shown to the user."
            .into(),
        parameters: json!({
            "type": "object",
            "properties": {"thought": {"type": "string", "description": "Your thought."}},
            "required": ["thought"]
        }),
    }
}

pub fn finish_spec() -> ToolSpec {
    ToolSpec {
        name: FINISH.into(),
        description: "Call when the task is done (or cannot be done), with a short summary \
            for the user of what you did and anything they must know."
            .into(),
        parameters: json!({
            "type": "object",
            "properties": {"message": {"type": "string", "description": "Summary for the user."}},
            "required": ["message"]
        }),
    }
}

/// All tools, in the order the model sees them (stable, so prompt caching works).
pub fn all_specs() -> Vec<ToolSpec> {
    vec![
        execute_bash_spec(),
        super::editor::Editor::tool_spec(),
        think_spec(),
        finish_spec(),
    ]
}

/// A string argument, or an error message for the model naming the missing field.
pub fn str_arg<'a>(args: &'a Value, name: &str) -> Result<&'a str, String> {
    args.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("Missing required string parameter `{name}`."))
}

/// The per-command timeout the model asked for, clamped.
pub fn timeout_arg(args: &Value) -> std::time::Duration {
    let secs = args
        .get("timeout")
        .and_then(|v| v.as_u64().or_else(|| v.as_f64().map(|f| f.max(1.0) as u64)))
        .unwrap_or(DEFAULT_COMMAND_TIMEOUT_SECS)
        .clamp(1, MAX_COMMAND_TIMEOUT_SECS);
    std::time::Duration::from_secs(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeout_is_clamped() {
        assert_eq!(
            timeout_arg(&json!({})).as_secs(),
            DEFAULT_COMMAND_TIMEOUT_SECS
        );
        assert_eq!(timeout_arg(&json!({"timeout": 0})).as_secs(), 1);
        assert_eq!(
            timeout_arg(&json!({"timeout": 99999})).as_secs(),
            MAX_COMMAND_TIMEOUT_SECS
        );
        assert_eq!(timeout_arg(&json!({"timeout": 2.5})).as_secs(), 2);
    }

    #[test]
    fn str_arg_names_the_missing_field() {
        assert_eq!(str_arg(&json!({"command": "ls"}), "command").unwrap(), "ls");
        assert!(str_arg(&json!({}), "command")
            .unwrap_err()
            .contains("`command`"));
    }
}
