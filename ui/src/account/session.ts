// Supabase-mode sign-in in the browser. The server runs the PKCE flow and hands the session to
// the page in the URL fragment (`/#session=<JSON>`, never sent to a server); the page keeps it
// in localStorage, refreshes it before the access token expires (by the wall clock, so a laptop
// waking from sleep refreshes at once) and signs out through the server.
import type { components } from '../generated/api';

export type AccountSession = components['schemas']['AuthSession'];
export type AccountUser = components['schemas']['AuthUser'];
export type AuthOptions = components['schemas']['AuthOptions'];

const KEY = 'lucid.session';
/** Refresh this many seconds before the access token expires. */
export const REFRESH_MARGIN_S = 60;

function isSession(v: unknown): v is AccountSession {
  if (!v || typeof v !== 'object') return false;
  const s = v as Record<string, unknown>;
  const user = s.user as Record<string, unknown> | undefined;
  return (
    typeof s.accessToken === 'string' &&
    typeof s.refreshToken === 'string' &&
    typeof s.expiresAt === 'number' &&
    !!user &&
    typeof user.id === 'string'
  );
}

/** Takes a session from the fragment (then strips it from the address bar) or storage. */
export function loadSession(loc: Location = window.location, hist: History = window.history): AccountSession | null {
  const hash = loc.hash.startsWith('#') ? loc.hash.slice(1) : loc.hash;
  const params = new URLSearchParams(hash);
  const fromLink = params.get('session');
  if (fromLink !== null) {
    params.delete('session');
    const rest = params.toString();
    hist.replaceState(hist.state, '', loc.pathname + loc.search + (rest ? `#${rest}` : ''));
    try {
      const parsed: unknown = JSON.parse(fromLink);
      if (isSession(parsed)) saveSession(parsed);
    } catch {
      // A damaged link: fall back to what is stored.
    }
  }
  return storedSession();
}

export function storedSession(): AccountSession | null {
  try {
    const parsed: unknown = JSON.parse(localStorage.getItem(KEY) ?? 'null');
    return isSession(parsed) ? parsed : null;
  } catch {
    return null;
  }
}

export function saveSession(session: AccountSession): void {
  localStorage.setItem(KEY, JSON.stringify(session));
}

export function forgetSession(): void {
  localStorage.removeItem(KEY);
}

/** The session is over (refresh refused): the user has to sign in again. */
export class SessionEndedError extends Error {}

async function detail(response: Response): Promise<string> {
  try {
    const body = (await response.json()) as { detail?: unknown };
    if (typeof body.detail === 'string') return body.detail;
  } catch {
    // not JSON
  }
  return `${response.status} ${response.statusText}`;
}

export interface AccountApi {
  fetch: typeof fetch;
  /** e.g. `http://127.0.0.1:8000`; '' = this page's origin. */
  base: string;
}

export async function authOptions(api: AccountApi): Promise<AuthOptions> {
  const response = await api.fetch(`${api.base}/api/v1/auth/options`, { headers: { accept: 'application/json' } });
  if (!response.ok) throw new Error(await detail(response));
  return (await response.json()) as AuthOptions;
}

/** A new session for the stored refresh token (which is spent). */
export async function refreshSession(api: AccountApi, session: AccountSession): Promise<AccountSession> {
  const response = await api.fetch(`${api.base}/api/v1/auth/refresh`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json' },
    body: JSON.stringify({ refreshToken: session.refreshToken }),
  });
  if (response.status === 401 || response.status === 400) throw new SessionEndedError(await detail(response));
  if (!response.ok) throw new Error(await detail(response));
  const fresh: unknown = await response.json();
  if (!isSession(fresh)) throw new Error('The server sent an unexpected session.');
  return fresh;
}

/** Revokes the session at Supabase Auth (through the server); forgets it here either way. */
export async function signOut(api: AccountApi, session: AccountSession): Promise<void> {
  forgetSession();
  try {
    await api.fetch(`${api.base}/api/v1/auth/sign-out`, {
      method: 'POST',
      headers: { authorization: `Bearer ${session.accessToken}` },
    });
  } catch {
    // Offline: the token is forgotten here; it expires on its own.
  }
}

export interface KeeperOptions {
  api: AccountApi;
  /** Wall clock in ms (Date.now). */
  now?: () => number;
  onChange: (session: AccountSession | null, reason?: string) => void;
}

/**
 * Keeps the stored session fresh: refreshes REFRESH_MARGIN_S before expiry, checks the wall
 * clock again whenever the page becomes visible or the timer fires late (after a sleep), and
 * reports a session that can no longer be refreshed.
 */
export class SessionKeeper {
  private timer: ReturnType<typeof setTimeout> | undefined;
  private inFlight: Promise<AccountSession | null> | undefined;
  private readonly now: () => number;
  private readonly onVisible = () => {
    if (document.visibilityState === 'visible') void this.refreshIfDue();
  };

  constructor(private readonly options: KeeperOptions) {
    this.now = options.now ?? Date.now;
  }

  start(): void {
    document.addEventListener('visibilitychange', this.onVisible);
    window.addEventListener('focus', this.onVisible);
    void this.refreshIfDue();
  }

  stop(): void {
    document.removeEventListener('visibilitychange', this.onVisible);
    window.removeEventListener('focus', this.onVisible);
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private schedule(session: AccountSession): void {
    if (this.timer) clearTimeout(this.timer);
    const due = (session.expiresAt - REFRESH_MARGIN_S) * 1000 - this.now();
    // Wake at least every minute: timers stop while a machine sleeps, the wall clock does not.
    this.timer = setTimeout(() => void this.refreshIfDue(), Math.max(0, Math.min(due, 60_000)));
  }

  /** Refreshes when due (or when `force`); resolves to the current session or null. */
  refreshIfDue(force = false): Promise<AccountSession | null> {
    const session = storedSession();
    if (!session) return Promise.resolve(null);
    const due = (session.expiresAt - REFRESH_MARGIN_S) * 1000 <= this.now();
    if (!due && !force) {
      this.schedule(session);
      return Promise.resolve(session);
    }
    this.inFlight ??= refreshSession(this.options.api, session)
      .then((fresh) => {
        saveSession(fresh);
        this.schedule(fresh);
        this.options.onChange(fresh);
        return fresh;
      })
      .catch((e: unknown) => {
        if (e instanceof SessionEndedError) {
          forgetSession();
          this.options.onChange(null, e.message);
          return null;
        }
        // Offline or server trouble: try again shortly.
        this.timer = setTimeout(() => void this.refreshIfDue(), 10_000);
        return session;
      })
      .finally(() => {
        this.inFlight = undefined;
      });
    return this.inFlight;
  }
}
