// Generated from crates/lucid-engine/src/events.rs by
// `UPDATE_GENERATED=1 cargo test -p lucid-engine --test ts_bindings`. Do not edit.

export type SessionStatus = "initializing" | "ready" | "running" | "completed" | "stopping" | "stopped" | "failed" | "interrupted";

export type UsageReport = { model: string, inputTokens: number, outputTokens: number, cachedInputTokens: number, totalInputTokens: number, totalOutputTokens: number, totalCachedInputTokens: number, 
/**
 * Input tokens of this step written to the prompt cache (Anthropic cache writes).
 */
cacheWriteInputTokens: number, totalCacheWriteInputTokens: number, 
/**
 * Estimated cost in USD for the session so far, when the model's price is known.
 */
totalCostUsd: number | null, };

export type FileEditArgs = { 
/**
 * `str_replace`: the text replaced.
 */
old_str?: string, 
/**
 * `str_replace` / `insert`: the new text.
 */
new_str?: string, 
/**
 * `create`: the whole file.
 */
file_text?: string, 
/**
 * `insert`: the line after which `new_str` goes (0 = top).
 */
insert_line?: number, };

export type EventKind = { "kind": "status", status: SessionStatus, message: string, } | { "kind": "user_message", content: string, follow_up: boolean, } | { "kind": "assistant_message", content: string, } | { "kind": "thought", call_id: string, thought: string, } | { "kind": "command_run", call_id: string, command: string, } | { "kind": "command_output", call_id: string, command: string, output: string, exit_code: number | null, 
/**
 * Bytes the command printed in total (the stored output may be capped).
 */
total_bytes: number, timed_out: boolean, interrupted: boolean, } | { "kind": "file_edit", call_id: string, command: string, path: string, 
/**
 * What the edit changes (for diffs); absent for `view`/`undo_edit` and older events.
 */
edit?: FileEditArgs, } | { "kind": "file_edit_result", call_id: string, command: string, path: string, output: string, ok: boolean, } | { "kind": "finish", call_id: string, message: string, } | { "kind": "usage" } & UsageReport | { "kind": "condensation", summary: string, 
/**
 * Messages the summary replaced.
 */
condensed_messages: number, 
/**
 * Estimated prompt tokens before and after.
 */
tokens_before: number, tokens_after: number, } | { "kind": "model_message", message: unknown, } | { "kind": "progress", message: string, } | { "kind": "error", message: string, };

export type TransientKind = { "kind": "assistant_delta", text: string, } | { "kind": "thinking_delta", text: string, } | { "kind": "assistant_restart", reason: string, };
