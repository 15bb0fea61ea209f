import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runQuery, type QueryResponse, type QuerySite } from '../api/query/query.ts';
import { defaultStateLimits } from '../processor/partition-state.ts';
import { closeSaltDays, provisionOpenSaltDays, storedVisitors } from '../processor/salt-days.ts';
import { openChdbStore } from '../store/chdb-store.ts';
import { migrate } from '../store/migrate.ts';
import type { QueryParams, Store } from '../store/store.ts';
import { ms, num, table } from './report.ts';
import type { Check, Scenario, ScenarioContext } from './scenario.ts';
import { ACQUISITION, CAMPAIGNS, COUNTRIES, CUSTOM_EVENTS, GOALS, NAMED_PAGES, PATHS, PLANS, REFERRAL_DOMAINS, TERMS } from '../cli/demo-traffic.ts';

/*
 * `query`: the dashboard's queries over one site (issue #9: at 10M events over 30 days, p95 < 50 ms
 * from the rollups and ≥ 20× faster than the same query over the raw events; one-filter
 * breakdowns p95 < 300 ms), for the ranges day, 7d, 30d and 6mo and the site in three time zones.
 *
 * The data is generated inside ClickHouse (INSERT … SELECT FROM numbers(), deterministic hashes of
 * the row number) into the raw `events` and `sessions` tables, in the shapes the processor writes:
 * a session's first state as +1, then −1 of it and +1 of its final state in a later insert. The
 * materialized views fill the rollups from those inserts, as in production, and every row carries
 * its salt day (a visit that spans midnight keeps the id of the day it started). The closing job
 * then closes the salt days whose salt is gone, as the processor does. Each query runs through
 * api/query runQuery as the planner chooses (`auto`) and forced onto the raw tables, in two blocks
 * of runs after the warm-ups, and every answer must equal the raw one.
 */

/** Options of the `query` scenario (`--events`, `--runs`, `--data-dir`, `--zones`, `--ranges`). */
export interface QueryOptions {
  /** Events to generate over the last 30 days (about: sessions are drawn whole); see HISTORY_SHARE. */
  events: number;
  /** Measured runs per query and mode, after {@link WARMUPS} warm-ups. */
  runs: number;
  /** Keep the chDB data here and reuse it when it already holds the same dataset. */
  dataDir: string | undefined;
  /** Site time zones to measure (names of {@link ZONES}). */
  zones: readonly ZoneName[];
  /** Date ranges to measure. */
  ranges: readonly RangeName[];
  /** A result JSON of an earlier `query` run to compare with (another --events, or another commit). */
  compare: string | undefined;
}

/** The site's time zones: the same traffic, read as a site in each zone. */
export const ZONES = { utc: 'UTC', lisbon: 'Europe/Lisbon', new_york: 'America/New_York' } as const;
export type ZoneName = keyof typeof ZONES;

export type RangeName = 'day' | '7d' | '30d' | '6mo';
export const RANGES: readonly RangeName[] = ['30d', '7d', 'day', '6mo'];

export const DEFAULT_QUERY_OPTIONS: QueryOptions = {
  events: 10_000_000,
  runs: 20,
  dataDir: undefined,
  zones: Object.keys(ZONES) as ZoneName[],
  ranges: RANGES,
  compare: undefined,
};

/** Rollup answers at more events may take this much longer than at fewer (issue #9: 30M vs 10M). */
const TARGET_GROWTH = 1.5;

const WARMUPS = 2;
/** Issue #9's targets, at 30 days: main queries from rollups, and one-filter breakdowns (raw). */
const TARGET_P95_MS = 50;
const TARGET_RATIO = 20;
const TARGET_FILTERED_P95_MS = 300;
const DATABASE = 'farol';
/** The dense part: `--events` events over the 30 days ending today (UTC). */
const DAYS = 30;
/**
 * The history before them, so `6mo` reads six months: from the day before the first of the month
 * five months back (a site in a zone ahead of UTC starts its 6mo there) to the dense part, with
 * this share of `--events` spread evenly (about a fiftieth of the recent daily traffic: a site
 * that grew). Seeding it costs a tenth more; `6mo` then reads 1.1 × `--events`.
 */
const HISTORY_SHARE = 0.1;
const DAY_MS = 86_400_000;
const SEED = 20_251_129;
/** Bumped when the generated data changes shape, so a kept data dir of an older layout is refused. */
const LAYOUT = 2;
/** Events per INSERT, so the views aggregate bounded blocks. */
const EVENTS_PER_CHUNK = 1_000_000;
/** Mean events per generated session (see the pageview and custom event draws below). */
const MEAN_EVENTS_PER_SESSION = 3.06;
/** Visitor pool per day relative to sessions per day: ~1.75 sessions per daily visitor. */
const VISITOR_POOL_FACTOR = 0.8;

const SITE: QuerySite = {
  domain: 'example.com',
  timezone: 'UTC',
  goals: GOALS,
};

// ---------------------------------------------------------------------------------------------
// Generation. Only constants (this file's and the shared distributions) reach the SQL text; sizes, seed and times are bound.

// The distributions are shared with `farol demo` (cli/demo-traffic.ts).
const LONG_TAIL = ACQUISITION.length;

function strings(values: readonly string[]): string {
  return `[${values.map((v) => `'${v.replace(/[\\']/g, (c) => `\\${c}`)}'`).join(', ')}]`;
}

function cumulative(weights: readonly number[]): string {
  let sum = 0;
  return `[${weights.map((w) => (sum += w)).join(', ')}]`;
}

const U64 = '18446744073709551616.0';
/** A uniform draw in [0, 1) for session `number`, stream `k`. */
const u = (k: number | string): string => `(cityHash64({seed:UInt64}, number, ${k}) / ${U64})`;
/** A uniform draw for the session's visitor (stable across days: device, country, …). */
const vu = (k: number): string => `(cityHash64({seed:UInt64}, 'visitor', x_vk, ${k}) / ${U64})`;
/** A rank in 1…n drawn with density ∝ 1/rank. */
const zipf = (draw: string, n: number): string => `toUInt32(floor(exp(${draw} * log(${n + 1}))))`;

/**
 * One row per session `number` in `[{s0}, {s0} + {sn})` with its attributes (`x_*`), its pages and
 * the time offsets of its events. A segment's sessions (numbers from {seg0}, {total} of them) are
 * spread evenly over its {days} days from day {day0} (days counted from {base}, a UTC midnight);
 * start times peak at noon UTC with a fifth spread evenly over the day, so some visits start late
 * and run past midnight (about one in a thousand, as a site with visitors in many zones sees). The
 * visitor is drawn from a daily pool and its id hashes the start day, as the collector's salted
 * hash does: a visit that spans midnight keeps the id of the day it started (its salt day), so an
 * id lives on at most two adjacent days. No visit starts after 23:00 on the last day, which ends
 * at the bench's "now".
 */
