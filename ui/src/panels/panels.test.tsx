import { act, fireEvent, render, screen } from '@testing-library/react';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { TransportContext } from '../app/context';
import type { DesktopLifecycle, QuitRequest } from '../transport/tauri';
import type { EngineStatus, Transport } from '../transport/types';
import { EnginePanel, RECHECK_WHILE_BROKEN_MS, RECHECK_WHILE_FINE_MS, sandboxProblem } from './EnginePanel';
import { QuitDialog } from './QuitDialog';

const healthy: EngineStatus = {
  version: '0.1.0',
  mode: 'local',
  sandbox: 'docker',
  dockerAvailable: true,
  sandboxImage: 'lucid-sandbox:1',
  sandboxImagePresent: true,
  defaultProvider: 'anthropic',
  integrationsEnabled: true,
  activeSessions: 0,
  problems: [],
  providers: [{ name: 'anthropic', configured: true, model: 'claude-x' }],
};
const dockerDown: EngineStatus = {
  ...healthy,
  dockerAvailable: false,
  sandboxImagePresent: null,
  problems: [{ what: 'Docker stopped answering.', fix: 'Start Docker (e.g. `sudo systemctl start docker`).' }],
};
const imageMissing: EngineStatus = {
  ...healthy,
  sandboxImagePresent: false,
  problems: [
    { what: 'The sandbox image lucid-sandbox:1 is not present yet.', fix: 'It is pulled when the first session starts.' },
  ],
};

/** A transport whose status answers come from `answers` in turn (the last one repeats). */
function statusTransport(answers: EngineStatus[]) {
  const status = vi.fn(() => {
    const answer = answers[Math.min(status.mock.calls.length - 1, answers.length - 1)];
    return answer ? Promise.resolve(answer) : Promise.reject(new Error('no answer'));
  });
  return { status, transport: { status } as unknown as Transport };
}

const flush = () => act(async () => {});

describe('the engine panel', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('shows Docker being down with the engine\'s fix, re-checks every few seconds, and goes away once fixed', async () => {
    const { status, transport } = statusTransport([dockerDown, dockerDown, healthy]);
    render(
      <TransportContext.Provider value={transport}>
        <EnginePanel />
      </TransportContext.Provider>,
    );
    await flush();
    const panel = screen.getByRole('alert');
    expect(panel.textContent).toContain('Docker is not running');
    expect(panel.textContent).toContain('Docker stopped answering.');
    expect(panel.textContent).toContain('sudo systemctl start docker');
    expect(status).toHaveBeenCalledTimes(1);
    await act(async () => vi.advanceTimersByTime(RECHECK_WHILE_BROKEN_MS));
    expect(status).toHaveBeenCalledTimes(2);
    expect(screen.getByRole('alert')).toBeTruthy();
    await act(async () => vi.advanceTimersByTime(RECHECK_WHILE_BROKEN_MS));
    expect(status).toHaveBeenCalledTimes(3);
    expect(screen.queryByRole('alert')).toBeNull();
    // Healthy: checked only now and then.
    await act(async () => vi.advanceTimersByTime(RECHECK_WHILE_BROKEN_MS * 3));
    expect(status).toHaveBeenCalledTimes(3);
    await act(async () => vi.advanceTimersByTime(RECHECK_WHILE_FINE_MS));
    expect(status).toHaveBeenCalledTimes(4);
  });

  it('shows a missing sandbox image and checks again on demand', async () => {
    const { status, transport } = statusTransport([imageMissing]);
    render(
      <TransportContext.Provider value={transport}>
        <EnginePanel />
      </TransportContext.Provider>,
    );
    await flush();
    expect(screen.getByRole('alert').textContent).toContain('The sandbox image is missing');
    expect(screen.getByRole('alert').textContent).toContain('It is pulled when the first session starts.');
    fireEvent.click(screen.getByRole('button', { name: 'Check now' }));
    await flush();
    expect(status).toHaveBeenCalledTimes(2);
  });

  it('follows an image pull while it lasts', async () => {
    const pulling = (line: string): EngineStatus => ({ ...imageMissing, imagePull: line });
    const { status, transport } = statusTransport([
      pulling('Pulling sandbox image lucid-sandbox:1'),
      pulling('a1b2: Downloading 5242880/10485760 bytes'),
      healthy,
    ]);
    render(
      <TransportContext.Provider value={transport}>
        <EnginePanel />
      </TransportContext.Provider>,
    );
    await flush();
    expect(screen.getByRole('alert').textContent).toContain('Pulling the sandbox image');
    expect(screen.getByRole('alert').textContent).toContain('Pulling sandbox image lucid-sandbox:1');
    await act(async () => vi.advanceTimersByTime(RECHECK_WHILE_BROKEN_MS));
    expect(screen.getByRole('alert').textContent).toContain('5242880/10485760 bytes');
    await act(async () => vi.advanceTimersByTime(RECHECK_WHILE_BROKEN_MS));
    expect(status).toHaveBeenCalledTimes(3);
    expect(screen.queryByRole('alert')).toBeNull();
  });

  it('says nothing when the sandbox can work, or runs locally without Docker', () => {
    expect(sandboxProblem(healthy)).toBeNull();
    expect(sandboxProblem({ ...dockerDown, sandbox: 'local' })).toBeNull();
    expect(sandboxProblem({ ...healthy, sandbox: 'unavailable', dockerAvailable: false })?.title).toBe(
      'Docker is not running',
    );
  });
});

