import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { earliestEventPosition, EventHubConsumerClient, type ReceivedEventData, type Subscription } from '@azure/event-hubs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../lib/log.ts';
import { startEventHubsBroker, type EventHubsBroker } from './testing/eventhubs/broker.ts';
import { partitionForKey } from './testing/eventhubs/partition-key.ts';
import { eventHubsPartitionForKey, openEventHubsProducer, type EventHubsProducer, type EventHubsProducerOptions } from './eventhubs-producer.ts';

const PARTITIONS = 4;
const dirs: string[] = [];
const closers: Array<() => Promise<void>> = [];

async function tempDir(prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  dirs.push(dir);
  return dir;
}

afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close().catch(() => {});
});
afterAll(async () => {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

let hubCounter = 0;

/** A broker with its own hub name and data dir. */
async function broker(): Promise<EventHubsBroker> {
  const b = await startEventHubsBroker({ dataDir: await tempDir('farol-ehp-broker-'), hubName: `hub-${hubCounter++}`, partitions: PARTITIONS });
  closers.push(() => b.stop());
  return b;
}

async function producer(b: EventHubsBroker, hubName: string, spoolDir: string, extra: Partial<EventHubsProducerOptions> = {}): Promise<EventHubsProducer> {
  const p = await openEventHubsProducer({
    connectionString: b.connectionString,
    eventHubName: hubName,
    spoolDir,
    spoolMaxBytes: 64 * 1024 * 1024,
    log: silentLogger,
    sendTimeoutMs: 2_000,
    maxRetries: 1,
    retryInitialMs: 100,
    retryMaxMs: 500,
    ...extra,
  });
  closers.push(() => p.close());
  return p;
}

/** Reads every partition from the start; bodies (as text) by partition. */
function readAll(b: EventHubsBroker, hubName: string): { byPartition: Map<number, string[]>; total: () => number } {
  const client = new EventHubConsumerClient('$Default', b.connectionString, hubName, {
    retryOptions: { maxRetries: 10, retryDelayInMs: 200, maxRetryDelayInMs: 1_000, timeoutInMs: 5_000 },
  });
  const byPartition = new Map<number, string[]>();
  const subscription: Subscription = client.subscribe(
    {
      processEvents: async (events: ReceivedEventData[], ctx) => {
        const list = byPartition.get(Number(ctx.partitionId)) ?? [];
        for (const e of events) list.push((e.body as Buffer).toString());
        byPartition.set(Number(ctx.partitionId), list);
      },
      processError: async () => {},
    },
    { startPosition: earliestEventPosition, skipParsingBodyAsJson: true, maxWaitTimeInSeconds: 0.2 },
  );
  closers.push(async () => {
    await subscription.close();
    await client.close();
  });
  return { byPartition, total: () => [...byPartition.values()].reduce((n, l) => n + l.length, 0) };
}

/** `count` events of `visitors` keys, numbered per key; key `v<i>`. */
function events(from: number, count: number, visitors = 40): Array<{ key: string; payload: Buffer }> {
  return Array.from({ length: count }, (_, k) => {
    const i = from + k;
    const key = `site.test:v${i % visitors}`;
    return { key, payload: Buffer.from(JSON.stringify({ key, n: i })) };
  });
}

/** Every key's events appear in increasing `n` on exactly the partition of the key. */
function expectOrderedByKey(byPartition: Map<number, string[]>, expectedTotal: number): void {
  let total = 0;
  for (const [p, bodies] of byPartition) {
    const last = new Map<string, number>();
    for (const body of bodies) {
      const { key, n } = JSON.parse(body) as { key: string; n: number };
      expect(partitionForKey(key, PARTITIONS), `partition of ${key}`).toBe(p);
      expect(n, `order of ${key}`).toBeGreaterThan(last.get(key) ?? -1);
      last.set(key, n);
      total++;
    }
  }
  expect(total).toBe(expectedTotal);
}

describe('Event Hubs producer', () => {
  let b: EventHubsBroker;
  beforeAll(async () => {
    b = await startEventHubsBroker({ dataDir: await tempDir('farol-ehp-shared-'), hubName: 'shared', partitions: PARTITIONS });
  });
  afterAll(async () => {
    await b.stop();
  });

  it('hashes keys to partitions exactly as the service does', () => {
    for (let i = 0; i < 2_000; i++) {
      const key = `site-${i % 13}.test:${(i * 2654435761) >>> 0}`;
      for (const n of [1, 2, 4, 7, 32]) expect(eventHubsPartitionForKey(key, n)).toBe(partitionForKey(key, n));
    }
  });

  it('group-commits concurrent publishes into few batches, each key on its partition, in order', async () => {
    const p = await producer(b, 'shared', await tempDir('farol-ehp-spool-'));
    expect(p.partitionCount).toBe(PARTITIONS);
    expect(p.isReady()).toBe(true);
    const before = b.counts().reduce((x, y) => x + y, 0);
    // 400 single-event publishes in flight at once, as 400 concurrent requests would make.
    await Promise.all(events(0, 400).map((e) => p.publish([e])));
    await p.publish(events(400, 600));
    expect(b.counts().reduce((x, y) => x + y, 0) - before).toBe(1_000);
    const stats = p.stats();
    expect(stats).toMatchObject({ mode: 'direct', sentEvents: 1_000, spooledEvents: 0, sendFailures: 0 });
    expect(stats.sentBatches).toBeLessThan(100);
    const read = readAll(b, 'shared');
    await until('all events read', () => read.total() >= 1_000);
    expectOrderedByKey(read.byPartition, 1_000);
  });
});

describe('Event Hubs producer spool', () => {
  it('spools while Event Hubs is down (publish still resolves), then replays in order exactly once', async () => {
    const b = await broker();
    const hubName = `hub-${hubCounter - 1}`;
    const spoolDir = await tempDir('farol-ehp-spool-');
    const p = await producer(b, hubName, spoolDir);
    await p.publish(events(0, 200));

    await b.stop();
    // Publishes keep resolving, from the spool, while sends fail.
    let n = 200;
    for (let round = 0; round < 10; round++) {
      await Promise.all(Array.from({ length: 10 }, () => p.publish(events((n += 10) - 10, 10))));
    }
    expect(p.isReady()).toBe(false);
    expect(p.stats().spooledEvents).toBeGreaterThan(0);
    expect((await readdir(spoolDir)).some((f) => f.endsWith('.spool'))).toBe(true);

    await b.start();
    // New publishes during the replay keep their place behind the spooled ones.
    const during = p.publish(events(n, 100));
    n += 100;
    await during;
    await until('producer back to direct sends', () => p.isReady());
    await p.publish(events(n, 100));
    n += 100;
    expect(b.counts().reduce((x, y) => x + y, 0)).toBe(n);
    expect(p.stats().replayedEvents).toBe(p.stats().spooledEvents);
    expect((await readdir(spoolDir)).filter((f) => f.endsWith('.spool'))).toEqual([]);
    const read = readAll(b, hubName);
    await until('all events read', () => read.total() >= n);
    expectOrderedByKey(read.byPartition, n);
  });

  it('rejects publishes once the spool is full', async () => {
    const b = await broker();
    const hubName = `hub-${hubCounter - 1}`;
    const p = await producer(b, hubName, await tempDir('farol-ehp-spool-'), { spoolMaxBytes: 20_000 });
    await b.stop();
    let accepted = 0;
    let refused: unknown;
    for (let i = 0; i < 100 && refused === undefined; i++) {
      try {
        await p.publish(events(i * 10, 10));
        accepted += 10;
      } catch (err) {
        refused = err;
      }
    }
    expect(refused).toMatchObject({ code: 'HUB_SPOOL_FULL' });
    expect(accepted).toBeGreaterThan(0);
    await b.start();
    await until('spool replayed', () => p.isReady());
    expect(b.counts().reduce((x, y) => x + y, 0)).toBe(accepted);
  });

  it('starts while Event Hubs is unreachable, and replays a spool left by a previous run', async () => {
    const b = await broker();
    const hubName = `hub-${hubCounter - 1}`;
    const spoolDir = await tempDir('farol-ehp-spool-');
    await b.stop();
    const first = await producer(b, hubName, spoolDir);
    expect(first.partitionCount).toBe(0);
    expect(first.isReady()).toBe(false);
    await first.publish(events(0, 300));
    await first.close();

    await b.start();
    const second = await producer(b, hubName, spoolDir);
    await until('previous spool replayed', () => second.isReady());
    await second.publish(events(300, 50));
    const read = readAll(b, hubName);
    await until('all events read', () => read.total() >= 350);
    expectOrderedByKey(read.byPartition, 350);
  });
});
