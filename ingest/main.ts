import { join } from 'node:path';
import type { ControlReader, SiteRegistration } from '../control/reader.ts';
import type { HubProducer } from '../hub/hub.ts';
import { createLogger, silentLogger, type Logger } from '../lib/log.ts';
import { Registry } from '../lib/metrics.ts';
import { configuredMetrics } from '../lib/metrics-server.ts';
import { untilSignal } from '../lib/signals.ts';
import { openConfiguredHub } from '../wiring/hub.ts';
import { createCollector, type Collector } from './collector.ts';
import type { TemplatedApp } from 'uWebSockets.js';
import type { EnrichDeps } from './pipeline.ts';
import { createUaParser } from './enrich/user-agent.ts';
import { openGeo } from './enrich/geo.ts';
import { parsePageUrl, parseReferrer } from './enrich/url.ts';
import { classifyChannel } from './enrich/channel.ts';
import { openSaltStore, type SaltSource } from './enrich/salts.ts';
import { blobSaltStorage, refreshSharedSalts, saltBlobPrefix, SharedSaltStore, type SaltStorage } from './enrich/shared-salts.ts';
import { ConfigError, type Config } from '../schemas/config.ts';
import { createVisitorIdResolver } from './enrich/visitor-hash.ts';
import { clientIp, isTrustedRemote } from '../lib/http/client-ip.ts';
import type { TlsFiles } from '../lib/http/server.ts';
import { configuredTls, reloadTlsOnSighup } from '../lib/http/tls.ts';
import { watchSites } from './site-watch.ts';
import { siteSetOf, type SiteSnapshot } from './thread-protocol.ts';
import { sumExpositions } from './thread-metrics.ts';

/** The collector's wiring point: builds enrichment from config, opens the hub, listens. */

export interface EnrichRuntime {
  deps: EnrichDeps;
  /** Whether today's salt is held (false only with shared salts whose storage is unreachable). */
  saltsReady(): boolean;
  /** Fetches what shared salts are due now (their timer does it anyway; tests with a moved clock call it). */
  refreshSalts(): Promise<void>;
  close(): Promise<void>;
}

/** The salts of the visitor hash, and how to keep them fresh. */
interface SaltRuntime {
  source: SaltSource;
  /** Whether several collectors share the salts (the midnight carry-over is then off). */
  shared: boolean;
  ready(): boolean;
  refresh(): Promise<void>;
  close(): void;
}

/**
 * Local hub: salts in `FAROL_DATA_DIR/salts` (one process per data dir). Event Hubs: salts shared
 * by every collector through the checkpoint storage account, in memory only (shared-salts.ts);
 * FAROL_CHECKPOINT_CONNECTION_STRING is then required. `storage` replaces the blob container (tests).
 */
async function openSalts(config: Config, now: () => number, log: Logger, storage?: SaltStorage): Promise<SaltRuntime> {
  if (config.FAROL_HUB !== 'eventhubs' && storage === undefined) {
    const salts = await openSaltStore({ dir: join(config.FAROL_DATA_DIR, 'salts'), now });
    const rotation = setInterval(() => void salts.rotate(), 60_000);
    rotation.unref();
    return { source: salts, shared: false, ready: () => true, refresh: async () => undefined, close: () => clearInterval(rotation) };
  }
  const shared = new SharedSaltStore({ storage: storage ?? (await blobSalts(config)), log, now });
  // Bounded: storage down at start leaves the collector up but not ready, refusing events (503).
  const first = await Promise.race([shared.refresh(), new Promise<null>((r) => setTimeout(() => r(null), 10_000).unref())]);
  if (first === null || !shared.ready()) log.warn({}, 'shared salt not available at start: events are refused (503) until it is');
  const stop = refreshSharedSalts(shared, { now });
  return {
    source: shared,
    shared: true,
    ready: () => shared.ready(),
    refresh: async () => void (await shared.refresh()),
    close: () => {
      stop();
      shared.close();
    },
  };
}

