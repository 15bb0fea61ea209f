import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ClickHouseLogLevel, createClient, type ClickHouseClient } from '@clickhouse/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startClickHouseHttp, type ClickHouseHttp } from './clickhouse-http.ts';

describe('ClickHouse HTTP test endpoint', () => {
  let dir: string;
  let server: ClickHouseHttp;
  const clients: ClickHouseClient[] = [];

  function client(extra: Parameters<typeof createClient>[0] = {}): ClickHouseClient {
    const c = createClient({ url: server.url, log: { level: ClickHouseLogLevel.OFF }, ...extra });
    clients.push(c);
    return c;
  }

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'farol-ch-http-'));
    server = await startClickHouseHttp({ dataDir: dir });
    await client().command({
      query: `CREATE TABLE t (id UInt32, s String) ENGINE = MergeTree ORDER BY id
              SETTINGS non_replicated_deduplication_window = 100`,
    });
  });

  afterAll(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('answers /ping and GET / like a server', async () => {
    for (const path of ['/ping', '/']) {
      const res = await fetch(`${server.url}${path}`);
      expect(res.status).toBe(200);
      expect(await res.text()).toBe('Ok.\n');
    }
    expect(await client().ping()).toEqual({ success: true });
  });

  it('runs a GET query with the server headers', async () => {
    const res = await fetch(`${server.url}/?query=${encodeURIComponent('SELECT 1 + 1')}&query_id=q-1`);
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('2\n');
    expect(res.headers.get('x-clickhouse-query-id')).toBe('q-1');
    expect(res.headers.get('x-clickhouse-format')).toBe('TabSeparated');
    expect(JSON.parse(res.headers.get('x-clickhouse-summary') ?? '{}')).toMatchObject({ read_rows: expect.any(String) });
  });

  it('binds parameters verbatim and round-trips gzip both ways', async () => {
    const gz = client({ compression: { request: true, response: true } });
    const rows = [
      { id: 1, s: "it's" },
      { id: 2, s: 'tab\tand\nnewline \\ slash' },
      { id: 3, s: "' OR 1=1 --" },
    ];
    await gz.insert({ table: 't', values: rows, format: 'JSONEachRow' });
    const result = await gz.query({
      query: 'SELECT id, s FROM t WHERE s IN {ss:Array(String)} OR id = {id:UInt32} ORDER BY id',
      query_params: { ss: [rows[0]?.s, rows[1]?.s], id: 3 },
      format: 'JSONEachRow',
    });
    expect(await result.json()).toEqual(rows);
    const single = await gz.query({ query: 'SELECT {s:String} AS s', query_params: { s: rows[1]?.s }, format: 'JSONEachRow' });
    expect(await single.json()).toEqual([{ s: rows[1]?.s }]);
  });

  it('takes long parameters from a multipart body', async () => {
    const mp = client({ use_multipart_params: true });
    const long = 'x'.repeat(10_000);
    const result = await mp.query({ query: 'SELECT length({s:String}) AS n', query_params: { s: long }, format: 'JSONEachRow' });
    expect(await result.json()).toEqual([{ n: '10000' }]);
  });

  it('reports errors with the code, header and status of a server', async () => {
    const res = await fetch(server.url, { method: 'POST', body: 'SELECT * FROM no_such_table' });
    expect(res.status).toBe(404);
    expect(res.headers.get('x-clickhouse-exception-code')).toBe('60');
    expect(await res.text()).toMatch(/^Code: 60\. DB::Exception: .*no_such_table.*\(UNKNOWN_TABLE\) \(version [^)]+\)\n$/s);

    const syntax = await fetch(server.url, { method: 'POST', body: 'SELEC 1' });
    expect(syntax.headers.get('x-clickhouse-exception-code')).toBe('62');
    expect(syntax.status).toBe(400);

    await expect(client().query({ query: 'SELECT * FROM no_such_table' })).rejects.toMatchObject({
      code: '60',
      type: 'UNKNOWN_TABLE',
    });
    await expect(
      client().query({ query: 'SELECT 1', clickhouse_settings: { no_such_setting: 1 } }),
    ).rejects.toMatchObject({ code: '115' });
  });

  it('applies settings per request: a dedup token holds for its insert only', async () => {
    const c = client();
    const values = [{ id: 10, s: 'dedup' }];
    const settings = { insert_deduplication_token: 'batch-1' };
    await c.insert({ table: 't', values, format: 'JSONEachRow', clickhouse_settings: settings });
    await c.insert({ table: 't', values, format: 'JSONEachRow', clickhouse_settings: settings });
    await c.insert({ table: 't', values: [{ id: 11, s: 'other' }], format: 'JSONEachRow' });
    const result = await c.query({ query: 'SELECT count() AS n FROM t WHERE id >= 10', format: 'JSONEachRow' });
    expect(await result.json()).toEqual([{ n: '2' }]);
  });

  it('leaves nothing of a request on the connection the next one without a session uses', async () => {
    const setting = async (name: string, settings: Record<string, string> = {}): Promise<string> => {
      const q = new URLSearchParams({ query: `SELECT getSetting('${name}')`, ...settings });
      const res = await fetch(`${server.url}/?${q.toString()}`);
      expect(res.status).toBe(200);
      return (await res.text()).trim();
    };
    const initial = await setting('max_block_size');
    // A URL setting holds for its request only, and the engine's own defaults come back after it.
    expect(await setting('max_block_size', { max_block_size: '777' })).toBe('777');
    expect(await setting('max_block_size')).toBe(initial);
    expect(await setting('output_format_json_quote_64bit_integers', { output_format_json_quote_64bit_integers: '0' })).toBe('false');
    expect(await setting('output_format_json_quote_64bit_integers')).toBe('true');
    // A SET statement without a session lasts for its own request, as on a server.
    expect((await fetch(server.url, { method: 'POST', body: 'SET max_block_size = 555' })).status).toBe(200);
    expect(await setting('max_block_size')).toBe(initial);
    // A failed statement or insert does not spoil the connection.
    expect((await fetch(server.url, { method: 'POST', body: 'SELECT throwIf(1)' })).status).not.toBe(200);
    expect(await setting('max_block_size')).toBe(initial);
    const badInsert = await fetch(`${server.url}/?query=${encodeURIComponent('INSERT INTO t FORMAT JSONEachRow')}`, { method: 'POST', body: '{"id": "not a number"}\n' });
    expect(badInsert.status).not.toBe(200);
    await badInsert.arrayBuffer();
    expect(await setting('max_block_size')).toBe(initial);
    // Nor does a database chosen by one request stay for the next.
    await client().command({ query: 'CREATE DATABASE IF NOT EXISTS leak' });
    expect((await fetch(`${server.url}/?database=leak&query=${encodeURIComponent('SELECT currentDatabase()')}`).then((r) => r.text())).trim()).toBe('leak');
    expect((await fetch(`${server.url}/?query=${encodeURIComponent('SELECT currentDatabase()')}`).then((r) => r.text())).trim()).toBe('default');
  });

  it('selects the database per request', async () => {
    const c = client();
    await c.command({ query: 'CREATE DATABASE IF NOT EXISTS other' });
    const inOther = client({ database: 'other' });
    const result = await inOther.query({ query: 'SELECT currentDatabase() AS db', format: 'JSONEachRow' });
    expect(await result.json()).toEqual([{ db: 'other' }]);
    await expect(client({ database: 'missing' }).query({ query: 'SELECT 1' })).rejects.toMatchObject({ code: '81' });
  });

  it('keeps state within a session_id', async () => {
    const c = client({ session_id: 'test-session' });
    await c.command({ query: 'CREATE TEMPORARY TABLE tmp (x UInt8)' });
    await c.insert({ table: 'tmp', values: [{ x: 7 }], format: 'JSONEachRow' });
    const result = await c.query({ query: 'SELECT x FROM tmp', format: 'JSONEachRow' });
    expect(await result.json()).toEqual([{ x: 7 }]);
  });

  it('stops, refuses connections, and restarts on the same port with its data', async () => {
    const before = server.url;
    await server.stop();
    expect(server.running).toBe(false);
    await expect(fetch(`${before}/ping`)).rejects.toThrow();
    await server.start();
    expect(server.url).toBe(before);
    const result = await client().query({ query: 'SELECT count() AS n FROM t', format: 'JSONEachRow' });
    const [{ n: afterRestart } = { n: '' }] = await result.json<{ n: string }>();
    expect(Number(afterRestart)).toBeGreaterThan(0);

    await server.kill();
    await server.start();
    const again = await client().query({ query: 'SELECT count() AS n FROM t', format: 'JSONEachRow' });
    expect(await again.json()).toEqual([{ n: afterRestart }]);
  });
});
