// Sign-in for local mode: `lucid serve` prints a link with the token in the URL fragment
// (`#token=...`, never sent to the server). The UI keeps it in localStorage and removes it
// from the address bar.
const KEY = 'lucid.token';

export type TokenState = { kind: 'ok'; token: string } | { kind: 'missing' } | { kind: 'expired' };

/** Seconds since the epoch at which the JWT expires, or null when it cannot be read. */
export function tokenExpiry(token: string): number | null {
  const part = token.split('.')[1];
  if (!part) return null;
  try {
    const json = JSON.parse(atob(part.replace(/-/g, '+').replace(/_/g, '/'))) as { exp?: unknown };
    return typeof json.exp === 'number' ? json.exp : null;
  } catch {
    return null;
  }
}

/** Takes a token from the fragment (then strips it from the address bar) or storage. */
export function loadToken(loc: Location = window.location, hist: History = window.history): TokenState {
  const hash = loc.hash.startsWith('#') ? loc.hash.slice(1) : loc.hash;
  const params = new URLSearchParams(hash);
  const fromLink = params.get('token');
  if (fromLink) {
    localStorage.setItem(KEY, fromLink);
    params.delete('token');
    const rest = params.toString();
    hist.replaceState(hist.state, '', loc.pathname + loc.search + (rest ? `#${rest}` : ''));
  }
  const token = localStorage.getItem(KEY);
  if (!token) return { kind: 'missing' };
  const exp = tokenExpiry(token);
  if (exp !== null && exp * 1000 <= Date.now()) return { kind: 'expired' };
  return { kind: 'ok', token };
}

export function storedToken(): string | null {
  return localStorage.getItem(KEY);
}

export function forgetToken(): void {
  localStorage.removeItem(KEY);
}
