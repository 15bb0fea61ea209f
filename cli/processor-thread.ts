import type { Logger } from '../lib/log.ts';
import { within } from '../lib/within.ts';
import { workerThread } from '../lib/worker-thread.ts';
import type { Config } from '../schemas/config.ts';
import type { Store } from '../store/store.ts';
import { rpcEndpoint, storeHandlers } from '../wiring/thread-rpc.ts';
import type { ProcessorStarted, ProcessorThreadData } from './processor-worker.ts';

/**
 * `farol start` on the local hub runs the processor on its own thread (cli/processor-worker.ts)
 * and keeps ingest (collector, API, the hub's writer) and the embedded engine on the main one, so
 * sessionizing and building rows never holds up a request. The two meet in the hub (the thread
 * reads what the collector made durable, as a `farol processor` beside a `farol collector` does,
 * woken through a shared buffer) and in the store, which this thread serves to the other (writes
 * through the backup's gate).
 */

export interface ProcessorThread {
  /** Resolves when the thread ends or fails without having been asked to drain (the process must exit non-zero). */
  readonly died: Promise<Error>;
  /**
   * The thread's metrics (Prometheus text). A thread busy in a long batch answers late: past a
   * quarter second the last text it rendered is served instead (its counters only ever lag), and
   * the late answer replaces it for the next scrape. Rejects only when it never answered.
   */
  metrics(): Promise<string>;
  /** See `ProcessorRuntime.sitesChanged`. */
  sitesChanged(): Promise<void>;
  /** See `ProcessorRuntime.hold`. */
  hold(released: Promise<void>): Promise<Map<number, number>>;
  /**
   * Drains the processor (flush, snapshot, checkpoint; bounded by FAROL_DRAIN_TIMEOUT_MS) and ends
   * the thread: false when it gave up writing what it held (the hub keeps it). Idempotent.
   */
  drain(): Promise<boolean>;
}

export interface ProcessorThreadDeps {
  /** The store the processor writes to (the gated engine). */
  store: Store;
  /** Shared with the main thread's writing hub (`sharedAppends`). */
  appends: SharedArrayBuffer;
  log: Logger;
}

/** How long the thread may take to render its metrics before the last rendering is served. */
const METRICS_WAIT_MS = 250;
/** How long the first rendering may take (there is no earlier one to serve). */
const METRICS_TIMEOUT_MS = 2_000;
/** Beyond the drain's own bound, how long the thread may take to end. */
const DRAIN_SLACK_MS = 15_000;

/** Starts the processor thread and resolves once its processor runs; rejects with the thread's error when it cannot start. */
export async function startProcessorThread(config: Config, deps: ProcessorThreadDeps): Promise<ProcessorThread> {
  const store = { kind: deps.store.kind, database: deps.store.database, encoded: deps.store.insertEncoded !== undefined };
  const data: ProcessorThreadData = { config, store, appends: deps.appends };
  const worker = workerThread(import.meta.url, './processor-worker', data);
  const rpc = rpcEndpoint(worker, storeHandlers(deps.store));
  let draining: Promise<boolean> | undefined;
  /** The thread's last metrics text, and the rendering asked for and not answered yet. */
  let lastMetrics: string | undefined;
  let rendering: Promise<string> | undefined;
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
      rpc.close('the processor thread ended');
      if (draining === undefined) reportDeath(failure ?? new Error(`the processor thread exited with code ${code}`));
      resolve();
    });
  });

  await new Promise<void>((resolve, reject) => {
    const onMessage = (m: unknown): void => {
      if (typeof m === 'object' && m !== null && (m as Partial<ProcessorStarted>).processor === 'started') {
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
    died,
    metrics: async () => {
      // One rendering asked at a time: scrapes while the thread is busy share it.
      rendering ??= rpc.call<string>('metrics').then(
        (text) => {
          lastMetrics = text;
          rendering = undefined;
          return text;
        },
        (err: unknown) => {
          rendering = undefined;
          throw err;
        },
      );
      const asked = rendering;
      const outcome = await within(asked, lastMetrics === undefined ? METRICS_TIMEOUT_MS : METRICS_WAIT_MS);
      if (outcome === 'done') return asked;
      asked.catch(() => undefined);
      if (lastMetrics === undefined) throw new Error(`the processor thread did not render its metrics in ${METRICS_TIMEOUT_MS} ms`);
      return lastMetrics;
    },
    sitesChanged: () => rpc.call<undefined>('sitesChanged').then(() => undefined),
    hold(released) {
      const offsets = rpc.call<Map<number, number>>('hold');
      void released.then(() => rpc.call('release').catch(() => undefined));
      return offsets;
    },
    drain() {
      draining ??= (async () => {
        // Dead already (reported through `died`): nothing to drain, the hub keeps what it did not write.
        if (exited) return false;
        let fully = false;
        const asked = rpc.call<boolean>('drain').then((f) => (fully = f));
        const bound = config.FAROL_DRAIN_TIMEOUT_MS + DRAIN_SLACK_MS;
        const outcome = await within(asked, bound).catch((err: unknown) => err);
        if (outcome === 'timed out') deps.log.error({ ms: bound }, 'the processor thread did not drain in time; ending it');
        else if (outcome instanceof Error) deps.log.error({ err: outcome }, 'the processor thread failed to drain');
        // Nothing native runs there: ending it is safe; what it did not checkpoint stays in the hub.
        await worker.terminate();
        await ended;
        return fully;
      })();
      return draining;
    },
  };
}
