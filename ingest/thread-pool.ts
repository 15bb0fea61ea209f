import type { Worker } from 'node:worker_threads';
import type { HubProducer } from '../hub/hub.ts';
import type { Logger } from '../lib/log.ts';
import type { TlsFiles } from '../lib/http/server.ts';
import { within } from '../lib/within.ts';
import { workerThread } from '../lib/worker-thread.ts';
import type { Config } from '../schemas/config.ts';
import { rpcEndpoint, type RpcEndpoint } from '../wiring/thread-rpc.ts';
import { FLAG_COUNT, FLAG_HUB_READY, type CollectorThreadData, type PublishBatch, type PublishedMessage, type PublishMessage, type SiteSnapshot, type ThreadListening } from './thread-protocol.ts';

/**
 * The collector threads of `farol collector` (FAROL_COLLECTOR_THREADS > 1), seen from the main
 * thread, which owns the hub writer (the local hub admits one writer per data dir; the Event Hubs
 * producer one spool). Each thread (ingest/thread-worker.ts) serves the shared port and hands its
 * records over in transferred buffers; this thread publishes each batch as it comes (the local
 * hub group-commits concurrent publishes) and acknowledges it once durable.
 */

export interface CollectorThreads {
  /** The port every thread listens on (the one thread 0 bound when FAROL_PORT is 0). */
  readonly port: number;
  /** Resolves when a thread ended without being asked to (the process must drain the others and exit non-zero). */
  readonly died: Promise<Error>;
  /** Each thread's metrics text (a thread that does not answer in time is left out, with a comment). */
  metrics(): Promise<string[]>;
  /** Hands the accepted domains to every thread. */
  sites(snapshot: SiteSnapshot): void;
  /** TLS: every thread loads the certificate files again (failures logged; it keeps the old one). */
  reloadTls(): void;
  /**
   * Drains every thread (stop accepting, answer in-flight requests, close connections) and waits
   * for them to end: false when one did not drain cleanly (it failed, or overran its bound).
   */
  stop(): Promise<boolean>;
}

/** How long a thread may take to render its metrics. */
const METRICS_TIMEOUT_MS = 1_000;
/** How long a thread may take to end once its connections are closed. */
const EXIT_TIMEOUT_MS = 5_000;
/** How often the hub's readiness is copied to the threads' shared flag. */
const READY_EVERY_MS = 200;

interface Thread {
  index: number;
  /** Set once the thread ended. */
  code: number | undefined;
  worker: Worker;
  rpc: RpcEndpoint;
  exited: Promise<number>;
}

/** The threads alive in this process: a fatal error on the main thread closes them before it exits. */
const live = new Set<Thread>();

/**
 * Closes every live thread's connections and waits (bounded) for the threads to end: for a main
 * thread about to exit on a fatal error (uWS aborts the process when it exits with a thread's
 * sockets open).
 */
export async function closeThreadsNow(): Promise<void> {
  await Promise.all([...live].map((t) => within(t.rpc.call('close').then(() => t.exited), EXIT_TIMEOUT_MS).catch(() => undefined)));
}

/** Rebuilds the records of a batch as views on its transferred bytes (no copy). */
export function recordsOf(batch: PublishBatch): Array<{ key: string; payload: Buffer }> {
  const { keys, lengths, payloads } = batch;
  if (!Array.isArray(keys) || !Array.isArray(lengths) || keys.length !== lengths.length || !(payloads instanceof ArrayBuffer)) {
    throw new Error('malformed publish batch');
  }
  const items: Array<{ key: string; payload: Buffer }> = [];
  let at = 0;
  for (let i = 0; i < keys.length; i++) {
    const length = lengths[i];
    const key = keys[i];
    if (typeof key !== 'string' || typeof length !== 'number' || !Number.isInteger(length) || length < 0 || at + length > payloads.byteLength) {
      throw new Error('malformed publish batch');
    }
    items.push({ key, payload: Buffer.from(payloads, at, length) });
    at += length;
  }
  if (at !== payloads.byteLength) throw new Error('malformed publish batch');
  return items;
}

/**
 * Starts `count` collector threads publishing to `hub`; resolves once all listen. Thread 0 binds
 * FAROL_PORT first (0: any free port), the others the port it got. Rejects (the started threads
 * ended) when one cannot start.
 */
