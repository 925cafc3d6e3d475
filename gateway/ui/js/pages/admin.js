// Admin: tenants, API keys (the secret shown once), users and the audit log. Each
// section shows what the caller's role allows; one the API refuses (403) says so.
//
// testids:
//   tenants: admin-tenants, admin-tenant-create-id, admin-tenant-create-name,
//     admin-tenant-create-max, admin-tenant-create-submit, admin-tenant-row-{id},
//     admin-tenant-max-{id}, admin-tenant-save-{id}, admin-tenant-delete-{id}
//   keys: admin-keys, admin-key-create-name, admin-key-create-role, admin-key-create-tenant,
//     admin-key-create-devices, admin-key-create-expires, admin-key-create-submit,
//     admin-key-row-{id}, admin-key-revoke-{id}, admin-key-rotate-{id},
//     admin-rotate-grace, admin-rotate-submit
//   the secret dialog: admin-secret-dialog, admin-secret, admin-secret-copy, admin-secret-close
//   users: admin-users, admin-user-create-username, admin-user-create-password,
//     admin-user-create-role, admin-user-create-tenant, admin-user-create-submit,
//     admin-user-row-{id}, admin-user-lock-{id}, admin-user-role-{id},
//     admin-user-password-{id}, admin-user-delete-{id}, admin-password-input, admin-password-submit
//   audit: admin-audit, admin-audit-actor, admin-audit-action, admin-audit-target,
//     admin-audit-since, admin-audit-until, admin-audit-submit, admin-audit-csv,
//     admin-audit-more, admin-audit-row-{id}

import { all, api } from '../api.js';
import { attempt, field, fill, h, toast, when } from '../dom.js';

const ROLES = ['user', 'admin'];

