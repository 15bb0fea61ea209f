import { open, readdir, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { isErrnoException } from './local-common.ts';
import { decodeFrames, parseSegmentFileName, type Frame } from './local-format.ts';

/** A segment file of one partition. */
export interface SegmentFile {
  base: number;
  path: string;
}

/** The segment files of a partition directory, oldest first; none if the directory is missing. */
export async function listSegments(partitionDir: string): Promise<SegmentFile[]> {
  let names: string[];
  try {
    names = await readdir(partitionDir);
  } catch (err) {
    if (isErrnoException(err, 'ENOENT')) return [];
    throw err;
  }
  const segments: SegmentFile[] = [];
  for (const name of names) {
    const base = parseSegmentFileName(name);
    if (base !== undefined) segments.push({ base, path: join(partitionDir, name) });
  }
  return segments.sort((a, b) => a.base - b.base);
}

export { fsyncDir, writeFileAtomic } from '../lib/durable-file.ts';

/** Bytes read from a segment per read call: large enough that reads are few, small enough to bound memory. */
const READ_CHUNK_BYTES = 256 * 1024;
const EMPTY = Buffer.alloc(0);

/** Why a cursor read returned: `limit` frames read, at the `end` of the valid data, or at a `corrupt` frame. */
export type CursorStop = 'limit' | 'end' | 'corrupt';

/**
 * Reads frames forward through one segment file from a file position, keeping its place so each
 * read continues where the last stopped instead of rescanning the segment.
 *
 * Only whole, crc-valid frames are returned. At an incomplete or corrupt frame the buffered bytes
 * are dropped and the next read goes back to the file: the tail may still be being written, or a
 * recovering writer may have truncated and rewritten it.
 */
export class SegmentCursor {
  /** Bytes read from the file, starting at `bufPos`, not yet returned as frames. */
  private buf: Buffer = EMPTY;
  private bufPos: number;
  private scratch: Buffer = EMPTY;

  constructor(
    private readonly fh: FileHandle,
    position = 0,
  ) {
    this.bufPos = position;
  }

  /** File position just after the last frame returned. */
  get position(): number {
    return this.bufPos;
  }

  async read(max: number): Promise<{ frames: Frame[]; stop: CursorStop }> {
    const frames: Frame[] = [];
    for (;;) {
      const d = decodeFrames(this.buf, max - frames.length);
      for (const f of d.frames) frames.push(f);
      this.buf = this.buf.subarray(d.end);
      this.bufPos += d.end;
      if (d.stop === 'limit') return { frames, stop: 'limit' };
      if (d.stop === 'corrupt') {
        this.buf = EMPTY;
        return { frames, stop: 'corrupt' };
      }
      if ((await this.fill(d.need)) === 0) {
        this.buf = EMPTY;
        return { frames, stop: 'end' };
      }
    }
  }

  /** Appends the next file bytes to `buf`; returns how many were read (0 at end of file). */
  private async fill(need: number): Promise<number> {
    const size = Math.max(READ_CHUNK_BYTES, need - this.buf.length);
    if (this.scratch.length < size) this.scratch = Buffer.allocUnsafe(size);
    const { bytesRead } = await this.fh.read(this.scratch, 0, size, this.bufPos + this.buf.length);
    // Copied out of the scratch buffer because returned payloads are views that must stay valid.
    if (bytesRead > 0) this.buf = Buffer.concat([this.buf, this.scratch.subarray(0, bytesRead)]);
    return bytesRead;
  }

  close(): Promise<void> {
    return this.fh.close();
  }
}

/** Opens a segment read-only and positions a cursor at its start. */
export async function openSegmentCursor(path: string): Promise<SegmentCursor> {
  return new SegmentCursor(await open(path, 'r'), 0);
}

/** Walks a segment's frames: how many are valid, and where the valid data ends. */
export async function scanSegment(path: string): Promise<{ count: number; validBytes: number }> {
  const cursor = await openSegmentCursor(path);
  try {
    let count = 0;
    for (;;) {
      const r = await cursor.read(4096);
      count += r.frames.length;
      if (r.stop !== 'limit') return { count, validBytes: cursor.position };
    }
  } finally {
    await cursor.close();
  }
}
