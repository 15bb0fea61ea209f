import { afterAll, beforeAll, expect } from 'vitest';
import type { HubConsumer } from '../../hub/hub.ts';
import { openLocalHub, type LocalHub } from '../../hub/local-hub.ts';
import { silentLogger } from '../../lib/log.ts';
import { Registry } from '../../lib/metrics.ts';
import type { EnrichedEvent } from '../../schemas/enriched-event.ts';
import { StoreError, type InsertOptions, type Store } from '../../store/store.ts';
import { computeTruth, type Truth } from '../../schemas/testing/oracle.ts';
import { openTestStore as openStoreForTest, removeTempDirs, tempDir } from '../../store/testing/store.ts';
import { startProcessor, type ProcessorOptions, type ProcessorRuntime } from '../main.ts';
import { storedVisitors } from '../salt-days.ts';
import type { SiteEpochs } from '../site-epochs.ts';
import { openFileStateStore } from '../state-store.ts';
import type { StateStore } from '../state-store.ts';

/** Test helpers for the processor: a real chDB store, hub publishing, truth checks, failure injection. */

export const database = 'farol_processor_test';

export const HOUR = 3_600_000;
/** Where the tests' traffic starts: recent, so rows sit well inside the retention TTL; hour-aligned so rollup buckets are stable. */
export const base = Math.floor(Date.now() / HOUR) * HOUR - 12 * HOUR;

export { removeTempDirs, tempDir };

/** A processor started by {@link runProcessorOn}. */
export interface RunningProcessor {
  hub: LocalHub;
  stateStore: StateStore;
  processor: ProcessorRuntime;
  registry: Registry;
  /** Drains the processor, then closes its consumer and state store. */
  stop(): Promise<void>;
}

/** A processor on `hub` with its file state in `stateDir`, writing to `opts.store`. */
export async function runProcessorOn(
  hub: LocalHub,
  stateDir: string,
  opts: { store: Store; options: Partial<ProcessorOptions>; registry?: Registry; siteEpochs?: SiteEpochs },
): Promise<RunningProcessor> {
  const consumer = await hub.openConsumer('processor');
  const stateStore = await openFileStateStore(stateDir);
  const registry = opts.registry ?? new Registry();
  const processor = startProcessor({
    consumer,
    store: opts.store,
    stateStore,
    log: silentLogger,
    metrics: registry,
    options: opts.options,
    ...(opts.siteEpochs === undefined ? {} : { siteEpochs: opts.siteEpochs }),
  });
  return {
    hub,
    stateStore,
    processor,
    registry,
    async stop() {
      await processor.drain();
      await consumer.close();
      await stateStore.close();
    },
  };
}

/** Small flushes and frequent snapshots, so a few hundred events cross many of each. */
export const crashTestOptions: Partial<ProcessorOptions> = {
  flushRecords: 150,
  flushIntervalMs: 20,
  snapshotIntervalMs: 30,
  hubBatchSize: 60,
  retryInitialMs: 10,
  retryMaxMs: 100,
  lagRefreshMs: 50,
};

/** A read-only view of the hub at `dir`, as a separate `farol processor` process opens it. */
export function hubReader(dir: string, partitions: number): Promise<LocalHub> {
  return openLocalHub({ dir, partitions, readOnly: true, pollMs: 10 });
}

/**
 * Runs a processor on the hub at `hubDir` and the state in `stateDir` until it "crashes" at `at`
 * (see {@link Freezer}): resolves once nothing after that point can happen any more. Its hub view
 * is left open, as a killed process leaves it.
 */
