import { beforeAll, describe, expect, it } from 'vitest';
import { nearMidnightUtc, pollUntil, postBatch } from './support/e2e.ts';
import { eventHubsSuite } from './support/eventhubs/suite.ts';
import { rawCounts } from './support/exact-counts.ts';
import { exitCodes, logLines, startFarol, startFarolProcessor, type FarolChild, type FarolProcess } from './support/farol-process.ts';
import { generateWireTraffic, planBatches, type WireTruth } from './support/wire-oracle.ts';

/**
 * SIGTERM must end a `farol processor` in bounded time even when it cannot write: with ClickHouse
 * down, its drain gives up after its bound, checkpoints nothing it did not write, and exits
 * non-zero; the next processor then writes those events from the hub, each exactly once.
 */

const HUB = 'farol-drain';
const DATABASE = 'farol_drain';
const SITE = 'drain.test';
/** The drain bound the processors run with (FAROL_DRAIN_TIMEOUT_MS; 15 s by default): the same give-up, sooner. */
const DRAIN_TIMEOUT_MS = 3_000;

describe.skipIf(nearMidnightUtc(10))('Event Hubs processor drain with ClickHouse down', () => {
  const suite = eventHubsSuite({ name: 'farol-drain', hubName: HUB, partitions: 4, database: DATABASE, container: 'farol-drain-checkpoints' });
  let collector: FarolProcess | undefined;

  beforeAll(async () => {
    // No ClickHouse for the collector: it accepts the sites of FAROL_SITES.
    collector = await startFarol('collector', {
      ...suite.deployment().hubEnv,
      // The daily salt is shared through the checkpoint storage (required on Event Hubs).
      FAROL_CHECKPOINT_CONNECTION_STRING: suite.deployment().azurite.connectionString,
      FAROL_SITES: SITE,
      FAROL_TRUST_PROXY: '127.0.0.1/32',
      FAROL_DATA_DIR: await suite.tempDir('farol-drain-collector-'),
    });
    suite.track(collector.child);
  }, 120_000);

  /** Sends new traffic through the collector; returns the truth of everything sent so far. */
  async function send(seed: number, targetEvents: number): Promise<WireTruth> {
    if (collector === undefined) throw new Error('no collector');
    const traffic = generateWireTraffic({ seed, sites: [SITE], targetEvents, idPrefix: `dr${seed}` });
    const truth = await suite.sent(traffic);
    for (const batches of planBatches(traffic, { senders: 1, batchSize: 50, seed: seed + 1 })) {
      for (const b of batches) {
        const r = await postBatch(collector.url, b);
        expect(r, `batch ${b.seq}`).toMatchObject({ ok: true, status: 202, accepted: b.events.length });
      }
    }
    return truth;
  }

  const landed = (truth: WireTruth, timeoutMs: number): Promise<void> => suite.expectLanded(truth, { timeoutMs });

  /** Waits for a child's exit at most `ms`; fails with the tail of its output if it does not. */
  const exitWithin = async (name: string, c: FarolChild, ms: number): Promise<number | string> => (await exitCodes([{ name, ...c }], ms))[0] ?? 'none';

  it('SIGTERM ends the processor in bounded time (exit 1, nothing checkpointed past what was written); the next one writes everything once', async () => {
    const { clickhouse, store } = suite.deployment();
    const processorEnv = { ...suite.deployment().processorEnv, FAROL_DRAIN_TIMEOUT_MS: String(DRAIN_TIMEOUT_MS) };
    const first = await startFarolProcessor({ ...processorEnv, FAROL_DATA_DIR: await suite.tempDir('farol-drain-p1-') });
    suite.track(first.child);
    await landed(await send(7_100, 400), 60_000);

    await clickhouse.stop();
    const truth = await send(7_200, 400);
    // The processor holds the new events: its writes fail and it retries.
    await pollUntil(async () => (first.output.some((l) => l.includes('failed; retrying')) ? true : undefined), { timeoutMs: 60_000, describe: () => 'a failed write' });
    first.child.kill('SIGTERM');
    expect(await exitWithin('first processor', first, 45_000)).toBe(1);
    // Given up at the configured bound (the setting reached the processor).
    expect(logLines(first.output, 'drain: writes did not finish in time; giving up without checkpointing them (the hub keeps those events)')).toMatchObject([{ ms: DRAIN_TIMEOUT_MS }]);

    await clickhouse.start();
    const second = await startFarolProcessor({ ...processorEnv, FAROL_DATA_DIR: await suite.tempDir('farol-drain-p2-') });
    suite.track(second.child);
    await landed(truth, 90_000);
    second.child.kill('SIGTERM');
    expect(await exitWithin('second processor', second, 45_000)).toBe(0);
    // Nothing more arrives after a clean drain.
    expect(await rawCounts(store)).toEqual(truth.sites);
  }, 300_000);
});
