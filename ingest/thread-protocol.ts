import type { Config } from '../schemas/config.ts';
import type { TlsFiles } from '../lib/http/server.ts';

/**
 * What the collector threads of `farol collector` (ingest/threads.ts, the main thread) and each
 * thread (ingest/thread-worker.ts) exchange. Calls go over wiring-free RPC on the worker's port
 * (lib-level `rpcEndpoint` semantics: structured clone, errors by name, message and code).
 */

/** The domains a collector accepts: `extra` (FAROL_SITES) always; `known` (domain, epoch) or, when null, every domain. */
export interface SiteSnapshot {
  extra: string[];
  known: Array<[string, number]> | null;
}

/** The accepted-domain test and epochs of a snapshot (the semantics of `watchSites`). */
export function siteSetOf(snapshot: SiteSnapshot): { has(domain: string): boolean; epoch(domain: string): number } {
  const extra = new Set(snapshot.extra);
  const known = snapshot.known === null ? null : new Map(snapshot.known);
  return {
    has: (domain) => extra.has(domain) || known === null || known.has(domain),
    epoch: (domain) => known?.get(domain) ?? 0,
  };
}

/** workerData of a collector thread. */
export interface CollectorThreadData {
  config: Config;
  /** 0-based; thread 0 binds first (port 0 resolved there), the others bind the port it got. */
  index: number;
  threads: number;
  port: number;
  /** The hub's partition count (the writer's: local or Event Hubs). */
  partitions: number;
  tls: TlsFiles | null;
  sites: SiteSnapshot;
  /** Int32 flags the main thread keeps current: [READY] the hub takes writes. */
  flags: SharedArrayBuffer;
}

/** Index of the hub-ready flag in {@link CollectorThreadData.flags}. */
export const FLAG_HUB_READY = 0;
export const FLAG_COUNT = 1;

/** A thread's first message, once it listens (RPC messages carry `rpc`, this one `thread`). */
export interface ThreadListening {
  thread: 'listening';
  port: number;
}

/**
 * One hand-off of records to the hub writer: `payloads` is every record's bytes back to back (a
 * transferred ArrayBuffer: moved, not copied, and never through JSON), `lengths[i]` the bytes of
 * record i, `keys[i]` its partition key.
 */
export interface PublishBatch {
  keys: string[];
  lengths: number[];
  payloads: ArrayBuffer;
}

/**
 * The hot path's own messages on the worker's port, beside the RPC ones (which carry `rpc` and are
 * checked by a schema each): a batch, numbered by the thread, and the writer's answer to it.
 */
export interface PublishMessage extends PublishBatch {
  publish: number;
}
export interface PublishedMessage {
  published: number;
  /** Set when the writer refused or failed the batch (`code`: the hub's, e.g. HUB_FULL). */
  error?: { message: string; code?: string };
}
