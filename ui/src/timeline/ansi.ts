// ANSI SGR colour codes → styled spans (no HTML strings: React renders the text).
export interface AnsiStyle {
  fg?: string;
  bg?: string;
  bold?: boolean;
  dim?: boolean;
  italic?: boolean;
  underline?: boolean;
}

export interface AnsiSpan {
  text: string;
  style: AnsiStyle;
}

const BASIC = ['black', 'red', 'green', 'yellow', 'blue', 'magenta', 'cyan', 'white'];

function color256(n: number): string {
  if (n < 8) return `var(--ansi-${BASIC[n]})`;
  if (n < 16) return `var(--ansi-bright-${BASIC[n - 8]})`;
  if (n < 232) {
    const i = n - 16;
    const v = (x: number) => (x === 0 ? 0 : 55 + x * 40);
    return `rgb(${v(Math.floor(i / 36))}, ${v(Math.floor(i / 6) % 6)}, ${v(i % 6)})`;
  }
  const g = 8 + (n - 232) * 10;
  return `rgb(${g}, ${g}, ${g})`;
}

function sameStyle(a: AnsiStyle, b: AnsiStyle): boolean {
  return (
    a.fg === b.fg && a.bg === b.bg && !a.bold === !b.bold && !a.dim === !b.dim &&
    !a.italic === !b.italic && !a.underline === !b.underline
  );
}

function apply(style: AnsiStyle, codes: number[]): AnsiStyle {
  const s: AnsiStyle = { ...style };
  for (let i = 0; i < codes.length; i++) {
    const c = codes[i] ?? 0;
    if (c === 0) {
      s.fg = undefined;
      s.bg = undefined;
      s.bold = undefined;
      s.dim = undefined;
      s.italic = undefined;
      s.underline = undefined;
    } else if (c === 1) s.bold = true;
    else if (c === 2) s.dim = true;
    else if (c === 3) s.italic = true;
    else if (c === 4) s.underline = true;
    else if (c === 22) {
      s.bold = false;
      s.dim = false;
    } else if (c === 23) s.italic = false;
    else if (c === 24) s.underline = false;
    else if (c >= 30 && c <= 37) s.fg = `var(--ansi-${BASIC[c - 30]})`;
    else if (c === 39) s.fg = undefined;
    else if (c >= 40 && c <= 47) s.bg = `var(--ansi-${BASIC[c - 40]})`;
    else if (c === 49) s.bg = undefined;
    else if (c >= 90 && c <= 97) s.fg = `var(--ansi-bright-${BASIC[c - 90]})`;
    else if (c >= 100 && c <= 107) s.bg = `var(--ansi-bright-${BASIC[c - 100]})`;
    else if (c === 38 || c === 48) {
      const key = c === 38 ? 'fg' : 'bg';
      if (codes[i + 1] === 5 && codes[i + 2] !== undefined) {
        s[key] = color256(codes[i + 2] ?? 0);
        i += 2;
      } else if (codes[i + 1] === 2 && codes[i + 4] !== undefined) {
        s[key] = `rgb(${codes[i + 2]}, ${codes[i + 3]}, ${codes[i + 4]})`;
        i += 4;
      }
    }
  }
  return s;
}

// eslint-disable-next-line no-control-regex
const ESCAPES = /\x1b\[([0-9;]*)([A-Za-z])|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[()][A-Za-z0-9]/g;

/** Splits text with ANSI escapes into styled spans; non-colour escapes are dropped. */
export function parseAnsi(input: string): AnsiSpan[] {
  const spans: AnsiSpan[] = [];
  let style: AnsiStyle = {};
  let last = 0;
  const push = (text: string) => {
    if (!text) return;
    const prev = spans[spans.length - 1];
    if (prev && sameStyle(prev.style, style)) prev.text += text;
    else spans.push({ text, style });
  };
  for (const m of input.matchAll(ESCAPES)) {
    push(input.slice(last, m.index));
    last = (m.index ?? 0) + m[0].length;
    if (m[2] === 'm') {
      const codes = (m[1] ?? '').split(';').map((x) => (x === '' ? 0 : Number(x)));
      style = apply(style, codes);
    }
  }
  push(input.slice(last));
  return spans;
}

/** Text without escape sequences. */
export function stripAnsi(input: string): string {
  return input.replace(ESCAPES, '');
}
