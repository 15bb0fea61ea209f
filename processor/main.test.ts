import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openLocalHub } from '../hub/local-hub.ts';
import { loadConfig } from '../schemas/config.ts';
import { openChdbStore } from '../store/chdb-store.ts';
import { computeTruth, generateTraffic } from '../schemas/testing/oracle.ts';
import { LOCAL_PROCESSOR_GROUP, processorStateDir, runProcessor } from './main.ts';
import { expectStoreMatchesTruth, publish, removeTempDirs, tempDir, waitFor } from './testing/harness.ts';

/** `farol processor` as wired: read-only local hub, embedded chDB migrated on start, SIGTERM drains. */

const HOUR = 3_600_000;
const PARTITIONS = 2;

afterAll(async () => {
  await removeTempDirs();
});

/** The `to` of the last range logged for each partition (-1 when none). */
async function lastLogged(dataDir: string): Promise<number[]> {
  const dir = processorStateDir(dataDir, LOCAL_PROCESSOR_GROUP);
  return Promise.all(
    Array.from({ length: PARTITIONS }, async (_, p) => {
      const text = await readFile(join(dir, `p-${p}.intents`), 'utf8').catch(() => '');
      return Number(text.trim().split('\n').at(-1)?.split(' ')[1] ?? -1);
    }),
  );
}

/** The data dir's store holds exactly `traffic` for `sites`. */
async function expectStored(dataDir: string, database: string, sites: string[], traffic: ReturnType<typeof generateTraffic>): Promise<void> {
  const store = openChdbStore({ dataDir, database });
  try {
    await expectStoreMatchesTruth(store, sites, computeTruth(traffic));
  } finally {
    await store.close();
  }
}

describe('runProcessor', () => {
  it('consumes the hub into chDB, drains on SIGTERM and exits 0', async () => {
    const dataDir = await tempDir('processor-main');
    const config = loadConfig({ FAROL_DATA_DIR: dataDir, FAROL_HUB_PARTITIONS: String(PARTITIONS), FAROL_LOG_LEVEL: 'silent' });
    const sites = ['main.test'];
    const traffic = generateTraffic({ sites, visitorsPerSite: 20, eventsPerVisitor: 20, start: Math.floor(Date.now() / HOUR) * HOUR - 6 * HOUR, seed: 21 });
    const writer = await openLocalHub({ dir: join(dataDir, 'hub'), partitions: PARTITIONS });
    await publish(writer, traffic);
    const ends = await Promise.all(Array.from({ length: PARTITIONS }, (_, p) => writer.endOffset(p)));

    const exit = runProcessor(config);
    // Every record has reached the processor once a logged range ends at the partition's end.
    await waitFor(async () => (await lastLogged(dataDir)).every((to, p) => to === (ends[p] ?? 0) - 1), 'every record to be taken');
    process.emit('SIGTERM', 'SIGTERM');
    expect(await exit).toBe(0);

    const checkpoints = JSON.parse(await readFile(join(dataDir, 'hub', 'checkpoints', `${LOCAL_PROCESSOR_GROUP}.json`), 'utf8')) as {
      offsets: number[];
    };
    expect(checkpoints.offsets).toEqual(ends.map((e) => e - 1));
    await writer.close();
    await expectStored(dataDir, config.FAROL_CLICKHOUSE_DATABASE, sites, traffic);
  });
});

describe('FAROL_PROCESSOR_FLUSH_MS and FAROL_PROCESSOR_FLUSH_RECORDS', () => {
  it('hold a partition’s records until either bound is reached; a drain writes them all', async () => {
    const dataDir = await tempDir('processor-flush-bounds');
    const config = loadConfig({
      FAROL_DATA_DIR: dataDir,
      FAROL_HUB_PARTITIONS: String(PARTITIONS),
      FAROL_LOG_LEVEL: 'silent',
      FAROL_PROCESSOR_FLUSH_MS: '60000',
      FAROL_PROCESSOR_FLUSH_RECORDS: '100000',
    });
    const sites = ['bounds.test'];
    const traffic = generateTraffic({ sites, visitorsPerSite: 10, eventsPerVisitor: 10, start: Math.floor(Date.now() / HOUR) * HOUR - 2 * HOUR, seed: 22 });
    const writer = await openLocalHub({ dir: join(dataDir, 'hub'), partitions: PARTITIONS });
    await publish(writer, traffic);
    const listening = process.listenerCount('SIGTERM');
    const exit = runProcessor(config);
    // Running (its SIGTERM handler installed once the store is migrated and the hub open), then
    // long enough for the defaults (1 s, 10,000 records) to have logged these few records.
    await waitFor(() => process.listenerCount('SIGTERM') > listening, 'the processor to start');
    await new Promise((r) => setTimeout(r, 3_000));
    expect(await lastLogged(dataDir)).toEqual(Array.from({ length: PARTITIONS }, () => -1));
    process.emit('SIGTERM', 'SIGTERM');
    expect(await exit).toBe(0);
    await writer.close();
    await expectStored(dataDir, config.FAROL_CLICKHOUSE_DATABASE, sites, traffic);
  });
});
