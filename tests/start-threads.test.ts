import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openChdbStore } from '../store/chdb-store.ts';
import type { Store } from '../store/store.ts';
import { ackedLoad, fetchMetrics, metricValue, pollUntil, waitForProcessor } from './support/e2e.ts';
import { logLines, startFarol, type FarolProcess } from './support/farol-process.ts';

/**
 * `farol start` on the local hub runs the processor on a worker thread (cli/processor-thread.ts).
 * Here, as a real process: a processor thread that dies (an uncaught error in it, injected by a
 * `--require` preload that only acts inside worker threads) ends the process with exit 1 after
 * stopping ingest; a SIGKILL of the whole process under load loses nothing acknowledged; and every
 * event acknowledged across both ends reaches ClickHouse exactly once.
 */

const PARTITIONS = 2;

// Throws inside the processor thread once the file named by KILL_THREAD_FILE exists.
const PRELOAD = `
const { isMainThread } = require('node:worker_threads');
const { existsSync } = require('node:fs');
const file = process.env.KILL_THREAD_FILE;
if (!isMainThread && file) {
  setInterval(() => {
    if (existsSync(file)) throw new Error('injected crash of the processor thread');
  }, 20).unref();
}
`;


describe('farol start: the processor on its own thread', () => {
  let dir = '';
  const procs: FarolProcess[] = [];
  let store: Store | undefined;
  afterAll(async () => {
    for (const p of procs) p.child.kill('SIGKILL');
    await store?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('a dead processor thread ends the process with exit 1; a SIGKILL loses nothing acknowledged', async () => {
    dir = await mkdtemp(join(tmpdir(), 'farol-start-threads-'));
    const dataDir = join(dir, 'data');
    const preload = join(dir, 'kill-thread.cjs');
    const killFile = join(dir, 'kill-now');
    await writeFile(preload, PRELOAD);
    const env = { FAROL_DATA_DIR: dataDir, FAROL_TRUST_PROXY: '127.0.0.1/32', FAROL_SITES: 'site.test', FAROL_HUB_PARTITIONS: String(PARTITIONS) };
    const acked = new Set<string>();
    const start = async (extra: Record<string, string> = {}): Promise<FarolProcess> => {
      const p = await startFarol('start', { ...env, ...extra });
      procs.push(p);
      return p;
    };

    // 1. The processor thread dies under load: the process stops ingest and exits 1.
    const first = await start({ NODE_OPTIONS: `--require ${preload}`, KILL_THREAD_FILE: killFile });
    const l1 = ackedLoad(first.url, 8, 'a');
    await pollUntil(async () => (l1.acked.size >= 300 ? true : undefined), { timeoutMs: 60_000, intervalMs: 20, describe: () => `${l1.acked.size} acked` });
    await writeFile(killFile, '');
    expect(await first.exited).toBe(1);
    await l1.stop();
    for (const id of l1.acked) acked.add(id);
    const died = logLines(first.output, 'the processor thread died: stopping ingest, then exiting (the hub keeps what it did not write)');
    expect(died).toHaveLength(1);
    expect(JSON.stringify(died[0])).toContain('injected crash of the processor thread');
    expect(first.output.some((l) => l.includes('"msg":"stopped"') && l.includes('"code":1'))).toBe(true);

    // 2. Restarted: /metrics covers both threads, then a SIGKILL of the whole process under load.
    const second = await start();
    const samples = await fetchMetrics(second.metricsUrl);
    expect(samples.some((s) => s.name === 'farol_ingest_requests_total' || s.name === 'farol_ingest_inflight_requests')).toBe(true);
    expect(samples.some((s) => s.name === 'farol_processor_lag_events')).toBe(true);
    const l2 = ackedLoad(second.url, 8, 'b');
    await pollUntil(async () => (l2.acked.size >= 300 ? true : undefined), { timeoutMs: 60_000, intervalMs: 20, describe: () => `${l2.acked.size} acked` });
    second.child.kill('SIGKILL');
    await second.exited;
    await l2.stop();
    for (const id of l2.acked) acked.add(id);

    // 3. Restarted again: the processor writes what the hub holds; SIGTERM drains with exit 0.
    const third = await start();
    await waitForProcessor(third.metricsUrl, { partitions: PARTITIONS, timeoutMs: 60_000 });
    expect(metricValue(await fetchMetrics(third.metricsUrl), 'farol_processor_dead_letters_total')).toBe(0);
    third.child.kill('SIGTERM');
    expect(await third.exited).toBe(0);

    store = openChdbStore({ dataDir, database: 'farol' });
    const rows = await store.query<{ id: string; n: string }>("SELECT event_id AS id, count() AS n FROM events WHERE site = 'site.test' GROUP BY id");
    const stored = new Map(rows.map((r) => [r.id, Number(r.n)]));
    expect([...acked].filter((id) => !stored.has(id))).toEqual([]);
    expect(rows.filter((r) => r.n !== '1')).toEqual([]);
    expect(acked.size).toBeGreaterThanOrEqual(600);
  }, 240_000);
});
