import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runQuery } from '../api/query/query.ts';
import { openTestStore, removeTempDirs } from '../processor/testing/harness.ts';
import { withQuery, type Store } from '../store/store.ts';

/**
 * The salt-day generations lookup of a rollup answer is kept while the embedded engine's two
 * tables did not change (Store.tableVersion), and read again after any write to them or any
 * statement run through `exec`; a store without versions (a server) reads it every time.
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

/** Runs the query through `base` and counts the lookups (reads of `salt_day_closes`) it made. */
async function lookups(base: Store): Promise<number> {
  let n = 0;
  const counting = withQuery(base, (sql, params, opts) => {
    if (sql.includes('FROM salt_day_closes')) n++;
    return base.query(sql, params, opts);
  });
  await runQuery(counting, site, body, new Date());
  return n;
}

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
});
