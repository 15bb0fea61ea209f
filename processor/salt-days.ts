import type { Logger } from '../lib/log.ts';
import { fanOut } from '../schemas/migrations/rollups.ts';
import { SALT_DAY_HOURS, saltDayEventDimensions, saltDaySessionDimensions } from '../schemas/migrations/salt-days.ts';
import { DAY_MS, formatDay } from '../store/rows.ts';
import type { Store } from '../store/store.ts';

/**
 * The closing job: the exact unique visitors of each (site, salt day) whose life is over, written
 * to `salt_day_visitors` (see schemas/migrations/salt-days.ts for the table and why the sum over
 * salt days is exact).
 *
 * Salt day D lives from D 00:00 to D+2 00:00 UTC (its salt is deleted then): after that no new
 * event can carry one of its ids, only late ones (a processor catching up on the hub). So:
 *  - a (site, salt day) is (re)computed when its life is over and its raw row counts (events, and
 *    session states) are above those its last complete computation saw: the first close, and
 *    every batch of late rows after it. Rows only ever get added (a session update is a new −1/+1
 *    pair), except when retention expires old ones or a site is deleted: counts going down never
 *    trigger a recomputation, which would forget visitors the raw tables no longer hold;
 *  - each computation writes its rows under a new generation `gen` (the ClickHouse server's clock
 *    in µs, one clock for every processor), then records (site, salt day, gen, counts) in
 *    `salt_day_closes`. Readers take the latest recorded gen: a job killed half-way leaves rows
 *    of a gen nobody reads, and the next run computes the day again from scratch (the counts it
 *    was meant to record were never recorded). Rows of gens older than the latest recorded are
 *    deleted afterwards;
 *  - every step is a function of the raw rows, so several processors running it at once (Event
 *    Hubs, one per consumer) write the same numbers: whichever records last, the readers see a
 *    complete computation that started after the rows its counts name were written. A
 *    computation started later gets a larger gen, so it wins over an older one that records
 *    after it.
 */

/** Options of {@link closeSaltDays}. */
export interface CloseSaltDaysOptions {
  /** The time the job runs at (ms, default `Date.now()`): salt days with D + 2 days ≤ now close. */
  now?: number;
  /** Only these sites (default: every site with rows). */
  sites?: readonly string[];
  /**
   * Only salt days from this UTC day on (days since the epoch; default: all). The processor's
   * periodic run looks back a few weeks; the first run after an upgrade closes the whole history.
   */
  fromDay?: number;
  /**
   * The zones `salt_day_segments` is computed for, per site (default: each site's zone in the
   * `sites` table, UTC for a site without a row). A closed salt day missing one of its site's
   * zones is recomputed: a site that changes its zone gets its segments within one run.
   */
  zones?: ReadonlyMap<string, readonly string[]>;
  log?: Logger;
}

/** One (site, salt day) the job computed. */
export interface ClosedSaltDay {
  site: string;
  /** `YYYY-MM-DD`. */
  saltDay: string;
  gen: string;
  eventRows: number;
  sessionRows: number;
}

interface Count {
  site: string;
  day: string;
  n: string | number;
}

interface Recorded {
  site: string;
  day: string;
  event_rows: string | number;
  session_rows: string | number;
  zones: string[];
}

/** A (site, salt day) to compute. */
interface Todo {
  site: string;
  saltDay: string;
  eventRows: number;
  sessionRows: number;
  zones: readonly string[];
}

/** `YYYY-MM-DD` → UTC day number. */
function dayNumber(iso: string): number {
  return Math.floor(Date.parse(`${iso}T00:00:00Z`) / DAY_MS);
}

/** Hour of the salt day's life (0…47) a time column falls in. */
function hourOfLife(column: string): string {
  return `toUInt8(least(${SALT_DAY_HOURS - 1}, greatest(0, intDiv(toUnixTimestamp(${column}) - toUnixTimestamp(toDateTime({day:Date}, 'UTC')), 3600))))`;
}

/** Rows of one (site, salt day), pruned on the tables' sort key (site, then the row's own UTC day). */
function ofSaltDay(timeColumn: string): string {
  return `site = {site:String} AND salt_day = {day:Date} AND toDate(${timeColumn}) >= {day:Date} AND toDate(${timeColumn}) <= {day:Date} + 1`;
}

