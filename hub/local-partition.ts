import { constants as fsConstants } from 'node:fs';
import { mkdir, open, stat, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { isErrnoException, type HubLog, type LocalHubStats } from './local-common.ts';
import { encodeFrames, HEADER_BYTES, segmentFileName, wholeFramesWithin } from './local-format.ts';
import { fsyncDir, listSegments, scanSegment, type SegmentFile } from './local-segment.ts';
import { PRIVATE_DIR_MODE, PRIVATE_FILE_MODE } from '../lib/private-dir.ts';

/** One `publish` call waiting for all of its records to be durable, across partitions. */
export interface PublishWaiter {
  /** Records not yet settled. */
  remaining: number;
  error: Error | undefined;
  resolve(): void;
  reject(err: Error): void;
}

export interface PartitionWriterOptions {
  /** The partition's directory (`<hub>/p-<n>`). */
  dir: string;
  partition: number;
  segmentBytes: number;
  log: HubLog;
  stats: LocalHubStats;
  /**
   * Called when records become readable, to wake readers in this process: in `always` mode once
   * they are written (durable with O_DSYNC, else just before their fsync), in interval mode once
   * they are fdatasynced, so that no consumer ever sees a record an OS crash could take back.
   */
  onAppend(partition: number, nextOffset: number): void;
  /**
   * Unset (`FAROL_HUB_SYNC=always`): a group's publishes settle once it is durable. Set: they
   * settle once its write returned (the data is in the OS page cache, so it survives the process
   * being killed) and `syncDirty`, called on the hub's timer, makes it durable.
   */
  syncIntervalMs?: number;
  /**
   * The least offset the next record may get: past every consumer checkpoint. Records a consumer
   * read and checkpointed can only be missing from the log after an OS crash in interval mode; new
   * records must not take their offsets, or that consumer would skip them.
   */
  minNextOffset?: number;
  /**
   * Interval mode: makes offsets up to `need` (excluded) durably reserved before any is handed
   * out (see local-reservations.ts); resolves to the end of the new reservation.
   */
  reserve?: (partition: number, need: number) => Promise<number>;
}

/** When sealed segments may be deleted; see `LocalHub.enforceRetention`. */
export interface RetentionPolicy {
  maxAgeMs?: number;
  /** Per partition. */
  maxBytes?: number;
  /** Delete every consumed sealed segment whatever its age or size (the hub is at its disk quota). */
  reclaim?: boolean;
  /** Never delete a segment no consumer has read, however big the partition (a quota refuses new records instead). */
  keepUnconsumed?: boolean;
}

/**
 * In `always` mode the active segment is opened with O_DSYNC where the platform has it: a write
 * returns once its data is durable, as write + fdatasync would, but in one thread-pool round trip
 * instead of two. Without it (Windows) each group is fdatasynced after its write. In interval mode
 * it is opened without, and fdatasynced on the timer.
 */
const DSYNC: number = (fsConstants as { O_DSYNC?: number }).O_DSYNC ?? 0;
const segmentFlags = (dsync: number): { rw: number; create: number } => ({
  rw: fsConstants.O_RDWR | dsync,
  create: fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_TRUNC | dsync,
});

interface Queued {
  payload: Buffer;
  waiter: PublishWaiter;
}

/**
 * The appending side of one partition: owns the active segment's file handle, group-commits
 * queued records (one durable write per group), rolls segments and applies retention.
 */
export class PartitionWriter {
  private queue: Queued[] = [];
  private flushing: Promise<void> | undefined;
  /** After a torn write, the size the active segment must be cut back to before the next write. */
  private repairTo: number | undefined;
  private failing = false;
  /** Bytes queued and not yet settled, framed as they will be written. */
  private queuedBytes = 0;
  /** Interval mode: when the oldest write not yet fdatasynced returned (undefined: all durable). */
  private unsyncedSince: number | undefined;
  /** Interval mode: the last background fdatasync failed; cleared only by one that succeeds. */
  private syncFailing = false;
  private syncing: Promise<void> | undefined;
  /** A roll is under way: the background sync leaves the handles alone until it is done. */
  private rolling = false;
  /** Interval mode: the records below this offset are durable (and readable). */
  private syncedNext: number;
  /** Interval mode: offsets below this are durably reserved. */
  private reservedTo = 0;

  private constructor(
    private readonly opts: PartitionWriterOptions,
    private segments: SegmentFile[],
    private fh: FileHandle,
    /** Bytes of whole records in the active segment. */
    private size: number,
    private next: number,
    /** Bytes of the sealed segments. */
    private sealedBytes: number,
    private readonly dsync: number,
  ) {
    this.syncedNext = next;
  }

  /** Opens the partition for appending, first cutting off a torn tail left by a crash. */
  static async open(opts: PartitionWriterOptions): Promise<PartitionWriter> {
    const dsync = opts.syncIntervalMs === undefined ? DSYNC : 0;
    await mkdir(opts.dir, { recursive: true, mode: PRIVATE_DIR_MODE });
    const segments = await listSegments(opts.dir);
    let active = segments.at(-1);
    if (active === undefined) {
      const created = await createSegmentFile(opts.dir, 0, dsync);
      await created.fh.close();
      active = created.segment;
      segments.push(active);
    }
    const { count, validBytes } = await scanSegment(active.path);
    let fh = await open(active.path, segmentFlags(dsync).rw);
    let size = validBytes;
    let next = active.base + count;
    try {
      await truncateTornTail(fh, validBytes, opts, active);
      // Interval mode: what a killed predecessor wrote may still be in the page cache only.
      if (opts.syncIntervalMs !== undefined) await fh.datasync();
      if (opts.minNextOffset !== undefined && next < opts.minNextOffset) {
        opts.log.error(
          { partition: opts.partition, lostFrom: next, lostTo: opts.minNextOffset - 1 },
          'hub offsets a consumer may have read are missing (an OS crash or power loss with FAROL_HUB_SYNC=interval): new records start after them',
        );
        // The old segment stays, sealed; offsets jump to a new one (readers log the gap and go on).
        const created = await createSegmentFile(opts.dir, opts.minNextOffset, dsync);
        await fh.close();
        ({ fh } = created);
        segments.push(created.segment);
        next = opts.minNextOffset;
        size = 0;
      }
    } catch (err) {
      await fh.close();
      throw err;
    }
    const sealed = await Promise.all(segments.slice(0, -1).map((seg) => stat(seg.path).then((i) => i.size)));
    return new PartitionWriter(opts, segments, fh, size, next, sealed.reduce((a, b) => a + b, 0), dsync);
  }

  /** The offset the next appended record gets. */
  get nextOffset(): number {
    return this.next;
  }

  /** Bytes the partition holds on disk plus those queued to be written (for the hub's quota). */
  get bytes(): number {
    return this.sealedBytes + this.size + this.queuedBytes;
  }

  /** True after a failed write or fsync, until a group (or, in interval mode, a background fsync) succeeds again. */
  get isFailing(): boolean {
    return this.failing || this.syncFailing;
  }

  /**
   * Where readers must stop: in interval mode the end of what is durable, so that nothing read
   * (and perhaps processed and checkpointed) can be lost to an OS crash; undefined in `always`
   * mode, where everything written is.
   */
  get readLimit(): number | undefined {
    return this.opts.syncIntervalMs === undefined ? undefined : this.syncedNext;
  }

  /** Interval mode: when the oldest write not yet durable returned; undefined when all is durable. */
  get unsyncedSinceMs(): number | undefined {
    return this.unsyncedSince;
  }

  /**
   * Interval mode: fdatasyncs the active segment if it holds writes not yet durable. A failure is
   * counted, marks the partition failing (readiness), is logged once until a sync succeeds again,
   * and leaves the writes unsynced, so the next call retries. Never rejects.
   */
  syncDirty(): Promise<void> {
    if (this.unsyncedSince === undefined || this.rolling) return this.syncing ?? Promise.resolve();
    this.syncing ??= this.backgroundSync().finally(() => (this.syncing = undefined));
    return this.syncing;
  }

  private async backgroundSync(): Promise<void> {
    const since = this.unsyncedSince;
    // Cleared before the call: a write returning meanwhile may not be covered, and marks it again.
    this.unsyncedSince = undefined;
    const upTo = this.next;
    try {
      await this.fh.datasync();
      this.opts.stats.fsyncs++;
      this.synced(upTo);
      if (this.syncFailing) this.opts.log.info({ partition: this.opts.partition }, 'hub background fsync succeeded again');
      this.syncFailing = false;
    } catch (err) {
      this.unsyncedSince = Math.min(since ?? Date.now(), this.unsyncedSince ?? Date.now());
      this.opts.stats.syncErrors++;
      if (!this.syncFailing) {
        this.opts.log.error({ err, partition: this.opts.partition, unsyncedSince: since }, 'hub background fsync failed; acknowledged records are not yet durable, retrying');
      }
      this.syncFailing = true;
    }
  }

  /** Interval mode: the records below `upTo` are durable; readers may have them. */
  private synced(upTo: number): void {
    if (this.opts.syncIntervalMs === undefined || upTo <= this.syncedNext) return;
    this.syncedNext = upTo;
    this.opts.onAppend(this.opts.partition, upTo);
  }

  /** Queues a record; the waiter is settled once the group holding it is fsynced or has failed. */
  enqueue(payload: Buffer, waiter: PublishWaiter): void {
    this.queue.push({ payload, waiter });
    this.queuedBytes += HEADER_BYTES + payload.length;
    this.flushing ??= this.flushLoop();
  }

  /** Resolves once every queued record is settled. */
  async drain(): Promise<void> {
    while (this.flushing) await this.flushing;
  }

  /** Settles what is queued and, in interval mode, makes it durable: a failed final fsync rejects (after closing). */
  async close(): Promise<void> {
    await this.drain();
    await this.syncing;
    let error: unknown;
    if (this.unsyncedSince !== undefined) {
      try {
        const upTo = this.next;
        await this.fh.datasync();
        this.opts.stats.fsyncs++;
        this.unsyncedSince = undefined;
        this.synced(upTo);
      } catch (err) {
        this.opts.stats.syncErrors++;
        this.opts.log.error({ err, partition: this.opts.partition }, 'hub final fsync failed: records acknowledged since the last one may not be durable');
        error = err;
      }
    }
    await this.fh.close();
    if (error !== undefined) throw error;
  }

  private async flushLoop(): Promise<void> {
    // One turn of the event loop first, so that publishes arriving together share a group.
    await new Promise<void>((resolve) => setImmediate(resolve));
    while (this.queue.length > 0) {
      const group = this.queue;
      this.queue = [];
      const error = await this.commitGroup(group.map((q) => q.payload));
      for (const q of group) {
        this.queuedBytes -= HEADER_BYTES + q.payload.length;
        settle(q.waiter, error);
      }
    }
    this.flushing = undefined;
  }

  /** Writes one group durably; returns the error instead of throwing so every waiter is settled. */
  private async commitGroup(payloads: Buffer[]): Promise<Error | undefined> {
    try {
      if (this.repairTo !== undefined) await this.repair(this.repairTo);
      const data = encodeFrames(payloads, Date.now());
      if (this.size > 0 && this.size + data.length > this.opts.segmentBytes) await this.roll();
      const need = this.next + payloads.length;
      if (this.opts.reserve !== undefined && need > this.reservedTo) this.reservedTo = await this.opts.reserve(this.opts.partition, need);
      await this.write(data, payloads.length);
      if (this.opts.syncIntervalMs === undefined) {
        this.opts.onAppend(this.opts.partition, this.next);
        // With O_DSYNC the write above was already durable when it returned.
        if (this.dsync === 0) await this.fh.datasync();
        this.opts.stats.fsyncs++;
      } else {
        this.unsyncedSince ??= Date.now();
      }
      this.opts.stats.records += payloads.length;
      this.failing = false;
      return undefined;
    } catch (err) {
      this.failing = true;
      this.opts.stats.writeErrors++;
      this.opts.log.error({ err, partition: this.opts.partition, records: payloads.length }, 'hub append failed');
      return err instanceof Error ? err : new Error(String(err));
    }
  }

  private async write(data: Buffer, count: number): Promise<void> {
    const start = this.size;
    let written = 0;
    try {
      while (written < data.length) {
        const { bytesWritten } = await this.fh.write(data, written, data.length - written, start + written);
        if (bytesWritten === 0) throw new Error('segment write made no progress');
        written += bytesWritten;
      }
    } catch (err) {
      this.keepWholeFrames(data, written);
      throw err;
    }
    this.size += data.length;
    this.next += count;
    this.opts.stats.bytes += data.length;
    this.opts.stats.writes++;
  }

  /**
   * After a failed write: whole records that reached the file may already have been read by a
   * consumer, so they keep their offsets (their publishes are still rejected); a torn remainder is
   * cut off before the next write.
   */
  private keepWholeFrames(data: Buffer, written: number): void {
    const kept = wholeFramesWithin(data, written);
    this.size += kept.bytes;
    this.next += kept.count;
    if (kept.bytes < written) this.repairTo = this.size;
  }

  private async repair(size: number): Promise<void> {
    await this.fh.truncate(size);
    await this.fh.datasync();
    this.opts.stats.fsyncs++;
    this.repairTo = undefined;
    this.synced(this.next);
  }

  /** Seals the active segment and starts a new one at the next offset. */
  private async roll(): Promise<void> {
    this.rolling = true;
    try {
      await this.syncing;
      // In `always` mode normally a no-op (each group was synced), after a failed fsync it
      // retries; in interval mode it makes the segment durable: sealed segments always are.
      await this.fh.datasync();
      this.opts.stats.fsyncs++;
      this.unsyncedSince = undefined;
      this.syncFailing = false;
      this.synced(this.next);
      const { segment, fh } = await createSegmentFile(this.opts.dir, this.next, this.dsync);
      const old = this.fh;
      this.fh = fh;
      this.segments.push(segment);
      this.sealedBytes += this.size;
      this.size = 0;
      this.opts.stats.rolls++;
      await old.close().catch((err: unknown) => this.opts.log.warn({ err }, 'closing sealed segment failed'));
    } finally {
      this.rolling = false;
    }
  }

  /**
   * Deletes the oldest sealed segments that are too old or over the size limit, stopping at the
   * first that must stay (so the log stays contiguous). A segment holding records past
   * `minCheckpoint` stays unless the partition exceeds twice `maxBytes`. Never the active segment.
   */
  async enforceRetention(
    policy: RetentionPolicy,
    minCheckpoint: number,
    now: number,
  ): Promise<{ segments: number; bytes: number }> {
    const all = this.segments.slice();
    const sealed = all.slice(0, -1);
    const infos = await Promise.all(sealed.map((s) => stat(s.path)));
    let total = this.size + infos.reduce((sum, info) => sum + info.size, 0);
    const deleted = { segments: 0, bytes: 0 };
    for (const [i, seg] of sealed.entries()) {
      const info = infos[i];
      const nextBase = all[i + 1]?.base;
      if (info === undefined || nextBase === undefined) break;
      const lastOffset = nextBase - 1;
      const verdict = retentionVerdict(policy, now - info.mtimeMs, total, lastOffset, minCheckpoint);
      if (verdict === 'keep') break;
      if (verdict === 'force') {
        this.opts.log.warn(
          { partition: this.opts.partition, segment: seg.base, lastOffset, minCheckpoint, bytes: total },
          'deleting an unconsumed hub segment: the partition exceeds twice its size limit',
        );
      }
      await unlink(seg.path).catch((err: unknown) => {
        if (!isErrnoException(err, 'ENOENT')) throw err;
      });
      this.segments = this.segments.filter((s) => s !== seg);
      this.sealedBytes -= info.size;
      total -= info.size;
      deleted.segments++;
      deleted.bytes += info.size;
    }
    return deleted;
  }
}

function settle(waiter: PublishWaiter, error: Error | undefined): void {
  if (error !== undefined) waiter.error ??= error;
  waiter.remaining--;
  if (waiter.remaining > 0) return;
  if (waiter.error === undefined) waiter.resolve();
  else waiter.reject(waiter.error);
}

/** `delete` a consumed segment, `force` an unconsumed one (over the hard limit), or `keep` it. */
export function retentionVerdict(
  policy: RetentionPolicy,
  ageMs: number,
  partitionBytes: number,
  lastOffset: number,
  minCheckpoint: number,
): 'keep' | 'delete' | 'force' {
  const tooOld = policy.maxAgeMs !== undefined && ageMs > policy.maxAgeMs;
  const tooBig = policy.maxBytes !== undefined && partitionBytes > policy.maxBytes;
  // Reclaiming needs a consumer to have read the segment: with no known group (an infinite
  // minimum) nothing was consumed, whatever the arithmetic says.
  const reclaim = policy.reclaim === true && Number.isFinite(minCheckpoint);
  if (!tooOld && !tooBig && !reclaim) return 'keep';
  if (lastOffset <= minCheckpoint) return 'delete';
  if (policy.keepUnconsumed === true) return 'keep';
  return policy.maxBytes !== undefined && partitionBytes > 2 * policy.maxBytes ? 'force' : 'keep';
}

/** Creates an empty segment and makes its directory entry durable before anything is written to it. */
async function createSegmentFile(dir: string, base: number, dsync: number): Promise<{ segment: SegmentFile; fh: FileHandle }> {
  const path = join(dir, segmentFileName(base));
  // Truncating, not exclusive: a file of this name can only be an empty leftover of a roll that failed here.
  const fh = await open(path, segmentFlags(dsync).create, PRIVATE_FILE_MODE);
  try {
    await fsyncDir(dir);
  } catch (err) {
    await fh.close();
    throw err;
  }
  return { segment: { base, path }, fh };
}

async function truncateTornTail(
  fh: FileHandle,
  validBytes: number,
  opts: PartitionWriterOptions,
  segment: SegmentFile,
): Promise<void> {
  const { size } = await fh.stat();
  if (size <= validBytes) return;
  opts.log.warn(
    { partition: opts.partition, segment: segment.base, validBytes, tornBytes: size - validBytes },
    'truncating a torn hub segment tail',
  );
  await fh.truncate(validBytes);
  await fh.sync();
}
