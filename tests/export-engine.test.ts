import { strFromU8, unzipSync } from 'fflate';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openTestStore, removeTempDirs, writeThroughProcessor } from '../processor/testing/harness.ts';
import type { EnrichedEvent } from '../schemas/enriched-event.ts';
import type { Store } from '../store/store.ts';
import { makeEvent } from '../schemas/testing/events.ts';
import { generateTraffic } from '../schemas/testing/oracle.ts';
import { ApiQueryError } from '../api/query/errors.ts';
import { runQuery, type QuerySite } from '../api/query/query.ts';
import { buildExport, type SiteExport } from '../api/export/export.ts';
import { parseCsv } from '../api/export/testing/parse-csv.ts';

/**
 * The export against real components: traffic through the local hub and the processor into chDB,
 * then every CSV of the zip (read back with fflate and an independent RFC 4180 reader) compared
 * with the Stats API's answer to the same breakdown.
 */

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const base = Math.floor(Date.now() / DAY) * DAY - 10 * DAY;
const now = new Date(base + 6 * DAY + 12 * HOUR);
const site: QuerySite = { domain: 'export.test', timezone: 'Europe/Lisbon' };
const nasty = 'x",\n=cmd';

const traffic: EnrichedEvent[] = [
  ...[0, 1, 3].flatMap((d) => generateTraffic({ sites: [site.domain], visitorsPerSite: 25, eventsPerVisitor: 12, start: base + d * DAY + 9 * HOUR, seed: 40 + d })),
  // Values a spreadsheet would misread: quotes, commas, newlines, formulas.
  makeEvent({ id: 'nasty-1', site: site.domain, hostname: site.domain, ts: base + 2 * DAY + 10 * HOUR, visitorId: '77', pathname: `/${nasty}`, source: `=HYPERLINK("evil"),x`, channel: 'Referral', referrer: 'https://evil.test/' }),
  makeEvent({ id: 'nasty-2', site: site.domain, hostname: site.domain, ts: base + 2 * DAY + 10 * HOUR + 1000, visitorId: '77', name: `=1+2${nasty}` }),
  makeEvent({ id: 'nasty-3', site: site.domain, hostname: site.domain, ts: base + 2 * DAY + 10 * HOUR + 2000, visitorId: '77', name: nasty }),
].sort((a, b) => a.ts - b.ts);

let store: Store;

beforeAll(async () => {
  store = await openTestStore();
  await writeThroughProcessor(store, traffic, {
    partitions: 2,
    chunk: traffic.length,
    options: { flushRecords: 500, flushIntervalMs: 30, snapshotIntervalMs: 100, hubBatchSize: 200, lagRefreshMs: 50 },
  });
}, 120_000);

afterAll(async () => {
  await store.close();
  await removeTempDirs();
});

/** The zip's files, read back with fflate and parsed with the test's own CSV reader. */
function unpack(e: SiteExport): Map<string, string[][]> {
  const files = unzipSync(e.zip);
  return new Map(Object.entries(files).map(([name, bytes]) => [name, parseCsv(strFromU8(bytes))]));
}

/** How the export writes a text cell: formulas defused with a leading quote. */
const asWritten = (v: string): string => (/^[=+\-@\t\r]/.test(v) ? `'${v}` : v);
const num = (v: number | null): string => (v === null ? '' : String(v));

/** The API's answer to a one-dimension breakdown, as CSV rows, sorted (ties may list in any order). */
async function apiRows(dimension: string, metrics: string[], dateRange: unknown): Promise<string[][]> {
  const r = await runQuery(store, site, { site_id: site.domain, metrics, dimensions: [dimension], date_range: dateRange }, now);
  return r.results.map((row) => [asWritten(row.dimensions[0] ?? ''), ...row.metrics.map(num)]).sort();
}

