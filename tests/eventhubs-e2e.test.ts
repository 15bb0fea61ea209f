import type { ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ControlPlane } from '../api/control/control-plane.ts';
import { openHttpStore } from '../store/http-store.ts';
import type { Store } from '../store/store.ts';
import type { ClickHouseHttp } from '../store/testing/clickhouse-http.ts';
import { geoCountries, nearMidnightUtc, postBatch, sleep } from './support/e2e.ts';
import type { Azurite } from '../hub/testing/eventhubs/azurite.ts';
import type { EventHubsBroker } from '../hub/testing/eventhubs/broker.ts';
import { startEventHubsStack } from './support/eventhubs/stack.ts';
import { expectExactCounts } from './support/exact-assert.ts';
import { rawCounts } from './support/exact-counts.ts';
import { runFarol, startFarol, startFarolProcessor, type FarolChild, type FarolProcess } from './support/farol-process.ts';
import {
  BROWSER_UAS,
  computeWireTruth,
  generateWireTraffic,
  planBatches,
  type WireBatch,
  type WireTraffic,
  type WireTruth,
  type WireVisitor,
} from './support/wire-oracle.ts';

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

interface Exiting {
  name: string;
  exited: Promise<number | string>;
  output: readonly string[];
}

/**
 * Waits for every child to exit, logging each exit as it happens. Past `timeoutMs`, fails naming
 * the children still running, with the tail of each one's output: a drain that hangs says where.
 */
