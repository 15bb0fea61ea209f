import type { ConsumerHandlers, HubConsumer, HubRecord, PartitionBatch } from '../hub/hub.ts';
import type { Logger } from '../lib/log.ts';
import { abortableSleep } from '../lib/within.ts';
import { PROCESSOR_SITE_REFRESH_MS } from '../schemas/config.ts';
import { StoreError, type Store } from '../store/store.ts';
import { deadLetterRow, sanitizedDeadLetter, type DeadLetterRow } from './dead-letters.ts';
import {
  createPartitionState,
  defaultStateLimits,
  processRange,
  type PartitionState,
  type Registration,
  type StateLimits,
  type UnstorableReason,
} from './partition-state.ts';
import type { ProcessorMetrics } from './processor-metrics.ts';
import type { SaltDayCloser } from './salt-days.ts';
import type { SiteEpochs } from './site-epochs.ts';
import { decodeSnapshot, encodeSnapshotInSlices } from './snapshot.ts';
import { flushRange, StateStoreFencedError, type FlushRange, type LoggedRegistration, type StateStore } from './state-store.ts';

/**
 * The processor's core: buffers each partition's records, writes them to ClickHouse in
 * micro-batches whose offset ranges are logged before they are written, and snapshots the
 * partition state before checkpointing the hub.
 *
 * Why counts stay exact across a crash at any moment:
 *  - a range's intent (`from to`, and the deleted site registrations it dropped, below) is
 *    fsynced before its rows are inserted, and its rows are a deterministic function of (snapshot
 *    state, records, intent), inserted with a dedup token derived from the range;
 *  - a restart loads the snapshot (state after offset S), then re-flushes every logged range
 *    after S with exactly its logged boundaries: ClickHouse drops the ones it already has by token,
 *    and the replayed rows are byte-identical, so session −1 rows cancel what was written;
 *  - the hub checkpoint only moves to a snapshot's offset after that snapshot is durable.
 *
 * One record never blocks a partition. A record ClickHouse would refuse (a lone surrogate, a time
 * it cannot hold) is set aside before it touches the state, and goes to `dead_letters`. Should
 * ClickHouse refuse rows of an insert anyway (`StoreError.refusedData`: a value it cannot parse,
 * a constraint), the batch is split to find them: its rows are keyed by record offset (session
 * rows by the offset that first touched the session in the range, and by sign), the key interval
 * of the range is halved and each half inserted with the range's token plus its interval, down to
 * single rows, which go to `dead_letters` (one insert per range, its own token). The halves depend
 * only on the range and the keys, and ClickHouse's verdict only on a half's rows, so a replay
 * splits the same way and ClickHouse drops the halves it already has: a crash during a split
 * neither loses nor doubles a good row, nor a dead letter. (This assumes ClickHouse's verdict on
 * a row does not change between the crash and the replay, as an upgrade that starts accepting it
 * could.) A refused session row stays out together with its −1 twin, which has the same content,
 * so the collapsing sessions stay consistent: a session is missing while its latest state is
 * refused, never counted negative. Errors of the statement or the connection are retried forever,
 * as before.
 *
 * Events of a deleted site registration (their `epoch`) are dropped, and events a collector
 * stamped with a registration replaced a moment before are moved to the new one (see
 * `resolveEpoch`): by the state alone when the partition holds a session of a newer registration,
 * else by what `SiteEpochs` loaded from the sites table. What was loaded changes over time, so
 * the registrations that decided something in a range are logged with its intent, and a replay
 * decides with exactly those. The intent is therefore logged after the rows are computed (only the
 * state in memory has moved then), and still before anything is inserted.
 */

/** Tuning of the processor; every field has a default. */
export interface ProcessorOptions {
  /** Flush once this many records are buffered (10,000). */
  flushRecords: number;
  /** Flush once the first buffered record has waited this long (1 s). */
  flushIntervalMs: number;
  /** Above this many buffered records `processBatch` waits for a flush: backpressure (50,000). */
  maxBufferedRecords: number;
  /** How often each partition's state is snapshotted and the hub checkpointed (10 s). */
  snapshotIntervalMs: number;
  /** First delay before a failed insert is retried; doubles up to `retryMaxMs` (100 ms). */
  retryInitialMs: number;
  retryMaxMs: number;
  /** Records the hub hands over per batch (5,000). */
  hubBatchSize: number;
  /** How long the hub waits to fill a batch (50 ms). */
  hubMaxWaitMs: number;
  /** How often the hub's end offsets are read for the lag gauges (1 s). */
  lagRefreshMs: number;
  /** How often the site registrations are read, to drop events of deleted ones (2 s). */
  siteRefreshMs: number;
  /** How often closed salt days are checked and their unique visitors computed (60 s). */
  closeIntervalMs: number;
  /** How many days back that periodic check looks (35); the first check after a start looks at all. */
  closeLookbackDays: number;
  /** How often today's and yesterday's salt days get provisional segments (300 s; 0: never). */
  provisionalIntervalMs: number;
  /** Sessionization and dedup bounds. */
  limits: StateLimits;
}