function fakeLifecycle(quit: () => Promise<void> = () => Promise.resolve()) {
  let ask: ((r: QuitRequest) => void) | null = null;
  const lifecycle: DesktopLifecycle & { quit: ReturnType<typeof vi.fn> } = {
    onQuitRequested: (a) => {
      ask = a;
      return () => {
        ask = null;
      };
    },
    quit: vi.fn(quit),
  };
  return { lifecycle, ask: (r: QuitRequest) => act(() => ask?.(r)) };
}

const twoWorking: QuitRequest = {
  sessions: [
    { sessionId: 's1', task: 'fix the tests' },
    { sessionId: 's2', task: 'write the docs' },
  ],
};

describe('the quit dialog', () => {
  it('appears only when the app asks, names the working sessions, and keeps working on request', async () => {
    const { lifecycle, ask } = fakeLifecycle();
    render(<QuitDialog lifecycle={lifecycle} />);
    expect(screen.queryByRole('alertdialog')).toBeNull();
    await ask(twoWorking);
    const dialog = screen.getByRole('alertdialog', { name: 'Quit Lucid?' });
    expect(dialog.textContent).toContain('2 sessions are still working');
    expect(dialog.textContent).toContain('fix the tests');
    expect(dialog.textContent).toContain('write the docs');
    const keep = screen.getByRole('button', { name: 'Keep working' });
    expect(document.activeElement).toBe(keep);
    fireEvent.click(keep);
    expect(screen.queryByRole('alertdialog')).toBeNull();
    expect(lifecycle.quit).not.toHaveBeenCalled();
    await ask(twoWorking);
    fireEvent.keyDown(screen.getByRole('alertdialog'), { key: 'Escape' });
    expect(screen.queryByRole('alertdialog')).toBeNull();
  });

  it('quits through the shell when the user agrees, and says so if that fails', async () => {
    const { lifecycle, ask } = fakeLifecycle(() => Promise.reject(new Error('the engine did not answer')));
    render(<QuitDialog lifecycle={lifecycle} />);
    await ask({ sessions: [{ sessionId: 's1', task: 'fix the tests' }] });
    expect(screen.getByRole('alertdialog').textContent).toContain('A session is still working');
    fireEvent.click(screen.getByRole('button', { name: 'Stop and quit' }));
    expect(lifecycle.quit).toHaveBeenCalledTimes(1);
    expect(screen.getByRole('button', { name: 'Stopping sessions…' })).toBeTruthy();
    await act(async () => {});
    expect(screen.getByRole('alertdialog').textContent).toContain('Could not quit: the engine did not answer');
    expect((screen.getByRole('button', { name: 'Stop and quit' }) as HTMLButtonElement).disabled).toBe(false);
  });
});
