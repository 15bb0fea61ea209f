import { expect as globalExpect, type ExpectStatic } from 'vitest';
import type { Store } from '../../store/store.ts';
import { integrity, rawCounts, rollupCounts, setDiff, storedEventKeys } from './exact-counts.ts';
import type { WireTruth } from './wire-oracle.ts';

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
  for (const grain of ['daily', 'hourly'] as const) {
    const rollups = await rollupCounts(store, grain);
    expect.soft(rollups, `${grain} rollups vs raw rows`).toEqual(raw);
    expect.soft(rollups, `${grain} rollups vs truth`).toEqual(truth.sites);
  }
}
