import { appendFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
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

/** What only the file store promises; the rest of its contract is in state-store.contract.test.ts. */
describe('file state store', () => {
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
