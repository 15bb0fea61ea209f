import { join } from 'node:path';
import type { Config } from '../schemas/config.ts';
import type { HubProducer } from '../hub/hub.ts';
import { openEventHubsProducer, spoolDir, type EventHubsProducer } from '../hub/eventhubs-producer.ts';
import { openLocalHub, type LocalHub } from '../hub/local-hub.ts';
import { defaultQuota } from '../hub/local-dir.ts';
import type { Logger } from '../lib/log.ts';
import type { Registry } from '../lib/metrics.ts';

/** The configured hub: the local log under FAROL_DATA_DIR, or Event Hubs (FAROL_HUB=eventhubs). */

const localHubDir = (config: Config): string => join(config.FAROL_DATA_DIR, 'hub');

/**
 * Opens the local hub under FAROL_DATA_DIR for writing, with the configured retention, quota and
 * durability (FAROL_HUB_SYNC); `shared`: its appends are seen by a read-only hub on another
 * thread (see `sharedAppends`); `metrics`: its durability metrics are registered there.
 */
export async function openConfiguredLocalHub(config: Config, log: Logger, shared?: SharedArrayBuffer, metrics?: Registry): Promise<LocalHub> {
  const dir = localHubDir(config);
  const maxBytes = config.FAROL_HUB_MAX_BYTES ?? (await defaultQuota(dir));
  log.info({ maxBytes, fromEnv: config.FAROL_HUB_MAX_BYTES !== undefined }, 'hub quota');
  const sync = config.FAROL_HUB_SYNC;
  log.info({ sync: sync.mode, ...(sync.mode === 'interval' ? { intervalMs: sync.intervalMs } : {}) }, 'hub durability');
  return openLocalHub({
    dir,
    partitions: config.FAROL_HUB_PARTITIONS,
    ...(sync.mode === 'interval' ? { syncIntervalMs: sync.intervalMs } : {}),
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
    ...(shared === undefined ? {} : { shared }),
  }).then((hub) => {
    if (metrics !== undefined) localHubMetrics(hub, metrics);
    return hub;
  });
}

/** The local hub's durability on `/metrics`, read from the hub when scraped. */
export function localHubMetrics(hub: LocalHub, metrics: Registry): void {
  // Registered before the counters, so that its collector brings them up to date before they render.
  const mode = metrics.gauge('farol_hub_sync_interval_seconds', 'FAROL_HUB_SYNC: seconds between background fdatasyncs with interval:<ms>; 0 with always (a 202 waits for its fdatasync)');
  const unsynced = metrics.gauge('farol_hub_unsynced_seconds', 'Age of the oldest acknowledged hub write not yet fdatasynced (what an OS crash or power loss would lose); 0 when all is durable');
  const ready = metrics.gauge('farol_hub_ready', '1 while the last write and fdatasync of every hub partition succeeded, else 0');
  const fsyncs = metrics.counter('farol_hub_fsyncs_total', 'Durability barriers on hub segments: O_DSYNC group writes and fdatasyncs');
  const writeErrors = metrics.counter('farol_hub_write_errors_total', 'Failed hub group writes or fdatasyncs (their publishes were refused)');
  const syncErrors = metrics.counter('farol_hub_sync_errors_total', 'Failed background fdatasyncs of acknowledged records (interval mode; retried)');
  mode.set((hub.syncIntervalMs ?? 0) / 1000);
  const seen = { fsyncs: 0, writeErrors: 0, syncErrors: 0 };
  const collect = (): void => {
    const stats = hub.stats();
    fsyncs.inc(undefined, stats.fsyncs - seen.fsyncs);
    writeErrors.inc(undefined, stats.writeErrors - seen.writeErrors);
    syncErrors.inc(undefined, stats.syncErrors - seen.syncErrors);
    seen.fsyncs = stats.fsyncs;
    seen.writeErrors = stats.writeErrors;
    seen.syncErrors = stats.syncErrors;
    unsynced.set(hub.unsyncedAgeMs() / 1000);
    ready.set(hub.isReady() ? 1 : 0);
  };
  mode.onCollect(collect);
  collect();
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
export function openConfiguredHub(config: Config, log: Logger, metrics?: Registry): Promise<HubProducer> {
  return config.FAROL_HUB === 'eventhubs' ? openConfiguredEventHubsProducer(config, log) : openConfiguredLocalHub(config, log, undefined, metrics);
}

/**
 * Opens the local hub under FAROL_DATA_DIR read-only, for a processor beside the collector process
 * that writes it (`farol processor`), or beside the thread that writes it (`farol start`, with
 * the buffer `shared` with that thread's hub).
 */
export function openConfiguredLocalHubReadOnly(config: Config, log: Logger, shared?: SharedArrayBuffer): Promise<LocalHub> {
  return openLocalHub({ dir: localHubDir(config), partitions: config.FAROL_HUB_PARTITIONS, readOnly: true, log, ...(shared === undefined ? {} : { shared }) });
}
