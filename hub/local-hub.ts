import { partitionForKey, type HubProducer, type HubRecord } from './hub.ts';
import { emptyStats, HubError, noopLog, type HubLog, type LocalHubStats } from './local-common.ts';
import { CheckpointFile, LocalConsumer, maxCheckpoints, minCheckpoints, type ConsumerHost } from './local-consumer.ts';
import { acquireWriterLock, ensureMeta } from './local-dir.ts';
import { HEADER_BYTES, MAX_PAYLOAD_BYTES } from './local-format.ts';
import { PartitionWriter, type PublishWaiter, type RetentionPolicy } from './local-partition.ts';
import { partitionDir, PartitionReader, readPartition } from './local-reader.ts';
import { bootId, clearReservations, offsetsAfterOsCrash, Reservations } from './local-reservations.ts';
import { listSegments } from './local-segment.ts';

export { HubError, type HubErrorCode, type HubLog, type LocalHubStats } from './local-common.ts';
export { LocalConsumer } from './local-consumer.ts';
export type { RetentionPolicy } from './local-partition.ts';
export { readPartition } from './local-reader.ts';

/** Retention applied on a timer by a writing hub. */
export interface RetentionOptions extends RetentionPolicy {
  /** How often it runs (default one minute). */
  intervalMs?: number;
}

/** Options of {@link openLocalHub}. */
export interface LocalHubOptions {
  /** Directory of the log, e.g. `<FAROL_DATA_DIR>/hub`; created if missing. */
  dir: string;
  /** Number of partitions; fixed when the directory is first created. */
  partitions: number;
  /** Size at which the active segment is sealed and a new one started (default 64 MiB). */
  segmentBytes?: number;
  /**
   * Unset (`FAROL_HUB_SYNC=always`): `publish` resolves once its records are on disk (O_DSYNC or
   * fdatasync per group commit). Set (`interval:<ms>`): it resolves once their write returned, so
   * they survive the process being killed but not an OS crash or power loss, and each partition
   * with new writes is fdatasynced every `syncIntervalMs` (1..60,000), and on close. Consumers of
   * this process get records once fdatasynced; offsets are reserved ahead of use and skipped
   * after an OS crash (local-reservations.ts).
   */
  syncIntervalMs?: number;
  /** Retention run on a timer; none when omitted. */
  retention?: RetentionOptions;
  /**
   * Quota over all partitions, in bytes on disk (queued records included). A publish that would
   * pass it is refused whole with `HUB_FULL`, before anything is written, and consumed segments
   * are then reclaimed whatever the retention policy says. With a quota, retention never deletes
   * unconsumed records (without one, it does past twice its size limit). No quota when omitted.
   */
  maxBytes?: number;
  log?: HubLog;
  /**
   * Opens the log without appending to it: no publishing, tail recovery or retention, but
   * consumers and checkpoints work. For a process that consumes while another one writes: only
   * one process may write.
   */
  readOnly?: boolean;
  /** How often a waiting consumer looks for appends made by another process (default 200 ms). */
  pollMs?: number;
  /** First delay before a failed batch is retried (default 500 ms); it doubles up to 30 s. */
  retryBackoffMs?: number;
  /**
   * Appends seen across the threads of one process ({@link sharedAppends}): the writing hub
   * publishes each partition's end offset there and wakes the read-only hub of another thread,
   * whose consumers then neither poll nor read the files to the end for lag.
   */
  shared?: SharedArrayBuffer;
}

/** What one retention run deleted. */
export interface RetentionResult {
  segments: number;
  bytes: number;
}

const DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024;
const DEFAULT_RETENTION_INTERVAL_MS = 60_000;
/** Least time between two reclaim passes started by refused publishes. */
const RECLAIM_INTERVAL_MS = 1_000;
/** Share of the quota past which the retention timer also reclaims consumed segments. */
const RECLAIM_HIGH_WATER = 0.8;
const MAX_RETRY_BACKOFF_MS = 30_000;
/** Longest background fsync interval: what an OS crash may lose is bounded by it. */
export const MAX_SYNC_INTERVAL_MS = 60_000;

/**
 * Opens (creating if needed) the local hub at `options.dir`: checks the partition count against
 * `meta.json`, takes the writer lock, and recovers each partition's torn tail.
 */