/** Distinct visitors per (dim, value, hours seen) from rows `(visitor, h, …columns)` fanned out by `d`. */
function perHours(side: 'event' | 'session', inner: string, arrayJoin: string): string {
  return `INSERT INTO salt_day_visitors (site, side, dim, salt_day, value, hours, gen, visitors)
SELECT {site:String}, '${side}', dim, {day:Date}, value, hours, {gen:UInt64}, count()
FROM (
  SELECT d.1 AS dim, d.2 AS value, visitor, groupBitOr(bitShiftLeft(toUInt64(1), h)) AS hours
  FROM (${inner})
  ARRAY JOIN ${arrayJoin} AS d
  GROUP BY dim, value, visitor
)
GROUP BY dim, value, hours`;
}

/**
 * Distinct visitors per (dim, value) on each run of the (up to three) local dates the salt day's
 * life meets in zone `{tz}` (see `salt_day_segments`). `seg` is the local date's index: the
 * number of local midnights between D 00:00 UTC and the row's time, at most 2 in every real zone
 * (a 48-hour span holds three local midnights only if one falls in its first hour after a 23-hour
 * day; the planner checks the zone's dates before reading a salt day's segments).
 */
function perSegments(side: 'event' | 'session', inner: string, arrayJoin: string): string {
  const runs = [1, 2, 4, 3, 6].map((m) => `countIf(bitAnd(segs, ${m}) != 0)`);
  return `INSERT INTO salt_day_segments (site, side, dim, salt_day, tz, gen, value, v1, v2, v4, v3, v6, v7)
SELECT {site:String}, '${side}', dim, {day:Date}, {tz:String}, {gen:UInt64}, value, ${runs.join(', ')}, count()
FROM (
  SELECT d.1 AS dim, d.2 AS value, visitor, groupBitOr(bitShiftLeft(toUInt8(1), seg)) AS segs
  FROM (${inner})
  ARRAY JOIN ${arrayJoin} AS d
  GROUP BY dim, value, visitor
)
GROUP BY dim, value`;
}

/** The local date index (0…2) of a time column in `{tz}`, counted from D 00:00 UTC's local date. */
function segmentOf(column: string): string {
  return `toUInt8(least(2, greatest(0, dateDiff('day', toDate(toTimeZone(toDateTime({day:Date}, 'UTC'), {tz:String})), toDate(toTimeZone(${column}, {tz:String}))))))`;
}

const eventInner = (time: string, where = ''): string =>
  `SELECT visitor_id AS visitor, ${time}, name, pathname, hostname, country, device, browser, os
   FROM events WHERE ${ofSaltDay('timestamp')}${where}`;
const eventFanOut = `arrayFilter(x -> x.1 != 'page' OR name = 'pageview', ${fanOut(saltDayEventDimensions)})`;

const eventSideSql = perHours('event', eventInner(`${hourOfLife('timestamp')} AS h`), eventFanOut);
const eventSegmentsSql = perSegments('event', eventInner(`${segmentOf('timestamp')} AS seg`), eventFanOut);

// A session counts once, in its latest state (the −1/+1 pairs of older states cancel), at the
// hour its latest start falls in: the raw session side's reading of the same rows.
const sessionColumns = Object.values(saltDaySessionDimensions);
const sessionInner = (time: (start: string) => string, having = ''): string =>
  `SELECT argMax(visitor_id, version) AS visitor, ${time('argMax(start, version)')},
     ${sessionColumns.map((c) => `argMax(${c}, version) AS ${c}`).join(', ')}
   FROM sessions WHERE ${ofSaltDay('start')}
   GROUP BY session_id HAVING sum(sign) > 0${having}`;
const sessionSideSql = perHours('session', sessionInner((start) => `${hourOfLife(start)} AS h`), fanOut(saltDaySessionDimensions));
const sessionSegmentsSql = perSegments('session', sessionInner((start) => `${segmentOf(start)} AS seg`), fanOut(saltDaySessionDimensions));

