import { describe, expect, it } from 'vitest';
import { openLocalHub } from '../hub/local-hub.ts';
import { silentLogger } from '../lib/log.ts';
import { computeTruth, generateTraffic, keepOnly } from '../schemas/testing/oracle.ts';
import { loadRegistrations, watchSiteEpochs, type Registration, type SiteEpochs } from './site-epochs.ts';
import {
  base,
  caughtUp,
  crashTestOptions,
  expectStoreMatchesTruth,
  HOUR,
  hubReader,
  metricValue,
  processorTestFile,
  publish,
  runProcessorOn,
  runUntilCrash,
  tempDir,
  waitFor,
} from './testing/harness.ts';

/** Site registrations as the processor knows them, and how dropping a deleted one's events stays exact. */

const PARTITIONS = 1;
const E1 = base - 48 * HOUR;
const E2 = base - 24 * HOUR;

const { store, closeAfter } = processorTestFile();

/** A fixed answer, for processors that must not learn anything new. */
function knowing(latest: (site: string) => Registration | undefined): SiteEpochs {
  return { latest, refresh: () => Promise.resolve(), stop: () => {} };
}

describe('site epochs', () => {
  it('reads the latest row of every domain from the sites table, deleted ones included', async () => {
    const row = (domain: string, created: number, updated: number, deleted: 0 | 1): Record<string, unknown> => ({
      domain,
      account_id: 'acc',
      created_at: new Date(created).toISOString().replace('T', ' ').slice(0, 23),
      updated_at: new Date(updated).toISOString().replace('T', ' ').slice(0, 23),
      deleted,
    });
    await store.insert('sites', [row('gone.test', E1, E1, 0), row('gone.test', E1, E1 + 1, 1), row('again.test', E1, E1, 0)]);
    await store.insert('sites', [row('again.test', E1, E1 + 5, 1), row('again.test', E2, E2, 0)]);
    const loaded = await loadRegistrations(store);
    expect(loaded.get('gone.test')).toEqual({ epoch: E1, deleted: true });
    expect(loaded.get('again.test')).toEqual({ epoch: E2, deleted: false });

    let loads = 0;
    const watch = watchSiteEpochs({
      load: () => {
        loads++;
        return loadRegistrations(store);
      },
      intervalMs: 3_600_000,
      minIntervalMs: 0,
      log: silentLogger,
    });
    await watch.refresh();
    const before = loads;
    expect([watch.latest('gone.test', E1), watch.latest('again.test', E1)]).toEqual([
      { epoch: E1, deleted: true },
      { epoch: E2, deleted: false },
    ]);
    expect(loads).toBe(before);
    // An epoch newer than what was loaded asks for a load.
    watch.latest('gone.test', E2);
    await waitFor(() => loads > before, 'a load');
    watch.stop();
  });

  it.each([
    ['learns a registration is deleted after the crash', false, true],
    ['forgets it (another view of the table) after the crash', true, false],
  ])('replays a range exactly as first written when the processor %s', async (_name, before, after) => {
    const site = `epochs-${String(before)}.test`;
    const stale = generateTraffic({ sites: [site], visitorsPerSite: 10, eventsPerVisitor: 10, start: base, seed: 61 }).map((e) => ({ ...e, epoch: E1 }));
    const live = generateTraffic({ sites: [site], visitorsPerSite: 10, eventsPerVisitor: 10, start: base + HOUR, seed: 62 }).map((e) => ({
      ...e,
      id: `live-${e.id}`,
      epoch: E2,
    }));
    const all = [...stale, ...live].sort((a, b) => a.ts - b.ts);
    const hubDir = await tempDir('epochs-hub');
    const stateDir = await tempDir('epochs-state');
    const writer = await openLocalHub({ dir: hubDir, partitions: PARTITIONS });
    closeAfter(writer);
    await publish(writer, all);

    // The first run takes every record as one range, drops E1's events (or not), and dies once
    // the range's events are in ClickHouse: its sessions and its snapshot are not.
    // Known: the site's registration E1 was deleted (E2 is newer than anything loaded: kept).
    const dead = (known: boolean) => (s: string): Registration | undefined => (known && s === site ? { epoch: E1, deleted: true } : undefined);
    await runUntilCrash({
      hubDir,
      stateDir,
      partitions: PARTITIONS,
      store,
      at: { step: 'insert:events', nth: 1, when: 'after' },
      options: { ...crashTestOptions, flushRecords: all.length, flushIntervalMs: 600_000 },
      siteEpochs: knowing(dead(before)),
    });
    const hub = await hubReader(hubDir, PARTITIONS);
    closeAfter(hub);
    const { processor, registry, stop } = await runProcessorOn(hub, stateDir, { store, options: crashTestOptions, siteEpochs: knowing(dead(after)) });
    await waitFor(() => caughtUp(processor.lag, PARTITIONS), 'the restarted processor to catch up');
    // The replayed range keeps the first run's choice, whatever is known now.
    const truth = computeTruth(before ? live : all);
    await expectStoreMatchesTruth(store, [site], keepOnly(truth, { event: () => true, session: () => true }));
    expect(metricValue(registry, 'farol_processor_dropped_total', '{reason="deleted_site"}')).toBe(before ? stale.length : 0);
    await stop();
  });
});
