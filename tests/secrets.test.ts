import { chmod, lstat, mkdtemp, readdir, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, it } from 'vitest';
import { openLocalHub } from '../hub/local-hub.ts';
import { openChdbStore } from '../store/chdb-store.ts';
import { migrate } from '../store/migrate.ts';
import { fetchMetrics, metricValue, pollUntil } from './support/e2e.ts';
import { makeEvent } from '../schemas/testing/events.ts';
import { runFarol, startFarol, startFarolProcessor, type FarolProcess } from './support/farol-process.ts';

/**
 * Secrets and privacy at rest (issue #8, finding 8), against real `farol` child processes: no
 * configured secret or stored row reaches stdout/stderr, the data dir is private to the service
 * user, and `/metrics` is served only on its own listener.
 */

// Distinctive markers, grepped for in everything a process prints.
const MARK = 'Sx8q3MARK';
const B64_MARK = Buffer.from(`${MARK}-account-key`).toString('base64');

const temps: string[] = [];
const running: FarolProcess[] = [];

afterAll(async () => {
  for (const p of running) p.child.kill('SIGKILL');
  await Promise.all(running.map((p) => p.exited));
  await Promise.all(temps.map((d) => rm(d, { recursive: true, force: true })));
});

async function tempDir(prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  temps.push(dir);
  return dir;
}

/** A port nothing listens on (taken from the OS, then released). */
function closedPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr !== null ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

/**
 * Every path under `dir` (itself included) with its permission bits. Symbolic links (the embedded
 * engine links table names to its store) are left out: a link's own mode is never used.
 */
async function tree(dir: string): Promise<Map<string, number>> {
  const out = new Map<string, number>([[dir, (await lstat(dir)).mode & 0o777]]);
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, entry.name);
    if (entry.isDirectory()) for (const [k, v] of await tree(p)) out.set(k, v);
    else if (!entry.isSymbolicLink()) out.set(p, (await lstat(p)).mode & 0o777);
  }
  return out;
}

/** Resolves once the child's stdout and stderr are closed (everything it wrote has been read). */
function closed(p: FarolProcess): Promise<void> {
  return new Promise((resolve) => {
    if (p.child.stdout?.closed === true && p.child.stderr?.closed === true) resolve();
    else p.child.once('close', () => resolve());
  });
}

