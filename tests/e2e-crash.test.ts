import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readPartition } from '../hub/local-hub.ts';
import { openChdbStore } from '../store/chdb-store.ts';
import type { Store } from '../store/store.ts';
import { expectExactCounts } from './support/exact-assert.ts';
import { fetchMetrics, geoCountries, nearMidnightUtc, pollUntil, postBatch, processorProgress, sleep, waitForProcessor } from './support/e2e.ts';
import { startFarol, type FarolProcess } from './support/farol-process.ts';
import { rng } from '../schemas/testing/oracle.ts';
import { computeWireTruth, generateWireTraffic, planBatches, type WireBatch } from './support/wire-oracle.ts';

/**
 * kill -9 of the all-in-one process (collector + local hub + processor + embedded chDB), again and
 * again, under a stream of 100k events: senders retry every batch that failed or got no 202 (same
 * ids) against the restarted process, on the same data dir. At the end (SIGTERM, exit 0) the
 * counts equal the truth: nothing lost, nothing doubled, rollups equal raw rows. This file opens
 * exactly one chDB directory, after the last child exited.
 */

const SITES = ['a.test', 'b.test', 'c.test'];
const PARTITIONS = 4;
const EVENTS = 100_000;
const BATCH = 200;
const SENDERS = 4;
const KILLS_DURING_STREAM = 5;

describe.skipIf(nearMidnightUtc(15))('crash recovery end to end: embedded chDB', () => {
  let dataDir = '';
  const procs: FarolProcess[] = [];
  let store: Store | undefined;

  afterAll(async () => {
    for (const p of procs) p.child.kill('SIGKILL');
    await store?.close();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  it('SIGKILLed at random points 6 times during 100k events: nothing lost, nothing doubled', async () => {
    const traffic = generateWireTraffic({ seed: 4_242, sites: SITES, targetEvents: EVENTS, idPrefix: 'crash' });
    const countries = await geoCountries(traffic.ips);
    const truth = computeWireTruth(traffic, (ip) => countries.get(ip) ?? '');
    const plans = planBatches(traffic, { senders: SENDERS, batchSize: BATCH, seed: 4_243 });
    const totalBatches = plans.reduce((n, p) => n + p.length, 0);

    // Kill points: after k acknowledged batches, seeded, spread over the stream.
    const random = rng(4_244);
    const killAt: number[] = [];
    while (killAt.length < KILLS_DURING_STREAM) {
      const k = Math.floor(totalBatches * (0.05 + 0.9 * random()));
      if (killAt.every((other) => Math.abs(other - k) >= totalBatches / 25)) killAt.push(k);
    }
    killAt.sort((a, b) => a - b);

    dataDir = await mkdtemp(join(tmpdir(), 'farol-e2e-crash-'));
    const env = {
      FAROL_DATA_DIR: dataDir,
      FAROL_TRUST_PROXY: '127.0.0.1/32',
      FAROL_SITES: SITES.join(','),
      FAROL_HUB_PARTITIONS: String(PARTITIONS),
    };
    const start = async (): Promise<FarolProcess> => {
      const p = await startFarol('start', env, 60_000);
      procs.push(p);
      return p;
    };
    let proc = await start();
    // Where senders send: unset while the process is down (its port could be reused by another
    // process meanwhile), then the restarted process's (each start picks a free port).
    let url: string | undefined = proc.url;

    let acked = 0;
    let failedSends = 0;
    const failedReasons = new Map<string, number>();
    const sendUntilAccepted = async (b: WireBatch): Promise<void> => {
      for (let attempt = 1; ; attempt++) {
        const target = url ?? (await pollUntil(async () => url, { timeoutMs: 120_000, intervalMs: 20, describe: () => 'no restart' }));
        const r = await postBatch(target, b, 20_000);
        if (r.ok && r.status === 202 && r.accepted === b.events.length) return;
        failedSends++;
        const reason = r.ok ? `status ${r.status}` : r.error.split(':')[0] ?? r.error;
        failedReasons.set(reason, (failedReasons.get(reason) ?? 0) + 1);
        if (attempt > 100) throw new Error(`batch ${b.sender}/${b.seq} never accepted: ${JSON.stringify(r)}`);
        await sleep(50);
      }
    };
    const senders = Promise.all(
      plans.map(async (batches) => {
        for (const b of batches) {
          await sendUntilAccepted(b);
          acked++;
        }
      }),
    );
    let sendersDone = false;
    void senders.then(() => (sendersDone = true), () => (sendersDone = true));

    const kills: { ackedBatches: number; lag: number }[] = [];
    const killAndRestart = async (): Promise<void> => {
      // The lag is only reported: a slow /metrics (it waits for the processor thread's counters)
      // must not hold the kill back until the stream has ended.
      const metrics = await Promise.race([fetchMetrics(proc.metricsUrl).catch(() => null), sleep(200).then(() => null)]);
      const lag = metrics === null ? -1 : processorProgress(metrics).lag.reduce((a, b) => a + b, 0);
      kills.push({ ackedBatches: acked, lag });
      url = undefined;
      proc.child.kill('SIGKILL');
      await proc.exited;
      proc = await start();
      url = proc.url;
    };
    for (const k of killAt) {
      await pollUntil(async () => (acked >= k || sendersDone ? true : undefined), {
        timeoutMs: 120_000,
        intervalMs: 20,
        describe: () => `${acked} of ${totalBatches} batches acked, waiting for ${k}`,
      });
      await killAndRestart();
    }
    await senders;
    expect(acked).toBe(totalBatches);
    // Once more while the processor is still catching up on what the collector took.
    await killAndRestart();

    const progress = await waitForProcessor(proc.metricsUrl, { partitions: PARTITIONS, timeoutMs: 150_000 });
    expect(progress.lag).toEqual([0, 0, 0, 0]);
    proc.child.kill('SIGTERM');
    expect(await proc.exited).toBe(0);

    expect(kills.length).toBe(KILLS_DURING_STREAM + 1);
    // Kills landed during the stream (not all after it) and cut requests in flight.
    expect(kills.slice(0, KILLS_DURING_STREAM).every((k) => k.ackedBatches < totalBatches)).toBe(true);
    expect(failedSends).toBeGreaterThan(0);
    // Copies in the hub beyond one per event: batches made durable whose 202 never arrived, resent.
    let hubRecords = 0;
    for (let p = 0; p < PARTITIONS; p++) hubRecords += (await readPartition(join(dataDir, 'hub'), p, 0, Number.MAX_SAFE_INTEGER)).length;
    expect(hubRecords).toBeGreaterThanOrEqual(truth.totalEvents);
    const replayed = procs
      .flatMap((p) => p.output)
      .filter((l) => l.includes('"partition opened"') && /"replayRanges":[1-9]/.test(l)).length;
    console.info(
      `crash e2e: ${truth.totalEvents} events in ${totalBatches} batches; kills ${JSON.stringify(kills)}; ` +
        `${failedSends} failed sends ${JSON.stringify([...failedReasons])}; ${hubRecords - truth.totalEvents} resent copies in the hub; ` +
        `${replayed} partition opens replayed logged flushes`,
    );

    store = openChdbStore({ dataDir, database: 'farol' });
    await expectExactCounts(store, truth);
  }, 300_000);
});
