import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { CpuWindow, parseMachineStat, parseProcStat, readCpuSeconds, readMachineCpu, readThreadCpu, readTreeCpuSeconds } from './proc.ts';
import { threadSetting } from './servers.ts';

/* The /proc readings the bench's events per CPU-second rest on, read from real children. */

// A shell loop: pure CPU, no syscalls to speak of (about 0.15 CPU-second on a busy 2-core box, well above the 0.05 the tests ask).
const BURN = 'i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done';

const children: ChildProcess[] = [];
afterEach(() => {
  for (const c of children.splice(0)) c.kill('SIGKILL');
});

function start(script: string): ChildProcess {
  const child = spawn('sh', ['-c', script], { stdio: 'ignore' });
  children.push(child);
  return child;
}

describe('parseProcStat', () => {
  // Fields after the command name, as in proc(5): state ppid pgrp session tty tpgid flags minflt
  // cminflt majflt cmajflt utime stime cutime cstime priority nice num_threads …
  const rest = 'S 1 1 1 0 -1 4194560 100 0 0 0 250 30 7 3 20 0 11 0 12345 1000000 200';

  it('counts fields after the last parenthesis, whatever the command name holds', () => {
    expect(parseProcStat(`4242 (node) ${rest}`)).toEqual({ comm: 'node', ppid: 1, utime: 250, stime: 30, cutime: 7, cstime: 3, numThreads: 11 });
    expect(parseProcStat(`4242 (a) b (c)) ) ${rest}\n`)).toMatchObject({ comm: 'a) b (c)) ', utime: 250, numThreads: 11 });
  });

  it('refuses what is not a stat line', () => {
    expect(parseProcStat('')).toBeNull();
    expect(parseProcStat('4242 node S 1 1')).toBeNull();
    expect(parseProcStat(`4242 (node) S 1 1 1 0 -1 4194560 100 0 0 0 2x5 30`)).toBeNull();
    expect(parseProcStat(`4242 (node) S 1`)).toBeNull();
  });
});

describe('parseMachineStat', () => {
  it('sums busy and total time of the aggregate cpu line (ratios: seconds depend on CLK_TCK)', () => {
    const m = parseMachineStat('cpu  100 20 30 800 10 5 5 30 0 0\ncpu0 50 10 15 400 5 2 3 15 0 0\nintr 1 2 3\n');
    expect(m).not.toBeNull();
    expect(m!.busyS / m!.totalS).toBeCloseTo(160 / 1000, 6);
    expect(m!.stealS / m!.totalS).toBeCloseTo(30 / 1000, 6);
  });

  it('refuses a file without a cpu line or with garbage in it', () => {
    expect(parseMachineStat('cpu0 1 2 3 4 5 6 7\n')).toBeNull();
    expect(parseMachineStat('cpu  1 2 x 4 5 6 7\n')).toBeNull();
    expect(parseMachineStat('cpu  1 2 3\n')).toBeNull();
  });

  it('reads this machine', () => {
    const m = readMachineCpu();
    expect(m).not.toBeNull();
    expect(m!.totalS).toBeGreaterThan(m!.busyS);
  });
});

