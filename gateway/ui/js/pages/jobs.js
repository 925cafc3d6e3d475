// Jobs (campaigns): the list with live progress bars (`job.progress` events, no polling),
// pause/resume/cancel/retry, a form to make a small job, one job's detail (`#/jobs/{id}`:
// counts and recipients by status), the templates and the send retry settings.
//
// data-testids:
//   list:      job-tenant (admin of every tenant), job-row-{id}, job-status-{id},
//              job-progress-{id} (<progress max=100>, value = integer percent done),
//              job-percent-{id} ("NN %"), job-counts-{id}, job-link-{id},
//              job-pause-{id}, job-resume-{id}, job-cancel-{id}, job-retry-{id}
//   create:    job-create-name, job-create-devices (fieldset), job-create-device-{device id},
//              job-create-audience-list / job-create-audience-tag (radios),
//              job-create-recipients, job-create-tag, job-create-content-text /
//              job-create-content-template (radios), job-create-text, job-create-template,
//              job-create-send-at, job-create-window-start, job-create-window-end,
//              job-create-window-tz, job-create-submit, job-create-error
//   detail:    the list's job-status/progress/percent/counts/pause/resume/cancel/retry ids,
//              job-recipients-status (filter), job-recipient-{seq}, job-recipient-status-{seq},
//              job-recipients-more
//   templates: template-row-{id}, template-edit-{id}, template-delete-{id}, template-name,
//              template-text, template-save, template-cancel, template-error
//   retries:   retries-base-delay, retries-max-attempts, retries-save

import { api, all } from '../api.js';
import { attempt, badge, field, fill, h, toast, when } from '../dom.js';
import { subscribe } from '../events.js';

/** A column header: a title, or `[title, class]` (`hide-narrow` hides the column on a phone). */
function th(c) {
  return Array.isArray(c) ? h('th', { scope: 'col', class: c[1] }, c[0]) : h('th', { scope: 'col' }, c);
}

const TENANT_KEY = 'wafleet.jobs.tenant';
const RECIPIENT_STATUSES = ['pending', 'queued', 'sent', 'delivered', 'read', 'failed', 'cancelled'];
const COUNTS = ['pending', 'sent', 'delivered', 'read', 'failed', 'cancelled'];

/** Whether the caller is an admin of every tenant (it picks the tenant it works on). */
function operator(me) {
  return me.role === 'admin' && !me.tenant;
}

/** The tenant an admin of every tenant works on here; undefined for the others (their own). */
function chosenTenant(me) {
  return operator(me) ? sessionStorage.getItem(TENANT_KEY) || 'default' : undefined;
}

/**
 * Percent of the recipients that have an outcome. Counts are cumulative: `sent` also
 * counts delivered and read, so done = sent + failed + cancelled (= total - pending).
 */
export function percent(job) {
  if (!job.total) return job.status === 'completed' || job.status === 'cancelled' ? 100 : 0;
  const done = (job.sent || 0) + (job.failed || 0) + (job.cancelled || 0);
  return Math.max(0, Math.min(100, Math.floor((done * 100) / job.total)));
}

/** Which controls apply to a job in `status` (with `failed` recipients). */
function applies(job) {
  const active = job.status === 'scheduled' || job.status === 'running';
  return {
    pause: active,
    resume: job.status === 'paused',
    cancel: active || job.status === 'paused',
    retry: job.status !== 'cancelled' && job.failed > 0,
  };
}

/** An error's code and message, for a form's alert. */
function describe(error) {
  if (!error) return '';
  const code = error.code && !error.code.startsWith('http_') ? `${error.code}: ` : '';
  return `${error.status ? error.status + ' ' : ''}${code}${error.message}`;
}

/**
 * The live parts of one job: status badge, progress bar, percent, counts and controls.
 * `update(job)` refreshes them in place; `onChange(job)` runs after an action answered.
 */
