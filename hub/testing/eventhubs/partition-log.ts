import { mkdir, open, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { crc32 } from 'node:zlib';

/** One stored event: the producer's encoded AMQP message, kept byte for byte. */
export interface StoredEvent {
  readonly sequenceNumber: number;
  /** Byte position of the record in the partition file; sent as a string, like the service. */
  readonly offset: number;
  readonly enqueuedTimeMs: number;
  /** The key the event was routed by, when it came with one. */
  readonly partitionKey: string | undefined;
  readonly message: Buffer;
}

export interface AppendInput {
  readonly message: Buffer;
  readonly partitionKey: string | undefined;
}

// Record: u32 length of the rest | u32 crc32 of the rest | f64 enqueued ms | u16 key bytes + 1
// (0 = no key) | key | message.
const PREFIX = 8;
const FIXED = 8 + 2;

interface Pending {
  readonly bytes: Buffer;
  readonly events: StoredEvent[];
  resolve(events: StoredEvent[]): void;
  reject(err: unknown): void;
}

/**
 * An append-only, fsync-ed file of events for one partition. Appends get their sequence numbers
 * and offsets in call order, are written together (group commit) and become visible in
 * {@link events} — and resolve — only once on disk.
 */
export class PartitionLog {
  /** Committed events; index = sequence number. */
  readonly events: StoredEvent[];
  private readonly file: FileHandle;
  private readonly onCommit: () => void;
  // Both run ahead of `events` by what is queued or being written.
  private nextSequence: number;
  private nextOffset: number;
  private lastTimeMs: number;
  private pending: Pending[] = [];
  private flushing: Promise<void> | undefined;
  private failed: unknown;

  private constructor(file: FileHandle, events: StoredEvent[], size: number, onCommit: () => void) {
    this.file = file;
    this.events = events;
    this.nextSequence = events.length;
    this.nextOffset = size;
    this.lastTimeMs = events.at(-1)?.enqueuedTimeMs ?? 0;
    this.onCommit = onCommit;
  }

  /** Opens (or creates) the file, dropping a torn record at its end. */
  static async open(path: string, onCommit: () => void = () => {}): Promise<PartitionLog> {
    await mkdir(dirname(path), { recursive: true });
    const file = await open(path, 'a+');
    try {
      const data = await file.readFile();
      const { events, validBytes } = parse(data);
      if (validBytes < data.length) {
        await file.truncate(validBytes);
        await file.sync();
      }
      // A new file must also survive a crash: make its directory entry durable.
      const dir = await open(dirname(path), 'r');
      try {
        await dir.sync();
      } finally {
        await dir.close();
      }
      return new PartitionLog(file, events, validBytes, onCommit);
    } catch (err) {
      await file.close();
      throw err;
    }
  }

  get count(): number {
    return this.events.length;
  }

  /** Appends atomically; resolves with the stored events after fsync. */
  append(inputs: readonly AppendInput[]): Promise<StoredEvent[]> {
    if (this.failed !== undefined) return Promise.reject(this.failed);
    const now = Math.max(Date.now(), this.lastTimeMs);
    this.lastTimeMs = now;
    const events: StoredEvent[] = [];
    const chunks: Buffer[] = [];
    for (const input of inputs) {
      const record = encode(now, input);
      events.push({
        sequenceNumber: this.nextSequence++,
        offset: this.nextOffset,
        enqueuedTimeMs: now,
        partitionKey: input.partitionKey,
        message: input.message,
      });
      this.nextOffset += record.length;
      chunks.push(record);
    }
    return new Promise((resolve, reject) => {
      this.pending.push({ bytes: Buffer.concat(chunks), events, resolve, reject });
      this.kick();
    });
  }

  private kick(): void {
    if (this.flushing) return;
    this.flushing = this.flush().finally(() => {
      this.flushing = undefined;
      // An append may have slipped in after the loop saw an empty queue.
      if (this.pending.length > 0) this.kick();
    });
  }

  /** Index of the first committed event with offset > (or >=) `offset`; `count` if none. */
  indexAfterOffset(offset: number, inclusive: boolean): number {
    let lo = 0;
    let hi = this.events.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const o = this.events[mid]!.offset;
      if (inclusive ? o >= offset : o > offset) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  }

  /** Index of the first committed event enqueued after `timeMs`; `count` if none. */
  indexAfterTime(timeMs: number): number {
    const i = this.events.findIndex((e) => e.enqueuedTimeMs > timeMs);
    return i === -1 ? this.events.length : i;
  }

  /** Waits for pending appends, then closes the file. */
  async close(): Promise<void> {
    while (this.flushing) await this.flushing;
    await this.file.close();
  }

  private async flush(): Promise<void> {
    while (this.pending.length > 0) {
      const batch = this.pending.splice(0);
      try {
        await this.file.appendFile(Buffer.concat(batch.map((p) => p.bytes)));
        await this.file.sync();
      } catch (err) {
        // Offsets already handed out no longer match the file: refuse further appends.
        this.failed = err;
        for (const p of [...batch, ...this.pending.splice(0)]) p.reject(err);
        return;
      }
      for (const p of batch) this.events.push(...p.events);
      for (const p of batch) p.resolve(p.events);
      this.onCommit();
    }
  }
}

function encode(timeMs: number, input: AppendInput): Buffer {
  const key = input.partitionKey === undefined ? undefined : Buffer.from(input.partitionKey, 'utf8');
  const rest = Buffer.alloc(FIXED + (key?.length ?? 0) + input.message.length);
  rest.writeDoubleLE(timeMs, 0);
  rest.writeUInt16LE(key === undefined ? 0 : key.length + 1, 8);
  key?.copy(rest, FIXED);
  input.message.copy(rest, FIXED + (key?.length ?? 0));
  const prefix = Buffer.alloc(PREFIX);
  prefix.writeUInt32LE(rest.length, 0);
  prefix.writeUInt32LE(crc32(rest), 4);
  return Buffer.concat([prefix, rest]);
}

function parse(data: Buffer): { events: StoredEvent[]; validBytes: number } {
  const events: StoredEvent[] = [];
  let pos = 0;
  while (pos + PREFIX <= data.length) {
    const len = data.readUInt32LE(pos);
    const end = pos + PREFIX + len;
    if (len < FIXED || end > data.length) break;
    const rest = data.subarray(pos + PREFIX, end);
    if (crc32(rest) !== data.readUInt32LE(pos + 4)) break;
    const keyField = rest.readUInt16LE(8);
    const keyEnd = FIXED + Math.max(0, keyField - 1);
    if (keyEnd > rest.length) break;
    events.push({
      sequenceNumber: events.length,
      offset: pos,
      enqueuedTimeMs: rest.readDoubleLE(0),
      partitionKey: keyField === 0 ? undefined : rest.toString('utf8', FIXED, keyEnd),
      // Copied so the file's read buffer is not kept alive by one event.
      message: Buffer.from(rest.subarray(keyEnd)),
    });
    pos = end;
  }
  return { events, validBytes: pos };
}
