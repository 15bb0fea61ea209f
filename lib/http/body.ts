import type { HttpResponse } from 'uWebSockets.js';
import { transportError, type Dialect, type FarolError } from '../../schemas/errors.ts';
import { badStringInJson, badStringMessage, formatPath } from '../../schemas/unicode.ts';

/**
 * Request bodies over uWebSockets.js: read with a size cap, a deadline and a memory budget shared
 * by every connection of a server; refused so that the client can read the answer; decoded as
 * strict UTF-8 JSON whose strings are all well-formed Unicode without NUL.
 */

/**
 * Body bytes held in memory by the requests of one server (FAROL_MAX_BODY_MEMORY): a request
 * whose next chunk would pass the cap is refused (503) and what it held is released.
 */
export class BodyMemory {
  private used = 0;
  constructor(readonly max: number) {}

  /** Bytes held now. */
  get bytes(): number {
    return this.used;
  }

  /** Reserves `n` bytes; false, with nothing reserved, when that would pass the cap. */
  take(n: number): boolean {
    if (this.used + n > this.max) return false;
    this.used += n;
    return true;
  }

  release(n: number): void {
    this.used -= n;
  }
}

// One budget per uWS app: the collector and the API routes `farol start` mounts on its app (one
// port, one set of connections) share it.
const memoryByApp = new WeakMap<object, BodyMemory>();

/** The body memory of `app`, made with cap `max` by its first caller. */
export function bodyMemoryOf(app: object, max: number): BodyMemory {
  let m = memoryByApp.get(app);
  if (m === undefined) {
    m = new BodyMemory(max);
    memoryByApp.set(app, m);
  }
  return m;
}

/**
 * How the answer to a refused body is written, so that the client reads it instead of a reset
 * (closing a socket with unread bytes makes the kernel send RST, and the client may lose the
 * answer while it is still writing):
 * - `keep`: an ordinary answer; nothing of the body is left to read.
 * - `close`: answer and close (a slow body; a declared body too large to read past).
 * - `linger`: answer at once, with `Connection: close`; the rest of the declared body (bounded)
 *   is read and discarded by uWS before the client closes.
 * - `stream`: a body of unknown length (chunked): the status and the coded body go out at once as
 *   a chunk, the rest is read and discarded up to {@link LINGER_MAX_BYTES} / {@link LINGER_MAX_MS},
 *   then the answer ends (or the connection closes past the bound), as nginx's lingering close.
 */
export type Answer = 'keep' | 'close' | 'linger' | 'stream';

/** How much of a refused body is read and discarded so the client can read the answer. */
export const LINGER_MAX_BYTES = 8 * 1024 * 1024;
export const LINGER_MAX_MS = 10_000;

export type BodyResult = { ok: true; body: Buffer } | { ok: false; error: FarolError; answer: Answer };

export interface BodyOptions {
  /** The vocabulary of the refusals (the route's). */
  dialect: Dialect;
  /** The cap of this route's body in bytes. */
  limit: number;
  /** The whole body must arrive within this (a slow sender is answered 408). */
  timeoutMs: number;
  /** Content-Length as declared; 0 when absent (chunked). */
  contentLength: number;
  memory: BodyMemory;
  /** The client went away; readBody takes the response's `onAborted`, and calls this. */
  onAborted(): void;
}

/**
 * Reads a request body from uWebSockets.js with the cap enforced while reading (an oversize body is
 * refused as soon as it crosses the limit, not after buffering it), a deadline for slow senders and
 * the server's memory budget. `done` is called once, with `opts` as its second argument (so a
 * caller can pass one function for every request); when it refuses the body, the caller writes
 * its answer at once (inside `done`) with {@link endAnswer}; when the client went away first,
 * `done` gets a refusal too, after `onAborted`, and nothing can be written. The memory a body
 * holds is released when `done` returns, or at once when the body is refused or the client aborts.
 *
 * The body is valid only until `done` returns: a body that arrives in one chunk (nearly all) is a
 * view of uWS's chunk memory, which uWS detaches once the chunk's callback returns; one in several
 * chunks is copied chunk by chunk. Decode it inside `done`, never keep it.
 */
