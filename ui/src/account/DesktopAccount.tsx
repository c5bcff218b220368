// The desktop app's account (Supabase mode): sign-in with a provider in the system browser
// (back through `lucid://`), a loopback fallback and a copyable sign-in link, the account badge
// and sign-out. Local mode shows the app directly. Commands: src-tauri/commands/account.rs.
import { useCallback, useEffect, useState, type ReactNode } from 'react';
import { commands, type AccountState_Serialize } from '../generated/commands';
import { AccountBadge } from './AccountBadge';

export type DesktopAccountState = AccountState_Serialize;

/** The shell's account commands (generated bindings; replaced in tests). */
export type AccountCommands = Pick<typeof commands, 'accountState' | 'startSignIn' | 'signInLink' | 'signOut'>;

const LABELS: Record<string, string> = { google: 'Google', github: 'GitHub', gitlab: 'GitLab' };

/** Renders `children(badge)` once signed in (or in local mode), else the sign-in screen. */
export function DesktopAccount({
  children,
  api = commands,
  pollMs = 1000,
  recheckMs = 30_000,
}: {
  children: (badge: ReactNode) => ReactNode;
  api?: AccountCommands;
  pollMs?: number;
  /** While signed in: how often to look whether the session ended (then sign-in shows). */
  recheckMs?: number;
}) {
  const [state, setState] = useState<DesktopAccountState | null>(null);
  const [message, setMessage] = useState<string | null>(null);
  const [waiting, setWaiting] = useState(false);

  const refresh = useCallback(
    () =>
      api.accountState().then(setState, () =>
        // A shell without accounts: show the app as before.
        setState((s) => s ?? { mode: 'local', providers: [], user: null, reconnecting: false, lastError: null }),
      ),
    [api],
  );

  useEffect(() => {
    void refresh();
  }, [refresh]);

  // While a sign-in is under way in the browser, look for its result; while signed in, look
  // now and then whether the session ended (drafts being typed survive, see draft.ts).
  // While the stored session waits for Supabase to be reachable, look often.
  const signedIn = Boolean(state?.user);
  const reconnecting = Boolean(state?.reconnecting);
  useEffect(() => {
    const every = waiting || reconnecting ? pollMs : signedIn ? recheckMs : null;
    if (every === null) return;
    const t = setInterval(() => void refresh(), every);
    return () => clearInterval(t);
  }, [waiting, reconnecting, signedIn, refresh, pollMs, recheckMs]);

  useEffect(() => {
    if (state?.user) setWaiting(false);
  }, [state?.user]);

  if (!state) return null;
  if (state.mode !== 'supabase') return <>{children(null)}</>;
  if (state.user) {
    const signOut = () => {
      void api.signOut().finally(() => void refresh());
    };
    return <>{children(<AccountBadge user={state.user} onSignOut={signOut} />)}</>;
  }
  if (state.reconnecting) {
    return (
      <main className="page signin" id="main">
        <h1>Reconnecting to your account</h1>
        <p role="status">
          Lucid cannot reach your Supabase project right now. You are still signed in; Lucid keeps trying and
          opens as soon as it can.
        </p>
        <button type="button" onClick={() => void api.signOut().finally(() => void refresh())}>
          Forget this session and sign in again
        </button>
      </main>
    );
  }

  const start = (provider: string, loopback: boolean) => {
    setMessage(null);
    api.startSignIn(provider, loopback).then(
      () => setWaiting(true),
      (e: unknown) => setMessage(errorText(e)),
    );
  };
  const copy = (provider: string) => {
    api.signInLink(provider).then(
      async (url) => {
        await navigator.clipboard?.writeText(url);
        setWaiting(true);
        setMessage('Sign-in link copied: open it in any browser on this computer.');
      },
      (e: unknown) => setMessage(errorText(e)),
    );
  };

  return (
    <main className="page signin" id="main">
      <h1>Sign in to Lucid</h1>
      {state.lastError && <p role="alert">{state.lastError}</p>}
      {waiting && <p role="status">Finish signing in in your browser; Lucid continues here.</p>}
      <ul className="providers">
        {state.providers.map((p) => (
          <li key={p}>
            <button type="button" className="provider" onClick={() => start(p, false)}>
              Continue with {LABELS[p] ?? p}
            </button>
          </li>
        ))}
      </ul>
      <details>
        <summary>The browser does not come back to Lucid?</summary>
        <ul>
          {state.providers.map((p) => (
            <li key={p}>
              <button type="button" onClick={() => start(p, true)}>
                {LABELS[p] ?? p} through a local address
              </button>{' '}
              <button type="button" onClick={() => copy(p)}>
                Copy {LABELS[p] ?? p} sign-in link
              </button>
            </li>
          ))}
        </ul>
      </details>
      {message && <p role="status">{message}</p>}
    </main>
  );
}

function errorText(e: unknown): string {
  if (e && typeof e === 'object' && 'message' in e && typeof e.message === 'string') return e.message;
  return String(e);
}
