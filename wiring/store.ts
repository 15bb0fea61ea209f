import type { Logger } from '../lib/log.ts';
import type { Config } from '../schemas/config.ts';
import type { MigrationTarget } from '../schemas/migrations/index.ts';
import { openHttpStore } from '../store/http-store.ts';
import type { Store } from '../store/store.ts';

/**
 * The configured store: a ClickHouse server when FAROL_CLICKHOUSE_URL is set, else embedded chDB.
 * The embedded engine is loaded only here, when it is the one: a process on a ClickHouse server
 * (`farol api`, `farol processor`, the standalone collector) never maps chDB's library.
 */
export async function openConfiguredStore(config: Config, opts: { backups?: boolean; log?: Logger } = {}): Promise<Store> {
  if (config.FAROL_CLICKHOUSE_URL !== undefined) {
    return openHttpStore({
      url: config.FAROL_CLICKHOUSE_URL,
      username: config.FAROL_CLICKHOUSE_USER,
      password: config.FAROL_CLICKHOUSE_PASSWORD,
      database: config.FAROL_CLICKHOUSE_DATABASE,
      cluster: config.FAROL_CLICKHOUSE_CLUSTER,
    });
  }
  const { openChdbStore } = await import('../store/chdb-store.ts');
  // `farol backup`: the engine may write backups to its staging folder (none where the data dir's
  // path cannot be given to it; createBackup then says why).
  const backupsPath = opts.backups === true ? (await import('../store/backup.ts')).stagingPath(config.FAROL_DATA_DIR) : undefined;
  const store = openChdbStore({
    dataDir: config.FAROL_DATA_DIR,
    database: config.FAROL_CLICKHOUSE_DATABASE,
    ...(backupsPath === undefined ? {} : { backupsPath }),
  });
  try {
    // Before anything replays: a block logged for deduplication by a run killed before it committed.
    const forgotten = await (await import('../store/dedup-log.ts')).forgetLostBlocks(store, config.FAROL_CLICKHOUSE_DATABASE);
    if (forgotten.length > 0) {
      opts.log?.warn(
        { blocks: forgotten.length, tables: [...new Set(forgotten.map((b) => b.table))] },
        'the engine remembered inserts a kill stopped before they committed; forgot them so their replay lands',
      );
    }
  } catch (err) {
    await store.close();
    throw err;
  }
  return store;
}

/** Where migrations go for this configuration. */
export function migrationTarget(config: Config): MigrationTarget {
  return {
    database: config.FAROL_CLICKHOUSE_DATABASE,
    cluster: config.FAROL_CLICKHOUSE_CLUSTER,
    retentionDays: config.FAROL_RETENTION_DAYS,
  };
}

/** Thrown when the embedded engine's data dir is held by another process. */
export class DataDirLockedError extends Error {}

/**
 * {@link openConfiguredStore} for a process that shares the data dir with none (`farol api`, the
 * admin commands): a data dir held by another process (a running `farol start`) is a
 * {@link DataDirLockedError} saying what to do.
 */
export async function openStoreForAdmin(config: Config, opts: { backups?: boolean; log?: Logger } = {}): Promise<Store> {
  try {
    return await openConfiguredStore(config, opts);
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
