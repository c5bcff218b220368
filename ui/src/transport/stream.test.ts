import { describe, expect, it } from 'vitest';
import type { EventKind } from '../generated/events';
import { SessionStream, type SocketLike } from './stream';
import type { ConnectionState, LiveDelta, Notice, SessionEvent } from './types';

class FakeSocket implements SocketLike {
  readyState = 0;
  sent: unknown[] = [];
  closedWith: number | null = null;
  onopen: ((ev: Event) => void) | null = null;
  onmessage: ((ev: MessageEvent) => void) | null = null;
  onclose: ((ev: CloseEvent) => void) | null = null;
  onerror: ((ev: Event) => void) | null = null;
  send(data: string) {
    this.sent.push(JSON.parse(data));
  }
  close(code = 1000) {
    this.closedWith = code;
    this.readyState = 3;
  }
  // server side
  open() {
    this.readyState = 1;
    this.onopen?.(new Event('open'));
  }
  frame(f: object) {
    this.onmessage?.({ data: JSON.stringify(f) } as MessageEvent);
  }
  drop(code = 1006, reason = '') {
    this.readyState = 3;
    this.onclose?.({ code, reason } as CloseEvent);
  }
}

const detail: EventKind = { kind: 'assistant_message', content: 'x' };
const event = (seq: number) => ({ type: 'agent_event', seq, sessionId: 's1', timestamp: '2026-01-01T00:00:00Z', detail });

function setup(since = 0) {
  const sockets: FakeSocket[] = [];
  const got: SessionEvent[] = [];
  const deltas: LiveDelta[] = [];
  const order: string[] = [];
  const notices: Notice[] = [];
  const states: ConnectionState[] = [];
  const timers: (() => void)[] = [];
  const stream = new SessionStream(
    's1',
    since,
    () => {
      const s = new FakeSocket();
      sockets.push(s);
      return s;
    },
    {
      onEvents: (e) => {
        got.push(...e);
        order.push(...e.map((x) => `e${x.seq}`));
      },
      onDelta: (d) => {
        deltas.push(d);
        order.push(`${d.detail.kind}@${d.afterSeq}`);
      },
      onNotice: (n) => notices.push(n),
      onConnection: (s) => states.push(s),
    },
    { setTimer: (fn) => timers.push(fn), clearTimer: () => {} },
  );
  const fire = () => timers.splice(0).forEach((fn) => fn());
  return { stream, sockets, got, deltas, order, notices, states, fire };
}

