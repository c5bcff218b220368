//! The agent's `str_replace_editor` tool: view, create and edit files of the session's
//! workspace, working on the host directory that the sandbox sees through its bind mount.
//!
//! Paths are given as the agent sees them: absolute under the mount path (`/workspace/a.py`)
//! or relative to it (`a.py`). Any other absolute path is refused. Every path is parsed into a
//! [`WorkspacePath`] (`..` resolved lexically, never above the root) and every read, write,
//! listing and removal goes through the workspace's directory handle ([`WorkspaceDir`]), which
//! walks the path component by component without following any symlink: whatever the sandbox
//! swaps in meanwhile, the editor never reads or writes outside the workspace. A path that
//! goes through or names a symbolic link is refused with a message naming the link (the agent
//! can use the link's target path instead). Undo history is keyed by the validated path.
//!
//! Commands (semantics of the well-known Anthropic/OpenHands editor):
//! - `view`: a file with `cat -n` style line numbers (optionally `view_range: [start, end]`,
//!   1-based, `end = -1` for the end of file, an `end` past the end is clamped), or a
//!   directory listing two levels deep without hidden entries, not following symlinks;
//! - `create`: writes `file_text`, creating parent directories. An existing file is
//!   overwritten (its previous content is kept for `undo_edit`);
//! - `str_replace`: replaces `old_str`, which must occur exactly once, with `new_str`
//!   (default empty);
//! - `insert`: inserts `new_str` after line `insert_line` (0 = at the top);
//! - `undo_edit`: restores the content before the last edit of that file, or removes a file
//!   that `create` made.
//!
//! Files above [`MAX_EDIT_FILE_BYTES`] and non-UTF-8 (binary) files are refused. Writes are
//! atomic and keep the file's permissions.

use std::collections::HashMap;
use std::io::{self, Read};
use std::path::PathBuf;

use cap_fs_ext::DirExt;
use cap_std::fs::{Dir, File, Metadata};

use serde::Serialize;
use serde_json::{json, Value};
use thiserror::Error;

use crate::agent::truncate::truncate_for_model;
use crate::files::{Entry, FilesError, WorkspaceDir, WorkspacePath, EXCLUDED_DIRS};
use crate::llm::ToolSpec;

/// Name of the tool as the model sees it.
pub const EDITOR_TOOL_NAME: &str = "str_replace_editor";
/// Largest file the editor reads or writes: 10 MiB.
pub const MAX_EDIT_FILE_BYTES: u64 = 10 * 1024 * 1024;
/// Most characters of a `view` returned to the model (head and tail kept beyond it).
pub const MAX_VIEW_CHARS: usize = 16_000;
/// Most entries of a directory `view`.
pub const MAX_DIR_VIEW_ENTRIES: usize = 500;
/// Lines of context shown around an edit.
const SNIPPET_CONTEXT_LINES: usize = 4;
/// Undo steps kept per file.
const MAX_UNDO_PER_FILE: usize = 10;
/// Bytes of previous contents kept for undo across all files; the oldest steps go first.
const MAX_UNDO_BYTES: usize = 64 * 1024 * 1024;

const COMMANDS: &str = "view, create, str_replace, insert, undo_edit";

/// A failed tool call; `message` is written for the model.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{message}")]
pub struct EditorError {
    pub message: String,
}

impl EditorError {
    fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

/// A successful tool call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EditorOutcome {
    /// The command that ran (`view`, `create`, ...).
    pub command: String,
    /// The file's path as the agent sees it, normalised, e.g. `/workspace/a.py`.
    pub path: String,
    /// Text for the model.
    pub output: String,
    /// True when the workspace was modified.
    pub changed: bool,
}

/// One parsed tool call.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Command {
    View {
        range: Option<(usize, Option<usize>)>,
    },
    Create {
        file_text: String,
    },
    StrReplace {
        old_str: String,
        new_str: String,
    },
    Insert {
        line: usize,
        new_str: String,
    },
    UndoEdit,
}

impl Command {
    fn name(&self) -> &'static str {
        match self {
            Command::View { .. } => "view",
            Command::Create { .. } => "create",
            Command::StrReplace { .. } => "str_replace",
            Command::Insert { .. } => "insert",
            Command::UndoEdit => "undo_edit",
        }
    }
}

/// The editor of one session's workspace, with its undo history.
#[derive(Debug)]
pub struct Editor {
    root: PathBuf,
    mount_path: String,
    /// The workspace root handle, opened on first use.
    workspace: Option<WorkspaceDir>,
    /// Previous contents per file (validated workspace path), newest last; `None` = did not
    /// exist.
    history: HashMap<WorkspacePath, Vec<Option<String>>>,
    /// Bytes held by `history`.
    history_bytes: usize,
}

impl Editor {
    /// An editor over the host directory `root`, which the sandbox mounts at `mount_path`.
    pub fn new(root: PathBuf, mount_path: String) -> Self {
        let trimmed = mount_path.trim_end_matches('/');
        let mount_path = if trimmed.is_empty() {
            "/".to_string()
        } else {
            trimmed.to_string()
        };
        Self {
            root,
            mount_path,
            workspace: None,
            history: HashMap::new(),
            history_bytes: 0,
        }
    }

    /// The tool's description and JSON schema for the model.
    pub fn tool_spec() -> ToolSpec {
        ToolSpec {
            name: EDITOR_TOOL_NAME.to_string(),
            description: TOOL_DESCRIPTION.to_string(),
            parameters: json!({
                "type": "object",
                "properties": {
                    "command": {
                        "type": "string",
                        "enum": ["view", "create", "str_replace", "insert", "undo_edit"],
                        "description": "The operation to run."
                    },
                    "path": {
                        "type": "string",
                        "description": "Absolute path under the workspace (e.g. /workspace/src/main.py) or a path relative to the workspace."
                    },
                    "file_text": {
                        "type": "string",
                        "description": "`create`: the full content of the file."
                    },
                    "old_str": {
                        "type": "string",
                        "description": "`str_replace`: the exact text to replace; it must occur exactly once in the file."
                    },
                    "new_str": {
                        "type": "string",
                        "description": "`str_replace`: the replacement (empty to delete old_str). `insert`: the text to insert."
                    },
                    "insert_line": {
                        "type": "integer",
                        "minimum": 0,
                        "description": "`insert`: new_str is inserted after this line (0 = at the top of the file)."
                    },
                    "view_range": {
                        "type": "array",
                        "items": {"type": "integer"},
                        "minItems": 2,
                        "maxItems": 2,
                        "description": "`view` of a file: [start, end] line numbers, 1-based and inclusive; end = -1 shows to the end of the file."
                    }
                },
                "required": ["command", "path"]
            }),
        }
    }

    /// Runs one tool call. `args` are the model's JSON arguments.
    pub fn run(&mut self, args: &Value) -> Result<EditorOutcome, EditorError> {
        let (command, requested) = parse_args(args)?;
        self.check_agent_path(&requested)?;
        let path = WorkspacePath::parse(&self.mount_path, &requested)
            .map_err(|e| files_error(&self.mount_path, &requested, e))?;
        let workspace = match self.workspace.take() {
            Some(ws) => ws,
            None => WorkspaceDir::open(&self.root)
                .map_err(|e| files_error(&self.mount_path, &requested, e))?,
        };
        let ctx = CallContext {
            ws: &workspace,
            mount_path: self.mount_path.clone(),
            requested: &requested,
            shown: path.under_mount(&self.mount_path),
            path,
        };
        let command_name = command.name();
        let result = match command {
            Command::View { range } => view(&ctx, range),
            Command::Create { file_text } => self.create(&ctx, file_text),
            Command::StrReplace { old_str, new_str } => self.str_replace(&ctx, &old_str, &new_str),
            Command::Insert { line, new_str } => self.insert(&ctx, line, &new_str),
            Command::UndoEdit => self.undo(&ctx),
        };
        let shown = ctx.shown.clone();
        self.workspace = Some(workspace);
        let (output, changed) = result?;
        Ok(EditorOutcome {
            command: command_name.to_string(),
            path: shown,
            output,
            changed,
        })
    }

