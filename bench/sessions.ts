import { copyFileSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLocator, summarizeProfile, type CpuProfile, type ProfileSummary } from './cpu-profile.ts';
import { MemorySampler, readMemory, type MemoryReading } from './proc.ts';
import { dirBytes, loadPhase, loggedProblems, type LoadPhase, type ScenarioContext } from './scenario.ts';
import { startBare, startCollector, type Server } from './servers.ts';

/* Starting, loading and always killing the two servers; one server runs at a time. */

export interface BareResult {
  warmup: LoadPhase;
  run: LoadPhase;
  memory: MemoryReading | null;
}

/** Starts the bare uWS server, warms it up, measures it, kills it. */
export async function measureBare(ctx: ScenarioContext, script: string): Promise<BareResult> {
  const bare = await startBare();
  try {
    const warmup = await loadPhase(ctx, bare, { script, label: 'warm-up', durationS: ctx.opts.warmupS });
    const run = await loadPhase(ctx, bare, { script, label: 'measured', durationS: ctx.opts.durationS });
    return { warmup, run, memory: readMemory(bare.child.pid) };
  } finally {
    await bare.kill();
  }
}

export interface CollectorSession<T> {
  value: T;
  memory: { maxRssMb: number; hwmMb: number; samples: number };
  /** Bytes the hub wrote under the data dir. */
  hubBytes: number;
  /** What the collector logged (it runs at warn level, so any line deserves a look). */
  logLines: string[];
  profile: { file: string; summary: ProfileSummary } | null;
}

/** The collector's measured window, for the CPU profile; set by the scenario body. */
export interface SessionMarks {
  profileWindow: [number, number] | null;
}

/**
 * Runs `body` against a fresh collector (temp data dir), sampling its memory throughout. Under
 * `--cpu-prof` the collector is stopped with SIGTERM so V8 writes the profile; otherwise, and
 * whenever anything fails, it is SIGKILLed. `threads`: its FAROL_COLLECTOR_THREADS (unset when undefined).
 */
export async function withCollector<T>(
  ctx: ScenarioContext,
  body: (server: Server, marks: SessionMarks) => Promise<T>,
  command: 'collector' | 'start' = 'collector',
  tls = false,
  threads: number | undefined = undefined,
): Promise<CollectorSession<T>> {
  const profDir = ctx.opts.cpuProf ? mkdtempSync(join(tmpdir(), 'farol-bench-prof-')) : null;
  const nodeArgs = profDir ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`, '--cpu-prof-interval=250'] : [];
  let server: Awaited<ReturnType<typeof startCollector>>;
  try {
    const hubSync = ctx.opts.hubSync?.length === 1 ? ctx.opts.hubSync[0] : undefined;
    server = await startCollector({ nodeArgs, command, tls, ...(hubSync === undefined ? {} : { hubSync }), ...(threads === undefined ? {} : { collectorThreads: threads }) });
  } catch (err) {
    if (profDir) rmSync(profDir, { recursive: true, force: true });
    throw err;
  }
  const sampler = new MemorySampler(server.child.pid).start();
  const marks: SessionMarks = { profileWindow: null };
  let memory = { maxRssMb: 0, hwmMb: 0, samples: 0 };
  let hubBytes = 0;
  let value: T;
  let completed = false;
  try {
    value = await body(server, marks);
    completed = true;
  } finally {
    memory = sampler.stop();
    hubBytes = dirBytes(join(server.dataDir, 'hub'));
    if (profDir && completed) {
      ctx.progress('collector: SIGTERM, waiting for the CPU profile');
      await server.stop(60_000);
    } else {
      await server.kill();
    }
  }
  let profile: CollectorSession<T>['profile'] = null;
  if (profDir) {
    try {
      const name = readdirSync(profDir).find((f) => f.endsWith('.cpuprofile'));
      if (name) {
        const file = `${ctx.artifactBase}.cpuprofile`;
        copyFileSync(join(profDir, name), file);
        const raw = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
        const window = marks.profileWindow;
        const locate = await createLocator(raw);
        const summary = summarizeProfile(raw, window ? { fromUs: window[0], toUs: window[1], top: 30, locate } : { top: 30, locate });
        profile = { file, summary };
      } else {
        ctx.progress('collector: no CPU profile was written');
      }
    } finally {
      rmSync(profDir, { recursive: true, force: true });
    }
  }
  return { value, memory, hubBytes, logLines: loggedProblems(server.child.output), profile };
}
