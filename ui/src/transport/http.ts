// The Transport over the server's REST API and WebSocket (`lucid serve`, same origin).
import { SessionStream, type SocketFactory, type SocketLike } from './stream';
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

export interface HttpTransportOptions {
  /** e.g. `http://127.0.0.1:8000`; default: this page's origin. */
  baseUrl?: string;
  token: () => string | null;
  /** Called on 401 (the token is no longer valid). */
  onUnauthorized?: () => void;
  fetch?: typeof fetch;
  socket?: (url: string) => SocketLike;
}

export class HttpTransport implements Transport {
  private readonly base: string;
  private readonly fetcher: typeof fetch;

  constructor(private readonly options: HttpTransportOptions) {
    this.base = options.baseUrl ?? window.location.origin;
    this.fetcher = options.fetch ?? window.fetch.bind(window);
  }

  private async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    const headers: Record<string, string> = { accept: 'application/json' };
    const token = this.options.token();
    if (token) headers.authorization = `Bearer ${token}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    let response: Response;
    try {
      response = await this.fetcher(this.base + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch {
      throw new ApiError(0, 'Lucid is not reachable. Is `lucid serve` still running?');
    }
    const text = await response.text();
    let json: unknown;
    try {
      json = text ? JSON.parse(text) : null;
    } catch {
      json = null;
    }
    if (!response.ok) {
      if (response.status === 401) this.options.onUnauthorized?.();
      const detail =
        json && typeof json === 'object' && 'detail' in json && typeof json.detail === 'string'
          ? json.detail
          : `${response.status} ${response.statusText}`;
      throw new ApiError(response.status, detail);
    }
    return json as T;
  }

  status(): Promise<EngineStatus> {
    return this.request('GET', '/api/v1/status');
  }

  async startSession(req: StartSession): Promise<StartedSession> {
    const r = await this.request<{ sessionId: string; chatId: string }>('POST', '/api/v1/sessions', req);
    return { sessionId: r.sessionId, chatId: r.chatId };
  }

  getSession(sessionId: string): Promise<SessionSummary> {
    return this.request('GET', `/api/v1/sessions/${encodeURIComponent(sessionId)}`);
  }

  async listSessions(): Promise<SessionSummary[]> {
    const r = await this.request<{ sessions: SessionSummary[] }>('GET', '/api/v1/sessions');
    return r.sessions;
  }

  async sendMessage(sessionId: string, content: string): Promise<void> {
    await this.request('POST', `/api/v1/sessions/${encodeURIComponent(sessionId)}/messages`, { content });
  }

  subscribe(sessionId: string, since: number, handlers: SubscribeHandlers): Subscription {
    const wsBase = this.base.replace(/^http/, 'ws');
    const factory: SocketFactory = () => {
      const token = this.options.token() ?? '';
      const url = `${wsBase}/api/v1/ws?token=${encodeURIComponent(token)}`;
      return this.options.socket ? this.options.socket(url) : new WebSocket(url);
    };
    return new SessionStream(sessionId, since, factory, handlers);
  }

  async listChats(limit = 100, offset = 0): Promise<ChatSession[]> {
    const r = await this.request<{ chats: ChatSession[] }>(
      'GET',
      `/api/v1/chats?limit=${limit}&offset=${offset}`,
    );
    return r.chats;
  }

  getChat(chatId: string): Promise<ChatDetail> {
    return this.request('GET', `/api/v1/chats/${encodeURIComponent(chatId)}`);
  }

  async renameChat(chatId: string, title: string): Promise<void> {
    await this.request('PATCH', `/api/v1/chats/${encodeURIComponent(chatId)}`, { title });
  }

  async deleteChat(chatId: string): Promise<void> {
    await this.request('DELETE', `/api/v1/chats/${encodeURIComponent(chatId)}`);
  }

  listFiles(sessionId: string): Promise<FileTree> {
    return this.request('GET', `/api/v1/files/list?session_id=${encodeURIComponent(sessionId)}`);
  }

  readFile(sessionId: string, path: string): Promise<FileContent> {
    return this.request(
      'GET',
      `/api/v1/files/read?session_id=${encodeURIComponent(sessionId)}&path=${encodeURIComponent(path)}`,
    );
  }

  async listIntegrations(): Promise<IntegrationInfo[]> {
    const r = await this.request<{ integrations: IntegrationInfo[] }>('GET', '/api/v1/integrations');
    return r.integrations;
  }

  saveIntegration(req: SaveIntegrationRequest): Promise<SaveIntegrationResponse> {
    return this.request('POST', '/api/v1/integrations', req);
  }

  async deleteIntegration(provider: string): Promise<void> {
    await this.request('DELETE', `/api/v1/integrations/${encodeURIComponent(provider)}`);
  }

  async listRepos(provider: string): Promise<RepoInfo[]> {
    const r = await this.request<{ repos: RepoInfo[] }>(
      'GET',
      `/api/v1/integrations/${encodeURIComponent(provider)}/repos`,
    );
    return r.repos;
  }

  async listBranches(provider: string, fullName: string): Promise<BranchInfo[]> {
    const r = await this.request<{ branches: BranchInfo[] }>(
      'GET',
      `/api/v1/integrations/${encodeURIComponent(provider)}/repos/${encodeURIComponent(fullName)}/branches`,
    );
    return r.branches;
  }

  createPr(provider: string, req: CreatePrRequest): Promise<CreatePrResponse> {
    return this.request('POST', `/api/v1/integrations/${encodeURIComponent(provider)}/pr`, req);
  }
}
