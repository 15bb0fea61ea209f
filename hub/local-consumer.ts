import { mkdir, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import type {
  ConsumerHandlers,
  HubConsumer,
  HubRecord,
  SubscribeOptions,
  Subscription,
} from './hub.ts';
import { HubError, isErrnoException, type HubLog, type LocalHubStats } from './local-common.ts';
import { PartitionReader } from './local-reader.ts';
import { abortableSleep } from '../lib/within.ts';
import { writeFileAtomic } from './local-segment.ts';
import { PRIVATE_DIR_MODE } from '../lib/private-dir.ts';

const checkpointFileSchema = z.object({
  version: z.literal(1),
  group: z.string(),
  offsets: z.array(z.number().int().min(-1)),
});

/** Consumer group names become file names: keep them to a safe alphabet (`$Default` included). */
const GROUP_NAME = /^[A-Za-z0-9$_-][A-Za-z0-9$_.-]{0,99}$/;

export function checkpointDir(hubDir: string): string {
  return join(hubDir, 'checkpoints');
}

/**
 * The checkpoints of one consumer group, one JSON file (`checkpoints/<group>.json`) replaced
 * atomically. Concurrent checkpoints of several partitions share one write.
 */
export class CheckpointFile {
  /** Bumped by every change; `durable` is the version last written. */
  private version = 0;
  private durable = 0;
  private writing: Promise<void> | undefined;

  private constructor(
    private readonly path: string,
    private readonly group: string,
    private readonly offsets: number[],
  ) {}

  /** Loads the group's checkpoints, creating the file (all -1) so retention knows the group at once. */
  static async open(hubDir: string, group: string, partitions: number): Promise<CheckpointFile> {
    if (!GROUP_NAME.test(group)) {
      throw new HubError('HUB_BAD_OPTIONS', `consumer group "${group}" must match ${String(GROUP_NAME)}`);
    }
    const dir = checkpointDir(hubDir);
    await mkdir(dir, { recursive: true, mode: PRIVATE_DIR_MODE });
    const path = join(dir, `${group}.json`);
    const loaded = await readCheckpointFile(path);
    const offsets = Array.from({ length: partitions }, (_, p) => loaded?.[p] ?? -1);
    const file = new CheckpointFile(path, group, offsets);
    if (loaded === undefined) await file.write();
    return file;
  }

  get(partition: number): number {
    return this.offsets[partition] ?? -1;
  }

  /** Records `offset` (never moving backwards) and resolves once it is durable. */
  async set(partition: number, offset: number): Promise<void> {
    this.offsets[partition] = Math.max(this.get(partition), offset);
    const wanted = ++this.version;
    while (this.durable < wanted) {
      this.writing ??= this.write().finally(() => {
        this.writing = undefined;
      });
      await this.writing;
    }
  }

  /** Resolves once no write is in flight. */
  async idle(): Promise<void> {
    while (this.writing) await this.writing.catch(() => {});
  }

  private async write(): Promise<void> {
    const version = this.version;
    const body = { version: 1, group: this.group, offsets: this.offsets };
    await writeFileAtomic(this.path, `${JSON.stringify(body)}\n`);
    this.durable = Math.max(this.durable, version);
  }
}

/** Offsets in a checkpoint file, or undefined if there is none. A malformed file is an error. */
async function readCheckpointFile(path: string): Promise<number[] | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if (isErrnoException(err, 'ENOENT')) return undefined;
    throw err;
  }
  const parsed = checkpointFileSchema.safeParse(parseJson(text));
  if (!parsed.success) throw new HubError('HUB_BAD_META', `checkpoint file ${path} is malformed`);
  return parsed.data.offsets;
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/**
 * Per partition, the lowest checkpoint over every consumer group with a checkpoint file; -1 where
 * a group has not checkpointed, +Infinity when there are no groups. A malformed file counts as a
 * group that has consumed nothing, so retention errs on keeping data.
 */
export async function minCheckpoints(hubDir: string, partitions: number, log: HubLog): Promise<number[]> {
  const mins = Array.from({ length: partitions }, () => Number.POSITIVE_INFINITY);
  for (const offsets of await groupCheckpoints(hubDir, log, 'retention keeps unconsumed data')) {
    for (let p = 0; p < partitions; p++) mins[p] = Math.min(mins[p] ?? -1, offsets[p] ?? -1);
  }
  return mins;
}

