import { ms, num, table } from '../report.ts';
import { rowFromPhase } from '../results.ts';
import type { ScenarioContext, ScenarioResult } from '../scenario.ts';
import { measureCollector, type Measured } from './collector-tls.ts';
import { serverRow } from './common.ts';

/*
 * `collector --hub-sync always,interval:100,…`: what the local hub's durability mode costs a
 * single-event collector. One collector per value, in the order given (alternate them, e.g.
 * always,interval:100,always,interval:100, so that a shared machine's drift hits both), each
 * warmed up then measured at full speed with the same beacons and wrk settings. Reported per run
 * and as ratios of each mode's mean to the first mode's.
 */

interface SyncRun {
  hubSync: string;
  m: Measured;
}

const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);

export async function collectorSyncRun(ctx: ScenarioContext): Promise<ScenarioResult> {
  const modes = ctx.opts.hubSync ?? [];
  const runs: SyncRun[] = [];
  const checks: ScenarioResult['checks'] = [];
  for (const [i, hubSync] of modes.entries()) {
    ctx.progress(`collector with FAROL_HUB_SYNC=${hubSync} (${i + 1} of ${modes.length})`);
    const r = await measureCollector({ ...ctx, opts: { ...ctx.opts, hubSync: [hubSync] } }, false);
    runs.push({ hubSync, m: r.m });
    checks.push(...r.checks.map((c) => ({ ...c, name: `${hubSync} #${i + 1}: ${c.name}` })));
  }
  const epc = (m: Measured): string => (m.eventsPerCpuSecond === null ? '—' : num(m.eventsPerCpuSecond));
  const rows = runs.map((r, i) => serverRow(`#${i + 1} ${r.hubSync}`, r.m.run, r.m.maxRssMb, [epc(r.m)]));

  const distinct = [...new Set(modes)];
  const summary = distinct.map((hubSync) => {
    const of = runs.filter((r) => r.hubSync === hubSync).map((r) => r.m);
    return {
      hubSync,
      runs: of.length,
      requestsPerSec: mean(of.map((m) => m.run.requestsPerSec)),
      p50Ms: mean(of.map((m) => m.run.latency.p50Ms)),
      p99Ms: mean(of.map((m) => m.run.latency.p99Ms)),
      eventsPerCpuSecond: of.every((m) => m.eventsPerCpuSecond !== null) ? mean(of.map((m) => m.eventsPerCpuSecond ?? 0)) : null,
    };
  });
  const base = summary[0];
  const lines = [
    table(['collector (FAROL_HUB_SYNC)', 'req/s', 'events/CPU-s', 'p50', 'p90', 'p99', 'max', 'non-2xx', 'sock err', 'RSS', 'CPU cores (main)'], rows),
    '',
    table(
      ['mode (mean)', 'runs', 'req/s', 'p50', 'p99', 'events/CPU-s', `req/s ÷ ${base?.hubSync ?? '—'}`, 'events/CPU-s ratio'],
      summary.map((s) => [
        s.hubSync,
        String(s.runs),
        num(s.requestsPerSec),
        ms(s.p50Ms),
        ms(s.p99Ms),
        s.eventsPerCpuSecond === null ? '—' : num(s.eventsPerCpuSecond),
        base === undefined ? '—' : (s.requestsPerSec / base.requestsPerSec).toFixed(2),
        base?.eventsPerCpuSecond && s.eventsPerCpuSecond ? (s.eventsPerCpuSecond / base.eventsPerCpuSecond).toFixed(2) : '—',
      ]),
    ),
  ];
  const resultRows = runs.map((r, i) =>
    rowFromPhase(r.m.run, { scenario: 'collector --hub-sync', process: `#${i + 1} ${r.hubSync}`, threads: r.m.threads, eventsPerRequest: 1, events: r.m.events }),
  );
  return { report: lines.join('\n'), checks, data: { runs, summary }, rows: resultRows };
}