/** Event Hubs collectors share salts through the checkpoint storage: throws ConfigError when it is not configured. */
export function checkSharedSaltConfig(config: Config): string | undefined {
  if (config.FAROL_HUB !== 'eventhubs') return undefined;
  const storage = config.FAROL_CHECKPOINT_CONNECTION_STRING;
  if (!storage) {
    throw new ConfigError(
      'invalid configuration:\n  FAROL_CHECKPOINT_CONNECTION_STRING: required when FAROL_HUB=eventhubs ' +
        '(an Azure Storage connection string: collectors share the daily visitor salt there, so one visitor is one visitor on every collector)',
    );
  }
  return storage;
}

async function blobSalts(config: Config): Promise<SaltStorage> {
  const storage = checkSharedSaltConfig(config) ?? '';
  const { ContainerClient } = await import('@azure/storage-blob');
  const container = new ContainerClient(storage, config.FAROL_CHECKPOINT_CONTAINER, {
    retryOptions: { maxTries: 3, tryTimeoutInMs: 5_000, retryDelayInMs: 200, maxRetryDelayInMs: 1_000 },
  });
  return blobSaltStorage(container, saltBlobPrefix(config.FAROL_EVENTHUBS_CONNECTION_STRING ?? '', config.FAROL_EVENTHUBS_NAME ?? ''));
}

/** FAROL_SITES as a list of lower-case domains ([] when unset). */
export function configuredSites(config: Config): string[] {
  return (config.FAROL_SITES ?? '')
    .split(',')
    .map((s) => s.trim().toLowerCase())
    .filter((s) => s !== '');
}

/**
 * Opens the enrichment resources (geo database, salt store) named by the configuration.
 * `knownSite` decides which domains are accepted (the registered sites); without it, FAROL_SITES
 * or, when unset, every domain. `siteEpoch` names the registration of a site (0: unknown).
 */
export async function openEnrichment(
  config: Config,
  now: () => number = Date.now,
  knownSite?: (domain: string) => boolean,
  siteEpoch?: (domain: string) => number,
  opts: { log?: Logger; saltStorage?: SaltStorage } = {},
): Promise<EnrichRuntime> {
  const salts = await openSalts(config, now, opts.log ?? silentLogger, opts.saltStorage);
  const geo = await openGeo(config.FAROL_GEOIP_DB);
  const visitors = createVisitorIdResolver({ salts: salts.source, now, carryOver: !salts.shared });
  const parseUa = createUaParser({ cacheSize: 10_000 });
  const listed = configuredSites(config);
  const sites = listed.length > 0 ? new Set(listed) : null;
  return {
    saltsReady: salts.ready,
    refreshSalts: salts.refresh,
    deps: {
      parseUa,
      country: (ip) => geo.lookup(ip),
      visitorId: (site, ip, ua) => visitors.resolveVisitor(site, ip, ua),
      parsePageUrl,
      parseReferrer,
      classify: classifyChannel,
      knownSite: knownSite ?? ((domain) => sites === null || sites.has(domain)),
      ...(siteEpoch === undefined ? {} : { siteEpoch }),
      now,
    },
    async close() {
      salts.close();
      geo.close();
    },
  };
}

export interface CollectorRuntime {
  port: number;
  collector: Collector;
  /** See {@link EnrichRuntime.refreshSalts}. */
  refreshSalts(): Promise<void>;
  /** Drains in-flight requests and releases enrichment resources (not the hub: its owner closes it). */
  stop(): Promise<void>;
}

/**
 * The collector the configuration describes, on `enrichment`, publishing to `hub` (not listening
 * yet). `threads`: it is one of that many collector threads, which split FAROL_MAX_BODY_MEMORY.
 */
