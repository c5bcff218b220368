// Sizes of the built UI's JavaScript that the first page load fetches (index.html's module
// script and its static imports), raw and gzip-compressed. Fails above the budget.
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';

const BUDGET = 300 * 1024;
const dist = 'dist';
const html = readFileSync(join(dist, 'index.html'), 'utf8');
const refs = [...html.matchAll(/(?:src|href)="\/ui\/(assets\/[^"]+\.js)"/g)].map((m) => m[1]);
let raw = 0;
let gz = 0;
for (const ref of refs) {
  const bytes = readFileSync(join(dist, ref));
  raw += bytes.length;
  gz += gzipSync(bytes, { level: 9 }).length;
}
const css = readdirSync(join(dist, 'assets')).filter((f) => f.endsWith('.css'));
const cssGz = css.reduce((n, f) => n + gzipSync(readFileSync(join(dist, 'assets', f)), { level: 9 }).length, 0);
console.log(`first-load JS: ${refs.length} file(s), ${(raw / 1024).toFixed(1)} KiB raw, ${(gz / 1024).toFixed(1)} KiB gzip (budget ${BUDGET / 1024} KiB); CSS ${(cssGz / 1024).toFixed(1)} KiB gzip`);
if (gz > BUDGET) {
  console.error('over budget');
  process.exit(1);
}
