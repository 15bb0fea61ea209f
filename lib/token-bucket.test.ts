import { describe, expect, it } from 'vitest';
import { TokenBuckets } from './token-bucket.ts';

describe('TokenBuckets', () => {
  it('passes a burst, then refuses with the seconds to wait, then refills at the rate', () => {
    let t = 1_000_000;
    const b = new TokenBuckets({ perSecond: 2, burst: 5 }, { now: () => t });
    for (let i = 0; i < 5; i++) expect(b.take('a')).toBe(0);
    expect(b.take('a')).toBe(1);
    // Another key has its own bucket.
    expect(b.take('b')).toBe(0);
    t += 499;
    expect(b.take('a')).toBe(1);
    t += 1;
    expect(b.take('a')).toBe(0);
    expect(b.take('a')).toBe(1);
    // Never more than the burst, however long the pause.
    t += 3_600_000;
    for (let i = 0; i < 5; i++) expect(b.take('a')).toBe(0);
    expect(b.take('a')).toBeGreaterThan(0);
  });

  it('refuses without spending, so a refused client is not pushed further back', () => {
    let t = 0;
    const b = new TokenBuckets({ perSecond: 1, burst: 1 }, { now: () => t });
    expect(b.take('a')).toBe(0);
    for (let i = 0; i < 100; i++) expect(b.take('a')).toBe(1);
    t += 1_000;
    expect(b.take('a')).toBe(0);
  });

  it('lets a request larger than the burst through on a full bucket, leaving a debt', () => {
    let t = 0;
    const b = new TokenBuckets({ perSecond: 10, burst: 100 }, { now: () => t });
    expect(b.wait('a', 1_000)).toBe(0);
    b.spend('a', 1_000);
    // 900 tokens in debt, and one needed: 90.1 s at 10/s.
    expect(b.wait('a')).toBe(91);
    t += 90_100;
    expect(b.take('a')).toBe(0);
    // A second large request needs the bucket full again.
    expect(b.wait('a', 1_000)).toBe(10);
  });

  it('answers a wait of at least a second and refills nothing when the clock steps back', () => {
    let t = 10_000;
    const b = new TokenBuckets({ perSecond: 1000, burst: 1 }, { now: () => t });
    expect(b.take('a')).toBe(0);
    expect(b.take('a')).toBe(1);
    t -= 5_000;
    expect(b.take('a')).toBe(1);
  });

  it('remembers at most maxKeys keys, whatever the flood of distinct ones', () => {
    const b = new TokenBuckets({ perSecond: 1, burst: 1 }, { maxKeys: 1_000 });
    for (let i = 0; i < 50_000; i++) b.take(`client-${i}`);
    expect(b.size).toBe(1_000);
    // The newest keys are the ones kept.
    expect(b.take('client-49999')).toBe(1);
  });

  it('refuses a rate that could never refill', () => {
    expect(() => new TokenBuckets({ perSecond: 0, burst: 1 })).toThrow(RangeError);
    expect(() => new TokenBuckets({ perSecond: 1, burst: 0 })).toThrow(RangeError);
  });
});
