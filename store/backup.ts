import { createHash, randomBytes } from 'node:crypto';
import { lstat, mkdir, open, readdir, readFile, rename, rm } from 'node:fs/promises';
import { isAbsolute, join, normalize, resolve, sep } from 'node:path';
import { z } from 'zod';
import { fsyncDir, writeFileAtomic } from '../lib/durable-file.ts';
import { PRIVATE_DIR_MODE, PRIVATE_FILE_MODE } from '../lib/private-dir.ts';
import { openChdbStore } from './chdb-store.ts';
import { migrate } from './migrate.ts';
import type { MigrationTarget } from '../schemas/migrations/index.ts';
import type { Store } from './store.ts';

/**
 * Backups of the embedded store (`farol backup` / `farol restore`, and the daily schedule).
 *
 * A backup is a directory: `clickhouse/` holds ClickHouse's own `BACKUP DATABASE … TO File(…)` of
 * the Farol database (every table: events, sessions, rollups and the views that feed them, the
 * control plane, dead letters, the migrations record), and `farol-backup.json`, the manifest,
 * lists every file with its size and SHA-256. The manifest is written last, atomically (temporary
 * file, fsync, rename, fsync of the directory): a backup cut short at any moment, even by SIGKILL,
 * has no manifest, and restore accepts nothing without a manifest whose every file is present and
 * intact.
 *
 * The engine writes its backup into a staging folder in the data dir (the only path it is allowed
 * to write backups to, fixed when it starts), and the files are then copied to the target while
 * they are hashed; the staging copy is removed.
 *
 * What a backup never holds: the visitor-hash salts (files in `<data dir>/salts`, outside the
 * engine; a table whose name says salt would be left out too), the hub log, the processor's state.
 * A restore starts a fresh hub and processor state and makes new salts.
 */

/** Name of the manifest in a backup directory. */
export const MANIFEST = 'farol-backup.json';
/** The engine's backup inside a backup directory. */
const ENGINE_FOLDER = 'clickhouse';
/** Where the engine in the data dir stages its backups (its `backups.allowed_path`). */
const STAGING_FOLDER = 'backup-staging';
/** Where `farol restore` builds the engine's folder before renaming it to `clickhouse`. */
export const RESTORING_FOLDER = 'clickhouse.restoring';

/** Paths the engine accepts on its command line and inside `File('…')`: absolute, plain characters. */
const plainPath = /^\/[\w./-]*$/;
const identifier = /^[A-Za-z_][A-Za-z0-9_]*$/;
const MAX_MANIFEST_BYTES = 64 * 1024 * 1024;

/** Thrown for a backup or restore that cannot be done, with what to do in the message. */
export class BackupError extends Error {
  override readonly name = 'BackupError';
}

const fileSchema = z.object({
  path: z.string().min(1).max(4096),
  bytes: z.number().int().nonnegative(),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
});

const manifestSchema = z.object({
  format: z.literal('farol-backup'),
  version: z.literal(1),
  /** When the store was quiet and copied: the backup point. */
  createdAt: z.iso.datetime(),
  database: z.string().regex(identifier),
  /** The newest migration applied to the backed-up database. */
  schemaVersion: z.number().int().nonnegative(),
  /**
   * Per hub partition, the last offset written to the store at the backup point, when a running
   * processor was held; null for a backup of a stopped instance.
   */
  point: z.array(z.object({ partition: z.number().int().nonnegative(), offset: z.number().int().min(-1) })).nullable(),
  /** Tables left out (their names say salt; not the `salt_day_*` counts). */
  excludedTables: z.array(z.string()),
  files: z.array(fileSchema).min(1).max(1_000_000),
});

/** A backup's manifest. */
export type BackupManifest = z.infer<typeof manifestSchema>;

/** The store held still for the copy: the point it was held at, and how to let it go. */
export interface Quiet {
  point: BackupManifest['point'];
  release: () => void;
}

/** Options for {@link createBackup}. */
export interface CreateBackupOptions {
  /** The engine on the data dir, opened with `backupsPath: stagingPath(dataDir)`, not gated. */
  store: Store;
  dataDir: string;
  /** A new or empty directory. */
  target: string;
  /** Holds every writer still until `release` (a running instance); unset when nothing writes. */
  quiesce?: () => Promise<Quiet>;
  /** Aborts the copy (the client went away, or the process drains): the target is emptied. */
  signal?: AbortSignal;
  now?: () => Date;
}

/** The staging folder of the engine on `dataDir`, or undefined when its path cannot be given to the engine. */
export function stagingPath(dataDir: string): string | undefined {
  const path = join(resolve(dataDir), STAGING_FOLDER);
  return plainPath.test(path) ? path : undefined;
}

