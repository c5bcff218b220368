// Line diffs for file edits: from the editor call's arguments (old/new text, created file,
// inserted lines), computed with a longest-common-subsequence over lines.
import type { FileEditArgs } from '../generated/events';

export type DiffLine = { kind: 'context' | 'add' | 'remove'; text: string };

/** Above this many line pairs the diff is shown as all-removed then all-added. */
const MAX_CELLS = 4_000_000;

/** Lines of a text; a final newline does not start another (empty) line. */
function lines(text: string): string[] {
  if (text === '') return [];
  const parts = text.split('\n');
  if (parts.length > 1 && parts[parts.length - 1] === '') parts.pop();
  return parts;
}

export function diffLines(before: string, after: string): DiffLine[] {
  const a = lines(before);
  const b = lines(after);
  if (a.length * b.length > MAX_CELLS) {
    return [
      ...a.map((text) => ({ kind: 'remove' as const, text })),
      ...b.map((text) => ({ kind: 'add' as const, text })),
    ];
  }
  // lcs[i][j] = LCS length of a[i..] and b[j..]
  const w = b.length + 1;
  const lcs = new Uint32Array((a.length + 1) * w);
  for (let i = a.length - 1; i >= 0; i--) {
    for (let j = b.length - 1; j >= 0; j--) {
      lcs[i * w + j] =
        a[i] === b[j]
          ? (lcs[(i + 1) * w + j + 1] ?? 0) + 1
          : Math.max(lcs[(i + 1) * w + j] ?? 0, lcs[i * w + j + 1] ?? 0);
    }
  }
  const out: DiffLine[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length && j < b.length) {
    if (a[i] === b[j]) {
      out.push({ kind: 'context', text: a[i] ?? '' });
      i++;
      j++;
    } else if ((lcs[(i + 1) * w + j] ?? 0) >= (lcs[i * w + j + 1] ?? 0)) {
      out.push({ kind: 'remove', text: a[i] ?? '' });
      i++;
    } else {
      out.push({ kind: 'add', text: b[j] ?? '' });
      j++;
    }
  }
  while (i < a.length) out.push({ kind: 'remove', text: a[i++] ?? '' });
  while (j < b.length) out.push({ kind: 'add', text: b[j++] ?? '' });
  return out;
}

/** The diff an editor call makes, or null when it changes nothing we can show. */
export function editDiff(command: string, edit: FileEditArgs | undefined): DiffLine[] | null {
  if (!edit) return null;
  switch (command) {
    case 'str_replace':
      return diffLines(edit.old_str ?? '', edit.new_str ?? '');
    case 'create':
      return diffLines('', edit.file_text ?? '');
    case 'insert':
      return diffLines('', edit.new_str ?? '');
    default:
      return null;
  }
}
