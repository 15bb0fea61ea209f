import type { Config } from '../schemas/config.ts';
import type { Store } from '../store/store.ts';
import { migrate } from '../store/migrate.ts';
import { createLogger, type Logger } from '../lib/log.ts';
import { Registry } from '../lib/metrics.ts';
import { configuredMetrics, type MetricsServer } from '../lib/metrics-server.ts';
import { untilSignal } from '../lib/signals.ts';
import { ControlPlane, controlPlaneOptions, SITE_DELETE_GRACE_MS } from '../control/control-plane.ts';
import { listenApi } from './server.ts';

/**
 * The API's wiring point: `farol api` (the reporting API and dashboard alone on FAROL_PORT) and
 * the pieces `farol start` shares with it (opening the store with a clear error, bootstrap).
 */

/** Thrown when the embedded engine's data dir is held by another process. */
export class DataDirLockedError extends Error {}

/**
 * The configured store: a ClickHouse server (FAROL_CLICKHOUSE_URL) or embedded chDB in
 * FAROL_DATA_DIR. A data dir held by another process (a running `farol start`) is a
 * {@link DataDirLockedError} saying what to do.
 */
export async function openStoreForAdmin(config: Config): Promise<Store> {
  const { openConfiguredStore } = await import('../processor/main.ts');
  try {
    return openConfiguredStore(config);
  } catch (err) {
    const text = `${err instanceof Error ? err.message : String(err)} ${err instanceof Error && err.cause instanceof Error ? err.cause.message : ''}`;
    if (config.FAROL_CLICKHOUSE_URL === undefined && ((err as { code?: unknown }).code === 'CHDB_CONNECTION' || /lock|Failed to create connection/i.test(text))) {
      throw new DataDirLockedError(
        `the data dir ${config.FAROL_DATA_DIR} is in use by another farol process (is \`farol start\` running?). ` +
          'The embedded engine can be opened by one process only: stop it first, or use a ClickHouse server (FAROL_CLICKHOUSE_URL).',
      );
    }
    throw err;
  }
}

/**
 * Completes the bootstrap (account, `localhost`, owner, first owner token; FAROL_SITES registered)
 * and prints a newly issued random owner token once, as a JSON log line and a plain line. A token
 * from FAROL_BOOTSTRAP_TOKEN is not printed: the operator has it.
 */
export async function bootstrapControl(
  control: ControlPlane,
  config: Config,
  log: Logger,
  write: (text: string) => void = (t) => process.stdout.write(t),
): Promise<void> {
  const sites = (config.FAROL_SITES ?? '').split(',').map((s) => s.trim()).filter((s) => s !== '');
  const result = await control.bootstrap({
    token: config.FAROL_BOOTSTRAP_TOKEN,
    sites,
    announce: (token, prefix) => {
      if (config.FAROL_BOOTSTRAP_TOKEN !== undefined) return;
      // Written whatever the log level: it is the only way in, and it is never shown again.
      write(`${JSON.stringify({ level: 'info', time: new Date().toISOString(), msg: 'bootstrap owner token (shown once)', token, prefix })}\n`);
      write(`\nFarol owner API token (shown once, store it now): ${token}\n  use it as: Authorization: Bearer ${token}\n\n`);
    },
  });
  if (result.issued?.fromEnv) log.info({ prefix: result.issued.prefix }, 'bootstrap owner token set from FAROL_BOOTSTRAP_TOKEN');
  if (result.sitesAdded.length > 0) log.info({ sites: result.sitesAdded, account: result.accountId }, 'sites registered');
}

/** `farol api`: the reporting API and dashboard on FAROL_PORT, until SIGTERM. */
export async function runApi(config: Config): Promise<number> {
  const log = createLogger(config.FAROL_LOG_LEVEL, { service: 'api' });
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
    const { migrationTarget } = await import('../processor/main.ts');
    const applied = await migrate(store, migrationTarget(config));
    if (applied.length > 0) log.info({ versions: applied }, 'migrations applied');
    // Processors run in other processes: a deleted site's data goes once they know.
    const control = new ControlPlane(store, { ...controlPlaneOptions(config), deleteGraceMs: SITE_DELETE_GRACE_MS });
    await bootstrapControl(control, config, log);
    const server = await listenApi({ store, control, config, log, metrics, now: () => new Date() });
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
