import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GEO_ATTRIBUTION, openGeo, type Geo } from './geo.ts';
import { writeMmdb } from './testing/write-mmdb.ts';

describe('openGeo with the bundled DB-IP database', () => {
  let geo: Geo;
  beforeAll(async () => {
    geo = await openGeo();
  });
  afterAll(() => geo.close());

  // Long-held allocations whose country is not in doubt; checked against the bundled file.
  it.each([
    ['8.8.8.8', 'US', 'Google Public DNS'],
    ['1.1.1.1', 'AU', 'APNIC/Cloudflare research prefix, registered in Australia'],
    ['81.2.69.142', 'GB', 'UK ISP (MaxMind test address)'],
    ['80.128.0.1', 'DE', 'Deutsche Telekom'],
    ['91.0.0.1', 'DE', 'Deutsche Telekom'],
    ['126.0.0.1', 'JP', 'SoftBank'],
    ['133.0.0.1', 'JP', 'Japanese academic /8'],
    ['200.147.0.1', 'BR', 'UOL Brazil'],
    ['177.0.0.1', 'BR', 'Brazilian LACNIC range'],
    ['90.0.0.1', 'FR', 'Orange France'],
    ['193.0.6.139', 'NL', 'RIPE NCC'],
    ['2003::1', 'DE', 'Deutsche Telekom IPv6'],
    ['2a01:e00::1', 'FR', 'Free (Iliad) IPv6'],
    ['2400:4050::1', 'JP', 'NTT IPv6'],
    ['::ffff:8.8.8.8', 'US', 'IPv4-mapped IPv6 looks up the IPv4'],
    ['0000:0000:0000:0000:0000:ffff:0808:0808', 'US', 'long-form IPv4-mapped, as uWS reports it'],
  ])('%s → %s (%s)', (ip, country) => {
    expect(geo.lookup(ip)).toBe(country);
  });

  it.each([
    ['10.0.0.1'],
    ['127.0.0.1'],
    ['172.16.5.4'],
    ['192.168.1.1'],
    ['100.64.0.1'],
    ['169.254.1.1'],
    ['203.0.113.7'],
    ['224.0.0.1'],
    ['::1'],
    ['::'],
    ['fe80::1'],
    ['fd00::1'],
    ['2001:db8::1'],
    ['::ffff:10.0.0.1'],
    [''],
    ['not an ip'],
    ['1.2.3'],
    ['999.1.1.1'],
    ['1.2.3.4:80'],
  ])('%j → empty', (ip) => {
    expect(geo.lookup(ip)).toBe('');
  });

  it('answers from its cache exactly as without one, also while evicting', async () => {
    const small = await openGeo(undefined, { cacheSize: 8 });
    const none = await openGeo(undefined, { cacheSize: 0 });
    const ipv4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((o) => o.join('.'));
    const ips = fc.oneof(ipv4, fc.ipV6(), fc.constantFrom('8.8.8.8', '::ffff:8.8.8.8', '10.0.0.1', 'junk', ''));
    fc.assert(fc.property(fc.array(ips, { maxLength: 40 }), (list) => list.every((ip) => small.lookup(ip) === none.lookup(ip))));
    small.close();
    none.close();
  });

  it('answers empty after close', async () => {
    const g = await openGeo();
    g.close();
    expect(g.lookup('8.8.8.8')).toBe('');
  });

  it('carries the DB-IP attribution', () => {
    expect(GEO_ATTRIBUTION).toContain('db-ip.com');
    expect(GEO_ATTRIBUTION).toContain('CC BY 4.0');
  });
});

describe('openGeo with GeoLite2/GeoIP2-shaped databases', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'farol-geo-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const networks = [
    { cidr: '81.2.69.0/24', data: { country: { iso_code: 'FR', names: { en: 'France' } }, registered_country: { iso_code: 'FR' } } },
    { cidr: '2a01:e00::/26', data: { country: { iso_code: 'FR' }, continent: { code: 'EU' } } },
    // Some networks only carry the registered country (e.g. satellite and anycast providers).
    { cidr: '5.5.0.0/16', data: { registered_country: { iso_code: 'se' } } },
    { cidr: '6.6.6.0/24', data: { country: { names: { en: 'Nowhere' } } } },
  ];

  it.each([
    ['81.2.69.1', 'FR'],
    ['81.2.69.255', 'FR'],
    ['::ffff:81.2.69.3', 'FR'],
    ['2a01:e00::1', 'FR'],
    ['2a01:e3f:ffff::1', 'FR'],
    ['5.5.1.1', 'SE'],
    ['6.6.6.6', ''],
    ['81.2.70.1', ''],
    ['2a01:e40::1', ''],
    ['10.0.0.1', ''],
  ])('IPv6 tree: %s → %j', async (ip, country) => {
    const path = join(dir, 'v6.mmdb');
    await writeMmdb(path, { ipVersion: 6, networks, databaseType: 'GeoLite2-Country' });
    const geo = await openGeo(path);
    expect(geo.lookup(ip)).toBe(country);
    geo.close();
  });

  it('reads an IPv4-only tree', async () => {
    const path = join(dir, 'v4.mmdb');
    await writeMmdb(path, { ipVersion: 4, networks: networks.filter((n) => !n.cidr.includes(':')) });
    const geo = await openGeo(path);
    expect(geo.lookup('81.2.69.9')).toBe('FR');
    expect(geo.lookup('5.5.255.255')).toBe('SE');
    expect(geo.lookup('81.2.68.1')).toBe('');
    geo.close();
  });

  it('rejects a path that does not exist', async () => {
    await expect(openGeo(join(dir, 'missing.mmdb'))).rejects.toThrow();
  });
});
