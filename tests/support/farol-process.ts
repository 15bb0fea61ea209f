import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { pathToFileURL } from 'node:url';
import { isCurrent, ROOT } from '../../scripts/build.js';

/**
 * `farol` as production runs it: the compiled dist/cli/run.js, built from the current sources
 * before the first start (see {@link compiled}). The tests start farol about a hundred times, and
 * a compiled start takes about 2 s less CPU than the sources through tsx (whose loader hooks see
 * every module). tests/farol-bin.test.ts runs the bin itself (cli/farol.js, which also builds).
 */
const FAROL = [join(ROOT, 'dist', 'cli', 'run.js')];

/** One build at a time across the test processes of a run (a build swaps dist/ under running ones). */
const BUILD_LOCK = join(tmpdir(), `farol-dist-build-${createHash('sha256').update(ROOT).digest('hex').slice(0, 16)}.lock`);

const sleepMs = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Whether the lock's holder is gone (its process ended, or it never wrote its pid within a minute). */
function lockAbandoned(): boolean {
  try {
    const pid = Number(readFileSync(join(BUILD_LOCK, 'pid'), 'utf8'));
    process.kill(pid, 0);
    return false;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EPERM') return false;
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return true;
    try {
      return Date.now() - statSync(BUILD_LOCK).mtimeMs > 60_000;
    } catch {
      return false; // released meanwhile
    }
  }
}

/** `scripts/build.js`'s ensureBuilt in a child (it compiles synchronously: the test process's event loop keeps running). */
function buildInChild(): Promise<void> {
  const script = `const { ensureBuilt } = await import(${JSON.stringify(pathToFileURL(join(ROOT, 'scripts', 'build.js')).href)}); ensureBuilt();`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`building dist/ failed (exit ${code}):\n${stderr}`))));
  });
}

let built: Promise<void> | undefined;

/** dist/ built from exactly the current sources: checked once per test process, built by one process at a time. */
function compiled(): Promise<void> {
  built ??= (async () => {
    const deadline = Date.now() + 300_000;
    while (!isCurrent()) {
      if (Date.now() > deadline) throw new Error(`dist/ was not built within 5 minutes (lock ${BUILD_LOCK})`);
      try {
        mkdirSync(BUILD_LOCK);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        if (lockAbandoned()) rmSync(BUILD_LOCK, { recursive: true, force: true });
        else await sleepMs(250);
        continue;
      }
      try {
        writeFileSync(join(BUILD_LOCK, 'pid'), String(process.pid));
        await buildInChild();
      } finally {
        rmSync(BUILD_LOCK, { recursive: true, force: true });
      }
    }
  })();
  return built;
}

export interface FarolProcess {
  child: ChildProcess;
  port: number;
  url: string;
  /** Where `/metrics` is served (FAROL_METRICS_PORT, a free port unless the test sets it; '' with FAROL_METRICS_PORT=''). */
  metricsUrl: string;
  /** Every stdout/stderr line so far (structured logs), for privacy greps. */
  output: string[];
  /** Resolves with the exit code (or signal name). */
  exited: Promise<number | string>;
}

/** The test's environment without its FAROL_* settings, plus `env`. */
function childEnv(env: Record<string, string>): Record<string, string> {
  const clean: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith('FAROL_')) clean[k] = v;
  return { ...clean, ...env };
}

/** The port of a `"metrics listening"` log line, else undefined. */
function metricsPortOf(line: string): number | undefined {
  if (!line.includes('"metrics listening"')) return undefined;
  try {
    return (JSON.parse(line) as { port: number }).port;
  } catch {
    return undefined;
  }
}

/**
 * Starts `farol <command>` as a child process on a free port, with `/metrics` on another free port
 * (FAROL_METRICS_PORT=0 unless `env` says otherwise), and resolves once its collector (or, for
 * `farol api`, its API) listens. The process inherits nothing from the test's FAROL_* environment.
 */
