import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closeSaltDays } from '../processor/salt-days.ts';
import { openTestStore, removeTempDirs, writeThroughProcessor } from '../processor/testing/harness.ts';
import type { EnrichedEvent } from '../schemas/enriched-event.ts';
import type { Store } from '../store/store.ts';
import { computeTruth, generateTraffic, type TrueSession } from '../schemas/testing/oracle.ts';
import { ApiQueryError } from '../api/query/errors.ts';
import { runQuery, type QueryResponse, type QuerySite, type RunOptions } from '../api/query/query.ts';
import { metricNames, type Metric } from '../api/query/schema.ts';

/**
 * The query engine against real components: traffic goes through the local hub and the real
 * processor into embedded chDB (so sessions and rollups are what production writes), and every
 * answer is checked against truth computed here, in plain JavaScript, from the generated events
 * and the oracle's sessions.
 */

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
// Recent (inside the raw-event TTL) and on a UTC midnight, so day 0 starts a UTC day.
const base = Math.floor(Date.now() / DAY) * DAY - 14 * DAY;
const date = (i: number): string => new Date(base + i * DAY).toISOString().slice(0, 10);
const now = new Date(base + 5 * DAY + 12 * HOUR);

const utcSite: QuerySite = { domain: 'q.test', timezone: 'UTC' };
const nySite: QuerySite = { domain: 'ny.test', timezone: 'America/New_York' };
const indiaSite: QuerySite = { domain: 'in.test', timezone: 'Asia/Kolkata' };

// ---------------------------------------------------------------------------------------------
// Traffic: the oracle's generator, with per-visitor devices, browsers, UTM tags, props,
// revenue and experiment exposures, a second hostname, and visitors returning on later days.

const devices = ['desktop', 'mobile', 'tablet'] as const;
const browsers = ['Firefox', 'Chrome', 'Safari', 'Edge'];
const systems = ['Linux', 'Windows', 'macOS', 'iOS'];

function dress(e: EnrichedEvent): EnrichedEvent {
  const v = Number(BigInt(e.visitorId) % 100_000n);
  const tagged = v % 5 === 0;
  return {
    ...e,
    device: devices[v % 3] ?? 'desktop',
    browser: v % 11 === 0 ? '' : (browsers[v % 4] ?? ''),
    browserVersion: String(100 + (v % 3)),
    os: systems[Math.floor(v / 2) % 4] ?? '',
    osVersion: String(v % 2),
    hostname: v % 4 === 1 ? `www.${e.site}` : e.site,
    utmSource: tagged ? 'newsletter' : '',
    utmMedium: tagged ? 'email' : '',
    utmCampaign: tagged ? 'spring' : '',
    props: e.name === 'Signup' ? { plan: v % 2 === 1 ? 'pro' : 'free', "it's": 'quoted' } : {},
    exp: e.name === 'pageview' && v % 2 === 0 ? { exp1: v % 4 === 0 ? 'A' : 'B' } : {},
  };
}

function trafficFor(site: string, days: number[], visitors: number, eventsPerVisitor: number, seed: number, startHour = 10): EnrichedEvent[] {
  const out: EnrichedEvent[] = [];
  const firstDay = days[0] ?? 0;
  for (const d of days) {
    const generated = generateTraffic({ sites: [site], visitorsPerSite: visitors, eventsPerVisitor, start: base + d * DAY + startHour * HOUR, seed: seed + d });
    for (const e of generated) {
      const v = Number(BigInt(e.visitorId) % 100_000n);
      // A few visitors come back the next day under the first day's id, as a visit carried over
      // midnight keeps it (an id lives on its salt's day and the next, never later): unique
      // visitors over several days are fewer than the sum of the days'.
      const back = d === firstDay + 1 && v < 6;
      const visitorId = back ? String(1_000_000_000_000 + (seed + firstDay) * 100_000 + v) : e.visitorId;
      out.push(dress({ ...e, visitorId, ...(back ? { saltDay: Math.floor((base + firstDay * DAY) / DAY) } : {}) }));
    }
  }
  return out;
}

const traffic = [
  ...trafficFor(utcSite.domain, [0, 1, 2, 3], 30, 25, 10),
  ...trafficFor(nySite.domain, [0, 1], 15, 20, 30),
  // From 16:00 UTC: past 18:30 UTC it is the next day in Asia/Kolkata.
  ...trafficFor(indiaSite.domain, [0, 1], 15, 20, 50, 16),
]
  .map((e, i) => ({ e, i }))
  .sort((a, b) => a.e.ts - b.e.ts || a.i - b.i)
  .map((x) => x.e);
const truth = computeTruth(traffic);

// ---------------------------------------------------------------------------------------------
// The model the truth is computed from: stored events, each with the oracle's session, and the
// session's first event (its attributes are the session's).

interface Session extends TrueSession {
  first: EnrichedEvent;
}
interface ModelEvent {
  e: EnrichedEvent;
  s: Session;
}
interface Model {
  events: ModelEvent[];
  sessions: Session[];
}

function buildModel(site: string): Model {
  const byVisitor = new Map<string, TrueSession[]>();
  const sessions = new Map<TrueSession, Session>();
  const events: ModelEvent[] = [];
  for (const s of truth.sessions.filter((x) => x.site === site)) {
    const list = byVisitor.get(s.visitorId) ?? [];
    list.push(s);
    byVisitor.set(s.visitorId, list);
  }
  for (const e of truth.stored) {
    if (e.site !== site) continue;
    const found = (byVisitor.get(e.visitorId) ?? []).find((x) => x.start <= e.ts && e.ts <= x.last);
    if (found === undefined) throw new Error('event outside every session');
    // Events are in hub order: the first one seen of a session is the one its attributes come from.
    let s = sessions.get(found);
    if (s === undefined) {
      s = { ...found, first: e };
      sessions.set(found, s);
    }
    events.push({ e, s });
  }
  return { events, sessions: [...sessions.values()] };
}

const models = new Map<string, Model>();
function model(site: QuerySite): Model {
  let m = models.get(site.domain);
  if (m === undefined) {
    m = buildModel(site.domain);
    models.set(site.domain, m);
  }
  return m;
}

const dayFormats = new Map<string, Intl.DateTimeFormat>();
/** Local date by Intl's en-CA format (YYYY-MM-DD), independent of the engine's time code. */
function localDay(tz: string, ts: number): string {
  let f = dayFormats.get(tz);
  if (f === undefined) {
    f = new Intl.DateTimeFormat('en-CA', { timeZone: tz, year: 'numeric', month: '2-digit', day: '2-digit' });
    dayFormats.set(tz, f);
  }
  return f.format(new Date(ts));
}

const orLabel = (v: string, label: string): string => (v === '' ? label : v);

