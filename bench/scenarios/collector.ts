import { join } from 'node:path';
import { formatProfileSummary } from '../cpu-profile.ts';
import { ms, num, table } from '../report.ts';
import { loadPhase, readIngestCounters, type LoadPhase, type Scenario, type ScenarioContext } from '../scenario.ts';
import { correctnessChecks, mainThreadLine, serverRow } from './common.ts';
import { measureBare, withCollector } from '../sessions.ts';
import { ROOT, type Server } from '../servers.ts';
import { collectorSyncRun } from './collector-sync.ts';
import { collectorTlsRun } from './collector-tls.ts';

/*
 * `collector`: one tracker beacon per request.
 *   1. bare uWS endpoint: warm-up, measured run at full speed, killed.
 *   2. collector: warm-up, measured run at full speed; then a paced run at half the collector's
 *      measured rate for "p99 at half rate"; memory sampled throughout; /metrics checked.
 */

const SCRIPT = join(ROOT, 'bench', 'wrk', 'beacons.lua');

export interface HalfRate {
  targetRps: number;
  intervalUs: number;
  calibration: LoadPhase;
  run: LoadPhase;
}

/**
 * wrk cannot pace by itself: the Lua script's delay() spaces each connection's requests by an
 * interval. A connection then sends one request per (interval + latency), so a short calibration
 * run measures that overhead and the interval is corrected once before the measured run.
 */
export async function halfRateRun(ctx: ScenarioContext, server: Server, script: string, maxRps: number): Promise<HalfRate> {
  const targetRps = maxRps / 2;
  const c = ctx.opts.connections;
  const ideal = (c / targetRps) * 1e6;
  let intervalUs = ideal;
  const calibration = await loadPhase(ctx, server, {
    script,
    label: 'half-rate calibration',
    durationS: Math.min(3, ctx.opts.durationS),
    scriptArgs: [`--interval-us=${Math.round(intervalUs)}`],
  });
  const achieved = calibration.requestsPerSec;
  if (achieved > 0 && Math.abs(achieved - targetRps) / targetRps > 0.03) {
    const overheadUs = (c / achieved) * 1e6 - intervalUs;
    intervalUs = Math.max(0, ideal - overheadUs);
  }
  const run = await loadPhase(ctx, server, {
    script,
    label: 'half rate',
    durationS: ctx.opts.durationS,
    scriptArgs: [`--interval-us=${Math.round(intervalUs)}`],
  });
  return { targetRps, intervalUs: Math.round(intervalUs), calibration, run };
}

export const collectorScenario: Scenario = {
  name: 'collector',
  summary: 'one beacon per request: bare uWS baseline vs the collector, p99 at half rate, RSS',
  async run(ctx) {
    if (ctx.opts.tls) return collectorTlsRun(ctx);
    if ((ctx.opts.hubSync?.length ?? 0) > 1) return collectorSyncRun(ctx);
    const bare = await measureBare(ctx, SCRIPT);

    const session = await withCollector(ctx, async (server, marks) => {
      const warmup = await loadPhase(ctx, server, { script: SCRIPT, label: 'warm-up', durationS: ctx.opts.warmupS });
      const run = await loadPhase(ctx, server, { script: SCRIPT, label: 'measured', durationS: ctx.opts.durationS });
      marks.profileWindow = [run.startUs, run.endUs];
      const afterRun = await readIngestCounters(server);
      const half = await halfRateRun(ctx, server, SCRIPT, run.requestsPerSec);
      // Let requests in flight when wrk stopped finish before reading the totals.
      await new Promise((r) => setTimeout(r, 500));
      const final = await readIngestCounters(server);
      return { warmup, run, afterRun, half, final };
    });
    const { run, half, final } = session.value;

    const ratio = run.requestsPerSec / bare.run.requestsPerSec;
    const phases = [session.value.warmup, run, half.calibration, half.run];
    const answered2xx = phases.reduce((a, p) => a + p.requests - p.non2xx, 0);
    const checks = correctnessChecks(final, phases, answered2xx, '/api/event', '202', 1);
    checks.unshift(
      { name: 'collector/bare req/s', value: ratio.toFixed(2), target: '≥ 0.70', pass: ratio >= 0.7, kind: 'target' },
      { name: 'p99 at half rate', value: ms(half.run.latency.p99Ms), target: '< 10 ms', pass: half.run.latency.p99Ms < 10, kind: 'target' },
      { name: 'collector max RSS', value: `${num(session.memory.maxRssMb, 1)} MB`, target: '< 300 MB', pass: session.memory.maxRssMb < 300, kind: 'target' },
    );

    const rows = [
      serverRow('bare uWS', bare.run, bare.memory?.hwmMb ?? null),
      serverRow('collector', run, session.memory.maxRssMb),
      serverRow(`collector @ ½ rate`, half.run, null),
    ];
    const lines = [
      table(['server', 'req/s', 'p50', 'p90', 'p99', 'max', 'non-2xx', 'sock err', 'RSS', 'CPU cores (main)'], rows),
      '',
      `ratio collector/bare = ${ratio.toFixed(2)} (target ≥ 0.70)`,
      `p99 at half rate = ${ms(half.run.latency.p99Ms)} at ${num(half.run.requestsPerSec)} req/s (target rate ${num(half.targetRps)}, ${half.intervalUs} µs per connection; target p99 < 10 ms)`,
      mainThreadLine(run),
      `collector RSS: max ${num(session.memory.maxRssMb, 1)} MB, VmHWM ${num(session.memory.hwmMb, 1)} MB over ${session.memory.samples} samples (target < 300 MB)`,
      `collector /metrics: farol_ingest_events_total ${num(final.events)}, rejected ${num(final.rejected)}, dropped ${num(final.dropped)}; requests ${JSON.stringify(final.requests)}`,
      `hub: ${num(session.hubBytes / 1048576, 1)} MB on disk, ${num(session.hubBytes / Math.max(1, final.events))} bytes per event`,
    ];
    if (session.logLines.length > 0) lines.push(`collector logged ${session.logLines.length} line(s) at warn or above; first: ${session.logLines[0]}`);
    if (session.profile) lines.push('', `CPU profile of the measured collector run (${session.profile.file}):`, formatProfileSummary(session.profile.summary));

    return {
      report: lines.join('\n'),
      checks,
      data: {
        bare,
        collector: { warmup: session.value.warmup, run, half, metricsAfterRun: session.value.afterRun, metrics: final, memory: session.memory, hubBytes: session.hubBytes, logLines: session.logLines },
        ratio,
        p99AtHalfRateMs: half.run.latency.p99Ms,
        profile: session.profile,
      },
    };
  },
};