export function openLocalHub(options: LocalHubOptions): Promise<LocalHub> {
  return LocalHub.open(options);
}

/** The waiter of one publish: settled once every record of it is (a class: no closure per publish). */
class Waiter implements PublishWaiter {
  error: Error | undefined = undefined;

  constructor(
    public remaining: number,
    private readonly counters: LocalHubStats,
    private readonly resolvePublish: () => void,
    readonly reject: (err: Error) => void,
  ) {}

  resolve(): void {
    this.counters.publishes++;
    this.resolvePublish();
  }
}

/**
 * The local durable segment log: the producer side (`publish`, group-committed), consumers per
 * group (`openConsumer`), retention, and a read helper.
 */
export class LocalHub implements HubProducer {
  readonly partitionCount: number;
  readonly dir: string;
  private closing: Promise<void> | undefined;
  private readonly readOnly: boolean;
  private readonly consumers = new Map<string, LocalConsumer>();
  private readonly groupsInUse = new Set<string>();
  private readonly tails = new Map<number, { reader: PartitionReader | undefined; busy: Promise<number> }>();
  private retentionChain: Promise<unknown> = Promise.resolve();
  private readonly retentionTimer: NodeJS.Timeout | undefined;
  private readonly syncTimer: NodeJS.Timeout | undefined;
  private lastReclaim = 0;

  private constructor(
    private readonly options: LocalHubOptions,
    private readonly log: HubLog,
    private readonly appends: AppendNotifier,
    private readonly writers: PartitionWriter[],
    private readonly releaseLock: () => Promise<void>,
    private readonly counters: LocalHubStats = emptyStats(),
  ) {
    this.partitionCount = options.partitions;
    this.dir = options.dir;
    this.readOnly = options.readOnly === true;
    this.retentionTimer = this.startRetentionTimer();
    this.syncTimer = this.startSyncTimer();
  }

  /** See {@link openLocalHub}. */
  static async open(options: LocalHubOptions): Promise<LocalHub> {
    checkOptions(options);
    const log = options.log ?? noopLog;
    await ensureMeta(options.dir, options.partitions);
    const appends = new AppendNotifier(options.partitions, options.shared);
    if (options.readOnly === true) return new LocalHub(options, log, appends, [], async () => {});
    const release = await acquireWriterLock(options.dir);
    const stats = emptyStats();
    try {
      const boot = await bootId();
      const afterCrash = await offsetsAfterOsCrash(options.dir, options.partitions, boot, log);
      const reservations = options.syncIntervalMs === undefined ? undefined : new Reservations(options.dir, boot, afterCrash.map(() => 0));
      const writers = await openWriters(options, log, stats, appends, afterCrash, reservations);
      // In `always` mode every offset handed out is durable before anyone reads it: nothing to reserve.
      if (reservations === undefined) {
        await clearReservations(options.dir).catch(async (err: unknown) => {
          await Promise.all(writers.map((w) => w.close().catch(() => {})));
          throw err;
        });
      }
      for (const [p, w] of writers.entries()) appends.notify(p, w.nextOffset);
      return new LocalHub(options, log, appends, writers, release, stats);
    } catch (err) {
      await release();
      throw err;
    }
  }

  /**
   * Appends payloads, each to its key's partition; resolves once all are fsynced (in interval
   * mode: once all are written to the OS, see {@link LocalHubOptions.syncIntervalMs}).
   */
  publish(items: ReadonlyArray<{ key: string; payload: Buffer }>): Promise<void> {
    const refused = this.refusePublish(items) ?? this.overQuota(items);
    if (refused !== undefined) return Promise.reject(refused);
    if (items.length === 0) return Promise.resolve();
    return new Promise<void>((resolvePublish, rejectPublish) => {
      const waiter = new Waiter(items.length, this.counters, resolvePublish, rejectPublish);
      for (const item of items) this.writerFor(item.key).enqueue(item.payload, waiter);
    });
  }

  /** True while open for writing and no partition's last write or fsync (background ones included) failed. */
  isReady(): boolean {
    return this.closing === undefined && !this.readOnly && this.writers.every((w) => !w.isFailing);
  }