async function exitCodes(children: readonly Exiting[], timeoutMs: number): Promise<Array<number | string>> {
  const started = Date.now();
  const codes = new Map<string, number | string>();
  const all = Promise.all(
    children.map(async (c) => {
      const code = await c.exited;
      codes.set(c.name, code);
      console.log(`${c.name} exited (${code}) ${Date.now() - started} ms after SIGTERM`);
      return code;
    }),
  );
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const stuck = children.filter((c) => !codes.has(c.name));
      const report = stuck.map((c) => `--- ${c.name} did not exit; last output lines:\n${c.output.slice(-40).join('\n')}`);
      reject(new Error(`${stuck.map((c) => c.name).join(', ')} did not exit within ${timeoutMs} ms of SIGTERM\n${report.join('\n')}`));
    }, timeoutMs);
  });
  try {
    return await Promise.race([all, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Structured log lines of a child with this message. */
function logLines(output: readonly string[], msg: string): Array<Record<string, unknown>> {
  const out: Array<Record<string, unknown>> = [];
  for (const line of output) {
    if (!line.includes(`"msg":"${msg}"`)) continue;
    try {
      out.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      // not JSON
    }
  }
  return out;
}

describe.skipIf(nearMidnightUtc(10))('Farol on Event Hubs: 2 collectors, 3 processors, one ClickHouse', () => {
  const dirs: string[] = [];
  const children: ChildProcess[] = [];
  let broker: EventHubsBroker | undefined;
  let azurite: Azurite | undefined;
  let clickhouse: ClickHouseHttp | undefined;
  let store: Store | undefined;
  let collectors: FarolProcess[] = [];
  let processors: FarolChild[] = [];
  /** Everything sent so far, and the countries of its IPs. */
  const visitors: WireVisitor[] = [];
  const countries = new Map<string, string>();
  let baseEnv: Record<string, string> = {};

  async function tempDir(prefix: string): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), prefix));
    dirs.push(dir);
    return dir;
  }

  beforeAll(async () => {
    const stack = await startEventHubsStack({ name: 'farol-eh', hubName: HUB, partitions: PARTITIONS, tempDir });
    broker = stack.broker;
    azurite = stack.azurite;
    clickhouse = stack.clickhouse;
    baseEnv = {
      FAROL_HUB: 'eventhubs',
      FAROL_EVENTHUBS_CONNECTION_STRING: broker.connectionString,
      FAROL_EVENTHUBS_NAME: HUB,
      FAROL_CHECKPOINT_CONNECTION_STRING: azurite.connectionString,
      FAROL_CHECKPOINT_CONTAINER: CONTAINER,
      FAROL_CLICKHOUSE_URL: clickhouse.url,
      FAROL_CLICKHOUSE_DATABASE: DATABASE,
      FAROL_LOG_LEVEL: 'info',
    };
    // Once, before the processors: three of them migrating at once would only repeat the work.
    const migrated = await runFarol(['migrate'], { ...baseEnv, FAROL_DATA_DIR: await tempDir('farol-eh-migrate-') });
    expect(migrated.code, migrated.stderr).toBe(0);
    store = openHttpStore({ url: clickhouse.url, username: 'default', password: '', database: DATABASE });
    // Collectors on a ClickHouse server accept the sites registered in it (polled from the sites table).
    const control = new ControlPlane(store);
    const account = await control.createAccount({ name: 'eventhubs-e2e' });
    for (const domain of ['one-a.test', 'one-b.test', 'one-c.test', 'two-a.test', 'two-b.test', 'three-a.test', 'three-b.test', 'full.test']) {
      await control.addSite(account.id, { domain });
    }

    const processorEnv = {
      ...baseEnv,
      FAROL_EVENTHUBS_UPDATE_INTERVAL_MS: '1000',
      FAROL_EVENTHUBS_OWNERSHIP_EXPIRY_MS: '5000',
    };
    processors = await Promise.all(
      [0, 1, 2].map(async (i) => {
        const p = await startFarolProcessor({ ...processorEnv, FAROL_DATA_DIR: await tempDir(`farol-eh-processor-${i}-`) });
        children.push(p.child);
        return p;
      }),
    );
    collectors = await Promise.all(
      [0, 1].map(async (i) => {
        const c = await startFarol('collector', {
          ...baseEnv,
          FAROL_DATA_DIR: await tempDir(`farol-eh-collector-${i}-`),
          FAROL_TRUST_PROXY: '127.0.0.1/32',
          FAROL_EVENTHUBS_SEND_TIMEOUT_MS: '2000',
        });
        children.push(c.child);
        return c;
      }),
    );
  }, 120_000);

  afterAll(async () => {
    for (const c of children) c.kill('SIGKILL');
    await Promise.all(children.map((c) => (c.exitCode === null && c.signalCode === null ? new Promise((r) => c.once('exit', r)) : null)));
    await store?.close();
    await Promise.all([broker?.stop(), azurite?.stop(), clickhouse?.stop()]);
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  }, 60_000);

  /** New traffic on its own sites; its truth is added to everything sent before. */
  async function addTraffic(
    seed: number,
    sites: string[],
    targetEvents: number,
    batchSize = 50,
  ): Promise<{ plans: WireBatch[][]; truth: WireTruth }> {
    const traffic = generateWireTraffic({ seed, sites, targetEvents, idPrefix: `eh${seed}` });
    for (const [ip, country] of await geoCountries(traffic.ips)) countries.set(ip, country);
    visitors.push(...traffic.visitors);
    const all: WireTraffic = { visitors, events: visitors.reduce((n, v) => n + v.events.length, 0), ips: [...countries.keys()] };
    return {
      // Four senders; a visitor belongs to one sender, and a sender to one collector (each
      // collector has its own salts, so a visitor split between two would be two visitors).
      plans: planBatches(traffic, { senders: 4, batchSize, seed: seed + 1 }),
      truth: computeWireTruth(all, (ip) => countries.get(ip) ?? ''),
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

  /** Waits until the raw counts equal the truth and stay equal, then checks everything exactly. */
  async function expectEventually(truth: WireTruth, timeoutMs: number): Promise<void> {
    if (store === undefined) throw new Error('no store');
    const end = Date.now() + timeoutMs;
    let matchedAt: number | undefined;
    while (Date.now() < end) {
      if (isDeepStrictEqual(await rawCounts(store), truth.sites)) {
        matchedAt ??= Date.now();
        // Still equal 3 s later: nothing (a late duplicate) was on its way.
        if (Date.now() - matchedAt >= 3_000) break;
      } else {
        matchedAt = undefined;
      }
      await sleep(500);
    }
    await expectExactCounts(store, truth);
  }

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
    if (broker === undefined) throw new Error('no broker');
    const b = broker;
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
    if (store === undefined) throw new Error('no store');
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
      ...baseEnv,
      FAROL_EVENTHUBS_NAME: 'no-such-hub',
      FAROL_SPOOL_MAX_BYTES: '40000',
      FAROL_DATA_DIR: await tempDir('farol-eh-full-'),
    });
    children.push(c.child);
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
    const r = await runFarol(['processor'], { ...baseEnv, FAROL_CHECKPOINT_CONNECTION_STRING: '', FAROL_DATA_DIR: await tempDir('farol-eh-bad-') });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('FAROL_CHECKPOINT_CONNECTION_STRING');
  });
});