    /// Refuses absolute paths outside the mount path (the agent means the container's
    /// filesystem there, which the editor cannot reach).
    fn check_agent_path(&self, path: &str) -> Result<(), EditorError> {
        if path.trim().is_empty() {
            return Err(EditorError::new("The `path` parameter must not be empty."));
        }
        if !path.starts_with('/') || self.mount_path == "/" {
            return Ok(());
        }
        match path.strip_prefix(&self.mount_path) {
            Some(rest) if rest.is_empty() || rest.starts_with('/') => Ok(()),
            _ => Err(EditorError::new(format!(
                "The path {} is outside the workspace: the editor only works on files under {} \
                 (e.g. {}/src/main.py) or on paths relative to it.",
                path.escape_debug(),
                self.mount_path,
                self.mount_path
            ))),
        }
    }

    fn create(
        &mut self,
        ctx: &CallContext<'_>,
        file_text: String,
    ) -> Result<(String, bool), EditorError> {
        let shown = &ctx.shown;
        check_size(file_text.len(), shown)?;
        let previous = match ctx.ws.symlink_metadata(&ctx.path) {
            Ok(Some(meta)) if meta.is_dir() => {
                return Err(EditorError::new(format!(
                    "{shown} is a directory: `create` needs a file path."
                )))
            }
            Ok(Some(meta)) if meta.file_type().is_symlink() => {
                return Err(ctx.files_error(FilesError::Symlink(ctx.path.to_string())))
            }
            Ok(Some(_)) => Some(ctx.read_file().map_err(|e| {
                EditorError::new(format!("Cannot overwrite {shown}: {}", e.message))
            })?),
            // Missing, or a missing directory on the way: created below.
            Ok(None) | Err(FilesError::NotFound(_)) => None,
            Err(e) => return Err(ctx.files_error(e)),
        };
        ctx.ws
            .write_atomic(&ctx.path, file_text.as_bytes(), true)
            .map_err(|e| ctx.files_error(e))?;
        let output = if previous.is_some() {
            format!(
                "File {shown} overwritten successfully (`undo_edit` restores its previous content)."
            )
        } else {
            format!("File created successfully at: {shown}")
        };
        self.remember(ctx.path.clone(), previous);
        Ok((output, true))
    }

    fn str_replace(
        &mut self,
        ctx: &CallContext<'_>,
        old_str: &str,
        new_str: &str,
    ) -> Result<(String, bool), EditorError> {
        let shown = &ctx.shown;
        if old_str.is_empty() {
            return Err(EditorError::new(
                "`old_str` must not be empty: give the exact text to replace.",
            ));
        }
        if old_str == new_str {
            return Err(EditorError::new(
                "`old_str` and `new_str` are identical: the replacement would change nothing.",
            ));
        }
        let text = ctx.read_file()?;
        let matches: Vec<usize> = text.match_indices(old_str).map(|(i, _)| i).collect();
        let at = match matches.as_slice() {
            [] => {
                let hint = if text.contains(old_str.trim()) && !old_str.trim().is_empty() {
                    " It does occur with different leading/trailing whitespace: copy the \
                     text exactly, including indentation and line breaks."
                } else {
                    ""
                };
                return Err(EditorError::new(format!(
                    "No replacement was performed: `old_str` did not appear verbatim in \
                     {shown}.{hint}"
                )));
            }
            [at] => *at,
            many => {
                let lines: Vec<String> = many
                    .iter()
                    .map(|&i| line_of_offset(&text, i).to_string())
                    .collect();
                return Err(EditorError::new(format!(
                    "No replacement was performed: `old_str` occurs {} times in {shown}, at \
                     lines [{}]. Include more surrounding lines so that it is unique.",
                    many.len(),
                    lines.join(", ")
                )));
            }
        };
        let mut updated = String::with_capacity(text.len() - old_str.len() + new_str.len());
        updated.push_str(&text[..at]);
        updated.push_str(new_str);
        updated.push_str(&text[at + old_str.len()..]);
        check_size(updated.len(), shown)?;
        ctx.write(&updated)?;

        let first = line_of_offset(&updated, at);
        let last = first + new_str.split_inclusive('\n').count().max(1) - 1;
        let output = edited_message(shown, &updated, first, last);
        self.remember(ctx.path.clone(), Some(text));
        Ok((output, true))
    }

    fn insert(
        &mut self,
        ctx: &CallContext<'_>,
        line: usize,
        new_str: &str,
    ) -> Result<(String, bool), EditorError> {
        let shown = &ctx.shown;
        let text = ctx.read_file()?;
        let lines = split_lines(&text);
        if line > lines.len() {
            return Err(EditorError::new(format!(
                "Invalid `insert_line` {line}: it must be between 0 and {} (the number of \
                 lines in {shown}).",
                lines.len()
            )));
        }
        let updated = insert_after_line(&text, line, new_str);
        check_size(updated.len(), shown)?;
        ctx.write(&updated)?;
        let inserted_lines = new_str.split_inclusive('\n').count().max(1);
        let output = edited_message(shown, &updated, line + 1, line + inserted_lines);
        self.remember(ctx.path.clone(), Some(text));
        Ok((output, true))
    }

    fn undo(&mut self, ctx: &CallContext<'_>) -> Result<(String, bool), EditorError> {
        let shown = &ctx.shown;
        let previous = self
            .history
            .get_mut(&ctx.path)
            .and_then(|steps| steps.pop())
            .ok_or_else(|| EditorError::new(format!("No edit history found for {shown}.")))?;
        if self
            .history
            .get(&ctx.path)
            .is_some_and(|steps| steps.is_empty())
        {
            self.history.remove(&ctx.path);
        }
        self.history_bytes = self
            .history_bytes
            .saturating_sub(previous.as_ref().map_or(0, String::len));
        let output = match previous {
            Some(content) => {
                // Recreates missing directories, like `create`.
                ctx.ws
                    .write_atomic(&ctx.path, content.as_bytes(), true)
                    .map_err(|e| ctx.files_error(e))?;
                let lines = split_lines(&content);
                let body = number_lines(&lines, 1, lines.len());
                truncate_for_model(
                    &format!(
                        "Last edit to {shown} undone successfully. Here's the result of \
                         running `cat -n` on {shown}:\n{body}"
                    ),
                    MAX_VIEW_CHARS,
                )
            }
            None => {
                match ctx.ws.remove_file(&ctx.path) {
                    // Already gone (with its directory, maybe): nothing to undo on disk.
                    Ok(_) | Err(FilesError::NotFound(_)) => {}
                    Err(e) => return Err(ctx.files_error(e)),
                }
                format!("Last edit to {shown} undone successfully: the file created by `create` was removed.")
            }
        };
        Ok((output, true))
    }

