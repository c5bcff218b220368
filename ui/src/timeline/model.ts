// Folds a session's events into timeline items (a command with its output, an edit with its
// result) plus the live header figures (status, tokens, cost, elapsed time). Incremental:
// `apply` takes new events only, in seq order, and the live deltas between them: the message
// the model is writing shows as one `streaming` item at the end until a stored event follows.
import type { FileEditArgs, SessionStatus, UsageReport } from '../generated/events';
import type { LiveDelta, SessionEvent } from '../transport/types';

/** What `apply` takes: stored events and live deltas, in the order the stream gave them. */
export type Update = SessionEvent | LiveDelta;

export const STREAMING_KEY = 'streaming';

export type Item =
  | { key: string; type: 'user'; seq: number; content: string; followUp: boolean }
  | { key: string; type: 'assistant'; seq: number; content: string }
  | { key: string; type: 'thought'; seq: number; thought: string }
  | {
      key: string;
      type: 'command';
      seq: number;
      command: string;
      output: string | null;
      exitCode: number | null;
      timedOut: boolean;
      interrupted: boolean;
      totalBytes: number;
    }
  | {
      key: string;
      type: 'edit';
      seq: number;
      command: string;
      path: string;
      edit?: FileEditArgs;
      result: { ok: boolean; output: string } | null;
    }
  | { key: string; type: 'finish'; seq: number; message: string }
  | { key: string; type: 'status'; seq: number; status: SessionStatus; message: string }
  | { key: string; type: 'progress'; seq: number; message: string }
  | { key: string; type: 'condensation'; seq: number; summary: string }
  | { key: string; type: 'error'; seq: number; message: string }
  | { key: string; type: 'streaming'; afterSeq: number; text: string; thinking: string };

export type StreamingItem = Extract<Item, { type: 'streaming' }>;

export interface Summary {
  status: SessionStatus | null;
  usage: UsageReport | null;
  startedAt: number | null;
  lastAt: number | null;
  lastSeq: number;
}

export class TimelineModel {
  /** Stored items, then the streaming one (if a message is being written). */
  items: Item[] = [];
  /** The message being written (not stored; replaced by the stored events that follow). */
  streaming: StreamingItem | null = null;
  private stored: Item[] = [];
  summary: Summary = { status: null, usage: null, startedAt: null, lastAt: null, lastSeq: 0 };
  private byCall = new Map<string, number>();
  private version = 0;
  private listeners = new Set<() => void>();

  subscribe = (fn: () => void): (() => void) => {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  };

  getVersion = (): number => this.version;

  apply(updates: Update[]): void {
    if (updates.length === 0) return;
    let items: Item[] | null = null;
    let summary = this.summary;
    let streaming = this.streaming;
    for (const e of updates) {
      if (!('seq' in e)) {
        streaming = applyDelta(streaming, e, summary.lastSeq);
        continue;
      }
      if (e.seq <= summary.lastSeq) continue;
      items ??= this.stored.slice();
      // Whatever the model wrote is now stored (usage is recorded before the message itself).
      if (streaming && e.seq > streaming.afterSeq && e.detail.kind !== 'usage') streaming = null;
      const at = Date.parse(e.timestamp);
      summary = {
        ...summary,
        lastSeq: e.seq,
        startedAt: summary.startedAt ?? at,
        lastAt: at,
      };
      const d = e.detail;
      const key = `e${e.seq}`;
      switch (d.kind) {
        case 'status':
          summary = { ...summary, status: d.status };
          items.push({ key, type: 'status', seq: e.seq, status: d.status, message: d.message });
          break;
        case 'user_message':
          items.push({ key, type: 'user', seq: e.seq, content: d.content, followUp: d.follow_up });
          break;
        case 'assistant_message':
          items.push({ key, type: 'assistant', seq: e.seq, content: d.content });
          break;
        case 'thought':
          items.push({ key, type: 'thought', seq: e.seq, thought: d.thought });
          break;
        case 'command_run':
          this.byCall.set(`c:${d.call_id}`, items.length);
          items.push({
            key,
            type: 'command',
            seq: e.seq,
            command: d.command,
            output: null,
            exitCode: null,
            timedOut: false,
            interrupted: false,
            totalBytes: 0,
          });
          break;
        case 'command_output': {
          const done = {
            output: d.output,
            exitCode: d.exit_code,
            timedOut: d.timed_out,
            interrupted: d.interrupted,
            totalBytes: d.total_bytes,
          };
          const at2 = this.byCall.get(`c:${d.call_id}`);
          const prev = at2 === undefined ? undefined : items[at2];
          if (at2 !== undefined && prev && prev.type === 'command') {
            items[at2] = { ...prev, ...done };
          } else {
            items.push({ key, type: 'command', seq: e.seq, command: d.command, ...done });
          }
          break;
        }
        case 'file_edit':
          this.byCall.set(`f:${d.call_id}`, items.length);
          items.push({
            key,
            type: 'edit',
            seq: e.seq,
            command: d.command,
            path: d.path,
            edit: d.edit,
            result: null,
          });
          break;
        case 'file_edit_result': {
          const at2 = this.byCall.get(`f:${d.call_id}`);
          const prev = at2 === undefined ? undefined : items[at2];
          const result = { ok: d.ok, output: d.output };
          if (at2 !== undefined && prev && prev.type === 'edit') {
            items[at2] = { ...prev, path: prev.path || d.path, result };
          } else {
            items.push({ key, type: 'edit', seq: e.seq, command: d.command, path: d.path, result });
          }
          break;
        }
        case 'finish':
          items.push({ key, type: 'finish', seq: e.seq, message: d.message });
          break;
        case 'usage': {
          const { kind: _kind, ...usage } = d;
          summary = { ...summary, usage };
          break;
        }
        case 'progress':
          items.push({ key, type: 'progress', seq: e.seq, message: d.message });
          break;
        case 'condensation':
          items.push({ key, type: 'condensation', seq: e.seq, summary: d.summary });
          break;
        case 'error':
          items.push({ key, type: 'error', seq: e.seq, message: d.message });
          break;
      }
    }
    if (items) this.stored = items;
    const changed = items !== null || streaming !== this.streaming;
    if (!changed) return;
    this.streaming = streaming;
    this.items = streaming ? [...this.stored, streaming] : this.stored;
    this.summary = summary;
    this.version += 1;
    for (const fn of this.listeners) fn();
  }
}

/** The streaming item after one delta (`lastSeq`: the last stored event received). */
function applyDelta(current: StreamingItem | null, d: LiveDelta, lastSeq: number): StreamingItem | null {
  if (d.afterSeq < lastSeq) return current; // completed already
  const base: StreamingItem =
    current && current.afterSeq === d.afterSeq
      ? current
      : { key: STREAMING_KEY, type: 'streaming', afterSeq: d.afterSeq, text: '', thinking: '' };
  switch (d.detail.kind) {
    case 'assistant_delta':
      return { ...base, text: base.text + d.detail.text };
    case 'thinking_delta':
      return { ...base, thinking: base.thinking + d.detail.text };
    case 'assistant_restart':
      return null;
  }
}

/** Whether the agent is working (Stop applies). */
export function isBusy(status: SessionStatus | null): boolean {
  return status === 'initializing' || status === 'running' || status === 'stopping' || status === 'ready';
}
