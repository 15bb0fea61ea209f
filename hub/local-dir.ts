import { mkdir, readdir, readFile, stat, statfs, unlink, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { z } from 'zod';
import { HubError, isErrnoException } from './local-common.ts';
import { writeFileAtomic } from './local-segment.ts';
import { PRIVATE_DIR_MODE, PRIVATE_FILE_MODE } from '../lib/private-dir.ts';

/**
 * The local hub directory's own files: `meta.json` (the partition count, fixed at creation) and
 * `writer.lock` (so that only one hub appends to the log).
 */

const metaSchema = z.object({ version: z.literal(1), partitions: z.number().int().positive() });

/** Creates the directory and `meta.json`, or checks that an existing one has `partitions` partitions. */
export async function ensureMeta(dir: string, partitions: number): Promise<void> {
  await mkdir(dir, { recursive: true, mode: PRIVATE_DIR_MODE });
  const path = join(dir, 'meta.json');
  const existing = await readMeta(path);
  if (existing === undefined) {
    await writeFileAtomic(path, `${JSON.stringify({ version: 1, partitions })}\n`);
    return;
  }
  if (existing.partitions !== partitions) {
    throw new HubError(
      'HUB_PARTITION_MISMATCH',
      `the hub at ${dir} has ${existing.partitions} partitions but was opened with ${partitions}: ` +
        'the count is fixed when the hub is created, since changing it would move visitors to other partitions',
    );
  }
}

async function readMeta(path: string): Promise<z.infer<typeof metaSchema> | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if (isErrnoException(err, 'ENOENT')) return undefined;
    throw err;
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  const parsed = metaSchema.safeParse(json);
  if (!parsed.success) throw new HubError('HUB_BAD_META', `${path} is not a valid hub meta file`);
  return parsed.data;
}

/** Directories opened for writing by this process (the lock file cannot tell two hubs of one process apart). */
const lockedHere = new Set<string>();

const lockSchema = z.object({ pid: z.number().int(), start: z.string().optional() });

/**
 * Takes `writer.lock` for this process, taking over a stale one left by a crashed process.
 * Resolves to the function that releases it.
 */
export async function acquireWriterLock(dir: string): Promise<() => Promise<void>> {
  const path = resolve(dir, 'writer.lock');
  if (lockedHere.has(path)) throw new HubError('HUB_LOCKED', `the hub at ${dir} is already open for writing in this process`);
  lockedHere.add(path);
  try {
    await takeLockFile(path);
  } catch (err) {
    lockedHere.delete(path);
    throw err;
  }
  return async () => {
    lockedHere.delete(path);
    await unlink(path).catch(() => {});
  };
}

async function takeLockFile(path: string): Promise<void> {
  const mine = JSON.stringify({ pid: process.pid, start: await processStart(process.pid) });
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      await writeFile(path, mine, { flag: 'wx', mode: PRIVATE_FILE_MODE });
      return;
    } catch (err) {
      if (!isErrnoException(err, 'EEXIST')) throw err;
    }
    const holder = await readLockHolder(path);
    if (holder !== undefined && holder.pid !== process.pid && (await isRunning(holder))) {
      throw new HubError(
        'HUB_LOCKED',
        `the hub at ${resolve(path, '..')} is open for writing by process ${holder.pid}; ` +
          'only one process may write (open the others with readOnly)',
      );
    }
    // The holder is gone (a crash): the lock is stale.
    await unlink(path).catch((e: unknown) => {
      if (!isErrnoException(e, 'ENOENT')) throw e;
    });
  }
  throw new HubError('HUB_LOCKED', `could not take ${path}`);
}

async function readLockHolder(path: string): Promise<z.infer<typeof lockSchema> | undefined> {
  try {
    const parsed = lockSchema.safeParse(JSON.parse(await readFile(path, 'utf8')));
    return parsed.success ? parsed.data : undefined;
  } catch {
    // Unreadable or half written (a crash while taking it): treat as stale.
    return undefined;
  }
}

/**
 * Whether the lock holder still runs. A pid alone is not enough: after a container restart a new
 * process may have the same pid, so its start time (from /proc, where there is one) must match.
 */
async function isRunning(holder: z.infer<typeof lockSchema>): Promise<boolean> {
  try {
    process.kill(holder.pid, 0);
  } catch (err) {
    if (!isErrnoException(err, 'EPERM')) return false;
  }
  const start = await processStart(holder.pid);
  return holder.start === undefined || start === undefined || start === holder.start;
}

/** The process's start time in clock ticks since boot (Linux), or undefined elsewhere. */
async function processStart(pid: number): Promise<string | undefined> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    // Fields after the parenthesized command name; starttime is field 22 overall.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

/**
 * The default quota of a hub (FAROL_HUB_MAX_BYTES unset): what it holds now plus half the space
 * free on its file system, so the hub never takes the last half of the disk from everything else.
 */
export async function defaultQuota(dir: string): Promise<number> {
  await mkdir(dir, { recursive: true });
  const fs = await statfs(dir);
  return (await bytesUnder(dir)) + Math.floor((fs.bavail * fs.bsize) / 2);
}

async function bytesUnder(dir: string): Promise<number> {
  let total = 0;
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) total += await bytesUnder(path);
    else if (entry.isFile()) total += (await stat(path).catch(() => ({ size: 0 }))).size;
  }
  return total;
}
