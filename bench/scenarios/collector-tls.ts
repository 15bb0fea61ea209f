import { join } from 'node:path';
import { num, table } from '../report.ts';
import { rowFromPhase } from '../results.ts';
import { loadPhase, readIngestCounters, type LoadPhase, type ScenarioContext, type ScenarioResult } from '../scenario.ts';
import { withCollector } from '../sessions.ts';
import { ROOT, threadSetting } from '../servers.ts';
import { correctnessChecks, cpuCores, serverRow } from './common.ts';

/*
 * `collector --tls`: what HTTPS costs the collector. The plain collector and the HTTPS one
 * (self-signed P-256 certificate, TLS 1.3 as wrk and uSockets negotiate it) run one after the
 * other in the same run, same beacons, same wrk settings: warm-up, then a measured run at full
 * speed. wrk keeps its connections alive, so this is the steady cost of encryption per request;
 * handshakes happen once per connection (a browser sending one beacon per page on a fresh
 * connection pays a handshake more).
 */

const SCRIPT = join(ROOT, 'bench', 'wrk', 'beacons.lua');

export interface Measured {
  run: LoadPhase;
  /** Events made durable per CPU-second of the collector (all threads) in the measured run. */
  eventsPerCpuSecond: number | null;
  maxRssMb: number;
  /** Events made durable during the measured run (from /metrics). */
  events: number;
  /** FAROL_COLLECTOR_THREADS as run. */
  threads: string;
}

/** One collector (plain or HTTPS) started, warmed up, measured at full speed and killed. */
export async function measureCollector(ctx: ScenarioContext, tls: boolean): Promise<{ m: Measured; phases: LoadPhase[]; checks: ReturnType<typeof correctnessChecks> }> {
  const session = await withCollector(
    ctx,
    async (server) => {
      const warmup = await loadPhase(ctx, server, { script: SCRIPT, label: 'warm-up', durationS: ctx.opts.warmupS });
      const before = await readIngestCounters(server);
      const run = await loadPhase(ctx, server, { script: SCRIPT, label: 'measured', durationS: ctx.opts.durationS });
      const after = await readIngestCounters(server);
      await new Promise((r) => setTimeout(r, 500));
      const final = await readIngestCounters(server);
      return { warmup, run, events: after.events - before.events, final };
    },
    'collector',
    tls,
    ctx.opts.collectorThreads?.[0],
  );
  const { warmup, run, events, final } = session.value;
  const phases = [warmup, run];
  const answered2xx = phases.reduce((a, p) => a + p.requests - p.non2xx, 0);
  const eventsPerCpuSecond = run.serverCpuSeconds === null || run.serverCpuSeconds === 0 ? null : events / run.serverCpuSeconds;
  return { m: { run, eventsPerCpuSecond, maxRssMb: session.memory.maxRssMb, events, threads: threadSetting(ctx.opts.collectorThreads?.[0]).label }, phases, checks: correctnessChecks(final, phases, answered2xx, '/api/event', '202', 1) };
}

export async function collectorTlsRun(ctx: ScenarioContext): Promise<ScenarioResult> {
  const plain = await measureCollector(ctx, false);
  const tls = await measureCollector(ctx, true);
  const rps = tls.m.run.requestsPerSec / plain.m.run.requestsPerSec;
  const perCpu = plain.m.eventsPerCpuSecond && tls.m.eventsPerCpuSecond ? tls.m.eventsPerCpuSecond / plain.m.eventsPerCpuSecond : null;
  const checks = [...plain.checks.map((c) => ({ ...c, name: `plain: ${c.name}` })), ...tls.checks.map((c) => ({ ...c, name: `tls: ${c.name}` }))];
  const epc = (m: Measured): string => (m.eventsPerCpuSecond === null ? '—' : num(m.eventsPerCpuSecond));
  const rows = [serverRow('collector (plain)', plain.m.run, plain.m.maxRssMb, [epc(plain.m)]), serverRow('collector (TLS)', tls.m.run, tls.m.maxRssMb, [epc(tls.m)])];
  const lines = [
    table(['server', 'req/s', 'events/CPU-s', 'p50', 'p90', 'p99', 'max', 'non-2xx', 'sock err', 'RSS', 'CPU cores (main)'], rows),
    '',
    `TLS/plain: req/s ${rps.toFixed(2)}, events per CPU-second ${perCpu === null ? '—' : perCpu.toFixed(2)} (keep-alive connections: handshakes excluded)`,
    `CPU cores used: plain ${cpuCores(plain.m.run)}, TLS ${cpuCores(tls.m.run)}`,
  ];
  return {
    report: lines.join('\n'),
    checks,
    data: { plain: plain.m, tls: tls.m, ratio: { requestsPerSec: rps, eventsPerCpuSecond: perCpu } },
    rows: [plain, tls].map((x, i) =>
      rowFromPhase(x.m.run, { scenario: 'collector --tls', process: i === 0 ? 'collector (plain)' : 'collector (TLS)', threads: x.m.threads, eventsPerRequest: 1, events: x.m.events }),
    ),
  };
}