const breakdowns: [string, string, string[]][] = [
  ['pages.csv', 'event:page', ['visitors', 'pageviews', 'bounce_rate']],
  ['entry_pages.csv', 'visit:entry_page', ['visitors', 'visits', 'bounce_rate', 'visit_duration']],
  ['exit_pages.csv', 'visit:exit_page', ['visitors', 'visits']],
  ['sources.csv', 'visit:source', ['visitors', 'visits', 'bounce_rate', 'visit_duration']],
  ['channels.csv', 'visit:channel', ['visitors', 'visits', 'bounce_rate', 'visit_duration']],
  ['utm_mediums.csv', 'visit:utm_medium', ['visitors', 'visits', 'bounce_rate', 'visit_duration']],
  ['utm_sources.csv', 'visit:utm_source', ['visitors', 'visits', 'bounce_rate', 'visit_duration']],
  ['utm_campaigns.csv', 'visit:utm_campaign', ['visitors', 'visits', 'bounce_rate', 'visit_duration']],
  ['countries.csv', 'visit:country', ['visitors']],
  ['devices.csv', 'visit:device', ['visitors']],
  ['browsers.csv', 'visit:browser', ['visitors']],
  ['operating_systems.csv', 'visit:os', ['visitors']],
  ['custom_events.csv', 'event:goal', ['visitors', 'events', 'conversion_rate']],
];

describe.each([
  ['7d', '7d'],
  ['a [from, to] pair', [new Date(base).toISOString().slice(0, 10), new Date(base + 4 * DAY).toISOString().slice(0, 10)]],
])('the export over %s', (_name, dateRange) => {
  let exported: SiteExport;
  let files: Map<string, string[][]>;

  beforeAll(async () => {
    exported = await buildExport(store, site, dateRange, now);
    files = unpack(exported);
  });

  it('holds every file, and the files hold what the zip holds', () => {
    expect([...files.keys()].sort()).toEqual(['visitors.csv', ...breakdowns.map((b) => b[0])].sort());
    for (const [name, rows] of files) expect(parseCsv(exported.files[name] ?? '')).toEqual(rows);
  });

  it('lists every day of the range in visitors.csv, with the API numbers and zeros on empty days', async () => {
    const metrics = ['visitors', 'pageviews', 'visits', 'bounce_rate', 'visit_duration'];
    const r = await runQuery(store, site, { site_id: site.domain, metrics, dimensions: ['time:day'], date_range: dateRange, include: { time_labels: true } }, now);
    const labels = r.meta.time_labels ?? [];
    const byDay = new Map(r.results.map((row) => [row.dimensions[0], row.metrics.map(num)]));
    const csv = files.get('visitors.csv') ?? [];
    expect(csv[0]).toEqual(['date', ...metrics]);
    expect(csv.slice(1)).toEqual(labels.map((day) => [day, ...(byDay.get(day) ?? metrics.map(() => '0'))]));
    // Some days have traffic, some none: the comparison is not vacuous.
    expect(r.results.length).toBeGreaterThanOrEqual(2);
    expect(labels.length).toBeGreaterThan(r.results.length);
    expect(exported.filename).toBe(`export.test-${labels[0]}-${labels.at(-1)}.zip`);
  });

  it.each(breakdowns)('%s equals the API breakdown by %s', async (file, dimension, metrics) => {
    const csv = files.get(file) ?? [];
    expect(csv[0]).toEqual(['name', ...metrics]);
    const want = await apiRows(dimension, metrics, dateRange);
    expect([...csv.slice(1)].sort()).toEqual(want);
    if (!file.startsWith('utm_')) expect(want.length).toBeGreaterThan(0);
  });
});

describe('values that break spreadsheets', () => {
  it('round-trip in their cells, formulas defused', async () => {
    const files = unpack(await buildExport(store, site, '7d', now));
    const pages = (files.get('pages.csv') ?? []).map((r) => r[0]);
    expect(pages).toContain(`/${nasty}`);
    const sources = (files.get('sources.csv') ?? []).map((r) => r[0]);
    expect(sources).toContain(`'=HYPERLINK("evil"),x`);
    const events = (files.get('custom_events.csv') ?? []).map((r) => r[0]);
    expect(events).toContain(`'=1+2${nasty}`);
    expect(events).toContain(nasty);
    // Nothing but the header and data rows: the newlines stayed inside their cells.
    for (const rows of files.values()) for (const row of rows) expect(row.length).toBe(rows[0]?.length);
  });
});

describe('date_range', () => {
  it.each([['fortnight'], [['2026-01-01']], [['2026-02-30', '2026-03-01']], [42]])('refuses %j, naming the field', async (dateRange) => {
    const err = await buildExport(store, site, dateRange, now).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiQueryError);
    expect((err as ApiQueryError).field).toMatch(/^date_range/);
  });
});
