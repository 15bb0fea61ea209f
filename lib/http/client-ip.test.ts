import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { TrustProxy } from '../../schemas/config.ts';
import { BlockList, isIP } from 'node:net';
import { clientIp, ipv4Value, isTrustedRemote, parseForwardedEntry } from './client-ip.ts';
import { normalizeIp } from '../ip.ts';

const hops = (n: number): TrustProxy => ({ kind: 'hops', hops: n });
const cidrs = (...list: string[]): TrustProxy => ({ kind: 'cidrs', cidrs: list });
const lbs = cidrs('10.0.0.0/8', '2001:db8:1::/48');

describe('clientIp', () => {
  it.each<[string, string, string | undefined, TrustProxy, string]>([
    ['no proxy: the socket peer', '198.51.100.7', undefined, hops(0), '198.51.100.7'],
    ['no proxy: X-Forwarded-For ignored', '198.51.100.7', '1.2.3.4', hops(0), '198.51.100.7'],
    ['uWS IPv4-mapped peer', '::ffff:198.51.100.7', '', hops(0), '198.51.100.7'],
    ['uWS long-form IPv4-mapped peer', '0000:0000:0000:0000:0000:ffff:c633:6407', '', hops(0), '198.51.100.7'],
    ['uWS long-form IPv6 peer', '2001:0db8:0000:0000:0000:0000:0000:0001', '', hops(0), '2001:db8::1'],
    ['one hop: rightmost entry', '10.0.0.2', '203.0.113.5', hops(1), '203.0.113.5'],
    ['one hop: a spoofed left part is not reached', '10.0.0.2', '6.6.6.6, 203.0.113.5', hops(1), '203.0.113.5'],
    ['two hops', '10.0.0.2', '6.6.6.6, 203.0.113.5, 10.0.0.9', hops(2), '203.0.113.5'],
    ['more hops than entries: the leftmost', '10.0.0.2', '203.0.113.5', hops(3), '203.0.113.5'],
    ['one hop, no header: the peer', '10.0.0.2', undefined, hops(1), '10.0.0.2'],
    ['port on an IPv4 entry', '10.0.0.2', '203.0.113.5:5678', hops(1), '203.0.113.5'],
    ['bracketed IPv6 with port', '10.0.0.2', '[2001:db8:a::5]:443', hops(1), '2001:db8:a::5'],
    ['bare IPv6 entry, upper case', '10.0.0.2', '2001:DB8:A:0:0:0:0:5', hops(1), '2001:db8:a::5'],
    ['IPv4-mapped entry', '10.0.0.2', '::ffff:203.0.113.5', hops(1), '203.0.113.5'],
    ['junk as the client entry: the last valid hop', '10.0.0.2', 'unknown', hops(1), '10.0.0.2'],
    ['junk in the middle: the last valid hop', '10.0.0.2', '203.0.113.5, garbage, 10.0.0.9', hops(2), '10.0.0.9'],
    ['empty entry counts as junk', '10.0.0.2', '203.0.113.5,,10.0.0.9', hops(3), '10.0.0.9'],
    ['CIDRs: untrusted peer is the client', '198.51.100.7', '203.0.113.5', lbs, '198.51.100.7'],
    ['CIDRs: trusted peer, client behind it', '10.1.2.3', '203.0.113.5', lbs, '203.0.113.5'],
    ['CIDRs: skip a chain of trusted proxies', '10.1.2.3', '6.6.6.6, 203.0.113.5, 10.9.9.9, 10.8.8.8', lbs, '203.0.113.5'],
    ['CIDRs: IPv6 proxy', '2001:db8:1::10', '203.0.113.5', lbs, '203.0.113.5'],
    ['CIDRs: IPv4-mapped trusted peer', '::ffff:10.1.2.3', '203.0.113.5', lbs, '203.0.113.5'],
    ['CIDRs: all trusted: the leftmost', '10.1.2.3', '10.2.2.2, 10.3.3.3', lbs, '10.2.2.2'],
    ['CIDRs: junk after trusted hops', '10.1.2.3', 'nonsense, 10.3.3.3', lbs, '10.3.3.3'],
    ['CIDRs: single address', '192.0.2.10', '203.0.113.5', cidrs('192.0.2.10'), '203.0.113.5'],
    ['junk peer, no trust', 'garbage', '203.0.113.5', hops(0), ''],
  ])('%s', (_label, remote, xff, trust, expected) => {
    expect(clientIp({ remote, xff, trust })).toBe(expected);
  });

  it('never throws and answers a valid IP or empty, whatever the header', () => {
    fc.assert(
      fc.property(
        fc.oneof(fc.ipV4(), fc.ipV6(), fc.string()),
        fc.array(fc.oneof(fc.ipV4(), fc.ipV6(), fc.string(), fc.ipV4().map((ip) => `${ip}:80`), fc.ipV6().map((ip) => `[${ip}]:80`))),
        fc.oneof(fc.integer({ min: 0, max: 10 }).map(hops), fc.constant(lbs)),
        (remote, entries, trust) => {
          const ip = clientIp({ remote, xff: entries.join(', '), trust });
          expect(ip === '' || normalizeIp(ip) === ip).toBe(true);
        },
      ),
      { numRuns: 2000 },
    );
  });
});

