import { join } from 'node:path';
import type { Config } from '../schemas/config.ts';
import type { HubProducer } from '../hub/hub.ts';
import { openEventHubsProducer, spoolDir, type EventHubsProducer } from '../hub/eventhubs-producer.ts';
import { openLocalHub, type LocalHub } from '../hub/local-hub.ts';
import { defaultQuota } from '../hub/local-dir.ts';
import { createLogger, type Logger } from '../lib/log.ts';
import { Registry } from '../lib/metrics.ts';
import { configuredMetrics } from '../lib/metrics-server.ts';
import { startReloading } from '../lib/reload.ts';
import { untilSignal } from '../lib/signals.ts';
import type { Store } from '../store/store.ts';
import { createCollector, type Collector } from './collector.ts';
import type { TemplatedApp } from 'uWebSockets.js';
import type { EnrichDeps } from './pipeline.ts';
import { createUaParser } from './enrich/user-agent.ts';
import { openGeo } from './enrich/geo.ts';
import { parsePageUrl, parseReferrer } from './enrich/url.ts';
import { classifyChannel } from './enrich/channel.ts';
import { openSaltStore } from './enrich/salts.ts';
import { createVisitorIdResolver } from './enrich/visitor-hash.ts';
import { clientIp, isTrustedRemote } from './enrich/client-ip.ts';

/** The collector's wiring point: builds enrichment from config, opens the hub, listens. */

export interface EnrichRuntime {
  deps: EnrichDeps;
  close(): Promise<void>;
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
): Promise<EnrichRuntime> {
  const geo = await openGeo(config.FAROL_GEOIP_DB);
  const salts = await openSaltStore({ dir: join(config.FAROL_DATA_DIR, 'salts'), now });
  const visitors = createVisitorIdResolver({ salts, now });
  const parseUa = createUaParser({ cacheSize: 10_000 });
  const listed = configuredSites(config);
  const sites = listed.length > 0 ? new Set(listed) : null;
  const rotation = setInterval(() => void salts.rotate(), 60_000);
  rotation.unref();
  return {
    deps: {
      parseUa,
      country: (ip) => geo.lookup(ip),
      visitorId: (site, ip, ua) => visitors.resolve(site, ip, ua),
      parsePageUrl,
      parseReferrer,
      classify: classifyChannel,
      knownSite: knownSite ?? ((domain) => sites === null || sites.has(domain)),
      ...(siteEpoch === undefined ? {} : { siteEpoch }),
      now,
    },
    async close() {
      clearInterval(rotation);
      geo.close();
    },
  };
}

export interface CollectorRuntime {
  port: number;
  collector: Collector;
  /** Drains in-flight requests and releases enrichment resources (not the hub: its owner closes it). */
  stop(): Promise<void>;
}

/** A registered site: its domain and the epoch of its registration (`created_at` in ms). */
export interface SiteEntry {
  domain: string;
  epoch: number;
}

/** The set of domains the collector accepts, kept fresh from the sites table. */
export interface SiteWatch {
  has(domain: string): boolean;
  /** The epoch of the domain's registration, stamped on its events; 0 when unknown. */
  epoch(domain: string): number;
  /** Reloads now (after a local site change); failures keep the last set. */
  refresh(): Promise<void>;
  stop(): void;
}

/** The live sites of the sites table, with their epochs. */
export async function loadRegisteredSites(store: Store): Promise<SiteEntry[]> {
  const rows = await store.query<{ domain: string; epoch: string | number }>(
    'SELECT domain, toUnixTimestamp64Milli(created_at) AS epoch FROM sites FINAL WHERE deleted = 0',
  );
  return rows.map((r) => ({ domain: r.domain, epoch: Number(r.epoch) }));
}

/**
 * Polls `load` (the registered sites: domains, or domains with epochs) every `intervalMs`;
 * `extra` (FAROL_SITES) are accepted too. Until a first load succeeds (ClickHouse unreachable at
 * start) every domain is accepted, with a warning: refusing all traffic would lose it, the
 * processor stores it anyway.
 */
