/**
 * A bounded map that forgets its least recently used entry, for the collector's per-event caches
 * (user agents, geo answers, visitor ids across midnight).
 *
 * Written here rather than taken from `lru-cache` because it sits on the collector's hot path: a
 * JavaScript `Map` already iterates in insertion order, so moving a key to the newest end is a
 * delete and a set, and evicting is deleting the first key — two `Map` operations per hit and no
 * per-entry node, where `lru-cache` keeps index arrays, TTL and size bookkeeping we do not use.
 */
export class LruMap<K, V> {
  /** Most entries kept; 0 keeps none. */
  readonly capacity: number;
  // Oldest first: every read through `get` and every `set` moves its key to the end.
  private readonly map = new Map<K, V>();

  /** `capacity` is rounded down; below 0 or NaN it counts as 0. */
  constructor(capacity: number) {
    this.capacity = capacity > 0 ? Math.floor(capacity) : 0;
  }

  get size(): number {
    return this.map.size;
  }

  /** The value of `key`, which becomes the most recently used. */
  get(key: K): V | undefined {
    const value = this.map.get(key);
    if (value !== undefined) {
      this.map.delete(key);
      this.map.set(key, value);
    }
    return value;
  }

  /** The value of `key`, leaving the order as it is. */
  peek(key: K): V | undefined {
    return this.map.get(key);
  }

  /** Stores `key` as the most recently used; beyond the capacity the least recently used goes. */
  set(key: K, value: V): void {
    this.map.delete(key);
    this.map.set(key, value);
    if (this.map.size > this.capacity) this.deleteOldest();
  }

  delete(key: K): boolean {
    return this.map.delete(key);
  }

  clear(): void {
    this.map.clear();
  }

  /**
   * Deletes entries from the least recently used end while `stale` says so, and stops at the first
   * one it keeps: with entries set in time order that is an expiry costing one look when nothing
   * is due.
   */
  deleteOldestWhile(stale: (value: V, key: K) => boolean): void {
    for (const [key, value] of this.map) {
      if (!stale(value, key)) return;
      this.map.delete(key);
    }
  }

  private deleteOldest(): void {
    const oldest = this.map.keys().next();
    if (oldest.done !== true) this.map.delete(oldest.value);
  }
}

/**
 * A bounded cache of recently used entries for pure lookups (User-Agent and geo answers), cheaper
 * per hit than {@link LruMap}: two generations of plain `Map`s, the young one filled by sets and by
 * hits promoted from the old one; when the young one is full it becomes the old one and the
 * previous old one is dropped whole. A hit in the young generation is one `Map.get`, where an
 * exact LRU pays a delete and a set (and the tombstones they leave make V8 rehash the table).
 * Eviction is approximate: an entry used since the last turn survives the next one; nothing
 * unused for two turns does. Holds at most `capacity` entries (2 when `capacity` is 1).
 */
export class RecentCache<K, V> {
  /** Most entries kept: twice the generation size. */
  readonly capacity: number;
  private readonly generation: number;
  private young = new Map<K, V>();
  private old = new Map<K, V>();

  /** `capacity` is rounded down to an even number of at least 2. */
  constructor(capacity: number) {
    this.generation = capacity >= 4 ? Math.floor(capacity / 2) : 1;
    this.capacity = 2 * this.generation;
  }

  /** Distinct entries held. */
  get size(): number {
    return this.young.size + this.old.size;
  }

  get(key: K): V | undefined {
    const hit = this.young.get(key);
    if (hit !== undefined) return hit;
    const aged = this.old.get(key);
    if (aged !== undefined) {
      this.old.delete(key);
      this.add(key, aged);
    }
    return aged;
  }

  set(key: K, value: V): void {
    if (this.young.has(key)) {
      this.young.set(key, value);
      return;
    }
    this.old.delete(key);
    this.add(key, value);
  }

  clear(): void {
    this.young.clear();
    this.old.clear();
  }

  private add(key: K, value: V): void {
    this.young.set(key, value);
    if (this.young.size >= this.generation) {
      this.old = this.young;
      this.young = new Map();
    }
  }
}
