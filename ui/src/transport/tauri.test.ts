import { Channel } from '@tauri-apps/api/core';
import { clearMocks, mockIPC } from '@tauri-apps/api/mocks';
import { afterEach, describe, expect, it } from 'vitest';
import type { EventKind } from '../generated/events';
import { openExternalLinksInBrowser, tauriLifecycle, TauriTransport } from './tauri';
import { ApiError, type SessionEvent } from './types';

const detail: EventKind = { kind: 'assistant_message', content: 'x' };
const frame = (seq: number) => ({ type: 'agent_event', seq, sessionId: 's1', timestamp: '2026-01-01T00:00:00Z', detail });

interface TauriInternals {
  runCallback(id: number, data: unknown): void;
}

/**
 * A fake shell behind Tauri's IPC mock: records the commands the generated bindings send,
 * answers from `answers` (a thrown value is the command's error), and keeps a way to push
 * frames into each channel it was given.
 */
function fakeShell(answers: Record<string, (args: Record<string, unknown>) => unknown> = {}) {
  const calls: { cmd: string; args: Record<string, unknown> }[] = [];
  const channels: ((f: unknown) => void)[] = [];
  mockIPC((cmd, raw) => {
    const args: Record<string, unknown> = { ...((raw ?? {}) as Record<string, unknown>) };
    for (const [key, value] of Object.entries(args)) {
      if (value instanceof Channel) {
        let index = 0;
        const internals = (window as unknown as { __TAURI_INTERNALS__: TauriInternals }).__TAURI_INTERNALS__;
        channels.push((message) => internals.runCallback(value.id, { index: index++, message }));
        args[key] = 'channel';
      }
    }
    calls.push({ cmd, args });
    const answer = answers[cmd];
    return answer ? answer(args) : null;
  });
  return { calls, channels, transport: new TauriTransport() };
}

afterEach(() => clearMocks());

const tick = () => new Promise((r) => setTimeout(r, 0));

describe('TauriTransport', () => {
  it('calls the shell commands with the Rust argument names', async () => {
    const { calls, transport } = fakeShell({
      start_session: () => ({ sessionId: 's1', chatId: 'c1' }),
      list_repos: () => ({ repos: [{ fullName: 'o/r' }] }),
      list_branches: () => ({ branches: [] }),
    });
    expect(await transport.startSession({ task: 't' } as never)).toEqual({ sessionId: 's1', chatId: 'c1' });
    expect(await transport.listRepos('github')).toEqual([{ fullName: 'o/r' }]);
    await transport.readFile('s1', '/a.py');
    await transport.listBranches('github', 'o/r');
    expect(calls.map((c) => c.cmd)).toEqual(['start_session', 'list_repos', 'read_file', 'list_branches']);
    expect(calls[0]?.args).toEqual({ req: { task: 't' } });
    expect(calls[2]?.args).toEqual({ sessionId: 's1', path: '/a.py' });
    expect(calls[3]?.args).toEqual({ provider: 'github', fullName: 'o/r' });
  });

  it('sends a message to a session (continuing it) with follow_up', async () => {
    const { calls, transport } = fakeShell();
    await transport.sendMessage('s1', 'and the docs');
    expect(calls).toEqual([{ cmd: 'follow_up', args: { sessionId: 's1', content: 'and the docs' } }]);
  });

  it("turns the shell's errors into ApiErrors with its status and words", async () => {
    const { transport } = fakeShell({
      get_chat: () => {
        throw { status: 404, message: 'Chat not found' };
      },
    });
    const err = await transport.getChat('nope').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect((err as ApiError).status).toBe(404);
    expect((err as ApiError).message).toBe('Chat not found');
  });

  it('streams events through the channel once each, in order, and sends stop and follow-ups', async () => {
    const { calls, channels, transport } = fakeShell({ subscribe_session: () => 42 });
    const got: SessionEvent[] = [];
    const sub = transport.subscribe('s1', 0, { onEvents: (e) => got.push(...e) });
    await tick();
    expect(calls[0]).toEqual({ cmd: 'subscribe_session', args: { sessionId: 's1', since: 0, onEvent: 'channel' } });
    const send = channels[0];
    if (!send) throw new Error('no channel');
    send(frame(1));
    send(frame(2));
    send(frame(2)); // replayed twice: shown once
    expect(got.map((e) => e.seq)).toEqual([1, 2]);
    sub.stop();
    sub.followUp('and add tests');
    expect(calls.slice(-2)).toEqual([
      { cmd: 'stop_session', args: { sessionId: 's1' } },
      { cmd: 'follow_up', args: { sessionId: 's1', content: 'and add tests' } },
    ]);
    sub.close();
    await tick();
    expect(calls.at(-1)).toEqual({ cmd: 'unsubscribe', args: { subscription: 42 } });
  });

  it('re-subscribes from the last seq after a gap', async () => {
    const { calls, channels, transport } = fakeShell({ subscribe_session: () => 1 });
    const got: SessionEvent[] = [];
    transport.subscribe('s1', 0, { onEvents: (e) => got.push(...e) });
    await tick();
    channels[0]?.(frame(1));
    channels[0]?.(frame(3)); // 2 is missing
    await new Promise((r) => setTimeout(r, 400));
    const resubscribe = calls.filter((c) => c.cmd === 'subscribe_session');
    expect(resubscribe.at(-1)?.args).toMatchObject({ since: 1 });
    channels.at(-1)?.(frame(2));
    channels.at(-1)?.(frame(3));
    expect(got.map((e) => e.seq)).toEqual([1, 2, 3]);
  });
});

describe('the app around the window', () => {
  it('hears the shell ask before quitting and answers with quit_app', async () => {
    const { calls } = fakeShell();
    mockIPC(
      (cmd, args) => {
        calls.push({ cmd, args: (args ?? {}) as Record<string, unknown> });
        return null;
      },
      { shouldMockEvents: true },
    );
    const asked: unknown[] = [];
    const lifecycle = tauriLifecycle();
    const stop = lifecycle.onQuitRequested((r) => asked.push(r));
    await tick();
    const { emit } = await import('@tauri-apps/api/event');
    const request = { sessions: [{ sessionId: 's1', task: 'fix it' }] };
    await emit('lucid://quit-requested', request);
    expect(asked).toEqual([request]);
    await lifecycle.quit();
    expect(calls.at(-1)).toEqual({ cmd: 'quit_app', args: {} });
    stop();
  });
});

describe('links in the desktop app', () => {
  it('open outside links in the system browser and leave the UI\'s own links alone', () => {
    const opened: unknown[] = [];
    openExternalLinksInBrowser(<T,>(cmd: string, args?: Record<string, unknown>) => {
      opened.push({ cmd, args });
      return Promise.resolve(undefined as T);
    });
    document.body.innerHTML =
      '<a id="pr" href="https://github.com/o/r/pull/1" target="_blank">PR</a><a id="own" href="/ui/history">H</a>';
    const pr = document.getElementById('pr');
    const own = document.getElementById('own');
    const click = (el: HTMLElement | null) => {
      const ev = new MouseEvent('click', { bubbles: true, cancelable: true });
      el?.dispatchEvent(ev);
      return ev.defaultPrevented;
    };
    expect(click(pr)).toBe(true);
    expect(click(own)).toBe(false);
    expect(opened).toEqual([{ cmd: 'plugin:opener|open_url', args: { url: 'https://github.com/o/r/pull/1' } }]);
  });
});
