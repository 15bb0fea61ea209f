import { join } from 'node:path';
import { CpuWindow } from '../proc.ts';
import { ms, num, table } from '../report.ts';
import { rowFromPhase, rowFromWindow, type ResultRow } from '../results.ts';
import { loadPhase, type Check, type Scenario } from '../scenario.ts';
import { fetchMetrics, metricSum, ROOT, type Server } from '../servers.ts';
import { pacedRun } from './collector.ts';
import { cpuLine, serverRow, sweepSessions } from './common.ts';

/*
 * `e2e`: collector → local hub → processor → ClickHouse (embedded chDB) in one `farol start`
 * process, driven with /api/batch (100 events per request), once per `--threads` value. Target:
 * sustained ≥ 50k events/s with lag < 5 s and collector p99 < 25 ms on 2 cores.
 *   1. Full speed: the ingest rate, the rate rows reached ClickHouse while wrk ran and until the
 *      processor caught up ("sustained"), the largest lag, and the process's CPU from the load's
 *      start until every event was stored. Unpaced, wrk's connections queue behind whatever is
 *      slowest, so its latency is connections ÷ throughput (Little's law: 64 connections at 200
 *      req/s wait ~320 ms each) and the lag grows for as long as ingest outruns the processor.
 *   2. Paced at 80% of that sustained rate (`--paced <percent>`), after the catch-up: the
 *      collector's p99 and the largest lag while ingest runs at a rate the processor should keep
 *      up with (sustained counts the catch-up, when ingest is idle: it may not). The lag and p99
 *      targets are checked here: "lag < 5 s and p99 < 25 ms while sustaining the rate".
 */

