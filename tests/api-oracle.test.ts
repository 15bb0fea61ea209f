import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createUaParser } from '../ingest/enrich/user-agent.ts';
import {
  buildModel,
  generateApiTraffic,
  phaseTraffic,
  sendTimed,
  truthOf,
  type ApiTraffic,
  type Filter,
  type Model,
  type TimedBatch,
  type TruthValue,
  type Window,
} from './support/api-oracle.ts';
import { BOOTSTRAP_SITE, OWNER_TOKEN, startApiInstance, type ApiInstance } from './support/api-instance.ts';
import { geoCountries, nearMidnightUtc, SENDER_UA, sleep, waitForProcessor } from './support/e2e.ts';
import { planBatches } from './support/wire-oracle.ts';

/**
 * The reporting API end to end: seeded traffic goes through a real `farol start` (collector →
 * local hub → processor → embedded ClickHouse), then every number `POST /api/v2/query` answers
 * over HTTP with the owner's Bearer token is compared with the truth computed from the traffic
 * that was sent (tests/support/api-oracle.ts): every metric, by every main dimension, with
 * filters, comparisons and pagination. tests/query-engine.test.ts covers date ranges, time zones and
 * multi-day traffic in-process; this file covers the path through every component.
 *
 * Traffic goes out in two phases with a pause between them; a date-time range split in the pause
 * gives each phase exactly, and "previous period" of phase 2 is phase 1.
 */

const SITE = BOOTSTRAP_SITE;
const OTHER = 'other.test';
const PARTITIONS = 4;
const HOUR = 3_600_000;

interface Row {
  dimensions: string[];
  metrics: (number | null)[];
  comparison?: { dimensions: (string | null)[]; metrics: (number | null)[]; change: (number | null)[] };
}
interface Response {
  results: Row[];
  meta: Record<string, unknown> & { total_rows?: number; comparison_date_range?: [string, string]; source?: string };
  query: Record<string, unknown>;
}

let inst: ApiInstance | undefined;
let traffic: ApiTraffic;
let models: Record<string, Model>;
let sent: TimedBatch[] = [];
/** The instant in the pause between the phases. */
let tMid = 0;
/** Length of each phase's range: [tMid − span, tMid) holds phase 1, [tMid, tMid + span) phase 2. */
let span = 0;
let today = '';

const iso = (t: number): string => new Date(t).toISOString();
/** Date-time ranges with a fraction: the end is inclusive to the millisecond. */
const phaseRange = (p: 1 | 2): [string, string] => (p === 1 ? [iso(tMid - span), iso(tMid - 1)] : [iso(tMid), iso(tMid + span - 1)]);

async function query(body: Record<string, unknown>, site = SITE): Promise<Response> {
  if (inst === undefined) throw new Error('no instance');
  const r = await inst.query({ site_id: site, ...body });
  expect(r.status, JSON.stringify({ body, answer: r.json })).toBe(200);
  return r.json as Response;
}

/** Rows keyed by their first dimension ('' without dimensions). */
function byKey(r: Response): Map<string, (number | null)[]> {
  const out = new Map<string, (number | null)[]>();
  for (const row of r.results) {
    const key = row.dimensions[0] ?? '';
    expect(out.has(key), `row ${key} twice`).toBe(false);
    out.set(key, row.metrics);
  }
  return out;
}

/** Exact values compared as they are; bounded ones (visit duration) must fall in their bounds. */
function expectTruth(actual: Map<string, (number | null)[]>, truth: Map<string, TruthValue[]>, what: string): void {
  expect([...actual.keys()].sort(), `${what}: rows`).toEqual([...truth.keys()].sort());
  for (const [key, want] of truth) {
    const got = actual.get(key) ?? [];
    const exact = want.map((w, i) => (w !== null && typeof w === 'object' ? got[i] : w));
    expect(got, `${what}: ${key}`).toEqual(exact);
    want.forEach((w, i) => {
      if (w === null || typeof w !== 'object') return;
      const v = got[i] ?? Number.NaN;
      expect(v >= w.lo && v <= w.hi, `${what}: ${key} metric ${i} = ${v}, bounds ${w.lo}..${w.hi}`).toBe(true);
    });
  }
}