export function collectorOf(
  config: Config,
  opts: { hub: HubProducer; enrichment: EnrichRuntime; log: Logger; metrics: Registry; tls?: TlsFiles; threads?: number },
): Collector {
  const threads = opts.threads ?? 1;
  return createCollector({
    hub: opts.hub,
    enrich: opts.enrichment.deps,
    clientIp: (remote, xff) => clientIp({ remote, xff, trust: config.FAROL_TRUST_PROXY }),
    trustedRemote: (remote) => isTrustedRemote(remote, config.FAROL_TRUST_PROXY),
    saltsReady: opts.enrichment.saltsReady,
    limits: {
      maxBodyBytes: config.FAROL_MAX_BODY_BYTES,
      maxBatchBytes: config.FAROL_MAX_BATCH_BYTES,
      bodyTimeoutMs: config.FAROL_BODY_TIMEOUT_MS,
      // Per thread: a client's connections may land on several threads (README "Threads").
      rates: { client: config.FAROL_RATE_CLIENT, site: config.FAROL_RATE_SITE },
      // The process-wide cap, split between the threads (each still takes its largest body).
      maxBodyMemory: Math.max(Math.ceil(config.FAROL_MAX_BODY_MEMORY / threads), config.FAROL_MAX_BODY_BYTES, config.FAROL_MAX_BATCH_BYTES),
    },
    log: opts.log,
    metrics: opts.metrics,
    ...(opts.tls === undefined ? {} : { tls: opts.tls }),
  });
}

/** Starts a collector publishing to `hub`, listening on the configured address. */
export async function startCollector(
  config: Config,
  opts: {
    hub: HubProducer;
    log: Logger;
    metrics: Registry;
    now?: () => number;
    /** Which domains are accepted (default: FAROL_SITES, or all). */
    knownSite?: (domain: string) => boolean;
    /** The epoch of a site's registration, stamped on its events (default: unknown, 0). */
    siteEpoch?: (domain: string) => number;
    /** More routes on the same app and port (the API in `farol start`), registered before listen. */
    routes?: (app: TemplatedApp) => unknown;
    /** Serve HTTPS (checked files, see lib/http/tls.ts); SIGHUP then reloads them. */
    tls?: TlsFiles;
    /** Shared salts in this storage instead of the configured one (tests). */
    saltStorage?: SaltStorage;
  },
): Promise<CollectorRuntime> {
  const enrichment = await openEnrichment(config, opts.now, opts.knownSite, opts.siteEpoch, {
    log: opts.log,
    ...(opts.saltStorage === undefined ? {} : { saltStorage: opts.saltStorage }),
  });
  const collector = collectorOf(config, { hub: opts.hub, enrichment, log: opts.log, metrics: opts.metrics, ...(opts.tls === undefined ? {} : { tls: opts.tls }) });
  if (opts.routes) collector.mount(opts.routes);
  const port = await collector.listen(config.FAROL_HOST, config.FAROL_PORT);
  opts.log.info({ host: config.FAROL_HOST, port, tls: opts.tls !== undefined }, 'collector listening');
  const unhook = opts.tls === undefined ? () => undefined : reloadTlsOnSighup(opts.tls, [() => collector.reloadTls()], opts.log);
  return {
    port,
    collector,
    refreshSalts: enrichment.refreshSalts,
    async stop() {
      unhook();
      await collector.drain();
      await enrichment.close();
    },
  };
}

/**
 * `farol collector`: ingest only, on the configured hub, until SIGTERM. With FAROL_COLLECTOR_THREADS
 * above 1 the collector runs on that many threads sharing the port (ingest/thread-pool.ts) and
 * this thread owns the hub writer; with 1 it runs here (no hand-off: cheaper on one core).
 */
