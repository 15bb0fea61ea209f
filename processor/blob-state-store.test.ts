import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ContainerClient } from '@azure/storage-blob';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openLocalHub } from '../hub/local-hub.ts';
import { silentLogger } from '../lib/log.ts';
import { Registry } from '../lib/metrics.ts';
import type { InsertOptions, Store } from '../store/store.ts';
import { startAzurite, type Azurite } from '../hub/testing/eventhubs/azurite.ts';
import { computeTruth, generateTraffic } from '../schemas/testing/oracle.ts';
import { blobStatePrefix, openBlobStateStore, whileStorageStarts } from './blob-state-store.ts';
import { processorMetrics } from './processor-metrics.ts';
import { defaultProcessorOptions, Processor } from './processor.ts';
import { StateStoreError, StateStoreFencedError, type StateStore } from './state-store.ts';
import { expectStoreMatchesTruth, openTestStore, publish, removeTempDirs, tempDir, waitFor } from './testing/harness.ts';

let azurite: Azurite;
let container: ContainerClient;
let dir: string;
let prefixCounter = 0;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'farol-blob-state-'));
  azurite = await startAzurite({ dataDir: dir });
  container = new ContainerClient(azurite.connectionString, 'farol-checkpoints');
  await container.createIfNotExists();
});

afterAll(async () => {
  await azurite.stop();
  await rm(dir, { recursive: true, force: true });
  await removeTempDirs();
});

/** A fresh prefix (as if another hub), and stores on it. */
function freshPrefix(): string {
  return blobStatePrefix('127.0.0.1', `hub-${prefixCounter++}`, '$Default');
}

const open = (prefix: string, owner?: string): Promise<StateStore> =>
  openBlobStateStore({ container, prefix, ...(owner === undefined ? {} : { owner }) });

async function blobNames(prefix: string): Promise<string[]> {
  const names: string[] = [];
  for await (const b of container.listBlobsFlat({ prefix })) names.push(b.name.slice(prefix.length + 1));
  return names.sort();
}

/** What only the blob store promises; the rest of its contract is in state-store.contract.test.ts. */
describe('blob state store', () => {
  it('refuses writes to a partition it has not acquired', async () => {
    const store = await open(freshPrefix());
    await expect(store.appendIntent(2, 0, 99)).rejects.toBeInstanceOf(StateStoreError);
    await store.acquire?.(2);
    await store.appendIntent(2, 0, 99);
    expect(await store.readIntents(2)).toEqual([{ from: 0, to: 99 }]);
  });

  it('shares one incarnation between every processor of the prefix, even when they start together', async () => {
    const prefix = freshPrefix();
    const stores = await Promise.all(Array.from({ length: 6 }, () => open(prefix)));
    const ids = new Set(stores.map((s) => s.incarnation));
    expect(ids.size).toBe(1);
    expect([...ids][0]).toMatch(/^[0-9a-f]{16}$/);
    expect((await open(prefix)).incarnation).toBe(stores[0]?.incarnation);
    expect((await open(freshPrefix())).incarnation).not.toBe(stores[0]?.incarnation);
  });

  it('fences the previous owner: the new one sees every range the old one logged, the old one can log no more', async () => {
    const prefix = freshPrefix();
    const a = await open(prefix, 'a');
    const b = await open(prefix, 'b');
    await a.acquire?.(0);
    await a.saveSnapshot(0, Buffer.from('state@99'));
    await a.appendIntent(0, 100, 149);
    await a.appendIntent(0, 150, 199);

    await b.acquire?.(0);
    expect((await b.loadSnapshot(0))?.toString()).toBe('state@99');
    expect(await b.readIntents(0)).toEqual([
      { from: 100, to: 149 },
      { from: 150, to: 199 },
    ]);

    await expect(a.appendIntent(0, 200, 249)).rejects.toBeInstanceOf(StateStoreFencedError);
    await expect(a.saveSnapshot(0, Buffer.from('stale'))).rejects.toBeInstanceOf(StateStoreFencedError);
    await expect(a.truncateIntents(0, 199)).rejects.toBeInstanceOf(StateStoreFencedError);
    // Other partitions of the old owner are untouched.
    await a.acquire?.(1);
    await a.appendIntent(1, 0, 9);

    await b.appendIntent(0, 200, 260);
    await b.saveSnapshot(0, Buffer.from('state@260'));
    await b.truncateIntents(0, 260);
    const c = await open(prefix, 'c');
    await c.acquire?.(0);
    expect((await c.loadSnapshot(0))?.toString()).toBe('state@260');
    expect(await c.readIntents(0)).toEqual([]);
    // The stale snapshot the fenced owner uploaded did not survive, nor did replaced ones.
    expect((await blobNames(prefix)).filter((n) => n.startsWith('p-0/snapshot-'))).toHaveLength(1);
  });

  it('lets exactly one of several processors acquiring at once win each epoch', async () => {
    const prefix = freshPrefix();
    const stores = await Promise.all(['a', 'b', 'c', 'd'].map((o) => open(prefix, o)));
    await Promise.all(stores.map((s) => s.acquire?.(5)));
    // Each acquired in turn; only the last one still owns the partition.
    const results = await Promise.allSettled(stores.map((s, i) => s.appendIntent(5, i * 10, i * 10 + 9)));
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    expect(results.filter((r) => r.status === 'rejected').map((r) => (r as PromiseRejectedResult).reason)).toEqual(
      Array.from({ length: 3 }, () => expect.any(StateStoreFencedError)),
    );
  });
});

