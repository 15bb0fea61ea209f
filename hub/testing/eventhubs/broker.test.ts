import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  earliestEventPosition,
  EventHubBufferedProducerClient,
  EventHubConsumerClient,
  EventHubProducerClient,
  type CheckpointStore,
  type EventData,
  type PartitionContext,
  type ReceivedEventData,
  type SubscribeOptions,
  type Subscription,
} from '@azure/event-hubs';
import { BlobCheckpointStore } from '@azure/eventhubs-checkpointstore-blob';
import { ContainerClient } from '@azure/storage-blob';
import rhea, { type EventContext } from 'rhea';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startAzurite, type Azurite } from './azurite.ts';
import { startEventHubsBroker, type EventHubsBroker } from './broker.ts';
import { partitionForKey } from './partition-key.ts';

const HUB = 'farol-events';
const PARTITIONS = 4;
const retryOptions = { maxRetries: 6, retryDelayInMs: 100, maxRetryDelayInMs: 500, timeoutInMs: 5_000 };
const loadBalancingOptions = { strategy: 'greedy', updateIntervalInMs: 1_000 } as const;

const dirs: string[] = [];
function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  dirs.push(dir);
  return dir;
}

/** Closes what a test opened, last first, even when it failed. */
const cleanups: Array<() => Promise<void>> = [];
function defer<T extends { close(): Promise<void> }>(closable: T): T {
  cleanups.push(() => closable.close());
  return closable;
}

afterEach(async () => {
  for (const close of cleanups.splice(0).reverse()) await close().catch(() => {});
});
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

function producerFor(broker: EventHubsBroker, hub = HUB): EventHubProducerClient {
  return defer(new EventHubProducerClient(broker.connectionString, hub, { retryOptions }));
}

function consumerFor(broker: EventHubsBroker, store?: CheckpointStore): EventHubConsumerClient {
  const options = { retryOptions, loadBalancingOptions };
  return defer(
    store
      ? new EventHubConsumerClient('$Default', broker.connectionString, HUB, store, options)
      : new EventHubConsumerClient('$Default', broker.connectionString, HUB, options),
  );
}

async function send(producer: EventHubProducerClient, events: EventData[], options: { partitionId?: string; partitionKey?: string } = {}): Promise<void> {
  const batch = await producer.createBatch(options);
  for (const event of events) expect(batch.tryAdd(event)).toBe(true);
  await producer.sendBatch(batch);
}

interface Collector {
  readonly events: ReceivedEventData[];
  readonly byPartition: Map<string, ReceivedEventData[]>;
  readonly errors: Error[];
  readonly owned: Set<string>;
  readonly subscription: Subscription;
}

/** Subscribes (one partition or all) and records everything the handlers see. */
function collect(client: EventHubConsumerClient, partitionId: string | undefined, options: SubscribeOptions = {}): Collector {
  const events: ReceivedEventData[] = [];
  const byPartition = new Map<string, ReceivedEventData[]>();
  const errors: Error[] = [];
  const owned = new Set<string>();
  const handlers = {
    processEvents: async (received: ReceivedEventData[], context: PartitionContext) => {
      for (const e of received) {
        events.push(e);
        const list = byPartition.get(context.partitionId) ?? [];
        list.push(e);
        byPartition.set(context.partitionId, list);
      }
    },
    processError: async (err: Error) => {
      errors.push(err);
    },
    processInitialize: async (context: PartitionContext) => {
      owned.add(context.partitionId);
    },
    processClose: async (_reason: unknown, context: PartitionContext) => {
      owned.delete(context.partitionId);
    },
  };
  const subscribeOptions: SubscribeOptions = { startPosition: earliestEventPosition, maxWaitTimeInSeconds: 1, ...options };
  const subscription =
    partitionId === undefined
      ? client.subscribe(handlers, subscribeOptions)
      : client.subscribe(partitionId, handlers, subscribeOptions);
  cleanups.push(() => subscription.close());
  return { events, byPartition, errors, owned, subscription };
}

function numbered(from: number, count: number, extra: Partial<EventData> = {}): EventData[] {
  return Array.from({ length: count }, (_, i) => ({ body: { n: from + i }, properties: { n: from + i, kind: 'test' }, ...extra }));
}