/** Writes a backup of `opts.store`'s database into `opts.target`; resolves with its manifest. */
export async function createBackup(opts: CreateBackupOptions): Promise<BackupManifest> {
  const staging = stagingPath(opts.dataDir);
  if (staging === undefined) {
    throw new BackupError(`the data dir path ${resolve(opts.dataDir)} holds characters the engine's backup path cannot: use letters, digits, '_', '-', '.' and '/'`);
  }
  const target = resolve(opts.target);
  await prepareTarget(target);
  // Only one backup runs per process: whatever a killed one left in staging is garbage.
  await rm(staging, { recursive: true, force: true });
  await mkdir(staging, { recursive: true, mode: PRIVATE_DIR_MODE });
  const stage = join(staging, `b-${Date.now()}-${randomBytes(4).toString('hex')}`);
  try {
    const db = opts.store.database;
    const excluded = (
      await opts.store.query<{ name: string }>(
        // salt_day_* hold visitor counts per salt day (no salt, no id): they are data and kept.
        "SELECT name FROM system.tables WHERE database = {db:String} AND positionCaseInsensitive(name, 'salt') > 0 AND NOT startsWith(name, 'salt_day_') ORDER BY name",
        { db },
      )
    ).map((r) => r.name);
    const schema = await opts.store.query<{ v: number | string }>('SELECT max(version) AS v FROM schema_migrations');
    const except = excluded.length === 0 ? '' : ` EXCEPT TABLES ${excluded.map((t) => `${db}.${checkIdentifier(t)}`).join(', ')}`;
    const quiet = (await opts.quiesce?.()) ?? { point: null, release: () => {} };
    let createdAt: Date;
    try {
      createdAt = (opts.now ?? (() => new Date()))();
      await opts.store.exec(`BACKUP DATABASE ${db}${except} TO File('${stage}')`);
    } finally {
      quiet.release();
    }
    opts.signal?.throwIfAborted();
    const files = await copyHashed(stage, join(target, ENGINE_FOLDER), opts.signal);
    const manifest: BackupManifest = {
      format: 'farol-backup',
      version: 1,
      createdAt: createdAt.toISOString(),
      database: db,
      schemaVersion: Number(schema[0]?.v ?? 0),
      point: quiet.point,
      excludedTables: excluded,
      files,
    };
    opts.signal?.throwIfAborted();
    // Last, and atomically: its presence is what makes the directory a backup.
    await writeFileAtomic(join(target, MANIFEST), `${JSON.stringify(manifest, null, 1)}\n`);
    return manifest;
  } catch (err) {
    await rm(join(target, ENGINE_FOLDER), { recursive: true, force: true }).catch(() => {});
    throw err;
  } finally {
    await rm(staging, { recursive: true, force: true }).catch(() => {});
  }
}

function checkIdentifier(name: string): string {
  if (!identifier.test(name)) throw new BackupError(`table name "${name}" is not a plain identifier`);
  return name;
}

/** Creates `target`, or checks it is an empty directory. */
async function prepareTarget(target: string): Promise<void> {
  const entries = await readdir(target).catch((err: unknown) => {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  });
  if (entries !== undefined && entries.length > 0) {
    throw new BackupError(`${target} is not empty: a backup goes into a new or empty directory`);
  }
  await mkdir(target, { recursive: true, mode: PRIVATE_DIR_MODE });
}

/** Every regular file under `root`, as paths relative to it with '/', sorted; anything else is an error. */
async function filesUnder(root: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (rel: string): Promise<void> => {
    for (const entry of await readdir(join(root, rel), { withFileTypes: true })) {
      const path = rel === '' ? entry.name : `${rel}/${entry.name}`;
      if (entry.isDirectory()) await walk(path);
      else if (entry.isFile()) out.push(path);
      else throw new BackupError(`${join(root, path)} is neither a file nor a directory`);
    }
  };
  await walk('');
  return out.sort();
}

const CHUNK = 1024 * 1024;