export const defaultProcessorOptions: ProcessorOptions = {
  flushRecords: 10_000,
  flushIntervalMs: 1_000,
  maxBufferedRecords: 50_000,
  snapshotIntervalMs: 10_000,
  retryInitialMs: 100,
  retryMaxMs: 30_000,
  hubBatchSize: 5_000,
  hubMaxWaitMs: 50,
  lagRefreshMs: 1_000,
  siteRefreshMs: PROCESSOR_SITE_REFRESH_MS,
  closeIntervalMs: 60_000,
  provisionalIntervalMs: 300_000,
  closeLookbackDays: 35,
  limits: defaultStateLimits,
};

/** Ingestion lag of one partition. */
export interface PartitionLag {
  partition: number;
  /** Records in the hub not yet written to ClickHouse. */
  events: number;
  /** Age of the oldest record held but not yet written (0 when none). */
  seconds: number;
  /** Last offset written to ClickHouse (-1 before the first). */
  flushedOffset: number;
  /** Offset the hub will give its next record. */
  endOffset: number;
}

/** What the processor needs; see `startProcessor` in `main.ts`. */
export interface ProcessorDeps {
  consumer: HubConsumer;
  store: Store;
  stateStore: StateStore;
  log: Logger;
  metrics: ProcessorMetrics;
  options: ProcessorOptions;
  /** The sites' latest registrations (events of deleted ones are dropped); without it, none are known. */
  siteEpochs?: Pick<SiteEpochs, 'latest'>;
  /** Told the rows each range wrote, to recompute closed salt days that got late rows. */
  closer?: Pick<SaltDayCloser, 'wrote'>;
}

/** Thrown when the durable state contradicts the hub: continuing would lose or double events. */
export class ProcessorStateError extends Error {
  override readonly name = 'ProcessorStateError';
}

/**
 * A write given up by {@link Processor.abandon}: its range is neither counted as flushed nor
 * checkpointed, so the hub keeps its records for the next owner (which replays the logged range
 * with the same boundaries and dedup token: nothing lost, nothing counted twice).
 */
export class DrainAbandonedError extends Error {
  override readonly name = 'DrainAbandonedError';
}

/** The hub handlers of a processor, with one worker per owned partition. */
export class Processor implements ConsumerHandlers {
  private readonly workers = new Map<number, PartitionWorker>();
  private abandoned: DrainAbandonedError | undefined;

  constructor(private readonly deps: ProcessorDeps) {}

  async partitionOpened(partition: number, startOffset: number): Promise<void> {
    await this.workers.get(partition)?.close();
    const worker = await PartitionWorker.open(this.deps, partition, startOffset);
    if (this.abandoned !== undefined) worker.abandon(this.abandoned);
    this.workers.set(partition, worker);
  }

  /**
   * Stops retrying writes, for a drain past its bound (ClickHouse unreachable): every partition's
   * pending and later writes fail at once, and a partition that failed neither snapshots nor
   * checkpoints. Closing then finishes promptly; what was not written stays in the hub.
   */
  abandon(reason: string): void {
    this.abandoned ??= new DrainAbandonedError(reason);
    for (const w of this.workers.values()) w.abandon(this.abandoned);
  }

  processBatch(batch: PartitionBatch): Promise<void> {
    const worker = this.workers.get(batch.partition);
    if (worker === undefined) return Promise.reject(new Error(`partition ${batch.partition} is not open`));
    return worker.accept(batch.records);
  }

  async partitionClosed(partition: number): Promise<void> {
    const worker = this.workers.get(partition);
    if (worker === undefined) return;
    try {
      await worker.close();
    } finally {
      this.workers.delete(partition);
    }
  }

  /** Lag of every owned partition, after reading the hub's end offsets. */
  async lag(now: number = Date.now()): Promise<PartitionLag[]> {
    const workers = [...this.workers.values()];
    await Promise.all(workers.map((w) => w.refreshEndOffset()));
    return workers.map((w) => w.lag(now)).sort((a, b) => a.partition - b.partition);
  }

  /**
   * Quiets every owned partition at a range boundary, for a consistent copy of the store (`farol
   * backup`): each one writes what it had buffered, then writes nothing more until `released`
   * resolves (records keep arriving in its buffer meanwhile). Resolves with the offset each
   * partition has written up to, once all are quiet. A partition opened after the call is not
   * held (the local hub opens them all at start).
   */
  async hold(released: Promise<void>): Promise<Map<number, number>> {
    const held = await Promise.all([...this.workers].map(async ([p, w]) => [p, await w.hold(released)] as const));
    return new Map(held);
  }