// Every test works on data dirs, children and ports of its own: all seven run side by side (they
// mostly wait on farol children starting and exiting), each with its context's expect.
describe.concurrent('secrets never reach what farol prints', () => {
  it('a bad secret setting is named, never echoed (environment and --flags)', async ({ expect }) => {
    const cases: Array<[string, string[], Record<string, string>]> = [
      ['FAROL_BOOTSTRAP_TOKEN', ['collector'], { FAROL_BOOTSTRAP_TOKEN: `not valid ${MARK}` }],
      ['FAROL_BOOTSTRAP_TOKEN', ['start', '--bootstrap-token', `${MARK} x`], {}],
      ['FAROL_BOOTSTRAP_TOKEN', ['api', `--bootstrap-token=${MARK}`], {}],
      ['FAROL_CLICKHOUSE_URL', ['processor'], { FAROL_CLICKHOUSE_URL: `ftp://farol:${MARK}@clickhouse:21` }],
      ['FAROL_CLICKHOUSE_URL', ['migrate'], { FAROL_CLICKHOUSE_URL: `clickhouse farol:${MARK}@host` }],
      [
        'FAROL_EVENTHUBS_NAME',
        ['collector'],
        { FAROL_HUB: 'eventhubs', FAROL_EVENTHUBS_CONNECTION_STRING: `Endpoint=sb://ns/;SharedAccessKeyName=k;SharedAccessKey=${MARK}` },
      ],
    ];
    const results = await Promise.all(cases.map(([, args, env]) => runFarol(args, env)));
    results.forEach((r, i) => {
      const [variable, args] = cases[i] ?? ['', []];
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr, args.join(' ')).toContain(variable);
      expect(`${r.stdout}${r.stderr}`, args.join(' ')).not.toContain(MARK);
    });
  }, 120_000);

  it('an unreachable ClickHouse server or Azure storage is reported without credentials', async ({ expect }) => {
    const port = await closedPort();
    const clickhouse = await runFarol(['migrate'], {
      FAROL_CLICKHOUSE_URL: `http://farol:${MARK}-url-password@127.0.0.1:${port}`,
      FAROL_CLICKHOUSE_PASSWORD: `${MARK}-password`,
      FAROL_BOOTSTRAP_TOKEN: `${MARK}-bootstrap-token`,
    });
    expect(clickhouse.code).toBe(1);
    expect(clickhouse.stdout).toContain('ECONNREFUSED');
    expect(`${clickhouse.stdout}${clickhouse.stderr}`).not.toContain(MARK);

    // A processor on Event Hubs whose namespace and checkpoint storage are unreachable fails, and
    // says so without the keys or the signature: storage by a SAS, then by an account key.
    const eventHubs = {
      FAROL_HUB: 'eventhubs',
      FAROL_EVENTHUBS_CONNECTION_STRING: `Endpoint=sb://127.0.0.1:${port}/;SharedAccessKeyName=k;SharedAccessKey=${MARK}-eh-key`,
      FAROL_EVENTHUBS_NAME: 'hub',
      FAROL_LOG_LEVEL: 'debug',
    };
    for (const storage of [
      `BlobEndpoint=http://127.0.0.1:${port}/devstoreaccount1;SharedAccessSignature=sv=2022-11-02&ss=b&srt=co&sp=rwdlac&sig=${MARK}sig`,
      `DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=${B64_MARK};BlobEndpoint=http://127.0.0.1:${port}/devstoreaccount1;`,
    ]) {
      const r = await runFarol(['processor'], { ...eventHubs, FAROL_DATA_DIR: await tempDir('farol-secrets-eh-'), FAROL_CHECKPOINT_CONNECTION_STRING: storage });
      expect(r.code).toBe(1);
      expect(r.stdout).toContain('farol processor failed');
      for (const secret of [MARK, B64_MARK]) expect(`${r.stdout}${r.stderr}`).not.toContain(secret);
    }
  }, 180_000);

  it('a row ClickHouse refuses is never logged, on any retry', async ({ expect }) => {
    const dataDir = await tempDir('farol-secrets-row-');
    // The embedded store refuses the row (a constraint the way a server's schema could): the
    // refusal quotes the row's values, and the processor meets it on every retry.
    const store = openChdbStore({ dataDir, database: 'farol' });
    await migrate(store, { database: 'farol', retentionDays: 395 });
    await store.exec(`ALTER TABLE events ADD CONSTRAINT refuse_marked CHECK position(pathname, '${MARK}') = 0`);
    await store.close();
    const hub = await openLocalHub({ dir: join(dataDir, 'hub'), partitions: 4 });
    const row = makeEvent({ ts: Date.now() - 60_000, pathname: `/${MARK}/page`, props: { plan: `${MARK}-prop` }, referrer: `https://${MARK}.example/` });
    await hub.publish([{ key: `${row.site}:${row.visitorId}`, payload: Buffer.from(JSON.stringify(row)) }]);
    await hub.close();

    const proc = await startFarol('start', { FAROL_DATA_DIR: dataDir, FAROL_LOG_LEVEL: 'debug' });
    running.push(proc);
    const metricsAt = proc.metricsUrl === '' ? proc.url : proc.metricsUrl;
    const failedInserts = (): number => proc.output.filter((l) => l.includes('insert into events failed')).length;
    // Retried at least twice (today's behaviour), or set aside as a dead letter.
    await pollUntil(
      async () => {
        if (failedInserts() >= 2) return true;
        const m = await fetchMetrics(metricsAt);
        return metricValue(m, 'farol_processor_dead_letters_total') > 0 ? true : undefined;
      },
      { timeoutMs: 60_000, describe: () => proc.output.slice(-10).join('\n') },
    );
    const done = closed(proc);
    proc.child.kill('SIGKILL');
    await done;
    const output = proc.output.join('\n');
    expect(output).toContain('VIOLATED_CONSTRAINT');
    expect(output).not.toContain(MARK);
  }, 180_000);

  it('a configured token or password is never printed, and a failed login does not echo the token', async ({ expect }) => {
    const dataDir = await tempDir('farol-secrets-token-');
    const token = `${MARK}-owner-token-0123456789`;
    const proc = await startFarol('start', { FAROL_DATA_DIR: dataDir, FAROL_BOOTSTRAP_TOKEN: token, FAROL_CLICKHOUSE_PASSWORD: `${MARK}-pw`, FAROL_LOG_LEVEL: 'debug' });
    running.push(proc);
    const wrong = await fetch(`${proc.url}/api/v1/sites`, { headers: { authorization: `Bearer ${MARK}-wrong-token` } });
    expect(wrong.status).toBe(401);
    expect(await wrong.text()).not.toContain(MARK);
    const right = await fetch(`${proc.url}/api/v1/sites`, { headers: { authorization: `Bearer ${token}` } });
    expect(right.status).toBe(200);
    const done = closed(proc);
    proc.child.kill('SIGTERM');
    expect(await proc.exited).toBe(0);
    await done;
    expect(proc.output.join('\n')).not.toContain(MARK);
  }, 180_000);
});

