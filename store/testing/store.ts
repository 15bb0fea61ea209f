import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openChdbStore } from '../chdb-store.ts';
import { renderBootstrap, renderMigrations, type MigrationTarget } from '../../schemas/migrations/index.ts';
import { migrate } from '../migrate.ts';
import type { Store } from '../store.ts';

/** Test helpers for the store: temp directories and a migrated embedded chDB store on one. */

/** Temp directories, removed by `removeTempDirs`. */
const temps: string[] = [];

export async function tempDir(prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), `farol-${prefix}-`));
  temps.push(dir);
  return dir;
}

export async function removeTempDirs(): Promise<void> {
  await Promise.all(temps.splice(0).map((d) => rm(d, { recursive: true, force: true })));
}

/** An embedded chDB store on a fresh temp dir (removed by `removeTempDirs`), migrated. */
export async function openTestStore(database: string): Promise<Store> {
  const store = openChdbStore({ dataDir: await tempDir('chdb'), database });
  await migrate(store, { database, retentionDays: 395 });
  return store;
}

/**
 * Brings `store` to schema version `version` as a release that knew no later migration would have
 * (bootstrap, then migrations 1…version, each recorded): the starting point of an upgrade test.
 */
export async function migrateUpTo(store: Store, target: MigrationTarget, version: number): Promise<void> {
  const run = (sql: string): Promise<void> => store.exec(sql, undefined, { withoutDatabase: true });
  for (const sql of renderBootstrap(target)) await run(sql);
  for (const m of renderMigrations(target).filter((x) => x.version <= version)) {
    for (const sql of m.statements) await run(sql);
    await run(`INSERT INTO ${target.database}.schema_migrations (version, name) VALUES (${m.version}, '${m.name}')`);
  }
}
