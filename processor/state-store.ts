import { randomBytes } from 'node:crypto';
import { mkdir, open, readFile, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { fsyncDir, writeFileAtomic } from '../lib/durable-file.ts';
import { PRIVATE_DIR_MODE, PRIVATE_FILE_MODE } from '../lib/private-dir.ts';

/**
 * Where the processor keeps what survives a restart, per partition: the last snapshot of its
 * state, and the flush log (the offset ranges it started writing since that snapshot). Local
 * files for the local hub; blobs (`blob-state-store.ts`) for Event Hubs, where another machine may
 * take a partition over: there every processor shares one store, hence one incarnation, so that
 * whoever flushes a range derives the same dedup token.
 */

/** A site's latest registration as a range saw it: its domain, epoch and whether it is deleted. */
export type LoggedRegistration = readonly [site: string, epoch: number, deleted: boolean];

/** A flushed (or being flushed) range of offsets, both ends included. */
export interface FlushRange {
  from: number;
  to: number;
  /**
   * The site registrations, as known when the range was first written, that decided the fate of
   * some of its events (dropped as of a deleted registration, or moved to a newer one): a replay
   * decides with exactly these, whatever is known by then (see processor.ts). Absent when none.
   */
  registrations?: readonly LoggedRegistration[];
}

/** Zod schema of {@link FlushRange.registrations} as stored. */
export const registrationsSchema = z.array(z.tuple([z.string(), z.number().int().nonnegative(), z.boolean()]));

/** The range, with `registrations` only when there are some. */
export function flushRange(from: number, to: number, registrations: readonly LoggedRegistration[] | undefined): FlushRange {
  return registrations === undefined || registrations.length === 0 ? { from, to } : { from, to, registrations };
}

/** Durable per-partition processor state. Calls for one partition are never concurrent. */
export interface StateStore {
  /**
   * A random id made when this storage was first created. It scopes the processor's dedup
   * tokens: a hub created anew numbers its offsets from 0 again, and its ranges must not be taken
   * for the old hub's ranges that ClickHouse still remembers.
   */
  readonly incarnation: string;
  /**
   * Takes the partition's state over, before it is loaded. A store shared by several processors
   * fences the previous owner here: its later writes of this partition fail with
   * {@link StateStoreFencedError}, so a range it logs after this point is never half-known to the
   * new owner. Stores with a single writer (local files) need not implement it.
   */
  acquire?(partition: number): Promise<void>;
  /** The last saved snapshot, or undefined if there is none. */
  loadSnapshot(partition: number): Promise<Buffer | undefined>;
  /** Replaces the snapshot atomically: a crash leaves the old one or the new one, whole. */
  saveSnapshot(partition: number, bytes: Buffer): Promise<void>;
  /**
   * Durably records that the range is about to be written (resolves once it is on disk), with the
   * site registrations that decided some of its events.
   */
  appendIntent(partition: number, from: number, to: number, registrations?: readonly LoggedRegistration[]): Promise<void>;
  /** The recorded ranges, oldest first; a torn last record (crash mid-append) is discarded. */
  readIntents(partition: number): Promise<FlushRange[]>;
  /** Forgets the ranges that end at or before `after` (covered by a snapshot). */
  truncateIntents(partition: number, after: number): Promise<void>;
  close(): Promise<void>;
}

/** Thrown when the flush log is corrupt somewhere other than a torn last line. */
export class StateStoreError extends Error {
  override readonly name = 'StateStoreError';
}

/** Thrown by a write after another processor acquired the partition: this one must stop writing it. */
export class StateStoreFencedError extends Error {
  override readonly name = 'StateStoreFencedError';
}

/**
 * The file-backed StateStore: `<dir>/p-<n>.snapshot` and `<dir>/p-<n>.intents` (lines `from to`).
 * Use `<FAROL_DATA_DIR>/processor/<group>/`.
 */
export async function openFileStateStore(dir: string): Promise<StateStore> {
  await mkdir(dir, { recursive: true, mode: PRIVATE_DIR_MODE });
  const path = join(dir, 'incarnation');
  let incarnation = await readFile(path, 'utf8').catch((err: unknown) => {
    if (isErrno(err, 'ENOENT')) return undefined;
    throw err;
  });
  if (incarnation === undefined) {
    incarnation = randomBytes(8).toString('hex');
    await writeFileAtomic(path, Buffer.from(incarnation));
  }
  if (!/^[0-9a-f]{16}$/.test(incarnation)) throw new StateStoreError(`corrupt processor state id in ${path}`);
  return new FileStateStore(dir, incarnation);
}


class FileStateStore implements StateStore {
  /** Open append handles of the intent logs. */
  private readonly logs = new Map<number, FileHandle>();

  constructor(
    private readonly dir: string,
    readonly incarnation: string,
  ) {}

  async loadSnapshot(partition: number): Promise<Buffer | undefined> {
    try {
      return await readFile(this.snapshotPath(partition));
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return undefined;
      throw err;
    }
  }

  saveSnapshot(partition: number, bytes: Buffer): Promise<void> {
    return writeFileAtomic(this.snapshotPath(partition), bytes);
  }

  async appendIntent(partition: number, from: number, to: number, registrations?: readonly LoggedRegistration[]): Promise<void> {
    const log = await this.logHandle(partition);
    await log.write(intentLine(flushRange(from, to, registrations)));
    await log.datasync();
  }

  async readIntents(partition: number): Promise<FlushRange[]> {
    const path = this.intentsPath(partition);
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return [];
      throw err;
    }
    const complete = text.slice(0, text.lastIndexOf('\n') + 1);
    // A torn tail must go before the next append, which would otherwise extend it into garbage.
    if (complete.length !== text.length) await this.rewriteIntents(partition, complete);
    return parseIntents(complete, path);
  }

  async truncateIntents(partition: number, after: number): Promise<void> {
    const kept = (await this.readIntents(partition)).filter((r) => r.to > after);
    await this.rewriteIntents(partition, kept.map(intentLine).join(''));
  }

  async close(): Promise<void> {
    const handles = [...this.logs.values()];
    this.logs.clear();
    await Promise.all(handles.map((h) => h.close()));
  }

  private async rewriteIntents(partition: number, text: string): Promise<void> {
    // The append handle points at the file being replaced: reopen it on the next append.
    await this.logs.get(partition)?.close();
    this.logs.delete(partition);
    await writeFileAtomic(this.intentsPath(partition), Buffer.from(text));
  }

  private async logHandle(partition: number): Promise<FileHandle> {
    let handle = this.logs.get(partition);
    if (handle === undefined) {
      handle = await open(this.intentsPath(partition), 'a', PRIVATE_FILE_MODE);
      // A newly created log must survive a crash as a directory entry too.
      await fsyncDir(this.dir);
      this.logs.set(partition, handle);
    }
    return handle;
  }


  private snapshotPath(partition: number): string {
    return join(this.dir, `p-${partition}.snapshot`);
  }

  private intentsPath(partition: number): string {
    return join(this.dir, `p-${partition}.intents`);
  }
}