describe.concurrent('privacy at rest', () => {
  it('the data dir and everything farol creates in it are private to the service user', async ({ expect }) => {
    const dataDir = await tempDir('farol-secrets-dir-');
    // An install made before this rule: the data dir, its folders and files open to everyone.
    const hub = await openLocalHub({ dir: join(dataDir, 'hub'), partitions: 4 });
    await hub.close();
    const before = await tree(dataDir);
    for (const path of before.keys()) await chmod(path, (await lstat(path)).isDirectory() ? 0o755 : 0o644);

    const proc = await startFarol('start', { FAROL_DATA_DIR: dataDir, FAROL_SITES: 'site.test' });
    running.push(proc);
    const res = await fetch(`${proc.url}/api/event`, {
      method: 'POST',
      body: JSON.stringify({ n: 'pageview', u: 'https://site.test/', d: 'site.test' }),
      headers: { 'user-agent': 'Mozilla/5.0 (X11; Linux x86_64; rv:130.0) Gecko/20100101 Firefox/130.0' },
    });
    expect(res.status).toBe(202);
    proc.child.kill('SIGTERM');
    expect(await proc.exited).toBe(0);

    const after = await tree(dataDir);
    expect(after.get(dataDir)).toBe(0o700);
    const open: string[] = [];
    for (const [path, mode] of after) {
      // Created by this run (the hub, the embedded engine's files, salts, processor state), or a
      // direct entry of the data dir: no permission for group or others.
      const direct = path === dataDir || join(path, '..') === dataDir;
      if ((direct || !before.has(path)) && (mode & 0o077) !== 0) open.push(`${path} ${mode.toString(8)}`);
    }
    expect(open).toEqual([]);
    // The tree holds what the run wrote: the embedded engine's files and the salts.
    expect([...after.keys()].some((p) => p.includes(`${join(dataDir, 'clickhouse')}/`))).toBe(true);
    expect([...after.keys()].some((p) => p.startsWith(join(dataDir, 'salts')))).toBe(true);
  }, 180_000);
});

describe.concurrent('/metrics', () => {
  it('is served only on the metrics listener, in every process kind, never on the public port', async ({ expect }) => {
    const dataDir = await tempDir('farol-secrets-metrics-');
    const start = await startFarol('start', { FAROL_DATA_DIR: dataDir, FAROL_SITES: 'site.test' });
    running.push(start);
    await fetch(`${start.url}/api/event`, {
      method: 'POST',
      body: JSON.stringify({ n: 'pageview', u: 'https://site.test/', d: 'site.test' }),
      headers: { 'user-agent': 'Mozilla/5.0 (X11; Linux x86_64; rv:130.0) Gecko/20100101 Firefox/130.0' },
    });
    const pub = await fetch(`${start.url}/metrics`);
    expect(pub.status).toBe(404);
    expect(await pub.text()).not.toContain('farol_');
    const scraped = await fetch(`${start.metricsUrl}/metrics`);
    expect(scraped.status).toBe(200);
    const text = await scraped.text();
    expect(text).toMatch(/farol_ingest_events_total 1/);
    expect(text).toContain('farol_processor_');
    expect(text).toContain('farol_api_requests_total');
    start.child.kill('SIGTERM');
    expect(await start.exited).toBe(0);

    // The standalone kinds, each on its own data dir: collector, processor (reads the hub the
    // collector writes) and api.
    const collector = await startFarol('collector', { FAROL_DATA_DIR: dataDir, FAROL_SITES: 'site.test' });
    running.push(collector);
    expect((await fetch(`${collector.url}/metrics`)).status).toBe(404);
    expect(await (await fetch(`${collector.metricsUrl}/metrics`)).text()).toContain('farol_ingest_requests_total');
    collector.child.kill('SIGTERM');
    expect(await collector.exited).toBe(0);

    const processor = await startFarolProcessor({ FAROL_DATA_DIR: dataDir, FAROL_LOG_LEVEL: 'info' });
    expect(await (await fetch(`${processor.metricsUrl}/metrics`)).text()).toContain('farol_processor_lag_events');
    processor.child.kill('SIGTERM');
    expect(await processor.exited).toBe(0);

    const api = await startFarol('api', { FAROL_DATA_DIR: dataDir });
    running.push(api);
    const apiPublic = await fetch(`${api.url}/metrics`);
    expect(apiPublic.status).toBe(404);
    expect(await apiPublic.text()).not.toContain('farol_');
    await fetch(`${api.url}/api/v1/sites`);
    expect(await (await fetch(`${api.metricsUrl}/metrics`)).text()).toContain('farol_api_requests_total');
    api.child.kill('SIGTERM');
    expect(await api.exited).toBe(0);
  }, 300_000);

  it('is not served at all unless FAROL_METRICS_PORT is set', async ({ expect }) => {
    const proc = await startFarol('collector', { FAROL_DATA_DIR: await tempDir('farol-secrets-nometrics-'), FAROL_METRICS_PORT: '' });
    running.push(proc);
    expect(proc.metricsUrl).toBe('');
    expect(proc.output.join('\n')).not.toContain('metrics listening');
    expect((await fetch(`${proc.url}/metrics`)).status).toBe(404);
    proc.child.kill('SIGTERM');
    expect(await proc.exited).toBe(0);
  }, 120_000);
});
