import { join } from 'node:path';
import type { Config } from '../schemas/config.ts';
import type { HubProducer } from '../hub/hub.ts';
import { openEventHubsProducer, spoolDir, type EventHubsProducer } from '../hub/eventhubs-producer.ts';
import { openLocalHub, type LocalHub } from '../hub/local-hub.ts';
import { createLogger, type Logger } from '../lib/log.ts';
import { Registry } from '../lib/metrics.ts';
import { untilSignal } from '../lib/signals.ts';
import { createCollector, type Collector } from './collector.ts';
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

/** Opens the enrichment resources (geo database, salt store) named by the configuration. */
export async function openEnrichment(config: Config, now: () => number = Date.now): Promise<EnrichRuntime> {
  const geo = await openGeo(config.FAROL_GEOIP_DB);
  const salts = await openSaltStore({ dir: join(config.FAROL_DATA_DIR, 'salts'), now });
  const visitors = createVisitorIdResolver({ salts, now });
  const parseUa = createUaParser({ cacheSize: 10_000 });
  const sites = config.FAROL_SITES ? new Set(config.FAROL_SITES.split(',').map((s) => s.trim().toLowerCase())) : null;
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
      knownSite: (domain) => sites === null || sites.has(domain),
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

/** Starts a collector publishing to `hub`, listening on the configured address. */
export async function startCollector(
  config: Config,
  opts: { hub: HubProducer; log: Logger; metrics: Registry; now?: () => number },
): Promise<CollectorRuntime> {
  const enrichment = await openEnrichment(config, opts.now);
  const collector = createCollector({
    hub: opts.hub,
    enrich: enrichment.deps,
    clientIp: (remote, xff) => clientIp({ remote, xff, trust: config.FAROL_TRUST_PROXY }),
    trustedRemote: (remote) => isTrustedRemote(remote, config.FAROL_TRUST_PROXY),
    limits: {
      maxBodyBytes: config.FAROL_MAX_BODY_BYTES,
      maxBatchBytes: config.FAROL_MAX_BATCH_BYTES,
      bodyTimeoutMs: config.FAROL_BODY_TIMEOUT_MS,
    },
    log: opts.log,
    metrics: opts.metrics,
  });
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

/** Opens the local hub under FAROL_DATA_DIR for writing, with the configured retention. */
export function openConfiguredLocalHub(config: Config, log: Logger): Promise<LocalHub> {
  return openLocalHub({
    dir: join(config.FAROL_DATA_DIR, 'hub'),
    partitions: config.FAROL_HUB_PARTITIONS,
    // The setting is a total; the hub applies its byte bound per partition.
    retention: {
      maxAgeMs: config.FAROL_HUB_RETENTION_HOURS * 3_600_000,
      maxBytes: Math.ceil(config.FAROL_HUB_RETENTION_BYTES / config.FAROL_HUB_PARTITIONS),
    },
    log,
  });
}

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
  const hub = await openConfiguredHub(config, log);
  const runtime = await startCollector(config, { hub, log, metrics });
  const sig = await untilSignal();
  log.info({ signal: sig }, 'draining');
  await runtime.stop();
  await hub.close();
  log.info({}, 'stopped');
  return 0;
}