export function readBody<O extends BodyOptions>(res: HttpResponse, opts: O, done: (result: BodyResult, opts: O) => void): void {
  // One object per request with prototype methods, and two closures for uWS: no closure per step.
  const reader = new BodyReader(res, opts, done as (result: BodyResult, opts: BodyOptions) => void);
  res.onAborted(() => reader.aborted());
  if (opts.contentLength > opts.limit) {
    // Declared too large: answer without buffering a byte (after the handler returns, as uWS wants).
    queueMicrotask(() => reader.declaredTooLarge());
    return;
  }
  deadlinesOf(opts.timeoutMs).add(reader);
  res.onData((chunk, isLast) => reader.data(chunk, isLast));
}

const READING = 0;
const DONE = 1;
const DISCARDING = 2;
const ABORTED = 3;

function bodyTimedOut(reader: BodyReader): void {
  if (reader.state === READING) reader.refuse(transportError(reader.opts.dialect, 'bodyTimeout', `body not received within ${reader.opts.timeoutMs} ms`), 'close');
}

/**
 * The body deadlines of one timeout: the readers still reading, in arrival order (so in deadline
 * order), as a linked list through the readers, and one timer for the earliest. A reader joins
 * when its request arrives and leaves when its body is read, in O(1) and without allocating: a
 * Node timer per request (a Timeout object, a native clock read, a timer list made and dropped
 * around nearly every request, whose body is read in the same turn) was a visible part of the
 * collector's per-request CPU. The timer is unref'd: a reader is always held by an open
 * connection, which keeps the process alive on its own.
 */
class Deadlines {
  private head: BodyReader | null = null;
  private tail: BodyReader | null = null;
  private timer: NodeJS.Timeout | undefined = undefined;

  constructor(readonly ms: number) {}

  add(r: BodyReader): void {
    r.deadline = performance.now() + this.ms;
    r.deadlines = this;
    r.prev = this.tail;
    r.next = null;
    if (this.tail === null) this.head = r;
    else this.tail.next = r;
    this.tail = r;
    if (this.timer === undefined) this.arm(this.ms);
  }

  remove(r: BodyReader): void {
    if (r.deadlines !== this) return;
    if (r.prev === null) this.head = r.next;
    else r.prev.next = r.next;
    if (r.next === null) this.tail = r.prev;
    else r.next.prev = r.prev;
    r.prev = null;
    r.next = null;
    r.deadlines = null;
  }

  private arm(delay: number): void {
    this.timer = setTimeout(() => this.fire(), Math.max(1, Math.ceil(delay)));
    this.timer.unref();
  }

  private fire(): void {
    this.timer = undefined;
    const now = performance.now();
    try {
      for (let r = this.head; r !== null && r.deadline <= now; r = this.head) {
        this.remove(r);
        bodyTimedOut(r);
      }
    } finally {
      if (this.head !== null && this.timer === undefined) this.arm(this.head.deadline - now);
    }
  }
}

// One list per timeout (the collector's and the API's), for the life of the process.
const deadlinesByMs = new Map<number, Deadlines>();

function deadlinesOf(ms: number): Deadlines {
  let d = deadlinesByMs.get(ms);
  if (d === undefined) {
    d = new Deadlines(ms);
    deadlinesByMs.set(ms, d);
  }
  return d;
}

function lingerTimedOut(reader: BodyReader): void {
  reader.stopDiscarding();
}

class BodyReader {
  state = READING;
  chunks: Buffer[] | null = null;
  size = 0;
  discarded = 0;
  /** The linger timer of a refused body being discarded. */
  timer: NodeJS.Timeout | undefined = undefined;
  /** While reading: the body deadline and its place in the {@link Deadlines} list. */
  deadline = 0;
  deadlines: Deadlines | null = null;
  prev: BodyReader | null = null;
  next: BodyReader | null = null;

  constructor(
    readonly res: HttpResponse,
    readonly opts: BodyOptions,
    readonly done: (result: BodyResult, opts: BodyOptions) => void,
  ) {}

  stopTimers(): void {
    this.deadlines?.remove(this);
    clearTimeout(this.timer);
  }

  refuse(error: FarolError, answer: Answer): void {
    this.state = answer === 'stream' ? DISCARDING : DONE;
    this.stopTimers();
    this.opts.memory.release(this.size);
    this.chunks = null;
    if (answer === 'stream') this.timer = setTimeout(lingerTimedOut, LINGER_MAX_MS, this);
    this.done({ ok: false, error, answer }, this.opts);
  }