const SCRIPT = join(ROOT, 'bench', 'wrk', 'batch.lua');
const EVENTS_PER_REQUEST = 100;
const TARGET_EVENTS_PER_SEC = 50_000;
const TARGET_LAG_S = 5;
const TARGET_P99_MS = 25;
/** The paced phase's rate, % of the sustained rate the full-speed phase measured (`--paced`). */
const PACED_PERCENT = 80;

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
  summary: `farol start (collector + hub + processor + chDB), /api/batch × ${EVENTS_PER_REQUEST}: events/s into ClickHouse, lag, p99, events per CPU-second (per --threads)`,
  async run(ctx) {
    const args = [`--events=${EVENTS_PER_REQUEST}`];
    const pacedPercent = ctx.opts.pacedPercent ?? PACED_PERCENT;
    const pacedLabel = `paced at ${pacedPercent}% of sustained`;
    const rows: ResultRow[] = [];
    const checks: Check[] = [];
    const tableRows: string[][] = [];
    const lines: string[] = [];
    const configs = [];
    const sessions = await sweepSessions(
      ctx,
      'start',
      async (server) => {
        const startedAt = Date.now();
        const s = sampler(server, startedAt);
        // From the load's start until every event is stored: what the whole process spent on them.
        const window = CpuWindow.start({ server: server.child.pid });
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
        const cpu = window.stop();
        await s.stop();
        // 2. Paced at a share of what was sustained, once everything is stored.
        const sustainedRate = last.stored / (last.atMs / 1000);
        const pacedStart = Date.now();
        const before = await sample(server, pacedStart);
        const ps = sampler(server, pacedStart);
        const paced = await pacedRun(ctx, server, SCRIPT, (pacedPercent * sustainedRate) / 100 / EVENTS_PER_REQUEST, pacedLabel, args);
        await ps.stop();
        const pacedEnd = await sample(server, pacedStart);
        return { run, loadEndMs, atLoadEnd, final: last, samples: s.samples, cpu, paced, pacedSamples: ps.samples, pacedStored: pacedEnd.stored - before.stored, pacedMs: pacedEnd.atMs - before.atMs, pacedEndLag: pacedEnd.lagSeconds };
      },
    );
    for (const { setting, tag, session } of sessions) {
      const { run, loadEndMs, atLoadEnd, final, samples, cpu, paced, pacedSamples, pacedStored, pacedMs, pacedEndLag } = session.value;
      // The paced phase's samples, its calibration included (paced too).
      const pacedLagS = Math.max(pacedEndLag, 0, ...pacedSamples.map((x) => x.lagSeconds));
      const pacedStoredRate = pacedStored / (pacedMs / 1000);
      const ingestRate = final.ingested / (loadEndMs / 1000);
      const storedDuringLoad = atLoadEnd.stored / (loadEndMs / 1000);
      const sustained = final.stored / (final.atMs / 1000);
      const maxLagS = Math.max(0, ...samples.map((x) => x.lagSeconds));
      const maxLagEvents = Math.max(0, ...samples.map((x) => x.lagEvents));
      const catchUpS = (final.atMs - loadEndMs) / 1000;
      const caughtUp = final.stored >= final.ingested && final.lagEvents === 0;
      const row = rowFromWindow(cpu, {
        scenario: 'e2e',
        process: 'farol start',
        threads: setting.label,
        eventsPerRequest: EVENTS_PER_REQUEST,
        events: final.stored,
        requestsPerSec: run.requestsPerSec,
        eventsPerSec: sustained,
        p99Ms: run.latency.p99Ms,
      });
      rows.push(row);
      rows.push(rowFromPhase(paced.run, { scenario: 'e2e', process: `farol start, ${pacedLabel}`, threads: setting.label, eventsPerRequest: EVENTS_PER_REQUEST }));
      const sock = run.socketErrors.connect + run.socketErrors.read + run.socketErrors.write + run.socketErrors.timeout;
      const these: Check[] = [
        { name: 'sustained events/s into ClickHouse', value: num(sustained), target: `≥ ${num(TARGET_EVENTS_PER_SEC)}`, pass: sustained >= TARGET_EVENTS_PER_SEC, kind: 'target' },
        { name: `max lag, paced at ${num(paced.run.requestsPerSec * EVENTS_PER_REQUEST)} events/s`, value: `${pacedLagS.toFixed(1)} s`, target: `< ${TARGET_LAG_S} s`, pass: pacedLagS < TARGET_LAG_S, kind: 'target' },
        { name: 'collector p99, paced', value: ms(paced.run.latency.p99Ms), target: `< ${TARGET_P99_MS} ms`, pass: paced.run.latency.p99Ms < TARGET_P99_MS, kind: 'target' },
        { name: 'every ingested event reached ClickHouse', value: `${num(final.stored)} of ${num(final.ingested)}`, target: '=', pass: caughtUp && final.stored === final.ingested, kind: 'correctness' },
        { name: 'non-2xx seen by wrk', value: num(run.non2xx), target: '0', pass: run.non2xx === 0, kind: 'correctness' },
        { name: 'socket errors seen by wrk', value: num(sock), target: '0', pass: sock === 0, kind: 'correctness' },
      ];
      checks.push(...these.map((c) => ({ ...c, name: `${tag}${c.name}` })));
      tableRows.push(serverRow(`farol start${tag ? ` ${tag.slice(0, -2)}` : ''}`, run, session.memory.maxRssMb, [num(run.requestsPerSec * EVENTS_PER_REQUEST)]));
      tableRows.push(serverRow(`  ${pacedLabel}`, paced.run, null, [num(paced.run.requestsPerSec * EVENTS_PER_REQUEST)]));
      lines.push(
        '',
        ...(tag ? [`${tag.slice(0, -2)}:`] : []),
        `ingested ${num(final.ingested)} events in ${(loadEndMs / 1000).toFixed(1)} s = ${num(ingestRate)} events/s`,
        `rows in ClickHouse while loading: ${num(storedDuringLoad)} events/s; all ${num(final.stored)} stored after ${(final.atMs / 1000).toFixed(1)} s (catch-up ${catchUpS.toFixed(1)} s)`,
        `sustained end to end = ${num(sustained)} events/s (target ≥ ${num(TARGET_EVENTS_PER_SEC)}); at full speed max lag ${maxLagS.toFixed(1)} s / ${num(maxLagEvents)} events, p99 ${ms(run.latency.p99Ms)} (${ctx.opts.connections} connections queued)`,
        `paced at ${num(paced.run.requestsPerSec * EVENTS_PER_REQUEST)} events/s (target ${num(paced.targetRps * EVENTS_PER_REQUEST)}, ${pacedPercent}% of sustained): stored ${num(pacedStoredRate)} events/s, max lag ${pacedLagS.toFixed(1)} s (target < ${TARGET_LAG_S} s), p99 ${ms(paced.run.latency.p99Ms)} (target < ${TARGET_P99_MS} ms)`,
        `farol start, load and catch-up: ${cpuLine(row)}`,
        `RSS: max ${num(session.memory.maxRssMb, 1)} MB`,
      );
      if (session.logLines.length > 0) lines.push(`farol logged ${session.logLines.length} line(s) at warn or above; first: ${session.logLines[0]}`);
      configs.push({
        threads: setting,
        run,
        loadEndMs,
        final,
        samples,
        ingestRate,
        storedDuringLoad,
        sustained,
        maxLagS,
        maxLagEvents,
        catchUpS,
        cpu,
        eventsPerCpuSecond: row.eventsPerCpuS,
        memory: session.memory,
        paced: { targetEventsPerSec: paced.targetRps * EVENTS_PER_REQUEST, run: paced.run, calibration: paced.calibration, storedPerSec: pacedStoredRate, maxLagS: pacedLagS, samples: pacedSamples },
      });
    }
    const report = [table(['server', 'req/s', 'events/s in', 'p50', 'p90', 'p99', 'max', 'non-2xx', 'sock err', 'RSS', 'CPU cores (main)'], tableRows), ...lines].join('\n');
    return { report, checks, rows, data: { configs } };
  },
};
