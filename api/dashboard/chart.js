// @ts-check
// The time-series chart of the selected metric (uPlot), with the comparison period dashed.

import uPlot from './uplot.esm.js';
import { comparisons, hasPageFilter, messageOf, runQuery, ticket } from './api.js';
import { METRICS } from './config.js';
import { $ } from './dom.js';
import { formatMetric, labelText } from './format.js';
import { state } from './state.js';

const HEIGHT = 260;

/** @type {uPlot | undefined} */
let chart;

export async function renderChart() {
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
      errorBox.textContent = messageOf(err);
      errorBox.hidden = false;
    }
    throw err;
  }
  if (!current()) return;
  errorBox.hidden = true;
  /** @type {{ dimensions: string[], metrics: (number | null)[], comparison?: { dimensions: string[], metrics: (number | null)[] } }[]} */
  const results = res.results;
  /** @type {string[]} */
  const labels = res.meta.time_labels ?? results.map((r) => r.dimensions[0]);
  const byLabel = new Map(results.map((r) => [r.dimensions[0], r]));
  // A bucket the API leaves out had no events: zero for counts, a gap for ratios.
  const missing = METRICS[metric].kind === 'count' ? 0 : null;
  const xs = labels.map((_, i) => i);
  const main = labels.map((l) => byLabel.get(l)?.metrics[0] ?? missing);
  /** @type {uPlot.AlignedData} */
  const data = [xs, main];
  /** @type {uPlot.Series[]} */
  const series = [
    { label: 'Time', value: (_u, i) => (i === null || i === undefined ? '' : labelText(labels[i] ?? '')) },
    { label: METRICS[metric].short, stroke: '#4f46e5', fill: 'rgba(79,70,229,0.08)', width: 2, points: { show: labels.length < 60 }, value: (_u, v) => formatMetric(metric, v) },
  ];
  if (compare) {
    data.push(labels.map((l) => byLabel.get(l)?.comparison?.metrics[0] ?? missing));
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
      height: HEIGHT,
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

/** Fits the chart to its box after the window changed size. */
export function resizeChart() {
  const el = $('chart');
  if (chart && el.clientWidth > 0) chart.setSize({ width: Math.max(300, el.clientWidth), height: HEIGHT });
}

/** Removes the chart (on sign-out). */
export function destroyChart() {
  chart?.destroy();
  chart = undefined;
}