const SESSIONS_SQL = `SELECT
  number AS x_s,
  {day0:UInt64} + intDiv((number - {seg0:UInt64}) * {days:UInt64}, {total:UInt64}) AS x_day,
  least(if(x_day >= {lastDay:UInt64}, 82800, 86399), toUInt64(86400 * if(${u(15)} < 0.2, ${u(1)}, (${u(1)} + ${u(2)}) / 2))) AS x_sod,
  {base:Int64} + toInt64(x_day * 86400000 + x_sod * 1000 + cityHash64({seed:UInt64}, number, 3) % 1000) AS x_start,
  toDate(fromUnixTimestamp64Milli(x_start, 'UTC')) AS x_salt_day,
  cityHash64({seed:UInt64}, number, 4) % {pool:UInt64} AS x_vk,
  cityHash64({seed:UInt64}, 'visitor-id', x_vk, x_day) AS x_visitor,
  cityHash64({seed:UInt64}, 'session-id', number) AS x_session,
  ${strings(COUNTRIES)}[${zipf(vu(1), COUNTRIES.length)}] AS x_country,
  multiIf(${vu(2)} < 0.55, 'desktop', ${vu(2)} < 0.95, 'mobile', 'tablet') AS x_device,
  multiIf(
    x_device = 'desktop', multiIf(${vu(3)} < 0.6, 'Windows', ${vu(3)} < 0.9, 'Mac OS', ${vu(3)} < 0.98, 'Linux', 'Chromium OS'),
    x_device = 'mobile', if(${vu(3)} < 0.6, 'Android', 'iOS'),
    if(${vu(3)} < 0.7, 'iOS', 'Android')) AS x_os,
  toString(10 + toUInt32(${vu(4)} * 8)) AS x_os_version,
  multiIf(
    x_os = 'iOS', if(${vu(5)} < 0.8, 'Mobile Safari', 'Chrome'),
    x_os = 'Mac OS', multiIf(${vu(5)} < 0.55, 'Safari', ${vu(5)} < 0.95, 'Chrome', 'Firefox'),
    x_os = 'Android', multiIf(${vu(5)} < 0.75, 'Chrome', ${vu(5)} < 0.95, 'Samsung Browser', 'Firefox'),
    multiIf(${vu(5)} < 0.65, 'Chrome', ${vu(5)} < 0.85, 'Edge', ${vu(5)} < 0.97, 'Firefox', 'Opera')) AS x_browser,
  toString(120 + toUInt32(${vu(6)} * 12)) AS x_browser_version,
  multiIf(x_device = 'mobile', 'Mobile', x_device = 'tablet', 'Tablet', ${vu(7)} < 0.5, 'Laptop', 'Desktop') AS x_screen,
  arrayFirstIndex(c -> c > ${u(5)} * 1000, ${cumulative(ACQUISITION.map((a) => a.weight))}) AS x_acq,
  if(x_acq = ${LONG_TAIL}, concat('site', toString(${zipf(u(6), REFERRAL_DOMAINS)}), '.example.net'), ${strings(ACQUISITION.map((a) => a.source))}[x_acq]) AS x_source,
  if(x_acq = ${LONG_TAIL}, concat('https://', x_source, '/'), ${strings(ACQUISITION.map((a) => a.referrer))}[x_acq]) AS x_referrer,
  ${strings(ACQUISITION.map((a) => a.channel))}[x_acq] AS x_channel,
  ${strings(ACQUISITION.map((a) => a.utmSource))}[x_acq] AS x_utm_source,
  ${strings(ACQUISITION.map((a) => a.utmMedium))}[x_acq] AS x_utm_medium,
  if(x_utm_source = '', '', ${strings(CAMPAIGNS)}[1 + cityHash64({seed:UInt64}, number, 7) % ${CAMPAIGNS.length}]) AS x_utm_campaign,
  if(x_utm_medium = 'paid_social', ['carousel', 'video', 'static'][1 + cityHash64({seed:UInt64}, number, 8) % 3], '') AS x_utm_content,
  if(x_utm_medium = 'cpc', ${strings(TERMS)}[1 + cityHash64({seed:UInt64}, number, 8) % ${TERMS.length}], '') AS x_utm_term,
  ${strings(ACQUISITION.map((a) => a.click))}[x_acq] AS x_click,
  if(${u(9)} < 0.95, 'example.com', 'docs.example.com') AS x_hostname,
  if(${u(10)} < 0.45, 1, 2 + least(28, toUInt32(-log(1 - ${u(11)}) * 2.5))) AS x_npv,
  if(${u(12)} < 0.7, 0, if(${u(13)} < 0.3, 2, 1)) AS x_ncu,
  x_npv + x_ncu AS x_n,
  arrayMap(r -> if(r <= ${NAMED_PAGES.length}, ${strings(NAMED_PAGES)}[r], concat(['/blog/post-', '/docs/page-', '/products/item-'][r % 3 + 1], toString(r))),
    arrayMap(i -> ${zipf(u('100 + i'), PATHS)}, range(x_npv))) AS x_pages,
  arrayCumSum(arrayMap(i -> if(i = 0, 0, 1000 + toUInt64(-log(1 - ${u('200 + i')}) * 40000)), range(x_n))) AS x_offsets,
  x_start + toInt64(x_offsets[-1]) AS x_last,
  x_n > 1 AND cityHash64({seed:UInt64}, number, 14) % 2 = 0 AS x_paired,
  x_vk % 2 = 0 AS x_exposed,
  if(x_vk % 4 = 0, 'A', 'B') AS x_variant
FROM numbers({s0:UInt64}, {sn:UInt64})`;

const eventDraw = (k: number): string => `(cityHash64({seed:UInt64}, x_s, i, ${k}) / ${U64})`;

/**
 * Events as the processor writes them. `saltDay`: the schema has the `salt_day` column (migration 11),
 * written as the collector stamps it; `visit`: the `session_*` visit attributes (migration 14),
 * the session's on every event of it.
 */
