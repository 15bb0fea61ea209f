// @ts-check
// Formatting: the only thing done to the API's numbers.

import { METRICS, POINT_CHANGES } from './config.js';

export const integer = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });
const decimal = new Intl.NumberFormat('en-US', { maximumFractionDigits: 2 });
const regionNames = typeof Intl.DisplayNames === 'function' ? new Intl.DisplayNames(['en'], { type: 'region' }) : undefined;

/**
 * @param {string} metric
 * @param {number | null | undefined} value
 * @returns {string}
 */
export function formatMetric(metric, value) {
  if (value === null || value === undefined) return '—';
  const kind = METRICS[metric]?.kind ?? 'count';
  if (kind === 'count') return integer.format(value);
  if (kind === 'ratio') return decimal.format(value);
  if (kind === 'percent') return `${decimal.format(value)}%`;
  if (kind === 'duration') return formatDuration(value);
  return String(value);
}

/**
 * @param {number} seconds
 * @returns {string}
 */
function formatDuration(seconds) {
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(m / 60)}h ${String(m % 60).padStart(2, '0')}m`;
}

/**
 * @param {string} metric
 * @param {number | null | undefined} change
 * @returns {string}
 */
export function formatChange(metric, change) {
  if (change === null || change === undefined) return '';
  const arrow = change > 0 ? '↑' : change < 0 ? '↓' : '〓';
  const unit = POINT_CHANGES.has(metric) ? ' pp' : '%';
  return `${arrow} ${decimal.format(Math.abs(change))}${unit}`;
}

/**
 * @param {number | null | undefined} fraction
 * @param {number} [digits]
 * @returns {string}
 */
export function formatPercent(fraction, digits = 1) {
  if (fraction === null || fraction === undefined) return '—';
  return `${(fraction * 100).toFixed(digits)}%`;
}

/**
 * A dimension value as a person reads it (a country code gains its name).
 * @param {string} dimension
 * @param {string} value
 * @returns {string}
 */
export function dimensionText(dimension, value) {
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

/**
 * A time label as the axis shows it (`2026-05-04 13:00:00` → `May 4, 13:00`).
 * @param {string} label
 * @param {boolean} [short]
 * @returns {string}
 */
export function labelText(label, short) {
  const m = /^(\d{4})-(\d{2})-(\d{2})(?: (\d{2}):(\d{2}))?/.exec(label);
  if (m === null) return label;
  const months = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
  const day = `${months[Number(m[2]) - 1]} ${Number(m[3])}`;
  if (m[4] !== undefined) return short ? `${m[4]}:${m[5]}` : `${day}, ${m[4]}:${m[5]}`;
  return short ? day : `${day} ${m[1]}`;
}