/** `from to`, then the registrations as JSON when there are some (JSON holds no newline). */
function intentLine(r: FlushRange): string {
  return r.registrations === undefined ? `${r.from} ${r.to}\n` : `${r.from} ${r.to} ${JSON.stringify(r.registrations)}\n`;
}

const intentPattern = /^(\d+) (\d+)(?: (.+))?$/;

function parseIntents(text: string, path: string): FlushRange[] {
  const ranges: FlushRange[] = [];
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const m = intentPattern.exec(line);
    const from = Number(m?.[1]);
    const to = Number(m?.[2]);
    const registrations = m?.[3] === undefined ? { success: true as const, data: undefined } : parseRegistrations(m[3]);
    if (m === null || !(from <= to) || !registrations.success) throw new StateStoreError(`corrupt flush log ${path}: "${line.slice(0, 200)}"`);
    ranges.push(flushRange(from, to, registrations.data));
  }
  return ranges;
}

function parseRegistrations(text: string): { success: true; data: LoggedRegistration[] } | { success: false } {
  try {
    return registrationsSchema.safeParse(JSON.parse(text));
  } catch {
    return { success: false };
  }
}

function isErrno(err: unknown, code: string): boolean {
  return err instanceof Error && (err as NodeJS.ErrnoException).code === code;
}
