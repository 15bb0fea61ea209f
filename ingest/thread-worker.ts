import { parentPort, workerData, type MessagePort } from 'node:worker_threads';
import type { HubProducer } from '../hub/hub.ts';
import { HubError } from '../hub/local-common.ts';
import { createLogger, hideInLogs, type Logger } from '../lib/log.ts';
import { Registry } from '../lib/metrics.ts';
import { secretValues } from '../schemas/secrets.ts';
import { rpcEndpoint } from '../wiring/thread-rpc.ts';
import { collectorOf, openEnrichment } from './collector-setup.ts';
import { FLAG_HUB_READY, siteSetOf, type CollectorThreadData, type PublishedMessage, type PublishMessage, type SiteSnapshot, type ThreadListening } from './thread-protocol.ts';

/**
 * One collector thread of `farol collector` (started by ingest/thread-pool.ts): a uWS app on the
 * shared port (SO_REUSEPORT) with its own enrichment (geo reader, UA cache, salts read from the
 * same store every thread reads, so a day's salt is the same in each) and rate limiter. Records
 * are encoded here and handed to the main thread, which owns the hub writer, in batches whose
 * bytes are transferred, not copied through JSON; a 202 goes out once the writer acknowledged.
 *
 * uWS aborts the whole process when a thread ends with sockets open: every way out of this thread
 * (drain, a close asked by the main thread, an uncaught error) closes the app's connections first.
 */

let closeConnections: (() => void) | undefined;
let log: Logger = createLogger('error', { service: 'collector' });

/** A failure here: close every connection (what was not answered 202 is the client's to retry), then end the thread non-zero. */
function crash(err: unknown): void {
  try {
    closeConnections?.();
  } finally {
    log.error({ err }, 'collector thread crashed');
    process.exit(1);
  }
}
process.on('uncaughtException', crash);
process.on('unhandledRejection', crash);

/**
 * The hub as this thread sees it: every publish of one event-loop turn goes to the writer as one
 * batch (one transferred buffer, one message of its own, no RPC envelope to check), and settles
 * with the writer's answer. Readiness is the main thread's, through a shared flag, so every
 * thread answers /readyz alike.
 */
function handedOffHub(port: MessagePort, partitionCount: number, flags: Int32Array): HubProducer {
  type Waiter = { resolve(): void; reject(err: Error): void };
  let queue: Array<{ items: ReadonlyArray<{ key: string; payload: Buffer }> } & Waiter> = [];
  const sent = new Map<number, Waiter[]>();
  let nextId = 1;
  port.on('message', (m: unknown) => {
    if (typeof m !== 'object' || m === null || !('published' in m)) return;
    const answer = m as PublishedMessage;
    const waiters = sent.get(answer.published);
    if (waiters === undefined) return;
    sent.delete(answer.published);
    if (answer.error === undefined) {
      for (const w of waiters) w.resolve();
      return;
    }
    // The collector answers a full hub 507-style (retry later) and anything else 503.
    const err = answer.error.code === 'HUB_FULL' ? new HubError('HUB_FULL', answer.error.message) : new Error(answer.error.message);
    for (const w of waiters) w.reject(err);
  });
  const flush = (): void => {
    const waiting = queue;
    queue = [];
    let total = 0;
    for (const w of waiting) for (const item of w.items) total += item.payload.length;
    const payloads = new ArrayBuffer(total);
    const bytes = new Uint8Array(payloads);
    const keys: string[] = [];
    const lengths: number[] = [];
    let at = 0;
    for (const w of waiting) {
      for (const item of w.items) {
        bytes.set(item.payload, at);
        at += item.payload.length;
        keys.push(item.key);
        lengths.push(item.payload.length);
      }
    }
    const id = nextId++;
    sent.set(id, waiting);
    try {
      port.postMessage({ publish: id, keys, lengths, payloads } satisfies PublishMessage, [payloads]);
    } catch (err) {
      sent.delete(id);
      for (const w of waiting) w.reject(err instanceof Error ? err : new Error(String(err)));
    }
  };
  return {
    partitionCount,
    publish(items) {
      if (items.length === 0) return Promise.resolve();
      return new Promise<void>((resolve, reject) => {
        if (queue.length === 0) setImmediate(flush);
        queue.push({ items, resolve, reject });
      });
    },
    isReady: () => Atomics.load(flags, FLAG_HUB_READY) === 1,
    close: async () => undefined,
  };
}

async function run(): Promise<void> {
  const port = parentPort;
  if (port === null) throw new Error('ingest/thread-worker.ts runs as a collector thread of `farol collector`');
  const data = workerData as CollectorThreadData;
  const { config } = data;
  hideInLogs(secretValues(config));
  log = createLogger(config.FAROL_LOG_LEVEL, { service: 'collector', thread: data.index });
  const metrics = new Registry();
  let sites = siteSetOf(data.sites);
  let ending: Promise<void> | undefined;
  const end = (): void => {
    // After the answer went out: the thread then ends (nothing of uWS is left open).
    setImmediate(() => {
      rpc.close('the collector thread ended');
      process.exit(0);
    });
  };
  const rpc = rpcEndpoint(port, {
    metrics: () => metrics.render(),
    sites: (snapshot: SiteSnapshot) => {
      sites = siteSetOf(snapshot);
    },
    reloadTls: () => collector.reloadTls(),
    // Stop accepting, answer what is in flight (the writer keeps acknowledging), close, end.
    drain: () =>
      (ending ??= (async () => {
        await collector.drain();
        collector.closeConnections();
        await enrichment.close();
        end();
      })()),
    // The drain took too long: close every connection now (unanswered requests are retried by their clients).
    close: () => {
      collector.closeConnections();
      end();
    },
  });
  const enrichment = await openEnrichment(config, Date.now, (domain) => sites.has(domain), (domain) => sites.epoch(domain), { log });
  const hub = handedOffHub(port, data.partitions, new Int32Array(data.flags));
  const collector = collectorOf(config, { hub, enrichment, log, metrics, threads: data.threads, ...(data.tls === null ? {} : { tls: data.tls }) });
  closeConnections = () => collector.closeConnections();
  const bound = await collector.listen(config.FAROL_HOST, data.port);
  port.postMessage({ thread: 'listening', port: bound } satisfies ThreadListening);
}

// No top-level await: in development the thread loads this file through tsx's require hook.
run().catch(crash);
