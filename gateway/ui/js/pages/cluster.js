// Cluster (admin of every tenant): the nodes with the devices each runs and the shards
// each holds, the shards being recovered, and the totals, from GET /v1/cluster: read
// every 2 s while the page is open, and on status events (at most once a second).
//
// testids: cluster-mode, cluster-devices, cluster-running, cluster-shards,
//   cluster-recovering-count, cluster-node-{name}, cluster-node-running-{name},
//   cluster-node-held-{name}, cluster-recovering-{shard}, cluster-refreshed

import { api } from '../api.js';
import { fill, h } from '../dom.js';
import { subscribe } from '../events.js';

const EVERY_MS = 2000;
const EVENTS_AT_MOST_MS = 1000;
/** Rows of recovering shards shown (a join moves many; the count says how many). */
const SHOWN = 200;

export async function mount(root) {
  const totals = h('div', { class: 'cluster-totals', 'aria-label': 'Totals' });
  const nodes = h('div');
  const recovering = h('div');
  const refreshed = h('p', { class: 'muted', testid: 'cluster-refreshed', role: 'status' });
  fill(root, h('h1', {}, 'Cluster'), totals,
    h('section', { class: 'panel', 'aria-label': 'Nodes' }, h('h2', {}, 'Nodes'), nodes),
    h('section', { class: 'panel', 'aria-label': 'Recovering shards' }, h('h2', {}, 'Recovering shards'), recovering),
    refreshed);

  function total(label, value, testid) {
    return h('div', { class: 'cluster-total' }, h('span', { class: 'cluster-total-value', testid }, String(value)),
      h('span', { class: 'muted' }, label));
  }

  function render(view) {
    const running = view.nodes.reduce((sum, n) => sum + n.devices_running, 0);
    fill(totals,
      total('mode', view.mode, 'cluster-mode'),
      total('nodes live', view.nodes.length, 'cluster-nodes'),
      total('devices', view.devices, 'cluster-devices'),
      total('running', running, 'cluster-running'),
      total('shards', view.shards, 'cluster-shards'),
      total('recovering', view.recovering.length, 'cluster-recovering-count'));
    const standalone = view.mode === 'standalone';
    fill(nodes, view.nodes.length === 0
      ? h('p', { class: 'error' }, 'No live node: this gateway hears no heartbeat.')
      : h('div', { class: 'table-wrap' }, h('table', {},
        h('thead', {}, h('tr', {}, ['Node', 'Devices running', standalone ? null : 'Shards held', standalone ? null : 'Shards placed',
          h('span', { class: 'hide-narrow' }, 'HTTP')].filter(Boolean).map((c) => h('th', { scope: 'col' }, c)))),
        h('tbody', {}, view.nodes.map((n) => h('tr', { testid: `cluster-node-${n.name}` },
          h('td', { class: 'mono' }, n.name),
          h('td', { testid: `cluster-node-running-${n.name}` }, n.devices_running),
          standalone ? null : h('td', { testid: `cluster-node-held-${n.name}` }, n.shards_held,
            n.shards_held !== n.shards_placed ? h('span', { class: 'badge SCAN_QR cluster-gap' }, 'moving') : null),
          standalone ? null : h('td', {}, n.shards_placed),
          h('td', { class: 'hide-narrow mono' }, n.http_addr || '—')))))));
    if (standalone) {
      fill(recovering, h('p', { class: 'muted' }, 'Standalone: one process runs every device; no shards move.'));
    } else if (view.recovering.length === 0) {
      fill(recovering, h('p', { class: 'muted' }, 'None: every shard is held by the node it is placed on.'));
    } else {
      fill(recovering,
        h('p', { class: 'muted' }, `${view.recovering.length} shards are placed on a node that does not hold them yet `
          + '(a failover or a hand-off); their devices may answer 503 meanwhile.',
        view.recovering.length > SHOWN ? ` The first ${SHOWN} are shown.` : ''),
        h('div', { class: 'table-wrap' }, h('table', {},
          h('thead', {}, h('tr', {}, ['Shard', 'Placed on', 'Held by'].map((c) => h('th', { scope: 'col' }, c)))),
          h('tbody', {}, view.recovering.slice(0, SHOWN).map((r) => h('tr', { testid: `cluster-recovering-${r.shard}` },
            h('td', {}, r.shard),
            h('td', { class: 'mono' }, r.placed_on),
            h('td', { class: 'mono' }, r.held_by || h('span', { class: 'muted' }, 'nobody (lease free or expired)'))))))));
    }
    refreshed.textContent = `Read at ${new Date().toLocaleTimeString()}.`;
  }

  let stopped = false;
  let inFlight = null;
  async function load() {
    if (stopped) return;
    if (inFlight) return inFlight;
    inFlight = (async () => {
      try {
        render(await api('/v1/cluster'));
      } catch (error) {
        if (error.status === 403) {
          stopped = true;
          fill(totals);
          fill(nodes, h('p', { class: 'muted' }, 'Only an admin of every tenant sees the cluster.'));
          fill(recovering);
        } else {
          refreshed.textContent = `Could not read the cluster: ${error.message}. Trying again.`;
        }
      } finally {
        inFlight = null;
      }
    })();
    return inFlight;
  }

  const timer = setInterval(load, EVERY_MS);
  // Status changes (a node dies, devices move) are worth a read sooner, at most once a
  // second however many devices change.
  let lastEventRead = 0;
  let pending = null;
  const unsubscribe = subscribe(() => {
    if (pending) return;
    const wait = Math.max(0, lastEventRead + EVENTS_AT_MOST_MS - Date.now());
    pending = setTimeout(() => {
      pending = null;
      lastEventRead = Date.now();
      load();
    }, wait);
  }, ['status']);

  await load();
  return () => {
    stopped = true;
    clearInterval(timer);
    clearTimeout(pending);
    unsubscribe();
  };
}
