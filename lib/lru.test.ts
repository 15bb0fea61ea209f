import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { LruMap, RecentCache } from './lru.ts';

const keysOf = (lru: LruMap<string, number>, candidates: readonly string[]): string[] =>
  candidates.filter((k) => lru.peek(k) !== undefined);

describe('LruMap', () => {
  it('evicts the least recently used entry beyond its capacity', () => {
    const lru = new LruMap<string, number>(2);
    lru.set('a', 1);
    lru.set('b', 2);
    expect(lru.get('a')).toBe(1); // a is now newer than b
    lru.set('c', 3);
    expect(lru.size).toBe(2);
    expect(lru.peek('b')).toBeUndefined();
    expect(lru.peek('a')).toBe(1);
    expect(lru.peek('c')).toBe(3);
  });

  it('peek reads without refreshing; set on a present key refreshes and does not grow', () => {
    const lru = new LruMap<string, number>(2);
    lru.set('a', 1);
    lru.set('b', 2);
    expect(lru.peek('a')).toBe(1);
    lru.set('c', 3); // a was only peeked, so it goes
    expect(keysOf(lru, ['a', 'b', 'c'])).toEqual(['b', 'c']);
    lru.set('b', 20); // b becomes the newest
    expect(lru.size).toBe(2);
    lru.set('d', 4);
    expect(keysOf(lru, ['b', 'c', 'd'])).toEqual(['b', 'd']);
    expect(lru.get('b')).toBe(20);
  });

  it('keeps nothing with capacity 0, and reads a negative, NaN or fractional capacity as its floor at 0', () => {
    for (const capacity of [0, -5, Number.NaN]) {
      const lru = new LruMap<string, number>(capacity);
      expect(lru.capacity).toBe(0);
      lru.set('a', 1);
      expect(lru.size).toBe(0);
      expect(lru.get('a')).toBeUndefined();
    }
    expect(new LruMap(2.9).capacity).toBe(2);
  });

  it('deleteOldestWhile expires from the oldest end and stops at the first entry it keeps', () => {
    const lru = new LruMap<string, number>(10);
    lru.set('a', 1);
    lru.set('b', 5);
    lru.set('c', 2); // older value, but newer entry: not reached
    const seen: string[] = [];
    lru.deleteOldestWhile((v, k) => {
      seen.push(k);
      return v < 3;
    });
    expect(seen).toEqual(['a', 'b']);
    expect(keysOf(lru, ['a', 'b', 'c'])).toEqual(['b', 'c']);
    lru.deleteOldestWhile(() => true);
    expect(lru.size).toBe(0);
  });

  it('delete and clear remove entries', () => {
    const lru = new LruMap<string, number>(3);
    lru.set('a', 1);
    expect(lru.delete('a')).toBe(true);
    expect(lru.delete('a')).toBe(false);
    lru.set('b', 2);
    lru.clear();
    expect(lru.size).toBe(0);
  });

  it('behaves like a list kept in recency order (model test)', () => {
    const op = fc.oneof(
      fc.record({ kind: fc.constant('get' as const), key: fc.integer({ min: 0, max: 30 }) }),
      fc.record({ kind: fc.constant('set' as const), key: fc.integer({ min: 0, max: 30 }), value: fc.integer() }),
      fc.record({ kind: fc.constant('delete' as const), key: fc.integer({ min: 0, max: 30 }) }),
    );
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 12 }), fc.array(op, { maxLength: 100 }), (capacity, ops) => {
        const lru = new LruMap<number, number>(capacity);
        // Model: entries oldest first.
        let model: [number, number][] = [];
        for (const o of ops) {
          const at = model.findIndex(([k]) => k === o.key);
          if (o.kind === 'get') {
            expect(lru.get(o.key)).toBe(at < 0 ? undefined : model[at]![1]);
            if (at >= 0) model.push(model.splice(at, 1)[0]!);
          } else if (o.kind === 'set') {
            lru.set(o.key, o.value);
            if (at >= 0) model.splice(at, 1);
            model.push([o.key, o.value]);
            if (model.length > capacity) model = model.slice(model.length - capacity);
          } else {
            expect(lru.delete(o.key)).toBe(at >= 0);
            if (at >= 0) model.splice(at, 1);
          }
          expect(lru.size).toBe(model.length);
        }
        // Order: draining from the oldest end yields the model's order.
        const drained: number[] = [];
        lru.deleteOldestWhile((_, k) => drained.push(k) > 0);
        expect(drained).toEqual(model.map(([k]) => k));
      }),
      { numRuns: 100 },
    );
  });
});

describe('RecentCache', () => {
  it('keeps what was used since the last turn, drops what was not used for two, and never exceeds its capacity (model test)', () => {
    const op = fc.oneof(
      fc.record({ kind: fc.constant('get' as const), key: fc.integer({ min: 0, max: 30 }) }),
      fc.record({ kind: fc.constant('set' as const), key: fc.integer({ min: 0, max: 30 }), value: fc.integer() }),
    );
    fc.assert(
      fc.property(fc.integer({ min: -2, max: 12 }), fc.array(op, { maxLength: 150 }), (asked, ops) => {
        const cache = new RecentCache<number, number>(asked);
        const generation = cache.capacity / 2;
        expect(cache.capacity).toBe(asked >= 4 ? 2 * Math.floor(asked / 2) : 2);
        // Model: the last value set per key, and the keys added to the young generation since each turn.
        const values = new Map<number, number>();
        let young: number[] = [];
        let old: number[] = [];
        const add = (k: number): void => {
          old = old.filter((x) => x !== k);
          young.push(k);
          if (young.length >= generation) {
            old = young;
            young = [];
          }
        };
        for (const o of ops) {
          if (o.kind === 'get') {
            const held = young.includes(o.key) || old.includes(o.key);
            expect(cache.get(o.key)).toBe(held ? values.get(o.key) : undefined);
            if (!young.includes(o.key) && old.includes(o.key)) add(o.key);
          } else {
            cache.set(o.key, o.value);
            values.set(o.key, o.value);
            if (!young.includes(o.key)) add(o.key);
          }
          expect(cache.size).toBe(young.length + old.length);
          expect(cache.size).toBeLessThanOrEqual(cache.capacity);
        }
      }),
      { numRuns: 200 },
    );
  });

  it('answers a hit in the young generation without reordering, and forgets on clear', () => {
    const cache = new RecentCache<string, number>(4);
    cache.set('a', 1);
    expect(cache.get('a')).toBe(1);
    cache.set('b', 2); // the young generation is full: a and b age together
    cache.set('c', 3);
    expect(cache.get('a')).toBe(1); // promoted back: the young generation turns again, c and a survive
    cache.set('d', 4); // b, unused for two turns, is gone
    expect(cache.size).toBe(3);
    expect([cache.get('b'), cache.get('d'), cache.get('a')]).toEqual([undefined, 4, 1]);
    cache.clear();
    expect([cache.size, cache.get('a')]).toEqual([0, undefined]);
  });
});
