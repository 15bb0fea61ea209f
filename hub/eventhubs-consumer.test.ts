import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ContainerClient } from '@azure/storage-blob';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../lib/log.ts';
import { startAzurite, type Azurite } from './testing/eventhubs/azurite.ts';
import { startEventHubsBroker, type EventHubsBroker } from './testing/eventhubs/broker.ts';
import { openTestConsumer } from './testing/eventhubs/clients.ts';
import type { EventHubsConsumer } from './eventhubs-consumer.ts';
import { openEventHubsProducer } from './eventhubs-producer.ts';
import { recorder } from './testing/recorder.ts';

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
  const c = await openTestConsumer(broker, hubName, container);
  closers.push(() => c.close());
  return c;
}


/** What only the Event Hubs consumer does; what every hub does is in hub.contract.test.ts. */
describe('Event Hubs consumer', () => {
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
