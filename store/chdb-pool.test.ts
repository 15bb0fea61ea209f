import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultConnections, openChdbStore } from './chdb-store.ts';
import type { Store } from './store.ts';

describe('defaultConnections', () => {
  it('leaves two of libuv’s threads free, as libuv reads UV_THREADPOOL_SIZE', () => {
    expect(defaultConnections(undefined)).toBe(2); // libuv's default: 4 threads
    expect(defaultConnections('4')).toBe(2);
    expect(defaultConnections('5')).toBe(3);
    expect(defaultConnections('6')).toBe(4);
    expect(defaultConnections('16')).toBe(4);
    expect(defaultConnections('1')).toBe(1);
    expect(defaultConnections('3')).toBe(1);
    // libuv: not a number or 0 → one thread; more than 1024 → 1024.
    expect(defaultConnections('abc')).toBe(1);
    expect(defaultConnections('0')).toBe(1);
    expect(defaultConnections('-7')).toBe(1);
    expect(defaultConnections('1e9')).toBe(1);
    expect(defaultConnections('99999')).toBe(4);
  });
});

describe('the embedded store beside file operations', () => {
  let dir: string;
  let store: Store;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'farol-chdb-pool-'));
    store = openChdbStore({ dataDir: dir, database: 'default' });
  });
  afterAll(async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('never takes every libuv thread: a file write ends while long statements are still running', async () => {
    // This process runs with libuv's default pool (vitest sets no UV_THREADPOOL_SIZE).
    expect(process.env['UV_THREADPOOL_SIZE']).toBeUndefined();
    const ended: string[] = [];
    // More statements than the pool has threads, each holding its connection ~1 s.
    const statements = Array.from({ length: 6 }, (_, i) =>
      store.query('SELECT sleep(1) AS s').then(() => {
        ended.push(`statement ${i}`);
      }),
    );
    // Give the statements time to take their threads.
    await new Promise((r) => setTimeout(r, 200));
    await writeFile(join(dir, 'probe'), 'x');
    ended.push('file');
    await Promise.all(statements);
    // With four connections the write waited for a statement to end and came after it.
    expect(ended[0]).toBe('file');
    expect(ended).toHaveLength(7);
  });

  it('serves a waiting query before waiting writes', async () => {
    const ended: string[] = [];
    const track = (name: string, p: Promise<unknown>): Promise<void> => p.then(() => void ended.push(name));
    // Two writes take both connections, two more wait; then a query comes.
    const writes = [0, 1, 2, 3].map((i) => track(`write ${i}`, store.exec('SELECT sleep(1)')));
    await new Promise((r) => setTimeout(r, 200));
    const read = track('query', store.query('SELECT 1 AS one'));
    await Promise.all([...writes, read]);
    // It ran when the first running write ended, before either waiting write (FIFO: after both).
    expect(ended.indexOf('query')).toBeLessThan(ended.indexOf('write 2'));
    expect(ended.indexOf('query')).toBeLessThan(ended.indexOf('write 3'));
  });
});
