import { join } from 'node:path';
import { BlobCheckpointStore } from '@azure/eventhubs-checkpointstore-blob';
import { ContainerClient } from '@azure/storage-blob';
import { openEventHubsConsumer } from '../hub/eventhubs-consumer.ts';
import type { ConsumerHandlers, HubConsumer } from '../hub/hub.ts';
import type { LocalHub } from '../hub/local-hub.ts';
import { createLogger, type Logger } from '../lib/log.ts';
import { Registry } from '../lib/metrics.ts';
import { configuredMetrics, type MetricsServer } from '../lib/metrics-server.ts';
import { untilSignal } from '../lib/signals.ts';
import { within } from '../lib/within.ts';
import { checkProcessorConfig, ConfigError, type Config } from '../schemas/config.ts';
import { migrate } from '../store/migrate.ts';
import type { Store } from '../store/store.ts';
import { boundedDrain, defaultDrainBounds, drainedFully, type DrainBounds } from '../wiring/drain.ts';
import { openConfiguredLocalHubReadOnly } from '../wiring/hub.ts';
import { migrationTarget, openConfiguredStore } from '../wiring/store.ts';
import { blobStatePrefix, openBlobStateStore, whileStorageStarts } from './blob-state-store.ts';
import { processorMetrics } from './processor-metrics.ts';
import { defaultProcessorOptions, Processor, type PartitionLag, type ProcessorOptions } from './processor.ts';
import { SaltDayCloser } from './salt-days.ts';
import { loadRegistrations, watchSiteEpochs, type SiteEpochs } from './site-epochs.ts';
import { openFileStateStore, type StateStore } from './state-store.ts';

/** The processor's wiring point: `startProcessor` for any hub and store, `runProcessor` for `farol processor`. */

export { defaultProcessorOptions, type PartitionLag, type ProcessorOptions } from './processor.ts';
export { openFileStateStore, type StateStore } from './state-store.ts';

/** Consumer group of the processor on the local hub. */
export const LOCAL_PROCESSOR_GROUP = 'processor';

/** What {@link startProcessor} needs. */
export interface StartProcessorOptions {
  consumer: HubConsumer;
  store: Store;
  stateStore: StateStore;
  log: Logger;
  metrics: Registry;
  /** Overrides of {@link defaultProcessorOptions}. */
  options?: Partial<ProcessorOptions>;
  /** Site registrations (default: read from `store` every `siteRefreshMs`). */
  siteEpochs?: SiteEpochs;
}

/** A running processor. */
export interface ProcessorRuntime {
  /**
   * Stops taking records, writes everything buffered, snapshots every partition, checkpoints the
   * hub and closes the subscription. Neither the consumer, the state store nor the store is
   * closed: their owner does that after. Idempotent.
   */
  drain(): Promise<void>;
  /**
   * Makes a drain that cannot write give up: retries of writes stop, and partitions that could
   * not write everything are not checkpointed past what was written (see `Processor.abandon`).
   */
  abandon(reason: string): void;
  /** Partitions opened and not closed yet (during a drain: those still writing or checkpointing). */
  unclosedPartitions(): number[];
  /** Ingestion lag per owned partition (for the API; `/metrics` has the same as gauges). */
  lag(): Promise<PartitionLag[]>;
  /** Quiets every partition until `released` resolves; see `Processor.hold`. */
  hold(released: Promise<void>): Promise<Map<number, number>>;
  /**
   * After a site was registered, changed or deleted by this process: reloads the registrations,
   * then waits (at most `sitesChangedWaitMs`, 10 s) for the writes started before, so that a
   * deletion's mutations run after every write made without knowing of it. Never rejects.
   */
  sitesChanged(): Promise<void>;
}

/** Bound of {@link ProcessorRuntime.sitesChanged}'s wait for writes in flight. */
const sitesChangedWaitMs = 10_000;

