import { join } from 'node:path';
import { EventHubProducerClient, type EventDataBatch } from '@azure/event-hubs';
import type { Logger } from '../lib/log.ts';
import { abortableSleep, within } from '../lib/within.ts';
import type { HubProducer } from './hub.ts';
import { openSpool, SpoolFullError, spoolFrameBytes, type Spool, type SpoolChunk, type SpoolRecord } from './spool.ts';

/**
 * The Event Hubs producer side of the hub, used by collectors (`FAROL_HUB=eventhubs`).
 *
 * Each event goes to the partition its key hashes to, computed here with the service's own hash
 * (so a visitor always lands on one partition, the same one a `partitionKey` send would pick).
 * Per partition, publishes queue in a lane that sends one batch at a time: whatever queued while
 * the previous batch was in flight goes out in the next `sendBatch` (group commit), in order.
 *
 * `publish` resolves once Event Hubs accepted the events, or once they are fsynced in the spool
 * (`<data dir>/spool`): when a send fails (Event Hubs unreachable, throttling, timeouts) or the
 * lanes hold more than their memory bound, the producer switches to spooling: every lane's
 * queue, and every later publish, goes to the spool, in order, so per-partition order holds. A
 * replayer sends the spool in order once Event Hubs takes sends again, committing its cursor (and
 * deleting segments) only after acceptance. To switch back it holds new publishes in memory for
 * the last chunk, then lets the lanes send directly again. Past the spool's bound, publish
 * rejects (the collector answers 503). `isReady()` is false while spooling.
 *
 * Delivery is at least once: a send that fails after the service stored it (a lost answer, a
 * crash between acceptance and the cursor write) is sent again; the processor's client-id dedup
 * absorbs such copies of events that carry an `id`.
 */

/** Options of {@link openEventHubsProducer}. */
export interface EventHubsProducerOptions {
  connectionString: string;
  eventHubName: string;
  /** Directory of the spool, e.g. `<FAROL_DATA_DIR>/spool`. */
  spoolDir: string;
  /** Bound of the spool on disk; past it, publish rejects. */
  spoolMaxBytes: number;
  log: Logger;
  /** Timeout of one send attempt (default 5 s). */
  sendTimeoutMs?: number;
  /** SDK retries of a failed send before the events go to the spool (default 1). */
  maxRetries?: number;
  /** Bound on bytes queued in memory across lanes; past it, the producer spools (default 64 MiB). */
  maxQueuedBytes?: number;
  /** Bytes the replayer reads from the spool at a time (default 4 MiB). */
  replayChunkBytes?: number;
  /** First and longest pause of the replayer after a failed attempt (default 250 ms, 5 s). */
  retryInitialMs?: number;
  retryMaxMs?: number;
  /** Bound on closing the SDK client in `close` (default 5 s); past it, close logs and returns. */
  closeTimeoutMs?: number;
}

/** Why a publish was refused. */
export type EventHubsProducerErrorCode = 'HUB_CLOSED' | 'HUB_SPOOL_FULL' | 'HUB_PAYLOAD_TOO_LARGE' | 'HUB_BAD_OPTIONS';

export class EventHubsProducerError extends Error {
  override readonly name = 'EventHubsProducerError';
  constructor(
    readonly code: EventHubsProducerErrorCode,
    message: string,
  ) {
    super(message);
  }
}

/** Counters of a producer (tests, benchmarks). */
export interface EventHubsProducerStats {
  mode: Mode;
  /** Batches Event Hubs accepted from the lanes, and the events in them. */
  sentBatches: number;
  sentEvents: number;
  /** Sends that failed (each switches to spooling). */
  sendFailures: number;
  /** Events written to the spool, and replayed from it. */
  spooledEvents: number;
  replayedEvents: number;
  /** Switches from direct sends to spooling. */
  spoolEpisodes: number;
}

type Mode = 'direct' | 'spool' | 'hold';

/** One item of a publish, waiting in a lane. */
interface Entry {
  key: string;
  payload: Buffer;
  /** Its size as a spool frame (what it costs in memory and on disk). */
  bytes: number;
  waiter: Waiter;
}

interface Waiter {
  remaining: number;
  failed: boolean;
  resolve: () => void;
  reject: (err: Error) => void;
}

interface Lane {
  partitionId: string;
  queue: Entry[];
  running: boolean;
}

/** Largest event accepted (the service's limit for a whole batch is 1 MB on the standard tier). */
const MAX_EVENT_BYTES = 1_000_000;

