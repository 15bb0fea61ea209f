import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { runQuery, type QueryResponse, type QuerySite } from '../api/query/query.ts';
import { closeSaltDays } from '../processor/salt-days.ts';
import { openTestStore, removeTempDirs, writeThroughProcessor } from '../processor/testing/harness.ts';
import type { EnrichedEvent } from '../schemas/enriched-event.ts';
import { generateTraffic } from '../schemas/testing/oracle.ts';
import { withQuery, type Store } from '../store/store.ts';

/**
 * Answers without a breakdown value (totals, time series, the totals of conversion rates and
 * percentages), goal breakdowns and breakdowns by a dimension with few values take the salt
 * days' segment counts from memory, read once per generation: they
 * equal raw rows in every zone (visits carried over midnight included), the kept counts are not
 * read again, and a late event for a closed day is never answered from the counts of the
 * generation it made stale.
 */

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const today = Math.floor(Date.now() / DAY);
// Closed salt days (their lives ended before yesterday).
const days = [today - 7, today - 6, today - 5, today - 4];
const dayIso = (d: number): string => new Date(d * DAY).toISOString().slice(0, 10);

const sites: QuerySite[] = [
  { domain: 'utc.test', timezone: 'UTC', goals: ['Signup', 'Visit /pricing'] },
  { domain: 'lis.test', timezone: 'Europe/Lisbon', goals: ['Signup', 'Visit /pricing'] },
  { domain: 'ny.test', timezone: 'America/New_York', goals: ['Signup', 'Visit /pricing'] },
  { domain: 'in.test', timezone: 'Asia/Kolkata', goals: ['Signup', 'Visit /pricing'] },
];
const pages = ['/', '/pricing', '/docs', '/blog/a'];

/** Visits of salt day `d` from `hour` (UTC): at 23:00 they run past midnight under d's salt. */
function visits(site: string, d: number, hour: number, seed: number, visitors: number): EnrichedEvent[] {
  return generateTraffic({ sites: [site], visitorsPerSite: visitors, eventsPerVisitor: 6, start: d * DAY + hour * HOUR, seed }).map((e) => {
    const v = Number(BigInt(e.visitorId) % 100_000n);
    const device = (['desktop', 'mobile', 'tablet'] as const)[v % 3] ?? 'desktop';
    return { ...e, clientId: false, saltDay: d, device, pathname: pages[(v + Math.floor(e.ts / HOUR)) % pages.length] ?? '/' };
  });
}

const traffic = sites
  .flatMap((s, i) => days.flatMap((d) => [...visits(s.domain, d, 23, 100 * i + d, 5), ...visits(s.domain, d, 10, 100 * i + d + 50, 3)]))
  .sort((a, b) => a.ts - b.ts);

const options = { flushRecords: 200, flushIntervalMs: 30, snapshotIntervalMs: 100, hubBatchSize: 100, lagRefreshMs: 50 };
let store: Store;

beforeAll(async () => {
  store = await openTestStore();
  await store.insert(
    'sites',
    sites.map((s) => ({ domain: s.domain, account_id: 'acct', timezone: s.timezone })),
  );
  await writeThroughProcessor(store, traffic, { partitions: 2, chunk: 400, options });
  await closeSaltDays(store);
}, 120_000);

afterAll(async () => {
  await store.close();
  await removeTempDirs();
});

const bodies: Record<string, unknown>[] = [
  { metrics: ['visitors', 'visits', 'pageviews', 'bounce_rate', 'visit_duration'] },
  { metrics: ['visitors', 'pageviews'], dimensions: ['time:day'] },
  { metrics: ['visitors'], dimensions: ['time:week'] },
  { metrics: ['visitors', 'visits'], dimensions: ['time:month'] },
  { metrics: ['visitors', 'events', 'conversion_rate'], dimensions: ['event:goal'] },
  { metrics: ['visitors', 'percentage'], dimensions: ['visit:device'] },
  // A filter on the breakdown's own dimension stays on the rollups: the kept values are filtered.
  { metrics: ['visitors'], dimensions: ['visit:device'], filters: [['is', 'visit:device', ['desktop', 'tablet']]] },
];
// Whole local days: the range's ends on each zone's midnights, cutting salt days' lives.
const ranges = [
  [dayIso(today - 7), dayIso(today - 3)],
  [dayIso(today - 5), dayIso(today - 5)],
  [dayIso(today - 6), dayIso(today - 4)],
];