// The provisional view of an open salt day at watermark `{w}`: events before it, and sessions
// whose latest event is before `{ws}` = w − the session timeout. Such a session is final: an event
// can join it only within the timeout of its last one, so before w, and events before w are all
// in once their count matches (the reader checks it, see {@link provisionOpenSaltDays}).
const provisionalEventSql = perSegments('event', eventInner(`${segmentOf('timestamp')} AS seg`, " AND timestamp < {w:DateTime64(3, 'UTC')}"), eventFanOut);
const provisionalSessionSql = perSegments(
  'session',
  sessionInner((start) => `${segmentOf(start)} AS seg`, " AND argMax(timestamp, version) < {ws:DateTime64(3, 'UTC')}"),
  fanOut(saltDaySessionDimensions),
);

/**
 * Computes the exact unique visitors of every (site, salt day) that closed and is not up to date
 * (never computed, or raw rows added since), and records them. Idempotent; safe to run from
 * several processes at once; resumable (rerun after a kill gives the same numbers). Returns what
 * it computed.
 */
export async function closeSaltDays(store: Store, opts: CloseSaltDaysOptions = {}): Promise<ClosedSaltDay[]> {
  const now = opts.now ?? Date.now();
  // Salt day D closes at D+2 00:00 UTC.
  const lastClosed = Math.floor(now / DAY_MS) - 2;
  const fromDay = opts.fromDay ?? 0;
  if (lastClosed < fromDay) return [];
  const params = { last: formatDay(lastClosed), from: formatDay(fromDay), sites: opts.sites ?? [] };
  const siteFilter = opts.sites === undefined ? '' : ' AND site IN {sites:Array(String)}';
  const counts = (table: string, timeColumn: string): Promise<Count[]> =>
    store.query<Count>(
      `SELECT site, toString(salt_day) AS day, count() AS n FROM ${table}
       WHERE toDate(${timeColumn}) >= {from:Date} AND toDate(${timeColumn}) <= {last:Date} + 1
         AND salt_day >= {from:Date} AND salt_day <= {last:Date}${siteFilter}
       GROUP BY site, salt_day`,
      params,
    );
  const [events, sessions, recorded] = await Promise.all([
    counts('events', 'timestamp'),
    counts('sessions', 'start'),
    store.query<Recorded>(
      `SELECT site, toString(salt_day) AS day, argMax(event_rows, gen) AS event_rows, argMax(session_rows, gen) AS session_rows,
         argMax(zones, gen) AS zones
       FROM salt_day_closes WHERE salt_day >= {from:Date} AND salt_day <= {last:Date}${siteFilter}
       GROUP BY site, salt_day`,
      params,
    ),
  ]);
  const zones = opts.zones ?? (await siteZones(store));
  const zonesOf = (site: string): readonly string[] => zones.get(site) ?? ['UTC'];
  const key = (r: { site: string; day: string }): string => `${r.site}\n${r.day}`;
  const todo = new Map<string, Todo>();
  const entry = (r: Count): Todo => {
    let e = todo.get(key(r));
    if (e === undefined) {
      e = { site: r.site, saltDay: r.day, eventRows: 0, sessionRows: 0, zones: zonesOf(r.site) };
      todo.set(key(r), e);
    }
    return e;
  };
  for (const r of events) entry(r).eventRows = Number(r.n);
  for (const r of sessions) entry(r).sessionRows = Number(r.n);
  const done = new Map(recorded.map((r) => [key(r), r]));
  // Days without rows from a site's first one on are closed too (with no visitors), so a range
  // across them reads no raw rows. Days before a site's first closed one are empty to readers.
  const spans = new Map<string, [number, number]>();
  for (const t of todo.values()) {
    const d = dayNumber(t.saltDay);
    const span = spans.get(t.site);
    spans.set(t.site, span === undefined ? [d, d] : [Math.min(span[0], d), Math.max(span[1], d)]);
  }
  for (const [site, [from, to]] of spans) {
    for (let d = from + 1; d <= Math.max(to, lastClosed); d++) {
      const gap = { site, day: formatDay(d) };
      // Recorded ones are looked at again below (a zone added since).
      if (!todo.has(key(gap))) todo.set(key(gap), { site, saltDay: gap.day, eventRows: 0, sessionRows: 0, zones: zonesOf(site) });
    }
  }
  const closed: ClosedSaltDay[] = [];
  for (const [k, t] of [...todo].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    const before = done.get(k);
    if (
      before !== undefined &&
      t.eventRows <= Number(before.event_rows) &&
      t.sessionRows <= Number(before.session_rows) &&
      t.zones.every((z) => before.zones.includes(z))
    )
      continue;
    closed.push(await closeOne(store, t));
  }
  if (closed.length > 0) {
    await dropOldGenerations(store, closed);
    opts.log?.info({ closed: closed.length, first: closed[0]?.saltDay, last: closed.at(-1)?.saltDay }, 'closed salt days');
  }
  return closed;
}

