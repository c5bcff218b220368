// Browser end-to-end test of the Lucid UI: Debian's Chromium (headless, driven by
// playwright-core) against a real `lucid serve` with the scripted LLM, the real Docker sandbox
// (busybox test image, no network) and a fake GitHub, all started by the Rust harness
// `crates/lucid-server/examples/ui_e2e_harness.rs`.
//
//   node e2e/run.mjs --harness PATH/ui_e2e_harness --lucid PATH/lucid
//
// Screenshots of every page go to ui/e2e-artifacts/ (gitignored). Fails on any failed check,
// serious/critical axe-core violation or unexpected console error.
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const require = createRequire(import.meta.url);
const here = dirname(fileURLToPath(import.meta.url));
const artifacts = join(here, '..', 'e2e-artifacts');
const arg = (name) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : undefined;
};
const harnessPath = arg('--harness');
const lucidPath = arg('--lucid');
if (!harnessPath || !lucidPath) {
  console.error('usage: node e2e/run.mjs --harness PATH --lucid PATH');
  process.exit(2);
}
const OVERALL_LIMIT_MS = 240_000;
const started = Date.now();
const results = [];
let failures = 0;

function log(msg) {
  console.log(`[e2e ${((Date.now() - started) / 1000).toFixed(1)}s] ${msg}`);
}

async function step(name, fn) {
  const t0 = Date.now();
  try {
    await fn();
    results.push({ name, ok: true, ms: Date.now() - t0 });
    log(`ok   ${name} (${Date.now() - t0} ms)`);
  } catch (e) {
    failures += 1;
    results.push({ name, ok: false, ms: Date.now() - t0, error: String(e?.stack ?? e) });
    log(`FAIL ${name}: ${e?.stack ?? e}`);
    throw e;
  }
}

function expect(cond, message) {
  if (!cond) throw new Error(message);
}

// ---- harness ----
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

async function pushSteps(steps) {
  const r = await fetch(`${info.control}/llm/steps`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(steps),
  });
  expect(r.ok, `pushing LLM steps failed: ${r.status}`);
}

async function setTitleAnswer(step) {
  const r = await fetch(`${info.control}/llm/title`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(step),
  });
  expect(r.ok, `setting the title answer failed: ${r.status}`);
}

// ---- browser ----
mkdirSync(artifacts, { recursive: true });
const profile = mkdtempSync(join(tmpdir(), 'lucid-e2e-profile-'));
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
  viewport: { width: 1400, height: 1000 },
  // axe-core is injected as a script: the UI's CSP (script-src 'self') would refuse it.
  bypassCSP: true,
});
const page = context.pages()[0] ?? (await context.newPage());
page.setDefaultTimeout(15_000);

const consoleErrors = [];
let allowedFailures = []; // [method, path suffix] of requests expected to fail in this step
page.on('console', (msg) => {
  if (msg.type() !== 'error') return;
  const url = msg.location()?.url ?? '';
  if (msg.text().startsWith('Failed to load resource') && allowedFailures.some((s) => url.endsWith(s))) return;
  consoleErrors.push(`${msg.text()} (${url})`);
});
page.on('pageerror', (e) => consoleErrors.push(`page error: ${e.message}`));

