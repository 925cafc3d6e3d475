// The dashboard's shell: login, the navigation and the router (`#/<page>/<param>`).

import { api, clearToken, setToken, token } from './api.js';
import { field, fill, h, toast } from './dom.js';
import * as events from './events.js';

/**
 * The pages, in the navigation's order. Each module exports `mount(root, ctx)`, which
 * may answer a function that unmounts it; `ctx` is `{ me, param, navigate }`.
 * `admin`: shown to admins of every tenant (operators) only.
 */
const PAGES = [
  { path: 'devices', title: 'Devices', load: () => import('./pages/devices.js') },
  { path: 'device', title: null, load: () => import('./pages/device.js') },
  { path: 'jobs', title: 'Jobs', load: () => import('./pages/jobs.js') },
  { path: 'webhooks', title: 'Webhooks', load: () => import('./pages/webhooks.js') },
  // Admin and cluster pages.
  { path: 'admin', title: 'Admin', load: () => import('./pages/admin.js') },
  { path: 'cluster', title: 'Cluster', load: () => import('./pages/cluster.js'), admin: true },
];

const main = document.getElementById('main');
let me = null;
let unmount = null;
let routing = 0;

/** An admin of every tenant: the cluster-wide pages are theirs. */
function operator() {
  return me.role === 'admin' && !me.tenant;
}

function navigate(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

async function route() {
  const serial = ++routing;
  if (!me) return;
  const [path = 'devices', ...rest] = location.hash.replace(/^#\/?/, '').split('/');
  const entry = PAGES.find((p) => p.path === path && (!p.admin || operator())) || PAGES[0];
  for (const link of document.querySelectorAll('#nav a')) {
    if (link.dataset.page === entry.path) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  if (unmount) unmount();
  unmount = null;
  const module = await entry.load();
  if (serial !== routing) return;
  main.replaceChildren();
  const param = rest.map(decodeURIComponent).join('/') || null;
  unmount = (await module.mount(main, { me, param, navigate })) || null;
  document.title = `${entry.title || param || 'wafleet'} · wafleet`;
}

function showLogin(message) {
  me = null;
  events.stop();
  if (unmount) unmount();
  unmount = null;
  document.querySelector('header.top').hidden = true;
  const key = h('input', { type: 'password', testid: 'login-key', autocomplete: 'off', id: 'login-key' });
  const username = h('input', { testid: 'login-username', autocomplete: 'username' });
  const password = h('input', { type: 'password', testid: 'login-password', autocomplete: 'current-password' });
  const error = h('p', { class: 'error', role: 'alert' }, message || '');
  const submit = h('button', { class: 'primary', type: 'submit', testid: 'login-submit' }, 'Log in');
  const form = h('form', {
    onsubmit: async (event) => {
      event.preventDefault();
      submit.disabled = true;
      error.textContent = '';
      try {
        if (key.value.trim()) {
          setToken(key.value.trim());
        } else {
          const login = await api('/v1/auth/login', {
            method: 'POST',
            body: { username: username.value, password: password.value },
          });
          setToken(login.token);
        }
        await enter();
      } catch (failure) {
        clearToken();
        error.textContent = failure.status === 401 ? 'That key, name or password is not valid.' : failure.message;
      } finally {
        submit.disabled = false;
      }
    },
  },
  field('API key', key),
  h('p', { class: 'or' }, 'or a user\'s name and password'),
  field('User name', username),
  field('Password', password),
  submit,
  error);
  fill(main, h('section', { class: 'login panel' }, h('h1', {}, 'wafleet'), form));
  key.focus();
}

async function enter() {
  me = await api('/v1/auth/me');
  document.querySelector('header.top').hidden = false;
  document.getElementById('who').textContent = `${me.actor} · ${me.role}${me.tenant ? ' · ' + me.tenant : ''}`;
  fill(document.getElementById('nav'), PAGES.filter((p) => p.title && (!p.admin || operator()))
    .map((p) => h('a', { href: `#/${p.path}`, 'data-page': p.path }, p.title)));
  events.start();
  await route();
}

events.onState((state) => {
  const label = { live: '● live', connecting: '○ reconnecting…', closed: '' }[state];
  document.getElementById('stream').textContent = label;
});
window.addEventListener('hashchange', route);
window.addEventListener('wafleet:logout', (event) => {
  clearToken();
  showLogin(event.detail || 'Logged out.');
});
document.getElementById('logout').addEventListener('click', () => {
  clearToken();
  showLogin();
});

if (token()) {
  enter().catch((error) => {
    clearToken();
    showLogin(error.message);
  });
} else {
  showLogin();
}
window.addEventListener('unhandledrejection', (event) => toast(String(event.reason?.message || event.reason), 'error'));