  // Past the discard bound: close, even if the client may then miss the answer.
  stopDiscarding(): void {
    if (this.state !== DISCARDING) return;
    this.state = DONE;
    this.stopTimers();
    this.res.close();
  }

  // Mid-body, the answer must let the rest be read: uWS discards the rest of a declared length.
  midBody(): Answer {
    return this.opts.contentLength > 0 ? 'linger' : 'stream';
  }

  aborted(): void {
    const reading = this.state === READING;
    if (reading) this.opts.memory.release(this.size);
    this.state = ABORTED;
    this.chunks = null;
    this.stopTimers();
    this.opts.onAborted();
    // `done` is still called once, so the caller's request accounting ends; nothing can be written.
    if (reading) this.done({ ok: false, error: transportError(this.opts.dialect, 'bodyTimeout', 'the client went away before sending the whole body'), answer: 'keep' }, this.opts);
  }

  declaredTooLarge(): void {
    if (this.state !== READING) return;
    const { contentLength, limit, dialect } = this.opts;
    const error = transportError(dialect, 'bodyTooLarge', `body is ${contentLength} bytes, limit ${limit}`);
    this.refuse(error, contentLength <= LINGER_MAX_BYTES ? 'linger' : 'close');
  }

  data(chunk: ArrayBuffer, isLast: boolean): void {
    if (this.state === DISCARDING) {
      this.discarded += chunk.byteLength;
      if (isLast) {
        this.state = DONE;
        this.stopTimers();
        this.res.cork(() => this.res.end());
      } else if (this.discarded > LINGER_MAX_BYTES) this.stopDiscarding();
      return;
    }
    if (this.state !== READING) return;
    const n = chunk.byteLength;
    const { limit, memory, dialect } = this.opts;
    if (this.size + n > limit) {
      this.refuse(transportError(dialect, 'bodyTooLarge', `body exceeds ${limit} bytes`), isLast ? 'keep' : this.midBody());
      return;
    }
    if (!memory.take(n)) {
      this.refuse(transportError(dialect, 'bodyMemoryFull'), isLast ? 'keep' : this.midBody());
      return;
    }
    this.size += n;
    // The whole body in one chunk: decoded in `done`, before uWS takes the memory back.
    if (isLast && this.chunks === null) {
      this.finish(Buffer.from(chunk));
      return;
    }
    // uWS reuses a chunk's memory once its callback returns: a body in parts is copied.
    (this.chunks ??= []).push(Buffer.copyBytesFrom(new Uint8Array(chunk)));
    if (isLast) this.finish(Buffer.concat(this.chunks, this.size));
  }

  finish(body: Buffer): void {
    this.state = DONE;
    this.stopTimers();
    this.chunks = null;
    try {
      this.done({ ok: true, body }, this.opts);
    } finally {
      this.opts.memory.release(this.size);
    }
  }
}

/**
 * Writes the body of an answer, after its status and headers, inside `res.cork`: ends it, or for a
 * refused body, as its {@link Answer} says.
 */
export function endAnswer(res: HttpResponse, body: string | Buffer, answer: Answer = 'keep'): void {
  if (answer === 'linger') res.writeHeader('Connection', 'close');
  if (answer === 'stream') res.write(body);
  else res.end(body, answer === 'close');
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Decodes a JSON body: UTF-8 strictly (a bad byte or an encoded surrogate is an error, not
 * U+FFFD), then JSON, then every string checked to be well-formed Unicode without NUL (a
 * `\ud800` or `\u0000` escape), naming a refused string's place (`[3].props.k`,
 * `filters[0][2]`). Failures are coded errors in `dialect`'s vocabulary.
 */
export function decodeJson(body: Buffer, dialect: Dialect): unknown {
  if (body.length === 0) throw transportError(dialect, 'emptyBody', undefined, { field: 'body' });
  let text: string;
  try {
    text = utf8.decode(body);
  } catch (e) {
    throw transportError(dialect, 'badUtf8', 'Body is not valid UTF-8', { field: 'body', cause: e });
  }
  let value: unknown;
  try {
    value = JSON.parse(text) as unknown;
  } catch (e) {
    throw transportError(dialect, 'badJson', `body is not valid JSON: ${(e as Error).message}`, { field: 'body' });
  }
  const bad = badStringInJson(text, value);
  if (bad !== undefined) throw transportError(dialect, 'badString', badStringMessage(bad), { field: formatPath(bad.path) || 'body' });
  return value;
}
