import {
  earliestEventPosition,
  EventHubConsumerClient,
  type CheckpointStore,
  type PartitionContext,
  type ReceivedEventData,
  type Subscription as SdkSubscription,
} from '@azure/event-hubs';
import type { Logger } from '../lib/log.ts';
import type { ConsumerHandlers, HubConsumer, HubRecord, SubscribeOptions, Subscription } from './hub.ts';

/**
 * The Event Hubs consumer side of the hub, used by processors (`FAROL_HUB=eventhubs`): an
 * `EventHubConsumerClient` whose checkpoint store (blob storage) also records partition
 * ownership, so several processors share the partitions and take over a dead one's once its
 * claims expire.
 *
 * Offsets are Event Hubs sequence numbers. Per partition, the SDK's `processInitialize`,
 * `processEvents` and `processClose` are serialized here (the SDK does not wait for an in-flight
 * `processEvents` before closing), so the handlers see open → batches in order → close, and the
 * next batch only after the previous `processBatch` resolved. A checkpoint at sequence number `n`
 * is written with the offset of event `n`, as the SDK resumes from offsets.
 */

/** How partitions are shared between processors (the SDK's load balancing options). */
export interface LoadBalancing {
  strategy: 'greedy' | 'balanced';
  /** How often a processor renews its claims and looks for partitions to claim. */
  updateIntervalMs: number;
  /** A claim not renewed for this long is free to take (a dead processor's). */
  ownershipExpiryMs: number;
}

/** Options of {@link openEventHubsConsumer}. */
export interface EventHubsConsumerOptions {
  connectionString: string;
  eventHubName: string;
  consumerGroup: string;
  /** Checkpoints and ownership, e.g. a `BlobCheckpointStore`. */
  checkpointStore: CheckpointStore;
  loadBalancing: LoadBalancing;
  log: Logger;
  /** How long to keep trying to read the hub's partitions at start (default 60 s). */
  startTimeoutMs?: number;
}

/** Bound on the sequence-number → offset entries remembered per partition for checkpoints. */
const MAX_REMEMBERED_OFFSETS = 2_000_000;

