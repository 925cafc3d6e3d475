// The dashboard with a fleet: how fast the device list renders, and how soon a status
// change shows in it while every device changes at once. A benchmark (BENCHMARKS.md), run
// against a running standalone:
//   WAFLEET_URL=http://127.0.0.1:8080 WAFLEET_KEY=... FLEET=1000 node tests/ui/fleet.mjs
// It creates FLEET devices (fleet-00000 ...) if missing, opens the device list three times
// (time to every row), then starts every device at once: each one's STARTING → SCAN_QR
// change is timed from its arrival on a separate SSE stream read here to its badge
// changing in the page. Prints progress, then one JSON line.

import { chromium } from 'playwright-core';

const base = process.env.WAFLEET_URL;
const key = process.env.WAFLEET_KEY;
const fleet = Number(process.env.FLEET || 1000);
if (!base || !key) throw new Error('WAFLEET_URL and WAFLEET_KEY are required');
const headers = { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' };

async function call(method, path, body) {
  const response = await fetch(new URL(path, base), {
    method, headers, body: body && JSON.stringify(body), signal: AbortSignal.timeout(20000),
  });
  if (!response.ok && response.status !== 409) throw new Error(`${method} ${path}: ${response.status}`);
  return response;
}

async function inBatches(items, size, fn) {
  for (let i = 0; i < items.length; i += size) await Promise.all(items.slice(i, i + size).map(fn));
}

function percentile(values, p) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

const ids = Array.from({ length: fleet }, (_, i) => `fleet-${String(i).padStart(5, '0')}`);
console.error(`creating ${fleet} devices`);
await inBatches(ids, 16, (id) => call('POST', '/v1/devices', { id, name: id }));
await inBatches(ids, 32, (id) => call('POST', `/v1/devices/${id}/stop`));

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});
const result = { fleet };
try {
  const page = await browser.newPage({ viewport: { width: 1366, height: 768 } });
  page.setDefaultTimeout(60000);
  await page.goto(`${base}/ui/`);
  await page.getByTestId('login-key').fill(key);
  await page.getByTestId('login-submit').click();
  result.list_render_ms = [];
  for (let i = 0; i < 3; i++) {
    const started = Date.now();
    await page.reload();
    await page.waitForFunction((n) => document.querySelectorAll('[data-testid^="device-row-fleet-"]').length >= n, fleet);
    result.list_render_ms.push(Date.now() - started);
    console.error(`list rendered in ${result.list_render_ms.at(-1)} ms`);
  }
  await page.evaluate(() => {
    window.wafleetSeen = {};
    new MutationObserver((changes) => {
      const now = Date.now();
      for (const change of changes) {
        const cell = change.target.nodeType === 1 ? change.target : change.target.parentElement;
        const id = cell?.dataset?.testid?.replace('device-status-', '');
        if (id && cell.textContent === 'SCAN_QR' && !window.wafleetSeen[id]) window.wafleetSeen[id] = now;
      }
    }).observe(document.querySelector('tbody'), { childList: true, characterData: true, subtree: true });
  });

  // The reference: when each device's SCAN_QR reaches a client of the API.
  const arrived = {};
  const stream = new AbortController();
  const events = await fetch(new URL('/v1/events', base), { headers: { ...headers, Accept: 'text/event-stream' }, signal: stream.signal });
  const reading = (async () => {
    const decoder = new TextDecoder();
    let buffer = '';
    for await (const chunk of events.body) {
      buffer += decoder.decode(chunk, { stream: true });
      let end;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const frame = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = frame.split('\n').find((l) => l.startsWith('data:'));
        if (!frame.includes('event: status') || !data) continue;
        const event = JSON.parse(data.slice(5));
        if (event.status === 'SCAN_QR' && !arrived[event.device_id]) arrived[event.device_id] = Date.now();
      }
    }
  })().catch(() => {});

  console.error(`starting ${fleet} devices at once`);
  const asked = Date.now();
  await inBatches(ids, 64, (id) => call('POST', `/v1/devices/${id}/start`));
  await page.waitForFunction((n) => Object.keys(window.wafleetSeen).length >= n, fleet, { timeout: 120000 });
  result.all_shown_s = (Date.now() - asked) / 1000;
  const seen = await page.evaluate(() => window.wafleetSeen);
  stream.abort();
  await reading;
  const lags = ids.filter((id) => arrived[id] && seen[id]).map((id) => seen[id] - arrived[id]);
  result.measured = lags.length;
  result.status_lag_p50_ms = percentile(lags, 50);
  result.status_lag_p99_ms = percentile(lags, 99);
  result.status_lag_max_ms = Math.max(...lags);
} finally {
  await browser.close();
  await inBatches(ids, 32, (id) => call('POST', `/v1/devices/${id}/stop`));
}
console.log(JSON.stringify(result));
