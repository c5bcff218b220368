import { act, fireEvent, render, screen, waitFor } from '@testing-library/react';
import { describe, expect, it, vi } from 'vitest';
import { TransportContext } from '../app/context';
import type { SessionSummary, SubscribeHandlers, Transport } from '../transport/types';
import { prMeta, Workspace } from './Workspace';

const summary: SessionSummary = {
  sessionId: 's1',
  userId: 'u1',
  task: 'write the parser',
  isAlive: false,
  createdAt: '2026-01-01T00:00:00Z',
  chatId: 'c1',
  status: 'completed',
  repository: 'https://github.com/octocat/hello.git',
  branch: 'dev',
};

function endedSessionTransport() {
  const subscriptions: { since: number; handlers: SubscribeHandlers }[] = [];
  const t = {
    getSession: () => Promise.resolve(summary),
    listFiles: () => Promise.resolve({ tree: [], truncated: false }),
    sendMessage: vi.fn(() => Promise.resolve()),
    subscribe: vi.fn((_id: string, since: number, handlers: SubscribeHandlers) => {
      subscriptions.push({ since, handlers });
      return { stop: vi.fn(), followUp: vi.fn(), lastSeq: () => since, close: vi.fn() };
    }),
  } as unknown as Transport;
  return { t, subscriptions };
}

describe('workspace', () => {
  it('continues an ended session over the API and subscribes again from the last seq', async () => {
    const { t, subscriptions } = endedSessionTransport();
    render(
      <TransportContext.Provider value={t}>
        <Workspace sessionId="s1" />
      </TransportContext.Provider>,
    );
    expect(subscriptions).toHaveLength(1);
    await act(async () => {
      const first = subscriptions[0];
      if (!first) throw new Error('not subscribed');
      const h = first.handlers;
      h.onEvents([
        { seq: 1, sessionId: 's1', timestamp: '2026-01-01T00:00:00Z', detail: { kind: 'status', status: 'running', message: '' } },
        { seq: 2, sessionId: 's1', timestamp: '2026-01-01T00:00:01Z', detail: { kind: 'status', status: 'completed', message: 'done' } },
      ]);
      h.onConnection?.('ended', 'Session ended');
      await new Promise((r) => setTimeout(r, 40));
    });
    const box = screen.getByLabelText('Follow-up message') as HTMLTextAreaElement;
    expect(box.disabled).toBe(false);
    fireEvent.change(box, { target: { value: 'now add tests' } });
    await act(async () => {
      fireEvent.keyDown(box, { key: 'Enter' });
    });
    await waitFor(() => expect(t.sendMessage).toHaveBeenCalledWith('s1', 'now add tests'));
    await waitFor(() => expect(subscriptions).toHaveLength(2));
    expect(subscriptions[1]?.since).toBe(2);
    expect(box.value).toBe('');
  });

  it('offers a pull request for any repository session, with what the engine reports', async () => {
    const { t } = endedSessionTransport();
    render(
      <TransportContext.Provider value={t}>
        <Workspace sessionId="s1" />
      </TransportContext.Provider>,
    );
    fireEvent.click(await screen.findByRole('button', { name: 'Create pull request' }));
    expect(screen.getByRole('dialog', { name: 'Create pull request on octocat/hello' })).toBeTruthy();
    expect((screen.getByLabelText('Target branch') as HTMLInputElement).value).toBe('dev');
  });

  it('derives the pull request details from a repository URL', () => {
    expect(prMeta(null, null, null)).toBeNull();
    expect(prMeta(null, 'https://gitlab.example.com/group/sub/app.git', null)).toEqual({
      repoUrl: 'https://gitlab.example.com/group/sub/app.git',
      branch: undefined,
      provider: 'gitlab',
      fullName: 'group/sub/app',
    });
    expect(prMeta(null, 'git@github.com:octo/app.git', 'main')?.fullName).toBe('octo/app');
    expect(prMeta({ repoUrl: 'https://x/a/b', provider: 'gitlab', fullName: 'a/b' }, 'ignored', null)?.provider).toBe('gitlab');
  });
});
