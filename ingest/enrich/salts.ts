import { randomBytes } from 'node:crypto';
import {
  closeSync,
  fsyncSync,
  linkSync,
  openSync,
  readdirSync,
  readFileSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';

/*
 * Daily visitor-id salts. Each UTC day gets 16 random bytes, created lazily by
 * the first event at or after 00:00 UTC; the salt of day D hashes new visitors during D and is
 * kept through D+1 as "previous" so a visitor spanning midnight keeps one id; at D+2 it is deleted
 * from disk and memory. A salt is never derived from a date or a secret: once its file is gone,
 * nobody, operator included, can recompute a visitor id from an IP.
 *
 * Files are `salt-YYYY-MM-DD.bin` (16 bytes, mode 0600) under the directory the caller gives
 * (`<dataDir>/salts`). A new salt is written to a temporary file, fsynced, then hard-linked to its
 * final name: link never replaces an existing file, so two processes sharing the directory that
 * race at midnight both end up with the winner's salt instead of silently diverging.
 *
 * Creation runs synchronously on the event path, once a day: the hash needs the salt now, and a
 * salt only in memory would change every visitor id if the process restarted that day.
 */

export const DAY_MS = 86_400_000;
export const SALT_BYTES = 16;

/** One day's salt. */
export interface Salt {
  /** UTC day number (days since the epoch) the salt belongs to. */
  readonly day: number;
  readonly bytes: Buffer;
}

/** Where the visitor hash gets its salts. */
export interface SaltSource {
  /** Today's salt (UTC), created if this is the first call of the day. */
  current(): Salt;
  /** Yesterday's salt if it was ever created, else null. */
  previous(): Salt | null;
}

export interface SaltStoreOptions {
  dir: string;
  /** Clock in ms since the epoch; injected by tests. */
  now?: () => number;
}

/** Outcome of {@link SaltStore.rotate}, for the caller's log and metrics. */
export interface RotateResult {
  deleted: number;
  failed: number;
}

/** Opens the salt directory (created 0700 if missing) and deletes expired salts; salts load lazily. */
export async function openSaltStore(opts: SaltStoreOptions): Promise<SaltStore> {
  await mkdir(opts.dir, { recursive: true, mode: 0o700 });
  const store = new SaltStore(opts.dir, opts.now ?? Date.now);
  store.rotate();
  return store;
}

/** Daily salts persisted in one directory. Create with {@link openSaltStore}. */
export class SaltStore implements SaltSource {
  private today: Salt | null = null;
  private yesterday: Salt | null = null;

  constructor(
    private readonly dir: string,
    private readonly now: () => number,
  ) {}

  current(): Salt {
    const day = dayOf(this.now());
    if (this.today?.day === day) return this.today;
    return this.rollTo(day);
  }

  previous(): Salt | null {
    const today = this.current();
    return this.yesterday?.day === today.day - 1 ? this.yesterday : null;
  }

  /**
   * Deletes every salt older than yesterday's, from disk (including temporary files a crash left
   * behind) and from memory. Run by the caller on a timer and by the first `current()` of a day.
   * Never throws: a file that cannot be deleted is counted in `failed` and retried next time.
   */
  rotate(): RotateResult {
    const today = dayOf(this.now());
    const live = (day: number | null): boolean => day !== null && day >= today - 1 && day <= today;
    const result: RotateResult = { deleted: 0, failed: 0 };
    if (this.yesterday !== null && !live(this.yesterday.day)) this.forget('yesterday');
    if (this.today !== null && !live(this.today.day)) this.forget('today');
    let names: string[];
    try {
      names = readdirSync(this.dir);
    } catch {
      result.failed++;
      return result;
    }
    for (const name of names) {
      // Live days are kept, temporary files included: one may be another process mid-write.
      // Everything else of ours goes, junk and future-dated files too, so no salt outlives 48 h.
      if (!name.startsWith('salt-') || live(fileDay(name))) continue;
      try {
        unlinkSync(join(this.dir, name));
        result.deleted++;
      } catch (err) {
        if (!isErrno(err, 'ENOENT')) result.failed++;
      }
    }
    return result;
  }

  private rollTo(day: number): Salt {
    const isYesterday = (s: Salt | null): Salt | null => (s !== null && s.day === day - 1 ? s : null);
    const yesterday = isYesterday(this.today) ?? isYesterday(this.yesterday) ?? this.load(day - 1);
    const today = this.loadOrCreate(day);
    for (const old of [this.today, this.yesterday]) {
      if (old !== null && old !== yesterday) old.bytes.fill(0);
    }
    this.today = today;
    this.yesterday = yesterday;
    this.rotate();
    return today;
  }

  private forget(which: 'today' | 'yesterday'): void {
    // Zero the bytes too: a heap dump must not outlive the deletion either.
    this[which]?.bytes.fill(0);
    this[which] = null;
  }

  private loadOrCreate(day: number): Salt {
    return this.load(day) ?? this.create(day);
  }

  private load(day: number): Salt | null {
    let bytes: Buffer;
    try {
      bytes = readFileSync(join(this.dir, fileName(day)));
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return null;
      throw err;
    }
    if (bytes.length !== SALT_BYTES) {
      // Not something this store wrote (the link is only made after fsync): replace it.
      unlinkSync(join(this.dir, fileName(day)));
      return null;
    }
    return { day, bytes };
  }

  private create(day: number): Salt {
    const bytes = randomBytes(SALT_BYTES);
    const final = join(this.dir, fileName(day));
    const tmp = `${final}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
    const fd = openSync(tmp, 'wx', 0o600);
    try {
      writeSync(fd, bytes);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    try {
      linkSync(tmp, final);
    } catch (err) {
      unlinkSync(tmp);
      bytes.fill(0);
      // Another process created today's salt first: use theirs, so both hash alike.
      if (isErrno(err, 'EEXIST')) {
        const theirs = this.load(day);
        if (theirs !== null) return theirs;
      }
      throw err;
    }
    unlinkSync(tmp);
    fsyncDir(this.dir);
    return { day, bytes };
  }
}

/** The UTC day number of a timestamp. */
export function dayOf(ms: number): number {
  return Math.floor(ms / DAY_MS);
}

function fileName(day: number): string {
  return `salt-${new Date(day * DAY_MS).toISOString().slice(0, 10)}.bin`;
}

// The day a salt file (or its temporary file) belongs to, or null for other names.
function fileDay(name: string): number | null {
  const m = /^salt-(\d{4}-\d{2}-\d{2})\.bin(?:\..*\.tmp)?$/.exec(name);
  if (m === null) return null;
  const ms = Date.parse(`${m[1]}T00:00:00Z`);
  return Number.isNaN(ms) ? null : dayOf(ms);
}

// Makes the new directory entry durable; without it a power cut can lose the link.
function fsyncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function isErrno(err: unknown, code: string): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: unknown }).code === code;
}