/** Copies every file of `from` to `to` (created), fsynced, and returns each one's size and SHA-256. */
async function copyHashed(from: string, to: string, signal: AbortSignal | undefined): Promise<BackupManifest['files']> {
  const files: BackupManifest['files'] = [];
  const buffer = Buffer.allocUnsafe(CHUNK);
  const dirs = new Set<string>();
  for (const rel of await filesUnder(from)) {
    signal?.throwIfAborted();
    const dest = join(to, rel);
    const dir = join(dest, '..');
    if (!dirs.has(dir)) {
      await mkdir(dir, { recursive: true, mode: PRIVATE_DIR_MODE });
      dirs.add(dir);
    }
    const hash = createHash('sha256');
    let bytes = 0;
    const src = await open(join(from, rel), 'r');
    try {
      const dst = await open(dest, 'wx', PRIVATE_FILE_MODE);
      try {
        for (;;) {
          const { bytesRead } = await src.read(buffer, 0, CHUNK, null);
          if (bytesRead === 0) break;
          const chunk = buffer.subarray(0, bytesRead);
          hash.update(chunk);
          await dst.write(chunk);
          bytes += bytesRead;
        }
        await dst.sync();
      } finally {
        await dst.close();
      }
    } finally {
      await src.close();
    }
    files.push({ path: `${ENGINE_FOLDER}/${rel}`, bytes, sha256: hash.digest('hex') });
  }
  if (files.length === 0) throw new BackupError('the engine wrote an empty backup');
  for (const dir of dirs) await fsyncDir(dir);
  return files;
}

async function sha256Of(path: string): Promise<string> {
  const hash = createHash('sha256');
  const fh = await open(path, 'r');
  try {
    const buffer = Buffer.allocUnsafe(CHUNK);
    for (;;) {
      const { bytesRead } = await fh.read(buffer, 0, CHUNK, null);
      if (bytesRead === 0) break;
      hash.update(buffer.subarray(0, bytesRead));
    }
  } finally {
    await fh.close();
  }
  return hash.digest('hex');
}

