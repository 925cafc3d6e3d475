// Webhooks (`#/webhooks`, `#/webhooks/{device_id}`): a device's webhook (URL, write-only
// secret, event filter; set or remove), its delivery log by status with replays, and the
// cluster's webhook retry settings.
//
// data-testids:
//   webhook-device (device picker), webhook-url, webhook-secret, webhook-secret-state,
//   webhook-event-{kind} (kind: status, qr, message.status, message.inbound, job.progress),
//   webhook-save, webhook-delete, webhook-error,
//   webhook-deliveries-status (filter), webhook-deliveries-refresh, webhook-replay-dead,
//   webhook-delivery-{event_id}, webhook-delivery-status-{event_id}, webhook-replay-{event_id},
//   webhook-deliveries-more,
//   webhooks-settings-base-delay, webhooks-settings-max-delay, webhooks-settings-max-attempts,
//   webhooks-settings-timeout, webhooks-settings-save

import { api, all } from '../api.js';
import { attempt, badge, field, fill, h, toast, when } from '../dom.js';
import { subscribe } from '../events.js';

/** A column header: a title, or `[title, class]` (`hide-narrow` hides the column on a phone). */
function th(c) {
  return Array.isArray(c) ? h('th', { scope: 'col', class: c[1] }, c[0]) : h('th', { scope: 'col' }, c);
}

const EVENTS = ['status', 'qr', 'message.status', 'message.inbound', 'job.progress'];
const DELIVERY_STATUSES = ['pending', 'failed', 'delivered', 'dead'];

/** An error's status, code and message, with a hint for the refused URL. */
function describe(error) {
  const code = error.code && !error.code.startsWith('http_') ? `${error.code}: ` : '';
  const text = `${error.status ? error.status + ' ' : ''}${code}${error.message}`;
  if (error.code === 'webhook_url_not_allowed') {
    return `${text}\nThe URL points at a loopback, private, link-local or metadata address: use a public one `
      + '(or an operator sets webhooks.allow_private_targets = true).';
  }
  return text;
}

export async function mount(root, ctx) {
  const deviceId = ctx.param || null;
  const isOperator = ctx.me.role === 'admin' && !ctx.me.tenant;
  const cleanups = [];

  // ---- the device picker
  const picker = h('select', {
    testid: 'webhook-device', 'aria-label': 'Device',
    onchange: () => ctx.navigate(picker.value ? `#/webhooks/${encodeURIComponent(picker.value)}` : '#/webhooks'),
  }, h('option', { value: '' }, 'Loading devices…'));
  all('/v1/devices', 'devices', { limit: 500 }, 5000).then((devices) => {
    const list = [...devices].sort((a, b) => a.name.localeCompare(b.name) || a.id.localeCompare(b.id));
    fill(picker, h('option', { value: '' }, 'Choose a device'),
      list.map((d) => h('option', { value: d.id }, `${d.name} (${d.id}, ${d.status})`)));
    if (deviceId && !list.some((d) => d.id === deviceId)) picker.append(h('option', { value: deviceId }, deviceId));
    picker.value = deviceId || '';
  }).catch((error) => fill(picker, h('option', { value: '' }, `Devices not readable: ${error.message}`)));

  const settingsPanel = clusterSettings(isOperator);
  const devicePanels = h('div');
  fill(root, h('h1', {}, 'Webhooks'),
    h('div', { class: 'panel row' }, field('Device', picker),
      deviceId ? h('a', { href: `#/device/${encodeURIComponent(deviceId)}` }, 'Open the device') : null),
    devicePanels, settingsPanel.el);

  if (!deviceId) {
    fill(devicePanels, h('p', { class: 'muted' }, 'Choose a device to see its webhook and its delivery log.'));
  } else {
    cleanups.push(await deviceWebhook(devicePanels, deviceId));
  }
  await settingsPanel.load();
  return () => cleanups.forEach((fn) => fn && fn());
}