function jobParts(initial, tenant, onChange, { confirmCancel = true } = {}) {
  let job = initial;
  const id = job.id;
  const path = `/v1/jobs/${encodeURIComponent(id)}`;
  const status = badge(job.status, `job-status-${id}`);
  const bar = h('progress', { max: '100', testid: `job-progress-${id}`, 'aria-label': `Progress of ${job.name}` });
  const pct = h('span', { class: 'job-percent', testid: `job-percent-${id}` });
  const counts = h('span', { class: 'job-counts', testid: `job-counts-${id}` });

  async function act(action) {
    if (action === 'cancel' && confirmCancel
      && !confirm(`Cancel job "${job.name}"? Recipients not yet handed to a device are dropped for good.`)) return;
    const answer = await attempt(() => api(`${path}/${action}`, { method: 'POST', query: { tenant } }),
      action === 'retry' ? null : `${action}: ${job.name}`);
    if (!answer) return;
    const next = action === 'retry' ? answer.job : answer;
    if (action === 'retry') toast(`retry: ${answer.retried} failed recipient(s) queued again`);
    update(next);
    if (onChange) onChange(next);
  }
  const buttons = {};
  for (const action of ['pause', 'resume', 'cancel', 'retry']) {
    buttons[action] = h('button', {
      type: 'button', class: action === 'cancel' ? 'small danger' : 'small', testid: `job-${action}-${id}`,
      'aria-label': `${action === 'retry' ? 'retry failed of' : action} ${job.name}`,
      onclick: () => act(action),
    }, action === 'retry' ? 'retry failed' : action);
  }
  const controls = h('span', { class: 'job-controls' }, Object.values(buttons));

  function update(next) {
    job = { ...job, ...next };
    status.className = `badge ${job.status}`;
    status.textContent = job.status;
    const p = percent(job);
    bar.value = p;
    bar.textContent = `${p} %`;
    pct.textContent = `${p} %`;
    fill(counts, `${job.total} total · `, COUNTS.filter((k) => k === 'pending' || job[k])
      .map((k, i) => [i ? ' · ' : '', `${k} ${job[k] || 0}`]));
    const can = applies(job);
    for (const [action, button] of Object.entries(buttons)) button.disabled = !can[action];
  }
  update(job);
  return { status, bar, pct, counts, controls, update, get job() { return job; } };
}

export async function mount(root, ctx) {
  if (ctx.param) return mountDetail(root, ctx, ctx.param.split('/')[0]);
  return mountList(root, ctx);
}

// ---------------------------------------------------------------------------------
// The list, the create form, templates and retry settings.

