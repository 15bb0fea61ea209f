import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openSaltStore, type Salt, type SaltSource } from './salts.ts';
import { createVisitorIdResolver, sipHash24, visitorHash } from './visitor-hash.ts';

// The reference vectors of the SipHash paper (key 00..0f, message 00..n-1 for n = 0..63), as the
// little-endian output bytes; reproduced with `openssl mac -macopt hexkey:00…0f SIPHASH`.
const VECTORS = `
310e0edd47db6f72 fd67dc93c539f874 5a4fa9d909806c0d 2d7efbd796666785 b7877127e09427cf 8da699cd64557618
cee3fe586e46c9cb 37d1018bf50002ab 6224939a79f5f593 b0e4a90bdf82009e f3b9dd94c5bb5d7a a7ad6b22462fb3f4
fbe50e86bc8f1e75 903d84c02756ea14 eef27a8e90ca23f7 e545be4961ca29a1 db9bc2577fcc2a3f 9447be2cf5e99a69
9cd38d96f0b3c14b bd6179a71dc96dbb 98eea21af25cd6be c7673b2eb0cbf2d0 883ea3e395675393 c8ce5ccd8c030ca8
94af49f6c650adb8 eab8858ade92e1bc f315bb5bb835d817 adcf6b0763612e2f a5c91da7acaa4dde 716595876650a2a6
28ef495c53a387ad 42c341d8fa92d832 ce7cf2722f512771 e37859f94623f3a7 381205bb1ab0e012 ae97a10fd434e015
b4a31508beff4d31 81396229f0907902 4d0cf49ee5d4dcca 5c73336a76d8bf9a d0a704536ba93e0e 925958fcd6420cad
a915c29bc8067318 952b79f3bc0aa6d4 f21df2e41d4535f9 87577519048f53a9 10a56cf5dfcd9adb eb75095ccd986cd0
51a9cb9ecba312e6 96afadfc2ce666c7 72fe52975a4364ee 5a1645b276d592a1 b274cb8ebf87870a 6f9bb4203de7b381
eaecb2a30b22a87f 9924a43cc1315724 bd838d3aafbf8db7 0b1a2a3265d51aea 135079a3231ce660 932b2846e4d70666
e1915f5cb1eca46c f325965ca16d629f 575ff28e60381be5 724506eb4c328a95`
  .trim()
  .split(/\s+/);

const referenceKey = Uint8Array.from({ length: 16 }, (_, i) => i);

function leHex(x: bigint): string {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(x);
  return b.toString('hex');
}

describe('sipHash24', () => {
  it.each(VECTORS.map((hex, n) => [n, hex] as const))('reference vector, %i-byte message', (n, hex) => {
    const message = Uint8Array.from({ length: n }, (_, i) => i);
    expect(leHex(sipHash24(referenceKey, message))).toBe(hex);
  });

  it('visitorHash is the decimal SipHash of site \\0 ip \\0 ua', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }), fc.string(), fc.string(), fc.string({ unit: 'grapheme', maxLength: 2000 }), (key, site, ip, ua) => {
        const salt: Salt = { day: 0, bytes: Buffer.from(key) };
        const expected = sipHash24(key, Buffer.from(`${site}\0${ip}\0${ua}`, 'utf8')).toString();
        expect(visitorHash(salt, site, ip, ua)).toBe(expected);
      }),
      { numRuns: 1000 },
    );
  });

  it('fits the schema: 1 to 20 decimal digits', () => {
    const salt: Salt = { day: 0, bytes: Buffer.alloc(16, 7) };
    for (let i = 0; i < 200; i++) expect(visitorHash(salt, 'example.com', `10.0.0.${i}`, 'UA')).toMatch(/^\d{1,20}$/);
  });
});

const DAY = 86_400_000;
const MIN = 60_000;
const D0 = Date.UTC(2024, 2, 10); // a midnight UTC
const UA = 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36';

