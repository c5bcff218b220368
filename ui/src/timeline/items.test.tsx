import { fireEvent, render, screen } from '@testing-library/react';
import { describe, expect, it } from 'vitest';
import type { EventKind } from '../generated/events';
import type { LiveDelta, SessionEvent } from '../transport/types';
import { TimelineItem } from './items';
import { renderMarkdown } from './Markdown';
import { TimelineModel } from './model';

let seq = 0;
function ev(detail: EventKind): SessionEvent {
  seq += 1;
  return { seq, sessionId: 's', timestamp: new Date(1_700_000_000_000 + seq * 1000).toISOString(), detail };
}

function renderAll(events: SessionEvent[]) {
  const model = new TimelineModel();
  model.apply(events);
  render(
    <div>
      {model.items.map((i) => (
        <TimelineItem key={i.key} item={i} />
      ))}
    </div>,
  );
  return model;
}

describe('timeline items', () => {
  it('shows the user task and follow-ups', () => {
    renderAll([
      ev({ kind: 'user_message', content: 'fix the bug', follow_up: false }),
      ev({ kind: 'user_message', content: 'and add a test', follow_up: true }),
    ]);
    const msgs = screen.getAllByTestId('user-message');
    expect(msgs[0]?.textContent).toContain('fix the bug');
    expect(msgs[1]?.textContent).toContain('You (follow-up)');
  });

  it('renders assistant Markdown with highlighted code and no scripts', () => {
    renderAll([
      ev({
        kind: 'assistant_message',
        content: 'Use **this**:\n\n```python\ndef f():\n    return 1\n```\n<img src=x onerror="alert(1)"><script>alert(2)</script>',
      }),
    ]);
    const msg = screen.getByTestId('assistant-message');
    expect(msg.querySelector('strong')?.textContent).toBe('this');
    expect(msg.querySelector('pre code .hljs-keyword')?.textContent).toBe('def');
    expect(msg.querySelector('script')).toBeNull();
    expect(msg.querySelector('img')?.getAttribute('onerror')).toBeNull();
  });

  it('keeps thoughts collapsed', () => {
    renderAll([ev({ kind: 'thought', call_id: 't', thought: 'I should look at main.py' })]);
    const details = screen.getByTestId('thought') as HTMLDetailsElement;
    expect(details.open).toBe(false);
    expect(details.textContent).toContain('I should look at main.py');
  });

  it('pairs a command with its output and exit code, output collapsible, colours kept', () => {
    renderAll([
      ev({ kind: 'command_run', call_id: 'c1', command: 'ls' }),
      ev({
        kind: 'command_output',
        call_id: 'c1',
        command: 'ls',
        output: 'a.txt\n\u001b[31mred\u001b[0m',
        exit_code: 2,
        total_bytes: 10,
        timed_out: false,
        interrupted: false,
      }),
    ]);
    expect(screen.getAllByTestId('command')).toHaveLength(1);
    expect(screen.getByTestId('exit-code').textContent).toBe('exit 2');
    const red = screen.getByText('red');
    expect(red.style.color).toBe('var(--ansi-red)');
    fireEvent.click(screen.getByRole('button', { name: 'Hide output' }));
    expect(screen.queryByTestId('command-output')).toBeNull();
  });

  it('shows a running, a stopped and a timed-out command', () => {
    renderAll([
      ev({ kind: 'command_run', call_id: 'a', command: 'sleep 9' }),
      ev({ kind: 'command_run', call_id: 'b', command: 'sleep 30' }),
      ev({ kind: 'command_output', call_id: 'b', command: 'sleep 30', output: '', exit_code: 130, total_bytes: 0, timed_out: false, interrupted: true }),
      ev({ kind: 'command_run', call_id: 'c', command: 'yes' }),
      ev({ kind: 'command_output', call_id: 'c', command: 'yes', output: 'y', exit_code: null, total_bytes: 1, timed_out: true, interrupted: false }),
    ]);
    expect(screen.getAllByTestId('exit-code').map((e) => e.textContent)).toEqual(['running…', 'stopped', 'timed out']);
  });

  it('shows file edits as diffs and failed edits in words', () => {
    renderAll([
      ev({ kind: 'file_edit', call_id: 'e1', command: 'str_replace', path: '/workspace/a.py', edit: { old_str: 'x = 1\ny = 2', new_str: 'x = 1\ny = 3' } }),
      ev({ kind: 'file_edit_result', call_id: 'e1', command: 'str_replace', path: '/workspace/a.py', output: 'ok', ok: true }),
      ev({ kind: 'file_edit', call_id: 'e2', command: 'create', path: '/workspace/b.py', edit: { file_text: 'print(1)\n' } }),
      ev({ kind: 'file_edit', call_id: 'e3', command: 'str_replace', path: '/workspace/c.py', edit: { old_str: 'nope', new_str: 'x' } }),
      ev({ kind: 'file_edit_result', call_id: 'e3', command: 'str_replace', path: '/workspace/c.py', output: 'No replacement was performed: `nope` did not appear.', ok: false }),
    ]);
    const edits = screen.getAllByTestId('edit');
    expect(edits).toHaveLength(3);
    const first = edits[0];
    expect(first?.querySelector('.diff-remove')?.textContent).toContain('y = 2');
    expect(first?.querySelector('.diff-add')?.textContent).toContain('y = 3');
    expect(first?.querySelector('.diff-context')?.textContent).toContain('x = 1');
    expect(edits[1]?.querySelector('.diff-add')?.textContent).toContain('print(1)');
    expect(edits[1]?.textContent).toContain('working…');
    expect(edits[2]?.textContent).toContain('failed');
    expect(edits[2]?.textContent).toContain('did not appear');
    expect(edits[2]?.querySelector('[data-testid=diff]')).toBeNull();
  });

  it('shows finish, status, progress and errors with what to do', () => {
    renderAll([
      ev({ kind: 'progress', message: 'Pulling image…' }),
      ev({ kind: 'status', status: 'running', message: 'Agent is working' }),
      ev({ kind: 'finish', call_id: 'f', message: 'All **done**' }),
      ev({ kind: 'error', message: 'LLM error: 401 authentication_error: invalid x-api-key' }),
    ]);
    expect(screen.getByTestId('progress').textContent).toBe('Pulling image…');
    expect(screen.getByTestId('status-line').textContent).toContain('Agent is working');
    expect(screen.getByTestId('finish').querySelector('strong + div strong, .markdown strong')?.textContent).toBe('done');
    const error = screen.getByRole('alert');
    expect(error.textContent).toContain('invalid x-api-key');
    expect(error.textContent).toContain('ANTHROPIC_API_KEY');
  });

  it('takes usage into the summary, not the list', () => {
    const model = renderAll([
      ev({ kind: 'usage', model: 'm', inputTokens: 10, outputTokens: 2, cachedInputTokens: 0, cacheWriteInputTokens: 0, totalInputTokens: 110, totalOutputTokens: 22, totalCachedInputTokens: 5, totalCacheWriteInputTokens: 0, totalCostUsd: 0.0123 }),
    ]);
    expect(model.items).toHaveLength(0);
    expect(model.summary.usage?.totalInputTokens).toBe(110);
    expect(model.summary.usage?.totalCostUsd).toBe(0.0123);
  });

  it('shows a condensation as a collapsed summary', () => {
    const model = renderAll([
      ev({ kind: 'condensation', summary: 'The agent **installed** the deps.', condensed_messages: 12, tokens_before: 30000, tokens_after: 9000 }),
    ]);
    expect(model.items).toHaveLength(1);
    const item = screen.getByTestId('condensation');
    expect(item.tagName).toBe('DETAILS');
    expect(item.textContent).toContain('summarised');
    expect(item.querySelector('strong')?.textContent).toBe('installed');
  });

  it('ignores events it already has', () => {
    const model = new TimelineModel();
    const a = ev({ kind: 'assistant_message', content: 'one' });
    model.apply([a]);
    model.apply([a]);
    expect(model.items).toHaveLength(1);
  });
});

