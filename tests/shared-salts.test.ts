import { existsSync, readdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ContainerClient } from '@azure/storage-blob';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../schemas/config.ts';
import { DAY_MS } from '../ingest/enrich/salts.ts';
import { blobSaltStorage, PREFETCH_MS, saltBlobPrefix, SharedSaltStore } from '../ingest/enrich/shared-salts.ts';
import { startCollector, type CollectorRuntime } from '../ingest/main.ts';
import { openLocalHub, type LocalHub } from '../hub/local-hub.ts';
import { startAzurite, type Azurite } from '../hub/testing/eventhubs/azurite.ts';
import { createLogger } from '../lib/log.ts';
import { Registry } from '../lib/metrics.ts';
import { FarolError } from '../schemas/errors.ts';
import { readHubEvents } from './support/collector-harness.ts';
import { runFarol } from './support/farol-process.ts';
import { generateWireTraffic, planBatches } from './support/wire-oracle.ts';

/**
 * One visitor id across collectors (Event Hubs mode): two real collectors share the day's salt
 * through real blob storage (Azurite) and a round-robin sender spreads every visitor's oracle
 * events over both; each visitor must get exactly one id, and no two visitors the same. The salt
 * is never written to the collectors' disks; the next day's is fetched ahead so both switch at
 * midnight without storage; expired salts are deleted from the container after 48 h; with storage
 * down and no salt for the day, events are refused 503 and /readyz says why (never a private salt).
 */

const EVENTHUBS = 'Endpoint=sb://salts.test.example/;SharedAccessKeyName=k;SharedAccessKey=not-a-key';
const HUB = 'salted';
const CONTAINER = 'farol-salt-checkpoints';
const SITES = ['one.test', 'two.test'];
const DAY = Date.UTC(2026, 11, 6) / DAY_MS;
const dirs: string[] = [];
let azurite: Azurite | undefined;

async function tempDir(prefix: string): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), prefix));
  dirs.push(d);
  return d;
}

function container(): ContainerClient {
  if (azurite === undefined) throw new Error('no azurite');
  return new ContainerClient(azurite.connectionString, CONTAINER);
}

async function saltBlobs(): Promise<string[]> {
  const names: string[] = [];
  for await (const b of container().listBlobsFlat({ prefix: `${saltBlobPrefix(EVENTHUBS, HUB)}/` })) names.push(b.name);
  return names.sort();
}

beforeAll(async () => {
  azurite = await startAzurite({ dataDir: await tempDir('farol-salts-azurite-') });
}, 60_000);