function eventValues(dim: string | undefined, x: ModelEvent, tz: string): string[] {
  const { e, s } = x;
  switch (dim) {
    case undefined:
      return [''];
    case 'event:page':
      return [e.pathname];
    case 'event:goal':
      return e.name === 'pageview' ? [] : [e.name];
    case 'visit:source':
      return [orLabel(s.first.source, 'Direct / None')];
    case 'visit:channel':
      return [s.first.channel];
    case 'visit:entry_page':
      return [s.entryPage];
    case 'visit:exit_page':
      return [s.exitPage];
    case 'visit:referrer':
      return [orLabel(s.first.referrer, 'Direct / None')];
    case 'visit:utm_source':
      return [orLabel(s.first.utmSource, '(not set)')];
    case 'event:hostname':
      return [e.hostname];
    case 'event:name':
      return [e.name];
    case 'visit:browser_version':
      return [orLabel(e.browserVersion, '(not set)')];
    case 'visit:os_version':
      return [orLabel(e.osVersion, '(not set)')];
    case 'visit:country':
      return [e.country];
    case 'visit:device':
      return [orLabel(e.device, '(not set)')];
    case 'visit:browser':
      return [orLabel(e.browser, '(not set)')];
    case 'visit:os':
      return [orLabel(e.os, '(not set)')];
    case 'time:day':
      return [localDay(tz, e.ts)];
    case 'event:props:plan':
      return [e.props['plan'] ?? '(none)'];
    case 'experiment:variation':
      return Object.entries(e.exp).map(([k, v]) => `${k}:${v}`);
    default:
      throw new Error(`no truth for ${dim}`);
  }
}

function sessionValue(dim: string | undefined, s: Session, tz: string): string {
  switch (dim) {
    case undefined:
      return '';
    case 'event:page':
    case 'visit:entry_page':
      return s.entryPage;
    case 'visit:exit_page':
      return s.exitPage;
    case 'visit:referrer':
      return orLabel(s.first.referrer, 'Direct / None');
    case 'visit:utm_source':
      return orLabel(s.first.utmSource, '(not set)');
    case 'visit:browser_version':
      return orLabel(s.first.browserVersion, '(not set)');
    case 'visit:os_version':
      return orLabel(s.first.osVersion, '(not set)');
    case 'visit:source':
      return orLabel(s.first.source, 'Direct / None');
    case 'visit:channel':
      return s.first.channel;
    case 'visit:country':
      return s.first.country;
    case 'visit:device':
      return orLabel(s.first.device, '(not set)');
    case 'visit:browser':
      return orLabel(s.first.browser, '(not set)');
    case 'visit:os':
      return orLabel(s.first.os, '(not set)');
    case 'time:day':
      return localDay(tz, s.start);
    default:
      throw new Error(`no session truth for ${dim}`);
  }
}

const round = (x: number, digits: number): number => Math.round(x * 10 ** digits) / 10 ** digits;
const sessionMetrics = new Set<Metric>(['visits', 'bounce_rate', 'visit_duration', 'views_per_visit']);
const sessionDims = new Set(['visit:source', 'visit:channel', 'visit:entry_page', 'visit:exit_page', 'visit:referrer', 'visit:utm_source']);
/** Event dimensions other than the page: session metrics are refused, visits are counted from events. */
const eventDims = new Set(['event:goal', 'event:name', 'event:hostname', 'event:props:plan', 'experiment:variation']);

function group<T>(items: readonly T[], keys: (x: T) => string[]): Map<string, T[]> {
  const out = new Map<string, T[]>();
  for (const x of items) {
    for (const k of keys(x)) {
      const list = out.get(k) ?? [];
      list.push(x);
      out.set(k, list);
    }
  }
  return out;
}

const uniqueVisitors = (xs: readonly { e: EnrichedEvent }[]): number => new Set(xs.map((x) => x.e.visitorId)).size;
const uniqueSessionVisitors = (xs: readonly Session[]): number => new Set(xs.map((s) => s.visitorId)).size;

/**
 * The truth of one metric broken down by at most one dimension, over `[start, end)`, optionally
 * with a goal filter: Farol's documented semantics, computed the plain way.
 */