/** The webhook of `id` and its deliveries, into `box`; answers the unmount. */
async function deviceWebhook(box, id) {
  const base = `/v1/devices/${encodeURIComponent(id)}/webhook`;
  const url = h('input', { type: 'url', testid: 'webhook-url', required: true, maxlength: 2048,
    placeholder: 'https://example.com/wafleet', autocomplete: 'off' });
  const secret = h('input', { type: 'password', testid: 'webhook-secret', maxlength: 512, autocomplete: 'new-password' });
  const secretState = h('span', { class: 'muted', testid: 'webhook-secret-state' });
  const checks = EVENTS.map((kind) => h('input', { type: 'checkbox', value: kind, checked: true, testid: `webhook-event-${kind}` }));
  const error = h('p', { class: 'error form-error', role: 'alert', testid: 'webhook-error' });
  const state = h('p', { class: 'muted' });
  const save = h('button', { type: 'submit', class: 'primary', testid: 'webhook-save' }, 'Save webhook');
  const remove = h('button', {
    type: 'button', class: 'danger', testid: 'webhook-delete', disabled: true,
    onclick: async () => {
      if (!confirm(`Remove the webhook of ${id}? Deliveries still due become dead.`)) return;
      if (await attempt(() => api(base, { method: 'DELETE' }), 'webhook removed')) show(null);
    },
  }, 'Remove webhook');
  let current = null;

  function show(hook) {
    current = hook;
    url.value = hook ? hook.url : '';
    secret.value = '';
    secretState.textContent = hook?.secret_set ? 'secret set (deliveries are signed)' : 'no secret (deliveries are not signed)';
    secret.placeholder = hook?.secret_set ? 'type a new secret to replace it' : 'optional: 1 to 512 characters';
    const wanted = hook?.events ? new Set(hook.events) : null;
    for (const check of checks) check.checked = !wanted || wanted.has(check.value);
    remove.disabled = !hook;
    state.textContent = hook ? `Deliveries go to ${hook.url}.` : 'This device has no webhook.';
  }

  const form = h('form', {
    class: 'stack',
    onsubmit: async (event) => {
      event.preventDefault();
      error.textContent = '';
      const chosen = checks.filter((c) => c.checked).map((c) => c.value);
      if (!chosen.length) {
        error.textContent = 'Choose at least one event (all of them: every event).';
        return;
      }
      if (current?.secret_set && !secret.value
        && !confirm('No new secret given: saving replaces the webhook, and its deliveries will no longer be signed. Go on?')) return;
      const body = { url: url.value.trim() };
      if (secret.value) body.secret = secret.value;
      if (chosen.length < EVENTS.length) body.events = chosen;
      save.disabled = true;
      try {
        show(await api(base, { method: 'PUT', body }));
        toast('webhook saved');
      } catch (failure) {
        error.textContent = describe(failure);
      } finally {
        save.disabled = false;
      }
    },
  },
  field('URL', url),
  h('div', { class: 'row' }, field('Secret (write-only)', secret), secretState),
  h('fieldset', { class: 'checks' }, h('legend', {}, 'Events sent (all checked: every event)'),
    checks.map((check) => h('label', {}, check, check.value))),
  h('div', { class: 'row' }, save, remove),
  error);

  // ---- the delivery log
  const statusFilter = h('select', { testid: 'webhook-deliveries-status', 'aria-label': 'Deliveries in status',
    onchange: () => loadDeliveries() },
  h('option', { value: '' }, 'every status'), DELIVERY_STATUSES.map((s) => h('option', { value: s }, s)));
  const rows = h('tbody');
  let cursor = null;
  const more = h('button', { type: 'button', testid: 'webhook-deliveries-more', hidden: true, onclick: () => loadDeliveries(true) }, 'Older');
  const refresh = h('button', { type: 'button', testid: 'webhook-deliveries-refresh', onclick: () => loadDeliveries() }, 'Refresh');
  const replayDead = h('button', {
    type: 'button', testid: 'webhook-replay-dead',
    onclick: async () => {
      const answer = await attempt(() => api(`${base}/replay`, { method: 'POST', body: { status: 'dead' } }));
      if (answer) {
        toast(`${answer.replayed} dead deliver${answer.replayed === 1 ? 'y' : 'ies'} queued again`);
        loadDeliveries();
      }
    },
  }, 'Replay all dead');

  function deliveryRow(d) {
    return h('tr', { testid: `webhook-delivery-${d.event_id}` },
      h('td', { class: 'mono' }, d.event_id),
      h('td', {}, d.event),
      h('td', {}, badge(d.status, `webhook-delivery-status-${d.event_id}`)),
      h('td', {}, d.attempts),
      h('td', {}, d.last_status_code ?? '—'),
      h('td', { class: 'error delivery-error' }, d.last_error || ''),
      h('td', { class: 'muted' }, when(d.next_attempt_at) || '—'),
      h('td', { class: 'muted' }, when(d.delivered_at) || '—'),
      h('td', { class: 'muted hide-narrow' }, when(d.created_at)),
      h('td', { class: 'actions' }, h('button', {
        type: 'button', class: 'small', testid: `webhook-replay-${d.event_id}`, 'aria-label': `replay ${d.event_id}`,
        onclick: async () => {
          if (await attempt(() => api(`${base}/deliveries/${encodeURIComponent(d.event_id)}/replay`, { method: 'POST' }),
            `${d.event_id} queued again`)) loadDeliveries();
        },
      }, 'replay')));
  }

  let serial = 0;
  async function loadDeliveries(next = false) {
    const mine = ++serial;
    const page = await attempt(() => api(`${base}/deliveries`, {
      query: { status: statusFilter.value, limit: 100, cursor: next ? cursor : undefined },
    }));
    if (!page || mine !== serial) return;
    if (!next) rows.replaceChildren();
    rows.append(...page.deliveries.map(deliveryRow));
    if (!rows.children.length) rows.append(h('tr', {}, h('td', { colspan: 10, class: 'muted' }, 'No deliveries in this status.')));
    cursor = page.next_cursor;
    more.hidden = !cursor;
  }

  fill(box,
    h('section', { class: 'panel' }, h('h2', {}, `Webhook of ${id}`), state, form),
    h('section', { class: 'panel' }, h('h2', {}, 'Delivery log'),
      h('div', { class: 'row' }, field('Status', statusFilter), refresh, replayDead),
      h('div', { class: 'table-wrap' }, h('table', {},
        h('caption', { class: 'muted' }, 'Newest first. An event id is the same on every attempt.'),
        h('thead', {}, h('tr', {}, ['Event id', 'Event', 'Status', 'Attempts', 'Last code', 'Last error', 'Next attempt',
          'Delivered', ['Recorded', 'hide-narrow'], 'Replay'].map(th))),
        rows)),
      more));

  try {
    show(await api(base));
  } catch (failure) {
    if (failure.code === 'webhook_not_found') show(null);
    else {
      show(null);
      error.textContent = describe(failure);
    }
  }
  await loadDeliveries();

  // A new event of this device is a new delivery: the log's first page again, at most
  // every 2 s (attempts themselves send no event: "Refresh" reads them).
  let timer = null;
  const unsubscribe = subscribe((kind, data) => {
    if (kind !== 'reset' && data.device_id !== id) return;
    if (cursor && rows.children.length > 100) return; // the user paged back: leave the log as it is
    if (!timer) timer = setTimeout(() => { timer = null; loadDeliveries(); }, 2000);
  });
  return () => {
    unsubscribe();
    clearTimeout(timer);
  };
}