export async function startFarol(command: string, env: Record<string, string>, timeoutMs = 90_000): Promise<FarolProcess> {
  await compiled();
  const child = spawn(process.execPath, [...FAROL, command], {
    env: childEnv({ FAROL_PORT: '0', FAROL_METRICS_PORT: '0', FAROL_LOG_LEVEL: 'info', ...env }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  // The metrics listener starts before the public one, so its line comes first.
  let metricsUrl = '';
  const output: string[] = [];
  const exited = new Promise<number | string>((resolve) => child.on('exit', (code, sig) => resolve(code ?? sig ?? -1)));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`farol ${command} did not start in ${timeoutMs} ms:\n${output.join('\n')}`));
    }, timeoutMs);
    const onLine = (line: string): void => {
      output.push(line);
      const metricsPort = metricsPortOf(line);
      if (metricsPort !== undefined) metricsUrl = `http://127.0.0.1:${metricsPort}`;
      if (!line.includes('collector listening') && !line.includes('"api listening"')) return;
      try {
        const port = (JSON.parse(line) as { port: number }).port;
        clearTimeout(timer);
        resolve({ child, port, url: `http://127.0.0.1:${port}`, metricsUrl, output, exited });
      } catch {
        // not our JSON line; keep waiting
      }
    };
    createInterface({ input: child.stdout }).on('line', onLine);
    createInterface({ input: child.stderr }).on('line', (l) => output.push(l));
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`farol ${command} exited (${code}) before listening:\n${output.join('\n')}`));
    });
  });
}

/** Runs `farol <args>` to completion and returns its exit code and output. */
export async function runFarol(args: string[], env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  await compiled();
  const child = spawn(process.execPath, [...FAROL, ...args], { env: childEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) => child.on('exit', (code) => resolve({ code: code ?? -1, stdout, stderr })));
}

/** A `farol` child that listens on no port (`farol processor`). */
export interface FarolChild {
  child: ChildProcess;
  /** Where `/metrics` is served (as in {@link FarolProcess}). */
  metricsUrl: string;
  output: string[];
  exited: Promise<number | string>;
}

/** `farol processor` as a child; resolves once it owns its consumer (it serves only `/metrics`). */
export async function startFarolProcessor(env: Record<string, string>, timeoutMs = 60_000): Promise<FarolChild> {
  await compiled();
  const child = spawn(process.execPath, [...FAROL, 'processor'], { env: childEnv({ FAROL_METRICS_PORT: '0', ...env }), stdio: ['ignore', 'pipe', 'pipe'] });
  let metricsUrl = '';
  const output: string[] = [];
  const exited = new Promise<number | string>((resolve) => child.on('exit', (code, sig) => resolve(code ?? sig ?? -1)));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`farol processor did not start in ${timeoutMs} ms:\n${output.join('\n')}`));
    }, timeoutMs);
    createInterface({ input: child.stdout }).on('line', (line) => {
      output.push(line);
      const metricsPort = metricsPortOf(line);
      if (metricsPort !== undefined) metricsUrl = `http://127.0.0.1:${metricsPort}`;
      if (line.includes('"processor started"')) {
        clearTimeout(timer);
        resolve({ child, metricsUrl, output, exited });
      }
    });
    createInterface({ input: child.stderr }).on('line', (l) => output.push(l));
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`farol processor exited (${code}) before starting:\n${output.join('\n')}`));
    });
  });
}

export interface Exiting {
  name: string;
  exited: Promise<number | string>;
  output: readonly string[];
}

/**
 * Waits for every child to exit, logging each exit as it happens. Past `timeoutMs`, fails naming
 * the children still running, with the tail of each one's output: a drain that hangs says where.
 */
export async function exitCodes(children: readonly Exiting[], timeoutMs: number): Promise<Array<number | string>> {
  const started = Date.now();
  const codes = new Map<string, number | string>();
  const all = Promise.all(
    children.map(async (c) => {
      const code = await c.exited;
      codes.set(c.name, code);
      console.log(`${c.name} exited (${code}) ${Date.now() - started} ms after SIGTERM`);
      return code;
    }),
  );
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const stuck = children.filter((c) => !codes.has(c.name));
      const report = stuck.map((c) => `--- ${c.name} did not exit; last output lines:\n${c.output.slice(-40).join('\n')}`);
      reject(new Error(`${stuck.map((c) => c.name).join(', ')} did not exit within ${timeoutMs} ms of SIGTERM\n${report.join('\n')}`));
    }, timeoutMs);
  });
  try {
    return await Promise.race([all, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Structured log lines of a child with this message. */
export function logLines(output: readonly string[], msg: string): Array<Record<string, unknown>> {
  const out: Array<Record<string, unknown>> = [];
  for (const line of output) {
    if (!line.includes(`"msg":"${msg}"`)) continue;
    try {
      out.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      // not JSON
    }
  }
  return out;
}
