import type { HttpResponse } from 'uWebSockets.js';
import { FarolError } from '../schemas/errors.ts';

/**
 * Reads a request body from uWebSockets.js with the cap enforced while reading (an oversize body is
 * refused as soon as it crosses the limit, not after buffering it) and a deadline for slow senders.
 * uWS reuses the chunk memory after the callback returns, so every chunk is copied.
 */
export function readBody(
  res: HttpResponse,
  limit: number,
  timeoutMs: number,
  contentLength: number,
  done: (err: FarolError | null, body: Buffer) => void,
): { cancel(): void } {
  let finished = false;
  const finish = (err: FarolError | null, body: Buffer): void => {
    if (finished) return;
    finished = true;
    clearTimeout(timer);
    done(err, body);
  };
  const declaredTooLarge = contentLength > limit;
  const timer = declaredTooLarge
    ? undefined
    : setTimeout(() => finish(new FarolError('ING_BODY_TIMEOUT', `body not received within ${timeoutMs} ms`), EMPTY), timeoutMs);
  const cancel = { cancel: () => ((finished = true), clearTimeout(timer)) };
  if (declaredTooLarge) {
    // Declared too large: answer without reading a byte.
    queueMicrotask(() => finish(new FarolError('ING_BODY_TOO_LARGE', `body is ${contentLength} bytes, limit ${limit}`), EMPTY));
    return cancel;
  }
  let chunks: Buffer[] | null = null;
  let size = 0;
  res.onData((chunk, isLast) => {
    if (finished) return;
    size += chunk.byteLength;
    if (size > limit) {
      finish(new FarolError('ING_BODY_TOO_LARGE', `body exceeds ${limit} bytes`), EMPTY);
      return;
    }
    if (isLast && chunks === null) {
      finish(null, Buffer.copyBytesFrom(new Uint8Array(chunk)));
      return;
    }
    (chunks ??= []).push(Buffer.copyBytesFrom(new Uint8Array(chunk)));
    if (isLast) finish(null, Buffer.concat(chunks, size));
  });
  return cancel;
}

const EMPTY = Buffer.alloc(0);
const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Decodes UTF-8 strictly (a lone surrogate or bad byte is an error, not U+FFFD) and parses JSON. */
export function decodeJson(body: Buffer): unknown {
  if (body.length === 0) throw new FarolError('ING_EMPTY_BODY');
  let text: string;
  try {
    text = utf8.decode(body);
  } catch {
    throw new FarolError('ING_BAD_UTF8');
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (e) {
    throw new FarolError('ING_BAD_JSON', `body is not valid JSON: ${(e as Error).message}`);
  }
}