export async function runUntilCrash(opts: {
  hubDir: string;
  stateDir: string;
  partitions: number;
  store: Store;
  at: ConstructorParameters<typeof Freezer>[0];
  options: Partial<ProcessorOptions>;
  siteEpochs?: SiteEpochs;
  timeoutMs?: number;
}): Promise<Freezer> {
  const freezer = new Freezer(opts.at);
  const consumer = await (await hubReader(opts.hubDir, opts.partitions)).openConsumer('processor');
  startProcessor({
    consumer: freezer.consumer(consumer),
    store: freezer.store(opts.store),
    stateStore: freezer.stateStore(await openFileStateStore(opts.stateDir)),
    log: silentLogger,
    metrics: new Registry(),
    options: opts.options,
    ...(opts.siteEpochs === undefined ? {} : { siteEpochs: opts.siteEpochs }),
  });
  const timeoutMs = opts.timeoutMs ?? 20_000;
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([freezer.crashed, new Promise((_, reject) => (timer = setTimeout(() => reject(new Error('no crash')), timeoutMs)))]);
  } finally {
    clearTimeout(timer);
  }
  return freezer;
}

/** Embedded chDB on a temp dir, migrated. One per test file: chDB binds one directory per process. */
export async function openTestStore(): Promise<Store> {
  return openStoreForTest(database);
}

/**
 * The set-up of a processor test file: one embedded chDB store, opened and migrated (then
 * `prepare`d) before the file's first test; after its last, the hubs handed to `closeAfter`, the
 * store and every temp dir are closed and removed. `store` stands for that store from the first
 * test on.
 */
export function processorTestFile(opts: { prepare?: (store: Store) => Promise<void> } = {}): { store: Store; closeAfter(hub: LocalHub): void } {
  let opened: Store | undefined;
  const hubs: LocalHub[] = [];
  beforeAll(async () => {
    opened = await openTestStore();
    await opts.prepare?.(opened);
  });
  afterAll(async () => {
    // Hubs left open (a frozen instance's read-only view) are closed as a killed process's would be.
    await Promise.all(hubs.splice(0).map((h) => h.close()));
    await opened?.close();
    await removeTempDirs();
  });
  const store = new Proxy({} as Store, {
    get(_target, prop) {
      if (opened === undefined) throw new Error('the test store is opened before the first test');
      const value: unknown = Reflect.get(opened, prop, opened);
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(opened) : value;
    },
  });
  return { store, closeAfter: (hub) => void hubs.push(hub) };
}

/** Publishes events the way the collector does: keyed by site and visitor, JSON payloads. */
export async function publish(hub: LocalHub, events: readonly EnrichedEvent[]): Promise<void> {
  for (let i = 0; i < events.length; i += 500) {
    await hub.publish(
      events.slice(i, i + 500).map((e) => ({ key: `${e.site}:${e.visitorId}`, payload: Buffer.from(JSON.stringify(e)) })),
    );
  }
}

/**
 * Writes `events` into `store` the production way: a local hub on a temp dir, a processor with its
 * file state, `chunk` events published at a time, each written before the next arrives (so sessions
 * running across chunks are stored as a first state, then −1/+1 pairs); then drains and closes it all.
 */
export async function writeThroughProcessor(
  store: Store,
  events: readonly EnrichedEvent[],
  opts: { partitions: number; chunk: number; options: Partial<ProcessorOptions> },
): Promise<void> {
  const hub = await openLocalHub({ dir: await tempDir('hub'), partitions: opts.partitions });
  const consumer = await hub.openConsumer('processor');
  const stateStore = await openFileStateStore(await tempDir('state'));
  const processor = startProcessor({ consumer, store, stateStore, log: silentLogger, metrics: new Registry(), options: opts.options });
  const stored = async (): Promise<number> => Number((await store.query<{ n: string }>('SELECT count() AS n FROM events'))[0]?.n);
  // Events already stored (an earlier call): this call's count on top of them.
  const before = await stored();
  for (let i = 0; i < events.length; i += opts.chunk) {
    await publish(hub, events.slice(i, i + opts.chunk));
    const expected = before + computeTruth(events.slice(0, i + opts.chunk)).stored.length;
    await waitFor(
      async () => (await stored()) === expected,
      'the processor to write the chunk',
      60_000,
    );
  }
  await waitFor(() => caughtUp(processor.lag, opts.partitions), 'the processor to catch up', 60_000);
  await processor.drain();
  await consumer.close();
  await stateStore.close();
  await hub.close();
}

