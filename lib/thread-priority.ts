import { readdirSync } from 'node:fs';
import { getPriority, setPriority } from 'node:os';

/**
 * Lowers the CPU priority of every thread of this process but the main one, now and every
 * `intervalMs` (threads come and go: the embedded engine starts its own as it works). For `farol
 * start`, whose main thread answers the collector's beacons while the processor thread and the
 * engine's many threads insert: with more runnable threads than cores, the scheduler gave the
 * main thread a share per thread, and a 202 waited behind inserts (`npm run bench -- e2e`, paced
 * at 80% of the sustained rate on 2 cores: p99 ~350 ms with every core busy). Niced by `by`
 * (from the process's own nice value, at most 19), those threads still take every cycle the main
 * thread leaves, so processing keeps its throughput when ingest is light.
 *
 * Linux only (a thread id is a `setpriority` target there, and `/proc/self/task` lists them);
 * elsewhere, or when /proc cannot be read, it does nothing. Raising a nice value needs no
 * privilege; a thread that ended meanwhile is skipped.
 */
export function yieldToMainThread(opts: { by: number; intervalMs: number }): { stop(): void } {
  if (process.platform !== 'linux') return { stop: () => {} };
  const main = process.pid;
  let target: number;
  try {
    target = Math.min(19, getPriority(main) + opts.by);
  } catch {
    return { stop: () => {} };
  }
  const done = new Set<number>();
  const scan = (): void => {
    let tids: string[];
    try {
      tids = readdirSync('/proc/self/task');
    } catch {
      return;
    }
    const live = new Set<number>();
    for (const name of tids) {
      const tid = Number(name);
      if (!Number.isSafeInteger(tid) || tid === main) continue;
      live.add(tid);
      if (done.has(tid)) continue;
      try {
        setPriority(tid, target);
        done.add(tid);
      } catch {
        // Ended since the listing, or not ours to change: nothing to do.
      }
    }
    // A thread id can be reused by a new thread: forget the ones that ended.
    for (const tid of done) if (!live.has(tid)) done.delete(tid);
  };
  scan();
  const timer = setInterval(scan, opts.intervalMs);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}
