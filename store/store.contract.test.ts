import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EnrichedEvent } from '../schemas/enriched-event.ts';
import { latestVersion } from '../schemas/migrations/index.ts';
import { makeEvent } from '../schemas/testing/events.ts';
import { storeHarnesses } from './testing/store-harness.ts';
import { migrate } from './migrate.ts';
import { eventRow, formatTimestamp, type SessionRow } from './rows.ts';
import { StoreError, type Store } from './store.ts';

/**
 * One contract, every Store: embedded chDB on a temp dir, and the HTTP store against the test
 * endpoint (chDB in a child process on another temp dir).
 */

const database = 'farol_test';
const target = { database, retentionDays: 395 };

const harnesses = storeHarnesses(database, 'farol-store');

// Events sit around the start of the current month, so a batch spans two monthly partitions and
// stays well inside the retention TTL.
const now = new Date();
const monthStart = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1);
const hour = 3_600_000;

/** An event of this suite: on example.com, at the start of the month. */
const event = (overrides: Partial<EnrichedEvent> = {}): EnrichedEvent =>
  makeEvent({ site: 'example.com', hostname: 'example.com', ts: monthStart, ...overrides });

/** A deterministic spread of events: visitors, pages, countries, goals with revenue, over hours. */
function trafficFor(site: string, count: number): EnrichedEvent[] {
  const pages = ['/', '/pricing', '/docs', '/blog/a', '/signup'];
  const countries = ['PT', 'DE', 'US'];
  return Array.from({ length: count }, (_, i) => {
    const goal = i % 7 === 0;
    return event({
      site,
      ts: monthStart - 3 * hour + ((i * 97) % (6 * 60)) * 60_000,
      name: goal ? 'Signup' : 'pageview',
      pathname: pages[i % pages.length] ?? '/',
      country: countries[(i * 5) % countries.length] ?? '',
      visitorId: String(1_000 + ((i * 13) % 37)),
      revenue: goal ? { currency: 'EUR', amount: 10 + (i % 5) + 0.25 } : null,
    });
  });
}

function session(overrides: Partial<SessionRow>): SessionRow {
  return {
    site: 'sessions.test',
    session_id: '1',
    visitor_id: '1',
    salt_day: formatTimestamp(monthStart + hour).slice(0, 10),
    start: formatTimestamp(monthStart + hour),
    timestamp: formatTimestamp(monthStart + hour),
    duration: 0,
    pageviews: 1,
    events: 1,
    is_bounce: 1,
    entry_page: '/',
    exit_page: '/',
    hostname: 'sessions.test',
    referrer: '',
    source: 'Google',
    channel: 'Organic Search',
    utm_source: '',
    utm_medium: '',
    utm_campaign: '',
    utm_content: '',
    utm_term: '',
    country: 'PT',
    browser: 'Firefox',
    browser_version: '128',
    os: 'Linux',
    os_version: '',
    device: 'desktop',
    screen: 'desktop',
    sign: 1,
    version: 1,
    ...overrides,
  };
}

