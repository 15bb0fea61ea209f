import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { openHttpStore } from '../../store/http-store.ts';
import type { Store } from '../../store/store.ts';
import { startClickHouseHttp, type ClickHouseHttp } from '../../store/testing/clickhouse-http.ts';
import { geoCountries } from './e2e.ts';
import { startFarol, type FarolProcess } from './farol-process.ts';
import { computeWireTruth, generateWireTraffic, planBatches, type WireBatch, type WireTruth } from './wire-oracle.ts';

/**
 * The set-up of the server-mode end-to-end suites: one chDB-backed ClickHouse endpoint (a child
 * process) for the file, and per test a `farol start` on it with its own data dir and database,
 * a store to read that database, and wire traffic with its truth. Everything started is killed
 * and removed after the file.
 */

export interface ServerModeRun {
  proc: FarolProcess;
  store: Store;
  env: Record<string, string>;
}

export interface WirePlan {
  truth: WireTruth;
  /** One list of batches per sender. */
  plans: WireBatch[][];
  totalBatches: number;
}

export interface ServerModeSuite {
  /** The endpoint (started before the first test). */
  clickhouse(): ClickHouseHttp;
  /** A `farol start` on the endpoint with its own data dir and `database`, and a store to read it. */
  start(database: string): Promise<ServerModeRun>;
  /** Another `farol start` on `run`'s data dir and database (after the first has exited). */
  restart(run: ServerModeRun): Promise<FarolProcess>;
  /** `targetEvents` of wire traffic on the suite's sites, in batches of 100 for four senders, and its truth. */
  traffic(seed: number, targetEvents: number, idPrefix: string): Promise<WirePlan>;
}

/** Registers the file's `beforeAll`/`afterAll`; call it inside the `describe`. */
export function serverModeSuite(opts: {
  name: string;
  sites: readonly string[];
  partitions: number;
  /** More settings of every `farol start` (e.g. shorter retry and drain bounds). */
  env?: Record<string, string>;
}): ServerModeSuite {
  let clickhouse: ClickHouseHttp | undefined;
  const dirs: string[] = [];
  const procs: FarolProcess[] = [];
  const stores: Store[] = [];

  const tempDir = async (prefix: string): Promise<string> => {
    const dir = await mkdtemp(join(tmpdir(), prefix));
    dirs.push(dir);
    return dir;
  };

  beforeAll(async () => {
    clickhouse = await startClickHouseHttp({ dataDir: await tempDir(`farol-${opts.name}-ch-`) });
  });

  afterAll(async () => {
    for (const p of procs) p.child.kill('SIGKILL');
    for (const s of stores) await s.close();
    await clickhouse?.stop();
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  const endpoint = (): ClickHouseHttp => {
    if (clickhouse === undefined) throw new Error('no ClickHouse endpoint');
    return clickhouse;
  };

  return {
    clickhouse: endpoint,
    async start(database) {
      const url = endpoint().url;
      const env = {
        FAROL_DATA_DIR: await tempDir(`farol-${opts.name}-${database}-`),
        FAROL_CLICKHOUSE_URL: url,
        FAROL_CLICKHOUSE_DATABASE: database,
        FAROL_TRUST_PROXY: '127.0.0.1/32',
        FAROL_SITES: opts.sites.join(','),
        FAROL_HUB_PARTITIONS: String(opts.partitions),
        ...opts.env,
      };
      const proc = await startFarol('start', env);
      procs.push(proc);
      const store = openHttpStore({ url, username: 'default', password: '', database });
      stores.push(store);
      return { proc, store, env };
    },
    async traffic(seed, targetEvents, idPrefix) {
      const traffic = generateWireTraffic({ seed, sites: [...opts.sites], targetEvents, idPrefix });
      const countries = await geoCountries(traffic.ips);
      const truth = computeWireTruth(traffic, (ip) => countries.get(ip) ?? '');
      const plans = planBatches(traffic, { senders: 4, batchSize: 100, seed: seed + 1 });
      return { truth, plans, totalBatches: plans.reduce((n, p) => n + p.length, 0) };
    },
    async restart(run) {
      const proc = await startFarol('start', run.env);
      procs.push(proc);
      return proc;
    },
  };
}
