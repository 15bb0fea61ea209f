import { appendFile, mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { encodeSpoolFrame, openSpool, SpoolFullError, type Spool, type SpoolRecord } from './spool.ts';

const dirs: string[] = [];
const spools: Spool[] = [];

afterEach(async () => {
  await Promise.all(spools.splice(0).map((s) => s.close()));
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'farol-spool-'));
  dirs.push(dir);
  return dir;
}

async function open(dir: string, maxBytes = 1024 * 1024, segmentBytes?: number): Promise<Spool> {
  const spool = await openSpool({ dir, maxBytes, ...(segmentBytes === undefined ? {} : { segmentBytes }) });
  spools.push(spool);
  return spool;
}

function rec(i: number, size = 20): SpoolRecord {
  return { key: `site.test:${i % 7}`, payload: Buffer.from(`{"n":${i}}`.padEnd(size, ' ')) };
}

/** Reads and commits everything; returns the payloads in order. */
async function drain(spool: Spool, chunkBytes = 4096): Promise<string[]> {
  const out: string[] = [];
  for (let chunk = await spool.read(chunkBytes); chunk !== undefined; chunk = await spool.read(chunkBytes)) {
    out.push(...chunk.records.map((r) => r.payload.toString().trim()));
    await spool.commit(chunk);
  }
  return out;
}

const segmentFiles = async (dir: string): Promise<string[]> => (await readdir(dir)).filter((n) => n.endsWith('.spool')).sort();

describe('spool', () => {
  it('keeps the order of concurrent appends across segments, and deletes what was replayed', async () => {
    const dir = await tempDir();
    const spool = await open(dir, 1024 * 1024, 512);
    expect(spool.isEmpty()).toBe(true);
    // Concurrent appends are group-committed: one write, so one segment however small segments are.
    await Promise.all(Array.from({ length: 25 }, (_, i) => spool.append([rec(2 * i), rec(2 * i + 1)])));
    expect(await segmentFiles(dir)).toHaveLength(1);
    for (let i = 25; i < 50; i++) await spool.append([rec(2 * i), rec(2 * i + 1)]);
    expect(spool.isEmpty()).toBe(false);
    expect((await segmentFiles(dir)).length).toBeGreaterThan(3);
    const first = await spool.read(100);
    // Frames are 41 bytes: two fit in 100.
    expect(first?.records.map((r) => r.key)).toEqual(['site.test:0', 'site.test:1']);
    // Not committed: read again from the same place.
    expect((await spool.read(100))?.records).toEqual(first?.records);
    const all = await drain(spool, 300);
    expect(all).toEqual(Array.from({ length: 100 }, (_, i) => `{"n":${i}}`));
    expect(spool.isEmpty()).toBe(true);
    expect(await segmentFiles(dir)).toEqual([]);
    expect(spool.bytes).toBe(0);
    // A new append after a full replay starts a new segment.
    await spool.append([rec(100)]);
    expect(await drain(spool)).toEqual(['{"n":100}']);
  });

  it('refuses appends past its bound and takes them again once replayed segments are gone', async () => {
    const dir = await tempDir();
    const frame = encodeSpoolFrame(rec(0, 100)).length;
    const spool = await open(dir, frame * 10, frame * 2);
    for (let i = 0; i < 10; i += 2) await spool.append([rec(i, 100), rec(i + 1, 100)]);
    await expect(spool.append([rec(10, 100)])).rejects.toBeInstanceOf(SpoolFullError);
    expect(spool.bytes).toBe(frame * 10);
    const chunk = await spool.read(frame * 4);
    expect(chunk?.records).toHaveLength(2);
    if (chunk === undefined) throw new Error('no chunk');
    await spool.commit(chunk);
    expect(spool.bytes).toBe(frame * 8);
    await spool.append([rec(10, 100), rec(11, 100)]);
    expect(await drain(spool)).toEqual(Array.from({ length: 10 }, (_, i) => `{"n":${i + 2}}`));
  });

  it('survives a restart: unreplayed records stay, replayed ones do not come back, a torn tail is cut', async () => {
    const dir = await tempDir();
    const spool = await open(dir, 1024 * 1024, 256);
    await spool.append(Array.from({ length: 30 }, (_, i) => rec(i)));
    const chunk = await spool.read(200);
    if (chunk === undefined) throw new Error('no chunk');
    await spool.commit(chunk);
    const replayed = chunk.records.length;
    await spool.close();
    spools.splice(spools.indexOf(spool), 1);
    // A crash in the middle of a group write: half a frame at the end of the last segment.
    const files = await segmentFiles(dir);
    const last = join(dir, files.at(-1) ?? '');
    const sizeBefore = (await stat(last)).size;
    await appendFile(last, encodeSpoolFrame(rec(999)).subarray(0, 13));

    const again = await open(dir, 1024 * 1024, 256);
    expect((await stat(last)).size).toBe(sizeBefore);
    await again.append([rec(30)]);
    expect(await drain(again)).toEqual(Array.from({ length: 31 - replayed }, (_, i) => `{"n":${i + replayed}}`));
  });

  it('reads a record larger than the chunk size whole', async () => {
    const spool = await open(await tempDir());
    await spool.append([rec(1, 5000), rec(2, 10)]);
    const chunk = await spool.read(64);
    expect(chunk?.records.map((r) => r.payload.length)).toEqual([5000]);
  });

  it('round-trips any keys and payloads in order (property)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.array(fc.record({ key: fc.string({ maxLength: 40 }), payload: fc.uint8Array({ maxLength: 300 }) }), { minLength: 1, maxLength: 8 }), {
          maxLength: 12,
        }),
        fc.integer({ min: 64, max: 2048 }),
        async (groups, chunkBytes) => {
          const dir = await tempDir();
          const spool = await openSpool({ dir, maxBytes: 10 * 1024 * 1024, segmentBytes: 700 });
          try {
            const records = groups.map((g) => g.map((r) => ({ key: r.key, payload: Buffer.from(r.payload) })));
            await Promise.all(records.map((g) => spool.append(g)));
            const out: SpoolRecord[] = [];
            for (let c = await spool.read(chunkBytes); c !== undefined; c = await spool.read(chunkBytes)) {
              out.push(...c.records);
              await spool.commit(c);
            }
            expect(out).toEqual(records.flat());
            expect(spool.isEmpty()).toBe(true);
          } finally {
            await spool.close();
          }
        },
      ),
      { numRuns: 25 },
    );
  });
});
