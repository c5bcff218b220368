import { useMemo, useState } from 'react';
import { forgetToken, loadToken, storedToken, type TokenState } from './app/auth';
import { TransportContext } from './app/context';
import { navigate, useRoute, type Route } from './app/router';
import { History } from './pages/History';
import { Integrations } from './pages/Integrations';
import { NewTask } from './pages/NewTask';
import { Settings } from './pages/Settings';
import { SignIn } from './pages/SignIn';
import { Workspace } from './pages/Workspace';
import { EnginePanel } from './panels/EnginePanel';
import { QuitDialog } from './panels/QuitDialog';
import { HttpTransport } from './transport/http';
import type { DesktopLifecycle } from './transport/tauri';
import type { Transport } from './transport/types';

const NAV: { route: Route; label: string }[] = [
  { route: { page: 'new' }, label: 'New task' },
  { route: { page: 'history' }, label: 'History' },
  { route: { page: 'integrations' }, label: 'Integrations' },
  { route: { page: 'settings' }, label: 'Settings' },
];

export function App({ transport: given, lifecycle }: { transport?: Transport; lifecycle?: DesktopLifecycle }) {
  const [auth, setAuth] = useState<TokenState>(() => (given ? { kind: 'ok', token: '' } : loadToken()));
  const transport = useMemo<Transport>(
    () =>
      given ??
      new HttpTransport({
        token: storedToken,
        onUnauthorized: () => {
          forgetToken();
          setAuth({ kind: 'expired' });
        },
      }),
    [given],
  );
  const route = useRoute();

  if (auth.kind !== 'ok') return <SignIn expired={auth.kind === 'expired'} />;

  return (
    <TransportContext.Provider value={transport}>
      <a className="skip" href="#main">
        Skip to content
      </a>
      <div className="shell">
        <nav className="sidebar" aria-label="Main">
          <div className="brand">Lucid</div>
          <ul>
            {NAV.map((n) => (
              <li key={n.route.page}>
                <a
                  href={n.route.page === 'new' ? '/ui/' : `/ui/${n.route.page}`}
                  aria-current={route.page === n.route.page ? 'page' : undefined}
                  onClick={(e) => {
                    e.preventDefault();
                    navigate(n.route);
                  }}
                >
                  {n.label}
                </a>
              </li>
            ))}
          </ul>
        </nav>
        <main id="main" className="content" tabIndex={-1}>
          <EnginePanel />
          {route.page === 'new' && <NewTask />}
          {route.page === 'session' && <Workspace key={route.sessionId} sessionId={route.sessionId} />}
          {route.page === 'history' && <History />}
          {route.page === 'integrations' && <Integrations />}
          {route.page === 'settings' && <Settings />}
        </main>
      </div>
      {lifecycle && <QuitDialog lifecycle={lifecycle} />}
    </TransportContext.Provider>
  );
}