const axeSource = require.resolve('axe-core/axe.min.js');
const axeReport = {};
async function audit(name) {
  await page.screenshot({ path: join(artifacts, `${name}.png`), fullPage: true });
  await page.addScriptTag({ path: axeSource });
  const result = await page.evaluate(async () => {
    const r = await window.axe.run(document, { runOnly: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice'] });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.length, target: v.nodes[0]?.target }));
  });
  axeReport[name] = result;
  const serious = result.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  expect(serious.length === 0, `axe: serious violations on ${name}: ${JSON.stringify(serious)}`);
}

const timeline = page.getByTestId('timeline');
const itemsCount = async () => Number(await timeline.getAttribute('data-count'));
const lastSeq = async () => Number(await timeline.getAttribute('data-last-seq'));
const sessionStatus = page.getByTestId('session-status');

const TASK = 'Say hello from a script, then write hello.py';
// What the session's model answers when asked for the chat's title.
const TITLE = 'Hello script session';
let sessionUrl = '';

const overall = setTimeout(() => {
  log(`overall limit of ${OVERALL_LIMIT_MS / 1000} s reached`);
  process.exit(1);
}, OVERALL_LIMIT_MS);

try {
  await step('the printed link signs in and leaves no token in the address bar', async () => {
    await page.goto(info.link);
    await page.getByRole('heading', { name: 'New task' }).waitFor();
    expect(!page.url().includes('token'), `token still in the URL: ${page.url()}`);
    const stored = await page.evaluate(() => localStorage.getItem('lucid.token'));
    expect(stored && stored.split('.').length === 3, 'token not stored');
    await page.getByRole('option', { name: 'anthropic' }).waitFor({ state: 'attached' });
    const googleDisabled = await page.getByRole('option', { name: 'google (not configured)' }).isDisabled();
    expect(googleDisabled, 'an unconfigured provider is selectable');
    await audit('new-task');
  });

  await step('a task without a repository streams command output and an edit diff', async () => {
    await setTitleAnswer({ text: TITLE });
    await pushSteps([
      { tool: 'execute_bash', args: { command: "echo hello from lucid && printf '\\033[31mred\\033[0m\\n'" } },
      { tool: 'str_replace_editor', args: { command: 'create', path: '/workspace/hello.py', file_text: "print('hello')\n" } },
      {
        tool: 'str_replace_editor',
        args: { command: 'str_replace', path: '/workspace/hello.py', old_str: "print('hello')", new_str: "print('hello, world')" },
      },
      { text: 'Done: created **hello.py**.' },
    ]);
    const box = page.getByLabel('What should Lucid do?');
    await box.fill(TASK);
    await box.press('Enter');
    await page.waitForURL(/\/ui\/s\/[A-Za-z0-9-]+$/);
    sessionUrl = page.url();
    const output = page.getByTestId('command-output').filter({ hasText: 'hello from lucid' });
    await output.waitFor({ timeout: 60_000 });
    const red = output.locator('span', { hasText: 'red' });
    const color = await red.evaluate((el) => el.style.color);
    expect(color.includes('--ansi-red'), `ANSI red not kept: ${color}`);
    const command = page.getByTestId('command').filter({ hasText: 'echo hello from lucid' });
    await command.getByTestId('exit-code').filter({ hasText: 'exit 0' }).waitFor();
    const diff = page.getByTestId('diff').filter({ hasText: "print('hello, world')" });
    await diff.locator('.diff-add', { hasText: "print('hello, world')" }).waitFor();
    await diff.locator('.diff-remove', { hasText: "print('hello')" }).waitFor();
    await page.getByTestId('assistant-message').filter({ hasText: 'Done: created hello.py.' }).waitFor();
    await sessionStatus.filter({ hasText: 'completed' }).waitFor({ timeout: 30_000 });
    await page.getByTestId('connection').filter({ hasText: 'Live' }).waitFor();
    const tokens = await page.getByTestId('tokens').textContent();
    expect(/\d+ in \/ \d+ out/.test(tokens ?? ''), `no token counts: ${tokens}`);
  });

  await step('the file explorer opens a file the agent wrote', async () => {
    await page.getByRole('navigation', { name: 'File explorer' }).getByRole('button', { name: 'hello.py' }).click();
    await page.getByTestId('file-viewer').filter({ hasText: "print('hello, world')" }).waitFor();
    await audit('workspace');
  });

  await step('Esc stops a running sleep within 2 s', async () => {
    await pushSteps([{ tool: 'execute_bash', args: { command: 'sleep 30' } }]);
    const followUp = page.getByLabel('Follow-up message');
    await followUp.fill('now sleep for a while');
    await followUp.press('Enter');
    const sleeping = page.getByTestId('command').filter({ hasText: '$ sleep 30' });
    await sleeping.getByTestId('exit-code').filter({ hasText: 'running' }).waitFor({ timeout: 30_000 });
    await page.waitForTimeout(300);
    const t0 = Date.now();
    await page.keyboard.press('Escape');
    await sleeping.getByTestId('exit-code').filter({ hasText: 'stopped' }).waitFor({ timeout: 5_000 });
    const took = Date.now() - t0;
    expect(took <= 2_000, `stopping took ${took} ms`);
    log(`stopped in ${took} ms`);
    await sessionStatus.filter({ hasText: /stopped|completed/ }).waitFor({ timeout: 10_000 });
  });

  await step('a follow-up gets an answer', async () => {
    await pushSteps([{ text: 'Follow-up answered.' }]);
    const followUp = page.getByLabel('Follow-up message');
    await followUp.fill('thanks, anything else?');
    await followUp.press('Enter');
    await page.getByTestId('assistant-message').filter({ hasText: 'Follow-up answered.' }).waitFor({ timeout: 30_000 });
  });

  await step('streamed text shows before the message completes, also after a reload', async () => {
    const answer = `Streaming answer part one. ${'and then some more words '.repeat(10)}THE END.`;
    await pushSteps([{ pacedMs: 400, then: { thinking: 'Pondering how to answer slowly.', then: { text: answer } } }]);
    const followUp = page.getByLabel('Follow-up message');
    await followUp.fill('write slowly');
    await followUp.press('Enter');
    const streaming = page.getByTestId('assistant-streaming');
    const final = page.getByTestId('assistant-message').filter({ hasText: 'THE END.' });
    // The model's thinking streams first, collapsed.
    const thinking = streaming.getByTestId('streaming-thinking');
    await thinking.filter({ hasText: 'Pondering how to answer slowly.' }).waitFor({ state: 'attached', timeout: 30_000 });
    expect(!(await thinking.evaluate((el) => el.open)), 'thinking is not collapsed');
    await streaming.filter({ hasText: 'Streaming answer part one.' }).waitFor({ timeout: 30_000 });
    expect((await final.count()) === 0, 'the stored message came before any partial text was seen');
    // A client attaching mid-message gets the text so far (the beginning is not re-sent as deltas).
    await page.reload();
    await streaming.filter({ hasText: 'Streaming answer part one.' }).waitFor({ timeout: 10_000 });
    expect((await final.count()) === 0, 'the message completed before the reload was checked');
    await thinking.filter({ hasText: 'Pondering how to answer slowly.' }).waitFor({ state: 'attached' });
    await audit('workspace-streaming');
    await final.waitFor({ timeout: 30_000 });
    await streaming.waitFor({ state: 'detached' });
    expect((await final.count()) === 1, 'the streamed message is shown twice');
    await sessionStatus.filter({ hasText: 'completed' }).waitFor({ timeout: 10_000 });
  });

  await step('a reload mid-run continues the transcript without duplicates', async () => {
    await pushSteps([{ tool: 'execute_bash', args: { command: 'sleep 3; echo after-reload' } }, { text: 'Slow step done.' }]);
    const followUp = page.getByLabel('Follow-up message');
    await followUp.fill('run the slow step');
    await followUp.press('Enter');
    await page.getByTestId('command').filter({ hasText: 'sleep 3; echo after-reload' }).waitFor({ timeout: 30_000 });
    await page.reload();
    await page.getByTestId('assistant-message').filter({ hasText: 'Slow step done.' }).waitFor({ timeout: 30_000 });
    await page.getByTestId('command-output').filter({ hasText: 'after-reload' }).waitFor();
    expect((await page.getByTestId('user-message').filter({ hasText: 'run the slow step' }).count()) === 1, 'duplicated follow-up');
    await sessionStatus.filter({ hasText: 'completed' }).waitFor({ timeout: 10_000 });
    const afterReload = { count: await itemsCount(), seq: await lastSeq() };
    // A fresh replay of the whole log gives exactly the same timeline.
    await page.goto(info.base + '/ui/history');
    await page.goto(sessionUrl);
    await page.getByTestId('assistant-message').filter({ hasText: 'Slow step done.' }).waitFor({ timeout: 30_000 });
    const fresh = { count: await itemsCount(), seq: await lastSeq() };
    expect(
      afterReload.count === fresh.count && afterReload.seq === fresh.seq,
      `after reload ${JSON.stringify(afterReload)} vs fresh replay ${JSON.stringify(fresh)}`,
    );
  });

  await step('History shows a title the model writes while it is open', async () => {
    // This session's title comes late: the page shows the task, then the title without a reload.
    await setTitleAnswer({ delayMs: 2500, then: { text: 'Greeting once more' } });
    await pushSteps([{ text: 'Hi again.' }]);
    await page.getByRole('link', { name: 'New task' }).click();
    const box = page.getByLabel('What should Lucid do?');
    await box.fill('Say hi once more please');
    await box.press('Enter');
    await page.waitForURL(/\/ui\/s\/[A-Za-z0-9-]+$/);
    await page.getByRole('link', { name: 'History' }).click();
    const rows = page.getByTestId('history-row');
    await rows.filter({ hasText: 'Say hi once more please' }).waitFor();
    await rows.filter({ hasText: 'Greeting once more' }).waitFor({ timeout: 15_000 });
    expect((await rows.filter({ hasText: 'Say hi once more please' }).count()) === 0, 'the task is still shown');
  });

  await step('History finds, renames, reopens and deletes the session', async () => {
    await page.getByRole('link', { name: 'History' }).click();
    // Titled by the session's model from its task.
    await page.getByLabel('Search').fill('hello script');
    const row = page.getByTestId('history-row').filter({ hasText: TITLE });
    await row.waitFor();
    await audit('history');
    await row.getByRole('button', { name: `Rename ${TITLE}` }).click();
    const input = page.getByLabel('New title');
    await input.fill('E2E renamed session');
    await input.press('Enter');
    await page.getByLabel('Search').fill('renamed');
    const renamed = page.getByTestId('history-row').filter({ hasText: 'E2E renamed session' });
    await renamed.waitFor();
    await renamed.getByRole('link', { name: 'E2E renamed session' }).click();
    await page.getByTestId('assistant-message').filter({ hasText: 'Slow step done.' }).waitFor({ timeout: 30_000 });
  });

  await step('a session reopened from History is continued: it sees its files, seq goes on', async () => {
    const before = await lastSeq();
    await pushSteps([{ tool: 'execute_bash', args: { command: 'cat /workspace/hello.py' } }, { text: 'Continued after reopening.' }]);
    const followUp = page.getByLabel('Follow-up message');
    await followUp.fill('now show hello.py again');
    await followUp.press('Enter');
    await page.getByTestId('command-output').filter({ hasText: "print('hello, world')" }).last().waitFor({ timeout: 60_000 });
    await page.getByTestId('assistant-message').filter({ hasText: 'Continued after reopening.' }).waitFor({ timeout: 30_000 });
    await sessionStatus.filter({ hasText: 'completed' }).waitFor({ timeout: 30_000 });
    expect((await lastSeq()) > before, 'seq did not continue');
    expect((await page.getByTestId('user-message').filter({ hasText: 'now show hello.py again' }).count()) === 1, 'duplicated message');
  });

  await step('History deletes the session after confirmation', async () => {
    const renamed = page.getByTestId('history-row').filter({ hasText: 'E2E renamed session' });
    // Its files are listed before it is deleted (a listing still in flight would get a 404).
    await page.getByRole('navigation', { name: 'File explorer' }).getByRole('button', { name: 'hello.py' }).waitFor();
    await page.getByRole('link', { name: 'History' }).click();
    await page.getByLabel('Search').fill('renamed');
    await renamed.getByRole('button', { name: 'Delete E2E renamed session' }).click();
    await renamed.getByRole('group', { name: 'Confirm delete' }).getByRole('button', { name: 'Delete' }).click();
    await renamed.waitFor({ state: 'detached' });
  });

  await step('a rejected GitHub token shows the forge\'s reason; a good one connects', async () => {
    await page.getByRole('link', { name: 'Integrations' }).click();
    await page.getByLabel('Personal access token').fill('fake-wrong-token-0000');
    allowedFailures = ['/api/v1/integrations'];
    await page.getByRole('button', { name: 'Connect' }).click();
    const error = page.getByTestId('integration-error');
    await error.waitFor();
    const text = await error.textContent();
    expect(text?.includes('Bad credentials'), `forge reason missing: ${text}`);
    allowedFailures = [];
    await page.getByLabel('Personal access token').fill(info.githubToken);
    await page.getByRole('button', { name: 'Connect' }).click();
    const connected = page.getByTestId('integration-github');
    await connected.filter({ hasText: 'octocat' }).waitFor();
    await connected.filter({ hasText: '5 repositories' }).waitFor();
    await audit('integrations');
  });

  await step('a self-hosted GitLab: a bad URL and a rejected token are shown, a good one connects', async () => {
    await page.getByRole('link', { name: 'Integrations' }).click();
    await page.getByLabel('Service').selectOption('gitlab');
    const url = page.getByLabel(/GitLab URL/);
    const token = page.getByLabel('Personal access token');
    const error = page.getByTestId('integration-error');
    allowedFailures = ['/api/v1/integrations'];
    // Plain http to a host that is not loopback: refused before anything is sent to it.
    await url.fill('http://gitlab.example.com/gitlab');
    await token.fill(info.gitlabToken);
    await page.getByRole('button', { name: 'Connect', exact: true }).click();
    await error.filter({ hasText: 'must use https://' }).waitFor();
    // The instance's own answer to a wrong token.
    await url.fill(info.gitlabUrl);
    await token.fill('fake-wrong-gitlab-token-0000');
    await page.getByRole('button', { name: 'Connect', exact: true }).click();
    await error.filter({ hasText: '401 Unauthorized' }).waitFor();
    allowedFailures = [];
    await token.fill(info.gitlabToken);
    await page.getByRole('button', { name: 'Connect', exact: true }).click();
    const connected = page.getByTestId('integration-gitlab');
    await connected.filter({ hasText: 'gitlab-user' }).waitFor();
    await connected.filter({ hasText: info.gitlabUrl }).waitFor();
    await connected.filter({ hasText: '3 repositories' }).waitFor();
    await error.waitFor({ state: 'detached' });
    await audit('integrations-gitlab');
    // The repository picker searches both forges.
    await page.getByRole('link', { name: 'New task' }).click();
    await page.getByLabel('Search repositories').fill('project-002');
    await page.getByRole('radio', { name: /lucid-group\/backend\/project-002 \(gitlab/ }).waitFor();
    // Disconnect it again (both fakes listen on 127.0.0.1, and a clone picks its token by host).
    await page.getByRole('link', { name: 'Integrations' }).click();
    await page.getByTestId('integration-gitlab').getByRole('button', { name: 'Disconnect' }).click();
    await page.getByTestId('integration-gitlab').waitFor({ state: 'detached' });
    await page.getByTestId('integration-github').waitFor();
  });

  await step('a repository session: pick repo + branch, the agent edits, a pull request opens', async () => {
    await page.getByRole('link', { name: 'New task' }).click();
    await page.getByLabel('Search repositories').fill('repo-001');
    await page.getByRole('radio', { name: /octocat\/repo-001/ }).check();
    const branch = page.getByLabel('Branch of octocat/repo-001');
    await branch.waitFor();
    await page.waitForFunction(() => document.querySelectorAll('#branch option').length > 1);
    const options = await branch.locator('option').allTextContents();
    expect(options.length >= 2 && options.includes('main'), `branches: ${options}`);
    await branch.selectOption(options.find((o) => o !== 'main'));
    await audit('new-task-repository');
    await branch.selectOption('main');
    await pushSteps([
      {
        tool: 'str_replace_editor',
        args: {
          command: 'str_replace',
          path: '/workspace/README.md',
          old_str: "A repository for Lucid's UI tests.",
          new_str: "A repository for Lucid's UI tests.\n\nEdited by the agent.",
        },
      },
      { text: 'Edited the README.' },
    ]);
    await page.getByLabel('What should Lucid do?').fill('Edit the README');
    await page.getByRole('button', { name: 'Start task' }).click();
    await page.waitForURL(/\/ui\/s\/[A-Za-z0-9-]+$/);
    await page.getByTestId('assistant-message').filter({ hasText: 'Edited the README.' }).waitFor({ timeout: 60_000 });
    await page.getByTestId('diff').locator('.diff-add', { hasText: 'Edited by the agent.' }).waitFor();
    await page.getByRole('navigation', { name: 'File explorer' }).getByRole('button', { name: 'README.md' }).click();
    await page.getByTestId('file-viewer').filter({ hasText: 'Edited by the agent.' }).waitFor();
    await page.getByRole('button', { name: 'Create pull request' }).click();
    const dialog = page.getByRole('dialog', { name: /Create pull request/ });
    await dialog.getByLabel('Title').fill('Lucid: edit the README');
    await dialog.getByLabel('Target branch').fill('main');
    await dialog.getByRole('button', { name: 'Create pull request' }).click();
    await dialog.getByRole('link', { name: 'https://github.com/octocat/repo-001/pull/1' }).waitFor({ timeout: 30_000 });
    await audit('pull-request');
  });

  await step('Settings shows the engine status and switches the theme', async () => {
    await page.getByRole('link', { name: 'Settings' }).click();
    const facts = page.getByTestId('engine-status');
    await facts.filter({ hasText: 'docker' }).waitFor();
    await facts.filter({ hasText: 'anthropic: configured' }).waitFor();
    await page.getByLabel('Theme').selectOption('dark');
    expect((await page.evaluate(() => document.documentElement.dataset.theme)) === 'dark', 'theme not applied');
    await audit('settings-dark');
    await page.getByLabel('Theme').selectOption('light');
  });

  await step(`a replayed ${info.benchEvents}-event transcript renders and scrolls smoothly`, async () => {
    const t0 = Date.now();
    await page.goto(`${info.base}/ui/s/${info.benchSession}`);
    await page.waitForFunction(
      (n) => Number(document.querySelector('[data-testid=timeline]')?.getAttribute('data-last-seq')) === n,
      info.benchEvents,
      { timeout: 60_000 },
    );
    await page.getByTestId('status-line').filter({ hasText: 'Task completed.' }).waitFor();
    const renderMs = Date.now() - t0;
    // Scroll from the bottom to the top in steps, measuring frame times.
    const frames = await page.evaluate(async () => {
      const el = document.querySelector('[data-testid=timeline]');
      const times = [];
      let last = performance.now();
      for (let i = 0; i < 60; i++) {
        el.scrollTop = el.scrollHeight * (1 - i / 59);
        await new Promise((r) => requestAnimationFrame(r));
        const now = performance.now();
        times.push(now - last);
        last = now;
      }
      times.sort((a, b) => a - b);
      return { p50: times[30], p95: times[57], max: times[59], rendered: document.querySelectorAll('[data-testid=timeline] .row').length };
    });
    log(`replay of ${info.benchEvents} events rendered in ${renderMs} ms; scroll frames p50 ${frames.p50.toFixed(1)} ms, p95 ${frames.p95.toFixed(1)} ms; ${frames.rendered} rows in the DOM`);
    expect(frames.rendered < 200, `list not virtualised: ${frames.rendered} rows`);
    expect(renderMs < 15_000, `replay render took ${renderMs} ms`);
    results.push({ name: 'benchmark', renderMs, frames });
    await page.screenshot({ path: join(artifacts, 'replay-5000.png') });
  });

  await step('an expired sign-in shows how to get a new one', async () => {
    await page.evaluate(() => localStorage.setItem('lucid.token', 'x.eyJleHAiOjEwMDB9.y'));
    await page.goto(info.base + '/ui/');
    await page.getByRole('heading', { name: 'Your sign-in has expired' }).waitFor();
    await page.getByText('lucid serve --print-token').waitFor();
    await audit('signin-expired');
  });

  await step('no console errors', async () => {
    expect(consoleErrors.length === 0, `console errors:\n${consoleErrors.join('\n')}`);
  });
} catch {
  // reported by step()
} finally {
  clearTimeout(overall);
  writeFileSync(join(artifacts, 'report.json'), JSON.stringify({ results, axe: axeReport, consoleErrors }, null, 2));
  await page.screenshot({ path: join(artifacts, 'last.png') }).catch(() => {});
  await context.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
  harness.stdin.end();
  await new Promise((resolve) => {
    const t = setTimeout(() => {
      harness.kill('SIGKILL');
      resolve();
    }, 25_000);
    harness.once('exit', () => {
      clearTimeout(t);
      resolve();
    });
  });
}
const passed = results.filter((r) => r.ok).length;
console.log(`${passed} passed, ${failures} failed`);
process.exit(failures === 0 && passed > 0 ? 0 : 1);