  /** Opens the consumer of `group` (one per group per hub at a time), loading its checkpoints. */
  async openConsumer(group: string): Promise<LocalConsumer> {
    if (this.closing !== undefined) throw new HubError('HUB_CLOSED', 'the hub is closed');
    if (this.groupsInUse.has(group)) throw new HubError('HUB_GROUP_IN_USE', `consumer group ${group} is already open`);
    // Reserved before the first await, so that two concurrent opens of a group cannot both succeed.
    this.groupsInUse.add(group);
    try {
      const checkpoints = await CheckpointFile.open(this.dir, group, this.partitionCount);
      const consumer = new LocalConsumer(this.consumerHost(), group, checkpoints);
      this.consumers.set(group, consumer);
      return consumer;
    } catch (err) {
      this.groupsInUse.delete(group);
      throw err;
    }
  }

  /**
   * Deletes whole sealed segments, oldest first, that are older than `maxAgeMs` (by mtime, i.e.
   * their last append) or while the partition holds more than `maxBytes`; but a segment with
   * records past the lowest checkpoint of the known consumer groups (those with a checkpoint
   * file) stays unless the partition holds more than twice `maxBytes`. With `reclaim` every
   * consumed sealed segment goes, whatever its age (the hub is at or near its quota). A hub with a
   * quota never deletes unconsumed segments: it refuses new records instead.
   */
  enforceRetention(policy: RetentionPolicy, now: number = Date.now()): Promise<RetentionResult> {
    if (this.closing !== undefined) return Promise.reject(new HubError('HUB_CLOSED', 'the hub is closed'));
    if (this.readOnly) return Promise.reject(new HubError('HUB_READ_ONLY', 'retention runs in the writing process'));
    // Serialized so that the timer and a direct call never delete concurrently.
    const effective = this.options.maxBytes === undefined ? policy : { ...policy, keepUnconsumed: true };
    const run = this.retentionChain.then(() => this.retentionPass(effective, now));
    this.retentionChain = run.catch(() => {});
    return run;
  }

  /** Up to `max` records of a partition from `fromOffset` (for tests and tools). */
  read(partition: number, fromOffset: number, max: number): Promise<HubRecord[]> {
    const bad = this.badPartition(partition);
    if (bad !== undefined) return Promise.reject(bad);
    return readPartition(this.dir, partition, fromOffset, max, this.log);
  }

  /** Offset the next record appended to the partition gets. */
  endOffset(partition: number): Promise<number> {
    const bad = this.badPartition(partition);
    if (bad !== undefined) return Promise.reject(bad);
    const writer = this.writers[partition];
    if (writer !== undefined) return Promise.resolve(writer.nextOffset);
    const shared = this.appends.sharedEnd(partition);
    if (shared !== undefined) return Promise.resolve(shared);
    return this.tailOffset(partition);
  }

  /** Bytes on disk over all partitions, plus records queued to be written. */
  bytes(): number {
    let total = 0;
    for (const w of this.writers) total += w.bytes;
    return total;
  }

  /** A snapshot of the counters. */
  stats(): LocalHubStats {
    return { ...this.counters };
  }

  /** The background fsync interval, or undefined when every publish waits for its fsync (`always`). */
  get syncIntervalMs(): number | undefined {
    return this.options.syncIntervalMs;
  }

  /**
   * Interval mode: how long ago the oldest acknowledged write not yet fdatasynced returned (what
   * an OS crash would lose); 0 when everything acknowledged is durable, and always in `always` mode.
   */
  unsyncedAgeMs(now: number = Date.now()): number {
    let oldest = now;
    for (const w of this.writers) oldest = Math.min(oldest, w.unsyncedSinceMs ?? now);
    return now - oldest;
  }

  /** Interval mode: fdatasyncs now every partition with writes not yet durable (the timer does it every interval). */
  async sync(): Promise<void> {
    await Promise.all(this.writers.map((w) => w.syncDirty()));
  }