    /// Records `previous` as the newest undo step of `path`, within the history bounds.
    fn remember(&mut self, path: WorkspacePath, previous: Option<String>) {
        self.history_bytes += previous.as_ref().map_or(0, String::len);
        let steps = self.history.entry(path).or_default();
        steps.push(previous);
        if steps.len() > MAX_UNDO_PER_FILE {
            let dropped = steps.remove(0);
            self.history_bytes = self
                .history_bytes
                .saturating_sub(dropped.as_ref().map_or(0, String::len));
        }
        while self.history_bytes > MAX_UNDO_BYTES {
            // Drop the oldest step of the file holding the most bytes.
            let Some(heaviest) = self
                .history
                .iter()
                .max_by_key(|(_, s)| s.iter().flatten().map(String::len).sum::<usize>())
                .map(|(p, _)| p.clone())
            else {
                break;
            };
            let Some(steps) = self.history.get_mut(&heaviest).filter(|s| !s.is_empty()) else {
                break;
            };
            let dropped = steps.remove(0);
            let emptied = steps.is_empty();
            self.history_bytes = self
                .history_bytes
                .saturating_sub(dropped.as_ref().map_or(0, String::len));
            if emptied {
                self.history.remove(&heaviest);
            }
        }
    }
}

fn view(
    ctx: &CallContext<'_>,
    range: Option<(usize, Option<usize>)>,
) -> Result<(String, bool), EditorError> {
    let shown = &ctx.shown;
    let (file, meta) = match ctx
        .ws
        .open_entry(&ctx.path)
        .map_err(|e| ctx.files_error(e))?
    {
        Entry::Dir(dir) => {
            if range.is_some() {
                return Err(EditorError::new(
                    "The `view_range` parameter is not allowed when `path` is a directory.",
                ));
            }
            let listing = list_directory(&dir, shown);
            let output = format!(
                "Here are the files and directories up to 2 levels deep in {shown}, excluding \
                 hidden items (directories end with /, symbolic links with @):\n{listing}"
            );
            return Ok((output, false));
        }
        Entry::File(file, meta) => (file, meta),
        Entry::Other => return Err(not_regular(shown)),
    };
    let text = read_text(file, &meta, shown)?;
    let lines = split_lines(&text);
    let (start, end) = match range {
        None => (1, lines.len()),
        Some((start, end)) => view_bounds(start, end, lines.len())?,
    };
    let body = number_lines(&lines, start, end);
    let mut output = format!("Here's the result of running `cat -n` on {shown}:\n{body}");
    if output.chars().count() > MAX_VIEW_CHARS {
        output = truncate_for_model(&output, MAX_VIEW_CHARS);
        output.push_str(
            "\n[The output was too long and was shortened: use `view_range` to see specific lines.]\n",
        );
    }
    Ok((output, false))
}

/// Per-call state: the workspace handle, the validated path and how to show it.
struct CallContext<'a> {
    ws: &'a WorkspaceDir,
    mount_path: String,
    /// The path as the agent wrote it.
    requested: &'a str,
    path: WorkspacePath,
    /// The path as the agent sees it, e.g. `/workspace/src/a.py`.
    shown: String,
}

impl CallContext<'_> {
    /// Reads the regular text file at the call's path (see [`read_text`]).
    fn read_file(&self) -> Result<String, EditorError> {
        match self
            .ws
            .open_entry(&self.path)
            .map_err(|e| self.files_error(e))?
        {
            Entry::File(file, meta) => read_text(file, &meta, &self.shown),
            Entry::Dir(_) => Err(EditorError::new(format!(
                "{} is a directory: this command needs a file.",
                self.shown
            ))),
            Entry::Other => Err(not_regular(&self.shown)),
        }
    }

    /// Replaces the content of the (existing) file at the call's path atomically.
    fn write(&self, content: &str) -> Result<(), EditorError> {
        self.ws
            .write_atomic(&self.path, content.as_bytes(), false)
            .map_err(|e| self.files_error(e))
    }

    fn files_error(&self, err: FilesError) -> EditorError {
        files_error(&self.mount_path, self.requested, err)
    }
}

/// The model's explanation of a [`FilesError`] met on `requested`.
fn files_error(mount: &str, requested: &str, err: FilesError) -> EditorError {
    let p = requested.escape_debug();
    let under_mount = |tree_path: &str| {
        if mount == "/" {
            tree_path.to_string()
        } else {
            format!("{mount}{tree_path}")
        }
    };
    EditorError::new(match err {
        FilesError::Traversal => format!(
            "The path {p} leads outside the workspace {mount} (through `..`): access refused."
        ),
        FilesError::NotFound(_) => format!("The path {p} does not exist."),
        FilesError::InvalidPath(why) => format!("Invalid path {p}: {why}."),
        FilesError::NotADirectory(_) => {
            format!("The path {p} uses a file as if it were a directory.")
        }
        FilesError::Symlink(link) => {
            let link = under_mount(&link);
            format!(
                "{link} is a symbolic link; Lucid does not follow links — use the target path \
                 (`readlink {link}` shows it)."
            )
        }
        FilesError::IsADirectory(dir) => format!(
            "{} is a directory: this command needs a file.",
            under_mount(&dir)
        ),
        FilesError::IsRoot => format!("{mount} is a directory: this command needs a file."),
        FilesError::WorkspaceMissing => "The workspace directory no longer exists.".into(),
        FilesError::Io(kind) => format!("Could not access {p}: {kind}."),
    })
}

fn not_regular(shown: &str) -> EditorError {
    EditorError::new(format!("{shown} is not a regular file."))
}

fn io_error(action: &str, shown: &str, err: &io::Error) -> EditorError {
    EditorError::new(format!("Could not {action} {shown}: {}.", err.kind()))
}

fn check_size(len: usize, shown: &str) -> Result<(), EditorError> {
    if len as u64 > MAX_EDIT_FILE_BYTES {
        return Err(EditorError::new(format!(
            "The content for {shown} would be {len} bytes; the editor handles files up to \
             {MAX_EDIT_FILE_BYTES} bytes. Use shell commands for larger files."
        )));
    }
    Ok(())
}

/// Reads a whole text file for editing from its open handle: at most
/// [`MAX_EDIT_FILE_BYTES`], valid UTF-8 without NUL bytes.
fn read_text(file: File, meta: &Metadata, shown: &str) -> Result<String, EditorError> {
    if meta.len() > MAX_EDIT_FILE_BYTES {
        return Err(EditorError::new(format!(
            "{shown} is too large for the editor ({} bytes; the limit is {MAX_EDIT_FILE_BYTES}). \
             Use shell commands (head, sed, grep) instead.",
            meta.len()
        )));
    }
    let mut bytes = Vec::new();
    file.take(MAX_EDIT_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| io_error("read", shown, &e))?;
    if bytes.len() as u64 > MAX_EDIT_FILE_BYTES {
        return Err(EditorError::new(format!(
            "{shown} is too large for the editor (the limit is {MAX_EDIT_FILE_BYTES} bytes)."
        )));
    }
    if bytes.contains(&0) {
        return Err(binary_error(shown));
    }
    String::from_utf8(bytes).map_err(|_| binary_error(shown))
}

fn binary_error(shown: &str) -> EditorError {
    EditorError::new(format!(
        "{shown} is a binary (or not UTF-8) file: the editor only handles UTF-8 text. Use shell \
         commands to inspect it."
    ))
}

/// The file's lines, each with its line ending (a final line may lack one).
fn split_lines(text: &str) -> Vec<&str> {
    text.split_inclusive('\n').collect()
}

/// `cat -n` style: 6-wide right-aligned line number, a tab, the line without its ending.
fn number_lines(lines: &[&str], start: usize, end: usize) -> String {
    let mut out = String::new();
    for (i, line) in lines
        .iter()
        .enumerate()
        .take(end)
        .skip(start.saturating_sub(1))
    {
        let line = line.strip_suffix('\n').unwrap_or(line);
        let line = line.strip_suffix('\r').unwrap_or(line);
        out.push_str(&format!("{:6}\t{line}\n", i + 1));
    }
    out
}

