// The dashboard in a real browser: Debian's Chromium, driven by playwright-core, against
// a running wafleet standalone with the simulated network (`cargo test --test dashboard`
// starts one and runs this). Environment:
//   WAFLEET_URL   the standalone's base URL (http://127.0.0.1:PORT)
//   WAFLEET_KEY   an admin key
//   CHROMIUM      the browser (default /usr/bin/chromium)
//   SHOTS         a folder for screenshots (optional)
//   FLEET         how many devices to create for the fleet check (default 0: skipped)
// Exits 0 when every step passed; the last line of stdout is a JSON summary.

import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { chromium } from 'playwright-core';

const axeSource = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

const base = process.env.WAFLEET_URL;
const key = process.env.WAFLEET_KEY;
const shots = process.env.SHOTS;
const fleet = Number(process.env.FLEET || 0);
if (!base || !key) throw new Error('WAFLEET_URL and WAFLEET_KEY are required');
const origin = new URL(base).origin;
const WAIT = 20000;
const summary = {};

async function call(method, path, body) {
  const response = await fetch(new URL(path, base), {
    method,
    headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(WAIT),
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

function step(name) {
  console.log(`step: ${name}`);
}

async function shot(page, name) {
  if (!shots) return;
  mkdirSync(shots, { recursive: true });
  await page.screenshot({ path: join(shots, name) });
}

/**
 * axe-core's WCAG 2 A and AA rules (contrast, labels, names, roles ...) on what the page
 * shows now; any violation fails the run. Run through the DevTools protocol, which the
 * page's content security policy does not cover.
 */
async function accessible(page, name) {
  await page.evaluate(axeSource);
  const result = await page.evaluate(() => window.axe.run(document, { runOnly: ['wcag2a', 'wcag2aa'] }));
  const found = result.violations.map((v) => `${name}: ${v.id} (${v.impact}): ${v.help} at ${v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join(', ')}`);
  if (found.length) throw new Error(`accessibility:\n${found.join('\n')}`);
  summary.pages_checked = (summary.pages_checked || 0) + 1;
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});
const foreign = [];
const errors = [];
try {
  const context = await browser.newContext({ viewport: { width: 1366, height: 768 } });
  context.setDefaultTimeout(WAIT);
  const page = await context.newPage();
  page.on('request', (request) => {
    const url = request.url();
    if (!url.startsWith('blob:') && !url.startsWith('data:') && new URL(url).origin !== origin) foreign.push(url);
  });
  page.on('pageerror', (error) => errors.push(String(error)));
  page.on('console', (message) => {
    // A refused API call shows in the console as a failed resource; the page shows those itself.
    if (message.type() === 'error' && !message.text().startsWith('Failed to load resource')) errors.push(message.text());
  });

  step('log in with a key');
  await page.goto(`${base}/ui/`);
  await accessible(page, 'login');
  await page.getByTestId('login-key').fill(key);
  await page.getByTestId('login-submit').click();
  await page.getByTestId('device-create-name').waitFor();
  // Set once: still there at the end means the page was never reloaded.
  await page.evaluate(() => { window.wafleetTestMark = 'same page'; });

  step('create a device and see its QR code');
  const device = 'ui-desk';
  const phone = '6281100000001';
  await page.getByTestId('device-create-name').fill('Front desk');
  await page.getByTestId('device-create-id').fill(device);
  await page.getByTestId('device-create-submit').click();
  await page.getByTestId(`device-row-${device}`).waitFor();
  await page.getByTestId(`device-qr-${device}`).waitFor();
  await accessible(page, 'QR dialog');
  await shot(page, 'qr.png');

  step('the QR code shown is replaced when it rotates');
  const first = await page.getByTestId(`device-qr-${device}`).innerHTML();
  await page.waitForFunction(
    ({ id, before }) => {
      const qr = document.querySelector(`[data-testid="device-qr-${id}"]`);
      return qr && qr.innerHTML !== before;
    },
    { id: device, before: first },
    { timeout: 30000 },
  );

  step('scan it through /sim/scan; READY appears without a reload');
  // The code may rotate between reading and scanning it: then read the new one.
  for (let attempt = 1; ; attempt++) {
    const qr = await call('GET', `/v1/devices/${device}/qr?format=raw`);
    try {
      await call('POST', '/sim/scan', { qr: qr.code, phone });
      break;
    } catch (error) {
      if (attempt === 3) throw error;
    }
  }
  await page.getByTestId(`device-status-${device}`).filter({ hasText: /^READY$/ }).waitFor();
  await page.getByTestId(`device-qr-${device}`).waitFor({ state: 'detached' });
  if (await page.evaluate(() => window.wafleetTestMark) !== 'same page') throw new Error('the page was reloaded');
  await accessible(page, 'devices');
  await shot(page, 'devices.png');

  step('send a message and see it delivered');
  const to = '6281100000002';
  await page.getByTestId(`device-row-${device}`).getByRole('link').click();
  await page.getByTestId('send-to').fill(to);
  await page.getByTestId('send-text').fill('Hello from the dashboard');
  await page.getByTestId('send-submit').click();
  const status = page.locator('[data-testid^="message-status-"]').first();
  await status.filter({ hasText: /^(delivered|read)$/ }).waitFor();
  const inbox = await call('GET', `/sim/phones/${to}/inbox`);
  if (!inbox.some((m) => m.text === 'Hello from the dashboard')) throw new Error('the phone did not get the message');
  await accessible(page, 'device');
  await shot(page, 'device.png');

  step('start a small job and watch its progress reach 100 %');
  await page.goto(`${base}/ui/#/jobs`);
  await page.getByTestId(`job-create-device-${device}`).check();
  await page.getByTestId('job-create-recipients').fill(['6281100000011', '6281100000012', '6281100000013'].join('\n'));
  await page.getByTestId('job-create-text').fill('A small campaign');
  await page.getByTestId('job-create-submit').click();
  const progress = page.locator('[data-testid^="job-progress-"]').first();
  await progress.waitFor();
  await page.waitForFunction(
    () => Number(document.querySelector('[data-testid^="job-progress-"]')?.value) === 100,
    null,
    { timeout: 60000 },
  );
  await accessible(page, 'jobs');
  await shot(page, 'jobs.png');

  step('every page of the navigation opens without errors and passes the accessibility rules');
  for (const link of await page.locator('#nav a').all()) {
    const name = (await link.textContent()).trim();
    await link.click();
    await page.locator('main h1').first().waitFor();
    await page.evaluate(() => new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve))));
    await accessible(page, name);
    await shot(page, `page-${name.toLowerCase()}.png`);
  }

  if (fleet > 0) {
    step(`a fleet of ${fleet} devices: the list, and a status change`);
    const ids = Array.from({ length: fleet }, (_, i) => `fleet-${String(i).padStart(5, '0')}`);
    for (let i = 0; i < ids.length; i += 16) {
      await Promise.all(ids.slice(i, i + 16).map((id) => call('POST', '/v1/devices', { id, name: id })));
    }
    await page.goto(`${base}/ui/#/devices`);
    const started = Date.now();
    await page.reload();
    await page.waitForFunction(
      (n) => document.querySelectorAll('[data-testid^="device-row-"]').length >= n,
      fleet + 1,
      { timeout: 60000 },
    );
    summary.list_render_ms = Date.now() - started;
    const watched = ids[ids.length - 1];
    await page.evaluate((id) => {
      const cell = document.querySelector(`[data-testid="device-status-${id}"]`);
      new MutationObserver(() => {
        if (!window.wafleetSeenAt && cell.textContent !== 'STOPPED') window.wafleetSeenAt = Date.now();
      }).observe(cell, { childList: true, characterData: true, subtree: true });
    }, watched);
    const asked = Date.now();
    await call('POST', `/v1/devices/${watched}/start`);
    await page.waitForFunction(() => window.wafleetSeenAt);
    summary.status_change_ms = (await page.evaluate(() => window.wafleetSeenAt)) - asked;
    summary.fleet = fleet;
    await shot(page, 'fleet.png');
  }

  step('every page at a phone\'s width, without sideways scrolling');
  await page.setViewportSize({ width: 390, height: 844 });
  const paths = await page.locator('#nav a').evaluateAll((links) => links.map((a) => a.getAttribute('href')));
  for (const path of paths) {
    await page.goto(`${base}/ui/${path}`);
    await page.locator('main h1').first().waitFor();
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    if (overflow > 0) throw new Error(`${path} is ${overflow} px wider than a phone`);
  }
  summary.phone_pages = paths.length;

  step('log out, and in with a user\'s name and password');
  await call('POST', '/v1/users', { username: 'ui-operator', password: 'a long enough password', role: 'admin', tenant: 'default' });
  await page.locator('#logout').click();
  // By keyboard: the fields in order, then Enter submits.
  await page.getByTestId('login-username').focus();
  await page.keyboard.type('ui-operator');
  await page.keyboard.press('Tab');
  if (await page.evaluate(() => document.activeElement?.dataset.testid) !== 'login-password') throw new Error('Tab did not reach the password');
  await page.keyboard.type('a long enough password');
  await page.keyboard.press('Enter');
  await page.getByTestId(`device-row-${device}`).waitFor();
  if (!(await page.locator('#who').textContent()).includes('user:ui-operator')) throw new Error('not logged in as the user');
} finally {
  await browser.close();
}
summary.foreign_requests = foreign.length;
summary.page_errors = errors.length;
if (foreign.length) throw new Error(`requests left the gateway's origin: ${foreign.join(', ')}`);
if (errors.length) throw new Error(`the page reported errors: ${errors.join(' | ')}`);
console.log(JSON.stringify({ passed: true, ...summary }));
