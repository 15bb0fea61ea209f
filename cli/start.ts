import type { Config } from '../schemas/config.ts';
import { startCollector } from '../ingest/main.ts';
import { processorConfigOk, startEventHubsProcessor, startLocalProcessor, type ProcessorRuntime } from '../processor/main.ts';
import { migrate } from '../store/migrate.ts';
import { createLogger } from '../lib/log.ts';
import { Registry } from '../lib/metrics.ts';
import { configuredMetrics, type MetricsServer } from '../lib/metrics-server.ts';
import { untilSignal } from '../lib/signals.ts';
import { configuredTls } from '../lib/http/tls.ts';
import { ControlPlane, controlPlaneOptions } from '../control/control-plane.ts';
import { bootstrapControl, collectorControl } from '../wiring/control.ts';
import { drainedFully } from '../wiring/drain.ts';
import { openConfiguredEventHubsProducer, openConfiguredLocalHubReadOnly } from '../wiring/hub.ts';
import { migrationTarget, openConfiguredStore } from '../wiring/store.ts';
import { startBackupService, type BackupService } from '../wiring/backup.ts';
import { gatedWrites } from '../store/write-gate.ts';
import { sharedAppends } from '../hub/local-hub.ts';
import { startIngestThread, type IngestThread } from './ingest-thread.ts';

/**
 * `farol start`: the all-in-one process: collector + hub + processor on the configured store
 * (embedded chDB by default; only one process may open its data dir, so they share this one).
 * The hub is the local log, or Event Hubs (FAROL_HUB=eventhubs: this process's processor then
 * shares the partitions with any other `farol processor` of the consumer group).
 * On the local hub, ingest (collector, API routes, the hub's writer) runs on its own thread
 * (cli/ingest-thread.ts), the processor and the engine on this one; an ingest thread that dies
 * ends the process with exit 1 (the processor drained first), for its supervisor to restart it.
 * On Event Hubs all of it shares this thread.
 * SIGTERM drains in flow order: stop ingest, flush the processor and checkpoint, close.
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
  const engine = await openConfiguredStore(config, { backups: embedded });
  const gate = gatedWrites(engine);
  const store = gate.store;
  let backups: BackupService | undefined;
  const serveBackups = async (processor: BackupServiceProcessor): Promise<void> => {
    if (embedded) backups = await startBackupService({ config, store: engine, gate, processor, log });
  };
  // 1 when the processor had to give up writing what it held (the hub keeps it for the next run),
  // or when the ingest thread died.
  let code = 0;
  let metricsServer: MetricsServer | undefined;
  let ingest: IngestThread | undefined;
  try {
    // The ingest thread's counters with this thread's (each family registered on one thread only).
    metricsServer = await configuredMetrics(
      config,
      { render: async () => metrics.render() + (ingest === undefined ? '' : await ingest.metrics()) },
      log,
    );
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
      await bootstrapControl(new ControlPlane(store, controlPlaneOptions(config)), config, log);
      let processor: ProcessorRuntime | undefined;
      // First: the thread opens the hub for writing (recovering a torn tail) before the processor reads it.
      const appends = sharedAppends(config.FAROL_HUB_PARTITIONS);
      ingest = await startIngestThread(config, { store, log, appends, sitesChanged: async () => processor?.sitesChanged() });
      const thread = ingest;
      const reloadTls = (): void => void thread.reloadTls().catch((err: unknown) => log.error({ err }, 'tls reload failed'));
      if (tls !== undefined) process.on('SIGHUP', reloadTls);
      try {
        const hub = await openConfiguredLocalHubReadOnly(config, log, appends);
        try {
          processor = await startLocalProcessor(config, { hub, store, log, metrics });
          await serveBackups(processor);
          await thread.listen();
          const ended = await Promise.race([untilSignal(), thread.died]);
          if (ended instanceof Error) {
            code = 1;
            log.error({ err: ended }, 'the ingest thread died: draining the processor, then exiting');
          } else {
            log.info({ signal: ended }, 'draining');
          }
          await backups?.close();
          await thread.stop();
          if (!(await drainedFully(processor, log))) code = 1;
        } finally {
          await backups?.close();
          await hub.close();
        }
      } finally {
        process.off('SIGHUP', reloadTls);
        await thread.stop();
      }
    }
  } finally {
    metricsServer?.close();
    await store.close();
  }
  log.info({ code }, 'stopped');
  return code;
}

type BackupServiceProcessor = Parameters<typeof startBackupService>[0]['processor'];
