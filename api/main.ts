import type { Config } from '../schemas/config.ts';
import type { Store } from '../store/store.ts';
import { migrate } from '../store/migrate.ts';
import { createLogger } from '../lib/log.ts';
import { Registry } from '../lib/metrics.ts';
import { configuredMetrics, type MetricsServer } from '../lib/metrics-server.ts';
import { untilSignal } from '../lib/signals.ts';
import { ControlPlane, controlPlaneOptions } from '../control/control-plane.ts';
import { bootstrapControl } from '../wiring/control.ts';
import { DataDirLockedError, migrationTarget, openStoreForAdmin } from '../wiring/store.ts';
import { listenApi } from './server.ts';
import { configuredTls } from '../lib/http/tls.ts';

/** The API's wiring point: `farol api`, the reporting API and dashboard alone on FAROL_PORT. */

/** `farol api`: the reporting API and dashboard on FAROL_PORT, until SIGTERM. */
export async function runApi(config: Config): Promise<number> {
  const log = createLogger(config.FAROL_LOG_LEVEL, { service: 'api' });
  // Checked before the store opens: a bad certificate is exit 2 naming the variable.
  const tls = configuredTls(config);
  let store: Store;
  try {
    store = await openStoreForAdmin(config);
  } catch (err) {
    if (!(err instanceof DataDirLockedError)) throw err;
    process.stderr.write(`farol api: ${err.message}\n`);
    return 1;
  }
  const metrics = new Registry();
  let metricsServer: MetricsServer | undefined;
  try {
    metricsServer = await configuredMetrics(config, metrics, log);
    const applied = await migrate(store, migrationTarget(config));
    if (applied.length > 0) log.info({ versions: applied }, 'migrations applied');
    // Processors run in other processes: a deleted site's data goes once they know.
    const control = new ControlPlane(store, { ...controlPlaneOptions(config), deleteGraceMs: config.FAROL_SITE_DELETE_GRACE_MS });
    await bootstrapControl(control, config, log);
    const server = await listenApi({ store, control, config, log, metrics, now: () => new Date() }, tls);
    const signal = await untilSignal();
    log.info({ signal }, 'draining');
    await server.stop();
  } finally {
    metricsServer?.close();
    await store.close();
  }
  log.info({}, 'stopped');
  return 0;
}