function truthOf(site: QuerySite, start: number, end: number, dim: string | undefined, metric: Metric, goal?: string): Map<string, number | null> {
  const tz = site.timezone;
  const m = model(site);
  const events = m.events.filter((x) => x.e.ts >= start && x.e.ts < end);
  const sessions = m.sessions.filter((s) => s.start >= start && s.start < end);
  const pageviewsOnly = dim === 'event:page' && goal === undefined;
  const filtered = events.filter((x) => (goal === undefined || x.e.name === goal) && (!pageviewsOnly || x.e.name === 'pageview'));
  const eventGroups = group(filtered, (x) => eventValues(dim, x, tz));
  let sessionGroupsMemo: Map<string, Session[]> | undefined;
  const sessionGroups = (): Map<string, Session[]> => (sessionGroupsMemo ??= group(sessions, (s) => [sessionValue(dim, s, tz)]));
  const visitorSessions = dim !== undefined && sessionDims.has(dim) && goal === undefined;
  const out = new Map<string, number | null>();
  const each = <T>(groups: Map<string, T[]>, f: (xs: T[], key: string) => number | null): void => {
    for (const [k, xs] of groups) out.set(k, f(xs, k));
  };
  const totalVisitors = uniqueVisitors(events.filter((x) => goal === undefined || x.e.name === goal));
  switch (metric) {
    case 'visitors':
      if (visitorSessions) each(sessionGroups(), uniqueSessionVisitors);
      else each(eventGroups, uniqueVisitors);
      break;
    case 'percentage':
      if (visitorSessions) each(sessionGroups(), (xs) => round((uniqueSessionVisitors(xs) / uniqueSessionVisitors(sessions)) * 100, 1));
      else each(eventGroups, (xs) => round((uniqueVisitors(xs) / totalVisitors) * 100, 1));
      break;
    case 'visits':
      if (dim !== undefined && eventDims.has(dim)) each(eventGroups, (xs) => new Set(xs.map((x) => x.s)).size);
      else each(sessionGroups(), (xs) => xs.length);
      break;
    case 'pageviews':
      each(eventGroups, (xs) => xs.filter((x) => x.e.name === 'pageview').length);
      break;
    case 'events':
      each(eventGroups, (xs) => xs.length);
      break;
    case 'bounce_rate':
      each(sessionGroups(), (xs) => Math.round((xs.filter((s) => s.bounce === 1).length / xs.length) * 100));
      break;
    case 'visit_duration':
      each(sessionGroups(), (xs) => Math.round(xs.reduce((n, s) => n + s.duration, 0) / xs.length));
      break;
    case 'views_per_visit':
      each(sessionGroups(), (xs) => round(xs.reduce((n, s) => n + s.pageviews, 0) / xs.length, 2));
      break;
    case 'conversion_rate':
      each(eventGroups, (xs) => round((uniqueVisitors(xs) / uniqueVisitors(events)) * 100, 1));
      break;
    case 'group_conversion_rate': {
      // Denominator: the same group without the goal (pages count pageviews then).
      const all = dim === 'event:goal' ? undefined : group(events.filter((x) => dim !== 'event:page' || x.e.name === 'pageview'), (x) => eventValues(dim, x, tz));
      each(eventGroups, (xs, k) => round((uniqueVisitors(xs) / (all === undefined ? uniqueVisitors(events) : uniqueVisitors(all.get(k) ?? []))) * 100, 1));
      break;
    }
    case 'total_revenue':
      each(eventGroups, (xs) => round(xs.reduce((n, x) => n + (x.e.revenue?.amount ?? 0), 0), 2));
      break;
    case 'average_revenue':
      each(eventGroups, (xs) => {
        const paid = xs.filter((x) => x.e.revenue !== null);
        return paid.length === 0 ? null : round(paid.reduce((n, x) => n + (x.e.revenue?.amount ?? 0), 0) / paid.length, 2);
      });
      break;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------

let store: Store;

beforeAll(async () => {
  store = await openTestStore();
  // Small flushes, in time-ordered chunks: sessions span many inserts, so their −1/+1 pairs are
  // really exercised.
  await writeThroughProcessor(store, traffic, {
    partitions: 4,
    chunk: 120,
    options: { flushRecords: 300, flushIntervalMs: 30, snapshotIntervalMs: 100, hubBatchSize: 100, lagRefreshMs: 50 },
  });
  // Closed salt days get their local-date segments in each site's registered zone.
  await store.insert(
    'sites',
    [utcSite, nySite, indiaSite].map((s) => ({ domain: s.domain, account_id: 'acct', timezone: s.timezone })),
  );
  await closeSaltDays(store);
}, 120_000);

afterAll(async () => {
  await store.close();
  await removeTempDirs();
});

const run = (site: QuerySite, body: Record<string, unknown>, options?: RunOptions): Promise<QueryResponse> =>
  runQuery(store, site, { site_id: site.domain, ...body }, now, options);

/** Rows as `first dimension → first metric` (`''` without dimensions). */
function byFirstDimension(r: QueryResponse): Map<string, number | null> {
  return new Map(r.results.map((row) => [row.dimensions[0] ?? '', row.metrics[0] ?? null]));
}

async function rejection(p: Promise<unknown>): Promise<ApiQueryError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof ApiQueryError) return err;
    throw err;
  }
  throw new Error('expected the query to be rejected');
}

const allMetrics: Metric[] = [...metricNames];
const mainDimensions = [
  'event:page',
  'visit:source',
  'visit:channel',
  'visit:country',
  'visit:device',
  'visit:browser',
  'visit:os',
  'visit:entry_page',
  'event:goal',
  'time:day',
];
const fourDays = [date(0), date(3)];
const fourDaysStart = base;
const fourDaysEnd = base + 4 * DAY;

describe('traffic', () => {
  it('landed as the oracle says (the ground the other tests stand on)', async () => {
    const rows = await store.query<{ n: string }>('SELECT count() AS n FROM events WHERE site = {site:String}', { site: utcSite.domain });
    expect(Number(rows[0]?.n)).toBe(model(utcSite).events.length);
    expect(model(utcSite).events.length).toBeGreaterThan(2_500);
    // Sessions that begin with a custom event, whose entry page is set later, exist.
    expect(model(utcSite).sessions.some((s) => s.first.name !== 'pageview' && s.entryPage !== '')).toBe(true);
    // Many sessions were updated after their first insert (merges may since have collapsed the
    // −1/+1 pairs, but the later versions remain): the sign arithmetic is exercised.
    const updated = await store.query<{ n: string }>('SELECT countIf(version > 1) AS n FROM sessions WHERE site = {site:String}', {
      site: utcSite.domain,
    });
    expect(Number(updated[0]?.n)).toBeGreaterThan(50);
  });
});

/** Every metric by `dim`, against the truth, from the planner's choice and from raw rows. */
async function checkEveryMetric(dim: string): Promise<void> {
  for (const metric of allMetrics) {
    const body: Record<string, unknown> = { metrics: [metric], date_range: fourDays, dimensions: [dim] };
    if (sessionMetrics.has(metric) && metric !== 'visits' && eventDims.has(dim)) {
      const err = await rejection(run(utcSite, body));
      expect(err.field).toBe('metrics[0]');
      continue;
    }
    const needsGoal = (metric === 'conversion_rate' || metric === 'group_conversion_rate') && dim !== 'event:goal';
    if (needsGoal) body['filters'] = [['is', 'event:goal', ['Signup']]];
    const auto = await run(utcSite, body);
    const raw = await run(utcSite, body, { source: 'raw' });
    const expected = truthOf(utcSite, fourDaysStart, fourDaysEnd, dim, metric, needsGoal ? 'Signup' : undefined);
    expect(byFirstDimension(auto), `${metric} by ${dim}`).toEqual(expected);
    expect(raw.meta.source).toBe('raw');
    expect(raw.results, `${metric} by ${dim}: raw vs ${auto.meta.source}`).toEqual(auto.results);
  }
}

describe('every metric by every main dimension equals the truth, from rollups and from raw rows alike', () => {
  it.each(mainDimensions)('%s', checkEveryMetric);

  it.each(['visit:exit_page', 'visit:referrer', 'visit:utm_source', 'visit:browser_version', 'visit:os_version', 'event:hostname', 'event:name'])(
    'and by %s',
    checkEveryMetric,
  );

  it('totals (no dimensions) equal the truth', async () => {
    for (const metric of allMetrics.filter((m) => m !== 'percentage')) {
      const body: Record<string, unknown> = { metrics: [metric], date_range: fourDays };
      const goal = metric === 'conversion_rate' || metric === 'group_conversion_rate';
      if (goal) body['filters'] = [['is', 'event:goal', ['Signup']]];
      const auto = await run(utcSite, body);
      const raw = await run(utcSite, body, { source: 'raw' });
      expect(byFirstDimension(auto), metric).toEqual(truthOf(utcSite, fourDaysStart, fourDaysEnd, undefined, metric, goal ? 'Signup' : undefined));
      expect(raw.results).toEqual(auto.results);
    }
  });

  it('answers all metrics of a dashboard row in one query, in the order asked', async () => {
    const metrics: Metric[] = ['visitors', 'visits', 'pageviews', 'views_per_visit', 'bounce_rate', 'visit_duration', 'events'];
    const r = await run(utcSite, { metrics, date_range: fourDays, dimensions: ['visit:country'] });
    expect(r.meta.source).toBe('rollup_daily');
    expect(r.meta.tables).toEqual(['rollup_daily', 'salt_day_segments', 'sessions_daily']);
    for (const row of r.results) {
      const country = row.dimensions[0] ?? '';
      expect(row.metrics).toEqual(metrics.map((m) => truthOf(utcSite, fourDaysStart, fourDaysEnd, 'visit:country', m).get(country) ?? 0));
    }
    expect(r.results.map((x) => x.metrics[0])).toEqual([...r.results.map((x) => x.metrics[0])].sort((a, b) => (b ?? 0) - (a ?? 0)));
  });
});

