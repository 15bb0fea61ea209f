import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openLocalHub, type LocalHub } from '../hub/local-hub.ts';
import { loadConfig } from '../schemas/config.ts';
import { openChdbStore } from '../store/chdb-store.ts';
import { migrate } from '../store/migrate.ts';
import { pollUntil, sleep } from './support/e2e.ts';
import { startFarolProcessor, type FarolChild } from './support/farol-process.ts';
import { rng } from '../schemas/testing/oracle.ts';
import { migrationTarget } from '../wiring/store.ts';
import { LOCAL_PROCESSOR_GROUP, processorStateDir } from '../processor/main.ts';
import { publish, removeTempDirs, tempDir } from '../processor/testing/harness.ts';
import { addPoisonConstraints, expectExact, mix } from '../processor/testing/poison.ts';

/**
 * `farol processor` as a child process, SIGKILLed while it sets records aside: right after a range's
 * dead letters were written (before its snapshot), and at random moments while it splits batches
 * ClickHouse refuses. Restarted on the same data dir each time, it ends with every good record
 * stored once and every dead letter written once.
 */

const HOUR = 3_600_000;
const PARTITIONS = 2;
const children: FarolChild[] = [];
const hubs: LocalHub[] = [];

afterAll(async () => {
  for (const c of children) c.child.kill('SIGKILL');
  await Promise.all(children.map((c) => c.exited));
  await Promise.all(hubs.map((h) => h.close()));
  await removeTempDirs();
});

/** The offset each partition's snapshot covers (-1 when none yet). */
async function snapshotted(dataDir: string): Promise<number[]> {
  const dir = processorStateDir(dataDir, LOCAL_PROCESSOR_GROUP);
  return Promise.all(
    Array.from({ length: PARTITIONS }, async (_, p) => {
      const text = await readFile(join(dir, `p-${p}.snapshot`), 'utf8').catch(() => undefined);
      return text === undefined ? -1 : (JSON.parse(text) as { offset: number }).offset;
    }),
  );
}

describe('farol processor killed while it writes dead letters', () => {
  it('stores every good record once and every dead letter once after SIGKILLs', async () => {
    const dataDir = await tempDir('dl-kill');
    const env = { FAROL_DATA_DIR: dataDir, FAROL_HUB_PARTITIONS: String(PARTITIONS), FAROL_LOG_LEVEL: 'info' };
    const config = loadConfig(env);
    // The schema and the constraints first, while no child holds the engine's directory.
    let store = openChdbStore({ dataDir, database: config.FAROL_CLICKHOUSE_DATABASE });
    await migrate(store, migrationTarget(config));
    await addPoisonConstraints(store);
    await store.close();

    const m = mix('dl-kill.test', 81, Math.floor(Date.now() / HOUR) * HOUR - 12 * HOUR, { unparseable: true, refused: true, exits: true });
    const writer = await openLocalHub({ dir: join(dataDir, 'hub'), partitions: PARTITIONS });
    hubs.push(writer);
    const random = rng(82);
    const rounds: Array<'after dead letters' | 'at random'> = ['after dead letters', 'at random', 'after dead letters', 'at random', 'at random'];
    const cuts = rounds.map((_, i) => Math.floor((i * m.all.length) / rounds.length));
    const start = async (): Promise<FarolChild> => {
      const c = await startFarolProcessor(env);
      children.push(c);
      return c;
    };
    let replays = 0;
    for (const [round, when] of rounds.entries()) {
      await publish(writer, m.all.slice(cuts[round], cuts[round + 1] ?? m.all.length));
      const c = await start();
      if (when === 'after dead letters') {
        // Right after a range's dead letters landed, before its snapshot.
        await pollUntil(async () => (c.output.some((l) => l.includes('"msg":"records set aside in dead_letters"')) ? true : undefined), {
          timeoutMs: 120_000,
          intervalMs: 5,
          describe: () => `dead letters:\n${c.output.slice(-10).join('\n')}`,
        });
      } else {
        // Somewhere in a flush: replaying what the last run left, splitting a batch, writing dead letters.
        await sleep(200 + Math.floor(random() * 2_500));
      }
      c.child.kill('SIGKILL');
      expect(await c.exited).toBe('SIGKILL');
      replays += c.output.filter((l) => /"msg":"partition opened"/.test(l) && !/"replayRanges":0/.test(l)).length;
    }
    // Kills landed between ranges being logged and snapshotted: restarts had ranges to replay.
    expect(replays).toBeGreaterThan(0);

    // The last run writes everything and drains.
    const ends = await Promise.all(Array.from({ length: PARTITIONS }, (_, p) => writer.endOffset(p)));
    const last = await start();
    await pollUntil(async () => ((await snapshotted(dataDir)).every((o, p) => o === (ends[p] ?? 0) - 1) ? true : undefined), {
      timeoutMs: 300_000,
      intervalMs: 500,
      describe: () => `every record written:\n${last.output.slice(-10).join('\n')}`,
    });
    last.child.kill('SIGTERM');
    expect(await last.exited).toBe(0);

    store = openChdbStore({ dataDir, database: config.FAROL_CLICKHOUSE_DATABASE });
    try {
      await expectExact(store, m);
    } finally {
      await store.close();
    }
  }, 600_000);
});