/**
 * Statements reading `salt_day_segments` made by `fn`, through `base`'s own query method, but
 * for a breakdown whose values are too many to keep (it binds its dimension: `dim = {p…}`).
 */
async function totalsReads<T>(base: Store, fn: () => Promise<T>): Promise<{ n: number; value: T }> {
  const spy = vi.spyOn(base, 'query');
  try {
    const value = await fn();
    const n = spy.mock.calls.filter(([sql]) => sql.includes('FROM salt_day_segments') && !sql.includes('dim = {p')).length;
    return { n, value };
  } finally {
    spy.mockRestore();
  }
}

const ask = (s: Store, site: QuerySite, body: Record<string, unknown>, range: string[], source: 'auto' | 'raw' = 'auto'): Promise<QueryResponse> =>
  runQuery(s, site, { site_id: site.domain, date_range: range, ...body }, new Date(), { source });

describe('closed salt days’ counts kept in memory', () => {
  it('answer totals, time series, goals and the totals of ratios exactly as raw rows do, in every zone, reading the counts once', async () => {
    let fromRollups = 0;
    for (const site of sites) {
      for (const range of ranges) {
        for (const body of bodies) {
          const raw = await ask(store, site, body, range, 'raw');
          const first = await ask(store, site, body, range);
          expect(first.results, `${site.timezone} ${JSON.stringify(range)} ${JSON.stringify(body)}`).toEqual(raw.results);
          if (first.meta.source === 'raw') continue;
          fromRollups++;
          // Read once: a second answer (any range over the same days) takes them from memory.
          const again = await totalsReads(store, () => ask(store, site, body, range));
          expect(again.n).toBe(0);
          expect(again.value.results).toEqual(raw.results);
          expect(again.value.meta.tables).toContain('salt_day_segments');
        }
      }
    }
    // Every whole-hour zone answered from the rollups (the half-hour zone reads raw).
    expect(fromRollups).toBe(3 * ranges.length * bodies.length);
  }, 120_000);

  it('a store seen for the first time reads them, in one statement, and answers the same; a server keeps none', async () => {
    const site = sites[1] as QuerySite;
    const body = bodies[1] as Record<string, unknown>;
    const range = ranges[0] as string[];
    const other = withQuery(store, (sql, params, opts) => store.query(sql, params, opts));
    const fresh = await totalsReads(store, () => ask(other, site, body, range));
    expect(fresh.n).toBe(1);
    expect(fresh.value.results).toEqual((await ask(store, site, body, range)).results);
    // A store without versions (a server) keeps nothing: it reads the table each time.
    const { tableVersion: _versions, ...server } = withQuery(store, (sql, params, opts) => store.query(sql, params, opts));
    for (let i = 0; i < 2; i++) expect((await totalsReads(store, () => ask(server, site, body, range))).n).toBe(1);
  });

  it('a late event for a closed salt day: answered as without kept counts, and as raw rows once the day is computed again', async () => {
    const site = sites[1] as QuerySite;
    const range = [dayIso(today - 6), dayIso(today - 4)];
    const gen = async (): Promise<string> =>
      (
        await store.query<{ g: string }>('SELECT toString(max(gen)) AS g FROM salt_day_closes WHERE site = {s:String} AND salt_day = {d:Date}', {
          s: site.domain,
          d: dayIso(today - 5),
        })
      )[0]?.g ?? '';
    // Kept before the late rows.
    for (const body of bodies) await ask(store, site, body, range);
    const before = await gen();
    // New visitors of a closed salt day, written late (a processor catching up on its hub), at
    // 23:00 UTC: past midnight in Lisbon.
    await writeThroughProcessor(store, visits(site.domain, today - 5, 23, 4242, 4), { partitions: 2, chunk: 400, options });
    // Whatever the processor recomputed by now, the kept counts change nothing: the same answers
    // as a store that kept none.
    let reads = 0;
    for (const body of bodies) {
      const unkept = withQuery(store, (sql, params, opts) => store.query(sql, params, opts));
      const expected = (await ask(unkept, site, body, range)).results;
      const kept = await totalsReads(store, () => ask(store, site, body, range));
      reads += kept.n;
      expect(kept.value.results, JSON.stringify(body)).toEqual(expected);
    }
    // Computed again (now, if the processor had not yet): a newer generation, read once per kind
    // of row in all, and the answers are the raw rows'.
    await closeSaltDays(store);
    expect(BigInt(await gen())).toBeGreaterThan(BigInt(before));
    for (const body of bodies) {
      const raw = await ask(store, site, body, range, 'raw');
      const auto = await totalsReads(store, () => ask(store, site, body, range));
      reads += auto.n;
      expect(auto.value.results, JSON.stringify(body)).toEqual(raw.results);
    }
    // Once for the totals, once for the goals, once for the devices (both device bodies).
    expect(reads).toBe(3);
  }, 120_000);

  it('merged in memory, they order, page and count rows exactly as the statement does, whatever the order asked', async () => {
    // Answers whose visitors come from kept counts are merged, ordered and paged in memory; the
    // raw answer is ordered and paged by ClickHouse. Ties on a metric are broken by the dimension.
    const shapes: { metrics: string[]; dimensions: string[] }[] = [
      { metrics: ['visitors', 'pageviews'], dimensions: ['time:day'] },
      { metrics: ['visitors', 'visits', 'bounce_rate', 'views_per_visit'], dimensions: ['time:week'] },
      { metrics: ['visitors', 'events', 'conversion_rate'], dimensions: ['event:goal'] },
      { metrics: ['visitors', 'percentage'], dimensions: ['visit:device'] },
      { metrics: ['visitors', 'visit_duration', 'bounce_rate'], dimensions: ['visit:device'] },
      { metrics: ['visitors', 'pageviews'], dimensions: ['visit:country'] },
    ];
    let merged = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...sites.slice(0, 3)),
        fc.constantFrom(...ranges),
        fc.constantFrom(...shapes),
        fc.array(fc.tuple(fc.nat(), fc.constantFrom('asc', 'desc')), { maxLength: 3 }),
        fc.integer({ min: 1, max: 4 }),
        fc.integer({ min: 0, max: 5 }),
        async (site, range, shape, picks, limit, offset) => {
          const keys = [...shape.metrics, ...shape.dimensions];
          const order = [...new Map(picks.map(([i, dir]) => [keys[i % keys.length] ?? 'visitors', dir])).entries()];
          const body = { ...shape, ...(order.length > 0 ? { order_by: order } : {}), pagination: { limit, offset }, include: { total_rows: true } };
          const raw = await ask(store, site, body, range, 'raw');
          const auto = await ask(store, site, body, range);
          if (!auto.meta.tables.some((t) => t === 'events' || t === 'sessions' || t.startsWith('rollup_') || t.startsWith('sessions_'))) merged++;
          expect(auto.results, `${site.timezone} ${JSON.stringify(range)} ${JSON.stringify(body)}`).toEqual(raw.results);
          expect(auto.meta.total_rows).toBe(raw.meta.total_rows);
        },
      ),
      { numRuns: 60 },
    );
    // Some answers read no table at all (visitors alone, from kept counts): they were merged in memory.
    expect(merged).toBeGreaterThan(0);
  }, 120_000);

  it('merged in memory: visitors alone read no statement once kept, a time series reads the rollup alone', async () => {
    const site = sites[0] as QuerySite;
    const range = ranges[0] as string[];
    const devices = { metrics: ['visitors', 'percentage'], dimensions: ['visit:device'] };
    const series = { metrics: ['visitors', 'pageviews'], dimensions: ['time:day'] };
    // Warm: the lookups and counts are kept.
    for (const body of [devices, series]) await ask(store, site, body, range);
    const spy = vi.spyOn(store, 'query');
    try {
      const d = await ask(store, site, devices, range);
      expect(spy.mock.calls).toHaveLength(0);
      expect(d.results).toEqual((await ask(store, site, devices, range, 'raw')).results);
      spy.mockClear();
      const t = await ask(store, site, series, range);
      const statements = spy.mock.calls.map(([sql]) => sql);
      expect(statements).toHaveLength(1);
      expect(statements[0]).toContain('FROM rollup_daily');
      expect(statements[0]).not.toContain('UNION');
      expect(t.results).toEqual((await ask(store, site, series, range, 'raw')).results);
    } finally {
      spy.mockRestore();
    }
  });
});