describe('streamed text', () => {
  const delta = (afterSeq: number, detail: LiveDelta['detail']): LiveDelta => ({ sessionId: 's', afterSeq, detail });

  it('shows the text so far as one streaming item, replaced by the stored message', () => {
    const model = new TimelineModel();
    const first = ev({ kind: 'user_message', content: 'hi', follow_up: false });
    model.apply([first]);
    model.apply([
      delta(first.seq, { kind: 'thinking_delta', text: 'The user greets; ' }),
      delta(first.seq, { kind: 'thinking_delta', text: 'answer politely.' }),
      delta(first.seq, { kind: 'assistant_delta', text: 'Hello ' }),
    ]);
    model.apply([delta(first.seq, { kind: 'assistant_delta', text: 'the**re**' })]);
    expect(model.items.map((i) => i.type)).toEqual(['user', 'streaming']);
    const streamingItem = model.items[1];
    if (!streamingItem) throw new Error('no streaming item');
    const { unmount } = render(<TimelineItem item={streamingItem} />);
    const item = screen.getByTestId('assistant-streaming');
    expect(item.querySelector('strong')?.textContent).toBe('re');
    expect(item.textContent).toContain('Hello the');
    const thinking = screen.getByTestId('streaming-thinking') as HTMLDetailsElement;
    expect(thinking.open).toBe(false);
    expect(thinking.textContent).toContain('The user greets; answer politely.');
    unmount();

    // Usage is recorded before the message: the streaming item stays until the message.
    const usage = ev({
      kind: 'usage',
      model: 'm',
      inputTokens: 1,
      outputTokens: 1,
      cachedInputTokens: 0,
      totalInputTokens: 1,
      totalOutputTokens: 1,
      totalCachedInputTokens: 0,
    } as EventKind);
    model.apply([usage]);
    expect(model.items.map((i) => i.type)).toEqual(['user', 'streaming']);
    model.apply([ev({ kind: 'assistant_message', content: 'Hello the**re**' })]);
    expect(model.items.map((i) => i.type)).toEqual(['user', 'assistant']);
    expect(model.streaming).toBeNull();
    // A late delta of the completed message changes nothing.
    const version = model.getVersion();
    model.apply([delta(first.seq, { kind: 'assistant_delta', text: 'late' })]);
    expect(model.items.map((i) => i.type)).toEqual(['user', 'assistant']);
    expect(model.getVersion()).toBe(version);
  });

  it('a restart voids the partial text; the repeated text so far replaces it', () => {
    const model = new TimelineModel();
    const first = ev({ kind: 'user_message', content: 'hi', follow_up: false });
    model.apply([
      first,
      delta(first.seq, { kind: 'assistant_delta', text: 'Broken ans' }),
      delta(first.seq, { kind: 'assistant_restart', reason: 'stream broke' }),
    ]);
    expect(model.items.map((i) => i.type)).toEqual(['user']);
    model.apply([
      delta(first.seq, { kind: 'assistant_delta', text: 'Second ' }),
      delta(first.seq, { kind: 'assistant_restart', reason: 'reattached' }),
      delta(first.seq, { kind: 'assistant_delta', text: 'Second try' }),
    ]);
    const streaming = model.items.at(-1);
    expect(streaming?.type === 'streaming' && streaming.text).toBe('Second try');
  });

  it('a stop ends the streaming item without a message', () => {
    const model = new TimelineModel();
    const first = ev({ kind: 'user_message', content: 'hi', follow_up: false });
    model.apply([first, delta(first.seq, { kind: 'assistant_delta', text: 'Half' })]);
    model.apply([ev({ kind: 'status', status: 'stopped', message: 'Stopped.' })]);
    expect(model.items.map((i) => i.type)).toEqual(['user', 'status']);
  });
});

describe('markdown cache', () => {
  it('gives the same sanitised HTML from the cache, and never caches text being written', () => {
    const text = 'Cached **answer** <img src=x onerror="alert(1)">';
    const first = renderMarkdown(text);
    expect(first).toContain('<strong>answer</strong>');
    expect(first).not.toContain('onerror');
    expect(renderMarkdown(text)).toBe(first);
    expect(renderMarkdown('live *text*', false)).toContain('<em>text</em>');
  });
});