function insertEventsSql(saltDay: boolean, visit: boolean): string {
  return `INSERT INTO events (site, timestamp, event_id, event_id_from_client, name, session_id, visitor_id,${saltDay ? ' salt_day,' : ''} hostname,
  pathname, referrer, source, channel, utm_source, utm_medium, utm_campaign, utm_content, utm_term, click_ids, country, browser,
  browser_version, os, os_version, device, screen, interactive, props, revenue_amount, revenue_currency, exp_ids, exp_variants${
    visit ? ',\n  session_referrer, session_source, session_channel, session_utm_source, session_utm_medium, session_utm_campaign, session_utm_content, session_utm_term' : ''
  })
SELECT
  {site:String},
  fromUnixTimestamp64Milli(x_start + toInt64(x_offsets[i + 1]), 'UTC'),
  lower(concat(hex(cityHash64({seed:UInt64}, 'event-id', x_s, i, 1)), hex(cityHash64({seed:UInt64}, 'event-id', x_s, i, 2)))),
  0,
  if(i < x_npv, 'pageview', ${strings(CUSTOM_EVENTS.map((c) => c.name))}[arrayFirstIndex(c -> c > ${eventDraw(1)} * 100, ${cumulative(CUSTOM_EVENTS.map((c) => c.weight))})]) AS e_name,
  x_session,
  x_visitor,${saltDay ? '\n  x_salt_day,' : ''}
  x_hostname,
  if(i < x_npv, x_pages[i + 1], x_pages[-1]) AS e_path,
  if(i = 0, x_referrer, ''),
  if(i = 0, x_source, ''),
  if(i = 0, x_channel, 'Direct'),
  if(i = 0, x_utm_source, ''),
  if(i = 0, x_utm_medium, ''),
  if(i = 0, x_utm_campaign, ''),
  if(i = 0, x_utm_content, ''),
  if(i = 0, x_utm_term, ''),
  if(i = 0 AND x_click != '', [x_click], []),
  x_country,
  x_browser,
  x_browser_version,
  x_os,
  x_os_version,
  x_device,
  x_screen,
  1,
  multiIf(
    e_name = 'Outbound Link: Click', map('url', concat('https://github.com/example/repo-', toString(cityHash64({seed:UInt64}, x_s, i, 2) % 50))),
    e_name = 'File Download', map('url', concat('https://example.com/files/report-', toString(cityHash64({seed:UInt64}, x_s, i, 2) % 20), '.pdf')),
    e_name IN ('Signup', 'Purchase'), map('plan', ${strings(PLANS)}[1 + cityHash64({seed:UInt64}, x_vk, 'plan') % ${PLANS.length}]),
    e_name = '404', map('path', e_path),
    CAST(map(), 'Map(String, String)')),
  if(e_name = 'Purchase', toDecimal64(999 + cityHash64({seed:UInt64}, x_s, i, 3) % 49000, 6) / 100, NULL),
  if(e_name = 'Purchase', 'USD', ''),
  if(x_exposed AND e_name = 'pageview', ['pricing-test'], []),
  if(x_exposed AND e_name = 'pageview', [x_variant], [])${
    visit ? ',\n  x_referrer, x_source, x_channel, x_utm_source, x_utm_medium, x_utm_campaign, x_utm_content, x_utm_term' : ''
  }
FROM (${SESSIONS_SQL})
ARRAY JOIN range(x_n) AS i
SETTINGS insert_deduplicate = 0`;
}

/**
 * Session rows as the processor writes them. `first`: the first state (after the first event) of
 * the sessions that span two flushes, +1 version 1. `final`: for those, −1 of the first state and
 * +1 of the final one (version 2); for the others their only state, +1 version 1.
 */
function insertSessionsSql(pass: 'first' | 'final', saltDay: boolean): string {
  const kinds = pass === 'first' ? '[0]' : 'if(x_paired, [1, 2], [2])';
  const where = pass === 'first' ? 'WHERE x_paired' : '';
  return `INSERT INTO sessions (site, session_id, visitor_id,${saltDay ? ' salt_day,' : ''} start, timestamp, duration, pageviews, events, is_bounce, entry_page,
  exit_page, hostname, referrer, source, channel, utm_source, utm_medium, utm_campaign, utm_content, utm_term, country, browser,
  browser_version, os, os_version, device, screen, sign, version)
SELECT
  {site:String},
  x_session,
  x_visitor,${saltDay ? '\n  x_salt_day,' : ''}
  fromUnixTimestamp64Milli(x_start, 'UTC'),
  fromUnixTimestamp64Milli(if(kind = 2, x_last, x_start), 'UTC'),
  if(kind = 2, toUInt32(intDiv(x_offsets[-1], 1000)), 0),
  if(kind = 2, x_npv, 1),
  if(kind = 2, x_n, 1),
  if(kind = 2, x_n <= 1, 1),
  x_pages[1],
  if(kind = 2, x_pages[-1], x_pages[1]),
  x_hostname,
  x_referrer,
  x_source,
  x_channel,
  x_utm_source,
  x_utm_medium,
  x_utm_campaign,
  x_utm_content,
  x_utm_term,
  x_country,
  x_browser,
  x_browser_version,
  x_os,
  x_os_version,
  x_device,
  x_screen,
  if(kind = 1, -1, 1),
  if(kind = 2 AND x_paired, 2, 1)
FROM (${SESSIONS_SQL})
ARRAY JOIN ${kinds} AS kind
${where}
SETTINGS insert_deduplicate = 0`;
}

/** What was generated: enough to recognize the same dataset in a kept data dir. */
interface Dataset {
  layout: number;
  events: number;
  sessions: number;
  seed: number;
  /** UTC midnight of the first of the 30 dense days. */
  baseMs: number;
  days: number;
  /** UTC midnight of the history's first day. */
  historyStartMs: number;
  /** Whether rows carry their salt day (the schema had `salt_day` when seeding). */
  saltDay: boolean;
}

interface SeedReport {
  dataset: Dataset;
  seconds: number;
  reused: boolean;
  rows: { events: number; sessions: number };
  /** The closing job's run over the closed salt days (undefined when the schema has none). */
  closing: { seconds: number; days: number } | undefined;
}

function planSessions(events: number): number {
  return Math.max(1, Math.round(events / MEAN_EVENTS_PER_SESSION));
}

/** The history's first day: the day before the first of the month five months before `lastDayMs`'s. */
export function historyStart(lastDayMs: number): number {
  const d = new Date(lastDayMs);
  return Date.UTC(d.getUTCFullYear(), d.getUTCMonth() - 5, 1) - DAY_MS;
}

/** A run of days with its sessions: the thin history, then the dense 30 days. */
interface Segment {
  /** First day, counted from the history's start. */
  day0: number;
  days: number;
  sessions: number;
}

export function segments(events: number, historyStartMs: number, baseMs: number): Segment[] {
  const historyDays = Math.round((baseMs - historyStartMs) / DAY_MS);
  return [
    { day0: 0, days: historyDays, sessions: planSessions(events * HISTORY_SHARE) },
    { day0: historyDays, days: DAYS, sessions: planSessions(events) },
  ];
}

async function hasColumn(store: Store, table: string, column: string): Promise<boolean> {
  const rows = await store.query<{ n: string }>(
    'SELECT count() AS n FROM system.columns WHERE database = {db:String} AND table = {table:String} AND name = {column:String}',
    { db: DATABASE, table, column },
  );
  return Number(rows[0]?.n ?? 0) > 0;
}

async function seed(
  store: Store,
  ctx: ScenarioContext,
  events: number,
  historyStartMs: number,
  baseMs: number,
  saltDay: boolean,
): Promise<{ sessions: number; seconds: number }> {
  const visit = await hasColumn(store, 'events', 'session_source');
  const segs = segments(events, historyStartMs, baseMs);
  const sessions = segs.reduce((n, g) => n + g.sessions, 0);
  const lastDay = segs[segs.length - 1]!.day0 + DAYS - 1;
  const t0 = Date.now();
  let seg0 = 0;
  let done = 0;
  for (const g of segs) {
    // Equal chunks of about EVENTS_PER_CHUNK events each.
    const chunks = Math.max(1, Math.round((g.sessions * MEAN_EVENTS_PER_SESSION) / EVENTS_PER_CHUNK));
    const perChunk = Math.ceil(g.sessions / chunks);
    const pool = Math.max(1, Math.round((g.sessions / g.days) * VISITOR_POOL_FACTOR));
    for (let s0 = seg0; s0 < seg0 + g.sessions; s0 += perChunk) {
      const params: QueryParams = {
        seed: SEED,
        site: SITE.domain,
        s0,
        sn: Math.min(perChunk, seg0 + g.sessions - s0),
        seg0,
        total: g.sessions,
        day0: g.day0,
        days: g.days,
        lastDay,
        base: historyStartMs,
        pool,
      };
      // As the processor does: a session's first state lands before the events that extend it.
      const t1 = Date.now();
      await store.exec(insertSessionsSql('first', saltDay), params);
      const t2 = Date.now();
      await store.exec(insertEventsSql(saltDay, visit), params);
      const t3 = Date.now();
      await store.exec(insertSessionsSql('final', saltDay), params);
      done += Number(params['sn']);
      ctx.progress(
        `seeded sessions ${num(done)} / ${num(sessions)} (${((Date.now() - t0) / 1000).toFixed(0)} s; chunk: first states ${t2 - t1} ms, events ${t3 - t2} ms, final states ${Date.now() - t3} ms)`,
      );
    }
    seg0 += g.sessions;
  }
  return { sessions, seconds: (Date.now() - t0) / 1000 };
}

