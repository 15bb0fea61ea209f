import { mkdirSync, readFileSync, realpathSync, writeFileSync } from 'node:fs';
import { availableParallelism, loadavg } from 'node:os';
import { isAbsolute, join, relative, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { machineInfo, table, writeJson } from './report.ts';
import { DEFAULT_QUERY_OPTIONS, queryScenario, RANGES, ZONES, type QueryOptions, type RangeName, type ZoneName } from './query.ts';
import type { BenchOptions, Check, Scenario } from './scenario.ts';
import { hubSyncSchema } from '../schemas/config.ts';
import { batchScenario } from './scenarios/batch.ts';
import { collectorScenario } from './scenarios/collector.ts';
import { e2eScenario } from './scenarios/e2e.ts';
import { processorScenario } from './scenarios/processor.ts';
import { README_BEGIN, README_END, replaceReadmeTable, scalingTable, verdict, writeResultFiles, type ResultDoc, type ResultRow } from './results.ts';
import { COLLECTOR_THREADS_VAR, ROOT, setServerEnv, threadNote, threadSetting } from './servers.ts';
import { findWrk, WRK_INSTALL_HINT } from './wrk.ts';

/**
 * `npm run bench -- [<scenario>] [options]`: the Node harness for the targets. Each load scenario
 * starts its servers as child processes on 127.0.0.1, drives them with wrk, prints a table with
 * events per CPU-second of each process (from /proc) and ratios against a baseline measured in the
 * same run (the machine may be shared, so absolute numbers are noisy), and writes every number to
 * JSON, a Markdown table and an SVG chart. Without a scenario it runs the default set. `query`
 * needs no wrk: it runs the reporting queries in-process on embedded chDB, rollups against raw tables.
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

/** `npm run bench` without a scenario: the issue #12 targets, in this order. */
const DEFAULT_SET = ['collector', 'batch', 'e2e'];

/** Scenarios that take `--threads` (FAROL_COLLECTOR_THREADS per measured configuration). */
const THREADED = new Set(['collector', 'batch', 'e2e']);

const USAGE = `usage: npm run bench -- [<scenario>] [options]

Without a scenario (or with "all"): the default set, ${DEFAULT_SET.join(', ')}, one results file.

scenarios:
${Object.values(SCENARIOS)
  .map((s) => `  ${s.name.padEnd(10)} ${s.summary}`)
  .join('\n')}

options:
  --duration <s>      seconds per measured run (default 10)
  --warmup <s>        seconds of warm-up before each measured run (default 2)
  --connections <n>   wrk connections (default 64)
  --threads <list>    FAROL_COLLECTOR_THREADS to measure, comma separated, e.g. 1,2 (${[...THREADED].join(', ')}):
                      the Farol server is measured once per value; default: unset (Farol's default),
                      for the default set 1 and every core (1 only if this checkout lacks the setting)
  --wrk-threads <n>   wrk threads (default 1)
  --json <path>       result file (default bench/results/<scenario>-<timestamp>.json); a .md table and an
                      .svg chart of events per CPU-second are written beside it
  --readme            default set: replace README.md's performance table with this run's
  --cpu-prof          run the collector under node --cpu-prof and summarize the measured run
  --tls               collector scenario: plain vs HTTPS collector in one run (req/s, events per CPU-second)
  --hub-sync <list>   FAROL_HUB_SYNC of the Farol servers (always | interval:<ms>); with several, comma
                      separated (collector scenario), the collector is measured once per value in that
                      order, e.g. always,interval:100,always,interval:100 (req/s, p50/p99, events per CPU-second)
  --set NAME=VALUE   a FAROL_* setting for every Farol server the scenario starts (repeatable), e.g.
                      --set FAROL_PROCESSOR_FLUSH_MS=2000; the bench's own (ports, data dir, sites,
                      threads, --hub-sync) still win. UV_THREADPOOL_SIZE and other non-FAROL_ variables
                      pass from the bench's own environment
  --paced <percent>   e2e: the paced phase's rate as a percentage of the sustained rate (default 80;
                      1 to 100): find the rate up to which the lag stays under its target
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
  'wrk-threads': { type: 'string' },
  json: { type: 'string' },
  readme: { type: 'boolean' },
  'cpu-prof': { type: 'boolean' },
  tls: { type: 'boolean' },
  'hub-sync': { type: 'string' },
  set: { type: 'string' },
  paced: { type: 'string' },
  strict: { type: 'boolean' },
  events: { type: 'string' },
  runs: { type: 'string' },
  'data-dir': { type: 'string' },
  zones: { type: 'string' },
  ranges: { type: 'string' },
  compare: { type: 'string' },
} as const;

export interface CommandLine {
  /** The scenario asked, or `all` (the default set). */
  name: string;
  scenarios: Scenario[];
  opts: BenchOptions;
  query: QueryOptions;
  /** Rewrite README.md's performance table from this run. */
  readme: boolean;
}

export function parseCommandLine(argv: string[], stamp: string): CommandLine {
  let name: string | undefined;
  let durationS = 10;
  let warmupS = 2;
  let connections = 64;
  let wrkThreads = 1;
  let collectorThreads: number[] | undefined;
  let json: string | undefined;
  let readme = false;
  let cpuProf = false;
  let tls = false;
  let hubSync: string[] | undefined;
  const serverEnv: Record<string, string> = {};
  let pacedPercent: number | undefined;
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
      case 'wrk-threads':
        wrkThreads = positiveInt(flag, value, 256);
        break;
      case 'threads': {
        const items = (value ?? '').split(',');
        collectorThreads = items.map((x) => positiveInt(flag, x.trim(), 256));
        if (collectorThreads.length > 16) throw new UsageError(`${flag} takes at most 16 values`);
        break;
      }
      case 'readme':
        readme = true;
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
      case 'paced':
        pacedPercent = positiveInt(flag, value, 100);
        break;
      case 'set': {
        // No control characters: an environment value cannot hold a NUL (spawn throws).
        const m = /^(FAROL_[A-Z0-9_]{1,64})=(\P{Cc}{0,1000})$/u.exec(value ?? '');
        if (m === null) throw new UsageError(`${flag} takes NAME=VALUE with NAME a FAROL_ setting (got ${JSON.stringify(value ?? '')})`);
        serverEnv[m[1] as string] = m[2] as string;
        break;
      }
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
  name ??= 'all';
  const names = name === 'all' ? DEFAULT_SET : [name];
  const unknown = names.find((n) => !Object.hasOwn(SCENARIOS, n));
  if (unknown !== undefined) throw new UsageError(`unknown scenario "${unknown}"`);
  if (tls && name !== 'collector') throw new UsageError('--tls applies to the collector scenario only');
  if (hubSync !== undefined && (name === 'query' || (hubSync.length > 1 && (name !== 'collector' || tls)))) {
    throw new UsageError('--hub-sync applies to the load scenarios; several values to the collector scenario (without --tls) only');
  }
  if (collectorThreads !== undefined) {
    if (!names.every((n) => THREADED.has(n))) throw new UsageError(`--threads applies to the ${[...THREADED].join(', ')} scenarios and the default set`);
    if (collectorThreads.length > 1 && (tls || (hubSync?.length ?? 0) > 1)) throw new UsageError('--threads takes one value with --tls or several --hub-sync values');
  }
  if (readme && name !== 'all') throw new UsageError('--readme applies to the default set (no scenario, or all)');
  if (name !== 'query' && queryFlags.length > 0) throw new UsageError(`${queryFlags[0]} applies to the query scenario only`);
  const scenarios = names.map((n) => (n === 'query' ? queryScenario(query) : SCENARIOS[n]!));
  // The default set sweeps one thread and every core when this checkout has the setting.
  if (name === 'all' && collectorThreads === undefined) collectorThreads = threadSetting(undefined).honoured ? [...new Set([1, availableParallelism()])] : [1];
  const jsonPath = json ? (isAbsolute(json) ? json : resolve(process.cwd(), json)) : join(ROOT, 'bench', 'results', `${name}-${stamp}.json`);
  return {
    name,
    scenarios,
    readme,
    opts: {
      durationS,
      warmupS,
      connections,
      wrkThreads,
      jsonPath,
      cpuProf,
      strict,
      tls,
      ...(hubSync === undefined ? {} : { hubSync }),
      ...(Object.keys(serverEnv).length === 0 ? {} : { serverEnv }),
      ...(pacedPercent === undefined ? {} : { pacedPercent }),
      ...(collectorThreads === undefined ? {} : { collectorThreads }),
    },
    query,
  };
}

function formatChecks(checks: Check[]): string {
  return table(
    ['check', 'measured', 'target', 'verdict'],
    checks.map((c) => [c.name, c.value, c.target, verdict(c)]),
  );
}

/** What one scenario of a run left, for the files. */
interface ScenarioOutcome {
  scenario: string;
  startedAt: string;
  finishedAt: string;
  checks: Check[];
  rows: ResultRow[];
  result: Record<string, unknown>;
}

/** Seconds a scenario may take before the watchdog gives up (every wrk run and start has its own timeout too). */
function budgetSeconds(c: CommandLine, scenario: Scenario): number {
  const { opts } = c;
  if (WITHOUT_WRK.has(scenario.name)) {
    // query: seeding (~1 min per million events on 2 busy cores) and the raw reads (seconds each at
    // 10M events, for every zone and range), with ample room.
    const pairs = (c.query.zones.length * c.query.ranges.length) / 3;
    return 1800 + Math.ceil((c.query.events / 2500) * Math.max(1, pairs));
  }
  const configs = THREADED.has(scenario.name) ? (opts.collectorThreads?.length ?? 1) : 1;
  const phases = scenario.name === 'collector' ? Math.max(5, 2 * (opts.hubSync?.length ?? 0)) : 4;
  // e2e: up to 120 s of catch-up per configuration.
  return 2 * phases * (opts.durationS + opts.warmupS) * configs + (scenario.name === 'e2e' ? 150 * configs : 0) + 300;
}

async function main(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  // Colons are not portable in file names: 2025-01-31T12-00-00Z.
  const stamp = new Date().toISOString().replace(/\.\d+Z$/, 'Z').replaceAll(':', '-');
  let parsed: CommandLine;
  try {
    parsed = parseCommandLine(argv, stamp);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`bench: ${err.message}\n\n${USAGE}\n`);
    return 2;
  }
  const { scenarios, opts } = parsed;
  const needsWrk = scenarios.some((s) => !WITHOUT_WRK.has(s.name));
  const wrk = needsWrk ? findWrk() : '';
  if (wrk === null) {
    process.stderr.write(`bench: ${WRK_INSTALL_HINT}\n`);
    return 1;
  }
  const machine = machineInfo();
  const resultsDir = join(ROOT, 'bench', 'results');
  mkdirSync(resultsDir, { recursive: true });

  const budgetS = scenarios.reduce((a, s) => a + budgetSeconds(parsed, s), 0);
  const watchdog = setTimeout(() => {
    process.stderr.write(`bench: gave up after ${budgetS} s\n`);
    process.exit(1); // the exit hook SIGKILLs every child
  }, budgetS * 1000);
  watchdog.unref();

  const startedAt = new Date().toISOString();
  const t0 = Date.now();
  const note = opts.collectorThreads && scenarios.some((s) => THREADED.has(s.name)) ? threadNote() : null;
  const threads = opts.collectorThreads ? opts.collectorThreads.map((n) => threadSetting(n).label).join(', ') : threadSetting(undefined).label;
  process.stdout.write(
    `farol bench ${scenarios.map((s) => s.name).join(', ')} — ${machine.cpuModel}, ${machine.cores} cores, node ${machine.node}, commit ${machine.gitCommit}${machine.gitDirty ? ' (+ local changes)' : ''}, load avg ${machine.loadAvgAtStart.join(' ')}\n` +
      (needsWrk
        ? `wrk -t${opts.wrkThreads} -c${opts.connections}, ${opts.warmupS} s warm-up + ${opts.durationS} s per run, ${COLLECTOR_THREADS_VAR}: ${threads}${opts.cpuProf ? ', collector under --cpu-prof (numbers not comparable)' : ''}\n${note === null ? '' : `${note}\n`}\n`
        : `in-process embedded chDB, ${parsed.query.runs} runs per query and mode\n\n`),
  );
  if (opts.serverEnv !== undefined) {
    setServerEnv(opts.serverEnv);
    process.stdout.write(`Farol servers run with ${Object.entries(opts.serverEnv).map(([k, v]) => `${k}=${v}`).join(' ')}\n\n`);
  }
  const outcomes: ScenarioOutcome[] = [];
  const base = opts.jsonPath.replace(/\.json$/, '');
  for (const scenario of scenarios) {
    if (scenarios.length > 1) process.stdout.write(`== ${scenario.name} ==\n`);
    const scenarioStart = new Date().toISOString();
    const result = await scenario.run({
      opts,
      wrk,
      artifactBase: scenarios.length > 1 ? `${base}-${scenario.name}` : join(resultsDir, `${scenario.name}-${stamp}`),
      progress: (m) => process.stdout.write(`  [${((Date.now() - t0) / 1000).toFixed(0).padStart(3)} s] ${m}\n`),
    });
    process.stdout.write(`\n${result.report}\n\n${formatChecks(result.checks)}\n\n`);
    outcomes.push({ scenario: scenario.name, startedAt: scenarioStart, finishedAt: new Date().toISOString(), checks: result.checks, rows: result.rows ?? [], result: result.data });
  }
  clearTimeout(watchdog);

  const rows = outcomes.flatMap((o) => o.rows);
  const checks = outcomes.flatMap((o) => o.checks.map((c) => ({ ...c, scenario: o.scenario })));
  const single = outcomes.length === 1 ? outcomes[0] : undefined;
  writeJson(opts.jsonPath, {
    scenario: parsed.name,
    startedAt,
    finishedAt: new Date().toISOString(),
    argv,
    options: opts,
    machine: { ...machine, loadAvgAtEnd: loadavg().map((n) => Math.round(n * 100) / 100) },
    checks,
    rows,
    ...(single ? { result: single.result } : { scenarios: outcomes }),
  });
  const doc: ResultDoc = {
    title: scenarios.map((s) => s.name).join(', '),
    command: ['npm run bench', ...(argv.length > 0 ? ['--', ...argv] : [])].join(' '),
    startedAt,
    machine,
    rows,
    checks,
    ...(note === null ? {} : { notes: [note] }),
  };
  const files = writeResultFiles(base, doc);
  process.stdout.write(`results: ${[opts.jsonPath, files.markdown, ...(rows.length > 0 ? [files.svg] : [])].map((f) => relative(process.cwd(), f)).join(', ')}\n`);
  if (parsed.readme) {
    const readme = join(ROOT, 'README.md');
    writeFileSync(readme, replaceReadmeTable(readFileSync(readme, 'utf8'), doc));
    process.stdout.write(`README.md: performance table replaced (between ${README_BEGIN} and ${README_END})\n`);
  }
  const scaling = scalingTable(rows);
  if (scaling !== '') process.stdout.write(`\nthread scaling (against each process's first thread count):\n${scaling}\n`);
  const targets = checks.filter((c) => c.kind === 'target').map((c) => ({ ...c, name: `${c.scenario}: ${c.name}` }));
  if (targets.length > 0) process.stdout.write(`\ntargets:\n${formatChecks(targets)}\n`);

  const bug = checks.some((c) => !c.pass && c.kind === 'correctness');
  const missed = checks.some((c) => !c.pass && c.kind === 'target');
  return bug || (opts.strict && missed) ? 3 : 0;
}

// Run when executed (`node --import tsx bench/run.ts`), not when a test imports parseCommandLine.
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(realpathSync(process.argv[1])).href) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      process.stderr.write(`bench: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exitCode = 1;
    },
  );
}
