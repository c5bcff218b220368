import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { App } from './App';
import { applyTheme, readPrefs } from './app/prefs';
import { insideDesktopApp, openExternalLinksInBrowser, tauriLifecycle, TauriTransport } from './transport/tauri';
import './styles.css';

applyTheme(readPrefs().theme);
window.matchMedia?.('(prefers-color-scheme: dark)').addEventListener('change', () => applyTheme(readPrefs().theme));

// Inside the desktop app the engine is reached over Tauri IPC (no sign-in: local mode).
const desktop = insideDesktopApp() ? new TauriTransport() : undefined;
if (desktop) openExternalLinksInBrowser();

const root = document.getElementById('root');
if (root) {
  createRoot(root).render(
    <StrictMode>
      <App transport={desktop} lifecycle={desktop ? tauriLifecycle() : undefined} />
    </StrictMode>,
  );
}
