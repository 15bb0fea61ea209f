import { beforeAll, describe, expect, it } from 'vitest';
import { ControlPlane } from '../control/control-plane.ts';
import { nearMidnightUtc, postBatch, sleep } from './support/e2e.ts';
import { eventHubsSuite } from './support/eventhubs/suite.ts';
import { rawCounts } from './support/exact-counts.ts';
import { exitCodes, logLines, runFarol, startFarol, startFarolProcessor, type FarolChild, type FarolProcess } from './support/farol-process.ts';
import { BROWSER_UAS, generateWireTraffic, planBatches, type WireBatch, type WireTruth } from './support/wire-oracle.ts';

/**
 * Farol on Event Hubs, every part a real process: two `farol collector`s publish to the Event
 * Hubs test broker (the real @azure/event-hubs SDK speaking AMQP to it), three `farol processor`s
 * share its partitions through blob checkpoints on Azurite and write one ClickHouse store (a
 * chDB-backed HTTP endpoint in a child process). The truth is the wire oracle's. The tests run in
 * order on one deployment, each on its own sites, and the truth accumulates: every check covers
 * everything sent so far.
 */

const HUB = 'farol-events';
const PARTITIONS = 8;
const DATABASE = 'farol_eh';
const CONTAINER = 'farol-checkpoints';

