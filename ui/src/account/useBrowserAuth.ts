// Who the browser UI acts as: a Supabase session (signed in with a provider) or the local-mode
// token from the `lucid serve` link. Keeps the Supabase session fresh and turns a session that
// cannot be refreshed into the "expired" state (the sign-in screen).
import { useCallback, useEffect, useMemo, useRef, useState } from 'react';
import { forgetToken, loadToken, storedToken, type TokenState } from '../app/auth';
import {
  loadSession,
  SessionKeeper,
  signOut as revoke,
  storedSession,
  type AccountApi,
  type AccountSession,
} from './session';

export interface BrowserAuth {
  auth: TokenState;
  account: AccountSession | null;
  /** Why the session ended, when it did. */
  reason?: string;
  api: AccountApi;
  token: () => string | null;
  onUnauthorized: () => void;
  signOut: () => void;
}

function initial(enabled: boolean): { auth: TokenState; account: AccountSession | null } {
  if (!enabled) return { auth: { kind: 'ok', token: '' }, account: null };
  const session = loadSession();
  if (session) return { auth: { kind: 'ok', token: session.accessToken }, account: session };
  return { auth: loadToken(), account: null };
}

export function useBrowserAuth(enabled: boolean, api?: AccountApi): BrowserAuth {
  const accountApi = useMemo<AccountApi>(() => api ?? { fetch: window.fetch.bind(window), base: '' }, [api]);
  const [start] = useState(() => initial(enabled));
  const [auth, setAuth] = useState<TokenState>(start.auth);
  const [account, setAccount] = useState<AccountSession | null>(start.account);
  const [reason, setReason] = useState<string | undefined>();
  const keeper = useRef<SessionKeeper | null>(null);
  const signedIn = account !== null;

  useEffect(() => {
    if (!enabled || !signedIn) return;
    const k = new SessionKeeper({
      api: accountApi,
      onChange: (session, why) => {
        if (session) {
          setAccount(session);
        } else {
          setAccount(null);
          setReason(why);
          setAuth({ kind: 'expired' });
        }
      },
    });
    keeper.current = k;
    k.start();
    return () => {
      k.stop();
      keeper.current = null;
    };
  }, [enabled, signedIn, accountApi]);

  const token = useCallback(() => storedSession()?.accessToken ?? storedToken(), []);

  const onUnauthorized = useCallback(() => {
    if (storedSession() && keeper.current) {
      // Maybe only the access token expired (a sleeping laptop): refresh; the keeper reports
      // a session that has really ended.
      void keeper.current.refreshIfDue(true);
      return;
    }
    forgetToken();
    setAuth({ kind: 'expired' });
  }, []);

  const signOut = useCallback(() => {
    const session = storedSession();
    keeper.current?.stop();
    setAccount(null);
    setReason(undefined);
    setAuth({ kind: 'missing' });
    if (session) void revoke(accountApi, session);
  }, [accountApi]);

  return { auth, account, reason, api: accountApi, token, onUnauthorized, signOut };
}
