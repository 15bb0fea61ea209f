import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../../schemas/config.ts';
import { enrichedEventSchema, type EnrichedEvent } from '../../schemas/enriched-event.ts';
import { payloadValue } from '../../hub/event-codec.ts';
import { openLocalHub, readPartition, type LocalHub } from '../../hub/local-hub.ts';
import { createLogger } from '../../lib/log.ts';
import { Registry } from '../../lib/metrics.ts';
import { startCollector } from '../../ingest/main.ts';

export interface TestCollector {
  url: string;
  dataDir: string;
  hub: LocalHub;
  metrics: Registry;
  /** Every log line the collector and hub wrote (JSON), for privacy greps. */
  logLines: string[];
  /** Every enriched event in the hub, all partitions, validated against the schema. */
  events(): Promise<EnrichedEvent[]>;
  stop(): Promise<void>;
}

/** Reads every record of every partition of a hub directory as enriched events. */
export async function readHubEvents(hubDir: string, partitions: number): Promise<EnrichedEvent[]> {
  const out: EnrichedEvent[] = [];
  for (let p = 0; p < partitions; p++) {
    for (const r of await readPartition(hubDir, p, 0, Number.MAX_SAFE_INTEGER)) {
      out.push(enrichedEventSchema.parse(payloadValue(r.payload)));
    }
  }
  return out;
}

/** A real collector on a free loopback port over a local hub in a fresh temp dir. */
export async function startTestCollector(env: Record<string, string> = {}, now?: () => number): Promise<TestCollector> {
  const dataDir = await mkdtemp(join(tmpdir(), 'farol-collector-'));
  const config = loadConfig({ FAROL_DATA_DIR: dataDir, FAROL_PORT: '0', FAROL_HUB_PARTITIONS: '4', ...env });
  const logLines: string[] = [];
  const log = createLogger('debug', {}, (line) => logLines.push(line));
  const hub = await openLocalHub({ dir: join(dataDir, 'hub'), partitions: config.FAROL_HUB_PARTITIONS, log });
  const metrics = new Registry();
  const runtime = await startCollector(config, { hub, log, metrics, ...(now ? { now } : {}) });
  return {
    url: `http://127.0.0.1:${runtime.port}`,
    dataDir,
    hub,
    metrics,
    logLines,
    events: () => readHubEvents(join(dataDir, 'hub'), config.FAROL_HUB_PARTITIONS),
    async stop() {
      await runtime.stop();
      await hub.close();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}
