import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DAY_MS, dayOf, openSaltStore, SALT_BYTES } from './salts.ts';

const D0 = Date.UTC(2024, 2, 10); // 2024-03-10T00:00Z
const HOUR = 3_600_000;

describe('SaltStore', () => {
  let dir: string;
  let t: number;
  const now = (): number => t;

  beforeEach(async () => {
    dir = join(await mkdtemp(join(tmpdir(), 'farol-salts-')), 'salts');
    t = D0 + 9 * HOUR;
  });
  afterEach(async () => {
    await rm(join(dir, '..'), { recursive: true, force: true });
  });

  it('creates today’s salt lazily: 16 random bytes, mode 0600, named by the UTC day', async () => {
    const store = await openSaltStore({ dir, now });
    expect(await readdir(dir)).toEqual([]);
    const salt = store.current();
    expect(salt.day).toBe(dayOf(t));
    expect(salt.bytes.length).toBe(SALT_BYTES);
    expect(await readdir(dir)).toEqual(['salt-2024-03-10.bin']);
    const file = join(dir, 'salt-2024-03-10.bin');
    expect(await readFile(file)).toEqual(salt.bytes);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect((await stat(dir)).mode & 0o777).toBe(0o700);
  });

  it('returns the same salt all day and after a restart', async () => {
    const first = (await openSaltStore({ dir, now })).current();
    t += 14 * HOUR;
    const again = await openSaltStore({ dir, now });
    expect(again.current().bytes).toEqual(first.bytes);
  });

  it('makes a new salt at 00:00 UTC and keeps the old one as previous for a day', async () => {
    const store = await openSaltStore({ dir, now });
    const d0 = Buffer.from(store.current().bytes);
    expect(store.previous()).toBeNull();
    t = D0 + DAY_MS; // midnight exactly
    const d1 = store.current();
    expect(d1.day).toBe(dayOf(D0) + 1);
    expect(d1.bytes).not.toEqual(d0);
    expect(store.previous()?.bytes).toEqual(d0);
    t = D0 + 2 * DAY_MS - 1; // last millisecond of the day after
    expect(store.previous()?.bytes).toEqual(d0);
  });

  it('has no previous salt when yesterday had no traffic', async () => {
    const store = await openSaltStore({ dir, now });
    store.current();
    t = D0 + 2 * DAY_MS + HOUR;
    store.current();
    expect(store.previous()).toBeNull();
    expect(await readdir(dir)).toEqual(['salt-2024-03-12.bin']);
  });

  it('deletes salts older than yesterday from disk and zeroes them in memory', async () => {
    const store = await openSaltStore({ dir, now });
    const d0 = store.current();
    t += DAY_MS;
    store.current();
    expect((await readdir(dir)).length).toBe(2);
    t += DAY_MS;
    const result = store.rotate();
    expect(result).toEqual({ deleted: 1, failed: 0 });
    expect(await readdir(dir)).toEqual(['salt-2024-03-11.bin']);
    expect(d0.bytes.every((b) => b === 0)).toBe(true);
  });

  it('loads yesterday’s salt from disk after a restart', async () => {
    const d0 = Buffer.from((await openSaltStore({ dir, now })).current().bytes);
    t += DAY_MS;
    const store = await openSaltStore({ dir, now });
    expect(store.previous()?.bytes).toEqual(d0);
  });

  it('cleans stale temporary files and junk on open, but keeps live ones', async () => {
    const store = await openSaltStore({ dir, now });
    store.current();
    await writeFile(join(dir, 'salt-2024-03-01.bin'), Buffer.alloc(16, 1));
    await writeFile(join(dir, 'salt-2024-03-01.bin.123.abcd.tmp'), Buffer.alloc(16, 1));
    await writeFile(join(dir, 'salt-2024-03-10.bin.123.abcd.tmp'), Buffer.alloc(16, 1));
    await writeFile(join(dir, 'salt-garbage'), 'x');
    await writeFile(join(dir, 'salt-2030-01-01.bin'), Buffer.alloc(16, 1));
    await writeFile(join(dir, 'README'), 'not ours');
    await openSaltStore({ dir, now });
    expect((await readdir(dir)).sort()).toEqual(['README', 'salt-2024-03-10.bin', 'salt-2024-03-10.bin.123.abcd.tmp']);
  });

  it('replaces a salt file of the wrong size', async () => {
    await openSaltStore({ dir, now });
    await writeFile(join(dir, 'salt-2024-03-10.bin'), Buffer.alloc(3));
    const store = await openSaltStore({ dir, now });
    expect(store.current().bytes.length).toBe(16);
    expect((await readFile(join(dir, 'salt-2024-03-10.bin'))).length).toBe(16);
  });

  it('shares one salt between two stores on the same directory', async () => {
    const a = await openSaltStore({ dir, now });
    const b = await openSaltStore({ dir, now });
    expect(b.current().bytes).toEqual(a.current().bytes);
  });
});
