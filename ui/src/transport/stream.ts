// A session's event stream over a WebSocket: attaches from a `seq`, keeps events in order
// exactly once (replayed duplicates dropped, a gap triggers a re-attach from the last seq),
// and reconnects with back-off, continuing from the last seq. Partial text of the message
// being written (`agent_delta` / `thinking_delta` frames) goes to `onDelta` in between.
import type {
  ConnectionState,
  EventKind,
  LiveDelta,
  Notice,
  SessionEvent,
  SubscribeHandlers,
  Subscription,
} from './types';

/** The part of the browser's WebSocket the stream uses (so tests can give a fake). */
export interface SocketLike {
  readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: Event) => void) | null;
  onmessage: ((ev: MessageEvent) => void) | null;
  onclose: ((ev: CloseEvent) => void) | null;
  onerror: ((ev: Event) => void) | null;
}

export type SocketFactory = () => SocketLike;

const OPEN = 1;
/** Close codes after which reconnecting cannot help. */
const FINAL_CLOSES: Record<number, string> = {
  4010: 'Your sign-in is no longer valid.',
  4004: 'This session is not available.',
  4001: 'The server refused the request.',
};

export interface StreamOptions {
  /** Delays between reconnect attempts, in ms (the last repeats). */
  backoff?: number[];
  setTimer?: (fn: () => void, ms: number) => unknown;
  clearTimer?: (t: unknown) => void;
}

interface WireFrame {
  type?: string;
  seq?: number;
  sessionId?: string;
  timestamp?: string;
  status?: string;
  message?: string;
  detail?: EventKind;
  afterSeq?: number;
  tree?: unknown;
  truncated?: boolean;
}

export class SessionStream implements Subscription {
  private socket: SocketLike | null = null;
  private last: number;
  private closed = false;
  private attempt = 0;
  private timer: unknown = null;
  private resyncing = false;
  private readonly backoff: number[];
  private readonly setTimer: (fn: () => void, ms: number) => unknown;
  private readonly clearTimer: (t: unknown) => void;

  constructor(
    private readonly sessionId: string,
    since: number,
    private readonly open: SocketFactory,
    private readonly handlers: SubscribeHandlers,
    options: StreamOptions = {},
  ) {
    this.last = since;
    this.backoff = options.backoff ?? [300, 1000, 2000, 4000];
    this.setTimer = options.setTimer ?? ((fn, ms) => setTimeout(fn, ms));
    this.clearTimer = options.clearTimer ?? ((t) => clearTimeout(t as ReturnType<typeof setTimeout>));
    this.connect();
  }

  lastSeq(): number {
    return this.last;
  }

  stop(): void {
    this.send({ type: 'stop' });
  }

  followUp(content: string): void {
    this.send({ type: 'message', content });
  }

  close(): void {
    this.closed = true;
    if (this.timer !== null) this.clearTimer(this.timer);
    this.timer = null;
    const s = this.socket;
    this.socket = null;
    if (s) {
      s.onclose = null;
      s.onmessage = null;
      s.close(1000, 'closed by the client');
    }
  }

  private send(frame: object): void {
    if (!this.socket || this.socket.readyState !== OPEN) {
      throw new Error('Not connected to the session; wait for the connection to come back.');
    }
    this.socket.send(JSON.stringify(frame));
  }

  private state(s: ConnectionState, detail?: string): void {
    this.handlers.onConnection?.(s, detail);
  }

  private connect(): void {
    if (this.closed) return;
    this.state(this.attempt === 0 ? 'connecting' : 'reconnecting');
    const socket = this.open();
    this.socket = socket;
    this.resyncing = false;
    socket.onopen = () => {
      socket.send(JSON.stringify({ type: 'attach', sessionId: this.sessionId, since: this.last }));
      this.attempt = 0;
      // The server starts a (re)attached stream with the partial text so far: what was
      // shown of it before is void.
      this.handlers.onDelta?.({
        sessionId: this.sessionId,
        afterSeq: this.last,
        detail: { kind: 'assistant_restart', reason: 'reattached' },
      });
      this.state('live');
    };
    socket.onmessage = (ev: MessageEvent) => {
      if (typeof ev.data !== 'string') return;
      let frame: WireFrame;
      try {
        frame = JSON.parse(ev.data) as WireFrame;
      } catch {
        return;
      }
      this.onFrame(socket, frame);
    };
    socket.onerror = () => {
      // A close event follows; reconnecting happens there.
    };
    socket.onclose = (ev: CloseEvent) => {
      if (this.socket !== socket) return;
      this.socket = null;
      if (this.closed) return;
      if (ev.code === 1000 && !this.resyncing) {
        this.state('ended', ev.reason || 'Session ended');
        return;
      }
      const final = FINAL_CLOSES[ev.code];
      if (final) {
        this.state('failed', final);
        return;
      }
      this.scheduleReconnect();
    };
  }

  private scheduleReconnect(): void {
    const delay = this.backoff[Math.min(this.attempt, this.backoff.length - 1)] ?? 1000;
    this.attempt += 1;
    this.state('reconnecting');
    this.timer = this.setTimer(() => {
      this.timer = null;
      this.connect();
    }, delay);
  }

  /** Handles one frame; exposed to tests through the socket. */
  private onFrame(socket: SocketLike, frame: WireFrame): void {
    if ((frame.type === 'agent_delta' || frame.type === 'thinking_delta') && typeof frame.afterSeq === 'number') {
      if (frame.sessionId && frame.sessionId !== this.sessionId) return;
      // Stale: the stored event that completes it has been received.
      if (frame.afterSeq < this.last || this.resyncing) return;
      const detail = frame.detail as unknown as LiveDelta['detail'] | undefined;
      if (!detail || typeof detail !== 'object' || !('kind' in detail)) return;
      this.handlers.onDelta?.({ sessionId: this.sessionId, afterSeq: frame.afterSeq, detail });
      return;
    }
    if (typeof frame.seq === 'number' && frame.detail) {
      if (frame.sessionId && frame.sessionId !== this.sessionId) return;
      if (frame.seq <= this.last) return; // replayed again: already seen
      if (frame.seq > this.last + 1) {
        // Something was missed: re-attach from what we have instead of showing a hole.
        if (!this.resyncing) {
          this.resyncing = true;
          socket.close(4000, 'resync');
          this.socket = null;
          this.scheduleReconnect();
        }
        return;
      }
      this.last = frame.seq;
      const event: SessionEvent = {
        seq: frame.seq,
        sessionId: frame.sessionId ?? this.sessionId,
        timestamp: frame.timestamp ?? new Date().toISOString(),
        detail: frame.detail,
      };
      this.handlers.onEvents([event]);
      return;
    }
    let notice: Notice | null = null;
    if (frame.type === 'status') {
      notice = { type: 'status', status: frame.status ?? '', message: frame.message ?? '' };
    } else if (frame.type === 'error') {
      notice = { type: 'error', message: frame.message ?? 'Unknown error' };
    } else if (frame.type === 'file_tree' && Array.isArray(frame.tree)) {
      notice = { type: 'file_tree', tree: frame.tree as never, truncated: Boolean(frame.truncated) };
    }
    if (notice) this.handlers.onNotice?.(notice);
  }
}