/// Validates a `view_range` against a file of `count` lines; returns inclusive bounds.
fn view_bounds(
    start: usize,
    end: Option<usize>,
    count: usize,
) -> Result<(usize, usize), EditorError> {
    if start < 1 || (start > count && !(count == 0 && start == 1)) {
        return Err(EditorError::new(format!(
            "Invalid `view_range`: the start line {start} must be between 1 and {count} (the \
             number of lines in the file)."
        )));
    }
    match end {
        None => Ok((start, count)),
        Some(end) if end < start => Err(EditorError::new(format!(
            "Invalid `view_range`: the end line {end} is before the start line {start}."
        ))),
        Some(end) => Ok((start, end.min(count))),
    }
}

/// 1-based line number of the byte `offset` in `text`.
fn line_of_offset(text: &str, offset: usize) -> usize {
    text[..offset].matches('\n').count() + 1
}

/// `text` with `new_str` inserted as whole lines after line `line` (0 = top).
fn insert_after_line(text: &str, line: usize, new_str: &str) -> String {
    let lines = split_lines(text);
    let mut out = lines[..line].concat();
    let suffix = lines[line..].concat();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(new_str);
    if !new_str.ends_with('\n') && (!suffix.is_empty() || text.ends_with('\n')) {
        out.push('\n');
    }
    out.push_str(&suffix);
    out
}

/// The message after an edit: a numbered snippet of lines `first..=last` with context.
fn edited_message(shown: &str, updated: &str, first: usize, last: usize) -> String {
    let lines = split_lines(updated);
    let start = first.saturating_sub(SNIPPET_CONTEXT_LINES).max(1);
    let end = (last + SNIPPET_CONTEXT_LINES).min(lines.len());
    let snippet = truncate_for_model(&number_lines(&lines, start, end), MAX_VIEW_CHARS);
    format!(
        "The file {shown} has been edited. Here's the result of running `cat -n` on a snippet \
         of {shown}:\n{snippet}Review the changes and make sure they are as expected. Edit the \
         file again if necessary."
    )
}

/// Lists `dir` two levels deep: hidden entries skipped, symlinks shown with `@` and not
/// followed, heavy folders (e.g. `node_modules`) shown but not expanded. Recurses with
/// directory handles (subdirectories opened with `O_NOFOLLOW`).
fn list_directory(dir: &Dir, shown: &str) -> String {
    let header = if shown.ends_with('/') {
        shown.to_string()
    } else {
        format!("{shown}/")
    };
    let mut out = vec![header];
    let mut truncated = false;
    list_level(dir, shown, 1, &mut out, &mut truncated);
    let mut text = out.join("\n");
    text.push('\n');
    if truncated {
        text.push_str(&format!(
            "[Listing stopped after {MAX_DIR_VIEW_ENTRIES} entries: view a subdirectory or use `ls`/`find` for more.]\n"
        ));
    }
    text
}

fn list_level(dir: &Dir, shown: &str, depth: usize, out: &mut Vec<String>, truncated: &mut bool) {
    let Ok(entries) = dir.entries() else {
        return;
    };
    let mut names: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .filter(|n| !n.to_string_lossy().starts_with('.'))
        .collect();
    names.sort();
    for os_name in names {
        if out.len() > MAX_DIR_VIEW_ENTRIES {
            *truncated = true;
            return;
        }
        let Ok(meta) = dir.symlink_metadata(&os_name) else {
            continue;
        };
        let name = os_name.to_string_lossy();
        let child = if shown == "/" {
            format!("/{name}")
        } else {
            format!("{shown}/{name}")
        };
        if meta.file_type().is_symlink() {
            out.push(format!("{child}@"));
        } else if meta.is_dir() {
            out.push(format!("{child}/"));
            if depth < 2 && !EXCLUDED_DIRS.contains(&name.as_ref()) {
                // A directory swapped for a symlink since the `lstat` is not entered.
                if let Ok(sub) = dir.open_dir_nofollow(&os_name) {
                    list_level(&sub, &child, depth + 1, out, truncated);
                }
            }
        } else {
            out.push(child);
        }
    }
}

/// Parses the model's arguments into a command and the raw path.
fn parse_args(args: &Value) -> Result<(Command, String), EditorError> {
    let obj = args.as_object().ok_or_else(|| {
        EditorError::new("The arguments must be a JSON object with `command` and `path`.")
    })?;
    if obj.contains_key("_raw") {
        return Err(EditorError::new(
            "The tool arguments were not valid JSON; send a JSON object with `command` and `path`.",
        ));
    }
    let command = required_str(obj, "command")?;
    let path = required_str(obj, "path")?.to_string();
    let command = match command {
        "view" => Command::View {
            range: optional_view_range(obj)?,
        },
        "create" => Command::Create {
            file_text: required_str(obj, "file_text")?.to_string(),
        },
        "str_replace" => Command::StrReplace {
            old_str: required_str(obj, "old_str")?.to_string(),
            new_str: optional_str(obj, "new_str")?
                .unwrap_or_default()
                .to_string(),
        },
        "insert" => Command::Insert {
            line: required_line(obj)?,
            new_str: required_str(obj, "new_str")?.to_string(),
        },
        "undo_edit" => Command::UndoEdit,
        other => {
            return Err(EditorError::new(format!(
                "Unknown command `{}`: use one of {COMMANDS}.",
                other.escape_debug()
            )))
        }
    };
    Ok((command, path))
}

type Object = serde_json::Map<String, Value>;

fn optional_str<'a>(obj: &'a Object, key: &str) -> Result<Option<&'a str>, EditorError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(EditorError::new(format!("`{key}` must be a string."))),
    }
}

fn required_str<'a>(obj: &'a Object, key: &str) -> Result<&'a str, EditorError> {
    optional_str(obj, key)?
        .ok_or_else(|| EditorError::new(format!("Missing required parameter `{key}`.")))
}

/// An integer given as a JSON number or a numeric string (models send both).
fn as_integer(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn required_line(obj: &Object) -> Result<usize, EditorError> {
    let value = obj
        .get("insert_line")
        .filter(|v| !v.is_null())
        .ok_or_else(|| EditorError::new("Missing required parameter `insert_line`."))?;
    as_integer(value)
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| EditorError::new("`insert_line` must be a non-negative integer."))
}

fn optional_view_range(obj: &Object) -> Result<Option<(usize, Option<usize>)>, EditorError> {
    let invalid = || {
        EditorError::new(
            "`view_range` must be a list of two integers [start, end]; end = -1 means the end \
             of the file.",
        )
    };
    let value = match obj.get("view_range") {
        None | Some(Value::Null) => return Ok(None),
        // Some models send the list as a JSON string.
        Some(Value::String(s)) => serde_json::from_str::<Value>(s).map_err(|_| invalid())?,
        Some(v) => v.clone(),
    };
    let items = value.as_array().ok_or_else(invalid)?;
    let [start, end] = items.as_slice() else {
        return Err(invalid());
    };
    let start = as_integer(start).ok_or_else(invalid)?;
    let end = as_integer(end).ok_or_else(invalid)?;
    let start = usize::try_from(start).map_err(|_| {
        EditorError::new(format!(
            "Invalid `view_range`: the start line {start} must be at least 1."
        ))
    })?;
    let end = match end {
        -1 => None,
        e => Some(usize::try_from(e).map_err(|_| {
            EditorError::new(format!(
                "Invalid `view_range`: the end line {e} must be a line number or -1."
            ))
        })?),
    };
    Ok(Some((start, end)))
}

