// Small DOM helpers: build elements, show messages, format values.

/**
 * Builds an element. `attrs`: `class`, `testid` (data-testid), `on<event>` handlers,
 * `text`, DOM properties for `value`/`checked`/`disabled`/`hidden`, other keys as
 * attributes (skipped when null or false). Children: nodes, strings, arrays, null.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === 'class') el.className = value;
    else if (key === 'testid') el.dataset.testid = value;
    else if (key === 'text') el.textContent = value;
    else if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else if (key === 'value' || key === 'checked' || key === 'disabled' || key === 'hidden') el[key] = value;
    else el.setAttribute(key, value === true ? '' : value);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : String(child));
  }
}

/** Replaces a node's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A short message in the corner, read out by screen readers. */
export function toast(message, kind = 'info') {
  const box = document.getElementById('toasts');
  const item = h('div', { class: `toast ${kind}` }, message);
  box.append(item);
  setTimeout(() => item.remove(), kind === 'error' ? 8000 : 4000);
}

/** Runs `action`, showing its error (an ApiError's message) as a toast. */
export async function attempt(action, done) {
  try {
    const result = await action();
    if (done) toast(done);
    return result;
  } catch (error) {
    toast(error.message || String(error), 'error');
    return undefined;
  }
}

/** A status as a coloured badge. */
export function badge(status, testid) {
  return h('span', { class: `badge ${status}`, testid }, status);
}

/** An RFC 3339 time as the viewer's local time. */
export function when(time) {
  if (!time) return '';
  const date = new Date(time);
  return Number.isNaN(date.getTime()) ? time : date.toLocaleString();
}

/** A labelled input. */
export function field(label, input) {
  return h('label', {}, label, input);
}

/** A page heading and the page's body. */
export function page(title, ...children) {
  return [h('h1', {}, title), ...children];
}