describe.skipIf(nearMidnightUtc(15))('reporting API end to end: oracle truth through farol start', () => {
  beforeAll(async () => {
    traffic = generateApiTraffic({ seed: 4_242, sites: [SITE, OTHER], visitors: 160, idPrefix: 'api' });
    const countries = await geoCountries(traffic.ips);
    expect(new Set(countries.values()).size).toBeGreaterThanOrEqual(5);
    const parseUa = createUaParser({ cacheSize: 100 });
    expect(traffic.visitors.filter((v) => parseUa(v.ua).bot)).toEqual([]);

    inst = await startApiInstance({ FAROL_HUB_PARTITIONS: String(PARTITIONS) });
    // Registered through the admin endpoint: the collector must accept its events right away.
    await inst.addSite(OTHER);

    // Phase 1 (every visit's first half), a pause, phase 2: every event's window is its batch's.
    const phase1 = await sendTimed(inst.url, planBatches(phaseTraffic(traffic, 1), { senders: 3, batchSize: 60, seed: 1 }), SENDER_UA);
    await sleep(2_500);
    const phase2 = await sendTimed(inst.url, planBatches(phaseTraffic(traffic, 2), { senders: 3, batchSize: 60, seed: 2 }), SENDER_UA);
    sent = [...phase1, ...phase2];
    expect(sent.filter((b) => b.status !== 202).map((b) => `${b.status} ${b.answer ?? ''}`)).toEqual([]);
    const end1 = Math.max(...phase1.map((b) => b.at[1]));
    const start2 = Math.min(...phase2.map((b) => b.at[0]));
    expect(start2 - end1).toBeGreaterThan(2_000);
    tMid = Math.floor((end1 + start2) / 2);
    span = Math.max(tMid - Math.min(...phase1.map((b) => b.at[0])), Math.max(...phase2.map((b) => b.at[1])) - tMid) + 1_000;
    today = iso(tMid).slice(0, 10);

    const windows = new Map<string, Window>();
    for (const b of sent) for (const e of b.batch.events) windows.set(e.id, b.at);
    const windowOf = (id: string): Window => {
      const w = windows.get(id);
      if (w === undefined) throw new Error(`event ${id} was not sent`);
      return w;
    };
    models = {
      [SITE]: buildModel(traffic, SITE, windowOf, (ip) => countries.get(ip) ?? ''),
      [OTHER]: buildModel(traffic, OTHER, windowOf, (ip) => countries.get(ip) ?? ''),
    };
    await waitForProcessor(inst.proc.metricsUrl, { partitions: PARTITIONS, eventRows: traffic.events, timeoutMs: 60_000 });
  }, 120_000);

  afterAll(async () => {
    await inst?.stop();
  });

  const allMetrics = ['visitors', 'visits', 'pageviews', 'events', 'bounce_rate', 'visit_duration', 'views_per_visit', 'total_revenue', 'average_revenue'];

  it('answers only with the token, only for sites in scope', async () => {
    if (inst === undefined) throw new Error('no instance');
    const body = { site_id: SITE, metrics: ['visitors'], date_range: 'day' };
    expect((await inst.query(body, 'not-a-token-at-all-0000')).status).toBe(401);
    const absent = await inst.query({ ...body, site_id: 'nobody.test' }, OWNER_TOKEN);
    expect(absent.status).toBe(404);
    expect(JSON.stringify(absent.json)).not.toContain('nobody.test');
  });

  it('aggregates: every metric equals the truth, for the day, each phase and each site', async () => {
    for (const site of [SITE, OTHER]) {
      const m = models[site] as Model;
      for (const [label, range, phase] of [
        ['day', [today, today], undefined],
        ['phase 1', phaseRange(1), 1],
        ['phase 2', phaseRange(2), 2],
      ] as const) {
        const r = await query({ metrics: allMetrics, date_range: range }, site);
        expectTruth(byKey(r), truthOf(m, { metrics: allMetrics, ...(phase === undefined ? {} : { phase }) }), `${site} ${label}`);
      }
    }
    // The day is answered from the rollups, a range inside it from raw events; both were checked.
    const day = await query({ metrics: ['visitors', 'pageviews'], date_range: [today, today] });
    expect(day.meta.source).toMatch(/^rollup_/);
    expect((await query({ metrics: ['visitors', 'pageviews'], date_range: phaseRange(1) })).meta.source).toBe('raw');
  });

  const sessionish = ['visitors', 'visits', 'pageviews', 'events', 'bounce_rate', 'visit_duration', 'views_per_visit', 'percentage'];
  const dimensionCases: Array<[string, string[]]> = [
    ['event:page', sessionish],
    ['visit:entry_page', sessionish],
    ['visit:exit_page', sessionish],
    ['visit:source', sessionish],
    ['visit:channel', sessionish],
    ['visit:utm_source', sessionish],
    ['visit:country', [...sessionish, 'total_revenue']],
    ['visit:browser', [...sessionish, 'total_revenue']],
    ['visit:os', sessionish],
    ['visit:device', sessionish],
    ['event:goal', ['visitors', 'events', 'visits', 'conversion_rate', 'percentage', 'total_revenue', 'average_revenue']],
    ['event:name', ['visitors', 'events', 'visits', 'pageviews', 'percentage']],
    ['event:props:plan', ['visitors', 'events', 'visits', 'percentage']],
    ['event:props:lang', ['visitors', 'events', 'pageviews', 'visits']],
    ["event:props:file", ['visitors', 'events', 'total_revenue']],
  ];

  it.each(dimensionCases)('breakdown by %s equals the truth (day and phase 2)', async (dimension, metrics) => {
    const m = models[SITE] as Model;
    const day = await query({ metrics, date_range: [today, today], dimensions: [dimension] });
    expectTruth(byKey(day), truthOf(m, { metrics, dimension }), `${dimension} day`);
    expect(day.results.length).toBeGreaterThan(1);
    const late = await query({ metrics, date_range: phaseRange(2), dimensions: [dimension] });
    expectTruth(byKey(late), truthOf(m, { metrics, dimension, phase: 2 }), `${dimension} phase 2`);
  });

  it('breakdowns add up: pageviews of every breakdown sum to the total, visitors of visit breakdowns too', async () => {
    const total = await query({ metrics: ['visitors', 'pageviews'], date_range: [today, today] });
    const [visitors, pageviews] = total.results[0]?.metrics as number[];
    expect(pageviews).toBeGreaterThan(100);
    for (const dimension of ['event:page', 'visit:entry_page', 'visit:exit_page', 'visit:source', 'visit:channel', 'visit:country', 'visit:browser', 'visit:os', 'visit:device', 'visit:utm_source', 'event:name', 'time:hour']) {
      const r = await query({ metrics: ['pageviews', 'visitors'], date_range: [today, today], dimensions: [dimension] });
      const sum = (i: number): number => r.results.reduce((n, row) => n + (row.metrics[i] ?? 0), 0);
      expect(sum(0), `pageviews by ${dimension}`).toBe(pageviews);
      // One visit per visitor: a visit dimension splits visitors without overlap.
      if (dimension.startsWith('visit:')) expect(sum(1), `visitors by ${dimension}`).toBe(visitors);
    }
  });

  it('time:hour buckets hold what was sent in them (each batch within its send window)', async () => {
    const m = models[SITE] as Model;
    const r = await query({ metrics: ['pageviews', 'events', 'visitors'], date_range: [today, today], dimensions: ['time:hour'] });
    const label = (t: number): string => `${iso(Math.floor(t / HOUR) * HOUR).slice(0, 13).replace('T', ' ')}:00:00`;
    const got = byKey(r);
    let events = 0;
    for (const [hour, metrics] of got) {
      const sure = m.events.filter((e) => label(e.at[0]) === hour && label(e.at[1]) === hour);
      const maybe = m.events.filter((e) => label(e.at[0]) <= hour && hour <= label(e.at[1]));
      const [pv, ev, vis] = metrics as number[];
      expect(ev).toBeGreaterThanOrEqual(sure.length);
      expect(ev).toBeLessThanOrEqual(maybe.length);
      expect(pv).toBeGreaterThanOrEqual(sure.filter((e) => e.name === 'pageview').length);
      expect(pv).toBeLessThanOrEqual(maybe.filter((e) => e.name === 'pageview').length);
      expect(vis).toBeGreaterThanOrEqual(new Set(sure.map((e) => e.session)).size);
      expect(vis).toBeLessThanOrEqual(new Set(maybe.map((e) => e.session)).size);
      events += ev ?? 0;
    }
    expect(events).toBe(m.events.length);
    expect(got.size).toBeLessThanOrEqual(2);
  });

  it('filters (is, is_not, contains, matches, and/or/not) on page, country and browser equal the truth', async () => {
    const m = models[SITE] as Model;
    // The two countries with the most visits, so filters on them select something.
    const visitsBy = new Map<string, number>();
    for (const s of m.sessions) visitsBy.set(s.country, (visitsBy.get(s.country) ?? 0) + 1);
    const [c1, c2] = [...visitsBy].sort((a, b) => b[1] - a[1]).map(([c]) => c) as [string, string];
    const filters: Filter[][] = [
      [['is', 'event:page', ['/pricing']]],
      [['is_not', 'event:page', ['/pricing', '/']]],
      [['contains', 'event:page', ['blog']]],
      [['contains', 'event:page', ['DOCS'], { case_sensitive: false }]],
      [['matches', 'event:page', ['^/(docs|blog)/']]],
      [['is', 'event:page', ['/café']]],
      [['is', 'visit:country', [c1, c2]]],
      [['is_not', 'visit:country', [c1]]],
      [['is', 'visit:browser', ['Chrome']]],
      [['contains', 'visit:browser', ['fire'], { case_sensitive: false }]],
      [['matches', 'visit:browser', ['^(Safari|Opera)$']]],
      [['is', 'visit:browser', ['chrome'], { case_sensitive: false }]],
      [['and', [['is', 'visit:country', [c1]], ['is', 'visit:browser', ['Chrome', 'Firefox']]]]],
      [['or', [['is', 'event:page', ['/signup']], ['is', 'visit:browser', ['Safari']]]]],
      [['not', ['is', 'visit:browser', ['Chrome']]]],
      [['not', ['or', [['contains', 'event:page', ['/docs']], ['is', 'visit:country', [c2]]]]]],
      [['and', [['matches', 'event:page', ['^/p']], ['not', ['is', 'visit:device', ['mobile']]]]]],
      [['is', 'visit:browser', ['Chrome']], ['is_not', 'visit:country', [c1]]],
      [['is', 'event:page', ['/pricing']], ['contains', 'visit:browser', ['Fire']]],
    ];
    const metrics = ['visitors', 'visits', 'pageviews', 'events', 'bounce_rate', 'visit_duration'];
    let nonEmpty = 0;
    for (const f of filters) {
      for (const dimension of [undefined, 'visit:country', 'event:page']) {
        for (const [range, phase] of [
          [[today, today], undefined],
          [phaseRange(2), 2],
        ] as const) {
          const r = await query({ metrics, date_range: range, filters: f, ...(dimension === undefined ? {} : { dimensions: [dimension] }) });
          const truth = truthOf(m, { metrics, filters: f, ...(dimension === undefined ? {} : { dimension }), ...(phase === undefined ? {} : { phase }) });
          expectTruth(byKey(r), truth, `${JSON.stringify(f)} by ${dimension ?? '-'} ${phase ?? 'day'}`);
          if (dimension === undefined && phase === undefined && (truth.get('')?.[0] ?? 0) !== 0) nonEmpty++;
        }
      }
    }
    // Every filter above selects some visitors: none of these checks compares two empty answers.
    expect(nonEmpty).toBe(filters.length);
  });

  it('goal and property filters: conversion rate and revenue', async () => {
    const m = models[SITE] as Model;
    const cases: Array<[Filter[], string | undefined, string[]]> = [
      [[['is', 'event:goal', ['Signup']]], undefined, ['visitors', 'events', 'conversion_rate']],
      [[['is', 'event:goal', ['Purchase']]], 'visit:source', ['visitors', 'conversion_rate', 'total_revenue', 'average_revenue']],
      [[['is', 'event:goal', ['Visit /pricing']]], 'visit:browser', ['visitors', 'events', 'conversion_rate']],
      [[['is', 'event:props:plan', ['pro', 'team']]], undefined, ['visitors', 'events']],
      [[['is', 'event:goal', ['Signup']], ['is', 'event:props:plan', ['pro']]], 'visit:country', ['visitors', 'conversion_rate']],
      [[['contains', 'event:props:file', ["'"]]], 'event:props:file', ['visitors', 'events']],
    ];
    for (const [filters, dimension, metrics] of cases) {
      const r = await query({ metrics, date_range: [today, today], filters, ...(dimension === undefined ? {} : { dimensions: [dimension] }) });
      const truth = truthOf(m, { metrics, filters, ...(dimension === undefined ? {} : { dimension }) });
      expect([...truth.values()].some((v) => (v[0] ?? 0) !== 0), JSON.stringify(filters)).toBe(true);
      expectTruth(byKey(r), truth, `${JSON.stringify(filters)} by ${dimension ?? '-'}`);
    }
  });

  it('comparisons: a period without data compares as zeros (null where undefined), phase 2 against phase 1', async () => {
    const m = models[SITE] as Model;
    const metrics = ['visitors', 'pageviews', 'bounce_rate', 'visit_duration', 'percentage'];
    // The day before holds nothing.
    const r = await query({ metrics, date_range: [today, today], dimensions: ['visit:country'], include: { comparisons: { mode: 'previous_period' } } });
    const yesterday = iso(Date.parse(`${today}T00:00:00Z`) - 86_400_000).slice(0, 10);
    expect(r.meta.comparison_date_range).toEqual([`${yesterday}T00:00:00Z`, `${yesterday}T23:59:59Z`]);
    expectTruth(byKey(r), truthOf(m, { metrics, dimension: 'visit:country' }), 'day by country');
    for (const row of r.results) {
      expect(row.comparison?.dimensions).toEqual(row.dimensions);
      expect(row.comparison?.metrics).toEqual([0, 0, 0, 0, null]);
      // Counts grew by 100%; bounce rate and percentage have no previous value to change from.
      expect(row.comparison?.change).toEqual([100, 100, null, row.metrics[3] === 0 ? 0 : 100, null]);
    }

    // Phase 2's previous period is phase 1.
    const counts = ['visitors', 'visits', 'pageviews', 'events'];
    for (const dimension of [undefined, 'visit:country', 'event:page']) {
      const c = await query({
        metrics: counts,
        date_range: phaseRange(2),
        ...(dimension === undefined ? {} : { dimensions: [dimension] }),
        include: { comparisons: { mode: 'previous_period' } },
      });
      expect(c.meta.comparison_date_range?.map((t) => Date.parse(t))).toEqual([Math.floor((tMid - span) / 1000) * 1000, Math.floor((tMid - 1) / 1000) * 1000]);
      const now = truthOf(m, { metrics: counts, phase: 2, ...(dimension === undefined ? {} : { dimension }) });
      const before = truthOf(m, { metrics: counts, phase: 1, ...(dimension === undefined ? {} : { dimension }) });
      expectTruth(byKey(c), now, `phase 2 by ${dimension ?? '-'}`);
      for (const row of c.results) {
        const key = row.dimensions[0] ?? '';
        const old = (before.get(key) ?? [0, 0, 0, 0]) as number[];
        expect(row.comparison?.metrics, key).toEqual(old);
        const pct = (o: number, n: number): number => (o === 0 ? (n > 0 ? 100 : 0) : Math.round(((n - o) / o) * 100));
        expect(row.comparison?.change, key).toEqual((row.metrics as number[]).map((n, i) => pct(old[i] ?? 0, n)));
      }
    }

    // Compared with itself, nothing changed.
    const self = await query({ metrics: ['visitors', 'bounce_rate'], date_range: [today, today], include: { comparisons: { mode: 'custom', date_range: [today, today] } } });
    expect(self.results[0]?.comparison?.metrics).toEqual(self.results[0]?.metrics);
    expect(self.results[0]?.comparison?.change).toEqual([0, 0]);
  });

  it('pages through a breakdown consistently and counts its rows', async () => {
    const m = models[SITE] as Model;
    const body = { metrics: ['visitors', 'pageviews'], date_range: [today, today], dimensions: ['event:page'], order_by: [['visitors', 'desc']] };
    const truth = truthOf(m, { metrics: ['visitors', 'pageviews'], dimension: 'event:page' });
    const all = await query({ ...body, include: { total_rows: true } });
    expect(all.meta.total_rows).toBe(truth.size);
    expect(all.results.length).toBe(truth.size);
    const visitors = all.results.map((r) => r.metrics[0] ?? 0);
    expect(visitors).toEqual([...visitors].sort((a, b) => b - a));
    const pages: Row[] = [];
    for (let offset = 0; offset < truth.size; offset += 2) {
      const page = await query({ ...body, pagination: { limit: 2, offset }, include: { total_rows: true } });
      expect(page.meta.total_rows).toBe(truth.size);
      expect(page.query['pagination']).toEqual({ limit: 2, offset });
      pages.push(...page.results);
    }
    expect(pages).toEqual(all.results);
    const past = await query({ ...body, pagination: { limit: 5, offset: truth.size + 3 }, include: { total_rows: true } });
    expect(past.results).toEqual([]);
    expect(past.meta.total_rows).toBe(truth.size);
  });
});