export async function waitFor(cond: () => boolean | Promise<boolean>, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** True once every partition of the hub is open and written up to its end. */
export async function caughtUp(lag: () => Promise<Array<{ events: number }>>, partitions: number): Promise<boolean> {
  const all = await lag();
  return all.length === partitions && all.every((p) => p.events === 0);
}

/** A counter's value as rendered in the Prometheus text (0 when absent). */
export function metricValue(registry: Registry, name: string, labels = ''): number {
  const line = registry
    .render()
    .split('\n')
    .find((l) => l.startsWith(`${name}${labels} `));
  return line === undefined ? 0 : Number(line.split(' ')[1]);
}

type Row = Record<string, string | number>;

const num = (rows: Row[]): Row[] =>
  rows.map((r) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, k === 'site' || k === 'value' || k === 'visitor' ? v : Number(v)])));

/**
 * Asserts that `events`, `sessions` and the rollups hold exactly the truth for `sites`: totals per
 * site, every session netting to one row equal to the oracle's, and rollup totals equal too.
 */
export async function expectStoreMatchesTruth(store: Store, sites: readonly string[], truth: Truth): Promise<void> {
  const params = { sites: [...sites] };
  const expected = [...sites].sort().map((site) => ({ site, ...(truth.sites.get(site) ?? {}) }));

  const events = num(
    await store.query<Row>(
      `SELECT site, count() AS events, countIf(name = 'pageview') AS pageviews, uniqExact(visitor_id) AS visitors
       FROM events WHERE site IN {sites:Array(String)} GROUP BY site ORDER BY site`,
      params,
    ),
  );
  expect(events).toEqual(expected.map((t) => ({ site: t.site, events: t.events, pageviews: t.pageviews, visitors: t.visitors })));

  const sessions = num(
    await store.query<Row>(
      `SELECT site, sum(sign) AS visits, sum(sign * is_bounce) AS bounces, sum(sign * duration) AS duration
       FROM sessions WHERE site IN {sites:Array(String)} GROUP BY site ORDER BY site`,
      params,
    ),
  );
  expect(sessions).toEqual(expected.map((t) => ({ site: t.site, visits: t.visits, bounces: t.bounces, duration: t.duration })));

  // Each session nets to exactly one state, and that state is the oracle's.
  const perSession = num(
    await store.query<Row>(
      `SELECT site, toString(visitor_id) AS visitor, sum(sign) AS n, sum(sign * toUnixTimestamp64Milli(start)) AS start,
              sum(sign * pageviews) AS pageviews, sum(sign * events) AS events, sum(sign * is_bounce) AS bounce,
              sum(sign * duration) AS duration
       FROM sessions WHERE site IN {sites:Array(String)} GROUP BY site, session_id, visitor_id`,
      params,
    ),
  );
  expect(perSession.filter((s) => s['n'] !== 1)).toEqual([]);
  const key = (s: Row): string => JSON.stringify([s['site'], s['visitor'], s['start'], s['pageviews'], s['events'], s['bounce'], s['duration']]);
  const oracle = truth.sessions
    .filter((s) => sites.includes(s.site))
    .map((s) => ({ site: s.site, visitor: s.visitorId, start: s.start, pageviews: s.pageviews, events: s.events, bounce: s.bounce, duration: s.duration }));
  expect(perSession.map(key).sort()).toEqual(oracle.map(key).sort());

  const eventRollup = num(
    await store.query<Row>(
      `SELECT site, sum(events) AS events, sum(pageviews) AS pageviews
       FROM rollup_hourly WHERE site IN {sites:Array(String)} AND dim = '' GROUP BY site ORDER BY site`,
      params,
    ),
  );
  // Unique visitors as the planner reads them: closed salt days, and raw rows of the open ones.
  const visitors = new Map((await storedVisitors(store, { sites, side: 'event', dims: [''] })).map((r) => [r.site, r.visitors]));
  expect(eventRollup.map((r) => ({ ...r, visitors: visitors.get(String(r['site'])) ?? 0 }))).toEqual(events);
  const sessionRollup = num(
    await store.query<Row>(
      `SELECT site, sum(visits) AS visits, sum(bounces) AS bounces, sum(duration) AS duration
       FROM sessions_daily WHERE site IN {sites:Array(String)} AND dim = '' GROUP BY site ORDER BY site`,
      params,
    ),
  );
  expect(sessionRollup).toEqual(sessions);

  const entryPages = num(
    await store.query<Row>(
      `SELECT site, value, sum(visits) AS visits FROM sessions_hourly
       WHERE site IN {sites:Array(String)} AND dim = 'entry_page' GROUP BY site, value HAVING visits != 0 ORDER BY site, value`,
      params,
    ),
  );
  const trueEntries = new Map<string, number>();
  for (const s of truth.sessions.filter((x) => sites.includes(x.site))) {
    const k = JSON.stringify([s.site, s.entryPage]);
    trueEntries.set(k, (trueEntries.get(k) ?? 0) + 1);
  }
  const trueEntryRows = [...trueEntries]
    .map(([k, visits]) => {
      const [site, value] = JSON.parse(k) as [string, string];
      return { site, value, visits };
    })
    .sort((a, b) => (a.site === b.site ? (a.value < b.value ? -1 : 1) : a.site < b.site ? -1 : 1));
  expect(entryPages).toEqual(trueEntryRows);
}