  /** Resolves once every write each partition had started or queued has ended (written or failed). */
  async settled(): Promise<void> {
    await Promise.all([...this.workers.values()].map((w) => w.settled()));
  }

  /** Reads end offsets for the gauges, without throwing. */
  async refreshEndOffsets(): Promise<void> {
    await Promise.all([...this.workers.values()].map((w) => w.refreshEndOffset().catch(() => {})));
  }

  /** Sets the lag gauges from what is known now (synchronous: called while rendering). */
  setLagGauges(now: number = Date.now()): void {
    for (const w of this.workers.values()) {
      const lag = w.lag(now);
      const labels = { partition: String(lag.partition) };
      this.deps.metrics.lagEvents.set(lag.events, labels);
      this.deps.metrics.lagSeconds.set(lag.seconds, labels);
    }
  }
}

/** A row ClickHouse refused, by its index in the batch, with the error. */
interface Refused {
  index: number;
  error: StoreError;
}

/** The rows of one table for one range, each with its key (increasing), and the key interval. */
interface KeyedRows<R> {
  table: string;
  rows: readonly R[];
  keys: readonly number[];
  /** Keys of every row the range could produce, both ends included: the root of the split. */
  lo: number;
  hi: number;
  token: string;
}

/** A range taken from the buffer, about to be written. */
interface PendingFlush extends FlushRange {
  records: HubRecord[];
  /** Logged before the crash: write again with the same boundaries, without logging. */
  replayed: boolean;
}

/** A range whose rows are computed and whose intent is logged: what is left is inserting them. */
interface PreparedFlush {
  p: PendingFlush;
  out: ReturnType<typeof processRange>;
  /** `performance.now()` when its rows began to be computed. */
  started: number;
}

/** One partition: its buffer, state, flush log replay, timers, and the order of its writes. */
class PartitionWorker {
  private readonly buffer: HubRecord[] = [];
  /** Runs while records wait: set when the first of them arrives, for the time-based flush. */
  private flushTimer: NodeJS.Timeout | undefined;
  private timerExpired = false;
  private readonly snapshotTimer: NodeJS.Timeout;
  /** `appendedAt` of the first record of the flush being written, for the lag. */
  /** When the oldest record of each range taken but not yet written was appended, oldest first. */
  private readonly inFlight: number[] = [];
  /** Flushes and snapshots run one at a time, in order: a snapshot never sees half a flush. */
  private chain: Promise<void> = Promise.resolve();
  private flushQueued = false;
  /** Set while a write waits with no next range due: called when one becomes due. */
  private dueWaiter: (() => void) | undefined;
  private snapshotQueued = false;
  private failure: Error | undefined;
  private closed = false;
  private endOffset: number;
  /** Set by `abandon`: retries stop, and their sleeps are cut short. */
  private abandoned: DrainAbandonedError | undefined;
  private readonly wake = new AbortController();

  private constructor(
    private readonly deps: ProcessorDeps,
    private readonly partition: number,
    private readonly state: PartitionState,
    /** Last offset written to ClickHouse (and applied to `state`). */
    private flushed: number,
    /** Offset the saved snapshot covers. */
    private snapshotted: number,
    /** Offset the hub has checkpointed. */
    private checkpointed: number,
    /** Next offset expected from the hub. */
    private nextOffset: number,
    /** Logged ranges still to write again, oldest first. */
    private readonly replay: FlushRange[],
  ) {
    this.endOffset = nextOffset;
    this.snapshotTimer = setInterval(() => this.requestSnapshot(), deps.options.snapshotIntervalMs);
    this.snapshotTimer.unref();
  }

