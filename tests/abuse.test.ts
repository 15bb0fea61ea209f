import { mkdtemp, rm } from 'node:fs/promises';
import { statfs } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../schemas/config.ts';
import { startCollector } from '../ingest/main.ts';
import { openConfiguredLocalHub } from '../wiring/hub.ts';
import { defaultQuota } from '../hub/local-dir.ts';
import { payloadValue } from '../hub/event-codec.ts';
import type { LocalHub } from '../hub/local-hub.ts';
import { createLogger, silentLogger } from '../lib/log.ts';
import { Registry } from '../lib/metrics.ts';
import { openChdbStore } from '../store/chdb-store.ts';
import { migrate } from '../store/migrate.ts';
import type { Store } from '../store/store.ts';
import { ControlPlane } from '../control/control-plane.ts';
import { listenApi, type ApiServer } from '../api/server.ts';
import { startTestCollector, type TestCollector } from './support/collector-harness.ts';

/*
 * The abuse suite (issue #8, finding 5), every limit on a real port: per-client and per-site
 * ingest rates (429, then recovery), the hub's disk quota (503, and nothing that got a 202 lost),
 * the API's negative caches (random tokens and domains cost no store query each) and its
 * failed-authentication limit.
 */

const CHROME = 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36';

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const f of cleanups.splice(0).reverse()) await f();
});

interface Answer {
  status: number;
  retryAfter: string | null;
  code: string | undefined;
}

async function answer(res: Response): Promise<Answer> {
  const text = await res.text();
  let code: string | undefined;
  try {
    code = (JSON.parse(text) as { error?: { code?: string } }).error?.code;
  } catch {
    code = undefined;
  }
  return { status: res.status, retryAfter: res.headers.get('retry-after'), code };
}

/** One beacon from the client at `ip` (X-Forwarded-For from the trusted loopback proxy). */
async function beacon(url: string, ip: string, id: string, domain = 'example.com'): Promise<Answer> {
  const res = await fetch(`${url}/api/event`, {
    method: 'POST',
    body: JSON.stringify({ n: 'pageview', u: `https://${domain}/`, d: domain, id }),
    headers: { 'content-type': 'text/plain', 'user-agent': CHROME, 'x-forwarded-for': ip },
  });
  return answer(res);
}

