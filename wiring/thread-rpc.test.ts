import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MessageChannel, type MessagePort } from 'node:worker_threads';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openChdbStore } from '../store/chdb-store.ts';
import { StoreError, type Store } from '../store/store.ts';
import { gatedWrites } from '../store/write-gate.ts';
import { rpcEndpoint, storeHandlers, storeOverRpc } from './thread-rpc.ts';

/**
 * The store of `farol start`'s processor thread: calls over a real message channel (structured
 * clone, as between threads) to an embedded engine on a temp dir, behind the backup's write gate.
 */

describe('store over a message channel', () => {
  const dir = mkdtempSync(join(tmpdir(), 'farol-thread-rpc-'));
  let engine: Store;
  let ports: MessagePort[] = [];
  const called: string[] = [];

  /** The owner's side on one port (counting the methods called), the other side's store on the other. */
  function pair(encoded: boolean): { remote: Store; owner: ReturnType<typeof rpcEndpoint>; caller: ReturnType<typeof rpcEndpoint> } {
    const { port1, port2 } = new MessageChannel();
    ports.push(port1, port2);
    const handlers = Object.fromEntries(
      Object.entries(storeHandlers(gatedWrites(engine).store)).map(([name, fn]) => [
        name,
        (...args: never[]) => {
          called.push(name);
          return (fn as (...a: never[]) => unknown)(...args);
        },
      ]),
    );
    const owner = rpcEndpoint(port1, handlers);
    const caller = rpcEndpoint(port2, {});
    return { remote: storeOverRpc(caller, 'chdb', 'farol_rpc', encoded), owner, caller };
  }

  beforeAll(async () => {
    engine = openChdbStore({ dataDir: dir, database: 'farol_rpc' });
    await engine.exec('CREATE DATABASE IF NOT EXISTS farol_rpc', undefined, { withoutDatabase: true });
    await engine.exec('CREATE TABLE t (id String, n UInt64, at DateTime64(3, \'UTC\')) ENGINE = MergeTree ORDER BY id SETTINGS non_replicated_deduplication_window = 100');
  });
  afterAll(async () => {
    for (const p of ports) p.close();
    ports = [];
    await engine.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('inserts encoded on the calling side (bytes transferred), or as rows; both land alike', async () => {
    const { remote } = pair(true);
    const rows = Array.from({ length: 500 }, (_, i) => ({ id: `e${i}\u00e9"\n`, n: i, at: '2026-12-07 00:00:00.000' }));
    called.length = 0;
    await remote.insert('t', rows, { dedupToken: 'rpc-1' });
    // Rows that do not share their columns travel as objects.
    await remote.insert('t', [{ id: 'odd', n: 1 }, { id: 'odd2' }]);
    expect(called).toEqual(['store.insertEncoded', 'store.insert']);
    // The same token again: ClickHouse drops the copy.
    await remote.insert('t', rows, { dedupToken: 'rpc-1' });
    const { remote: plain } = pair(false);
    called.length = 0;
    await plain.insert('t', [{ id: 'plain', n: 7, at: '2026-12-07 00:00:00.000' }]);
    expect(called).toEqual(['store.insert']);
    const [count] = await remote.query<{ n: string; ids: string }>('SELECT count() AS n, uniqExact(id) AS ids FROM t');
    expect(count).toEqual({ n: '503', ids: '503' });
    const [row] = await remote.query<{ id: string }>('SELECT id FROM t WHERE n = {n:UInt64} AND id LIKE {p:String}', { n: 3, p: 'e3%' });
    expect(row?.id).toBe('e3\u00e9"\n');
  });

  it('rethrows the store error as thrown, and refuses calls once the other side is gone', async () => {
    const { remote, caller } = pair(true);
    const err = await remote.query('SELEC 1').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StoreError);
    expect(err).toMatchObject({ retryable: false, code: 62 });
    await expect(caller.call('no.such.method')).rejects.toThrow('no method no.such.method');
    expect(await remote.ping()).toBe(true);
    caller.close('the processor thread ended');
    await expect(remote.query('SELECT 1')).rejects.toThrow('the processor thread ended');
    expect(await remote.ping()).toBe(false);
  });
});