/** The manifest of the backup in `dir`, or undefined when it has none that parses. Reads no data file. */
export async function readManifest(dir: string): Promise<BackupManifest | undefined> {
  const path = join(dir, MANIFEST);
  try {
    const info = await lstat(path);
    if (!info.isFile() || info.size > MAX_MANIFEST_BYTES) return undefined;
    const parsed = manifestSchema.safeParse(JSON.parse(await readFile(path, 'utf8')));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The manifest of the backup in `dir` once every file it lists is there with its size and
 * SHA-256, and nothing else is in the engine's folder. Throws a BackupError otherwise.
 */
export async function verifyBackup(dir: string): Promise<BackupManifest> {
  const manifest = await readManifest(dir);
  if (manifest === undefined) {
    throw new BackupError(`${dir} is not a complete Farol backup: it has no valid ${MANIFEST} (a backup cut short has none)`);
  }
  const listed = new Set<string>();
  for (const f of manifest.files) {
    const path = normalize(f.path);
    // Paths stay inside the engine's folder, whatever a tampered manifest says.
    if (path !== f.path || isAbsolute(path) || !path.startsWith(`${ENGINE_FOLDER}/`) || path.split(sep).includes('..') || path.includes('\0')) {
      throw new BackupError(`${dir}: the manifest names a file outside the backup (${JSON.stringify(f.path.slice(0, 200))})`);
    }
    listed.add(path);
    const full = join(dir, path);
    const info = await lstat(full).catch(() => undefined);
    if (info === undefined || !info.isFile()) throw new BackupError(`${dir}: ${path} is missing`);
    if (info.size !== f.bytes || (await sha256Of(full)) !== f.sha256) throw new BackupError(`${dir}: ${path} does not match its checksum`);
  }
  const present = (await filesUnder(join(dir, ENGINE_FOLDER))).map((p) => `${ENGINE_FOLDER}/${p}`);
  const extra = present.filter((p) => !listed.has(p));
  if (extra.length > 0 || present.length !== listed.size) {
    throw new BackupError(`${dir}: ${extra.length} file(s) not in the manifest (e.g. ${extra[0] ?? '?'})`);
  }
  return manifest;
}

/** Options for {@link restoreBackup}. */
export interface RestoreOptions {
  /** The backup directory. */
  from: string;
  /** The data dir to restore into: missing or empty. */
  dataDir: string;
  /** The schema to bring the restored database to (its database is the one restored into). */
  target: MigrationTarget;
}

/** Entries an empty data dir may hold: a volume's `lost+found`, a restore killed before. */
const IGNORED_IN_EMPTY = new Set(['lost+found', RESTORING_FOLDER]);

/**
 * Restores the backup in `opts.from` into an empty data dir: verifies it, restores its database
 * into a new engine folder (under the configured database name), applies newer migrations, then
 * renames the folder into place, so a restore killed half-way leaves no engine folder that
 * `farol start` would take for data. Resolves with the manifest.
 */
export async function restoreBackup(opts: RestoreOptions): Promise<BackupManifest> {
  const from = resolve(opts.from);
  if (!plainPath.test(from)) {
    throw new BackupError(`the backup path ${from} holds characters the engine cannot take: move or link it to a path of letters, digits, '_', '-', '.' and '/'`);
  }
  const dataDir = resolve(opts.dataDir);
  const entries = await readdir(dataDir).catch((err: unknown) => {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  });
  const others = entries.filter((e) => !IGNORED_IN_EMPTY.has(e));
  if (others.length > 0) {
    throw new BackupError(`the data dir ${dataDir} is not empty (${others.slice(0, 5).join(', ')}): restore goes into a new or empty data dir only`);
  }
  const manifest = await verifyBackup(from);
  const building = join(dataDir, RESTORING_FOLDER);
  await rm(building, { recursive: true, force: true });
  const store = openChdbStore({ dataDir, database: opts.target.database, folder: RESTORING_FOLDER, backupsPath: from, connections: 1 });
  try {
    const as = manifest.database === opts.target.database ? '' : ` AS ${opts.target.database}`;
    await store.exec(`RESTORE DATABASE ${manifest.database}${as} FROM File('${join(from, ENGINE_FOLDER)}')`, undefined, { withoutDatabase: true });
    await migrate(store, opts.target);
  } catch (err) {
    await store.close();
    await rm(building, { recursive: true, force: true });
    throw err;
  } finally {
    await store.close();
  }
  await rename(building, join(dataDir, 'clickhouse'));
  await fsyncDir(dataDir);
  return manifest;
}

/** A complete backup in a schedule's directory. */
export interface ListedBackup {
  name: string;
  createdAt: Date;
}

/** Folder names the schedule makes (`farol-20261206T031500Z`): the only ones it ever deletes. */
const scheduledName = /^farol-\d{8}T\d{6}Z$/;

/** The schedule's folder name for a backup started at `at`. */
export function scheduledBackupName(at: Date): string {
  return `farol-${at.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z')}`;
}

/** The schedule's complete backups in `root` (with a manifest that parses), newest first, and its incomplete ones. */
export async function listScheduledBackups(root: string): Promise<{ complete: ListedBackup[]; incomplete: string[] }> {
  const names = await readdir(root).catch((err: unknown) => {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  });
  const complete: ListedBackup[] = [];
  const incomplete: string[] = [];
  for (const name of names.filter((n) => scheduledName.test(n))) {
    const manifest = await readManifest(join(root, name));
    if (manifest === undefined) incomplete.push(name);
    else complete.push({ name, createdAt: new Date(manifest.createdAt) });
  }
  complete.sort((a, b) => b.createdAt.getTime() - a.createdAt.getTime() || (a.name < b.name ? 1 : -1));
  return { complete, incomplete };
}

/**
 * Deletes the schedule's backups in `root` beyond the `keep` newest complete ones, and its
 * incomplete ones (a run cut short). Only this process writes there, and never while pruning.
 * Resolves with the names deleted.
 */
export async function pruneScheduledBackups(root: string, keep: number): Promise<string[]> {
  const { complete, incomplete } = await listScheduledBackups(root);
  const doomed = [...complete.slice(keep).map((b) => b.name), ...incomplete];
  for (const name of doomed) await rm(join(root, name), { recursive: true, force: true });
  return doomed;
}

/** Daily: a backup is due when there is none, or the newest is 23 hours old (an hourly check then keeps the hour). */
export function backupDue(newest: Date | undefined, now: Date): boolean {
  return newest === undefined || now.getTime() - newest.getTime() >= 23 * 3_600_000;
}

/** What one check of the daily schedule did. */
export interface ScheduledRun {
  /** The backup taken, when one was due and it was written. */
  taken?: string;
  /** Why the due backup failed. */
  failed?: unknown;
  /** Backups deleted (beyond `keep`, or cut short). */
  deleted: string[];
}

/**
 * One check of the daily schedule in `root`: when a backup is due, takes it with `backup` into a
 * new `farol-<time>` folder; then (taken or failed) deletes all but the `keep` newest complete
 * backups and those cut short. Never runs two at once: the caller checks one at a time.
 */
export async function runScheduledBackup(opts: {
  root: string;
  keep: number;
  now: Date;
  backup: (target: string) => Promise<unknown>;
}): Promise<ScheduledRun> {
  const run: ScheduledRun = { deleted: [] };
  const { complete } = await listScheduledBackups(opts.root);
  if (!backupDue(complete[0]?.createdAt, opts.now)) return run;
  try {
    await mkdir(opts.root, { recursive: true, mode: PRIVATE_DIR_MODE });
    const name = scheduledBackupName(opts.now);
    await opts.backup(join(opts.root, name));
    run.taken = name;
  } catch (err) {
    run.failed = err;
  }
  run.deleted = await pruneScheduledBackups(opts.root, opts.keep);
  return run;
}
