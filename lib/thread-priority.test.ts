import { readdirSync, readFileSync } from 'node:fs';
import { getPriority } from 'node:os';
import { Worker } from 'node:worker_threads';
import { afterAll, describe, expect, it } from 'vitest';
import { yieldToMainThread } from './thread-priority.ts';

/** The nice value of each thread of this process (field 19 of /proc/self/task/<tid>/stat). */
function niceByThread(): Map<number, number> {
  const out = new Map<number, number>();
  for (const name of readdirSync('/proc/self/task')) {
    try {
      const stat = readFileSync(`/proc/self/task/${name}/stat`, 'utf8');
      // Fields after the command name (in parentheses, which may hold spaces): state is field 3.
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      out.set(Number(name), Number(rest[16]));
    } catch {
      // the thread ended
    }
  }
  return out;
}

describe.runIf(process.platform === 'linux')('yieldToMainThread', () => {
  const workers: Worker[] = [];
  afterAll(async () => {
    await Promise.all(workers.map((w) => w.terminate()));
  });

  it('lowers every other thread, those started later included, and never the main thread', async () => {
    const base = getPriority(process.pid);
    const before = niceByThread();
    expect(before.get(process.pid)).toBe(base);
    const y = yieldToMainThread({ by: 5, intervalMs: 20 });
    try {
      // A thread started after the first scan (as the engine starts its own).
      const w = new Worker('setInterval(() => {}, 1000)', { eval: true });
      workers.push(w);
      await new Promise<void>((resolve) => w.once('online', () => resolve()));
      const threadsNow = readdirSync('/proc/self/task').length;
      expect(threadsNow).toBeGreaterThan(before.size);
      let nice = niceByThread();
      for (let i = 0; i < 100 && [...nice].some(([tid, n]) => tid !== process.pid && n !== Math.min(19, base + 5)); i++) {
        await new Promise((r) => setTimeout(r, 20));
        nice = niceByThread();
      }
      const others = [...nice].filter(([tid]) => tid !== process.pid);
      expect(others.length).toBeGreaterThan(0);
      expect(others.filter(([, n]) => n !== Math.min(19, base + 5))).toEqual([]);
      expect(nice.get(process.pid)).toBe(base);
    } finally {
      y.stop();
    }
  });
});
