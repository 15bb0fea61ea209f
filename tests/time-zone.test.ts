import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { siteInputSchema } from '../control/control-plane.ts';
import { runQuery } from '../api/query/query.ts';
import { openTestStore, removeTempDirs } from '../processor/testing/harness.ts';
import { canonicalTimeZone, UNKNOWN_TO_CLICKHOUSE } from '../schemas/time-zone.ts';
import type { Store } from '../store/store.ts';

/**
 * One time-zone rule (schemas/time-zone.ts) for the control plane and the query engine, held
 * against the real ClickHouse: a zone a site may be given is a zone its queries can run in.
 */

describe('time zones the control plane accepts, the query engine runs', () => {
  let store: Store;
  beforeAll(async () => {
    store = await openTestStore();
  }, 60_000);
  afterAll(async () => {
    await store.close();
    await removeTempDirs();
  });

  it('every zone the rule accepts is loaded by ClickHouse under its canonical name', async () => {
    const known = new Set((await store.query<{ time_zone: string }>('SELECT time_zone FROM system.time_zones')).map((r) => r.time_zone));
    const offsets = Array.from({ length: 27 }, (_, i) => i - 14).map((h) => `Etc/GMT${h < 0 ? '' : '+'}${h}`);
    const candidates = [...Intl.supportedValuesOf('timeZone'), ...offsets, ...known, 'UTC', 'US/Eastern', 'Asia/Kolkata', 'europe/lisbon'];
    const accepted = candidates.flatMap((tz) => {
      const c = canonicalTimeZone(tz);
      return c === undefined ? [] : [c];
    });
    expect(accepted.length).toBeGreaterThan(400);
    expect(accepted.filter((tz) => !known.has(tz))).toEqual([]);
    // The exclusions are still needed: when chDB learns them, the list should shrink.
    for (const tz of UNKNOWN_TO_CLICKHOUSE) expect(known.has(tz), tz).toBe(false);
  });

  it.each(['Etc/GMT+5', 'europe/lisbon', 'Asia/Kolkata'])('a site in %s, accepted by the control plane, can be queried', async (timezone) => {
    const site = siteInputSchema.parse({ domain: 'tz.test', timezone });
    expect(site.timezone).toBe(timezone);
    const r = await runQuery(store, { domain: site.domain, timezone: site.timezone }, { site_id: site.domain, metrics: ['visitors'], date_range: '7d', dimensions: ['time:day'] }, new Date());
    expect(r.results.length).toBe(0);
  });
});
