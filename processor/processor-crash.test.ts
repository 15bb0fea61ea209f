import { describe, expect, it } from 'vitest';
import { openLocalHub, type LocalHub } from '../hub/local-hub.ts';
import { silentLogger } from '../lib/log.ts';
import { Registry } from '../lib/metrics.ts';
import { computeTruth, generateTraffic } from '../schemas/testing/oracle.ts';
import { startProcessor } from './main.ts';
import { openFileStateStore } from './state-store.ts';
import {
  base,
  caughtUp,
  crashTestOptions,
  expectStoreMatchesTruth,
  hubReader,
  metricValue,
  processorTestFile,
  publish,
  runProcessorOn,
  runUntilCrash,
  tempDir,
  waitFor,
  type CrashStep,
} from './testing/harness.ts';

/**
 * A processor killed at each point of a flush: the instance's store, state store and hub
 * consumer freeze at that point (nothing after it ever happens, as after SIGKILL), then a new
 * instance starts on the same hub, state directory and ClickHouse. Counts must stay exact.
 */

const PARTITIONS = 2;
const options = crashTestOptions;

const { store, closeAfter } = processorTestFile();

const reader = (dir: string): Promise<LocalHub> => hubReader(dir, PARTITIONS);

const scenarios: Array<[string, { step: CrashStep; nth: number; when: 'before' | 'after'; overlapping?: boolean; insertDelayMs?: number }]> = [
  ['after an intent is logged, before its inserts', { step: 'intent', nth: 4, when: 'after' }],
  // The next range's intent is logged while the previous range's rows are being inserted.
  // (The first such intent; slow inserts make the next range due meanwhile. Flushing one range at
  // a time, no intent is ever logged during an insert of its partition: no crash, the test fails.)
  ['after an intent is logged while the previous range is being inserted', { step: 'intent', nth: 0, when: 'after', overlapping: true, insertDelayMs: 150 }],
  ['before the events insert reaches ClickHouse', { step: 'insert:events', nth: 3, when: 'before' }],
  ['after the events insert, before the sessions insert', { step: 'insert:events', nth: 3, when: 'after' }],
  ['after both inserts, before the snapshot', { step: 'insert:sessions', nth: 4, when: 'after' }],
  ['after the snapshot, before the hub checkpoint', { step: 'snapshot', nth: 2, when: 'after' }],
  ['after the checkpoint, before the flush log is truncated', { step: 'checkpoint', nth: 2, when: 'after' }],
];

describe('processor crash', () => {
  it.each(scenarios)('counts exactly after a crash %s', async (name, at) => {
    const site = `crash-${scenarios.findIndex(([n]) => n === name)}.test`;
    const traffic = generateTraffic({ sites: [site], visitorsPerSite: 25, eventsPerVisitor: 40, start: base, seed: 11 });
    const truth = computeTruth(traffic);
    const hubDir = await tempDir('crash-hub');
    const stateDir = await tempDir('crash-state');
    const writer = await openLocalHub({ dir: hubDir, partitions: PARTITIONS });
    closeAfter(writer);
    const half = Math.floor(traffic.length / 2);
    await publish(writer, traffic.slice(0, half));

    // The instance that dies.
    const crashed = await runUntilCrash({ hubDir, stateDir, partitions: PARTITIONS, store, at, options });
    if (at.overlapping === true) expect([...crashed.inFlightAtCrash].some((s) => s.startsWith('insert:'))).toBe(true);
    await publish(writer, traffic.slice(half));

    // The restarted instance.
    const restarted = await runProcessorOn(await reader(hubDir), stateDir, { store, options });
    await waitFor(() => caughtUp(restarted.processor.lag, PARTITIONS), 'the restarted processor to catch up');
    await expectStoreMatchesTruth(store, [site], truth);
    expect(metricValue(restarted.registry, 'farol_processor_flushes_total')).toBeGreaterThan(0);

    await restarted.stop();
    await restarted.hub.close();
  });

  it('refuses to start when its state is behind the hub checkpoint', async () => {
    const errors: string[] = [];
    const hubLog = {
      info: () => {},
      warn: () => {},
      error: (fields: Record<string, unknown>) => {
        if (fields['err'] instanceof Error) errors.push(fields['err'].message);
      },
    };
    const writer = await openLocalHub({ dir: await tempDir('lost-hub'), partitions: PARTITIONS, log: hubLog, retryBackoffMs: 10 });
    closeAfter(writer);
    const traffic = generateTraffic({ sites: ['lost.test'], visitorsPerSite: 5, eventsPerVisitor: 10, start: base, seed: 12 });
    await publish(writer, traffic);
    const consumer = await writer.openConsumer('processor');
    // The hub says offsets up to 3 are done, but this (empty) state directory never saw them.
    await consumer.checkpoint(0, 3);
    const stateStore = await openFileStateStore(await tempDir('lost-state'));
    const processor = startProcessor({ consumer, store, stateStore, log: silentLogger, metrics: new Registry(), options });
    await waitFor(() => errors.some((e) => /checkpoint is at offset 3 but the processor state only covers -1/.test(e)), 'the refusal');
    expect((await processor.lag()).map((l) => l.partition)).toEqual([1]);
    await processor.drain();
    await consumer.close();
    await stateStore.close();
  });
});
