// The fleet's live events: one SSE stream (`/v1/events`) per tab, shared by every page.
// Read with fetch (EventSource cannot send the Authorization header), resumed with
// Last-Event-ID after a drop. A `reset` (the server no longer holds what came after
// our position) reaches subscribers as an event of kind `reset`: they read the state
// again.

import { token } from './api.js';

const subscribers = new Set();
let controller = null;
let lastId = null;
let state = 'closed';
const stateListeners = new Set();

/** Calls `fn(kind, data)` for every event (or only `kinds`); returns the unsubscribe. */
export function subscribe(fn, kinds = null) {
  const entry = { fn, kinds: kinds && new Set(kinds) };
  subscribers.add(entry);
  return () => subscribers.delete(entry);
}

/** `fn(state)` on every change of the stream's state (`live`, `connecting`, `closed`). */
export function onState(fn) {
  stateListeners.add(fn);
  fn(state);
  return () => stateListeners.delete(fn);
}

function setState(next) {
  state = next;
  for (const fn of stateListeners) fn(next);
}

function deliver(kind, data) {
  for (const { fn, kinds } of subscribers) {
    if (kinds && kind !== 'reset' && !kinds.has(kind)) continue;
    try {
      fn(kind, data);
    } catch (error) {
      console.error('event handler failed', error);
    }
  }
}

/** Opens the stream (again); nothing if it is open. */
export function start() {
  if (controller) return;
  controller = new AbortController();
  run(controller.signal);
}

/** Closes the stream (at logout). */
export function stop() {
  if (controller) controller.abort();
  controller = null;
  lastId = null;
  setState('closed');
}

async function run(signal) {
  let delay = 500;
  while (!signal.aborted) {
    setState('connecting');
    try {
      const headers = { Accept: 'text/event-stream', Authorization: `Bearer ${token()}` };
      if (lastId) headers['Last-Event-ID'] = lastId;
      const response = await fetch('/v1/events', { headers, signal, cache: 'no-store' });
      if (response.status === 401) {
        window.dispatchEvent(new CustomEvent('wafleet:logout'));
        return;
      }
      if (!response.ok) throw new Error(`events: ${response.status}`);
      setState('live');
      delay = 500;
      await read(response.body, signal);
    } catch (error) {
      if (signal.aborted) return;
    }
    setState('connecting');
    await new Promise((resolve) => setTimeout(resolve, delay));
    delay = Math.min(delay * 2, 10000);
  }
}

async function read(body, signal) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  while (!signal.aborted) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.search(/\r?\n\r?\n/)) >= 0) {
      const frame = buffer.slice(0, end);
      buffer = buffer.slice(end).replace(/^\r?\n\r?\n/, '');
      dispatch(frame);
    }
  }
}

function dispatch(frame) {
  let kind = 'message';
  let id = null;
  const data = [];
  for (const line of frame.split(/\r?\n/)) {
    if (line.startsWith(':')) continue;
    const colon = line.indexOf(':');
    const name = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
    if (name === 'event') kind = value;
    else if (name === 'id') id = value;
    else if (name === 'data') data.push(value);
  }
  if (!data.length) return;
  if (id) lastId = id;
  let parsed;
  try {
    parsed = JSON.parse(data.join('\n'));
  } catch {
    return;
  }
  deliver(kind, parsed);
}
