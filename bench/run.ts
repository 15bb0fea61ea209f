import { mkdirSync } from 'node:fs';
import { loadavg } from 'node:os';
import { isAbsolute, join, relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { machineInfo, table, writeJson } from './report.ts';
import { DEFAULT_QUERY_OPTIONS, queryScenario, RANGES, ZONES, type QueryOptions, type RangeName, type ZoneName } from './query.ts';
import type { BenchOptions, Check, Scenario } from './scenario.ts';
import { hubSyncSchema } from '../schemas/config.ts';
import { batchScenario } from './scenarios/batch.ts';
import { collectorScenario } from './scenarios/collector.ts';
import { e2eScenario } from './scenarios/e2e.ts';
import { processorScenario } from './scenarios/processor.ts';
import { ROOT } from './servers.ts';
import { findWrk, WRK_INSTALL_HINT } from './wrk.ts';

/**
 * `npm run bench -- <scenario> [options]`: the Node harness for the targets. Each load scenario
 * starts its servers as child processes on 127.0.0.1, drives them with wrk, prints a table with
 * ratios against a baseline measured in the same run (the machine may be shared, so absolute
 * numbers are noisy), and writes every number to JSON. `query` needs no wrk: it runs the reporting
 * queries in-process on embedded chDB, rollups against raw tables.
 *
 * Exit status: 0 done; 1 harness failure (or wrk missing); 2 usage; 3 a correctness check failed
 * (or, with --strict, a performance target was missed).
 */

/** Scenarios by name. */
const SCENARIOS: Record<string, Scenario> = {
  collector: collectorScenario,
  batch: batchScenario,
  e2e: e2eScenario,
  processor: processorScenario,
  query: queryScenario(DEFAULT_QUERY_OPTIONS),
};

/** Scenarios that drive no server with wrk. */
const WITHOUT_WRK = new Set(['query']);

const USAGE = `usage: npm run bench -- <scenario> [options]

scenarios:
${Object.values(SCENARIOS)
  .map((s) => `  ${s.name.padEnd(10)} ${s.summary}`)
  .join('\n')}

options:
  --duration <s>      seconds per measured run (default 10)
  --warmup <s>        seconds of warm-up before each measured run (default 2)
  --connections <n>   wrk connections (default 64)
  --threads <n>       wrk threads (default 1)
  --json <path>       result file (default bench/results/<scenario>-<timestamp>.json)
  --cpu-prof          run the collector under node --cpu-prof and summarize the measured run
  --tls               collector scenario: plain vs HTTPS collector in one run (req/s, events per CPU-second)
  --hub-sync <list>   FAROL_HUB_SYNC of the Farol servers (always | interval:<ms>); with several, comma
                      separated (collector scenario), the collector is measured once per value in that
                      order, e.g. always,interval:100,always,interval:100 (req/s, p50/p99, events per CPU-second)
  --strict            exit 3 when a performance target is missed, not only on correctness failures

query options:
  --events <n>        events to generate over the last 30 days (default 10000000; 10% more go
                      into the five months before, for 6mo)
  --runs <n>          measured runs per query and mode for UTC 30d, after 2 warm-ups (default 20;
                      other ranges and zones get a quarter, at least 3)
  --data-dir <path>   keep the chDB data there and reuse it on the next run with the same --events
  --zones <list>      site time zones to read in, of ${Object.keys(ZONES).join(',')} (default all)
  --ranges <list>     date ranges, of ${RANGES.join(',')} (default all)
  --compare <json>    an earlier query run's result file: p95 then and now per query (with fewer
                      events then, 30d rollup answers must stay within 1.5×)`;

class UsageError extends Error {}

function listOf<T extends string>(flag: string, value: string | undefined, known: readonly T[]): T[] {
  const items = (value ?? '').split(',').filter((x) => x !== '');
  const bad = items.find((x) => !(known as readonly string[]).includes(x));
  if (items.length === 0 || bad !== undefined) throw new UsageError(`${flag} takes a comma-separated list of ${known.join(', ')}`);
  return [...new Set(items)] as T[];
}

function pathArg(flag: string, value: string | undefined): string {
  if (!value) throw new UsageError(`${flag} needs a path`);
  return resolve(process.cwd(), value);
}

function positiveInt(flag: string, value: string | undefined, max: number): number {
  const n = Number(value);
  if (value === undefined || !Number.isInteger(n) || n < 1 || n > max) throw new UsageError(`${flag} needs an integer from 1 to ${max}`);
  return n;
}

/** The options, for node:util's parseArgs. */
const OPTIONS = {
  duration: { type: 'string' },
  warmup: { type: 'string' },
  connections: { type: 'string' },
  threads: { type: 'string' },
  json: { type: 'string' },
  'cpu-prof': { type: 'boolean' },
  tls: { type: 'boolean' },
  'hub-sync': { type: 'string' },
  strict: { type: 'boolean' },
  events: { type: 'string' },
  runs: { type: 'string' },
  'data-dir': { type: 'string' },
  zones: { type: 'string' },
  ranges: { type: 'string' },
  compare: { type: 'string' },
} as const;

export function parseCommandLine(argv: string[], stamp: string): { scenario: Scenario; opts: BenchOptions; query: QueryOptions } {
  let name: string | undefined;
  let durationS = 10;
  let warmupS = 2;
  let connections = 64;
  let threads = 1;
  let json: string | undefined;
  let cpuProf = false;
  let tls = false;
  let hubSync: string[] | undefined;
  let strict = false;
  const query: QueryOptions = { ...DEFAULT_QUERY_OPTIONS };
  const queryFlags: string[] = [];
  // Not strict: the messages below say what each option needs.
  const { tokens } = parseArgs({ args: argv, options: OPTIONS, strict: false, allowPositionals: true, tokens: true });
  for (const token of tokens) {
    if (token.kind === 'option-terminator') continue;
    if (token.kind === 'positional') {
      if (name !== undefined) throw new UsageError(`one scenario at a time (got ${name} and ${token.value})`);
      name = token.value;
      continue;
    }
    const flag = token.rawName;
    const { value } = token;
    if (Object.hasOwn(OPTIONS, token.name) && OPTIONS[token.name as keyof typeof OPTIONS].type === 'boolean' && value !== undefined) {
      throw new UsageError(`${flag} takes no value`);
    }
    switch (token.name) {
      case 'duration':
        durationS = positiveInt(flag, value, 3600);
        break;
      case 'warmup':
        warmupS = positiveInt(flag, value, 600);
        break;
      case 'connections':
        connections = positiveInt(flag, value, 10_000);
        break;
      case 'threads':
        threads = positiveInt(flag, value, 256);
        break;
      case 'json':
        json = value;
        if (!json) throw new UsageError('--json needs a path');
        break;
      case 'cpu-prof':
        cpuProf = true;
        break;
      case 'tls':
        tls = true;
        break;
      case 'strict':
        strict = true;
        break;
      case 'hub-sync':
        hubSync = (value ?? '').split(',').map((x) => x.trim());
        if (hubSync.some((x) => !hubSyncSchema.safeParse(x).success) || hubSync.length > 20) {
          throw new UsageError(`${flag} takes a comma-separated list of always or interval:<ms> (1 to 60000)`);
        }
        break;
      case 'events':
        query.events = positiveInt(flag, value, 1_000_000_000);
        queryFlags.push(flag);
        break;
      case 'runs':
        query.runs = positiveInt(flag, value, 10_000);
        queryFlags.push(flag);
        break;
      case 'zones':
        query.zones = listOf(flag, value, Object.keys(ZONES) as ZoneName[]);
        queryFlags.push(flag);
        break;
      case 'ranges':
        query.ranges = listOf<RangeName>(flag, value, RANGES);
        queryFlags.push(flag);
        break;
      case 'compare':
        query.compare = pathArg(flag, value);
        queryFlags.push(flag);
        break;
      case 'data-dir':
        query.dataDir = pathArg(flag, value);
        queryFlags.push(flag);
        break;
      default:
        throw new UsageError(`unknown option ${flag}`);
    }
  }
  if (name === undefined) throw new UsageError('which scenario?');
  let scenario = SCENARIOS[name];
  if (!scenario) throw new UsageError(`unknown scenario "${name}"`);
  if (tls && name !== 'collector') throw new UsageError('--tls applies to the collector scenario only');
  if (hubSync !== undefined && (name === 'query' || (hubSync.length > 1 && (name !== 'collector' || tls)))) {
    throw new UsageError('--hub-sync applies to the load scenarios; several values to the collector scenario (without --tls) only');
  }
  if (name === 'query') scenario = queryScenario(query);
  else if (queryFlags.length > 0) throw new UsageError(`${queryFlags[0]} applies to the query scenario only`);
  const jsonPath = json ? (isAbsolute(json) ? json : resolve(process.cwd(), json)) : join(ROOT, 'bench', 'results', `${name}-${stamp}.json`);
  return { scenario, opts: { durationS, warmupS, connections, threads, jsonPath, cpuProf, strict, tls, ...(hubSync === undefined ? {} : { hubSync }) }, query };
}

function formatChecks(checks: Check[]): string {
  return table(
    ['check', 'value', 'target', 'verdict'],
    checks.map((c) => [c.name, c.value, c.target, c.pass ? 'ok' : c.kind === 'correctness' ? 'FAIL (bug)' : 'missed']),
  );
}

async function main(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h') || argv.length === 0) {
    process.stdout.write(`${USAGE}\n`);
    return argv.length === 0 ? 2 : 0;
  }
  // Colons are not portable in file names: 2025-01-31T12-00-00Z.
  const stamp = new Date().toISOString().replace(/\.\d+Z$/, 'Z').replaceAll(':', '-');
  let parsed: ReturnType<typeof parseCommandLine>;
  try {
    parsed = parseCommandLine(argv, stamp);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`bench: ${err.message}\n\n${USAGE}\n`);
    return 2;
  }
  const { scenario, opts } = parsed;
  const needsWrk = !WITHOUT_WRK.has(scenario.name);
  const wrk = needsWrk ? findWrk() : '';
  if (wrk === null) {
    process.stderr.write(`bench: ${WRK_INSTALL_HINT}\n`);
    return 1;
  }
  const machine = machineInfo();
  const resultsDir = join(ROOT, 'bench', 'results');
  mkdirSync(resultsDir, { recursive: true });

  // Bounded: every wrk run and server start has its own timeout; this catches anything else.
  const phases = scenario.name === 'collector' ? Math.max(5, 2 * (opts.hubSync?.length ?? 0)) : 4;
  // query: seeding (~1 min per million events on 2 busy cores) and the raw reads (seconds each at
  // 10M events, for every zone and range), with ample room.
  const pairs = (parsed.query.zones.length * parsed.query.ranges.length) / 3;
  const budgetS = needsWrk ? 2 * phases * (opts.durationS + opts.warmupS) + 300 : 1800 + Math.ceil((parsed.query.events / 2500) * Math.max(1, pairs));
  const watchdog = setTimeout(() => {
    process.stderr.write(`bench: gave up after ${budgetS} s\n`);
    process.exit(1); // the exit hook SIGKILLs every child
  }, budgetS * 1000);
  watchdog.unref();

  const startedAt = new Date().toISOString();
  const t0 = Date.now();
  process.stdout.write(
    `farol bench ${scenario.name} — ${machine.cpuModel}, ${machine.cores} cores, node ${machine.node}, commit ${machine.gitCommit}${machine.gitDirty ? ' (+ local changes)' : ''}, load avg ${machine.loadAvgAtStart.join(' ')}\n` +
      (needsWrk
        ? `wrk -t${opts.threads} -c${opts.connections}, ${opts.warmupS} s warm-up + ${opts.durationS} s per run${opts.cpuProf ? ', collector under --cpu-prof (numbers not comparable)' : ''}\n\n`
        : `in-process embedded chDB, ${parsed.query.runs} runs per query and mode\n\n`),
  );
  const result = await scenario.run({
    opts,
    wrk,
    artifactBase: join(resultsDir, `${scenario.name}-${stamp}`),
    progress: (m) => process.stdout.write(`  [${((Date.now() - t0) / 1000).toFixed(0).padStart(3)} s] ${m}\n`),
  });
  clearTimeout(watchdog);

  process.stdout.write(`\n${result.report}\n\n${formatChecks(result.checks)}\n`);
  writeJson(opts.jsonPath, {
    scenario: scenario.name,
    startedAt,
    finishedAt: new Date().toISOString(),
    argv,
    options: opts,
    machine: { ...machine, loadAvgAtEnd: loadavg().map((n) => Math.round(n * 100) / 100) },
    checks: result.checks,
    result: result.data,
  });
  process.stdout.write(`\nresults: ${relative(process.cwd(), opts.jsonPath)}\n`);

  const bug = result.checks.some((c) => !c.pass && c.kind === 'correctness');
  const missed = result.checks.some((c) => !c.pass && c.kind === 'target');
  return bug || (opts.strict && missed) ? 3 : 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`bench: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exitCode = 1;
  },
);
