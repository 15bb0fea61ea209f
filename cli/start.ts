import type { Config } from '../schemas/config.ts';
import { startCollector } from '../ingest/main.ts';
import { watchSites } from '../ingest/site-watch.ts';
import { processorConfigOk, startEventHubsProcessor, startLocalProcessor } from '../processor/main.ts';
import { migrate } from '../store/migrate.ts';
import { createLogger } from '../lib/log.ts';
import { Registry } from '../lib/metrics.ts';
import { configuredMetrics, type MetricsServer } from '../lib/metrics-server.ts';
import { untilSignal } from '../lib/signals.ts';
import { configuredTls } from '../lib/http/tls.ts';
import type { Logger } from '../lib/log.ts';
import type { Store } from '../store/store.ts';
import { ControlPlane, controlPlaneOptions } from '../control/control-plane.ts';
import { registerApi } from '../api/server.ts';
import { bootstrapControl } from '../wiring/control.ts';
import { drainedFully } from '../wiring/drain.ts';
import { openConfiguredEventHubsProducer, openConfiguredLocalHub } from '../wiring/hub.ts';
import { migrationTarget, openConfiguredStore } from '../wiring/store.ts';
import { startBackupService, type BackupService } from '../wiring/backup.ts';
import { gatedWrites } from '../store/write-gate.ts';

/**
 * `farol start`: the all-in-one process: collector + hub + processor on the configured store
 * (embedded chDB by default; only one process may open its data dir, so they share this one).
 * The hub is the local log, or Event Hubs (FAROL_HUB=eventhubs: this process's processor then
 * shares the partitions with any other `farol processor` of the consumer group).
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
  // 1 when the processor had to give up writing what it held (the hub keeps it for the next run).
  let code = 0;
  let metricsServer: MetricsServer | undefined;
  try {
    metricsServer = await configuredMetrics(config, metrics, log);
    const applied = await migrate(store, migrationTarget(config));
    if (applied.length > 0) log.info({ versions: applied }, 'migrations applied');
    const api = await startControl(config, store, log, metrics);
    if (config.FAROL_HUB === 'eventhubs') {
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
      const hub = await openConfiguredLocalHub(config, log);
      try {
        const processor = await startLocalProcessor(config, { hub, store, log, metrics });
        api.control.onSitesChanged(() => processor.sitesChanged());
        await serveBackups(processor);
        const collector = await startCollector(config, { hub, log, metrics, ...api.collector, ...tlsOpt });
        const signal = await untilSignal();
        log.info({ signal }, 'draining');
        await backups?.close();
        await collector.stop();
        if (!(await drainedFully(processor, log))) code = 1;
      } finally {
        await backups?.close();
        await hub.close();
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

/**
 * The control plane of `farol start`: bootstrap, the registered sites the collector accepts
 * (refreshed every few seconds and right after a local change), and the API routes on the
 * collector's app, so collector, API and dashboard share one port.
 */
async function startControl(config: Config, store: Store, log: Logger, metrics: Registry) {
  // With the local hub this process holds the only processor, told at once (onSitesChanged); on
  // Event Hubs others may run elsewhere.
  const control = new ControlPlane(store, {
    ...controlPlaneOptions(config),
    deleteGraceMs: config.FAROL_HUB === 'eventhubs' ? config.FAROL_SITE_DELETE_GRACE_MS : 0,
  });
  await bootstrapControl(control, config, log);
  const sites = await watchSites({ load: () => control.registeredSites(), intervalMs: config.FAROL_SITES_REFRESH_MS, log });
  control.onSitesChanged(() => sites.refresh());
  const deps = { store, control, config, log, metrics, now: () => new Date() };
  return {
    control,
    collector: {
      knownSite: sites.has,
      siteEpoch: sites.epoch,
      routes: (app: Parameters<typeof registerApi>[0]) => registerApi(app, deps),
    },
  };
}