  /**
   * Loads the snapshot and flush log of `partition`. The snapshot may be ahead of the hub's
   * checkpoint (a crash between the two), never behind it: that would mean state was lost.
   */
  static async open(deps: ProcessorDeps, partition: number, startOffset: number): Promise<PartitionWorker> {
    const { stateStore, options, log } = deps;
    const checkpoint = startOffset - 1;
    // Before anything is read: a previous owner elsewhere may still be writing this partition.
    await stateStore.acquire?.(partition);
    const bytes = await stateStore.loadSnapshot(partition);
    const snapshot = bytes === undefined ? undefined : decodeSnapshot(bytes, options.limits);
    if (snapshot !== undefined && snapshot.partition !== partition) {
      throw new ProcessorStateError(`snapshot of partition ${snapshot.partition} found in the place of partition ${partition}`);
    }
    const covered = snapshot?.offset ?? -1;
    if (covered < checkpoint) {
      throw new ProcessorStateError(
        `partition ${partition}: the hub checkpoint is at offset ${checkpoint} but the processor state only covers ` +
          `${covered}; the processor state directory was lost or belongs to another hub. Refusing to guess.`,
      );
    }
    if (covered > checkpoint && covered >= (await deps.consumer.endOffset(partition))) {
      throw new ProcessorStateError(
        `partition ${partition}: the processor state covers offset ${covered}, beyond the end of the hub; ` +
          'it belongs to another (older) hub. Refusing to skip records.',
      );
    }
    const replay = pendingRanges(await stateStore.readIntents(partition), covered, partition);
    log.info({ partition, startOffset, snapshotOffset: covered, replayRanges: replay.length }, 'partition opened');
    const state = snapshot?.state ?? createPartitionState(options.limits);
    const worker = new PartitionWorker(deps, partition, state, covered, covered, checkpoint, covered + 1, replay);
    // The lag gauges must show the real backlog from the start, not the snapshot's end; if the hub
    // cannot answer now, the periodic refresh catches up.
    await worker.refreshEndOffset().catch(() => undefined);
    return worker;
  }

  /** Buffers records; waits only when the buffer is over its bound (backpressure). */
  async accept(records: readonly HubRecord[]): Promise<void> {
    if (this.failure !== undefined) throw this.failure;
    for (const r of records) {
      // Re-delivered (a retried batch) or already covered by the snapshot.
      if (r.offset < this.nextOffset) continue;
      if (r.offset > this.nextOffset) {
        this.deps.log.warn({ partition: this.partition, expected: this.nextOffset, got: r.offset }, 'gap in hub offsets');
      }
      this.buffer.push(r);
      this.nextOffset = r.offset + 1;
    }
    if (this.nextOffset > this.endOffset) this.endOffset = this.nextOffset;
    if (this.buffer.length > 0 && this.flushTimer === undefined && !this.timerExpired) this.startFlushTimer();
    if (this.isDue(false)) {
      this.dueWaiter?.();
      this.requestFlush();
    }
    while (this.buffer.length >= this.deps.options.maxBufferedRecords && this.isDue(false) && this.failure === undefined) {
      this.requestFlush();
      await this.chain;
    }
  }

  /** Stops timers, writes what can be written, snapshots and checkpoints. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.snapshotTimer);
    clearTimeout(this.flushTimer);
    if (this.failure !== undefined) return;
    try {
      await this.exclusive(async () => {
        await this.flushDue(true);
        await this.snapshot();
      });
    } catch (err) {
      // Taken over, or the drain gave up: the next owner carries on from the durable state.
      if (!(err instanceof StateStoreFencedError || err instanceof DrainAbandonedError)) throw err;
      this.fail(err);
    }
  }

  /** See {@link Processor.abandon}. */
  abandon(err: DrainAbandonedError): void {
    this.abandoned ??= err;
    this.wake.abort();
  }

  /** See {@link Processor.hold}. */
  hold(released: Promise<void>): Promise<number> {
    return new Promise((resolve, reject) => {
      this.exclusive(async () => {
        // What arrived before the hold is written first; records arriving meanwhile are not
        // chased (under load that would never end). A failed partition writes nothing more.
        const target = this.buffer.at(-1)?.offset ?? this.flushed;
        let taken = this.flushed;
        await this.flushEach(() => {
          if (this.failure !== undefined || taken >= target) return undefined;
          const p = this.take(true);
          if (p !== undefined) taken = p.to;
          return p;
        });
        resolve(this.flushed);
        await released;
      }).catch((err: unknown) => {
        this.fail(err);
        reject(err instanceof Error ? err : new Error(String(err)));
      });
    });
  }

  /** See {@link Processor.settled}. */
  settled(): Promise<void> {
    return this.chain;
  }

  async refreshEndOffset(): Promise<void> {
    const end = await this.deps.consumer.endOffset(this.partition);
    if (end > this.endOffset) this.endOffset = end;
  }

  lag(now: number): PartitionLag {
    const oldest = this.inFlight[0] ?? this.buffer[0]?.appendedAt;
    return {
      partition: this.partition,
      events: Math.max(0, this.endOffset - this.flushed - 1),
      seconds: oldest === undefined ? 0 : Math.max(0, (now - oldest) / 1000),
      flushedOffset: this.flushed,
      endOffset: this.endOffset,
    };
  }

  /** Runs `task` after every earlier flush and snapshot of this partition. */
  private exclusive(task: () => Promise<void>): Promise<void> {
    const run = this.chain.then(task);
    this.chain = run.catch(() => {});
    return run;
  }

  private requestFlush(): void {
    if (this.flushQueued) return;
    this.flushQueued = true;
    this.exclusive(async () => {
      this.flushQueued = false;
      await this.flushDue(false);
    }).catch((err: unknown) => this.fail(err));
  }