const TOOL_DESCRIPTION: &str = "View, create and edit files in the workspace.\n\
* `view` shows a file with line numbers (like `cat -n`), or lists a directory two levels deep. \
Use `view_range` [start, end] for part of a long file (end = -1: to the end).\n\
* `create` writes `file_text` to `path`, creating parent directories; an existing file is \
overwritten.\n\
* `str_replace` replaces `old_str` with `new_str` in the file. `old_str` must match exactly one \
place in the file, character for character including whitespace and indentation; include \
enough surrounding lines to make it unique. An empty `new_str` deletes `old_str`.\n\
* `insert` inserts `new_str` after line `insert_line` (0 inserts at the top).\n\
* `undo_edit` reverts the last edit made to `path` with this tool.\n\
Paths are absolute under the workspace (e.g. /workspace/src/app.py) or relative to it. Only \
UTF-8 text files up to 10 MiB can be viewed or edited; use shell commands for anything else. \
Symbolic links are never followed: give the path of the link's target instead.";

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{symlink, PermissionsExt};
    use std::path::Path;

    struct Ws {
        _dir: tempfile::TempDir,
        /// A directory beside the workspace, standing for the rest of the host.
        outside: PathBuf,
        root: PathBuf,
        editor: Editor,
    }

    fn ws() -> Ws {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("ws");
        let outside = dir.path().join("outside");
        fs::create_dir_all(&root).unwrap();
        fs::create_dir_all(&outside).unwrap();
        fs::write(outside.join("secret.txt"), "top secret\n").unwrap();
        let editor = Editor::new(root.clone(), "/workspace".into());
        Ws {
            _dir: dir,
            outside,
            root,
            editor,
        }
    }

    impl Ws {
        fn run(&mut self, args: Value) -> Result<EditorOutcome, EditorError> {
            self.editor.run(&args)
        }
        fn ok(&mut self, args: Value) -> EditorOutcome {
            self.run(args.clone())
                .unwrap_or_else(|e| panic!("{args} failed: {}", e.message))
        }
        fn err(&mut self, args: Value) -> String {
            match self.run(args.clone()) {
                Ok(o) => panic!("{args} should fail, got {}", o.output),
                Err(e) => e.message,
            }
        }
        fn write(&self, rel: &str, content: &str) {
            let p = self.root.join(rel);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, content).unwrap();
        }
        fn read(&self, rel: &str) -> String {
            fs::read_to_string(self.root.join(rel)).unwrap()
        }
    }

    #[test]
    fn tool_spec_describes_every_parameter() {
        let spec = Editor::tool_spec();
        assert_eq!(spec.name, "str_replace_editor");
        let p = &spec.parameters;
        assert_eq!(p["type"], "object");
        assert_eq!(p["required"], json!(["command", "path"]));
        assert_eq!(
            p["properties"]["command"]["enum"],
            json!(["view", "create", "str_replace", "insert", "undo_edit"])
        );
        for key in [
            "path",
            "file_text",
            "old_str",
            "new_str",
            "insert_line",
            "view_range",
        ] {
            assert!(p["properties"][key].is_object(), "{key}");
        }
    }

    #[test]
    fn view_file_with_line_numbers_and_ranges() {
        let mut w = ws();
        w.write("a.py", "one\ntwo\r\nthree\nfour");
        let out = w.ok(json!({"command": "view", "path": "/workspace/a.py"}));
        assert_eq!(out.command, "view");
        assert_eq!(out.path, "/workspace/a.py");
        assert!(!out.changed);
        assert_eq!(
            out.output,
            "Here's the result of running `cat -n` on /workspace/a.py:\n     1\tone\n     2\ttwo\n     3\tthree\n     4\tfour\n"
        );
        let body = |o: EditorOutcome| o.output.split_once(":\n").unwrap().1.to_string();
        let r = w.ok(json!({"command": "view", "path": "a.py", "view_range": [2, 3]}));
        assert_eq!(body(r), "     2\ttwo\n     3\tthree\n");
        let r = w.ok(json!({"command": "view", "path": "a.py", "view_range": [3, -1]}));
        assert_eq!(body(r), "     3\tthree\n     4\tfour\n");
        // An end past the file is clamped; string forms are accepted.
        let r = w.ok(json!({"command": "view", "path": "a.py", "view_range": ["4", 99]}));
        assert_eq!(body(r), "     4\tfour\n");
        let r = w.ok(json!({"command": "view", "path": "a.py", "view_range": "[1, 1]"}));
        assert_eq!(body(r), "     1\tone\n");
        let r = w.ok(json!({"command": "view", "path": "a.py", "view_range": null}));
        assert!(body(r).ends_with("     4\tfour\n"));
    }

    #[test]
    fn view_range_errors() {
        let mut w = ws();
        w.write("a.py", "1\n2\n3\n");
        let cases = [
            (json!([0, 2]), "must be between 1 and 3"),
            (json!([4, -1]), "must be between 1 and 3"),
            (json!([-2, 3]), "must be at least 1"),
            (json!([3, 2]), "before the start line"),
            (json!([1, -5]), "must be a line number or -1"),
            (json!([1]), "list of two integers"),
            (json!([1, 2, 3]), "list of two integers"),
            (json!("abc"), "list of two integers"),
            (json!([1.5, 2]), "list of two integers"),
        ];
        for (range, expected) in cases {
            let msg = w.err(json!({"command": "view", "path": "a.py", "view_range": range}));
            assert!(msg.contains(expected), "{range}: {msg}");
        }
        let msg = w.err(json!({"command": "view", "path": "/workspace", "view_range": [1, 2]}));
        assert!(
            msg.contains("not allowed when `path` is a directory"),
            "{msg}"
        );
    }

    #[test]
    fn view_empty_file() {
        let mut w = ws();
        w.write("empty.txt", "");
        let out = w.ok(json!({"command": "view", "path": "empty.txt"}));
        assert!(out.output.ends_with("/workspace/empty.txt:\n"));
        w.ok(json!({"command": "view", "path": "empty.txt", "view_range": [1, -1]}));
    }

    #[test]
    fn view_long_file_is_shortened() {
        let mut w = ws();
        let text: String = (1..=5000).map(|i| format!("line number {i}\n")).collect();
        w.write("long.txt", &text);
        let out = w.ok(json!({"command": "view", "path": "long.txt"}));
        assert!(out.output.chars().count() < MAX_VIEW_CHARS + 200);
        assert!(out.output.contains("characters omitted"));
        assert!(out.output.contains("line number 1\n"));
        assert!(out.output.contains("line number 5000\n"));
        assert!(out.output.contains("use `view_range`"));
    }

    #[test]
    fn view_directory_two_levels_without_hidden_or_symlink_targets() {
        let mut w = ws();
        w.write("src/main.py", "");
        w.write("src/pkg/deep/x.py", "");
        w.write(".git/config", "");
        w.write(".env", "");
        w.write("node_modules/lib/index.js", "");
        w.write("README.md", "");
        symlink(&w.outside, w.root.join("out")).unwrap();
        let out = w.ok(json!({"command": "view", "path": "/workspace"}));
        assert_eq!(out.path, "/workspace");
        let listing: Vec<&str> = out.output.lines().skip(1).collect();
        assert_eq!(
            listing,
            vec![
                "/workspace/",
                "/workspace/README.md",
                "/workspace/node_modules/",
                "/workspace/out@",
                "/workspace/src/",
                "/workspace/src/main.py",
                "/workspace/src/pkg/",
            ]
        );
        assert!(!out.output.contains("secret"));
        let out = w.ok(json!({"command": "view", "path": "src"}));
        assert!(out.output.contains("/workspace/src/pkg/deep/\n"));
        assert!(!out.output.contains("x.py"));
    }

    #[test]
    fn create_new_file_in_new_directories_and_undo_removes_it() {
        let mut w = ws();
        let out = w.ok(json!({
            "command": "create", "path": "/workspace/pkg/sub/mod.py", "file_text": "x = 1\n"
        }));
        assert_eq!(out.command, "create");
        assert_eq!(out.path, "/workspace/pkg/sub/mod.py");
        assert!(out.changed);
        assert_eq!(
            out.output,
            "File created successfully at: /workspace/pkg/sub/mod.py"
        );
        assert_eq!(w.read("pkg/sub/mod.py"), "x = 1\n");

        let out = w.ok(json!({"command": "undo_edit", "path": "pkg/sub/mod.py"}));
        assert!(out.changed);
        assert!(out.output.contains("was removed"), "{}", out.output);
        assert!(!w.root.join("pkg/sub/mod.py").exists());
        let msg = w.err(json!({"command": "undo_edit", "path": "pkg/sub/mod.py"}));
        assert_eq!(msg, "No edit history found for /workspace/pkg/sub/mod.py.");
    }

    #[test]
    fn create_overwrites_keeping_permissions_and_undo_restores() {
        let mut w = ws();
        w.write("run.sh", "#!/bin/sh\necho old\n");
        fs::set_permissions(w.root.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
        let out = w.ok(
            json!({"command": "create", "path": "run.sh", "file_text": "#!/bin/sh\necho new\n"}),
        );
        assert!(out.output.contains("overwritten"), "{}", out.output);
        assert_eq!(w.read("run.sh"), "#!/bin/sh\necho new\n");
        let mode = fs::metadata(w.root.join("run.sh"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        let out = w.ok(json!({"command": "undo_edit", "path": "/workspace/run.sh"}));
        assert!(out.output.contains("     2\techo old"), "{}", out.output);
        assert_eq!(w.read("run.sh"), "#!/bin/sh\necho old\n");
    }

    #[test]
    fn create_errors() {
        let mut w = ws();
        fs::create_dir(w.root.join("dir")).unwrap();
        let msg = w.err(json!({"command": "create", "path": "dir", "file_text": "x"}));
        assert!(msg.contains("is a directory"), "{msg}");
        let msg = w.err(json!({"command": "create", "path": "a.txt"}));
        assert_eq!(msg, "Missing required parameter `file_text`.");
        let msg = w.err(json!({"command": "create", "path": "a.txt", "file_text": 5}));
        assert_eq!(msg, "`file_text` must be a string.");
        fs::write(w.root.join("bin.dat"), b"\x00\x01\x02").unwrap();
        let msg = w.err(json!({"command": "create", "path": "bin.dat", "file_text": "x"}));
        assert!(
            msg.contains("Cannot overwrite") && msg.contains("binary"),
            "{msg}"
        );
        assert_eq!(fs::read(w.root.join("bin.dat")).unwrap(), b"\x00\x01\x02");
        w.write("f.txt", "");
        let msg = w.err(json!({"command": "create", "path": "f.txt/inner.txt", "file_text": "x"}));
        assert!(
            msg.contains("uses a file as if it were a directory"),
            "{msg}"
        );
        let big = "a".repeat(MAX_EDIT_FILE_BYTES as usize + 1);
        let msg = w.err(json!({"command": "create", "path": "big.txt", "file_text": big}));
        assert!(msg.contains("up to 10485760 bytes"), "{msg}");
        assert!(!w.root.join("big.txt").exists());
    }

    #[test]
    fn str_replace_success_snippet_and_undo() {
        let mut w = ws();
        let text: String = (1..=20).map(|i| format!("line {i}\n")).collect();
        w.write("f.txt", &text);
        let out = w.ok(json!({
            "command": "str_replace", "path": "f.txt",
            "old_str": "line 10\n", "new_str": "ten\nTEN\n"
        }));
        assert_eq!(out.command, "str_replace");
        assert!(out.changed);
        assert!(out
            .output
            .starts_with("The file /workspace/f.txt has been edited."));
        // Context: 4 lines before and after the two new lines.
        assert!(out.output.contains("     6\tline 6\n"), "{}", out.output);
        assert!(!out.output.contains("     5\t"), "{}", out.output);
        assert!(out.output.contains("    10\tten\n    11\tTEN\n"));
        assert!(out.output.contains("    15\tline 14\n"));
        assert!(!out.output.contains("    16\t"));
        assert_eq!(w.read("f.txt"), text.replace("line 10\n", "ten\nTEN\n"));

        w.ok(json!({"command": "undo_edit", "path": "f.txt"}));
        assert_eq!(w.read("f.txt"), text);
    }

    #[test]
    fn str_replace_with_missing_new_str_deletes() {
        let mut w = ws();
        w.write("f.py", "keep\nremove me\nkeep too\n");
        w.ok(json!({"command": "str_replace", "path": "f.py", "old_str": "remove me\n"}));
        assert_eq!(w.read("f.py"), "keep\nkeep too\n");
    }

    #[test]
    fn str_replace_errors() {
        let mut w = ws();
        w.write("f.py", "a = 1\nb = 2\na = 1\n    indented\n");
        let msg = w.err(
            json!({"command": "str_replace", "path": "f.py", "old_str": "zzz", "new_str": "y"}),
        );
        assert_eq!(
            msg,
            "No replacement was performed: `old_str` did not appear verbatim in /workspace/f.py."
        );
        let msg = w.err(
            json!({"command": "str_replace", "path": "f.py", "old_str": "a = 1", "new_str": "c"}),
        );
        assert!(msg.contains("occurs 2 times"), "{msg}");
        assert!(msg.contains("at lines [1, 3]"), "{msg}");
        let msg = w.err(json!({"command": "str_replace", "path": "f.py", "old_str": "  indented  \n\n", "new_str": "x"}));
        assert!(
            msg.contains("different leading/trailing whitespace"),
            "{msg}"
        );
        let msg =
            w.err(json!({"command": "str_replace", "path": "f.py", "old_str": "", "new_str": "x"}));
        assert!(msg.contains("must not be empty"), "{msg}");
        let msg = w.err(json!({"command": "str_replace", "path": "f.py", "old_str": "b = 2", "new_str": "b = 2"}));
        assert!(msg.contains("identical"), "{msg}");
        let msg = w.err(json!({"command": "str_replace", "path": "f.py", "new_str": "x"}));
        assert_eq!(msg, "Missing required parameter `old_str`.");
        let msg = w.err(
            json!({"command": "str_replace", "path": "missing.py", "old_str": "a", "new_str": "b"}),
        );
        assert_eq!(msg, "The path missing.py does not exist.");
        let msg = w.err(
            json!({"command": "str_replace", "path": "/workspace", "old_str": "a", "new_str": "b"}),
        );
        assert!(msg.contains("is a directory"), "{msg}");
        // Nothing was changed by any failed call.
        assert_eq!(w.read("f.py"), "a = 1\nb = 2\na = 1\n    indented\n");
        let msg = w.err(json!({"command": "undo_edit", "path": "f.py"}));
        assert!(msg.starts_with("No edit history found"), "{msg}");
    }

    #[test]
    fn insert_at_top_middle_and_end() {
        let mut w = ws();
        w.write("f.txt", "a\nb\n");
        let out =
            w.ok(json!({"command": "insert", "path": "f.txt", "insert_line": 0, "new_str": "top"}));
        assert_eq!(out.command, "insert");
        assert!(out.output.contains("     1\ttop\n"), "{}", out.output);
        assert_eq!(w.read("f.txt"), "top\na\nb\n");
        w.ok(json!({"command": "insert", "path": "f.txt", "insert_line": 2, "new_str": "mid1\nmid2\n"}));
        assert_eq!(w.read("f.txt"), "top\na\nmid1\nmid2\nb\n");
        w.ok(json!({"command": "insert", "path": "f.txt", "insert_line": "5", "new_str": "end"}));
        assert_eq!(w.read("f.txt"), "top\na\nmid1\nmid2\nb\nend\n");

        // A file without a final newline.
        w.write("g.txt", "x\ny");
        w.ok(json!({"command": "insert", "path": "g.txt", "insert_line": 2, "new_str": "z"}));
        assert_eq!(w.read("g.txt"), "x\ny\nz");
        w.ok(json!({"command": "insert", "path": "g.txt", "insert_line": 1, "new_str": ""}));
        assert_eq!(w.read("g.txt"), "x\n\ny\nz");
        // An empty file.
        w.write("e.txt", "");
        w.ok(json!({"command": "insert", "path": "e.txt", "insert_line": 0, "new_str": "first\n"}));
        assert_eq!(w.read("e.txt"), "first\n");

        // Undo walks back step by step.
        for expected in ["top\na\nmid1\nmid2\nb\n", "top\na\nb\n", "a\nb\n"] {
            w.ok(json!({"command": "undo_edit", "path": "f.txt"}));
            assert_eq!(w.read("f.txt"), expected);
        }
        assert!(w
            .err(json!({"command": "undo_edit", "path": "f.txt"}))
            .starts_with("No edit history"));
    }

    #[test]
    fn insert_errors() {
        let mut w = ws();
        w.write("f.txt", "a\nb\n");
        let msg =
            w.err(json!({"command": "insert", "path": "f.txt", "insert_line": 3, "new_str": "x"}));
        assert!(msg.contains("between 0 and 2"), "{msg}");
        let msg =
            w.err(json!({"command": "insert", "path": "f.txt", "insert_line": -1, "new_str": "x"}));
        assert_eq!(msg, "`insert_line` must be a non-negative integer.");
        let msg = w.err(
            json!({"command": "insert", "path": "f.txt", "insert_line": "two", "new_str": "x"}),
        );
        assert_eq!(msg, "`insert_line` must be a non-negative integer.");
        let msg = w.err(json!({"command": "insert", "path": "f.txt", "new_str": "x"}));
        assert_eq!(msg, "Missing required parameter `insert_line`.");
        let msg = w.err(json!({"command": "insert", "path": "f.txt", "insert_line": 1}));
        assert_eq!(msg, "Missing required parameter `new_str`.");
        assert_eq!(w.read("f.txt"), "a\nb\n");
    }

    #[test]
    fn undo_restores_a_file_deleted_meanwhile() {
        let mut w = ws();
        w.write("d/f.txt", "v1\n");
        w.ok(
            json!({"command": "str_replace", "path": "d/f.txt", "old_str": "v1", "new_str": "v2"}),
        );
        fs::remove_dir_all(w.root.join("d")).unwrap();
        w.ok(json!({"command": "undo_edit", "path": "/workspace/d/f.txt"}));
        assert_eq!(w.read("d/f.txt"), "v1\n");
    }

    #[test]
    fn undo_history_is_bounded_per_file() {
        let mut w = ws();
        w.write("n.txt", "0");
        for i in 0..12 {
            w.ok(json!({"command": "create", "path": "n.txt", "file_text": format!("{}", i + 1)}));
        }
        for _ in 0..MAX_UNDO_PER_FILE {
            w.ok(json!({"command": "undo_edit", "path": "n.txt"}));
        }
        assert_eq!(w.read("n.txt"), "2");
        assert!(w
            .err(json!({"command": "undo_edit", "path": "n.txt"}))
            .starts_with("No edit history"));
        assert_eq!(w.editor.history_bytes, 0);
    }

    #[test]
    fn paths_outside_the_workspace_are_refused() {
        let mut w = ws();
        w.write("a.txt", "a\n");
        let cases = [
            ("/etc/passwd", "is outside the workspace"),
            ("/tmp", "is outside the workspace"),
            ("/workspacefoo/a.txt", "is outside the workspace"),
            ("../../etc/passwd", "leads outside the workspace"),
            ("/workspace/../../etc/passwd", "leads outside the workspace"),
            ("/workspace/..", "leads outside the workspace"),
            ("a.txt\0", "Invalid path"),
            ("", "must not be empty"),
        ];
        for (path, expected) in cases {
            for args in [
                json!({"command": "view", "path": path}),
                json!({"command": "create", "path": path, "file_text": "pwned"}),
                json!({"command": "str_replace", "path": path, "old_str": "root", "new_str": "x"}),
                json!({"command": "insert", "path": path, "insert_line": 0, "new_str": "x"}),
                json!({"command": "undo_edit", "path": path}),
            ] {
                let msg = w.err(args.clone());
                assert!(msg.contains(expected), "{args}: {msg}");
            }
        }
        // Percent-encoding is a literal name inside the workspace.
        let out = w.ok(json!({"command": "create", "path": "%2e%2e/x", "file_text": "ok"}));
        assert_eq!(out.path, "/workspace/%2e%2e/x");
        assert_eq!(w.read("%2e%2e/x"), "ok");
    }

    #[test]
    fn symlinks_made_by_the_agent_are_never_followed() {
        let mut w = ws();
        let secret = w.outside.join("secret.txt");
        w.write("real/conf.toml", "a = 1\n");
        symlink(&secret, w.root.join("link.txt")).unwrap();
        symlink(&w.outside, w.root.join("outdir")).unwrap();
        symlink(w.outside.join("new.txt"), w.root.join("dangling")).unwrap();
        // Links that stay inside the workspace are refused too: no link is ever followed.
        symlink("real/conf.toml", w.root.join("conf.toml")).unwrap();
        symlink("real", w.root.join("real_link")).unwrap();
        let attempts = [
            (
                json!({"command": "view", "path": "link.txt"}),
                "/workspace/link.txt",
            ),
            (
                json!({"command": "view", "path": "/workspace/outdir"}),
                "/workspace/outdir",
            ),
            (
                json!({"command": "view", "path": "outdir/secret.txt"}),
                "/workspace/outdir",
            ),
            (
                json!({"command": "create", "path": "link.txt", "file_text": "pwned"}),
                "/workspace/link.txt",
            ),
            (
                json!({"command": "create", "path": "outdir/secret.txt", "file_text": "pwned"}),
                "/workspace/outdir",
            ),
            (
                json!({"command": "create", "path": "outdir/new/deep.txt", "file_text": "pwned"}),
                "/workspace/outdir",
            ),
            (
                json!({"command": "create", "path": "dangling", "file_text": "pwned"}),
                "/workspace/dangling",
            ),
            (
                json!({"command": "str_replace", "path": "link.txt", "old_str": "top", "new_str": "pwned"}),
                "/workspace/link.txt",
            ),
            (
                json!({"command": "insert", "path": "outdir/secret.txt", "insert_line": 0, "new_str": "pwned"}),
                "/workspace/outdir",
            ),
            (
                json!({"command": "str_replace", "path": "/workspace/conf.toml", "old_str": "1", "new_str": "2"}),
                "/workspace/conf.toml",
            ),
            (
                json!({"command": "view", "path": "real_link/conf.toml"}),
                "/workspace/real_link",
            ),
            (
                json!({"command": "create", "path": "real_link/x/y.txt", "file_text": "x"}),
                "/workspace/real_link",
            ),
        ];
        for (args, link) in attempts {
            let msg = w.err(args.clone());
            assert_eq!(
                msg,
                format!(
                    "{link} is a symbolic link; Lucid does not follow links — use the target \
                     path (`readlink {link}` shows it)."
                ),
                "{args}"
            );
            assert!(!msg.contains(&*w.outside.to_string_lossy()), "{msg}");
        }
        assert_eq!(fs::read_to_string(&secret).unwrap(), "top secret\n");
        assert_eq!(w.read("real/conf.toml"), "a = 1\n");
        assert!(!w.root.join("real/x").exists());
        let outside_entries: Vec<_> = fs::read_dir(&w.outside).unwrap().collect();
        assert_eq!(outside_entries.len(), 1);
        // The target path works.
        w.ok(json!({"command": "str_replace", "path": "real/conf.toml", "old_str": "1", "new_str": "2"}));
        assert_eq!(w.read("real/conf.toml"), "a = 2\n");
    }

    #[test]
    fn symlink_loops_are_reported_as_links() {
        let mut w = ws();
        symlink("b", w.root.join("a")).unwrap();
        symlink("a", w.root.join("b")).unwrap();
        let msg = w.err(json!({"command": "view", "path": "a"}));
        assert!(msg.starts_with("/workspace/a is a symbolic link"), "{msg}");
        let msg = w.err(json!({"command": "create", "path": "a/x", "file_text": ""}));
        assert!(msg.starts_with("/workspace/a is a symbolic link"), "{msg}");
    }

    /// Undo works on the validated path (any spelling of it) through the handles: when the
    /// sandbox has replaced a directory with a symlink meanwhile, undo refuses instead of
    /// deleting or writing through the link.
    #[test]
    fn undo_uses_the_validated_path_and_handles() {
        let mut w = ws();
        w.ok(json!({"command": "create", "path": "d/f.txt", "file_text": "v1\n"}));
        w.ok(json!({"command": "create", "path": "/workspace/d/./f.txt", "file_text": "v2\n"}));
        w.ok(json!({"command": "undo_edit", "path": "x/../d//f.txt"}));
        assert_eq!(w.read("d/f.txt"), "v1\n");

        // The sandbox swaps `d` for a link to a host directory holding a same-named file.
        fs::write(w.outside.join("f.txt"), "host file\n").unwrap();
        fs::rename(w.root.join("d"), w.root.join("d.real")).unwrap();
        symlink(&w.outside, w.root.join("d")).unwrap();
        let msg = w.err(json!({"command": "undo_edit", "path": "d/f.txt"}));
        assert!(msg.starts_with("/workspace/d is a symbolic link"), "{msg}");
        assert_eq!(
            fs::read_to_string(w.outside.join("f.txt")).unwrap(),
            "host file\n"
        );
        // Restoring content is refused the same way.
        w.ok(json!({"command": "create", "path": "e/g.txt", "file_text": "1"}));
        w.ok(json!({"command": "create", "path": "e/g.txt", "file_text": "2"}));
        fs::rename(w.root.join("e"), w.root.join("e.real")).unwrap();
        symlink(&w.outside, w.root.join("e")).unwrap();
        let msg = w.err(json!({"command": "undo_edit", "path": "e/g.txt"}));
        assert!(msg.starts_with("/workspace/e is a symbolic link"), "{msg}");
        let names: Vec<_> = fs::read_dir(&w.outside)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn fifo_view_does_not_hang() {
        let mut w = ws();
        mkfifo(&w.root.join("pipe"));
        let start = std::time::Instant::now();
        for args in [
            json!({"command": "view", "path": "pipe"}),
            json!({"command": "str_replace", "path": "pipe", "old_str": "a", "new_str": "b"}),
            json!({"command": "create", "path": "pipe", "file_text": "x"}),
        ] {
            let msg = w.err(args.clone());
            assert!(msg.contains("is not a regular file"), "{args}: {msg}");
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(2));
    }

    #[test]
    fn binary_and_oversized_files_are_refused() {
        let mut w = ws();
        fs::write(w.root.join("img.png"), b"\x89PNG\r\n\x1a\n\x00\x00").unwrap();
        fs::write(w.root.join("latin1.txt"), b"caf\xe9\n").unwrap();
        for path in ["img.png", "latin1.txt"] {
            for args in [
                json!({"command": "view", "path": path}),
                json!({"command": "str_replace", "path": path, "old_str": "a", "new_str": "b"}),
                json!({"command": "insert", "path": path, "insert_line": 0, "new_str": "b"}),
            ] {
                let msg = w.err(args.clone());
                assert!(msg.contains("binary (or not UTF-8)"), "{args}: {msg}");
            }
        }
        let big = fs::File::create(w.root.join("big.log")).unwrap();
        big.set_len(MAX_EDIT_FILE_BYTES + 1).unwrap();
        let msg = w.err(json!({"command": "view", "path": "big.log"}));
        assert!(msg.contains("too large"), "{msg}");
        let msg = w.err(
            json!({"command": "str_replace", "path": "big.log", "old_str": "a", "new_str": "b"}),
        );
        assert!(msg.contains("too large"), "{msg}");
    }

    fn mkfifo(path: &Path) {
        let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path; mkfifo has no other preconditions.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o644) }, 0);
    }

    #[test]
    fn malformed_arguments_are_explained() {
        let mut w = ws();
        let cases = [
            (json!("view"), "must be a JSON object"),
            (json!({"_raw": "{\"command\": "}), "not valid JSON"),
            (
                json!({"path": "a"}),
                "Missing required parameter `command`.",
            ),
            (
                json!({"command": "view"}),
                "Missing required parameter `path`.",
            ),
            (
                json!({"command": 3, "path": "a"}),
                "`command` must be a string.",
            ),
            (
                json!({"command": "delete", "path": "a"}),
                "Unknown command `delete`",
            ),
            (
                json!({"command": "view", "path": ["a"]}),
                "`path` must be a string.",
            ),
        ];
        for (args, expected) in cases {
            let msg = w.err(args.clone());
            assert!(msg.contains(expected), "{args}: {msg}");
        }
    }

    #[test]
    fn missing_workspace_is_explained() {
        let dir = tempfile::tempdir().unwrap();
        let mut editor = Editor::new(dir.path().join("gone"), "/workspace/".into());
        let err = editor
            .run(&json!({"command": "view", "path": "/workspace"}))
            .unwrap_err();
        assert_eq!(err.message, "The workspace directory no longer exists.");
    }

    #[test]
    fn other_mount_paths_work() {
        let dir = tempfile::tempdir().unwrap();
        let mut editor = Editor::new(dir.path().to_path_buf(), "/home/agent/project/".into());
        let out = editor
            .run(&json!({"command": "create", "path": "/home/agent/project/x.txt", "file_text": "x"}))
            .unwrap();
        assert_eq!(out.path, "/home/agent/project/x.txt");
        assert!(dir.path().join("x.txt").is_file());
        let err = editor
            .run(&json!({"command": "view", "path": "/workspace/x.txt"}))
            .unwrap_err();
        assert!(
            err.message.contains("outside the workspace"),
            "{}",
            err.message
        );

        // A workspace mounted at the container's root.
        let mut editor = Editor::new(dir.path().to_path_buf(), "/".into());
        let out = editor
            .run(&json!({"command": "view", "path": "/"}))
            .unwrap();
        assert_eq!(out.path, "/");
        assert!(out.output.ends_with(":\n/\n/x.txt\n"), "{}", out.output);
        let out = editor
            .run(&json!({"command": "view", "path": "/x.txt"}))
            .unwrap();
        assert_eq!(out.path, "/x.txt");
    }
}