export async function startCollectorThreads(
  config: Config,
  opts: { hub: HubProducer; count: number; log: Logger; sites: SiteSnapshot; tls?: TlsFiles },
): Promise<CollectorThreads> {
  const { hub, log } = opts;
  const flagsBuffer = new SharedArrayBuffer(FLAG_COUNT * Int32Array.BYTES_PER_ELEMENT);
  const flags = new Int32Array(flagsBuffer);
  const copyReady = (): void => void Atomics.store(flags, FLAG_HUB_READY, hub.isReady() ? 1 : 0);
  copyReady();
  const readiness = setInterval(copyReady, READY_EVERY_MS);
  readiness.unref();
  let stopping = false;
  let reportDeath!: (err: Error) => void;
  const died = new Promise<Error>((resolve) => (reportDeath = resolve));
  const threads: Thread[] = [];
  let sites = opts.sites;

  /** A batch from a thread: published as it comes (the local hub group-commits concurrent ones), then answered. */
  const onPublish = (worker: Worker, m: PublishMessage): void => {
    const id = m.publish;
    let items: Array<{ key: string; payload: Buffer }>;
    try {
      items = recordsOf(m);
    } catch (err) {
      worker.postMessage({ published: id, error: { message: (err as Error).message } } satisfies PublishedMessage);
      return;
    }
    hub.publish(items).then(
      () => worker.postMessage({ published: id } satisfies PublishedMessage),
      (err: unknown) => {
        const e = err as Error & { code?: unknown };
        const error = { message: e instanceof Error ? e.message : String(err), ...(typeof e.code === 'string' ? { code: e.code } : {}) };
        worker.postMessage({ published: id, error } satisfies PublishedMessage);
      },
    );
  };

  const spawn = (index: number, port: number): { thread: Thread; listening: Promise<number> } => {
    const data: CollectorThreadData = { config, index, threads: opts.count, port, partitions: hub.partitionCount, tls: opts.tls ?? null, sites, flags: flagsBuffer };
    const worker = workerThread(import.meta.url, './thread-worker', data);
    const rpc = rpcEndpoint(worker, {});
    worker.on('message', (m: unknown) => {
      if (typeof m === 'object' && m !== null && 'publish' in m && typeof m.publish === 'number') onPublish(worker, m as PublishMessage);
    });
    let failure: Error | undefined;
    worker.on('error', (err) => {
      failure ??= err;
    });
    const exited = new Promise<number>((resolve) => {
      worker.once('exit', (code) => {
        thread.code = code;
        live.delete(thread);
        rpc.close(`collector thread ${index} ended`);
        if (!stopping) reportDeath(failure ?? new Error(`collector thread ${index} ended with code ${code}`));
        resolve(code);
      });
    });
    const thread: Thread = { index, code: undefined, worker, rpc, exited };
    live.add(thread);
    const listening = new Promise<number>((resolve, reject) => {
      const onMessage = (m: unknown): void => {
        if (typeof m === 'object' && m !== null && (m as Partial<ThreadListening>).thread === 'listening') {
          worker.off('message', onMessage);
          resolve((m as ThreadListening).port);
        }
      };
      worker.on('message', onMessage);
      void exited.then((code) => reject(failure ?? new Error(`collector thread ${index} ended with code ${code} before listening`)));
    });
    threads.push(thread);
    return { thread, listening };
  };

  const stop = async (): Promise<boolean> => {
    stopping = true;
    let clean = true;
    // Bounded like a body read: an in-flight request waits at most for its body and the hub.
    const bound = config.FAROL_BODY_TIMEOUT_MS + config.FAROL_DRAIN_TIMEOUT_MS;
    await Promise.all(
      threads.map(async (t) => {
        // A thread that died was reported (`died`); there is nothing left of it to drain.
        if (t.code !== undefined) {
          clean &&= t.code === 0;
          return;
        }
        const outcome = await within(t.rpc.call('drain'), bound).catch((err: unknown) => err);
        if (outcome === 'timed out' || outcome instanceof Error) {
          clean = false;
          log.error({ thread: t.index, ms: bound, ...(outcome instanceof Error ? { err: outcome } : {}) }, 'collector thread did not drain; closing its connections');
          await t.rpc.call('close').catch(() => undefined);
        }
        if ((await within(t.exited, EXIT_TIMEOUT_MS)) === 'timed out') log.error({ thread: t.index }, 'collector thread did not end');
        if (t.code !== 0) clean = false;
      }),
    );
    clearInterval(readiness);
    return clean;
  };

  try {
    const first = spawn(0, config.FAROL_PORT);
    const port = await first.listening;
    await Promise.all(Array.from({ length: opts.count - 1 }, (_, i) => spawn(i + 1, port).listening));
    log.info({ host: config.FAROL_HOST, port, threads: opts.count, tls: opts.tls !== undefined }, 'collector listening');
    return {
      port,
      died,
      async metrics() {
        return Promise.all(
          threads.map(async (t) => {
            let text = `# collector thread ${t.index} did not answer: its metrics are missing\n`;
            await within(
              t.rpc.call<string>('metrics').then((rendered) => void (text = rendered)),
              METRICS_TIMEOUT_MS,
            ).catch(() => undefined);
            return text;
          }),
        );
      },
      sites(snapshot) {
        sites = snapshot;
        for (const t of threads) t.rpc.call('sites', snapshot).catch(() => undefined);
      },
      reloadTls() {
        for (const t of threads) {
          t.rpc.call('reloadTls').catch((err: unknown) => log.error({ err, thread: t.index }, 'tls certificate reload failed on a collector thread; it keeps the previous certificate'));
        }
      },
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
