import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BlobCheckpointStore } from '@azure/eventhubs-checkpointstore-blob';
import { ContainerClient } from '@azure/storage-blob';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../lib/log.ts';
import { startAzurite, type Azurite } from './testing/eventhubs/azurite.ts';
import { startEventHubsBroker, type EventHubsBroker } from './testing/eventhubs/broker.ts';
import { openEventHubsConsumer, type EventHubsConsumer } from './eventhubs-consumer.ts';
import { openEventHubsProducer } from './eventhubs-producer.ts';
import type { ConsumerHandlers, HubRecord } from './hub.ts';

const PARTITIONS = 4;
const dirs: string[] = [];
const closers: Array<() => Promise<void>> = [];
let azurite: Azurite;
let container: ContainerClient;
let hubCounter = 0;

async function tempDir(prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  dirs.push(dir);
  return dir;
}

beforeAll(async () => {
  azurite = await startAzurite({ dataDir: await tempDir('farol-ehc-azurite-') });
  container = new ContainerClient(azurite.connectionString, 'checkpoints');
  await container.createIfNotExists();
});
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close().catch(() => {});
});
afterAll(async () => {
  await azurite.stop();
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** A broker on a new hub, with `count` events published through the Event Hubs producer. */
async function hubWith(count: number): Promise<{ broker: EventHubsBroker; hubName: string }> {
  const hubName = `hub-${hubCounter++}`;
  const broker = await startEventHubsBroker({ dataDir: await tempDir('farol-ehc-broker-'), hubName, partitions: PARTITIONS });
  closers.push(() => broker.stop());
  const producer = await openEventHubsProducer({
    connectionString: broker.connectionString,
    eventHubName: hubName,
    spoolDir: await tempDir('farol-ehc-spool-'),
    spoolMaxBytes: 1024 * 1024 * 1024,
    log: silentLogger,
  });
  await producer.publish(Array.from({ length: count }, (_, i) => ({ key: `s:${i % 50}`, payload: Buffer.from(`{"n":${i}}`) })));
  await producer.close();
  return { broker, hubName };
}

async function consumer(broker: EventHubsBroker, hubName: string): Promise<EventHubsConsumer> {
  const c = await openEventHubsConsumer({
    connectionString: broker.connectionString,
    eventHubName: hubName,
    consumerGroup: '$Default',
    checkpointStore: new BlobCheckpointStore(container),
    loadBalancing: { strategy: 'greedy', updateIntervalMs: 500, ownershipExpiryMs: 3_000 },
    log: silentLogger,
  });
  closers.push(() => c.close());
  return c;
}

/** Handlers that record what they see, checking the order of calls per partition. */
function recorder(): ConsumerHandlers & {
  records: Map<number, HubRecord[]>;
  opened: Map<number, number[]>;
  open: Set<number>;
  closed: number[];
  errors: string[];
} {
  const records = new Map<number, HubRecord[]>();
  const opened = new Map<number, number[]>();
  const open = new Set<number>();
  const inFlight = new Set<number>();
  const closed: number[] = [];
  const errors: string[] = [];
  return {
    records,
    opened,
    open,
    closed,
    errors,
    partitionOpened: async (p, start) => {
      if (open.has(p)) errors.push(`partition ${p} opened twice`);
      open.add(p);
      opened.set(p, [...(opened.get(p) ?? []), start]);
    },
    processBatch: async (batch) => {
      const p = batch.partition;
      if (!open.has(p)) errors.push(`batch of partition ${p} before open`);
      if (inFlight.has(p)) errors.push(`concurrent batches on partition ${p}`);
      inFlight.add(p);
      await new Promise((r) => setTimeout(r, 5));
      const list = records.get(p) ?? [];
      list.push(...batch.records);
      records.set(p, list);
      inFlight.delete(p);
    },
    partitionClosed: async (p) => {
      if (inFlight.has(p)) errors.push(`partition ${p} closed during a batch`);
      open.delete(p);
      closed.push(p);
    },
  };
}

const total = (m: Map<number, HubRecord[]>): number => [...m.values()].reduce((n, l) => n + l.length, 0);

describe('Event Hubs consumer', () => {
  it('delivers every partition in order from its checkpoint, checkpoints by sequence number, reports end offsets', async () => {
    const { broker, hubName } = await hubWith(600);
    const counts = broker.counts();
    const first = await consumer(broker, hubName);
    expect(first.partitionCount).toBe(PARTITIONS);
    const seen = recorder();
    const sub = first.subscribe(seen, { maxBatchSize: 50, maxWaitMs: 50 });
    await until('everything delivered', () => total(seen.records) >= 600);
    for (let p = 0; p < PARTITIONS; p++) {
      expect(seen.opened.get(p)).toEqual([0]);
      expect(seen.records.get(p)?.map((r) => r.offset)).toEqual(Array.from({ length: counts[p] ?? 0 }, (_, i) => i));
      expect(await first.endOffset(p)).toBe(counts[p]);
      expect(await first.getCheckpoint(p)).toBe(-1);
    }
    const r0 = seen.records.get(0)?.[0];
    expect(JSON.parse(r0?.payload.toString() ?? '')).toMatchObject({ n: expect.any(Number) });
    expect(Date.now() - (r0?.appendedAt ?? 0)).toBeLessThan(60_000);

    // Checkpoint half of each partition, then a new processor resumes right after.
    for (let p = 0; p < PARTITIONS; p++) await first.checkpoint(p, Math.floor((counts[p] ?? 0) / 2));
    for (let p = 0; p < PARTITIONS; p++) expect(await first.getCheckpoint(p)).toBe(Math.floor((counts[p] ?? 0) / 2));
    await sub.close();
    expect(seen.closed.sort()).toEqual([0, 1, 2, 3]);
    expect(seen.errors).toEqual([]);

    const second = await consumer(broker, hubName);
    const again = recorder();
    second.subscribe(again, { maxBatchSize: 50, maxWaitMs: 50 });
    const rest = counts.reduce((n, c) => n + (c - Math.floor(c / 2) - 1), 0);
    await until('the rest delivered', () => total(again.records) >= rest);
    for (let p = 0; p < PARTITIONS; p++) {
      const half = Math.floor((counts[p] ?? 0) / 2);
      expect(again.opened.get(p)).toEqual([half + 1]);
      expect(again.records.get(p)?.[0]?.offset).toBe(half + 1);
    }
    expect(again.errors).toEqual([]);
  });

  it('shares partitions between two processors and hands all of them to the one left', async () => {
    const { broker, hubName } = await hubWith(200);
    const a = recorder();
    const b = recorder();
    const subA = (await consumer(broker, hubName)).subscribe(a, { maxBatchSize: 50, maxWaitMs: 50 });
    await until('A owns everything', () => a.open.size === PARTITIONS);
    const subB = (await consumer(broker, hubName)).subscribe(b, { maxBatchSize: 50, maxWaitMs: 50 });
    await until('B took its share', () => b.open.size === PARTITIONS / 2 && a.open.size === PARTITIONS / 2);
    expect(a.closed.length).toBeGreaterThanOrEqual(PARTITIONS / 2);
    await subB.close();
    expect(b.open.size).toBe(0);
    // B gave its claims up on close: A takes them back without waiting for them to expire.
    await until('A owns everything again', () => a.open.size === PARTITIONS, 15_000);
    await subA.close();
    expect([...a.errors, ...b.errors]).toEqual([]);
  });
});
