// Browser sign-in end to end (Supabase mode): Debian's Chromium (headless, playwright-core)
// against a real `lucid serve` whose Supabase Auth is the fake GoTrue, both started by the
// Rust harness `crates/lucid-server/examples/sign_in_e2e_harness.rs`.
//
//   node e2e/sign-in.mjs --harness PATH/sign_in_e2e_harness --lucid PATH/lucid
//
// Signs in with GitHub through the fake provider, lands in the app (account badge), types a
// draft, waits for the silent refresh, reloads (still signed in, draft kept), signs out
// (session revoked at Supabase Auth) and checks the sign-in screen is back.
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const artifacts = join(here, '..', 'e2e-artifacts');
const arg = (name) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : undefined;
};
const harnessPath = arg('--harness');
const lucidPath = arg('--lucid');
if (!harnessPath || !lucidPath) {
  console.error('usage: node e2e/sign-in.mjs --harness PATH --lucid PATH');
  process.exit(2);
}
const started = Date.now();
const log = (msg) => console.log(`[sign-in e2e ${((Date.now() - started) / 1000).toFixed(1)}s] ${msg}`);
function expect(cond, message) {
  if (!cond) throw new Error(message);
}

const harness = spawn(harnessPath, ['--lucid', lucidPath], { stdio: ['pipe', 'pipe', 'inherit'] });
const info = await new Promise((resolve, reject) => {
  const rl = createInterface({ input: harness.stdout });
  const timer = setTimeout(() => reject(new Error('harness did not start within 120 s')), 120_000);
  rl.once('line', (line) => {
    clearTimeout(timer);
    resolve(JSON.parse(line));
  });
  harness.once('exit', (code) => reject(new Error(`harness exited early (${code})`)));
});
log(`lucid serve at ${info.base}`);
const stats = async () => (await fetch(`${info.control}/auth/stats`)).json();

mkdirSync(artifacts, { recursive: true });
const profile = mkdtempSync(join(tmpdir(), 'lucid-sign-in-profile-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  headless: true,
  args: [
    '--no-sandbox',
    '--disable-gpu',
    '--disable-background-networking',
    '--disable-component-update',
    '--no-first-run',
    '--disable-quic',
    '--disable-sync',
  ],
  viewport: { width: 1200, height: 900 },
});
const page = context.pages()[0] ?? (await context.newPage());
page.setDefaultTimeout(15_000);
const pageErrors = [];
page.on('pageerror', (e) => pageErrors.push(e.message));

let failed = false;
const overall = setTimeout(() => {
  log('overall limit of 120 s reached');
  process.exit(1);
}, 120_000);
try {
  // 1. The sign-in screen offers the three providers.
  await page.goto(`${info.base}/`);
  await page.getByRole('heading', { name: 'Sign in to Lucid' }).waitFor();
  for (const p of ['Google', 'GitHub', 'GitLab']) {
    await page.getByRole('link', { name: `Continue with ${p}` }).waitFor();
  }
  await page.screenshot({ path: join(artifacts, 'sign-in.png') });
  log('ok   sign-in screen with three providers');

  // 2. Through the fake provider and back into the app.
  await page.getByRole('link', { name: 'Continue with GitHub' }).click();
  await page.getByRole('heading', { name: 'New task' }).waitFor();
  const account = page.getByRole('region', { name: 'Account' });
  await account.getByText('Grace Hopper').waitFor();
  await account.getByText('grace@example.test').waitFor();
  expect(!page.url().includes('session='), `the session stays out of the address bar: ${page.url()}`);
  const stored = await page.evaluate(() => JSON.parse(localStorage.getItem('lucid.session') ?? 'null'));
  expect(stored?.user?.provider === 'github', `stored session: ${JSON.stringify(stored?.user)}`);
  // The API accepts the session (the history page loads without a 401).
  const chats = await page.evaluate(async (token) => (await fetch('/api/v1/chats', { headers: { authorization: `Bearer ${token}` } })).status, stored.accessToken);
  expect(chats === 200, `GET /api/v1/chats with the session: ${chats}`);
  await page.screenshot({ path: join(artifacts, 'signed-in.png') });
  log('ok   signed in with GitHub, account badge shown');

  // 3. A draft, then the silent refresh (access tokens live 63 s, refreshed 60 s early).
  await page.getByLabel('What should Lucid do?').fill('half-typed task that must survive');
  const before = (await stats()).refreshes;
  const deadline = Date.now() + 20_000;
  while ((await stats()).refreshes === before) {
    expect(Date.now() < deadline, 'no silent refresh within 20 s');
    await new Promise((r) => setTimeout(r, 250));
  }
  const refreshed = await page.evaluate(() => JSON.parse(localStorage.getItem('lucid.session') ?? 'null'));
  expect(refreshed.refreshToken !== stored.refreshToken, 'the page stored the rotated refresh token');
  log('ok   silent refresh rotated the session');

  // 4. Reload: still signed in, the draft is still there.
  await page.reload();
  await page.getByRole('heading', { name: 'New task' }).waitFor();
  await account.getByText('Grace Hopper').waitFor();
  const draft = await page.getByLabel('What should Lucid do?').inputValue();
  expect(draft === 'half-typed task that must survive', `draft after reload: ${draft}`);
  log('ok   reload keeps the session and the draft');

  // 5. Sign out: revoked at Supabase Auth, back to the sign-in screen.
  const live = (await stats()).liveSessions;
  await account.getByRole('button', { name: 'Sign out' }).click();
  await page.getByRole('heading', { name: 'Sign in to Lucid' }).waitFor();
  const outDeadline = Date.now() + 10_000;
  while ((await stats()).liveSessions !== live - 1) {
    expect(Date.now() < outDeadline, 'the session was not revoked at Supabase Auth');
    await new Promise((r) => setTimeout(r, 100));
  }
  expect((await page.evaluate(() => localStorage.getItem('lucid.session'))) === null, 'the session is forgotten');
  await page.reload();
  await page.getByRole('heading', { name: 'Sign in to Lucid' }).waitFor();
  log('ok   sign-out revoked the session');
  expect(pageErrors.length === 0, `page errors: ${pageErrors.join('; ')}`);
} catch (e) {
  failed = true;
  log(`FAIL ${e?.stack ?? e}`);
  await page.screenshot({ path: join(artifacts, 'sign-in-failure.png') }).catch(() => {});
} finally {
  clearTimeout(overall);
  await context.close();
  rmSync(profile, { recursive: true, force: true });
  harness.stdin.end();
  await new Promise((r) => harness.once('exit', r));
}
log(failed ? 'sign-in e2e FAILED' : 'sign-in e2e passed');
process.exit(failed ? 1 : 0);
