import type { Config } from '../schemas/config.ts';
import { startCollector } from '../ingest/main.ts';
import { processorConfigOk, startEventHubsProcessor } from '../processor/main.ts';
import { migrate } from '../store/migrate.ts';
import { createLogger } from '../lib/log.ts';
import { Registry } from '../lib/metrics.ts';
import { configuredMetrics, type MetricsServer } from '../lib/metrics-server.ts';
import { untilSignal } from '../lib/signals.ts';
import { yieldToMainThread } from '../lib/thread-priority.ts';
import { configuredTls } from '../lib/http/tls.ts';
import { collectorControl } from '../wiring/control.ts';
import { drainedFully } from '../wiring/drain.ts';
import { openConfiguredEventHubsProducer, openConfiguredLocalHub } from '../wiring/hub.ts';
import { migrationTarget, openConfiguredStore } from '../wiring/store.ts';
import { startBackupService, type BackupService } from '../wiring/backup.ts';
import { gatedWrites } from '../store/write-gate.ts';
import { sharedAppends } from '../hub/local-hub.ts';
import { startProcessorThread, type ProcessorThread } from './processor-thread.ts';

/**
 * `farol start`: the all-in-one process: collector + hub + processor on the configured store
 * (embedded chDB by default; only one process may open its data dir, so they share this one).
 * The hub is the local log, or Event Hubs (FAROL_HUB=eventhubs: this process's processor then
 * shares the partitions with any other `farol processor` of the consumer group).
 * On the local hub the processor runs on its own thread (cli/processor-thread.ts); ingest
 * (collector, API routes, the hub's writer) and the engine stay on this one. A processor thread
 * that dies ends the process with exit 1 (ingest stopped first), for its supervisor to restart it.
 * On Event Hubs all of it shares this thread.
 * SIGTERM drains in flow order: stop ingest, flush the processor and checkpoint, close.
 * Every thread but this one runs at a lower CPU priority (lib/thread-priority.ts): a beacon's 202
 * does not wait behind the processor's and the engine's threads when the cores are busy.
 */
export async function runStart(config: Config): Promise<number> {
  const log = createLogger(config.FAROL_LOG_LEVEL, { service: 'farol' });
  if (!processorConfigOk(config, 'start')) return 2;
  // Checked before anything opens: a bad certificate is exit 2 naming the variable.
  const tls = configuredTls(config);
  const tlsOpt = tls === undefined ? {} : { tls };
  const metrics = new Registry();
  // The embedded engine is backed up through this process (`farol backup`, the daily schedule):
  // everything else writes through the gate the backup closes.
  const embedded = config.FAROL_CLICKHOUSE_URL === undefined;
  const engine = await openConfiguredStore(config, { backups: embedded, log });
  const gate = gatedWrites(engine);
  const store = gate.store;
  let backups: BackupService | undefined;
  const serveBackups = async (processor: BackupServiceProcessor): Promise<void> => {
    if (embedded) backups = await startBackupService({ config, store: engine, gate, processor, log });
  };
  // 1 when the processor had to give up writing what it held (the hub keeps it for the next run),
  // or when the processor thread died.
  let code = 0;
  let metricsServer: MetricsServer | undefined;
  let processorThread: ProcessorThread | undefined;
  // Scanned every 2 s: the engine and the processor thread start threads as they work.
  const yielding = config.FAROL_START_NICE > 0 ? yieldToMainThread({ by: config.FAROL_START_NICE, intervalMs: 2_000 }) : { stop: () => {} };
  try {
    // The processor thread's counters with this thread's (each family registered on one thread only).
    const threadMetrics = async (): Promise<string> =>
      processorThread === undefined ? '' : processorThread.metrics().catch(() => '# the processor thread is not answering: its metrics are missing\n');
    metricsServer = await configuredMetrics(config, { render: async () => metrics.render() + (await threadMetrics()) }, log);
    const applied = await migrate(store, migrationTarget(config));
    if (applied.length > 0) log.info({ versions: applied }, 'migrations applied');
    if (config.FAROL_HUB === 'eventhubs') {
      const api = await collectorControl(config, store, log, metrics, { bootstrap: true });
      const processor = await startEventHubsProcessor(config, { store, log, metrics });
      // A site deleted here: the processor learns it before the deletion's mutations run.
      api.control.onSitesChanged(() => processor.sitesChanged());
      try {
        await serveBackups(processor);
        const hub = await openConfiguredEventHubsProducer(config, log);
        try {
          const collector = await startCollector(config, { hub, log, metrics, ...api.collector, ...tlsOpt });
          const signal = await untilSignal();
          log.info({ signal }, 'draining');
          await backups?.close();
          await collector.stop();
        } finally {
          await hub.close();
        }
      } finally {
        await backups?.close();
        if (!(await drainedFully(processor, log))) code = 1;
      }
    } else {
      const api = await collectorControl(config, store, log, metrics, { bootstrap: true });
      const appends = sharedAppends(config.FAROL_HUB_PARTITIONS);
      // Opened (torn tails recovered) before the processor thread reads it.
      const hub = await openConfiguredLocalHub(config, log, appends, metrics);
      try {
        const thread = await startProcessorThread(config, { store, appends, log });
        processorThread = thread;
        // A site deleted here: the processor learns it before the deletion's mutations run.
        api.control.onSitesChanged(() => thread.sitesChanged());
        try {
          await serveBackups(thread);
          const collector = await startCollector(config, { hub, log, metrics, ...api.collector, ...tlsOpt });
          const ended = await Promise.race([untilSignal(), thread.died]);
          if (ended instanceof Error) {
            code = 1;
            log.error({ err: ended }, 'the processor thread died: stopping ingest, then exiting (the hub keeps what it did not write)');
          } else {
            log.info({ signal: ended }, 'draining');
          }
          await backups?.close();
          await collector.stop();
        } finally {
          await backups?.close();
          if (!(await thread.drain())) code = 1;
        }
      } finally {
        await hub.close();
      }
    }
  } finally {
    yielding.stop();
    metricsServer?.close();
    await store.close();
  }
  log.info({ code }, 'stopped');
  return code;
}

type BackupServiceProcessor = Parameters<typeof startBackupService>[0]['processor'];