/** Subscribes a processor to `consumer`: it writes every partition's records to `store`. */
export function startProcessor(opts: StartProcessorOptions): ProcessorRuntime {
  const options: ProcessorOptions = { ...defaultProcessorOptions, ...opts.options };
  const metrics = processorMetrics(opts.metrics);
  const store = opts.store;
  const siteEpochs =
    opts.siteEpochs ?? watchSiteEpochs({ load: () => loadRegistrations(store), intervalMs: options.siteRefreshMs, log: opts.log });
  // Every processor runs it: it is idempotent and its generations make concurrent runs safe.
  const closer = new SaltDayCloser({
    store,
    log: opts.log,
    intervalMs: options.closeIntervalMs,
    lookbackDays: options.closeLookbackDays,
    provisional: { intervalMs: options.provisionalIntervalMs, sessionTimeoutMs: options.limits.sessionTimeoutMs },
  });
  closer.start();
  const processor = new Processor({
    consumer: opts.consumer,
    store,
    stateStore: opts.stateStore,
    log: opts.log,
    metrics,
    options,
    siteEpochs,
    closer,
  });
  const unclosed = new Set<number>();
  // Plain closures: a hub implementation may call the handlers detached from their object.
  const handlers: ConsumerHandlers = {
    partitionOpened: async (partition, startOffset) => {
      await processor.partitionOpened(partition, startOffset);
      unclosed.add(partition);
    },
    processBatch: (batch) => processor.processBatch(batch),
    partitionClosed: async (partition) => {
      await processor.partitionClosed(partition);
      unclosed.delete(partition);
    },
  };
  const subscription = opts.consumer.subscribe(handlers, {
    maxBatchSize: options.hubBatchSize,
    maxWaitMs: options.hubMaxWaitMs,
  });
  const setGauges = (): void => processor.setLagGauges();
  metrics.lagSources.add(setGauges);
  // Gauges render synchronously, and the hub's end offsets are read asynchronously: keep them fresh.
  const lagTimer = setInterval(() => void processor.refreshEndOffsets(), options.lagRefreshMs);
  lagTimer.unref();
  let draining: Promise<void> | undefined;
  return {
    drain() {
      draining ??= (async () => {
        clearInterval(lagTimer);
        siteEpochs.stop();
        await subscription.close();
        await closer.stop();
        metrics.lagSources.delete(setGauges);
      })();
      return draining;
    },
    abandon: (reason) => processor.abandon(reason),
    unclosedPartitions: () => [...unclosed].sort((a, b) => a - b),
    lag: () => processor.lag(),
    hold: (released) => processor.hold(released),
    async sitesChanged() {
      await siteEpochs.refresh();
      if ((await within(processor.settled(), sitesChangedWaitMs)) === 'timed out') {
        opts.log.warn({ ms: sitesChangedWaitMs }, 'site change: writes in flight did not end in time; going on');
      }
    },
  };
}

/** `<FAROL_DATA_DIR>/processor/<group>`: snapshots and flush logs of the local hub's processor. */
export function processorStateDir(dataDir: string, group: string): string {
  return join(dataDir, 'processor', group);
}

/**
 * A processor on an opened consumer and state store. Its `drain` closes the consumer (for Event
 * Hubs: gives its claims up) and the state store, every step bounded (`deps.drain`, see
 * {@link boundedDrain}); the hub and the store stay open for their owner to close.
 */
function runProcessorOn(
  config: Config,
  consumer: HubConsumer,
  stateStore: StateStore,
  consumerName: string,
  deps: { store: Store; log: Logger; metrics: Registry; options?: Partial<ProcessorOptions>; drain?: Partial<DrainBounds> },
): ProcessorRuntime {
  // The configured retry cap, batch bounds and drain bound (FAROL_PROCESSOR_RETRY_MAX_MS, _FLUSH_MS,
  // _FLUSH_RECORDS, FAROL_DRAIN_TIMEOUT_MS); the caller's overrides win.
  const bounds: DrainBounds = { ...defaultDrainBounds, flushMs: config.FAROL_DRAIN_TIMEOUT_MS, ...deps.drain };
  const runtime = startProcessor({
    consumer,
    store: deps.store,
    stateStore,
    log: deps.log,
    metrics: deps.metrics,
    options: {
      retryMaxMs: config.FAROL_PROCESSOR_RETRY_MAX_MS,
      flushIntervalMs: config.FAROL_PROCESSOR_FLUSH_MS,
      flushRecords: config.FAROL_PROCESSOR_FLUSH_RECORDS,
      // Backpressure and a backlog's range size stay a few batches deep.
      maxBufferedRecords: Math.max(defaultProcessorOptions.maxBufferedRecords, 5 * config.FAROL_PROCESSOR_FLUSH_RECORDS),
      ...deps.options,
    },
  });
  let stopping: Promise<void> | undefined;
  return {
    drain() {
      // The subscription's close runs every partition's close: flush, snapshot, checkpoint.
      stopping ??= boundedDrain(
        runtime,
        runtime.drain(),
        [
          [`closing ${consumerName}`, () => consumer.close()],
          ['closing the state store', () => stateStore.close()],
        ],
        bounds,
        deps.log,
      );
      return stopping;
    },
    abandon: (reason) => runtime.abandon(reason),
    unclosedPartitions: () => runtime.unclosedPartitions(),
    lag: () => runtime.lag(),
    hold: (released) => runtime.hold(released),
    sitesChanged: () => runtime.sitesChanged(),
  };
}

/**
 * Starts a processor on a local hub opened by the caller (read-only: in `farol start`'s processor thread and in
 * `farol processor`), with its file state store. `drain` also closes the consumer and the state
 * store; the hub and the store stay open for their owner to close.
 */
export async function startLocalProcessor(
  config: Config,
  deps: { hub: LocalHub; store: Store; log: Logger; metrics: Registry; options?: Partial<ProcessorOptions>; drain?: Partial<DrainBounds> },
): Promise<ProcessorRuntime> {
  const consumer = await deps.hub.openConsumer(LOCAL_PROCESSOR_GROUP);
  let stateStore: StateStore;
  try {
    stateStore = await openFileStateStore(processorStateDir(config.FAROL_DATA_DIR, LOCAL_PROCESSOR_GROUP));
  } catch (err) {
    await consumer.close();
    throw err;
  }
  return runProcessorOn(config, consumer, stateStore, 'the hub consumer', deps);
}