/** A store whose inserts wait at a gate while it is closed (an insert still in flight). */
interface GatedStore {
  store: Store;
  /** Dedup tokens of every insert started. */
  tokens: string[];
  /** Tokens of inserts waiting at the gate. */
  waiting: Set<string>;
  release(): void;
}

function gated(inner: Store, closed: boolean): GatedStore {
  let openGate: () => void = () => {};
  let gate: Promise<void> | undefined = closed ? new Promise((resolve) => (openGate = resolve)) : undefined;
  const g: GatedStore = {
    tokens: [],
    waiting: new Set(),
    release() {
      openGate();
      gate = undefined;
    },
    store: {
      kind: inner.kind,
      database: inner.database,
      exec: (...args) => inner.exec(...args),
      query: <T>(...args: Parameters<Store['query']>) => inner.query<T>(...args),
      insert: async (table: string, rows: readonly Record<string, unknown>[], opts?: InsertOptions) => {
        const token = opts?.dedupToken ?? '';
        g.tokens.push(token);
        if (gate !== undefined) {
          g.waiting.add(token);
          await gate;
          g.waiting.delete(token);
        }
        await inner.insert(table, rows, opts);
      },
      ping: () => inner.ping(),
      close: () => Promise.resolve(),
    },
  };
  return g;
}

describe('a partition taken over mid-flush (two processors sharing the blob state store)', () => {
  it('counts exactly: the old owner logs nothing more, and its late insert carries the token the new owner used', async () => {
    const HOUR = 3_600_000;
    const sites = ['takeover-a.test', 'takeover-b.test'];
    const traffic = generateTraffic({ sites, visitorsPerSite: 30, eventsPerVisitor: 25, start: Math.floor(Date.now() / HOUR) * HOUR - 6 * HOUR, seed: 77 });
    const truth = computeTruth(traffic);
    const hub = await openLocalHub({ dir: await tempDir('takeover-hub'), partitions: 1 });
    await publish(hub, traffic);
    const records = await hub.read(0, 0, traffic.length);
    expect(records).toHaveLength(traffic.length);
    const consumer = await hub.openConsumer('processor');
    const clickhouse = await openTestStore();
    const prefix = freshPrefix();
    const options = { ...defaultProcessorOptions, flushRecords: 200, flushIntervalMs: 20, snapshotIntervalMs: 60_000, retryInitialMs: 10, retryMaxMs: 50 };
    const processorOn = (store: Store, stateStore: StateStore): Processor =>
      new Processor({ consumer, store, stateStore, log: silentLogger, metrics: processorMetrics(new Registry()), options });
    try {
      // A: its first flush logs its range, then its inserts hang (a slow network, a GC pause).
      const old = gated(clickhouse, true);
      const a = processorOn(old.store, await open(prefix, 'old'));
      await a.partitionOpened(0, 0);
      await a.processBatch({ partition: 0, records: records.slice(0, 300) });
      await waitFor(() => old.waiting.size === 2, 'the old owner to start both inserts');
      expect(await (await open(prefix)).readIntents(0)).toEqual([{ from: 0, to: 299 }]);
      const hung = [...old.waiting];

      // B takes the partition over from the checkpoint (nothing checkpointed yet).
      const fresh = gated(clickhouse, false);
      const b = processorOn(fresh.store, await open(prefix, 'new'));
      await b.partitionOpened(0, (await consumer.getCheckpoint(0)) + 1);

      // A, still running, takes more records and is told to close (it waits for its hung flush).
      await a.processBatch({ partition: 0, records: records.slice(300, 700) });
      const aClosed = a.partitionClosed(0).catch(() => {});

      for (let i = 0; i < records.length; i += 250) await b.processBatch({ partition: 0, records: records.slice(i, i + 250) });
      await b.partitionClosed(0);
      // B replayed A's range with A's boundaries and incarnation: the same tokens.
      for (const token of hung) expect(fresh.tokens).toContain(token);

      // A's hung inserts land now, after B's: ClickHouse drops them as duplicates. Then A finds it
      // was fenced: it logs no other range, so it inserts nothing else.
      old.release();
      await aClosed;
      expect(old.tokens).toEqual(hung);
      await expectStoreMatchesTruth(clickhouse, sites, truth);
      expect(await consumer.getCheckpoint(0)).toBe(records.length - 1);
    } finally {
      await consumer.close();
      await hub.close();
      await clickhouse.close();
    }
  }, 60_000);
});

