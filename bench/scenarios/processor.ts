import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { machineDelta, readMachineCpu, readTreeCpuSeconds, type MachineCpu } from '../proc.ts';
import { num, table } from '../report.ts';
import { rowFromPhase, rowFromWindow } from '../results.ts';
import { loadPhase, type LoadPhase, type Scenario } from '../scenario.ts';
import { fetchMetrics, metricSum, ROOT, startCollector, threadSetting, type Server } from '../servers.ts';

/*
 * `processor`: the processor alone, without ingest on its event loop. `farol collector` fills the
 * local hub with /api/batch (100 events per request) for `--duration` seconds and stops; then
 * `farol start` on the same data dir (its collector idle) drains the hub into the embedded chDB.
 * Reports events/s into ClickHouse and events per CPU-second of the process (all threads, chDB's
 * included), measured from the first stored row to the last: what the processor's writes cost,
 * whatever the collector in front of it can ingest (issues #9 and #12).
 */

const SCRIPT = join(ROOT, 'bench', 'wrk', 'batch.lua');
const EVENTS_PER_REQUEST = 100;
const DRAIN_TIMEOUT_MS = 600_000;

async function storedEvents(server: Server): Promise<number> {
  return metricSum(await fetchMetrics(server), 'farol_processor_rows_total', (l) => l['table'] === 'events');
}

async function settledIngested(server: Server): Promise<number> {
  let last = -1;
  for (let i = 0; i < 50; i++) {
    const now = metricSum(await fetchMetrics(server), 'farol_ingest_events_total');
    if (now === last) return now;
    last = now;
    await new Promise((r) => setTimeout(r, 200));
  }
  return last;
}

export const processorScenario: Scenario = {
  name: 'processor',
  summary: 'the processor alone: a hub filled by farol collector, drained by farol start into chDB (events/s, events per CPU-second)',
  async run(ctx) {
    const dataDir = mkdtempSync(join(tmpdir(), 'farol-bench-processor-'));
    try {
      const collector = await startCollector({ dataDir });
      let ingested: number;
      let fill: LoadPhase;
      try {
        fill = await loadPhase(ctx, collector, { script: SCRIPT, label: 'filling the hub', durationS: ctx.opts.durationS, scriptArgs: [`--events=${EVENTS_PER_REQUEST}`] });
        // Requests wrk left in flight are still being answered: the count is read once it stops moving.
        ingested = await settledIngested(collector);
        await collector.stop(30_000);
      } finally {
        await collector.kill();
      }
      ctx.progress(`hub holds ${num(ingested)} events; draining them with farol start`);
      const start = await startCollector({ dataDir, command: 'start' });
      try {
        const pid = start.child.pid;
        const samples: Array<{ ms: number; stored: number; cpu: number | null; machine: MachineCpu | null }> = [];
        const deadline = Date.now() + DRAIN_TIMEOUT_MS;
        for (;;) {
          const stored = await storedEvents(start);
          samples.push({ ms: performance.now(), stored, cpu: readTreeCpuSeconds(pid), machine: readMachineCpu() });
          if (stored >= ingested || Date.now() > deadline) break;
          await new Promise((r) => setTimeout(r, 100));
        }
        // From the last sample before the first stored row (what came before is start-up and
        // migrations) to the first one with every row stored.
        const firstIdx = Math.max(0, samples.findIndex((x) => x.stored > 0) - 1);
        const first = samples[firstIdx];
        const last = samples.at(-1);
        if (first === undefined || last === undefined) throw new Error('no sample');
        const wallS = (last.ms - first.ms) / 1000;
        const cpuS = first.cpu === null || last.cpu === null ? null : last.cpu - first.cpu;
        const rows = last.stored - first.stored;
        const rate = rows / wallS;
        const perCpu = cpuS === null ? null : rows / cpuS;
        const drained = last.stored === ingested;
        const lines = [
          table(
            ['events', 'drain s', 'events/s', 'CPU s', 'CPU cores', 'events per CPU-second'],
            [[num(rows), wallS.toFixed(1), num(rate), cpuS === null ? '—' : cpuS.toFixed(1), cpuS === null ? '—' : (cpuS / wallS).toFixed(2), perCpu === null ? '—' : num(perCpu)]],
          ),
          '',
          `the hub held ${num(ingested)} events (${ctx.opts.durationS} s of /api/batch × ${EVENTS_PER_REQUEST} into farol collector); farol start stored ${num(last.stored)}`,
        ];
        return {
          report: lines.join('\n'),
          checks: [
            { name: 'every event in the hub reached ClickHouse', value: `${num(last.stored)} of ${num(ingested)}`, target: '=', pass: drained, kind: 'correctness' as const },
          ],
          data: { ingested, stored: last.stored, rows, wallS, cpuS, rate, perCpu, fill },
          rows: [
            rowFromPhase(fill, { scenario: 'processor', process: 'collector (filling the hub)', threads: threadSetting(undefined).label, eventsPerRequest: EVENTS_PER_REQUEST }),
            rowFromWindow(
              {
                wallS,
                processes: { server: cpuS },
                harnessS: null,
                reapedChildrenS: null,
                machine: machineDelta(first.machine, last.machine, wallS),
              },
              { scenario: 'processor', process: 'farol start (draining)', threads: '—', eventsPerRequest: EVENTS_PER_REQUEST, events: rows, requestsPerSec: null, eventsPerSec: rate, p99Ms: null },
            ),
          ],
        };
      } finally {
        await start.kill();
      }
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  },
};
