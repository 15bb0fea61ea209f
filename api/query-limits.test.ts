import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiError } from '../schemas/errors.ts';
import { openChdbStore } from '../store/chdb-store.ts';
import { StoreError, withQuery, type Store } from '../store/store.ts';
import { limitError, limitedStore, MAX_STATEMENT_BYTES, TokenSlots, type QueryLimits } from './query-limits.ts';

/** The limits of API reads, on embedded chDB (a temp dir) where an engine is involved. */

const limits: QueryLimits = { timeoutMs: 100, maxMemoryBytes: 32 * 1024 ** 2, perToken: 2, queuePerToken: 1 };
let dir = '';
let store: Store;
let calls = 0;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'farol-query-limits-'));
  const engine = openChdbStore({ dataDir: dir, database: 'limits_test' });
  await engine.exec('CREATE DATABASE IF NOT EXISTS limits_test', {}, { withoutDatabase: true });
  store = withQuery(engine, (sql, params, opts) => {
    calls++;
    return engine.query(sql, params, opts);
  });
});

afterAll(async () => {
  await store?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function failure(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => {
      throw new Error('expected a failure');
    },
    (err: unknown) => err,
  );
}

describe('limitedStore', () => {
  it('stops a statement past its time limit with 422 API_QUERY_TIMEOUT naming the limit', async () => {
    const err = await failure(limitedStore(store, limits).query('SELECT count() AS n FROM numbers(1000000000000) WHERE number != {v:UInt64}', { v: 1 }));
    expect(err).toBeInstanceOf(ApiError);
    expect(err).toMatchObject({ code: 'API_QUERY_TIMEOUT', status: 422 });
    expect((err as ApiError).message).toContain('0.1 s');
  });

  it('stops a statement past its memory limit with 422 API_QUERY_TOO_HEAVY', async () => {
    const err = await failure(limitedStore(store, { ...limits, timeoutMs: 30_000 }).query('SELECT length(groupArray(number)) AS n FROM numbers(100000000)'));
    expect(err).toMatchObject({ code: 'API_QUERY_TOO_HEAVY', status: 422 });
    expect((err as ApiError).message).toContain('32 MiB');
  });

  it('refuses a statement longer than ClickHouse parses before sending it; ClickHouse’s own refusal is the same 400', async () => {
    const long = `SELECT length('${'x'.repeat(300_000)}') AS n`;
    expect(Buffer.byteLength(long)).toBeGreaterThan(MAX_STATEMENT_BYTES);
    calls = 0;
    expect(await failure(limitedStore(store, limits).query(long))).toMatchObject({ code: 'API_QUERY_TOO_LARGE', status: 400 });
    expect(calls).toBe(0);
    const engineError = await failure(store.query(long));
    expect(engineError).toBeInstanceOf(StoreError);
    expect(limitError(engineError as StoreError, limits)).toMatchObject({ code: 'API_QUERY_TOO_LARGE', status: 400 });
  });

  it('passes other failures through as they are, and answers what is within the limits', async () => {
    const limited = limitedStore(store, limits);
    expect(await failure(limited.query('SELECT nope FROM nowhere'))).toBeInstanceOf(StoreError);
    expect(await limited.query<{ n: string }>('SELECT count() AS n FROM numbers(1000)')).toEqual([{ n: '1000' }]);
  });
});

describe('limitError', () => {
  const err = (code: number | undefined, message: string): StoreError => new StoreError(message, { code });
  it.each([
    [159, 'Timeout exceeded: elapsed 1.2 seconds, maximum: 1 seconds', 'API_QUERY_TIMEOUT'],
    [241, 'Query memory limit exceeded: would use 1.00 GiB', 'API_QUERY_TOO_HEAVY'],
    [241, 'Memory limit (for query) exceeded: would use 1.00 GiB', 'API_QUERY_TOO_HEAVY'],
    // The server's memory as a whole: other queries' doing, an outage to retry.
    [241, 'Memory limit (total) exceeded: would use 30.00 GiB', undefined],
    [158, 'Limit for rows (controlled by max_rows_to_read setting) exceeded', 'API_QUERY_TOO_HEAVY'],
    [62, 'Max query size exceeded (can be increased with the `max_query_size` setting)', 'API_QUERY_TOO_LARGE'],
    [62, 'Syntax error: failed at position 8', undefined],
    [167, 'AST is too deep. Maximum: 1000', 'API_QUERY_TOO_LARGE'],
    [168, 'AST is too big. Maximum: 50000', 'API_QUERY_TOO_LARGE'],
    [60, 'Table farol.nope does not exist', undefined],
    [undefined, 'ClickHouse request failed: connect ECONNREFUSED', undefined],
  ])('code %s, %s → %s', (code, message, expected) => {
    expect(limitError(err(code, message), limits)?.code).toBe(expected);
  });
});

describe('TokenSlots', () => {
  /** A task that ends when its gate opens (with `fail`, by throwing). */
  function gated(): { task: () => Promise<string>; open(fail?: boolean): void } {
    let open: (fail?: boolean) => void = () => undefined;
    const done = new Promise<string>((resolve, reject) => {
      open = (fail) => (fail === true ? reject(new Error('failed')) : resolve('done'));
    });
    return { task: () => done, open: (fail) => open(fail) };
  }

  it('runs perToken requests of a token, queues `queuePerToken` more, refuses the next with 429; other tokens unaffected', async () => {
    const slots = new TokenSlots({ perToken: 2, queuePerToken: 1, timeoutMs: 60_000 });
    const [g1, g2, g3] = [gated(), gated(), gated()];
    let started = 0;
    const counted = (g: ReturnType<typeof gated>) => () => {
      started++;
      return g.task();
    };
    const a1 = slots.run('a', counted(g1));
    const a2 = slots.run('a', counted(g2));
    const a3 = slots.run('a', counted(g3));
    expect(await failure(slots.run('a', () => Promise.resolve('x')))).toMatchObject({ code: 'API_TOO_MANY_REQUESTS', status: 429 });
    expect(await slots.run('b', () => Promise.resolve('other token'))).toBe('other token');
    expect(started).toBe(2);
    // A request that fails gives its slot to the one waiting.
    g2.open(true);
    await expect(a2).rejects.toThrow('failed');
    await expect.poll(() => started).toBe(3);
    g1.open();
    g3.open();
    expect([await a1, await a3]).toEqual(['done', 'done']);
    expect(slots.inUse()).toBe(0);
  });

  it('refuses a request that waited its whole timeout for a slot, and forgets it', async () => {
    const slots = new TokenSlots({ perToken: 1, queuePerToken: 5, timeoutMs: 20 });
    const g = gated();
    const running = slots.run('a', g.task);
    expect(await failure(slots.run('a', () => Promise.resolve('late')))).toMatchObject({ code: 'API_TOO_MANY_REQUESTS' });
    expect(slots.inUse()).toBe(1);
    g.open();
    await running;
    expect(await slots.run('a', () => Promise.resolve('next'))).toBe('next');
    expect(slots.inUse()).toBe(0);
  });

  it('never runs more than perToken at once, whatever the interleaving (property)', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 4 }), fc.integer({ min: 0, max: 6 }), fc.array(fc.nat(5), { minLength: 1, maxLength: 30 }), async (perToken, queue, delays) => {
        const slots = new TokenSlots({ perToken, queuePerToken: queue, timeoutMs: 60_000 });
        let running = 0;
        let peak = 0;
        const outcomes = await Promise.allSettled(
          delays.map(async (d) => {
            for (let i = 0; i < d; i++) await Promise.resolve();
            return slots.run('t', async () => {
              running++;
              peak = Math.max(peak, running);
              for (let i = 0; i < 5 - d; i++) await Promise.resolve();
              running--;
            });
          }),
        );
        expect(peak).toBeLessThanOrEqual(perToken);
        expect(outcomes.filter((o) => o.status === 'fulfilled').length).toBeGreaterThanOrEqual(Math.min(delays.length, perToken + queue));
        expect(slots.inUse()).toBe(0);
      }),
    );
  });
});