describe.each(Object.keys(harnesses))('%s store', (kind) => {
  let store: Store;
  let teardown: () => Promise<void>;
  let firstRun: number[];

  beforeAll(async () => {
    const make = harnesses[kind as keyof typeof harnesses];
    if (make === undefined) throw new Error(`no harness ${kind}`);
    ({ store, teardown } = await make());
    firstRun = await migrate(store, target);
  });

  afterAll(async () => {
    await teardown();
  });

  /** One number from a one-row query. */
  async function scalar(sql: string, params?: Record<string, unknown>): Promise<number> {
    const rows = await store.query<{ n: number | string }>(sql, params);
    return Number(rows[0]?.n);
  }

  it('migrates idempotently and records every version', async () => {
    const all = Array.from({ length: latestVersion }, (_, i) => i + 1);
    expect(firstRun).toEqual(all);
    expect(await migrate(store, target)).toEqual([]);
    const versions = await store.query<{ version: number }>('SELECT DISTINCT version FROM schema_migrations ORDER BY version');
    expect(versions.map((r) => r.version)).toEqual(all);
    const tables = await store.query<{ name: string }>(
      'SELECT name FROM system.tables WHERE database = {db:String} ORDER BY name',
      { db: database },
    );
    expect(tables.map((t) => t.name)).toEqual(
      expect.arrayContaining(['events', 'sessions', 'rollup_hourly', 'rollup_daily', 'sessions_hourly', 'sessions_daily', 'accounts', 'sites', 'members', 'tokens', 'experiments']),
    );
  });

  it('pings', async () => {
    expect(await store.ping()).toBe(true);
  });

  it('reads inserted events back with bound parameters', async () => {
    const site = 'readback.test';
    const events = [
      event({ site, ts: monthStart + 1_234, pathname: '/a', visitorId: '18446744073709551615', props: { plan: 'pro' } }),
      event({ site, ts: monthStart + 2_000, name: 'Signup', revenue: { currency: 'USD', amount: 19.99 }, exp: { hero: 'b' } }),
      event({ site: 'other.test', ts: monthStart + 3_000 }),
    ];
    await store.insert('events', events.map((e) => eventRow(e, '42')));
    await store.insert('events', []);
    const rows = await store.query<Record<string, unknown>>(
      `SELECT event_id, name, pathname, visitor_id, session_id, timestamp, props, revenue_amount, revenue_currency,
              exp_ids, exp_variants
       FROM events WHERE site = {site:String} AND timestamp >= {from:DateTime64(3)} ORDER BY timestamp`,
      { site, from: new Date(monthStart) },
    );
    expect(rows).toEqual([
      {
        event_id: events[0]?.id,
        name: 'pageview',
        pathname: '/a',
        visitor_id: '18446744073709551615',
        session_id: '42',
        timestamp: formatTimestamp(monthStart + 1_234),
        props: { plan: 'pro' },
        revenue_amount: null,
        revenue_currency: '',
        exp_ids: [],
        exp_variants: [],
      },
      expect.objectContaining({ name: 'Signup', revenue_amount: 19.99, revenue_currency: 'USD', exp_ids: ['hero'], exp_variants: ['b'] }),
    ]);
  });

  it('stores rows whose keys differ, a missing column taking its default', async () => {
    const site = 'mixed.test';
    const full = session({ site, session_id: '31', screen: 'Laptop', utm_source: 'news' });
    const { screen: _screen, utm_source: _utm, ...partial } = session({ site, session_id: '32' });
    await store.insert('sessions', [full, partial]);
    const rows = await store.query<{ session_id: string; screen: string; utm_source: string }>(
      'SELECT session_id, screen, utm_source FROM sessions WHERE site = {site:String} ORDER BY session_id',
      { site },
    );
    expect(rows).toEqual([
      { session_id: '31', screen: 'Laptop', utm_source: 'news' },
      { session_id: '32', screen: '', utm_source: '' },
    ]);
  });

  it('keeps bound parameters as data', async () => {
    const site = 'injection.test';
    const hostile = "' OR 1=1 --";
    const odd = 'tab\there\nnewline back\\slash \'quote\'';
    await store.insert('events', [eventRow(event({ site, pathname: hostile }), '1'), eventRow(event({ site, pathname: odd }), '1')]);
    expect(await scalar('SELECT count() AS n FROM events WHERE site = {site:String}', { site: hostile })).toBe(0);
    const found = await store.query<{ pathname: string }>(
      'SELECT pathname FROM events WHERE site = {site:String} AND pathname IN {paths:Array(String)} ORDER BY pathname',
      { site, paths: [hostile, odd] },
    );
    expect(found.map((r) => r.pathname)).toEqual([hostile, odd].sort());
    const echoed = await store.query<{ s: string }>('SELECT {s:String} AS s', { s: odd });
    expect(echoed[0]?.s).toBe(odd);
  });

  it('rejects a bad query with a clear error', async () => {
    const missing = store.query('SELECT * FROM no_such_table');
    await expect(missing).rejects.toBeInstanceOf(StoreError);
    await expect(missing).rejects.toMatchObject({ code: 60, type: 'UNKNOWN_TABLE', retryable: false });
    await expect(missing).rejects.toThrow(/Unknown table/);
    await expect(store.exec('CREATE TABLE oops (')).rejects.toMatchObject({ code: 62, type: 'SYNTAX_ERROR' });
    await expect(store.insert('events; DROP TABLE events', [{}])).rejects.toThrow(/invalid table name/);
  });

  it('reports a refused insert by code and a short message, never the rows', async () => {
    const mark = 'Rw7ROWDATA';
    // A lone surrogate ClickHouse cannot parse, and a value of the wrong type, each beside the marker.
    const rows = [
      [eventRow(event({ site: `${mark}.test`, pathname: `/${mark}`, props: { k: `${mark}\ud800` } }), '1')],
      [{ ...eventRow(event({ pathname: `/${mark}` }), '1'), timestamp: `${mark}-not-a-time` }],
    ];
    for (const batch of rows) {
      const err = await store.insert('events', batch, { dedupToken: `refused-${mark}` }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(StoreError);
      const e = err as StoreError;
      expect(e.code).toBeGreaterThan(0);
      expect(e.type).toMatch(/^CANNOT_|^INCORRECT_DATA/);
      expect(e.retryable).toBe(false);
      expect(e.message.length).toBeLessThan(260);
      expect(`${e.message}\n${e.stack}\n${JSON.stringify(e)}`).not.toContain(mark);
      expect(e.cause).toBeUndefined();
    }
  });

  it('says when it refuses the rows of an insert (not retryable, curable by leaving rows out), and stores none of them', async () => {
    const site = 'refused.test';
    const good = eventRow(event({ site }), '1');
    const cases: Array<[string, Record<string, unknown>, number]> = [
      ['a lone surrogate escape', eventRow(event({ site, props: { k: '\ud800' } }), '1'), 25],
      ['a time it cannot read', { ...good, timestamp: '+275760-09-13 00:00:00.000' }, 41],
    ];
    for (const [what, bad, code] of cases) {
      const insert = store.insert('events', [good, bad, good], { dedupToken: `refused-${code}` });
      await expect(insert, what).rejects.toMatchObject({ code, refusedData: true, retryable: false });
    }
    const months = Array.from({ length: 101 }, (_, m) => eventRow(event({ site, ts: Date.UTC(2000, m, 2) }), '1'));
    await expect(store.insert('events', months)).rejects.toMatchObject({ code: 252, refusedData: true, retryable: false });
    expect(await scalar('SELECT count() AS n FROM events WHERE site = {site:String}', { site })).toBe(0);
    // Errors of the statement are not the rows' fault.
    await expect(store.insert('no_such_table', [good])).rejects.toMatchObject({ code: 60, refusedData: false, retryable: false });
  });

  it('stores a retried insert once, in events and in the rollups', async () => {
    const site = 'dedup.test';
    const rows = trafficFor(site, 40).map((e) => eventRow(e, '7'));
    const pageviews = rows.filter((r) => r.name === 'pageview').length;
    const counts = async (): Promise<number[]> => [
      await scalar('SELECT count() AS n FROM events WHERE site = {site:String}', { site }),
      await scalar("SELECT sum(events) AS n FROM rollup_hourly WHERE site = {site:String} AND dim = ''", { site }),
      await scalar("SELECT sum(pageviews) AS n FROM rollup_daily WHERE site = {site:String} AND dim = ''", { site }),
      await scalar("SELECT sum(events) AS n FROM rollup_hourly WHERE site = {site:String} AND dim = 'page'", { site }),
    ];

    await store.insert('events', rows, { dedupToken: 'p0:100-139' });
    expect(await counts()).toEqual([40, 40, pageviews, pageviews]);
    // The processor crashed before its checkpoint and replays the same batch.
    await store.insert('events', rows, { dedupToken: 'p0:100-139' });
    await store.insert('events', rows, { dedupToken: 'p0:100-139' });
    expect(await counts()).toEqual([40, 40, pageviews, pageviews]);
    // A different batch that happens to hold the same rows is stored: the token decides.
    await store.insert('events', rows, { dedupToken: 'p0:140-179' });
    expect(await counts()).toEqual([80, 80, 2 * pageviews, 2 * pageviews]);

    const states = [session({ site, session_id: '9' })];
    await store.insert('sessions', states, { dedupToken: 's0:1' });
    await store.insert('sessions', states, { dedupToken: 's0:1' });
    expect(await scalar('SELECT sum(sign) AS n FROM sessions WHERE site = {site:String}', { site })).toBe(1);
    expect(await scalar("SELECT sum(visits) AS n FROM sessions_hourly WHERE site = {site:String} AND dim = ''", { site })).toBe(1);
    expect(await scalar("SELECT sum(visits) AS n FROM sessions_daily WHERE site = {site:String} AND dim = 'source'", { site })).toBe(1);
  });

  it('counts collapsing session updates exactly', async () => {
    const site = 'sessions.test';
    const first = session({ site, session_id: '1', visitor_id: '11' });
    const other = session({ site, session_id: '2', visitor_id: '22', exit_page: '/c', entry_page: '/c' });
    await store.insert('sessions', [first, other]);
    // The visitor of session 1 reads a second page 30 s later: retract the old state, add the new.
    const updated: SessionRow = {
      ...first,
      version: 2,
      timestamp: formatTimestamp(monthStart + hour + 30_000),
      duration: 30,
      pageviews: 2,
      events: 2,
      is_bounce: 0,
      exit_page: '/b',
    };
    await store.insert('sessions', [{ ...first, sign: -1 }, updated]);

    const raw = await store.query<Record<string, number | string>>(
      `SELECT sum(sign) AS visits, sum(sign * is_bounce) AS bounces, sum(sign * pageviews) AS pageviews,
              sum(sign * duration) AS duration
       FROM sessions WHERE site = {site:String}`,
      { site },
    );
    const rolled = await store.query<Record<string, number | string>>(
      `SELECT sum(visits) AS visits, sum(bounces) AS bounces, sum(pageviews) AS pageviews, sum(duration) AS duration
       FROM sessions_hourly WHERE site = {site:String} AND dim = ''`,
      { site },
    );
    const expected = { visits: 2, bounces: 1, pageviews: 3, duration: 30 };
    expect(numbers(raw[0])).toEqual(expected);
    expect(numbers(rolled[0])).toEqual(expected);

    const exits = await store.query<{ value: string; visits: number | string }>(
      `SELECT value, sum(visits) AS visits FROM sessions_hourly
       WHERE site = {site:String} AND dim = 'exit_page' GROUP BY value HAVING visits != 0 ORDER BY value`,
      { site },
    );
    expect(exits.map((r) => [r.value, Number(r.visits)])).toEqual([
      ['/b', 1],
      ['/c', 1],
    ]);
    // Unique visitors left the rollups (migration 12): processor/salt-days.test.ts checks them,
    // by exit and entry page too.
  });

  it('answers rollup totals equal to raw totals', async () => {
    const site = 'rollup.test';
    await store.insert('events', trafficFor(site, 300).map((e) => eventRow(e, '3')), { dedupToken: 'rollup:1' });

    const raw = await store.query<Record<string, number | string>>(
      `SELECT countIf(name = 'pageview') AS pageviews, count() AS events, sum(ifNull(revenue_amount, 0)) AS revenue
       FROM events WHERE site = {site:String}`,
      { site },
    );
    for (const table of ['rollup_hourly', 'rollup_daily']) {
      const rolled = await store.query<Record<string, number | string>>(
        `SELECT sum(pageviews) AS pageviews, sum(events) AS events, sum(revenue) AS revenue
         FROM ${table} WHERE site = {site:String} AND dim = ''`,
        { site },
      );
      expect(numbers(rolled[0])).toEqual(numbers(raw[0]));
    }

    const rawPages = await store.query<Record<string, number | string>>(
      `SELECT pathname AS value, count() AS pageviews FROM events
       WHERE site = {site:String} AND name = 'pageview' GROUP BY value ORDER BY value`,
      { site },
    );
    const rolledPages = await store.query<Record<string, number | string>>(
      `SELECT value, sum(pageviews) AS pageviews FROM rollup_hourly
       WHERE site = {site:String} AND dim = 'page' GROUP BY value ORDER BY value`,
      { site },
    );
    expect(rolledPages.map(numbers)).toEqual(rawPages.map(numbers));

    const rawCountries = await store.query<Record<string, number | string>>(
      `SELECT country AS value, count() AS events FROM events
       WHERE site = {site:String} GROUP BY value ORDER BY value`,
      { site },
    );
    const rolledCountries = await store.query<Record<string, number | string>>(
      `SELECT value, sum(events) AS events FROM rollup_daily
       WHERE site = {site:String} AND dim = 'country' GROUP BY value ORDER BY value`,
      { site },
    );
    expect(rolledCountries.map(numbers)).toEqual(rawCountries.map(numbers));
  });

  it('serves concurrent calls', async () => {
    const site = 'concurrent.test';
    const batches = Array.from({ length: 8 }, (_, b) =>
      trafficFor(site, 25).map((e) => eventRow({ ...e, id: `c-${b}-${e.id}` }, String(b))),
    );
    const reads = Array.from({ length: 8 }, (_, i) =>
      store.query<{ n: number }>('SELECT {i:UInt32} AS n', { i }),
    );
    const [, answers] = await Promise.all([
      Promise.all(batches.map((rows, b) => store.insert('events', rows, { dedupToken: `concurrent:${b}` }))),
      Promise.all(reads),
    ]);
    expect(answers.map((rows) => rows[0]?.n)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(await scalar('SELECT count() AS n FROM events WHERE site = {site:String}', { site })).toBe(200);
    expect(await scalar("SELECT sum(events) AS n FROM rollup_hourly WHERE site = {site:String} AND dim = ''", { site })).toBe(200);
  });

  it('runs a query under the settings it is given: a time limit stops it with TIMEOUT_EXCEEDED', async () => {
    // Endless without the limit; UNION ALL so the other branch's row is written before it fails.
    const endless = 'SELECT toUInt64(1) AS n UNION ALL SELECT count() AS n FROM numbers(1000000000000) AS x WHERE x.number != {v:UInt64}';
    const err = await store.query(endless, { v: 1 }, { settings: { max_execution_time: 0.2, timeout_overflow_mode: 'throw' } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StoreError);
    expect((err as StoreError).code).toBe(159);
    // A memory limit too.
    const heavy = store.query('SELECT length(groupArray(number)) AS n FROM numbers(100000000)', {}, { settings: { max_memory_usage: 10_000_000 } });
    await expect(heavy).rejects.toMatchObject({ code: 241 });
    // Settings last one query.
    expect(await scalar('SELECT count() AS n FROM numbers(10000000)', {})).toBe(10_000_000);
  });

  it('never hands a failed query’s partial rows to the next query', async () => {
    // The first branch's rows go out before the second fails on its memory limit.
    const failing = 'SELECT number AS n FROM numbers(5) UNION ALL SELECT length(groupArray(number)) AS n FROM numbers(100000000)';
    for (let i = 0; i < 4; i++) {
      await expect(store.query(failing, {}, { settings: { max_memory_usage: 10_000_000 } })).rejects.toMatchObject({ code: 241 });
      await expect(store.query(failing, { unused: 1 }, { settings: { max_memory_usage: 10_000_000 } })).rejects.toMatchObject({ code: 241 });
    }
    // However many connections the store holds, each answers only its own query.
    const answers = await Promise.all(Array.from({ length: 8 }, (_, i) => store.query<{ k: number }>('SELECT {i:UInt32} AS k', { i })));
    expect(answers).toEqual(Array.from({ length: 8 }, (_, i) => [{ k: i }]));
    expect(await store.query<{ k: number }>('SELECT 42 AS k')).toEqual([{ k: 42 }]);
  });

  it('refuses settings that are not plain names and values', async () => {
    await expect(store.query('SELECT 1 AS n', {}, { settings: { 'max_threads = 1, readonly': 1 } })).rejects.toThrow(/setting name/);
    await expect(store.query('SELECT 1 AS n', {}, { settings: { log_comment: "x' --" } })).rejects.toThrow(/plain word/);
    await expect(store.query('SELECT 1 AS n', {}, { settings: { max_threads: Number.NaN } })).rejects.toThrow(/finite/);
  });

  it('follows a changed retention on the next migrate', async () => {
    const ttlDays = async (): Promise<string | undefined> => {
      const rows = await store.query<{ engine_full: string }>(
        "SELECT engine_full FROM system.tables WHERE database = {db:String} AND name = 'events'",
        { db: database },
      );
      return /toIntervalDay\((\d+)\)/.exec(rows[0]?.engine_full ?? '')?.[1];
    };
    expect(await ttlDays()).toBe('395');
    // Longer, not shorter: a shorter TTL would start deleting the other tests' rows.
    expect(await migrate(store, { ...target, retentionDays: 800 })).toEqual([]);
    expect(await ttlDays()).toBe('800');
  });

  it('closes once and refuses calls afterwards', async () => {
    await store.close();
    await store.close();
    expect(await store.ping()).toBe(false);
    await expect(store.query('SELECT 1')).rejects.toThrow(/closed/);
  });
});

/** The row with every value as a number (UInt64 arrive as strings), keeping `value` as text. */
function numbers(row: Record<string, number | string> | undefined): Record<string, number | string> {
  const out: Record<string, number | string> = {};
  for (const [k, v] of Object.entries(row ?? {})) out[k] = k === 'value' ? v : Number(v);
  return out;
}
