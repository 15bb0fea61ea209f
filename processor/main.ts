import { join } from 'node:path';
import type { ConsumerHandlers, HubConsumer } from '../hub/hub.ts';
import { openLocalHub, type LocalHub } from '../hub/local-hub.ts';
import { createLogger, type Logger } from '../lib/log.ts';
import { Registry } from '../lib/metrics.ts';
import { untilSignal } from '../lib/signals.ts';
import type { Config } from '../schemas/config.ts';
import type { MigrationTarget } from '../schemas/migrations/index.ts';
import { openChdbStore } from '../store/chdb-store.ts';
import { openHttpStore } from '../store/http-store.ts';
import { migrate } from '../store/migrate.ts';
import type { Store } from '../store/store.ts';
import { processorMetrics } from './processor-metrics.ts';
import { defaultProcessorOptions, Processor, type PartitionLag, type ProcessorOptions } from './processor.ts';
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
}

/** A running processor. */
export interface ProcessorRuntime {
  /**
   * Stops taking records, writes everything buffered, snapshots every partition, checkpoints the
   * hub and closes the subscription. Neither the consumer, the state store nor the store is
   * closed: their owner does that after. Idempotent.
   */
  drain(): Promise<void>;
  /** Ingestion lag per owned partition (for the API; `/metrics` has the same as gauges). */
  lag(): Promise<PartitionLag[]>;
}

/** Subscribes a processor to `consumer`: it writes every partition's records to `store`. */
export function startProcessor(opts: StartProcessorOptions): ProcessorRuntime {
  const options: ProcessorOptions = { ...defaultProcessorOptions, ...opts.options };
  const metrics = processorMetrics(opts.metrics);
  const processor = new Processor({
    consumer: opts.consumer,
    store: opts.store,
    stateStore: opts.stateStore,
    log: opts.log,
    metrics,
    options,
  });
  // Plain closures: a hub implementation may call the handlers detached from their object.
  const handlers: ConsumerHandlers = {
    partitionOpened: (partition, startOffset) => processor.partitionOpened(partition, startOffset),
    processBatch: (batch) => processor.processBatch(batch),
    partitionClosed: (partition) => processor.partitionClosed(partition),
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
        await subscription.close();
        metrics.lagSources.delete(setGauges);
      })();
      return draining;
    },
    lag: () => processor.lag(),
  };
}

/** `<FAROL_DATA_DIR>/processor/<group>`: snapshots and flush logs of the local hub's processor. */
export function processorStateDir(dataDir: string, group: string): string {
  return join(dataDir, 'processor', group);
}

/** Where migrations go for this configuration. */
export function migrationTarget(config: Config): MigrationTarget {
  return {
    database: config.FAROL_CLICKHOUSE_DATABASE,
    cluster: config.FAROL_CLICKHOUSE_CLUSTER,
    retentionDays: config.FAROL_RETENTION_DAYS,
  };
}

/** The configured store: a ClickHouse server when FAROL_CLICKHOUSE_URL is set, else embedded chDB. */
export function openConfiguredStore(config: Config): Store {
  if (config.FAROL_CLICKHOUSE_URL === undefined) {
    return openChdbStore({ dataDir: config.FAROL_DATA_DIR, database: config.FAROL_CLICKHOUSE_DATABASE });
  }
  return openHttpStore({
    url: config.FAROL_CLICKHOUSE_URL,
    username: config.FAROL_CLICKHOUSE_USER,
    password: config.FAROL_CLICKHOUSE_PASSWORD,
    database: config.FAROL_CLICKHOUSE_DATABASE,
    cluster: config.FAROL_CLICKHOUSE_CLUSTER,
  });
}

/**
 * Starts a processor on a local hub opened by the caller (writable in `farol start`, read-only in
 * `farol processor`), with its file state store. `drain` also closes the consumer and the state
 * store; the hub and the store stay open for their owner to close.
 */
export async function startLocalProcessor(
  config: Config,
  deps: { hub: LocalHub; store: Store; log: Logger; metrics: Registry; options?: Partial<ProcessorOptions> },
): Promise<ProcessorRuntime> {
  const consumer = await deps.hub.openConsumer(LOCAL_PROCESSOR_GROUP);
  let stateStore: StateStore;
  try {
    stateStore = await openFileStateStore(processorStateDir(config.FAROL_DATA_DIR, LOCAL_PROCESSOR_GROUP));
  } catch (err) {
    await consumer.close();
    throw err;
  }
  const runtime = startProcessor({
    consumer,
    store: deps.store,
    stateStore,
    log: deps.log,
    metrics: deps.metrics,
    ...(deps.options === undefined ? {} : { options: deps.options }),
  });
  let stopping: Promise<void> | undefined;
  return {
    drain() {
      stopping ??= (async () => {
        await runtime.drain();
        await consumer.close();
        await stateStore.close();
      })();
      return stopping;
    },
    lag: () => runtime.lag(),
  };
}

/**
 * `farol processor`: consumes the local hub (read-only: the collector process writes it), writes
 * to the configured store after migrating it, and drains on SIGTERM.
 */
export async function runProcessor(config: Config): Promise<number> {
  const log = createLogger(config.FAROL_LOG_LEVEL, { service: 'processor' });
  if (config.FAROL_HUB !== 'local') {
    log.error({ hub: config.FAROL_HUB }, 'only FAROL_HUB=local is supported by this build');
    return 1;
  }
  const metrics = new Registry();
  const store = openConfiguredStore(config);
  try {
    await migrate(store, migrationTarget(config));
    const hub = await openLocalHub({
      dir: join(config.FAROL_DATA_DIR, 'hub'),
      partitions: config.FAROL_HUB_PARTITIONS,
      readOnly: true,
      log,
    });
    try {
      const processor = await startLocalProcessor(config, { hub, store, log, metrics });
      log.info({ partitions: hub.partitionCount, store: store.kind }, 'processor started');
      const signal = await untilSignal();
      log.info({ signal }, 'draining');
      await processor.drain();
    } finally {
      await hub.close();
    }
  } finally {
    await store.close();
  }
  log.info({}, 'stopped');
  return 0;
}
