// The Transport inside the desktop app: every request is a Tauri command of the shell
// (src-tauri/commands), which calls the same engine function as the matching HTTP route, with
// the same request and response types (generated from the Rust types, see ../generated).
// Session events come through a Tauri channel in the WebSocket's frame format; the stream
// logic (replay, dedupe, gaps, reconnects) is the HTTP transport's, over an IPC "socket".
import { Channel, invoke } from '@tauri-apps/api/core';
import { SessionStream, type SocketLike } from './stream';
import {
  ApiError,
  type BranchInfo,
  type ChatDetail,
  type ChatSession,
  type CreatePrRequest,
  type CreatePrResponse,
  type EngineStatus,
  type FileContent,
  type FileTree,
  type IntegrationInfo,
  type RepoInfo,
  type SaveIntegrationRequest,
  type SaveIntegrationResponse,
  type SessionSummary,
  type StartSession,
  type StartedSession,
  type SubscribeHandlers,
  type Subscription,
  type Transport,
} from './types';

/** The shell's error shape (src-tauri/error.rs). */
interface CommandError {
  status: number;
  message: string;
}

function isCommandError(e: unknown): e is CommandError {
  return typeof e === 'object' && e !== null && 'status' in e && 'message' in e;
}

/** True when the page runs inside the Lucid desktop app. */
export function insideDesktopApp(): boolean {
  return typeof window !== 'undefined' && '__TAURI_INTERNALS__' in window;
}

export type Invoke = <T>(cmd: string, args?: Record<string, unknown>) => Promise<T>;

async function call<T>(run: Invoke, cmd: string, args?: Record<string, unknown>): Promise<T> {
  try {
    return await run<T>(cmd, args);
  } catch (e) {
    if (isCommandError(e)) throw new ApiError(e.status, e.message);
    throw new ApiError(0, typeof e === 'string' ? e : 'The Lucid engine did not answer.');
  }
}

/**
 * A WebSocket look-alike over the shell's commands: `attach` subscribes a channel, `stop` and
 * `message` frames become commands, closing unsubscribes.
 */
export class IpcSocket implements SocketLike {
  readyState = 0;
  onopen: ((ev: Event) => void) | null = null;
  onmessage: ((ev: MessageEvent) => void) | null = null;
  onclose: ((ev: CloseEvent) => void) | null = null;
  onerror: ((ev: Event) => void) | null = null;
  private subscription: number | null = null;
  private sessionId = '';

  constructor(
    private readonly run: Invoke,
    private readonly makeChannel: ChannelFactory = (onFrame) => {
      const channel = new Channel<unknown>();
      channel.onmessage = onFrame;
      return channel;
    },
  ) {
    queueMicrotask(() => {
      this.readyState = 1;
      this.onopen?.(new Event('open'));
    });
  }

  send(data: string): void {
    const frame = JSON.parse(data) as { type?: string; sessionId?: string; since?: number; content?: string };
    if (frame.type === 'attach' && frame.sessionId) {
      this.sessionId = frame.sessionId;
      const channel = this.makeChannel((f) => {
        if (this.readyState !== 1) return;
        if (typeof f === 'object' && f !== null && (f as { type?: string }).type === 'end') {
          this.finish(1000, 'Session ended');
          return;
        }
        this.onmessage?.(new MessageEvent('message', { data: JSON.stringify(f) }));
      });
      this.run<number>('subscribe_session', { sessionId: frame.sessionId, since: frame.since ?? 0, onEvent: channel })
        .then((id) => {
          this.subscription = id;
          if (this.readyState !== 1) void this.run('unsubscribe', { subscription: id });
        })
        .catch((e: unknown) => {
          const message = isCommandError(e) ? e.message : String(e);
          this.onmessage?.(new MessageEvent('message', { data: JSON.stringify({ type: 'error', message }) }));
          this.finish(isCommandError(e) && e.status === 404 ? 4004 : 4001, message);
        });
    } else if (frame.type === 'stop') {
      void this.run('stop_session', { sessionId: this.sessionId }).catch(() => undefined);
    } else if (frame.type === 'message' && typeof frame.content === 'string') {
      this.run('follow_up', { sessionId: this.sessionId, content: frame.content }).catch((e: unknown) => {
        const message = isCommandError(e) ? e.message : String(e);
        this.onmessage?.(new MessageEvent('message', { data: JSON.stringify({ type: 'error', message }) }));
      });
    }
  }

