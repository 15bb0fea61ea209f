/**
 * Token buckets by key with bounded memory: the collector's per-client and per-site ingest rates
 * and the API's failed-authentication budget. A bucket holds up to `burst` tokens and refills at
 * `perSecond`. A request costing `n` tokens passes when the bucket holds `min(n, burst)` (so a
 * request larger than the burst passes on a full bucket and leaves it in debt), and is refused
 * otherwise with the seconds until it would pass. Keys are whatever the caller chooses; callers
 * must never use an IP address (no IP is kept in any form): the collector keys on the salted
 * visitor id, the API on a keyed hash that lives only in memory.
 */

/** A rate: tokens per second and the bucket size. */
export interface Rate {
  perSecond: number;
  burst: number;
}

export interface TokenBucketsOptions {
  /** Most keys remembered; past it the oldest bucket is forgotten (default 100,000). */
  maxKeys?: number;
  /** Clock in milliseconds (tests move it). */
  now?: () => number;
}

interface Bucket {
  tokens: number;
  /** When `tokens` was last brought up to date (ms). */
  at: number;
}

const DEFAULT_MAX_KEYS = 100_000;

export class TokenBuckets {
  private readonly buckets = new Map<string, Bucket>();
  private readonly maxKeys: number;
  private readonly now: () => number;
  private readonly perMs: number;

  constructor(
    readonly rate: Rate,
    opts: TokenBucketsOptions = {},
  ) {
    if (!(rate.perSecond > 0) || !(rate.burst >= 1)) throw new RangeError('a rate needs perSecond > 0 and burst >= 1');
    this.maxKeys = opts.maxKeys ?? DEFAULT_MAX_KEYS;
    this.now = opts.now ?? Date.now;
    this.perMs = rate.perSecond / 1000;
  }

  /** Keys remembered now (bounded by `maxKeys`). */
  get size(): number {
    return this.buckets.size;
  }

  /**
   * Spends `cost` tokens of `key` if it may; returns 0 when spent, else the whole seconds (at
   * least 1) to wait, spending nothing.
   */
  take(key: string, cost = 1): number {
    const t = this.now();
    // One lookup: this is on the collector's hot path.
    const b = this.buckets.get(key);
    if (b === undefined) {
      this.spendAt(key, cost, t);
      return 0;
    }
    const tokens = this.refilled(b, t);
    const need = Math.min(cost, this.rate.burst);
    if (tokens < need) return this.secondsFor(need - tokens);
    b.tokens = tokens - cost;
    b.at = t;
    return 0;
  }

  /** Seconds until `cost` tokens of `key` may be spent (0: now), spending nothing. */
  wait(key: string, cost = 1): number {
    return this.waitAt(key, cost, this.now());
  }

  /** Spends `cost` tokens of `key` unconditionally (after {@link wait} said 0 for every key of a request). */
  spend(key: string, cost = 1): void {
    this.spendAt(key, cost, this.now());
  }

  private waitAt(key: string, cost: number, t: number): number {
    const b = this.buckets.get(key);
    if (b === undefined) return 0;
    const tokens = this.refilled(b, t);
    const need = Math.min(cost, this.rate.burst);
    return tokens >= need ? 0 : this.secondsFor(need - tokens);
  }

  private secondsFor(missing: number): number {
    return Math.max(1, Math.ceil(missing / this.rate.perSecond));
  }

  private spendAt(key: string, cost: number, t: number): void {
    const b = this.buckets.get(key);
    if (b !== undefined) {
      b.tokens = this.refilled(b, t) - cost;
      b.at = t;
      return;
    }
    // Oldest first: a forgotten bucket comes back full, which only forgives its owner a debt.
    if (this.buckets.size >= this.maxKeys) {
      const oldest = this.buckets.keys().next();
      if (oldest.done !== true) this.buckets.delete(oldest.value);
    }
    this.buckets.set(key, { tokens: this.rate.burst - cost, at: t });
  }

  private refilled(b: Bucket, t: number): number {
    // A clock stepping back refills nothing.
    const elapsed = t > b.at ? t - b.at : 0;
    return Math.min(this.rate.burst, b.tokens + elapsed * this.perMs);
  }
}
