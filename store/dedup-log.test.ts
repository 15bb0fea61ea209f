import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openChdbStore } from './chdb-store.ts';
import { forgetLostBlocks, lostBlocksOf } from './dedup-log.ts';
import type { Store } from './store.ts';

/**
 * A block the engine logged for deduplication but never committed (a kill between the two): the
 * kill is simulated by deleting the committed part of one insert while the engine is closed, which
 * leaves the disk as a kill before the rename would (a logged block, no part). The view's block of
 * the same insert stays, as when the view committed first.
 */

const DB = 'dedup_test';
let dir = '';
let store: Store | undefined;

afterAll(async () => {
  await store?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function values(s: Store, table: string): Promise<number[]> {
  return (await s.query<{ a: number }>(`SELECT a FROM ${DB}.${table} ORDER BY a`)).map((r) => Number(r.a));
}

describe('deduplication log repair (embedded engine)', () => {
  it('finds a logged block whose part is gone, forgets it, and the replay lands once (the view keeps one copy)', async () => {
    dir = await mkdtemp(join(tmpdir(), 'farol-dedup-'));
    store = openChdbStore({ dataDir: dir, database: 'default' });
    await store.exec(`CREATE DATABASE ${DB}`);
    for (const t of ['t', 'u']) {
      await store.exec(`CREATE TABLE ${DB}.${t} (a UInt32) ENGINE = MergeTree ORDER BY a SETTINGS non_replicated_deduplication_window = 100`);
      await store.exec(`CREATE TABLE ${DB}.${t}_view_rows (a UInt32) ENGINE = MergeTree ORDER BY a SETTINGS non_replicated_deduplication_window = 100`);
      await store.exec(`CREATE MATERIALIZED VIEW ${DB}.${t}_mv TO ${DB}.${t}_view_rows AS SELECT a FROM ${DB}.${t}`);
      await store.insert(`${DB}.${t}`, [{ a: 1 }, { a: 2 }], { dedupToken: 'range-1' });
      await store.insert(`${DB}.${t}`, [{ a: 3 }], { dedupToken: 'range-2' });
    }
    expect(await lostBlocksOf(store, DB)).toEqual([]);
    const paths = new Map((await store.query<{ name: string; dir: string }>(`SELECT name, data_paths[1] AS dir FROM system.tables WHERE database = '${DB}'`)).map((r) => [r.name, r.dir]));
    await store.close();
    store = undefined;

    // Both tables lose the part of their second insert; their views keep theirs.
    for (const t of ['t', 'u']) {
      const tableDir = paths.get(t) as string;
      const log = await readFile(join(tableDir, 'deduplication_logs', 'deduplication_log_1.txt'), 'utf8');
      const part = log.trim().split('\n')[1]?.split('\t')[1] as string;
      expect((await readdir(tableDir)).includes(part)).toBe(true);
      await rm(join(tableDir, part), { recursive: true });
    }

    store = openChdbStore({ dataDir: dir, database: 'default' });
    const lost = await lostBlocksOf(store, DB);
    expect(lost.map((b) => b.table).sort()).toEqual(['t', 'u']);
    // Only `t` is repaired here (forgetLostBlocks works on a database: `u` moves aside first).
    await store.exec(`CREATE DATABASE ${DB}_control`);
    await store.exec(`RENAME TABLE ${DB}.u TO ${DB}_control.u`);
    expect((await forgetLostBlocks(store, DB)).map((b) => b.table)).toEqual(['t']);
    expect(await lostBlocksOf(store, DB)).toEqual([]);

    // The replay of range 2: lands in the repaired table, once in its view; the unrepaired one drops it.
    await store.insert(`${DB}.t`, [{ a: 3 }], { dedupToken: 'range-2' });
    await store.insert(`${DB}_control.u`, [{ a: 3 }], { dedupToken: 'range-2' });
    expect(await values(store, 't')).toEqual([1, 2, 3]);
    expect(await values(store, 't_view_rows')).toEqual([1, 2, 3]);
    expect((await store.query<{ a: number }>(`SELECT a FROM ${DB}_control.u ORDER BY a`)).map((r) => Number(r.a))).toEqual([1, 2]);
    // A second replay of either range is still a duplicate.
    await store.insert(`${DB}.t`, [{ a: 1 }, { a: 2 }], { dedupToken: 'range-1' });
    await store.insert(`${DB}.t`, [{ a: 3 }], { dedupToken: 'range-2' });
    expect(await values(store, 't')).toEqual([1, 2, 3]);
    expect(await values(store, 't_view_rows')).toEqual([1, 2, 3]);
  }, 60_000);
});
