// Fails when src/generated/api.ts is not what openapi-typescript makes of the committed
// OpenAPI document (itself checked against the server by `cargo test -p lucid-server --test ui_routes`).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const dir = mkdtempSync(join(tmpdir(), 'lucid-api-'));
const fresh = join(dir, 'api.ts');
try {
  execFileSync('npx', ['openapi-typescript', 'src/generated/openapi.json', '-o', fresh], { stdio: 'pipe' });
  if (readFileSync(fresh, 'utf8') !== readFileSync('src/generated/api.ts', 'utf8')) {
    console.error('src/generated/api.ts is stale: run `npm run gen:api` in ui/');
    process.exit(1);
  }
  console.log('src/generated/api.ts is current');
} finally {
  rmSync(dir, { recursive: true, force: true });
}
