import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { CpuWindow, readThreadCpu, threadCpuDelta, type CpuUsage, type ThreadCpu } from './proc.ts';
import { fetchMetrics, metricSum, ROOT, type MetricSample, type Server } from './servers.ts';
import type { Check, ResultRow } from './results.ts';
import { runWrk, type WrkRun } from './wrk.ts';

/* What a scenario is, and the pieces scenarios share: a measured wrk phase, ingest metrics. */

export interface BenchOptions {
  durationS: number;
  connections: number;
  /** wrk's threads (`--wrk-threads`). */
  wrkThreads: number;
  /**
   * FAROL_COLLECTOR_THREADS per measured configuration (`--threads 1,2`): the collector, batch and
   * e2e scenarios measure the Farol server once per value, in order. Undefined: the variable is
   * left unset (Farol's default).
   */
  collectorThreads?: number[];
  warmupS: number;
  /** Where the JSON goes. */
  jsonPath: string;
  /** Run the collector under `node --cpu-prof` and summarize the profile of the measured run. */
  cpuProf: boolean;
  /** Exit non-zero when a performance target is missed (correctness failures always do). */
  strict: boolean;
  /** Collector scenario: measure the plain and the HTTPS collector instead (bench/scenarios/collector-tls.ts). */
  tls?: boolean;
  /**
   * FAROL_HUB_SYNC values (`--hub-sync`). One: every Farol server of the scenario runs with it.
   * Several (collector scenario): the collector is measured once per value, in the order given
   * (bench/scenarios/collector-sync.ts).
   */
  hubSync?: string[];
  /** FAROL_* settings of every Farol server (`--set`), under the bench's own. */
  serverEnv?: Record<string, string>;
  /** e2e: the paced phase's rate, % of the sustained rate (`--paced`, default 80). */
  pacedPercent?: number;
}

export type { Check };

export interface ScenarioContext {
  opts: BenchOptions;
  wrk: string;
  /** bench/results/<scenario>-<stamp> without extension, for side files (profiles). */
  artifactBase: string;
  progress(message: string): void;
}

export interface ScenarioResult {
  /** Printed after the run: tables and verdicts. */
  report: string;
  checks: Check[];
  /** Every number, for the JSON file. */
  data: Record<string, unknown>;
  /** One row per measured process and configuration, for the Markdown table and the SVG chart. */
  rows?: ResultRow[];
}

export interface Scenario {
  name: string;
  summary: string;
  run(ctx: ScenarioContext): Promise<ScenarioResult>;
}

/** The FAROL_COLLECTOR_THREADS values to measure, in order: `--threads`, or one run with the variable unset. */
export function threadSweep(opts: BenchOptions): Array<number | undefined> {
  return opts.collectorThreads && opts.collectorThreads.length > 0 ? opts.collectorThreads : [undefined];
}

/** µs on CLOCK_MONOTONIC, the clock of V8 CPU profiles. */
export function monotonicUs(): number {
  return Number(process.hrtime.bigint() / 1000n);
}

export interface LoadPhase extends WrkRun {
  /** CPU seconds the server used during the phase (all its threads), and that over wall time. */
  serverCpuSeconds: number | null;
  serverCpuCores: number | null;
  /** The same split by thread: is the event loop saturated, and how much runs beside it. */
  serverThreads: ThreadCpu | null;
  /** wrk's CPU seconds (all its threads, from the harness's reaped-children time). */
  wrkCpuSeconds: number | null;
  /** Every CPU reading of the window: the server, the harness, wrk, the whole machine. */
  cpu: CpuUsage;
  startUs: number;
  endUs: number;
}

/** One wrk run against `server`, with the server's CPU time measured around it. */
export async function loadPhase(
  ctx: ScenarioContext,
  server: Server,
  p: { script: string; label: string; durationS: number; connections?: number; scriptArgs?: string[] },
): Promise<LoadPhase> {
  const connections = p.connections ?? ctx.opts.connections;
  ctx.progress(`${server.name}: ${p.label} (${p.durationS} s, ${connections} connections)`);
  const window = CpuWindow.start({ server: server.child.pid });
  const threads0 = readThreadCpu(server.child.pid);
  const startUs = monotonicUs();
  const run = await runWrk({
    wrk: ctx.wrk,
    cwd: ROOT,
    url: server.url,
    script: p.script,
    threads: ctx.opts.wrkThreads,
    connections,
    durationS: p.durationS,
    label: p.label,
    ...(p.scriptArgs ? { scriptArgs: p.scriptArgs } : {}),
  });
  const endUs = monotonicUs();
  // wrk has exited and been reaped (runWrk waits for its exit): its CPU is in the harness's cutime.
  const cpu = window.stop();
  const threads = threadCpuDelta(threads0, readThreadCpu(server.child.pid));
  if (server.child.done) throw new Error(`${server.name} died during ${p.label}:\n${server.child.output.join('\n')}`);
  const serverCpu = cpu.processes['server'] ?? null;
  const wallS = (endUs - startUs) / 1e6;
  return {
    ...run,
    serverCpuSeconds: serverCpu,
    serverCpuCores: serverCpu === null ? null : serverCpu / wallS,
    serverThreads: threads,
    wrkCpuSeconds: cpu.reapedChildrenS,
    cpu,
    startUs,
    endUs,
  };
}

/** The collector's ingest counters, as read from /metrics. */
export interface IngestCounters {
  events: number;
  rejected: number;
  rejectedByCode: Record<string, number>;
  dropped: number;
  /** Requests per route and status, `route status` → count. */
  requests: Record<string, number>;
}

export function ingestCounters(samples: MetricSample[]): IngestCounters {
  const rejectedByCode: Record<string, number> = {};
  const requests: Record<string, number> = {};
  for (const s of samples) {
    if (s.name === 'farol_ingest_rejected_total') rejectedByCode[s.labels['code'] ?? '?'] = s.value;
    if (s.name === 'farol_ingest_requests_total') requests[`${s.labels['route'] ?? '?'} ${s.labels['status'] ?? '?'}`] = s.value;
  }
  return {
    events: metricSum(samples, 'farol_ingest_events_total'),
    rejected: metricSum(samples, 'farol_ingest_rejected_total'),
    rejectedByCode,
    dropped: metricSum(samples, 'farol_ingest_dropped_total'),
    requests,
  };
}

export async function readIngestCounters(server: Server): Promise<IngestCounters> {
  return ingestCounters(await fetchMetrics(server));
}

/** Answers on `route` with a status other than `okStatus`. */
export function unexpectedAnswers(c: IngestCounters, route: string, okStatus: string): number {
  let n = 0;
  for (const [key, count] of Object.entries(c.requests)) {
    const [r, status] = key.split(' ');
    if (r === route && status !== okStatus) n += count;
  }
  return n;
}

/** Bytes under `dir` (the hub's segments), 0 when missing. */
export function dirBytes(dir: string): number {
  let total = 0;
  let entries: string[];
  try {
    entries = readdirSync(dir);
  } catch {
    return 0;
  }
  for (const name of entries) {
    const p = join(dir, name);
    const st = statSync(p, { throwIfNoEntry: false });
    if (!st) continue;
    total += st.isDirectory() ? dirBytes(p) : st.size;
  }
  return total;
}

/** Lines a server logged at warn level or worse (it runs with FAROL_LOG_LEVEL=warn). */
export function loggedProblems(output: string[]): string[] {
  return output.filter((l) => l.trim() !== '');
}