  private requestSnapshot(): void {
    if (this.snapshotQueued || this.closed) return;
    this.snapshotQueued = true;
    this.exclusive(async () => {
      this.snapshotQueued = false;
      await this.snapshot();
    }).catch((err: unknown) => {
      if (err instanceof StateStoreFencedError) {
        this.fail(err);
        return;
      }
      // Harmless: the previous snapshot and the flush log still cover everything; the next
      // interval tries again.
      this.deps.log.error({ err, partition: this.partition }, 'processor snapshot failed');
    });
  }

  /** A bug or corrupt state: stop this partition loudly rather than write wrong counts. */
  private fail(err: unknown): void {
    if (this.failure !== undefined) return;
    this.failure = err instanceof Error ? err : new Error(String(err));
    if (err instanceof StateStoreFencedError) {
      this.deps.log.info({ partition: this.partition }, 'partition taken over by another processor; this one stops writing it');
      return;
    }
    if (err instanceof DrainAbandonedError) {
      this.deps.log.warn(
        { partition: this.partition, flushedOffset: this.flushed, checkpointedOffset: this.checkpointed, reason: err.message },
        'drain gave up writing the partition; not checkpointed past what was written, the hub keeps the rest for the next owner',
      );
      return;
    }
    this.deps.log.error({ err, partition: this.partition }, 'processor partition failed; it stops here');
  }

  /** Whether a flush can be taken now: a complete replay range, or a full or old enough buffer. */
  private isDue(force: boolean): boolean {
    const last = this.buffer.at(-1);
    if (last === undefined) return false;
    const next = this.replay[0];
    if (next !== undefined) return last.offset >= next.to;
    return force || this.timerExpired || this.buffer.length >= this.deps.options.flushRecords;
  }

  private async flushDue(force: boolean): Promise<void> {
    await this.flushEach(() => this.take(force));
  }

  /**
   * Writes the ranges `next` hands out until it has none, in order, one at a time; the next
   * range's rows are computed and its intent logged while the previous one's rows are inserted:
   * done one after the other, a partition's JavaScript work and its intent's fdatasync (which
   * waited up to seconds while chDB held every libuv thread, see store/chdb-store.ts) left the
   * engine idle (`npm run bench -- processor`, stop 15: ~40% of a flush). Safe because a replay after a crash re-flushes every
   * logged range from the snapshot (a logged range whose rows were never inserted is just
   * inserted then), and `flushed` (what a snapshot covers) still advances only when a range's
   * rows are all in; the snapshot runs in the same chain, so never between the two.
   */
  private async flushEach(next: () => PendingFlush | undefined): Promise<void> {
    const first = next();
    if (first === undefined) return;
    let prepared = await this.prepare(first);
    for (;;) {
      const writing = this.write(prepared);
      // Awaited below in every path; until then a rejection must not count as unhandled.
      writing.catch(() => {});
      let following = next();
      if (following === undefined) {
        // Nothing due yet: the next range is prepared as soon as one is (records keep arriving
        // during the insert), or taken normally once the write ended.
        const due = new Promise<void>((resolve) => (this.dueWaiter = resolve));
        await Promise.race([writing.then(noop, noop), due]);
        this.dueWaiter = undefined;
        following = next();
        if (following === undefined) return writing;
      }
      let preparedNext: PreparedFlush;
      try {
        preparedNext = await this.prepare(following);
      } finally {
        // A failure to prepare surfaces after the write in flight settles (its own failure first).
        await writing;
      }
      prepared = preparedNext;
    }
  }

  /** One range, written completely (its rows computed, intent logged, rows inserted). */
  private async flush(p: PendingFlush): Promise<void> {
    await this.write(await this.prepare(p));
  }

  /** Takes the next range off the buffer: a logged range to replay exactly, or what is due. */
  private take(force: boolean): PendingFlush | undefined {
    if (!this.isDue(force)) return undefined;
    const next = this.replay[0];
    const count = next === undefined ? Math.min(this.buffer.length, this.deps.options.maxBufferedRecords) : this.replayCount(next);
    const records = count === this.buffer.length ? this.buffer.splice(0) : this.buffer.splice(0, count);
    const first = records[0];
    const last = records.at(-1);
    if (first === undefined || last === undefined) return undefined;
    if (next !== undefined) this.replay.shift();
    // The records left behind start a new wait.
    this.timerExpired = false;
    clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    if (this.buffer.length > 0) this.startFlushTimer();
    if (next === undefined) return { from: first.offset, to: last.offset, records, replayed: false };
    return { ...flushRange(first.offset, last.offset, next.registrations), records, replayed: true };
  }