  /**
   * Closes consumers (after their in-flight batches), settles queued publishes, closes files and
   * releases the writer lock. Publishes after this starts are rejected.
   */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    clearInterval(this.retentionTimer);
    clearInterval(this.syncTimer);
    try {
      await Promise.all([...this.consumers.values()].map((c) => c.close()));
      await this.retentionChain;
      await Promise.all(this.writers.map((w) => w.close()));
      // Everything handed out is durable now (a failed final fsync threw above and keeps them).
      if (this.options.syncIntervalMs !== undefined && !this.readOnly) await clearReservations(this.dir);
      await Promise.all([...this.tails.values()].map((t) => t.busy.catch(() => 0).then(() => t.reader?.close())));
    } finally {
      await this.releaseLock();
    }
  }

  private refusePublish(items: ReadonlyArray<{ key: string; payload: Buffer }>): HubError | undefined {
    if (this.closing !== undefined) return new HubError('HUB_CLOSED', 'the hub is closed');
    if (this.readOnly) return new HubError('HUB_READ_ONLY', 'the hub was opened read-only');
    if (!items.every((i) => Buffer.isBuffer(i.payload))) return new HubError('HUB_BAD_OPTIONS', 'payloads must be Buffers');
    const big = items.find((i) => i.payload.length > MAX_PAYLOAD_BYTES);
    if (big !== undefined) {
      return new HubError('HUB_PAYLOAD_TOO_LARGE', `payload of ${big.payload.length} bytes exceeds ${MAX_PAYLOAD_BYTES}`);
    }
    return undefined;
  }

  /** HUB_FULL when the items would take the hub past its quota; starts reclaiming consumed segments then. */
  private overQuota(items: ReadonlyArray<{ key: string; payload: Buffer }>): HubError | undefined {
    const max = this.options.maxBytes;
    if (max === undefined) return undefined;
    let incoming = 0;
    for (const i of items) incoming += HEADER_BYTES + i.payload.length;
    const used = this.bytes();
    if (used + incoming <= max) return undefined;
    this.counters.quotaRefusals++;
    const now = Date.now();
    if (now - this.lastReclaim >= RECLAIM_INTERVAL_MS) {
      this.lastReclaim = now;
      this.enforceRetention({ ...this.options.retention, reclaim: true }).catch((err: unknown) => this.log.error({ err }, 'hub reclaim failed'));
    }
    return new HubError('HUB_FULL', `the hub holds ${used} bytes; ${incoming} more would pass its quota of ${max}`);
  }

  private badPartition(partition: number): HubError | undefined {
    if (Number.isInteger(partition) && partition >= 0 && partition < this.partitionCount) return undefined;
    return new HubError('HUB_BAD_OPTIONS', `no partition ${partition}`);
  }

  private writerFor(key: string): PartitionWriter {
    const writer = this.writers[partitionForKey(key, this.partitionCount)];
    if (writer === undefined) throw new Error('no writer for partition');
    return writer;
  }

  private async retentionPass(policy: RetentionPolicy, now: number): Promise<RetentionResult> {
    const mins = await minCheckpoints(this.dir, this.partitionCount, this.log);
    const total: RetentionResult = { segments: 0, bytes: 0 };
    for (const [p, writer] of this.writers.entries()) {
      const r = await writer.enforceRetention(policy, mins[p] ?? -1, now);
      total.segments += r.segments;
      total.bytes += r.bytes;
    }
    this.counters.segmentsDeleted += total.segments;
    if (total.segments > 0) this.log.info({ ...total }, 'hub retention deleted segments');
    return total;
  }

  private startRetentionTimer(): NodeJS.Timeout | undefined {
    const retention = this.options.retention;
    if (retention === undefined || this.readOnly) return undefined;
    const timer = setInterval(() => {
      const max = this.options.maxBytes;
      const reclaim = max !== undefined && this.bytes() > max * RECLAIM_HIGH_WATER;
      this.enforceRetention({ ...retention, reclaim }).catch((err: unknown) => this.log.error({ err }, 'hub retention failed'));
    }, retention.intervalMs ?? DEFAULT_RETENTION_INTERVAL_MS);
    // Retention alone must not keep the process alive.
    timer.unref();
    return timer;
  }

  private startSyncTimer(): NodeJS.Timeout | undefined {
    const ms = this.options.syncIntervalMs;
    if (ms === undefined || this.readOnly) return undefined;
    const timer = setInterval(() => void this.sync(), ms);
    // Close makes everything durable; the timer alone must not keep the process alive.
    timer.unref();
    return timer;
  }

  /** End offset read from the files (read-only hubs): a reader kept at the tail, one read at a time. */
  private tailOffset(partition: number): Promise<number> {
    let tail = this.tails.get(partition);
    if (tail === undefined) {
      tail = { reader: undefined, busy: Promise.resolve(0) };
      this.tails.set(partition, tail);
    }
    const t = tail;
    const run = t.busy
      .catch(() => 0)
      .then(async () => {
        t.reader ??= await this.newTailReader(partition);
        for (;;) {
          if ((await t.reader.read(4096)).length === 0) return t.reader.nextOffset;
        }
      });
    t.busy = run;
    return run;
  }

  private async newTailReader(partition: number): Promise<PartitionReader> {
    const segments = await listSegments(partitionDir(this.dir, partition));
    return new PartitionReader(this.dir, partition, segments.at(-1)?.base ?? 0, this.log);
  }

  private consumerHost(): ConsumerHost {
    return {
      dir: this.dir,
      partitionCount: this.partitionCount,
      log: this.log,
      stats: this.counters,
      pollMs: this.options.pollMs ?? 200,
      retryBackoffMs: this.options.retryBackoffMs ?? 500,
      maxRetryBackoffMs: MAX_RETRY_BACKOFF_MS,
      appendSeq: (p) => this.appends.seq(p),
      waitForAppend: (p, seq, ms, signal) => this.appends.wait(p, seq, ms, signal),
      endOffset: (p) => this.endOffset(p),
      // Interval mode: only what is durable. A read-only hub beside the writer (threads of one
      // process) stops where the writer's last notice said, which it sends once records are readable.
      readLimit: (p) => {
        const writer = this.writers[p];
        return writer === undefined ? this.appends.sharedEnd(p) : writer.readLimit;
      },
      released: (group) => {
        this.consumers.delete(group);
        this.groupsInUse.delete(group);
      },
    };
  }
}

