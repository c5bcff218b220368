// The one interface through which the UI asks anything of the engine. Implemented today over
// HTTP + WebSocket (http.ts); a Tauri IPC implementation can come later behind the same shape.
import type { components } from '../generated/api';
import type { EventKind, SessionStatus, TransientKind } from '../generated/events';

type Schemas = components['schemas'];
export type ChatSession = Schemas['ChatSession'];
export type ChatDetail = Schemas['ChatDetail'];
export type SessionSummary = Schemas['SessionSummary'];
export type StartSession = Schemas['StartSession'];
export type FileTree = Schemas['FileTree'];
export type FileNode = Schemas['FileNode'];
export type FileContent = Schemas['FileContent'];
export type IntegrationInfo = Schemas['IntegrationInfo'];
export type SaveIntegrationRequest = Schemas['SaveIntegrationRequest'];
export type SaveIntegrationResponse = Schemas['SaveIntegrationResponse'];
export type RepoInfo = Schemas['RepoInfo'];
export type BranchInfo = Schemas['BranchInfo'];
export type CreatePrRequest = Schemas['CreatePrRequest'];
export type CreatePrResponse = Schemas['CreatePrResponse'];
export type EngineStatus = Schemas['EngineStatus'];
export type ProviderStatus = Schemas['ProviderStatus'];
export type { EventKind, SessionStatus, TransientKind };

/** `POST /api/v1/sessions` answer (the server returns an untyped JSON object). */
export interface StartedSession {
  sessionId: string;
  chatId: string;
}

/** One event of a session's log, as the UI uses it. */
export interface SessionEvent {
  seq: number;
  sessionId: string;
  timestamp: string;
  detail: EventKind;
}

/** A live-only piece of the message the model is writing (never stored, never replayed):
 * it belongs after stored event `afterSeq`, and the stored message that follows replaces it. */
export interface LiveDelta {
  sessionId: string;
  afterSeq: number;
  detail: TransientKind;
}

/** Things the connection says that are not events of the log. */
export type Notice =
  | { type: 'status'; status: string; message: string }
  | { type: 'error'; message: string }
  | { type: 'file_tree'; tree: FileNode[]; truncated: boolean };

export type ConnectionState = 'connecting' | 'live' | 'reconnecting' | 'ended' | 'failed';

export interface SubscribeHandlers {
  /** Events in `seq` order, each exactly once, without gaps. */
  onEvents(events: SessionEvent[]): void;
  /** Partial text of the message being written, in order with the events. After every
   * (re)attach the server repeats the text so far, so a restart comes first. */
  onDelta?(delta: LiveDelta): void;
  onNotice?(notice: Notice): void;
  onConnection?(state: ConnectionState, detail?: string): void;
}

export interface Subscription {
  /** Interrupts the running step. */
  stop(): void;
  /** Sends a follow-up message. Throws when not connected. */
  followUp(content: string): void;
  /** The last `seq` received. */
  lastSeq(): number;
  close(): void;
}

/** An API error with the server's words (`detail`) and status. */
export class ApiError extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
    this.name = 'ApiError';
  }
}

export interface Transport {
  status(): Promise<EngineStatus>;
  // sessions
  startSession(req: StartSession): Promise<StartedSession>;
  getSession(sessionId: string): Promise<SessionSummary>;
  listSessions(): Promise<SessionSummary[]>;
  /** Sends a message to any of the user's sessions: a live one gets it as a follow-up; an
   * ended, idle or interrupted one is continued (a sandbox is started on its workspace). */
  sendMessage(sessionId: string, content: string): Promise<void>;
  /** Events of a session after `since` (replay, then live), with stop and follow-up. */
  subscribe(sessionId: string, since: number, handlers: SubscribeHandlers): Subscription;
  // chats (history)
  listChats(limit?: number, offset?: number): Promise<ChatSession[]>;
  getChat(chatId: string): Promise<ChatDetail>;
  renameChat(chatId: string, title: string): Promise<void>;
  deleteChat(chatId: string): Promise<void>;
  // files
  listFiles(sessionId: string): Promise<FileTree>;
  readFile(sessionId: string, path: string): Promise<FileContent>;
  // integrations
  listIntegrations(): Promise<IntegrationInfo[]>;
  saveIntegration(req: SaveIntegrationRequest): Promise<SaveIntegrationResponse>;
  deleteIntegration(provider: string): Promise<void>;
  listRepos(provider: string): Promise<RepoInfo[]>;
  listBranches(provider: string, fullName: string): Promise<BranchInfo[]>;
  createPr(provider: string, req: CreatePrRequest): Promise<CreatePrResponse>;
}
