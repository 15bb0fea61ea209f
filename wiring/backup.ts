import { createServer, type Server, type Socket } from 'node:net';
import { rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { z } from 'zod';
import type { Config } from '../schemas/config.ts';
import type { Logger } from '../lib/log.ts';
import { within } from '../lib/within.ts';
import { BackupError, createBackup, runScheduledBackup, stagingPath, type BackupManifest, type Quiet } from '../store/backup.ts';
import type { Store } from '../store/store.ts';
import type { WriteGate } from '../store/write-gate.ts';

/**
 * Backups of a running `farol start` on the embedded store. The engine's data dir can be opened by
 * one process only, so `farol backup <dir>` asks the running process, over a Unix socket in the
 * data dir (`admin.sock`: only who can read the data dir, the service user, can reach it; it is on
 * no network). The process holds its processor at a range boundary (everything consumed written,
 * snapshotted and checkpointed), closes the write gate of the control plane, lets the engine copy
 * the database, and lets go; the copy to the target and the manifest follow while ingestion runs
 * on. The collector never stops: records wait in the hub meanwhile.
 *
 * With FAROL_BACKUP_DIR set, the same process takes a backup a day there (checked hourly, the
 * first check a minute after start) and keeps the FAROL_BACKUP_KEEP newest.
 */

/** The admin socket of the instance on `dataDir`. */
export function adminSocketPath(dataDir: string): string {
  return join(resolve(dataDir), 'admin.sock');
}

// sockaddr_un holds 108 bytes on Linux (104 on macOS), the terminating NUL included.
const MAX_SOCKET_PATH = 103;
const MAX_REQUEST_BYTES = 64 * 1024;
/** How long the processor may take to reach a quiet point (it writes what it holds first). */
const HOLD_TIMEOUT_MS = 60_000;
const FIRST_CHECK_MS = 60_000;
const CHECK_EVERY_MS = 3_600_000;

/** A request on the admin socket (one JSON line). */
export const adminRequestSchema = z.object({
  op: z.literal('backup'),
  dir: z.string().min(2).max(4096).refine((d) => d.startsWith('/') && !d.includes('\0'), 'must be an absolute path'),
});

/** The answer (one JSON line): the backup's summary, or why there is none. */
export const adminAnswerSchema = z.union([
  z.object({
    ok: z.literal(true),
    createdAt: z.string(),
    files: z.number(),
    bytes: z.number(),
    schemaVersion: z.number(),
    point: z.array(z.object({ partition: z.number(), offset: z.number() })).nullable(),
  }),
  z.object({ ok: z.literal(false), error: z.string() }),
]);
export type AdminAnswer = z.infer<typeof adminAnswerSchema>;

/** The summary of a manifest as answered. */
export function backupSummary(m: BackupManifest): AdminAnswer {
  return {
    ok: true,
    createdAt: m.createdAt,
    files: m.files.length,
    bytes: m.files.reduce((n, f) => n + f.bytes, 0),
    schemaVersion: m.schemaVersion,
    point: m.point,
  };
}

/** What {@link startBackupService} needs. */
export interface BackupServiceDeps {
  config: Config;
  /** The engine, opened with backups allowed, outside the gate. */
  store: Store;
  /** The gate every other writer's store goes through. */
  gate: WriteGate;
  /** The processor writing to the store (held at a range boundary during the copy). */
  processor: { hold(released: Promise<void>): Promise<Map<number, number>> } | undefined;
  log: Logger;
  now?: () => Date;
}

export interface BackupService {
  /** Stops the socket and the schedule, aborts a backup being copied (its target is emptied). */
  close(): Promise<void>;
}

/** Listens on the admin socket and runs the daily schedule. */
export async function startBackupService(deps: BackupServiceDeps): Promise<BackupService> {
  const { config, log } = deps;
  const now = deps.now ?? (() => new Date());
  const stop = new AbortController();
  let running: Promise<BackupManifest> | undefined;
  // A copy the engine staged for a backup this instance's predecessor did not finish (killed):
  // a whole database's worth of disk, of no use now.
  const staging = stagingPath(config.FAROL_DATA_DIR);
  if (staging !== undefined) await rm(staging, { recursive: true, force: true });

  const quiesce = async (): Promise<Quiet> => {
    let letGo!: () => void;
    const released = new Promise<void>((r) => (letGo = r));
    try {
      const held = deps.processor?.hold(released) ?? Promise.resolve(new Map<number, number>());
      if ((await within(held, HOLD_TIMEOUT_MS)) === 'timed out') {
        throw new BackupError(`the processor did not reach a quiet point in ${HOLD_TIMEOUT_MS / 1000} s (is the engine answering?); no backup taken`);
      }
      const offsets = await held;
      const reopen = await deps.gate.close();
      const heldAt = Date.now();
      const point = [...offsets].sort(([a], [b]) => a - b).map(([partition, offset]) => ({ partition, offset }));
      return {
        point: deps.processor === undefined ? null : point,
        release: () => {
          reopen();
          letGo();
          log.info({ ms: Date.now() - heldAt }, 'backup: writes held for the engine copy, now resumed');
        },
      };
    } catch (err) {
      letGo();
      throw err;
    }
  };

  const backup = async (target: string, signal: AbortSignal): Promise<BackupManifest> => {
    if (running !== undefined) throw new BackupError('a backup is already running in this instance');
    const started = Date.now();
    running = createBackup({ store: deps.store, dataDir: config.FAROL_DATA_DIR, target, quiesce, signal, now });
    try {
      const manifest = await running;
      log.info({ ms: Date.now() - started, files: manifest.files.length, point: manifest.point }, 'backup written');
      return manifest;
    } finally {
      running = undefined;
    }
  };

  const server = await listenAdmin(adminSocketPath(config.FAROL_DATA_DIR), log, async (request, signal) => {
    try {
      return backupSummary(await backup(request.dir, AbortSignal.any([signal, stop.signal])));
    } catch (err) {
      log.warn({ err }, 'backup failed');
      return { ok: false, error: err instanceof Error ? err.message : String(err) };
    }
  });

  const timers: NodeJS.Timeout[] = [];
  const root = config.FAROL_BACKUP_DIR === undefined ? undefined : resolve(config.FAROL_BACKUP_DIR);
  if (root !== undefined) {
    const tick = async (): Promise<void> => {
      if (running !== undefined || stop.signal.aborted) return;
      try {
        const run = await runScheduledBackup({
          root,
          keep: config.FAROL_BACKUP_KEEP,
          now: now(),
          backup: (target) => backup(target, stop.signal),
        });
        if (run.failed !== undefined) log.error({ err: run.failed }, 'daily backup failed');
        if (run.deleted.length > 0) log.info({ deleted: run.deleted }, 'old backups deleted');
      } catch (err) {
        log.error({ err, root }, 'daily backups: the folder cannot be read or cleaned');
      }
    };
    const first = setTimeout(() => {
      void tick();
      const every = setInterval(() => void tick(), CHECK_EVERY_MS);
      every.unref();
      timers.push(every);
    }, FIRST_CHECK_MS);
    first.unref();
    timers.push(first);
  }

  let closing: Promise<void> | undefined;
  return {
    close() {
      closing ??= (async () => {
        for (const t of timers) clearTimeout(t);
        stop.abort();
        await running?.catch(() => undefined);
        await server?.close();
      })();
      return closing;
    },
  };
}

type Handler = (request: z.infer<typeof adminRequestSchema>, signal: AbortSignal) => Promise<AdminAnswer>;

/** The admin socket: one request per connection; the connection closing aborts its request. */
async function listenAdmin(path: string, log: Logger, handle: Handler): Promise<{ close(): Promise<void> } | undefined> {
  if (Buffer.byteLength(path) > MAX_SOCKET_PATH) {
    log.warn({ path }, 'the data dir path is too long for the admin socket: `farol backup` cannot reach this instance');
    return undefined;
  }
  // This process holds the engine's data dir, so a socket file there is a dead process's.
  await rm(path, { force: true });
  const server: Server = createServer((conn) => serve(conn, handle, log));
  await new Promise<void>((ok, fail) => {
    server.once('error', fail);
    server.listen(path, () => {
      server.off('error', fail);
      ok();
    });
  });
  log.info({ path }, 'admin socket listening');
  return {
    close: () =>
      new Promise<void>((ok) => {
        server.close(() => ok());
        void rm(path, { force: true });
      }),
  };
}

function serve(conn: Socket, handle: Handler, log: Logger): void {
  const gone = new AbortController();
  let text = '';
  let started = false;
  conn.setEncoding('utf8');
  conn.on('error', () => gone.abort());
  conn.on('close', () => gone.abort());
  conn.on('data', (chunk: string) => {
    if (started) return;
    text += chunk;
    const end = text.indexOf('\n');
    if (end < 0 && text.length <= MAX_REQUEST_BYTES) return;
    started = true;
    const answer = (a: AdminAnswer): void => {
      if (!conn.destroyed) conn.end(`${JSON.stringify(a)}\n`);
    };
    let json: unknown;
    try {
      json = JSON.parse(end < 0 ? '' : text.slice(0, end));
    } catch {
      json = undefined;
    }
    const request = adminRequestSchema.safeParse(json);
    if (!request.success) {
      answer({ ok: false, error: 'bad request: expected one line {"op":"backup","dir":"/absolute/path"}' });
      return;
    }
    handle(request.data, gone.signal).then(answer, (err: unknown) => {
      log.error({ err }, 'admin request failed');
      answer({ ok: false, error: 'internal error' });
    });
  });
}