/** Per partition, the highest checkpoint over every consumer group; -1 where none has checkpointed. */
export async function maxCheckpoints(hubDir: string, partitions: number, log: HubLog): Promise<number[]> {
  const maxes = Array.from({ length: partitions }, () => -1);
  for (const offsets of await groupCheckpoints(hubDir, log, 'ignored')) {
    for (let p = 0; p < partitions; p++) maxes[p] = Math.max(maxes[p] ?? -1, offsets[p] ?? -1);
  }
  return maxes;
}

/** The offsets of every group's checkpoint file; an unreadable or malformed one is logged and counts as empty. */
async function groupCheckpoints(hubDir: string, log: HubLog, unreadable: string): Promise<number[][]> {
  const dir = checkpointDir(hubDir);
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if (isErrnoException(err, 'ENOENT')) return [];
    throw err;
  }
  const all: number[][] = [];
  for (const name of names.filter((n) => n.endsWith('.json'))) {
    const offsets = await readCheckpointFile(join(dir, name)).catch((err: unknown) => {
      log.warn({ err, file: name }, `unreadable checkpoint file: ${unreadable}`);
      return [];
    });
    all.push(offsets ?? []);
  }
  return all;
}

/** What a consumer needs from the hub it belongs to. */
export interface ConsumerHost {
  readonly dir: string;
  readonly partitionCount: number;
  readonly log: HubLog;
  readonly stats: LocalHubStats;
  /** How often a waiting reader looks at the files (appends by another process). */
  readonly pollMs: number;
  /** First delay before retrying a failed batch; doubles up to `maxRetryBackoffMs`. */
  readonly retryBackoffMs: number;
  readonly maxRetryBackoffMs: number;
  /** A number that changes whenever this process appends to the partition. */
  appendSeq(partition: number): number;
  /** Resolves when `appendSeq` moves past `seq`, after `ms`, or when `signal` aborts. */
  waitForAppend(partition: number, seq: number, ms: number, signal: AbortSignal): Promise<void>;
  endOffset(partition: number): Promise<number>;
  /** Where reading the partition must stop for now (see `PartitionReader`'s limit); undefined: the end of the files. */
  readLimit(partition: number): number | undefined;
  /** Called when the consumer is closed. */
  released(group: string): void;
}

/** A consumer group on the local hub: owns every partition. */
export class LocalConsumer implements HubConsumer {
  private subscription: LocalSubscription | undefined;
  private closed = false;

  constructor(
    private readonly host: ConsumerHost,
    readonly group: string,
    private readonly checkpoints: CheckpointFile,
  ) {}

  get partitionCount(): number {
    return this.host.partitionCount;
  }

  subscribe(handlers: ConsumerHandlers, options: SubscribeOptions): Subscription {
    if (this.closed) throw new HubError('HUB_CLOSED', `consumer ${this.group} is closed`);
    if (this.subscription?.active) throw new HubError('HUB_BAD_OPTIONS', `consumer ${this.group} is already subscribed`);
    if (!Number.isInteger(options.maxBatchSize) || options.maxBatchSize < 1) {
      throw new HubError('HUB_BAD_OPTIONS', 'maxBatchSize must be a positive integer');
    }
    const subscription = new LocalSubscription(this.host, (p) => this.checkpoints.get(p), handlers, options);
    this.subscription = subscription;
    return subscription;
  }

  async checkpoint(partition: number, offset: number): Promise<void> {
    this.checkPartition(partition);
    // After close another consumer of the group may own the file.
    if (this.closed) throw new HubError('HUB_CLOSED', `consumer ${this.group} is closed`);
    if (!Number.isInteger(offset) || offset < -1) throw new HubError('HUB_BAD_OPTIONS', `bad checkpoint offset ${offset}`);
    await this.checkpoints.set(partition, offset);
  }

  getCheckpoint(partition: number): Promise<number> {
    this.checkPartition(partition);
    return Promise.resolve(this.checkpoints.get(partition));
  }

  endOffset(partition: number): Promise<number> {
    this.checkPartition(partition);
    return this.host.endOffset(partition);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.subscription?.close();
    await this.checkpoints.idle();
    this.host.released(this.group);
  }

  private checkPartition(partition: number): void {
    if (!Number.isInteger(partition) || partition < 0 || partition >= this.host.partitionCount) {
      throw new HubError('HUB_BAD_OPTIONS', `no partition ${partition}`);
    }
  }
}

/** Delivers every partition independently; see `HubConsumer.subscribe`. */
class LocalSubscription implements Subscription {
  private readonly stop = new AbortController();
  private readonly done: Promise<void>;
  active = true;

