import { appendFile, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { openFileStateStore, StateStoreError, type StateStore } from './state-store.ts';

const dirs: string[] = [];
const stores: StateStore[] = [];

afterEach(async () => {
  await Promise.all(stores.splice(0).map((s) => s.close()));
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});

async function open(dir?: string): Promise<{ dir: string; store: StateStore }> {
  const d = dir ?? (await mkdtemp(join(tmpdir(), 'farol-state-')));
  if (dir === undefined) dirs.push(d);
  const store = await openFileStateStore(d);
  stores.push(store);
  return { dir: d, store };
}

describe('file state store', () => {
  it('keeps snapshots per partition and replaces them whole', async () => {
    const { dir, store } = await open();
    expect(await store.loadSnapshot(0)).toBeUndefined();
    await store.saveSnapshot(0, Buffer.from('first'));
    await store.saveSnapshot(1, Buffer.from('other'));
    await store.saveSnapshot(0, Buffer.from('second'));
    expect((await store.loadSnapshot(0))?.toString()).toBe('second');
    expect((await store.loadSnapshot(1))?.toString()).toBe('other');
    expect((await readdir(dir)).sort()).toEqual(['incarnation', 'p-0.snapshot', 'p-1.snapshot']);
  });

  it('keeps its incarnation id across reopens, and a new directory gets a new one', async () => {
    const { dir, store } = await open();
    expect(store.incarnation).toMatch(/^[0-9a-f]{16}$/);
    const { store: again } = await open(dir);
    expect(again.incarnation).toBe(store.incarnation);
    const { store: other } = await open();
    expect(other.incarnation).not.toBe(store.incarnation);
  });

  it('logs intents, reads them after a reopen, and truncates what a snapshot covers', async () => {
    const { dir, store } = await open();
    await store.appendIntent(2, 0, 99);
    await store.appendIntent(2, 100, 180);
    await store.appendIntent(2, 181, 200, [['gone.test', 1_700_000_000_000, true], ['odd "site"\n', 1, false]]);
    await store.close();
    const { store: again } = await open(dir);
    expect(await again.readIntents(2)).toEqual([
      { from: 0, to: 99 },
      { from: 100, to: 180 },
      { from: 181, to: 200, registrations: [['gone.test', 1_700_000_000_000, true], ['odd "site"\n', 1, false]] },
    ]);
    await again.truncateIntents(2, 180);
    await again.appendIntent(2, 201, 250, []);
    expect(await again.readIntents(2)).toEqual([
      { from: 181, to: 200, registrations: [['gone.test', 1_700_000_000_000, true], ['odd "site"\n', 1, false]] },
      { from: 201, to: 250 },
    ]);
    expect(await again.readIntents(3)).toEqual([]);
  });

  it('drops a torn last line so the next append starts clean', async () => {
    const { dir, store } = await open();
    await store.appendIntent(0, 0, 9);
    await appendFile(join(dir, 'p-0.intents'), '10 1');
    expect(await store.readIntents(0)).toEqual([{ from: 0, to: 9 }]);
    await store.appendIntent(0, 10, 19);
    expect(await readFile(join(dir, 'p-0.intents'), 'utf8')).toBe('0 9\n10 19\n');
  });

  it('refuses a corrupt log rather than guessing', async () => {
    const { dir, store } = await open();
    await writeFile(join(dir, 'p-0.intents'), '0 9\nxx\n10 19\n');
    await expect(store.readIntents(0)).rejects.toBeInstanceOf(StateStoreError);
    await writeFile(join(dir, 'p-1.intents'), '9 0\n');
    await expect(store.readIntents(1)).rejects.toThrow(/corrupt flush log/);
    await writeFile(join(dir, 'p-2.intents'), '0 9 [["a.test",-1,true]]\n');
    await expect(store.readIntents(2)).rejects.toThrow(/corrupt flush log/);
  });
});
