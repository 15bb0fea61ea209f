import { join } from 'node:path';
import { num, table } from '../report.ts';
import { loadPhase, type Scenario } from '../scenario.ts';
import { fetchMetrics, metricSum, ROOT, type Server } from '../servers.ts';
import { withCollector } from '../sessions.ts';
import { serverRow } from './common.ts';

/*
 * `e2e`: collector → local hub → processor → ClickHouse (embedded chDB) in one `farol start`
 * process, driven with /api/batch (100 events per request). Target: sustained ≥ 50k
 * events/s with lag < 5 s on 2 cores. Reports the ingest rate, the rate rows reached ClickHouse
 * while wrk ran and until the processor caught up, and the largest lag seen.
 */

const SCRIPT = join(ROOT, 'bench', 'wrk', 'batch.lua');
const EVENTS_PER_REQUEST = 100;
const TARGET_EVENTS_PER_SEC = 50_000;
const TARGET_LAG_S = 5;

interface Sample {
  atMs: number;
  ingested: number;
  stored: number;
  lagEvents: number;
  lagSeconds: number;
}

async function sample(server: Server, startedAt: number): Promise<Sample> {
  const m = await fetchMetrics(server);
  return {
    atMs: Date.now() - startedAt,
    ingested: metricSum(m, 'farol_ingest_events_total'),
    stored: metricSum(m, 'farol_processor_rows_total', (l) => l['table'] === 'events'),
    lagEvents: metricSum(m, 'farol_processor_lag_events'),
    lagSeconds: Math.max(0, ...m.filter((s) => s.name === 'farol_processor_lag_seconds').map((s) => s.value)),
  };
}

/** Samples /metrics every 500 ms until `stop` resolves. */
function sampler(server: Server, startedAt: number): { samples: Sample[]; stop: () => Promise<void> } {
  const samples: Sample[] = [];
  let running = true;
  const loop = (async () => {
    while (running) {
      try {
        samples.push(await sample(server, startedAt));
      } catch {
        // a slow /metrics under load is skipped, not fatal
      }
      await new Promise((r) => setTimeout(r, 500));
    }
  })();
  return {
    samples,
    async stop() {
      running = false;
      await loop;
    },
  };
}

export const e2eScenario: Scenario = {
  name: 'e2e',
  summary: `farol start (collector + hub + processor + chDB), /api/batch × ${EVENTS_PER_REQUEST}: events/s into ClickHouse and lag`,
  async run(ctx) {
    const args = [`--events=${EVENTS_PER_REQUEST}`];
    const session = await withCollector(
      ctx,
      async (server) => {
        const startedAt = Date.now();
        const s = sampler(server, startedAt);
        const run = await loadPhase(ctx, server, { script: SCRIPT, label: 'measured', durationS: ctx.opts.durationS, scriptArgs: args });
        const loadEndMs = Date.now() - startedAt;
        const atLoadEnd = await sample(server, startedAt);
        // Let the processor catch up (bounded), so the sustained rate counts every event.
        const deadline = Date.now() + 120_000;
        let last = atLoadEnd;
        while (Date.now() < deadline) {
          last = await sample(server, startedAt);
          if (last.stored >= last.ingested && last.lagEvents === 0) break;
          await new Promise((r) => setTimeout(r, 250));
        }
        await s.stop();
        return { run, loadEndMs, atLoadEnd, final: last, samples: s.samples };
      },
      'start',
    );
    const { run, loadEndMs, atLoadEnd, final, samples } = session.value;
    const ingestRate = final.ingested / (loadEndMs / 1000);
    const storedDuringLoad = atLoadEnd.stored / (loadEndMs / 1000);
    const sustained = final.stored / (final.atMs / 1000);
    const maxLagS = Math.max(0, ...samples.map((x) => x.lagSeconds));
    const maxLagEvents = Math.max(0, ...samples.map((x) => x.lagEvents));
    const catchUpS = (final.atMs - loadEndMs) / 1000;
    const caughtUp = final.stored >= final.ingested && final.lagEvents === 0;

    const checks = [
      { name: 'sustained events/s into ClickHouse', value: num(sustained), target: `≥ ${num(TARGET_EVENTS_PER_SEC)}`, pass: sustained >= TARGET_EVENTS_PER_SEC, kind: 'target' as const },
      { name: 'max lag', value: `${maxLagS.toFixed(1)} s`, target: `< ${TARGET_LAG_S} s`, pass: maxLagS < TARGET_LAG_S, kind: 'target' as const },
      { name: 'every ingested event reached ClickHouse', value: `${num(final.stored)} of ${num(final.ingested)}`, target: '=', pass: caughtUp && final.stored === final.ingested, kind: 'correctness' as const },
      { name: 'non-2xx seen by wrk', value: num(run.non2xx), target: '0', pass: run.non2xx === 0, kind: 'correctness' as const },
    ];
    const lines = [
      table(
        ['server', 'req/s', 'events/s in', 'p50', 'p90', 'p99', 'max', 'non-2xx', 'sock err', 'RSS', 'CPU cores (main)'],
        [serverRow('farol start', run, session.memory.maxRssMb, [num(run.requestsPerSec * EVENTS_PER_REQUEST)])],
      ),
      '',
      `ingested ${num(final.ingested)} events in ${(loadEndMs / 1000).toFixed(1)} s = ${num(ingestRate)} events/s`,
      `rows in ClickHouse while loading: ${num(storedDuringLoad)} events/s; all ${num(final.stored)} stored after ${(final.atMs / 1000).toFixed(1)} s (catch-up ${catchUpS.toFixed(1)} s)`,
      `sustained end to end = ${num(sustained)} events/s (target ≥ ${num(TARGET_EVENTS_PER_SEC)}); max lag ${maxLagS.toFixed(1)} s / ${num(maxLagEvents)} events (target < ${TARGET_LAG_S} s)`,
      `RSS: max ${num(session.memory.maxRssMb, 1)} MB`,
    ];
    if (session.logLines.length > 0) lines.push(`farol logged ${session.logLines.length} line(s) at warn or above; first: ${session.logLines[0]}`);
    return {
      report: lines.join('\n'),
      checks,
      data: { run, loadEndMs, final, samples, ingestRate, storedDuringLoad, sustained, maxLagS, maxLagEvents, catchUpS, memory: session.memory },
    };
  },
};
