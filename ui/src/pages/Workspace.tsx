import { useCallback, useEffect, useRef, useState, useSyncExternalStore, type KeyboardEvent } from 'react';
import { useTransport } from '../app/context';
import { sessionMeta, type SessionMeta } from '../app/prefs';
import { useAsync } from '../app/useAsync';
import { isBusy, TimelineModel, type Update } from '../timeline/model';
import { Timeline } from '../timeline/Timeline';
import type { ConnectionState, FileNode, Subscription } from '../transport/types';
import { Files } from './Files';
import { PullRequest } from './PullRequest';

function formatElapsed(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  const m = Math.floor(s / 60);
  const h = Math.floor(m / 60);
  const pad = (n: number) => String(n).padStart(2, '0');
  return h > 0 ? `${h}:${pad(m % 60)}:${pad(s % 60)}` : `${m}:${pad(s % 60)}`;
}

const CONNECTION_LABEL: Record<ConnectionState, string> = {
  connecting: 'Connecting…',
  live: 'Live',
  reconnecting: 'Reconnecting…',
  ended: 'Session ended',
  failed: 'Disconnected',
};

export function Workspace({ sessionId }: { sessionId: string }) {
  const transport = useTransport();
  const [model] = useState(() => new TimelineModel());
  useSyncExternalStore(model.subscribe, model.getVersion);
  const sub = useRef<Subscription | null>(null);
  const [connection, setConnection] = useState<ConnectionState>('connecting');
  const [connectionDetail, setConnectionDetail] = useState<string | undefined>();
  const [tree, setTree] = useState<FileNode[] | null>(null);
  const [treeVersion, setTreeVersion] = useState(0);
  const [notice, setNotice] = useState<string | null>(null);
  const [followUp, setFollowUp] = useState('');
  const [now, setNow] = useState(() => Date.now());
  const [showPr, setShowPr] = useState(false);
  const [sending, setSending] = useState(false);
  // Bumped to subscribe again (from the last seq) after an ended session was continued.
  const [attachment, setAttachment] = useState(0);
  const summaryInfo = useAsync(() => transport.getSession(sessionId), [transport, sessionId]);
  const meta = prMeta(sessionMeta(sessionId), summaryInfo.data?.repository, summaryInfo.data?.branch);

  useEffect(() => {
    let queue: Update[] = [];
    let timer: ReturnType<typeof setTimeout> | null = null;
    const flush = () => {
      timer = null;
      const batch = queue;
      queue = [];
      model.apply(batch);
    };
    const s = transport.subscribe(sessionId, model.summary.lastSeq, {
      onEvents(events) {
        queue.push(...events);
        timer ??= setTimeout(flush, 16);
      },
      onDelta(delta) {
        queue.push(delta);
        timer ??= setTimeout(flush, 16);
      },
      onNotice(n) {
        if (n.type === 'file_tree') {
          setTree(n.tree);
          setTreeVersion((v) => v + 1);
        } else if (n.type === 'error') setNotice(n.message);
        else if (n.type === 'status' && n.message) setNotice(n.message);
      },
      onConnection(state, detail) {
        setConnection(state);
        setConnectionDetail(detail);
      },
    });
    sub.current = s;
    transport.listFiles(sessionId).then(
      (t) => setTree((prev) => prev ?? t.tree),
      () => setTree((prev) => prev ?? []),
    );
    return () => {
      if (timer) clearTimeout(timer);
      s.close();
      sub.current = null;
    };
  }, [transport, sessionId, model, attachment]);

  const status = model.summary.status;
  const busy = isBusy(status) && connection !== 'ended';

  useEffect(() => {
    if (!busy) return;
    const t = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(t);
  }, [busy]);

  const stop = useCallback(() => {
    try {
      sub.current?.stop();
      setNotice('Stopping…');
    } catch (e) {
      setNotice(e instanceof Error ? e.message : String(e));
    }
  }, []);

  useEffect(() => {
    const onKey = (e: globalThis.KeyboardEvent) => {
      if (e.key === 'Escape' && busy && !showPr) stop();
    };
    window.addEventListener('keydown', onKey);
    return () => window.removeEventListener('keydown', onKey);
  }, [busy, stop, showPr]);

  const sendFollowUp = () => {
    const text = followUp.trim();
    if (!text || sending) return;
    if (connection === 'live' && sub.current) {
      try {
        sub.current.followUp(text);
        setFollowUp('');
        setNotice(null);
        return;
      } catch {
        // Not connected after all: continue the session over the API below.
      }
    }
    // The session has ended (or its stream is gone): continuing it starts a sandbox on its
    // workspace; the new turn's events continue the same log, so subscribe again.
    setSending(true);
    transport.sendMessage(sessionId, text).then(
      () => {
        setFollowUp('');
        setNotice(null);
        setSending(false);
        if (connection !== 'live') setAttachment((n) => n + 1);
      },
      (e: unknown) => {
        setSending(false);
        setNotice(e instanceof Error ? e.message : String(e));
      },
    );
  };
  const onFollowUpKey = (e: KeyboardEvent<HTMLTextAreaElement>) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.nativeEvent.isComposing) {
      e.preventDefault();
      sendFollowUp();
    }
  };

  const s = model.summary;
  const elapsed = s.startedAt === null ? 0 : (busy ? Math.max(now, s.lastAt ?? 0) : (s.lastAt ?? s.startedAt)) - s.startedAt;
  const usage = s.usage;
  const ended = connection === 'ended' || connection === 'failed';

  return (
    <section className="page workspace" aria-labelledby="ws-title">
      <header className="ws-head">
        <h1 id="ws-title" className="ws-title">
          {summaryInfo.data?.task || 'Session'}
        </h1>
        <div className="ws-stats" aria-label="Session status">
          <span className={`badge st-${status ?? 'none'}`} data-testid="session-status">
            {status ?? '…'}
          </span>
          <span title="Elapsed time" data-testid="elapsed">
            <span className="muted">elapsed</span> {formatElapsed(elapsed)}
          </span>
          <span title="Tokens in / out" data-testid="tokens">
            {usage ? `${usage.totalInputTokens.toLocaleString()} in / ${usage.totalOutputTokens.toLocaleString()} out` : '0 tokens'}
          </span>
          <span title="Estimated cost" data-testid="cost">
            {usage?.totalCostUsd != null ? `$${usage.totalCostUsd.toFixed(4)}` : '$—'}
          </span>
          <span
            className={`conn conn-${connection}`}
            data-testid="connection"
            title={connectionDetail}
            role="status"
          >
            <span className="dot" aria-hidden="true" /> {CONNECTION_LABEL[connection]}
          </span>
          {busy && (
            <button type="button" className="danger" onClick={stop} aria-keyshortcuts="Escape">
              Stop (Esc)
            </button>
          )}
          {meta?.repoUrl && (
            <button type="button" onClick={() => setShowPr(true)}>
              Create pull request
            </button>
          )}
        </div>
      </header>
      {connection === 'failed' && connectionDetail && (
        <p className="error-text" role="alert">
          {connectionDetail}
        </p>
      )}
      {showPr && meta?.repoUrl && (
        <PullRequest sessionId={sessionId} meta={meta} onClose={() => setShowPr(false)} />
      )}
      <div className="ws-body">
        <div className="ws-main">
          <Timeline model={model} />
          {notice && (
            <p className="notice" role="status">
              {notice}
            </p>
          )}
          <div className="follow-up">
            <label htmlFor="follow-up" className="visually-hidden">
              Follow-up message
            </label>
            <textarea
              id="follow-up"
              rows={2}
              value={followUp}
              onChange={(e) => setFollowUp(e.target.value)}
              onKeyDown={onFollowUpKey}
              disabled={sending}
              placeholder={
                ended || !busy
                  ? 'Continue this session: say what to do next (Enter sends, Shift+Enter for a new line)'
                  : 'Send a follow-up (Enter sends, Shift+Enter for a new line)'
              }
            />
            <button type="button" onClick={sendFollowUp} disabled={sending || !followUp.trim()}>
              {sending ? 'Sending…' : ended ? 'Continue' : 'Send'}
            </button>
          </div>
        </div>
        <aside className="ws-side">
          <Files sessionId={sessionId} tree={tree} version={treeVersion} />
        </aside>
      </div>
    </section>
  );
}

/** What the pull-request dialog needs: what this browser recorded when it started the session,
 * else the repository and branch the engine reports for it (any session from History). */
export function prMeta(saved: SessionMeta | null, repository?: string | null, branch?: string | null): SessionMeta | null {
  const repoUrl = saved?.repoUrl ?? repository ?? undefined;
  if (!repoUrl) return null;
  return {
    repoUrl,
    branch: saved?.branch ?? branch ?? undefined,
    provider: saved?.provider ?? guessProvider(repoUrl),
    fullName: saved?.fullName ?? repoFullName(repoUrl),
  };
}

function guessProvider(repoUrl: string): string {
  return /(^|[/.@])gitlab[.-]/i.test(repoUrl) ? 'gitlab' : 'github';
}

function repoFullName(repoUrl: string): string | undefined {
  const m = /^(?:[a-z+]+:\/\/[^/]+\/|[^@]+@[^:]+:)(.+?)(?:\.git)?\/?$/i.exec(repoUrl);
  return m?.[1];
}
