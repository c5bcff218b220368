import { act, fireEvent, render, screen, waitFor } from '@testing-library/react';
import { describe, expect, it, vi } from 'vitest';
import { TransportContext } from '../app/context';
import type { EngineStatus, Transport } from '../transport/types';
import { History, HISTORY_REFRESH_MS } from './History';
import { NewTask } from './NewTask';

const status: EngineStatus = {
  version: '0.1.0',
  mode: 'local',
  sandbox: 'docker',
  dockerAvailable: true,
  sandboxImage: 'img',
  defaultProvider: 'anthropic',
  integrationsEnabled: true,
  activeSessions: 0,
  problems: [],
  providers: [
    { name: 'anthropic', configured: true, model: 'claude-x' },
    { name: 'google', configured: false, problem: 'set GOOGLE_API_KEY' },
  ],
};

function fakeTransport(over: Partial<Transport> = {}): Transport {
  const notUsed = () => Promise.reject(new Error('not used'));
  return {
    status: () => Promise.resolve(status),
    startSession: vi.fn(() => Promise.resolve({ sessionId: 's1', chatId: 'c1' })),
    getSession: notUsed,
    listSessions: () => Promise.resolve([]),
    sendMessage: notUsed,
    subscribe: () => {
      throw new Error('not used');
    },
    listChats: () => Promise.resolve([]),
    getChat: notUsed,
    renameChat: vi.fn(() => Promise.resolve()),
    deleteChat: vi.fn(() => Promise.resolve()),
    listFiles: notUsed,
    readFile: notUsed,
    listIntegrations: () => Promise.resolve([]),
    saveIntegration: notUsed,
    deleteIntegration: notUsed,
    listRepos: () => Promise.resolve([]),
    listBranches: () => Promise.resolve([]),
    createPr: notUsed,
    ...over,
  };
}

function renderWith(t: Transport, ui: React.ReactNode) {
  return render(<TransportContext.Provider value={t}>{ui}</TransportContext.Provider>);
}

describe('new task', () => {
  it('only configured providers are selectable; the others say what to set', async () => {
    renderWith(fakeTransport(), <NewTask />);
    const google = (await screen.findByRole('option', { name: 'google (not configured)' })) as HTMLOptionElement;
    expect(google.disabled).toBe(true);
    expect(screen.getByText('google: set GOOGLE_API_KEY')).toBeTruthy();
    expect((screen.getByLabelText('Model provider') as HTMLSelectElement).value).toBe('anthropic');
  });

  it('Enter sends the task, Shift+Enter does not', async () => {
    const t = fakeTransport();
    renderWith(t, <NewTask />);
    await screen.findByRole('option', { name: 'anthropic' });
    const box = screen.getByLabelText('What should Lucid do?');
    fireEvent.change(box, { target: { value: 'do it' } });
    fireEvent.keyDown(box, { key: 'Enter', shiftKey: true });
    expect(t.startSession).not.toHaveBeenCalled();
    await act(async () => {
      fireEvent.keyDown(box, { key: 'Enter' });
    });
    expect(t.startSession).toHaveBeenCalledWith(
      expect.objectContaining({ task: 'do it', modelProvider: 'anthropic', repoUrl: null, branch: null }),
    );
    expect(window.location.pathname).toBe('/ui/s/s1');
  });
});

describe('history', () => {
  const chat = (id: string, title: string) => ({
    id,
    title,
    agentSessionId: `sess-${id}`,
    isActive: false,
    createdAt: '2026-01-01T00:00:00Z',
    updatedAt: '2026-01-01T00:00:00Z',
  });

  it('searches, renames inline and deletes after confirmation', async () => {
    const t = fakeTransport({ listChats: () => Promise.resolve([chat('a', 'Fix the parser'), chat('b', 'Write docs')]) });
    renderWith(t, <History />);
    await screen.findByText('Fix the parser');
    fireEvent.change(screen.getByLabelText('Search'), { target: { value: 'docs' } });
    expect(screen.queryByText('Fix the parser')).toBeNull();
    fireEvent.click(screen.getByRole('button', { name: 'Rename Write docs' }));
    const input = screen.getByLabelText('New title');
    fireEvent.change(input, { target: { value: 'Write the docs' } });
    fireEvent.keyDown(input, { key: 'Enter' });
    await waitFor(() => expect(t.renameChat).toHaveBeenCalledWith('b', 'Write the docs'));
    fireEvent.click(screen.getByRole('button', { name: 'Delete Write docs' }));
    expect(t.deleteChat).not.toHaveBeenCalled();
    fireEvent.click(screen.getByRole('button', { name: 'Delete' }));
    await waitFor(() => expect(t.deleteChat).toHaveBeenCalledWith('b'));
  });

  it('picks up a title written meanwhile while the page is visible', async () => {
    vi.useFakeTimers({ shouldAdvanceTime: true });
    try {
      let title = 'please fix the flaky login test in CI';
      const listChats = vi.fn(() => Promise.resolve([chat('a', title)]));
      renderWith(fakeTransport({ listChats }), <History />);
      await screen.findByText(title);
      title = 'Fix flaky login test';
      await act(async () => {
        await vi.advanceTimersByTimeAsync(HISTORY_REFRESH_MS + 10);
      });
      await screen.findByText('Fix flaky login test');
      // Renaming starts from the current title, not the one first shown.
      fireEvent.click(screen.getByRole('button', { name: 'Rename Fix flaky login test' }));
      expect((screen.getByLabelText('New title') as HTMLInputElement).value).toBe('Fix flaky login test');
    } finally {
      vi.useRealTimers();
    }
  });
});
