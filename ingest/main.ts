import type { ControlReader, SiteRegistration } from '../control/reader.ts';
import type { HubProducer } from '../hub/hub.ts';
import { createLogger, type Logger } from '../lib/log.ts';
import { Registry } from '../lib/metrics.ts';
import { configuredMetrics } from '../lib/metrics-server.ts';
import { untilSignal } from '../lib/signals.ts';
import { openConfiguredHub } from '../wiring/hub.ts';
import type { Collector } from './collector.ts';
import type { TemplatedApp } from 'uWebSockets.js';
import type { SaltStorage } from './enrich/shared-salts.ts';
import type { Config } from '../schemas/config.ts';
import type { TlsFiles } from '../lib/http/server.ts';
import { configuredTls, reloadTlsOnSighup } from '../lib/http/tls.ts';
import { watchSites } from './site-watch.ts';
import { siteSetOf, type SiteSnapshot } from './thread-protocol.ts';
import { sumExpositions } from './thread-metrics.ts';
import { checkSharedSaltConfig, collectorOf, configuredSites, openEnrichment } from './collector-setup.ts';

// The collector's set-up, for the tests that build one by hand.
export { checkSharedSaltConfig, collectorOf, configuredSites, openEnrichment, type EnrichRuntime } from './collector-setup.ts';

/** The collector's wiring point: builds enrichment from config, opens the hub, listens. */

export interface CollectorRuntime {
  port: number;
  collector: Collector;
  /** See {@link EnrichRuntime.refreshSalts}. */
  refreshSalts(): Promise<void>;
  /** Drains in-flight requests and releases enrichment resources (not the hub: its owner closes it). */
  stop(): Promise<void>;
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
