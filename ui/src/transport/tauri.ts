// The Transport inside the desktop app: every request is a Tauri command of the shell
// (src-tauri/commands), called through the bindings generated from the commands' Rust
// signatures (../generated/commands.ts, tauri-specta), which call the same engine functions
// as the matching HTTP routes. Session events come through a Tauri channel in the
// WebSocket's frame format; the stream logic (replay, dedupe, gaps, reconnects) is the HTTP
// transport's, over an IPC "socket".
import { Channel, invoke } from '@tauri-apps/api/core';
import { listen } from '@tauri-apps/api/event';
import { commands, QUIT_REQUESTED, type CommandError, type QuitRequest, type Value } from '../generated/commands';
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

export type { QuitRequest };

function isCommandError(e: unknown): e is CommandError {
  return typeof e === 'object' && e !== null && 'status' in e && 'message' in e;
}

/** True when the page runs inside the Lucid desktop app. */
export function insideDesktopApp(): boolean {
  return typeof window !== 'undefined' && '__TAURI_INTERNALS__' in window;
}

export type Invoke = <T>(cmd: string, args?: Record<string, unknown>) => Promise<T>;

/** Runs a command; the shell's errors become ApiErrors, like the HTTP transport's. */
async function call<T>(request: () => Promise<T>): Promise<T> {
  try {
    return await request();
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

  constructor() {
    queueMicrotask(() => {
      this.readyState = 1;
      this.onopen?.(new Event('open'));
    });
  }

  send(data: string): void {
    const frame = JSON.parse(data) as { type?: string; sessionId?: string; since?: number; content?: string };
    if (frame.type === 'attach' && frame.sessionId) {
      this.sessionId = frame.sessionId;
      const channel = new Channel<Value>();
      channel.onmessage = (f) => {
        if (this.readyState !== 1) return;
        if (typeof f === 'object' && f !== null && (f as { type?: string }).type === 'end') {
          this.finish(1000, 'Session ended');
          return;
        }
        this.onmessage?.(new MessageEvent('message', { data: JSON.stringify(f) }));
      };
      commands
        .subscribeSession(frame.sessionId, frame.since ?? 0, channel)
        .then((id) => {
          this.subscription = id;
          if (this.readyState !== 1) void commands.unsubscribe(id).catch(() => undefined);
        })
        .catch((e: unknown) => {
          const message = isCommandError(e) ? e.message : String(e);
          this.onmessage?.(new MessageEvent('message', { data: JSON.stringify({ type: 'error', message }) }));
          this.finish(isCommandError(e) && e.status === 404 ? 4004 : 4001, message);
        });
    } else if (frame.type === 'stop') {
      void commands.stopSession(this.sessionId).catch(() => undefined);
    } else if (frame.type === 'message' && typeof frame.content === 'string') {
      commands.followUp(this.sessionId, frame.content).catch((e: unknown) => {
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
    if (this.subscription !== null) void commands.unsubscribe(this.subscription).catch(() => undefined);
    this.onclose?.(new CloseEvent('close', { code, reason }));
  }
}

export class TauriTransport implements Transport {
  status(): Promise<EngineStatus> {
    return call(() => commands.engineStatus());
  }

  startSession(req: StartSession): Promise<StartedSession> {
    return call(() => commands.startSession(req));
  }

  getSession(sessionId: string): Promise<SessionSummary> {
    return call(() => commands.getSession(sessionId));
  }

  listSessions(): Promise<SessionSummary[]> {
    return call(() => commands.listSessions());
  }

  async sendMessage(sessionId: string, content: string): Promise<void> {
    await call(() => commands.followUp(sessionId, content));
  }

  subscribe(sessionId: string, since: number, handlers: SubscribeHandlers): Subscription {
    return new SessionStream(sessionId, since, () => new IpcSocket(), handlers);
  }

  listChats(limit = 100, offset = 0): Promise<ChatSession[]> {
    return call(() => commands.listChats(limit, offset));
  }

  getChat(chatId: string): Promise<ChatDetail> {
    return call(() => commands.getChat(chatId));
  }

  async renameChat(chatId: string, title: string): Promise<void> {
    await call(() => commands.renameChat(chatId, title));
  }

  async deleteChat(chatId: string): Promise<void> {
    await call(() => commands.deleteChat(chatId));
  }

  listFiles(sessionId: string): Promise<FileTree> {
    return call(() => commands.listFiles(sessionId));
  }

  readFile(sessionId: string, path: string): Promise<FileContent> {
    return call(() => commands.readFile(sessionId, path));
  }

  listIntegrations(): Promise<IntegrationInfo[]> {
    return call(() => commands.listIntegrations());
  }

  saveIntegration(req: SaveIntegrationRequest): Promise<SaveIntegrationResponse> {
    return call(() => commands.saveIntegration(req));
  }

  async deleteIntegration(provider: string): Promise<void> {
    await call(() => commands.deleteIntegration(provider));
  }

  async listRepos(provider: string): Promise<RepoInfo[]> {
    const r = await call(() => commands.listRepos(provider));
    return r.repos;
  }

  async listBranches(provider: string, fullName: string): Promise<BranchInfo[]> {
    const r = await call(() => commands.listBranches(provider, fullName));
    return r.branches;
  }

  createPr(provider: string, req: CreatePrRequest): Promise<CreatePrResponse> {
    return call(() => commands.createPr(provider, req));
  }
}

/** The desktop app's own lifecycle, as the window sees it. */
export interface DesktopLifecycle {
  /** Calls `ask` when quitting waits for the user's word; returns a function to stop. */
  onQuitRequested(ask: (request: QuitRequest) => void): () => void;
  /** Quits the app: its sessions are stopped and their containers removed. */
  quit(): Promise<void>;
}

/** The lifecycle of the app around this window (events and commands of the shell). */
export function tauriLifecycle(): DesktopLifecycle {
  return {
    onQuitRequested(ask) {
      const stop = listen<QuitRequest>(QUIT_REQUESTED, (event) => ask(event.payload));
      return () => {
        void stop.then((unlisten) => unlisten());
      };
    },
    quit: () => call(() => commands.quitApp()).then(() => undefined),
  };
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
