import { useState } from 'react';
import { useTransport } from '../app/context';
import { useAsync } from '../app/useAsync';
import type { IntegrationInfo } from '../transport/types';

function Connected({ info, onChanged }: { info: IntegrationInfo; onChanged: () => void }) {
  const transport = useTransport();
  const repos = useAsync(() => transport.listRepos(info.provider), [transport, info.provider]);
  const [error, setError] = useState<string | null>(null);
  return (
    <li className="integration" data-testid={`integration-${info.provider}`}>
      <strong>{info.provider === 'github' ? 'GitHub' : 'GitLab'}</strong>{' '}
      {info.gitlabUrl && <span className="muted">({info.gitlabUrl}) </span>}
      as <code>{info.externalUsername ?? 'unknown'}</code> ·{' '}
      {repos.loading ? 'counting repositories…' : repos.error ? `repositories unavailable: ${repos.error}` : `${repos.data?.length ?? 0} repositories`}{' '}
      <button
        type="button"
        onClick={() =>
          transport.deleteIntegration(info.provider).then(onChanged, (e: unknown) =>
            setError(e instanceof Error ? e.message : String(e)),
          )
        }
      >
        Disconnect
      </button>
      {error && <p className="error-text">{error}</p>}
    </li>
  );
}

export function Integrations() {
  const transport = useTransport();
  const list = useAsync(() => transport.listIntegrations(), [transport]);
  const [provider, setProvider] = useState<'github' | 'gitlab'>('github');
  const [token, setToken] = useState('');
  const [gitlabUrl, setGitlabUrl] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [message, setMessage] = useState<string | null>(null);

  const connect = async () => {
    setBusy(true);
    setError(null);
    setMessage(null);
    try {
      const r = await transport.saveIntegration({
        provider,
        token,
        gitlabUrl: provider === 'gitlab' && gitlabUrl.trim() ? gitlabUrl.trim() : null,
      });
      setMessage(r.message);
      setToken('');
      list.reload();
    } catch (e) {
      setError(e instanceof Error ? e.message : String(e));
    } finally {
      setBusy(false);
    }
  };

  return (
    <section className="page" aria-labelledby="int-title">
      <h1 id="int-title">Integrations</h1>
      <ul className="integrations" aria-label="Connected accounts">
        {(list.data ?? []).map((i) => (
          <Connected key={i.id} info={i} onChanged={list.reload} />
        ))}
        {list.data && list.data.length === 0 && <li className="muted">Nothing connected yet.</li>}
      </ul>
      {list.error && <p className="error-text">{list.error}</p>}
      <form
        className="panel"
        onSubmit={(e) => {
          e.preventDefault();
          void connect();
        }}
      >
        <h2>Connect an account</h2>
        <div className="field">
          <label htmlFor="int-provider">Service</label>
          <select id="int-provider" value={provider} onChange={(e) => setProvider(e.target.value as 'github' | 'gitlab')}>
            <option value="github">GitHub</option>
            <option value="gitlab">GitLab</option>
          </select>
        </div>
        {provider === 'gitlab' && (
          <div className="field">
            <label htmlFor="int-url">GitLab URL (self-hosted; empty for gitlab.com)</label>
            <input id="int-url" type="url" value={gitlabUrl} onChange={(e) => setGitlabUrl(e.target.value)} placeholder="https://gitlab.example.com" />
          </div>
        )}
        <div className="field">
          <label htmlFor="int-token">Personal access token</label>
          <input id="int-token" type="password" autoComplete="off" value={token} onChange={(e) => setToken(e.target.value)} />
        </div>
        {error && (
          <p className="error-text" role="alert" data-testid="integration-error">
            Could not connect: {error}
          </p>
        )}
        {message && <p role="status">{message}</p>}
        <button type="submit" className="primary" disabled={busy || !token.trim()}>
          {busy ? 'Checking…' : 'Connect'}
        </button>
      </form>
    </section>
  );
}
