import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openChdbStore } from '../chdb-store.ts';
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
