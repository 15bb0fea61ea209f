import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createUaParser } from '../ingest/enrich/user-agent.ts';
import { openChdbStore } from '../store/chdb-store.ts';
import type { Store } from '../store/store.ts';
import { expectExactCounts } from './support/exact-assert.ts';
import { rowsContaining } from './support/exact-counts.ts';
import { findIpTraces, geoCountries, nearMidnightUtc, sendAllOnce, waitForProcessor } from './support/e2e.ts';
import { startFarol, type FarolProcess } from './support/farol-process.ts';
import { BROWSER_UAS, computeWireTruth, generateWireTraffic, planBatches, type WireTraffic, type WireTruth } from './support/wire-oracle.ts';

/**
 * The embedded all-in-one (`farol start` on chDB) against the wire oracle: ~20k events through the
 * real collector, then exact counts from the raw tables and the rollups, read after the child
 * drained and exited (a chDB data dir can be open in one process only). Then a privacy sweep of
 * the same data dir. This file opens exactly one chDB directory.
 */

const SITES = ['a.test', 'b.test', 'c.test'];
const PARTITIONS = 4;

describe.skipIf(nearMidnightUtc(10))('exact counts end to end: embedded chDB', () => {
  let dataDir = '';
  let proc: FarolProcess | undefined;
  let store: Store | undefined;
  let traffic: WireTraffic | undefined;
  let truth: WireTruth | undefined;
  let startedAt = 0;
  const scratch: string[] = [];

  afterAll(async () => {
    proc?.child.kill('SIGKILL');
    await store?.close();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
    for (const d of scratch) await rm(d, { recursive: true, force: true });
  });

  it('20k events via /api/batch: raw counts, sessions and rollups equal the truth exactly', async () => {
    traffic = generateWireTraffic({ seed: 20_261_129, sites: SITES, targetEvents: 20_000, idPrefix: 'emb' });
    const countries = await geoCountries(traffic.ips);
    // The ranges are ones DB-IP knows; the truth below is whatever it answers for each IP.
    expect(await geoCountries(['85.214.132.117', '193.0.6.139', '200.160.2.3', '133.242.0.1', '8.8.8.8'])).toEqual(
      new Map([
        ['85.214.132.117', 'DE'],
        ['193.0.6.139', 'NL'],
        ['200.160.2.3', 'BR'],
        ['133.242.0.1', 'JP'],
        ['8.8.8.8', 'US'],
      ]),
    );
    expect(new Set(countries.values()).size).toBeGreaterThanOrEqual(6);
    // No visitor may be dropped as a bot.
    const parseUa = createUaParser({ cacheSize: 100 });
    expect(BROWSER_UAS.filter((ua) => parseUa(ua).bot)).toEqual([]);
    truth = computeWireTruth(traffic, (ip) => countries.get(ip) ?? '');

    dataDir = await mkdtemp(join(tmpdir(), 'farol-e2e-embedded-'));
    startedAt = Date.now();
    proc = await startFarol('start', {
      FAROL_DATA_DIR: dataDir,
      FAROL_TRUST_PROXY: '127.0.0.1/32',
      FAROL_SITES: SITES.join(','),
      FAROL_HUB_PARTITIONS: String(PARTITIONS),
    });
    const plans = planBatches(traffic, { senders: 4, batchSize: 100, seed: 11 });
    const sent = await sendAllOnce(proc.url, plans);
    expect(sent.failures).toEqual([]);
    expect(sent.events).toBe(truth.totalEvents);

    const progress = await waitForProcessor(proc.metricsUrl, { partitions: PARTITIONS, eventRows: truth.totalEvents, timeoutMs: 120_000 });
    expect(progress).toMatchObject({ eventRows: truth.totalEvents, duplicates: 0 });
    proc.child.kill('SIGTERM');
    expect(await proc.exited).toBe(0);

    store = openChdbStore({ dataDir, database: 'farol' });
    await expectExactCounts(store, truth);
  }, 180_000);

  it('no client IP or raw User-Agent in any file under the data dir, in the logs, or in any column', async () => {
    if (store === undefined || traffic === undefined || proc === undefined) throw new Error('the oracle test did not run');
    const logs = Buffer.from(proc.output.join('\n'));
    const report = await findIpTraces(dataDir, traffic.ips, {
      timeRange: [startedAt - 60_000, Date.now() + 60_000],
      extra: [{ name: 'stdout/stderr', data: logs }],
    });
    expect(report.textOnlyFiles).toBeGreaterThan(10); // chDB's parts were there to search
    expect(report.files).toBeGreaterThan(report.textOnlyFiles + 4); // and the hub, salts, processor state
    expect(report.leaks).toEqual([]);
    expect(await rowsContaining(store, traffic.ips)).toEqual({
      events: 0,
      sessions: 0,
      rollup_daily: 0,
      rollup_hourly: 0,
      sessions_daily: 0,
      sessions_hourly: 0,
    });
    expect(await rowsContaining(store, BROWSER_UAS)).toMatchObject({ events: 0, sessions: 0 });

    // Controls: the searches do find what is there.
    expect((await rowsContaining(store, ['/pricing']))['events']).toBeGreaterThan(0);
    const planted = await mkdtemp(join(tmpdir(), 'farol-e2e-planted-'));
    scratch.push(planted);
    const [v4, v6] = [traffic.ips.find((ip) => !ip.includes(':')), traffic.ips.find((ip) => ip.includes(':'))];
    if (v4 === undefined || v6 === undefined) throw new Error('traffic has no IPv4 or no IPv6 client');
    await mkdir(join(planted, 'state'));
    await writeFile(join(planted, 'state', 'text'), `{"x":"1${v4}9"}`);
    await writeFile(join(planted, 'state', 'packed'), Buffer.from([0xff, ...v4.split('.').map(Number), 0xff]));
    await writeFile(join(planted, 'state', 'v6'), `[${v6}]`);
    const control = await findIpTraces(planted, [v4, v6], { timeRange: [0, Date.now()] });
    expect(control.leaks.sort()).toEqual(
      [`${v4} as text in ${join('state', 'text')}`, `${v4} (packed BE) in ${join('state', 'packed')}`, `${v6} as text in ${join('state', 'v6')}`].sort(),
    );
  }, 120_000);
});
