import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { App } from './App';
import { applyTheme, readPrefs } from './app/prefs';
import './styles.css';

applyTheme(readPrefs().theme);
window.matchMedia?.('(prefers-color-scheme: dark)').addEventListener('change', () => applyTheme(readPrefs().theme));

const root = document.getElementById('root');
if (root) {
  createRoot(root).render(
    <StrictMode>
      <App />
    </StrictMode>,
  );
}
