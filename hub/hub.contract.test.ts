import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ContainerClient } from '@azure/storage-blob';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../lib/log.ts';
import { eventHubsPartitionForKey, openEventHubsProducer } from './eventhubs-producer.ts';
import { partitionForKey, type HubConsumer, type HubProducer } from './hub.ts';
import { openLocalHub } from './local-hub.ts';
import { startAzurite } from './testing/eventhubs/azurite.ts';
import { startEventHubsBroker } from './testing/eventhubs/broker.ts';
import { openTestConsumer } from './testing/eventhubs/clients.ts';
import { recorder, total } from './testing/recorder.ts';

/**
 * One contract, every Hub: the local segment log on a temp dir, and Event Hubs (the real SDK
 * against the test broker, checkpoints in Azurite). What only one of them does (segments,
 * retention, quotas; load balancing, the spool) is tested beside it.
 */

const PARTITIONS = 4;

interface Harness {
  producer: HubProducer;
  /** A consumer of the one consumer group (close the previous one first). */
  openConsumer(): Promise<HubConsumer>;
  /** The partition the hub puts a key on. */
  partitionOf(key: string): number;
  teardown(): Promise<void>;
}

function tempDirs(): { make(prefix: string): Promise<string>; remove(): Promise<void> } {
  const dirs: string[] = [];
  return {
    async make(prefix: string) {
      const dir = await mkdtemp(join(tmpdir(), prefix));
      dirs.push(dir);
      return dir;
    },
    remove: async () => void (await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })))),
  };
}

const harnesses: Record<string, () => Promise<Harness>> = {
  local: async () => {
    const dirs = tempDirs();
    const hub = await openLocalHub({ dir: await dirs.make('farol-hub-contract-'), partitions: PARTITIONS });
    return {
      producer: hub,
      openConsumer: () => hub.openConsumer('processor'),
      partitionOf: (key) => partitionForKey(key, PARTITIONS),
      async teardown() {
        await hub.close();
        await dirs.remove();
      },
    };
  },
  eventhubs: async () => {
    const dirs = tempDirs();
    const hubName = 'contract';
    const [azurite, broker] = await Promise.all([
      dirs.make('farol-hub-contract-azurite-').then((dataDir) => startAzurite({ dataDir })),
      dirs.make('farol-hub-contract-broker-').then((dataDir) => startEventHubsBroker({ dataDir, hubName, partitions: PARTITIONS })),
    ]);
    const container = new ContainerClient(azurite.connectionString, 'checkpoints');
    await container.createIfNotExists();
    const producer = await openEventHubsProducer({
      connectionString: broker.connectionString,
      eventHubName: hubName,
      spoolDir: await dirs.make('farol-hub-contract-spool-'),
      spoolMaxBytes: 1024 * 1024 * 1024,
      log: silentLogger,
    });
    return {
      producer,
      openConsumer: () => openTestConsumer(broker, hubName, container),
      partitionOf: (key) => eventHubsPartitionForKey(key, PARTITIONS),
      async teardown() {
        await producer.close();
        await Promise.all([broker.stop(), azurite.stop()]);
        await dirs.remove();
      },
    };
  },
};

async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

const range = (from: number, to: number): number[] => Array.from({ length: to - from }, (_, i) => from + i);
const items = (from: number, to: number): Array<{ key: string; payload: Buffer }> =>
  range(from, to).map((i) => ({ key: `s:${i % 50}`, payload: Buffer.from(`{"n":${i}}`) }));

describe.each(Object.keys(harnesses))('Hub contract: %s', (name) => {
  let h: Harness;

  beforeAll(async () => {
    h = await (harnesses[name] as () => Promise<Harness>)();
  });

  afterAll(async () => {
    await h.teardown();
  });

  it('delivers every partition in order from the start, each key on its partition; a new consumer resumes right after the checkpoint; appends wake it', async () => {
    expect(h.producer.partitionCount).toBe(PARTITIONS);
    const published = items(0, 600);
    await h.producer.publish(published);
    const expected = range(0, PARTITIONS).map((p) => published.filter((i) => h.partitionOf(i.key) === p).map((i) => i.payload.toString()));
    const counts = expected.map((e) => e.length);
    expect(counts.every((c) => c > 1)).toBe(true);

    const first = await h.openConsumer();
    expect(first.partitionCount).toBe(PARTITIONS);
    const seen = recorder();
    const sub = first.subscribe(seen, { maxBatchSize: 50, maxWaitMs: 50 });
    await until('everything delivered', () => total(seen.records) >= 600);
    for (let p = 0; p < PARTITIONS; p++) {
      expect(seen.opened.get(p)).toEqual([0]);
      expect(seen.records.get(p)?.map((r) => r.offset)).toEqual(range(0, counts[p] ?? 0));
      expect(seen.records.get(p)?.map((r) => r.payload.toString())).toEqual(expected[p]);
      expect(seen.records.get(p)?.every((r) => r.partition === p)).toBe(true);
      expect(await first.endOffset(p)).toBe(counts[p]);
      expect(await first.getCheckpoint(p)).toBe(-1);
    }
    const r0 = seen.records.get(0)?.[0];
    expect(JSON.parse(r0?.payload.toString() ?? '')).toMatchObject({ n: expect.any(Number) });
    expect(Date.now() - (r0?.appendedAt ?? 0)).toBeLessThan(60_000);

    // Checkpoint half of each partition, then a new consumer resumes right after.
    const half = counts.map((c) => Math.floor(c / 2));
    for (let p = 0; p < PARTITIONS; p++) await first.checkpoint(p, half[p] ?? 0);
    for (let p = 0; p < PARTITIONS; p++) expect(await first.getCheckpoint(p)).toBe(half[p]);
    await sub.close();
    expect(seen.closed.sort()).toEqual([0, 1, 2, 3]);
    expect(seen.errors).toEqual([]);
    await first.close();

    const second = await h.openConsumer();
    for (let p = 0; p < PARTITIONS; p++) expect(await second.getCheckpoint(p)).toBe(half[p]);
    const again = recorder();
    const sub2 = second.subscribe(again, { maxBatchSize: 50, maxWaitMs: 50 });
    const rest = counts.reduce((n, c) => n + (c - Math.floor(c / 2) - 1), 0);
    await until('the rest delivered', () => total(again.records) >= rest);
    for (let p = 0; p < PARTITIONS; p++) {
      expect(again.opened.get(p)).toEqual([(half[p] ?? 0) + 1]);
      expect(again.records.get(p)?.[0]?.offset).toBe((half[p] ?? 0) + 1);
    }

    // New appends wake the subscribed consumer.
    await h.producer.publish(items(600, 610));
    await until('records appended after subscribing', () => total(again.records) >= rest + 10);
    expect(total(again.records)).toBe(rest + 10);
    await sub2.close();
    expect(again.errors).toEqual([]);
    await second.close();
  });
});
