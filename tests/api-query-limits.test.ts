import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, SITE_A, SITE_A2, startApiHarness, type ApiHarness, type Reply } from '../api/experiments/testing/api-harness.ts';
import { limits } from '../api/query/schema.ts';
import { listenApi, type ApiServer } from '../api/server.ts';
import { silentLogger } from '../lib/log.ts';
import { Registry } from '../lib/metrics.ts';
import { loadConfig } from '../schemas/config.ts';
import { withQuery, type QueryOptions, type QueryParams, type Store } from '../store/store.ts';
import { pollUntil } from './support/e2e.ts';

/**
 * What one API request may cost ClickHouse (issue #8, finding 6), against the real API on a real
 * port over chDB on a temp dir. The routes read through a wrapper around the real store that
 * counts their queries and can hold them (to keep requests in flight); nothing else is faked.
 */

/** Counts the routes' queries and, while `holding`, parks them until released. */
class Probe {
  calls = 0;
  holding = false;
  private parked: Array<() => void> = [];

  get held(): number {
    return this.parked.length;
  }

  release(): void {
    this.holding = false;
    for (const go of this.parked.splice(0)) go();
  }

  wrap(store: Store): Store {
    return withQuery(store, async <T = Record<string, unknown>>(sql: string, params?: QueryParams, opts?: QueryOptions): Promise<T[]> => {
      this.calls++;
      if (this.holding) await new Promise<void>((go) => this.parked.push(go));
      return store.query<T>(sql, params, opts);
    });
  }
}

const probe = new Probe();
let h: ApiHarness;
/** Days of the seeded rows: recent, inside the raw-event TTL. */
const DAY = 86_400_000;
const firstDay = new Date(Math.floor(Date.now() / DAY) * DAY - 3 * DAY).toISOString().slice(0, 10);
const lastDay = new Date(Math.floor(Date.now() / DAY) * DAY - 2 * DAY).toISOString().slice(0, 10);
const SEEDED = 1_000_000;

async function query(body: Record<string, unknown>, token = h.tokens.viewer, base = h.url): Promise<Reply> {
  return call(base, 'POST', '/api/v2/query', token, { site_id: SITE_A, metrics: ['visitors'], date_range: [firstDay, lastDay], ...body });
}

function errorOf(r: Reply): { code?: string; field?: string; message?: string } {
  return (r.json as { error?: { code?: string; field?: string; message?: string } } | undefined)?.error ?? {};
}

const patterns = (n: number, at = 0): string[] => Array.from({ length: n }, (_, i) => `^/p${at + i}(/|$)`);

beforeAll(async () => {
  // The longest statement the caps allow takes seconds to parse on a busy 2-core machine: the
  // statement time limit is tested below with a server of its own.
  h = await startApiHarness(undefined, { wrapStore: (s) => probe.wrap(s), env: { FAROL_API_QUERIES_PER_TOKEN: '4', FAROL_API_QUERY_QUEUE_PER_TOKEN: '2', FAROL_API_QUERY_TIMEOUT_MS: '55000' } });
  // A million pageviews on a million pages over two days, written by ClickHouse itself (the
  // materialized views fill the rollups as they would from the processor).
  await h.store.exec(
    `INSERT INTO events (site, timestamp, event_id, name, session_id, visitor_id, hostname, pathname)
     SELECT {site:String}, toDateTime64({t0:String}, 3, 'UTC') + toIntervalMillisecond(number * 150), toString(number), 'pageview',
            number, number % 50000, {site:String}, concat('/p', toString(number))
     FROM numbers({n:UInt64})`,
    { site: SITE_A, t0: `${firstDay} 00:00:00`, n: SEEDED },
  );
}, 300_000);

afterAll(async () => {
  probe.release();
  await h?.close();
});

describe('matches patterns', () => {
  it('a query with 100 filters of 100 patterns each answers 400 naming the filter, before any ClickHouse query', async () => {
    const leaves = Array.from({ length: 100 }, (_, i) => ['matches', 'event:page', patterns(100, i * 100)]);
    const body = { filters: [['and', leaves.slice(0, 50)], ['and', leaves.slice(50)]] };
    probe.calls = 0;
    const r = await query(body);
    expect(r.status).toBe(400);
    expect(errorOf(r)).toMatchObject({ code: 'API_BAD_QUERY', field: 'filters[0][1][1][2]' });
    expect(probe.calls).toBe(0);
  });

  it(`a legal query with ${limits.patterns} patterns makes at most 2 ClickHouse queries: one compiles them all`, async () => {
    probe.calls = 0;
    const r = await query({ filters: [['matches', 'event:page', patterns(limits.patterns)]], dimensions: ['event:page'], pagination: { limit: 5 } });
    expect(r.status, JSON.stringify(r.json)).toBe(200);
    expect(probe.calls).toBeLessThanOrEqual(2);
    // Patterns 0-99 anchor /p0 … /p99: those pages and nothing else.
    expect((r.json as { results: unknown[] }).results).toHaveLength(5);
  });

  it('an invalid pattern among 100 is named, with a bounded number of queries, whatever the data', async () => {
    const values = patterns(100);
    values[77] = '(a)\\1';
    probe.calls = 0;
    const r = await query({ filters: [['is', 'visit:device', ['Desktop']], ['matches_not', 'event:page', values, { case_sensitive: false }]] });
    expect(r.status).toBe(400);
    expect(errorOf(r)).toMatchObject({ code: 'API_BAD_QUERY', field: 'filters[1][2][77]' });
    expect(probe.calls).toBeLessThanOrEqual(1 + 2 * Math.ceil(Math.log2(100)));
  });

  it('caps filter values, pattern length and the characters of all values, naming the field', async () => {
    const many = Array.from({ length: 6 }, (_, i) => ['contains', 'event:page', patterns(100, i * 100)]);
    const cases: Array<[unknown[], string]> = [
      [many, 'filters[5][2]'],
      [[['matches', 'event:page', ['x'.repeat(limits.patternLength + 1)]]], 'filters[0][2][0]'],
      [Array.from({ length: 40 }, () => ['is', 'event:page', ['y'.repeat(2000)]]), 'filters[32][2][0]'],
    ];
    for (const [filters, field] of cases) {
      probe.calls = 0;
      const r = await query({ filters });
      expect(r.status).toBe(400);
      expect(errorOf(r)).toMatchObject({ code: 'API_BAD_QUERY', field });
      expect(probe.calls).toBe(0);
    }
  });

  it('the largest statement the caps allow still runs (ClickHouse parses at most 256 KiB)', async () => {
    // 500 values on the dimension whose condition is longest, each spelled out on both sides.
    const filters = Array.from({ length: 5 }, (_, i) => ['contains_not', 'event:props:a_long_property_key', patterns(100, i * 100)]);
    const r = await query({ filters, metrics: ['visitors', 'bounce_rate', 'pageviews', 'visits'] });
    expect(r.status, JSON.stringify(r.json).slice(0, 300)).toBe(200);
  });
});

