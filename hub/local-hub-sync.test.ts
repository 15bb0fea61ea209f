/**
 * FAROL_HUB_SYNC=interval:<ms> on the local hub: publishes resolve once written to the OS, a timer
 * fdatasyncs, failures of that timer are visible and retried, close makes everything durable, and
 * acknowledged records survive a SIGKILL of the writer.
 */
import { mkdtemp, open as openFile, readFile, rm, truncate, writeFile, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { HubRecord } from './hub.ts';
import { segmentFileName } from './local-format.ts';
import { openLocalHub, sharedAppends, type HubLog, type LocalHub, type LocalHubOptions } from './local-hub.ts';
import { RESERVE_STEP } from './local-reservations.ts';
import { expectAckedSurvived, killCrashWriterAfter } from './testing/crash-run.ts';

const dirs: string[] = [];
const hubs: LocalHub[] = [];

afterEach(async () => {
  await Promise.all(hubs.splice(0).map((h) => h.close().catch(() => {})));
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'farol-hub-sync-'));
  dirs.push(dir);
  return dir;
}

async function open(options: Partial<LocalHubOptions> & { dir: string }): Promise<LocalHub> {
  const hub = await openLocalHub({ partitions: 1, ...options });
  hubs.push(hub);
  return hub;
}

async function waitFor(cond: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const item = (key: string, payload: string): { key: string; payload: Buffer } => ({ key, payload: Buffer.from(payload) });

/** Publishes `count` records one at a time: each is its own group commit. */
async function publishEach(hub: LocalHub, count: number, prefix = 'e'): Promise<void> {
  for (let i = 0; i < count; i++) await hub.publish([item(`site|visitor-${i}`, `${prefix}${i}`)]);
}

/** A logger that keeps what it is given. */
function recordingLog(): HubLog & { lines: Array<{ level: string; msg: string }> } {
  const lines: Array<{ level: string; msg: string }> = [];
  return {
    lines,
    info: (_f, msg) => lines.push({ level: 'info', msg }),
    warn: (_f, msg) => lines.push({ level: 'warn', msg }),
    error: (_f, msg) => lines.push({ level: 'error', msg }),
  };
}

describe('local hub: FAROL_HUB_SYNC=interval', () => {
  it('acknowledges without an fdatasync per publish; sync() and close() make it durable (always: one per publish)', async () => {
    const always = await open({ dir: await tempDir(), partitions: 2 });
    await publishEach(always, 100);
    expect(always.stats().fsyncs).toBe(100);
    expect(always.unsyncedAgeMs()).toBe(0);

    // A timer that never fires within the test: only sync() and close() fdatasync.
    const hub = await open({ dir: await tempDir(), partitions: 2, syncIntervalMs: 60_000 });
    expect(hub.syncIntervalMs).toBe(60_000);
    await publishEach(hub, 100);
    expect(hub.stats()).toMatchObject({ publishes: 100, records: 100, writes: 100, fsyncs: 0 });
    // In the files at once (tools read them); consumers get them once durable (below).
    expect((await hub.read(0, 0, 1000)).length + (await hub.read(1, 0, 1000)).length).toBe(100);
    await waitFor(() => hub.unsyncedAgeMs() > 0, 'the unsynced age to grow');
    await hub.sync();
    expect(hub.stats().fsyncs).toBe(2);
    expect(hub.unsyncedAgeMs()).toBe(0);
    await hub.sync();
    expect(hub.stats().fsyncs).toBe(2);

    await publishEach(hub, 3);
    await hub.close();
    expect(hub.stats().fsyncs).toBeGreaterThanOrEqual(3);
    expect(hub.unsyncedAgeMs()).toBe(0);
  });

  it('fdatasyncs on its timer, far fewer times than it acknowledges', async () => {
    const hub = await open({ dir: await tempDir(), syncIntervalMs: 20 });
    await publishEach(hub, 1);
    await waitFor(() => hub.stats().fsyncs >= 1 && hub.unsyncedAgeMs() === 0, 'the timer to fdatasync');
    const before = hub.stats().fsyncs;
    await publishEach(hub, 400);
    const during = hub.stats().fsyncs - before;
    expect(hub.stats().writes).toBeGreaterThanOrEqual(401);
    expect(during).toBeLessThan(200);
    await waitFor(() => hub.stats().fsyncs > before && hub.unsyncedAgeMs() === 0, 'the timer to fdatasync the last writes');
  });

  it('hands consumers only durable records, woken by the fdatasync: nothing an OS crash could take back is processed', async () => {
    const dir = await tempDir();
    // Polling every 10 ms: a consumer not held back would find the records in the files at once.
    const hub = await open({ dir, syncIntervalMs: 60_000, pollMs: 10 });
    const shared = sharedAppends(1);
    await hub.close();
    const writer = await open({ dir, syncIntervalMs: 60_000, pollMs: 10, shared });
    // A read-only hub on the same buffer: the processor thread of `farol start`.
    const beside = await open({ dir, readOnly: true, pollMs: 10, shared });
    const got: Record<string, HubRecord[]> = { writer: [], beside: [] };
    const subs = await Promise.all(
      Object.entries({ writer, beside }).map(async ([name, h]) => {
        const consumer = await h.openConsumer(`g-${name}`);
        const sub = consumer.subscribe({ processBatch: async (b) => void got[name]?.push(...b.records) }, { maxBatchSize: 100, maxWaitMs: 0 });
        return { consumer, sub };
      }),
    );
    await publishEach(writer, 5);
    const polls = writer.stats().fsyncs;
    await new Promise((r) => setTimeout(r, 150));
    expect([got['writer']?.length, got['beside']?.length, polls]).toEqual([0, 0, 0]);
    await writer.sync();
    await waitFor(() => got['writer']?.length === 5 && got['beside']?.length === 5, 'both consumers to get the synced records');
    expect(got['beside']?.map((r) => r.payload.toString())).toEqual(['e0', 'e1', 'e2', 'e3', 'e4']);
    for (const { consumer, sub } of subs) {
      await sub.close();
      await consumer.close();
    }
  });

  it('a failing background fdatasync marks the hub not ready, is logged once, and is retried until it succeeds', async () => {
    const log = recordingLog();
    const hub = await open({ dir: await tempDir(), syncIntervalMs: 60_000, log });
    await publishEach(hub, 3);
    // Nothing unprivileged makes a real fdatasync fail (no fault-injecting device here): the
    // writer's segment handle is swapped for a closed one, so the real call fails with EBADF.
    const writer = (hub as unknown as { writers: Array<{ fh: FileHandle }> }).writers[0];
    if (writer === undefined) throw new Error('no writer');
    const real = writer.fh;
    const closed = await openFile(join(tmpdir(), '.'), 'r');
    await closed.close();
    writer.fh = closed;
    await hub.sync();
    await hub.sync();
    expect(hub.isReady()).toBe(false);
    expect(hub.stats()).toMatchObject({ syncErrors: 2, fsyncs: 0 });
    expect(hub.unsyncedAgeMs()).toBeGreaterThanOrEqual(0);
    expect(log.lines.filter((l) => l.level === 'error')).toHaveLength(1);

    writer.fh = real;
    await hub.sync();
    expect(hub.isReady()).toBe(true);
    expect(hub.stats()).toMatchObject({ syncErrors: 2, fsyncs: 1 });
    expect(hub.unsyncedAgeMs()).toBe(0);
    expect(log.lines.filter((l) => l.level === 'error')).toHaveLength(1);
    expect(log.lines.some((l) => l.msg.includes('succeeded again'))).toBe(true);
  });

  it('never reuses an offset a consumer checkpointed when an OS crash lost the records behind it', async () => {
    const dir = await tempDir();
    let hub = await open({ dir, syncIntervalMs: 60_000 });
    await publishEach(hub, 10);
    const consumer = await hub.openConsumer('g');
    await consumer.checkpoint(0, 9);
    await consumer.close();
    await hub.close();
    // What an OS crash before the fdatasync leaves: the checkpoint (fsynced) but not the records.
    await truncate(join(dir, 'p-0', segmentFileName(0)), 0);

    const log = recordingLog();
    hub = await open({ dir, syncIntervalMs: 60_000, log });
    expect(await hub.endOffset(0)).toBe(10);
    expect(log.lines.some((l) => l.level === 'error' && l.msg.includes('may have read are missing'))).toBe(true);
    await hub.publish([item('k', 'after')]);
    await hub.sync();
    const again = await hub.openConsumer('g');
    const got: HubRecord[] = [];
    const sub = again.subscribe({ processBatch: async (b) => void got.push(...b.records) }, { maxBatchSize: 10, maxWaitMs: 0 });
    await waitFor(() => got.length === 1, 'the consumer to get the new record');
    expect(got.map((r) => [r.offset, r.payload.toString()])).toEqual([[10, 'after']]);
    await sub.close();
    await again.close();
  });

  it('reserves offsets durably before handing them out, skips them after an OS crash only, and clears them on close', async () => {
    const dir = await tempDir();
    const file = join(dir, 'reserved.json');
    const boot = (await readFile('/proc/sys/kernel/random/boot_id', 'utf8')).trim();
    let hub = await open({ dir, syncIntervalMs: 60_000 });
    await publishEach(hub, 10);
    expect(JSON.parse(await readFile(file, 'utf8'))).toEqual({ version: 1, bootId: boot, reserved: [RESERVE_STEP + 1] });
    await hub.close();
    await expect(readFile(file, 'utf8')).rejects.toMatchObject({ code: 'ENOENT' });

    // What a crash of Farol alone leaves (same boot): the reservation, and every record (page cache).
    await writeFile(file, JSON.stringify({ version: 1, bootId: boot, reserved: [RESERVE_STEP + 1] }));
    hub = await open({ dir, syncIntervalMs: 60_000 });
    expect(await hub.endOffset(0)).toBe(10);
    await hub.close();

    // What an OS crash leaves (another boot): the reservation, and records lost past the last fdatasync.
    await writeFile(file, JSON.stringify({ version: 1, bootId: 'an-earlier-boot', reserved: [RESERVE_STEP + 1] }));
    await truncate(join(dir, 'p-0', segmentFileName(0)), 0);
    const log = recordingLog();
    hub = await open({ dir, syncIntervalMs: 60_000, log });
    expect(await hub.endOffset(0)).toBe(RESERVE_STEP + 1);
    expect(log.lines.some((l) => l.level === 'error' && l.msg.includes('may have read are missing'))).toBe(true);
    await hub.publish([item('k', 'after')]);
    expect((await hub.read(0, 0, 10)).map((r) => [r.offset, r.payload.toString()])).toEqual([[RESERVE_STEP + 1, 'after']]);
    await hub.close();

    // `always` mode reserves nothing, and forgets what interval mode left.
    await writeFile(file, JSON.stringify({ version: 1, bootId: boot, reserved: [2 * RESERVE_STEP] }));
    hub = await open({ dir });
    await expect(readFile(file, 'utf8')).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('keeps every acknowledged record through a SIGKILL of the writer, none of them fdatasynced by the timer', async () => {
    const dir = await tempDir();
    // Segments large enough that nothing rolls (a roll fdatasyncs): every record is in the page cache only.
    const opts = { partitions: 4, segmentBytes: 16 * 1024 * 1024 };
    const acked = await killCrashWriterAfter(dir, 10_000, { ...opts, syncIntervalMs: 60_000 });
    const hub = await open({ dir, ...opts, syncIntervalMs: 60_000 });
    // Same boot: nothing was lost, so no reserved offset is skipped.
    for (let p = 0; p < opts.partitions; p++) expect(await hub.endOffset(p)).toBe((await hub.read(p, 0, Number.POSITIVE_INFINITY)).length);
    await expectAckedSurvived(hub, acked);
  });

  it('rejects a bad interval', async () => {
    for (const syncIntervalMs of [0, -1, 1.5, 60_001, Number.NaN]) {
      await expect(openLocalHub({ dir: await tempDir(), partitions: 1, syncIntervalMs })).rejects.toMatchObject({ code: 'HUB_BAD_OPTIONS' });
    }
  });
});
