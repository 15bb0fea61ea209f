import { randomBytes } from 'node:crypto';
import type { ContainerClient } from '@azure/storage-blob';
import { FarolError } from '../../schemas/errors.ts';
import type { Logger } from '../../lib/log.ts';
import { DAY_MS, SALT_BYTES, dayOf, type Salt, type SaltSource } from './salts.ts';

/*
 * Daily salts shared by every collector of a deployment (FAROL_HUB=eventhubs), so one visitor
 * hashed by two collectors behind a balancer gets one visitor id. The salts live in the blob
 * container the deployment already has for Event Hubs checkpoints, one blob per UTC day
 * (`farol-salts/<namespace host>/<event hub>/salt-YYYY-MM-DD`, 16 random bytes):
 *  - the first collector to need a day's salt creates it with `If-None-Match: *`; every other one
 *    (and the loser of a race) reads the winner's;
 *  - a day's salt is fetched ahead, during the last hour of the day before (PREFETCH_MS), so at
 *    00:00 UTC every collector already holds it and the switch needs no storage round trip;
 *  - it is deleted from the container by any collector once its day is over by more than 24 h
 *    (48 h after the day began), and forgotten (bytes zeroed) in memory at the same time;
 *  - it is held only in memory here, never written to the local disk: a restarted collector reads
 *    it again. The container therefore must not keep deleted or overwritten blobs (soft delete,
 *    versioning, point-in-time restore off; see README, Salts across collectors).
 *
 * Fail closed: when the day's salt is not in memory (storage unreachable since before the day
 * began, or at start), events are refused with `503 ING_SALT_UNAVAILABLE` + Retry-After and
 * `/readyz` is 503, so a balancer sends traffic to a collector that has it and senders retry. A
 * collector never mints a salt of its own: that would split every visitor it hashes from the
 * same visitor on the other collectors. Spooling is not an option either: the visitor id must be
 * computed before anything is written, and the input is the IP.
 */

/** How long before midnight UTC the next day's salt is fetched (created if nobody has yet). */
export const PREFETCH_MS = 60 * 60_000;

/** The blob operations the store needs; {@link blobSaltStorage} implements them on a container. */
export interface SaltStorage {
  /** The salt of `day`, or null when there is none. */
  read(day: number): Promise<Buffer | null>;
  /** Stores `bytes` as the salt of `day` unless one exists; resolves the salt that is stored. */
  create(day: number, bytes: Buffer): Promise<Buffer>;
  /** Days that have a salt blob. */
  days(): Promise<number[]>;
  delete(day: number): Promise<void>;
}

export interface SharedSaltOptions {
  storage: SaltStorage;
  log: Logger;
  now?: () => number;
}

/** Outcome of one {@link SharedSaltStore.refresh}, for logs and tests. */
export interface RefreshResult {
  ok: boolean;
  deleted: number;
}

export class SharedSaltStore implements SaltSource {
  private readonly held = new Map<number, Salt>();
  private readonly storage: SaltStorage;
  private readonly log: Logger;
  private readonly now: () => number;
  private failing = false;
  private running: Promise<RefreshResult> | null = null;
  private lastKick = 0;

  constructor(opts: SharedSaltOptions) {
    this.storage = opts.storage;
    this.log = opts.log;
    this.now = opts.now ?? Date.now;
  }

  /** Today's salt; throws 503 ING_SALT_UNAVAILABLE when it is not held (never minted here). */
  current(): Salt {
    const day = dayOf(this.now());
    const salt = this.held.get(day);
    if (salt !== undefined) return salt;
    // Try again now rather than at the next timer tick; at most once a second under load.
    const t = this.now();
    if (this.running === null && t - this.lastKick >= 1_000) {
      this.lastKick = t;
      void this.refresh();
    }
    throw new FarolError('ING_SALT_UNAVAILABLE');
  }

  previous(): Salt | null {
    return this.held.get(dayOf(this.now()) - 1) ?? null;
  }

  /** Whether today's salt is held (readiness). */
  ready(): boolean {
    return this.held.has(dayOf(this.now()));
  }

  /**
   * Fetches what is missing (yesterday's if it exists, today's, and tomorrow's in the last hour
   * of the day, creating today's and tomorrow's if nobody has), forgets expired salts and deletes
   * their blobs. Never throws: a storage failure is logged once per outage and reported.
   */
  refresh(): Promise<RefreshResult> {
    // One at a time: the timer, a miss on the event path and a test may ask together.
    this.running ??= this.refreshOnce().finally(() => {
      this.running = null;
    });
    return this.running;
  }

