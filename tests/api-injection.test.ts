import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openChdbStore } from '../store/chdb-store.ts';
import { BOOTSTRAP_SITE, startApiInstance, type ApiInstance } from './support/api-instance.ts';
import { UA_TRUTH } from './support/api-oracle.ts';
import { nearMidnightUtc, SENDER_UA, waitForProcessor } from './support/e2e.ts';

/**
 * SQL injection and nasty payloads against the real HTTP API of a `farol start`: every part of a
 * query a client controls (filter operators and values, dimension names, property keys, metric
 * names, order_by, date ranges, site_id, pagination, include) either gets a 400 naming the
 * offending field or is plain data. To tell "plain data" from "ignored", the site holds events
 * whose page paths, names, property keys and values and utm_source ARE the injection strings, and
 * `is` filters must find exactly them. Afterwards every table is still there with its counts.
 */

const SITE = BOOTSTRAP_SITE;
const PARTITIONS = 4;

const EVIL = [
  "'); DROP TABLE events; --",
  "' OR '1'='1",
  '" OR ""="',
  '`events`; SELECT `1` FROM `sessions`',
  "\\'; DROP TABLE sessions; --",
  '{p0:String}',
  '%27%3B--',
  'ção 日本語 🚀 \u202e',
  // NUL is refused at the door (a coded 400, below); other control characters are data.
  'ctl\u0001\u007fbyte',
  'line\nbreak\ttab',
] as const;

/** One seeded event: each its own visitor (its own IP), hence its own visit. */
interface Seeded {
  name: string;
  path: string;
  props: Record<string, string>;
  utmSource: string;
}

const seeded: Seeded[] = [];
for (const s of EVIL) {
  seeded.push({ name: 'pageview', path: `/${s}`, props: { [s]: s, plan: s }, utmSource: s });
  seeded.push({ name: s, path: '/x', props: { [s]: s }, utmSource: '' });
}
for (let i = 0; i < 5; i++) seeded.push({ name: 'pageview', path: '/', props: {}, utmSource: '' });