/**
 * A real store whose inserts fail on demand: `down` refuses them (ClickHouse unreachable), and
 * `loseAcks` performs them and then reports a failure (the acknowledgement was lost).
 */
export class FlakyStore implements Store {
  down = false;
  loseAcks = 0;
  failures = 0;
  readonly inserts: Array<{ table: string; rows: number; token: string | undefined }> = [];

  constructor(private readonly inner: Store) {}

  get kind(): Store['kind'] {
    return this.inner.kind;
  }

  get database(): string {
    return this.inner.database;
  }

  exec(...args: Parameters<Store['exec']>): Promise<void> {
    return this.inner.exec(...args);
  }

  query<T = Record<string, unknown>>(...args: Parameters<Store['query']>): Promise<T[]> {
    return this.inner.query<T>(...args);
  }

  async insert(table: string, rows: readonly Record<string, unknown>[], opts?: InsertOptions): Promise<void> {
    if (this.down) {
      this.failures++;
      throw new StoreError('ClickHouse request failed: connect ECONNREFUSED', { retryable: true });
    }
    await this.inner.insert(table, rows, opts);
    this.inserts.push({ table, rows: rows.length, token: opts?.dedupToken });
    if (this.loseAcks > 0) {
      this.loseAcks--;
      this.failures++;
      throw new StoreError('ClickHouse request failed: socket hang up', { retryable: true });
    }
  }

  ping(): Promise<boolean> {
    return this.inner.ping();
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}

/** Steps of a flush at which a crash can be injected. */
export type CrashStep = 'intent' | 'insert:events' | 'insert:sessions' | 'insert:dead_letters' | 'snapshot' | 'checkpoint' | 'truncate';

/**
 * Simulates SIGKILL of one processor instance in-process: once `at` matches a step (counted over
 * the whole instance), that call and every later call of the instance's store, state store and
 * hub consumer hang forever, so nothing after that point ever happens. `when: 'after'` lets the
 * matching call reach the real component first (e.g. the insert landed, its ack was never seen).
 */
export class Freezer {
  frozen = false;
  /**
   * The steps of the crashing call's partition whose calls had begun and not returned when the
   * crash happened (the crashing one included).
   */
  readonly inFlightAtCrash = new Set<CrashStep>();
  /** Calls begun and not returned, by partition and step. */
  private readonly inFlight = new Map<string, number>();
  private readonly counts = new Map<CrashStep, number>();
  private onCrash: () => void = () => {};
  /** Resolves when the crash happened. */
  readonly crashed: Promise<void> = new Promise((resolve) => {
    this.onCrash = resolve;
  });

  /**
   * `overlapping`: the crash is at the first `step` call made while an insert of the same
   * partition is in flight (`nth` is then ignored), and every insert first waits
   * `insertDelayMs`, so that the next range is due while one is being inserted.
   */
  constructor(private readonly at: { step: CrashStep; nth: number; when: 'before' | 'after'; overlapping?: boolean; insertDelayMs?: number }) {}

