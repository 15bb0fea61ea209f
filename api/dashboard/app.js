/* global document, window, localStorage, fetch, history, location, URLSearchParams, console */
// Farol's dashboard: a plain ES module over the public API (POST /api/v2/query, GET /api/v1/sites,
// the experiment routes). Every number on the page is a number the API answered, only formatted.
// All text reaches the DOM through textContent or attributes, never as HTML: page paths, sources
// and goal names are chosen by whoever sends events.

import uPlot from './uplot.esm.js';

const TOKEN_KEY = 'farol_token';
const PERIODS = ['realtime', 'day', '7d', '28d', '30d', 'month', '6mo', '12mo', 'year', 'all', 'custom'];
const COMPARES = ['off', 'previous_period', 'year_over_year'];
const DEFAULT_PERIOD = '28d';
const ROWS = 10;

const METRICS = {
  visitors: { label: 'Unique visitors', short: 'Visitors', kind: 'count' },
  visits: { label: 'Total visits', short: 'Visits', kind: 'count' },
  pageviews: { label: 'Total pageviews', short: 'Pageviews', kind: 'count' },
  views_per_visit: { label: 'Views per visit', short: 'Views per visit', kind: 'ratio' },
  bounce_rate: { label: 'Bounce rate', short: 'Bounce rate', kind: 'percent' },
  visit_duration: { label: 'Visit duration', short: 'Visit duration', kind: 'duration' },
  events: { label: 'Total events', short: 'Events', kind: 'count' },
  conversion_rate: { label: 'Conversion rate', short: 'CR', kind: 'percent' },
  percentage: { label: 'Percentage', short: '%', kind: 'percent' },
};
const TOP_METRICS = ['visitors', 'visits', 'pageviews', 'views_per_visit', 'bounce_rate', 'visit_duration'];
/** Lower is better: its change is shown green when it goes down. */
const LOWER_IS_BETTER = new Set(['bounce_rate']);
/** Changes the API gives in points rather than percent. */
const POINT_CHANGES = new Set(['bounce_rate', 'conversion_rate', 'percentage']);

const DIMENSION_LABELS = {
  'event:page': 'Page',
  'visit:entry_page': 'Entry page',
  'visit:exit_page': 'Exit page',
  'visit:source': 'Source',
  'visit:channel': 'Channel',
  'visit:utm_medium': 'UTM medium',
  'visit:utm_source': 'UTM source',
  'visit:utm_campaign': 'UTM campaign',
  'visit:country': 'Country',
  'visit:device': 'Device',
  'visit:browser': 'Browser',
  'visit:os': 'OS',
  'event:goal': 'Goal',
};

const PANELS = [
  {
    id: 'pages',
    tabs: [
      { key: 'page', label: 'Top pages', dimension: 'event:page', metrics: ['visitors', 'pageviews'] },
      { key: 'entry', label: 'Entry pages', dimension: 'visit:entry_page', metrics: ['visitors', 'visits'] },
      { key: 'exit', label: 'Exit pages', dimension: 'visit:exit_page', metrics: ['visitors', 'visits'] },
    ],
  },
  {
    id: 'sources',
    tabs: [
      { key: 'channel', label: 'Channels', dimension: 'visit:channel', metrics: ['visitors'] },
      { key: 'source', label: 'Sources', dimension: 'visit:source', metrics: ['visitors'] },
      { key: 'utm_medium', label: 'UTM medium', dimension: 'visit:utm_medium', metrics: ['visitors'] },
      { key: 'utm_source', label: 'UTM source', dimension: 'visit:utm_source', metrics: ['visitors'] },
      { key: 'utm_campaign', label: 'UTM campaign', dimension: 'visit:utm_campaign', metrics: ['visitors'] },
    ],
  },
  {
    id: 'locations',
    tabs: [{ key: 'country', label: 'Countries', dimension: 'visit:country', metrics: ['visitors'] }],
  },
  {
    id: 'devices',
    tabs: [
      { key: 'device', label: 'Devices', dimension: 'visit:device', metrics: ['visitors'] },
      { key: 'browser', label: 'Browsers', dimension: 'visit:browser', metrics: ['visitors'] },
      { key: 'os', label: 'Operating systems', dimension: 'visit:os', metrics: ['visitors'] },
    ],
  },
  {
    id: 'goals',
    tabs: [{ key: 'goal', label: 'Goals', dimension: 'event:goal', metrics: ['visitors', 'events', 'conversion_rate'] }],
  },
];