/**
 * A TCP front for Azurite that hangs up on the first `hangUps` connections (the client sees
 * "socket hang up"), then pipes the rest through: storage that is not answering yet.
 */
async function hangingFront(hangUps: number): Promise<{ connectionString: string; accepted: () => number; close: () => Promise<void> }> {
  let accepted = 0;
  const open = new Set<Socket>();
  const server = createServer((socket) => {
    accepted++;
    open.add(socket);
    socket.once('close', () => open.delete(socket));
    if (accepted <= hangUps) {
      socket.once('data', () => socket.destroy());
      return;
    }
    const upstream = connect(azurite.port, '127.0.0.1');
    socket.pipe(upstream).pipe(socket);
    upstream.once('error', () => socket.destroy());
    socket.once('error', () => upstream.destroy());
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    connectionString: azurite.connectionString.replace(`:${azurite.port}/`, `:${port}/`),
    accepted: () => accepted,
    // The client keeps its connections alive: end them, or close waits for the client's timeout.
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const socket of open) socket.destroy();
      }),
  };
}

describe('storage not answering at start', () => {
  // The storage SDK tries 4 times (its own policy, no delay to speak of): 8 hang-ups outlast the first call and one retried one.
  const quickTries = { retryOptions: { maxTries: 4, retryDelayInMs: 10, maxRetryDelayInMs: 20 } };

  it('is waited for: a container and a state store open once it answers, with a warning per retry', async () => {
    const front = await hangingFront(8);
    const warnings: string[] = [];
    const log = { warn: (_fields: object, msg: string) => void warnings.push(msg) };
    try {
      const slow = new ContainerClient(front.connectionString, 'farol-slow-start', quickTries);
      await expect(slow.createIfNotExists()).rejects.toThrow(/socket hang up/);
      await whileStorageStarts({ what: 'creating the container', log }, () => slow.createIfNotExists());
      expect(front.accepted()).toBeGreaterThan(8);
      expect(warnings.length).toBeGreaterThanOrEqual(1);
      expect(warnings[0]).toBe('creating the container: blob storage not answering yet; retrying');
      const store = await whileStorageStarts({ what: 'opening the state', log }, () =>
        openBlobStateStore({ container: slow, prefix: freshPrefix() }),
      );
      await store.acquire?.(0);
      await store.appendIntent(0, 0, 9);
      expect(await store.readIntents(0)).toEqual([{ from: 0, to: 9 }]);
    } finally {
      await front.close();
    }
  }, 60_000);

  it('gives up after its time, and at once on an answer that waiting cannot change', async () => {
    const front = await hangingFront(1_000_000);
    const log = { warn: () => {} };
    try {
      const dead = new ContainerClient(front.connectionString, 'farol-never', quickTries);
      await expect(whileStorageStarts({ what: 'x', log, timeoutMs: 1_500 }, () => dead.createIfNotExists())).rejects.toThrow(
        /socket hang up/,
      );
      // A wrong key: 403 from Azurite, thrown on the first try.
      const wrongKey = azurite.connectionString.replace(/AccountKey=[^;]+/, `AccountKey=${Buffer.alloc(64, 7).toString('base64')}`);
      const denied = new ContainerClient(wrongKey, 'farol-denied', quickTries);
      let tries = 0;
      const refused = await whileStorageStarts({ what: 'x', log, timeoutMs: 30_000 }, () => {
        tries++;
        return denied.createIfNotExists();
      }).catch((err: unknown) => err);
      expect((refused as { statusCode?: number }).statusCode).toBe(403);
      expect(tries).toBe(1);
    } finally {
      await front.close();
    }
  }, 60_000);
});
