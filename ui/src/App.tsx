import { useMemo } from 'react';
import { AccountBadge } from './account/AccountBadge';
import { SignInScreen } from './account/SignInScreen';
import { useBrowserAuth } from './account/useBrowserAuth';
import { TransportContext } from './app/context';
import { navigate, useRoute, type Route } from './app/router';
import { History } from './pages/History';
import { Integrations } from './pages/Integrations';
import { NewTask } from './pages/NewTask';
import { Settings } from './pages/Settings';
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
  // Browser: a Supabase session or the local-mode link's token (see account/).
  const browser = useBrowserAuth(!given);
  const { token, onUnauthorized } = browser;
  const transport = useMemo<Transport>(
    () => given ?? new HttpTransport({ token, onUnauthorized }),
    [given, token, onUnauthorized],
  );
  const route = useRoute();

  if (browser.auth.kind !== 'ok') {
    return <SignInScreen api={browser.api} expired={browser.auth.kind === 'expired'} reason={browser.reason} />;
  }

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
          {browser.account && <AccountBadge user={browser.account.user} onSignOut={browser.signOut} />}
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