describe('breakdowns add up to the totals', () => {
  const total = async (metric: Metric): Promise<number> => (await run(utcSite, { metrics: [metric], date_range: fourDays })).results[0]?.metrics[0] ?? NaN;
  const sum = async (metric: Metric, dim: string): Promise<number> =>
    (await run(utcSite, { metrics: [metric], date_range: fourDays, dimensions: [dim] })).results.reduce((n, r) => n + (r.metrics[0] ?? 0), 0);

  it('pageviews by every dimension but goals', async () => {
    const all = await total('pageviews');
    expect(all).toBe(model(utcSite).events.filter((x) => x.e.name === 'pageview').length);
    for (const dim of mainDimensions.filter((d) => d !== 'event:goal')) expect(await sum('pageviews', dim), dim).toBe(all);
  });

  it('visits and events by the visit dimensions and days', async () => {
    const visits = await total('visits');
    const events = await total('events');
    for (const dim of mainDimensions.filter((d) => d !== 'event:goal')) expect(await sum('visits', dim), dim).toBe(visits);
    for (const dim of mainDimensions.filter((d) => d !== 'event:goal' && d !== 'event:page')) expect(await sum('events', dim), dim).toBe(events);
    expect(await sum('events', 'event:goal')).toBe(events - (await total('pageviews')));
  });
});

describe('planner', () => {
  const source = async (site: QuerySite, body: Record<string, unknown>): Promise<[string, string[]]> => {
    const r = await run(site, body);
    return [r.meta.source, r.meta.tables];
  };

  it('answers single-dimension breakdowns and time series from the rollups', async () => {
    // Unique visitors of closed salt days come from salt_day_segments (ranges of whole days), sums from the rollups.
    expect(await source(utcSite, { metrics: ['visitors'], date_range: fourDays, dimensions: ['visit:country'] })).toEqual(['rollup_daily', ['salt_day_segments']]);
    expect(await source(utcSite, { metrics: ['visitors', 'bounce_rate'], date_range: fourDays, dimensions: ['visit:source'] })).toEqual([
      'rollup_daily',
      ['salt_day_segments', 'sessions_daily'],
    ]);
    expect(
      await source(utcSite, { metrics: ['visitors', 'pageviews', 'visits', 'visit_duration'], date_range: fourDays, dimensions: ['time:day'] }),
    ).toEqual(['rollup_daily', ['rollup_daily', 'salt_day_segments', 'sessions_daily']]);
    // Hourly buckets read the hour bitmaps of salt_day_visitors.
    expect(await source(utcSite, { metrics: ['visitors'], date_range: [date(1), date(1)], dimensions: ['time:hour'] })).toEqual([
      'rollup_hourly',
      ['salt_day_visitors'],
    ]);
    // Entry and exit pages too: a closed salt day's sessions are counted in their final state.
    for (const dim of ['visit:entry_page', 'visit:exit_page']) {
      expect(await source(utcSite, { metrics: ['visitors', 'visits'], date_range: fourDays, dimensions: [dim] })).toEqual([
        'rollup_daily',
        ['salt_day_segments', 'sessions_daily'],
      ]);
    }
    // A filter on the breakdown dimension itself stays on the rollup.
    expect(
      await source(utcSite, { metrics: ['pageviews'], date_range: fourDays, dimensions: ['event:page'], filters: [['is', 'event:page', ['/docs', '/pricing']]] }),
    ).toEqual(['rollup_daily', ['rollup_daily']]);
    // Whole-hour zones use hourly buckets; half-hour zones go to the raw tables.
    expect(await source(nySite, { metrics: ['visitors'], date_range: [date(0), date(1)], dimensions: ['time:day'] })).toEqual([
      'rollup_hourly',
      ['salt_day_segments'],
    ]);

    expect((await source(indiaSite, { metrics: ['visitors'], date_range: [date(0), date(1)], dimensions: ['time:day'] }))[0]).toBe('raw');
  });

  it('goes to the raw tables for what the rollups do not hold, and says why', async () => {
    const why = async (body: Record<string, unknown>): Promise<string | undefined> => {
      const r = await run(utcSite, { date_range: fourDays, ...body });
      expect(r.meta.source).toBe('raw');
      return r.meta.source_reason;
    };
    expect(await why({ metrics: ['pageviews'], dimensions: ['visit:source'] })).toMatch(/no event rollup by visit:source/);
    expect(await why({ metrics: ['visitors'], dimensions: ['event:page'], filters: [['contains', 'event:page', ['blog']]] })).toMatch(/contains/);
    expect(await why({ metrics: ['visitors'], dimensions: ['visit:country', 'visit:device'] })).toMatch(/more than one/);
    expect(await why({ metrics: ['visitors'], dimensions: ['visit:browser_version'] })).toMatch(/browser_version/);
    expect(await why({ metrics: ['visitors'], date_range: [`${date(1)}T10:30:00Z`, `${date(1)}T12:00:00Z`] })).toMatch(/buckets/);
  });
});

