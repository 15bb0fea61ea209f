import { cp, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openChdbStore } from '../store/chdb-store.ts';
import { MANIFEST, type BackupManifest } from '../store/backup.ts';
import type { Store } from '../store/store.ts';
import { integrity, rawCounts, rollupCounts, rowsContaining } from './support/exact-counts.ts';
import { findIpTraces, nearMidnightUtc, pollUntil, sendAllOnce, sleep, waitForProcessor, fetchMetrics, processorProgress } from './support/e2e.ts';
import { runFarol, startFarol, type FarolProcess } from './support/farol-process.ts';
import { generateWireTraffic, planBatches } from './support/wire-oracle.ts';

/**
 * `farol backup` of a live `farol start` (real child processes, real chDB dirs) while beacons
 * flow, `farol restore` into a fresh data dir, and the restored instance answering every dashboard
 * query as the source did. Site `a.test` is loaded and processed before the backup (its answers
 * cannot move after the point); site `load.test` receives traffic before, during and after the
 * backup, and the restored store must hold exactly the hub prefix of the backup point, with
 * sessions and rollups consistent with the raw events. Then: a backup whose writer is SIGKILLed
 * midway, a tampered backup and a non-empty data dir are refused; no salt and no client IP in the
 * backup's bytes.
 */

const SITES = ['a.test', 'load.test'];
const PARTITIONS = 4;
const TOKEN = 'farol_backup_test_token_0123456789';

/** The dashboard's own lists (plain JS without types, hence the typed dynamic import). */
interface DashboardConfig {
  PANELS: { tabs: { dimension: string; metrics: string[] }[] }[];
  ROWS: number;
  TOP_METRICS: string[];
}
const DASHBOARD_CONFIG: string = '../api/dashboard/config.js';
const { PANELS, ROWS, TOP_METRICS } = (await import(DASHBOARD_CONFIG)) as DashboardConfig;

/** Every query the dashboard makes for one site and period: the top cards, the chart, each panel tab. */
function dashboardQueries(site: string): object[] {
  const queries: object[] = [];
  for (const date_range of ['day', '28d', 'all']) {
    queries.push({ site_id: site, date_range, metrics: TOP_METRICS, include: { comparisons: { mode: 'previous_period' } } });
    for (const metric of TOP_METRICS) {
      queries.push({ site_id: site, date_range, metrics: [metric], dimensions: ['time'], include: { time_labels: true } });
    }
    for (const panel of PANELS) {
      for (const tab of panel.tabs) {
        queries.push({ site_id: site, date_range, metrics: tab.metrics, dimensions: [tab.dimension], pagination: { limit: ROWS } });
      }
    }
  }
  return queries;
}

async function answers(url: string, queries: readonly object[]): Promise<unknown[]> {
  const out: unknown[] = [];
  for (const q of queries) {
    const res = await fetch(`${url}/api/v2/query`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify(q),
    });
    out.push({ status: res.status, body: (await res.json()) as unknown });
  }
  return out;
}

async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true }).catch(() => []);
  return entries.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name));
}