/** Each site's zone, from the control plane's `sites` table (its latest, undeleted row). */
async function siteZones(store: Store): Promise<Map<string, string[]>> {
  const rows = await store.query<{ domain: string; tz: string; deleted: number | string }>(
    'SELECT domain, argMax(timezone, updated_at) AS tz, argMax(deleted, updated_at) AS deleted FROM sites GROUP BY domain',
  );
  return new Map(rows.filter((r) => Number(r.deleted) === 0).map((r) => [r.domain, [r.tz]]));
}

/** Computes one (site, salt day) under a new generation, then records it as complete. */
async function closeOne(store: Store, t: Todo): Promise<ClosedSaltDay> {
  const [row] = await store.query<{ gen: string }>('SELECT toString(toUnixTimestamp64Micro(now64(6))) AS gen');
  const gen = row?.gen;
  if (gen === undefined) throw new Error('the store did not tell the time');
  const params = { site: t.site, day: t.saltDay, gen };
  if (t.eventRows > 0) await store.exec(eventSideSql, params);
  if (t.sessionRows > 0) await store.exec(sessionSideSql, params);
  for (const tz of t.zones) {
    if (t.eventRows > 0) await store.exec(eventSegmentsSql, { ...params, tz });
    if (t.sessionRows > 0) await store.exec(sessionSegmentsSql, { ...params, tz });
  }
  // Last: until this row exists, readers keep the previous generation (or read raw).
  await store.insert('salt_day_closes', [
    { site: t.site, salt_day: t.saltDay, gen, event_rows: t.eventRows, session_rows: t.sessionRows, zones: [...t.zones] },
  ]);
  return { site: t.site, saltDay: t.saltDay, gen, eventRows: t.eventRows, sessionRows: t.sessionRows };
}

/**
 * Deletes the rows of generations older than the latest recorded one, for the salt days just
 * computed (one mutation, run in the background). Never a newer generation: it may be another
 * process's computation still being written.
 */
async function dropOldGenerations(store: Store, closed: readonly ClosedSaltDay[]): Promise<void> {
  const sites = [...new Set(closed.map((c) => c.site))];
  const days = [...new Set(closed.map((c) => c.saltDay))];
  for (const table of ['salt_day_visitors', 'salt_day_segments']) await dropOlder(store, table, sites, days);
}

async function dropOlder(store: Store, table: string, sites: string[], days: string[]): Promise<void> {
  await store.exec(
    `ALTER TABLE ${table} DELETE
     WHERE site IN {sites:Array(String)} AND salt_day IN {days:Array(Date)}
       AND (site, salt_day, gen) IN (
         SELECT v.site, v.salt_day, v.gen FROM (SELECT DISTINCT site, salt_day, gen FROM ${table}
           WHERE site IN {sites:Array(String)} AND salt_day IN {days:Array(Date)}) AS v
         INNER JOIN (SELECT site, salt_day, max(gen) AS latest FROM salt_day_closes
           WHERE site IN {sites:Array(String)} AND salt_day IN {days:Array(Date)} GROUP BY site, salt_day) AS c
         ON v.site = c.site AND v.salt_day = c.salt_day
         WHERE v.gen < c.latest)`,
    { sites, days },
  );
}

/** How far behind `now` a provisional watermark is set: rows older than it are normally written. */
export const PROVISIONAL_MARGIN_MS = 60_000;

/** Options of {@link provisionOpenSaltDays}. */
export interface ProvisionOptions {
  now?: number;
  sites?: readonly string[];
  zones?: ReadonlyMap<string, readonly string[]>;
  /** The processor's session timeout (ProcessorLimits.sessionTimeoutMs). */
  sessionTimeoutMs: number;
  /** Watermark = now − this (default {@link PROVISIONAL_MARGIN_MS}). */
  marginMs?: number;
  log?: Logger;
}