export async function mount(root, ctx) {
  const me = ctx.me;
  const operator = me.role === 'admin' && !me.tenant;
  const isAdmin = me.role === 'admin';
  const dialogs = new Set();
  let tenants = [];

  /** A modal dialog, removed from the page when closed (or when the page unmounts). */
  function openDialog(label, testid, ...children) {
    const dialog = h('dialog', {
      'aria-label': label, testid,
      onclose: () => { dialogs.delete(dialog); dialog.remove(); },
    }, h('h2', {}, label), ...children);
    dialogs.add(dialog);
    document.body.append(dialog);
    dialog.showModal();
    return dialog;
  }

  /** The secret of a new or rotated key: shown this once, never kept by the page. */
  function showSecret(key, what) {
    const secret = h('input', {
      class: 'secret', readonly: true, value: key.key, testid: 'admin-secret',
      'aria-label': 'The new secret', onfocus: (event) => event.target.select(),
    });
    const copy = h('button', {
      type: 'button', class: 'primary', testid: 'admin-secret-copy',
      onclick: async () => {
        try {
          await navigator.clipboard.writeText(secret.value);
        } catch {
          // Not a secure context (plain http on another host): the selection and the
          // old command still work.
          secret.select();
          if (!document.execCommand('copy')) return toast('Copy it by hand: the text is selected.', 'error');
        }
        toast('Copied.');
      },
    }, 'Copy');
    const dialog = openDialog(`${what}: ${key.name}`, 'admin-secret-dialog',
      h('p', { class: 'admin-warning', role: 'alert' },
        'Copy this secret now: it is shown only this once. wafleet keeps only its hash and cannot show it again.'),
      h('div', { class: 'admin-secret-row' }, secret, copy),
      key.previous_secret_until
        ? h('p', { class: 'muted' }, `The previous secret works until ${when(key.previous_secret_until)}.`) : null,
      h('form', { method: 'dialog' }, h('button', { type: 'submit', testid: 'admin-secret-close' }, 'I have copied it')));
    // Nothing else holds the secret: clear the field when the dialog goes.
    dialog.addEventListener('close', () => { secret.value = ''; });
    secret.focus();
  }

  /** A section that loads its own data and says so when the API refuses it. */
  function section(title, testid) {
    const body = h('div');
    const el = h('section', { class: 'panel admin-section', testid, 'aria-label': title }, h('h2', {}, title), body);
    return { el, body };
  }

  function refused(body, error, what) {
    if (error.status === 403) {
      fill(body, h('p', { class: 'muted' }, `Your ${me.role} access does not include ${what}.`));
    } else {
      fill(body, h('p', { class: 'error' }, error.message));
    }
  }

  function tenantSelect(testid, { none }) {
    return h('select', { testid },
      none ? h('option', { value: '' }, none) : null,
      tenants.map((t) => h('option', { value: t.id }, t.id === t.name ? t.id : `${t.name} (${t.id})`)));
  }

  // ---- tenants ----
  const tenantsPart = section('Tenants', 'admin-tenants');

  async function loadTenants() {
    try {
      tenants = await all('/v1/tenants', 'tenants', { limit: 500 });
    } catch (error) {
      tenants = [];
      refused(tenantsPart.body, error, 'tenants');
      return;
    }
    const rows = tenants.map((t) => {
      const max = h('input', {
        type: 'number', min: 0, max: 4294967295, value: t.max_devices ?? '', placeholder: 'no limit',
        class: 'admin-narrow', testid: `admin-tenant-max-${t.id}`, 'aria-label': `Device limit of ${t.id}`,
        disabled: !operator,
      });
      return h('tr', { testid: `admin-tenant-row-${t.id}` },
        h('td', {}, t.name, h('div', { class: 'muted mono' }, t.id)),
        h('td', {}, max),
        // The default tenant exists before anyone writes it: the API gives it time 0.
        h('td', { class: 'hide-narrow' }, Date.parse(t.created_at) === 0 ? 'built in' : when(t.created_at)),
        h('td', { class: 'actions' }, operator ? [
          h('button', {
            type: 'button', class: 'small', testid: `admin-tenant-save-${t.id}`, 'aria-label': `Save the device limit of ${t.id}`,
            onclick: () => attempt(async () => {
              const value = max.value.trim() === '' ? null : Number(max.value);
              await api(`/v1/tenants/${encodeURIComponent(t.id)}`, { method: 'PATCH', body: { max_devices: value } });
              await loadTenants();
            }, `${t.id}: device limit saved`),
          }, 'Save limit'),
          h('button', {
            type: 'button', class: 'small danger', testid: `admin-tenant-delete-${t.id}`, 'aria-label': `Delete tenant ${t.id}`,
            onclick: async () => {
              if (!confirm(`Delete tenant ${t.id}? Only a tenant without devices, keys or users can go.`)) return;
              if (await attempt(() => api(`/v1/tenants/${encodeURIComponent(t.id)}`, { method: 'DELETE' }), `deleted ${t.id}`)) {
                await loadTenants();
              }
            },
          }, 'Delete'),
        ] : null));
    });
    fill(tenantsPart.body,
      operator ? tenantForm() : h('p', { class: 'muted' }, 'Only an admin of every tenant creates or changes tenants.'),
      h('div', { class: 'table-wrap' }, h('table', {},
        h('thead', {}, h('tr', {}, ['Tenant', 'Device limit', h('span', { class: 'hide-narrow' }, 'Created'), 'Actions']
          .map((c) => h('th', { scope: 'col' }, c)))),
        h('tbody', {}, rows))));
    // The tenant pickers of the other forms follow the list.
    renderKeyForm();
    renderUserForm();
  }

  function tenantForm() {
    const id = h('input', { testid: 'admin-tenant-create-id', pattern: '[a-zA-Z0-9_.@\\-]{1,64}', placeholder: 'generated' });
    const name = h('input', { testid: 'admin-tenant-create-name', required: true, maxlength: 200, placeholder: 'Acme shops' });
    const max = h('input', { testid: 'admin-tenant-create-max', type: 'number', min: 0, placeholder: 'no limit', class: 'admin-narrow' });
    return h('form', {
      class: 'row admin-form',
      onsubmit: async (event) => {
        event.preventDefault();
        const body = { name: name.value };
        if (id.value.trim()) body.id = id.value.trim();
        if (max.value.trim() !== '') body.max_devices = Number(max.value);
        const made = await attempt(() => api('/v1/tenants', { method: 'POST', body }), 'tenant created');
        if (!made) return;
        id.value = '';
        name.value = '';
        max.value = '';
        await loadTenants();
      },
    }, field('Name', name), field('Id (optional)', id), field('Device limit', max),
    h('button', { class: 'primary', type: 'submit', testid: 'admin-tenant-create-submit' }, 'Create tenant'));
  }

  // ---- keys ----
  const keysPart = section('API keys', 'admin-keys');
  const keyForm = h('div');
  const keyList = h('div');
  keysPart.body.append(keyForm, keyList);

  function renderKeyForm() {
    const name = h('input', { testid: 'admin-key-create-name', required: true, maxlength: 200, placeholder: 'CRM integration' });
    const role = h('select', { testid: 'admin-key-create-role' },
      (isAdmin ? ROLES : ['user']).map((r) => h('option', { value: r }, r)));
    const tenant = operator ? tenantSelect('admin-key-create-tenant', { none: '(none: every tenant, admin only)' }) : null;
    if (tenant && tenants.some((t) => t.id === 'default')) tenant.value = 'default';
    const devices = h('input', { testid: 'admin-key-create-devices', placeholder: 'all of the tenant\'s', 'aria-describedby': 'admin-key-devices-help' });
    const expires = h('input', { testid: 'admin-key-create-expires', type: 'datetime-local' });
    fill(keyForm, h('form', {
      class: 'row admin-form',
      onsubmit: async (event) => {
        event.preventDefault();
        const body = { name: name.value, role: role.value };
        if (tenant && tenant.value) body.tenant = tenant.value;
        const ids = devices.value.split(/[\s,]+/).filter(Boolean);
        if (ids.length) body.devices = ids;
        if (expires.value) {
          const at = new Date(expires.value);
          if (Number.isNaN(at.getTime())) return toast('The expiry is not a valid time.', 'error');
          body.expires_at = at.toISOString();
        }
        const key = await attempt(() => api('/v1/keys', { method: 'POST', body }));
        if (!key) return;
        name.value = '';
        devices.value = '';
        expires.value = '';
        showSecret(key, 'New key');
        await loadKeys();
      },
    }, field('Name', name), field('Role', role), tenant ? field('Tenant', tenant) : null,
    field('Only these devices', devices), field('Expires (local time)', expires),
    h('button', { class: 'primary', type: 'submit', testid: 'admin-key-create-submit' }, 'Create key')),
    h('p', { class: 'muted', id: 'admin-key-devices-help' },
      'Devices: ids separated by commas or spaces; empty for every device of the tenant.',
      me.role === 'user' ? ' Your key may create user keys for your tenant only.' : ''));
  }

  function rotate(key) {
    const grace = h('input', { type: 'number', min: 0, max: 604800, value: 0, testid: 'admin-rotate-grace' });
    const dialog = openDialog(`Rotate ${key.name}`, 'admin-rotate-dialog',
      h('form', {
        class: 'admin-dialog-form',
        onsubmit: async (event) => {
          event.preventDefault();
          const rotated = await attempt(() => api(`/v1/keys/${encodeURIComponent(key.id)}/rotate`, {
            method: 'POST', body: { grace_seconds: Number(grace.value || 0) },
          }));
          if (!rotated) return;
          dialog.close();
          showSecret(rotated, 'Rotated key');
          await loadKeys();
        },
      }, field('Seconds the old secret keeps working (0 to 604800)', grace),
      h('div', { class: 'row' },
        h('button', { type: 'submit', class: 'primary', testid: 'admin-rotate-submit' }, 'Rotate'),
        h('button', { type: 'button', onclick: () => dialog.close() }, 'Cancel'))));
    grace.focus();
  }

  async function loadKeys() {
    let keys;
    try {
      keys = await all('/v1/keys', 'keys', { limit: 500 });
    } catch (error) {
      keyForm.hidden = true;
      refused(keyList, error, 'API keys');
      return;
    }
    keyForm.hidden = false;
    const rows = keys.map((k) => h('tr', { testid: `admin-key-row-${k.id}` },
      h('td', {}, k.name, h('div', { class: 'muted mono' }, k.id)),
      h('td', {}, k.role),
      h('td', {}, k.tenant || h('span', { class: 'muted' }, 'every tenant')),
      h('td', { class: 'hide-narrow mono' }, k.devices ? k.devices.join(', ') : h('span', { class: 'muted' }, 'all')),
      h('td', { class: 'hide-narrow' }, k.expires_at ? when(k.expires_at) : h('span', { class: 'muted' }, 'never'),
        k.previous_secret_until ? h('div', { class: 'muted' }, `old secret until ${when(k.previous_secret_until)}`) : null),
      h('td', { class: 'hide-narrow' }, when(k.created_at), h('div', { class: 'muted mono' }, k.created_by)),
      h('td', { class: 'actions' },
        h('button', {
          type: 'button', class: 'small', testid: `admin-key-rotate-${k.id}`, 'aria-label': `Rotate key ${k.name}`,
          onclick: () => rotate(k),
        }, 'Rotate'),
        h('button', {
          type: 'button', class: 'small danger', testid: `admin-key-revoke-${k.id}`, 'aria-label': `Revoke key ${k.name}`,
          onclick: async () => {
            if (!confirm(`Revoke ${k.name} (${k.id})? Every gateway refuses it within 2 s.`)) return;
            if (await attempt(() => api(`/v1/keys/${encodeURIComponent(k.id)}`, { method: 'DELETE' }), `revoked ${k.name}`)) {
              await loadKeys();
            }
          },
        }, 'Revoke'))));
    fill(keyList, keys.length === 0 ? h('p', { class: 'muted' }, 'No keys yet (the bootstrap key is not listed).') :
      h('div', { class: 'table-wrap' }, h('table', {},
        h('thead', {}, h('tr', {}, ['Key', 'Role', 'Tenant', h('span', { class: 'hide-narrow' }, 'Devices'),
          h('span', { class: 'hide-narrow' }, 'Expires'), h('span', { class: 'hide-narrow' }, 'Created'), 'Actions']
          .map((c) => h('th', { scope: 'col' }, c)))),
        h('tbody', {}, rows))));
  }

  // ---- users ----
  const usersPart = section('Users', 'admin-users');
  const userForm = h('div');
  const userList = h('div');
  usersPart.body.append(userForm, userList);

  function renderUserForm() {
    if (!isAdmin) return;
    const username = h('input', { testid: 'admin-user-create-username', required: true, pattern: '[a-zA-Z0-9_.@\\-]{1,64}', autocomplete: 'off' });
    const password = h('input', { testid: 'admin-user-create-password', type: 'password', required: true, minlength: 10, maxlength: 256, autocomplete: 'new-password' });
    const role = h('select', { testid: 'admin-user-create-role' }, ROLES.map((r) => h('option', { value: r }, r)));
    const tenant = operator ? tenantSelect('admin-user-create-tenant', { none: '(none: every tenant, admin only)' }) : null;
    if (tenant && tenants.some((t) => t.id === 'default')) tenant.value = 'default';
    fill(userForm, h('form', {
      class: 'row admin-form',
      onsubmit: async (event) => {
        event.preventDefault();
        const body = { username: username.value, password: password.value, role: role.value };
        if (tenant && tenant.value) body.tenant = tenant.value;
        const made = await attempt(() => api('/v1/users', { method: 'POST', body }), `user ${username.value} created`);
        password.value = '';
        if (!made) return;
        username.value = '';
        await loadUsers();
      },
    }, field('User name', username), field('Password (10+ characters)', password), field('Role', role),
    tenant ? field('Tenant', tenant) : null,
    h('button', { class: 'primary', type: 'submit', testid: 'admin-user-create-submit' }, 'Create user')));
  }

  function resetPassword(user) {
    const password = h('input', { type: 'password', required: true, minlength: 10, maxlength: 256, autocomplete: 'new-password', testid: 'admin-password-input' });
    const dialog = openDialog(`New password for ${user.username}`, 'admin-password-dialog',
      h('form', {
        class: 'admin-dialog-form',
        onsubmit: async (event) => {
          event.preventDefault();
          const done = await attempt(() => api(`/v1/users/${encodeURIComponent(user.id)}`, {
            method: 'PATCH', body: { password: password.value },
          }), `${user.username}: password changed; their sessions end`);
          password.value = '';
          if (done) dialog.close();
        },
      }, field('Password (10 to 256 characters)', password),
      h('p', { class: 'muted' }, 'Their login tokens stop working.'),
      h('div', { class: 'row' },
        h('button', { type: 'submit', class: 'primary', testid: 'admin-password-submit' }, 'Set password'),
        h('button', { type: 'button', onclick: () => dialog.close() }, 'Cancel'))));
    password.focus();
  }

  async function patchUser(user, body, done) {
    if (await attempt(() => api(`/v1/users/${encodeURIComponent(user.id)}`, { method: 'PATCH', body }), done)) {
      await loadUsers();
    }
  }

  async function loadUsers() {
    if (!isAdmin) {
      fill(userList, h('p', { class: 'muted' }, 'Only an admin manages users.'));
      return;
    }
    let users;
    try {
      users = await all('/v1/users', 'users', { limit: 500 });
    } catch (error) {
      userForm.hidden = true;
      refused(userList, error, 'users');
      return;
    }
    userForm.hidden = false;
    const rows = users.map((u) => {
      const role = h('select', { testid: `admin-user-role-${u.id}`, 'aria-label': `Role of ${u.username}` },
        ROLES.map((r) => h('option', { value: r, selected: r === u.role }, r)));
      role.addEventListener('change', () => patchUser(u, { role: role.value }, `${u.username} is now ${role.value}`));
      return h('tr', { testid: `admin-user-row-${u.id}` },
        h('td', {}, u.username, h('div', { class: 'muted mono' }, u.id)),
        h('td', {}, role),
        h('td', {}, u.tenant || h('span', { class: 'muted' }, 'every tenant')),
        h('td', {}, u.locked ? h('span', { class: 'badge LOGGED_OUT' }, 'locked') : h('span', { class: 'badge READY' }, 'active')),
        h('td', { class: 'hide-narrow' }, when(u.updated_at)),
        h('td', { class: 'actions' },
          h('button', {
            type: 'button', class: 'small', testid: `admin-user-lock-${u.id}`,
            'aria-label': `${u.locked ? 'Unlock' : 'Lock'} ${u.username}`,
            onclick: () => patchUser(u, { locked: !u.locked }, `${u.username} ${u.locked ? 'unlocked' : 'locked'}`),
          }, u.locked ? 'Unlock' : 'Lock'),
          h('button', {
            type: 'button', class: 'small', testid: `admin-user-password-${u.id}`, 'aria-label': `Reset the password of ${u.username}`,
            onclick: () => resetPassword(u),
          }, 'Reset password'),
          h('button', {
            type: 'button', class: 'small danger', testid: `admin-user-delete-${u.id}`, 'aria-label': `Delete ${u.username}`,
            onclick: async () => {
              if (!confirm(`Delete user ${u.username}?`)) return;
              if (await attempt(() => api(`/v1/users/${encodeURIComponent(u.id)}`, { method: 'DELETE' }), `deleted ${u.username}`)) {
                await loadUsers();
              }
            },
          }, 'Delete')));
    });
    fill(userList, users.length === 0 ? h('p', { class: 'muted' }, 'No users yet.') :
      h('div', { class: 'table-wrap' }, h('table', {},
        h('thead', {}, h('tr', {}, ['User', 'Role', 'Tenant', 'State', h('span', { class: 'hide-narrow' }, 'Changed'), 'Actions']
          .map((c) => h('th', { scope: 'col' }, c)))),
        h('tbody', {}, rows))));
  }

  // ---- audit ----
  const auditPart = section('Audit log', 'admin-audit');
  const filters = {
    actor: h('input', { testid: 'admin-audit-actor', placeholder: 'key:… or user:…' }),
    action: h('input', { testid: 'admin-audit-action', placeholder: 'create_device' }),
    target: h('input', { testid: 'admin-audit-target', placeholder: '/v1/devices/…' }),
    since: h('input', { testid: 'admin-audit-since', type: 'datetime-local' }),
    until: h('input', { testid: 'admin-audit-until', type: 'datetime-local' }),
  };
  const auditBody = h('tbody');
  const more = h('button', { type: 'button', testid: 'admin-audit-more', hidden: true, onclick: () => loadAudit(false) }, 'More entries');
  const auditNote = h('p', { class: 'muted', role: 'status' });
  let cursor = null;
  let downloadUrl = null;

  /** The filters as query parameters (times in UTC), or null when one is invalid. */
  function auditQuery() {
    const query = {};
    for (const key of ['actor', 'action', 'target']) query[key] = filters[key].value.trim();
    for (const key of ['since', 'until']) {
      if (!filters[key].value) continue;
      const at = new Date(filters[key].value);
      if (Number.isNaN(at.getTime())) {
        toast(`${key} is not a valid time.`, 'error');
        return null;
      }
      query[key] = at.toISOString();
    }
    return query;
  }

  async function loadAudit(fresh) {
    const query = auditQuery();
    if (!query) return;
    if (fresh) cursor = null;
    let page;
    try {
      page = await api('/v1/audit', { query: { ...query, limit: 100, cursor } });
    } catch (error) {
      if (error.status === 403) refused(auditPart.body, error, 'the audit log');
      else toast(error.message, 'error');
      return;
    }
    const rows = page.entries.map((e) => h('tr', { testid: `admin-audit-row-${e.id}` },
      h('td', {}, when(e.at)),
      h('td', { class: 'mono' }, e.actor),
      h('td', { class: 'hide-narrow' }, e.tenant || ''),
      h('td', { class: 'mono' }, e.action),
      h('td', { class: 'mono admin-wrap' }, e.target),
      h('td', { class: 'hide-narrow mono' }, e.source),
      h('td', {}, h('span', { class: `badge ${e.status < 400 ? 'READY' : 'FAILED'}` }, `${e.status} ${e.outcome}`))));
    if (fresh) auditBody.replaceChildren(...rows);
    else auditBody.append(...rows);
    cursor = page.next_cursor;
    more.hidden = !cursor;
    auditNote.textContent = `${auditBody.children.length} entries shown, oldest first.`;
  }

  async function downloadCsv(button) {
    const query = auditQuery();
    if (!query) return;
    button.disabled = true;
    try {
      // A plain link cannot carry the key: fetch with it, then hand the browser a blob.
      const response = await api('/v1/audit', { query: { ...query, format: 'csv' }, raw: true });
      const blob = await response.blob();
      if (downloadUrl) URL.revokeObjectURL(downloadUrl);
      downloadUrl = URL.createObjectURL(blob);
      const link = h('a', { href: downloadUrl, download: `wafleet-audit-${new Date().toISOString().slice(0, 19).replace(/:/g, '')}.csv` });
      document.body.append(link);
      link.click();
      link.remove();
      toast('Audit log downloaded.');
    } catch (error) {
      toast(error.message || String(error), 'error');
    } finally {
      button.disabled = false;
    }
  }

  function renderAudit() {
    const csv = h('button', { type: 'button', testid: 'admin-audit-csv', onclick: (event) => downloadCsv(event.currentTarget) }, 'Download CSV');
    fill(auditPart.body,
      h('form', {
        class: 'row admin-form',
        onsubmit: (event) => { event.preventDefault(); loadAudit(true); },
      }, field('Actor', filters.actor), field('Action', filters.action), field('Target', filters.target),
      field('Since (local time)', filters.since), field('Until (local time)', filters.until),
      h('button', { type: 'submit', class: 'primary', testid: 'admin-audit-submit' }, 'Filter'), csv),
      auditNote,
      h('div', { class: 'table-wrap' }, h('table', {},
        h('thead', {}, h('tr', {}, ['When', 'Actor', h('span', { class: 'hide-narrow' }, 'Tenant'), 'Action', 'Target',
          h('span', { class: 'hide-narrow' }, 'Source'), 'Outcome'].map((c) => h('th', { scope: 'col' }, c)))),
        auditBody)),
      more);
  }

  const parts = [tenantsPart, keysPart, usersPart];
  if (isAdmin) parts.push(auditPart);
  fill(root, h('h1', {}, 'Admin'),
    h('p', { class: 'muted' }, operator ? 'You are an admin of every tenant.'
      : `You act for tenant ${me.tenant || '—'} as ${me.role}.`),
    parts.map((p) => p.el));
  if (!isAdmin) fill(usersPart.body, h('p', { class: 'muted' }, 'Only an admin manages users.'));
  if (isAdmin) renderAudit();

  renderKeyForm();
  renderUserForm();
  await Promise.all([loadTenants(), loadKeys(), isAdmin ? loadUsers() : null, isAdmin ? loadAudit(true) : null]);

  return () => {
    for (const dialog of [...dialogs]) dialog.close();
    if (downloadUrl) URL.revokeObjectURL(downloadUrl);
  };
}