describe('per-token concurrency', () => {
  it('a token runs 4 queries at once and queues 2 more (as configured); one more is refused with 429 and Retry-After, other tokens unaffected', async () => {
    probe.holding = true;
    const body = { dimensions: ['visit:source'] };
    const running = Array.from({ length: 4 }, () => query(body));
    await pollUntil(async () => (probe.held === 4 ? true : undefined), { timeoutMs: 30_000, describe: () => `${probe.held} queries held` });
    // Two of these wait for a slot, one is refused: the only one that can answer while the four run.
    const more = Array.from({ length: 3 }, () => query(body));
    const refused = await Promise.race(more);
    expect(refused.status, JSON.stringify(refused.json)).toBe(429);
    expect(errorOf(refused).code).toBe('API_TOO_MANY_REQUESTS');
    expect(refused.headers.get('retry-after')).toBe('1');
    expect(probe.held).toBe(4);
    // Other tokens (another member's, one scoped to another site) still get in.
    const others = [query(body, h.tokens.owner), query({ ...body, site_id: SITE_A2 }, h.tokens.scopedViewer)];
    await pollUntil(async () => (probe.held === 6 ? true : undefined), { timeoutMs: 30_000, describe: () => `${probe.held} queries held` });
    probe.release();
    const answers = await Promise.all([...running, ...more, ...others]);
    expect(answers.map((a) => a.status).sort()).toEqual([200, 200, 200, 200, 200, 200, 200, 200, 429]);
    // Slots are given back: the token runs 4 at once again.
    const again = await Promise.all(Array.from({ length: 4 }, () => query(body)));
    expect(again.map((a) => a.status)).toEqual([200, 200, 200, 200]);
  });
});

describe('time and memory limits', () => {
  let limited: ApiServer | undefined;
  afterAll(async () => {
    await limited?.stop();
  });

  async function serve(env: Record<string, string>): Promise<string> {
    await limited?.stop();
    const config = loadConfig({ FAROL_PORT: '0', FAROL_HOST: '127.0.0.1', FAROL_DATA_DIR: '/nonexistent', ...env });
    limited = await listenApi({ store: h.store, control: h.control, config, log: silentLogger, metrics: new Registry(), now: () => new Date() });
    return `http://127.0.0.1:${limited.port}`;
  }

  // Every page of a million, with a pattern each row is matched against: far past 10 ms.
  const heavy = { dimensions: ['event:page'], filters: [['matches', 'event:page', ['^/p[0-9]+$']]], pagination: { limit: 1 } };

  it('a query past its time limit answers 422 API_QUERY_TIMEOUT, not 503 Retry-After', async () => {
    const base = await serve({ FAROL_API_QUERY_TIMEOUT_MS: '10' });
    const r = await query(heavy, h.tokens.viewer, base);
    expect(r.status, JSON.stringify(r.json)).toBe(422);
    expect(errorOf(r).code).toBe('API_QUERY_TIMEOUT');
    expect(errorOf(r).message).toContain('0.01 s');
    expect(r.headers.get('retry-after')).toBeNull();
    // The store is fine afterwards.
    const small = await query({});
    expect(small.status, JSON.stringify(small.json)).toBe(200);
  });

  it('a query past its memory limit answers 422 API_QUERY_TOO_HEAVY', async () => {
    const base = await serve({ FAROL_API_QUERY_MAX_MEMORY_BYTES: String(16 * 1024 ** 2) });
    const r = await query({ ...heavy, metrics: ['visitors', 'visits', 'pageviews'] }, h.tokens.viewer, base);
    expect(r.status, JSON.stringify(r.json)).toBe(422);
    expect(errorOf(r).code).toBe('API_QUERY_TOO_HEAVY');
    expect(r.headers.get('retry-after')).toBeNull();
  });

  it('without those limits the same query answers (the data is there)', async () => {
    const r = await query(heavy);
    expect(r.status, JSON.stringify(r.json)).toBe(200);
    expect((r.json as { results: { metrics: number[] }[] }).results).toHaveLength(1);
  });
});