const bodies = (events: readonly ReceivedEventData[]): unknown[] => events.map((e) => (e.body as { n: number }).n);

describe('Event Hubs test broker driven by @azure/event-hubs', () => {
  let broker: EventHubsBroker;

  beforeAll(async () => {
    broker = await startEventHubsBroker({ dataDir: tempDir('farol-eh-broker-'), hubName: HUB, partitions: PARTITIONS });
  });
  afterAll(async () => {
    await broker.stop();
  });

  it('answers hub and partition properties, and maps unknown entities to the SDK errors', async () => {
    const producer = producerFor(broker);
    const hub = await producer.getEventHubProperties();
    expect(hub.name).toBe(HUB);
    expect(hub.partitionIds).toEqual(['0', '1', '2', '3']);
    expect(hub.createdOn).toBeInstanceOf(Date);

    const empty = await producer.getPartitionProperties('3');
    expect(empty).toMatchObject({
      eventHubName: HUB,
      partitionId: '3',
      beginningSequenceNumber: -1,
      lastEnqueuedSequenceNumber: -1,
      lastEnqueuedOffset: '-1',
      isEmpty: true,
    });
    expect(empty.lastEnqueuedOnUtc.getTime()).toBe(0);

    await expect(producer.getPartitionProperties('9')).rejects.toMatchObject({ code: 'ArgumentOutOfRangeError' });
    const stranger = producerFor(broker, 'no-such-hub');
    await expect(stranger.getEventHubProperties()).rejects.toMatchObject({ code: 'MessagingEntityNotFoundError' });
    await expect(stranger.sendBatch([{ body: 'x' }])).rejects.toMatchObject({ code: 'MessagingEntityNotFoundError' });

    const unknownGroup = defer(new EventHubConsumerClient('nope', broker.connectionString, HUB, { retryOptions, loadBalancingOptions }));
    const lost = collect(unknownGroup, '0');
    await until('unknown consumer group refused', () => lost.errors.length > 0);
    expect(lost.errors[0]).toMatchObject({ code: 'MessagingEntityNotFoundError' });
  });

  it('stores batches round robin, by partition id and by partition key', async () => {
    const producer = producerFor(broker);
    const before = broker.counts();
    for (let i = 0; i < PARTITIONS; i++) await send(producer, numbered(i * 10, 10));
    expect(broker.counts().map((c, i) => c - before[i]!)).toEqual([10, 10, 10, 10]);

    await send(producer, numbered(100, 7), { partitionId: '2' });
    const keyed = partitionForKey('visitor-42', PARTITIONS);
    await send(producer, numbered(200, 5), { partitionKey: 'visitor-42' });
    const expected = [10, 10, 17, 10];
    expected[keyed]! += 5;
    expect(broker.counts()).toEqual(expected);

    const props = await producer.getPartitionProperties('2');
    expect(props).toMatchObject({ beginningSequenceNumber: 0, lastEnqueuedSequenceNumber: 16 + (keyed === 2 ? 5 : 0), isEmpty: false });
    expect(Number(props.lastEnqueuedOffset)).toBeGreaterThan(0);
  });

  it('delivers every event of a partition in order with body, properties and system annotations', async () => {
    const producer = producerFor(broker);
    const client = consumerFor(broker);
    const expected = broker.counts()[2]!;
    const sub = collect(client, '2');
    await until('partition 2 replayed', () => sub.events.length >= expected);
    expect(sub.events.map((e) => e.sequenceNumber)).toEqual(Array.from({ length: expected }, (_, i) => i));
    const first = sub.events[0]!;
    expect(typeof first.offset).toBe('string');
    expect(first.enqueuedTimeUtc).toBeInstanceOf(Date);
    expect(Date.now() - first.enqueuedTimeUtc.getTime()).toBeLessThan(60_000);
    expect(first.properties).toMatchObject({ kind: 'test' });
    expect(first.properties!.n).toBe((first.body as { n: number }).n);

    // New events reach an attached receiver as they are stored.
    await send(producer, numbered(300, 3, { contentType: 'application/json', messageId: 'm-300' }), { partitionId: '2' });
    await until('live events', () => sub.events.length >= expected + 3);
    expect(bodies(sub.events.slice(expected))).toEqual([300, 301, 302]);
    expect(sub.events.at(-1)).toMatchObject({ contentType: 'application/json', messageId: 'm-300' });

    // The key a keyed batch was sent with comes back on each event.
    const keyedPartition = String(partitionForKey('visitor-42', PARTITIONS));
    const keyedSub = collect(consumerFor(broker), keyedPartition);
    await until('keyed events', () => keyedSub.events.filter((e) => e.partitionKey === 'visitor-42').length >= 5);
    expect(keyedSub.events.filter((e) => e.partitionKey === 'visitor-42').map((e) => (e.body as { n: number }).n)).toEqual([200, 201, 202, 203, 204]);
    expect(sub.errors).toEqual([]);
  });

  it('subscribes to all partitions from the earliest event', async () => {
    const client = consumerFor(broker);
    const total = broker.counts().reduce((a, b) => a + b, 0);
    const sub = collect(client, undefined);
    await until('all partitions replayed', () => sub.events.length >= total);
    await sleep(300);
    expect(sub.events).toHaveLength(total);
    for (const [partition, events] of sub.byPartition) {
      expect(events).toHaveLength(broker.counts()[Number(partition)]!);
      expect(events.map((e) => e.sequenceNumber)).toEqual(events.map((_, i) => i));
    }
  });

  it('resumes from a sequence number, an offset and an enqueued time', async () => {
    const all = collect(consumerFor(broker), '2');
    await until('partition 2', () => all.events.length >= broker.counts()[2]!);
    const fourth = all.events[3]!;

    const afterSeq = collect(consumerFor(broker), '2', { startPosition: { sequenceNumber: 3 } });
    const fromSeq = collect(consumerFor(broker), '2', { startPosition: { sequenceNumber: 3, isInclusive: true } });
    const afterOffset = collect(consumerFor(broker), '2', { startPosition: { offset: fourth.offset } });
    const fromOffset = collect(consumerFor(broker), '2', { startPosition: { offset: fourth.offset, isInclusive: true } });
    const rest = all.events.length;
    await until('resumed readers', () =>
      [afterSeq, afterOffset].every((s) => s.events.length >= rest - 4) && [fromSeq, fromOffset].every((s) => s.events.length >= rest - 3),
    );
    expect(afterSeq.events[0]!.sequenceNumber).toBe(4);
    expect(fromSeq.events[0]!.sequenceNumber).toBe(3);
    expect(afterOffset.events[0]!.sequenceNumber).toBe(4);
    expect(fromOffset.events[0]!.sequenceNumber).toBe(3);

    // Enqueued-time positions: nothing was enqueued after "now", then a new event is.
    const latest = collect(consumerFor(broker), '2', { startPosition: { enqueuedOn: new Date(Date.now() + 1) } });
    const tail = collect(consumerFor(broker), '2', { startPosition: { offset: '@latest' } });
    await sleep(1_200);
    expect(latest.events).toEqual([]);
    expect(tail.events).toEqual([]);
    await send(producerFor(broker), numbered(400, 1), { partitionId: '2' });
    await until('tail readers', () => latest.events.length === 1 && tail.events.length === 1);
    expect(bodies(latest.events)).toEqual([400]);
  });

  it('places events of one key on one partition with the buffered producer, as the broker does', async () => {
    const buffered = defer(
      new EventHubBufferedProducerClient(broker.connectionString, HUB, {
        retryOptions,
        maxWaitTimeInMs: 100,
        onSendEventsErrorHandler: (ctx) => {
          throw ctx.error;
        },
      }),
    );
    const keys = Array.from({ length: 24 }, (_, i) => `site-1:visitor-${i}`);
    const before = broker.counts();
    for (const key of keys) {
      for (let i = 0; i < 3; i++) await buffered.enqueueEvent({ body: { key, i } }, { partitionKey: key });
    }
    await buffered.flush();
    const expected = [...before];
    for (const key of keys) expected[partitionForKey(key, PARTITIONS)]! += 3;
    expect(broker.counts()).toEqual(expected);

    // The same keys sent through the hub address are hashed by the broker: same partitions.
    const producer = producerFor(broker);
    const direct = [...expected];
    for (const key of keys.slice(0, 8)) {
      await send(producer, [{ body: { key, i: 3 } }], { partitionKey: key });
      direct[partitionForKey(key, PARTITIONS)]! += 1;
      expect(broker.counts()).toEqual(direct);
    }
  });

  it('honours owner levels: a higher epoch steals the partition, a lower one is refused', async () => {
    const producer = producerFor(broker);
    const first = collect(consumerFor(broker), '1', { ownerLevel: 1 });
    await until('first receiver reading', () => first.events.length >= broker.counts()[1]!);

    const second = collect(consumerFor(broker), '1', { ownerLevel: 2 });
    await until('first receiver stolen', () => first.errors.length > 0);
    expect(first.errors[0]).toMatchObject({ code: 'ReceiverDisconnectedError' });
    await until('second receiver reading', () => second.events.length >= broker.counts()[1]!);

    const third = collect(consumerFor(broker), '1', { ownerLevel: 1 });
    await until('lower epoch refused', () => third.errors.length > 0);
    expect(third.errors[0]).toMatchObject({ code: 'ReceiverDisconnectedError' });

    const seen = second.events.length;
    await send(producer, numbered(500, 2), { partitionId: '1' });
    await until('owner keeps receiving', () => second.events.length >= seen + 2);
    expect(bodies(second.events.slice(seen))).toEqual([500, 501]);
    expect(second.errors).toEqual([]);
    await first.subscription.close();
    await third.subscription.close();
  });

  it('numbers concurrent sends from several producers without gaps', async () => {
    const producers = [producerFor(broker), producerFor(broker), producerFor(broker)];
    const before = broker.counts()[3]!;
    await Promise.all(
      producers.flatMap((p, i) => Array.from({ length: 10 }, (_, j) => send(p, numbered(10_000 + i * 100 + j * 3, 3), { partitionId: '3' }))),
    );
    expect(broker.counts()[3]).toBe(before + 90);
    const sub = collect(consumerFor(broker), '3');
    await until('partition 3', () => sub.events.length >= before + 90);
    expect(sub.events.map((e) => e.sequenceNumber)).toEqual(sub.events.map((_, i) => i));
    const sent = bodies(sub.events.slice(before)) as number[];
    expect(new Set(sent).size).toBe(90);
  });

  it('rejects a transfer over max_message_size with message-size-exceeded (raw rhea client)', async () => {
    const client = rhea.create_container();
    client.on('disconnected', () => {});
    const connection = client.connect({ host: '127.0.0.1', port: broker.port, reconnect: false });
    try {
      const sender = connection.open_sender({ target: { address: HUB } });
      await new Promise<void>((resolve) => sender.once('sendable', () => resolve()));
      expect(sender.max_message_size).toBe(1_048_576);
      const inner = rhea.message.encode({ body: rhea.message.data_section(Buffer.alloc(1_100_000, 1)) });
      const envelope = rhea.message.encode({ body: rhea.message.data_sections([inner]) });
      const outcome = new Promise<EventContext>((resolve) => {
        sender.once('rejected', resolve);
        sender.once('accepted', resolve);
      });
      sender.send(envelope, undefined, 0x80013700);
      const ctx = await outcome;
      expect(ctx.delivery?.remote_state?.error).toMatchObject({ condition: 'amqp:link:message-size-exceeded' });
    } finally {
      connection.close();
    }
  });
});