describe('time zones', () => {
  const metrics: Metric[] = ['visitors', 'pageviews', 'visits', 'bounce_rate'];

  it.each([nySite, indiaSite])('buckets days in $timezone, from rollups and raw rows alike', async (site) => {
    // Wide enough to hold every event in any zone; days are the site's local days.
    const body = { metrics, date_range: [date(-1), date(3)], dimensions: ['time:day'], include: { time_labels: true } };
    const auto = await run(site, body);
    const raw = await run(site, body, { source: 'raw' });
    expect(raw.results).toEqual(auto.results);
    const rows = new Map(auto.results.map((r) => [r.dimensions[0], r.metrics]));
    const expected = metrics.map((m) => truthOf(site, 0, Number.MAX_SAFE_INTEGER, 'time:day', m));
    const days = new Set(expected.flatMap((e) => [...e.keys()]));
    expect(new Set(rows.keys())).toEqual(days);
    for (const day of days) expect(rows.get(day), day).toEqual(expected.map((e) => e.get(day) ?? 0));
    expect(auto.meta.time_labels).toEqual([date(-1), date(0), date(1), date(2), date(3)]);
    // Asia/Kolkata (+05:30): traffic after 18:30 UTC falls on the next local day.
    if (site === indiaSite) expect(days.size).toBeGreaterThan(2);
  });

  it('buckets hours of the site’s day', async () => {
    const body = { metrics: ['pageviews'], date_range: [date(1), date(1)], dimensions: ['time:hour'] };
    const auto = await run(utcSite, body);
    expect((await run(utcSite, body, { source: 'raw' })).results).toEqual(auto.results);
    const expected = new Map<string, number>();
    for (const x of model(utcSite).events) {
      if (x.e.name !== 'pageview' || x.e.ts < base + DAY || x.e.ts >= base + 2 * DAY) continue;
      const hour = `${new Date(x.e.ts).toISOString().slice(0, 13).replace('T', ' ')}:00:00`;
      expected.set(hour, (expected.get(hour) ?? 0) + 1);
    }
    expect(byFirstDimension(auto)).toEqual(expected);
    // A site in New York sees the same UTC hours shifted by five (EST).
    const ny = await run(nySite, { metrics: ['pageviews'], date_range: [date(0), date(0)], dimensions: ['time:hour'] });
    expect(ny.meta.source).toBe('rollup_hourly');
    expect(ny.results.every((r) => /^\d{4}-\d{2}-\d{2} \d{2}:00:00$/.test(r.dimensions[0] ?? ''))).toBe(true);
    expect((await run(nySite, { metrics: ['pageviews'], date_range: [date(0), date(0)], dimensions: ['time:hour'] }, { source: 'raw' })).results).toEqual(ny.results);
  });

  it('resolves shortcuts against now in the site’s zone', async () => {
    const r = await run(utcSite, { metrics: ['pageviews'], date_range: '7d' });
    expect(r.query.date_range).toEqual([`${date(-1)}T00:00:00Z`, `${date(5)}T23:59:59Z`]);
    expect(r.results[0]?.metrics[0]).toBe(model(utcSite).events.filter((x) => x.e.name === 'pageview').length);
    const ny = await run(nySite, { metrics: ['visitors'], date_range: 'day' });
    expect(ny.query.date_range).toEqual([`${date(5)}T00:00:00-05:00`, `${date(5)}T23:59:59-05:00`]);
    const all = await run(utcSite, { metrics: ['visitors'], date_range: 'all' });
    expect(all.query.date_range[0]).toBe(`${date(0)}T00:00:00Z`);
    expect(all.results[0]?.metrics[0]).toBe(uniqueVisitors(model(utcSite).events));
  });
});

