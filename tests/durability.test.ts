import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readHubEvents } from './support/collector-harness.ts';
import { ackedLoad } from './support/e2e.ts';
import { startFarol, type FarolProcess } from './support/farol-process.ts';

const UA = 'Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0';
const PARTITIONS = 4;

async function waitFor(cond: () => boolean, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('durability', () => {
  const dirs: string[] = [];
  const procs: FarolProcess[] = [];
  afterAll(async () => {
    for (const p of procs) p.child.kill('SIGKILL');
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  // Both durability modes in one run, no extra processes: the middle round and the final restart
  // use FAROL_HUB_SYNC=interval (a 202 once written to the OS), with a long interval, so that the
  // kill lands between background fdatasyncs; the others the default, always. Both collector
  // shapes too: the middle round runs on the main thread (FAROL_COLLECTOR_THREADS=1), the others
  // on two threads handing records to the main thread's hub writer (a 202 only after its ack).
  it('every event acknowledged before a SIGKILL is in the hub after restart, with FAROL_HUB_SYNC=always or interval', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'farol-durability-'));
    dirs.push(dataDir);
    const env = { FAROL_DATA_DIR: dataDir, FAROL_TRUST_PROXY: '127.0.0.1/32', FAROL_HUB_PARTITIONS: String(PARTITIONS), FAROL_LOG_LEVEL: 'info', FAROL_COLLECTOR_THREADS: '2' };
    const allAcked = new Set<string>();
    const interval = { ...env, FAROL_HUB_SYNC: 'interval:5000', FAROL_COLLECTOR_THREADS: '1' };
    for (let round = 0; round < 3; round++) {
      const proc = await startFarol('collector', round === 1 ? interval : env);
      procs.push(proc);
      const l = ackedLoad(proc.url, 16, `r${round}`);
      // Kill mid-load, at a point that differs per round.
      await waitFor(() => l.acked.size >= 1500 + round * 700, 60_000);
      proc.child.kill('SIGKILL');
      await proc.exited;
      await l.stop();
      for (const id of l.acked) allAcked.add(id);
      expect(l.sent()).toBeGreaterThan(l.acked.size / 3);
    }
    // Reopen: recovery truncates any torn tail; the log must then accept and serve appends.
    const proc = await startFarol('collector', { ...interval, FAROL_COLLECTOR_THREADS: '2' });
    procs.push(proc);
    const res = await fetch(`${proc.url}/api/event`, {
      method: 'POST',
      body: JSON.stringify({ n: 'pageview', u: 'https://site.test/after', d: 'site.test', id: 'after-restart' }),
      headers: { 'user-agent': UA },
    });
    expect(res.status).toBe(202);
    const metrics = await (await fetch(`${proc.metricsUrl}/metrics`)).text();
    expect(metrics).toMatch(/^farol_hub_sync_interval_seconds 5$/m);
    expect(metrics).toMatch(/^farol_hub_ready 1$/m);
    expect(metrics).toMatch(/^farol_hub_sync_errors_total 0$/m);
    // The 202 above is not fdatasynced yet (unless the timer just ran): at most one interval old.
    const unsynced = Number(/^farol_hub_unsynced_seconds (\S+)$/m.exec(metrics)?.[1]);
    expect(unsynced).toBeGreaterThanOrEqual(0);
    expect(unsynced).toBeLessThanOrEqual(5);
    // SIGTERM: close does the final fdatasync.
    proc.child.kill('SIGTERM');
    expect(await proc.exited).toBe(0);

    const events = await readHubEvents(join(dataDir, 'hub'), PARTITIONS);
    const stored = new Set(events.map((e) => e.id));
    const missing = [...allAcked].filter((id) => !stored.has(id));
    expect(missing).toEqual([]);
    expect(stored.has('after-restart')).toBe(true);
    expect(allAcked.size).toBeGreaterThan(5000);
    // Three collector starts and ~5k acknowledged events each: over a minute on a busy 2-core machine.
  }, 180_000);
});