  close(code = 1000, reason = ''): void {
    this.finish(code, reason);
  }

  private finish(code: number, reason: string): void {
    if (this.readyState === 3) return;
    this.readyState = 3;
    if (this.subscription !== null) void this.run('unsubscribe', { subscription: this.subscription });
    this.onclose?.(new CloseEvent('close', { code, reason }));
  }
}

export type ChannelFactory = (onFrame: (frame: unknown) => void) => unknown;

export class TauriTransport implements Transport {
  constructor(
    private readonly run: Invoke = invoke,
    private readonly makeChannel?: ChannelFactory,
  ) {}

  status(): Promise<EngineStatus> {
    return call(this.run, 'engine_status');
  }

  startSession(req: StartSession): Promise<StartedSession> {
    return call(this.run, 'start_session', { req });
  }

  getSession(sessionId: string): Promise<SessionSummary> {
    return call(this.run, 'get_session', { sessionId });
  }

  listSessions(): Promise<SessionSummary[]> {
    return call(this.run, 'list_sessions');
  }

  async sendMessage(sessionId: string, content: string): Promise<void> {
    await call(this.run, 'follow_up', { sessionId, content });
  }

  subscribe(sessionId: string, since: number, handlers: SubscribeHandlers): Subscription {
    return new SessionStream(sessionId, since, () => new IpcSocket(this.run, this.makeChannel), handlers);
  }

  listChats(limit = 100, offset = 0): Promise<ChatSession[]> {
    return call(this.run, 'list_chats', { limit, offset });
  }

  getChat(chatId: string): Promise<ChatDetail> {
    return call(this.run, 'get_chat', { chatId });
  }

  async renameChat(chatId: string, title: string): Promise<void> {
    await call(this.run, 'rename_chat', { chatId, title });
  }

  async deleteChat(chatId: string): Promise<void> {
    await call(this.run, 'delete_chat', { chatId });
  }

  listFiles(sessionId: string): Promise<FileTree> {
    return call(this.run, 'list_files', { sessionId });
  }

  readFile(sessionId: string, path: string): Promise<FileContent> {
    return call(this.run, 'read_file', { sessionId, path });
  }

  listIntegrations(): Promise<IntegrationInfo[]> {
    return call(this.run, 'list_integrations');
  }

  saveIntegration(req: SaveIntegrationRequest): Promise<SaveIntegrationResponse> {
    return call(this.run, 'save_integration', { req });
  }

  async deleteIntegration(provider: string): Promise<void> {
    await call(this.run, 'delete_integration', { provider });
  }

  async listRepos(provider: string): Promise<RepoInfo[]> {
    const r = await call<{ repos: RepoInfo[] }>(this.run, 'list_repos', { provider });
    return r.repos;
  }

  async listBranches(provider: string, fullName: string): Promise<BranchInfo[]> {
    const r = await call<{ branches: BranchInfo[] }>(this.run, 'list_branches', { provider, fullName });
    return r.branches;
  }

  createPr(provider: string, req: CreatePrRequest): Promise<CreatePrResponse> {
    return call(this.run, 'create_pr', { provider, req });
  }
}

/**
 * Inside the app, links that leave the UI (a new pull request, a forge page) open in the
 * system browser instead of a webview window.
 */
export function openExternalLinksInBrowser(run: Invoke = invoke): void {
  document.addEventListener('click', (ev) => {
    const target = ev.target instanceof Element ? ev.target.closest('a[href]') : null;
    if (!(target instanceof HTMLAnchorElement)) return;
    const url = new URL(target.href, window.location.href);
    if (url.origin === window.location.origin || !/^https?:$/.test(url.protocol)) return;
    ev.preventDefault();
    void run('plugin:opener|open_url', { url: url.href }).catch(() => undefined);
  });
}
