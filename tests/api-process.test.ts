import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { startClickHouseHttp, type ClickHouseHttp } from '../store/testing/clickhouse-http.ts';
import { runFarol, startFarol, type FarolProcess } from './support/farol-process.ts';

/**
 * `farol api` as its own process: the reporting API and dashboard without a collector, on the
 * store `farol start` writes (a ClickHouse server here, since an embedded data dir is one
 * process's), bootstrapping an empty install, answering JSON errors for what it does not serve,
 * and draining on SIGTERM. On an embedded data dir held by `farol start` it refuses clearly. Two
 * of them on one ClickHouse server never leave an account without an owner, however their
 * writes interleave.
 */

const TOKEN = 'farol_api_process_test_token_0123456789';
const dirs: string[] = [];
const procs: FarolProcess[] = [];
/** One ClickHouse server for the file (each test has its own database on it), like a deployment's. */
let clickhouse: ClickHouseHttp;

async function tempDir(prefix: string): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), prefix));
  dirs.push(d);
  return d;
}

beforeAll(async () => {
  clickhouse = await startClickHouseHttp({ dataDir: await tempDir('farol-api-ch-') });
});

afterAll(async () => {
  for (const p of procs) p.child.kill('SIGKILL');
  await clickhouse?.stop();
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

// The tests share only the ClickHouse server (a database and data dirs each) and mostly wait on
// their children starting and draining: they run side by side, each with its context's expect.
describe.concurrent('farol api', () => {
  it('serves the API and dashboard beside a farol start on one ClickHouse server, and drains on SIGTERM', async ({ expect }) => {
    const shared = { FAROL_CLICKHOUSE_URL: clickhouse.url, FAROL_CLICKHOUSE_DATABASE: 'farol_api_proc', FAROL_BOOTSTRAP_TOKEN: TOKEN };
    const start = await startFarol('start', { ...shared, FAROL_DATA_DIR: await tempDir('farol-api-start-'), FAROL_TRUST_PROXY: '127.0.0.1/32' });
    procs.push(start);
    const api = await startFarol('api', { ...shared, FAROL_DATA_DIR: await tempDir('farol-api-alone-') });
    procs.push(api);
    // The bootstrap ran once: the second process found the account and printed no token.
    expect(api.output.join('\n')).not.toContain('shown once');

    const auth = { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' };
    const events = Array.from({ length: 5 }, (_, i) => ({ n: 'pageview', u: `http://localhost/p${i % 2}`, d: 'localhost', ip: `198.51.100.${i}`, ua: 'Mozilla/5.0 (X11; Linux x86_64; rv:130.0) Gecko/20100101 Firefox/130.0' }));
    const sent = await fetch(`${start.url}/api/batch`, { method: 'POST', body: JSON.stringify(events), headers: { 'content-type': 'application/json' } });
    expect([sent.status, await sent.text()]).toEqual([202, '{"accepted":5}']);

    const query = { site_id: 'localhost', metrics: ['pageviews'], date_range: 'day' };
    let pageviews = 0;
    for (let i = 0; i < 120 && pageviews < 5; i++) {
      const r = await fetch(`${api.url}/api/v2/query`, { method: 'POST', headers: auth, body: JSON.stringify(query) });
      expect(r.status).toBe(200);
      pageviews = ((await r.json()) as { results: Array<{ metrics: number[] }> }).results[0]?.metrics[0] ?? 0;
      if (pageviews < 5) await new Promise((res) => setTimeout(res, 500));
    }
    expect(pageviews).toBe(5);

    const noToken = await fetch(`${api.url}/api/v2/query`, { method: 'POST', body: JSON.stringify(query) });
    expect(noToken.status).toBe(401);
    expect(((await noToken.json()) as { error: { code: string } }).error.code).toBe('API_UNAUTHORIZED');
    const page = await fetch(`${api.url}/`);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('db-ip.com');
    expect((await fetch(`${api.url}/healthz`)).status).toBe(200);
    // HEAD answers every GET route: same status and headers, no body.
    const script = await fetch(`${api.url}/js/script.js`);
    // fetch inflates the gzipped body: compare with the length the server declared.
    const scriptBytes = Number(script.headers.get('content-length'));
    expect(scriptBytes).toBeGreaterThan(1000);
    await script.arrayBuffer();
    const head = await fetch(`${api.url}/js/script.js`, { method: 'HEAD' });
    expect([head.status, head.headers.get('content-type'), Number(head.headers.get('content-length')), (await head.arrayBuffer()).byteLength]).toEqual([
      200,
      script.headers.get('content-type'),
      scriptBytes,
      0,
    ]);
    expect((await fetch(`${api.url}/api/v1/sites`, { method: 'HEAD' })).status).toBe(401);
    const missing = await fetch(`${api.url}/nope`);
    expect([missing.status, ((await missing.json()) as { error: { code: string } }).error.code]).toEqual([404, 'API_NOT_FOUND']);
    const wrongMethod = await fetch(`${api.url}/api/v2/query`);
    expect([wrongMethod.status, ((await wrongMethod.json()) as { error: { code: string } }).error.code]).toEqual([405, 'API_METHOD_NOT_ALLOWED']);
    // farol start answers the same for its mounted API routes.
    const startWrong = await fetch(`${start.url}/api/v2/query`);
    expect([startWrong.status, ((await startWrong.json()) as { error: { code: string } }).error.code]).toEqual([405, 'API_METHOD_NOT_ALLOWED']);
    // No collector here.
    expect((await fetch(`${api.url}/api/event`, { method: 'POST', body: '{}' })).status).toBe(404);

    api.child.kill('SIGTERM');
    expect(await api.exited).toBe(0);
    start.child.kill('SIGTERM');
    expect(await start.exited).toBe(0);
  }, 240_000);

  it('refuses an embedded data dir that farol start holds, saying what to do', async ({ expect }) => {
    const dataDir = await tempDir('farol-api-locked-');
    const start = await startFarol('start', { FAROL_DATA_DIR: dataDir, FAROL_BOOTSTRAP_TOKEN: TOKEN });
    procs.push(start);
    const r = await runFarol(['api'], { FAROL_DATA_DIR: dataDir, FAROL_PORT: '0' });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('in use by another farol process');
    start.child.kill('SIGTERM');
    expect(await start.exited).toBe(0);
  }, 240_000);

  it('two farol api processes on one ClickHouse server: two owners demoting each other at once always leave one', async ({ expect }) => {
    const shared = { FAROL_CLICKHOUSE_URL: clickhouse.url, FAROL_CLICKHOUSE_DATABASE: 'farol_api_race', FAROL_BOOTSTRAP_TOKEN: TOKEN };
    const one = await startFarol('api', { ...shared, FAROL_DATA_DIR: await tempDir('farol-api-race-1-') });
    procs.push(one);
    const two = await startFarol('api', { ...shared, FAROL_DATA_DIR: await tempDir('farol-api-race-2-') });
    procs.push(two);
    const call = async (url: string, method: string, path: string, token: string, body?: unknown): Promise<{ status: number; json: unknown }> => {
      const res = await fetch(`${url}${path}`, { method, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
      return { status: res.status, json: await res.json() };
    };
    type MemberJson = { id: string; role: string; sites: string[] };
    const me = ((await call(one.url, 'GET', '/api/v1/members', TOKEN)).json as { members: MemberJson[] }).members.find((m) => m.role === 'owner');
    const other = (await call(one.url, 'POST', '/api/v1/members', TOKEN, { name: 'second owner', role: 'owner' })).json as { member: MemberJson };
    const otherToken = ((await call(two.url, 'POST', '/api/v1/tokens', TOKEN, { member_id: other.member.id })).json as { token: string }).token;
    const a = { id: me?.id ?? '', token: TOKEN };
    const b = { id: other.member.id, token: otherToken };
    const owners = async (): Promise<string[]> =>
      ((await call(one.url, 'GET', '/api/v1/members', TOKEN)).json as { members: MemberJson[] }).members.filter((m) => m.role === 'owner' && m.sites.length === 0).map((m) => m.id);

    for (let round = 0; round < 5; round++) {
      // Each process demotes the owner the other one acts for.
      const results = await Promise.all([
        call(one.url, 'PATCH', `/api/v1/members/${b.id}`, a.token, { role: 'admin' }),
        call(two.url, 'PATCH', `/api/v1/members/${a.id}`, b.token, { role: 'admin' }),
      ]);
      const left = await owners();
      expect(left.length, JSON.stringify(results)).toBeGreaterThanOrEqual(1);
      for (const r of results) expect([200, 403, 409], JSON.stringify(r.json)).toContain(r.status);
      // The one left promotes the other back for the next round.
      const survivor = left.includes(a.id) ? a : b;
      const demoted = survivor === a ? b : a;
      if (!left.includes(demoted.id)) expect((await call(one.url, 'PATCH', `/api/v1/members/${demoted.id}`, survivor.token, { role: 'owner' })).status).toBe(200);
    }
    for (const p of [one, two]) {
      p.child.kill('SIGTERM');
      expect(await p.exited).toBe(0);
    }
  }, 400_000);
});