describe('CPU of real processes', () => {
  it('reads a live child: its CPU grows while it burns, split by thread, with its name', async () => {
    const child = start(`${BURN}; exec sleep 30`);
    const pid = child.pid!;
    expect(readCpuSeconds(pid)).not.toBeNull();
    // Poll until the loop is done and the shell has become `sleep` (exec keeps the pid and its CPU time).
    let stat = parseProcStat(readFileSync(`/proc/${pid}/stat`, 'utf8'));
    for (let i = 0; i < 200 && stat?.comm !== 'sleep'; i++) {
      await new Promise((r) => setTimeout(r, 25));
      stat = parseProcStat(readFileSync(`/proc/${pid}/stat`, 'utf8'));
    }
    expect(stat?.comm).toBe('sleep');
    const cpu = readCpuSeconds(pid)!;
    expect(cpu).toBeGreaterThan(0.02);
    const threads = readThreadCpu(pid)!;
    expect(threads.mainS + threads.othersS).toBeCloseTo(cpu, 1);
    expect(threads.mainVoluntarySwitches).toBeGreaterThanOrEqual(0);
    child.kill('SIGKILL');
    await once(child, 'exit');
    expect(readCpuSeconds(pid)).toBeNull();
    expect(readThreadCpu(pid)).toBeNull();
  });

  it('counts the processes a server starts with it (a server that forks workers)', async () => {
    // The outer shell forks the burner, then becomes `sleep` (same pid), its parent.
    const root = start(`sh -c '${BURN}' & exec sleep 30`);
    const pid = root.pid!;
    let own = 0;
    let tree = 0;
    for (let i = 0; i < 200 && tree - own < 0.05; i++) {
      await new Promise((r) => setTimeout(r, 25));
      own = readCpuSeconds(pid) ?? 0;
      tree = readTreeCpuSeconds(pid) ?? 0;
    }
    expect(own).toBeLessThan(0.05);
    expect(tree - own).toBeGreaterThanOrEqual(0.05);
    root.kill('SIGKILL');
    await once(root, 'exit');
    expect(readTreeCpuSeconds(pid)).toBeNull();
  });

  it("counts a child that exited inside the window through the harness's reaped-children time", async () => {
    const idle = start('exec sleep 30');
    const window = CpuWindow.start({ idle: idle.pid! });
    const burner = start(BURN);
    const before = readCpuSeconds(burner.pid!);
    expect(before).not.toBeNull();
    await once(burner, 'exit');
    const cpu = window.stop();
    // The burner's whole life is in the window; the idle child used (almost) nothing.
    expect(cpu.reapedChildrenS).toBeGreaterThan(0.02);
    expect(cpu.processes['idle']).toBeLessThan(0.05);
    expect(cpu.harnessS).toBeGreaterThanOrEqual(0);
    expect(cpu.wallS).toBeGreaterThan(0);
    expect(cpu.machine!.busyS).toBeGreaterThanOrEqual(cpu.reapedChildrenS! - 0.02);
    expect(cpu.machine!.cores).toBeGreaterThan(0.5);
  });

  it('reports a process gone during the window as null, not as a negative number', async () => {
    const child = start('exec sleep 30');
    const window = CpuWindow.start({ gone: child.pid!, missing: 2 ** 22 + 12345 });
    child.kill('SIGKILL');
    await once(child, 'exit');
    expect(window.stop().processes).toEqual({ gone: null, missing: null });
  });
});

describe('threadSetting', () => {
  it('without the setting in the config: one thread, whatever was asked, and says so', () => {
    expect(threadSetting(undefined, {}, {})).toEqual({ asked: null, honoured: false, count: 1, label: '1' });
    expect(threadSetting(2, {}, {})).toEqual({ asked: 2, honoured: false, count: 1, label: '1 (asked 2)' });
  });

  it("with it: the value asked, or the config's default when unset", () => {
    const numeric = { FAROL_COLLECTOR_THREADS: z.coerce.number().int().min(1).default(2) };
    expect(threadSetting(3, numeric, {})).toEqual({ asked: 3, honoured: true, count: 3, label: '3' });
    expect(threadSetting(undefined, numeric, {})).toEqual({ asked: null, honoured: true, count: 2, label: 'default (2)' });
    const auto = { FAROL_COLLECTOR_THREADS: z.string().default('auto') };
    expect(threadSetting(undefined, auto, {})).toEqual({ asked: null, honoured: true, count: null, label: 'default (auto)' });
    const optional = { FAROL_COLLECTOR_THREADS: z.string().optional() };
    expect(threadSetting(undefined, optional, {}).label).toBe('default (unset)');
    // The harness's own variable reaches the child when nothing is asked.
    expect(threadSetting(undefined, numeric, { FAROL_COLLECTOR_THREADS: ' 3 ' })).toMatchObject({ asked: 3, count: 3, label: '3' });
    expect(threadSetting(undefined, numeric, { FAROL_COLLECTOR_THREADS: 'lots' }).label).toBe('default (2)');
  });
});
