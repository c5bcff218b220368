import { useEffect, useMemo, useState } from 'react';
import { useTransport } from '../app/context';
import { navigate } from '../app/router';
import { useAsync } from '../app/useAsync';
import type { ChatSession, SessionSummary } from '../transport/types';

type Filter = 'all' | 'running' | 'finished';

/** How often the list refreshes while the page is visible (titles written by the model and
 * session states change without the user doing anything). */
export const HISTORY_REFRESH_MS = 4000;

function Row({ chat, live, onChanged }: { chat: ChatSession; live: SessionSummary | undefined; onChanged: () => void }) {
  const transport = useTransport();
  const [editing, setEditing] = useState(false);
  const [title, setTitle] = useState(chat.title ?? '');
  const [confirming, setConfirming] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const running = Boolean(live?.isAlive);

  const save = async () => {
    try {
      await transport.renameChat(chat.id, title.trim());
      setEditing(false);
      onChanged();
    } catch (e) {
      setError(e instanceof Error ? e.message : String(e));
    }
  };
  const remove = async () => {
    try {
      await transport.deleteChat(chat.id);
      onChanged();
    } catch (e) {
      setError(e instanceof Error ? e.message : String(e));
    }
  };
  const label = chat.title || 'Untitled';
  return (
    <li className="history-row" data-testid="history-row">
      {editing ? (
        <input
          aria-label="New title"
          value={title}
          autoFocus
          onChange={(e) => setTitle(e.target.value)}
          onKeyDown={(e) => {
            if (e.key === 'Enter') void save();
            if (e.key === 'Escape') setEditing(false);
          }}
        />
      ) : chat.agentSessionId ? (
        <a
          href={`/ui/s/${chat.agentSessionId}`}
          onClick={(e) => {
            e.preventDefault();
            navigate({ page: 'session', sessionId: chat.agentSessionId ?? '' });
          }}
        >
          {label}
        </a>
      ) : (
        <span>{label}</span>
      )}
      <span className={`badge ${running ? 'st-running' : ''}`}>{running ? live?.status : 'finished'}</span>
      <span className="muted small">{new Date(chat.updatedAt).toLocaleString()}</span>
      <span className="actions">
        {editing ? (
          <>
            <button type="button" onClick={() => void save()}>Save</button>
            <button type="button" onClick={() => setEditing(false)}>Cancel</button>
          </>
        ) : (
          <button
            type="button"
            onClick={() => {
              setTitle(chat.title ?? '');
              setEditing(true);
            }}
            aria-label={`Rename ${label}`}
          >
            Rename
          </button>
        )}
        {confirming ? (
          <span role="group" aria-label="Confirm delete">
            Delete this session and its workspace?{' '}
            <button type="button" className="danger" onClick={() => void remove()}>Delete</button>
            <button type="button" onClick={() => setConfirming(false)}>Keep</button>
          </span>
        ) : (
          <button type="button" onClick={() => setConfirming(true)} aria-label={`Delete ${label}`}>Delete</button>
        )}
      </span>
      {error && <p className="error-text" role="alert">{error}</p>}
    </li>
  );
}

export function History() {
  const transport = useTransport();
  const data = useAsync(async () => {
    const [chats, sessions] = await Promise.all([transport.listChats(100, 0), transport.listSessions()]);
    return { chats, sessions };
  }, [transport]);
  const [query, setQuery] = useState('');
  const [filter, setFilter] = useState<Filter>('all');
  const { reload } = data;

  // Refresh while visible, and at once when the page becomes visible again.
  useEffect(() => {
    const refresh = () => {
      if (document.visibilityState === 'visible') reload();
    };
    const timer = setInterval(refresh, HISTORY_REFRESH_MS);
    document.addEventListener('visibilitychange', refresh);
    return () => {
      clearInterval(timer);
      document.removeEventListener('visibilitychange', refresh);
    };
  }, [reload]);

  const rows = useMemo(() => {
    const live = new Map((data.data?.sessions ?? []).map((s) => [s.sessionId, s]));
    const q = query.trim().toLowerCase();
    return (data.data?.chats ?? [])
      .map((chat) => ({ chat, live: chat.agentSessionId ? live.get(chat.agentSessionId) : undefined }))
      .filter(({ chat }) => !q || (chat.title ?? '').toLowerCase().includes(q))
      .filter(({ live: l }) => filter === 'all' || (filter === 'running') === Boolean(l?.isAlive));
  }, [data.data, query, filter]);

  return (
    <section className="page" aria-labelledby="history-title">
      <h1 id="history-title">History</h1>
      <div className="row-fields">
        <div className="field">
          <label htmlFor="history-search">Search</label>
          <input id="history-search" type="search" value={query} onChange={(e) => setQuery(e.target.value)} />
        </div>
        <div className="field">
          <label htmlFor="history-filter">Status</label>
          <select id="history-filter" value={filter} onChange={(e) => setFilter(e.target.value as Filter)}>
            <option value="all">All</option>
            <option value="running">Running</option>
            <option value="finished">Finished</option>
          </select>
        </div>
      </div>
      {data.error && <p className="error-text">{data.error}</p>}
      {data.loading && !data.data && <p className="muted">Loading…</p>}
      <ul className="history" aria-label="Sessions">
        {rows.map(({ chat, live }) => (
          <Row key={chat.id} chat={chat} live={live} onChanged={data.reload} />
        ))}
      </ul>
      {data.data && rows.length === 0 && <p className="muted">No sessions{query || filter !== 'all' ? ' match' : ' yet'}.</p>}
    </section>
  );
}