/** One provisional generation written. */
export interface ProvisionedSaltDay {
  site: string;
  saltDay: string;
  gen: string;
  watermark: number;
  eventRows: number;
}

/**
 * Provisional segments of the open salt days (yesterday's and today's, whose ids can still get
 * events): `salt_day_segments` rows under a new generation computed from the rows before a
 * watermark W = now − margin (events before W; sessions whose latest event is before W − the
 * session timeout, which no later event can change), recorded in `salt_day_provisional` with the
 * number of events of any salt day in [the day's 00:00 UTC, W) when it ran (a count readers check
 * on the sort key's days and the timestamp alone). A reader uses them only while that count still
 * holds (a late event before W makes it read the salt day raw until the next run), and adds, exactly, the
 * visitors first seen since: for the few visitors with rows at or after W (sessions: latest event
 * at or after W − timeout), their visitors over all their rows minus those over the rows the
 * generation saw. A (site, salt day) with events of its own is computed again when that count at
 * the new W differs; older provisional generations are deleted. Idempotent and safe to run concurrently, like
 * {@link closeSaltDays}.
 */
export async function provisionOpenSaltDays(store: Store, opts: ProvisionOptions): Promise<ProvisionedSaltDay[]> {
  const now = opts.now ?? Date.now();
  const w = now - (opts.marginMs ?? PROVISIONAL_MARGIN_MS);
  const today = Math.floor(now / DAY_MS);
  const siteFilter = opts.sites === undefined ? '' : ' AND site IN {sites:Array(String)}';
  const params = { from: formatDay(today - 1), to: formatDay(today), w: new Date(w), sites: opts.sites ?? [] };
  // Per site and open day d: the events of any salt day in [d 00:00 UTC, W). A late event of d's
  // salt day before W raises it (one of d − 1's too: a harmless recomputation), and it reads the
  // sort key's days and the timestamp only, so readers check it cheaply (api/query/query.ts).
  const [windows, recorded] = await Promise.all([
    store.query<{ site: string; n_from: string | number; n_to: string | number; own_from: string | number; own_to: string | number }>(
      `SELECT site, count() AS n_from, countIf(toDate(timestamp) >= {to:Date}) AS n_to,
         countIf(salt_day = {from:Date}) AS own_from, countIf(salt_day = {to:Date}) AS own_to FROM events
       WHERE toDate(timestamp) >= {from:Date} AND toDate(timestamp) <= {to:Date} AND timestamp < {w:DateTime64(3, 'UTC')}${siteFilter}
       GROUP BY site`,
      params,
    ),
    store.query<{ site: string; day: string; event_rows: string | number; zones: string[] }>(
      `SELECT site, toString(salt_day) AS day, argMax(event_rows, gen) AS event_rows, argMax(zones, gen) AS zones
       FROM salt_day_provisional WHERE salt_day >= {from:Date} AND salt_day <= {to:Date}${siteFilter} GROUP BY site, salt_day`,
      params,
    ),
  ]);
  const counts = windows
    .flatMap((r) => [
      { site: r.site, day: params.from, n: r.n_from, own: r.own_from },
      { site: r.site, day: params.to, n: r.n_to, own: r.own_to },
    ])
    // A salt day with no event of its own yet has nothing to provision.
    .filter((c) => Number(c.own) > 0);
  const zones = opts.zones ?? (await siteZones(store));
  const done = new Map(recorded.map((r) => [`${r.site}\n${r.day}`, r]));
  const made: ProvisionedSaltDay[] = [];
  for (const c of counts) {
    const siteZonesNow = zones.get(c.site) ?? ['UTC'];
    const before = done.get(`${c.site}\n${c.day}`);
    if (before !== undefined && Number(before.event_rows) === Number(c.n) && siteZonesNow.every((z) => before.zones.includes(z))) continue;
    const [row] = await store.query<{ gen: string }>('SELECT toString(toUnixTimestamp64Micro(now64(6))) AS gen');
    const gen = row?.gen;
    if (gen === undefined) throw new Error('the store did not tell the time');
    const base = { site: c.site, day: c.day, gen, w: new Date(w), ws: new Date(w - opts.sessionTimeoutMs) };
    for (const tz of siteZonesNow) {
      await store.exec(provisionalEventSql, { ...base, tz });
      await store.exec(provisionalSessionSql, { ...base, tz });
    }
    await store.insert('salt_day_provisional', [
      {
        site: c.site,
        salt_day: c.day,
        gen,
        watermark: dateTime(w),
        session_watermark: dateTime(w - opts.sessionTimeoutMs),
        event_rows: Number(c.n),
        zones: [...siteZonesNow],
      },
    ]);
    made.push({ site: c.site, saltDay: c.day, gen, watermark: w, eventRows: Number(c.n) });
  }
  if (made.length > 0) {
    // Older provisional generations of these days, and of days closed since, are not read again.
    await store.exec(
      `ALTER TABLE salt_day_segments DELETE WHERE salt_day >= {from:Date} - 2 AND salt_day <= {to:Date}
         AND (site, salt_day, gen) IN (
           SELECT site, salt_day, gen FROM salt_day_provisional WHERE salt_day >= {from:Date} - 2 AND salt_day <= {to:Date}
             AND (site, salt_day, gen) NOT IN (SELECT site, salt_day, max(gen) FROM salt_day_provisional GROUP BY site, salt_day))`,
      params,
    );
    opts.log?.info({ provisional: made.length }, 'provisional salt days');
  }
  return made;
}

