import { copyFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, request } from 'node:http';
import { afterAll, describe, expect, it } from 'vitest';
import { httpsRequest, makeTestCert } from '../lib/testing/tls.ts';
import { readHubEvents } from './support/collector-harness.ts';
import { ackedLoad, pollUntil } from './support/e2e.ts';
import { startFarol, type FarolProcess } from './support/farol-process.ts';

/**
 * `farol collector` with FAROL_COLLECTOR_THREADS=2, as production runs it: two uWS apps on one
 * port, the main thread writing the hub. Exactly once, metrics summed, drain with keep-alive
 * connections open, HTTPS with a SIGHUP renewal reaching every thread, and a thread that throws
 * (injected by a preload, no hook in the product).
 */

const PARTITIONS = 4;
const UA = 'Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0';

/** One request on `agent` (its one kept-alive connection); resolves the status. */
function send(agent: Agent, url: string, method: string, headers: Record<string, string> = {}, body?: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method, agent, headers }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end(body);
  });
}

// Loaded by every thread through NODE_OPTIONS; only the first collector thread (thread id 1), or
// the main thread, throws, once the test creates the file it names (handlers are installed by then).
const INJECT = String.raw`
const { isMainThread, threadId } = require('node:worker_threads');
const { existsSync } = require('node:fs');
const file = process.env.FAROL_TEST_CRASH_FILE;
const main = process.env.FAROL_TEST_CRASH_MAIN === '1';
if ((main ? isMainThread : threadId === 1) && file) {
  const timer = setInterval(() => {
    if (existsSync(file)) {
      clearInterval(timer);
      throw new Error(main ? 'injected main thread failure' : 'injected collector thread failure');
    }
  }, 10);
  timer.unref();
}
`;

