import { storedVisitors } from '../../processor/salt-days.ts';
import type { Store } from '../../store/store.ts';
import { emptyCounts, GOALS, sortedCounts, type SiteCounts } from './wire-oracle.ts';

/**
 * The counts of {@link SiteCounts} read back from ClickHouse: from the raw tables (`events`,
 * `sessions` with its signs) and from each pair of rollups (`rollup_*` + `sessions_*`). The e2e
 * tests compare both with the wire oracle's truth, so rollups equal raw rows too.
 */

type Row = Record<string, string | number | null>;

const num = (v: string | number | null | undefined): number => Number(v ?? 0);
const str = (v: string | number | null | undefined): string => String(v ?? '');

function siteOf(out: Record<string, SiteCounts>, site: string): SiteCounts {
  return (out[site] ??= emptyCounts());
}

function fillGoals(out: Record<string, SiteCounts>): Record<string, SiteCounts> {
  for (const c of Object.values(out)) {
    for (const goal of GOALS) {
      const n = c.names[goal];
      if (n !== undefined) c.goals[goal] = n.visitors;
    }
  }
  return sortedCounts(out);
}

/** Counts from the raw tables: `events` rows, and `sessions` aggregated with their signs. */
export async function rawCounts(store: Store): Promise<Record<string, SiteCounts>> {
  const out: Record<string, SiteCounts> = {};
  const totals = await store.query<Row>(
    `SELECT site, count() AS events, countIf(name = 'pageview') AS pageviews, uniqExact(visitor_id) AS visitors,
            toInt64(sum(ifNull(revenue_amount, 0)) * 100) AS revenue
     FROM events GROUP BY site`,
  );
  for (const r of totals) {
    const c = siteOf(out, str(r['site']));
    c.events = num(r['events']);
    c.pageviews = num(r['pageviews']);
    c.visitors = num(r['visitors']);
    c.revenueCents = num(r['revenue']);
  }
  const pages = await store.query<Row>(
    `SELECT site, pathname, count() AS pageviews, uniqExact(visitor_id) AS visitors
     FROM events WHERE name = 'pageview' GROUP BY site, pathname`,
  );
  for (const r of pages) siteOf(out, str(r['site'])).pages[str(r['pathname'])] = { pageviews: num(r['pageviews']), visitors: num(r['visitors']) };
  const countries = await store.query<Row>(
    `SELECT site, country, countIf(name = 'pageview') AS pageviews, uniqExact(visitor_id) AS visitors
     FROM events GROUP BY site, country`,
  );
  for (const r of countries) {
    siteOf(out, str(r['site'])).countries[str(r['country'])] = { pageviews: num(r['pageviews']), visitors: num(r['visitors']) };
  }
  const names = await store.query<Row>(
    'SELECT site, name, count() AS events, uniqExact(visitor_id) AS visitors FROM events GROUP BY site, name',
  );
  for (const r of names) siteOf(out, str(r['site'])).names[str(r['name'])] = { events: num(r['events']), visitors: num(r['visitors']) };
  const sessions = await store.query<Row>(
    'SELECT site, sum(sign) AS visits, sum(sign * is_bounce) AS bounces FROM sessions GROUP BY site',
  );
  for (const r of sessions) {
    const c = siteOf(out, str(r['site']));
    c.visits = num(r['visits']);
    c.bounces = num(r['bounces']);
  }
  const channels = await store.query<Row>(
    'SELECT site, channel, sum(sign) AS visits FROM sessions GROUP BY site, channel HAVING visits != 0',
  );
  for (const r of channels) siteOf(out, str(r['site'])).channels[str(r['channel'])] = num(r['visits']);
  return fillGoals(out);
}

/**
 * Counts from one grain of rollups: `rollup_<grain>` (totals, page, country, name) and
 * `sessions_<grain>` (totals, channel), merged over every bucket.
 */
export async function rollupCounts(store: Store, grain: 'daily' | 'hourly'): Promise<Record<string, SiteCounts>> {
  const events = grain === 'daily' ? 'rollup_daily' : 'rollup_hourly';
  const sessions = grain === 'daily' ? 'sessions_daily' : 'sessions_hourly';
  const out: Record<string, SiteCounts> = {};
  const rows = await store.query<Row>(
    `SELECT site, dim, value, sum(pageviews) AS pageviews, sum(events) AS events, toInt64(sum(revenue) * 100) AS revenue
     FROM ${events} WHERE dim IN ('', 'page', 'country', 'name') GROUP BY site, dim, value`,
  );
  // Unique visitors are not in the rollups: the planner reads closed salt days and raw rows of open ones.
  const sites = [...new Set(rows.map((r) => str(r['site'])))];
  const stored = await storedVisitors(store, { sites, side: 'event', dims: ['', 'page', 'country', 'name'] });
  const visitors = new Map(stored.map((v) => [JSON.stringify([v.site, v.dim, v.value]), v.visitors]));
  for (const r of rows) {
    const c = siteOf(out, str(r['site']));
    const value = str(r['value']);
    const pv = { pageviews: num(r['pageviews']), visitors: visitors.get(JSON.stringify([str(r['site']), str(r['dim']), value])) ?? 0 };
    switch (r['dim']) {
      case '':
        c.events = num(r['events']);
        c.pageviews = pv.pageviews;
        c.visitors = pv.visitors;
        c.revenueCents = num(r['revenue']);
        break;
      case 'page':
        c.pages[value] = pv;
        break;
      case 'country':
        c.countries[value] = pv;
        break;
      default:
        c.names[value] = { events: num(r['events']), visitors: pv.visitors };
    }
  }
  const visits = await store.query<Row>(
    `SELECT site, dim, value, sum(visits) AS visits, sum(bounces) AS bounces
     FROM ${sessions} WHERE dim IN ('', 'channel') GROUP BY site, dim, value HAVING visits != 0 OR dim = ''`,
  );
  for (const r of visits) {
    const c = siteOf(out, str(r['site']));
    if (r['dim'] === '') {
      c.visits = num(r['visits']);
      c.bounces = num(r['bounces']);
    } else {
      c.channels[str(r['value'])] = num(r['visits']);
    }
  }
  return fillGoals(out);
}

