import { afterAll, describe, expect, it } from 'vitest';
import { removeTempDirs, tempDir } from '../processor/testing/harness.ts';
import { latestVersion, renderMigrations, visitColumnsOnEvents } from '../schemas/migrations/index.ts';
import { openChdbStore } from '../store/chdb-store.ts';
import { migrate } from '../store/migrate.ts';
import { migrateUpTo } from '../store/testing/store.ts';

/**
 * Migration 14 on a running install (its own file: one chDB data directory per process): events
 * stored before it take their session's visit attributes from `sessions`, month by month; events
 * without a session row keep none, rows written since keep theirs, and a rerun changes nothing.
 */

const database = 'farol_visit_upgrade';
const target = { database, retentionDays: 3650 };
const visit = visitColumnsOnEvents.map(([c]) => c);

afterAll(async () => {
  await removeTempDirs();
});

describe('visit attributes on events, back-filled in place', () => {
  it('copies each session’s attributes onto its events across months, per site, idempotently', async () => {
    const store = openChdbStore({ dataDir: await tempDir('visit-upgrade'), database });
    try {
      const run = (sql: string): Promise<void> => store.exec(sql, undefined, { withoutDatabase: true });
      await migrateUpTo(store, target, 13);
      // Session 1 of a.test: two states (a −1/+1 pair), events in March. Session 1 of b.test: the
      // same id on another site, another source. Session 2 of a.test starts on 28 March and runs
      // into April (the next partition). Session 3 has events but no row. Session 4 started on
      // 20 March (past the back-fill's one-week lead before April) with an event in April.
      const attrs = (src: string, utm: string): string => `'https://${src}/', '${src}', 'Referral', '${utm}', 'email', 'spring', 'hero', 'kw'`;
      await store.exec(
        `INSERT INTO sessions (site, session_id, visitor_id, start, timestamp, sign, version, referrer, source, channel, utm_source, utm_medium, utm_campaign, utm_content, utm_term) VALUES
         ('a.test', 1, 10, '2026-03-05 10:00:00', '2026-03-05 10:00:00', 1, 1, ${attrs('one.example', 'news')}),
         ('a.test', 1, 10, '2026-03-05 10:00:00', '2026-03-05 10:00:00', -1, 1, ${attrs('one.example', 'news')}),
         ('a.test', 1, 10, '2026-03-05 10:00:00', '2026-03-05 10:20:00', 1, 2, ${attrs('one.example', 'news')}),
         ('b.test', 1, 11, '2026-03-05 10:00:00', '2026-03-05 10:00:00', 1, 1, ${attrs('other.example', "nul\\0\uFFFD\\'q")}),
         ('a.test', 2, 12, '2026-03-31 23:50:00', '2026-04-01 00:10:00', 1, 1, ${attrs('two.example', 'ads')}),
         ('a.test', 4, 14, '2026-03-20 09:00:00', '2026-04-01 09:00:00', 1, 1, ${attrs('four.example', '')})`,
      );
      await store.exec(
        `INSERT INTO events (site, timestamp, event_id, session_id, visitor_id, name, pathname, referrer, source) VALUES
         ('a.test', '2026-03-05 10:00:00', 'e1', 1, 10, 'pageview', '/', 'https://one.example/', 'one.example'),
         ('a.test', '2026-03-05 10:20:00', 'e2', 1, 10, 'Signup', '/', '', ''),
         ('b.test', '2026-03-05 10:00:00', 'e3', 1, 11, 'pageview', '/', 'https://other.example/', 'other.example'),
         ('a.test', '2026-03-31 23:50:00', 'e4', 2, 12, 'pageview', '/', 'https://two.example/', 'two.example'),
         ('a.test', '2026-04-01 00:10:00', 'e5', 2, 12, 'pageview', '/b', '', ''),
         ('a.test', '2026-04-02 00:00:00', 'e6', 3, 13, 'pageview', '/', 'https://three.example/', 'three.example'),
         ('a.test', '2026-04-01 09:00:00', 'e7', 4, 14, 'pageview', '/', '', '')`,
      );
      const times = async (): Promise<string[]> =>
        (await store.query<{ t: string }>("SELECT concat(event_id, ' ', toString(timestamp)) AS t FROM events ORDER BY event_id")).map((r) => r.t);
      const timesBefore = await times();
      // Every later migration runs too (16 changes the source columns' type, 17 the timestamp's
      // codec): the values read below went through them.
      expect(await migrate(store, target)).toEqual(Array.from({ length: latestVersion - 13 }, (_, i) => 14 + i));
      const codec = await store.query<{ c: string }>(
        "SELECT compression_codec AS c FROM system.columns WHERE database = currentDatabase() AND table = 'events' AND name = 'timestamp'",
      );
      expect(codec).toEqual([{ c: 'CODEC(Delta(8), LZ4)' }]);
      // Parts written with ZSTD read the same, and so do they once a merge rewrote them with LZ4.
      expect(await times()).toEqual(timesBefore);
      await store.exec('OPTIMIZE TABLE events FINAL');
      expect(await times()).toEqual(timesBefore);
      expect(timesBefore).toContain('e5 2026-04-01 00:10:00.000');

      const stored = async (): Promise<Record<string, string[]>> => {
        const rows = await store.query<Record<string, string>>(`SELECT event_id, ${visit.map((c) => `session_${c}`).join(', ')} FROM events ORDER BY event_id`);
        return Object.fromEntries(rows.map((r) => [r['event_id'] ?? '', visit.map((c) => r[`session_${c}`] ?? '?')]));
      };
      const of = (src: string, utm: string): string[] => [`https://${src}/`, src, 'Referral', utm, 'email', 'spring', 'hero', 'kw'];
      const none = visit.map(() => '');
      const expected = {
        e1: of('one.example', 'news'),
        e2: of('one.example', 'news'),
        // A NUL, a replaced lone surrogate and a quote travel through the dictionary unchanged.
        e3: of('other.example', "nul\0\uFFFD'q"),
        e4: of('two.example', 'ads'),
        e5: of('two.example', 'ads'),
        e6: none,
        e7: none,
      };
      expect(await stored()).toEqual(expected);
      // The events' own columns are left as they were.
      const own = await store.query<{ source: string }>("SELECT source FROM events WHERE event_id IN ('e2', 'e5', 'e6') ORDER BY event_id");
      expect(own.map((r) => r.source)).toEqual(['', '', 'three.example']);

      // A row the processor wrote since, with its session's attributes: a rerun (as after a crash
      // before the version was recorded) leaves it, and sets the same values everywhere else.
      await store.exec(
        `INSERT INTO events (site, timestamp, event_id, session_id, visitor_id, name, pathname, session_source, session_channel) VALUES
         ('a.test', '2026-04-02 00:05:00', 'e8', 3, 13, 'pageview', '/x', 'written.example', 'Referral')`,
      );
      const m14 = renderMigrations(target).find((m) => m.version === 14);
      for (const month of [202603, 202604]) for (const sql of m14?.monthly?.(month) ?? []) await run(sql);
      expect(await stored()).toEqual({ ...expected, e8: ['', 'written.example', 'Referral', '', '', '', '', ''] });
      // The dictionary is gone; migrate has nothing left to do.
      expect(await store.query("SELECT name FROM system.dictionaries WHERE database = currentDatabase()")).toEqual([]);
      expect(await migrate(store, target)).toEqual([]);
    } finally {
      await store.close();
    }
  }, 120_000);
});
