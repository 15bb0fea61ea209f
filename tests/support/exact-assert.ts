import { expect as globalExpect, type ExpectStatic } from 'vitest';
import type { Store } from '../../store/store.ts';
import { integrity, rawCounts, rollupCounts, setDiff, storedEventKeys } from './exact-counts.ts';
import type { SiteCounts, WireTruth } from './wire-oracle.ts';

/**
 * Asserts (softly, so one run reports every mismatch) that what ClickHouse holds equals the
 * truth: per-site counts from raw rows, every event id exactly once, sessions that net to one
 * state each, and both grains of rollups equal to the raw counts. A concurrent test passes its
 * context's `expect` (soft assertions need to know their test).
 */
export async function expectExactCounts(store: Store, truth: WireTruth, expect: ExpectStatic = globalExpect): Promise<void> {
  const raw = await rawCounts(store);
  expect.soft(raw, 'raw events/sessions vs truth').toEqual(truth.sites);
  const keys = setDiff(truth.eventKeys, await storedEventKeys(store));
  expect.soft(keys, 'stored event ids vs sent ids').toEqual({ missing: [], extra: [], missingCount: 0, extraCount: 0 });
  const totals = Object.values(truth.sites).reduce(
    (t, c) => ({ visits: t.visits + c.visits, visitors: t.visitors + c.visitors, pageviews: t.pageviews + c.pageviews }),
    { visits: 0, visitors: 0, pageviews: 0 },
  );
  expect.soft(await integrity(store), 'integrity').toEqual({
    eventRows: truth.totalEvents,
    duplicateEventRows: 0,
    brokenSessions: 0,
    liveSessions: totals.visits,
    sessionVisitors: totals.visitors,
    sessionPageviews: totals.pageviews,
    sessionEvents: truth.totalEvents,
    orphanEvents: 0,
  });
  const rollups = { daily: await rollupCounts(store, 'daily'), hourly: await rollupCounts(store, 'hourly') };
  for (const grain of ['daily', 'hourly'] as const) {
    expect.soft(rollups[grain], `${grain} rollups vs raw rows`).toEqual(raw);
    expect.soft(rollups[grain], `${grain} rollups vs truth`).toEqual(truth.sites);
  }
  // Last and short, so a log cut to its tail still says what disagreed: per site, the totals of
  // each source that differs from the truth, plus the id diff and the dead letters.
  const mismatches: string[] = [];
  const line = (c: SiteCounts | undefined): string =>
    c === undefined ? 'absent' : `events ${c.events} pageviews ${c.pageviews} visitors ${c.visitors} visits ${c.visits} bounces ${c.bounces}`;
  for (const site of Object.keys(truth.sites)) {
    const want = line(truth.sites[site]);
    for (const [name, counts] of [['raw', raw], ['daily', rollups.daily], ['hourly', rollups.hourly]] as const) {
      const got = line(counts[site]);
      if (got !== want) mismatches.push(`${site} ${name}: ${got} (truth: ${want})`);
    }
  }
  if (keys.missingCount + keys.extraCount > 0) mismatches.push(`event ids: ${keys.missingCount} missing, ${keys.extraCount} extra, e.g. ${[...keys.missing, ...keys.extra].slice(0, 3).join(' ')}`);
  const [dead] = await store.query<{ n: string | number }>('SELECT count() AS n FROM dead_letters');
  if (Number(dead?.n ?? 0) > 0) mismatches.push(`dead letters: ${String(dead?.n)}`);
  expect.soft(mismatches, 'summary of the mismatches above').toEqual([]);
}