describe('filters', () => {
  const m = (): Model => model(utcSite);
  const inRange = (x: ModelEvent): boolean => x.e.ts >= fourDaysStart && x.e.ts < fourDaysEnd;
  const sessionsIn = (): Session[] => m().sessions.filter((s) => s.start >= fourDaysStart && s.start < fourDaysEnd);
  const events = (pred: (x: ModelEvent) => boolean): ModelEvent[] => m().events.filter((x) => inRange(x) && pred(x));

  async function expectFilter(filters: unknown[], visitors: number, pageviews: number): Promise<void> {
    const body = { metrics: ['visitors', 'pageviews'], date_range: fourDays, filters };
    const auto = await run(utcSite, body);
    expect(auto.results[0]?.metrics, JSON.stringify(filters)).toEqual([visitors, pageviews]);
    expect((await run(utcSite, body, { source: 'raw' })).results).toEqual(auto.results);
  }
  const pv = (xs: ModelEvent[]): number => xs.filter((x) => x.e.name === 'pageview').length;

  it('is, on a session dimension: visitors of the matching visits, pageviews of their events', async () => {
    const google = sessionsIn().filter((s) => s.first.source === 'Google');
    await expectFilter([['is', 'visit:source', ['Google']]], uniqueSessionVisitors(google), pv(events((x) => x.s.first.source === 'Google')));
    const direct = events((x) => x.s.first.source === '');
    await expectFilter([['is', 'visit:source', ['Direct / None']]], uniqueSessionVisitors(sessionsIn().filter((s) => s.first.source === '')), pv(direct));
  });

  it('contains and matches, case-sensitive or not, on pages', async () => {
    const blog = events((x) => x.e.pathname.includes('blog'));
    await expectFilter([['contains', 'event:page', ['blog']]], uniqueVisitors(blog), pv(blog));
    const docsOrPricing = events((x) => /^\/(docs|pricing)$/.test(x.e.pathname));
    await expectFilter([['matches', 'event:page', ['^/(docs|pricing)$']]], uniqueVisitors(docsOrPricing), pv(docsOrPricing));
    const pricing = events((x) => x.e.pathname === '/pricing');
    await expectFilter([['is', 'event:page', ['/PRICING'], { case_sensitive: false }]], uniqueVisitors(pricing), pv(pricing));
    await expectFilter([['is', 'event:page', ['/PRICING']]], 0, 0);
    await expectFilter([['matches', 'event:page', ['^/PRI'], { case_sensitive: false }]], uniqueVisitors(pricing), pv(pricing));
    const notBlog = events((x) => !x.e.pathname.includes('blog'));
    await expectFilter([['contains_not', 'event:page', ['blog']]], uniqueVisitors(notBlog), pv(notBlog));
    const notDocs = events((x) => !/^\/docs/.test(x.e.pathname));
    await expectFilter([['matches_not', 'event:page', ['^/docs']]], uniqueVisitors(notDocs), pv(notDocs));
  });

  it('and, or, not, across event and visit dimensions', async () => {
    const and = events((x) => ['PT', 'DE'].includes(x.e.country) && !x.e.pathname.includes('blog'));
    await expectFilter(
      [['and', [['is', 'visit:country', ['PT', 'DE']], ['contains_not', 'event:page', ['blog']]]]],
      uniqueVisitors(and),
      pv(and),
    );
    // Only visit dimensions: visitors are counted over visits (their session's country).
    const orSessions = sessionsIn().filter((s) => s.first.source === 'Google' || s.first.country === 'BR');
    const or = events((x) => x.s.first.source === 'Google' || x.e.country === 'BR');
    await expectFilter([['or', [['is', 'visit:source', ['Google']], ['is', 'visit:country', ['BR']]]]], uniqueSessionVisitors(orSessions), pv(or));
    const notMobile = events((x) => x.e.device !== 'mobile');
    await expectFilter([['not', ['is', 'visit:device', ['mobile']]]], uniqueVisitors(notMobile), pv(notMobile));
    // Top-level filters combine with AND.
    const both = events((x) => x.e.device === 'tablet' && x.e.pathname === '/');
    await expectFilter([['is', 'visit:device', ['tablet']], ['is', 'event:page', ['/']]], uniqueVisitors(both), pv(both));
  });

  it('breakdowns by a visit dimension filtered on the event row: the joined sessions are only the filtered events’ ones', async () => {
    const source = (x: ModelEvent): string => orLabel(x.s.first.source, 'Direct / None');
    const cases: { filters: unknown[]; pred: (x: ModelEvent) => boolean }[] = [
      { filters: [['is', 'event:page', ['/pricing']]], pred: (x) => x.e.pathname === '/pricing' },
      { filters: [['is', 'event:goal', ['Signup']]], pred: (x) => x.e.name === 'Signup' },
      // The source filter reads the joined session: it must not narrow the sessions joined.
      { filters: [['is', 'event:page', ['/']], ['is', 'visit:source', ['Google']]], pred: (x) => x.e.pathname === '/' && x.s.first.source === 'Google' },
      { filters: [['or', [['is', 'event:page', ['/pricing']], ['is', 'visit:source', ['Google']]]]], pred: (x) => x.e.pathname === '/pricing' || x.s.first.source === 'Google' },
    ];
    for (const c of cases) {
      const matching = events(c.pred);
      expect(matching.length, JSON.stringify(c.filters)).toBeGreaterThan(0);
      const expected = new Map<string, [number, number]>();
      for (const value of new Set(matching.map(source))) {
        const of = matching.filter((x) => source(x) === value);
        expected.set(value, [uniqueVisitors(of), of.length]);
      }
      for (const mode of ['auto', 'raw'] as const) {
        const r = await run(utcSite, { metrics: ['visitors', 'events'], date_range: fourDays, dimensions: ['visit:source'], filters: c.filters }, { source: mode });
        expect(new Map(r.results.map((row) => [row.dimensions[0] ?? '', row.metrics])), `${mode} ${JSON.stringify(c.filters)}`).toEqual(expected);
      }
    }
  });

  it('custom properties, goals and experiment variations', async () => {
    const pro = events((x) => x.e.props['plan'] === 'pro');
    const r = await run(utcSite, { metrics: ['visitors', 'events', 'total_revenue'], date_range: fourDays, filters: [['is', 'event:props:plan', ['pro']]] });
    expect(r.results[0]?.metrics).toEqual([uniqueVisitors(pro), pro.length, round(pro.reduce((n, x) => n + (x.e.revenue?.amount ?? 0), 0), 2)]);

    const byPlan = await run(utcSite, { metrics: ['events'], date_range: fourDays, dimensions: ['event:props:plan'] });
    expect(byFirstDimension(byPlan)).toEqual(truthOf(utcSite, fourDaysStart, fourDaysEnd, 'event:props:plan', 'events'));

    const byVariation = await run(utcSite, { metrics: ['visitors'], date_range: fourDays, dimensions: ['experiment:variation'] });
    expect(byFirstDimension(byVariation)).toEqual(truthOf(utcSite, fourDaysStart, fourDaysEnd, 'experiment:variation', 'visitors'));
    const inB = events((x) => x.e.exp['exp1'] === 'B');
    const filtered = await run(utcSite, { metrics: ['visitors'], date_range: fourDays, filters: [['is', 'experiment:variation', ['exp1:B']]] });
    expect(filtered.results[0]?.metrics[0]).toBe(uniqueVisitors(inB));

    // A pageview goal: visitors who viewed the page, and the visits that did.
    const pricingViews = events((x) => x.e.name === 'pageview' && x.e.pathname === '/pricing');
    const goal = await run(utcSite, { metrics: ['visitors', 'events', 'visits'], date_range: fourDays, filters: [['is', 'event:goal', ['Visit /pricing']]] });
    const visits = sessionsIn().filter((s) => pricingViews.some((x) => x.s === s)).length;
    expect(goal.results[0]?.metrics).toEqual([uniqueVisitors(pricingViews), pricingViews.length, visits]);

    // Configured goals: the goal breakdown lists exactly them, wildcards included.
    const site = { ...utcSite, goals: ['Signup', 'Visit /blog/*'] };
    const goals = await run(site, { metrics: ['visitors', 'conversion_rate'], date_range: fourDays, dimensions: ['event:goal'] });
    const blogViews = events((x) => x.e.name === 'pageview' && x.e.pathname.startsWith('/blog/'));
    const signups = events((x) => x.e.name === 'Signup');
    const everyone = uniqueVisitors(events(() => true));
    expect(new Map(goals.results.map((x) => [x.dimensions[0], x.metrics]))).toEqual(
      new Map([
        ['Signup', [uniqueVisitors(signups), round((uniqueVisitors(signups) / everyone) * 100, 1)]],
        ['Visit /blog/*', [uniqueVisitors(blogViews), round((uniqueVisitors(blogViews) / everyone) * 100, 1)]],
      ]),
    );
    expect(goals.meta.source).toBe('raw');
    expect((await rejection(run(site, { metrics: ['visitors'], date_range: fourDays, filters: [['is', 'event:goal', ['Nope']]] }))).field).toBe('filters[0][2][0]');
  });

  it('bounce rate under a page filter counts visits that entered on the page (as Plausible)', async () => {
    const r = await run(utcSite, { metrics: ['visits', 'bounce_rate'], date_range: fourDays, filters: [['is', 'event:page', ['/docs']]] });
    const visitedDocs = sessionsIn().filter((s) => m().events.some((x) => x.s === s && inRange(x) && x.e.pathname === '/docs'));
    const enteredDocs = sessionsIn().filter((s) => s.entryPage === '/docs');
    expect(r.results[0]?.metrics).toEqual([visitedDocs.length, Math.round((enteredDocs.filter((s) => s.bounce === 1).length / enteredDocs.length) * 100)]);
  });
});

