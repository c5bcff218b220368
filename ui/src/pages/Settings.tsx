import { useTransport } from '../app/context';
import { usePrefs, type Theme } from '../app/prefs';
import { useAsync } from '../app/useAsync';
import { insideDesktopApp } from '../transport/tauri';
import { DesktopSettings } from './DesktopSettings';

export function Settings() {
  const transport = useTransport();
  const status = useAsync(() => transport.status(), [transport]);
  const [prefs, setPrefs] = usePrefs();
  const s = status.data;
  return (
    <section className="page" aria-labelledby="settings-title">
      <h1 id="settings-title">Settings</h1>
      <h2>Engine status</h2>
      {status.error && <p className="error-text">Lucid is not reachable: {status.error}</p>}
      {s && (
        <>
          {s.problems.length === 0 ? (
            <p className="ok-text" data-testid="status-ok">Everything is set up.</p>
          ) : (
            <ul className="problems" aria-label="Problems">
              {s.problems.map((p) => (
                <li key={p.what} className="problem">
                  <strong>{p.what}</strong>
                  <br />
                  Fix: {p.fix}
                </li>
              ))}
            </ul>
          )}
          <dl className="facts" data-testid="engine-status">
            <dt>Version</dt>
            <dd>{s.version}</dd>
            <dt>Mode</dt>
            <dd>{s.mode}</dd>
            <dt>Sandbox</dt>
            <dd>{s.sandbox}</dd>
            <dt>Docker</dt>
            <dd>{s.dockerAvailable ? `running${s.dockerVersion ? ` (${s.dockerVersion})` : ''}` : 'not available'}</dd>
            <dt>Sandbox image</dt>
            <dd>
              {s.sandboxImage}
              {s.sandboxImagePresent === false ? ' (not pulled yet)' : ''}
            </dd>
            <dt>Active sessions</dt>
            <dd>{s.activeSessions}</dd>
            <dt>Providers</dt>
            <dd>
              <ul>
                {s.providers.map((p) => (
                  <li key={p.name}>
                    {p.name}: {p.configured ? `configured (model ${p.model})` : p.problem}
                  </li>
                ))}
              </ul>
            </dd>
          </dl>
        </>
      )}
      {insideDesktopApp() && <DesktopSettings onChange={status.reload} />}
      <h2>Preferences (this browser)</h2>
      <div className="row-fields">
        <div className="field">
          <label htmlFor="pref-provider">Default provider</label>
          <select id="pref-provider" value={prefs.provider} onChange={(e) => setPrefs({ provider: e.target.value })}>
            <option value="">Engine default</option>
            {(s?.providers ?? []).map((p) => (
              <option key={p.name} value={p.name} disabled={!p.configured}>
                {p.name}
                {p.configured ? '' : ' (not configured)'}
              </option>
            ))}
          </select>
        </div>
        <div className="field">
          <label htmlFor="pref-model">Default model</label>
          <input id="pref-model" value={prefs.model} onChange={(e) => setPrefs({ model: e.target.value })} />
        </div>
        <div className="field">
          <label htmlFor="pref-theme">Theme</label>
          <select id="pref-theme" value={prefs.theme} onChange={(e) => setPrefs({ theme: e.target.value as Theme })}>
            <option value="system">System</option>
            <option value="light">Light</option>
            <option value="dark">Dark</option>
          </select>
        </div>
      </div>
    </section>
  );
}
