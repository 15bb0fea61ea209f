import { afterAll, describe, expect, it } from 'vitest';
import { openChdbStore } from '../store/chdb-store.ts';
import { latestVersion } from '../schemas/migrations/index.ts';
import { migrate } from '../store/migrate.ts';
import { migrateUpTo } from '../store/testing/store.ts';
import { closeSaltDays, storedVisitors } from './salt-days.ts';
import { database, removeTempDirs, tempDir } from './testing/harness.ts';

/**
 * Migrations 11 and 12 (and the sign-in ones before them) on a running install (its own file: one chDB data directory per process):
 * rows stored before salt days get theirs, rollup sums go on, unique states leave the rollups,
 * and the closing job closes the history to the same unique visitors.
 */

const DAY = 86_400_000;
const today = Math.floor(Date.now() / DAY);
const firstDay = today - 11;
const dayIso = (d: number): string => new Date(d * DAY).toISOString().slice(0, 10);

afterAll(async () => {
  await removeTempDirs();
});

describe('an install upgraded in place', () => {
  it('back-fills salt days, keeps rollup sums, drops the unique states, and closes its history', async () => {
    const old = openChdbStore({ dataDir: await tempDir('upgrade-chdb'), database });
    try {
      const target = { database, retentionDays: 395 };
      await migrateUpTo(old, target, 8);
      const d = dayIso(firstDay);
      const next = dayIso(firstDay + 1);
      // Visitor 1 carried over midnight (one id on both days), visitor 2 on the second day only.
      await old.exec(
        `INSERT INTO events (site, timestamp, visitor_id, name, pathname) VALUES
         ('up.test', '${d} 23:50:00', 1, 'pageview', '/'), ('up.test', '${next} 00:10:00', 1, 'pageview', '/a'),
         ('up.test', '${next} 11:00:00', 2, 'pageview', '/')`,
      );
      await old.exec(
        `INSERT INTO sessions (site, session_id, visitor_id, start, timestamp, sign, version, entry_page, exit_page, pageviews, events) VALUES
         ('up.test', 1, 1, '${d} 23:50:00', '${next} 00:10:00', 1, 1, '/', '/a', 2, 2), ('up.test', 2, 2, '${next} 11:00:00', '${next} 11:00:00', 1, 1, '/', '/', 1, 1)`,
      );
      // Every later migration runs over these rows too.
      expect(await migrate(old, target)).toEqual(Array.from({ length: latestVersion - 8 }, (_, i) => 9 + i));
      const saltDays = await old.query<{ v: string; day: string }>("SELECT toString(visitor_id) AS v, toString(salt_day) AS day FROM events ORDER BY timestamp");
      expect(saltDays.map((r) => [r.v, r.day])).toEqual([
        ['1', d],
        ['1', d],
        ['2', next],
      ]);
      const columns = await old.query<{ name: string }>(
        `SELECT name FROM system.columns WHERE database = '${database}' AND table IN ('rollup_hourly', 'rollup_daily', 'sessions_hourly', 'sessions_daily') AND name = 'visitors'`,
      );
      expect(columns).toEqual([]);
      const sums = await old.query<{ pageviews: string }>("SELECT toString(sum(pageviews)) AS pageviews FROM rollup_daily WHERE site = 'up.test' AND dim = ''");
      expect(sums[0]?.pageviews).toBe('3');
      // New rows still reach the (additive) rollups.
      await old.exec(`INSERT INTO events (site, timestamp, visitor_id, salt_day, name, pathname) VALUES ('up.test', '${next} 12:00:00', 3, '${next}', 'pageview', '/b')`);
      const after = await old.query<{ pageviews: string }>("SELECT toString(sum(pageviews)) AS pageviews FROM rollup_hourly WHERE site = 'up.test' AND dim = ''");
      expect(after[0]?.pageviews).toBe('4');
      // Visitors: 3 distinct ids, two salt days; the same before and after the history is closed.
      const visitors = async (): Promise<Array<[string, string, number]>> =>
        (await storedVisitors(old, { sites: ['up.test'], side: 'event', dims: ['', 'page'] })).map((r) => [r.dim, r.value, r.visitors]);
      const expected: Array<[string, string, number]> = [
        ['', '', 3],
        ['page', '/', 2],
        ['page', '/a', 1],
        ['page', '/b', 1],
      ];
      expect(await visitors()).toEqual(expected);
      expect((await closeSaltDays(old, { sites: ['up.test'] })).map((c) => c.saltDay)).toEqual([d, next, ...Array.from({ length: today - 2 - firstDay - 1 }, (_, i) => dayIso(firstDay + 2 + i))]);
      expect(await visitors()).toEqual(expected);
      const entries = await storedVisitors(old, { sites: ['up.test'], side: 'session', dims: ['entry_page', 'exit_page'] });
      expect(entries.map((r) => [r.dim, r.value, r.visitors])).toEqual([
        ['entry_page', '/', 2],
        ['exit_page', '/', 1],
        ['exit_page', '/a', 1],
      ]);
    } finally {
      await old.close();
    }
  }, 120_000);
});
