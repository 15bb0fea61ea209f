import { strToU8, zipSync } from 'fflate';
import type { Store } from '../../store/store.ts';
import { runQuery, type QueryResponse, type QuerySite } from '../query/query.ts';
import type { Metric } from '../query/schema.ts';
import { toCsv, type Cell } from './csv.ts';
import { fromEcho } from './date-range.ts';

/**
 * `GET /api/v2/export`: a zip of CSVs of the main breakdowns, like Plausible's
 * export. Every file is the answer of a Stats API v2 query run through `runQuery`, so its numbers
 * are the API's (and the dashboard's).
 */

export interface ExportFile {
  file: string;
  /** The query's dimension; the CSV's first column (`date` for the time series, else `name`). */
  dimension: string;
  metrics: readonly Metric[];
}

export const exportFiles: readonly ExportFile[] = [
  { file: 'visitors.csv', dimension: 'time:day', metrics: ['visitors', 'pageviews', 'visits', 'bounce_rate', 'visit_duration'] },
  { file: 'pages.csv', dimension: 'event:page', metrics: ['visitors', 'pageviews', 'bounce_rate'] },
  { file: 'entry_pages.csv', dimension: 'visit:entry_page', metrics: ['visitors', 'visits', 'bounce_rate', 'visit_duration'] },
  { file: 'exit_pages.csv', dimension: 'visit:exit_page', metrics: ['visitors', 'visits'] },
  { file: 'sources.csv', dimension: 'visit:source', metrics: ['visitors', 'visits', 'bounce_rate', 'visit_duration'] },
  { file: 'channels.csv', dimension: 'visit:channel', metrics: ['visitors', 'visits', 'bounce_rate', 'visit_duration'] },
  { file: 'utm_mediums.csv', dimension: 'visit:utm_medium', metrics: ['visitors', 'visits', 'bounce_rate', 'visit_duration'] },
  { file: 'utm_sources.csv', dimension: 'visit:utm_source', metrics: ['visitors', 'visits', 'bounce_rate', 'visit_duration'] },
  { file: 'utm_campaigns.csv', dimension: 'visit:utm_campaign', metrics: ['visitors', 'visits', 'bounce_rate', 'visit_duration'] },
  { file: 'countries.csv', dimension: 'visit:country', metrics: ['visitors'] },
  { file: 'devices.csv', dimension: 'visit:device', metrics: ['visitors'] },
  { file: 'browsers.csv', dimension: 'visit:browser', metrics: ['visitors'] },
  { file: 'operating_systems.csv', dimension: 'visit:os', metrics: ['visitors'] },
  { file: 'custom_events.csv', dimension: 'event:goal', metrics: ['visitors', 'events', 'conversion_rate'] },
];

/** Rows read per query, and at most per file (a breakdown past that is cut, like a dashboard's "top N"). */
export const PAGE_ROWS = 10_000;
export const MAX_ROWS_PER_FILE = 100_000;

/** The query behind a file, page by page; ordered fully so pages neither repeat nor skip rows. */
export function exportQuery(spec: ExportFile, siteId: string, dateRange: unknown, offset: number): Record<string, unknown> {
  const timeSeries = spec.dimension.startsWith('time');
  return {
    site_id: siteId,
    metrics: [...spec.metrics],
    date_range: dateRange,
    dimensions: [spec.dimension],
    order_by: timeSeries ? [[spec.dimension, 'asc']] : [[spec.metrics[0], 'desc'], [spec.dimension, 'asc']],
    ...(timeSeries ? { include: { time_labels: true } } : {}),
    pagination: { limit: PAGE_ROWS, offset },
  };
}

export interface SiteExport {
  /** `<domain>-<first day>-<last day>.zip`, days in the site's zone. */
  filename: string;
  zip: Uint8Array;
  /** The CSV texts by file name (what the zip holds). */
  files: Record<string, string>;
}

async function rowsOf(store: Store, site: QuerySite, spec: ExportFile, dateRange: unknown, now: Date): Promise<{ rows: Cell[][]; first: QueryResponse }> {
  const rows: Cell[][] = [];
  let first: QueryResponse | undefined;
  for (let offset = 0; offset < MAX_ROWS_PER_FILE; offset += PAGE_ROWS) {
    const r = await runQuery(store, site, exportQuery(spec, site.domain, dateRange, offset), now);
    first ??= r;
    for (const row of r.results) rows.push([row.dimensions[0] ?? '', ...row.metrics]);
    if (r.results.length < PAGE_ROWS) break;
  }
  return { rows: rows.slice(0, MAX_ROWS_PER_FILE), first: first as QueryResponse };
}

/** Filename-safe domain: the control plane validates domains, this only guards the header. */
const safe = (domain: string): string => domain.replace(/[^A-Za-z0-9.-]/g, '_');

/**
 * Builds the export of `site` over `dateRange` (any form the query API takes). Throws the query
 * engine's 400 naming `date_range` for a bad range, before anything else runs.
 */
export async function buildExport(store: Store, site: QuerySite, dateRange: unknown, now: Date): Promise<SiteExport> {
  const files: Record<string, string> = {};
  let filename = '';
  for (const spec of exportFiles) {
    const { rows, first } = await rowsOf(store, site, spec, dateRange, now);
    let out = rows;
    if (spec.dimension === 'time:day') {
      const range = fromEcho(first.query.date_range);
      filename = `${safe(site.domain)}-${range.firstDay}-${range.lastDay}.zip`;
      // Every day of the range, with zeros where nothing happened.
      const byDay = new Map(rows.map((r) => [r[0], r]));
      out = (first.meta.time_labels ?? []).map((day) => byDay.get(day) ?? [day, ...spec.metrics.map(() => 0)]);
    }
    files[spec.file] = toCsv([spec.dimension === 'time:day' ? 'date' : 'name', ...spec.metrics], out);
  }
  const zip = zipSync(Object.fromEntries(Object.entries(files).map(([name, text]) => [name, strToU8(text)])), { level: 6 });
  return { filename, zip, files };
}