describe('SessionStream', () => {
  it('attaches from the given seq and delivers events in order', () => {
    const { sockets, got, states } = setup(3);
    sockets[0]?.open();
    expect(sockets[0]?.sent[0]).toEqual({ type: 'attach', sessionId: 's1', since: 3 });
    sockets[0]?.frame(event(4));
    sockets[0]?.frame(event(5));
    expect(got.map((e) => e.seq)).toEqual([4, 5]);
    expect(states).toEqual(['connecting', 'live']);
  });

  it('drops replayed duplicates after a reconnect and resumes from the last seq', () => {
    const { sockets, got, states, fire, stream } = setup();
    sockets[0]?.open();
    [1, 2, 3].forEach((s) => sockets[0]?.frame(event(s)));
    sockets[0]?.drop(1006);
    expect(states.at(-1)).toBe('reconnecting');
    fire();
    sockets[1]?.open();
    expect(sockets[1]?.sent[0]).toEqual({ type: 'attach', sessionId: 's1', since: 3 });
    // A server that replays more than asked (or a frame in flight twice) is deduplicated.
    [2, 3, 4, 4, 5].forEach((s) => sockets[1]?.frame(event(s)));
    expect(got.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5]);
    expect(stream.lastSeq()).toBe(5);
  });

  it('re-attaches from the last seq instead of showing a gap', () => {
    const { sockets, got, fire } = setup();
    sockets[0]?.open();
    sockets[0]?.frame(event(1));
    sockets[0]?.frame(event(3)); // 2 is missing
    sockets[0]?.frame(event(4));
    expect(got.map((e) => e.seq)).toEqual([1]);
    expect(sockets[0]?.closedWith).toBe(4000);
    fire();
    sockets[1]?.open();
    expect(sockets[1]?.sent[0]).toEqual({ type: 'attach', sessionId: 's1', since: 1 });
    [2, 3, 4].forEach((s) => sockets[1]?.frame(event(s)));
    expect(got.map((e) => e.seq)).toEqual([1, 2, 3, 4]);
  });

  it('passes notices through and ignores frames of other sessions', () => {
    const { sockets, got, notices } = setup();
    sockets[0]?.open();
    sockets[0]?.frame({ type: 'status', status: 'stopping', message: 'Stopping agent...', sessionId: 's1' });
    sockets[0]?.frame({ type: 'file_tree', tree: [{ name: 'a', type: 'file', path: '/a' }], truncated: false });
    sockets[0]?.frame({ type: 'error', message: 'Empty content' });
    sockets[0]?.frame({ ...event(1), sessionId: 'other' });
    expect(got).toHaveLength(0);
    expect(notices.map((n) => n.type)).toEqual(['status', 'file_tree', 'error']);
  });

  it('ends on a normal close and fails without retrying on an auth close', () => {
    const a = setup();
    a.sockets[0]?.open();
    a.sockets[0]?.drop(1000, 'Session ended');
    expect(a.states.at(-1)).toBe('ended');
    a.fire();
    expect(a.sockets).toHaveLength(1);

    const b = setup();
    b.sockets[0]?.drop(4010);
    expect(b.states.at(-1)).toBe('failed');
    b.fire();
    expect(b.sockets).toHaveLength(1);
  });

  it('sends stop and follow-ups, and refuses them when disconnected', () => {
    const { sockets, stream } = setup();
    expect(() => stream.stop()).toThrow(/Not connected/);
    sockets[0]?.open();
    stream.stop();
    stream.followUp('more please');
    expect(sockets[0]?.sent.slice(1)).toEqual([{ type: 'stop' }, { type: 'message', content: 'more please' }]);
    stream.close();
    expect(sockets[0]?.closedWith).toBe(1000);
  });

  describe('live deltas', () => {
    const delta = (afterSeq: number, text: string, type = 'agent_delta', kind = 'assistant_delta') => ({
      type,
      eventType: 'AssistantDelta',
      content: text,
      afterSeq,
      sessionId: 's1',
      detail: { kind, text },
    });

    it('passes text and thinking in order with the events, each attach starting with a restart', () => {
      const { sockets, order, deltas } = setup();
      sockets[0]?.open();
      sockets[0]?.frame(event(1));
      sockets[0]?.frame(delta(1, 'hmm', 'thinking_delta', 'thinking_delta'));
      sockets[0]?.frame(delta(1, 'Hel'));
      sockets[0]?.frame(delta(1, 'lo'));
      sockets[0]?.frame(event(2));
      expect(order).toEqual([
        'assistant_restart@0',
        'e1',
        'thinking_delta@1',
        'assistant_delta@1',
        'assistant_delta@1',
        'e2',
      ]);
      expect(deltas.map((d) => ('text' in d.detail ? d.detail.text : ''))).toEqual(['', 'hmm', 'Hel', 'lo']);
    });

    it('drops stale deltas, deltas of other sessions and malformed ones', () => {
      const { sockets, order } = setup();
      sockets[0]?.open();
      [1, 2].forEach((s) => sockets[0]?.frame(event(s)));
      sockets[0]?.frame(delta(1, 'late: message 2 is already stored'));
      sockets[0]?.frame({ ...delta(2, 'other'), sessionId: 'other' });
      sockets[0]?.frame({ type: 'agent_delta', afterSeq: 2, content: 'no detail' });
      sockets[0]?.frame(delta(2, 'ok'));
      expect(order).toEqual(['assistant_restart@0', 'e1', 'e2', 'assistant_delta@2']);
    });

    it('after a reconnect the repeated text so far replaces what was shown', () => {
      const { sockets, fire, order } = setup();
      sockets[0]?.open();
      sockets[0]?.frame(event(1));
      sockets[0]?.frame(delta(1, 'Hello'));
      sockets[0]?.drop(1006);
      fire();
      sockets[1]?.open();
      sockets[1]?.frame(delta(1, 'Hello, wor'));
      expect(order).toEqual([
        'assistant_restart@0',
        'e1',
        'assistant_delta@1',
        'assistant_restart@1',
        'assistant_delta@1',
      ]);
    });
  });
});
