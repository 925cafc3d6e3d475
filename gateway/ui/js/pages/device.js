// One device: its status and lifecycle, linking (QR or code), trust level and limits, a
// test message with its live status, and the conversations.

import { api } from '../api.js';
import { attempt, badge, field, fill, h, when } from '../dom.js';
import { subscribe } from '../events.js';
import { qrView } from '../qr.js';

const LEVELS = ['newcomer', 'trusted', 'verified'];

export async function mount(root, ctx) {
  const id = ctx.param;
  const path = `/v1/devices/${encodeURIComponent(id)}`;
  const cleanups = [];
  let device;
  try {
    device = await api(path);
  } catch (error) {
    fill(root, h('h1', {}, id), h('p', { class: 'error' }, error.message), h('a', { href: '#/devices' }, 'All devices'));
    return undefined;
  }

  const status = badge(device.status, `device-status-${id}`);
  const facts = h('dl', { class: 'muted' });
  const link = h('div');
  const limits = h('div');
  const sent = h('ul', { class: 'sent' });
  // The last status each message's events gave, by message id.
  const latest = new Map();
  const chats = h('ul');
  const conversation = h('div', { class: 'chat', 'aria-live': 'polite' });
  let openChat = null;

  function renderFacts() {
    fill(facts, [['Phone', device.phone || '—'], ['Node', device.node], ['Tenant', device.tenant],
      ['Created', when(device.created_at)], ['Last connected', when(device.last_connected_at) || '—'],
      ['Reason', device.status_reason || '—']]
      .map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
  }

  let qr = null;
  function renderLink() {
    if (qr) qr.dispose();
    qr = null;
    if (device.status !== 'SCAN_QR') {
      fill(link, h('p', { class: 'muted' }, device.status === 'READY' ? 'Linked.' : 'A QR code shows here while the device waits for a scan.'));
      return;
    }
    qr = qrView(id);
    const phone = h('input', { inputmode: 'numeric', placeholder: '6281234567890' });
    const code = h('p', { class: 'mono' });
    fill(link, qr.el, h('form', {
      class: 'row',
      onsubmit: async (event) => {
        event.preventDefault();
        const answer = await attempt(() => api(`${path}/pairing-code`, { method: 'POST', body: { phone: phone.value } }));
        if (answer) code.textContent = `Enter ${answer.code} on the phone.`;
      },
    }, field('Or a pairing code for phone', phone), h('button', { type: 'submit' }, 'Get code')), code);
  }
  cleanups.push(() => qr && qr.dispose());

  async function loadLimits() {
    const l = await api(`${path}/limits`).catch(() => null);
    if (!l) return fill(limits, h('p', { class: 'muted' }, 'Limits are known once the device has run.'));
    const select = h('select', { 'aria-label': 'Trust level', disabled: ctx.me.role !== 'admin' },
      LEVELS.map((level) => h('option', { value: level, selected: level === l.trust_level }, level)));
    select.addEventListener('change', () => attempt(async () => {
      await api(`${path}/trust-level`, { method: 'PUT', body: { level: select.value } });
      await loadLimits();
    }, `trust level: ${select.value}`));
    fill(limits, field('Trust level', select),
      h('table', {}, h('thead', {}, h('tr', {}, ['Window', 'Limit', 'Spent', 'Remaining'].map((c) => h('th', { scope: 'col' }, c)))),
        h('tbody', {}, ['minute', 'hour', 'day'].map((w) => h('tr', {}, h('td', {}, w), h('td', {}, l[w].limit), h('td', {}, l[w].spent), h('td', {}, l[w].remaining))))),
      h('p', { class: 'muted' }, `Queued ${l.queued}, in flight ${l.in_flight}; next send ${when(l.next_send_at)}; gap ${l.quota.min_gap_ms} ms.`,
        l.paused_until ? ` Paused until ${when(l.paused_until)}.` : ''));
  }

  const to = h('input', { testid: 'send-to', inputmode: 'numeric', required: true, placeholder: '6281234567890' });
  const text = h('textarea', { testid: 'send-text', required: true, maxlength: 65536 });
  const sendForm = h('form', {
    onsubmit: async (event) => {
      event.preventDefault();
      const accepted = await attempt(() => api(`${path}/messages`, { method: 'POST', body: { to: to.value, text: text.value } }));
      if (!accepted) return;
      text.value = '';
      // Its status events may have come before this answer did.
      sent.prepend(h('li', {}, h('span', { class: 'mono' }, accepted.id), ' to ', to.value, ': ',
        badge(latest.get(accepted.id) || accepted.status, `message-status-${accepted.id}`)));
    },
  }, h('div', { class: 'row' }, field('To', to), field('Text', text),
    h('button', { class: 'primary', type: 'submit', testid: 'send-submit' }, 'Send')));

  async function loadChats() {
    const page = await api(`${path}/chats`, { query: { limit: 50 } }).catch(() => ({ chats: [] }));
    fill(chats, page.chats.map((chat) => h('li', {},
      h('button', { class: 'link', type: 'button', onclick: () => showChat(chat.id) },
        chat.name || chat.id), chat.unread ? ` (${chat.unread} unread)` : '',
      h('span', { class: 'muted' }, ' · ', when(chat.last_message_at)))));
    if (!page.chats.length) chats.append(h('li', { class: 'muted' }, 'No conversations yet.'));
  }

  async function showChat(chatId) {
    openChat = chatId;
    const page = await attempt(() => api(`${path}/chats/${encodeURIComponent(chatId)}/messages`, { query: { limit: 100 } }));
    if (!page || openChat !== chatId) return;
    const messages = [...page.messages].reverse();
    fill(conversation, h('h3', {}, chatId), messages.map(bubble));
    conversation.scrollTop = conversation.scrollHeight;
    api(`${path}/chats/${encodeURIComponent(chatId)}/read`, { method: 'POST' }).catch(() => {});
  }

  function bubble(m) {
    return h('div', { class: `bubble ${m.direction === 'outbound' ? 'out' : 'in'}` },
      m.text || (m.media ? `[${m.media.media_type}] ${m.media.filename || ''}` : ''),
      h('div', { class: 'meta' }, when(m.created_at), m.direction === 'outbound' ? ` · ${m.status}` : ''));
  }

  const lifecycle = h('div', { class: 'row' }, ['start', 'stop', 'restart', 'logout'].map((action) =>
    h('button', { type: 'button', onclick: () => attempt(() => api(`${path}/${action}`, { method: 'POST' }), `${action}: ${id}`) }, action)),
  h('button', {
    type: 'button', class: 'danger',
    onclick: async () => {
      if (!confirm(`Delete ${id}? It is logged out and its credentials wiped.`)) return;
      if (await attempt(() => api(path, { method: 'DELETE' }), `deleted ${id}`)) ctx.navigate('#/devices');
    },
  }, 'delete'));

  fill(root,
    h('p', {}, h('a', { href: '#/devices' }, '← All devices')),
    h('h1', {}, device.name, ' ', status),
    h('p', { class: 'muted mono' }, id),
    h('div', { class: 'grid2' },
      h('section', { class: 'panel' }, h('h2', {}, 'Device'), facts, lifecycle),
      h('section', { class: 'panel' }, h('h2', {}, 'Link'), link),
      h('section', { class: 'panel' }, h('h2', {}, 'Trust level and limits'), limits),
      h('section', { class: 'panel' }, h('h2', {}, 'Send a test message'), sendForm, sent)),
    h('section', { class: 'panel' }, h('h2', {}, 'Conversations'), h('div', { class: 'grid2' }, chats, conversation)));
  renderFacts();
  renderLink();
  loadLimits();
  loadChats();

  cleanups.push(subscribe(async (kind, data) => {
    if (kind === 'reset') {
      device = await api(path).catch(() => device);
      status.className = `badge ${device.status}`;
      status.textContent = device.status;
      renderFacts();
      return renderLink();
    }
    if (data.device_id !== id) return;
    if (kind === 'status') {
      const before = device.status;
      device = { ...device, status: data.status, phone: data.phone || device.phone, status_reason: data.reason || null };
      status.className = `badge ${data.status}`;
      status.textContent = data.status;
      renderFacts();
      if (before !== data.status && (data.status === 'SCAN_QR' || before === 'SCAN_QR')) renderLink();
      if (data.status === 'READY') loadLimits();
    } else if (kind === 'message.status') {
      const messageId = data.message_id || data.id;
      latest.set(messageId, data.status);
      const cell = root.querySelector(`[data-testid="message-status-${CSS.escape(messageId)}"]`);
      if (cell) {
        cell.className = `badge ${data.status}`;
        cell.textContent = data.status;
      }
      if (openChat) showChat(openChat);
    } else if (kind === 'message.inbound') {
      loadChats();
      if (openChat && (data.chat_id === openChat || data.from === openChat)) showChat(openChat);
    }
  }, ['status', 'message.status', 'message.inbound']));

  return () => cleanups.forEach((fn) => fn());
}
