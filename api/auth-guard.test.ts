import { describe, expect, it } from 'vitest';
import { Registry } from '../lib/metrics.ts';
import { createAuthGuard, networkOf } from './auth-guard.ts';

describe('networkOf', () => {
  it.each([
    ['203.0.113.5', '203.0.113.5'],
    ['2001:db8:1:2:3:4:5:6', '2001:db8:1:2::/64'],
    ['2001:db8:1:2::1', '2001:db8:1:2::/64'],
    ['2001:db8::1', '2001:db8:0:0::/64'],
    ['2001:db8:1:2:3::', '2001:db8:1:2::/64'],
    ['::1', '0:0:0:0::/64'],
    ['fe80::', 'fe80:0:0:0::/64'],
    ['::', '0:0:0:0::/64'],
  ])('%s → %s', (ip, network) => {
    expect(networkOf(ip)).toBe(network);
  });
});

describe('createAuthGuard', () => {
  it('keys clients by a keyed hash that never holds the address, and per process', () => {
    const opts = { rate: { perSecond: 1, burst: 1 }, trust: { kind: 'hops' as const, hops: 0 }, metrics: new Registry() };
    const a = createAuthGuard(opts);
    const b = createAuthGuard(opts);
    const key = a.clientKey('85.214.132.117', '');
    expect(key).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(a.clientKey('85.214.132.117', '6.6.6.6')).toBe(key);
    expect(a.clientKey('85.214.132.118', '')).not.toBe(key);
    expect(b.clientKey('85.214.132.117', '')).not.toBe(key);
  });
});