/** A DateTime64(3) value as ClickHouse reads it in a row. */
function dateTime(ms: number): string {
  return new Date(ms).toISOString().replace('T', ' ').replace('Z', '');
}

/** Options of a {@link SaltDayCloser}. */
export interface SaltDayCloserOptions {
  store: Store;
  log: Logger;
  /** How often salt days are checked and closed (ProcessorOptions.closeIntervalMs). */
  intervalMs: number;
  /** How far back the periodic check looks, in days (the first run after a start looks at everything). */
  lookbackDays: number;
  /** Delay between a write of late rows and their recomputation, gathering a burst of writes. */
  debounceMs?: number;
  /** Provisional segments of the open salt days every `intervalMs` (0: none). */
  provisional?: { intervalMs: number; sessionTimeoutMs: number };
  now?: () => number;
}

/**
 * Runs {@link closeSaltDays} in a processor: once at start over the whole history (an upgrade's
 * back-fill, a crash between a write and its recomputation), every `intervalMs` over the last
 * `lookbackDays`, and soon after the processor wrote rows of salt days already closed (late
 * events: the processor knows what it wrote). One run at a time; a failed run is logged and the
 * next one repeats its work.
 */
export class SaltDayCloser {
  private readonly now: () => number;
  private timer: NodeJS.Timeout | undefined;
  private provisionalTimer: NodeJS.Timeout | undefined;
  private soon: NodeJS.Timeout | undefined;
  private chain: Promise<void> = Promise.resolve();
  /** Late rows written and not yet recomputed: the earliest salt day, and the sites. */
  private late: { fromDay: number; sites: Set<string> } | undefined;
  private stopped = false;

  constructor(private readonly opts: SaltDayCloserOptions) {
    this.now = opts.now ?? Date.now;
  }

  start(): void {
    void this.run({});
    this.timer = setInterval(() => {
      void this.run({ fromDay: Math.floor(this.now() / DAY_MS) - this.opts.lookbackDays });
    }, this.opts.intervalMs);
    this.timer.unref();
    const provisional = this.opts.provisional;
    if (provisional !== undefined && provisional.intervalMs > 0) {
      this.provisionalTimer = setInterval(() => {
        this.chain = this.chain.then(async () => {
          if (this.stopped) return;
          try {
            await provisionOpenSaltDays(this.opts.store, { now: this.now(), sessionTimeoutMs: provisional.sessionTimeoutMs, log: this.opts.log });
          } catch (err) {
            this.opts.log.warn({ err }, 'provisional salt days failed; the next run repeats it');
          }
        });
      }, provisional.intervalMs);
      this.provisionalTimer.unref();
    }
  }

