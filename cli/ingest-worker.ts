import { parentPort, workerData } from 'node:worker_threads';
import { startCollector, type CollectorRuntime } from '../ingest/main.ts';
import { createLogger, hideInLogs } from '../lib/log.ts';
import { configuredTls } from '../lib/http/tls.ts';
import { Registry } from '../lib/metrics.ts';
import type { Config } from '../schemas/config.ts';
import { secretValues } from '../schemas/secrets.ts';
import type { Store } from '../store/store.ts';
import { collectorControl } from '../wiring/control.ts';
import { openConfiguredLocalHub } from '../wiring/hub.ts';
import { rpcEndpoint, storeOverRpc } from '../wiring/thread-rpc.ts';

/**
 * The ingest thread of `farol start` on the local hub (started by cli/ingest-thread.ts): the
 * collector's uWebSockets.js app with the API routes on it, enrichment, and the local hub's
 * writer (a 202 only once fsynced, as ever). The store (the embedded engine, which one thread
 * owns) is the main thread's, reached by message; so is the processor, told of site changes.
 * Signals reach the main thread only: it asks this thread to stop (`stop`) or to reload the
 * certificate (`reloadTls`), and reads its metrics (`metrics`). It opens the hub first, and
 * listens when the main thread asks (`listen`), once the processor runs.
 */

/** What the main thread hands this one (structured clone of the parsed configuration). */
export interface IngestThreadData {
  config: Config;
  store: { kind: Store['kind']; database: string };
  /** The hub's appends, seen by the main thread's read-only hub (`sharedAppends`). */
  appends: SharedArrayBuffer;
}

/** The first message of the thread, once the hub is open for writing (its torn tails recovered). */
export interface IngestHubOpen {
  ingest: 'hub open';
}

async function run(): Promise<void> {
  const port = parentPort;
  if (port === null) throw new Error('cli/ingest-worker.ts runs as a worker thread of `farol start`');
  const data = workerData as IngestThreadData;
  const { config } = data;
  hideInLogs(secretValues(config));
  const log = createLogger(config.FAROL_LOG_LEVEL, { service: 'farol', thread: 'ingest' });
  const metrics = new Registry();
  let runtime: CollectorRuntime | undefined;
  let control: Awaited<ReturnType<typeof collectorControl>> | undefined;
  let stopping: Promise<void> | undefined;
  const hub = await openConfiguredLocalHub(config, log, data.appends);
  // Flow order: no new requests, the ones in flight answered (each after its fsync), then the hub closed.
  const stop = async (): Promise<void> => {
    await runtime?.stop();
    control?.stop();
    await hub.close();
  };
  const rpc = rpcEndpoint(port, {
    // Once the main thread's processor runs (so `collector listening` still means the whole process is up).
    listen: async () => {
      if (runtime !== undefined || stopping !== undefined) throw new Error('the collector was started already, or is stopping');
      control = await collectorControl(config, store, log, metrics, { bootstrap: false });
      // The processor runs on the main thread: a deletion's mutations wait for its writes (deleteGraceMs 0).
      control.control.onSitesChanged(() => rpc.call('sitesChanged'));
      const tls = configuredTls(config);
      runtime = await startCollector(config, { hub, log, metrics, ...control.collector, ...(tls === undefined ? {} : { tls }), sighup: false });
      return runtime.port;
    },
    metrics: () => metrics.render(),
    reloadTls: () => runtime?.reloadTls(),
    stop: () => (stopping ??= stop()),
  });
  const store = storeOverRpc(rpc, data.store.kind, data.store.database);
  port.postMessage({ ingest: 'hub open' } satisfies IngestHubOpen);
}

// No top-level await: in development the thread loads this file through tsx's require hook (see
// cli/ingest-thread.ts). A failure is thrown as uncaught: the thread ends and the main thread ends the process.
run().catch((err: unknown) => {
  setImmediate(() => {
    throw err;
  });
});
