import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';

/**
 * A worker thread running the module `name` (e.g. `./processor-worker`) beside the module at
 * `base` (its `import.meta.url`): compiled (dist/, `.js`) in production; in development the
 * sources through tsx, whose require hook the thread registers itself (Node 20 gives a worker
 * none of the ESM loader hooks `--import tsx` registered, nodejs/node#47747). The entry must
 * therefore not use top-level await.
 */
export function workerThread(base: string, name: string, workerData: unknown): Worker {
  if (!base.endsWith('.ts')) return new Worker(new URL(`${name}.js`, base), { workerData });
  const tsx = createRequire(base).resolve('tsx/cjs/api');
  const entry = fileURLToPath(new URL(`${name}.ts`, base));
  return new Worker(`require(${JSON.stringify(tsx)}).register(); require(${JSON.stringify(entry)});`, { eval: true, workerData });
}