async function pollUntil<T>(what: string, attempt: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await attempt();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A metric's value from Prometheus text, 0 when absent. */
function metric(text: string, name: string, labels = ''): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels === '' ? ' ' : `{${labels}} `}`));
  return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(' ') + 1));
}

async function collector(env: Record<string, string>): Promise<TestCollector> {
  const c = await startTestCollector({ FAROL_TRUST_PROXY: '127.0.0.1/32', FAROL_SITES: 'example.com,other.test', ...env });
  cleanups.push(() => c.stop());
  return c;
}

describe('ingest rate limits', () => {
  it('per client: a burst, then 429 + Retry-After for that client only, and nothing of it stored; then recovery', async () => {
    const c = await collector({ FAROL_RATE_CLIENT: '2,5' });
    for (let i = 0; i < 5; i++) expect((await beacon(c.url, '85.214.132.117', `a-${i}`)).status).toBe(202);
    const limited = await beacon(c.url, '85.214.132.117', 'a-refused');
    expect(limited).toMatchObject({ status: 429, code: 'ING_RATE_LIMITED' });
    expect(Number(limited.retryAfter)).toBeGreaterThanOrEqual(1);
    // A batch from the same client is refused whole.
    const batch = await fetch(`${c.url}/api/batch`, {
      method: 'POST',
      body: JSON.stringify([0, 1, 2].map((k) => ({ n: 'pageview', u: 'https://example.com/', d: 'example.com', id: `a-batch-${k}` }))),
      headers: { 'content-type': 'application/json', 'user-agent': CHROME, 'x-forwarded-for': '85.214.132.117' },
    });
    expect((await answer(batch)).status).toBe(429);
    // Another client, and the same client on another site, are other buckets.
    expect((await beacon(c.url, '85.214.132.118', 'b-0')).status).toBe(202);
    expect((await beacon(c.url, '85.214.132.117', 'a-other-site', 'other.test')).status).toBe(202);

    const ids = new Set((await c.events()).map((e) => e.id));
    expect(ids.has('a-refused')).toBe(false);
    expect([0, 1, 2].some((k) => ids.has(`a-batch-${k}`))).toBe(false);
    expect(ids.size).toBe(7);

    // The bucket refills at 2 events/s: the client gets through again.
    await pollUntil('the client to be let through again', async () => ((await beacon(c.url, '85.214.132.117', 'a-again')).status === 202 ? true : undefined));
    const text = c.metrics.render();
    expect(metric(text, 'farol_ingest_rate_limited_total', 'scope="client"')).toBeGreaterThanOrEqual(4);
    expect(metric(text, 'farol_ingest_rejected_total', 'code="ING_RATE_LIMITED"')).toBeGreaterThanOrEqual(2);
  });

  it('per site (off by default): many clients share the site budget, then recover', async () => {
    const c = await collector({ FAROL_RATE_CLIENT: 'off', FAROL_RATE_SITE: '2,4' });
    for (let i = 0; i < 4; i++) expect((await beacon(c.url, `85.214.10.${i}`, `s-${i}`)).status).toBe(202);
    const limited = await beacon(c.url, '85.214.10.200', 's-refused');
    expect(limited).toMatchObject({ status: 429, code: 'ING_RATE_LIMITED' });
    expect(Number(limited.retryAfter)).toBeGreaterThanOrEqual(1);
    // Another site has its own budget.
    expect((await beacon(c.url, '85.214.10.200', 'o-0', 'other.test')).status).toBe(202);
    await pollUntil('the site to take events again', async () => ((await beacon(c.url, '85.214.10.201', 's-again')).status === 202 ? true : undefined));
    expect(metric(c.metrics.render(), 'farol_ingest_rate_limited_total', 'scope="site"')).toBeGreaterThanOrEqual(1);
  });

  it('is on by default, generously: a visitor sending 200 beacons in a row is never refused', async () => {
    const c = await collector({});
    for (let i = 0; i < 200; i++) expect((await beacon(c.url, '85.214.132.117', `d-${i}`)).status).toBe(202);
  });
});

describe('hub disk quota', () => {
  it('answers 503 ING_HUB_FULL + Retry-After past the quota, loses nothing that got a 202, and resumes once consumed', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'farol-quota-'));
    cleanups.push(() => rm(dataDir, { recursive: true, force: true }));
    const maxBytes = 64 * 1024;
    const config = loadConfig({
      FAROL_DATA_DIR: dataDir,
      FAROL_PORT: '0',
      FAROL_HUB_PARTITIONS: '2',
      FAROL_HUB_MAX_BYTES: String(maxBytes),
      FAROL_TRUST_PROXY: '127.0.0.1/32',
      FAROL_SITES: 'example.com',
      FAROL_RATE_CLIENT: 'off',
    });
    const log = createLogger('warn', {}, () => undefined);
    const hub: LocalHub = await openConfiguredLocalHub(config, log);
    cleanups.push(() => hub.close());
    const runtime = await startCollector(config, { hub, log, metrics: new Registry() });
    cleanups.push(() => runtime.stop());
    const url = `http://127.0.0.1:${runtime.port}`;

    const acked = new Set<string>();
    let n = 0;
    const send = async (): Promise<Answer> => {
      const ids = Array.from({ length: 20 }, () => `q-${n++}`);
      const res = await fetch(`${url}/api/batch`, {
        method: 'POST',
        body: JSON.stringify(ids.map((id, k) => ({ n: 'pageview', u: `https://example.com/page/${id}`, d: 'example.com', id, ip: `85.214.${k}.${n % 250}`, ua: CHROME }))),
        headers: { 'content-type': 'application/json', 'user-agent': CHROME },
      });
      const a = await answer(res);
      if (a.status === 202) for (const id of ids) acked.add(id);
      return a;
    };

    const full = await pollUntil('the quota to be reached', async () => {
      const a = await send();
      if (a.status === 202) return undefined;
      return a;
    });
    expect(full).toMatchObject({ status: 503, code: 'ING_HUB_FULL' });
    expect(Number(full.retryAfter)).toBeGreaterThanOrEqual(1);
    expect(acked.size).toBeGreaterThan(0);
    expect(hub.bytes()).toBeLessThanOrEqual(maxBytes);
    // Still full: the quota holds unconsumed data, whatever the retries.
    for (let i = 0; i < 5; i++) expect((await send()).status).toBe(503);

    // A consumer (the processor) reads everything and checkpoints it.
    const consumed = new Set<string>();
    const consumer = await hub.openConsumer('processor');
    const readAll = async (into: Set<string>, from: number[]): Promise<number[]> => {
      const ends: number[] = [];
      for (let p = 0; p < 2; p++) {
        const end = await hub.endOffset(p);
        for (const r of await hub.read(p, from[p] ?? 0, end - (from[p] ?? 0))) into.add((payloadValue(r.payload) as { id: string }).id);
        ends.push(end);
      }
      return ends;
    };
    const ends = await readAll(consumed, [0, 0]);
    for (let p = 0; p < 2; p++) await consumer.checkpoint(p, (ends[p] ?? 0) - 1);

    // Refused publishes reclaim the consumed segments: ingest resumes.
    await pollUntil('ingest to resume', async () => ((await send()).status === 202 ? true : undefined));
    const rest = new Set<string>();
    await readAll(rest, ends);
    // Every 202 is in the hub exactly once, and nothing refused is.
    expect([...consumed].filter((id) => rest.has(id))).toEqual([]);
    expect(new Set([...consumed, ...rest])).toEqual(acked);
    expect(hub.stats().segmentsDeleted).toBeGreaterThan(0);
  });

  it('defaults to what the hub holds plus half the free disk space', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'farol-quota-default-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const fs = await statfs(dir);
    const half = (fs.bavail * fs.bsize) / 2;
    const quota = await defaultQuota(dir);
    // The disk is shared: allow other writers a few percent of movement meanwhile.
    expect(quota).toBeGreaterThan(half * 0.95);
    expect(quota).toBeLessThan(half * 1.05 + 1024 * 1024);
  });
});

