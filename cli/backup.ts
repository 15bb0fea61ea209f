import { createConnection } from 'node:net';
import { resolve } from 'node:path';
import type { Config } from '../schemas/config.ts';
import { BackupError, createBackup, restoreBackup, type BackupManifest } from '../store/backup.ts';
import { adminAnswerSchema, adminSocketPath, backupSummary, type AdminAnswer } from '../wiring/backup.ts';
import { migrationTarget, openStoreForAdmin } from '../wiring/store.ts';

/**
 * `farol backup <dir>` and `farol restore <dir>`, for the embedded store. A backup of a running
 * `farol start` is taken by that process (asked over its admin socket); of a stopped data dir, by
 * this one. A ClickHouse server is backed up with its own `BACKUP … TO S3(…)` (README: Backup and
 * restore).
 */

const SERVER_NOTE =
  'farol backup and restore are for the embedded store; with FAROL_CLICKHOUSE_URL, back the server up with ' +
  "ClickHouse's BACKUP DATABASE … TO S3(…) or AzureBlobStorage(…) (README: Operations, Backup and restore)";

/** The command's one directory, absolute, or undefined (said on stderr) when it cannot run. */
function dirArgument(command: string, config: Config, args: string[]): string | undefined {
  if (args.length !== 1 || args[0] === undefined || args[0] === '') {
    process.stderr.write(`usage: farol ${command} <dir>\n`);
    return undefined;
  }
  if (config.FAROL_CLICKHOUSE_URL !== undefined) {
    process.stderr.write(`farol ${command}: ${SERVER_NOTE}\n`);
    return undefined;
  }
  return resolve(args[0]);
}

function describe(a: Extract<AdminAnswer, { ok: true }>): string {
  const point = a.point === null ? 'a stopped instance' : a.point.map((p) => `${p.partition}:${p.offset}`).join(' ');
  return `${a.files} files, ${a.bytes} bytes, schema v${a.schemaVersion}, point ${a.createdAt} (hub partition:offset written: ${point})`;
}

export async function runBackup(config: Config, args: string[]): Promise<number> {
  const dir = dirArgument('backup', config, args);
  if (dir === undefined) return 2;
  // Nothing answers on the socket: the data dir is not in use (or is held by a process without
  // one, which opening the engine reports).
  const answer = (await askRunning(adminSocketPath(config.FAROL_DATA_DIR), dir)) ?? (await backupStopped(config, dir));
  if (!answer.ok) {
    process.stderr.write(`farol backup: ${answer.error}\n`);
    return 1;
  }
  process.stdout.write(`backup written to ${dir}: ${describe(answer)}\n`);
  return 0;
}

/** A backup of a data dir no process runs on, taken by this one. */
async function backupStopped(config: Config, dir: string): Promise<AdminAnswer> {
  const store = await openStoreForAdmin(config, { backups: true });
  try {
    return backupSummary(await createBackup({ store, dataDir: config.FAROL_DATA_DIR, target: dir }));
  } catch (err) {
    if (err instanceof BackupError) return { ok: false, error: err.message };
    throw err;
  } finally {
    await store.close();
  }
}

/**
 * Asks the instance listening on `socket` for a backup into `dir`; undefined when none listens.
 * Killing this process while it waits cancels the backup (the instance empties the target).
 */
function askRunning(socket: string, dir: string): Promise<AdminAnswer | undefined> {
  return new Promise((ok, fail) => {
    const conn = createConnection(socket);
    let text = '';
    let connected = false;
    conn.setEncoding('utf8');
    conn.on('connect', () => {
      connected = true;
      // Not ended after writing: the instance reads a closed connection as a cancelled backup.
      conn.write(`${JSON.stringify({ op: 'backup', dir })}\n`);
    });
    conn.on('data', (chunk: string) => {
      text += chunk;
    });
    conn.on('error', (err: NodeJS.ErrnoException) => {
      if (!connected && (err.code === 'ENOENT' || err.code === 'ECONNREFUSED')) ok(undefined);
      else fail(err);
    });
    conn.on('end', () => {
      conn.end();
      let json: unknown;
      try {
        json = JSON.parse(text);
      } catch {
        json = undefined;
      }
      const answer = adminAnswerSchema.safeParse(json);
      ok(answer.success ? answer.data : { ok: false, error: 'the running instance ended the connection without an answer' });
    });
  });
}

export async function runRestore(config: Config, args: string[]): Promise<number> {
  const dir = dirArgument('restore', config, args);
  if (dir === undefined) return 2;
  let manifest: BackupManifest;
  try {
    manifest = await restoreBackup({ from: dir, dataDir: config.FAROL_DATA_DIR, target: migrationTarget(config) });
  } catch (err) {
    if (!(err instanceof BackupError)) throw err;
    process.stderr.write(`farol restore: ${err.message}\n`);
    return 1;
  }
  process.stdout.write(
    `restored the backup taken at ${manifest.createdAt} (schema v${manifest.schemaVersion}) into ${resolve(config.FAROL_DATA_DIR)}.\n` +
      'Events the source accepted after that point are not in it. The hub, the processor state and the visitor salts start fresh.\n',
  );
  return 0;
}
