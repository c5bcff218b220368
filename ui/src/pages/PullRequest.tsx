import { useState } from 'react';
import { useTransport } from '../app/context';
import type { SessionMeta } from '../app/prefs';

/** Commits the session's changes, pushes them and opens a PR/MR. */
export function PullRequest({ sessionId, meta, onClose }: { sessionId: string; meta: SessionMeta; onClose: () => void }) {
  const transport = useTransport();
  const [title, setTitle] = useState('Changes by Lucid');
  const [body, setBody] = useState('');
  const [base, setBase] = useState(meta.branch ?? 'main');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [url, setUrl] = useState<string | null>(null);

  const submit = async () => {
    setBusy(true);
    setError(null);
    try {
      const pr = await transport.createPr(meta.provider ?? 'github', {
        repoUrl: meta.repoUrl ?? '',
        branch: '',
        baseBranch: base,
        title,
        body,
        sessionId,
      });
      setUrl(pr.prUrl);
    } catch (e) {
      setError(e instanceof Error ? e.message : String(e));
    } finally {
      setBusy(false);
    }
  };

  return (
    <div className="panel pr" role="dialog" aria-labelledby="pr-title">
      <h2 id="pr-title">Create pull request{meta.fullName ? ` on ${meta.fullName}` : ''}</h2>
      {url ? (
        <p>
          Opened: <a href={url} target="_blank" rel="noreferrer">{url}</a>
        </p>
      ) : (
        <>
          <div className="field">
            <label htmlFor="pr-title-input">Title</label>
            <input id="pr-title-input" value={title} onChange={(e) => setTitle(e.target.value)} />
          </div>
          <div className="field">
            <label htmlFor="pr-body">Description</label>
            <textarea id="pr-body" rows={4} value={body} onChange={(e) => setBody(e.target.value)} />
          </div>
          <div className="field">
            <label htmlFor="pr-base">Target branch</label>
            <input id="pr-base" value={base} onChange={(e) => setBase(e.target.value)} />
          </div>
          {error && <p className="error-text" role="alert">{error}</p>}
          <button type="button" className="primary" disabled={busy || !title.trim()} onClick={() => void submit()}>
            {busy ? 'Creating…' : 'Create pull request'}
          </button>{' '}
        </>
      )}
      <button type="button" onClick={onClose}>
        Close
      </button>
    </div>
  );
}
