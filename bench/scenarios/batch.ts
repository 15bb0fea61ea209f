import { join } from 'node:path';
import { ms, num, table } from '../report.ts';
import { CPU_TARGETS, rowFromPhase, type ResultRow } from '../results.ts';
import { loadPhase, readIngestCounters, type Check, type Scenario } from '../scenario.ts';
import { measureBare } from '../sessions.ts';
import { ROOT } from '../servers.ts';
import { correctnessChecks, cpuLine, cpuTargetCheck, sessionLines, mainThreadLine, serverRow, sweepSessions } from './common.ts';

/*
 * `batch`: POST /api/batch with 100 events per request (target: ≥ 250k events per collector
 * CPU-second, all threads), once per `--threads` value. The bare uWS endpoint takes the same
 * bodies as a reference for what the load generator and loopback can carry.
 */

const SCRIPT = join(ROOT, 'bench', 'wrk', 'batch.lua');
const EVENTS_PER_REQUEST = 100;

export const batchScenario: Scenario = {
  name: 'batch',
  summary: `/api/batch with ${EVENTS_PER_REQUEST} events per request: events per collector CPU-second (per --threads; bare uWS for reference)`,
  async run(ctx) {
    const args = [`--events=${EVENTS_PER_REQUEST}`];
    const bare = await measureBare(ctx, SCRIPT);
    const bareRow = rowFromPhase(bare.run, { scenario: 'batch', process: 'bare uWS', threads: '—', eventsPerRequest: EVENTS_PER_REQUEST });
    const rows: ResultRow[] = [bareRow];
    const checks: Check[] = [];
    const tableRows = [serverRow('bare uWS', bare.run, bare.memory?.hwmMb ?? null, [num(bare.run.requestsPerSec * EVENTS_PER_REQUEST)])];
    const lines: string[] = [`bare uWS: ${cpuLine(bareRow)}`];
    const configs = [];
    const sessions = await sweepSessions(
      ctx,
      'collector',
      async (server, marks) => {
        const warmup = await loadPhase(ctx, server, { script: SCRIPT, label: 'warm-up', durationS: ctx.opts.warmupS, scriptArgs: args });
        const run = await loadPhase(ctx, server, { script: SCRIPT, label: 'measured', durationS: ctx.opts.durationS, scriptArgs: args });
        marks.profileWindow = [run.startUs, run.endUs];
        await new Promise((r) => setTimeout(r, 500));
        const final = await readIngestCounters(server);
        return { warmup, run, final };
      },
    );
    for (const { setting, tag, session } of sessions) {
      const { warmup, run, final } = session.value;
      const row = rowFromPhase(run, { scenario: 'batch', process: 'collector', threads: setting.label, eventsPerRequest: EVENTS_PER_REQUEST, vsBare: run.requestsPerSec / bare.run.requestsPerSec });
      rows.push(row);
      const phases = [warmup, run];
      const answered2xx = phases.reduce((a, p) => a + p.requests - p.non2xx, 0);
      const targets: Check[] = [
        cpuTargetCheck(row),
        { name: 'collector max RSS', value: `${num(session.memory.maxRssMb, 1)} MB`, target: '< 300 MB', pass: session.memory.maxRssMb < 300, kind: 'target' },
      ];
      checks.push(...[...targets, ...correctnessChecks(final, phases, answered2xx, '/api/batch', '202', EVENTS_PER_REQUEST)].map((c) => ({ ...c, name: `${tag}${c.name}` })));
      tableRows.push(serverRow(`collector${tag ? ` ${tag.slice(0, -2)}` : ''}`, run, session.memory.maxRssMb, [num(row.eventsPerSec)]));
      lines.push(
        '',
        `collector${tag ? ` (${tag.slice(0, -2)})` : ''}: ${num(row.eventsPerSec)} events/s; ${cpuLine(row)} (target ≥ ${num(CPU_TARGETS['batch'])} events per CPU-second)`,
        mainThreadLine(run),
        `collector p99 per batch request = ${ms(run.latency.p99Ms)}; RSS max ${num(session.memory.maxRssMb, 1)} MB, VmHWM ${num(session.memory.hwmMb, 1)} MB (target < 300 MB)`,
        ...sessionLines(session, final),
      );
      configs.push({
        threads: setting,
        collector: { warmup, run, metrics: final, memory: session.memory, hubBytes: session.hubBytes, logLines: session.logLines },
        eventsPerSec: row.eventsPerSec,
        eventsPerCpuSecond: row.eventsPerCpuS,
        profile: session.profile,
      });
    }
    const report = [table(['server', 'req/s', 'events/s', 'p50', 'p90', 'p99', 'max', 'non-2xx', 'sock err', 'RSS', 'CPU cores (main)'], tableRows), '', ...lines].join('\n');
    return { report, checks, rows, data: { eventsPerRequest: EVENTS_PER_REQUEST, bare, configs } };
  },
};
