import type { ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { afterAll, beforeAll, expect } from 'vitest';
import { openHttpStore } from '../../../store/http-store.ts';
import type { Store } from '../../../store/store.ts';
import { geoCountries, sleep } from '../e2e.ts';
import { expectExactCounts } from '../exact-assert.ts';
import { rawCounts } from '../exact-counts.ts';
import { runFarol } from '../farol-process.ts';
import { computeWireTruth, type WireTraffic, type WireTruth, type WireVisitor } from '../wire-oracle.ts';
import { startEventHubsStack, type EventHubsStack } from './stack.ts';

/**
 * The set-up of the suites that run Farol on Event Hubs as real processes: the stack (test broker,
 * Azurite, a ClickHouse endpoint) started once per file, the database migrated once by
 * `farol migrate`, a store to read it; every child and directory is cleaned up after the file.
 */

export interface EventHubsDeployment extends EventHubsStack {
  store: Store;
  /** What a `farol collector` needs to publish to the hub. */
  hubEnv: Record<string, string>;
  /** The hub, blob checkpoints and ClickHouse: what a `farol processor` needs (and a collector reading the sites table). */
  storeEnv: Record<string, string>;
  /**
   * `storeEnv` with the quick timings processors of these tests use: ownership (1 s updates, 5 s
   * expiry) and at most 1 s between retries of a failed ClickHouse write (30 s by default).
   */
  processorEnv: Record<string, string>;
}

export interface EventHubsSuite {
  /** The deployment (started before the file's own `beforeAll`). */
  deployment(): EventHubsDeployment;
  tempDir(prefix: string): Promise<string>;
  /** A child SIGKILLed after the file if it is still running. */
  track(child: ChildProcess): void;
  /**
   * Records `traffic` as sent (its IPs' countries looked up) and returns the truth of everything
   * recorded so far: the suites' checks cover all they sent.
   */
  sent(traffic: WireTraffic): Promise<WireTruth>;
  /**
   * Waits until the raw counts equal `truth` and stay equal for `stableMs` (a late duplicate would
   * break that), at most `timeoutMs`, then checks raw rows, sessions and rollups exactly.
   */
  expectLanded(truth: WireTruth, opts: { timeoutMs: number; stableMs?: number }): Promise<void>;
}

/** Registers the file's `beforeAll`/`afterAll`; call it first inside the `describe`. */
export function eventHubsSuite(opts: { name: string; hubName: string; partitions: number; database: string; container: string }): EventHubsSuite {
  const dirs: string[] = [];
  const children: ChildProcess[] = [];
  const visitors: WireVisitor[] = [];
  const countries = new Map<string, string>();
  let deployment: EventHubsDeployment | undefined;

  const tempDir = async (prefix: string): Promise<string> => {
    const dir = await mkdtemp(join(tmpdir(), prefix));
    dirs.push(dir);
    return dir;
  };

  const get = (): EventHubsDeployment => {
    if (deployment === undefined) throw new Error('the Event Hubs deployment did not start');
    return deployment;
  };

  beforeAll(async () => {
    const stack = await startEventHubsStack({ name: opts.name, hubName: opts.hubName, partitions: opts.partitions, tempDir });
    const hubEnv = {
      FAROL_HUB: 'eventhubs',
      FAROL_EVENTHUBS_CONNECTION_STRING: stack.broker.connectionString,
      FAROL_EVENTHUBS_NAME: opts.hubName,
      FAROL_LOG_LEVEL: 'info',
    };
    const storeEnv = {
      ...hubEnv,
      FAROL_CHECKPOINT_CONNECTION_STRING: stack.azurite.connectionString,
      FAROL_CHECKPOINT_CONTAINER: opts.container,
      FAROL_CLICKHOUSE_URL: stack.clickhouse.url,
      FAROL_CLICKHOUSE_DATABASE: opts.database,
    };
    // Once, before any processor: several of them migrating at once would only repeat the work.
    const migrated = await runFarol(['migrate'], { ...storeEnv, FAROL_DATA_DIR: await tempDir(`${opts.name}-migrate-`) });
    expect(migrated.code, migrated.stderr).toBe(0);
    const store = openHttpStore({ url: stack.clickhouse.url, username: 'default', password: '', database: opts.database });
    deployment = {
      ...stack,
      store,
      hubEnv,
      storeEnv,
      processorEnv: {
        ...storeEnv,
        FAROL_EVENTHUBS_UPDATE_INTERVAL_MS: '1000',
        FAROL_EVENTHUBS_OWNERSHIP_EXPIRY_MS: '5000',
        FAROL_PROCESSOR_RETRY_MAX_MS: '1000',
      },
    };
  }, 120_000);

  afterAll(async () => {
    for (const c of children) c.kill('SIGKILL');
    await Promise.all(children.map((c) => (c.exitCode === null && c.signalCode === null ? new Promise((r) => c.once('exit', r)) : null)));
    await deployment?.store.close();
    await Promise.all([deployment?.broker.stop(), deployment?.azurite.stop(), deployment?.clickhouse.stop()]);
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  }, 60_000);

  return {
    deployment: get,
    tempDir,
    track: (child) => void children.push(child),
    async sent(traffic) {
      for (const [ip, country] of await geoCountries(traffic.ips)) countries.set(ip, country);
      visitors.push(...traffic.visitors);
      const all: WireTraffic = { visitors, events: visitors.reduce((n, v) => n + v.events.length, 0), ips: [...countries.keys()] };
      return computeWireTruth(all, (ip) => countries.get(ip) ?? '');
    },
    async expectLanded(truth, { timeoutMs, stableMs = 0 }) {
      const { store } = get();
      const end = Date.now() + timeoutMs;
      let matchedAt: number | undefined;
      while (Date.now() < end) {
        if (isDeepStrictEqual(await rawCounts(store), truth.sites)) {
          matchedAt ??= Date.now();
          if (Date.now() - matchedAt >= stableMs) break;
        } else {
          matchedAt = undefined;
        }
        await sleep(500);
      }
      await expectExactCounts(store, truth);
    },
  };
}
