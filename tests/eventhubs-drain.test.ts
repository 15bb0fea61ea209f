import type { ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openHttpStore } from '../store/http-store.ts';
import type { Store } from '../store/store.ts';
import type { ClickHouseHttp } from '../store/testing/clickhouse-http.ts';
import { geoCountries, nearMidnightUtc, pollUntil, postBatch } from './support/e2e.ts';
import type { Azurite } from '../hub/testing/eventhubs/azurite.ts';
import type { EventHubsBroker } from '../hub/testing/eventhubs/broker.ts';
import { startEventHubsStack } from './support/eventhubs/stack.ts';
import { expectExactCounts } from './support/exact-assert.ts';
import { rawCounts } from './support/exact-counts.ts';
import { runFarol, startFarol, startFarolProcessor, type FarolChild, type FarolProcess } from './support/farol-process.ts';
import { computeWireTruth, generateWireTraffic, planBatches, type WireTruth, type WireVisitor } from './support/wire-oracle.ts';

/**
 * SIGTERM must end a `farol processor` in bounded time even when it cannot write: with ClickHouse
 * down, its drain gives up after its bound, checkpoints nothing it did not write, and exits
 * non-zero; the next processor then writes those events from the hub, each exactly once.
 */

const HUB = 'farol-drain';
const DATABASE = 'farol_drain';
const SITE = 'drain.test';

/** Waits for a child's exit at most `ms`; fails with the tail of its output if it does not. */
async function exitWithin(c: FarolChild, ms: number): Promise<number | string> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`did not exit within ${ms} ms of SIGTERM:\n${c.output.slice(-30).join('\n')}`)), ms);
  });
  try {
    return await Promise.race([c.exited, late]);
  } finally {
    clearTimeout(timer);
  }
}

describe.skipIf(nearMidnightUtc(10))('Event Hubs processor drain with ClickHouse down', () => {
  const dirs: string[] = [];
  const children: ChildProcess[] = [];
  let broker: EventHubsBroker | undefined;
  let azurite: Azurite | undefined;
  let clickhouse: ClickHouseHttp | undefined;
  let store: Store | undefined;
  let collector: FarolProcess | undefined;
  let processorEnv: Record<string, string> = {};
  const visitors: WireVisitor[] = [];
  const countries = new Map<string, string>();

  async function tempDir(prefix: string): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), prefix));
    dirs.push(dir);
    return dir;
  }

  /** Sends new traffic through the collector; returns the truth of everything sent so far. */
  async function send(seed: number, targetEvents: number): Promise<WireTruth> {
    if (collector === undefined) throw new Error('no collector');
    const traffic = generateWireTraffic({ seed, sites: [SITE], targetEvents, idPrefix: `dr${seed}` });
    for (const [ip, country] of await geoCountries(traffic.ips)) countries.set(ip, country);
    visitors.push(...traffic.visitors);
    for (const batches of planBatches(traffic, { senders: 1, batchSize: 50, seed: seed + 1 })) {
      for (const b of batches) {
        const r = await postBatch(collector.url, b);
        expect(r, `batch ${b.seq}`).toMatchObject({ ok: true, status: 202, accepted: b.events.length });
      }
    }
    const all = { visitors, events: visitors.reduce((n, v) => n + v.events.length, 0), ips: [...countries.keys()] };
    return computeWireTruth(all, (ip) => countries.get(ip) ?? '');
  }

  async function landed(truth: WireTruth, timeoutMs: number): Promise<void> {
    const s = store;
    if (s === undefined) throw new Error('no store');
    await pollUntil(async () => (isDeepStrictEqual(await rawCounts(s), truth.sites) ? true : undefined), { timeoutMs, describe: () => 'every event to land' });
    await expectExactCounts(s, truth);
  }

  beforeAll(async () => {
    const stack = await startEventHubsStack({ name: 'farol-drain', hubName: HUB, partitions: 4, tempDir });
    broker = stack.broker;
    azurite = stack.azurite;
    clickhouse = stack.clickhouse;
    const hubEnv = {
      FAROL_HUB: 'eventhubs',
      FAROL_EVENTHUBS_CONNECTION_STRING: broker.connectionString,
      FAROL_EVENTHUBS_NAME: HUB,
      FAROL_LOG_LEVEL: 'info',
    };
    processorEnv = {
      ...hubEnv,
      FAROL_CHECKPOINT_CONNECTION_STRING: azurite.connectionString,
      FAROL_CHECKPOINT_CONTAINER: 'farol-drain-checkpoints',
      FAROL_CLICKHOUSE_URL: clickhouse.url,
      FAROL_CLICKHOUSE_DATABASE: DATABASE,
      FAROL_EVENTHUBS_UPDATE_INTERVAL_MS: '1000',
      FAROL_EVENTHUBS_OWNERSHIP_EXPIRY_MS: '5000',
    };
    const migrated = await runFarol(['migrate'], { ...processorEnv, FAROL_DATA_DIR: await tempDir('farol-drain-migrate-') });
    expect(migrated.code, migrated.stderr).toBe(0);
    store = openHttpStore({ url: clickhouse.url, username: 'default', password: '', database: DATABASE });
    // No ClickHouse for the collector: it accepts the sites of FAROL_SITES.
    collector = await startFarol('collector', { ...hubEnv, FAROL_SITES: SITE, FAROL_TRUST_PROXY: '127.0.0.1/32', FAROL_DATA_DIR: await tempDir('farol-drain-collector-') });
    children.push(collector.child);
  }, 120_000);

  afterAll(async () => {
    for (const c of children) c.kill('SIGKILL');
    await Promise.all(children.map((c) => (c.exitCode === null && c.signalCode === null ? new Promise((r) => c.once('exit', r)) : null)));
    await store?.close();
    await Promise.all([broker?.stop(), azurite?.stop(), clickhouse?.stop()]);
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  }, 60_000);

  it('SIGTERM ends the processor in bounded time (exit 1, nothing checkpointed past what was written); the next one writes everything once', async () => {
    if (clickhouse === undefined || store === undefined) throw new Error('not started');
    const first = await startFarolProcessor({ ...processorEnv, FAROL_DATA_DIR: await tempDir('farol-drain-p1-') });
    children.push(first.child);
    await landed(await send(7_100, 400), 60_000);

    await clickhouse.stop();
    const truth = await send(7_200, 400);
    // The processor holds the new events: its writes fail and it retries.
    await pollUntil(async () => (first.output.some((l) => l.includes('failed; retrying')) ? true : undefined), { timeoutMs: 60_000, describe: () => 'a failed write' });
    first.child.kill('SIGTERM');
    expect(await exitWithin(first, 45_000)).toBe(1);
    expect(first.output.some((l) => l.includes('drain: writes did not finish in time'))).toBe(true);

    await clickhouse.start();
    const second = await startFarolProcessor({ ...processorEnv, FAROL_DATA_DIR: await tempDir('farol-drain-p2-') });
    children.push(second.child);
    await landed(truth, 90_000);
    second.child.kill('SIGTERM');
    expect(await exitWithin(second, 45_000)).toBe(0);
    // Nothing more arrives after a clean drain.
    expect(await rawCounts(store)).toEqual(truth.sites);
  }, 300_000);
});
