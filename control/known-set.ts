import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * A snapshot of a whole set of keys (the live token hashes, the live site domains), so a key that
 * does not exist is answered from memory: a flood of random Bearer tokens or `/api/config/<random>`
 * costs a bounded number of store queries, not one per request. A cache of individual misses would
 * not do that, since random keys never repeat.
 *
 * The snapshot is reloaded when older than the TTL, and dropped by {@link invalidate} after a local
 * write. A miss is answered "unknown" only from a snapshot whose load started after the miss
 * arrived, so a key another process created before the request came (a token minted through one
 * API replica and used on the next) is found at once, never refused for a while. Such reloads are
 * one at a time and at least {@link MISS_SPACING_MS} apart (requests missing meanwhile share the
 * next one): a flood of unknown keys costs at most ~10 loads a second, and each unknown key waits
 * at most that spacing plus two loads.
 */

/** Least time between two loads started by misses (a real clock: `now` may be a test's frozen one). */
const MISS_SPACING_MS = 100;

export class KnownSet {
  private keys: Set<string> | null = null;
  private loadedAt = 0;
  private loading: Promise<Set<string>> | null = null;
  /** When the load in flight (or the last one) started, on the monotonic clock. */
  private loadStartedMono = -Infinity;
  private generation = 0;

  constructor(
    private readonly load: () => Promise<Iterable<string>>,
    private readonly ttlMs: number,
    private readonly now: () => number,
  ) {}

  /** Whether `key` may exist: false only when a snapshot loaded after this call began says it does not. */
  async has(key: string): Promise<boolean> {
    // Without a TTL nothing is cached: every caller looks the key itself up.
    if (this.ttlMs <= 0) return true;
    const t = this.now();
    const age = this.keys === null || t < this.loadedAt ? Infinity : t - this.loadedAt;
    if (this.keys !== null && age < this.ttlMs && this.keys.has(key)) return true;
    return (await this.loadStartedAfter(performance.now())).has(key);
  }

  /** Forgets the snapshot; the next {@link has} loads one that started after this call. */
  invalidate(): void {
    this.keys = null;
    this.loading = null;
    this.loadStartedMono = -Infinity;
    this.generation++;
  }

  /** A snapshot whose load started at or after `arrived` (monotonic ms): shared, spaced, one at a time. */
  private async loadStartedAfter(arrived: number): Promise<Set<string>> {
    for (;;) {
      const loading = this.loading;
      if (loading !== null) {
        if (this.loadStartedMono >= arrived) return loading;
        // Started before this caller came: it may miss a key created since. Wait, then load again.
        await loading.catch(() => undefined);
        continue;
      }
      const wait = this.loadStartedMono + MISS_SPACING_MS - performance.now();
      if (wait > 0) {
        await sleep(wait);
        continue;
      }
      return this.reload();
    }
  }

  private reload(): Promise<Set<string>> {
    const generation = this.generation;
    const startedAt = this.now();
    this.loadStartedMono = performance.now();
    const loading = this.load().then((keys) => {
      const set = new Set(keys);
      // A load that started before an invalidation may miss the write that caused it.
      if (generation === this.generation) {
        this.keys = set;
        this.loadedAt = startedAt;
      }
      return set;
    });
    this.loading = loading;
    const settle = (): void => {
      if (this.loading === loading) this.loading = null;
    };
    loading.then(settle, settle);
    return loading;
  }
}
