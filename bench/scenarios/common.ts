import { formatProfileSummary } from '../cpu-profile.ts';
import { ms, num } from '../report.ts';
import { CPU_TARGETS, type ResultRow } from '../results.ts';
import { threadSweep, unexpectedAnswers, type Check, type IngestCounters, type LoadPhase, type ScenarioContext } from '../scenario.ts';
import { COLLECTOR_THREADS_VAR, threadSetting, type Server, type ThreadSetting } from '../servers.ts';
import { withCollector, type CollectorSession, type SessionMarks } from '../sessions.ts';

/* Table rows, CPU lines, thread-sweep labels and correctness checks shared by the load scenarios. */

/** `threads 2: ` before a check's name when several thread counts were measured (or one was asked). */
export function threadTag(setting: ThreadSetting, sweepLength: number): string {
  return sweepLength > 1 || setting.asked !== null ? `threads ${setting.label}: ` : '';
}

/** The context of one configuration of a sweep: its side files (CPU profiles) get the thread count in their name. */
export function artifactsFor(ctx: ScenarioContext, setting: ThreadSetting, sweepLength: number): ScenarioContext {
  return sweepLength > 1 ? { ...ctx, artifactBase: `${ctx.artifactBase}-threads${setting.asked ?? 'default'}` } : ctx;
}

/** The collector's counters, its hub's bytes per event, what it logged and its CPU profile: the last lines of a configuration's report. */
export function sessionLines(session: CollectorSession<unknown>, final: IngestCounters): string[] {
  const lines = [
    `collector /metrics: farol_ingest_events_total ${num(final.events)}, rejected ${num(final.rejected)}, dropped ${num(final.dropped)}; requests ${JSON.stringify(final.requests)}`,
    `hub: ${num(session.hubBytes / 1048576, 1)} MB on disk, ${num(session.hubBytes / Math.max(1, final.events))} bytes per event`,
  ];
  if (session.logLines.length > 0) lines.push(`collector logged ${session.logLines.length} line(s) at warn or above; first: ${session.logLines[0]}`);
  if (session.profile) lines.push('', `CPU profile of the measured collector run (${session.profile.file}):`, formatProfileSummary(session.profile.summary));
  return lines;
}

/** The scenario's events per CPU-second target (CPU_TARGETS) checked against a row of the process. */
export function cpuTargetCheck(row: ResultRow, process = 'collector'): Check {
  const target = CPU_TARGETS[row.scenario];
  if (target === undefined) throw new Error(`no events per CPU-second target for ${row.scenario}`);
  return {
    name: `events per ${process} CPU-second`,
    value: num(row.eventsPerCpuS),
    target: `≥ ${num(target)}`,
    pass: row.eventsPerCpuS !== null && row.eventsPerCpuS >= target,
    kind: 'target',
  };
}

/**
 * Runs `body` against a fresh Farol server once per `--threads` value (FAROL_COLLECTOR_THREADS),
 * in order, one server at a time; `tag` prefixes the check names of a sweep.
 */
export async function sweepSessions<T>(
  ctx: ScenarioContext,
  command: 'collector' | 'start',
  body: (server: Server, marks: SessionMarks) => Promise<T>,
): Promise<Array<{ setting: ThreadSetting; tag: string; session: CollectorSession<T> }>> {
  const sweep = threadSweep(ctx.opts);
  const out = [];
  for (const asked of sweep) {
    const setting = threadSetting(asked);
    if (sweep.length > 1) ctx.progress(`${command === 'start' ? 'farol start' : 'collector'} with ${COLLECTOR_THREADS_VAR}=${setting.label}`);
    const session = await withCollector(artifactsFor(ctx, setting, sweep.length), body, command, false, asked);
    out.push({ setting, tag: threadTag(setting, sweep.length), session });
  }
  return out;
}

