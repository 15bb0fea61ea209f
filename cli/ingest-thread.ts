import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { Logger } from '../lib/log.ts';
import { within } from '../lib/within.ts';
import type { Config } from '../schemas/config.ts';
import type { Store } from '../store/store.ts';
import { rpcEndpoint, storeHandlers } from '../wiring/thread-rpc.ts';
import type { IngestHubOpen, IngestThreadData } from './ingest-worker.ts';

/**
 * `farol start` on the local hub runs ingest on its own thread (cli/ingest-worker.ts: collector,
 * API routes, enrichment, the hub's writer) and keeps the processor and the embedded engine on
 * the main thread, so neither waits for the other's event loop. The two meet in the hub (the
 * processor reads what the collector made durable, as a `farol processor` beside a `farol
 * collector` does) and in the store, which this thread serves to the other (writes through the
 * backup's gate).
 */

export interface IngestThread {
  /** Starts the collector (and the API routes on its app); resolves the port it listens on. */
  listen(): Promise<number>;
  /** Resolves when the thread ends or fails without having been asked to stop (the process must exit non-zero). */
  readonly died: Promise<Error>;
  /** The thread's metrics (Prometheus text): the collector's and the API's. */
  metrics(): Promise<string>;
  /** Reloads the TLS certificate files (the main thread got SIGHUP). */
  reloadTls(): Promise<void>;
  /** Stops taking requests, answers those in flight, closes the hub's writer, ends the thread. Idempotent. */
  stop(): Promise<void>;
}

export interface IngestThreadDeps {
  /** The store the thread's API and control plane use (the gated engine). */
  store: Store;
  /** Shared with the processor's read-only hub (`sharedAppends`): the thread's appends wake it. */
  appends: SharedArrayBuffer;
  log: Logger;
  /** A site was registered, changed or deleted through the API: the processor reloads, and writes in flight end. */
  sitesChanged(): Promise<void>;
}

/** How long the thread may take to answer the requests in flight and close the hub on stop. */
const STOP_TIMEOUT_MS = 30_000;
/** How long the thread may take to render its metrics. */
const METRICS_TIMEOUT_MS = 2_000;

/**
 * The thread running cli/ingest-worker: compiled (dist/) in production; in development the sources
 * through tsx, whose require hook the thread registers itself (Node 20 gives a worker none of the
 * ESM loader hooks `--import tsx` registered, nodejs/node#47747).
 */
function newWorker(workerData: IngestThreadData): Worker {
  if (!import.meta.url.endsWith('.ts')) return new Worker(new URL('./ingest-worker.js', import.meta.url), { workerData });
  const tsx = createRequire(import.meta.url).resolve('tsx/cjs/api');
  const entry = fileURLToPath(new URL('./ingest-worker.ts', import.meta.url));
  return new Worker(`require(${JSON.stringify(tsx)}).register(); require(${JSON.stringify(entry)});`, { eval: true, workerData });
}

/**
 * Starts the ingest thread and resolves once it holds the hub for writing (so the processor may
 * read it); rejects with the thread's error when it cannot.
 */
export async function startIngestThread(config: Config, deps: IngestThreadDeps): Promise<IngestThread> {
  const data: IngestThreadData = { config, store: { kind: deps.store.kind, database: deps.store.database }, appends: deps.appends };
  const worker = newWorker(data);
  const rpc = rpcEndpoint(worker, { ...storeHandlers(deps.store), sitesChanged: () => deps.sitesChanged() });
  let stopping: Promise<void> | undefined;
  let exited = false;
  let reportDeath!: (err: Error) => void;
  const died = new Promise<Error>((resolve) => (reportDeath = resolve));
  let failure: Error | undefined;
  worker.on('error', (err) => {
    failure ??= err;
  });
  const ended = new Promise<void>((resolve) => {
    worker.once('exit', (code) => {
      exited = true;
      rpc.close('the ingest thread ended');
      if (stopping === undefined) reportDeath(failure ?? new Error(`the ingest thread exited with code ${code}`));
      resolve();
    });
  });

  await new Promise<void>((resolve, reject) => {
    const onMessage = (m: unknown): void => {
      if (typeof m === 'object' && m !== null && (m as Partial<IngestHubOpen>).ingest === 'hub open') {
        worker.off('message', onMessage);
        resolve();
      }
    };
    worker.on('message', onMessage);
    void died.then((err) => {
      worker.off('message', onMessage);
      reject(err);
    });
  });

  return {
    listen: () => rpc.call<number>('listen'),
    died,
    metrics: async () => {
      const text = rpc.call<string>('metrics');
      if ((await within(text, METRICS_TIMEOUT_MS)) === 'timed out') throw new Error(`the ingest thread did not render its metrics in ${METRICS_TIMEOUT_MS} ms`);
      return text;
    },
    reloadTls: () => rpc.call<undefined>('reloadTls').then(() => undefined),
    stop() {
      stopping ??= (async () => {
        if (!exited) {
          const asked = rpc.call('stop');
          const outcome = await within(asked, STOP_TIMEOUT_MS).catch((err: unknown) => err);
          if (outcome === 'timed out') deps.log.error({ ms: STOP_TIMEOUT_MS }, 'the ingest thread did not stop in time; ending it');
          else if (outcome instanceof Error && !exited) deps.log.error({ err: outcome }, 'the ingest thread failed to stop; ending it');
        }
        // Its keep-alive connections would hold the thread: everything it acknowledged is durable by now.
        await worker.terminate();
        await ended;
      })();
      return stopping;
    },
  };
}