describe('collector threads', () => {
  const dirs: string[] = [];
  const procs: FarolProcess[] = [];
  afterAll(async () => {
    for (const p of procs) p.child.kill('SIGKILL');
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  async function start(extra: Record<string, string> = {}): Promise<{ proc: FarolProcess; dataDir: string }> {
    const dataDir = await mkdtemp(join(tmpdir(), 'farol-threads-'));
    dirs.push(dataDir);
    const proc = await startFarol('collector', {
      FAROL_DATA_DIR: dataDir,
      FAROL_TRUST_PROXY: '127.0.0.1/32',
      FAROL_HUB_PARTITIONS: String(PARTITIONS),
      FAROL_COLLECTOR_THREADS: '2',
      FAROL_RATE_CLIENT: 'off',
      ...extra,
    });
    procs.push(proc);
    return { proc, dataDir };
  }

  it('events from many connections land once each; /metrics sums the threads; SIGTERM drains keep-alive clients and exits 0', async () => {
    const { proc, dataDir } = await start();
    // 24 connections (one agent each, kept alive): the kernel spreads them over both threads.
    const agents = Array.from({ length: 24 }, () => new Agent({ keepAlive: true, maxSockets: 1 }));
    const perConnection = 25;
    const statuses = await Promise.all(
      agents.map(async (agent, c) => {
        const out: number[] = [];
        for (let i = 0; i < perConnection; i++) {
          const body = JSON.stringify({ n: 'pageview', u: `https://site.test/p/${i}`, d: 'site.test', id: `c${c}-${i}` });
          out.push(await send(agent, `${proc.url}/api/event`, 'POST', { 'user-agent': UA, 'x-forwarded-for': `85.214.${c}.${i}` }, body));
        }
        return out;
      }),
    );
    expect(statuses.flat().filter((s) => s !== 202)).toEqual([]);
    const total = agents.length * perConnection;

    // Readiness answered alike whichever thread takes the connection.
    const ready = await Promise.all(agents.map((agent) => send(agent, `${proc.url}/readyz`, 'GET')));
    expect(ready.every((s) => s === 200)).toBe(true);

    const metrics = await (await fetch(`${proc.metricsUrl}/metrics`)).text();
    // One family each, summed over both threads: a thread left out would show fewer.
    expect(metrics.match(/^# TYPE farol_ingest_events_total /gm)).toHaveLength(1);
    expect(metrics).toMatch(new RegExp(`^farol_ingest_events_total ${total}$`, 'm'));
    expect(metrics).toMatch(new RegExp(`^farol_ingest_requests_total\\{route="/api/event",status="202"\\} ${total}$`, 'm'));
    expect(metrics).toMatch(new RegExp(`^farol_ingest_publish_seconds_count ${total}$`, 'm'));
    expect(metrics).toMatch(/^farol_ingest_salt_ready 1$/m);
    expect(metrics).toMatch(/^farol_hub_ready 1$/m);

    // SIGTERM with 24 idle keep-alive connections open: every thread closes them and the process ends 0.
    proc.child.kill('SIGTERM');
    expect(await proc.exited).toBe(0);
    for (const a of agents) a.destroy();

    const events = await readHubEvents(join(dataDir, 'hub'), PARTITIONS);
    const ids = events.map((e) => e.id);
    expect(ids.length).toBe(total);
    expect(new Set(ids).size).toBe(total);
  }, 120_000);

  it('a hub at its quota refuses through the threads as it does on one: 503 ING_HUB_FULL', async () => {
    const { proc } = await start({ FAROL_HUB_MAX_BYTES: '32768' });
    let answer: { status: number; body: string } | undefined;
    for (let i = 0; i < 400 && answer === undefined; i++) {
      const res = await fetch(`${proc.url}/api/event`, {
        method: 'POST',
        headers: { 'user-agent': UA },
        body: JSON.stringify({ n: 'pageview', u: `https://site.test/${'p'.repeat(400)}/${i}`, d: 'site.test' }),
      });
      const body = await res.text();
      if (res.status !== 202) answer = { status: res.status, body };
    }
    expect(answer?.status).toBe(503);
    expect(JSON.parse(answer?.body ?? '{}')).toMatchObject({ error: { code: 'ING_HUB_FULL' } });
    proc.child.kill('SIGTERM');
    expect(await proc.exited).toBe(0);
  }, 120_000);

  it('SIGTERM under load: in-flight requests are answered, the process exits 0, every 202 is in the hub', async () => {
    const { proc, dataDir } = await start();
    const load = ackedLoad(proc.url, 12, 'drain');
    await pollUntil(async () => (load.acked.size >= 400 ? true : undefined), { timeoutMs: 60_000, intervalMs: 20, describe: () => `${load.acked.size} acknowledged` });
    proc.child.kill('SIGTERM');
    expect(await proc.exited).toBe(0);
    await load.stop();
    const stored = new Set((await readHubEvents(join(dataDir, 'hub'), PARTITIONS)).map((e) => e.id));
    expect([...load.acked].filter((id) => !stored.has(id))).toEqual([]);
    expect(proc.output.some((l) => l.includes('did not drain'))).toBe(false);
  }, 120_000);

  it('a thread that throws ends the process non-zero (not an abort) and nothing acknowledged is lost', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'farol-threads-inject-'));
    dirs.push(dir);
    const inject = join(dir, 'inject.cjs');
    const crashFile = join(dir, 'crash-now');
    await writeFile(inject, INJECT);
    const { proc, dataDir } = await start({ NODE_OPTIONS: `--require ${inject}`, FAROL_TEST_CRASH_FILE: crashFile });
    const load = ackedLoad(proc.url, 12, 'inject');
    await pollUntil(async () => (load.acked.size >= 600 ? true : undefined), { timeoutMs: 60_000, intervalMs: 20, describe: () => `${load.acked.size} acknowledged` });
    await writeFile(crashFile, '');
    const code = await proc.exited;
    await load.stop();
    expect(code).toBe(1);
    expect(proc.output.some((l) => l.includes('collector thread crashed') && l.includes('injected collector thread failure'))).toBe(true);
    expect(proc.output.some((l) => l.includes('a collector thread died'))).toBe(true);

    const stored = new Set((await readHubEvents(join(dataDir, 'hub'), PARTITIONS)).map((e) => e.id));
    const missing = [...load.acked].filter((id) => !stored.has(id));
    expect(missing).toEqual([]);
  }, 120_000);

  it('a crash of the main thread closes the threads first: exit 1, not an abort', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'farol-threads-main-'));
    dirs.push(dir);
    const inject = join(dir, 'inject.cjs');
    const crashFile = join(dir, 'crash-now');
    await writeFile(inject, INJECT);
    const { proc } = await start({ NODE_OPTIONS: `--require ${inject}`, FAROL_TEST_CRASH_FILE: crashFile, FAROL_TEST_CRASH_MAIN: '1' });
    // A kept-alive connection on each thread (uWS aborts when a thread ends with one open).
    const agents = Array.from({ length: 8 }, () => new Agent({ keepAlive: true, maxSockets: 1 }));
    expect(await Promise.all(agents.map((a) => send(a, `${proc.url}/healthz`, 'GET')))).toEqual(agents.map(() => 200));
    await writeFile(crashFile, '');
    expect(await proc.exited).toBe(1);
    expect(proc.output.some((l) => l.includes('farol crashed') && l.includes('injected main thread failure'))).toBe(true);
    for (const a of agents) a.destroy();
  }, 120_000);

  it('over HTTPS every thread serves the certificate, and SIGHUP renews it on every thread', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'farol-threads-tls-'));
    dirs.push(dir);
    const a = makeTestCert(dir, 'a');
    const b = makeTestCert(dir, 'b');
    const live = { cert: join(dir, 'live.crt'), key: join(dir, 'live.key') };
    copyFileSync(a.cert, live.cert);
    copyFileSync(a.key, live.key);
    const { proc } = await start({ FAROL_TLS_CERT: live.cert, FAROL_TLS_KEY: live.key });
    const ca = [a.pem, b.pem];
    // 16 fresh connections each time: both threads take some of them.
    const names = async (): Promise<string[]> => {
      const answers = await Promise.all(
        Array.from({ length: 16 }, (_, i) =>
          httpsRequest({ port: proc.port, path: '/api/event', method: 'POST', ca, headers: { 'user-agent': UA }, body: JSON.stringify({ n: 'pageview', u: `https://site.test/t${i}`, d: 'site.test' }) }),
        ),
      );
      expect(answers.map((r) => r.status)).toEqual(answers.map(() => 202));
      return [...new Set(answers.map((r) => r.peerCommonName))];
    };
    expect(await names()).toEqual([a.commonName]);
    copyFileSync(b.cert, live.cert);
    copyFileSync(b.key, live.key);
    proc.child.kill('SIGHUP');
    let lastError = '';
    await pollUntil(
      async () => {
        // A connection the kernel had queued on a listener just being replaced is reset (README
        // "Operations", HTTPS): the client retries, and so does this probe.
        const seen = await names().catch((err: unknown) => {
          if (err instanceof Error && err.name === 'AssertionError') throw err; // an answer other than 202 is a defect
          lastError = String(err);
          return undefined;
        });
        return seen !== undefined && seen.length === 1 && seen[0] === b.commonName ? true : undefined;
      },
      { timeoutMs: 20_000, intervalMs: 100, describe: () => `every thread serving the renewed certificate (last error: ${lastError || 'none'})` },
    );
    proc.child.kill('SIGTERM');
    expect(await proc.exited).toBe(0);
  }, 120_000);
});