/**
 * Starts a processor on Event Hubs (FAROL_HUB=eventhubs): the consumer shares the partitions with
 * every processor of the consumer group through the blob checkpoint store (container created if
 * missing), and the partitions' state lives in the same container, so it moves with a partition.
 * `drain` also closes the consumer (giving its claims up) and the state store, each step bounded
 * (`deps.drain`): it rejects with {@link DrainIncompleteError} when what was held could not be
 * written and checkpointed in time, and only warns when a client close after that hangs.
 */
export async function startEventHubsProcessor(
  config: Config,
  deps: { store: Store; log: Logger; metrics: Registry; options?: Partial<ProcessorOptions>; drain?: Partial<DrainBounds> },
): Promise<ProcessorRuntime & { partitionCount: number }> {
  checkProcessorConfig(config);
  const { FAROL_EVENTHUBS_CONNECTION_STRING: connectionString, FAROL_EVENTHUBS_NAME: eventHubName } = config;
  const storage = config.FAROL_CHECKPOINT_CONNECTION_STRING;
  if (!connectionString || !eventHubName || !storage) throw new Error('Event Hubs settings missing');
  const container = new ContainerClient(storage, config.FAROL_CHECKPOINT_CONTAINER, {
    retryOptions: { maxTries: 4, tryTimeoutInMs: 10_000, retryDelayInMs: 200, maxRetryDelayInMs: 2_000 },
  });
  // Storage not answering yet is waited for, as Event Hubs is by openEventHubsConsumer.
  await whileStorageStarts({ what: 'creating the checkpoint container', log: deps.log }, () => container.createIfNotExists());
  const consumer = await openEventHubsConsumer({
    connectionString,
    eventHubName,
    consumerGroup: config.FAROL_EVENTHUBS_CONSUMER_GROUP,
    checkpointStore: new BlobCheckpointStore(container),
    loadBalancing: {
      strategy: config.FAROL_EVENTHUBS_LOAD_BALANCING,
      updateIntervalMs: config.FAROL_EVENTHUBS_UPDATE_INTERVAL_MS,
      ownershipExpiryMs: config.FAROL_EVENTHUBS_OWNERSHIP_EXPIRY_MS,
    },
    log: deps.log,
  });
  let stateStore: StateStore;
  try {
    const prefix = blobStatePrefix(consumer.namespace, eventHubName, config.FAROL_EVENTHUBS_CONSUMER_GROUP);
    stateStore = await whileStorageStarts({ what: 'opening the processor state', log: deps.log }, () =>
      openBlobStateStore({ container, prefix }),
    );
  } catch (err) {
    await consumer.close();
    throw err;
  }
  return { ...runProcessorOn(config, consumer, stateStore, 'the Event Hubs client', deps), partitionCount: consumer.partitionCount };
}

/**
 * `farol processor`: consumes the hub — the local one read-only (the collector process writes
 * it), or Event Hubs shared with other processors — writes to the configured store after
 * migrating it, and drains on SIGTERM.
 */
export async function runProcessor(config: Config): Promise<number> {
  const log = createLogger(config.FAROL_LOG_LEVEL, { service: 'processor' });
  if (!processorConfigOk(config, 'processor')) return 2;
  const metrics = new Registry();
  const store = await openConfiguredStore(config);
  let metricsServer: MetricsServer | undefined;
  try {
    metricsServer = await configuredMetrics(config, metrics, log);
    await migrate(store, migrationTarget(config));
    if (config.FAROL_HUB === 'eventhubs') {
      const processor = await startEventHubsProcessor(config, { store, log, metrics });
      log.info({ hub: 'eventhubs', partitions: processor.partitionCount, store: store.kind }, 'processor started');
      const signal = await untilSignal();
      log.info({ signal }, 'draining');
      if (!(await drainedFully(processor, log))) return 1;
      log.info({}, 'stopped');
      return 0;
    }
    const hub = await openConfiguredLocalHubReadOnly(config, log);
    try {
      const processor = await startLocalProcessor(config, { hub, store, log, metrics });
      log.info({ partitions: hub.partitionCount, store: store.kind }, 'processor started');
      const signal = await untilSignal();
      log.info({ signal }, 'draining');
      if (!(await drainedFully(processor, log))) return 1;
    } finally {
      await hub.close();
    }
  } finally {
    metricsServer?.close();
    await store.close();
  }
  log.info({}, 'stopped');
  return 0;
}

/**
 * Whether the configuration holds what a processor needs (`farol processor`, `farol start`);
 * if not, says why on stderr, naming the variable (the caller exits 2).
 */
export function processorConfigOk(config: Config, command: string): boolean {
  try {
    checkProcessorConfig(config);
    return true;
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(`farol ${command}: ${err.message}\n`);
    return false;
  }
}
