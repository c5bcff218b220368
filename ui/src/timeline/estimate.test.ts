import { describe, expect, it } from 'vitest';
import { estimateHeight } from './estimate';
import type { Item } from './model';

const command = (lines: number): Item => ({
  key: `c${lines}`,
  type: 'command',
  seq: 1,
  command: 'make',
  output: Array.from({ length: lines }, (_, i) => `line ${i}`).join('\n'),
  exitCode: 0,
  timedOut: false,
  interrupted: false,
  totalBytes: 0,
});

describe('row height guesses', () => {
  it('grow with what a row shows and stop where output is folded', () => {
    expect(estimateHeight(command(10))).toBeLessThan(estimateHeight(command(40)));
    // Folded to 20 + 20 lines and a "show all" line: 60 and 600 lines look the same.
    expect(estimateHeight(command(60))).toBe(estimateHeight(command(600)));
    // Close to the measured height of a folded 60-line output (541 px in the default theme).
    expect(Math.abs(estimateHeight(command(60)) - 541)).toBeLessThan(60);
    const thought: Item = { key: 't', type: 'thought', seq: 2, thought: 'x' };
    expect(estimateHeight(thought)).toBeLessThan(estimateHeight(command(1)));
    expect(estimateHeight(undefined)).toBe(40);
  });

  it('is computed once per row', () => {
    const item = command(60);
    const first = estimateHeight(item);
    if (item.type === 'command') item.output = 'changed in place';
    expect(estimateHeight(item)).toBe(first);
  });
});