describe('comparisons, time labels, pagination', () => {
  it('compares each row with the previous period', async () => {
    const metrics: Metric[] = ['visitors', 'pageviews', 'bounce_rate'];
    const r = await run(utcSite, {
      metrics,
      date_range: [date(2), date(3)],
      dimensions: ['visit:country'],
      include: { comparisons: { mode: 'previous_period' } },
    });
    expect(r.meta.comparison_date_range).toEqual([`${date(0)}T00:00:00Z`, `${date(1)}T23:59:59Z`]);
    const previous = metrics.map((metric) => truthOf(utcSite, base, base + 2 * DAY, 'visit:country', metric));
    const current = metrics.map((metric) => truthOf(utcSite, base + 2 * DAY, base + 4 * DAY, 'visit:country', metric));
    expect(r.results.length).toBeGreaterThan(1);
    for (const row of r.results) {
      const country = row.dimensions[0] ?? '';
      expect(row.metrics).toEqual(current.map((c) => c.get(country) ?? 0));
      const old = previous.map((p) => p.get(country) ?? 0);
      expect(row.comparison?.dimensions).toEqual([country]);
      expect(row.comparison?.metrics).toEqual(old);
      const [v, p, b] = row.metrics as number[];
      const [ov, op, ob] = old as number[];
      const pct = (o: number, n: number): number => (o === 0 ? (n > 0 ? 100 : 0) : Math.round(((n - o) / o) * 100));
      expect(row.comparison?.change).toEqual([pct(ov ?? 0, v ?? 0), pct(op ?? 0, p ?? 0), (ob ?? 0) > 0 ? (b ?? 0) - (ob ?? 0) : null]);
    }
  });

  it('compares time buckets by position, year over year too', async () => {
    const r = await run(utcSite, {
      metrics: ['pageviews'],
      date_range: [date(2), date(3)],
      dimensions: ['time:day'],
      include: { comparisons: { mode: 'previous_period' }, time_labels: true },
    });
    const pageviews = truthOf(utcSite, base, base + 4 * DAY, 'time:day', 'pageviews');
    expect(r.results.map((x) => [x.dimensions, x.metrics, x.comparison?.dimensions, x.comparison?.metrics])).toEqual([
      [[date(2)], [pageviews.get(date(2))], [date(0)], [pageviews.get(date(0))]],
      [[date(3)], [pageviews.get(date(3))], [date(1)], [pageviews.get(date(1))]],
    ]);
    const yoy = await run(utcSite, { metrics: ['pageviews'], date_range: [date(2), date(3)], include: { comparisons: { mode: 'year_over_year' } } });
    expect(yoy.results[0]?.comparison?.metrics).toEqual([0]);
    expect(yoy.results[0]?.comparison?.change).toEqual([100]);
    const custom = await run(utcSite, {
      metrics: ['pageviews'],
      date_range: [date(2), date(2)],
      include: { comparisons: { mode: 'custom', date_range: [date(0), date(0)] } },
    });
    expect(custom.results[0]?.comparison?.metrics).toEqual([pageviews.get(date(0))]);
  });

  it('lists every bucket in time_labels, data or not', async () => {
    const r = await run(utcSite, { metrics: ['visitors'], date_range: [date(0), date(6)], dimensions: ['time:day'], include: { time_labels: true } });
    expect(r.meta.time_labels).toEqual([0, 1, 2, 3, 4, 5, 6].map(date));
    expect(r.results.map((x) => x.dimensions[0])).toEqual([0, 1, 2, 3].map(date));
    const weeks = await run(utcSite, { metrics: ['visitors'], date_range: [date(0), date(13)], dimensions: ['time:week'], include: { time_labels: true } });
    expect(weeks.meta.time_labels?.[0]).toBe(date(0));
    expect(weeks.results.map((x) => x.dimensions[0]).every((d) => weeks.meta.time_labels?.includes(d ?? ''))).toBe(true);
    expect((await run(utcSite, { metrics: ['visitors'], date_range: [date(0), date(13)], dimensions: ['time:week'] }, { source: 'raw' })).results).toEqual(
      weeks.results,
    );
  });

  it('pages through results and counts them', async () => {
    const body = { metrics: ['visitors'], date_range: fourDays, dimensions: ['event:page'], order_by: [['visitors', 'desc']] };
    const all = await run(utcSite, { ...body, include: { total_rows: true } });
    expect(all.meta.total_rows).toBe(all.results.length);
    const page = await run(utcSite, { ...body, pagination: { limit: 2, offset: 1 }, include: { total_rows: true } });
    expect(page.results).toEqual(all.results.slice(1, 3));
    expect(page.meta.total_rows).toBe(all.results.length);
    const past = await run(utcSite, { ...body, pagination: { limit: 2, offset: 100 }, include: { total_rows: true } });
    expect(past.results).toEqual([]);
    expect(past.meta.total_rows).toBe(all.results.length);
    const ascending = await run(utcSite, { ...body, order_by: [['event:page', 'asc']] });
    expect(ascending.results.map((x) => x.dimensions[0])).toEqual(all.results.map((x) => x.dimensions[0]).sort());
    expect(page.query.pagination).toEqual({ limit: 2, offset: 1 });
  });
});

describe('more shapes', () => {
  const inRange = (x: ModelEvent): boolean => x.e.ts >= fourDaysStart && x.e.ts < fourDaysEnd;

  it('realtime reads the last 30 minutes, and cannot be compared', async () => {
    const m = model(utcSite);
    const pick = m.events[Math.floor(m.events.length / 2)];
    if (pick === undefined) throw new Error('no events');
    const at = new Date(pick.e.ts + 60_000);
    const r = await runQuery(store, utcSite, { site_id: utcSite.domain, metrics: ['visitors', 'pageviews'], date_range: 'realtime' }, at);
    const recent = m.events.filter((x) => x.e.ts >= at.getTime() - 30 * 60_000 && x.e.ts <= at.getTime());
    expect(r.results[0]?.metrics).toEqual([uniqueVisitors(recent), recent.filter((x) => x.e.name === 'pageview').length]);
    expect(r.meta.source).toBe('raw');
    const err = await rejection(
      runQuery(store, utcSite, { site_id: utcSite.domain, metrics: ['visitors'], date_range: 'realtime', include: { comparisons: { mode: 'previous_period' } } }, at),
    );
    expect(err.field).toBe('include.comparisons');
  });

  it('breaks down by two dimensions and compares each pair, time by position', async () => {
    const r = await run(utcSite, {
      metrics: ['visitors'],
      date_range: [date(2), date(3)],
      dimensions: ['visit:source', 'time:day'],
      include: { comparisons: { mode: 'previous_period' } },
    });
    // Source is a visit dimension: visitors are those of the visits started that day from that source.
    const count = (from: number, to: number): Map<string, number> => {
      const out = new Map<string, Set<string>>();
      for (const s of model(utcSite).sessions) {
        if (s.start < from || s.start >= to) continue;
        const key = JSON.stringify([orLabel(s.first.source, 'Direct / None'), localDay('UTC', s.start)]);
        out.set(key, (out.get(key) ?? new Set()).add(s.visitorId));
      }
      return new Map([...out].map(([k, v]) => [k, v.size]));
    };
    const current = count(base + 2 * DAY, base + 4 * DAY);
    const previous = count(base, base + 2 * DAY);
    expect(new Map(r.results.map((x) => [JSON.stringify(x.dimensions), x.metrics[0]]))).toEqual(current);
    for (const row of r.results) {
      const [source, day] = row.dimensions;
      const shifted = day === date(2) ? date(0) : date(1);
      expect(row.comparison?.dimensions).toEqual([source, shifted]);
      expect(row.comparison?.metrics).toEqual([previous.get(JSON.stringify([source, shifted])) ?? 0]);
    }
    expect(r.meta.source).toBe('rollup_daily');
    expect((await run(utcSite, { metrics: ['visitors'], date_range: [date(2), date(3)], dimensions: ['visit:source', 'time:day'] }, { source: 'raw' })).results).toEqual(
      r.results.map(({ dimensions, metrics }) => ({ dimensions, metrics })),
    );
  });

  it('group conversion rate by goal and source divides by the source’s visitors', async () => {
    const r = await run(utcSite, { metrics: ['visitors', 'group_conversion_rate', 'conversion_rate'], date_range: fourDays, dimensions: ['event:goal', 'visit:source'] });
    const events = model(utcSite).events.filter(inRange);
    const source = (x: ModelEvent): string => orLabel(x.s.first.source, 'Direct / None');
    const everyone = uniqueVisitors(events);
    expect(r.results.length).toBeGreaterThan(3);
    for (const row of r.results) {
      const [goal, src] = row.dimensions;
      const converted = uniqueVisitors(events.filter((x) => x.e.name === goal && source(x) === src));
      const group = uniqueVisitors(events.filter((x) => source(x) === src));
      expect(row.metrics, `${goal} ${src}`).toEqual([converted, round((converted / group) * 100, 1), round((converted / everyone) * 100, 1)]);
    }
  });

  it('`time` picks the bucket from the range', async () => {
    const day = await run(utcSite, { metrics: ['visitors'], date_range: [date(1), date(1)], dimensions: ['time'] });
    expect(day.results.every((x) => / \d{2}:00:00$/.test(x.dimensions[0] ?? ''))).toBe(true);
    const days = await run(utcSite, { metrics: ['visitors'], date_range: fourDays, dimensions: ['time'] });
    expect(days.results.map((x) => x.dimensions[0])).toEqual([0, 1, 2, 3].map(date));
    expect(days.query.order_by).toEqual([['time', 'asc'], ['visitors', 'desc']]);
  });
});

