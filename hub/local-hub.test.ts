import { appendFile, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { partitionForKey, type HubRecord, type PartitionBatch } from './hub.ts';
import { segmentFileName } from './local-format.ts';
import { openLocalHub, readPartition, sharedAppends, type LocalHub, type LocalHubOptions } from './local-hub.ts';
import { expectAckedSurvived, killCrashWriterAfter } from './testing/crash-run.ts';

const dirs: string[] = [];
const hubs: LocalHub[] = [];

afterEach(async () => {
  await Promise.all(hubs.splice(0).map((h) => h.close()));
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'farol-hub-'));
  dirs.push(dir);
  return dir;
}

/** Opens a hub that the test's cleanup closes. */
async function open(options: Partial<LocalHubOptions> & { dir: string }): Promise<LocalHub> {
  const hub = await openLocalHub({ partitions: 4, ...options });
  hubs.push(hub);
  return hub;
}

async function waitFor(cond: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const range = (from: number, to: number): number[] => Array.from({ length: to - from }, (_, i) => from + i);
const text = (records: HubRecord[]): string[] => records.map((r) => r.payload.toString());
const item = (key: string, payload: string): { key: string; payload: Buffer } => ({ key, payload: Buffer.from(payload) });

async function segmentBases(dir: string, partition: number): Promise<number[]> {
  const names = await readdir(join(dir, `p-${partition}`));
  return names.filter((n) => n.endsWith('.log')).map((n) => Number(n.slice(0, 20))).sort((a, b) => a - b);
}

/** Publishes `count` records to a one-partition hub, one group each, so small segments roll. */
async function publishEach(hub: LocalHub, from: number, count: number): Promise<void> {
  for (const i of range(from, from + count)) await hub.publish([item('k', `record-${String(i).padStart(3, '0')}`)]);
}

describe('local hub: producing and reading', () => {
  it('round-trips records to their key partition, in order, with dense offsets', async () => {
    const dir = await tempDir();
    const hub = await open({ dir });
    const items = range(0, 300).map((i) => item(`site-${i % 7}|visitor-${i}`, `event-${i}`));
    await hub.publish(items.slice(0, 120));
    await hub.publish(items.slice(120));
    let nonEmpty = 0;
    for (const p of range(0, 4)) {
      const records = await hub.read(p, 0, 1000);
      const expected = items.filter((i) => partitionForKey(i.key, 4) === p).map((i) => i.payload.toString());
      expect(text(records)).toEqual(expected);
      expect(records.map((r) => r.offset)).toEqual(range(0, expected.length));
      expect(records.every((r) => r.partition === p && r.appendedAt > 0)).toBe(true);
      expect(await hub.endOffset(p)).toBe(expected.length);
      if (records.length > 0) nonEmpty++;
    }
    expect(nonEmpty).toBe(4);
  });

  it('group-commits: 5,000 concurrent publishes resolve with far fewer fsyncs', async () => {
    const dir = await tempDir();
    const hub = await open({ dir, partitions: 2 });
    const pending: Promise<void>[] = [];
    // Waves across event-loop turns, so that later publishes arrive while earlier fsyncs run.
    for (const wave of range(0, 50)) {
      for (const i of range(wave * 100, wave * 100 + 100)) pending.push(hub.publish([item(`k${i}`, `${i}`)]));
      await new Promise((r) => setImmediate(r));
    }
    await Promise.all(pending);
    const stats = hub.stats();
    expect(stats.publishes).toBe(5000);
    expect(stats.records).toBe(5000);
    expect(stats.fsyncs).toBeLessThan(500);
    const read = (await hub.read(0, 0, 10_000)).length + (await hub.read(1, 0, 10_000)).length;
    expect(read).toBe(5000);
  });

  it('rolls segments at the configured size and reads across them', async () => {
    const dir = await tempDir();
    let hub = await open({ dir, partitions: 1, segmentBytes: 300 });
    await publishEach(hub, 0, 60);
    const bases = await segmentBases(dir, 0);
    expect(bases.length).toBeGreaterThan(3);
    expect(bases[0]).toBe(0);
    for (const base of bases) {
      expect((await stat(join(dir, 'p-0', segmentFileName(base)))).size).toBeLessThanOrEqual(300);
    }
    const all = await hub.read(0, 0, 1000);
    expect(all.map((r) => r.offset)).toEqual(range(0, 60));
    expect(text(all)[59]).toBe('record-059');
    expect((await hub.read(0, 25, 10)).map((r) => r.offset)).toEqual(range(25, 35));
    await hub.close();
    hub = await open({ dir, partitions: 1, segmentBytes: 300 });
    expect(await hub.endOffset(0)).toBe(60);
    await publishEach(hub, 60, 1);
    expect(text(await hub.read(0, 60, 10))).toEqual(['record-060']);
  });

  it('rejects publishes while appending fails and serves again once the cause clears', async () => {
    const dir = await tempDir();
    // Every group rolls a new segment; removing the directory makes that roll fail.
    const hub = await open({ dir, partitions: 1, segmentBytes: 1 });
    await hub.publish([item('k', 'one')]);
    await rm(join(dir, 'p-0'), { recursive: true });
    await expect(hub.publish([item('k', 'two')])).rejects.toThrow();
    expect(hub.isReady()).toBe(false);
    expect(hub.stats().writeErrors).toBe(1);
    await mkdir(join(dir, 'p-0'));
    await hub.publish([item('k', 'three')]);
    expect(hub.isReady()).toBe(true);
    expect(text(await hub.read(0, 1, 10))).toEqual(['three']);
  });

  it('refuses oversized payloads and publishes after close', async () => {
    const dir = await tempDir();
    const hub = await open({ dir });
    await expect(hub.publish([{ key: 'k', payload: Buffer.alloc(17 * 1024 * 1024) }])).rejects.toMatchObject({
      code: 'HUB_PAYLOAD_TOO_LARGE',
    });
    await hub.close();
    expect(hub.isReady()).toBe(false);
    await expect(hub.publish([item('k', 'late')])).rejects.toMatchObject({ code: 'HUB_CLOSED' });
  });
});

describe('local hub: recovery', () => {
  const header = (length: number): Buffer => {
    const h = Buffer.alloc(16);
    h.writeUInt32LE(length, 0);
    h.writeUInt32LE(0x12345678, 4);
    h.writeUInt32LE(Date.now() % 2 ** 32, 8);
    return h;
  };
  const lastRecordBytes = 16 + 'record-009'.length;

  it.each([
    { torn: 'a short header', damage: (f: string) => appendFile(f, Buffer.from([7, 0, 0, 0, 1])), kept: 10, cut: 0 },
    { torn: 'a short payload', damage: (f: string) => appendFile(f, Buffer.concat([header(100), Buffer.alloc(10, 1)])), kept: 10, cut: 0 },
    { torn: 'zero-filled bytes', damage: (f: string) => appendFile(f, Buffer.alloc(64)), kept: 10, cut: 0 },
    {
      torn: 'a crc mismatch in the last record',
      damage: async (f: string) => {
        const bytes = await readFile(f);
        bytes[bytes.length - 1] = (bytes[bytes.length - 1] ?? 0) ^ 0xff;
        await writeFile(f, bytes);
      },
      kept: 9,
      cut: lastRecordBytes,
    },
  ])('truncates $torn at the tail and appends after the last good record', async ({ damage, kept, cut }) => {
    const dir = await tempDir();
    let hub = await open({ dir, partitions: 1 });
    await hub.publish(range(0, 10).map((i) => item('k', `record-${String(i).padStart(3, '0')}`)));
    await hub.close();
    const file = join(dir, 'p-0', segmentFileName(0));
    const goodSize = (await stat(file)).size;
    await damage(file);

    hub = await open({ dir, partitions: 1 });
    expect((await stat(file)).size).toBe(goodSize - cut);
    expect(text(await hub.read(0, 0, 100))).toEqual(range(0, kept).map((i) => `record-${String(i).padStart(3, '0')}`));
    expect(await hub.endOffset(0)).toBe(kept);
    await hub.publish([item('k', 'after')]);
    const after = await hub.read(0, kept, 10);
    expect(after.map((r) => [r.offset, r.payload.toString()])).toEqual([[kept, 'after']]);
  });

  it('stops safely at corruption inside a sealed segment and goes on with the next one', async () => {
    const dir = await tempDir();
    const hub = await open({ dir, partitions: 1, segmentBytes: 200 });
    await publishEach(hub, 0, 30);
    const bases = await segmentBases(dir, 0);
    const second = bases[1] ?? 0;
    // Damage the second record's payload in the first (sealed) segment.
    const file = join(dir, 'p-0', segmentFileName(0));
    const bytes = await readFile(file);
    const at = 16 + 'record-000'.length + 16;
    bytes[at] = (bytes[at] ?? 0) ^ 0xff;
    await writeFile(file, bytes);

    const records = await readPartition(dir, 0, 0, 100);
    expect(records.map((r) => r.offset)).toEqual([0, ...range(second, 30)]);
    for (const r of records) expect(r.payload.toString()).toBe(`record-${String(r.offset).padStart(3, '0')}`);
  });

  it('keeps every acknowledged record through a SIGKILL mid-load', async () => {
    const dir = await tempDir();
    const acked = await killCrashWriterAfter(dir, 20_000, { partitions: 4, segmentBytes: 65536 });
    await expectAckedSurvived(await open({ dir, partitions: 4, segmentBytes: 65536 }), acked);
  });
});

describe('local hub: consumers', () => {
  /** Subscribes and collects every batch. */
  function collect(
    consumer: Awaited<ReturnType<LocalHub['openConsumer']>>,
    options = { maxBatchSize: 7, maxWaitMs: 20 },
  ): { batches: PartitionBatch[]; opened: [number, number][]; close: () => Promise<void> } {
    const batches: PartitionBatch[] = [];
    const opened: [number, number][] = [];
    const sub = consumer.subscribe(
      {
        processBatch: async (b) => {
          batches.push(b);
        },
        partitionOpened: async (p, start) => {
          opened.push([p, start]);
        },
      },
      options,
    );
    return { batches, opened, close: () => sub.close() };
  }
  const count = (batches: PartitionBatch[]): number => batches.reduce((n, b) => n + b.records.length, 0);
  const offsetsOf = (batches: PartitionBatch[], p: number): number[] =>
    batches.filter((b) => b.partition === p).flatMap((b) => b.records.map((r) => r.offset));

  it('delivers from the start in bounded batches, then resumes after the checkpoint', async () => {
    const dir = await tempDir();
    const hub = await open({ dir, partitions: 2 });
    const items = range(0, 60).map((i) => item(`site|visitor-${i}`, `e${i}`));
    await hub.publish(items);
    const sizes = [await hub.endOffset(0), await hub.endOffset(1)];
    expect(sizes[0]).toBeGreaterThan(10);

    const consumer = await hub.openConsumer('processor');
    const first = collect(consumer);
    await waitFor(() => count(first.batches) === 60, 'all records');
    expect(first.opened.sort()).toEqual([
      [0, 0],
      [1, 0],
    ]);
    expect(first.batches.every((b) => b.records.length >= 1 && b.records.length <= 7)).toBe(true);
    expect(offsetsOf(first.batches, 0)).toEqual(range(0, sizes[0] ?? 0));
    expect(offsetsOf(first.batches, 1)).toEqual(range(0, sizes[1] ?? 0));

    await consumer.checkpoint(0, 9);
    expect(await consumer.getCheckpoint(0)).toBe(9);
    await first.close();
    await consumer.close();
    const onDisk = JSON.parse(await readFile(join(dir, 'checkpoints', 'processor.json'), 'utf8')) as { offsets: number[] };
    expect(onDisk.offsets).toEqual([9, -1]);

    const again = await hub.openConsumer('processor');
    expect(await again.getCheckpoint(0)).toBe(9);
    expect(await again.getCheckpoint(1)).toBe(-1);
    const second = collect(again);
    const expected = (sizes[0] ?? 0) - 10 + (sizes[1] ?? 0);
    await waitFor(() => count(second.batches) === expected, 'records after the checkpoint');
    expect(second.opened.sort()).toEqual([
      [0, 10],
      [1, 0],
    ]);
    expect(offsetsOf(second.batches, 0)[0]).toBe(10);

    // New appends wake the subscribed consumer.
    await hub.publish(range(60, 70).map((i) => item(`site|visitor-${i}`, `e${i}`)));
    await waitFor(() => count(second.batches) === expected + 10, 'records appended after subscribing');
    await second.close();
  });

  it('retries a batch whose processing threw, with the same records', async () => {
    const dir = await tempDir();
    const hub = await open({ dir, partitions: 1, retryBackoffMs: 5 });
    await hub.publish(range(0, 5).map((i) => item('k', `e${i}`)));
    const consumer = await hub.openConsumer('g');
    const calls: number[][] = [];
    let failed = false;
    const sub = consumer.subscribe(
      {
        processBatch: async (b) => {
          calls.push(b.records.map((r) => r.offset));
          if (!failed) {
            failed = true;
            throw new Error('boom');
          }
        },
      },
      { maxBatchSize: 3, maxWaitMs: 0 },
    );
    await waitFor(() => calls.length === 3, 'three deliveries');
    expect(calls).toEqual([
      [0, 1, 2],
      [0, 1, 2],
      [3, 4],
    ]);
    expect(hub.stats().batchErrors).toBe(1);
    await sub.close();
  });

  it('lets close wait for the in-flight batch', async () => {
    const dir = await tempDir();
    const hub = await open({ dir, partitions: 1 });
    await hub.publish([item('k', 'e0')]);
    const consumer = await hub.openConsumer('g');
    let release = (): void => {};
    let finished = false;
    let started = false;
    const sub = consumer.subscribe(
      {
        processBatch: async () => {
          started = true;
          await new Promise<void>((r) => (release = r));
          finished = true;
        },
      },
      { maxBatchSize: 10, maxWaitMs: 0 },
    );
    await waitFor(() => started, 'the batch to start');
    const closing = sub.close();
    release();
    await closing;
    expect(finished).toBe(true);
  });

  it('sees appends made by another hub instance on the same directory', async () => {
    const dir = await tempDir();
    const writer = await open({ dir, partitions: 2, segmentBytes: 100 });
    const reader = await open({ dir, partitions: 2, readOnly: true, pollMs: 20 });
    expect(reader.isReady()).toBe(false);
    await expect(reader.publish([item('k', 'x')])).rejects.toMatchObject({ code: 'HUB_READ_ONLY' });

    const consumer = await reader.openConsumer('elsewhere');
    const seen: HubRecord[] = [];
    const sub = consumer.subscribe(
      {
        processBatch: async (b) => {
          seen.push(...b.records);
        },
      },
      { maxBatchSize: 100, maxWaitMs: 0 },
    );
    // One record per group, so segments roll while the other instance reads.
    for (const i of range(0, 40)) await writer.publish([item(`visitor-${i}`, `e${i}`)]);
    await waitFor(() => seen.length === 40, 'records from the other instance');
    for (const p of [0, 1]) {
      expect(seen.filter((r) => r.partition === p).map((r) => r.offset)).toEqual(range(0, await writer.endOffset(p)));
      expect(await consumer.endOffset(p)).toBe(await writer.endOffset(p));
    }
    expect((await segmentBases(dir, 0)).length).toBeGreaterThan(1);
    await sub.close();
  });

  it('wakes a read-only hub through a shared append buffer (the threads of `farol start`), without polling', async () => {
    const dir = await tempDir();
    const shared = sharedAppends(2);
    const writer = await open({ dir, partitions: 2, segmentBytes: 100, shared });
    // A poll far longer than the wait below: only the shared buffer's wake-ups can deliver in time.
    const reader = await open({ dir, partitions: 2, readOnly: true, pollMs: 600_000, shared });
    const consumer = await reader.openConsumer('beside');
    const seen: HubRecord[] = [];
    const sub = consumer.subscribe({ processBatch: async (b) => void seen.push(...b.records) }, { maxBatchSize: 100, maxWaitMs: 0 });
    for (const i of range(0, 40)) {
      await writer.publish([item(`visitor-${i}`, `e${i}`)]);
      // The end offsets come from the buffer as soon as the writer appended.
      for (const p of [0, 1]) expect(await reader.endOffset(p)).toBe(await writer.endOffset(p));
    }
    await waitFor(() => seen.length === 40, 'records woken through the shared buffer');
    for (const p of [0, 1]) expect(seen.filter((r) => r.partition === p).map((r) => r.offset)).toEqual(range(0, await writer.endOffset(p)));
    await sub.close();
    await expect(open({ dir: await tempDir(), partitions: 4, readOnly: true, shared })).rejects.toMatchObject({ code: 'HUB_BAD_OPTIONS' });
  });

  it('refuses a second consumer of the same group', async () => {
    const dir = await tempDir();
    const hub = await open({ dir });
    await hub.openConsumer('g');
    await expect(hub.openConsumer('g')).rejects.toMatchObject({ code: 'HUB_GROUP_IN_USE' });
    await expect(hub.openConsumer('../evil')).rejects.toMatchObject({ code: 'HUB_BAD_OPTIONS' });
  });
});

describe('local hub: retention', () => {
  const longAgo = (): number => Date.now() + 3_600_000;

  it('deletes old segments only once consumed, and never the active one', async () => {
    const dir = await tempDir();
    const hub = await open({ dir, partitions: 1, segmentBytes: 200 });
    await publishEach(hub, 0, 40);
    const before = await segmentBases(dir, 0);
    expect(before.length).toBeGreaterThan(4);
    const consumer = await hub.openConsumer('g');

    expect(await hub.enforceRetention({ maxAgeMs: 1000 }, longAgo())).toEqual({ segments: 0, bytes: 0 });
    expect(await segmentBases(dir, 0)).toEqual(before);

    await consumer.checkpoint(0, 17);
    const partly = await hub.enforceRetention({ maxAgeMs: 1000 }, longAgo());
    const remaining = await segmentBases(dir, 0);
    expect(partly.segments).toBe(before.length - remaining.length);
    expect(partly.segments).toBeGreaterThan(0);
    // The oldest remaining segment is the one holding offset 18, the first unconsumed record.
    expect(remaining[0]).toBeLessThanOrEqual(18);
    expect(remaining[1]).toBeGreaterThan(18);
    expect((await hub.read(0, 18, 1)).map((r) => r.offset)).toEqual([18]);

    await consumer.checkpoint(0, 39);
    await hub.enforceRetention({ maxAgeMs: 1000 }, longAgo());
    expect(await segmentBases(dir, 0)).toEqual([before.at(-1)]);
    await publishEach(hub, 40, 1);
    expect(await hub.endOffset(0)).toBe(41);
  });

  it('deletes unconsumed segments only beyond twice the size limit, with a warning', async () => {
    const dir = await tempDir();
    const warnings: string[] = [];
    const log = { info: () => {}, error: () => {}, warn: (_: unknown, msg: string) => void warnings.push(msg) };
    const hub = await open({ dir, partitions: 1, segmentBytes: 200, log });
    await publishEach(hub, 0, 40);
    await hub.openConsumer('slow');
    const sizes = await Promise.all((await segmentBases(dir, 0)).map(async (b) => (await stat(join(dir, 'p-0', segmentFileName(b)))).size));
    const total = sizes.reduce((a, b) => a + b, 0);

    expect(await hub.enforceRetention({ maxBytes: Math.ceil(total / 1.5) })).toEqual({ segments: 0, bytes: 0 });
    expect(warnings).toEqual([]);

    const limit = Math.floor(total / 4);
    const forced = await hub.enforceRetention({ maxBytes: limit });
    expect(forced.segments).toBeGreaterThan(0);
    expect(total - forced.bytes).toBeLessThanOrEqual(2 * limit);
    expect(warnings.length).toBe(forced.segments);
  });

  it('runs on its timer', async () => {
    const dir = await tempDir();
    const hub = await open({ dir, partitions: 1, segmentBytes: 200, retention: { maxAgeMs: 0, intervalMs: 20 } });
    await publishEach(hub, 0, 30);
    // A 20 ms timer, but on a loaded CI box a pass can take seconds: allow for it.
    await waitFor(async () => (await segmentBases(dir, 0)).length === 1, 'retention to delete sealed segments', 30_000);
    expect(hub.stats().segmentsDeleted).toBeGreaterThan(0);
  });
});

describe('local hub: quota', () => {
  const bytesOnDisk = async (dir: string): Promise<number> => {
    const sizes = await Promise.all((await segmentBases(dir, 0)).map(async (b) => (await stat(join(dir, 'p-0', segmentFileName(b)))).size));
    return sizes.reduce((a, b) => a + b, 0);
  };

  it('refuses a publish that would pass maxBytes, whole and before writing, and counts it', async () => {
    const dir = await tempDir();
    // Each record is 16 bytes of header + 10 of payload: 26 bytes.
    const hub = await open({ dir, partitions: 1, segmentBytes: 100, maxBytes: 26 * 10 });
    await publishEach(hub, 0, 8);
    const two = [item('k', 'record-008'), item('k', 'record-009')];
    const three = [...two, item('k', 'record-010')];
    await expect(hub.publish(three)).rejects.toMatchObject({ code: 'HUB_FULL' });
    // Nothing of the refused publish was written: the next offset is still 8.
    expect(await hub.endOffset(0)).toBe(8);
    await hub.publish(two);
    expect(hub.bytes()).toBe(26 * 10);
    expect(await bytesOnDisk(dir)).toBe(26 * 10);
    await expect(hub.publish([item('k', 'record-010')])).rejects.toMatchObject({ code: 'HUB_FULL' });
    expect(hub.stats().quotaRefusals).toBe(2);
    expect(text(await hub.read(0, 0, 100))).toEqual(range(0, 10).map((i) => `record-${String(i).padStart(3, '0')}`));
  });

  it('never lets retention delete unconsumed segments, however far past its size limit', async () => {
    const dir = await tempDir();
    const hub = await open({ dir, partitions: 1, segmentBytes: 26 * 3, maxBytes: 26 * 100 });
    await publishEach(hub, 0, 40);
    await hub.openConsumer('slow');
    expect(await hub.enforceRetention({ maxBytes: 26 * 2, reclaim: true })).toEqual({ segments: 0, bytes: 0 });
    expect(text(await hub.read(0, 0, 100))).toHaveLength(40);
  });

  it('counts the segments already on disk when reopened', async () => {
    const dir = await tempDir();
    const first = await open({ dir, partitions: 1, segmentBytes: 100 });
    await publishEach(first, 0, 10);
    await first.close();
    const hub = await open({ dir, partitions: 1, segmentBytes: 100, maxBytes: 26 * 10 });
    expect(hub.bytes()).toBe(26 * 10);
    await expect(hub.publish([item('k', 'record-010')])).rejects.toMatchObject({ code: 'HUB_FULL' });
  });

  it('takes publishes again once a consumer has checkpointed: consumed segments are reclaimed, unconsumed ones never', async () => {
    const dir = await tempDir();
    const hub = await open({ dir, partitions: 1, segmentBytes: 26 * 3, maxBytes: 26 * 12, retention: { maxAgeMs: 3_600_000 } });
    await publishEach(hub, 0, 12);
    await expect(hub.publish([item('k', 'record-012')])).rejects.toMatchObject({ code: 'HUB_FULL' });
    // No consumer has read anything: a reclaim pass deletes nothing, every record is still there.
    await waitFor(() => hub.stats().quotaRefusals === 1, 'the refusal');
    await hub.enforceRetention({ reclaim: true });
    expect(text(await hub.read(0, 0, 100))).toHaveLength(12);
    await expect(hub.publish([item('k', 'record-012')])).rejects.toMatchObject({ code: 'HUB_FULL' });

    const consumer = await hub.openConsumer('processor');
    await consumer.checkpoint(0, 8);
    // A refused publish itself starts a reclaim (at most one a second; no retention timer needed).
    await waitFor(async () => {
      try {
        await hub.publish([item('k', 'record-012')]);
        return true;
      } catch {
        await new Promise((r) => setTimeout(r, 200));
        return false;
      }
    }, 'the hub to take publishes again', 20_000);
    // Offsets 9.. (unconsumed) are all still readable; only consumed segments went.
    expect(text(await hub.read(0, 9, 100))).toEqual(range(9, 13).map((i) => `record-${String(i).padStart(3, '0')}`));
    expect(hub.stats().segmentsDeleted).toBeGreaterThan(0);
    expect(hub.bytes()).toBeLessThanOrEqual(26 * 12);
  });
});

describe('local hub: directory', () => {
  it('refuses to open with a different partition count', async () => {
    const dir = await tempDir();
    await (await open({ dir, partitions: 4 })).close();
    await expect(openLocalHub({ dir, partitions: 8 })).rejects.toMatchObject({ code: 'HUB_PARTITION_MISMATCH' });
    await expect(openLocalHub({ dir, partitions: 8 })).rejects.toThrow(/has 4 partitions but was opened with 8/);
  });

  it('allows one writer: in this process, or a live other process', async () => {
    const dir = await tempDir();
    const hub = await open({ dir });
    await expect(openLocalHub({ dir, partitions: 4 })).rejects.toMatchObject({ code: 'HUB_LOCKED' });
    await hub.close();

    await writeFile(join(dir, 'writer.lock'), JSON.stringify({ pid: process.ppid }));
    await expect(openLocalHub({ dir, partitions: 4 })).rejects.toMatchObject({ code: 'HUB_LOCKED' });
    // A lock left by a process that is gone is stale.
    await writeFile(join(dir, 'writer.lock'), JSON.stringify({ pid: 2 ** 22 + 12345 }));
    await (await open({ dir })).close();
  });
});