describe('visitor ids over days', () => {
  let dir: string;
  let t: number;
  const now = (): number => t;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'farol-salts-'));
    t = D0 + 12 * 60 * MIN;
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function setup(subdir = 'salts'): Promise<{ salts: SaltSource; resolve: (ip?: string) => string }> {
    const salts = await openSaltStore({ dir: join(dir, subdir), now });
    const resolver = createVisitorIdResolver({ salts, now });
    return { salts, resolve: (ip = '203.0.113.9') => resolver.resolve('example.com', ip, UA) };
  }

  it('gives one visitor one id all day, and different visitors different ids', async () => {
    const { resolve } = await setup();
    const morning = resolve();
    t += 5 * 60 * MIN;
    expect(resolve()).toBe(morning);
    expect(resolve('203.0.113.10')).not.toBe(morning);
  });

  it('gives a different id on another day', async () => {
    const { resolve } = await setup();
    const today = resolve();
    t += DAY;
    expect(resolve()).not.toBe(today);
  });

  it('keeps one id for a visit spanning midnight, then switches after the visit ends', async () => {
    const { salts, resolve } = await setup();
    t = D0 + DAY - 10 * MIN; // 23:50
    const before = resolve();
    t = D0 + DAY + 10 * MIN; // 00:10 next day
    expect(resolve()).toBe(before);
    const current = visitorHash(salts.current(), 'example.com', '203.0.113.9', UA);
    expect(visitorHash(salts.previous()!, 'example.com', '203.0.113.9', UA)).toBe(before);
    expect(current).not.toBe(before);
    t += 25 * MIN; // 00:35, still active
    expect(resolve()).toBe(before);
    t += 31 * MIN; // idle past the session timeout
    expect(resolve()).toBe(current);
  });

  it('tells the salt day of each id: the previous day for a visit carried over midnight', async () => {
    const salts = await openSaltStore({ dir: join(dir, 'salts'), now });
    const resolver = createVisitorIdResolver({ salts, now });
    const visit = (): { id: string; saltDay: number } => resolver.resolveVisitor('example.com', '203.0.113.9', UA);
    const d0 = D0 / DAY;
    t = D0 + DAY - 10 * MIN; // 23:50
    const before = visit();
    expect(before.saltDay).toBe(d0);
    t = D0 + DAY + 10 * MIN; // 00:10, carried
    expect(visit()).toEqual(before);
    t += 25 * MIN; // still carried
    expect(visit()).toEqual(before);
    t += 31 * MIN; // a new visit under today's salt
    const after = visit();
    expect(after).toEqual({ id: visitorHash(salts.current(), 'example.com', '203.0.113.9', UA), saltDay: d0 + 1 });
    expect(resolver.resolve('example.com', '203.0.113.9', UA)).toBe(after.id);
  });

  it('does not carry a visitor whose last event was more than 30 minutes before midnight', async () => {
    const { salts, resolve } = await setup();
    t = D0 + DAY - 40 * MIN; // 23:20
    const before = resolve();
    t = D0 + DAY + 5 * MIN; // 00:05
    const after = resolve();
    expect(after).not.toBe(before);
    expect(after).toBe(visitorHash(salts.current(), 'example.com', '203.0.113.9', UA));
  });

  it('deletes a salt after 48 hours and stops mapping to its ids', async () => {
    const { resolve } = await setup();
    t = D0 + DAY - 10 * MIN;
    const old = resolve();
    t = D0 + DAY + 10 * MIN;
    expect(resolve()).toBe(old);
    expect(await readdir(join(dir, 'salts'))).toEqual(['salt-2024-03-10.bin', 'salt-2024-03-11.bin']);

    t = D0 + 2 * DAY + 10 * MIN; // 48 h after day D0 began
    const later = resolve();
    expect(later).not.toBe(old);
    expect(await readdir(join(dir, 'salts'))).toEqual(['salt-2024-03-11.bin', 'salt-2024-03-12.bin']);
  });

  it('uses random salts: two stores on two directories hash the same visitor differently', async () => {
    const a = await setup('a');
    const b = await setup('b');
    expect(a.resolve()).not.toBe(b.resolve());
  });

  it('keeps its memory bounded', async () => {
    const salts = await openSaltStore({ dir: join(dir, 'salts'), now });
    const resolver = createVisitorIdResolver({ salts, now, maxEntries: 50 });
    t = D0 + DAY - 5 * MIN;
    for (let i = 0; i < 500; i++) resolver.resolve('example.com', `198.51.100.${i % 256}`, `${UA} ${i}`);
    expect(resolver.size).toBeLessThanOrEqual(50);
    t = D0 + DAY + 5 * MIN;
    for (let i = 0; i < 500; i++) resolver.resolve('example.com', `198.51.100.${i % 256}`, `${UA} ${i}`);
    expect(resolver.size).toBeLessThanOrEqual(100);
    t = D0 + DAY + 2 * 60 * MIN; // everything idle: the next event sweeps it out
    resolver.resolve('example.com', '198.51.100.1', UA);
    expect(resolver.size).toBe(0);
  });

  it('sweeps remembered visitors that never came back after midnight', async () => {
    const salts = await openSaltStore({ dir: join(dir, 'salts'), now });
    const resolver = createVisitorIdResolver({ salts, now });
    t = D0 + DAY - 5 * MIN;
    for (let i = 0; i < 20; i++) resolver.resolve('example.com', `198.51.100.${i}`, UA);
    expect(resolver.size).toBe(20);
    t = D0 + DAY + 3 * 60 * MIN;
    resolver.resolve('example.com', '192.0.2.1', UA);
    expect(resolver.size).toBe(0);
  });
});
