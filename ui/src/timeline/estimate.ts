// A first guess of each timeline row's height (px) before it is measured, from its content.
// Close guesses keep the virtualised list from re-measuring and shifting while it scrolls
// (every correction re-runs the list's layout of all rows above). Calibrated on the default
// theme; rows are measured once shown, so a wrong guess costs a shift, never a wrong layout.
import { foldLines } from './fold';
import type { Item } from './model';

const OUTPUT_LINE = 12;
const TEXT_LINE = 14;

function lineCount(text: string): number {
  let n = 1;
  for (let i = text.indexOf('\n'); i !== -1; i = text.indexOf('\n', i + 1)) n += 1;
  return n;
}

const cache = new WeakMap<Item, number>();

/** The guess for `item` (computed once per item object: the list asks for all rows often). */
export function estimateHeight(item: Item | undefined): number {
  if (!item) return 40;
  let h = cache.get(item);
  if (h === undefined) {
    h = guess(item);
    cache.set(item, h);
  }
  return h;
}

function guess(item: Item): number {
  switch (item.type) {
    case 'command': {
      if (!item.output) return 44;
      const folded = foldLines(item.output);
      const shown = folded.hidden > 0 ? lineCount(folded.head) + lineCount(folded.tail) + 1 : lineCount(item.output);
      return 50 + shown * OUTPUT_LINE;
    }
    case 'edit': {
      const e = item.edit;
      const lines = e ? lineCount(e.old_str ?? '') + lineCount(e.new_str ?? e.file_text ?? '') : 0;
      return 50 + lines * 15;
    }
    case 'assistant':
    case 'finish':
      return 24 + lineCount(item.type === 'assistant' ? item.content : item.message) * TEXT_LINE;
    case 'user':
      return 40 + lineCount(item.content) * 20;
    case 'streaming':
      return 48 + lineCount(item.text) * TEXT_LINE;
    case 'thought':
    case 'condensation':
    case 'status':
    case 'progress':
      return 38;
    case 'error':
      return 90;
  }
}