/** `2.31 CPU-s over 10.0 s → 63,210 events per CPU-second; wrk 1.02 CPU-s; machine 1.97 busy cores (0.05 other load)`. */
export function cpuLine(r: ResultRow): string {
  const f = (n: number | null, d: number): string => (n === null ? '—' : n.toFixed(d));
  return (
    `${f(r.cpuS, 2)} CPU-s (all threads) over ${f(r.wallS, 1)} s → ${num(r.eventsPerCpuS)} events per CPU-second; ` +
    `wrk ${f(r.wrkCpuS, 2)} CPU-s (${num(r.wrkEventsPerCpuS)} events per wrk CPU-second); machine ${f(r.machineBusyCores, 2)} busy cores (${f(r.otherCores, 2)} other load)`
  );
}

export function serverRow(name: string, p: LoadPhase, rssMb: number | null, extra: string[] = []): string[] {
  const sock = p.socketErrors.connect + p.socketErrors.read + p.socketErrors.write + p.socketErrors.timeout;
  return [
    name,
    num(p.requestsPerSec),
    ...extra,
    ms(p.latency.p50Ms),
    ms(p.latency.p90Ms),
    ms(p.latency.p99Ms),
    ms(p.latency.maxMs),
    num(p.non2xx),
    num(sock),
    rssMb === null ? '—' : `${num(rssMb, 1)} MB`,
    cpuCores(p),
  ];
}

/** `1.01 (main 0.87)`: cores the server used in all, and on its event-loop thread. */
export function cpuCores(p: LoadPhase): string {
  if (p.serverCpuCores === null) return '—';
  const wallS = (p.endUs - p.startUs) / 1e6;
  const main = p.serverThreads ? ` (main ${(p.serverThreads.mainS / wallS).toFixed(2)})` : '';
  return `${p.serverCpuCores.toFixed(2)}${main}`;
}

/**
 * What the collector's counters must show after a run: no answer but the expected one, nothing
 * rejected or dropped (the load has no bots and no bad events), and at least one durable event per
 * 2xx wrk saw (more is fine: wrk does not count requests still in flight when it stops).
 */
export function correctnessChecks(c: IngestCounters, phases: LoadPhase[], answered2xx: number, route: string, okStatus: string, eventsPerRequest: number): Check[] {
  const unexpected = unexpectedAnswers(c, route, okStatus);
  const wrkNon2xx = phases.reduce((a, p) => a + p.non2xx, 0);
  const sockErrors = phases.reduce((a, p) => a + p.socketErrors.connect + p.socketErrors.read + p.socketErrors.write + p.socketErrors.timeout, 0);
  const expected = answered2xx * eventsPerRequest;
  return [
    { name: `non-${okStatus} answers on ${route}`, value: num(unexpected), target: '0', pass: unexpected === 0, kind: 'correctness' },
    { name: 'non-2xx seen by wrk', value: num(wrkNon2xx), target: '0', pass: wrkNon2xx === 0, kind: 'correctness' },
    { name: 'socket errors seen by wrk', value: num(sockErrors), target: '0', pass: sockErrors === 0, kind: 'correctness' },
    { name: 'rejected events', value: num(c.rejected), target: '0', pass: c.rejected === 0, kind: 'correctness' },
    { name: 'dropped events (bots)', value: num(c.dropped), target: '0', pass: c.dropped === 0, kind: 'correctness' },
    {
      name: 'durable events ≥ 2xx answers × events/request',
      value: `${num(c.events)} vs ${num(expected)}`,
      target: '≥',
      pass: c.events >= expected,
      kind: 'correctness',
    },
  ];
}

/** How busy the event loop was and how often the kernel preempted it (a shared box shows here). */
export function mainThreadLine(p: LoadPhase): string {
  const t = p.serverThreads;
  if (!t) return 'collector threads: —';
  const wallS = (p.endUs - p.startUs) / 1e6;
  return (
    `collector threads (measured run): main ${((100 * t.mainS) / wallS).toFixed(0)}% of a core, others ${((100 * t.othersS) / wallS).toFixed(0)}%; ` +
    `main thread context switches/s: ${num(t.mainVoluntarySwitches / wallS)} voluntary, ${num(t.mainInvoluntarySwitches / wallS)} involuntary (preempted)`
  );
}
