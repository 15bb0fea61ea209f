import { ms, num } from '../report.ts';
import { unexpectedAnswers, type Check, type IngestCounters, type LoadPhase } from '../scenario.ts';

/* Table rows and correctness checks shared by the collector and batch scenarios. */

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
