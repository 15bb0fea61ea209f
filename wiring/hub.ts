import { join } from 'node:path';
import type { Config } from '../schemas/config.ts';
import type { HubProducer } from '../hub/hub.ts';
import { openEventHubsProducer, spoolDir, type EventHubsProducer } from '../hub/eventhubs-producer.ts';
import { openLocalHub, type LocalHub } from '../hub/local-hub.ts';
import { defaultQuota } from '../hub/local-dir.ts';
import type { Logger } from '../lib/log.ts';

/** The configured hub: the local log under FAROL_DATA_DIR, or Event Hubs (FAROL_HUB=eventhubs). */

const localHubDir = (config: Config): string => join(config.FAROL_DATA_DIR, 'hub');

/**
 * Opens the local hub under FAROL_DATA_DIR for writing, with the configured retention and quota;
 * `shared`: its appends are seen by a read-only hub on another thread (see `sharedAppends`).
 */
export async function openConfiguredLocalHub(config: Config, log: Logger, shared?: SharedArrayBuffer): Promise<LocalHub> {
  const dir = localHubDir(config);
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
    ...(shared === undefined ? {} : { shared }),
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

/**
 * Opens the local hub under FAROL_DATA_DIR read-only, for a processor beside the collector process
 * that writes it (`farol processor`), or beside the thread that writes it (`farol start`, with
 * the buffer `shared` with that thread's hub).
 */
export function openConfiguredLocalHubReadOnly(config: Config, log: Logger, shared?: SharedArrayBuffer): Promise<LocalHub> {
  return openLocalHub({ dir: localHubDir(config), partitions: config.FAROL_HUB_PARTITIONS, readOnly: true, log, ...(shared === undefined ? {} : { shared }) });
}
