// Calls the wafleet API with the key or login token the user gave, on this origin only.

const TOKEN = 'wafleet.token';

export function token() {
  return sessionStorage.getItem(TOKEN);
}

export function setToken(value) {
  sessionStorage.setItem(TOKEN, value);
}

export function clearToken() {
  sessionStorage.removeItem(TOKEN);
}

/** An answer other than 2xx: the API's error code and message. */
export class ApiError extends Error {
  constructor(status, code, message, retryable) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryable = retryable;
  }
}

/**
 * `path` relative to the origin (`/v1/...`). `body` is sent as JSON; `query` an
 * object of search parameters (empty values skipped). Answers the parsed JSON, or
 * the Response itself with `raw`. A 401 logs the user out.
 */
export async function api(path, { method = 'GET', body, query, raw = false, headers = {} } = {}) {
  const url = new URL(path, location.origin);
  for (const [key, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== '') url.searchParams.set(key, value);
  }
  const init = { method, headers: { ...headers } };
  const current = token();
  if (current) init.headers.Authorization = `Bearer ${current}`;
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const response = await fetch(url, init);
  if (!response.ok) {
    let error = { code: 'http_' + response.status, message: response.statusText, retryable: false };
    try {
      error = (await response.json()).error || error;
    } catch { /* not JSON */ }
    if (response.status === 401 && path !== '/v1/auth/login') {
      window.dispatchEvent(new CustomEvent('wafleet:logout', { detail: error.message }));
    }
    throw new ApiError(response.status, error.code, error.message, error.retryable);
  }
  if (raw) return response;
  return response.status === 204 ? null : response.json();
}

/** Every page of a cursor-paged list (`key` names the array), up to `max` items. */
export async function all(path, key, query = {}, max = 10000) {
  const items = [];
  let cursor;
  do {
    const page = await api(path, { query: { ...query, cursor } });
    items.push(...page[key]);
    cursor = page.next_cursor;
  } while (cursor && items.length < max);
  return items;
}
