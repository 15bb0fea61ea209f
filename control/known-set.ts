/**
 * A snapshot of a whole set of keys (the live token hashes, the live site domains), so a key that
 * does not exist is answered from memory: a flood of random Bearer tokens or `/api/config/<random>`
 * costs at most one store query per TTL, not one per request. A cache of individual misses would
 * not do that, since random keys never repeat. The snapshot is reloaded when older than the TTL,
 * or on a miss when older than a second (one load at a time), and dropped by {@link invalidate}
 * after a local write: a key created in this process is seen at once, one created by another
 * process within a second, and a flood of unknown keys costs at most one load a second.
 */
/** Age past which a miss reloads the snapshot (a key another process just created). */
const MISS_RELOAD_MS = 1_000;

export class KnownSet {
  private keys: Set<string> | null = null;
  private loadedAt = 0;
  private loading: Promise<Set<string>> | null = null;
  private generation = 0;

  constructor(
    private readonly load: () => Promise<Iterable<string>>,
    private readonly ttlMs: number,
    private readonly now: () => number,
  ) {}

  /** Whether `key` may exist: false only when the snapshot says it does not. */
  async has(key: string): Promise<boolean> {
    // Without a TTL nothing is cached: every caller looks the key itself up.
    if (this.ttlMs <= 0) return true;
    const t = this.now();
    const age = this.keys === null || t < this.loadedAt ? Infinity : t - this.loadedAt;
    if (this.keys !== null && age < this.ttlMs && (age < Math.min(this.ttlMs, MISS_RELOAD_MS) || this.keys.has(key))) return this.keys.has(key);
    return (await this.reload()).has(key);
  }

  /** Forgets the snapshot; the next {@link has} loads one that started after this call. */
  invalidate(): void {
    this.keys = null;
    this.loading = null;
    this.generation++;
  }

  private reload(): Promise<Set<string>> {
    if (this.loading !== null) return this.loading;
    const generation = this.generation;
    const startedAt = this.now();
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