export async function runCollector(config: Config): Promise<number> {
  const tls = configuredTls(config);
  checkSharedSaltConfig(config);
  const log = createLogger(config.FAROL_LOG_LEVEL, { service: 'collector' });
  const metrics = new Registry();
  const threaded = config.FAROL_COLLECTOR_THREADS > 1;
  let threadMetrics = async (): Promise<string[]> => [];
  const metricsServer = await configuredMetrics(config, threaded ? { render: async () => sumExpositions([metrics.render(), ...(await threadMetrics())]) } : metrics, log);
  const hub = await openConfiguredHub(config, log, metrics);
  const sites = await collectorSites(config, log);
  let code = 0;
  try {
    if (!threaded) {
      const runtime = await startCollector(config, { hub, log, metrics, knownSite: sites.has, siteEpoch: sites.epoch, ...(tls === undefined ? {} : { tls }) });
      const sig = await untilSignal();
      log.info({ signal: sig }, 'draining');
      await runtime.stop();
    } else {
      const { startCollectorThreads } = await import('./thread-pool.ts');
      const threads = await startCollectorThreads(config, { hub, log, count: config.FAROL_COLLECTOR_THREADS, sites: sites.snapshot(), ...(tls === undefined ? {} : { tls }) });
      threadMetrics = () => threads.metrics();
      const unwatch = sites.onChange((snapshot) => threads.sites(snapshot));
      const unhook = tls === undefined ? () => undefined : reloadTlsOnSighup(tls, [() => threads.reloadTls()], log);
      const ended = await Promise.race([untilSignal(), threads.died]);
      if (ended instanceof Error) {
        code = 1;
        log.error({ err: ended }, 'a collector thread died: draining the others, then exiting (its unanswered requests are retried by their clients)');
      } else {
        log.info({ signal: ended }, 'draining');
      }
      unhook();
      unwatch();
      if (!(await threads.stop())) code = 1;
    }
  } finally {
    await hub.close();
    await sites.close();
    metricsServer?.close();
  }
  log.info({ code }, 'stopped');
  return code;
}

/** What the standalone collector accepts, as tests and as a snapshot for its threads. */
interface CollectorSites {
  has(domain: string): boolean;
  epoch(domain: string): number;
  snapshot(): SiteSnapshot;
  /** Calls `listener` with each new snapshot (after each reload that changed it); returns the unsubscribe. */
  onChange(listener: (snapshot: SiteSnapshot) => void): () => void;
  close(): Promise<void>;
}

/**
 * The standalone collector's accepted domains: the registered sites, read through the control
 * plane on the ClickHouse server (FAROL_CLICKHOUSE_URL), plus FAROL_SITES; else FAROL_SITES; else
 * every domain (warned once). The embedded engine is not opened here: its data dir belongs to
 * `farol start`/`farol processor`.
 */
async function collectorSites(config: Config, log: Logger): Promise<CollectorSites> {
  const listed = configuredSites(config);
  if (config.FAROL_CLICKHOUSE_URL !== undefined) {
    // Loaded only here: a collector without a ClickHouse server needs neither.
    const { openConfiguredStore } = await import('../wiring/store.ts');
    const { ControlPlane, controlPlaneOptions } = await import('../control/control-plane.ts');
    const store = await openConfiguredStore(config);
    const control: ControlReader = new ControlPlane(store, controlPlaneOptions(config));
    // The last list loaded (null until one is: every domain is accepted meanwhile, as watchSites does).
    let known: Array<[string, number]> | null = null;
    let shown = '';
    const listeners = new Set<(snapshot: SiteSnapshot) => void>();
    const snapshot = (): SiteSnapshot => ({ extra: listed, known });
    const load = async (): Promise<SiteRegistration[]> => {
      const loaded = await control.registeredSites();
      known = loaded.map((s) => [s.domain.toLowerCase(), s.epoch]);
      const text = JSON.stringify(known);
      if (text !== shown) {
        shown = text;
        for (const l of listeners) l(snapshot());
      }
      return loaded;
    };
    const watch = await watchSites({ load, extra: listed, intervalMs: config.FAROL_SITES_REFRESH_MS, log });
    return {
      has: watch.has,
      epoch: watch.epoch,
      snapshot,
      onChange(listener) {
        listeners.add(listener);
        return () => listeners.delete(listener);
      },
      async close() {
        watch.stop();
        await store.close();
      },
    };
  }
  if (listed.length === 0) log.warn({}, 'no site list: accepting events for every domain (set FAROL_CLICKHOUSE_URL or FAROL_SITES)');
  const fixed: SiteSnapshot = { extra: listed, known: listed.length === 0 ? null : [] };
  const set = siteSetOf(fixed);
  return { ...set, snapshot: () => fixed, onChange: () => () => undefined, close: async () => undefined };
}
