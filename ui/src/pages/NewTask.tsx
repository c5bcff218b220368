import { useMemo, useState, type KeyboardEvent } from 'react';
import { useDraft, writeDraft } from '../account/draft';
import { useTransport } from '../app/context';
import { usePrefs, saveSessionMeta } from '../app/prefs';
import { navigate } from '../app/router';
import { useAsync } from '../app/useAsync';
import type { BranchInfo, RepoInfo } from '../transport/types';

interface RepoChoice {
  provider: string;
  repo: RepoInfo;
}

export function NewTask() {
  const transport = useTransport();
  const [prefs] = usePrefs();
  const status = useAsync(() => transport.status(), [transport]);
  const repos = useAsync(async () => {
    const integrations = await transport.listIntegrations();
    const lists = await Promise.all(
      integrations.map(async (i) => {
        try {
          return (await transport.listRepos(i.provider)).map((repo) => ({ provider: i.provider, repo }));
        } catch {
          return [];
        }
      }),
    );
    return { connected: integrations.length, repos: lists.flat() };
  }, [transport]);

  const [task, setTask] = useDraft('new-task');
  const [query, setQuery] = useState('');
  const [repo, setRepo] = useState<RepoChoice | null>(null);
  const [branch, setBranch] = useState('');
  const [providerChoice, setProvider] = useState<string | null>(null);
  const [model, setModel] = useState<string | null>(null);
  const [sending, setSending] = useState(false);
  const [error, setError] = useState<string | null>(null);

  const providers = status.data?.providers ?? [];
  const configured = providers.filter((p) => p.configured);
  const provider =
    providerChoice ??
    (configured.find((p) => p.name === prefs.provider)?.name ||
      configured.find((p) => p.name === status.data?.defaultProvider)?.name ||
      configured[0]?.name ||
      '');
  const providerInfo = providers.find((p) => p.name === provider);
  const modelValue = model ?? (prefs.provider === provider ? prefs.model : '');

  const branches = useAsync<BranchInfo[]>(
    () => (repo ? transport.listBranches(repo.provider, repo.repo.fullName) : Promise.resolve([])),
    [transport, repo?.provider, repo?.repo.fullName],
  );

  const matches = useMemo(() => {
    const q = query.trim().toLowerCase();
    const all = repos.data?.repos ?? [];
    return (q ? all.filter((r) => r.repo.fullName.toLowerCase().includes(q)) : all).slice(0, 50);
  }, [query, repos.data]);

  const send = async () => {
    const text = task.trim();
    if (!text || sending) return;
    if (!provider) {
      setError('No model provider is configured: see Settings for what to set.');
      return;
    }
    setSending(true);
    setError(null);
    try {
      const started = await transport.startSession({
        task: text,
        modelProvider: provider,
        model: modelValue.trim() || null,
        repoUrl: repo ? repo.repo.cloneUrl : null,
        branch: repo ? branch || repo.repo.defaultBranch : null,
      });
      if (repo) {
        saveSessionMeta(started.sessionId, {
          repoUrl: repo.repo.cloneUrl,
          provider: repo.provider,
          branch: branch || repo.repo.defaultBranch,
          fullName: repo.repo.fullName,
        });
      }
      writeDraft('new-task', '');
      navigate({ page: 'session', sessionId: started.sessionId });
    } catch (e) {
      setError(e instanceof Error ? e.message : String(e));
      setSending(false);
    }
  };

  const onKeyDown = (e: KeyboardEvent<HTMLTextAreaElement>) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.nativeEvent.isComposing) {
      e.preventDefault();
      void send();
    }
  };

  return (
    <section className="page new-task" aria-labelledby="new-task-title">
      <h1 id="new-task-title">New task</h1>
      <div className="field">
        <label htmlFor="task">What should Lucid do?</label>
        <textarea
          id="task"
          value={task}
          onChange={(e) => setTask(e.target.value)}
          onKeyDown={onKeyDown}
          rows={5}
          placeholder="e.g. write a script that prints the first 10 primes and run it"
          aria-describedby="task-help"
        />
        <p id="task-help" className="muted small">Enter sends; Shift+Enter starts a new line.</p>
      </div>

      <fieldset className="field">
        <legend>Repository</legend>
        <label className="radio">
          <input type="radio" name="repo" checked={repo === null} onChange={() => setRepo(null)} /> No repository
          (an empty workspace)
        </label>
        {repos.data && repos.data.connected === 0 && (
          <p className="muted small">Connect GitHub or GitLab on the Integrations page to work on a repository.</p>
        )}
        {repos.data && repos.data.connected > 0 && (
          <>
            <label htmlFor="repo-search">Search repositories</label>
            <input
              id="repo-search"
              type="search"
              value={query}
              onChange={(e) => setQuery(e.target.value)}
              placeholder="owner/name"
            />
            <ul className="repo-list" aria-label="Repositories">
              {matches.map((r) => {
                const selected = repo?.repo.fullName === r.repo.fullName && repo.provider === r.provider;
                return (
                  <li key={`${r.provider}:${r.repo.fullName}`}>
                    <label className="radio">
                      <input
                        type="radio"
                        name="repo"
                        checked={selected}
                        onChange={() => {
                          setRepo(r);
                          setBranch(r.repo.defaultBranch);
                        }}
                      />{' '}
                      {r.repo.fullName} <span className="muted small">({r.provider}{r.repo.private ? ', private' : ''})</span>
                    </label>
                  </li>
                );
              })}
              {matches.length === 0 && <li className="muted">No repository matches.</li>}
            </ul>
          </>
        )}
        {repos.loading && <p className="muted small">Loading repositories…</p>}
        {repo && (
          <div className="field">
            <label htmlFor="branch">Branch of {repo.repo.fullName}</label>
            <select id="branch" value={branch} onChange={(e) => setBranch(e.target.value)}>
              {(branches.data ?? [{ name: repo.repo.defaultBranch, protected: false }]).map((b) => (
                <option key={b.name} value={b.name}>
                  {b.name}
                </option>
              ))}
            </select>
            {branches.error && <p className="error-text">Branches could not be loaded: {branches.error}</p>}
          </div>
        )}
      </fieldset>

      <div className="row-fields">
        <div className="field">
          <label htmlFor="provider">Model provider</label>
          <select id="provider" value={provider} onChange={(e) => setProvider(e.target.value)}>
            {providers.map((p) => (
              <option key={p.name} value={p.name} disabled={!p.configured}>
                {p.name}
                {p.configured ? '' : ' (not configured)'}
              </option>
            ))}
          </select>
        </div>
        <div className="field">
          <label htmlFor="model">Model (optional)</label>
          <input
            id="model"
            value={modelValue}
            onChange={(e) => setModel(e.target.value)}
            placeholder={providerInfo?.model ?? ''}
          />
        </div>
      </div>
      {providers
        .filter((p) => !p.configured)
        .map((p) => (
          <p key={p.name} className="muted small">
            {p.name}: {p.problem}
          </p>
        ))}
      {status.error && <p className="error-text">Engine status unavailable: {status.error}</p>}
      {error && (
        <p className="error-text" role="alert">
          {error}
        </p>
      )}
      <button type="button" className="primary" onClick={() => void send()} disabled={!task.trim() || sending}>
        {sending ? 'Starting…' : 'Start task'}
      </button>
    </section>
  );
}