  /** Told after rows were written: those of closed salt days are recomputed soon. */
  wrote(rows: Iterable<{ site: string; salt_day: string }>): void {
    if (this.stopped) return;
    // Salt day D is closed from D+2 00:00 UTC on: D < today − 1, compared as ISO dates.
    const open = formatDay(Math.floor(this.now() / DAY_MS) - 1);
    for (const r of rows) {
      if (r.salt_day >= open) continue;
      const day = dayNumber(r.salt_day);
      this.late ??= { fromDay: day, sites: new Set() };
      this.late.fromDay = Math.min(this.late.fromDay, day);
      this.late.sites.add(r.site);
    }
    if (this.late !== undefined && this.soon === undefined) {
      this.soon = setTimeout(() => {
        this.soon = undefined;
        void this.runLate();
      }, this.opts.debounceMs ?? 500);
      this.soon.unref();
    }
  }

  /** Resolves once the runs started or due so far have ended. */
  async settled(): Promise<void> {
    if (this.soon !== undefined) {
      clearTimeout(this.soon);
      this.soon = undefined;
      void this.runLate();
    }
    await this.chain;
  }

  /** Stops the timers after recomputing what late rows are pending. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    clearInterval(this.provisionalTimer);
    await this.settled();
    this.stopped = true;
  }

  private runLate(): Promise<void> {
    const late = this.late;
    this.late = undefined;
    if (late === undefined) return this.chain;
    return this.run({ fromDay: late.fromDay, sites: [...late.sites] });
  }

  private run(scope: { fromDay?: number; sites?: string[] }): Promise<void> {
    this.chain = this.chain.then(async () => {
      if (this.stopped) return;
      try {
        await closeSaltDays(this.opts.store, { ...scope, now: this.now(), log: this.opts.log });
      } catch (err) {
        this.opts.log.warn({ err }, 'closing salt days failed; the next run repeats it');
      }
    });
    return this.chain;
  }
}

/** One row of {@link storedVisitors}. */
export interface StoredVisitors {
  site: string;
  dim: string;
  value: string;
  visitors: number;
}

/**
 * Unique visitors over everything stored, per (site, dim, value) of one side, read the way the
 * planner reads them: closed salt days from `salt_day_visitors` (latest complete generation), the
 * others from their raw rows. For checks (tests, the bench) that the stored numbers equal raw ones.
 */
export async function storedVisitors(
  store: Store,
  opts: { sites: readonly string[]; side: 'event' | 'session'; dims: readonly string[] },
): Promise<StoredVisitors[]> {
  const closes = `SELECT site, salt_day, max(gen) AS gen FROM salt_day_closes WHERE site IN {sites:Array(String)} GROUP BY site, salt_day`;
  const open =
    opts.side === 'event'
      ? `SELECT site, d.1 AS dim, d.2 AS value, uniqExact(visitor_id) AS v FROM events
         ARRAY JOIN arrayFilter(x -> x.1 != 'page' OR name = 'pageview', ${fanOut(saltDayEventDimensions)}) AS d
         WHERE site IN {sites:Array(String)} AND (site, salt_day) NOT IN (SELECT site, salt_day FROM (${closes}))
           AND dim IN {dims:Array(String)} GROUP BY site, dim, value`
      : `SELECT site, d.1 AS dim, d.2 AS value, uniqExact(visitor) AS v FROM (
           SELECT site, argMax(visitor_id, version) AS visitor, ${sessionColumns.map((c) => `argMax(${c}, version) AS ${c}`).join(', ')}
           FROM sessions WHERE site IN {sites:Array(String)} AND (site, salt_day) NOT IN (SELECT site, salt_day FROM (${closes}))
           GROUP BY site, session_id HAVING sum(sign) > 0)
         ARRAY JOIN ${fanOut(saltDaySessionDimensions)} AS d
         WHERE dim IN {dims:Array(String)} GROUP BY site, dim, value`;
  const rows = await store.query<{ site: string; dim: string; value: string; visitors: string | number }>(
    `SELECT site, dim, value, sum(v) AS visitors FROM (
       SELECT site, dim, value, sum(visitors) AS v FROM salt_day_visitors
       WHERE site IN {sites:Array(String)} AND side = {side:String} AND dim IN {dims:Array(String)}
         AND (site, salt_day, gen) IN (${closes})
       GROUP BY site, dim, value
       UNION ALL
       ${open})
     GROUP BY site, dim, value ORDER BY site, dim, value`,
    { sites: opts.sites, side: opts.side, dims: opts.dims },
  );
  return rows.map((r) => ({ site: r.site, dim: r.dim, value: r.value, visitors: Number(r.visitors) }));
}
