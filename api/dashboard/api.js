// @ts-check
/* global document, fetch */
// The public API as the dashboard calls it, and the bookkeeping of requests in flight.

import { state } from './state.js';

/** A refused or failed API call: the HTTP status (0: network) and the API's error code. */
export class ApiFailure extends Error {
  /**
   * @param {number} status
   * @param {string} code
   * @param {string} message
   */
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/**
 * Calls the API with the token or the session cookie; resolves to the JSON answer, rejects with an {@link ApiFailure}.
 * @param {string} method
 * @param {string} path
 * @param {unknown} [body]
 * @returns {Promise<any>}
 */
export async function api(method, path, body) {
  /** @type {{ method: string, headers: Record<string, string>, body?: string }} */
  const init = { method, headers: { accept: 'application/json' } };
  // An API token (the developer option) goes in the header; otherwise the session cookie signs
  // the request, and anything that may change state carries the session's CSRF token.
  if (state.token) init.headers.authorization = `Bearer ${state.token}`;
  else if (method !== 'GET' && state.csrf) init.headers['x-csrf-token'] = state.csrf;
  if (body !== undefined) {
    init.headers['content-type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (err) {
    throw new ApiFailure(0, 'NETWORK', `Network error: ${err instanceof Error ? err.message : String(err)}`);
  }
  let json;
  try {
    json = await res.json();
  } catch {
    json = undefined;
  }
  if (!res.ok) {
    const e = json?.error;
    const field = typeof e?.field === 'string' ? ` (${e.field})` : '';
    throw new ApiFailure(res.status, e?.code ?? 'HTTP', `${e?.message ?? `HTTP ${res.status}`}${field}`);
  }
  return json;
}

/**
 * The message of anything thrown.
 * @param {unknown} err
 * @returns {string}
 */
export function messageOf(err) {
  return err instanceof Error ? err.message : String(err);
}

/**
 * The HTTP status of a failed API call, or undefined for anything else thrown.
 * @param {unknown} err
 * @returns {number | undefined}
 */
export function statusOf(err) {
  return err instanceof ApiFailure ? err.status : undefined;
}

/** @returns {string | [string, string]} */
function dateRange() {
  return state.period === 'custom' ? [state.from, state.to] : state.period;
}

/** @returns {{ mode: string } | undefined} */
export function comparisons() {
  if (state.compare === 'off' || state.period === 'realtime') return undefined;
  return { mode: state.compare };
}

export function hasPageFilter() {
  return state.filters.some(([d]) => d === 'event:page');
}

/**
 * A query body for the current site, range and filters.
 * @param {Record<string, unknown>} parts
 * @returns {Record<string, unknown>}
 */
function query(parts) {
  /** @type {Record<string, unknown>} */
  const body = { site_id: state.site, date_range: dateRange(), ...parts };
  if (state.filters.length > 0) body.filters = state.filters.map(([d, v]) => ['is', d, [v]]);
  return body;
}

/**
 * `POST /api/v2/query` for the current view.
 * @param {Record<string, unknown>} parts
 * @returns {Promise<any>}
 */
export function runQuery(parts) {
  return api('POST', '/api/v2/query', query(parts));
}

let pending = 0;
/** @type {Record<string, number>} */
const latest = {};

/**
 * A check that stays true while no newer render of `area` has started (stale answers are dropped).
 * @param {string} area
 * @returns {() => boolean}
 */
export function ticket(area) {
  latest[area] = (latest[area] ?? 0) + 1;
  const mine = latest[area];
  return () => latest[area] === mine;
}

/**
 * Counts requests in flight; `body[data-state]` is `ready` when none is.
 * @template T
 * @param {Promise<T>} promise
 * @returns {Promise<T>}
 */
export function track(promise) {
  pending++;
  document.body.dataset.state = 'loading';
  return promise.finally(() => {
    pending--;
    if (pending === 0) document.body.dataset.state = 'ready';
  });
}

/** Whether no request is in flight. */
export function idle() {
  return pending === 0;
}
