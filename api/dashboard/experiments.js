// @ts-check
// The experiments card: each experiment of the site with its results, as the API computed them.

import { api, messageOf, statusOf, ticket } from './api.js';
import { $, h, replace } from './dom.js';
import { formatPercent, integer } from './format.js';
import { state } from './state.js';

/** @type {Record<string, string>} */
const VERDICTS = {
  insufficient_data: 'Not enough data yet',
  srm_detected: 'Sample ratio mismatch',
  keep_running: 'Keep running',
  winner: 'Winner',
  loser: 'Treatment loses',
  no_difference: 'No meaningful difference',
};

/**
 * @param {any} json
 * @returns {any[]}
 */
function experimentList(json) {
  if (Array.isArray(json)) return json;
  if (Array.isArray(json?.experiments)) return json.experiments;
  if (Array.isArray(json?.results)) return json.results;
  return [];
}

/**
 * The statistics block of a results answer, whether it is the whole answer or under `results`.
 * @param {any} json
 * @returns {any}
 */
function statsOf(json) {
  if (Array.isArray(json?.variations)) return json;
  if (Array.isArray(json?.results?.variations)) return json.results;
  if (Array.isArray(json?.stats?.variations)) return json.stats;
  return undefined;
}

export async function renderExperiments() {
  const current = ticket('experiments');
  const box = $('experiments-body');
  let list;
  try {
    list = experimentList(await api('GET', `/api/v1/sites/${encodeURIComponent(state.site)}/experiments`));
  } catch (err) {
    const none = statusOf(err) === 404 || statusOf(err) === 405;
    if (current()) replace(box, h('p', { class: 'empty' }, none ? 'No experiments.' : messageOf(err)));
    if (none) return;
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
        error = messageOf(err);
      }
      return experimentCard(exp, id, results, error);
    }),
  );
  if (!current()) return;
  replace(box, cards);
}

/**
 * @param {unknown} goal
 * @returns {string}
 */
function goalText(goal) {
  if (typeof goal === 'string') return goal;
  const g = /** @type {{ type?: unknown, name?: unknown, path?: unknown } | null | undefined} */ (goal);
  if (g?.type === 'event') return `event ${g.name}`;
  if (g?.type === 'pageview') return `visit ${g.path}`;
  return JSON.stringify(goal);
}

/**
 * @param {any} exp The experiment as listed.
 * @param {string} id
 * @param {any} json Its results answer, undefined when it failed.
 * @param {string | undefined} error Why the results failed.
 * @returns {HTMLElement}
 */
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
          stats.variations.map((/** @type {any} */ v) => {
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
        paused.map((/** @type {any} */ v) => `${v.key} ${integer.format(v.exposures)} exposed, ${integer.format(v.conversions)} converted`).join('; '),
      ),
    );
  }
  return h('article', { class: 'experiment', dataset: { experiment: id } }, parts);
}
