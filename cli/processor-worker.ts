import { parentPort, workerData } from 'node:worker_threads';
import { startLocalProcessor } from '../processor/main.ts';
import { createLogger, hideInLogs } from '../lib/log.ts';
import { Registry } from '../lib/metrics.ts';
import type { Config } from '../schemas/config.ts';
import { secretValues } from '../schemas/secrets.ts';
import type { Store } from '../store/store.ts';
import { drainedFully } from '../wiring/drain.ts';
import { openConfiguredLocalHubReadOnly } from '../wiring/hub.ts';
import { rpcEndpoint, storeOverRpc } from '../wiring/thread-rpc.ts';

/**
 * The processor thread of `farol start` on the local hub (started by cli/processor-thread.ts):
 * reads the hub the main thread's collector writes (read-only, woken through the shared append
 * buffer), sessionizes and builds the rows here, and writes them through the main thread, which
 * owns the embedded engine (chDB cannot be loaded in a worker thread: it crashes the process when
 * the thread ends). Signals reach the main thread only: it asks this one to drain (`drain`), to
 * quiet down for a backup (`hold`/`release`), to reload the sites (`sitesChanged`), and reads its
 * metrics (`metrics`). No native addon is loaded here, so ending the thread is always safe.
 */

/** What the main thread hands this one (structured clone of the parsed configuration). */
export interface ProcessorThreadData {
  config: Config;
  /** `encoded`: the store takes `insertEncoded` (the rows are encoded on this thread). */
  store: { kind: Store['kind']; database: string; encoded: boolean };
  /** The hub's appends, published by the main thread's writing hub (`sharedAppends`). */
  appends: SharedArrayBuffer;
}

/** The first message of the thread, once the processor runs. */
export interface ProcessorStarted {
  processor: 'started';
}

async function run(): Promise<void> {
  const port = parentPort;
  if (port === null) throw new Error('cli/processor-worker.ts runs as a worker thread of `farol start`');
  const data = workerData as ProcessorThreadData;
  const { config } = data;
  hideInLogs(secretValues(config));
  const log = createLogger(config.FAROL_LOG_LEVEL, { service: 'farol', thread: 'processor' });
  const metrics = new Registry();
  let letGo: (() => void) | undefined;
  let draining: Promise<boolean> | undefined;
  const rpc = rpcEndpoint(port, {
    metrics: () => metrics.render(),
    sitesChanged: () => processor.sitesChanged(),
    // Resolves the offsets once quiet; the partitions stay held until `release`.
    hold: () => {
      letGo?.();
      const released = new Promise<void>((resolve) => (letGo = resolve));
      return processor.hold(released);
    },
    release: () => {
      letGo?.();
      letGo = undefined;
    },
    // Flush, snapshot and checkpoint (bounded by FAROL_DRAIN_TIMEOUT_MS); false when writes were given up.
    drain: () =>
      (draining ??= (async () => {
        letGo?.();
        const fully = await drainedFully(processor, log);
        await hub.close();
        return fully;
      })()),
  });
  const store = storeOverRpc(rpc, data.store.kind, data.store.database, data.store.encoded);
  const hub = await openConfiguredLocalHubReadOnly(config, log, data.appends);
  const processor = await startLocalProcessor(config, { hub, store, log, metrics });
  port.postMessage({ processor: 'started' } satisfies ProcessorStarted);
}

// No top-level await: in development the thread loads this file through tsx's require hook (see
// cli/processor-thread.ts). A failure is thrown as uncaught: the thread ends and the main thread ends the process.
run().catch((err: unknown) => {
  setImmediate(() => {
    throw err;
  });
});