describe('isTrustedRemote', () => {
  it.each<[string, TrustProxy, boolean]>([
    ['10.0.0.2', hops(0), false],
    ['10.0.0.2', hops(1), false],
    ['127.0.0.1', hops(3), false],
    ['10.1.2.3', lbs, true],
    ['::ffff:10.1.2.3', lbs, true],
    ['0000:0000:0000:0000:0000:ffff:0a01:0203', lbs, true],
    ['198.51.100.7', lbs, false],
    ['2001:db8:1:ffff::1', lbs, true],
    ['2001:db8:2::1', lbs, false],
    ['garbage', lbs, false],
  ])('%s with %j → %s', (remote, trust, expected) => {
    expect(isTrustedRemote(remote, trust)).toBe(expected);
  });
});

describe('parseForwardedEntry and normalizeIp', () => {
  it.each([
    [' 203.0.113.5 ', '203.0.113.5'],
    ['203.0.113.5:8080', '203.0.113.5'],
    ['[::1]:80', '::1'],
    ['[::1]', '::1'],
    ['::1', '::1'],
    ['fe80::1%eth0', 'fe80::1'],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
    ['2001:0:0:1:0:0:0:1', '2001:0:0:1::1'],
    ['0:0:0:0:0:0:0:0', '::'],
    ['1:0:0:0:0:0:0:0', '1::'],
    ['2001:db8:1:2:3:4:5:0', '2001:db8:1:2:3:4:5:0'],
    ['::FFFF:C633:6407', '198.51.100.7'],
    ['01.2.3.4', ''],
    ['1.2.3.4:80:90', ''],
    ['[::1', ''],
    ['unknown', ''],
    ['_hidden', ''],
    ['example.com', ''],
    ['', ''],
  ])('%j → %j', (raw, expected) => {
    expect(parseForwardedEntry(raw)).toBe(expected);
  });

  it('agrees with Node on the canonical form of any IPv6 address', async () => {
    const { SocketAddress } = await import('node:net');
    fc.assert(
      fc.property(fc.ipV6(), (ip) => {
        const node = new SocketAddress({ address: ip, family: 'ipv6' }).address;
        // glibc writes deprecated IPv4-compatible addresses (::/96) dotted; RFC 5952 does not.
        if (/^::\d+\./.test(node)) return;
        const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(node);
        expect(normalizeIp(ip)).toBe(mapped ? mapped[1] : node);
      }),
      { numRuns: 3000 },
    );
  });

  it('reads dotted quads exactly as isIP does (the fast path of every address)', () => {
    const part = fc.oneof(fc.nat(300).map(String), fc.constantFrom('0', '00', '01', '255', '256', '', ' 1', '1 ', '+1', '-1', '1e2', 'a', '０'));
    const quad = fc.array(part, { minLength: 1, maxLength: 6 }).map((a) => a.join('.'));
    fc.assert(
      fc.property(fc.oneof(quad, fc.ipV4(), fc.string({ maxLength: 16 })), (s) => {
        const v = ipv4Value(s);
        expect(v >= 0).toBe(isIP(s) === 4);
        if (v >= 0) expect(v).toBe(s.split('.').reduce((a, o) => a * 256 + Number(o), 0));
      }),
      { numRuns: 5000 },
    );
  });

  it('trusts exactly the IPv4 peers BlockList finds in the CIDRs', () => {
    const cidr = fc.tuple(fc.ipV4(), fc.integer({ min: 0, max: 32 }), fc.boolean()).map(([ip, bits, mapped]) => (mapped ? `::ffff:${ip}/${bits + 96}` : `${ip}/${bits}`));
    fc.assert(
      fc.property(fc.array(cidr, { maxLength: 5 }), fc.array(fc.ipV4(), { minLength: 1, maxLength: 20 }), (list, peers) => {
        const oracle = new BlockList();
        for (const c of list) {
          const [addr, bits] = c.split('/') as [string, string];
          oracle.addSubnet(addr.replace('::ffff:', ''), Number(bits) - (addr.startsWith('::ffff:') ? 96 : 0), 'ipv4');
        }
        // Peers inside the first CIDR too, so that matches are not left to chance.
        const first = list[0]?.split('/')[0]?.replace('::ffff:', '');
        for (const peer of first === undefined ? peers : [...peers, first]) {
          expect(isTrustedRemote(peer, { kind: 'cidrs', cidrs: list })).toBe(oracle.check(peer, 'ipv4'));
          expect(isTrustedRemote(`::ffff:${peer}`, { kind: 'cidrs', cidrs: list })).toBe(oracle.check(peer, 'ipv4'));
        }
      }),
      { numRuns: 500 },
    );
  });
});