/** Cross-checks inside the stored data that the per-site counts would not show on their own. */
export interface Integrity {
  /** Rows in `events`. */
  eventRows: number;
  /** Rows sharing a (site, event id) with another row: an event stored twice. */
  duplicateEventRows: number;
  /** Sessions whose signs do not sum to exactly 1 (lost or doubled session states). */
  brokenSessions: number;
  /** Sessions with a net state, and their distinct visitors (one session per visitor here). */
  liveSessions: number;
  sessionVisitors: number;
  /** Session totals vs the events they summarize. */
  sessionPageviews: number;
  sessionEvents: number;
  /** Events whose session id has no live session. */
  orphanEvents: number;
}

export async function integrity(store: Store): Promise<Integrity> {
  const [e] = await store.query<Row>('SELECT count() AS n, uniqExact(site, event_id) AS u FROM events');
  const [s] = await store.query<Row>(
    `SELECT countIf(net != 1) AS broken, countIf(net = 1) AS live, uniqExactIf((site, visitor_id), net = 1) AS visitors,
            sum(pv) AS pageviews, sum(ev) AS events
     FROM (SELECT site, session_id, any(visitor_id) AS visitor_id, sum(sign) AS net, sum(sign * pageviews) AS pv,
                  sum(sign * events) AS ev
           FROM sessions GROUP BY site, session_id)`,
  );
  const [o] = await store.query<Row>(
    `SELECT count() AS n FROM events
     WHERE (site, session_id) NOT IN (SELECT site, session_id FROM sessions GROUP BY site, session_id HAVING sum(sign) = 1)`,
  );
  return {
    eventRows: num(e?.['n']),
    duplicateEventRows: num(e?.['n']) - num(e?.['u']),
    brokenSessions: num(s?.['broken']),
    liveSessions: num(s?.['live']),
    sessionVisitors: num(s?.['visitors']),
    sessionPageviews: num(s?.['pageviews']),
    sessionEvents: num(s?.['events']),
    orphanEvents: num(o?.['n']),
  };
}

/** `site \n event id` of every stored event row (duplicates collapse; see {@link integrity}). */
export async function storedEventKeys(store: Store): Promise<Set<string>> {
  const rows = await store.query<Row>('SELECT site, event_id FROM events');
  return new Set(rows.map((r) => `${str(r['site'])}\n${str(r['event_id'])}`));
}

/** What one set has that the other lacks (at most `limit` of each, for readable failures). */
export function setDiff(expected: Set<string>, actual: Set<string>, limit = 20): { missing: string[]; extra: string[]; missingCount: number; extraCount: number } {
  const missing = [...expected].filter((k) => !actual.has(k));
  const extra = [...actual].filter((k) => !expected.has(k));
  return { missing: missing.slice(0, limit), extra: extra.slice(0, limit), missingCount: missing.length, extraCount: extra.length };
}

/**
 * Rows of the raw tables and rollups whose text (every column, rendered) contains one of
 * `needles`: proof that no column holds a client IP or a raw User-Agent, whatever its name.
 */
export async function rowsContaining(store: Store, needles: readonly string[]): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  // multiSearchAny takes at most 255 needles.
  const params: Record<string, string[]> = {};
  for (let i = 0; i < needles.length; i += 255) params[`n${i / 255}`] = needles.slice(i, i + 255);
  const where = Object.keys(params).map((p) => `multiSearchAny(text, {${p}:Array(String)})`).join(' OR ');
  for (const table of ['events', 'sessions', 'rollup_daily', 'rollup_hourly', 'sessions_daily', 'sessions_hourly']) {
    // Aggregate states are binary; their rendered text is still searched (and holds only hashes).
    const [r] = await store.query<Row>(`SELECT count() AS n FROM (SELECT formatRow('TSV', *) AS text FROM ${table}) WHERE ${where}`, params);
    out[table] = num(r?.['n']);
  }
  return out;
}
