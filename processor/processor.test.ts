import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { HubConsumer } from '../hub/hub.ts';
import { openLocalHub, type LocalHub } from '../hub/local-hub.ts';
import { silentLogger } from '../lib/log.ts';
import { Registry } from '../lib/metrics.ts';
import type { Store } from '../store/store.ts';
import { computeTruth, generateTraffic } from '../schemas/testing/oracle.ts';
import { startProcessor, type ProcessorOptions } from './main.ts';
import { openFileStateStore } from './state-store.ts';
import {
  base,
  caughtUp,
  expectStoreMatchesTruth,
  FlakyStore,
  metricValue,
  processorTestFile,
  publish,
  runProcessorOn,
  tempDir,
  waitFor,
  type RunningProcessor,
} from './testing/harness.ts';

/**
 * The processor against real components: the local hub on a temp dir and embedded chDB. Counts
 * in ClickHouse (raw tables and rollups) must equal an oracle computed from the published events.
 */

const PARTITIONS = 4;

/** Small flushes and frequent snapshots, so a few thousand events cross many of each. */
const fast: Partial<ProcessorOptions> = {
  flushRecords: 250,
  flushIntervalMs: 30,
  snapshotIntervalMs: 40,
  hubBatchSize: 100,
  retryInitialMs: 10,
  retryMaxMs: 100,
  lagRefreshMs: 50,
};

const { store } = processorTestFile();

/** A processor on `hub` with the state in `stateDir`; `stop` drains it and closes its consumer. */
function run(hub: LocalHub, stateDir: string, target: Store = store): Promise<RunningProcessor> {
  return runProcessorOn(hub, stateDir, { store: target, options: fast });
}

async function checkpoints(hub: LocalHub): Promise<number[]> {
  const consumer = await hub.openConsumer('processor');
  try {
    return await Promise.all(Array.from({ length: PARTITIONS }, (_, p) => consumer.getCheckpoint(p)));
  } finally {
    await consumer.close();
  }
}

async function endOffsets(hub: LocalHub): Promise<number[]> {
  return Promise.all(Array.from({ length: PARTITIONS }, (_, p) => hub.endOffset(p)));
}

