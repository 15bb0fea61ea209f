import { mkdir, open, readdir, readFile, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { fsyncDir, writeFileAtomic } from '../lib/durable-file.ts';
import { PRIVATE_DIR_MODE, PRIVATE_FILE_MODE } from '../lib/private-dir.ts';

/**
 * The collector's on-disk spool for when Event Hubs cannot take writes: one append-only log of
 * keyed records (the key decides the partition when the record is replayed), in segment files
 * `<dir>/<id>.spool`, group-committed (one write and one `fdatasync` per group), bounded in bytes.
 * A replayer reads it in order from a durable cursor (`<dir>/cursor.json`) and commits after Event
 * Hubs accepted what it read; consumed segments are deleted only then.
 *
 * Frame: `[u32 LE body length][u32 LE crc32 of body][body]`, body = `[u16 LE key length][key UTF-8][payload]`.
 * A torn tail (a crash mid-write: that group was never acknowledged) is truncated on open.
 */

/** One spooled record. */
export interface SpoolRecord {
  key: string;
  payload: Buffer;
}

/** Where the replayer is: a byte position in a segment. */
export interface SpoolPosition {
  segment: number;
  position: number;
}

/** Records read from the spool, and the position after them (commit it once they are sent). */
export interface SpoolChunk {
  records: SpoolRecord[];
  bytes: number;
  next: SpoolPosition;
}

export interface SpoolOptions {
  dir: string;
  /** Bound on the bytes the spool holds on disk; an append past it is refused. */
  maxBytes: number;
  /** Size at which a new segment is started (default: maxBytes / 8, between 1 MiB and 64 MiB). */
  segmentBytes?: number;
  /** Told about a corrupt frame in the middle of a segment (the rest of that segment is skipped). */
  onCorrupt?: (info: { segment: number; position: number }) => void;
}

/** Why a spool append was refused. */
export class SpoolFullError extends Error {
  override readonly name = 'SpoolFullError';
}

const HEADER_BYTES = 8;
const MAX_KEY_BYTES = 0xffff;
const SEGMENT_NAME = /^(\d{20})\.spool$/;
const CURSOR_FILE = 'cursor.json';

interface Segment {
  id: number;
  path: string;
  /** Durable bytes (written and synced). */
  size: number;
}

interface PendingAppend {
  frames: Buffer[];
  bytes: number;
  resolve: () => void;
  reject: (err: Error) => void;
}

/** Size of a record's frame. */
export function spoolFrameBytes(record: SpoolRecord): number {
  return HEADER_BYTES + 2 + Buffer.byteLength(record.key, 'utf8') + record.payload.length;
}

/** Encodes one record as a frame. */
export function encodeSpoolFrame(record: SpoolRecord): Buffer {
  const key = Buffer.from(record.key, 'utf8');
  if (key.length > MAX_KEY_BYTES) throw new RangeError(`spool key of ${key.length} bytes is too long`);
  const frame = Buffer.allocUnsafe(HEADER_BYTES + 2 + key.length + record.payload.length);
  const bodyLength = 2 + key.length + record.payload.length;
  frame.writeUInt32LE(bodyLength, 0);
  frame.writeUInt16LE(key.length, HEADER_BYTES);
  key.copy(frame, HEADER_BYTES + 2);
  record.payload.copy(frame, HEADER_BYTES + 2 + key.length);
  frame.writeUInt32LE(crc32(frame.subarray(HEADER_BYTES)), 4);
  return frame;
}

type Decoded = { kind: 'record'; record: SpoolRecord; next: number } | { kind: 'partial' } | { kind: 'corrupt' };

/** Decodes the frame at `pos` of `buf`. */
function decodeFrame(buf: Buffer, pos: number): Decoded {
  if (pos + HEADER_BYTES > buf.length) return { kind: 'partial' };
  const bodyLength = buf.readUInt32LE(pos);
  if (bodyLength < 2) return { kind: 'corrupt' };
  const end = pos + HEADER_BYTES + bodyLength;
  if (end > buf.length) return { kind: 'partial' };
  const body = buf.subarray(pos + HEADER_BYTES, end);
  if (crc32(body) !== buf.readUInt32LE(pos + 4)) return { kind: 'corrupt' };
  const keyLength = body.readUInt16LE(0);
  if (2 + keyLength > body.length) return { kind: 'corrupt' };
  return {
    kind: 'record',
    // Copied: the read buffer is large and short-lived.
    record: { key: body.toString('utf8', 2, 2 + keyLength), payload: Buffer.from(body.subarray(2 + keyLength)) },
    next: end,
  };
}

/** Opens (creating if needed) the spool in `options.dir`, truncating a torn tail. */
export async function openSpool(options: SpoolOptions): Promise<Spool> {
  if (!(options.maxBytes > 0)) throw new RangeError('spool maxBytes must be positive');
  await mkdir(options.dir, { recursive: true, mode: PRIVATE_DIR_MODE });
  const cursor = await readCursor(options.dir);
  const segments: Segment[] = [];
  for (const name of await readdir(options.dir)) {
    const m = SEGMENT_NAME.exec(name);
    if (m?.[1] === undefined) continue;
    const id = Number(m[1]);
    const path = join(options.dir, name);
    if (id < cursor.segment) {
      // Replayed before the crash; only its deletion was lost.
      await unlink(path);
      continue;
    }
    segments.push({ id, path, size: 0 });
  }
  segments.sort((a, b) => a.id - b.id);
  for (const [i, s] of segments.entries()) {
    s.size = i === segments.length - 1 ? await recoverTail(s.path) : await fileSize(s.path);
  }
  await fsyncDir(options.dir);
  const first = segments[0];
  const start: SpoolPosition =
    first === undefined || first.id !== cursor.segment
      ? { segment: first?.id ?? cursor.segment, position: 0 }
      : { segment: cursor.segment, position: Math.min(cursor.position, first.size) };
  const lastId = Math.max(cursor.segment, segments.at(-1)?.id ?? 0);
  return new Spool(options, segments, start, lastId);
}

/** See the module comment. Appends are group-committed; reads and commits come from one replayer. */
export class Spool {
  private readonly segmentBytes: number;
  private pending: PendingAppend[] = [];
  /** Bytes of pending and in-flight appends (counted against the bound before they are written). */
  private reserved = 0;
  private writing: Promise<void> | undefined;
  private active: { segment: Segment; fh: FileHandle } | undefined;
  private closed = false;
  private idleWaiters: Array<() => void> = [];

  constructor(
    private readonly options: SpoolOptions,
    private readonly segments: Segment[],
    private cursor: SpoolPosition,
    private lastId: number,
  ) {
    this.segmentBytes =
      options.segmentBytes ?? Math.min(64 * 1024 * 1024, Math.max(1024 * 1024, Math.floor(options.maxBytes / 8)));
  }

  /** Bytes in segment files on disk (replayed parts of a segment count until it is deleted). */
  get bytes(): number {
    return this.segments.reduce((n, s) => n + s.size, 0);
  }

  /** Room left under the bound, counting appends not yet written. */
  get freeBytes(): number {
    return this.options.maxBytes - this.bytes - this.reserved;
  }

  /** Durable bytes not yet replayed. */
  get unreplayedBytes(): number {
    let n = 0;
    for (const s of this.segments) {
      if (s.id > this.cursor.segment) n += s.size;
      else if (s.id === this.cursor.segment) n += s.size - this.cursor.position;
    }
    return n;
  }

  /** True when everything appended has been replayed and no append is pending. */
  isEmpty(): boolean {
    return this.writing === undefined && this.pending.length === 0 && this.unreplayedBytes === 0;
  }

  /** Resolves when no append is pending or being written. */
  idle(): Promise<void> {
    if (this.writing === undefined && this.pending.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /**
   * Appends records (in this order, after every earlier call's) and resolves once they are
   * fsynced. Rejects with {@link SpoolFullError} when they would take the spool past its bound.
   * The call enqueues synchronously: the order of calls is the order on disk.
   */
  append(records: readonly SpoolRecord[]): Promise<void> {
    if (this.closed) return Promise.reject(new Error('the spool is closed'));
    if (records.length === 0) return Promise.resolve();
    let frames: Buffer[];
    try {
      frames = records.map(encodeSpoolFrame);
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
    const bytes = frames.reduce((n, f) => n + f.length, 0);
    if (this.bytes + this.reserved + bytes > this.options.maxBytes) {
      return Promise.reject(
        new SpoolFullError(`the spool holds ${this.bytes + this.reserved} bytes; ${bytes} more would pass its bound of ${this.options.maxBytes}`),
      );
    }
    this.reserved += bytes;
    return new Promise<void>((resolve, reject) => {
      this.pending.push({ frames, bytes, resolve, reject });
      this.writing ??= this.writeLoop();
    });
  }

  /**
   * Reads whole records from the cursor, up to about `maxBytes` (at least one record), within one
   * segment. Undefined when nothing durable is left to read.
   */
  async read(maxBytes: number): Promise<SpoolChunk | undefined> {
    for (;;) {
      const at = this.cursor;
      const seg = this.segments.find((s) => s.id >= at.segment);
      if (seg === undefined) return undefined;
      const position = seg.id === at.segment ? at.position : 0;
      if (position >= seg.size) {
        const later = this.segments.find((s) => s.id > seg.id);
        if (later === undefined) return undefined;
        // A fully replayed segment: move on (committed with the next chunk).
        this.cursor = { segment: later.id, position: 0 };
        continue;
      }
      const chunk = await this.readFrom(seg, position, maxBytes);
      if (chunk !== undefined) return chunk;
    }
  }

  /**
   * Records that everything before `chunk.next` was replayed: persists the cursor, then deletes
   * segments wholly before it. When the spool is then empty, its last segment goes too.
   */
  async commit(chunk: SpoolChunk): Promise<void> {
    this.cursor = chunk.next;
    await writeFileAtomic(join(this.options.dir, CURSOR_FILE), JSON.stringify(this.cursor));
    const at = this.cursor;
    // The last segment is (or is about to be) appended to while a write is pending: it stays.
    const keep = this.writing !== undefined || this.pending.length > 0 ? this.segments.at(-1) : undefined;
    // Chosen and unlisted synchronously, so that an append starting meanwhile cannot reopen one.
    const done = this.segments.filter((s) => s !== keep && (s.id < at.segment || (s.id === at.segment && at.position >= s.size)));
    if (done.length === 0) return;
    for (const s of done) this.segments.splice(this.segments.indexOf(s), 1);
    const active = this.active;
    if (active !== undefined && done.includes(active.segment)) {
      this.active = undefined;
      await active.fh.close();
    }
    // Segment ids only grow, so a cursor naming a deleted segment means "from the next one".
    for (const s of done) await unlink(s.path);
  }

  async close(): Promise<void> {
    this.closed = true;
    while (this.writing !== undefined) await this.writing;
    await this.active?.fh.close();
    this.active = undefined;
  }

  private async readFrom(seg: Segment, position: number, maxBytes: number): Promise<SpoolChunk | undefined> {
    const fh = await open(seg.path, 'r');
    try {
      let length = Math.min(Math.max(maxBytes, HEADER_BYTES), seg.size - position);
      let buf = await readAt(fh, position, length);
      let first = decodeFrame(buf, 0);
      if (first.kind === 'partial' && buf.length >= HEADER_BYTES) {
        // One record larger than maxBytes: read it whole.
        length = Math.min(HEADER_BYTES + buf.readUInt32LE(0), seg.size - position);
        buf = await readAt(fh, position, length);
        first = decodeFrame(buf, 0);
      }
      const records: SpoolRecord[] = [];
      let pos = 0;
      for (let d = first; d.kind === 'record'; d = decodeFrame(buf, pos)) {
        records.push(d.record);
        pos = d.next;
      }
      if (records.length === 0) {
        // Durable bytes that are not a frame: skip the rest of this segment, loudly.
        this.options.onCorrupt?.({ segment: seg.id, position });
        this.cursor = { segment: seg.id, position: seg.size };
        return undefined;
      }
      return { records, bytes: pos, next: { segment: seg.id, position: position + pos } };
    } finally {
      await fh.close();
    }
  }

  private async writeLoop(): Promise<void> {
    while (this.pending.length > 0) {
      const group = this.pending;
      this.pending = [];
      const bytes = group.reduce((n, p) => n + p.bytes, 0);
      try {
        const { segment, fh } = await this.activeSegment();
        const data = Buffer.concat(group.flatMap((p) => p.frames), bytes);
        try {
          await writeAll(fh, data, segment.size);
          await fh.datasync();
        } catch (err) {
          // Leave no partial group behind: the next group must start on a frame boundary.
          await fh.truncate(segment.size).catch(() => {});
          throw err;
        }
        segment.size += bytes;
        this.reserved -= bytes;
        for (const p of group) p.resolve();
      } catch (err) {
        this.reserved -= bytes;
        const error = err instanceof Error ? err : new Error(String(err));
        for (const p of group) p.reject(error);
      }
    }
    this.writing = undefined;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }

  private async activeSegment(): Promise<{ segment: Segment; fh: FileHandle }> {
    const last = this.segments.at(-1);
    if (this.active !== undefined && this.active.segment === last && last.size < this.segmentBytes) return this.active;
    await this.active?.fh.close();
    this.active = undefined;
    if (last !== undefined && last.size < this.segmentBytes) {
      // The last segment after a restart: append to it.
      this.active = { segment: last, fh: await open(last.path, 'r+') };
      return this.active;
    }
    const id = ++this.lastId;
    const segment: Segment = { id, path: join(this.options.dir, `${String(id).padStart(20, '0')}.spool`), size: 0 };
    const fh = await open(segment.path, 'wx', PRIVATE_FILE_MODE);
    await fsyncDir(this.options.dir);
    this.segments.push(segment);
    this.active = { segment, fh };
    return this.active;
  }
}

async function readCursor(dir: string): Promise<SpoolPosition> {
  let text: string;
  try {
    text = await readFile(join(dir, CURSOR_FILE), 'utf8');
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return { segment: 0, position: 0 };
    throw err;
  }
  const parsed = JSON.parse(text) as Partial<SpoolPosition>;
  if (!Number.isSafeInteger(parsed.segment) || !Number.isSafeInteger(parsed.position)) {
    throw new Error(`corrupt spool cursor in ${dir}`);
  }
  return { segment: parsed.segment as number, position: parsed.position as number };
}

/** Size of the valid prefix of a segment; truncates the file to it (a torn tail from a crash). */
async function recoverTail(path: string): Promise<number> {
  const data = await readFile(path);
  let pos = 0;
  for (let d = decodeFrame(data, 0); d.kind === 'record'; d = decodeFrame(data, pos)) pos = d.next;
  if (pos < data.length) {
    const fh = await open(path, 'r+');
    try {
      await fh.truncate(pos);
      await fh.sync();
    } finally {
      await fh.close();
    }
  }
  return pos;
}

async function fileSize(path: string): Promise<number> {
  const fh = await open(path, 'r');
  try {
    return (await fh.stat()).size;
  } finally {
    await fh.close();
  }
}

async function readAt(fh: FileHandle, position: number, length: number): Promise<Buffer> {
  const buf = Buffer.allocUnsafe(length);
  let done = 0;
  while (done < length) {
    const { bytesRead } = await fh.read(buf, done, length - done, position + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return done === length ? buf : buf.subarray(0, done);
}

async function writeAll(fh: FileHandle, data: Buffer, position: number): Promise<void> {
  let done = 0;
  while (done < data.length) {
    const { bytesWritten } = await fh.write(data, done, data.length - done, position + done);
    done += bytesWritten;
  }
}



function isErrno(err: unknown, code: string): boolean {
  return err instanceof Error && (err as NodeJS.ErrnoException).code === code;
}