const isoDay = (ms: number): string => new Date(ms).toISOString().slice(0, 10);

/**
 * Closes the salt days whose salt is gone by `now` (D + 2 days ≤ now), as the processor does once
 * a salt day's life is over: processor/salt-days.ts `closeSaltDays`. Undefined when the schema
 * has no closed-salt-day tables.
 */
async function closeDays(store: Store, ctx: ScenarioContext, now: Date): Promise<SeedReport['closing']> {
  if (!(await hasColumn(store, 'salt_day_closes', 'salt_day'))) return undefined;
  const t0 = Date.now();
  // The same traffic is read as a site in each zone: the segments are computed for every zone (a
  // kept data dir then serves any --zones).
  const segmentZones = new Map([[SITE.domain, Object.values(ZONES)]]);
  const closed = await closeSaltDays(store, { now: now.getTime(), sites: [SITE.domain], zones: segmentZones });
  // And the open ones (today's and yesterday's) get a provisional generation, as the processor
  // makes every few minutes.
  await provisionOpenSaltDays(store, { now: now.getTime(), sites: [SITE.domain], zones: segmentZones, sessionTimeoutMs: defaultStateLimits.sessionTimeoutMs });
  const seconds = (Date.now() - t0) / 1000;
  ctx.progress(`closing job: ${num(closed.length)} salt days closed in ${seconds.toFixed(1)} s`);
  return { seconds, days: closed.length };
}

/**
 * Waits (bounded) until no merge runs and no mutation is left (a migration's projection being
 * built), so measured queries do not race background work.
 */
async function settleMerges(store: Store, ctx: ScenarioContext): Promise<number> {
  const t0 = Date.now();
  while (Date.now() - t0 < 300_000) {
    const rows = await store.query<{ n: string }>(
      'SELECT (SELECT count() FROM system.merges WHERE database = {db:String}) + (SELECT count() FROM system.mutations WHERE database = {db:String} AND NOT is_done) AS n',
      { db: DATABASE },
    );
    if (Number(rows[0]?.n ?? 0) === 0) break;
    await new Promise((r) => setTimeout(r, 1000));
  }
  const waited = (Date.now() - t0) / 1000;
  if (waited > 1) ctx.progress(`background merges settled after ${waited.toFixed(0)} s`);
  return waited;
}

// ---------------------------------------------------------------------------------------------
// Checks on the data: rollups hold exactly what the raw tables hold.

interface TotalsRow {
  metric: string;
  raw: number;
  daily: number;
  hourly: number;
}

async function one(store: Store, sql: string): Promise<Record<string, string>> {
  const rows = await store.query<Record<string, string>>(sql, { site: SITE.domain });
  return rows[0] ?? {};
}

/**
 * Whole-dataset totals of the raw tables against the day and hour rollups (`dim = ''`); visitors
 * against the closed salt days plus the raw rows of the open ones (processor/salt-days.ts
 * `storedVisitors`), as unique states left the rollups (migration 12).
 */
async function rollupTotals(store: Store): Promise<TotalsRow[]> {
  const rawEvents = await one(
    store,
    "SELECT countIf(name = 'pageview') AS pageviews, count() AS events, uniqExact(visitor_id) AS visitors FROM events WHERE site = {site:String}",
  );
  // Unique visitors left the rollups (migration 12): closed salt days plus raw rows of open ones.
  const stored = async (side: 'event' | 'session'): Promise<string> =>
    String((await storedVisitors(store, { sites: [SITE.domain], side, dims: [''] }))[0]?.visitors ?? 0);
  const [eventVisitors, sessionVisitors] = [await stored('event'), await stored('session')];
  const eventRollup = async (t: string): Promise<Record<string, string>> => ({
    ...(await one(store, `SELECT sum(pageviews) AS pageviews, sum(events) AS events FROM ${t} WHERE site = {site:String} AND dim = ''`)),
    visitors: eventVisitors,
  });
  const [daily, hourly] = [await eventRollup('rollup_daily'), await eventRollup('rollup_hourly')];
  const rawSessions = await one(
    store,
    'SELECT count() AS visits, sum(b) AS bounces, sum(d) AS duration, uniqExact(v) AS visitors FROM (SELECT session_id, argMax(visitor_id, version) AS v,' +
      ' sum(sign) AS n, sum(sign * is_bounce) AS b, sum(sign * duration) AS d FROM sessions WHERE site = {site:String} GROUP BY session_id HAVING n > 0)',
  );
  const sessionRollup = async (t: string): Promise<Record<string, string>> => ({
    ...(await one(store, `SELECT sum(visits) AS visits, sum(bounces) AS bounces, sum(duration) AS duration FROM ${t} WHERE site = {site:String} AND dim = ''`)),
    visitors: sessionVisitors,
  });
  const [sDaily, sHourly] = [await sessionRollup('sessions_daily'), await sessionRollup('sessions_hourly')];
  const row = (metric: string, raw: Record<string, string>, d: Record<string, string>, h: Record<string, string>, key: string): TotalsRow => ({
    metric,
    raw: Number(raw[key] ?? NaN),
    daily: Number(d[key] ?? NaN),
    hourly: Number(h[key] ?? NaN),
  });
  return [
    row('pageviews (events)', rawEvents, daily, hourly, 'pageviews'),
    row('events (events)', rawEvents, daily, hourly, 'events'),
    row('visitors (events)', rawEvents, daily, hourly, 'visitors'),
    row('visits (sessions)', rawSessions, sDaily, sHourly, 'visits'),
    row('bounces (sessions)', rawSessions, sDaily, sHourly, 'bounces'),
    row('duration s (sessions)', rawSessions, sDaily, sHourly, 'duration'),
    row('visitors (sessions)', rawSessions, sDaily, sHourly, 'visitors'),
  ];
}

