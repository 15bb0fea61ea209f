import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openHttpStore } from '../store/http-store.ts';
import type { Store } from '../store/store.ts';
import { startClickHouseHttp, type ClickHouseHttp } from '../store/testing/clickhouse-http.ts';
import { expectExactCounts } from './support/exact-assert.ts';
import { rawCounts } from './support/exact-counts.ts';
import { geoCountries, nearMidnightUtc, postBatch, sendAllOnce, sleep, waitForProcessor } from './support/e2e.ts';
import { startFarol, type FarolProcess } from './support/farol-process.ts';
import { rng } from '../schemas/testing/oracle.ts';
import { computeWireTruth, generateWireTraffic, planBatches, type WireBatch, type WireTruth } from './support/wire-oracle.ts';

/**
 * `farol start` on a ClickHouse server (FAROL_CLICKHOUSE_URL → a chDB-backed HTTP endpoint in a
 * child process), checked against the wire oracle while it runs: the ~20k-event oracle run, and a
 * client that resends whole batches whose 202 it never saw. Each test has its own database and
 * data dir; the test process opens no chDB directory.
 */

const SITES = ['a.test', 'b.test', 'c.test'];
const PARTITIONS = 4;

describe.skipIf(nearMidnightUtc(10))('exact counts end to end: ClickHouse over HTTP', () => {
  let clickhouse: ClickHouseHttp | undefined;
  const dirs: string[] = [];
  const procs: FarolProcess[] = [];
  const stores: Store[] = [];

  beforeAll(async () => {
    const chDir = await mkdtemp(join(tmpdir(), 'farol-e2e-ch-'));
    dirs.push(chDir);
    clickhouse = await startClickHouseHttp({ dataDir: chDir });
  });

  afterAll(async () => {
    for (const p of procs) p.child.kill('SIGKILL');
    for (const s of stores) await s.close();
    await clickhouse?.stop();
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  /** A `farol start` on the endpoint with its own data dir and database, and a store to read it. */
  async function startServerMode(database: string): Promise<{ proc: FarolProcess; store: Store }> {
    if (clickhouse === undefined) throw new Error('no ClickHouse endpoint');
    const dataDir = await mkdtemp(join(tmpdir(), `farol-e2e-${database}-`));
    dirs.push(dataDir);
    const proc = await startFarol('start', {
      FAROL_DATA_DIR: dataDir,
      FAROL_CLICKHOUSE_URL: clickhouse.url,
      FAROL_CLICKHOUSE_DATABASE: database,
      FAROL_TRUST_PROXY: '127.0.0.1/32',
      FAROL_SITES: SITES.join(','),
      FAROL_HUB_PARTITIONS: String(PARTITIONS),
    });
    procs.push(proc);
    const store = openHttpStore({ url: clickhouse.url, username: 'default', password: '', database });
    stores.push(store);
    return { proc, store };
  }

  async function truthFor(seed: number, targetEvents: number, idPrefix: string): Promise<{ truth: WireTruth; plans: WireBatch[][] }> {
    const traffic = generateWireTraffic({ seed, sites: SITES, targetEvents, idPrefix });
    const countries = await geoCountries(traffic.ips);
    const truth = computeWireTruth(traffic, (ip) => countries.get(ip) ?? '');
    return { truth, plans: planBatches(traffic, { senders: 4, batchSize: 100, seed: seed + 1 }) };
  }

  it('20k events via /api/batch: raw counts, sessions and rollups equal the truth exactly', async () => {
    const { truth, plans } = await truthFor(7_100, 20_000, 'srv');
    const { proc, store } = await startServerMode('farol_oracle');
    const sent = await sendAllOnce(proc.url, plans);
    expect(sent.failures).toEqual([]);
    expect(sent.events).toBe(truth.totalEvents);

    const progress = await waitForProcessor(proc.metricsUrl, { partitions: PARTITIONS, eventRows: truth.totalEvents, timeoutMs: 120_000 });
    expect(progress).toMatchObject({ eventRows: truth.totalEvents, duplicates: 0, ingested: truth.totalEvents });
    await expectExactCounts(store, truth);

    // Draining writes nothing more (everything was already flushed) and exits cleanly.
    proc.child.kill('SIGTERM');
    expect(await proc.exited).toBe(0);
    expect(await rawCounts(store)).toEqual(truth.sites);
  }, 180_000);

  it('a client resending whole batches (same ids) after lost 202s: every event counts once', async () => {
    const { truth, plans } = await truthFor(7_200, 12_000, 'rty');
    const { proc, store } = await startServerMode('farol_retry');
    const failures: string[] = [];
    const stats = { batches: 0, sends: 0, lostAnswers: 0, immediateResends: 0, lateResends: 0 };
    const late: Promise<void>[] = [];
    const mustAccept = async (b: WireBatch): Promise<void> => {
      stats.sends++;
      const r = await postBatch(proc.url, b);
      if (!r.ok || r.status !== 202 || r.accepted !== b.events.length) failures.push(`batch ${b.sender}/${b.seq}: ${JSON.stringify(r)}`);
    };
    await Promise.all(
      plans.map(async (batches, sender) => {
        // One generator per sender: the choices do not depend on how the senders interleave.
        const random = rng(7_201 + sender);
        for (const b of batches) {
          stats.batches++;
          const roll = random();
          if (roll < 0.15) {
            // The client gives up on the answer after a few ms (it may or may not have been made
            // durable), then resends until it sees a 202.
            stats.sends++;
            stats.lostAnswers++;
            await postBatch(proc.url, b, 1 + Math.floor(random() * 4));
            await mustAccept(b);
          } else {
            await mustAccept(b);
            if (roll < 0.45) {
              // The 202 was lost on the way back: the same batch again, once or twice, right away.
              for (let k = 1 + Math.floor(random() * 2); k > 0; k--) {
                stats.immediateResends++;
                await mustAccept(b);
              }
            } else if (roll < 0.7) {
              // A retry queue resends it seconds later, while newer batches go out.
              stats.lateResends++;
              const delay = 1_000 + Math.floor(random() * 5_000);
              late.push(sleep(delay).then(() => mustAccept(b)));
            }
          }
        }
      }),
    );
    await Promise.all(late);
    expect(failures).toEqual([]);
    expect(stats.immediateResends + stats.lateResends).toBeGreaterThan(stats.batches / 3);

    const progress = await waitForProcessor(proc.metricsUrl, { partitions: PARTITIONS, eventRows: truth.totalEvents, timeoutMs: 120_000 });
    // Every copy the hub took beyond the first of each event was dropped as a duplicate.
    expect(progress.eventRows).toBe(truth.totalEvents);
    expect(progress.ingested).toBeGreaterThan(truth.totalEvents);
    expect(progress.duplicates).toBe(progress.ingested - truth.totalEvents);
    console.info(`retry e2e: ${truth.totalEvents} events, ${JSON.stringify(stats)}, hub took ${progress.ingested}, dropped ${progress.duplicates} copies`);
    await expectExactCounts(store, truth);
    proc.child.kill('SIGTERM');
    expect(await proc.exited).toBe(0);
  }, 180_000);
});