/** The API on a real port over chDB, with the store's queries counted. */
async function countedApi(env: Record<string, string>): Promise<{ url: string; queries: () => number; owner: string; control: ControlPlane; account: string; metrics: Registry }> {
  const dir = await mkdtemp(join(tmpdir(), 'farol-abuse-api-'));
  const database = 'farol_abuse_test';
  const real = openChdbStore({ dataDir: dir, database });
  cleanups.push(async () => {
    await real.close();
    await rm(dir, { recursive: true, force: true });
  });
  await migrate(real, { database, retentionDays: 395 });
  let queries = 0;
  const store: Store = new Proxy(real, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver) as unknown;
      if (prop === 'query' && typeof v === 'function') {
        return (...args: unknown[]) => {
          queries++;
          return (v as (...a: unknown[]) => unknown).apply(target, args);
        };
      }
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  // A frozen clock: the caches' TTL never runs out during the test, so counts do not depend on speed.
  const control = new ControlPlane(store, { now: () => 1_700_000_000_000 });
  const account = await control.createAccount({ name: 'A' });
  await control.addSite(account.id, { domain: 'one.test' });
  const member = await control.addMember(account.id, { name: 'o', role: 'owner' });
  const owner = (await control.issueToken(member.id)).token;
  const config = loadConfig({ FAROL_DATA_DIR: dir, FAROL_PORT: '0', FAROL_TRUST_PROXY: '127.0.0.1/32', ...env });
  const metrics = new Registry();
  const server: ApiServer = await listenApi({ store, control, config, log: silentLogger, metrics, now: () => new Date() });
  cleanups.push(() => server.stop());
  return { url: `http://127.0.0.1:${server.port}`, queries: () => queries, owner, control, account: account.id, metrics };
}

async function apiGet(url: string, path: string, token?: string, ip = '85.214.132.117'): Promise<Answer> {
  const headers: Record<string, string> = { 'x-forwarded-for': ip };
  if (token !== undefined) headers['authorization'] = `Bearer ${token}`;
  return answer(await fetch(`${url}${path}`, { headers }));
}

const randomToken = (i: number): string => `farol_${Buffer.from(`random-${i}-${Math.random()}`).toString('base64url').padEnd(43, 'x')}`;