async function describeData(store: Store, baseMs: number): Promise<Record<string, number>> {
  const e = await store.query<Record<string, string>>(
    'SELECT count() AS rows, uniqExact(pathname) AS paths, uniqExact(country) AS countries, uniqExact(source) AS sources,' +
      " countIf(name != 'pageview') AS custom_events, countIf(revenue_amount IS NOT NULL) AS purchases, uniqExact(visitor_id) AS visitors," +
      ' countIf(timestamp >= {base:DateTime64(3, \'UTC\')}) AS recent_events FROM events WHERE site = {site:String}',
    { site: SITE.domain, base: new Date(baseMs) },
  );
  const m = await one(
    store,
    'SELECT count() AS n FROM (SELECT visitor_id FROM events WHERE site = {site:String} GROUP BY visitor_id HAVING min(toDate(timestamp)) != max(toDate(timestamp)))',
  );
  const s = await one(store, 'SELECT count() AS rows FROM sessions WHERE site = {site:String}');
  const parts = await store.query<{ table: string; parts: string; bytes: string }>(
    'SELECT table, count() AS parts, sum(bytes_on_disk) AS bytes FROM system.parts WHERE database = {db:String} AND active' +
      " AND (table IN ('events', 'sessions') OR startsWith(table, 'rollup_') OR startsWith(table, 'sessions_') OR startsWith(table, 'salt_day_')) GROUP BY table ORDER BY table",
    { db: DATABASE },
  );
  const row = e[0] ?? {};
  const out: Record<string, number> = {
    event_rows: Number(row['rows']),
    session_rows: Number(s['rows']),
    visitors: Number(row['visitors']),
    recent_events: Number(row['recent_events']),
    midnight_visitors: Number(m['n']),
    distinct_paths: Number(row['paths']),
    countries: Number(row['countries']),
    sources: Number(row['sources']),
    custom_events: Number(row['custom_events']),
    purchases: Number(row['purchases']),
  };
  for (const p of parts) {
    out[`${p.table}_parts`] = Number(p.parts);
    out[`${p.table}_mb`] = Math.round(Number(p.bytes) / 1048576);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Queries: what the dashboard asks for.

/**
 * Runs for every pair but UTC 30d: the targets are stated for 30 days, and a raw read of a
 * 10M-event site takes seconds on 2 cores, so the other ranges and zones get a quarter of the runs
 * (at least 3).
 */
export function secondaryRuns(runs: number): number {
  return Math.max(3, Math.round(runs / 4));
}

interface DashboardQuery {
  name: string;
  body: (range: RangeName) => Record<string, unknown>;
  /** A one-filter breakdown (the dashboard's click-to-filter): read raw, target p95 < 300 ms. */
  filtered?: boolean;
}

const LIST_LIMIT = 10;

function breakdown(name: string, dimension: string, metrics: string[], filter?: [string, string, string[]]): DashboardQuery {
  return {
    name,
    body: (range) => ({
      site_id: SITE.domain,
      metrics,
      date_range: range,
      dimensions: [dimension],
      ...(filter === undefined ? {} : { filters: [filter] }),
      pagination: { limit: LIST_LIMIT },
    }),
    ...(filter === undefined ? {} : { filtered: true }),
  };
}

const QUERIES: readonly DashboardQuery[] = [
  {
    name: 'top stats',
    body: (range) => ({
      site_id: SITE.domain,
      metrics: ['visitors', 'visits', 'pageviews', 'bounce_rate', 'visit_duration', 'views_per_visit'],
      date_range: range,
    }),
  },
  {
    // The dashboard's graph: days over a range, hours over one day.
    name: 'timeseries',
    body: (range) => ({ site_id: SITE.domain, metrics: ['visitors', 'pageviews'], date_range: range, dimensions: [range === 'day' ? 'time:hour' : 'time:day'] }),
  },
  breakdown('top pages', 'event:page', ['visitors', 'pageviews']),
  breakdown('sources', 'visit:source', ['visitors', 'bounce_rate', 'visit_duration']),
  breakdown('channels', 'visit:channel', ['visitors']),
  breakdown('countries', 'visit:country', ['visitors']),
  breakdown('devices', 'visit:device', ['visitors']),
  breakdown('browsers', 'visit:browser', ['visitors']),
  breakdown('OS', 'visit:os', ['visitors']),
  breakdown('goals', 'event:goal', ['visitors', 'events', 'conversion_rate']),
  breakdown('entry pages', 'visit:entry_page', ['visitors', 'visits']),
  breakdown('exit pages', 'visit:exit_page', ['visitors', 'visits']),
  breakdown('utm_source', 'visit:utm_source', ['visitors']),
  // One filter, as a click on a row of another report sets it.
  breakdown('pages | DE', 'event:page', ['visitors', 'pageviews'], ['is', 'visit:country', ['DE']]),
  breakdown('sources | /pricing', 'visit:source', ['visitors', 'bounce_rate', 'visit_duration'], ['is', 'event:page', ['/pricing']]),
  breakdown('Signup by source', 'visit:source', ['visitors', 'events', 'conversion_rate'], ['is', 'event:goal', ['Signup']]),
  // The dashboard's own panels after a click: its sources panel for a page, its pages for a source.
  breakdown('source panel | /pricing', 'visit:source', ['visitors'], ['is', 'event:page', ['/pricing']]),
  breakdown('pages | Google', 'event:page', ['visitors', 'pageviews'], ['is', 'visit:source', ['Google']]),
];

/** A store that records the statements it runs, to EXPLAIN them afterwards. */
function recording(store: Store, log: { sql: string; params: QueryParams | undefined }[]): Store {
  return {
    kind: store.kind,
    database: store.database,
    exec: (sql, params, opts) => store.exec(sql, params, opts),
    query: <T>(sql: string, params?: QueryParams) => {
      log.push({ sql, params });
      return store.query<T>(sql, params);
    },
    insert: (t, rows, opts) => store.insert(t, rows, opts),
    ping: () => store.ping(),
    close: () => store.close(),
  };
}

/** Rows and marks ClickHouse plans to read for the statements of one answer (EXPLAIN ESTIMATE). */
async function estimate(store: Store, log: { sql: string; params: QueryParams | undefined }[]): Promise<{ rows: number; marks: number; tables: string }> {
  let rows = 0;
  let marks = 0;
  const tables = new Map<string, number>();
  for (const s of log) {
    const est = await store.query<{ table: string; rows: string; marks: string }>(`EXPLAIN ESTIMATE ${s.sql}`, s.params);
    for (const e of est) {
      rows += Number(e.rows);
      marks += Number(e.marks);
      tables.set(e.table, (tables.get(e.table) ?? 0) + Number(e.rows));
    }
  }
  return { rows, marks, tables: [...tables].map(([t, r]) => `${t} ${num(r)}`).join(', ') };
}

interface Stats {
  p50: number;
  p95: number;
  mean: number;
  min: number;
  max: number;
}

/** Nearest-rank percentiles of the samples (ms). */
export function stats(samples: readonly number[]): Stats {
  const s = [...samples].sort((a, b) => a - b);
  const at = (p: number): number => s[Math.min(s.length - 1, Math.max(0, Math.ceil(p * s.length) - 1))] ?? NaN;
  return { p50: at(0.5), p95: at(0.95), mean: s.reduce((a, b) => a + b, 0) / s.length, min: s[0] ?? NaN, max: s[s.length - 1] ?? NaN };
}

interface QueryResult {
  query: string;
  /** A one-filter breakdown (its target is the raw one). */
  filtered: boolean;
  zone: ZoneName;
  range: RangeName;
  body: Record<string, unknown>;
  runs: number;
  auto: Stats & { samplesMs: number[] };
  raw: Stats & { samplesMs: number[] };
  /** raw p50 / auto p50. */
  ratioP50: number;
  ratioP95: number;
  /** What the planner chose for the main read, every table the auto answer read, and why raw. */
  autoSource: string;
  autoTables: string[];
  autoReason: string | undefined;
  /** Whether every auto answer equalled the raw answer. */
  equal: boolean;
  mismatch: string | undefined;
  resultRows: number;
  estimate: { auto: { rows: number; marks: number; tables: string }; raw: { rows: number; marks: number; tables: string } };
}

function answerKey(r: QueryResponse): string {
  return JSON.stringify(r.results);
}

function firstDifference(a: QueryResponse, b: QueryResponse): string {
  const n = Math.max(a.results.length, b.results.length);
  for (let i = 0; i < n; i++) {
    const x = JSON.stringify(a.results[i]);
    const y = JSON.stringify(b.results[i]);
    if (x !== y) return `row ${i}: auto ${x ?? '(none)'} vs raw ${y ?? '(none)'}`;
  }
  return 'results differ';
}

async function timed(store: Store, site: QuerySite, body: unknown, now: Date, source: 'auto' | 'raw'): Promise<{ ms: number; answer: QueryResponse }> {
  const t0 = performance.now();
  const answer = await runQuery(store, site, body, now, { source });
  return { ms: performance.now() - t0, answer };
}

async function measure(
  store: Store,
  ctx: ScenarioContext,
  q: DashboardQuery,
  zone: ZoneName,
  range: RangeName,
  now: Date,
  runs: number,
): Promise<QueryResult> {
  const body = q.body(range);
  const site: QuerySite = { ...SITE, timezone: ZONES[zone] };
  // Warm-up 1 through a recording store, for the plans; then the others plain.
  const autoLog: { sql: string; params: QueryParams | undefined }[] = [];
  const rawLog: { sql: string; params: QueryParams | undefined }[] = [];
  const first = await runQuery(recording(store, autoLog), site, body, now, { source: 'auto' });
  const firstRaw = await runQuery(recording(store, rawLog), site, body, now, { source: 'raw' });
  // The other warm-ups end on an auto answer, so the auto block below does not start right after
  // a raw scan of the same query.
  for (let i = 1; i < WARMUPS; i++) {
    await timed(store, site, body, now, 'raw');
    await timed(store, site, body, now, 'auto');
  }
  const expected = answerKey(firstRaw);
  let mismatch = answerKey(first) === expected ? undefined : firstDifference(first, firstRaw);
  const autoMs: number[] = [];
  const rawMs: number[] = [];
  // Each mode in its own block of runs (auto, then raw). Interleaved, half the auto answers ran
  // right after a raw scan of millions of rows of the same query, and the slowest of them set
  // the auto p95 (at 5 runs, the worst run).
  for (const source of ['auto', 'raw'] as const) {
    for (let r = 0; r < runs; r++) {
      const t = await timed(store, site, body, now, source);
      (source === 'auto' ? autoMs : rawMs).push(t.ms);
      if (mismatch === undefined && answerKey(t.answer) !== expected) {
        mismatch = `run ${r} (${source}): ${source === 'auto' ? firstDifference(t.answer, firstRaw) : 'raw answer changed between runs'}`;
      }
    }
  }
  const auto = stats(autoMs);
  const raw = stats(rawMs);
  const est = { auto: await estimate(store, autoLog), raw: await estimate(store, rawLog) };
  const result: QueryResult = {
    query: q.name,
    filtered: q.filtered === true,
    zone,
    range,
    body,
    runs,
    auto: { ...auto, samplesMs: autoMs.map((x) => Math.round(x * 100) / 100) },
    raw: { ...raw, samplesMs: rawMs.map((x) => Math.round(x * 100) / 100) },
    ratioP50: raw.p50 / auto.p50,
    ratioP95: raw.p95 / auto.p95,
    autoSource: first.meta.source,
    autoTables: first.meta.tables,
    autoReason: first.meta.source_reason,
    equal: mismatch === undefined,
    mismatch,
    resultRows: first.results.length,
    estimate: est,
  };
  ctx.progress(
    `${zone.padEnd(8)} ${range.padEnd(3)} ${q.name.padEnd(18)} auto p50 ${ms(auto.p50)} p95 ${ms(auto.p95)} | raw p50 ${ms(raw.p50)} p95 ${ms(raw.p95)} | ×${result.ratioP50.toFixed(1)} | ${first.meta.tables.join('+')}${mismatch === undefined ? '' : ' | MISMATCH'}`,
  );
  if (mismatch !== undefined) process.stderr.write(`\n!!! query ${q.name} ${zone} ${range}: auto and raw answers differ: ${mismatch}\n\n`);
  return result;
}

/** Tables of the raw data. */
const RAW_TABLES = new Set(['events', 'sessions']);

/** The planner sent the main read to the raw tables (its reason is in `autoReason`). */
function wentRaw(r: QueryResult): boolean {
  return r.autoSource === 'raw';
}

/**
 * `rollup_daily` alone; `rollup_daily + raw` when the answer also read raw rows: by design, those
 * of the salt days not closed yet (the last two UTC days) or of hours a rollup does not cover;
 * `RAW` when the planner sent the main read to the raw tables.
 */
function sourceLabel(r: QueryResult): string {
  if (wentRaw(r)) return 'RAW';
  return r.autoTables.some((t) => RAW_TABLES.has(t)) ? `${r.autoSource} + raw` : r.autoSource;
}

// ---------------------------------------------------------------------------------------------

function readDataset(path: string): Dataset | undefined {
  if (!existsSync(path)) return undefined;
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as Dataset;
  } catch {
    return undefined;
  }
}

export function queryScenario(o: QueryOptions): Scenario {
  return {
    name: 'query',
    summary: `dashboard queries of one site (${num(o.events)} events over 30 days, a thin history to 6 months, generated in chDB) in three zones: auto vs raw, p50/p95`,
    async run(ctx) {
      const dataDir = o.dataDir ?? (await mkdtemp(join(tmpdir(), 'farol-bench-query-')));
      mkdirSync(dataDir, { recursive: true });
      const marker = join(dataDir, 'bench-query-dataset.json');
      const store = openChdbStore({ dataDir, database: DATABASE });
      try {
        await migrate(store, { database: DATABASE, retentionDays: 395 });
        let dataset = readDataset(marker);
        let seedReport: SeedReport;
        if (dataset !== undefined && dataset.layout === LAYOUT && dataset.events === o.events && dataset.seed === SEED) {
          ctx.progress(
            `reusing the dataset in ${dataDir} (${num(dataset.events)} events over ${DAYS} days from ${isoDay(dataset.baseMs)}, history from ${isoDay(dataset.historyStartMs)})`,
          );
          const rows = await describeData(store, dataset.baseMs);
          // Idempotent: closes only what the kept data has not closed yet (seeded before migration 11, say).
          const closing = await closeDays(store, ctx, new Date(dataset.baseMs + DAYS * DAY_MS - 1000));
          seedReport = { dataset, seconds: 0, reused: true, rows: { events: rows['event_rows'] ?? 0, sessions: rows['session_rows'] ?? 0 }, closing };
        } else {
          const existing = await one(store, 'SELECT count() AS n FROM events WHERE site = {site:String}');
          if (Number(existing['n']) > 0) throw new Error(`${dataDir} holds other data for ${SITE.domain}: use an empty --data-dir`);
          // The last of the 30 days is today (UTC), so the shortcuts 30d, 7d and day cover it.
          const baseMs = Math.floor(Date.now() / DAY_MS) * DAY_MS - (DAYS - 1) * DAY_MS;
          const historyStartMs = historyStart(baseMs + (DAYS - 1) * DAY_MS);
          const saltDay = (await hasColumn(store, 'events', 'salt_day')) && (await hasColumn(store, 'sessions', 'salt_day'));
          ctx.progress(
            `seeding ~${num(o.events)} events over ${DAYS} days and ~${num(o.events * HISTORY_SHARE)} over the ${num((baseMs - historyStartMs) / DAY_MS)} days before into chDB at ${dataDir}` +
              (saltDay ? ', with salt days' : ' (the schema has no salt_day)'),
          );
          const seeded = await seed(store, ctx, o.events, historyStartMs, baseMs, saltDay);
          dataset = { layout: LAYOUT, events: o.events, sessions: seeded.sessions, seed: SEED, baseMs, days: DAYS, historyStartMs, saltDay };
          const closing = await closeDays(store, ctx, new Date(baseMs + DAYS * DAY_MS - 1000));
          writeFileSync(marker, `${JSON.stringify(dataset)}\n`);
          seedReport = { dataset, seconds: seeded.seconds, reused: false, rows: { events: 0, sessions: 0 }, closing };
        }
        const mergeWaitS = await settleMerges(store, ctx);
        const data = await describeData(store, dataset.baseMs);
        seedReport.rows = { events: data['event_rows'] ?? 0, sessions: data['session_rows'] ?? 0 };
        ctx.progress(`${num(data['event_rows'])} events, ${num(data['session_rows'])} session rows; checking rollup totals`);
        const totals = await rollupTotals(store);
        const totalsEqual = totals.every((t) => t.raw === t.daily && t.raw === t.hourly);

        // The floor: a round trip through the store that reads nothing.
        const floorMs: number[] = [];
        for (let i = 0; i < WARMUPS + o.runs; i++) {
          const t0 = performance.now();
          await store.query('SELECT 1 AS one');
          if (i >= WARMUPS) floorMs.push(performance.now() - t0);
        }
        const floor = stats(floorMs);
        ctx.progress(`floor (SELECT 1 through the store): p50 ${ms(floor.p50)} p95 ${ms(floor.p95)}`);

        // Queries run as of the last second of the last day.
        const now = new Date(dataset.baseMs + DAYS * DAY_MS - 1000);
        const results: QueryResult[] = [];
        for (const zone of o.zones) {
          for (const range of RANGES.filter((r) => o.ranges.includes(r))) {
            const runs = range === '30d' && zone === 'utc' ? o.runs : secondaryRuns(o.runs);
            for (const q of QUERIES) results.push(await measure(store, ctx, q, zone, range, now, runs));
          }
        }
        const out = report(o, seedReport, mergeWaitS, data, totals, totalsEqual, results, now, floor);
        if (o.compare !== undefined) {
          const c = comparison(o.compare, results, o.events);
          out.report += `\n\n${c.report}`;
          out.checks.push(...c.checks);
          out.data['comparison'] = c.data;
        }
        return out;
      } finally {
        await store.close();
        if (o.dataDir === undefined) await rm(dataDir, { recursive: true, force: true });
      }
    },
  };
}

function report(
  o: QueryOptions,
  seeded: SeedReport,
  mergeWaitS: number,
  data: Record<string, number>,
  totals: TotalsRow[],
  totalsEqual: boolean,
  results: QueryResult[],
  now: Date,
  floor: Stats,
): { report: string; checks: Check[]; data: Record<string, unknown> } {
  const lines: string[] = [];
  const ds = seeded.dataset;
  lines.push(
    `Dataset: ${num(seeded.rows.events)} events, ${num(seeded.rows.sessions)} session rows (${num(ds.sessions)} sessions), ` +
      `${num(data['visitors'])} visitors, ${num(data['distinct_paths'])} paths, ${num(data['countries'])} countries, ` +
      `${num(data['sources'])} sources, ${num(data['custom_events'])} custom events; ${num(data['recent_events'])} events in the ${DAYS} days from ${isoDay(ds.baseMs)}, ` +
      `the rest from ${isoDay(ds.historyStartMs)}; ${num(data['midnight_visitors'])} visitor ids seen on two days; ${ds.saltDay ? 'rows carry their salt day' : 'no salt_day column'}; ` +
      `site ${SITE.domain} read in ${o.zones.map((z) => ZONES[z]).join(', ')}; now = ${now.toISOString()}`,
  );
  lines.push(
    seeded.reused
      ? 'Seeding: reused a kept data dir'
      : `Seeding: ${seeded.seconds.toFixed(1)} s (${num(seeded.rows.events / seeded.seconds)} events/s, inserts of ~${num(EVENTS_PER_CHUNK)} events with the views filling the rollups)` +
          (mergeWaitS > 1 ? `, then ${mergeWaitS.toFixed(0)} s for merges` : '') +
          (seeded.closing === undefined ? '' : `; closing job: ${num(seeded.closing.days)} salt days in ${seeded.closing.seconds.toFixed(1)} s`),
  );
  const parts = Object.keys(data)
    .filter((k) => k.endsWith('_parts'))
    .map((k) => k.slice(0, -'_parts'.length))
    .map((t) => `${t} ${num(data[`${t}_parts`])} parts/${num(data[`${t}_mb`])} MB`)
    .join(', ');
  lines.push(`Storage: ${parts}`, '');
  lines.push('Rollup totals vs raw totals (whole dataset):');
  lines.push(
    table(
      ['metric', 'raw', 'rollup daily', 'rollup hourly', 'equal'],
      totals.map((t) => [t.metric, num(t.raw), num(t.daily), num(t.hourly), t.raw === t.daily && t.raw === t.hourly ? 'yes' : 'NO']),
    ),
  );
  lines.push('');
  lines.push(
    `Queries: runQuery as the planner chooses (auto) and forced raw, each mode in its own block of runs after ${WARMUPS} warm-ups of both (the last an auto one): ${o.runs} runs each for UTC 30d, ` +
      `${secondaryRuns(o.runs)} for the other ranges and zones. Floor (SELECT 1 through the store): p50 ${ms(floor.p50)}, p95 ${ms(floor.p95)}.`,
  );
  lines.push(
    table(
      ['zone', 'range', 'query', 'auto source', 'auto p50', 'auto p95', 'raw p50', 'raw p95', 'raw/auto p50', 'est. rows auto', 'est. rows raw', 'answers'],
      results.map((r) => [
        r.zone,
        r.range,
        r.query,
        sourceLabel(r),
        ms(r.auto.p50),
        ms(r.auto.p95),
        ms(r.raw.p50),
        ms(r.raw.p95),
        `×${r.ratioP50.toFixed(1)}`,
        num(r.estimate.auto.rows),
        num(r.estimate.raw.rows),
        r.equal ? 'equal' : 'MISMATCH',
      ]),
    ),
  );
  const raw = results.filter((r) => wentRaw(r) && !r.filtered);
  if (raw.length > 0) {
    lines.push('');
    lines.push('Main queries the planner sent to the raw tables (the one-filter breakdowns always go there):');
    for (const r of raw) lines.push(`  ${r.zone} ${r.range} ${r.query}: ${r.autoReason ?? 'a totals read'} (read ${r.autoTables.join(', ')})`);
  }
  const mismatches = results.filter((r) => !r.equal);
  if (mismatches.length > 0) {
    lines.push('');
    lines.push('!!! AUTO AND RAW ANSWERS DIFFER:');
    for (const r of mismatches) lines.push(`  ${r.zone} ${r.range} ${r.query}: ${r.mismatch ?? ''}`);
  }

  const at30 = results.filter((r) => r.range === '30d');
  const main30 = at30.filter((r) => !r.filtered);
  const filtered30 = at30.filter((r) => r.filtered);
  const label = (r: QueryResult): string => `${r.query} (${r.zone})`;
  const fromRollups = main30.filter((r) => !wentRaw(r));
  const worstP95 = Math.max(...main30.map((r) => r.auto.p95));
  const slowP95 = main30.filter((r) => r.auto.p95 >= TARGET_P95_MS);
  const lowRatio = main30.filter((r) => r.ratioP50 < TARGET_RATIO);
  const minRatio = Math.min(...main30.map((r) => r.ratioP50));
  const worstFiltered = Math.max(...filtered30.map((r) => r.auto.p95));
  const slowFiltered = filtered30.filter((r) => r.auto.p95 >= TARGET_FILTERED_P95_MS);
  const missed = (rs: QueryResult[]): string =>
    rs.length === 0 ? '' : ` (missed: ${rs.slice(0, 4).map(label).join(', ')}${rs.length > 4 ? ` and ${rs.length - 4} more` : ''})`;
  const checks: Check[] = [
    {
      name: 'rollup totals = raw totals (pageviews, events, visits, bounces, duration; visitors from closed salt days + open ones)',
      value: totalsEqual ? 'equal' : 'differ',
      target: 'equal',
      pass: totalsEqual,
      kind: 'correctness',
    },
    {
      name: 'auto answers = raw answers (every query, zone, range and run)',
      value: `${results.length - mismatches.length} / ${results.length} equal`,
      target: 'all',
      pass: mismatches.length === 0,
      kind: 'correctness',
    },
  ];
  if (main30.length > 0) {
    checks.push(
      {
        name: '30d main dashboard queries answered from rollups (raw rows of open salt days aside)',
        value: `${fromRollups.length} / ${main30.length}${missed(main30.filter(wentRaw)).replace('missed', 'raw')}`,
        target: 'all',
        pass: fromRollups.length === main30.length,
        kind: 'target',
      },
      {
        name: '30d main queries, auto p95, worst',
        value: ms(worstP95),
        target: `< ${TARGET_P95_MS} ms${missed(slowP95)}`,
        pass: slowP95.length === 0,
        kind: 'target',
      },
      {
        name: '30d main queries, raw p50 / auto p50, lowest',
        value: `×${minRatio.toFixed(1)}`,
        target: `≥ ×${TARGET_RATIO}${missed(lowRatio)}`,
        pass: lowRatio.length === 0,
        kind: 'target',
      },
    );
  }
  if (filtered30.length > 0) {
    checks.push({
      name: '30d one-filter breakdowns, auto p95, worst',
      value: ms(worstFiltered),
      target: `< ${TARGET_FILTERED_P95_MS} ms${missed(slowFiltered)}`,
      pass: slowFiltered.length === 0,
      kind: 'target',
    });
  }
  return {
    report: lines.join('\n'),
    checks,
    data: {
      options: o,
      site: SITE,
      now: now.toISOString(),
      dataset: ds,
      seeding: { seconds: seeded.seconds, reused: seeded.reused, rows: seeded.rows, mergeWaitS, closing: seeded.closing },
      storage: data,
      totals,
      floorMs: floor,
      queries: results,
    },
  };
}

/** What `--compare` reads of an earlier run's JSON (older runs have no zone: they were UTC). */
interface EarlierRun {
  argv?: string[];
  machine?: { gitCommit?: string };
  result?: { dataset?: { events?: number }; options?: { events?: number }; queries?: (Partial<QueryResult> & { zone?: ZoneName })[] };
}

/**
 * This run against an earlier one, per (zone, range, query) both measured: auto and raw p95 then
 * and now, and their ratios. When the earlier run had fewer events, the main queries' auto p95 at
 * 30d must not grow more than {@link TARGET_GROWTH}× (issue #9: rollup answers barely move).
 */
export function comparison(path: string, results: readonly QueryResult[], events: number): { report: string; checks: Check[]; data: Record<string, unknown> } {
  const earlier = JSON.parse(readFileSync(path, 'utf8')) as EarlierRun;
  const thenEvents = earlier.result?.dataset?.events ?? earlier.result?.options?.events;
  const key = (zone: string, range: string, query: string): string => `${zone} ${range} ${query}`;
  const before = new Map((earlier.result?.queries ?? []).map((q) => [key(q.zone ?? 'utc', q.range ?? '', q.query ?? ''), q]));
  const rows: { zone: ZoneName; range: RangeName; query: string; filtered: boolean; autoThen: number; autoNow: number; rawThen: number; rawNow: number }[] = [];
  for (const r of results) {
    const b = before.get(key(r.zone, r.range, r.query));
    if (b?.auto === undefined || b.raw === undefined) continue;
    rows.push({ zone: r.zone, range: r.range, query: r.query, filtered: r.filtered, autoThen: b.auto.p95, autoNow: r.auto.p95, rawThen: b.raw.p95, rawNow: r.raw.p95 });
  }
  const x = (now: number, then: number): string => `×${(now / then).toFixed(2)}`;
  const lines = [
    `Compared with ${path} (${thenEvents === undefined ? '? events' : `${num(thenEvents)} events`}, commit ${earlier.machine?.gitCommit ?? '?'}): p95 then → now`,
    table(
      ['zone', 'range', 'query', 'auto p95 then', 'auto p95 now', 'auto now/then', 'raw p95 then', 'raw p95 now', 'raw now/then'],
      rows.map((r) => [r.zone, r.range, r.query, ms(r.autoThen), ms(r.autoNow), x(r.autoNow, r.autoThen), ms(r.rawThen), ms(r.rawNow), x(r.rawNow, r.rawThen)]),
    ),
  ];
  const checks: Check[] = [];
  const main30 = rows.filter((r) => r.range === '30d' && !r.filtered);
  if (thenEvents !== undefined && thenEvents < events && main30.length > 0) {
    const grew = main30.filter((r) => r.autoNow > TARGET_GROWTH * r.autoThen);
    const worst = Math.max(...main30.map((r) => r.autoNow / r.autoThen));
    checks.push({
      name: `30d main queries, auto p95 at ${num(events)} / at ${num(thenEvents)} events, worst`,
      value: `×${worst.toFixed(2)}`,
      target: `≤ ×${TARGET_GROWTH}${grew.length > 0 ? ` (missed: ${grew.slice(0, 4).map((r) => `${r.query} (${r.zone})`).join(', ')}${grew.length > 4 ? ` and ${grew.length - 4} more` : ''})` : ''}`,
      pass: grew.length === 0,
      kind: 'target',
    });
  }
  return { report: lines.join('\n'), checks, data: { path, events: thenEvents, rows } };
}