export async function watchSites(opts: {
  load: () => Promise<Iterable<string | SiteEntry>>;
  extra?: readonly string[];
  intervalMs?: number;
  log: Logger;
}): Promise<SiteWatch> {
  const extra = new Set(opts.extra ?? []);
  // Domain → epoch (0 when the loader does not know it).
  let known: Map<string, number> | null = null;
  let failing = false;
  const reloader = startReloading(async () => {
    try {
      const entries = [...(await opts.load())].map((s) => (typeof s === 'string' ? { domain: s, epoch: 0 } : s));
      known = new Map(entries.map((s) => [s.domain.toLowerCase(), s.epoch]));
      if (failing) opts.log.info({ sites: known.size }, 'site list loaded again');
      failing = false;
    } catch (err) {
      if (!failing) {
        opts.log.warn({ err, acceptingAll: known === null }, 'cannot load the registered sites; keeping the last list');
      }
      failing = true;
    }
  }, opts.intervalMs ?? 5_000);
  await reloader.refresh();
  return {
    has: (domain) => extra.has(domain) || known === null || known.has(domain),
    epoch: (domain) => known?.get(domain) ?? 0,
    refresh: () => reloader.refresh(),
    stop: () => reloader.stop(),
  };
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
  },
): Promise<CollectorRuntime> {
  const enrichment = await openEnrichment(config, opts.now, opts.knownSite, opts.siteEpoch);
  const collector = createCollector({
    hub: opts.hub,
    enrich: enrichment.deps,
    clientIp: (remote, xff) => clientIp({ remote, xff, trust: config.FAROL_TRUST_PROXY }),
    trustedRemote: (remote) => isTrustedRemote(remote, config.FAROL_TRUST_PROXY),
    limits: {
      maxBodyBytes: config.FAROL_MAX_BODY_BYTES,
      maxBatchBytes: config.FAROL_MAX_BATCH_BYTES,
      bodyTimeoutMs: config.FAROL_BODY_TIMEOUT_MS,
      rates: { client: config.FAROL_RATE_CLIENT, site: config.FAROL_RATE_SITE },
      maxBodyMemory: config.FAROL_MAX_BODY_MEMORY,
    },
    log: opts.log,
    metrics: opts.metrics,
  });
  if (opts.routes) collector.mount(opts.routes);
  const port = await collector.listen(config.FAROL_HOST, config.FAROL_PORT);
  opts.log.info({ host: config.FAROL_HOST, port }, 'collector listening');
  return {
    port,
    collector,
    async stop() {
      await collector.drain();
      await enrichment.close();
    },
  };
}

/** Opens the local hub under FAROL_DATA_DIR for writing, with the configured retention and quota. */
export async function openConfiguredLocalHub(config: Config, log: Logger): Promise<LocalHub> {
  const dir = join(config.FAROL_DATA_DIR, 'hub');
  const maxBytes = config.FAROL_HUB_MAX_BYTES ?? (await defaultQuota(dir));
  log.info({ maxBytes, fromEnv: config.FAROL_HUB_MAX_BYTES !== undefined }, 'hub quota');
  return openLocalHub({
    dir,
    partitions: config.FAROL_HUB_PARTITIONS,
    // The setting is a total; the hub applies its byte bound per partition.
    retention: {
      maxAgeMs: config.FAROL_HUB_RETENTION_HOURS * 3_600_000,
      maxBytes: Math.ceil(config.FAROL_HUB_RETENTION_BYTES / config.FAROL_HUB_PARTITIONS),
    },
    maxBytes,
    // Segments small enough next to the quota that consumed ones can be deleted to make room
    // (only sealed segments are ever deleted).
    segmentBytes: Math.min(MAX_SEGMENT_BYTES, Math.max(MIN_SEGMENT_BYTES, Math.floor(maxBytes / (config.FAROL_HUB_PARTITIONS * 4)))),
    log,
  });
}