  /** Runs `call` unless frozen; freezes before or after it when this is the chosen step. */
  async step<T>(step: CrashStep, partition: number, call: () => Promise<T>): Promise<T> {
    if (this.frozen) return hang();
    const n = (this.counts.get(step) ?? 0) + 1;
    this.counts.set(step, n);
    const hit = step === this.at.step && (this.at.overlapping === true ? this.insertsInFlight(partition) : n === this.at.nth);
    if (hit && this.at.when === 'before') return this.freeze(partition);
    const key = `${partition}\t${step}`;
    this.inFlight.set(key, (this.inFlight.get(key) ?? 0) + 1);
    let result: T;
    try {
      result = await call();
    } catch (err) {
      // A call the component refused also reached it (an insert ClickHouse rejected).
      if (hit || this.frozen) return this.freeze(partition);
      throw err;
    } finally {
      this.inFlight.set(key, (this.inFlight.get(key) ?? 1) - 1);
    }
    if (hit || this.frozen) return this.freeze(partition);
    return result;
  }

  private insertsInFlight(partition: number): boolean {
    for (const [key, n] of this.inFlight) if (n > 0 && key.startsWith(`${partition}\tinsert:`)) return true;
    return false;
  }

  private freeze<T>(partition: number): Promise<T> {
    if (!this.frozen) {
      for (const [key, n] of this.inFlight) {
        const [p, step] = key.split('\t');
        if (n > 0 && Number(p) === partition) this.inFlightAtCrash.add(step as CrashStep);
      }
    }
    this.frozen = true;
    this.onCrash();
    return hang();
  }

  store(inner: Store): Store {
    return {
      kind: inner.kind,
      database: inner.database,
      exec: (...args) => (this.frozen ? hang() : inner.exec(...args)),
      query: <T>(...args: Parameters<Store['query']>) => inner.query<T>(...args),
      insert: (table, rows, opts) =>
        this.step(insertStep(table), tokenPartition(opts?.dedupToken), async () => {
          if (this.at.insertDelayMs !== undefined) await new Promise((r) => setTimeout(r, this.at.insertDelayMs));
          return inner.insert(table, rows, opts);
        }),
      ping: () => inner.ping(),
      close: () => Promise.resolve(),
    };
  }

  stateStore(inner: StateStore): StateStore {
    return {
      incarnation: inner.incarnation,
      loadSnapshot: (p) => inner.loadSnapshot(p),
      saveSnapshot: (p, bytes) => this.step('snapshot', p, () => inner.saveSnapshot(p, bytes)),
      appendIntent: (p, from, to, dead) => this.step('intent', p, () => inner.appendIntent(p, from, to, dead)),
      readIntents: (p) => inner.readIntents(p),
      truncateIntents: (p, after) => this.step('truncate', p, () => inner.truncateIntents(p, after)),
      close: () => Promise.resolve(),
    };
  }

  consumer(inner: HubConsumer): HubConsumer {
    return {
      partitionCount: inner.partitionCount,
      subscribe: (handlers, options) => inner.subscribe(handlers, options),
      checkpoint: (p, offset) => this.step('checkpoint', p, () => inner.checkpoint(p, offset)),
      getCheckpoint: (p) => inner.getCheckpoint(p),
      endOffset: (p) => inner.endOffset(p),
      close: () => inner.close(),
    };
  }
}

/** The partition an insert's dedup token names (`<incarnation>:p<partition>:<from>-<to>:…`); −1 if none. */
function tokenPartition(token: string | undefined): number {
  const m = /:p(\d+):/.exec(token ?? '');
  return m === null ? -1 : Number(m[1]);
}

function insertStep(table: string): CrashStep {
  if (table === 'events' || table === 'sessions' || table === 'dead_letters') return `insert:${table}`;
  throw new Error(`the processor inserted into an unexpected table ${table}`);
}

function hang<T>(): Promise<T> {
  return new Promise<T>(() => {});
}