/** Opens the client and reads the hub's partitions (retrying while Event Hubs does not answer). */
export async function openEventHubsConsumer(options: EventHubsConsumerOptions): Promise<EventHubsConsumer> {
  const client = new EventHubConsumerClient(options.consumerGroup, options.connectionString, options.eventHubName, options.checkpointStore, {
    retryOptions: { maxRetries: 3, retryDelayInMs: 500, maxRetryDelayInMs: 5_000, timeoutInMs: 10_000 },
    loadBalancingOptions: {
      strategy: options.loadBalancing.strategy,
      updateIntervalInMs: options.loadBalancing.updateIntervalMs,
      partitionOwnershipExpirationIntervalInMs: options.loadBalancing.ownershipExpiryMs,
    },
  });
  const deadline = Date.now() + (options.startTimeoutMs ?? 60_000);
  for (let delay = 500; ; delay = Math.min(delay * 2, 5_000)) {
    try {
      const ids = await client.getPartitionIds();
      if (ids.length === 0 || ids.some((id, i) => id !== String(i))) throw new Error(`unexpected partition ids ${JSON.stringify(ids)}`);
      return new EventHubsConsumer(options, client, ids.length);
    } catch (err) {
      if (Date.now() + delay > deadline) {
        await client.close();
        throw err;
      }
      options.log.warn({ err }, 'Event Hubs not answering yet; retrying');
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }
}

/** One ownership of a partition by this process, from `processInitialize` to `processClose`. */
interface Session {
  partition: number;
  opened: boolean;
  closing: boolean;
}

/** Per subscription: the handlers, and the session each partition is open for. */
interface Delivery {
  handlers: ConsumerHandlers;
  opened: Map<number, Session>;
}

/** See the module comment. */
export class EventHubsConsumer implements HubConsumer {
  private readonly offsets = new OffsetIndex();
  private readonly subscriptions = new Set<SdkSubscription>();
  private readonly log: Logger;

  constructor(
    private readonly options: EventHubsConsumerOptions,
    private readonly client: EventHubConsumerClient,
    readonly partitionCount: number,
  ) {
    this.log = options.log;
  }

  subscribe(handlers: ConsumerHandlers, options: SubscribeOptions): Subscription {
    const sessions = new WeakMap<PartitionContext, Session>();
    const delivery: Delivery = { handlers, opened: new Map() };
    const chains = new Map<number, Promise<void>>();
    /** Runs `task` after everything earlier of the partition. */
    const serial = (partition: number, task: () => Promise<void>): Promise<void> => {
      const run = (chains.get(partition) ?? Promise.resolve()).then(task);
      chains.set(partition, run.catch(() => {}));
      return run;
    };
    const log = this.log;

    const subscription = this.client.subscribe(
      {
        processInitialize: async (ctx) => {
          const session: Session = { partition: Number(ctx.partitionId), opened: false, closing: false };
          sessions.set(ctx, session);
          await serial(session.partition, () => this.open(session, delivery));
        },
        processEvents: async (events, ctx) => {
          const session = sessions.get(ctx);
          if (session === undefined || events.length === 0) return;
          this.offsets.record(session.partition, events);
          const records = events.map((e) => toRecord(session.partition, e));
          await serial(session.partition, () => this.deliver(session, delivery, records));
        },
        processError: async (err, ctx) => {
          const code = (err as { code?: unknown }).code;
          const fields = { err, partition: ctx.partitionId === '' ? undefined : Number(ctx.partitionId) };
          // A receiver taken over by another processor is load balancing at work.
          if (code === 'ReceiverDisconnectedError') log.info(fields, 'partition receiver taken over');
          else log.warn(fields, 'Event Hubs consumer error');
        },
        processClose: async (reason, ctx) => {
          const session = sessions.get(ctx);
          if (session === undefined) return;
          session.closing = true;
          log.info({ partition: session.partition, reason }, 'partition closing');
          await serial(session.partition, () => this.closeSession(session, delivery));
        },
      },
      {
        startPosition: earliestEventPosition,
        maxBatchSize: options.maxBatchSize,
        maxWaitTimeInSeconds: Math.max(options.maxWaitMs, 1) / 1000,
        skipParsingBodyAsJson: true,
      },
    );
    this.subscriptions.add(subscription);
    return {
      close: async () => {
        this.subscriptions.delete(subscription);
        // Stops every pump: each partition's processClose runs (drain: flush, snapshot,
        // checkpoint), then this processor's claims are given up for others to take at once.
        await subscription.close();
      },
    };
  }

  /** The namespace host, as checkpoint and ownership records name it. */
  get namespace(): string {
    return this.client.fullyQualifiedNamespace;
  }

  /** Checkpoints at `offset` (a sequence number) if this process has seen that event. */
  async checkpoint(partition: number, offset: number): Promise<void> {
    const eventOffset = this.offsets.lookup(partition, offset);
    // Unknown (delivered before this process owned the partition): a lower checkpoint is safe,
    // the next snapshot moves it.
    if (eventOffset === undefined) return;
    await this.options.checkpointStore.updateCheckpoint({
      fullyQualifiedNamespace: this.client.fullyQualifiedNamespace,
      eventHubName: this.client.eventHubName,
      consumerGroup: this.options.consumerGroup,
      partitionId: String(partition),
      sequenceNumber: offset,
      offset: eventOffset,
    });
    this.offsets.forgetThrough(partition, offset);
  }

  async getCheckpoint(partition: number): Promise<number> {
    const all = await this.options.checkpointStore.listCheckpoints(
      this.client.fullyQualifiedNamespace,
      this.client.eventHubName,
      this.options.consumerGroup,
    );
    return all.find((c) => c.partitionId === String(partition))?.sequenceNumber ?? -1;
  }

  async endOffset(partition: number): Promise<number> {
    const props = await this.client.getPartitionProperties(String(partition));
    return props.lastEnqueuedSequenceNumber + 1;
  }

  async close(): Promise<void> {
    await Promise.all([...this.subscriptions].map((s) => s.close()));
    this.subscriptions.clear();
    await this.client.close();
  }

  /**
   * Opens the partition for a new session. The SDK may start a new pump for a partition before
   * the old pump's close arrives: the older session is then closed first, so the handlers always
   * see open → batches → close, one session at a time.
   */
  private async open(session: Session, delivery: Delivery): Promise<void> {
    const { partition } = session;
    const previous = delivery.opened.get(partition);
    if (previous !== undefined && previous !== session) {
      previous.closing = true;
      await this.closeSession(previous, delivery);
    }
    for (let attempt = 1; !session.closing; attempt++) {
      try {
        const checkpoint = await this.getCheckpoint(partition);
        await delivery.handlers.partitionOpened?.(partition, checkpoint + 1);
        session.opened = true;
        delivery.opened.set(partition, session);
        return;
      } catch (err) {
        this.log.error({ err, partition, attempt }, 'opening a partition failed');
        // Left unopened, its first batch stops the pump: the claim lapses and is taken again later.
        if (attempt >= 3) return;
        await new Promise((resolve) => setTimeout(resolve, 500 * attempt));
      }
    }
  }

  private async closeSession(session: Session, delivery: Delivery): Promise<void> {
    if (delivery.opened.get(session.partition) !== session) return;
    delivery.opened.delete(session.partition);
    try {
      await delivery.handlers.partitionClosed?.(session.partition);
    } catch (err) {
      this.log.error({ err, partition: session.partition }, 'closing a partition failed');
    }
  }

  private async deliver(session: Session, delivery: Delivery, records: HubRecord[]): Promise<void> {
    const { partition } = session;
    // Not processed: the next owner reads them again from the checkpoint.
    if (session.closing) return;
    if (delivery.opened.get(partition) !== session) {
      // Its open failed: stopping the pump makes the claim lapse, to be taken and opened anew.
      if (!session.opened) throw new Error(`partition ${partition} is not open`);
      // Superseded by a newer session: its records must not reach the newer one's handler.
      return;
    }
    for (let attempt = 1; ; attempt++) {
      try {
        await delivery.handlers.processBatch({ partition, records });
        return;
      } catch (err) {
        if (session.closing) return;
        // After a few tries the SDK stops this partition's pump; it is claimed and opened anew
        // (state reloaded from storage) once the claim lapses.
        if (attempt >= 3) throw err;
        this.log.warn({ err, partition, attempt }, 'processing a batch failed; retrying');
        await new Promise((resolve) => setTimeout(resolve, 500 * attempt));
      }
    }
  }
}

function toRecord(partition: number, e: ReceivedEventData): HubRecord {
  const body: unknown = e.body;
  const payload = Buffer.isBuffer(body)
    ? body
    : body instanceof Uint8Array
      ? Buffer.from(body)
      : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body) ?? '');
  return { partition, offset: e.sequenceNumber, appendedAt: e.enqueuedTimeUtc.getTime(), payload };
}

