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
 * the server's memory budget. uWS reuses the chunk memory after the callback returns, so every chunk
 * is copied. `done` is called once; when it refuses the body, the caller writes its answer at once
 * (inside `done`) with {@link endAnswer}; when the client went away first, `done` gets a refusal
 * too, after `onAborted`, and nothing can be written. The memory a body holds is released when
 * `done` returns, or at once when the body is refused or the client aborts.
 */
export function readBody(res: HttpResponse, opts: BodyOptions, done: (result: BodyResult) => void): void {
  const { limit, memory, contentLength, dialect } = opts;
  let state: 'reading' | 'done' | 'discarding' | 'aborted' = 'reading';
  let chunks: Buffer[] | null = null;
  let size = 0;
  let discarded = 0;
  let timer: NodeJS.Timeout | undefined;

  const refuse = (error: FarolError, answer: Answer): void => {
    state = answer === 'stream' ? 'discarding' : 'done';
    clearTimeout(timer);
    memory.release(size);
    chunks = null;
    if (answer === 'stream') timer = setTimeout(stopDiscarding, LINGER_MAX_MS);
    done({ ok: false, error, answer });
  };
  // Past the discard bound: close, even if the client may then miss the answer.
  const stopDiscarding = (): void => {
    if (state !== 'discarding') return;
    state = 'done';
    clearTimeout(timer);
    res.close();
  };
  // Mid-body, the answer must let the rest be read: uWS discards the rest of a declared length.
  const midBody = (): Answer => (contentLength > 0 ? 'linger' : 'stream');

  res.onAborted(() => {
    const reading = state === 'reading';
    if (reading) memory.release(size);
    state = 'aborted';
    chunks = null;
    clearTimeout(timer);
    opts.onAborted();
    // `done` is still called once, so the caller's request accounting ends; nothing can be written.
    if (reading) done({ ok: false, error: transportError(dialect, 'bodyTimeout', 'the client went away before sending the whole body'), answer: 'keep' });
  });

  if (contentLength > limit) {
    // Declared too large: answer without buffering a byte (after the handler returns, as uWS wants).
    queueMicrotask(() => {
      if (state !== 'reading') return;
      const error = transportError(dialect, 'bodyTooLarge', `body is ${contentLength} bytes, limit ${limit}`);
      refuse(error, contentLength <= LINGER_MAX_BYTES ? 'linger' : 'close');
    });
    return;
  }
  timer = setTimeout(() => {
    if (state === 'reading') refuse(transportError(dialect, 'bodyTimeout', `body not received within ${opts.timeoutMs} ms`), 'close');
  }, opts.timeoutMs);

  res.onData((chunk, isLast) => {
    if (state === 'discarding') {
      discarded += chunk.byteLength;
      if (isLast) {
        state = 'done';
        clearTimeout(timer);
        res.cork(() => res.end());
      } else if (discarded > LINGER_MAX_BYTES) stopDiscarding();
      return;
    }
    if (state !== 'reading') return;
    const n = chunk.byteLength;
    if (size + n > limit) {
      refuse(transportError(dialect, 'bodyTooLarge', `body exceeds ${limit} bytes`), isLast ? 'keep' : midBody());
      return;
    }
    if (!memory.take(n)) {
      refuse(transportError(dialect, 'bodyMemoryFull'), isLast ? 'keep' : midBody());
      return;
    }
    size += n;
    if (isLast && chunks === null) {
      finish(Buffer.copyBytesFrom(new Uint8Array(chunk)));
      return;
    }
    (chunks ??= []).push(Buffer.copyBytesFrom(new Uint8Array(chunk)));
    if (isLast) finish(Buffer.concat(chunks, size));
  });

  function finish(body: Buffer): void {
    state = 'done';
    clearTimeout(timer);
    chunks = null;
    // The caller decodes the body synchronously in `done`; after that it is garbage.
    try {
      done({ ok: true, body });
    } finally {
      memory.release(size);
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
