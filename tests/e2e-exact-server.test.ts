import { describe, it } from 'vitest';
import { rng } from '../schemas/testing/oracle.ts';
import { nearMidnightUtc, postBatch, sendAllOnce, sleep, waitForProcessor } from './support/e2e.ts';
import { expectExactCounts } from './support/exact-assert.ts';
import { rawCounts } from './support/exact-counts.ts';
import { serverModeSuite } from './support/server-mode.ts';
import type { WireBatch } from './support/wire-oracle.ts';

/**
 * `farol start` on a ClickHouse server (FAROL_CLICKHOUSE_URL → a chDB-backed HTTP endpoint in a
 * child process), checked against the wire oracle while it runs: the ~20k-event oracle run, and a
 * client that resends whole batches whose 202 it never saw. Each test has its own database and
 * data dir; the test process opens no chDB directory.
 */

const SITES = ['a.test', 'b.test', 'c.test'];
const PARTITIONS = 4;

// The two tests share only the ClickHouse endpoint (a database, a farol and traffic each): they
// run side by side.
describe.skipIf(nearMidnightUtc(10)).concurrent('exact counts end to end: ClickHouse over HTTP', () => {
  const suite = serverModeSuite({ name: 'e2e', sites: SITES, partitions: PARTITIONS });

  it('20k events via /api/batch: raw counts, sessions and rollups equal the truth exactly', async ({ expect }) => {
    // The traffic is computed while the child process starts.
    const [{ truth, plans }, { proc, store }] = await Promise.all([suite.traffic(7_100, 20_000, 'srv'), suite.start('farol_oracle')]);
    const sent = await sendAllOnce(proc.url, plans);
    expect(sent.failures).toEqual([]);
    expect(sent.events).toBe(truth.totalEvents);

    const progress = await waitForProcessor(proc.metricsUrl, { partitions: PARTITIONS, eventRows: truth.totalEvents, timeoutMs: 120_000 });
    expect(progress).toMatchObject({ eventRows: truth.totalEvents, duplicates: 0, ingested: truth.totalEvents });
    await expectExactCounts(store, truth, expect);

    // Draining writes nothing more (everything was already flushed) and exits cleanly.
    proc.child.kill('SIGTERM');
    expect(await proc.exited).toBe(0);
    expect(await rawCounts(store)).toEqual(truth.sites);
  }, 180_000);

  it('a client resending whole batches (same ids) after lost 202s: every event counts once', async ({ expect }) => {
    const [{ truth, plans }, { proc, store }] = await Promise.all([suite.traffic(7_200, 12_000, 'rty'), suite.start('farol_retry')]);
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
    await expectExactCounts(store, truth, expect);
    proc.child.kill('SIGTERM');
    expect(await proc.exited).toBe(0);
  }, 180_000);
});