const MAX_SEGMENT_BYTES = 64 * 1024 * 1024;
const MIN_SEGMENT_BYTES = 4 * 1024;

/**
 * Opens the Event Hubs producer (FAROL_HUB=eventhubs) with its spool under FAROL_DATA_DIR.
 * Event Hubs need not be reachable: publishes spool until it answers.
 */
export function openConfiguredEventHubsProducer(config: Config, log: Logger): Promise<EventHubsProducer> {
  const connectionString = config.FAROL_EVENTHUBS_CONNECTION_STRING;
  const eventHubName = config.FAROL_EVENTHUBS_NAME;
  // The config schema requires both with FAROL_HUB=eventhubs.
  if (!connectionString || !eventHubName) throw new Error('FAROL_EVENTHUBS_CONNECTION_STRING and FAROL_EVENTHUBS_NAME are required');
  return openEventHubsProducer({
    connectionString,
    eventHubName,
    spoolDir: spoolDir(config.FAROL_DATA_DIR),
    spoolMaxBytes: config.FAROL_SPOOL_MAX_BYTES,
    sendTimeoutMs: config.FAROL_EVENTHUBS_SEND_TIMEOUT_MS,
    log,
  });
}

/** The configured hub's producer side: the local log or Event Hubs. */
export function openConfiguredHub(config: Config, log: Logger): Promise<HubProducer> {
  return config.FAROL_HUB === 'eventhubs' ? openConfiguredEventHubsProducer(config, log) : openConfiguredLocalHub(config, log);
}

/** `farol collector`: ingest only, on the configured hub, until SIGTERM. */
export async function runCollector(config: Config): Promise<number> {
  const log = createLogger(config.FAROL_LOG_LEVEL, { service: 'collector' });
  const metrics = new Registry();
  const metricsServer = await configuredMetrics(config, metrics, log);
  const hub = await openConfiguredHub(config, log);
  const sites = await collectorSites(config, log);
  const runtime = await startCollector(config, { hub, log, metrics, knownSite: sites.has, siteEpoch: sites.epoch });
  const sig = await untilSignal();
  log.info({ signal: sig }, 'draining');
  await runtime.stop();
  await hub.close();
  await sites.close();
  metricsServer?.close();
  log.info({}, 'stopped');
  return 0;
}

/**
 * The standalone collector's accepted domains: the sites table of the ClickHouse server
 * (FAROL_CLICKHOUSE_URL) plus FAROL_SITES; else FAROL_SITES; else every domain (warned once).
 * The embedded engine is not opened here: its data dir belongs to `farol start`/`farol processor`.
 */
async function collectorSites(
  config: Config,
  log: Logger,
): Promise<{ has: (domain: string) => boolean; epoch: (domain: string) => number; close(): Promise<void> }> {
  const listed = configuredSites(config);
  if (config.FAROL_CLICKHOUSE_URL !== undefined) {
    const { openHttpStore } = await import('../store/http-store.ts');
    const store = openHttpStore({
      url: config.FAROL_CLICKHOUSE_URL,
      username: config.FAROL_CLICKHOUSE_USER,
      password: config.FAROL_CLICKHOUSE_PASSWORD,
      database: config.FAROL_CLICKHOUSE_DATABASE,
      cluster: config.FAROL_CLICKHOUSE_CLUSTER,
    });
    const watch = await watchSites({ load: () => loadRegisteredSites(store), extra: listed, log });
    return {
      has: watch.has,
      epoch: watch.epoch,
      async close() {
        watch.stop();
        await store.close();
      },
    };
  }
  if (listed.length === 0) log.warn({}, 'no site list: accepting events for every domain (set FAROL_CLICKHOUSE_URL or FAROL_SITES)');
  const set = new Set(listed);
  return { has: (d) => set.size === 0 || set.has(d), epoch: () => 0, close: async () => undefined };
}