describe('API negative caches', () => {
  it('1,000 random Bearer tokens and 1,000 random /api/config domains cost a bounded number of store queries', async () => {
    const api = await countedApi({ FAROL_RATE_AUTH: 'off' });
    // Warm: the real token and site are looked up once.
    expect((await apiGet(api.url, '/api/v1/sites', api.owner)).status).toBe(200);
    expect((await apiGet(api.url, '/api/config/one.test')).status).toBe(200);

    /**
     * 1,000 requests in rounds of 50, each with a key nobody has: what they cost in store queries.
     * A miss waits for a snapshot loaded after it arrived; such loads are shared and at least
     * 100 ms apart (control/known-set.ts), so the bound is the flood's length in 100 ms steps.
     */
    const flood = async (send: (i: number) => Promise<Answer>, status: number): Promise<void> => {
      const before = api.queries();
      const started = performance.now();
      for (let i = 0; i < 1_000; i += 50) {
        const answers = await Promise.all(Array.from({ length: 50 }, (_, j) => send(i + j)));
        expect(answers.map((a) => a.status)).toEqual(answers.map(() => status));
      }
      const queries = api.queries() - before;
      expect(queries).toBeLessThanOrEqual(2 + Math.floor((performance.now() - started) / 100));
      // And at most two per round of 50 (one may have started before the round came): not one per request.
      expect(queries).toBeLessThanOrEqual(80);
    };
    await flood((i) => apiGet(api.url, '/api/v1/sites', randomToken(i)), 401);
    await flood((i) => apiGet(api.url, `/api/config/random-${i}-${Math.random().toString(36).slice(2)}.test`), 404);

    // Created here: known at once, despite the cached snapshots.
    await api.control.addSite(api.account, { domain: 'two.test' });
    expect((await apiGet(api.url, '/api/config/two.test')).status).toBe(200);
    const m = await api.control.addMember(api.account, { name: 'v', role: 'viewer' });
    const fresh = (await api.control.issueToken(m.id)).token;
    expect((await apiGet(api.url, '/api/v1/sites', fresh)).status).toBe(200);
  });
});

describe('API failed-authentication limit', () => {
  it('answers 429 + Retry-After to a client past its failures, for any token, without a lookup; others go on; it recovers', async () => {
    const api = await countedApi({ FAROL_RATE_AUTH: '60/min,5' });
    const attacker = '85.214.1.1';
    for (let i = 0; i < 5; i++) expect((await apiGet(api.url, '/api/v1/sites', randomToken(i), attacker)).status).toBe(401);
    const limited = await apiGet(api.url, '/api/v1/sites', randomToken(99), attacker);
    expect(limited).toMatchObject({ status: 429, code: 'API_RATE_LIMITED' });
    expect(Number(limited.retryAfter)).toBeGreaterThanOrEqual(1);
    // A right guess is refused too: a blocked client learns nothing.
    const queries = api.queries();
    expect((await apiGet(api.url, '/api/v1/sites', api.owner, attacker)).status).toBe(429);
    expect(api.queries()).toBe(queries);
    // Requests without a token are not counted nor refused.
    expect((await apiGet(api.url, '/api/config/one.test', undefined, attacker)).status).toBe(200);
    // Another client is not affected.
    expect((await apiGet(api.url, '/api/v1/sites', api.owner, '85.214.2.2')).status).toBe(200);
    // An IPv6 client is its /64: hopping addresses inside it does not buy more guesses.
    for (let i = 0; i < 5; i++) expect((await apiGet(api.url, '/api/v1/sites', randomToken(200 + i), `2001:db8:1:2::${i + 1}`)).status).toBe(401);
    expect((await apiGet(api.url, '/api/v1/sites', randomToken(300), '2001:db8:1:2:ffff:ffff:ffff:ffff')).status).toBe(429);
    expect((await apiGet(api.url, '/api/v1/sites', api.owner, '2001:db8:1:3::1')).status).toBe(200);
    expect((await apiGet(api.url, '/api/v1/sites', randomToken(100), '85.214.2.2')).status).toBe(401);
    // One failure a second comes back.
    await pollUntil('the client to be let through again', async () => ((await apiGet(api.url, '/api/v1/sites', api.owner, attacker)).status === 200 ? true : undefined));
    const text = api.metrics.render();
    expect(metric(text, 'farol_api_auth_failures_total')).toBe(11);
    expect(metric(text, 'farol_api_auth_limited_total')).toBeGreaterThanOrEqual(3);
  });
});