describe('Event Hubs test broker durability', () => {
  it('keeps every accepted event across stop/start and a new broker on the same directory', async () => {
    const dataDir = tempDir('farol-eh-restart-');
    const broker = await startEventHubsBroker({ dataDir, hubName: HUB, partitions: 2 });
    try {
      const producer = producerFor(broker);
      const sub = collect(consumerFor(broker), '0');
      for (let i = 0; i < 5; i++) await send(producer, numbered(i, 1), { partitionId: '0' });
      await until('first half', () => sub.events.length === 5);

      await broker.stop();
      await sleep(200);
      await broker.start();
      for (let i = 5; i < 10; i++) await send(producer, numbered(i, 1), { partitionId: '0' });
      await until('second half after reconnect', () => sub.events.length >= 10, 30_000);
      await sleep(500);
      expect(bodies(sub.events)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
      expect(sub.events.map((e) => e.sequenceNumber)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
      expect(broker.counts()).toEqual([10, 0]);
    } finally {
      await broker.stop();
    }

    const again = await startEventHubsBroker({ dataDir, hubName: HUB, partitions: 2 });
    try {
      expect(again.counts()).toEqual([10, 0]);
      const replay = collect(consumerFor(again), '0');
      await until('replay from disk', () => replay.events.length >= 10);
      expect(bodies(replay.events)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
      const props = await producerFor(again).getPartitionProperties('0');
      expect(props.lastEnqueuedSequenceNumber).toBe(9);
      expect(props.lastEnqueuedOffset).toBe(replay.events[9]!.offset);
    } finally {
      for (const close of cleanups.splice(0).reverse()) await close().catch(() => {});
      await again.stop();
    }
  });
});

describe('Event Hubs test broker with BlobCheckpointStore on Azurite', () => {
  let broker: EventHubsBroker;
  let azurite: Azurite;
  let store: BlobCheckpointStore;

  beforeAll(async () => {
    [broker, azurite] = await Promise.all([
      startEventHubsBroker({ dataDir: tempDir('farol-eh-lb-'), hubName: HUB, partitions: PARTITIONS }),
      startAzurite({ dataDir: tempDir('farol-azurite-') }),
    ]);
    const container = new ContainerClient(azurite.connectionString, 'checkpoints');
    await container.create();
    store = new BlobCheckpointStore(container);
  });
  afterAll(async () => {
    await broker.stop();
    await azurite.stop();
  });

  it('shares partitions between two processors and hands them all to the survivor', async () => {
    const a = collect(consumerFor(broker, store), undefined);
    await until('A owns every partition', () => a.owned.size === PARTITIONS);

    const bClient = consumerFor(broker, store);
    const b = collect(bClient, undefined);
    await until('A and B share', () => a.owned.size === 2 && b.owned.size === 2);
    // B took its share by attaching with the same owner level (0): A's receivers were stolen.
    expect(a.errors.length).toBeGreaterThan(0);
    expect(a.errors.map((e) => (e as { code?: string }).code)).toEqual(a.errors.map(() => 'ReceiverDisconnectedError'));
    expect(b.errors).toEqual([]);

    await b.subscription.close();
    await bClient.close();
    await until('A takes everything back', () => a.owned.size === PARTITIONS, 15_000);

    const producer = producerFor(broker);
    for (let p = 0; p < PARTITIONS; p++) await send(producer, numbered(p, 1), { partitionId: String(p) });
    await until('A reads every partition', () => a.byPartition.size === PARTITIONS);
  });

  it('resumes after the last checkpoint on restart', async () => {
    const producer = producerFor(broker);
    const counts = broker.counts();
    const total = counts.reduce((x, y) => x + y, 0);
    const client = consumerFor(broker, store);
    let checkpointed = 0;
    const subscription = client.subscribe(
      {
        processEvents: async (events, context) => {
          const last = events.at(-1);
          if (!last) return;
          await context.updateCheckpoint(last);
          checkpointed += events.length;
        },
        processError: async () => {},
      },
      { startPosition: earliestEventPosition, maxWaitTimeInSeconds: 1 },
    );
    await until('everything checkpointed', () => checkpointed >= total);
    await subscription.close();
    await client.close();

    for (let p = 0; p < PARTITIONS; p++) await send(producer, numbered(1000 + p, 1), { partitionId: String(p) });
    const resumed = collect(consumerFor(broker, store), undefined);
    await until('new events after restart', () => resumed.events.length >= PARTITIONS);
    await sleep(1_500);
    expect(resumed.events.map((e) => (e.body as { n: number }).n).sort()).toEqual([1000, 1001, 1002, 1003]);
    const checkpoints = await store.listCheckpoints(`127.0.0.1`, HUB, '$Default');
    expect(checkpoints).toHaveLength(PARTITIONS);
  });
});
