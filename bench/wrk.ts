import { accessSync, constants } from 'node:fs';
import { delimiter, join, relative } from 'node:path';
import { spawnTracked } from './children.ts';

/* Running wrk and reading its report. */

export const WRK_INSTALL_HINT = 'wrk is not installed. Install it with your package manager, e.g. `apt-get install -y wrk` (Debian/Ubuntu), then run the benchmark again.';

/** The wrk executable on PATH (or $WRK), or null. Never installs anything. */
export function findWrk(): string | null {
  const candidates = process.env['WRK'] ? [process.env['WRK']] : (process.env['PATH'] ?? '').split(delimiter).filter(Boolean).map((d) => join(d, 'wrk'));
  for (const c of candidates) {
    try {
      accessSync(c, constants.X_OK);
      return c;
    } catch {
      // keep looking
    }
  }
  return null;
}

export interface WrkLatency {
  avgMs: number;
  stdevMs: number;
  maxMs: number;
  p50Ms: number;
  p75Ms: number;
  p90Ms: number;
  p99Ms: number;
}

export interface WrkReport {
  requests: number;
  durationS: number;
  requestsPerSec: number;
  latency: WrkLatency;
  non2xx: number;
  socketErrors: { connect: number; read: number; write: number; timeout: number };
}

export interface WrkRun extends WrkReport {
  /** The command line, as it could be pasted into a shell (paths relative to the repo). */
  command: string;
  label: string;
}

const UNIT_MS: Record<string, number> = { us: 0.001, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

function toMs(value: string, unit: string): number {
  const factor = UNIT_MS[unit];
  if (factor === undefined) throw new Error(`wrk: unknown time unit "${unit}"`);
  return Number(value) * factor;
}

const TIME = String.raw`([\d.]+)(us|ms|s|m|h)`;

/** Parses wrk's text report (with `--latency`). Throws when the essentials are missing. */
export function parseWrkOutput(text: string): WrkReport {
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(text);
  const total = /(\d+) requests in ([\d.]+)(us|ms|s|m|h)/.exec(text);
  if (!rps || !total) throw new Error(`wrk output has no request totals:\n${text}`);
  const thread = new RegExp(String.raw`Latency\s+${TIME}\s+${TIME}\s+${TIME}`).exec(text);
  const pct = (p: number): number => {
    const m = new RegExp(String.raw`^\s+${p}(?:\.0+)?%\s+${TIME}`, 'm').exec(text);
    return m ? toMs(m[1]!, m[2]!) : NaN;
  };
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(text);
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(text);
  return {
    requests: Number(total[1]),
    durationS: toMs(total[2]!, total[3]!) / 1000,
    requestsPerSec: Number(rps[1]),
    latency: {
      avgMs: thread ? toMs(thread[1]!, thread[2]!) : NaN,
      stdevMs: thread ? toMs(thread[3]!, thread[4]!) : NaN,
      maxMs: thread ? toMs(thread[5]!, thread[6]!) : NaN,
      p50Ms: pct(50),
      p75Ms: pct(75),
      p90Ms: pct(90),
      p99Ms: pct(99),
    },
    non2xx: non2xx ? Number(non2xx[1]) : 0,
    socketErrors: {
      connect: sock ? Number(sock[1]) : 0,
      read: sock ? Number(sock[2]) : 0,
      write: sock ? Number(sock[3]) : 0,
      timeout: sock ? Number(sock[4]) : 0,
    },
  };
}

export interface WrkOptions {
  wrk: string;
  /** Repo root: the cwd of wrk, so the script path in the command line is short. */
  cwd: string;
  url: string;
  script: string;
  threads: number;
  connections: number;
  durationS: number;
  /** Passed to the script's init(args) after `--`. */
  scriptArgs?: string[];
  label: string;
}

/** Runs wrk to completion (SIGKILLed if it overruns its duration by 30 s) and parses its report. */
export async function runWrk(opts: WrkOptions): Promise<WrkRun> {
  // wrk needs at least one connection per thread.
  const threads = Math.max(1, Math.min(opts.threads, opts.connections));
  const args = [
    `-t${threads}`,
    `-c${opts.connections}`,
    `-d${opts.durationS}s`,
    '--timeout',
    '5s',
    '--latency',
    '-s',
    relative(opts.cwd, opts.script),
    opts.url,
  ];
  if (opts.scriptArgs && opts.scriptArgs.length > 0) args.push('--', ...opts.scriptArgs);
  const command = ['wrk', ...args].join(' ');
  const child = spawnTracked(opts.wrk, args, { cwd: opts.cwd, env: process.env });
  let timer: NodeJS.Timeout | undefined;
  const overrun = new Promise<'overrun'>((resolve) => {
    timer = setTimeout(() => resolve('overrun'), (opts.durationS + 30) * 1000);
  });
  try {
    const first = await Promise.race([child.exited, overrun]);
    if (first === 'overrun') throw new Error(`wrk did not finish within ${opts.durationS + 30} s: ${command}`);
    const text = child.output.join('\n');
    if (first !== 0) throw new Error(`wrk exited with ${String(first)}: ${command}\n${text}`);
    // wrk reports Lua errors on stderr but keeps running; a broken script must not pass for a result.
    const errorLines = text.split('\n').filter((l) => /error/i.test(l) && !l.includes('Socket errors:'));
    if (errorLines.length > 0) throw new Error(`wrk reported an error: ${command}\n${text}`);
    return { ...parseWrkOutput(text), command, label: opts.label };
  } finally {
    clearTimeout(timer);
    await child.kill();
  }
}
