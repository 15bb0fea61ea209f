import {
  migrationsTable,
  renderBootstrap,
  renderMigrations,
  renderRetentionChange,
  retentionTables,
  type MigrationTarget,
} from '../schemas/migrations/index.ts';
import type { Store } from './store.ts';

/**
 * Applies the ClickHouse schema (`farol migrate`, and on start in embedded mode): creates the
 * database and the migrations record, applies each migration not yet recorded, in order, and
 * records it. Statements are idempotent, so a run cut short is completed by the next one, and
 * two runs racing apply the same statements twice harmlessly.
 *
 * Returns the versions applied by this run ([] when the schema was current).
 */
export async function migrate(store: Store, target: MigrationTarget): Promise<number[]> {
  if (store.database !== target.database) {
    throw new Error(`migrate: store uses database "${store.database}" but the target is "${target.database}"`);
  }
  // Statements name every table in full and may run before the database exists.
  const run = (sql: string, params?: Record<string, unknown>): Promise<void> =>
    store.exec(sql, params, { withoutDatabase: true });

  for (const sql of renderBootstrap(target)) await run(sql);
  const done = await appliedVersions(store, target.database);
  const applied: number[] = [];
  for (const m of renderMigrations(target)) {
    if (done.has(m.version)) continue;
    for (const sql of m.statements) await run(sql);
    if (m.monthly !== undefined) {
      // The months events has rows of, oldest first (on a cluster, of every shard).
      const months = await store.query<{ m: number }>(
        `SELECT DISTINCT toYYYYMM(timestamp) AS m FROM ${target.database}.events ORDER BY m`,
      );
      for (const { m: month } of months) for (const sql of m.monthly(Number(month))) await run(sql);
    }
    // Recorded after its statements: a crash in between re-applies (idempotent) rather than skips.
    await run(`INSERT INTO ${target.database}.${migrationsTable} (version, name) VALUES ({version:UInt32}, {name:String})`, {
      version: m.version,
      name: m.name,
    });
    applied.push(m.version);
  }
  await applyRetention(store, target);
  return applied;
}

async function appliedVersions(store: Store, database: string): Promise<Set<number>> {
  const rows = await store.query<{ version: number }>(
    `SELECT DISTINCT version FROM ${database}.${migrationsTable}`,
  );
  return new Set(rows.map((r) => Number(r.version)));
}

/**
 * The TTL is rendered once, when a raw table is created; when FAROL_RETENTION_DAYS changes later
 * this brings the tables in line (shorter retention must take effect, for privacy).
 */
async function applyRetention(store: Store, target: MigrationTarget): Promise<void> {
  const local = target.cluster === undefined ? '' : '_local';
  for (const table of retentionTables) {
    const rows = await store.query<{ engine_full: string }>(
      'SELECT engine_full FROM system.tables WHERE database = {db:String} AND name = {name:String}',
      { db: target.database, name: `${table.name}${local}` },
    );
    const days = /toIntervalDay\((\d+)\)/.exec(rows[0]?.engine_full ?? '')?.[1];
    if (days !== undefined && Number(days) !== target.retentionDays) {
      await store.exec(renderRetentionChange(target, table), undefined, { withoutDatabase: true });
    }
  }
}