  /** Buffered records making up the logged range `r`, which must start the buffer. */
  private replayCount(r: FlushRange): number {
    const first = this.buffer[0]?.offset;
    if (first !== r.from) {
      throw new ProcessorStateError(`partition ${this.partition}: logged range ${r.from}-${r.to} but the next record is ${first}`);
    }
    let count = 0;
    while ((this.buffer[count]?.offset ?? Infinity) <= r.to) count++;
    return count;
  }

  private startFlushTimer(): void {
    if (this.flushTimer !== undefined || this.closed) return;
    this.flushTimer = setTimeout(() => {
      this.flushTimer = undefined;
      this.timerExpired = true;
      this.dueWaiter?.();
      this.requestFlush();
    }, this.deps.options.flushIntervalMs);
    this.flushTimer.unref();
  }

  /**
   * The first half of writing one range: its rows computed (`state` advanced in place), then the
   * intent logged (fsynced) with the deleted registrations it dropped.
   */
  private async prepare(p: PendingFlush): Promise<PreparedFlush> {
    const started = performance.now();
    this.inFlight.push(p.records[0]?.appendedAt ?? Date.now());
    const { registration, used } = this.registrations(p);
    const out = processRange(this.state, p.records, { registration });
    if (!p.replayed) {
      const registrations = [...used.values()];
      await this.retrying('flush log append', () => this.deps.stateStore.appendIntent(this.partition, p.from, p.to, registrations));
    }
    return { p, out, started };
  }

  /**
   * The second half: the rows of both tables with tokens derived from the range, then the dead
   * letters. Retries forever what retrying can cure; splits what ClickHouse refuses (see the top
   * of this file). Only after all of it is the range counted as flushed. A failed insert is
   * retried with the same rows, never recomputed.
   */
  private async write({ p, out, started }: PreparedFlush): Promise<void> {
    const token = `${this.deps.stateStore.incarnation}:p${this.partition}:${p.from}-${p.to}`;
    const width = p.to - p.from + 1;
    // Independent inserts, each retried on its own; the range counts only once both landed.
    const [refusedEvents, refusedSessions] = await Promise.all([
      this.insertSplitting({
        table: 'events',
        rows: out.events,
        keys: out.eventOffsets.map((o) => o - p.from),
        lo: 0,
        hi: width - 1,
        token: `${token}:events`,
      }),
      this.insertSplitting({
        table: 'sessions',
        rows: out.sessions,
        keys: out.sessions.map((r, i) => 2 * ((out.sessionOffsets[i] as number) - p.from) + (r.sign > 0 ? 1 : 0)),
        lo: 0,
        hi: 2 * width - 1,
        token: `${token}:sessions`,
      }),
    ]);
    // Keyed like the rows they stand for, in one key space: a record is either set aside or an
    // events row (4k), a session's −1 and +1 rows follow (4k + 2, 4k + 3).
    const dead: Array<{ key: number; row: DeadLetterRow }> = [];
    const letter = (key: number, d: { site: string; offset: number; table: string; reason: string; error: string; payload: Buffer | string }): void => {
      dead.push({ key, row: deadLetterRow({ ...d, partition: this.partition }) });
    };
    for (const u of out.unstorable) {
      letter(4 * (u.offset - p.from), { ...u, table: 'events', error: unstorableText[u.reason] });
    }
    if (refusedEvents.length > 0) {
      const payloads = new Map(p.records.map((r) => [r.offset, r.payload]));
      for (const { index, error } of refusedEvents) {
        const row = out.events[index];
        const offset = out.eventOffsets[index];
        if (row === undefined || offset === undefined) continue;
        const payload = payloads.get(offset) ?? JSON.stringify(row);
        letter(4 * (offset - p.from), { site: row.site, offset, table: 'events', reason: refusalReason(error), error: error.message, payload });
      }
    }
    for (const { index, error } of refusedSessions) {
      const row = out.sessions[index];
      const offset = out.sessionOffsets[index];
      if (row === undefined || offset === undefined) continue;
      const key = 4 * (offset - p.from) + 2 + (row.sign > 0 ? 1 : 0);
      letter(key, { site: row.site, offset, table: 'sessions', reason: refusalReason(error), error: error.message, payload: JSON.stringify(row) });
    }
    dead.sort((a, b) => a.key - b.key);
    await this.writeDeadLetters(dead, 4 * width - 1, `${token}:dead_letters`);
    this.deps.closer?.wrote(out.events);
    this.deps.closer?.wrote(out.sessions);
    this.flushed = p.to;
    this.inFlight.shift();
    const m = this.deps.metrics;
    m.flushes.inc();
    m.rows.inc({ table: 'events' }, out.events.length - refusedEvents.length);
    m.rows.inc({ table: 'sessions' }, out.sessions.length - refusedSessions.length);
    if (out.duplicates > 0) m.duplicates.inc(undefined, out.duplicates);
    if (out.invalid > 0) {
      m.dropped.inc({ reason: 'invalid' }, out.invalid);
      this.deps.log.warn({ partition: this.partition, from: p.from, to: p.to, invalid: out.invalid }, 'dropped unreadable hub records');
    }
    if (out.deletedSite > 0) {
      m.dropped.inc({ reason: 'deleted_site' }, out.deletedSite);
      this.deps.log.info({ partition: this.partition, from: p.from, to: p.to, dropped: out.deletedSite }, 'dropped events of deleted site registrations');
    }
    if (dead.length > 0) {
      const reasons: Record<string, number> = {};
      for (const { row } of dead) {
        m.deadLetters.inc({ table: row.target_table, reason: row.reason });
        const k = `${row.target_table}:${row.reason}`;
        reasons[k] = (reasons[k] ?? 0) + 1;
      }
      // Counts only: a dead letter's payload and ClickHouse's message (which quotes rows) stay in the table.
      this.deps.log.warn({ partition: this.partition, from: p.from, to: p.to, deadLetters: dead.length, reasons }, 'records set aside in dead_letters');
    }
    m.flushSeconds.observe((performance.now() - started) / 1000);
    this.deps.log.debug(
      { partition: this.partition, from: p.from, to: p.to, events: out.events.length, sessions: out.sessions.length, replayed: p.replayed },
      'flushed',
    );
  }

