import { crc32 } from 'node:zlib';

/**
 * Record framing of the local hub's segment files. Each record is
 * `[u32 LE payload length][u32 LE crc32 of payload][u64 LE appendedAt ms][payload]`; a segment
 * file is records back to back, named after the offset of its first record.
 */

/** Bytes before each payload. */
export const HEADER_BYTES = 16;

/**
 * Largest payload accepted. Bounds what a corrupt length field can make a reader allocate, and
 * events are far smaller.
 */
export const MAX_PAYLOAD_BYTES = 16 * 1024 * 1024;

const TWO_POW_32 = 2 ** 32;

/** One decoded record, before it is given its partition and offset. */
export interface Frame {
  appendedAt: number;
  payload: Buffer;
}

/** Why decoding stopped: `limit` frames decoded, a `short` (incomplete) frame, or a `corrupt` one. */
export type DecodeStop = 'limit' | 'short' | 'corrupt';

export interface Decoded {
  frames: Frame[];
  /** Bytes of `buf` taken by the decoded frames. */
  end: number;
  stop: DecodeStop;
  /** For `short`: bytes needed from `end` to decode the next frame. */
  need: number;
}

/** Encodes payloads into one buffer of frames, so a group is written with a single call. */
export function encodeFrames(payloads: readonly Buffer[], appendedAt: number): Buffer {
  let total = 0;
  for (const p of payloads) total += HEADER_BYTES + p.length;
  const out = Buffer.allocUnsafe(total);
  let pos = 0;
  for (const p of payloads) pos = writeFrame(out, pos, p, appendedAt);
  return out;
}

function writeFrame(out: Buffer, pos: number, payload: Buffer, appendedAt: number): number {
  out.writeUInt32LE(payload.length, pos);
  out.writeUInt32LE(crc32(payload), pos + 4);
  // Two u32 halves instead of a BigInt: cheaper per record, exact up to 2^53.
  out.writeUInt32LE(appendedAt % TWO_POW_32, pos + 8);
  out.writeUInt32LE(Math.floor(appendedAt / TWO_POW_32), pos + 12);
  payload.copy(out, pos + HEADER_BYTES);
  return pos + HEADER_BYTES + payload.length;
}

/** Decodes up to `max` frames from the start of `buf`. Payloads are views into `buf`. */
export function decodeFrames(buf: Buffer, max: number): Decoded {
  const frames: Frame[] = [];
  let pos = 0;
  while (frames.length < max) {
    const r = decodeFrameAt(buf, pos);
    if (r.kind !== 'frame') return { frames, end: pos, stop: r.kind, need: r.kind === 'short' ? r.need : 0 };
    frames.push(r.frame);
    pos = r.next;
  }
  return { frames, end: pos, stop: 'limit', need: 0 };
}

type FrameAt =
  | { kind: 'frame'; frame: Frame; next: number }
  | { kind: 'short'; need: number }
  | { kind: 'corrupt' };

function decodeFrameAt(buf: Buffer, pos: number): FrameAt {
  if (buf.length - pos < HEADER_BYTES) return { kind: 'short', need: HEADER_BYTES };
  const length = buf.readUInt32LE(pos);
  if (length > MAX_PAYLOAD_BYTES) return { kind: 'corrupt' };
  const next = pos + HEADER_BYTES + length;
  if (next > buf.length) return { kind: 'short', need: HEADER_BYTES + length };
  const appendedAt = buf.readUInt32LE(pos + 8) + buf.readUInt32LE(pos + 12) * TWO_POW_32;
  // A zero timestamp is never written; it marks a zero-filled tail, whose all-zero header would
  // otherwise pass as an empty payload with crc 0.
  if (appendedAt === 0) return { kind: 'corrupt' };
  const payload = buf.subarray(pos + HEADER_BYTES, next);
  if (crc32(payload) !== buf.readUInt32LE(pos + 4)) return { kind: 'corrupt' };
  return { kind: 'frame', frame: { appendedAt, payload }, next };
}

/** How many whole frames, and how many bytes, of an encoded group fit in its first `written` bytes. */
export function wholeFramesWithin(encoded: Buffer, written: number): { count: number; bytes: number } {
  let count = 0;
  let pos = 0;
  while (pos + HEADER_BYTES <= written) {
    const next = pos + HEADER_BYTES + encoded.readUInt32LE(pos);
    if (next > written) break;
    count++;
    pos = next;
  }
  return { count, bytes: pos };
}

const SEGMENT_NAME = /^(\d{20})\.log$/;

/** `<baseOffset, 20 digits zero padded>.log`, so names sort like offsets. */
export function segmentFileName(baseOffset: number): string {
  return `${String(baseOffset).padStart(20, '0')}.log`;
}

/** The base offset a segment file name stands for, or undefined for any other file. */
export function parseSegmentFileName(name: string): number | undefined {
  const m = SEGMENT_NAME.exec(name);
  return m?.[1] === undefined ? undefined : Number(m[1]);
}