  constructor(
    host: ConsumerHost,
    checkpointOf: (partition: number) => number,
    handlers: ConsumerHandlers,
    options: SubscribeOptions,
  ) {
    const pumps = Array.from({ length: host.partitionCount }, (_, p) =>
      new PartitionPump(host, p, checkpointOf(p) + 1, handlers, options, this.stop.signal).run(),
    );
    this.done = Promise.all(pumps).then(() => undefined);
  }

  async close(): Promise<void> {
    this.stop.abort();
    await this.done;
    this.active = false;
  }
}

/** The delivery loop of one partition: read a batch, hand it over, wait for it, repeat. */
class PartitionPump {
  private readonly reader: PartitionReader;

  constructor(
    private readonly host: ConsumerHost,
    private readonly partition: number,
    private readonly startOffset: number,
    private readonly handlers: ConsumerHandlers,
    private readonly options: SubscribeOptions,
    private readonly signal: AbortSignal,
  ) {
    this.reader = new PartitionReader(host.dir, partition, startOffset, host.log, () => host.readLimit(partition));
  }

  /** Never rejects: failures are logged and retried until the subscription closes. */
  async run(): Promise<void> {
    let opened = false;
    try {
      opened = await this.opened();
      if (opened) await this.deliverUntilStopped();
    } finally {
      await this.reader.close().catch(() => {});
    }
    if (opened) await this.closed();
  }

  private async opened(): Promise<boolean> {
    const opened = this.handlers.partitionOpened;
    if (opened === undefined) return true;
    return this.retrying('partitionOpened failed', () => opened.call(this.handlers, this.partition, this.startOffset));
  }

  private async closed(): Promise<void> {
    try {
      await this.handlers.partitionClosed?.(this.partition);
    } catch (err) {
      this.host.log.error({ err, partition: this.partition }, 'partitionClosed failed');
    }
  }

  private async deliverUntilStopped(): Promise<void> {
    while (!this.signal.aborted) {
      const records = await this.nextBatch();
      if (records.length === 0) continue;
      // A failed batch is retried as it is, never skipped: the processor must see every record.
      await this.retrying(
        'processBatch failed; retrying the same batch',
        () => this.handlers.processBatch({ partition: this.partition, records: records.slice() }),
        { firstOffset: records[0]?.offset, records: records.length },
        () => this.host.stats.batchErrors++,
      );
    }
  }

  /**
   * Collects up to `maxBatchSize` records: hands over a full batch at once, a partial one once
   * `maxWaitMs` passed since its first record, and waits for appends while there is nothing.
   * Empty when the subscription is closing (undelivered records come again from the checkpoint).
   */
  private async nextBatch(): Promise<HubRecord[]> {
    const { maxBatchSize, maxWaitMs } = this.options;
    const batch: HubRecord[] = [];
    let deadline: number | undefined;
    while (!this.signal.aborted) {
      const seq = this.host.appendSeq(this.partition);
      const got = await this.readSafely(maxBatchSize - batch.length);
      for (const r of got) batch.push(r);
      if (batch.length >= maxBatchSize) return batch;
      if (batch.length > 0) deadline ??= Date.now() + maxWaitMs;
      const left = deadline === undefined ? this.host.pollMs : deadline - Date.now();
      if (left <= 0) return batch;
      // Something was just read, so more may already be there: read again before waiting.
      if (got.length > 0) continue;
      await this.host.waitForAppend(this.partition, seq, Math.min(left, this.host.pollMs), this.signal);
    }
    return [];
  }

  private async readSafely(max: number): Promise<HubRecord[]> {
    try {
      return await this.reader.read(max);
    } catch (err) {
      this.host.log.error({ err, partition: this.partition }, 'reading the hub failed; retrying');
      await this.reader.reset().catch(() => {});
      await abortableSleep(this.host.retryBackoffMs, this.signal);
      return [];
    }
  }

  /** Runs `fn` until it succeeds or the subscription closes, backing off; true if it succeeded. */
  private async retrying(
    msg: string,
    fn: () => Promise<void>,
    fields: Record<string, unknown> = {},
    onError: () => void = () => {},
  ): Promise<boolean> {
    for (let attempt = 1; ; attempt++) {
      try {
        await fn();
        return true;
      } catch (err) {
        onError();
        this.host.log.error({ err, partition: this.partition, attempt, ...fields }, msg);
      }
      const delay = Math.min(this.host.retryBackoffMs * 2 ** (attempt - 1), this.host.maxRetryBackoffMs);
      await abortableSleep(delay, this.signal);
      if (this.signal.aborted) return false;
    }
  }
}

