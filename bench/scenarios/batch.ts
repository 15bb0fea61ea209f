import { join } from 'node:path';
import { formatProfileSummary } from '../cpu-profile.ts';
import { ms, num, table } from '../report.ts';
import { loadPhase, readIngestCounters, type Scenario } from '../scenario.ts';
import { measureBare, withCollector } from '../sessions.ts';
import { ROOT } from '../servers.ts';
import { correctnessChecks, cpuCores, mainThreadLine, serverRow } from './common.ts';

/*
 * `batch`: POST /api/batch with 100 events per request (target: ≥ 250k events/s per
 * collector core). The bare uWS endpoint takes the same bodies as a reference for what the load
 * generator and loopback can carry; the target itself is absolute.
 */

const SCRIPT = join(ROOT, 'bench', 'wrk', 'batch.lua');
const EVENTS_PER_REQUEST = 100;
const TARGET_EVENTS_PER_SEC = 250_000;

export const batchScenario: Scenario = {
  name: 'batch',
  summary: `/api/batch with ${EVENTS_PER_REQUEST} events per request: events/s of the collector (bare uWS for reference)`,
  async run(ctx) {
    const args = [`--events=${EVENTS_PER_REQUEST}`];
    const bare = await measureBare(ctx, SCRIPT);
    const session = await withCollector(ctx, async (server, marks) => {
      const warmup = await loadPhase(ctx, server, { script: SCRIPT, label: 'warm-up', durationS: ctx.opts.warmupS, scriptArgs: args });
      const run = await loadPhase(ctx, server, { script: SCRIPT, label: 'measured', durationS: ctx.opts.durationS, scriptArgs: args });
      marks.profileWindow = [run.startUs, run.endUs];
      await new Promise((r) => setTimeout(r, 500));
      const final = await readIngestCounters(server);
      return { warmup, run, final };
    });
    const { warmup, run, final } = session.value;

    const eventsPerSec = run.requestsPerSec * EVENTS_PER_REQUEST;
    const cpu = run.serverCpuSeconds;
    const eventsPerCpuSec = cpu && cpu > 0 ? (run.requests * EVENTS_PER_REQUEST) / cpu : null;
    const phases = [warmup, run];
    const answered2xx = phases.reduce((a, p) => a + p.requests - p.non2xx, 0);
    const checks = correctnessChecks(final, phases, answered2xx, '/api/batch', '202', EVENTS_PER_REQUEST);
    checks.unshift(
      {
        name: 'collector events/s (one event loop)',
        value: num(eventsPerSec),
        target: `≥ ${num(TARGET_EVENTS_PER_SEC)}`,
        pass: eventsPerSec >= TARGET_EVENTS_PER_SEC,
        kind: 'target',
      },
      { name: 'collector max RSS', value: `${num(session.memory.maxRssMb, 1)} MB`, target: '< 300 MB', pass: session.memory.maxRssMb < 300, kind: 'target' },
    );

    const rows = [
      serverRow('bare uWS', bare.run, bare.memory?.hwmMb ?? null, [num(bare.run.requestsPerSec * EVENTS_PER_REQUEST)]),
      serverRow('collector', run, session.memory.maxRssMb, [num(eventsPerSec)]),
    ];
    const lines = [
      table(['server', 'req/s', 'events/s', 'p50', 'p90', 'p99', 'max', 'non-2xx', 'sock err', 'RSS', 'CPU cores (main)'], rows),
      '',
      `collector events/s = ${num(eventsPerSec)} (target ≥ ${num(TARGET_EVENTS_PER_SEC)} per collector core)`,
      `collector CPU: ${cpu === null ? '—' : `${cpu.toFixed(1)} s over ${run.durationS.toFixed(1)} s`}, ${cpuCores(run)} cores (main = the event loop; the rest is the libuv pool's writes and fsyncs, GC) → ${num(eventsPerCpuSec)} events per CPU-second`,
      mainThreadLine(run),
      `collector p99 per batch request = ${ms(run.latency.p99Ms)}`,
      `collector RSS: max ${num(session.memory.maxRssMb, 1)} MB, VmHWM ${num(session.memory.hwmMb, 1)} MB (target < 300 MB)`,
      `collector /metrics: farol_ingest_events_total ${num(final.events)}, rejected ${num(final.rejected)}, dropped ${num(final.dropped)}; requests ${JSON.stringify(final.requests)}`,
      `hub: ${num(session.hubBytes / 1048576, 1)} MB on disk, ${num(session.hubBytes / Math.max(1, final.events))} bytes per event`,
    ];
    if (session.logLines.length > 0) lines.push(`collector logged ${session.logLines.length} line(s) at warn or above; first: ${session.logLines[0]}`);
    if (session.profile) lines.push('', `CPU profile of the measured collector run (${session.profile.file}):`, formatProfileSummary(session.profile.summary));

    return {
      report: lines.join('\n'),
      checks,
      data: {
        eventsPerRequest: EVENTS_PER_REQUEST,
        bare,
        collector: { warmup, run, metrics: final, memory: session.memory, hubBytes: session.hubBytes, logLines: session.logLines },
        eventsPerSec,
        eventsPerCpuSecond: eventsPerCpuSec,
        profile: session.profile,
      },
    };
  },
};