  private async refreshOnce(): Promise<RefreshResult> {
    const t = this.now();
    const today = dayOf(t);
    this.forgetBefore(today - 1);
    let ok = true;
    const wanted: Array<{ day: number; create: boolean }> = [
      { day: today - 1, create: false },
      { day: today, create: true },
    ];
    if ((today + 1) * DAY_MS - t <= PREFETCH_MS) wanted.push({ day: today + 1, create: true });
    for (const w of wanted) {
      if (this.held.has(w.day)) continue;
      try {
        let bytes = await this.storage.read(w.day);
        if (bytes === null && w.create) {
          const mine = randomBytes(SALT_BYTES);
          bytes = await this.storage.create(w.day, mine);
          if (bytes !== mine) mine.fill(0);
        }
        // The clock may have moved on while we waited: never hold a salt past its 48 h.
        if (bytes !== null && bytes.length === SALT_BYTES && w.day >= dayOf(this.now()) - 1) this.held.set(w.day, { day: w.day, bytes });
        else if (bytes !== null && bytes.length !== SALT_BYTES) throw new Error(`salt blob of day ${w.day} holds ${bytes.length} bytes, not ${SALT_BYTES}`);
      } catch (err) {
        ok = false;
        if (!this.failing) this.log.error({ err: errMessage(err), day: isoDay(w.day) }, 'shared salt storage unavailable; refusing events once the day has no salt');
        this.failing = true;
      }
    }
    let deleted = 0;
    try {
      for (const day of await this.storage.days()) {
        if (day >= today - 1) continue;
        await this.storage.delete(day);
        deleted++;
      }
    } catch (err) {
      ok = false;
      if (!this.failing) this.log.error({ err: errMessage(err) }, 'shared salt storage unavailable; expired salts not deleted yet');
      this.failing = true;
    }
    if (ok && this.failing) {
      this.failing = false;
      this.log.info({}, 'shared salt storage available again');
    }
    return { ok, deleted };
  }

  /** Zeroes and drops every salt held in memory (on close). */
  close(): void {
    this.forgetBefore(Number.POSITIVE_INFINITY);
  }

  private forgetBefore(day: number): void {
    for (const [d, salt] of this.held) {
      if (d >= day) continue;
      // Zero the bytes too: a heap dump must not outlive the deletion either.
      salt.bytes.fill(0);
      this.held.delete(d);
    }
  }
}

/**
 * Keeps a {@link SharedSaltStore} fresh: every `intervalMs` (60 s), every second while a needed
 * salt is missing, and right after each midnight UTC. Returns a stop function.
 */
export function refreshSharedSalts(store: SharedSaltStore, opts: { now?: () => number; intervalMs?: number } = {}): () => void {
  const now = opts.now ?? Date.now;
  const interval = opts.intervalMs ?? 60_000;
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  const tick = async (): Promise<void> => {
    const r = await store.refresh();
    if (stopped) return;
    const toMidnight = DAY_MS - (now() % DAY_MS);
    const toPrefetch = toMidnight - PREFETCH_MS;
    const next = Math.min(r.ok && store.ready() ? interval : 1_000, toMidnight + 50, toPrefetch > 0 ? toPrefetch + 50 : interval);
    timer = setTimeout(() => void tick(), next);
    timer.unref();
  };
  timer = setTimeout(() => void tick(), interval);
  timer.unref();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

/** Salts as blobs under `prefix` in `container` (created by the caller if missing). */
export function blobSaltStorage(container: ContainerClient, prefix: string): SaltStorage {
  const name = (day: number): string => `${prefix}/salt-${isoDay(day)}`;
  return {
    async read(day) {
      try {
        return await container.getBlobClient(name(day)).downloadToBuffer();
      } catch (err) {
        if (statusOf(err) === 404) return null;
        throw err;
      }
    },
    async create(day, bytes) {
      for (let attempt = 0; ; attempt++) {
        try {
          await container.getBlockBlobClient(name(day)).uploadData(bytes, { conditions: { ifNoneMatch: '*' } });
          return bytes;
        } catch (err) {
          const status = statusOf(err);
          // No container yet (the first process of a deployment): make it, once.
          if (status === 404 && attempt === 0) {
            await container.createIfNotExists();
            continue;
          }
          // Another collector created it first: use theirs, so both hash alike.
          if (status !== 409 && status !== 412) throw err;
          return await container.getBlobClient(name(day)).downloadToBuffer();
        }
      }
    },
    async days() {
      const out: number[] = [];
      for await (const blob of container.listBlobsFlat({ prefix: `${prefix}/salt-` })) {
        const m = /salt-(\d{4}-\d{2}-\d{2})$/.exec(blob.name);
        const ms = m === null ? Number.NaN : Date.parse(`${m[1]}T00:00:00Z`);
        if (!Number.isNaN(ms)) out.push(dayOf(ms));
      }
      return out;
    },
    async delete(day) {
      await container.getBlobClient(name(day)).deleteIfExists();
    },
  };
}

/** `farol-salts/<namespace host>/<event hub>`: one salt series per Event Hub, whatever the consumer groups. */
export function saltBlobPrefix(eventHubsConnectionString: string, eventHubName: string): string {
  const host = /Endpoint=sb:\/\/([^/;]+)/i.exec(eventHubsConnectionString)?.[1] ?? 'unknown';
  return `farol-salts/${host}/${eventHubName}`.toLowerCase();
}

function isoDay(day: number): string {
  return new Date(day * DAY_MS).toISOString().slice(0, 10);
}

function statusOf(err: unknown): number | undefined {
  return typeof err === 'object' && err !== null && typeof (err as { statusCode?: unknown }).statusCode === 'number'
    ? (err as { statusCode: number }).statusCode
    : undefined;
}

// Storage errors can carry request URLs with SAS tokens: log the message only (the logger scrubs it too).
function errMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