/**
 * Event offsets by sequence number, for checkpoints, in runs of consecutive sequence numbers
 * (one per delivered batch), forgotten once checkpointed past, and bounded.
 */
class OffsetIndex {
  private readonly runs = new Map<number, Array<{ first: number; offsets: string[] }>>();

  record(partition: number, events: readonly ReceivedEventData[]): void {
    let list = this.runs.get(partition);
    if (list === undefined) this.runs.set(partition, (list = []));
    let run: { first: number; offsets: string[] } | undefined;
    for (const e of events) {
      if (run === undefined || e.sequenceNumber !== run.first + run.offsets.length) {
        run = { first: e.sequenceNumber, offsets: [] };
        list.push(run);
      }
      run.offsets.push(e.offset);
    }
    let total = list.reduce((n, r) => n + r.offsets.length, 0);
    while (total > MAX_REMEMBERED_OFFSETS && list.length > 1) total -= list.shift()?.offsets.length ?? 0;
  }

  lookup(partition: number, sequenceNumber: number): string | undefined {
    const list = this.runs.get(partition) ?? [];
    for (let i = list.length - 1; i >= 0; i--) {
      const run = list[i];
      if (run !== undefined && sequenceNumber >= run.first && sequenceNumber < run.first + run.offsets.length) {
        return run.offsets[sequenceNumber - run.first];
      }
    }
    return undefined;
  }

  forgetThrough(partition: number, sequenceNumber: number): void {
    const list = this.runs.get(partition);
    if (list === undefined) return;
    this.runs.set(
      partition,
      list.filter((r) => r.first + r.offsets.length - 1 > sequenceNumber),
    );
  }
}