describe.skipIf(nearMidnightUtc(10))('Farol on Event Hubs: 2 collectors, 3 processors, one ClickHouse', () => {
  const suite = eventHubsSuite({ name: 'farol-eh', hubName: HUB, partitions: PARTITIONS, database: DATABASE, container: CONTAINER });
  let collectors: FarolProcess[] = [];
  let processors: FarolChild[] = [];

  beforeAll(async () => {
    const { store, storeEnv, processorEnv } = suite.deployment();
    // Collectors on a ClickHouse server accept the sites registered in it (polled from the sites table).
    const control = new ControlPlane(store);
    const account = await control.createAccount({ name: 'eventhubs-e2e' });
    for (const domain of ['one-a.test', 'one-b.test', 'one-c.test', 'two-a.test', 'two-b.test', 'three-a.test', 'three-b.test', 'full.test']) {
      await control.addSite(account.id, { domain });
    }
    processors = await Promise.all(
      [0, 1, 2].map(async (i) => {
        const p = await startFarolProcessor({ ...processorEnv, FAROL_DATA_DIR: await suite.tempDir(`farol-eh-processor-${i}-`) });
        suite.track(p.child);
        return p;
      }),
    );
    collectors = await Promise.all(
      [0, 1].map(async (i) => {
        const c = await startFarol('collector', {
          ...storeEnv,
          FAROL_DATA_DIR: await suite.tempDir(`farol-eh-collector-${i}-`),
          FAROL_TRUST_PROXY: '127.0.0.1/32',
          FAROL_EVENTHUBS_SEND_TIMEOUT_MS: '2000',
        });
        suite.track(c.child);
        return c;
      }),
    );
  }, 120_000);

  /** New traffic on its own sites; its truth is added to everything sent before. */
  async function addTraffic(
    seed: number,
    sites: string[],
    targetEvents: number,
    batchSize = 50,
  ): Promise<{ plans: WireBatch[][]; truth: WireTruth }> {
    const traffic = generateWireTraffic({ seed, sites, targetEvents, idPrefix: `eh${seed}` });
    return {
      // Four senders; a visitor belongs to one sender, and a sender to one collector (each
      // collector has its own salts, so a visitor split between two would be two visitors).
      plans: planBatches(traffic, { senders: 4, batchSize, seed: seed + 1 }),
      truth: await suite.sent(traffic),
    };
  }

  const collectorOf = (sender: number): FarolProcess => collectors[sender % 2] as FarolProcess;

  /**
   * Sends every plan (senders concurrently, each in order, `gapMs` between batches), requiring
   * `202 {"accepted": n}` for every batch. `onProgress` sees the share of batches answered.
   */
  async function send(plans: WireBatch[][], gapMs: number, onProgress: (done: number) => void = () => {}): Promise<string[]> {
    const failures: string[] = [];
    const total = plans.reduce((n, p) => n + p.length, 0);
    let answered = 0;
    await Promise.all(
      plans.map(async (batches, sender) => {
        for (const b of batches) {
          const r = await postBatch(collectorOf(sender).url, b);
          if (!r.ok || r.status !== 202 || r.accepted !== b.events.length) failures.push(`sender ${sender} batch ${b.seq}: ${JSON.stringify(r)}`);
          onProgress(++answered / total);
          if (gapMs > 0) await sleep(gapMs);
        }
      }),
    );
    return failures;
  }

  /** Everything sent so far lands, and stays so 3 s later: nothing (a late duplicate) was on its way. */
  const expectEventually = (truth: WireTruth, timeoutMs: number): Promise<void> => suite.expectLanded(truth, { timeoutMs, stableMs: 3_000 });

  it('end to end: every event lands exactly once, counted per site from raw rows, sessions and rollups', async () => {
    const { plans, truth } = await addTraffic(9_100, ['one-a.test', 'one-b.test', 'one-c.test'], 3_000);
    expect(await send(plans, 0)).toEqual([]);
    await expectEventually(truth, 60_000);
    // The three processors shared the work.
    for (const p of processors) expect(logLines(p.output, 'partition opened').length).toBeGreaterThan(0);
  }, 120_000);

  it('failover: a processor SIGKILLed mid-stream has its partitions taken over, counts stay exact', async () => {
    const { plans, truth } = await addTraffic(9_200, ['two-a.test', 'two-b.test'], 4_000);
    const victim = processors[0] as FarolChild;
    const survivors = processors.slice(1);
    const openedBefore = survivors.map((p) => logLines(p.output, 'partition opened').length);
    let killed = false;
    const failures = await send(plans, 40, (done) => {
      if (!killed && done >= 0.4) {
        killed = true;
        victim.child.kill('SIGKILL');
      }
    });
    expect(failures).toEqual([]);
    expect(await victim.exited).toBe('SIGKILL');
    processors = survivors;
    await expectEventually(truth, 90_000);
    // The survivors opened partitions after the kill: the victim's.
    const openedAfter = survivors.map((p) => logLines(p.output, 'partition opened').length);
    expect(openedAfter.reduce((a, b) => a + b, 0)).toBeGreaterThan(openedBefore.reduce((a, b) => a + b, 0));
  }, 150_000);

  it('Event Hubs down for 20 s under load: collectors spool and answer 202 throughout; afterwards every event lands once', async () => {
    const b = suite.deployment().broker;
    // Small batches, paced so that the stream runs before, during and after the outage.
    const { plans, truth } = await addTraffic(9_300, ['three-a.test', 'three-b.test'], 5_000, 25);
    const readyDuringOutage: number[] = [];
    let phase: 'before' | 'down' | 'after' = 'before';
    const answeredIn = { before: 0, down: 0, after: 0 };
    const outage = (async () => {
      await sleep(4_000);
      await b.stop();
      phase = 'down';
      await sleep(5_000);
      for (const c of collectors) readyDuringOutage.push((await fetch(`${c.url}/readyz`)).status);
      await sleep(15_000);
      await b.start();
      phase = 'after';
    })();
    const failures = await send(plans, 500, () => answeredIn[phase]++);
    await outage;
    expect(failures).toEqual([]);
    expect(answeredIn.before).toBeGreaterThan(0);
    expect(answeredIn.down).toBeGreaterThan(50);
    expect(answeredIn.after).toBeGreaterThan(0);
    // Spooling collectors report not ready (a load balancer would prefer others), yet take events.
    expect(readyDuringOutage).toEqual([503, 503]);
    await expectEventually(truth, 120_000);
    for (const c of collectors) expect((await fetch(`${c.url}/readyz`)).status).toBe(200);
    expect(collectors.flatMap((c) => logLines(c.output, 'spool replayed; sending directly again'))).not.toEqual([]);
  }, 180_000);

  it('SIGTERM drains every process cleanly (exit 0), and draining writes nothing twice', async () => {
    const { store } = suite.deployment();
    let started = Date.now();
    const before = await rawCounts(store);
    // Under load the counts query alone can take seconds: the log tells it apart from a slow drain.
    console.log(`counts before the drain read in ${Date.now() - started} ms`);
    for (const c of collectors) c.child.kill('SIGTERM');
    const collectorCodes = await exitCodes(collectors.map((c, i) => ({ name: `collector ${i} (pid ${c.child.pid})`, ...c })), 30_000);
    expect(collectorCodes).toEqual([0, 0]);
    for (const p of processors) p.child.kill('SIGTERM');
    const processorCodes = await exitCodes(processors.map((p, i) => ({ name: `processor ${i} (pid ${p.child.pid})`, ...p })), 30_000);
    expect(processorCodes).toEqual(processors.map(() => 0));
    started = Date.now();
    const after = await rawCounts(store);
    console.log(`counts after the drain read in ${Date.now() - started} ms`);
    expect(after).toEqual(before);
    // Each drain is bounded (30 s above, well past what a clean one takes); the rest of the budget
    // is for the two counts reads, 6 queries each, which take seconds apiece on a loaded machine.
  }, 120_000);

  it('a collector whose spool is full answers 503 with Retry-After', async () => {
    // An event hub that does not exist: nothing is ever sent, everything spools.
    const c = await startFarol('collector', {
      ...suite.deployment().storeEnv,
      FAROL_EVENTHUBS_NAME: 'no-such-hub',
      FAROL_SPOOL_MAX_BYTES: '40000',
      FAROL_DATA_DIR: await suite.tempDir('farol-eh-full-'),
    });
    suite.track(c.child);
    const body = JSON.stringify(Array.from({ length: 20 }, (_, i) => ({ n: 'pageview', u: `https://full.test/p${i}`, d: 'full.test' })));
    let refused: Response | undefined;
    for (let i = 0; i < 50 && refused === undefined; i++) {
      const res = await fetch(`${c.url}/api/batch`, { method: 'POST', body, headers: { 'content-type': 'application/json', 'user-agent': BROWSER_UAS[0] ?? '' } });
      if (res.status === 202) await res.arrayBuffer();
      else refused = res;
    }
    expect(refused?.status).toBe(503);
    expect(refused?.headers.get('retry-after')).toBe('5');
    expect(await refused?.json()).toMatchObject({ error: { code: 'ING_HUB_UNAVAILABLE' } });
    expect((await fetch(`${c.url}/readyz`)).status).toBe(503);
    c.child.kill('SIGKILL');
  });

  it('a processor without blob storage settings refuses to start, naming the variable', async () => {
    const r = await runFarol(['processor'], { ...suite.deployment().storeEnv, FAROL_CHECKPOINT_CONNECTION_STRING: '', FAROL_DATA_DIR: await suite.tempDir('farol-eh-bad-') });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('FAROL_CHECKPOINT_CONNECTION_STRING');
  });
});
