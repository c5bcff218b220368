// Inside the desktop app: quitting while sessions are working asks first. The shell sends
// `lucid://quit-requested` with the sessions; "Stop and quit" answers with `quit_app` (the
// shell then stops them and removes their containers), "Keep working" keeps the app open.
import { useEffect, useRef, useState } from 'react';
import type { DesktopLifecycle, QuitRequest } from '../transport/tauri';

export function QuitDialog({ lifecycle }: { lifecycle: DesktopLifecycle }) {
  const [request, setRequest] = useState<QuitRequest | null>(null);
  const [quitting, setQuitting] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const keep = useRef<HTMLButtonElement>(null);

  useEffect(() => lifecycle.onQuitRequested((r) => setRequest(r)), [lifecycle]);
  useEffect(() => {
    if (request) keep.current?.focus();
  }, [request]);

  if (!request) return null;
  const n = request.sessions.length;
  const cancel = () => {
    setRequest(null);
    setError(null);
  };
  const quit = () => {
    setQuitting(true);
    setError(null);
    lifecycle.quit().catch((e: unknown) => {
      setQuitting(false);
      setError(e instanceof Error ? e.message : String(e));
    });
  };
  return (
    <div className="modal-backdrop">
      <div
        className="modal"
        role="alertdialog"
        aria-modal="true"
        aria-labelledby="quit-title"
        aria-describedby="quit-what"
        onKeyDown={(e) => {
          if (e.key === 'Escape' && !quitting) cancel();
        }}
      >
        <h2 id="quit-title">Quit Lucid?</h2>
        <p id="quit-what">
          {n === 1 ? 'A session is still working' : `${n} sessions are still working`}. Quitting stops{' '}
          {n === 1 ? 'it and removes its sandbox' : 'them and removes their sandboxes'}; the history is kept.
        </p>
        <ul>
          {request.sessions.map((s) => (
            <li key={s.sessionId}>{s.task || s.sessionId}</li>
          ))}
        </ul>
        {error && <p className="error-text">Could not quit: {error}</p>}
        <div className="actions">
          <button type="button" ref={keep} onClick={cancel} disabled={quitting}>
            Keep working
          </button>
          <button type="button" className="danger" onClick={quit} disabled={quitting}>
            {quitting ? 'Stopping sessions…' : 'Stop and quit'}
          </button>
        </div>
      </div>
    </div>
  );
}