async function mountList(root, ctx) {
  const tenant = chosenTenant(ctx.me);
  const isOperator = operator(ctx.me);
  const cleanups = [];
  const rows = new Map();
  const body = h('tbody');
  const empty = h('p', { class: 'muted', hidden: true }, 'No jobs yet.');
  const table = h('div', { class: 'table-wrap' }, h('table', { class: 'jobs-table' },
    h('caption', { class: 'muted' }, 'Progress moves live.'),
    h('thead', {}, h('tr', {}, ['Job', 'Status', 'Progress', ['Counts', 'hide-narrow'], ['Created', 'hide-narrow'],
      'Actions'].map(th))),
    body), empty);

  // The tenant (an admin of every tenant only).
  let tenantPicker = null;
  if (isOperator) {
    const select = h('select', {
      testid: 'job-tenant',
      onchange: () => {
        sessionStorage.setItem(TENANT_KEY, select.value);
        ctx.navigate('#/jobs');
      },
    });
    tenantPicker = h('div', { class: 'row' }, field('Tenant', select));
    all('/v1/tenants', 'tenants', {}, 500).then((tenants) => {
      const ids = tenants.map((t) => t.id);
      if (!ids.includes(tenant)) ids.unshift(tenant);
      fill(select, ids.map((t) => h('option', { value: t }, tenants.find((x) => x.id === t)?.name
        ? `${tenants.find((x) => x.id === t).name} (${t})` : t)));
      select.value = tenant;
    }).catch(() => {
      fill(select, h('option', { value: tenant }, tenant));
    });
  }

  // ---- the create form
  const createError = h('p', { class: 'error form-error', role: 'alert', testid: 'job-create-error' });
  const name = h('input', { testid: 'job-create-name', required: true, maxlength: 100,
    value: `Job ${new Date().toLocaleString()}` });
  const devicesBox = h('fieldset', { class: 'checks', testid: 'job-create-devices' },
    h('legend', {}, 'Device pool (READY devices)'), h('span', { class: 'muted' }, 'Loading…'));
  const audienceList = h('input', { type: 'radio', name: 'job-audience', value: 'list', checked: true, testid: 'job-create-audience-list' });
  const audienceTag = h('input', { type: 'radio', name: 'job-audience', value: 'tag', testid: 'job-create-audience-tag' });
  const recipients = h('textarea', {
    testid: 'job-create-recipients', rows: 5, class: 'mono', id: 'job-create-recipients',
    placeholder: '6281234567890\n6281234567891, name=Budi, order=A-17',
    'aria-describedby': 'job-recipients-hint',
  });
  const tag = h('select', { testid: 'job-create-tag', disabled: true, 'aria-label': 'Contacts tag' });
  const contentText = h('input', { type: 'radio', name: 'job-content', value: 'text', checked: true, testid: 'job-create-content-text' });
  const contentTemplate = h('input', { type: 'radio', name: 'job-content', value: 'template', testid: 'job-create-content-template' });
  const text = h('textarea', { testid: 'job-create-text', rows: 3, maxlength: 65536, placeholder: 'Halo! …' });
  const template = h('select', { testid: 'job-create-template', disabled: true, 'aria-label': 'Template' });
  const templateVars = h('p', { class: 'muted' });
  const sendAt = h('input', { type: 'datetime-local', testid: 'job-create-send-at' });
  const windowStart = h('input', { type: 'time', testid: 'job-create-window-start' });
  const windowEnd = h('input', { type: 'time', testid: 'job-create-window-end' });
  const windowTz = h('input', { testid: 'job-create-window-tz', maxlength: 64,
    value: Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC' });
  const submit = h('button', { class: 'primary', type: 'submit', testid: 'job-create-submit' }, 'Start job');

  function syncModes() {
    const byTag = audienceTag.checked;
    recipients.disabled = byTag;
    tag.disabled = !byTag;
    const byTemplate = contentTemplate.checked;
    text.disabled = byTemplate;
    template.disabled = !byTemplate;
    showTemplateVars();
  }
  for (const radio of [audienceList, audienceTag, contentText, contentTemplate]) radio.addEventListener('change', syncModes);
  template.addEventListener('change', showTemplateVars);

  let templates = [];
  function showTemplateVars() {
    const chosen = templates.find((t) => t.id === template.value);
    templateVars.textContent = contentTemplate.checked && chosen
      ? (chosen.variables.length
        ? `Each recipient needs: ${chosen.variables.join(', ')} (name may come from the contact book, phone is the number).`
        : 'This template has no variables.')
      : '';
  }

  /** The recipients textarea as `[{to, vars?}]`: one per line, `phone[, key=value]…`. */
  function parseRecipients() {
    const list = [];
    const lines = recipients.value.split(/\r?\n/);
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i].trim();
      if (!line || line.startsWith('#')) continue;
      const [first, ...rest] = line.split(',');
      const to = first.trim().includes('@') ? first.trim() : first.replace(/[\s().-]/g, '');
      const vars = {};
      for (const part of rest) {
        const eq = part.indexOf('=');
        if (eq < 1) throw new Error(`line ${i + 1}: "${part.trim()}" is not key=value`);
        vars[part.slice(0, eq).trim()] = part.slice(eq + 1).trim();
      }
      list.push(Object.keys(vars).length ? { to, vars } : { to });
    }
    return list;
  }

  const form = h('form', {
    class: 'panel job-form',
    onsubmit: async (event) => {
      event.preventDefault();
      createError.textContent = '';
      const devices = [...devicesBox.querySelectorAll('input[type=checkbox]:checked')].map((c) => c.value);
      const job = { name: name.value.trim() || `Job ${new Date().toLocaleString()}`, devices };
      try {
        if (!devices.length) throw new Error('Choose at least one READY device.');
        if (audienceTag.checked) {
          if (!tag.value) throw new Error('Choose a contacts tag.');
          job.contacts_tag = tag.value;
        } else {
          job.recipients = parseRecipients();
          if (!job.recipients.length) throw new Error('Give at least one recipient (one phone number a line).');
        }
        if (contentTemplate.checked) {
          if (!template.value) throw new Error('Choose a template.');
          job.template_id = template.value;
        } else {
          job.text = text.value;
        }
        if (sendAt.value) {
          const at = new Date(sendAt.value);
          if (Number.isNaN(at.getTime())) throw new Error('The start time does not read.');
          job.send_at = at.toISOString();
        }
        if (windowStart.value || windowEnd.value) {
          if (!windowStart.value || !windowEnd.value) throw new Error('A window needs both its start and its end.');
          job.window = { start: windowStart.value.slice(0, 5), end: windowEnd.value.slice(0, 5), tz: windowTz.value.trim() };
        }
      } catch (error) {
        createError.textContent = error.message;
        return;
      }
      submit.disabled = true;
      try {
        const made = await api('/v1/jobs', { method: 'POST', body: job, query: { tenant } });
        toast(`job ${made.name}: ${made.status}, ${made.total} recipient(s)`);
        upsert(made, true);
        recipients.value = '';
        name.value = `Job ${new Date().toLocaleString()}`;
      } catch (error) {
        createError.textContent = describe(error);
      } finally {
        submit.disabled = false;
      }
    },
  },
  h('h2', {}, 'New job'),
  h('div', { class: 'grid2' },
    h('div', { class: 'stack' },
      field('Name', name),
      devicesBox,
      h('fieldset', { class: 'seg' }, h('legend', {}, 'Recipients'),
        h('label', {}, audienceList, 'Phone numbers'), h('label', {}, audienceTag, 'A contacts tag')),
      h('label', { for: 'job-create-recipients' }, 'Phone numbers, one a line'),
      recipients,
      h('p', { class: 'muted', id: 'job-recipients-hint' },
        'Digits with the country code; template variables after commas: 6281234567890, name=Budi'),
      field('Contacts tag', tag)),
    h('div', { class: 'stack' },
      h('fieldset', { class: 'seg' }, h('legend', {}, 'Content'),
        h('label', {}, contentText, 'Text'), h('label', {}, contentTemplate, 'A template')),
      field('Text', text),
      field('Template', template),
      templateVars,
      field('Start at (optional, your local time)', sendAt),
      h('fieldset', { class: 'window' }, h('legend', {}, 'Sending window (optional)'),
        h('div', { class: 'row' }, field('From', windowStart), field('Until', windowEnd), field('Time zone', windowTz))))),
  h('div', { class: 'row' }, submit),
  createError);

  // ---- templates
  const templateBody = h('tbody');
  const templateError = h('p', { class: 'error form-error', role: 'alert', testid: 'template-error' });
  const templateName = h('input', { testid: 'template-name', required: true, maxlength: 100 });
  const templateText = h('textarea', { testid: 'template-text', required: true, maxlength: 65536, rows: 3,
    placeholder: 'Halo {{name}}, pesanan {{order}} sudah dikirim.' });
  const templateSave = h('button', { class: 'primary', type: 'submit', testid: 'template-save' }, 'Add template');
  const templateCancel = h('button', { type: 'button', testid: 'template-cancel', hidden: true,
    onclick: () => editTemplate(null) }, 'Cancel edit');
  let editing = null;
  function editTemplate(t) {
    editing = t ? t.id : null;
    templateName.value = t ? t.name : '';
    templateText.value = t ? t.text : '';
    templateSave.textContent = t ? 'Save template' : 'Add template';
    templateCancel.hidden = !t;
    templateError.textContent = '';
    if (t) templateName.focus();
  }
  const templateForm = h('form', {
    class: 'stack',
    onsubmit: async (event) => {
      event.preventDefault();
      templateError.textContent = '';
      const path = editing ? `/v1/templates/${encodeURIComponent(editing)}` : '/v1/templates';
      try {
        await api(path, { method: editing ? 'PUT' : 'POST', body: { name: templateName.value, text: templateText.value }, query: { tenant } });
        toast(editing ? 'template saved' : 'template added');
        editTemplate(null);
        await loadTemplates();
      } catch (error) {
        templateError.textContent = describe(error);
      }
    },
  }, h('div', { class: 'row' }, field('Template name', templateName)), field('Text with {{placeholders}}', templateText),
  h('div', { class: 'row' }, templateSave, templateCancel), templateError);

  async function loadTemplates() {
    const list = await attempt(() => all('/v1/templates', 'templates', { tenant, limit: 500 }, 2000));
    if (!list) return;
    templates = list;
    const chosen = template.value;
    fill(template, h('option', { value: '' }, list.length ? 'Choose a template' : 'No templates yet'),
      list.map((t) => h('option', { value: t.id }, t.name)));
    if (list.some((t) => t.id === chosen)) template.value = chosen;
    showTemplateVars();
    fill(templateBody, list.map((t) => h('tr', { testid: `template-row-${t.id}` },
      h('td', {}, t.name, h('div', { class: 'muted mono' }, t.id)),
      h('td', { class: 'template-text' }, t.text),
      h('td', { class: 'mono' }, t.variables.join(', ') || '—'),
      h('td', { class: 'actions' },
        h('button', { type: 'button', class: 'small', testid: `template-edit-${t.id}`, 'aria-label': `edit template ${t.name}`,
          onclick: () => editTemplate(t) }, 'edit'),
        h('button', {
          type: 'button', class: 'small danger', testid: `template-delete-${t.id}`, 'aria-label': `delete template ${t.name}`,
          onclick: async () => {
            if (!confirm(`Delete template "${t.name}"? Jobs already made keep their texts.`)) return;
            if (await attempt(() => api(`/v1/templates/${encodeURIComponent(t.id)}`, { method: 'DELETE', query: { tenant } }), 'template deleted')) {
              if (editing === t.id) editTemplate(null);
              loadTemplates();
            }
          },
        }, 'delete')))));
    if (!list.length) templateBody.append(h('tr', {}, h('td', { colspan: 4, class: 'muted' }, 'No templates yet.')));
  }
  const templatesPanel = h('section', { class: 'panel' }, h('h2', {}, 'Templates'),
    h('div', { class: 'table-wrap' }, h('table', {},
      h('thead', {}, h('tr', {}, ['Name', 'Text', 'Variables', 'Actions'].map(th))),
      templateBody)),
    h('h3', {}, 'Add or edit a template'), templateForm);

  // ---- retry settings
  const baseDelay = h('input', { type: 'number', min: 1, max: 86400000, required: true, testid: 'retries-base-delay', disabled: !isOperator });
  const maxAttempts = h('input', { type: 'number', min: 1, max: 50, required: true, testid: 'retries-max-attempts', disabled: !isOperator });
  const retriesSave = h('button', { type: 'submit', testid: 'retries-save', disabled: !isOperator }, 'Save');
  const retriesForm = h('form', {
    class: 'row',
    onsubmit: async (event) => {
      event.preventDefault();
      const saved = await attempt(() => api('/v1/settings/retries', {
        method: 'PUT', body: { base_delay_ms: Number(baseDelay.value), max_attempts: Number(maxAttempts.value) },
      }), 'retry settings saved');
      if (saved) showRetries(saved);
    },
  }, field('Base delay (ms)', baseDelay), field('Attempts in all', maxAttempts), retriesSave);
  function showRetries(s) {
    baseDelay.value = s.base_delay_ms;
    maxAttempts.value = s.max_attempts;
  }
  const retriesPanel = h('section', { class: 'panel' }, h('h2', {}, 'Send retries'),
    h('p', { class: 'muted' }, 'A failed send is tried again after base × fib(n) (1, 1, 2, 3, 5 …), up to the attempts in all.',
      isOperator ? '' : ' Only an admin of every tenant may change them.'),
    retriesForm);

  fill(root, h('h1', {}, 'Jobs'), tenantPicker, h('section', { class: 'panel' }, table), form, templatesPanel, retriesPanel);

  // ---- the list and its live progress
  function row(job) {
    const parts = jobParts(job, tenant, (next) => upsert(next));
    const href = `#/jobs/${encodeURIComponent(job.id)}`;
    const tr = h('tr', { testid: `job-row-${job.id}` },
      h('td', {}, h('a', { href, testid: `job-link-${job.id}` }, job.name), h('div', { class: 'muted mono hide-narrow' }, job.id)),
      h('td', {}, parts.status),
      h('td', { class: 'job-progress' }, parts.bar, ' ', parts.pct),
      h('td', { class: 'muted hide-narrow' }, parts.counts),
      h('td', { class: 'hide-narrow muted' }, when(job.created_at)),
      h('td', { class: 'actions' }, parts.controls));
    return { tr, parts };
  }

  function sortRows() {
    const ordered = [...rows.values()].sort((a, b) => (b.parts.job.created_at || '').localeCompare(a.parts.job.created_at || ''));
    for (const r of ordered) body.append(r.tr);
    empty.hidden = rows.size > 0;
  }

  function upsert(job, first = false) {
    const existing = rows.get(job.id);
    if (existing) {
      existing.parts.update(job);
      return;
    }
    const r = row(job);
    rows.set(job.id, r);
    if (first) body.prepend(r.tr);
    else sortRows();
    empty.hidden = true;
  }

  async function loadJobs() {
    const list = await attempt(() => all('/v1/jobs', 'jobs', { tenant, limit: 500 }, 2000));
    if (!list) return;
    rows.clear();
    body.replaceChildren();
    for (const job of list) rows.set(job.id, row(job));
    sortRows();
  }

  async function loadDevices() {
    const list = await attempt(() => all('/v1/devices', 'devices', { status: 'READY', limit: 500 }, 2000));
    if (!list) return;
    const ready = list.filter((d) => d.status === 'READY' && (!tenant || d.tenant === tenant));
    const checked = new Set([...devicesBox.querySelectorAll('input:checked')].map((c) => c.value));
    fill(devicesBox, h('legend', {}, 'Device pool (READY devices)'),
      ready.length ? ready.map((d) => h('label', {},
        h('input', { type: 'checkbox', value: d.id, testid: `job-create-device-${d.id}`,
          checked: checked.has(d.id) || ready.length === 1 }),
        `${d.name} `, h('span', { class: 'muted mono' }, d.phone || d.id)))
        : h('span', { class: 'muted' }, 'No READY device', tenant ? ` of tenant ${tenant}` : '', ': link one on the Devices page.'));
  }

  async function loadTags() {
    const list = await api('/v1/tags', { query: { tenant, limit: 500 } }).then((p) => p.tags).catch(() => []);
    fill(tag, h('option', { value: '' }, list.length ? 'Choose a tag' : 'No tags in the contact book'),
      list.map((t) => h('option', { value: t.tag }, `${t.tag} (${t.count})`)));
  }

  let reloading = null;
  const looked = new Set();
  function reloadSoon() {
    if (!reloading) reloading = setTimeout(() => { reloading = null; loadJobs(); }, 300);
  }
  cleanups.push(() => clearTimeout(reloading));

  cleanups.push(subscribe((kind, data) => {
    if (kind === 'reset') {
      reloadSoon();
      loadDevices();
      return;
    }
    if (kind === 'status') {
      // A device became READY (or left it): the pool's checkboxes follow.
      loadDevicesSoon();
      return;
    }
    if (tenant && data.tenant && data.tenant !== tenant) return;
    const r = rows.get(data.job_id);
    if (!r) {
      // A job made elsewhere: read the list once for it (not for every event of a job
      // this caller does not list, such as one over a device it may not see).
      if (!looked.has(data.job_id)) {
        looked.add(data.job_id);
        reloadSoon();
      }
      return;
    }
    const before = r.parts.job.status;
    r.parts.update(progressOf(data));
    if (before !== data.status) {
      // started_at / finished_at come with the job itself.
      api(`/v1/jobs/${encodeURIComponent(data.job_id)}`, { query: { tenant } }).then((job) => r.parts.update(job)).catch(() => {});
    }
  }, ['job.progress', 'status']));

  let devicesTimer = null;
  function loadDevicesSoon() {
    if (!devicesTimer) devicesTimer = setTimeout(() => { devicesTimer = null; loadDevices(); }, 500);
  }
  cleanups.push(() => clearTimeout(devicesTimer));

  syncModes();
  api('/v1/settings/retries').then(showRetries).catch(() => {});
  await Promise.all([loadJobs(), loadDevices(), loadTemplates(), loadTags()]);
  return () => cleanups.forEach((fn) => fn());
}