afterAll(async () => {
  await azurite?.stop();
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

describe('shared daily salts', () => {
  it('a collector on Event Hubs without the checkpoint storage refuses to start, naming the variable', async () => {
    const r = await runFarol(['collector'], {
      FAROL_HUB: 'eventhubs',
      FAROL_EVENTHUBS_CONNECTION_STRING: EVENTHUBS,
      FAROL_EVENTHUBS_NAME: HUB,
      FAROL_DATA_DIR: await tempDir('farol-salts-nostorage-'),
      FAROL_PORT: '0',
    });
    expect([r.code, r.stderr]).toEqual([2, expect.stringContaining('FAROL_CHECKPOINT_CONNECTION_STRING: required when FAROL_HUB=eventhubs') as unknown]);
  }, 60_000);

  it('fetches the next day ahead, switches both collectors at midnight, deletes a salt 48 h after its day began, and fails closed', async () => {
    let clock = DAY * DAY_MS + 22 * 3_600_000;
    const now = (): number => clock;
    const c = container();
    await c.createIfNotExists();
    const prefix = 'farol-salts/unit/hub';
    let down = false;
    let reads = 0;
    const real = blobSaltStorage(c, prefix);
    // Storage that can be switched off: the outage at midnight, without restarting Azurite.
    const storage = {
      read: (d: number) => (reads++, down ? Promise.reject(new Error('storage down')) : real.read(d)),
      create: (d: number, b: Buffer) => (down ? Promise.reject(new Error('storage down')) : real.create(d, b)),
      days: () => (down ? Promise.reject(new Error('storage down')) : real.days()),
      delete: (d: number) => (down ? Promise.reject(new Error('storage down')) : real.delete(d)),
    };
    const log = createLogger('silent');
    const a = new SharedSaltStore({ storage, log, now });
    const b = new SharedSaltStore({ storage, log, now });
    await Promise.all([a.refresh(), b.refresh()]);
    expect(a.current().bytes.equals(b.current().bytes)).toBe(true);
    expect(a.previous()).toBeNull();

    // The last hour of the day: tomorrow's salt is created once and held by both.
    clock = (DAY + 1) * DAY_MS - PREFETCH_MS + 1000;
    await Promise.all([a.refresh(), b.refresh()]);
    expect((await real.days()).sort()).toEqual([DAY, DAY + 1]);
    const today = Buffer.from(a.current().bytes);
    // Midnight with storage down: both switch to the prefetched salt, no storage needed.
    down = true;
    clock = (DAY + 1) * DAY_MS + 1;
    expect(a.current().day).toBe(DAY + 1);
    expect(a.current().bytes.equals(b.current().bytes)).toBe(true);
    expect(a.previous()?.bytes.equals(today)).toBe(true);
    expect((await a.refresh()).ok).toBe(false);

    // The next midnight, storage still down and nothing prefetched: fail closed.
    clock = (DAY + 2) * DAY_MS + 1;
    await a.refresh();
    expect(a.ready()).toBe(false);
    const readsBefore = reads;
    expect(() => a.current()).toThrow(FarolError);
    try {
      a.current();
    } catch (err) {
      expect((err as FarolError).code).toBe('ING_SALT_UNAVAILABLE');
    }
    // The miss started a refresh at once (not waiting for the timer), one for both misses; it
    // fails while storage is down.
    expect(reads).toBeGreaterThan(readsBefore);
    expect(await a.refresh()).toEqual({ ok: false, deleted: 0 });
    // Back: the day's salt is created, and DAY's (48 h old) is deleted from the container and
    // forgotten in memory.
    down = false;
    const r = await a.refresh();
    expect(r).toEqual({ ok: true, deleted: 1 });
    expect(a.ready()).toBe(true);
    expect((await real.days()).sort()).toEqual([DAY + 1, DAY + 2]);
    expect(a.previous()?.day).toBe(DAY + 1);
    await b.refresh();
    expect(b.current().bytes.equals(a.current().bytes)).toBe(true);
    a.close();
    b.close();
  }, 60_000);

  it('two collectors behind a round-robin sender give every oracle visitor exactly one id', async () => {
    let clock = DAY * DAY_MS + 12 * 3_600_000;
    const now = (): number => clock;
    const log = createLogger('silent');
    const collectors: Array<{ runtime: CollectorRuntime; hub: LocalHub; dataDir: string; url: string }> = [];
    const metrics: Registry[] = [];
    for (let i = 0; i < 2; i++) {
      const dataDir = await tempDir(`farol-salts-collector-${i}-`);
      const config = loadConfig({
        FAROL_DATA_DIR: dataDir,
        FAROL_PORT: '0',
        FAROL_HUB: 'eventhubs',
        FAROL_EVENTHUBS_CONNECTION_STRING: EVENTHUBS,
        FAROL_EVENTHUBS_NAME: HUB,
        FAROL_CHECKPOINT_CONNECTION_STRING: azurite?.connectionString,
        FAROL_CHECKPOINT_CONTAINER: CONTAINER,
        FAROL_TRUST_PROXY: '127.0.0.1/32',
        FAROL_SITES: SITES.join(','),
        FAROL_RATE_CLIENT: 'off',
      });
      // The events land in a local log per collector, to be read back; the salts follow FAROL_HUB.
      const hub = await openLocalHub({ dir: join(dataDir, 'hub'), partitions: 2 });
      metrics.push(new Registry());
      const runtime = await startCollector(config, { hub, log, metrics: metrics[i] ?? new Registry(), now });
      collectors.push({ runtime, hub, dataDir, url: `http://127.0.0.1:${runtime.port}` });
    }
    try {
      // Both started at once on an empty container: one salt blob for the day, whoever won.
      expect(await saltBlobs()).toEqual([`${saltBlobPrefix(EVENTHUBS, HUB)}/salt-2026-12-06`]);
      expect(metrics[1]?.render()).toContain('farol_ingest_salt_ready 1');

      const traffic = generateWireTraffic({ seed: 1313, sites: SITES, targetEvents: 1500, idPrefix: 'salt' });
      const [batches] = planBatches(traffic, { senders: 1, batchSize: 7, seed: 7 });
      let sent = 0;
      for (const [i, b] of (batches ?? []).entries()) {
        const target = collectors[i % 2];
        const r = await fetch(`${target?.url}/api/batch`, { method: 'POST', body: b.body, headers: { 'content-type': 'application/json' } });
        expect([r.status, await r.text()]).toEqual([202, `{"accepted":${b.events.length}}`]);
        sent += b.events.length;
      }
      expect(sent).toBe(traffic.events);

      const visitorOf = new Map<string, string>();
      for (const v of traffic.visitors) for (const e of v.events) visitorOf.set(e.id, `${v.site}|${v.ip}|${v.ua}`);
      const idsOf = new Map<string, Set<string>>();
      const servedBy = new Map<string, Set<number>>();
      for (const [i, c] of collectors.entries()) {
        for (const e of await readHubEvents(join(c.dataDir, 'hub'), 2)) {
          const visitor = visitorOf.get(e.id);
          expect(visitor, e.id).toBeDefined();
          idsOf.set(visitor ?? '', (idsOf.get(visitor ?? '') ?? new Set()).add(e.visitorId));
          servedBy.set(visitor ?? '', (servedBy.get(visitor ?? '') ?? new Set()).add(i));
        }
      }
      const distinctVisitors = new Set(visitorOf.values());
      expect(idsOf.size).toBe(distinctVisitors.size);
      // The sender really spread visitors over both collectors.
      expect([...servedBy.values()].filter((s) => s.size === 2).length).toBeGreaterThan(distinctVisitors.size / 2);
      const split = [...idsOf.entries()].filter(([, ids]) => ids.size !== 1);
      expect(split).toEqual([]);
      const allIds = new Set([...idsOf.values()].map((ids) => [...ids][0]));
      expect(allIds.size).toBe(distinctVisitors.size);

      // Held in memory only: nothing under either data dir names a salt.
      for (const c of collectors) {
        expect(existsSync(join(c.dataDir, 'salts')) ? readdirSync(join(c.dataDir, 'salts')) : []).toEqual([]);
      }

      // Midnight: a visit seen by one collector before it gets the new day's id on both after it (a
      // per-collector carry-over would keep the old id on that one only: two ids on the new day).
      const visit = (url: string | undefined) =>
        fetch(`${url}/api/batch`, {
          method: 'POST',
          body: JSON.stringify([{ n: 'pageview', u: 'https://one.test/late', d: 'one.test', ip: '203.0.113.77', ua: 'Mozilla/5.0 (X11; Linux x86_64; rv:130.0) Gecko/20100101 Firefox/130.0' }]),
          headers: { 'content-type': 'application/json' },
        }).then((r) => r.status);
      const idsSince = async (from: number): Promise<string[]> => {
        const out: string[] = [];
        for (const c of collectors) for (const e of await readHubEvents(join(c.dataDir, 'hub'), 2)) if (e.pathname === '/late' && e.ts >= from) out.push(e.visitorId);
        return out;
      };
      clock = (DAY + 1) * DAY_MS - 10 * 60_000;
      // The refresh timers run on the real clock: run them now, as they would in the last hour.
      for (const c of collectors) await c.runtime.refreshSalts();
      expect(await visit(collectors[0]?.url)).toBe(202);
      const before = new Set(await idsSince(0));
      clock = (DAY + 1) * DAY_MS + 5 * 60_000;
      expect([await visit(collectors[0]?.url), await visit(collectors[1]?.url), await visit(collectors[0]?.url)]).toEqual([202, 202, 202]);
      const after = new Set(await idsSince(clock));
      expect([before.size, after.size]).toEqual([1, 1]);
      expect([...after][0]).not.toBe([...before][0]);

      // Storage down (last test of the file), and a day nobody fetched a salt for: refused, not
      // ready, never a private salt.
      await azurite?.stop();
      clock = (DAY + 2) * DAY_MS + 10 * 60_000;
      const c0 = collectors[0];
      const refused = await fetch(`${c0?.url}/api/event`, {
        method: 'POST',
        body: JSON.stringify({ n: 'pageview', u: 'https://one.test/', d: 'one.test' }),
        headers: { 'content-type': 'text/plain', 'user-agent': 'Mozilla/5.0 (X11; Linux x86_64; rv:130.0) Gecko/20100101 Firefox/130.0' },
      });
      expect([refused.status, refused.headers.get('retry-after'), ((await refused.json()) as { error: { code: string } }).error.code]).toEqual([503, '5', 'ING_SALT_UNAVAILABLE']);
      const ready = await fetch(`${c0?.url}/readyz`);
      expect([ready.status, await ready.text()]).toEqual([503, '{"status":"salt unavailable"}']);
      expect(metrics[0]?.render()).toContain('farol_ingest_salt_ready 0');
      expect(existsSync(join(c0?.dataDir ?? '', 'salts')) ? readdirSync(join(c0?.dataDir ?? '', 'salts')) : []).toEqual([]);
    } finally {
      for (const c of collectors) {
        await c.runtime.stop();
        await c.hub.close();
      }
    }
  }, 120_000);
});