/** The cluster's webhook retry settings (PUT: an admin of every tenant). */
function clusterSettings(isOperator) {
  const inputs = {
    base_delay_ms: h('input', { type: 'number', min: 1, max: 604800000, required: true, testid: 'webhooks-settings-base-delay', disabled: !isOperator }),
    max_delay_ms: h('input', { type: 'number', min: 1, max: 604800000, required: true, testid: 'webhooks-settings-max-delay', disabled: !isOperator }),
    max_attempts: h('input', { type: 'number', min: 1, max: 100, required: true, testid: 'webhooks-settings-max-attempts', disabled: !isOperator }),
    timeout_ms: h('input', { type: 'number', min: 100, max: 60000, required: true, testid: 'webhooks-settings-timeout', disabled: !isOperator }),
  };
  const error = h('p', { class: 'error form-error', role: 'alert' });
  function show(s) {
    for (const [key, input] of Object.entries(inputs)) input.value = s[key];
  }
  const form = h('form', {
    class: 'row',
    onsubmit: async (event) => {
      event.preventDefault();
      error.textContent = '';
      const body = Object.fromEntries(Object.entries(inputs).map(([key, input]) => [key, Number(input.value)]));
      try {
        show(await api('/v1/settings/webhooks', { method: 'PUT', body }));
        toast('webhook settings saved');
      } catch (failure) {
        error.textContent = describe(failure);
      }
    },
  }, field('Base delay (ms)', inputs.base_delay_ms), field('Longest delay (ms)', inputs.max_delay_ms),
  field('Attempts in all', inputs.max_attempts), field('Timeout per attempt (ms)', inputs.timeout_ms),
  h('button', { type: 'submit', testid: 'webhooks-settings-save', disabled: !isOperator }, 'Save'));
  const el = h('section', { class: 'panel' }, h('h2', {}, 'Delivery retries (cluster)'),
    h('p', { class: 'muted' }, 'A failed delivery is tried again after base × fib(n) (1, 1, 2, 3, 5 …), capped at the longest '
      + 'delay; after the attempts in all it is dead.', isOperator ? '' : ' Only an admin of every tenant may change them.'),
    form, error);
  return {
    el,
    load: () => api('/v1/settings/webhooks').then(show).catch((failure) => { error.textContent = describe(failure); }),
  };
}
