// @ts-check
/* global localStorage, history, location, URLSearchParams */
// The view's state, kept in the URL (except the token) so a view is linkable.

import { COMPARES, DEFAULT_PERIOD, PANELS, PERIODS, TOKEN_KEY, TOP_METRICS } from './config.js';

/**
 * @typedef {object} State
 * @property {string} token
 * @property {string} site
 * @property {string} period
 * @property {string} from
 * @property {string} to
 * @property {string} compare
 * @property {string} metric
 * @property {[string, string][]} filters [dimension, value] pairs, each an `is` filter.
 * @property {Record<string, string>} tabs The chosen tab of each panel that is not on its first.
 * @property {string[] | undefined} sites The sites the token may list; undefined: typed by hand.
 * @property {string} csrf The browser session's CSRF token ('' when signed in by API token or not at all).
 * @property {boolean} session Whether a browser session (cookie) signs the requests.
 */

/** @type {State} */
export const state = {
  token: localStorage.getItem(TOKEN_KEY) ?? '',
  site: '',
  period: DEFAULT_PERIOD,
  from: '',
  to: '',
  compare: 'off',
  metric: 'visitors',
  filters: [],
  tabs: {},
  sites: undefined,
  csrf: '',
  session: false,
};

export function readUrl() {
  const q = new URLSearchParams(location.search);
  state.site = q.get('site') ?? state.site;
  const period = q.get('period');
  state.period = period !== null && PERIODS.includes(period) ? period : DEFAULT_PERIOD;
  state.from = q.get('from') ?? '';
  state.to = q.get('to') ?? '';
  if (state.period === 'custom' && !(isDate(state.from) && isDate(state.to))) state.period = DEFAULT_PERIOD;
  const compare = q.get('compare');
  state.compare = compare !== null && COMPARES.includes(compare) ? compare : 'off';
  const metric = q.get('metric');
  state.metric = metric !== null && TOP_METRICS.includes(metric) ? metric : 'visitors';
  state.filters = [];
  for (const f of q.getAll('f')) {
    const at = f.indexOf('|');
    if (at <= 0) continue;
    const dimension = f.slice(0, at);
    const value = f.slice(at + 1);
    if (!state.filters.some(([d, v]) => d === dimension && v === value)) state.filters.push([dimension, value]);
  }
  state.tabs = {};
  for (const p of PANELS) {
    const t = q.get(`tab_${p.id}`);
    if (t !== null && p.tabs.some((x) => x.key === t)) state.tabs[p.id] = t;
  }
}

/**
 * Writes the state into the URL: a new history entry when `push`, else in place.
 * @param {boolean} push
 */
export function writeUrl(push) {
  const q = new URLSearchParams();
  if (state.site) q.set('site', state.site);
  if (state.period !== DEFAULT_PERIOD) q.set('period', state.period);
  if (state.period === 'custom') {
    q.set('from', state.from);
    q.set('to', state.to);
  }
  if (state.compare !== 'off') q.set('compare', state.compare);
  if (state.metric !== 'visitors') q.set('metric', state.metric);
  for (const [d, v] of state.filters) q.append('f', `${d}|${v}`);
  for (const [panel, tab] of Object.entries(state.tabs)) q.set(`tab_${panel}`, tab);
  const text = q.toString();
  const url = `${location.pathname}${text ? `?${text}` : ''}`;
  if (url === `${location.pathname}${location.search}`) return;
  if (push) history.pushState(null, '', url);
  else history.replaceState(null, '', url);
}

/**
 * @param {unknown} s
 * @returns {s is string}
 */
export function isDate(s) {
  return typeof s === 'string' && /^\d{4}-\d{2}-\d{2}$/.test(s);
}