// ---------------------------------------------------------------------------------------------
// DOM helpers: text only.

/** Creates an element; string and number children become text nodes, attributes are set as such. */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = String(v);
    else if (k === 'dataset') for (const [dk, dv] of Object.entries(v)) el.dataset[dk] = String(dv);
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof window.Node ? c : document.createTextNode(String(c)));
  }
}

function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------------------------------------
// Formatting (the only thing done to the API's numbers).

const integer = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });
const decimal = new Intl.NumberFormat('en-US', { maximumFractionDigits: 2 });
const regionNames = typeof Intl.DisplayNames === 'function' ? new Intl.DisplayNames(['en'], { type: 'region' }) : undefined;

function formatMetric(metric, value) {
  if (value === null || value === undefined) return '—';
  const kind = METRICS[metric]?.kind ?? 'count';
  if (kind === 'count') return integer.format(value);
  if (kind === 'ratio') return decimal.format(value);
  if (kind === 'percent') return `${decimal.format(value)}%`;
  if (kind === 'duration') return formatDuration(value);
  return String(value);
}

function formatDuration(seconds) {
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(m / 60)}h ${String(m % 60).padStart(2, '0')}m`;
}

function formatChange(metric, change) {
  if (change === null || change === undefined) return '';
  const arrow = change > 0 ? '↑' : change < 0 ? '↓' : '〓';
  const unit = POINT_CHANGES.has(metric) ? ' pp' : '%';
  return `${arrow} ${decimal.format(Math.abs(change))}${unit}`;
}

function formatPercent(fraction, digits = 1) {
  if (fraction === null || fraction === undefined) return '—';
  return `${(fraction * 100).toFixed(digits)}%`;
}

function dimensionText(dimension, value) {
  if (dimension === 'visit:country' && regionNames !== undefined && /^[A-Z]{2}$/.test(value)) {
    try {
      const name = regionNames.of(value);
      if (name !== undefined && name !== value) return `${name} (${value})`;
    } catch {
      // an unknown code: show it as it is
    }
  }
  return value === '' ? '(none)' : value;
}

// ---------------------------------------------------------------------------------------------
// State, kept in the URL (except the token) so a view is linkable.

const state = {
  token: localStorage.getItem(TOKEN_KEY) ?? '',
  site: '',
  period: DEFAULT_PERIOD,
  from: '',
  to: '',
  compare: 'off',
  metric: 'visitors',
  /** [dimension, value] pairs, each an `is` filter. */
  filters: [],
  tabs: {},
  sites: undefined,
};

function readUrl() {
  const q = new URLSearchParams(location.search);
  state.site = q.get('site') ?? state.site;
  const period = q.get('period');
  state.period = PERIODS.includes(period) ? period : DEFAULT_PERIOD;
  state.from = q.get('from') ?? '';
  state.to = q.get('to') ?? '';
  if (state.period === 'custom' && !(isDate(state.from) && isDate(state.to))) state.period = DEFAULT_PERIOD;
  const compare = q.get('compare');
  state.compare = COMPARES.includes(compare) ? compare : 'off';
  const metric = q.get('metric');
  state.metric = TOP_METRICS.includes(metric) ? metric : 'visitors';
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
    if (p.tabs.some((x) => x.key === t)) state.tabs[p.id] = t;
  }
}

function writeUrl(push) {
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

function isDate(s) {
  return typeof s === 'string' && /^\d{4}-\d{2}-\d{2}$/.test(s);
}

// ---------------------------------------------------------------------------------------------
// API

class ApiFailure extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function api(method, path, body) {
  const init = { method, headers: { authorization: `Bearer ${state.token}`, accept: 'application/json' } };
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

function dateRange() {
  return state.period === 'custom' ? [state.from, state.to] : state.period;
}

function comparisons() {
  if (state.compare === 'off' || state.period === 'realtime') return undefined;
  return { mode: state.compare };
}

function hasPageFilter() {
  return state.filters.some(([d]) => d === 'event:page');
}

/** A query body for the current site, range and filters. */
function query(parts) {
  const body = { site_id: state.site, date_range: dateRange(), ...parts };
  if (state.filters.length > 0) body.filters = state.filters.map(([d, v]) => ['is', d, [v]]);
  return body;
}

function runQuery(parts) {
  return api('POST', '/api/v2/query', query(parts));
}

// ---------------------------------------------------------------------------------------------
// Rendering

let pending = 0;
let chart;
const latest = {};

/** A check that stays true while no newer render of `area` has started (stale answers are dropped). */
function ticket(area) {
  latest[area] = (latest[area] ?? 0) + 1;
  const mine = latest[area];
  return () => latest[area] === mine;
}

/** Counts requests in flight; `body[data-state]` is `ready` when none is. */
function track(promise) {
  pending++;
  document.body.dataset.state = 'loading';
  return promise.finally(() => {
    pending--;
    if (pending === 0) document.body.dataset.state = 'ready';
  });
}

function showBanner(message) {
  const b = $('banner');
  b.textContent = message;
  b.hidden = message === '';
}

function topMetrics() {
  // Views per visit is refused with a page filter (the API's rule, as Plausible's).
  return TOP_METRICS.filter((m) => m !== 'views_per_visit' || !hasPageFilter());
}

async function renderTopStats() {
  const current = ticket('top');
  const box = $('top-stats');
  const metrics = topMetrics();
  const compare = comparisons();
  let res;
  try {
    res = await runQuery({ metrics, include: compare ? { comparisons: compare } : {} });
  } catch (err) {
    if (current()) replace(box, h('p', { class: 'error' }, err.message));
    throw err;
  }
  if (!current()) return;
  const row = res.results[0] ?? { metrics: metrics.map(() => 0) };
  const cards = metrics.map((m, i) => {
    const value = row.metrics[i];
    const change = row.comparison?.change[i];
    const previous = row.comparison?.metrics[i];
    const better = change === null || change === undefined || change === 0 ? '' : (change > 0) !== LOWER_IS_BETTER.has(m) ? 'good' : 'bad';
    const selectable = m !== 'views_per_visit' || !hasPageFilter();
    return h(
      'button',
      {
        type: 'button',
        class: `stat${state.metric === m ? ' selected' : ''}`,
        dataset: { metric: m, value: value === null ? 'null' : value },
        'aria-pressed': state.metric === m ? 'true' : 'false',
        disabled: !selectable,
        onclick: () => {
          state.metric = m;
          writeUrl(true);
          refresh();
        },
      },
      h('span', { class: 'stat-label' }, METRICS[m].label),
      h('span', { class: 'stat-value' }, formatMetric(m, value)),
      compare
        ? h(
            'span',
            { class: `stat-change ${better}`, dataset: { change: change ?? 'null', previous: previous ?? 'null' } },
            formatChange(m, change),
            h('span', { class: 'stat-previous' }, ` from ${formatMetric(m, previous)}`),
          )
        : null,
    );
  });
  replace(box, cards);
}

async function renderChart() {
  const current = ticket('chart');
  const metric = state.metric === 'views_per_visit' && hasPageFilter() ? 'visitors' : state.metric;
  const compare = comparisons();
  const title = $('chart-title');
  const errorBox = $('chart-error');
  title.textContent = METRICS[metric].label;
  let res;
  try {
    res = await runQuery({ metrics: [metric], dimensions: ['time'], include: { time_labels: true, ...(compare ? { comparisons: compare } : {}) } });
  } catch (err) {
    if (current()) {
      errorBox.textContent = err.message;
      errorBox.hidden = false;
    }
    throw err;
  }
  if (!current()) return;
  errorBox.hidden = true;
  const labels = res.meta.time_labels ?? res.results.map((r) => r.dimensions[0]);
  const byLabel = new Map(res.results.map((r) => [r.dimensions[0], r]));
  // A bucket the API leaves out had no events: zero for counts, a gap for ratios.
  const missing = METRICS[metric].kind === 'count' ? 0 : null;
  const xs = labels.map((_, i) => i);
  const main = labels.map((l) => byLabel.get(l)?.metrics[0] ?? missing);
  const data = [xs, main];
  const series = [
    { label: 'Time', value: (_u, i) => (i === null || i === undefined ? '' : labelText(labels[i] ?? '')) },
    { label: METRICS[metric].short, stroke: '#4f46e5', fill: 'rgba(79,70,229,0.08)', width: 2, points: { show: labels.length < 60 }, value: (_u, v) => formatMetric(metric, v) },
  ];
  const compLabels = [];
  if (compare) {
    data.push(labels.map((l) => byLabel.get(l)?.comparison?.metrics[0] ?? missing));
    for (const l of labels) compLabels.push(byLabel.get(l)?.comparison?.dimensions[0] ?? '');
    series.push({
      label: compare.mode === 'year_over_year' ? 'Year before' : 'Previous period',
      stroke: '#9ca3af',
      width: 1.5,
      dash: [6, 4],
      points: { show: false },
      value: (_u, v) => formatMetric(metric, v),
    });
  }
  const el = $('chart');
  el.dataset.metric = metric;
  el.dataset.points = JSON.stringify(main);
  if (compare) el.dataset.comparison = JSON.stringify(data[2]);
  else delete el.dataset.comparison;
  chart?.destroy();
  el.replaceChildren();
  const width = Math.max(300, el.clientWidth || 800);
  chart = new uPlot(
    {
      width,
      height: 260,
      series,
      legend: { show: true, live: true },
      cursor: { points: { size: 6 } },
      scales: { x: { time: false }, y: { range: (_u, _min, max) => [0, max > 0 ? max * 1.1 : 1] } },
      axes: [
        {
          stroke: '#6b7280',
          grid: { show: false },
          values: (_u, splits) => splits.map((i) => (Number.isInteger(i) && labels[i] !== undefined ? labelText(labels[i], true) : '')),
        },
        { stroke: '#6b7280', grid: { stroke: '#eef0f3' }, values: (_u, splits) => splits.map((v) => formatMetric(metric, v)), size: 60 },
      ],
    },
    data,
    el,
  );
}

/** A time label as the axis shows it (`2026-05-04 13:00:00` → `May 4, 13:00`). */
function labelText(label, short) {
  const m = /^(\d{4})-(\d{2})-(\d{2})(?: (\d{2}):(\d{2}))?/.exec(label);
  if (m === null) return label;
  const months = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
  const day = `${months[Number(m[2]) - 1]} ${Number(m[3])}`;
  if (m[4] !== undefined) return short ? `${m[4]}:${m[5]}` : `${day}, ${m[4]}:${m[5]}`;
  return short ? day : `${day} ${m[1]}`;
}

function panelTab(panel) {
  const key = state.tabs[panel.id];
  return panel.tabs.find((t) => t.key === key) ?? panel.tabs[0];
}

function buildPanels() {
  const box = $('panels');
  box.replaceChildren();
  for (const panel of PANELS) {
    box.append(
      h(
        'section',
        { class: 'card panel', id: `panel-${panel.id}`, dataset: { panel: panel.id } },
        h('div', { class: 'panel-head' }, h('div', { class: 'tabs', role: 'tablist' })),
        h('div', { class: 'panel-body' }),
      ),
    );
  }
}

async function renderPanel(panel) {
  const current = ticket(`panel-${panel.id}`);
  const section = $(`panel-${panel.id}`);
  const tab = panelTab(panel);
  const tabs = section.querySelector('.tabs');
  replace(
    tabs,
    panel.tabs.map((t) =>
      h(
        'button',
        {
          type: 'button',
          role: 'tab',
          class: `tab${t === tab ? ' active' : ''}`,
          'aria-selected': t === tab ? 'true' : 'false',
          dataset: { tab: t.key },
          onclick: () => {
            state.tabs[panel.id] = t.key;
            writeUrl(false);
            void track(renderPanel(panel)).catch(reportError);
          },
        },
        t.label,
      ),
    ),
  );
  const body = section.querySelector('.panel-body');
  body.dataset.dimension = tab.dimension;
  let res;
  try {
    res = await runQuery({ metrics: tab.metrics, dimensions: [tab.dimension], pagination: { limit: ROWS } });
  } catch (err) {
    if (current()) replace(body, h('p', { class: 'error' }, err.message));
    throw err;
  }
  if (!current()) return;
  if (res.results.length === 0) {
    replace(body, h('p', { class: 'empty' }, 'No data yet'));
    return;
  }
  const top = Math.max(1, ...res.results.map((r) => Number(r.metrics[0]) || 0));
  const filtered = state.filters.some(([d]) => d === tab.dimension);
  const table = h(
    'table',
    { class: 'breakdown', dataset: { dimension: tab.dimension } },
    h(
      'thead',
      {},
      h('tr', {}, h('th', { scope: 'col' }, DIMENSION_LABELS[tab.dimension] ?? tab.dimension), tab.metrics.map((m) => h('th', { scope: 'col', class: 'num' }, METRICS[m].short))),
    ),
    h(
      'tbody',
      {},
      res.results.map((r) => {
        const value = r.dimensions[0] ?? '';
        const share = Math.max(0, Math.min(100, ((Number(r.metrics[0]) || 0) / top) * 100));
        const bar = h('span', { class: 'bar', 'aria-hidden': 'true' });
        bar.style.width = `${share.toFixed(1)}%`;
        return h(
          'tr',
          { dataset: { value } },
          h(
            'td',
            { class: 'label' },
            bar,
            h(
              'button',
              {
                type: 'button',
                class: 'row-filter',
                title: filtered ? undefined : `Filter by ${DIMENSION_LABELS[tab.dimension] ?? tab.dimension}`,
                disabled: filtered,
                onclick: () => addFilter(tab.dimension, value),
              },
              dimensionText(tab.dimension, value),
            ),
          ),
          r.metrics.map((v, i) => h('td', { class: 'num', dataset: { metric: tab.metrics[i], value: v === null ? 'null' : v } }, formatMetric(tab.metrics[i], v))),
        );
      }),
    ),
  );
  replace(body, table);
}

function renderFilters() {
  const box = $('filters');
  replace(
    box,
    state.filters.map(([dimension, value]) =>
      h(
        'span',
        { class: 'chip', dataset: { dimension, value } },
        h('span', { class: 'chip-dim' }, `${DIMENSION_LABELS[dimension] ?? dimension} is `),
        h('span', { class: 'chip-value' }, dimensionText(dimension, value)),
        h(
          'button',
          {
            type: 'button',
            class: 'chip-remove',
            'aria-label': `Remove filter ${DIMENSION_LABELS[dimension] ?? dimension} is ${value}`,
            onclick: () => removeFilter(dimension, value),
          },
          '×',
        ),
      ),
    ),
  );
  box.hidden = state.filters.length === 0;
}

function addFilter(dimension, value) {
  // One value per dimension: a second click on the same dimension replaces the first.
  state.filters = state.filters.filter(([d]) => d !== dimension);
  state.filters.push([dimension, value]);
  if (dimension === 'event:page' && state.metric === 'views_per_visit') state.metric = 'visitors';
  writeUrl(true);
  refresh();
}

function removeFilter(dimension, value) {
  state.filters = state.filters.filter(([d, v]) => !(d === dimension && v === value));
  writeUrl(true);
  refresh();
}

// ---------------------------------------------------------------------------------------------
// Experiments

const VERDICTS = {
  insufficient_data: 'Not enough data yet',
  srm_detected: 'Sample ratio mismatch',
  keep_running: 'Keep running',
  winner: 'Winner',
  loser: 'Treatment loses',
  no_difference: 'No meaningful difference',
};

function experimentList(json) {
  if (Array.isArray(json)) return json;
  if (Array.isArray(json?.experiments)) return json.experiments;
  if (Array.isArray(json?.results)) return json.results;
  return [];
}

/** The statistics block of a results answer, whether it is the whole answer or under `results`. */
function statsOf(json) {
  if (Array.isArray(json?.variations)) return json;
  if (Array.isArray(json?.results?.variations)) return json.results;
  if (Array.isArray(json?.stats?.variations)) return json.stats;
  return undefined;
}

async function renderExperiments() {
  const current = ticket('experiments');
  const box = $('experiments-body');
  let list;
  try {
    list = experimentList(await api('GET', `/api/v1/sites/${encodeURIComponent(state.site)}/experiments`));
  } catch (err) {
    if (current()) replace(box, h('p', { class: 'empty' }, err.status === 404 || err.status === 405 ? 'No experiments.' : err.message));
    if (err.status === 404 || err.status === 405) return;
    throw err;
  }
  if (!current()) return;
  if (list.length === 0) {
    replace(box, h('p', { class: 'empty' }, 'No experiments on this site yet.'));
    return;
  }
  const cards = await Promise.all(
    list.map(async (exp) => {
      const id = String(exp.id ?? exp.key ?? '');
      let results;
      let error;
      try {
        results = await api('GET', `/api/v2/experiments/${encodeURIComponent(id)}/results?site_id=${encodeURIComponent(state.site)}`);
      } catch (err) {
        error = err.message;
      }
      return experimentCard(exp, id, results, error);
    }),
  );
  if (!current()) return;
  replace(box, cards);
}

function goalText(goal) {
  if (typeof goal === 'string') return goal;
  if (goal?.type === 'event') return `event ${goal.name}`;
  if (goal?.type === 'pageview') return `visit ${goal.path}`;
  return JSON.stringify(goal);
}

function experimentCard(exp, id, json, error) {
  const info = json?.experiment ?? {};
  const title = exp.name ?? info.name ?? id;
  const status = exp.status ?? info.status;
  const stats = statsOf(json);
  const head = h(
    'div',
    { class: 'exp-head' },
    h('h3', {}, title),
    status ? h('span', { class: 'badge' }, status) : null,
    stats ? h('span', { class: `verdict verdict-${stats.verdict}`, dataset: { verdict: stats.verdict } }, VERDICTS[stats.verdict] ?? stats.verdict, stats.winner ? `: ${stats.winner}` : '') : null,
  );
  const goal = exp.goal ?? info.goal;
  const parts = [head];
  if (goal) parts.push(h('p', { class: 'muted' }, 'Goal: ', goalText(goal)));
  if (error) parts.push(h('p', { class: 'error' }, error));
  if (stats) {
    if (stats.srm?.detected) {
      parts.push(
        h(
          'p',
          { class: 'warning srm', role: 'alert' },
          `Sample ratio mismatch: the exposure split contradicts the planned weights (p = ${stats.srm.pValue.toPrecision(3)}). Fix assignment before trusting these results.`,
        ),
      );
    }
    const level = Math.round((stats.confidenceLevel ?? 0.95) * 100);
    parts.push(
      h(
        'table',
        { class: 'exp-table' },
        h(
          'thead',
          {},
          h(
            'tr',
            {},
            ['Variation', 'Exposed', 'Conversions', 'Rate', `Uplift (${level}% CI)`, 'Chance to beat control', 'p-value'].map((t, i) => h('th', { scope: 'col', class: i === 0 ? '' : 'num' }, t)),
          ),
        ),
        h(
          'tbody',
          {},
          stats.variations.map((v) => {
            const c = v.vsControl;
            const uplift =
              c === null || c === undefined || c.relativeUplift === null
                ? '—'
                : `${c.relativeUplift >= 0 ? '+' : ''}${formatPercent(c.relativeUplift)}${c.relativeInterval ? ` [${formatPercent(c.relativeInterval.low)}, ${formatPercent(c.relativeInterval.high)}]` : ''}`;
            return h(
              'tr',
              { dataset: { variation: v.key } },
              h('td', {}, v.key, v.control ? h('span', { class: 'badge' }, 'control') : null),
              h('td', { class: 'num', dataset: { field: 'exposures', value: v.exposures } }, integer.format(v.exposures)),
              h('td', { class: 'num', dataset: { field: 'conversions', value: v.conversions } }, integer.format(v.conversions)),
              h('td', { class: 'num', dataset: { field: 'rate', value: v.rate ?? 'null' } }, formatPercent(v.rate, 2)),
              h('td', { class: 'num', dataset: { field: 'uplift', value: c?.relativeUplift ?? 'null' } }, uplift),
              h('td', { class: 'num', dataset: { field: 'chance', value: c?.chanceToBeatControl ?? 'null' } }, c ? formatPercent(c.chanceToBeatControl) : '—'),
              h('td', { class: 'num', dataset: { field: 'p', value: c?.pValue ?? 'null' } }, c ? c.pValue.toPrecision(3) : '—'),
            );
          }),
        ),
      ),
    );
  }
  const paused = Array.isArray(json?.paused_variations) ? json.paused_variations : [];
  if (paused.length > 0) {
    parts.push(
      h(
        'p',
        { class: 'muted' },
        'Paused (no new traffic, left out of the tests): ',
        paused.map((v) => `${v.key} ${integer.format(v.exposures)} exposed, ${integer.format(v.conversions)} converted`).join('; '),
      ),
    );
  }
  return h('article', { class: 'experiment', dataset: { experiment: id } }, parts);
}

// ---------------------------------------------------------------------------------------------
// Wiring

function reportError(err) {
  if (err instanceof ApiFailure && err.status === 401) {
    signOut('The token was refused. Paste a valid API token.');
    return;
  }
  if (!(err instanceof ApiFailure)) console.error(err);
}

function syncControls() {
  $('period-select').value = state.period;
  $('compare-select').value = state.compare;
  $('compare-select').disabled = state.period === 'realtime';
  const custom = $('custom-range');
  custom.hidden = state.period !== 'custom';
  $('custom-from').value = state.from;
  $('custom-to').value = state.to;
  const select = $('site-select');
  if (state.sites !== undefined) select.value = state.site;
  else $('site-input').value = state.site;
}

function refresh() {
  syncControls();
  if (!state.site) {
    showBanner('Choose a site.');
    if (pending === 0) document.body.dataset.state = 'ready';
    return;
  }
  showBanner('');
  renderFilters();
  const jobs = [renderTopStats(), renderChart(), ...PANELS.map((p) => renderPanel(p)), renderExperiments()];
  for (const j of jobs) void track(j).catch(reportError);
}

async function loadSites() {
  try {
    const json = await api('GET', '/api/v1/sites');
    const sites = Array.isArray(json?.sites) ? json.sites : [];
    state.sites = sites.map((s) => (typeof s === 'string' ? s : s.domain)).filter((d) => typeof d === 'string');
  } catch (err) {
    if (err.status === 401) throw err;
    // No site list (an older server, or a token that may not list): type the domain instead.
    state.sites = undefined;
  }
  const select = $('site-select');
  const input = $('site-input');
  if (state.sites !== undefined && state.sites.length > 0) {
    replace(
      select,
      state.sites.map((d) => h('option', { value: d }, d)),
    );
    select.hidden = false;
    input.hidden = true;
    if (!state.sites.includes(state.site)) state.site = state.sites[0];
  } else {
    state.sites = undefined;
    select.hidden = true;
    input.hidden = false;
  }
}

function showLogin(message) {
  $('dashboard').hidden = true;
  $('controls').hidden = true;
  $('login').hidden = false;
  const e = $('login-error');
  e.textContent = message ?? '';
  e.hidden = !message;
  document.body.dataset.state = 'login';
  $('token-input').focus();
}

function signOut(message) {
  localStorage.removeItem(TOKEN_KEY);
  state.token = '';
  chart?.destroy();
  chart = undefined;
  showLogin(message);
}

async function start() {
  if (!state.token) {
    showLogin();
    return;
  }
  document.body.dataset.state = 'loading';
  try {
    await loadSites();
  } catch (err) {
    if (err instanceof ApiFailure && err.status === 401) {
      signOut('The token was refused. Paste a valid API token.');
      return;
    }
    throw err;
  }
  $('login').hidden = true;
  $('controls').hidden = false;
  $('dashboard').hidden = false;
  writeUrl(false);
  refresh();
}

function bind() {
  $('login-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const token = $('token-input').value.trim();
    if (!token) return;
    state.token = token;
    localStorage.setItem(TOKEN_KEY, token);
    $('token-input').value = '';
    void start().catch(reportError);
  });
  $('sign-out').addEventListener('click', () => signOut());
  $('site-select').addEventListener('change', (e) => {
    state.site = e.target.value;
    state.filters = [];
    writeUrl(true);
    refresh();
  });
  $('site-input').addEventListener('change', (e) => {
    state.site = e.target.value.trim().toLowerCase();
    state.filters = [];
    writeUrl(true);
    refresh();
  });
  $('period-select').addEventListener('change', (e) => {
    const period = e.target.value;
    if (period === 'custom') {
      $('custom-range').hidden = false;
      if (!isDate(state.from) || !isDate(state.to)) return;
    }
    state.period = period;
    writeUrl(true);
    refresh();
  });
  $('custom-range').addEventListener('submit', (e) => {
    e.preventDefault();
    const from = $('custom-from').value;
    const to = $('custom-to').value;
    if (!isDate(from) || !isDate(to)) return;
    state.period = 'custom';
    [state.from, state.to] = from <= to ? [from, to] : [to, from];
    writeUrl(true);
    refresh();
  });
  $('compare-select').addEventListener('change', (e) => {
    state.compare = e.target.value;
    writeUrl(true);
    refresh();
  });
  window.addEventListener('popstate', () => {
    readUrl();
    if (state.token && !$('dashboard').hidden) refresh();
  });
  window.addEventListener('resize', () => {
    const el = $('chart');
    if (chart && el.clientWidth > 0) chart.setSize({ width: Math.max(300, el.clientWidth), height: 260 });
  });
  // Realtime refreshes itself.
  window.setInterval(() => {
    if (state.period === 'realtime' && state.token && !$('dashboard').hidden && document.visibilityState === 'visible') refresh();
  }, 30_000);
}

readUrl();
buildPanels();
bind();
void start().catch(reportError);
