// A device's QR code, kept current: fetched when shown and again on every `qr` event
// (WhatsApp rotates it); `onReady` when the device reaches READY.

import { api } from './api.js';
import { h } from './dom.js';
import { subscribe } from './events.js';

/** Answers `{ el, dispose }`: `el` shows the QR as an inline `<svg>`. */
export function qrView(id, onReady) {
  const box = h('div', { class: 'qr' });
  const caption = h('p', { class: 'muted' }, 'Waiting for the QR code…');
  const el = h('div', {}, box, caption);
  let serial = 0;

  async function load() {
    const mine = ++serial;
    try {
      const response = await api(`/v1/devices/${encodeURIComponent(id)}/qr`, { query: { format: 'svg' }, raw: true });
      const text = await response.text();
      if (mine !== serial) return;
      const svg = new DOMParser().parseFromString(text, 'image/svg+xml').documentElement;
      if (svg.nodeName.toLowerCase() !== 'svg') throw new Error('not an SVG');
      svg.dataset.testid = `device-qr-${id}`;
      svg.setAttribute('role', 'img');
      svg.setAttribute('aria-label', `QR code to link ${id}`);
      box.replaceChildren(document.importNode(svg, true));
      caption.textContent = 'Scan with WhatsApp: Linked devices → Link a device.';
    } catch (error) {
      if (mine !== serial) return;
      box.replaceChildren();
      caption.textContent = error.status === 409 ? 'No QR code: the device is not waiting for a scan.' : error.message;
    }
  }

  const unsubscribe = subscribe((kind, data) => {
    if (kind === 'reset') return load();
    if (data.device_id !== id) return;
    if (kind === 'qr') load();
    if (kind === 'status') {
      if (data.status === 'SCAN_QR') load();
      if (data.status === 'READY') {
        caption.textContent = 'Linked.';
        box.replaceChildren();
        if (onReady) onReady();
      }
    }
  }, ['qr', 'status']);
  load();
  return { el, dispose: () => { serial++; unsubscribe(); } };
}