/**
 * The partition Event Hubs assigns a partition key to: Bob Jenkins' lookup3 `hashlittle2` (seeds
 * 0) over the key's UTF-8 bytes, the two hashes XOR-ed and narrowed to a signed 16-bit integer,
 * `|v mod partitionCount|` — what the service and the SDK's buffered producer compute.
 */
export function eventHubsPartitionForKey(key: string, partitionCount: number): number {
  const { b, c } = hashLittle2(Buffer.from(key, 'utf8'));
  const int16 = ((c ^ b) << 16) >> 16;
  return Math.abs(int16 % partitionCount);
}

function rot(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

/** Bob Jenkins' lookup3 `hashlittle2` over bytes (the service's partition-key hash). */
export function hashLittle2(key: Buffer): { b: number; c: number } {
  let a = (0xdeadbeef + key.length) | 0;
  let b = a;
  let c = a;
  let i = 0;
  let left = key.length;
  while (left > 12) {
    a = (a + key.readUInt32LE(i)) | 0;
    b = (b + key.readUInt32LE(i + 4)) | 0;
    c = (c + key.readUInt32LE(i + 8)) | 0;
    a = (a - c) | 0; a ^= rot(c, 4); c = (c + b) | 0;
    b = (b - a) | 0; b ^= rot(a, 6); a = (a + c) | 0;
    c = (c - b) | 0; c ^= rot(b, 8); b = (b + a) | 0;
    a = (a - c) | 0; a ^= rot(c, 16); c = (c + b) | 0;
    b = (b - a) | 0; b ^= rot(a, 19); a = (a + c) | 0;
    c = (c - b) | 0; c ^= rot(b, 4); b = (b + a) | 0;
    i += 12;
    left -= 12;
  }
  if (left === 0) return { b, c };
  const tail = Buffer.alloc(12);
  key.copy(tail, 0, i);
  a = (a + tail.readUInt32LE(0)) | 0;
  b = (b + tail.readUInt32LE(4)) | 0;
  c = (c + tail.readUInt32LE(8)) | 0;
  c ^= b; c = (c - rot(b, 14)) | 0;
  a ^= c; a = (a - rot(c, 11)) | 0;
  b ^= a; b = (b - rot(a, 25)) | 0;
  c ^= b; c = (c - rot(b, 16)) | 0;
  a ^= c; a = (a - rot(c, 4)) | 0;
  b ^= a; b = (b - rot(a, 14)) | 0;
  c ^= b; c = (c - rot(b, 24)) | 0;
  return { b, c };
}

/** `<FAROL_DATA_DIR>/spool`. */
export function spoolDir(dataDir: string): string {
  return join(dataDir, 'spool');
}

/**
 * Opens the spool and the producer client. Event Hubs need not be reachable: the collector then
 * starts spooling and the replayer learns the partitions when the service answers.
 */
export async function openEventHubsProducer(options: EventHubsProducerOptions): Promise<EventHubsProducer> {
  const { log } = options;
  const spool = await openSpool({
    dir: options.spoolDir,
    maxBytes: options.spoolMaxBytes,
    onCorrupt: (at) => log.error({ ...at }, 'corrupt spool frame; skipping the rest of the segment'),
  });
  const sendTimeoutMs = options.sendTimeoutMs ?? 5_000;
  const client = new EventHubProducerClient(options.connectionString, options.eventHubName, {
    retryOptions: { maxRetries: options.maxRetries ?? 1, retryDelayInMs: 200, maxRetryDelayInMs: 1_000, timeoutInMs: sendTimeoutMs },
  });
  const producer = new EventHubsProducer(options, client, spool);
  await producer.start();
  return producer;
}

/** See the module comment. */
export class EventHubsProducer implements HubProducer {
  private lanes: Lane[] | undefined;
  private mode: Mode = 'direct';
  private queuedBytes = 0;
  private replaying: Promise<void> | undefined;
  private closed = false;
  private readonly wake = new AbortController();
  private readonly counters: Omit<EventHubsProducerStats, 'mode'> = {
    sentBatches: 0,
    sentEvents: 0,
    sendFailures: 0,
    spooledEvents: 0,
    replayedEvents: 0,
    spoolEpisodes: 0,
  };
  private readonly log: Logger;
  private readonly sendTimeoutMs: number;
  private readonly maxRetries: number;

  constructor(
    private readonly options: EventHubsProducerOptions,
    private readonly client: EventHubProducerClient,
    private readonly spool: Spool,
  ) {
    this.log = options.log;
    this.sendTimeoutMs = options.sendTimeoutMs ?? 5_000;
    this.maxRetries = options.maxRetries ?? 1;
  }

  /** Partitions of the hub (0 until Event Hubs first answered). */
  get partitionCount(): number {
    return this.lanes?.length ?? 0;
  }

  /** @internal Learns the partitions and starts replaying a spool left by an earlier run. */
  async start(): Promise<void> {
    try {
      await this.learnPartitions();
    } catch (err) {
      this.log.warn({ err }, 'Event Hubs unreachable at start; spooling until it answers');
      this.mode = 'spool';
    }
    if (!this.spool.isEmpty()) {
      this.log.info({ bytes: this.spool.unreplayedBytes }, 'replaying the spool left by an earlier run');
      this.mode = 'spool';
    }
    if (this.mode !== 'direct') this.startReplayer();
  }

  publish(items: ReadonlyArray<{ key: string; payload: Buffer }>): Promise<void> {
    if (this.closed) return Promise.reject(new EventHubsProducerError('HUB_CLOSED', 'the hub is closed'));
    if (items.length === 0) return Promise.resolve();
    for (const item of items) {
      if (!Buffer.isBuffer(item.payload)) return Promise.reject(new EventHubsProducerError('HUB_BAD_OPTIONS', 'payloads must be Buffers'));
      if (item.payload.length > MAX_EVENT_BYTES) {
        return Promise.reject(
          new EventHubsProducerError('HUB_PAYLOAD_TOO_LARGE', `payload of ${item.payload.length} bytes exceeds ${MAX_EVENT_BYTES}`),
        );
      }
    }
    const sizes = items.map(spoolFrameBytes);
    if (this.mode !== 'direct') {
      // All or nothing: while spooling, everything queued goes to the spool, so a publish that
      // would not fit is refused whole rather than half spooled.
      const bytes = sizes.reduce((n, b) => n + b, 0);
      if (this.queuedBytes + bytes > this.spool.freeBytes) {
        return Promise.reject(new EventHubsProducerError('HUB_SPOOL_FULL', 'Event Hubs is unavailable and the spool is full'));
      }
    }
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = { remaining: items.length, failed: false, resolve, reject };
      const entries = items.map((i, k) => ({ key: i.key, payload: i.payload, bytes: sizes[k] as number, waiter }));
      const lanes = this.lanes;
      if (lanes === undefined) {
        // Partitions unknown yet (Event Hubs has not answered): nothing can be queued ahead of these.
        void this.toSpool(entries);
        return;
      }
      const touched = new Set<Lane>();
      for (const e of entries) {
        const lane = lanes[eventHubsPartitionForKey(e.key, lanes.length)] as Lane;
        lane.queue.push(e);
        this.queuedBytes += e.bytes;
        touched.add(lane);
      }
      if (this.mode !== 'spool' && this.queuedBytes > (this.options.maxQueuedBytes ?? 64 * 1024 * 1024)) {
        this.enterSpool('queued events passed the memory bound');
      }
      for (const lane of touched) this.pump(lane);
    });
  }

  /** False while spooling (Event Hubs is not taking sends, or the spool is being replayed). */
  isReady(): boolean {
    return !this.closed && this.mode === 'direct';
  }

  stats(): EventHubsProducerStats {
    return { mode: this.mode, ...this.counters };
  }

  /**
   * Settles every queued publish (sent, or spooled when Event Hubs is unavailable), stops the
   * replayer and closes the client. A spool left non-empty is replayed by the next start.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // Held publishes must not wait for a replay that is about to stop: they go to disk.
    if (this.mode === 'hold') this.setMode('spool');
    this.wake.abort();
    while (this.lanes?.some((l) => l.running || l.queue.length > 0)) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    await this.replaying;
    await this.spool.idle();
    await this.spool.close();
    // Everything is settled and on disk by now: a client whose AMQP close hangs (a detach or close
    // frame the service never answers) must not hold the process.
    const closeTimeoutMs = this.options.closeTimeoutMs ?? 5_000;
    try {
      if ((await within(this.client.close(), closeTimeoutMs)) === 'timed out') {
        this.log.warn({ ms: closeTimeoutMs }, 'closing the Event Hubs client did not finish in time; going on');
      }
    } catch (err) {
      this.log.warn({ err }, 'closing the Event Hubs client failed');
    }
  }

  private async learnPartitions(): Promise<void> {
    const ids = await this.client.getPartitionIds({ abortSignal: AbortSignal.timeout(this.sendTimeoutMs) });
    if (ids.length === 0 || ids.some((id, i) => id !== String(i))) {
      throw new Error(`unexpected partition ids ${JSON.stringify(ids)}`);
    }
    this.lanes ??= ids.map((partitionId) => ({ partitionId, queue: [], running: false }));
  }

  /** Runs a lane until its queue is empty (or the producer holds): one batch or spool write at a time. */
  private pump(lane: Lane): void {
    if (lane.running) return;
    lane.running = true;
    void this.runLane(lane).finally(() => {
      lane.running = false;
      // Entries queued while the lane was finishing, in a mode it can act on.
      if (lane.queue.length > 0 && this.mode !== 'hold') this.pump(lane);
    });
  }

  private async runLane(lane: Lane): Promise<void> {
    while (lane.queue.length > 0 && this.mode !== 'hold') {
      if (this.mode === 'spool') {
        await this.spoolFromLane(lane, lane.queue.length);
        continue;
      }
      let batch: EventDataBatch;
      try {
        batch = await this.client.createBatch({ partitionId: lane.partitionId, abortSignal: AbortSignal.timeout(this.sendTimeoutMs) });
      } catch (err) {
        this.sendFailed(err, lane);
        continue;
      }
      // The mode may have changed while the batch was being created.
      if (this.mode !== 'direct') continue;
      let count = 0;
      for (const e of lane.queue) {
        if (!batch.tryAdd({ body: e.payload })) break;
        count++;
      }
      if (count === 0) {
        // Cannot fit even alone (properties overhead on a near-limit payload).
        const [e] = lane.queue.splice(0, 1);
        if (e !== undefined) {
          this.queuedBytes -= e.bytes;
          fail(e.waiter, new EventHubsProducerError('HUB_PAYLOAD_TOO_LARGE', 'event does not fit an Event Hubs batch'));
        }
        continue;
      }
      const sent = lane.queue.slice(0, count);
      try {
        await this.client.sendBatch(batch, { abortSignal: AbortSignal.timeout(this.sendTimeoutMs * (this.maxRetries + 1) + 1_000) });
      } catch (err) {
        this.sendFailed(err, lane);
        // The failed batch is still at the head of the queue: the spool gets it first.
        continue;
      }
      lane.queue.splice(0, count);
      for (const e of sent) {
        this.queuedBytes -= e.bytes;
        settle(e.waiter);
      }
      this.counters.sentBatches++;
      this.counters.sentEvents += count;
    }
  }

  private sendFailed(err: unknown, lane: Lane): void {
    this.counters.sendFailures++;
    if (this.mode === 'direct') this.log.warn({ err, partition: lane.partitionId }, 'Event Hubs send failed; spooling');
    this.enterSpool('send failed');
  }

  /** Moves the first `count` entries of a lane to the spool (enqueued synchronously, in order). */
  private spoolFromLane(lane: Lane, count: number): Promise<void> {
    const entries = lane.queue.splice(0, count);
    for (const e of entries) this.queuedBytes -= e.bytes;
    return this.toSpool(entries);
  }

  /** Appends entries to the spool and settles their publishes; never rejects. */
  private toSpool(entries: Entry[]): Promise<void> {
    const records: SpoolRecord[] = entries.map((e) => ({ key: e.key, payload: e.payload }));
    return this.spool.append(records).then(
      () => {
        this.counters.spooledEvents += entries.length;
        for (const e of entries) settle(e.waiter);
      },
      (err: unknown) => {
        const error =
          err instanceof SpoolFullError
            ? new EventHubsProducerError('HUB_SPOOL_FULL', `Event Hubs is unavailable and the spool is full: ${err.message}`)
            : err instanceof Error
              ? err
              : new Error(String(err));
        if (!(err instanceof SpoolFullError)) this.log.error({ err }, 'spool write failed');
        for (const e of entries) fail(e.waiter, error);
      },
    );
  }

  private enterSpool(reason: string): void {
    if (this.mode === 'spool') return;
    if (this.mode === 'direct') {
      this.counters.spoolEpisodes++;
      this.log.warn({ reason }, 'spooling events to local disk');
    }
    this.setMode('spool');
    this.startReplayer();
  }

  private setMode(mode: Mode): void {
    this.mode = mode;
    if (mode === 'hold') return;
    for (const lane of this.lanes ?? []) if (lane.queue.length > 0) this.pump(lane);
  }

  private startReplayer(): void {
    if (this.closed) return;
    this.replaying ??= this.replayLoop()
      .catch((err: unknown) => this.log.error({ err }, 'spool replayer stopped'))
      .finally(() => {
        this.replaying = undefined;
        // A crash of the loop (a spool read error) must not strand the spool: try again shortly.
        if (!this.closed && this.mode !== 'direct') setTimeout(() => this.startReplayer(), 1_000).unref();
      });
  }

  /**
   * Replays the spool until it is empty, then returns to direct sends. Chunks are retried with
   * backoff; what a partition already had accepted of a chunk is not sent again.
   */
  private async replayLoop(): Promise<void> {
    const initial = this.options.retryInitialMs ?? 250;
    const max = this.options.retryMaxMs ?? 5_000;
    const chunkBytes = this.options.replayChunkBytes ?? 4 * 1024 * 1024;
    let delay = initial;
    let chunk: SpoolChunk | undefined;
    let progress = new Map<number, number>();
    let warnedAt = 0;
    const pause = async (): Promise<void> => {
      if (Date.now() - warnedAt >= 60_000) {
        warnedAt = Date.now();
        this.log.warn({ unreplayedBytes: this.spool.unreplayedBytes, spoolBytes: this.spool.bytes }, 'Event Hubs still unavailable; spooling');
      }
      await abortableSleep(delay, this.wake.signal);
      delay = Math.min(delay * 2, max);
    };
    while (!this.closed) {
      if (this.lanes === undefined) {
        try {
          await this.learnPartitions();
        } catch {
          await pause();
          continue;
        }
      }
      chunk ??= await this.spool.read(chunkBytes);
      if (chunk === undefined) {
        if (this.mode === 'spool') {
          // Caught up: hold new publishes in memory so that nothing more is spooled, then send what
          // spool writes were still in flight.
          this.setMode('hold');
        } else if (this.spool.isEmpty()) {
          this.log.info({ replayed: this.counters.replayedEvents }, 'spool replayed; sending directly again');
          this.setMode('direct');
          return;
        }
        await this.spool.idle();
        continue;
      }
      if (!(await this.sendChunk(chunk, progress))) {
        if (this.mode === 'hold') this.setMode('spool');
        await pause();
        continue;
      }
      await this.spool.commit(chunk);
      this.counters.replayedEvents += chunk.records.length;
      chunk = undefined;
      progress = new Map();
      delay = initial;
      // Under steady load the spool never quite runs dry: once less than a chunk is left, stop
      // appending (publishes wait in memory) so that the replay can finish.
      if (this.mode === 'spool' && this.spool.unreplayedBytes <= chunkBytes) this.setMode('hold');
    }
  }

  /** Sends a chunk: partitions in parallel, each in order. Records what each got accepted. */
  private async sendChunk(chunk: SpoolChunk, progress: Map<number, number>): Promise<boolean> {
    const lanes = this.lanes;
    if (lanes === undefined) return false;
    const byPartition = new Map<number, SpoolRecord[]>();
    for (const r of chunk.records) {
      const p = eventHubsPartitionForKey(r.key, lanes.length);
      let list = byPartition.get(p);
      if (list === undefined) byPartition.set(p, (list = []));
      list.push(r);
    }
    const results = await Promise.all(
      [...byPartition].map(async ([p, records]) => {
        let done = progress.get(p) ?? 0;
        try {
          while (done < records.length) {
            const batch = await this.client.createBatch({ partitionId: String(p), abortSignal: AbortSignal.timeout(this.sendTimeoutMs) });
            let count = 0;
            while (done + count < records.length && batch.tryAdd({ body: (records[done + count] as SpoolRecord).payload })) count++;
            if (count === 0) {
              this.log.error({ partition: p }, 'spooled event does not fit an Event Hubs batch; dropping it');
              done++;
              continue;
            }
            await this.client.sendBatch(batch, { abortSignal: AbortSignal.timeout(this.sendTimeoutMs * (this.maxRetries + 1) + 1_000) });
            done += count;
            progress.set(p, done);
          }
          return true;
        } catch (err) {
          this.counters.sendFailures++;
          this.log.debug({ err, partition: p }, 'spool replay send failed');
          return false;
        }
      }),
    );
    return results.every(Boolean);
  }
}

function settle(w: Waiter): void {
  if (w.failed) return;
  w.remaining--;
  if (w.remaining === 0) w.resolve();
}

function fail(w: Waiter, err: Error): void {
  if (w.failed) return;
  w.failed = true;
  w.reject(err);
}