/** re2 pattern matching `s` literally: ASCII punctuation escaped, NUL as \x00. */
const literal = (s: string): string => s.replace(/[\\^$.|?*+()[\]{}/\-'"`%#&!~<>=:;,@]/g, (c) => `\\${c}`).replaceAll('\u0000', '\\x00');

let inst: ApiInstance | undefined;
let today = '';

async function post(body: unknown): Promise<{ status: number; json: { results?: { dimensions: string[]; metrics: number[] }[]; error?: { code: string; field?: string } } }> {
  if (inst === undefined) throw new Error('no instance');
  const r = await inst.query(body);
  return r as { status: number; json: { results?: { dimensions: string[]; metrics: number[] }[]; error?: { code: string; field?: string } } };
}

/** A 200 and its rows keyed by the first dimension. */
async function ok(body: Record<string, unknown>): Promise<Map<string, number[]>> {
  const r = await post({ site_id: SITE, date_range: [today, today], ...body });
  expect(r.status, JSON.stringify({ body, answer: r.json })).toBe(200);
  return new Map((r.json.results ?? []).map((row) => [row.dimensions[0] ?? '', row.metrics]));
}

/** A 400 naming `field`. */
async function rejected(body: unknown, field: string | RegExp): Promise<void> {
  const r = await post(body);
  expect(r.status, JSON.stringify({ body: JSON.stringify(body).slice(0, 300), answer: r.json })).toBe(400);
  if (typeof field === 'string') expect(r.json.error?.field).toBe(field);
  else expect(r.json.error?.field).toMatch(field);
}

describe.skipIf(nearMidnightUtc(10))('reporting API: injection attempts are rejected or are plain data', () => {
  beforeAll(async () => {
    inst = await startApiInstance({ FAROL_HUB_PARTITIONS: String(PARTITIONS) });
    const ua = (UA_TRUTH[0] as { ua: string }).ua;
    const events = seeded.map((e, i) => ({
      n: e.name,
      u: `https://${SITE}/${e.path.slice(1).split('/').map(encodeURIComponent).join('/')}${e.utmSource === '' ? '' : `?utm_source=${encodeURIComponent(e.utmSource)}`}`,
      d: SITE,
      ...(Object.keys(e.props).length === 0 ? {} : { p: e.props }),
      id: `inj-${i}`,
      ip: `85.214.7.${i + 1}`,
      ua,
    }));
    today = new Date().toISOString().slice(0, 10);
    const res = await fetch(`${inst.url}/api/batch`, { method: 'POST', body: JSON.stringify(events), headers: { 'content-type': 'application/json', 'user-agent': SENDER_UA } });
    expect(await res.text()).toBe(JSON.stringify({ accepted: events.length }));
    await waitForProcessor(inst.proc.metricsUrl, { partitions: PARTITIONS, eventRows: events.length, timeoutMs: 60_000 });
  }, 180_000);

  afterAll(async () => {
    await inst?.stop();
  });

  it('the seeded strings are stored as they were sent', async () => {
    const pages = await ok({ metrics: ['pageviews'], dimensions: ['event:page'] });
    expect(new Map([...pages].map(([k, v]) => [k, v[0]]))).toEqual(new Map([['/', 5], ...EVIL.map((s) => [`/${s}`, 1] as const)]));
    const names = await ok({ metrics: ['events'], dimensions: ['event:name'] });
    expect(new Map([...names].map(([k, v]) => [k, v[0]]))).toEqual(new Map([['pageview', EVIL.length + 5], ...EVIL.map((s) => [s, 1] as const)]));
  });

  it.each(EVIL.map((s) => [JSON.stringify(s), s]))('filter values %s through every operator are data', async (_, s) => {
    const total = seeded.length;
    const count = (pred: (e: Seeded) => boolean): number => seeded.filter(pred).length;
    const visitors = async (filter: unknown[]): Promise<number | undefined> => (await ok({ metrics: ['visitors'], filters: [filter] })).get('')?.[0];

    expect(await visitors(['is', 'event:page', [`/${s}`]])).toBe(1);
    expect(await visitors(['is_not', 'event:page', [`/${s}`]])).toBe(total - 1);
    expect(await visitors(['contains', 'event:page', [s]])).toBe(count((e) => e.path.includes(s)));
    expect(await visitors(['contains_not', 'event:page', [s]])).toBe(count((e) => !e.path.includes(s)));
    expect(await visitors(['contains', 'event:page', [s.toUpperCase()], { case_sensitive: false }])).toBe(count((e) => e.path.toLowerCase().includes(s.toLowerCase())));
    expect(await visitors(['matches', 'event:page', [`^/${literal(s)}$`]])).toBe(1);
    expect(await visitors(['matches_not', 'event:page', [`^/${literal(s)}$`]])).toBe(total - 1);
    expect(await visitors(['is', 'event:name', [s]])).toBe(1);
    expect(await visitors(['is', 'event:goal', [s]])).toBe(1);
    expect(await visitors(['is', 'visit:utm_source', [s]])).toBe(1);
    expect(await visitors(['is', 'event:props:plan', [s]])).toBe(1);
    expect(await visitors(['not', ['or', [['is', 'event:name', [s]], ['is', 'event:page', [`/${s}`]]]]])).toBe(total - 2);
    // As a property key, in a filter and as a dimension.
    expect(await visitors(['is', `event:props:${s}`, [s]])).toBe(2);
    const byKey = await ok({ metrics: ['events'], dimensions: [`event:props:${s}`] });
    expect(byKey).toEqual(new Map([[s, [2]], ['(none)', [total - 2]]]));
    // As a breakdown value: a filtered breakdown lists exactly it.
    const byPage = await ok({ metrics: ['visitors', 'pageviews'], dimensions: ['event:page'], filters: [['is', 'event:page', [`/${s}`]]] });
    expect(byPage).toEqual(new Map([[`/${s}`, [1, 1]]]));
    const bySource = await ok({ metrics: ['visitors'], dimensions: ['visit:utm_source'], filters: [['contains', 'visit:utm_source', [s]]] });
    expect(bySource).toEqual(new Map([[s, [1]]]));
  });

  it('property keys with quotes, backticks, unicode, control characters and maximal length are data', async () => {
    for (const key of ["it's", 'a`b', 'k"]) OR 1=1 --', "x') OR 1=1 --", 'ção🚀', 'a\u0001b', 'k'.repeat(300)]) {
      const rows = await ok({ metrics: ['events'], dimensions: [`event:props:${key}`] });
      expect(rows, key).toEqual(new Map([['(none)', [seeded.length]]]));
      expect((await ok({ metrics: ['events'], filters: [['is', `event:props:${key}`, ['x']]] })).get('')).toEqual([0]);
    }
  });

  it('values at the length limit are data', async () => {
    const long = `/${"'".repeat(999)}${'\\'.repeat(1000)}`;
    for (const op of ['is', 'contains', 'matches']) {
      expect((await ok({ metrics: ['visitors'], filters: [[op, 'event:page', [op === 'matches' ? "^/'{999}\\\\{1000}$" : long]]] })).get(''), op).toEqual([0]);
    }
    expect((await ok({ metrics: ['visitors'], filters: [['is_not', 'event:page', [long]]] })).get('')).toEqual([seeded.length]);
  });

  const base = { site_id: SITE, metrics: ['visitors'], date_range: 'day' };
  const huge = 'x'.repeat(10 * 1024);
  const cases: Array<[string, unknown, string | RegExp]> = [
    ['filter operator', { ...base, filters: [["is'; DROP TABLE events; --", 'event:page', ['/']]] }, 'filters[0][0]'],
    ['nested filter operator', { ...base, filters: [['and', [['is', 'event:page', ['/']], ['is) OR (1=1', 'event:page', ['/']]]]] }, 'filters[0][1][1][0]'],
    ['filter dimension', { ...base, filters: [['is', "event:page') OR 1=1 --", ['/']]] }, 'filters[0][1]'],
    ['filter dimension, 10 KB', { ...base, filters: [['is', huge, ['/']]] }, 'filters[0][1]'],
    ['property key, 10 KB (filter)', { ...base, filters: [['is', `event:props:${huge}`, ['/']]] }, 'filters[0][1]'],
    ['property key, 10 KB (dimension)', { ...base, dimensions: [`event:props:${huge}`] }, 'dimensions[0]'],
    ['property key, 301 characters', { ...base, dimensions: [`event:props:${'k'.repeat(301)}`] }, 'dimensions[0]'],
    ['filter value, 10 KB', { ...base, filters: [['is', 'event:page', [huge]]] }, 'filters[0][2][0]'],
    ['filter value, an object', { ...base, filters: [['is', 'event:page', [{ $gt: '' }]]] }, 'filters[0][2][0]'],
    ['filter value, null', { ...base, filters: [['contains', 'event:page', [null]]] }, 'filters[0][2][0]'],
    ['filter options', { ...base, filters: [['is', 'event:page', ['/'], { "case_sensitive'": false }]] }, "filters[0][3].case_sensitive'"],
    ['country value', { ...base, filters: [['is', 'visit:country', ["DE' OR 1=1"]]] }, 'filters[0][2][0]'],
    ['dimension', { ...base, dimensions: ['event:page; DROP TABLE events'] }, 'dimensions[0]'],
    ['dimension with backticks', { ...base, dimensions: ['visit:source', '`events`'] }, 'dimensions[1]'],
    ['metric', { ...base, metrics: ["visitors') FROM events --"] }, 'metrics[0]'],
    ['metric, 10 KB', { ...base, metrics: [huge] }, 'metrics[0]'],
    ['metric, repeated', { ...base, metrics: ['visitors', 'visitors'] }, 'metrics[1]'],
    ['order_by key', { ...base, order_by: [['visitors; DROP TABLE events', 'desc']] }, 'order_by[0][0]'],
    ['order_by direction', { ...base, order_by: [['visitors', 'desc; DROP TABLE events']] }, 'order_by[0][1]'],
    ['order_by entry not queried', { ...base, order_by: [['pageviews', 'asc']] }, 'order_by[0][0]'],
    ['date_range shortcut', { ...base, date_range: "day'; DROP TABLE events; --" }, 'date_range'],
    ['date_range from', { ...base, date_range: ["2024-01-01' OR 1=1", '2024-01-02'] }, 'date_range[0]'],
    ['date_range to', { ...base, date_range: ['2024-01-01T00:00:00Z', "2024-01-02'); DROP"] }, 'date_range[1]'],
    ['date_range, 10 KB', { ...base, date_range: [huge, huge] }, /^date_range/],
    ['comparison mode', { ...base, include: { comparisons: { mode: "previous_period' --" } } }, 'include.comparisons.mode'],
    ['comparison range', { ...base, include: { comparisons: { mode: 'custom', date_range: ["2024-01-01'", '2024-01-02'] } } }, /^include\.comparisons\.date_range/],
    ['include field', { ...base, include: { "total_rows'; --": true } }, "include.total_rows'; --"],
    ['include value', { ...base, include: { total_rows: '1; DROP TABLE events' } }, 'include.total_rows'],
    ['pagination limit, text', { ...base, pagination: { limit: '10; DROP TABLE events' } }, 'pagination.limit'],
    ['pagination limit, negative', { ...base, pagination: { limit: -1 } }, 'pagination.limit'],
    ['pagination limit, fraction', { ...base, pagination: { limit: 1.5 } }, 'pagination.limit'],
    ['pagination offset, huge', { ...base, pagination: { offset: 1e18 } }, 'pagination.offset'],
    ['pagination field', { ...base, pagination: { "limit') --": 1 } }, "pagination.limit') --"],
    ['top-level field', { ...base, sql: 'DROP TABLE events' }, 'sql'],
    ['site_id type', { ...base, site_id: ['localhost'] }, 'site_id'],
  ];

  it.each(cases)('%s: 400 naming the field', async (_, body, field) => {
    await rejected(body, field);
  });

  it('site_id is data: other values are a site that does not exist, not echoed', async () => {
    for (const siteId of ["localhost' OR '1'='1", "localhost'); DROP TABLE sites; --", huge, 'LOCALHOST`']) {
      const r = await post({ ...base, site_id: siteId });
      expect(r.status, siteId.slice(0, 40)).toBe(404);
      expect(r.json.error?.field).toBe('site_id');
      expect(JSON.stringify(r.json)).not.toContain(siteId.slice(0, 20));
    }
  });

  it('NUL and lone surrogates are refused, in events and in queries, naming the field', async () => {
    const beacon = await fetch(`${inst?.url}/api/event`, { method: 'POST', body: JSON.stringify({ n: 'nul\u0000byte', u: `https://${SITE}/`, d: SITE }) });
    expect(beacon.status).toBe(400);
    expect(((await beacon.json()) as { error: { code: string } }).error.code).toBe('ING_BAD_STRING');
    await rejected({ ...base, site_id: 'localhost\u0000' }, 'site_id');
    await rejected({ ...base, dimensions: ['event:props:a\u0000b'] }, 'dimensions[0]');
    await rejected({ ...base, filters: [['is', 'event:page', ['/\ud800']]] }, 'filters[0][2][0]');
  });

  it('site_id is case-insensitive, like the domains events are sent to', async () => {
    const r = await post({ ...base, site_id: 'LocalHost' });
    expect(r.status, JSON.stringify(r.json)).toBe(200);
    expect(r.json.results).toEqual([{ dimensions: [], metrics: [seeded.length] }]);
  });

  it('a body that is not JSON, or too large, is refused', async () => {
    const notJson = await post("{'site_id': 'localhost'}; DROP TABLE events");
    expect(notJson.status).toBe(400);
    expect(notJson.json.error?.field).toBe('body');
    const big = await post(JSON.stringify({ ...base, filters: [['is', 'event:page', ['x'.repeat(2 * 1024 * 1024)]]] }));
    expect(big.status).toBe(413);
  });

  it('catastrophic and re2-invalid regular expressions answer 200 or a 400 naming the value, promptly', async () => {
    const patterns = ['(a+)+$', '(x+x+)+y', '^(([a-z])+.)+[A-Z]([a-z])+$', '(.*a){20}', '((((((((((a*)*)*)*)*)*)*)*)*)*)*b', '(a|aa)+$', `${'(a?)'.repeat(30)}${'a'.repeat(30)}`];
    for (const p of patterns) {
      const r = await post({ ...base, filters: [['matches', 'event:page', [p]]] });
      expect(r.status, p).toBe(200);
    }
    for (const p of ['(a)\\1', '(?=a)b', '(?<!x)y', '(unclosed', 'a{99999}']) {
      await rejected({ ...base, filters: [['matches', 'event:page', [p]]] }, 'filters[0][2][0]');
      await rejected({ ...base, filters: [['is', 'visit:browser', ['Chrome']], ['matches_not', 'event:page', ['x', p], { case_sensitive: false }]] }, 'filters[1][2][1]');
    }
  });

  it('afterwards every table is still there and nothing changed', async () => {
    const after = await ok({ metrics: ['visitors', 'visits', 'pageviews', 'events'] });
    expect(after.get('')).toEqual([seeded.length, seeded.length, EVIL.length + 5, seeded.length]);
    if (inst === undefined) throw new Error('no instance');
    await inst.halt();
    const store = openChdbStore({ dataDir: inst.dataDir, database: 'farol' });
    try {
      const tables = (await store.query<{ name: string }>('SELECT name FROM system.tables WHERE database = {db:String}', { db: 'farol' })).map((r) => r.name);
      expect(tables).toEqual(expect.arrayContaining(['events', 'sessions', 'rollup_daily', 'rollup_hourly', 'sessions_daily', 'sessions_hourly', 'sites', 'tokens', 'members', 'accounts']));
      const n = async (sql: string): Promise<number> => Number((await store.query<{ n: string }>(sql))[0]?.n);
      expect(await n('SELECT count() AS n FROM events')).toBe(seeded.length);
      expect(await n('SELECT sum(sign) AS n FROM sessions')).toBe(seeded.length);
      expect(await n("SELECT count() AS n FROM sites FINAL WHERE deleted = 0 AND domain = 'localhost'")).toBe(1);
      expect(await n('SELECT count() AS n FROM tokens FINAL WHERE deleted = 0')).toBeGreaterThanOrEqual(1);
    } finally {
      await store.close();
    }
  });
});
