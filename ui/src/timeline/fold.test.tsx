import { fireEvent, render, screen } from '@testing-library/react';
import { describe, expect, it } from 'vitest';
import { parseAnsi, stripAnsi } from './ansi';
import { diffLines, editDiff } from './diff';
import { errorHint } from './errors';
import { foldLines } from './fold';
import { Output } from './items';

describe('output folding', () => {
  it('leaves short output alone', () => {
    expect(foldLines('a\nb\nc').hidden).toBe(0);
  });

  it('keeps head and tail of long output', () => {
    const text = Array.from({ length: 500 }, (_, i) => `line ${i}`).join('\n');
    const f = foldLines(text, 20, 20);
    expect(f.hidden).toBe(460);
    expect(f.head.split('\n')).toHaveLength(20);
    expect(f.head.startsWith('line 0\n')).toBe(true);
    expect(f.tail.endsWith('line 499')).toBe(true);
    expect(f.hiddenText.split('\n')[0]).toBe('line 20');
  });

  it('shows the folded middle on request', () => {
    const text = Array.from({ length: 100 }, (_, i) => `row-${i}`).join('\n');
    render(<Output text={text} />);
    expect(screen.queryByText(/row-50/)).toBeNull();
    expect(screen.getByText(/row-99/)).toBeTruthy();
    fireEvent.click(screen.getByRole('button', { name: /60 more lines/ }));
    expect(screen.getByTestId('command-output').textContent).toContain('row-50');
  });
});

describe('ANSI colours', () => {
  it('splits styled spans and resets', () => {
    const spans = parseAnsi('plain \u001b[1;32mgreen bold\u001b[0m back');
    expect(spans.map((s) => s.text)).toEqual(['plain ', 'green bold', ' back']);
    expect(spans[1]?.style).toMatchObject({ fg: 'var(--ansi-green)', bold: true });
    expect(spans[2]?.style.fg).toBeUndefined();
  });

  it('understands 256 and true colours and drops other escapes', () => {
    const spans = parseAnsi('\u001b[38;5;196mA\u001b[48;2;1;2;3mB\u001b[2K\u001b]0;title\u0007C');
    expect(spans[0]?.style.fg).toBe('rgb(255, 0, 0)');
    expect(spans[1]?.style.bg).toBe('rgb(1, 2, 3)');
    expect(stripAnsi('\u001b[31mx\u001b[0m\u001b[2Ky')).toBe('xy');
  });
});

describe('diffs', () => {
  it('finds the changed lines', () => {
    expect(diffLines('a\nb\nc', 'a\nB\nc')).toEqual([
      { kind: 'context', text: 'a' },
      { kind: 'remove', text: 'b' },
      { kind: 'add', text: 'B' },
      { kind: 'context', text: 'c' },
    ]);
  });

  it('shows created files and inserts as additions; views as nothing', () => {
    expect(editDiff('create', { file_text: 'x\ny\n' })).toEqual([
      { kind: 'add', text: 'x' },
      { kind: 'add', text: 'y' },
    ]);
    expect(editDiff('insert', { new_str: 'z', insert_line: 3 })).toEqual([{ kind: 'add', text: 'z' }]);
    expect(editDiff('view', {})).toBeNull();
    expect(editDiff('str_replace', undefined)).toBeNull();
  });
});

describe('error hints', () => {
  it('tells a forge token problem from a model key problem', () => {
    expect(
      errorHint('Could not clone http://127.0.0.1:1/o/r.git: authentication failed for http://127.0.0.1:1/o/r.git'),
    ).toMatch(/integration token/);
    expect(errorHint('the anthropic API rejected the API key (401): invalid x-api-key')).toMatch(/ANTHROPIC_API_KEY/);
    expect(errorHint('the anthropic API is unavailable (529) after 4 attempts: Overloaded')).toMatch(/busy/);
  });
});
