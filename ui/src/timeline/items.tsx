import { memo, useState } from 'react';
import { parseAnsi, type AnsiSpan } from './ansi';
import { editDiff, type DiffLine } from './diff';
import { errorHint } from './errors';
import { foldLines } from './fold';
import { Markdown } from './Markdown';
import type { Item } from './model';

function AnsiText({ text }: { text: string }) {
  const spans: AnsiSpan[] = parseAnsi(text);
  return (
    <>
      {spans.map((s, i) => (
        <span
          key={i}
          style={{
            color: s.style.fg,
            backgroundColor: s.style.bg,
            fontWeight: s.style.bold ? 700 : undefined,
            opacity: s.style.dim ? 0.7 : undefined,
            fontStyle: s.style.italic ? 'italic' : undefined,
            textDecoration: s.style.underline ? 'underline' : undefined,
          }}
        >
          {s.text}
        </span>
      ))}
    </>
  );
}

/** Command output with ANSI colours, folded to head and tail when long. */
export function Output({ text }: { text: string }) {
  const [expanded, setExpanded] = useState(false);
  const folded = foldLines(text);
  if (folded.hidden === 0 || expanded) {
    return (
      <pre className="output" data-testid="command-output">
        <AnsiText text={text} />
      </pre>
    );
  }
  return (
    <pre className="output" data-testid="command-output">
      <AnsiText text={folded.head} />
      {'\n'}
      <button type="button" className="fold" onClick={() => setExpanded(true)}>
        … {folded.hidden} more lines (show all)
      </button>
      {'\n'}
      <AnsiText text={folded.tail} />
    </pre>
  );
}

function exitLabel(item: Extract<Item, { type: 'command' }>): { text: string; ok: boolean } {
  if (item.output === null) return { text: 'running…', ok: true };
  if (item.timedOut) return { text: 'timed out', ok: false };
  if (item.interrupted) return { text: 'stopped', ok: false };
  if (item.exitCode === null) return { text: 'did not finish', ok: false };
  return { text: `exit ${item.exitCode}`, ok: item.exitCode === 0 };
}

const CommandItem = memo(function CommandItem({ item }: { item: Extract<Item, { type: 'command' }> }) {
  const label = exitLabel(item);
  const [open, setOpen] = useState(true);
  return (
    <div className="item command" data-testid="command">
      <div className="command-head">
        <button
          type="button"
          className="disclosure"
          aria-expanded={open}
          onClick={() => setOpen(!open)}
          aria-label={open ? 'Hide output' : 'Show output'}
        >
          {open ? '▾' : '▸'}
        </button>
        <code className="command-line">$ {item.command}</code>
        <span className={`badge ${label.ok ? 'ok' : 'bad'}`} data-testid="exit-code">
          {label.text}
        </span>
      </div>
      {open && item.output !== null && item.output !== '' && <Output text={item.output} />}
      {item.output !== null && item.totalBytes > item.output.length + 64 && (
        <p className="muted small">
          Output was {item.totalBytes.toLocaleString()} bytes; only part of it was kept.
        </p>
      )}
    </div>
  );
});

export function Diff({ lines }: { lines: DiffLine[] }) {
  return (
    <pre className="diff" data-testid="diff">
      {lines.map((l, i) => (
        <div key={i} className={`diff-${l.kind}`}>
          <span aria-hidden="true" className="diff-sign">
            {l.kind === 'add' ? '+' : l.kind === 'remove' ? '-' : ' '}
          </span>
          <span className="visually-hidden">{l.kind === 'add' ? 'added: ' : l.kind === 'remove' ? 'removed: ' : ''}</span>
          {l.text}
        </div>
      ))}
    </pre>
  );
}

const EditItem = memo(function EditItem({ item }: { item: Extract<Item, { type: 'edit' }> }) {
  const lines = editDiff(item.command, item.edit);
  const verb: Record<string, string> = {
    create: 'Created',
    str_replace: 'Edited',
    insert: 'Inserted into',
    view: 'Viewed',
    undo_edit: 'Undid the last edit of',
  };
  const failed = item.result !== null && !item.result.ok;
  return (
    <div className="item edit" data-testid="edit">
      <div className="edit-head">
        <span>{verb[item.command] ?? item.command}</span> <code>{item.path}</code>
        {item.result === null && <span className="badge">working…</span>}
        {failed && <span className="badge bad">failed</span>}
      </div>
      {lines && lines.length > 0 && !failed && <Diff lines={lines} />}
      {failed && item.result && <p className="error-text">{item.result.output}</p>}
    </div>
  );
});

/** The message the model is writing: its thinking collapsed, its text so far. */
const StreamingItem = memo(function StreamingItem({ item }: { item: Extract<Item, { type: 'streaming' }> }) {
  return (
    <div className="item assistant streaming" data-testid="assistant-streaming" aria-busy="true">
      {item.thinking && (
        <details className="thought" data-testid="streaming-thinking">
          <summary>{item.text ? 'Thought' : 'Thinking…'}</summary>
          <div className="thought-text">{item.thinking}</div>
        </details>
      )}
      {item.text ? <Markdown text={item.text} live /> : !item.thinking && <p className="muted">…</p>}
      <span className="muted small writing">{item.text ? 'writing…' : 'thinking…'}</span>
    </div>
  );
});

export const TimelineItem = memo(function TimelineItem({ item }: { item: Item }) {
  switch (item.type) {
    case 'streaming':
      return <StreamingItem item={item} />;
    case 'user':
      return (
        <div className="item user" data-testid="user-message">
          <div className="who">{item.followUp ? 'You (follow-up)' : 'You'}</div>
          <div className="user-text">{item.content}</div>
        </div>
      );
    case 'assistant':
      return (
        <div className="item assistant" data-testid="assistant-message">
          <Markdown text={item.content} />
        </div>
      );
    case 'thought':
      return (
        <details className="item thought" data-testid="thought">
          <summary>Thought</summary>
          <div className="thought-text">{item.thought}</div>
        </details>
      );
    case 'command':
      return <CommandItem item={item} />;
    case 'edit':
      return <EditItem item={item} />;
    case 'finish':
      return (
        <div className="item finish" data-testid="finish">
          <strong>Finished.</strong> <Markdown text={item.message} />
        </div>
      );
    case 'status':
      return (
        <div className="item status-line" data-testid="status-line">
          <span className={`dot st-${item.status}`} aria-hidden="true" /> {item.message || item.status}
        </div>
      );
    case 'progress':
      return (
        <div className="item progress" data-testid="progress">
          {item.message}
        </div>
      );
    case 'condensation':
      return (
        <details className="item thought condensation" data-testid="condensation">
          <summary>Earlier steps were summarised to fit the model's context</summary>
          <Markdown text={item.summary} />
        </details>
      );
    case 'error': {
      const hint = errorHint(item.message);
      return (
        <div className="item error" role="alert" data-testid="error">
          <strong>Something went wrong:</strong> {item.message}
          {hint && <p className="hint">What to do: {hint}</p>}
        </div>
      );
    }
  }
});
