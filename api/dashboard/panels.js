// @ts-check
// The top stats, the breakdown panels and the filter chips. Choosing a metric, a tab or a filter
// changes the state and the URL, then asks the page to render again through `hooks`.

import { comparisons, hasPageFilter, messageOf, runQuery, ticket, track } from './api.js';
import { DIMENSION_LABELS, LOWER_IS_BETTER, METRICS, PANELS, ROWS, TOP_METRICS } from './config.js';
import { $, h, replace } from './dom.js';
import { dimensionText, formatChange, formatMetric } from './format.js';
import { state, writeUrl } from './state.js';

/** @typedef {import('./config.js').Panel} Panel */
/**
 * What the panels ask of the page: render everything again, or report a failed render.
 * @typedef {{ refresh: () => void, reportError: (err: unknown) => void }} Hooks
 */
/** @typedef {{ dimensions: string[], metrics: (number | null)[], comparison?: { change: (number | null)[], metrics: (number | null)[] } }} ResultRow */

function topMetrics() {
  // Views per visit is refused with a page filter (the API's rule, as Plausible's).
  return TOP_METRICS.filter((m) => m !== 'views_per_visit' || !hasPageFilter());
}

/** @param {Hooks} hooks */
export async function renderTopStats(hooks) {
  const current = ticket('top');
  const box = $('top-stats');
  const metrics = topMetrics();
  const compare = comparisons();
  let res;
  try {
    res = await runQuery({ metrics, include: compare ? { comparisons: compare } : {} });
  } catch (err) {
    if (current()) replace(box, h('p', { class: 'error' }, messageOf(err)));
    throw err;
  }
  if (!current()) return;
  /** @type {ResultRow} */
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
          hooks.refresh();
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

/**
 * @param {Panel} panel
 * @returns {import('./config.js').PanelTab}
 */
function panelTab(panel) {
  const key = state.tabs[panel.id];
  return panel.tabs.find((t) => t.key === key) ?? panel.tabs[0];
}

/** Lays out an empty card per panel; {@link renderPanel} fills it. */
export function buildPanels() {
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

/**
 * @param {Panel} panel
 * @param {Hooks} hooks
 */
export async function renderPanel(panel, hooks) {
  const current = ticket(`panel-${panel.id}`);
  const section = $(`panel-${panel.id}`);
  const tab = panelTab(panel);
  const tabs = /** @type {HTMLElement} */ (section.querySelector('.tabs'));
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
            void track(renderPanel(panel, hooks)).catch(hooks.reportError);
          },
        },
        t.label,
      ),
    ),
  );
  const body = /** @type {HTMLElement} */ (section.querySelector('.panel-body'));
  body.dataset.dimension = tab.dimension;
  let res;
  try {
    res = await runQuery({ metrics: tab.metrics, dimensions: [tab.dimension], pagination: { limit: ROWS } });
  } catch (err) {
    if (current()) replace(body, h('p', { class: 'error' }, messageOf(err)));
    throw err;
  }
  if (!current()) return;
  /** @type {ResultRow[]} */
  const results = res.results;
  if (results.length === 0) {
    replace(body, h('p', { class: 'empty' }, 'No data yet'));
    return;
  }
  const top = Math.max(1, ...results.map((r) => Number(r.metrics[0]) || 0));
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
      results.map((r) => {
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
                onclick: () => addFilter(tab.dimension, value, hooks),
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

/** @param {Hooks} hooks */
export function renderFilters(hooks) {
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
            onclick: () => removeFilter(dimension, value, hooks),
          },
          '×',
        ),
      ),
    ),
  );
  box.hidden = state.filters.length === 0;
}

/**
 * @param {string} dimension
 * @param {string} value
 * @param {Hooks} hooks
 */
function addFilter(dimension, value, hooks) {
  // One value per dimension: a second click on the same dimension replaces the first.
  state.filters = state.filters.filter(([d]) => d !== dimension);
  state.filters.push([dimension, value]);
  if (dimension === 'event:page' && state.metric === 'views_per_visit') state.metric = 'visitors';
  writeUrl(true);
  hooks.refresh();
}

/**
 * @param {string} dimension
 * @param {string} value
 * @param {Hooks} hooks
 */
function removeFilter(dimension, value, hooks) {
  state.filters = state.filters.filter(([d, v]) => !(d === dimension && v === value));
  writeUrl(true);
  hooks.refresh();
}