/** The fields of a `job.progress` event that a job shows. */
function progressOf(data) {
  const next = { status: data.status };
  for (const key of ['total', ...COUNTS]) if (typeof data[key] === 'number') next[key] = data[key];
  return next;
}

// ---------------------------------------------------------------------------------
// One job: `#/jobs/{id}`.

async function mountDetail(root, ctx, id) {
  const tenant = chosenTenant(ctx.me);
  const path = `/v1/jobs/${encodeURIComponent(id)}`;
  const back = h('p', {}, h('a', { href: '#/jobs' }, '← All jobs'));
  let job;
  try {
    job = await api(path, { query: { tenant } });
  } catch (error) {
    fill(root, back, h('h1', {}, id), h('p', { class: 'error', role: 'alert' }, describe(error)),
      operator(ctx.me) ? h('p', { class: 'muted' }, `Looked in tenant ${tenant}; pick another on the jobs list.`) : null);
    return undefined;
  }
  const cleanups = [];
  const facts = h('dl', { class: 'muted job-facts' });
  const parts = jobParts(job, tenant, (next) => { renderFacts(next); loadRecipients(); });
  const countList = h('div', { class: 'counts' });

  function renderFacts(next) {
    const j = { ...job, ...next };
    job = j;
    const windowText = j.window ? `${j.window.start}–${j.window.end} ${j.window.tz}` : '—';
    fill(facts, [['Devices', j.devices.join(', ')], ['Template', j.template_id || '—'], ['Start at', when(j.send_at) || '—'],
      ['Window', windowText], ['Created', when(j.created_at)], ['Started', when(j.started_at) || '—'],
      ['Finished', when(j.finished_at) || '—']].map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
    fill(countList, h('span', { class: 'badge' }, `total ${j.total}`),
      COUNTS.map((k) => h('span', { class: `badge ${k}` }, `${k} ${j[k] || 0}`)));
  }

  // ---- recipients by status
  const statusFilter = h('select', { testid: 'job-recipients-status', 'aria-label': 'Recipients in status',
    onchange: () => loadRecipients() },
  h('option', { value: '' }, 'every status'), RECIPIENT_STATUSES.map((s) => h('option', { value: s }, s)));
  const recipientBody = h('tbody');
  let cursor = null;
  let pages = 0;
  const more = h('button', { type: 'button', testid: 'job-recipients-more', hidden: true, onclick: () => loadRecipients(true) }, 'More');
  function recipientRow(r) {
    return h('tr', { testid: `job-recipient-${r.seq}` },
      h('td', { class: 'muted' }, r.seq),
      h('td', { class: 'mono' }, r.to),
      h('td', {}, badge(r.status, `job-recipient-status-${r.seq}`)),
      h('td', { class: 'mono' }, r.device_id ? h('a', { href: `#/device/${encodeURIComponent(r.device_id)}` }, r.device_id) : '—'),
      h('td', { class: 'mono hide-narrow' }, r.message_id || '—'),
      h('td', {}, r.attempts),
      h('td', { class: 'error' }, r.error || ''),
      h('td', { class: 'muted hide-narrow' }, when(r.updated_at)));
  }
  let loading = 0;
  async function loadRecipients(next = false) {
    const serial = ++loading;
    const page = await attempt(() => api(`${path}/recipients`, {
      query: { tenant, status: statusFilter.value, limit: 100, cursor: next ? cursor : undefined },
    }));
    if (!page || serial !== loading) return;
    if (!next) {
      recipientBody.replaceChildren();
      pages = 0;
    }
    pages++;
    recipientBody.append(...page.recipients.map(recipientRow));
    if (!recipientBody.children.length) {
      recipientBody.append(h('tr', {}, h('td', { colspan: 8, class: 'muted' }, 'No recipients in this status.')));
    }
    cursor = page.next_cursor;
    more.hidden = !cursor;
  }

  fill(root, back,
    h('h1', {}, job.name, ' ', parts.status),
    h('p', { class: 'muted mono' }, id),
    h('section', { class: 'panel' },
      h('div', { class: 'row job-progress' }, parts.bar, parts.pct, parts.controls),
      countList, facts),
    h('section', { class: 'panel' }, h('h2', {}, 'Recipients'),
      h('div', { class: 'row' }, field('Status', statusFilter)),
      h('div', { class: 'table-wrap' }, h('table', {},
        h('thead', {}, h('tr', {}, ['#', 'To', 'Status', 'Device', ['Message', 'hide-narrow'],
          'Attempts', 'Error', ['Updated', 'hide-narrow']].map(th))),
        recipientBody)),
      more));
  renderFacts(job);
  await loadRecipients();

  // Live: counts from the event; the recipients' first page again, at most every 2 s.
  let refresh = null;
  function refreshRecipientsSoon() {
    if (pages > 1 || refresh) return;
    refresh = setTimeout(() => { refresh = null; loadRecipients(); }, 2000);
  }
  cleanups.push(() => clearTimeout(refresh));
  cleanups.push(subscribe(async (kind, data) => {
    if (kind === 'reset') {
      const fresh = await api(path, { query: { tenant } }).catch(() => null);
      if (fresh) {
        parts.update(fresh);
        renderFacts(fresh);
      }
      refreshRecipientsSoon();
      return;
    }
    if (data.job_id !== id) return;
    const before = job.status;
    const next = progressOf(data);
    parts.update(next);
    renderFacts(next);
    if (before !== data.status) {
      api(path, { query: { tenant } }).then((fresh) => { parts.update(fresh); renderFacts(fresh); }).catch(() => {});
    }
    refreshRecipientsSoon();
  }, ['job.progress']));

  return () => cleanups.forEach((fn) => fn());
}
