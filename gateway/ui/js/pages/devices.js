// Devices: the list with live statuses and counts, create, lifecycle actions, and the
// QR dialog that closes by itself when the device is linked.

import { api, all } from '../api.js';
import { attempt, badge, field, h, fill } from '../dom.js';
import { subscribe } from '../events.js';
import { qrView } from '../qr.js';

const ACTIONS = ['start', 'stop', 'restart', 'logout'];

export async function mount(root, ctx) {
  const rows = new Map();
  const counts = h('div', { class: 'counts', 'aria-label': 'Devices by status' });
  const body = h('tbody');
  const table = h('div', { class: 'table-wrap' }, h('table', {},
    h('caption', { class: 'muted' }, 'Statuses change live.'),
    h('thead', {}, h('tr', {}, ['Device', 'Status', 'Phone', h('span', { class: 'hide-narrow' }, 'Trust'),
      h('span', { class: 'hide-narrow' }, 'Node'), 'Actions'].map((c) => h('th', { scope: 'col' }, c)))),
    body));
  const name = h('input', { testid: 'device-create-name', required: true, maxlength: 200, placeholder: 'Shop front desk' });
  const id = h('input', { testid: 'device-create-id', pattern: '[a-zA-Z0-9_\\-]{1,64}', placeholder: 'generated' });
  const create = h('form', {
    class: 'panel row',
    onsubmit: async (event) => {
      event.preventDefault();
      const device = await attempt(() => api('/v1/devices', {
        method: 'POST', body: { name: name.value, ...(id.value ? { id: id.value } : {}) },
      }));
      if (!device) return;
      name.value = '';
      id.value = '';
      upsert(device);
      // A new device is stopped: start it, so that its QR code comes.
      await attempt(() => api(`/v1/devices/${encodeURIComponent(device.id)}/start`, { method: 'POST' }));
      showQr(device.id);
    },
  }, field('Name', name), field('Id (optional)', id),
  h('button', { class: 'primary', type: 'submit', testid: 'device-create-submit' }, 'Create and link'));

  // Narrows the rows shown: a text (id, name or phone) and a status (a count's badge).
  let shownStatus = null;
  const search = h('input', { type: 'search', testid: 'device-filter', placeholder: 'id, name or phone', oninput: () => applyFilter() });
  function matches(device) {
    const text = search.value.trim().toLowerCase();
    return (!shownStatus || device.status === shownStatus)
      && (!text || [device.id, device.name, device.phone || ''].some((v) => v.toLowerCase().includes(text)));
  }
  function applyFilter() {
    for (const r of rows.values()) r.tr.hidden = !matches(r.device);
  }

  fill(root, h('h1', {}, 'Devices'), create, h('div', { class: 'row' }, field('Filter', search)), counts, table);

  function renderCounts() {
    const byStatus = {};
    for (const { device } of rows.values()) byStatus[device.status] = (byStatus[device.status] || 0) + 1;
    const choose = (status) => () => { shownStatus = status; renderCounts(); applyFilter(); };
    fill(counts,
      h('button', { type: 'button', class: 'badge', testid: 'device-count', 'aria-pressed': String(!shownStatus), onclick: choose(null) },
        `${rows.size} devices`),
      Object.entries(byStatus).sort().map(([s, n]) => h('button', {
        type: 'button', class: `badge ${s}`, testid: `count-${s}`, 'aria-pressed': String(shownStatus === s), onclick: choose(s),
      }, `${s} ${n}`)));
  }

  // One listener for every row's buttons (`data-action`), not seven per row: a fleet of
  // thousands renders faster and holds less.
  body.addEventListener('click', async (event) => {
    const button = event.target.closest('button[data-action]');
    if (!button) return;
    const deviceId = button.closest('tr').dataset.id;
    const action = button.dataset.action;
    const path = `/v1/devices/${encodeURIComponent(deviceId)}`;
    if (action === 'qr') return showQr(deviceId);
    if (action === 'delete') {
      if (!confirm(`Delete ${deviceId}? It is logged out and its credentials wiped.`)) return;
      if (await attempt(() => api(path, { method: 'DELETE' }), `deleted ${deviceId}`)) remove(deviceId);
      return;
    }
    attempt(() => api(`${path}/${action}`, { method: 'POST' }), `${action}: ${deviceId}`);
  });

  function row(device) {
    const status = badge(device.status, `device-status-${device.id}`);
    const button = (action, label = action, extra = '') => h('button', {
      class: `small ${extra}`, type: 'button', 'data-action': action, 'aria-label': `${label} ${device.id}`,
    }, label);
    const actions = h('td', { class: 'actions' }, button('qr', 'QR'), ACTIONS.map((a) => button(a)), button('delete', 'delete', 'danger'));
    const tr = h('tr', { testid: `device-row-${device.id}`, 'data-id': device.id },
      h('td', {}, h('a', { href: `#/device/${encodeURIComponent(device.id)}` }, device.name), h('div', { class: 'muted mono' }, device.id)),
      h('td', {}, status),
      h('td', { class: 'mono' }, device.phone || ''),
      h('td', { class: 'hide-narrow' }, device.trust_level),
      h('td', { class: 'hide-narrow mono' }, device.node || ''),
      actions);
    return { tr, status, device };
  }

  function upsert(device) {
    const existing = rows.get(device.id);
    const next = row(device);
    next.tr.hidden = !matches(device);
    if (existing) existing.tr.replaceWith(next.tr);
    else body.append(next.tr);
    rows.set(device.id, next);
    renderCounts();
  }

  function remove(deviceId) {
    const existing = rows.get(deviceId);
    if (!existing) return;
    existing.tr.remove();
    rows.delete(deviceId);
    renderCounts();
  }

  async function load() {
    const list = await attempt(() => all('/v1/devices', 'devices', { limit: 1000 }));
    if (!list) return;
    rows.clear();
    const fragment = document.createDocumentFragment();
    for (const device of list) {
      const r = row(device);
      r.tr.hidden = !matches(device);
      rows.set(device.id, r);
      fragment.append(r.tr);
    }
    body.replaceChildren(fragment);
    renderCounts();
  }

  let reloading = null;
  function reloadSoon() {
    if (!reloading) reloading = setTimeout(() => { reloading = null; load(); }, 300);
  }

  const unsubscribe = subscribe((kind, data) => {
    if (kind === 'reset') return reloadSoon();
    const r = rows.get(data.device_id);
    if (!r) return reloadSoon();
    if (r.device.status === data.status && (!data.phone || r.device.phone === data.phone)) return;
    r.device = { ...r.device, status: data.status, phone: data.phone || r.device.phone };
    r.status.className = `badge ${data.status}`;
    r.status.textContent = data.status;
    if (data.phone) r.tr.children[2].textContent = data.phone;
    r.tr.hidden = !matches(r.device);
    countsSoon();
  }, ['status']);

  // The counts once per frame, however many statuses changed in it (a fleet starting at
  // once sends thousands).
  let countsFrame = 0;
  function countsSoon() {
    if (!countsFrame) countsFrame = requestAnimationFrame(() => { countsFrame = 0; renderCounts(); });
  }

  let dialog = null;
  function showQr(deviceId) {
    if (dialog) dialog.close();
    const view = qrView(deviceId, () => setTimeout(() => dialog?.close(), 600));
    const code = h('p', { class: 'mono' });
    const phone = h('input', { inputmode: 'numeric', placeholder: '6281234567890', pattern: '[0-9]{6,20}' });
    dialog = h('dialog', { 'aria-label': `Link ${deviceId}`, onclose: () => { view.dispose(); dialog.remove(); dialog = null; } },
      h('h2', {}, `Link ${deviceId}`), view.el,
      h('form', {
        class: 'row',
        onsubmit: async (event) => {
          event.preventDefault();
          const answer = await attempt(() => api(`/v1/devices/${encodeURIComponent(deviceId)}/pairing-code`, { method: 'POST', body: { phone: phone.value } }));
          if (answer) code.textContent = `Enter ${answer.code} on the phone (until ${new Date(answer.expires_at).toLocaleTimeString()}).`;
        },
      }, field('Or link with a code: phone number', phone), h('button', { type: 'submit' }, 'Get code')),
      code,
      h('form', { method: 'dialog' }, h('button', { type: 'submit' }, 'Close')));
    document.body.append(dialog);
    dialog.showModal();
  }

  await load();
  if (ctx.param) showQr(ctx.param);
  return () => {
    unsubscribe();
    cancelAnimationFrame(countsFrame);
    if (dialog) dialog.close();
    clearTimeout(reloading);
  };
}