describe('injection attempts are rejected or are plain data', () => {
  const attack = "' OR 1=1 --";

  it('filter values match nothing', async () => {
    for (const filter of [
      ['is', 'event:page', [attack]],
      ['contains', 'visit:source', [attack]],
      ['is', 'visit:channel', [`Direct'); DROP TABLE events; --`]],
      ['matches', 'event:name', [`^${attack}$`]],
      ['is', 'event:goal', [attack]],
      ['is', 'event:props:plan', [attack]],
      ['is', 'experiment:variation', [attack]],
      ['contains', 'visit:utm_campaign', [attack], { case_sensitive: false }],
    ]) {
      const r = await run(utcSite, { metrics: ['visitors', 'pageviews'], date_range: fourDays, filters: [filter] });
      expect(r.results, JSON.stringify(filter)).toEqual([{ dimensions: [], metrics: [0, 0] }]);
    }
  });

  it('an invalid re2 pattern is refused whatever the data (no rows, or an earlier value matching)', async () => {
    const empty: QuerySite = { domain: 'no-events.test', timezone: 'UTC' };
    const none = await rejection(run(empty, { metrics: ['visitors'], date_range: fourDays, filters: [['matches', 'event:page', ['(a)\\1']]] }));
    expect(none.field).toBe('filters[0][2][0]');
    const second = await rejection(run(utcSite, { metrics: ['visitors'], date_range: fourDays, filters: [['matches', 'event:page', ['^/', '[']]] }));
    expect(second.field).toBe('filters[0][2][1]');
  });

  it('dimension names, metric names, order_by and dates outside the grammar are rejected naming the field', async () => {
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ metrics: ['visitors'], date_range: fourDays, dimensions: ['event:page; DROP TABLE events'] }, 'dimensions[0]'],
      [{ metrics: ['visitors'], date_range: fourDays, dimensions: ['visit:source', "event:page') --"] }, 'dimensions[1]'],
      [{ metrics: ['visitors'], date_range: fourDays, filters: [['is', 'event:page) OR (1', ['/']]] }, 'filters[0][1]'],
      [{ metrics: ['visitors'], date_range: fourDays, filters: [['and', [['is; DROP', 'event:page', ['/']]]]] }, 'filters[0][1][0][0]'],
      [{ metrics: ['visitors) FROM events --'], date_range: fourDays }, 'metrics[0]'],
      [{ metrics: ['visitors'], date_range: fourDays, order_by: [['visitors; DROP TABLE events', 'desc']] }, 'order_by[0][0]'],
      [{ metrics: ['visitors'], date_range: fourDays, order_by: [['visitors', 'desc; DROP TABLE events']] }, 'order_by[0][1]'],
      [{ metrics: ['visitors'], date_range: [`${date(0)}' OR 1=1`, date(1)] }, 'date_range[0]'],
      [{ metrics: ['visitors'], date_range: fourDays, filters: [['matches', 'event:page', ['(unclosed']]] }, 'filters[0][2][0]'],
      [{ site_id: "q.test' --", metrics: ['visitors'], date_range: fourDays }, 'site_id'],
    ];
    for (const [body, field] of cases) {
      const err = await rejection(runQuery(store, utcSite, { site_id: utcSite.domain, ...body }, now));
      expect(err.field, JSON.stringify(body)).toBe(field);
      expect(err.status).toBe(400);
      expect(err.code).toBe('API_BAD_QUERY');
    }
  });

  it('property keys are bound: quotes are part of the key', async () => {
    const quoted = await run(utcSite, { metrics: ['events'], date_range: fourDays, dimensions: ["event:props:it's"] });
    const signups = model(utcSite).events.filter((x) => x.e.name === 'Signup' && x.e.ts < fourDaysEnd).length;
    expect(byFirstDimension(quoted).get('quoted')).toBe(signups);
    const evil = await run(utcSite, { metrics: ['events'], date_range: fourDays, dimensions: ["event:props:x') OR 1=1 --"] });
    expect([...byFirstDimension(evil).keys()]).toEqual(['(none)']);
    const filtered = await run(utcSite, { metrics: ['events'], date_range: fourDays, filters: [['is', "event:props:plan'] OR 1=1 --", ['pro']]] });
    expect(filtered.results[0]?.metrics).toEqual([0]);
    // And the tables are all still there.
    const rows = await store.query<{ n: string }>('SELECT count() AS n FROM events WHERE site = {site:String}', { site: utcSite.domain });
    expect(Number(rows[0]?.n)).toBe(model(utcSite).events.length);
  });
});
