import { describe, expect, it } from 'vitest';
import { openLocalHub, type LocalHub } from '../hub/local-hub.ts';
import { Registry } from '../lib/metrics.ts';
import { computeTruth } from '../schemas/testing/oracle.ts';
import {
  base,
  caughtUp,
  crashTestOptions,
  hubReader,
  metricValue,
  processorTestFile,
  publish,
  runProcessorOn,
  runUntilCrash,
  tempDir,
  waitFor,
  type RunningProcessor,
  type CrashStep,
} from './testing/harness.ts';
import { addPoisonConstraints, expectExact, mix, POISON_EXIT } from './testing/poison.ts';

/**
 * Records ClickHouse cannot store, written straight to the hub (as an older collector, another
 * producer or a bug would): they go to `dead_letters` with their reason, every good record is
 * stored exactly once, and the partition moves on, also across crashes in the middle of it.
 *
 * Two ways a record is refused: the processor sees it cannot be stored (a lone surrogate, which
 * ClickHouse's JSON parser rejects) and sets it aside before it touches any state; or ClickHouse
 * refuses rows of an insert, here through real CHECK constraints on `events` (a `poison` prop)
 * and on `sessions` (exit page `/poison-exit`), and the processor splits the batch to find them.
 */

const PARTITIONS = 2;
const fast = crashTestOptions;

const { store, closeAfter } = processorTestFile({ prepare: addPoisonConstraints });

function processorOn(hub: LocalHub, stateDir: string, registry = new Registry()): Promise<RunningProcessor> {
  return runProcessorOn(hub, stateDir, { store, options: fast, registry });
}

describe('dead letters', () => {
  it('sets aside records with lone surrogates written straight to the hub; good records stored once; the partition moves on', async () => {
    const m = mix('dl-unicode.test', 31, base, { unparseable: true, refused: false, exits: false });
    expect(m.unparseable.length).toBeGreaterThan(5);
    const hub = await openLocalHub({ dir: await tempDir('dl-hub'), partitions: PARTITIONS });
    closeAfter(hub);
    const registry = new Registry();
    const p = await processorOn(hub, await tempDir('dl-state'), registry);
    await publish(hub, m.all.slice(0, 300));
    await publish(hub, m.all.slice(300));
    await waitFor(() => caughtUp(p.processor.lag, PARTITIONS), 'the processor to get past every poisoned record');
    await expectExact(store, m);
    expect(metricValue(registry, 'farol_processor_dead_letters_total', '{reason="malformed_unicode",table="events"}')).toBe(m.unparseable.length);
    expect(metricValue(registry, 'farol_processor_rows_total', '{table="events"}')).toBe(computeTruth(m.good).stored.length);
    await p.stop();
    // Checkpointed at the end of every partition: nothing is held back for a replay.
    const consumer = await hub.openConsumer('processor');
    for (let partition = 0; partition < PARTITIONS; partition++) {
      expect(await consumer.getCheckpoint(partition)).toBe((await hub.endOffset(partition)) - 1);
    }
    await consumer.close();
  });

  it('splits a batch ClickHouse refuses down to the refused rows: every other row stored once, sessions consistent', async () => {
    const m = mix('dl-split.test', 32, base, { unparseable: true, refused: true, exits: true });
    expect(Math.min(m.refused.length, m.good.filter((e) => e.pathname === POISON_EXIT).length)).toBeGreaterThan(3);
    const hub = await openLocalHub({ dir: await tempDir('dl-hub'), partitions: PARTITIONS });
    closeAfter(hub);
    const registry = new Registry();
    const p = await processorOn(hub, await tempDir('dl-state'), registry);
    await publish(hub, m.all);
    await waitFor(() => caughtUp(p.processor.lag, PARTITIONS), 'the processor to get past every refused row', 180_000);
    await expectExact(store, m);
    expect(metricValue(registry, 'farol_processor_dead_letters_total', '{reason="VIOLATED_CONSTRAINT",table="events"}')).toBe(m.refused.length);
    expect(metricValue(registry, 'farol_processor_dead_letters_total', '{reason="VIOLATED_CONSTRAINT",table="sessions"}')).toBeGreaterThan(0);
    // A session that ends on the poisoned page is absent, never negative or doubled.
    const nets = await store.query<{ n: string }>(
      'SELECT sum(sign) AS n FROM sessions WHERE site = {site:String} GROUP BY session_id HAVING n NOT IN (0, 1)',
      { site: m.site },
    );
    expect(nets).toEqual([]);
    await p.stop();
  }, 300_000);

  const crashes: Array<[string, { step: CrashStep; nth: number; when: 'before' | 'after' }]> = [
    ['while splitting, before a half is written', { step: 'insert:events', nth: 4, when: 'before' }],
    ['while splitting, after a half was written', { step: 'insert:events', nth: 6, when: 'after' }],
    ['after a refused session batch', { step: 'insert:sessions', nth: 2, when: 'after' }],
    ['after dead letters were written, before the range counts as flushed', { step: 'insert:dead_letters', nth: 2, when: 'after' }],
    ['after the snapshot that follows dead letters', { step: 'snapshot', nth: 2, when: 'after' }],
  ];

  it.each(crashes)('counts exactly and writes each dead letter once after a crash %s', async (name, at) => {
    const m = mix(`dl-crash-${crashes.findIndex(([n]) => n === name)}.test`, 40 + crashes.findIndex(([n]) => n === name), base, {
      unparseable: true,
      refused: true,
      exits: true,
    });
    const hubDir = await tempDir('dl-crash-hub');
    const stateDir = await tempDir('dl-crash-state');
    const writer = await openLocalHub({ dir: hubDir, partitions: PARTITIONS });
    closeAfter(writer);
    const half = Math.floor(m.all.length / 2);
    await publish(writer, m.all.slice(0, half));

    // The instance that dies (as after SIGKILL: nothing after the chosen step ever happens).
    await runUntilCrash({ hubDir, stateDir, partitions: PARTITIONS, store, at, options: fast, timeoutMs: 120_000 });
    await publish(writer, m.all.slice(half));

    const hub = await hubReader(hubDir, PARTITIONS);
    closeAfter(hub);
    const p = await processorOn(hub, stateDir);
    await waitFor(() => caughtUp(p.processor.lag, PARTITIONS), 'the restarted processor to catch up', 180_000);
    await expectExact(store, m);
    await p.stop();
  }, 300_000);
});
