import { strFromU8, unzipSync } from 'fflate';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatTimestamp } from '../../store/rows.ts';
import { call, SITE_A, SITE_B, startApiHarness, type ApiHarness } from '../experiments/testing/api-harness.ts';
import { parseCsv } from '../export/testing/parse-csv.ts';

/** `GET /api/v2/export` over HTTP with the real control plane: access, headers, and the API's numbers. */

let h: ApiHarness;
const DAY = 86_400_000;
const day = (ms: number): string => new Date(ms).toISOString().slice(0, 10);
// Noon yesterday (UTC): the events stay on one day whenever the test runs.
const yesterday = Math.floor(Date.now() / DAY) * DAY - DAY + DAY / 2;

beforeAll(async () => {
  h = await startApiHarness();
  const pages = ['/', '/pricing', '/docs', '/a",\n=cmd'];
  const events = [];
  for (let v = 1; v <= 40; v++) {
    for (let i = 0; i <= v % 4; i++) {
      const site = v > 35 ? SITE_B : SITE_A;
      events.push({ site, timestamp: formatTimestamp(yesterday + v * 1000 + i), event_id: `${v}-${i}`, name: 'pageview', visitor_id: String(v), session_id: String(v), hostname: site, pathname: pages[(v + i) % 4] });
    }
  }
  await h.store.insert('events', events);
}, 60_000);

afterAll(async () => {
  await h?.close();
});

const exportOf = (query: string, token = h.tokens.viewer) => call(h.url, 'GET', `/api/v2/export?${query}`, token);

describe('GET /api/v2/export', () => {
  it('answers a viewer with a zip named after the site and the range', async () => {
    const range = `${day(yesterday - 2 * DAY)},${day(yesterday)}`;
    const r = await exportOf(`site_id=${SITE_A}&date_range=${range}`);
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toBe('application/zip');
    expect(r.headers.get('content-disposition')).toBe(`attachment; filename="${SITE_A}-${day(yesterday - 2 * DAY)}-${day(yesterday)}.zip"`);
    const files = unzipSync(r.bytes);
    expect(Object.keys(files)).toContain('visitors.csv');

    // pages.csv holds what POST /api/v2/query answers for the same breakdown.
    const q = await call(h.url, 'POST', '/api/v2/query', h.tokens.viewer, {
      site_id: SITE_A,
      metrics: ['visitors', 'pageviews', 'bounce_rate'],
      dimensions: ['event:page'],
      date_range: range.split(','),
    });
    expect(q.status).toBe(200);
    const api = (q.json as { results: { dimensions: string[]; metrics: (number | null)[] }[] }).results;
    const defuse = (v: string): string => (/^[=+\-@\t\r]/.test(v) ? `'${v}` : v);
    const want = api.map((row) => [defuse(row.dimensions[0] ?? ''), ...row.metrics.map((m) => (m === null ? '' : String(m)))]).sort();
    const csv = parseCsv(strFromU8(files['pages.csv'] ?? new Uint8Array()));
    expect(csv[0]).toEqual(['name', 'visitors', 'pageviews', 'bounce_rate']);
    expect(csv.slice(1).sort()).toEqual(want);
    expect(want.map((row) => row[0])).toContain('/a",\n=cmd');
    // 35 visitors of site A, none of site B's.
    const visitors = parseCsv(strFromU8(files['visitors.csv'] ?? new Uint8Array()));
    expect(visitors.slice(1).reduce((s, row) => s + Number(row[1]), 0)).toBe(35);
    expect(visitors.slice(1).map((row) => row[0])).toEqual([day(yesterday - 2 * DAY), day(yesterday - DAY), day(yesterday)]);
  });

  it('defaults to the last 30 days', async () => {
    const r = await exportOf(`site_id=${SITE_A}`);
    expect(r.status).toBe(200);
    const visitors = parseCsv(strFromU8(unzipSync(r.bytes)['visitors.csv'] ?? new Uint8Array()));
    expect(visitors.length - 1).toBe(30);
  });

  it('needs a token, and answers sites out of scope like absent ones', async () => {
    expect((await call(h.url, 'GET', `/api/v2/export?site_id=${SITE_A}`)).status).toBe(401);
    const other = await exportOf(`site_id=${SITE_B}`);
    const absent = await exportOf('site_id=absent.test');
    const outsideGrant = await exportOf(`site_id=${SITE_A}`, h.tokens.scopedViewer);
    for (const r of [other, absent, outsideGrant]) expect(r.status).toBe(404);
    expect(other.json).toEqual(absent.json);
    expect(outsideGrant.json).toEqual(absent.json);
  });

  it.each([['fortnight'], ['2026-01-01'], ['2026-01-01,2026-01-02,2026-01-03'], ['["2026-02-30","2026-03-01"]'], ['[not json']])('names date_range when it is %j', async (range) => {
    const r = await exportOf(`site_id=${SITE_A}&date_range=${encodeURIComponent(range)}`);
    expect(r.status).toBe(400);
    expect((r.json as { error: { field: string } }).error.field).toMatch(/^date_range/);
  });
});
