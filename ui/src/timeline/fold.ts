// Long output is folded to its head and tail, with the middle available on request.
export interface Folded {
  head: string;
  tail: string;
  /** Lines left out between head and tail (0 = nothing folded). */
  hidden: number;
  hiddenText: string;
}

export function foldLines(text: string, headLines = 20, tailLines = 20): Folded {
  const lines = text.split('\n');
  if (lines.length <= headLines + tailLines + 5) {
    return { head: text, tail: '', hidden: 0, hiddenText: '' };
  }
  return {
    head: lines.slice(0, headLines).join('\n'),
    tail: lines.slice(lines.length - tailLines).join('\n'),
    hidden: lines.length - headLines - tailLines,
    hiddenText: lines.slice(headLines, lines.length - tailLines).join('\n'),
  };
}
