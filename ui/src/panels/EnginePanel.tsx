// A panel above every page while the sandbox cannot work: Docker not running or the
// sandbox image missing, with the engine's own fix, or the image's pull under way with its
// progress. The engine status is checked again every
// few seconds while the problem lasts (and now and then otherwise), so the panel goes away
// by itself once the user has fixed it. Works in the browser and in the desktop app alike.
import { useEffect, useState } from 'react';
import { useTransport } from '../app/context';
import type { EngineStatus } from '../transport/types';

/** How often the status is checked while there is a problem, and otherwise. */
export const RECHECK_WHILE_BROKEN_MS = 3000;
export const RECHECK_WHILE_FINE_MS = 30000;

export interface SandboxProblem {
  title: string;
  what: string;
  fix: string;
}

/** The sandbox problem in `s` the user has to fix, with the engine's words for it. */
export function sandboxProblem(s: EngineStatus): SandboxProblem | null {
  const reported = (about: string) => s.problems.find((p) => p.what.includes(about));
  if (s.sandbox === 'unavailable' || (s.sandbox === 'docker' && !s.dockerAvailable)) {
    const p = reported('Docker');
    return {
      title: 'Docker is not running',
      what: p?.what ?? 'Lucid cannot reach Docker, so no sandbox can start.',
      fix: p?.fix ?? 'Start Docker.',
    };
  }
  if (s.sandbox === 'docker' && s.imagePull) {
    return {
      title: 'Pulling the sandbox image',
      what: s.imagePull,
      fix: `Sessions start once ${s.sandboxImage} is pulled; this panel follows the pull.`,
    };
  }
  if (s.sandbox === 'docker' && s.sandboxImagePresent === false) {
    const p = reported(s.sandboxImage);
    return {
      title: 'The sandbox image is missing',
      what: p?.what ?? `The sandbox image ${s.sandboxImage} is not present.`,
      fix: p?.fix ?? `Pull ${s.sandboxImage}.`,
    };
  }
  return null;
}

export function EnginePanel() {
  const transport = useTransport();
  const [status, setStatus] = useState<EngineStatus | null>(null);
  const [checking, setChecking] = useState(false);
  const [round, setRound] = useState(0);

  useEffect(() => {
    let live = true;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const check = () => {
      setChecking(true);
      transport.status().then(
        (s) => {
          if (!live) return;
          setStatus(s);
          setChecking(false);
          timer = setTimeout(check, sandboxProblem(s) ? RECHECK_WHILE_BROKEN_MS : RECHECK_WHILE_FINE_MS);
        },
        () => {
          if (!live) return;
          setChecking(false);
          timer = setTimeout(check, RECHECK_WHILE_BROKEN_MS);
        },
      );
    };
    check();
    return () => {
      live = false;
      clearTimeout(timer);
    };
  }, [transport, round]);

  const problem = status ? sandboxProblem(status) : null;
  if (!problem) return null;
  return (
    <section className="engine-panel" role="alert" aria-labelledby="engine-panel-title" data-testid="engine-panel">
      <h2 id="engine-panel-title">{problem.title}</h2>
      <p>{problem.what}</p>
      <p>
        <strong>Fix:</strong> {problem.fix}
      </p>
      <p className="muted">
        Lucid checks again every few seconds{checking ? ' (checking…)' : ''}; sessions can start once this is fixed.
      </p>
      <button type="button" onClick={() => setRound((r) => r + 1)} disabled={checking}>
        Check now
      </button>
    </section>
  );
}