describe('processor', () => {
  it('writes exactly the events, sessions and rollups the oracle computes', async () => {
    const sites = ['alpha.test', 'beta.test', 'gamma.test'];
    const traffic = generateTraffic({ sites, visitorsPerSite: 40, eventsPerVisitor: 30, start: base, seed: 1 });
    const truth = computeTruth(traffic);
    const hub = await openLocalHub({ dir: await tempDir('hub'), partitions: PARTITIONS });
    const stateDir = await tempDir('state');
    const p = await run(hub, stateDir);
    // Half before it catches up, half while it runs.
    await publish(hub, traffic.slice(0, 2_000));
    await publish(hub, traffic.slice(2_000));
    await waitFor(() => caughtUp(p.processor.lag, PARTITIONS), 'the processor to catch up');

    await expectStoreMatchesTruth(store, sites, truth);
    expect(traffic.length).toBeGreaterThan(3_000);
    expect(metricValue(p.registry, 'farol_processor_duplicates_total')).toBe(truth.duplicates);
    expect(metricValue(p.registry, 'farol_processor_rows_total', '{table="events"}')).toBe(truth.stored.length);
    expect(metricValue(p.registry, 'farol_processor_flushes_total')).toBeGreaterThan(PARTITIONS);
    expect(p.registry.render()).toMatch(/farol_processor_lag_events\{partition="3"\} 0/);

    await p.stop();
    // Drained: every partition checkpointed at its end, and nothing left to replay.
    expect(await checkpoints(hub)).toEqual((await endOffsets(hub)).map((end) => end - 1));
    for (let partition = 0; partition < PARTITIONS; partition++) expect(await p.stateStore.readIntents(partition)).toEqual([]);
    await hub.close();
  });

  it('holds every partition at a range boundary for a backup: what had arrived is written, then nothing until released', async () => {
    const sites = ['hold.test'];
    const traffic = generateTraffic({ sites, visitorsPerSite: 20, eventsPerVisitor: 20, start: base, seed: 7 });
    const half = Math.floor(traffic.length / 2);
    const hub = await openLocalHub({ dir: await tempDir('hub'), partitions: PARTITIONS });
    const p = await run(hub, await tempDir('state'));
    const rows = async (): Promise<number> => Number((await store.query<{ n: string }>("SELECT count() AS n FROM events WHERE site = 'hold.test'"))[0]?.n);
    await publish(hub, traffic.slice(0, half));
    await waitFor(() => caughtUp(p.processor.lag, PARTITIONS), 'the first half');

    let release!: () => void;
    const held = await p.processor.hold(new Promise<void>((r) => (release = r)));
    expect([...held].sort(([a], [b]) => a - b)).toEqual((await endOffsets(hub)).map((end, partition) => [partition, end - 1]));
    const atHold = await rows();
    expect(atHold).toBe(computeTruth(traffic.slice(0, half)).stored.length);
    await publish(hub, traffic.slice(half));
    // Proving an absence takes time: every partition given records holds them a second (flushes
    // are due after 30 ms), and none is written.
    const waiting = async (): Promise<boolean> => {
      const lag = await p.processor.lag();
      return lag.reduce((n, l) => n + l.events, 0) === traffic.length - half && lag.every((l) => l.events === 0 || l.seconds >= 1);
    };
    await waitFor(waiting, 'the second half waiting a second');
    expect(await rows()).toBe(atHold);

    release();
    await waitFor(() => caughtUp(p.processor.lag, PARTITIONS), 'the second half written');
    await expectStoreMatchesTruth(store, sites, computeTruth(traffic));
    await p.stop();
    await hub.close();
  });

  it('continues visitors’ sessions across a drain and a restart', async () => {
    const sites = ['restart.test'];
    const traffic = generateTraffic({ sites, visitorsPerSite: 30, eventsPerVisitor: 40, start: base, seed: 2 });
    const truth = computeTruth(traffic);
    const hub = await openLocalHub({ dir: await tempDir('hub'), partitions: PARTITIONS });
    const stateDir = await tempDir('state');
    const half = Math.floor(traffic.length / 2);

    const first = await run(hub, stateDir);
    await publish(hub, traffic.slice(0, half));
    await waitFor(() => caughtUp(first.processor.lag, PARTITIONS), 'the first processor to catch up');
    await first.stop();

    const second = await run(hub, stateDir);
    await publish(hub, traffic.slice(half));
    await waitFor(() => caughtUp(second.processor.lag, PARTITIONS), 'the second processor to catch up');
    // The per-session check covers the sessions the restart cut through, and there are some.
    await expectStoreMatchesTruth(store, sites, truth);
    const restartAt = traffic[half]?.ts ?? 0;
    expect(truth.sessions.filter((s) => s.start < restartAt && s.last >= restartAt).length).toBeGreaterThan(5);
    await second.stop();
    await hub.close();
  });

  it('holds its checkpoint while ClickHouse is down, then lands everything once', async () => {
    const sites = ['outage.test', 'outage2.test'];
    const traffic = generateTraffic({ sites, visitorsPerSite: 20, eventsPerVisitor: 30, start: base, seed: 3 });
    const truth = computeTruth(traffic);
    const hub = await openLocalHub({ dir: await tempDir('hub'), partitions: PARTITIONS });
    const flaky = new FlakyStore(store);
    flaky.down = true;
    const p = await run(hub, await tempDir('state'), flaky);
    await publish(hub, traffic);

    await waitFor(() => flaky.failures >= 8, 'inserts to fail a few times');
    const consumer = p.processor;
    expect(await countEvents(sites)).toBe(0);
    expect((await consumer.lag()).reduce((n, l) => n + l.events, 0)).toBe(traffic.length);
    expect(metricValue(p.registry, 'farol_processor_store_retries_total')).toBeGreaterThanOrEqual(8);
    // Snapshots are due every 40 ms, but none may checkpoint past what is not written.
    const hubCheckpoints = JSON.parse(await readFile(join(hub.dir, 'checkpoints', 'processor.json'), 'utf8')) as {
      offsets: number[];
    };
    expect(hubCheckpoints.offsets).toEqual([-1, -1, -1, -1]);

    // Back up, but the first acknowledgements get lost after the rows landed: the retries must
    // be dropped by their dedup tokens.
    flaky.loseAcks = 3;
    flaky.down = false;
    await waitFor(() => caughtUp(consumer.lag, PARTITIONS), 'the processor to catch up after the outage');
    await expectStoreMatchesTruth(store, sites, truth);
    const tokens = flaky.inserts.map((i) => i.token ?? '');
    expect(new Set(tokens).size).toBeLessThan(tokens.length);
    expect(tokens.every((t) => /^[0-9a-f]{16}:p\d:\d+-\d+:(events|sessions)$/.test(t))).toBe(true);
    await p.stop();
    await hub.close();
  });

  it('stops taking records from the hub while its buffer is full (backpressure)', async () => {
    const sites = ['backpressure.test'];
    const traffic = generateTraffic({ sites, visitorsPerSite: 20, eventsPerVisitor: 40, start: base, seed: 4 });
    const hub = await openLocalHub({ dir: await tempDir('hub'), partitions: PARTITIONS });
    const flaky = new FlakyStore(store);
    flaky.down = true;
    const consumer = await hub.openConsumer('processor');
    // Counts what the hub hands over, per partition.
    const delivered = new Map<number, number>();
    const counting: HubConsumer = {
      partitionCount: consumer.partitionCount,
      subscribe: (handlers, opts) =>
        consumer.subscribe(
          {
            partitionOpened: (p, start) => handlers.partitionOpened?.(p, start) ?? Promise.resolve(),
            partitionClosed: (p) => handlers.partitionClosed?.(p) ?? Promise.resolve(),
            processBatch: (batch) => {
              delivered.set(batch.partition, (delivered.get(batch.partition) ?? 0) + batch.records.length);
              return handlers.processBatch(batch);
            },
          },
          opts,
        ),
      checkpoint: (p, o) => consumer.checkpoint(p, o),
      getCheckpoint: (p) => consumer.getCheckpoint(p),
      endOffset: (p) => consumer.endOffset(p),
      close: () => consumer.close(),
    };
    const stateStore = await openFileStateStore(await tempDir('state'));
    const processor = startProcessor({
      consumer: counting,
      store: flaky,
      stateStore,
      log: silentLogger,
      metrics: new Registry(),
      options: { ...fast, maxBufferedRecords: 100, flushRecords: 50 },
    });
    await publish(hub, traffic);
    await waitFor(() => flaky.failures >= 20, 'inserts to fail a while');
    const ends = await endOffsets(hub);
    for (let p = 0; p < PARTITIONS; p++) {
      // One flush in the air, a full buffer, and the one batch that filled it.
      expect(delivered.get(p) ?? 0).toBeLessThanOrEqual(Math.min(ends[p] ?? 0, 100 + 100 + (fast.hubBatchSize ?? 0)));
    }
    expect([...delivered.values()].reduce((a, b) => a + b, 0)).toBeLessThan(traffic.length);
    flaky.down = false;
    await waitFor(() => caughtUp(processor.lag, PARTITIONS), 'the processor to catch up');
    await expectStoreMatchesTruth(store, sites, computeTruth(traffic));
    await processor.drain();
    await consumer.close();
    await stateStore.close();
    await hub.close();
  });
});

async function countEvents(sites: string[]): Promise<number> {
  const rows = await store.query<{ n: string }>('SELECT count() AS n FROM events WHERE site IN {sites:Array(String)}', { sites });
  return Number(rows[0]?.n);
}