/**
 * A buffer for {@link LocalHubOptions.shared}, for `partitions` partitions: give it to the writing
 * hub and to the read-only one (of another thread of the same process, by `workerData`).
 */
export function sharedAppends(partitions: number): SharedArrayBuffer {
  // An append count (Int32, for Atomics.wait) and an end offset (BigInt64, -1 until known) per partition.
  const buffer = new SharedArrayBuffer(sharedEndsAt(partitions) + partitions * 8);
  new BigInt64Array(buffer, sharedEndsAt(partitions)).fill(-1n);
  return buffer;
}

const sharedEndsAt = (partitions: number): number => Math.ceil((partitions * 4) / 8) * 8;

// Atomics.waitAsync (V8; Node 16+) is not in the ES2022 lib the project compiles against.
const waitAsync = (Atomics as unknown as {
  waitAsync(array: Int32Array, index: number, value: number, timeoutMs: number): { async: false; value: string } | { async: true; value: Promise<string> };
}).waitAsync;

/**
 * Wakes consumers of this process when a partition is appended to. A sequence number per
 * partition closes the gap between a reader finding nothing and starting to wait. With a shared
 * buffer the sequence numbers (and end offsets) live there, so the appends of a writing hub on
 * one thread wake the consumers of a read-only hub on another.
 */
class AppendNotifier {
  private readonly seqs: Int32Array;
  private readonly ends: BigInt64Array | undefined;
  private readonly waiters = new Map<number, Set<() => void>>();

  constructor(partitions: number, shared?: SharedArrayBuffer) {
    if (shared === undefined) {
      this.seqs = new Int32Array(partitions);
      return;
    }
    if (shared.byteLength !== sharedEndsAt(partitions) + partitions * 8) {
      throw new HubError('HUB_BAD_OPTIONS', `local hub: the shared buffer is not one for ${partitions} partitions`);
    }
    this.seqs = new Int32Array(shared, 0, partitions);
    this.ends = new BigInt64Array(shared, sharedEndsAt(partitions), partitions);
  }

  seq(partition: number): number {
    return this.ends === undefined ? (this.seqs[partition] ?? 0) : Atomics.load(this.seqs, partition);
  }

  /** The end offset the writing hub of another thread published, if any. */
  sharedEnd(partition: number): number | undefined {
    if (this.ends === undefined) return undefined;
    const end = Number(Atomics.load(this.ends, partition));
    return end < 0 ? undefined : end;
  }

