import { join } from 'node:path';
import { silentLogger, type Logger } from '../lib/log.ts';
import type { Registry } from '../lib/metrics.ts';
import type { HubProducer } from '../hub/hub.ts';
import { clientIp, isTrustedRemote } from '../lib/http/client-ip.ts';
import type { TlsFiles } from '../lib/http/server.ts';
import { ConfigError, type Config } from '../schemas/config.ts';
import { createCollector, type Collector } from './collector.ts';
import type { EnrichDeps } from './pipeline.ts';
import { createUaParser } from './enrich/user-agent.ts';
import { openGeo } from './enrich/geo.ts';
import { parsePageUrl, parseReferrer } from './enrich/url.ts';
import { classifyChannel } from './enrich/channel.ts';
import { openSaltStore, type SaltSource } from './enrich/salts.ts';
import { blobSaltStorage, refreshSharedSalts, saltBlobPrefix, SharedSaltStore, type SaltStorage } from './enrich/shared-salts.ts';
import { createVisitorIdResolver } from './enrich/visitor-hash.ts';

/**
 * The collector as the configuration describes it, without a hub or a listener: its enrichment
 * resources (geo database, salts) and its limits. Shared by `farol collector`'s main thread
 * (ingest/main.ts) and its collector threads (ingest/thread-worker.ts), which therefore load
 * none of the hub clients (the Event Hubs SDK alone is ~18 MB a thread).
 */

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
