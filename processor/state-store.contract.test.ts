import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ContainerClient } from '@azure/storage-blob';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAzurite } from '../hub/testing/eventhubs/azurite.ts';
import { blobStatePrefix, openBlobStateStore } from './blob-state-store.ts';
import { openFileStateStore, type StateStore } from './state-store.ts';

/**
 * One contract, every StateStore: files in a directory (`farol processor` on the local hub), and
 * blobs under a prefix in Azure Blob Storage (Azurite) for processors sharing Event Hubs. What
 * only one of them promises (torn lines, fencing, concurrent first opens) is tested beside it.
 */

interface Harness {
  /** A new, empty place for a store: a directory, a blob prefix. */
  fresh(): Promise<string>;
  open(place: string): Promise<StateStore>;
  /** After snapshots of partitions 0 and 1: what the place holds, in the implementation's terms. */
  expectTwoSnapshotsStored(place: string): Promise<void>;
  teardown(): Promise<void>;
}

const harnesses: Record<string, () => Promise<Harness>> = {
  file: () => {
    const dirs: string[] = [];
    return Promise.resolve({
      async fresh() {
        const dir = await mkdtemp(join(tmpdir(), 'farol-state-'));
        dirs.push(dir);
        return dir;
      },
      open: (dir) => openFileStateStore(dir),
      async expectTwoSnapshotsStored(dir) {
        expect((await readdir(dir)).sort()).toEqual(['incarnation', 'p-0.snapshot', 'p-1.snapshot']);
      },
      async teardown() {
        await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
      },
    });
  },
  blob: async () => {
    const dir = await mkdtemp(join(tmpdir(), 'farol-blob-state-'));
    const azurite = await startAzurite({ dataDir: dir });
    const container = new ContainerClient(azurite.connectionString, 'farol-checkpoints');
    await container.createIfNotExists();
    let hubs = 0;
    return {
      // A fresh prefix is another hub's state.
      fresh: () => Promise.resolve(blobStatePrefix('127.0.0.1', `hub-${hubs++}`, '$Default')),
      open: (prefix) => openBlobStateStore({ container, prefix }),
      async expectTwoSnapshotsStored(prefix) {
        const names: string[] = [];
        for await (const b of container.listBlobsFlat({ prefix })) names.push(b.name.slice(prefix.length + 1));
        // One snapshot blob per partition: the replaced one is gone.
        expect(names.filter((n) => n.includes('snapshot-'))).toHaveLength(2);
        expect(names).toContain('incarnation');
      },
      async teardown() {
        await azurite.stop();
        await rm(dir, { recursive: true, force: true });
      },
    };
  },
};

describe.each(Object.keys(harnesses))('StateStore contract: %s', (name) => {
  let harness: Harness;
  const opened: StateStore[] = [];

  beforeAll(async () => {
    harness = await (harnesses[name] as () => Promise<Harness>)();
  });

  afterAll(async () => {
    await Promise.all(opened.map((s) => s.close()));
    await harness.teardown();
  });

  const open = async (place: string): Promise<StateStore> => {
    const store = await harness.open(place);
    opened.push(store);
    return store;
  };

  it('keeps snapshots per partition and replaces them whole', async () => {
    const place = await harness.fresh();
    const store = await open(place);
    // A writer acquires its partitions first (stores without owners need not).
    await store.acquire?.(0);
    await store.acquire?.(1);
    expect(await store.loadSnapshot(0)).toBeUndefined();
    await store.saveSnapshot(0, Buffer.from('first'));
    await store.saveSnapshot(1, Buffer.from('other'));
    await store.saveSnapshot(0, Buffer.from('second'));
    expect((await store.loadSnapshot(0))?.toString()).toBe('second');
    expect((await store.loadSnapshot(1))?.toString()).toBe('other');
    await harness.expectTwoSnapshotsStored(place);
  });

  it('logs intents, reads them in another instance and after a reopen, and truncates what a snapshot covers', async () => {
    const place = await harness.fresh();
    const store = await open(place);
    await store.acquire?.(2);
    const registrations: Array<[string, number, boolean]> = [
      ['gone.test', 1_700_000_000_000, true],
      ['odd "site"\n', 1, false],
    ];
    await store.appendIntent(2, 0, 99);
    await store.appendIntent(2, 100, 180);
    await store.appendIntent(2, 181, 200, registrations);
    const reader = await open(place);
    expect(await reader.readIntents(2)).toEqual([
      { from: 0, to: 99 },
      { from: 100, to: 180 },
      { from: 181, to: 200, registrations },
    ]);
    await store.truncateIntents(2, 180);
    // No registrations to log is logged as none.
    await store.appendIntent(2, 201, 250, []);
    const expected = [
      { from: 181, to: 200, registrations },
      { from: 201, to: 250 },
    ];
    expect(await (await open(place)).readIntents(2)).toEqual(expected);
    expect(await store.readIntents(3)).toEqual([]);
    opened.splice(opened.indexOf(store), 1);
    await store.close();
    expect(await (await open(place)).readIntents(2)).toEqual(expected);
  });

  it('keeps its incarnation id across reopens, and a new place gets a new one', async () => {
    const place = await harness.fresh();
    const store = await open(place);
    expect(store.incarnation).toMatch(/^[0-9a-f]{16}$/);
    expect((await open(place)).incarnation).toBe(store.incarnation);
    expect((await open(await harness.fresh())).incarnation).not.toBe(store.incarnation);
  });
});
