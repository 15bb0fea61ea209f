import { z } from 'zod';
import { DAY_MS } from '../store/rows.ts';
import { isLive, isLiveClientId, type PartitionState, type Session, type StateLimits } from './partition-state.ts';

/**
 * Snapshot encoding of a partition's state: compact JSON, one array per session (field names
 * once, in `sessionFields`). Only live sessions and client ids are written, in their Map order,
 * so two processors that saw the same records write the same bytes whatever their batch
 * boundaries were.
 */

const sessionFields = [
  'site',
  'visitorId',
  'id',
  'start',
  'last',
  'pageviews',
  'events',
  'interactive',
  'entryPage',
  'exitPage',
  'version',
  'hostname',
  'referrer',
  'source',
  'channel',
  'utmSource',
  'utmMedium',
  'utmCampaign',
  'utmContent',
  'utmTerm',
  'country',
  'browser',
  'browserVersion',
  'os',
  'osVersion',
  'device',
  'screen',
  // Last, so that a snapshot written before epochs existed (one field fewer) still reads.
  'epoch',
  // After the epoch, for the same reason (snapshots from before salt days were stored).
  'saltDay',
] as const satisfies readonly (keyof Session)[];

const numericFields: ReadonlySet<string> = new Set(['start', 'last', 'pageviews', 'events', 'interactive', 'version', 'epoch', 'saltDay']);

/** Index of `start` in a session tuple, for the salt day of a session saved without one. */
const START = sessionFields.indexOf('start');

const envelopeSchema = z.object({
  v: z.literal(1),
  partition: z.number().int().min(0),
  offset: z.number().int().min(-1),
  maxTs: z.number().int().min(0),
  sessions: z.array(z.array(z.unknown())),
  dedup: z.array(z.tuple([z.string(), z.number()])),
});

/** A decoded snapshot: the state after every record up to and including `offset`. */
export interface DecodedSnapshot {
  partition: number;
  offset: number;
  state: PartitionState;
}

/** Thrown when a snapshot cannot be read back: never guessed around, since counts would drift. */
export class SnapshotError extends Error {
  override readonly name = 'SnapshotError';
}

/** Encodes the state of `partition` after every record up to `offset`. */
export function encodeSnapshot(partition: number, offset: number, state: PartitionState): Buffer {
  const parts = [...snapshotParts(partition, offset, state)];
  return Buffer.from(parts.join(''));
}

/**
 * The same bytes as {@link encodeSnapshot}, built a slice of entries at a time with the event
 * loop free in between: a large state takes long to encode, and the collector may share the
 * thread. The state must not change meanwhile (the processor encodes between flushes).
 */
export async function encodeSnapshotInSlices(partition: number, offset: number, state: PartitionState): Promise<Buffer> {
  const parts: string[] = [];
  for (const part of snapshotParts(partition, offset, state)) {
    parts.push(part);
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
  return Buffer.from(parts.join(''));
}

const SLICE = 5_000;

/** The snapshot's JSON text in pieces: `{"v":1,…,"sessions":[…],"dedup":[…]}`, a slice per piece. */
function* snapshotParts(partition: number, offset: number, state: PartitionState): Generator<string> {
  yield `{"v":1,"partition":${partition},"offset":${offset},"maxTs":${state.maxTs},"sessions":[`;
  let slice: unknown[] = [];
  let separator = '';
  const flush = (): string => {
    const text = separator + JSON.stringify(slice).slice(1, -1);
    separator = ',';
    slice = [];
    return text;
  };
  for (const s of state.sessions.values()) {
    if (!isLive(state, s)) continue;
    slice.push(sessionFields.map((f) => s[f]));
    if (slice.length === SLICE) yield flush();
  }
  if (slice.length > 0) yield flush();
  yield '],"dedup":[';
  separator = '';
  for (const [key, countedAt] of state.dedup) {
    if (!isLiveClientId(state, countedAt)) continue;
    slice.push([key, countedAt]);
    if (slice.length === SLICE) yield flush();
  }
  if (slice.length > 0) yield flush();
  yield ']}';
}

/** Decodes a snapshot written by {@link encodeSnapshot}; throws SnapshotError if it is malformed. */
export function decodeSnapshot(bytes: Buffer, limits: StateLimits): DecodedSnapshot {
  let parsed: z.infer<typeof envelopeSchema>;
  try {
    parsed = envelopeSchema.parse(JSON.parse(bytes.toString('utf8')));
  } catch (err) {
    throw new SnapshotError(`malformed processor snapshot: ${err instanceof Error ? err.message : String(err)}`);
  }
  const state: PartitionState = { limits, maxTs: parsed.maxTs, sessions: new Map(), dedup: new Map(parsed.dedup) };
  for (const tuple of parsed.sessions) {
    const s = sessionFromTuple(tuple);
    state.sessions.set(`${s.site}\n${s.visitorId}`, s);
  }
  return { partition: parsed.partition, offset: parsed.offset, state };
}

function sessionFromTuple(tuple: unknown[]): Session {
  // A session saved before epochs existed has no epoch: unknown (0), it matches any. One saved
  // before salt days has none: its start's day (what the back-fill of stored rows assumes too).
  if (tuple.length === sessionFields.length - 2) tuple = [...tuple, 0];
  if (tuple.length === sessionFields.length - 1) {
    const start = tuple[START];
    tuple = [...tuple, Number.isSafeInteger(start) ? Math.floor((start as number) / DAY_MS) : undefined];
  }
  if (tuple.length !== sessionFields.length) throw new SnapshotError('malformed processor snapshot: bad session');
  const s: Record<string, unknown> = {};
  for (let i = 0; i < sessionFields.length; i++) {
    const field = sessionFields[i] as string;
    const value = tuple[i];
    const ok = numericFields.has(field) ? Number.isSafeInteger(value) : typeof value === 'string';
    if (!ok) throw new SnapshotError(`malformed processor snapshot: session field ${field}`);
    s[field] = value;
  }
  return s as unknown as Session;
}
