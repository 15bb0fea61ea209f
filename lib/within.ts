/**
 * Waits for `work` at most `ms`: `'done'` once it resolved (a rejection is rethrown), or
 * `'timed out'`. Work that times out goes on unwatched (a later rejection is swallowed): the caller
 * logs what it gave up waiting for. Used to bound the closes of a drain, so SIGTERM always ends.
 */
export async function within(work: Promise<unknown>, ms: number): Promise<'done' | 'timed out'> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<'timed out'>((resolve) => {
    timer = setTimeout(() => resolve('timed out'), ms);
  });
  const watched = work.then(() => 'done' as const);
  try {
    return await Promise.race([watched, expired]);
  } finally {
    clearTimeout(timer);
    watched.catch(() => {});
  }
}

/** Resolves after `ms`, or at once when `signal` aborts (a retry's backoff that a drain cuts short). */
export function abortableSleep(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}
