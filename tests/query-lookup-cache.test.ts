import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { runQuery } from '../api/query/query.ts';
import { openTestStore, removeTempDirs } from '../processor/testing/harness.ts';
import { withQuery, type QueryOptions, type QueryParams, type Store } from '../store/store.ts';

/**
 * The salt-day generations lookup of a rollup answer is kept while the embedded engine's two
 * tables did not change (Store.tableVersion), and read again after any write to them or any
 * statement run through `exec`; a store without versions (a server) reads it every time. The
 * provisional generations' check is kept the same way while `events` and `sessions` do not change,
 * and nothing is kept as of a version while a write is under way.
 */

let store: Store;
beforeAll(async () => {
  store = await openTestStore();
});
afterAll(async () => {
  await store.close();
  await removeTempDirs();
});

const site = { domain: 'cache.test', timezone: 'UTC' };
const body = { site_id: site.domain, metrics: ['visitors', 'pageviews'], date_range: '30d', dimensions: ['event:page'] };

/** Runs the query through `base` and counts the statements it made that read `what`. */
async function reads(base: Store, what: string): Promise<number> {
  let n = 0;
  const counting = withQuery(base, (sql, params, opts) => {
    if (sql.includes(what)) n++;
    return base.query(sql, params, opts);
  });
  await runQuery(counting, site, body, new Date());
  return n;
}
/** The lookups (reads of `salt_day_closes`) a query made. */
const lookups = (base: Store): Promise<number> => reads(base, 'FROM salt_day_closes');
/** The checks of provisional generations a query made. */
const checks = (base: Store): Promise<number> => reads(base, "SELECT 'n' AS kind");

describe('generations lookup cache', () => {
  it('is read once while its tables do not change, and again after each write to them', async () => {
    expect(store.tableVersion).toBeDefined();
    expect(await lookups(store)).toBe(1);
    expect(await lookups(store)).toBe(0);
    // Writes elsewhere keep it.
    await store.insert('events', [{ site: 'other.test', timestamp: new Date(), name: 'pageview', pathname: '/' }]);
    expect(await lookups(store)).toBe(0);
    // A close recorded, a provisional generation written, a statement run: read again each time.
    const today = new Date().toISOString().slice(0, 10);
    await store.insert('salt_day_closes', [{ site: site.domain, salt_day: today, gen: 1, event_rows: 0, session_rows: 0, zones: ['UTC'] }]);
    expect(await lookups(store)).toBe(1);
    expect(await lookups(store)).toBe(0);
    await store.insert('salt_day_provisional', [
      { site: site.domain, salt_day: today, gen: 2, zones: ['UTC'], watermark: new Date(), session_watermark: new Date(), event_rows: 0 },
    ]);
    expect(await lookups(store)).toBe(1);
    await store.exec('ALTER TABLE salt_day_closes DELETE WHERE site = {s:String}', { s: site.domain });
    expect(await lookups(store)).toBe(1);
    expect(await lookups(store)).toBe(0);
  });

  it('is read again beside an answer once past half its life, so no answer waits for its age limit', async () => {
    const real = performance.now.bind(performance);
    let shift = 0;
    const clock = vi.spyOn(performance, 'now').mockImplementation(() => real() + shift);
    // Lookups through this store wait until released: an answer that needs one in front cannot end.
    let open = (): void => undefined;
    let gate = Promise.resolve();
    let ended = 0;
    const gated = withQuery(store, async <T,>(sql: string, params?: QueryParams, opts?: QueryOptions) => {
      if (!sql.includes('FROM salt_day_closes')) return store.query<T>(sql, params, opts);
      await gate;
      const rows = await store.query<T>(sql, params, opts);
      ended++;
      return rows;
    });
    const close = (): void => {
      gate = new Promise((resolve) => (open = resolve));
    };
    const answered = (): Promise<string> =>
      Promise.race([runQuery(gated, site, body, new Date()).then(() => 'answered'), new Promise<string>((r) => setTimeout(() => r('waited'), 10_000))]);
    try {
      await lookups(store);
      // Past half its 30 s: answered from the entry while a read runs beside it.
      shift = 20_000;
      close();
      expect(await answered()).toBe('answered');
      open();
      await vi.waitFor(() => expect(ended).toBe(1));
      // Past the first read's life, within the second's: answered without waiting again.
      shift = 40_000;
      close();
      expect(await answered()).toBe('answered');
      open();
      await vi.waitFor(() => expect(ended).toBe(2));
      // Past every read's life: read in front.
      shift = 200_000;
      expect(await lookups(store)).toBe(1);
    } finally {
      open();
      clock.mockRestore();
    }
  }, 60_000);

  it('is read every time on a store without versions (another process may write)', async () => {
    const server: Store = {
      kind: store.kind,
      database: store.database,
      exec: (sql, params, opts) => store.exec(sql, params, opts),
      query: (sql, params, opts) => store.query(sql, params, opts),
      insert: (table, rows, opts) => store.insert(table, rows, opts),
      ping: () => store.ping(),
      close: async () => undefined,
    };
    expect(await lookups(server)).toBe(1);
    expect(await lookups(server)).toBe(1);
  });

  it('keeps the provisional generations check while events and sessions do not change', async () => {
    // Today's provisional generation (from the first test) makes every answer check it; the last
    // answer there left the check kept.
    expect(await checks(store)).toBe(0);
    await store.exec('SELECT 1');
    expect(await checks(store)).toBe(1);
    expect(await checks(store)).toBe(0);
    await store.insert('salt_day_closes', [{ site: 'other.test', salt_day: '2020-01-01', gen: 1, event_rows: 0, session_rows: 0, zones: ['UTC'] }]);
    expect(await checks(store)).toBe(0);
    await store.insert('events', [{ site: site.domain, timestamp: new Date(), name: 'pageview', pathname: '/', visitor_id: '7' }]);
    expect(await checks(store)).toBe(1);
    expect(await checks(store)).toBe(0);
    await store.insert('sessions', [{ site: site.domain, session_id: '1', visitor_id: '7', start: new Date(), timestamp: new Date(), sign: 1, version: 1 }]);
    expect(await checks(store)).toBe(1);
  });

  it('hands out no reusable version while a write is under way', async () => {
    const version = (): string => store.tableVersion?.('events') ?? '';
    const before = version();
    expect(version()).toBe(before);
    const writing = store.insert('events', [{ site: 'other.test', timestamp: new Date(), name: 'pageview', pathname: '/' }]);
    const during = [version(), version()];
    expect(new Set([before, ...during]).size).toBe(3);
    await writing;
    const after = version();
    expect(after).not.toBe(before);
    expect(version()).toBe(after);
    // An exec under way unsettles every table.
    const other = store.tableVersion?.('sessions') ?? '';
    const running = store.exec('SELECT 1');
    expect(store.tableVersion?.('sessions')).not.toBe(other);
    await running;
  });
});