describe.skipIf(nearMidnightUtc(5))('farol backup / restore of a live embedded instance', () => {
  let root = '';
  let source: FarolProcess | undefined;
  let restored: FarolProcess | undefined;
  let store: Store | undefined;
  const ips = new Set<string>();
  let sourceAnswers: unknown[] = [];
  let aEvents = 0;
  let loadSent = 0;
  let startedAt = 0;
  const env = (dataDir: string): Record<string, string> => ({
    FAROL_DATA_DIR: dataDir,
    FAROL_TRUST_PROXY: '127.0.0.1/32',
    FAROL_SITES: SITES.join(','),
    FAROL_HUB_PARTITIONS: String(PARTITIONS),
    FAROL_BOOTSTRAP_TOKEN: TOKEN,
    FAROL_LOG_LEVEL: 'info',
  });

  afterAll(async () => {
    source?.child.kill('SIGKILL');
    restored?.child.kill('SIGKILL');
    await store?.close();
    if (root) await rm(root, { recursive: true, force: true });
  });

  it('backs up a live instance while beacons flow', async () => {
    root = await mkdtemp(join(tmpdir(), 'farol-bk-'));
    startedAt = Date.now();
    source = await startFarol('start', env(join(root, 'src')));
    const a = generateWireTraffic({ seed: 4242, sites: ['a.test'], targetEvents: 800, idPrefix: 'bka' });
    for (const ip of a.ips) ips.add(ip);
    const sentA = await sendAllOnce(source.url, planBatches(a, { senders: 2, batchSize: 100, seed: 1 }));
    expect(sentA.failures).toEqual([]);
    aEvents = sentA.events;
    await waitForProcessor(source.metricsUrl, { partitions: PARTITIONS, eventRows: aEvents, timeoutMs: 30_000 });

    // load.test: rounds of fresh visitors until the backup has returned, paced (a few hundred
    // events a second) so that the machine's cores are left to the processes under test.
    let stop = false;
    const failures: string[] = [];
    const flowing = (async () => {
      for (let round = 0; !stop; round++) {
        const t = generateWireTraffic({ seed: 9000 + round, sites: ['load.test'], targetEvents: 100, idPrefix: `bkl${round}` });
        for (const ip of t.ips) ips.add(ip);
        const r = await sendAllOnce((source as FarolProcess).url, planBatches(t, { senders: 1, batchSize: 100, seed: round }));
        loadSent += r.events;
        failures.push(...r.failures);
        await sleep(200);
      }
    })();
    await pollUntil(async () => ((processorProgress(await fetchMetrics((source as FarolProcess).metricsUrl)).eventRows > aEvents + 200) ? true : undefined), {
      timeoutMs: 30_000,
      describe: () => 'load.test events written',
    });
    const backup = await runFarol(['backup', join(root, 'b1')], env(join(root, 'src')));
    stop = true;
    await flowing;
    expect(failures).toEqual([]);
    expect(backup.stderr).toBe('');
    expect(backup.code).toBe(0);
    expect(backup.stdout).toMatch(/^backup written to .*b1: \d+ files/);

    const manifest = JSON.parse(await readFile(join(root, 'b1', MANIFEST), 'utf8')) as BackupManifest;
    expect(manifest.point?.map((p) => p.partition)).toEqual([0, 1, 2, 3]);
    const atPoint = (manifest.point ?? []).reduce((n, p) => n + p.offset + 1, 0);
    // Taken mid-flow: after every a.test event, before the last load.test one.
    expect(atPoint).toBeGreaterThan(aEvents);
    expect(atPoint).toBeLessThan(aEvents + loadSent);

    await waitForProcessor(source.metricsUrl, { partitions: PARTITIONS, eventRows: aEvents + loadSent, timeoutMs: 30_000 });
    sourceAnswers = await answers(source.url, dashboardQueries('a.test'));
    expect(sourceAnswers.every((x) => (x as { status: number }).status === 200)).toBe(true);
  }, 120_000);

  it('a backup whose writer is SIGKILLed midway, a tampered backup and a non-empty data dir are refused', async () => {
    const src = source as FarolProcess;
    let cut: string | undefined;
    for (let attempt = 0; attempt < 3 && cut === undefined; attempt++) {
      const dir = join(root, `cut${attempt}`);
      const client = runFarol(['backup', dir], env(join(root, 'src')));
      // The copy to the target starts once the engine's own backup is staged; stop the writer
      // then, look (no manifest yet: midway), and kill it while it cannot move.
      // Midway = some files copied: a folder made and still empty is not a half backup yet.
      await pollUntil(
        async () => (existsSync(join(dir, MANIFEST)) || (existsSync(join(dir, 'clickhouse')) && (await filesUnder(join(dir, 'clickhouse'))).length > 0) ? true : undefined),
        { timeoutMs: 30_000, intervalMs: 2, describe: () => 'copy started' },
      );
      src.child.kill('SIGSTOP');
      if (existsSync(join(dir, MANIFEST))) {
        src.child.kill('SIGCONT');
        expect((await client).code).toBe(0);
        continue;
      }
      src.child.kill('SIGKILL');
      expect(await src.exited).toBe('SIGKILL');
      const answered = await client;
      expect(answered.code).toBe(1);
      cut = dir;
    }
    expect(cut, 'the writer was caught midway').toBeDefined();
    expect((await filesUnder(join(cut as string, 'clickhouse'))).length).toBeGreaterThan(0);

    const tampered = join(root, 'tampered');
    await cp(join(root, 'b1'), tampered, { recursive: true });
    const files = await filesUnder(join(tampered, 'clickhouse'));
    const sizes = await Promise.all(files.map(async (f) => [f, (await stat(f)).size] as const));
    const [largest] = sizes.sort((x, y) => y[1] - x[1])[0] ?? [''];
    const bytes = await readFile(largest);
    const at = bytes.length >> 1;
    bytes.writeUInt8(bytes.readUInt8(at) ^ 0xff, at);
    await writeFile(largest, bytes);

    const [fromCut, fromTampered, intoUsed] = await Promise.all([
      runFarol(['restore', cut as string], env(join(root, 'r-cut'))),
      runFarol(['restore', tampered], env(join(root, 'r-tampered'))),
      runFarol(['restore', join(root, 'b1')], env(join(root, 'src'))),
    ]);
    expect(fromCut).toMatchObject({ code: 1, stderr: expect.stringMatching(/not a complete Farol backup: it has no valid farol-backup\.json/) });
    expect(fromTampered).toMatchObject({ code: 1, stderr: expect.stringMatching(/does not match its checksum/) });
    expect(intoUsed).toMatchObject({ code: 1, stderr: expect.stringMatching(/is not empty/) });
    expect(existsSync(join(root, 'r-cut', 'clickhouse'))).toBe(false);
    expect(existsSync(join(root, 'r-tampered', 'clickhouse'))).toBe(false);
  }, 120_000);

  it('restores into a fresh data dir: the dashboard answers as the source did; the store holds the exact hub prefix, consistent', async () => {
    const dataDir = join(root, 'restored');
    const r = await runFarol(['restore', join(root, 'b1')], env(dataDir));
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    restored = await startFarol('start', env(dataDir));
    expect(await answers(restored.url, dashboardQueries('a.test'))).toEqual(sourceAnswers);
    restored.child.kill('SIGTERM');
    expect(await restored.exited).toBe(0);

    const manifest = JSON.parse(await readFile(join(root, 'b1', MANIFEST), 'utf8')) as BackupManifest;
    const atPoint = (manifest.point ?? []).reduce((n, p) => n + p.offset + 1, 0);
    store = openChdbStore({ dataDir, database: 'farol' });
    const check = await integrity(store);
    // Every hub record up to the point is one event row; sessions sum up exactly those events.
    expect(check).toMatchObject({ eventRows: atPoint, duplicateEventRows: 0, brokenSessions: 0, orphanEvents: 0, sessionEvents: atPoint });
    const raw = await rawCounts(store);
    expect(raw['a.test']?.events).toBe(aEvents);
    expect(await rollupCounts(store, 'daily')).toEqual(raw);
    expect(await rollupCounts(store, 'hourly')).toEqual(raw);
    expect(Object.values(await rowsContaining(store, [...ips])).every((n) => n === 0)).toBe(true);
  }, 120_000);

  it('the backup holds no salt and no client IP', async () => {
    const saltDir = join(root, 'src', 'salts');
    const salts = await Promise.all((await readdir(saltDir)).map((f) => readFile(join(saltDir, f))));
    expect(salts.length).toBeGreaterThan(0);
    const files = await filesUnder(join(root, 'b1'));
    expect(files.length).toBeGreaterThan(10);
    for (const f of files) {
      const data = await readFile(f);
      for (const salt of salts) {
        expect(data.includes(salt), f).toBe(false);
        expect(data.includes(Buffer.from(salt.toString('hex'))), f).toBe(false);
        expect(data.includes(Buffer.from(salt.toString('base64'))), f).toBe(false);
      }
    }
    const report = await findIpTraces(join(root, 'b1'), [...ips], { timeRange: [startedAt, Date.now()] });
    expect(report.files).toBe(files.length);
    expect(report.leaks).toEqual([]);
  });
});