  /**
   * The site registrations `p` decides its events with: for a replayed range exactly those its
   * intent logged (none for the other sites); for a new one, those known now, of which the ones
   * that can decide something (a deleted registration, a newer one) are collected in `used`.
   */
  private registrations(p: PendingFlush): {
    registration: (site: string, epoch: number) => Registration | undefined;
    used: Map<string, LoggedRegistration>;
  } {
    const used = new Map<string, LoggedRegistration>();
    if (p.replayed) {
      const logged = new Map((p.registrations ?? []).map(([site, epoch, deleted]) => [site, { epoch, deleted }]));
      return { registration: (site) => logged.get(site), used };
    }
    const known = this.deps.siteEpochs;
    if (known === undefined) return { registration: () => undefined, used };
    return {
      registration: (site, epoch) => {
        const r = known.latest(site, epoch);
        if (r !== undefined && epoch <= r.epoch && (r.deleted || epoch < r.epoch)) used.set(site, [site, r.epoch, r.deleted]);
        return r;
      },
      used,
    };
  }

  private insert(table: string, rows: readonly Record<string, unknown>[], dedupToken: string): Promise<void> {
    if (rows.length === 0) return Promise.resolve();
    return this.retrying(`insert into ${table}`, () => this.deps.store.insert(table, rows, { dedupToken }), () =>
      this.deps.metrics.storeRetries.inc(),
    );
  }

  /**
   * Inserts the rows under `b.token`; when ClickHouse refuses rows of the batch, inserts each half
   * of the key interval (token + `:lo-hi`) in turn, down to single rows, and returns those it
   * refused. Retryable failures are retried at every level.
   */
  private async insertSplitting<R extends Record<string, unknown>>(b: KeyedRows<R>): Promise<Refused[]> {
    const refused: Refused[] = [];
    await this.insertInterval(b, 0, b.rows.length, b.lo, b.hi, true, refused);
    return refused;
  }

  /** Rows `[i, j)` of `b`, whose keys lie in `[lo, hi]`. */
  private async insertInterval<R extends Record<string, unknown>>(
    b: KeyedRows<R>,
    i: number,
    j: number,
    lo: number,
    hi: number,
    root: boolean,
    refused: Refused[],
  ): Promise<void> {
    if (i >= j) return;
    const rows = i === 0 && j === b.rows.length ? b.rows : b.rows.slice(i, j);
    const token = root ? b.token : `${b.token}:${lo}-${hi}`;
    // Keys are distinct, so several rows mean a splittable interval. A single row gets a second
    // try before it counts as refused: a fluke (a body cut short by a server going down parses as
    // bad data) must not set a good row aside.
    const single = j - i === 1;
    let refusal: StoreError | undefined;
    for (let attempt = 0; attempt < (single ? 2 : 1); attempt++) {
      try {
        await this.insert(b.table, rows, token);
        return;
      } catch (err) {
        if (!(err instanceof StoreError && err.refusedData)) throw err;
        refusal = err;
      }
    }
    if (single && refusal !== undefined) {
      refused.push({ index: i, error: refusal });
      return;
    }
    const mid = Math.floor((lo + hi) / 2);
    let k = i;
    while (k < j && (b.keys[k] as number) <= mid) k++;
    await this.insertInterval(b, i, k, lo, mid, false, refused);
    await this.insertInterval(b, k, j, mid + 1, hi, false, refused);
  }