  /** The writing hub's partition now ends at `next` (opened, or appended to). */
  notify(partition: number, next: number): void {
    if (this.ends === undefined) {
      this.seqs[partition] = this.seq(partition) + 1;
    } else {
      Atomics.store(this.ends, partition, BigInt(next));
      Atomics.add(this.seqs, partition, 1);
      Atomics.notify(this.seqs, partition);
    }
    const waiting = this.waiters.get(partition);
    this.waiters.delete(partition);
    for (const wake of waiting ?? []) wake();
  }

  wait(partition: number, seq: number, ms: number, signal: AbortSignal): Promise<void> {
    if (this.seq(partition) !== seq || signal.aborted) return Promise.resolve();
    return new Promise((resolveWait) => {
      const done = (): void => {
        clearTimeout(timer);
        signal.removeEventListener('abort', done);
        this.waiters.get(partition)?.delete(done);
        resolveWait();
      };
      const timer = setTimeout(done, ms);
      signal.addEventListener('abort', done, { once: true });
      let set = this.waiters.get(partition);
      if (set === undefined) this.waiters.set(partition, (set = new Set()));
      set.add(done);
      // An append by the writing hub of another thread.
      if (this.ends !== undefined) {
        const woken = waitAsync(this.seqs, partition, seq, ms);
        if (woken.async) void woken.value.then(done);
        else done();
      }
    });
  }
}

function checkOptions(o: LocalHubOptions): void {
  const bad = (what: string): never => {
    throw new HubError('HUB_BAD_OPTIONS', `local hub: ${what}`);
  };
  if (!Number.isInteger(o.partitions) || o.partitions < 1 || o.partitions > 4096) bad('partitions must be an integer in 1..4096');
  if (o.segmentBytes !== undefined && (!Number.isInteger(o.segmentBytes) || o.segmentBytes < 1)) {
    bad('segmentBytes must be a positive integer');
  }
  if (o.pollMs !== undefined && !(o.pollMs > 0)) bad('pollMs must be positive');
  if (o.retryBackoffMs !== undefined && !(o.retryBackoffMs >= 0)) bad('retryBackoffMs must not be negative');
  if (o.retention?.intervalMs !== undefined && !(o.retention.intervalMs > 0)) bad('retention.intervalMs must be positive');
  if (o.maxBytes !== undefined && !(o.maxBytes > 0)) bad('maxBytes must be positive');
  if (o.syncIntervalMs !== undefined && !(Number.isInteger(o.syncIntervalMs) && o.syncIntervalMs >= 1 && o.syncIntervalMs <= MAX_SYNC_INTERVAL_MS)) {
    bad(`syncIntervalMs must be an integer in 1..${MAX_SYNC_INTERVAL_MS}`);
  }
}

/** Opens every partition for writing; on a failure, closes those already opened. */
async function openWriters(
  options: LocalHubOptions,
  log: HubLog,
  stats: LocalHubStats,
  appends: AppendNotifier,
  afterCrash: number[],
  reservations: Reservations | undefined,
): Promise<PartitionWriter[]> {
  // No record may take an offset a consumer has already checkpointed, or may have read before an
  // OS crash took it back (see `minNextOffset`).
  const checkpointed = await maxCheckpoints(options.dir, options.partitions, log);
  const opened = await Promise.allSettled(
    Array.from({ length: options.partitions }, (_, partition) =>
      PartitionWriter.open({
        dir: partitionDir(options.dir, partition),
        partition,
        segmentBytes: options.segmentBytes ?? DEFAULT_SEGMENT_BYTES,
        log,
        stats,
        onAppend: (p, next) => appends.notify(p, next),
        minNextOffset: Math.max((checkpointed[partition] ?? -1) + 1, afterCrash[partition] ?? 0),
        ...(options.syncIntervalMs === undefined ? {} : { syncIntervalMs: options.syncIntervalMs }),
        ...(reservations === undefined ? {} : { reserve: (p: number, need: number) => reservations.reserve(p, need) }),
      }),
    ),
  );
  const writers = opened.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  const failure = opened.find((r) => r.status === 'rejected');
  if (failure === undefined) return writers;
  await Promise.all(writers.map((w) => w.close().catch(() => {})));
  throw failure.reason;
}
