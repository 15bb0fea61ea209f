import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openEventHubsProducer, type EventHubsProducer } from '../hub/eventhubs-producer.ts';
import { silentLogger } from '../lib/log.ts';
import { expectStoreMatchesTruth } from '../processor/testing/harness.ts';
import type { EnrichedEvent } from '../schemas/enriched-event.ts';
import { openHttpStore } from '../store/http-store.ts';
import type { Store } from '../store/store.ts';
import type { ClickHouseHttp } from '../store/testing/clickhouse-http.ts';
import { pollUntil } from './support/e2e.ts';
import type { Azurite } from '../hub/testing/eventhubs/azurite.ts';
import type { EventHubsBroker } from '../hub/testing/eventhubs/broker.ts';
import { startEventHubsStack } from './support/eventhubs/stack.ts';
import { startFarolProcessor, type FarolChild } from './support/farol-process.ts';
import { makeEvent } from '../schemas/testing/events.ts';
import { computeTruth, generateTraffic } from '../schemas/testing/oracle.ts';

/**
 * Event Hubs mode: records a producer other than Farol's collector (or an older one) published to
 * the hub, which ClickHouse cannot store or the processor cannot read, come first in every
 * partition; a `farol processor` on the hub sets them aside and writes everything else, once.
 */

const HUB = 'farol-dead-letters';
const PARTITIONS = 2;
const DATABASE = 'farol_eh_dl';
const SITE = 'eh-dl.test';
const HOUR = 3_600_000;

describe('Event Hubs processor with poisonous records', () => {
  const dirs: string[] = [];
  let broker: EventHubsBroker | undefined;
  let azurite: Azurite | undefined;
  let clickhouse: ClickHouseHttp | undefined;
  let store: Store | undefined;
  let producer: EventHubsProducer | undefined;
  let processor: FarolChild | undefined;

  async function tempDir(prefix: string): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), prefix));
    dirs.push(dir);
    return dir;
  }

  beforeAll(async () => {
    const stack = await startEventHubsStack({ name: 'farol-ehdl', hubName: HUB, partitions: PARTITIONS, tempDir });
    broker = stack.broker;
    azurite = stack.azurite;
    clickhouse = stack.clickhouse;
    store = openHttpStore({ url: clickhouse.url, username: 'default', password: '', database: DATABASE });
    producer = await openEventHubsProducer({
      connectionString: broker.connectionString,
      eventHubName: HUB,
      spoolDir: await tempDir('farol-ehdl-spool-'),
      spoolMaxBytes: 64 * 1024 * 1024,
      log: silentLogger,
    });
  }, 120_000);

  afterAll(async () => {
    processor?.child.kill('SIGKILL');
    await processor?.exited;
    await producer?.close();
    await store?.close();
    await Promise.all([broker?.stop(), azurite?.stop(), clickhouse?.stop()]);
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  }, 60_000);

  it('sets them aside and writes every good record once; no partition stops', async () => {
    if (broker === undefined || azurite === undefined || clickhouse === undefined || store === undefined || producer === undefined) {
      throw new Error('not started');
    }
    const good = generateTraffic({ sites: [SITE], visitorsPerSite: 20, eventsPerVisitor: 15, start: Math.floor(Date.now() / HOUR) * HOUR - 6 * HOUR, seed: 71 });
    const visitors = [...new Set(good.map((e) => e.visitorId))];
    // One poisonous record per visitor, before any of its events: whatever partition a visitor
    // lands on starts with poison.
    const poison = visitors.map((visitorId, i) =>
      makeEvent({
        site: SITE,
        visitorId,
        id: `poison-${i}`,
        ts: good[0]?.ts ?? 0,
        ...(i % 3 === 0 ? { props: { k: '\ud800' } } : i % 3 === 1 ? { pathname: '/\udfff' } : { ts: 9e15 }),
      }),
    );
    const record = (e: EnrichedEvent): { key: string; payload: Buffer } => ({ key: `${e.site}:${e.visitorId}`, payload: Buffer.from(JSON.stringify(e)) });
    await producer.publish([...poison.map(record), { key: `${SITE}:${visitors[0]}`, payload: Buffer.from('{"not":"an event"') }]);
    await producer.publish(good.map(record));

    processor = await startFarolProcessor({
      FAROL_HUB: 'eventhubs',
      FAROL_EVENTHUBS_CONNECTION_STRING: broker.connectionString,
      FAROL_EVENTHUBS_NAME: HUB,
      FAROL_CHECKPOINT_CONNECTION_STRING: azurite.connectionString,
      FAROL_CHECKPOINT_CONTAINER: 'farol-ehdl-checkpoints',
      FAROL_CLICKHOUSE_URL: clickhouse.url,
      FAROL_CLICKHOUSE_DATABASE: DATABASE,
      FAROL_DATA_DIR: await tempDir('farol-ehdl-processor-'),
      FAROL_LOG_LEVEL: 'info',
    });
    const s = store;
    const truth = computeTruth(good);
    await pollUntil(
      async () => {
        const rows = await s.query<{ n: string }>('SELECT count() AS n FROM events WHERE site = {site:String}', { site: SITE }).catch(() => []);
        return Number(rows[0]?.n ?? 0) === truth.stored.length ? true : undefined;
      },
      { timeoutMs: 90_000, describe: () => `every good event in ClickHouse:\n${processor?.output.slice(-20).join('\n') ?? ''}` },
    );
    await expectStoreMatchesTruth(s, [SITE], truth);
    const dead = await s.query<{ payload: string; reason: string }>('SELECT payload, reason FROM dead_letters WHERE site = {site:String}', {
      site: SITE,
    });
    // Parsed here: ClickHouse's JSON functions refuse the lone surrogate escapes these payloads hold.
    expect(dead.map((d) => (JSON.parse(d.payload) as EnrichedEvent).id).sort()).toEqual(poison.map((p) => p.id).sort());
    expect(new Set(dead.map((d) => d.reason))).toEqual(new Set(['malformed_unicode', 'bad_timestamp']));
    // The unreadable record is counted and logged, not kept.
    expect(processor.output.some((l) => l.includes('"msg":"dropped unreadable hub records"'))).toBe(true);
    expect(processor.output.some((l) => l.includes('"msg":"records set aside in dead_letters"'))).toBe(true);
    processor.child.kill('SIGTERM');
    expect(await processor.exited).toBe(0);
  }, 180_000);
});