  /**
   * Writes the range's dead letters (split like any rows if ClickHouse refuses some); one refused
   * on its own is tried once more reduced to ASCII, then only counted and logged.
   */
  private async writeDeadLetters(dead: ReadonlyArray<{ key: number; row: DeadLetterRow }>, hi: number, token: string): Promise<void> {
    if (dead.length === 0) return;
    const rows = dead.map((d) => d.row);
    const refused = await this.insertSplitting({ table: 'dead_letters', rows, keys: dead.map((d) => d.key), lo: 0, hi, token });
    for (const { index, error } of refused) {
      const d = dead[index];
      if (d === undefined) continue;
      try {
        await this.insert('dead_letters', [sanitizedDeadLetter(d.row)], `${token}:${d.key}:sanitized`);
      } catch (err) {
        if (!(err instanceof StoreError && err.refusedData)) throw err;
        this.deps.log.error(
          { partition: this.partition, offset: d.row.hub_offset, reason: d.row.reason, code: error.code },
          'ClickHouse refused a dead letter even reduced to ASCII; it is only counted',
        );
      }
    }
  }

  /**
   * Runs `fn` until it succeeds, backing off exponentially: nothing is ever dropped. Only
   * `abandon` (a drain past its bound) ends the retries, with {@link DrainAbandonedError}.
   */
  private async retrying(what: string, fn: () => Promise<void>, onFailure: () => void = () => {}): Promise<void> {
    const { retryInitialMs, retryMaxMs } = this.deps.options;
    for (let attempt = 1; ; attempt++) {
      if (this.abandoned !== undefined) throw this.abandoned;
      const delayMs = Math.min(retryInitialMs * 2 ** (attempt - 1), retryMaxMs);
      try {
        await fn();
        return;
      } catch (err) {
        // Another processor owns the partition now: retrying cannot succeed, and must not.
        if (err instanceof StateStoreFencedError) throw err;
        // The rows themselves are refused: the caller splits the batch (see insertSplitting).
        if (err instanceof StoreError && err.refusedData) throw err;
        if (this.abandoned !== undefined) throw this.abandoned;
        onFailure();
        // A statement ClickHouse rejects will likely fail again: that is a bug to see at once.
        const fatal = err instanceof StoreError && !err.retryable;
        const fields = { err, partition: this.partition, attempt, delayMs };
        if (fatal) this.deps.log.error(fields, `${what} failed; retrying`);
        else this.deps.log.warn(fields, `${what} failed; retrying`);
      }
      await abortableSleep(delayMs, this.wake.signal);
    }
  }

  /**
   * Saves the state as of the last flush, then checkpoints the hub there, then forgets the logged
   * ranges it covers. In this order: the checkpoint never passes a durable snapshot.
   */
  private async snapshot(): Promise<void> {
    // After a failure the state may hold half a range: the last good snapshot must stay.
    if (this.failure !== undefined) return;
    const covered = this.flushed;
    if (covered > this.snapshotted) {
      const bytes = await encodeSnapshotInSlices(this.partition, covered, this.state);
      await this.deps.stateStore.saveSnapshot(this.partition, bytes);
      this.snapshotted = covered;
    }
    if (this.snapshotted > this.checkpointed) {
      await this.deps.consumer.checkpoint(this.partition, this.snapshotted);
      this.checkpointed = this.snapshotted;
      await this.deps.stateStore.truncateIntents(this.partition, this.snapshotted);
    }
  }
}

/**
 * The logged ranges after the snapshot's offset, checked to follow each other: they are replayed
 * with exactly these boundaries, so a gap or an overlap means the log is not what was written.
 */
function pendingRanges(logged: FlushRange[], covered: number, partition: number): FlushRange[] {
  const pending = logged.filter((r) => r.to > covered);
  let next = covered + 1;
  for (const r of pending) {
    if (r.from < next) {
      throw new ProcessorStateError(`partition ${partition}: logged range ${r.from}-${r.to} overlaps offsets up to ${next - 1}`);
    }
    next = r.to + 1;
  }
  return pending;
}


function noop(): void {}

/** The `error` text of a dead letter the processor set aside itself. */
const unstorableText: Record<UnstorableReason, string> = {
  malformed_unicode: 'a string is not well-formed Unicode (a lone surrogate): ClickHouse cannot parse it',
  bad_timestamp: 'the time is past the year 9999: ClickHouse cannot hold it',
};

/** The dead-letter reason of a refusal: ClickHouse's error name (a fixed set: see `isRefusedDataError`). */
function refusalReason(err: StoreError): string {
  return err.type ?? (err.code === undefined ? 'refused' : `code_${err.code}`);
}
