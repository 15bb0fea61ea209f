import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

/* Linux /proc readings: a child's memory (VmRSS, VmHWM) and CPU time (utime + stime, all threads), the harness's own and its reaped children's, the machine's. */

export interface MemoryReading {
  rssMb: number;
  hwmMb: number;
}

/** VmRSS and VmHWM (peak RSS) of `pid`, in MB; null once the process is gone. */
export function readMemory(pid: number): MemoryReading | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return null;
  }
  const kb = (field: string): number => {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text);
    return m ? Number(m[1]) : 0;
  };
  return { rssMb: kb('VmRSS') / 1024, hwmMb: kb('VmHWM') / 1024 };
}

let clockTicks: number | undefined;

function ticksPerSecond(): number {
  if (clockTicks === undefined) {
    try {
      clockTicks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clockTicks = 100;
    }
  }
  return clockTicks;
}

/** The fields of a `/proc/<pid>/stat` (or `/proc/<pid>/task/<tid>/stat`) line the bench reads, in clock ticks. */
export interface ProcStat {
  /** The command name, as the kernel shows it between the parentheses (it may hold spaces and ')'). */
  comm: string;
  ppid: number;
  utime: number;
  stime: number;
  /** Ticks of the children this process waited for (reaped), all their threads included. */
  cutime: number;
  cstime: number;
  numThreads: number;
}

/**
 * Parses a `/proc/<pid>/stat` line; null when it is not one. The command name may hold spaces and
 * parentheses, so fields are counted after its last ')' (proc(5): ppid is field 4, utime 14,
 * stime 15, cutime 16, cstime 17, num_threads 20).
 */
export function parseProcStat(text: string): ProcStat | null {
  const open = text.indexOf('(');
  const close = text.lastIndexOf(')');
  if (open < 0 || close < open) return null;
  const fields = text.slice(close + 2).trim().split(' ');
  const n = (i: number): number => {
    const f = fields[i];
    return f !== undefined && /^-?\d+$/.test(f) ? Number(f) : NaN;
  };
  const stat = { comm: text.slice(open + 1, close), ppid: n(1), utime: n(11), stime: n(12), cutime: n(13), cstime: n(14), numThreads: n(17) };
  return [stat.ppid, stat.utime, stat.stime, stat.cutime, stat.cstime, stat.numThreads].every(Number.isFinite) ? stat : null;
}

function readStat(path: string): ProcStat | null {
  try {
    return parseProcStat(readFileSync(path, 'utf8'));
  } catch {
    return null;
  }
}

/** CPU seconds (user + system, all threads, exited ones included) used by `pid` so far; null once it is gone. */
export function readCpuSeconds(pid: number): number | null {
  const s = readStat(`/proc/${pid}/stat`);
  return s === null ? null : (s.utime + s.stime) / ticksPerSecond();
}

/**
 * CPU seconds used so far by `pid` and every process below it: each live one's utime + stime (all
 * its threads) + cutime + cstime (its children already exited and reaped), so a server that forks
 * workers is counted whole, and a worker that exits moves into its parent's share without being
 * counted twice. Null once `pid` is gone.
 */
export function readTreeCpuSeconds(pid: number): number | null {
  const root = readStat(`/proc/${pid}/stat`);
  if (root === null) return null;
  const children = new Map<number, Array<{ pid: number; stat: ProcStat }>>();
  let entries: string[] = [];
  try {
    entries = readdirSync('/proc');
  } catch {
    // no /proc listing: the root alone
  }
  for (const name of entries) {
    if (!/^\d+$/.test(name) || name === String(pid)) continue;
    const stat = readStat(`/proc/${name}/stat`);
    if (stat === null) continue;
    const list = children.get(stat.ppid) ?? [];
    list.push({ pid: Number(name), stat });
    children.set(stat.ppid, list);
  }
  let ticks = 0;
  const seen = new Set<number>();
  const stack = [{ pid, stat: root }];
  for (let p = stack.pop(); p !== undefined; p = stack.pop()) {
    if (seen.has(p.pid)) continue;
    seen.add(p.pid);
    ticks += p.stat.utime + p.stat.stime + p.stat.cutime + p.stat.cstime;
    stack.push(...(children.get(p.pid) ?? []));
  }
  return ticks / ticksPerSecond();
}

/** The machine's CPU time so far, in seconds summed over every core (the first line of /proc/stat). */
export interface MachineCpu {
  /** user + nice + system + irq + softirq (guest time is inside user). */
  busyS: number;
  /** busy + idle + iowait + steal: wall time × online cores. */
  totalS: number;
  /** Time the hypervisor gave to other guests. */
  stealS: number;
}

/** Parses /proc/stat's aggregate `cpu` line; null when there is none. */
export function parseMachineStat(text: string): MachineCpu | null {
  const line = text.split('\n').find((l) => l.startsWith('cpu '));
  const v = (line ?? '').trim().split(/\s+/).slice(1).map((x) => (/^\d+$/.test(x) ? Number(x) : NaN));
  // user nice system idle iowait irq softirq [steal …]: the first seven are in every kernel since 2.6.
  if (v.length < 7 || v.slice(0, 7).some((x) => !Number.isFinite(x))) return null;
  const at = (i: number): number => (Number.isFinite(v[i]) ? (v[i] as number) : 0);
  const busy = at(0) + at(1) + at(2) + at(5) + at(6);
  const t = ticksPerSecond();
  return { busyS: busy / t, totalS: (busy + at(3) + at(4) + at(7)) / t, stealS: at(7) / t };
}

export function readMachineCpu(): MachineCpu | null {
  try {
    return parseMachineStat(readFileSync('/proc/stat', 'utf8'));
  } catch {
    return null;
  }
}

/** The machine's CPU between two readings over `wallS` seconds; null when either is missing. */
export function machineDelta(a: MachineCpu | null, b: MachineCpu | null, wallS: number): CpuUsage['machine'] {
  if (!a || !b) return null;
  const totalS = b.totalS - a.totalS;
  return { busyS: b.busyS - a.busyS, totalS, stealS: b.stealS - a.stealS, cores: wallS > 0 ? totalS / wallS : 0 };
}

/** CPU seconds of a window: per named process (all threads), the harness itself, reaped children, the machine. */
export interface CpuUsage {
  wallS: number;
  /** Each process's CPU over the window, all threads and child processes; null when it was gone at either end. */
  processes: Record<string, number | null>;
  /** The harness (this Node process), all threads. */
  harnessS: number | null;
  /**
   * Children the harness reaped during the window (its cutime + cstime): a load generator that ran
   * and exited inside the window, all its threads, counted whole. Unlike a /proc read of a live
   * pid, this catches its last milliseconds.
   */
  reapedChildrenS: number | null;
  /** The whole machine: busy CPU-seconds and cores' worth of capacity over the window. */
  machine: { busyS: number; totalS: number; stealS: number; cores: number } | null;
}

interface CpuSnapshot {
  atMs: number;
  processes: Record<string, number | null>;
  self: ProcStat | null;
  machine: MachineCpu | null;
}

/** Reads everything a window needs at one instant. */
function snapshot(pids: Record<string, number>): CpuSnapshot {
  const processes: Record<string, number | null> = {};
  for (const [name, pid] of Object.entries(pids)) processes[name] = readTreeCpuSeconds(pid);
  return { atMs: performance.now(), processes, self: readStat('/proc/self/stat'), machine: readMachineCpu() };
}

/**
 * Measures CPU over a window: `const w = CpuWindow.start({ server: pid }); …; w.stop()`. Each
 * named process counts with every thread (/proc/<pid>/stat sums them) and every process below it
 * (readTreeCpuSeconds).
 */
export class CpuWindow {
  private constructor(
    private readonly pids: Record<string, number>,
    private readonly first: CpuSnapshot,
  ) {}

  static start(pids: Record<string, number>): CpuWindow {
    return new CpuWindow(pids, snapshot(pids));
  }

  stop(): CpuUsage {
    const a = this.first;
    const b = snapshot(this.pids);
    const t = ticksPerSecond();
    const processes: Record<string, number | null> = {};
    for (const name of Object.keys(this.pids)) {
      const x = a.processes[name];
      const y = b.processes[name];
      processes[name] = x === null || x === undefined || y === null || y === undefined ? null : y - x;
    }
    const wallS = (b.atMs - a.atMs) / 1000;
    const machine = machineDelta(a.machine, b.machine, wallS);
    return {
      wallS,
      processes,
      harnessS: a.self && b.self ? (b.self.utime + b.self.stime - a.self.utime - a.self.stime) / t : null,
      reapedChildrenS: a.self && b.self ? (b.self.cutime + b.self.cstime - a.self.cutime - a.self.cstime) / t : null,
      machine,
    };
  }
}

/** Samples a process's memory every `everyMs` and keeps the maxima. */
export class MemorySampler {
  private timer: NodeJS.Timeout | undefined;
  private maxRss = 0;
  private maxHwm = 0;
  samples = 0;

  constructor(
    private readonly pid: number,
    private readonly everyMs = 250,
  ) {}

  start(): this {
    this.sample();
    this.timer = setInterval(() => this.sample(), this.everyMs);
    this.timer.unref();
    return this;
  }

  sample(): void {
    const m = readMemory(this.pid);
    if (!m) return;
    this.samples++;
    this.maxRss = Math.max(this.maxRss, m.rssMb);
    this.maxHwm = Math.max(this.maxHwm, m.hwmMb);
  }

  /** Takes a last sample (call before the process is killed) and stops. */
  stop(): { maxRssMb: number; hwmMb: number; samples: number } {
    this.sample();
    clearInterval(this.timer);
    return { maxRssMb: this.maxRss, hwmMb: this.maxHwm, samples: this.samples };
  }
}

export interface ThreadCpu {
  /** CPU seconds of the main thread (the event loop: uWS, JS, most of the work). */
  mainS: number;
  /** CPU seconds of every other thread (libuv pool doing fs writes and fsyncs, GC, compilers). */
  othersS: number;
  /** Context switches of the main thread: voluntary (waiting for I/O) and involuntary (preempted). */
  mainVoluntarySwitches: number;
  mainInvoluntarySwitches: number;
}

function statCpu(path: string): number | null {
  const s = readStat(path);
  return s === null ? null : (s.utime + s.stime) / ticksPerSecond();
}

/** Per-thread CPU split of `pid` (Linux names every Node thread "node", so main vs the rest). */
export function readThreadCpu(pid: number): ThreadCpu | null {
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return null;
  }
  let mainS = 0;
  let othersS = 0;
  for (const tid of tids) {
    const cpu = statCpu(`/proc/${pid}/task/${tid}/stat`);
    if (cpu === null) continue;
    if (tid === String(pid)) mainS = cpu;
    else othersS += cpu;
  }
  let status = '';
  try {
    status = readFileSync(`/proc/${pid}/task/${pid}/status`, 'utf8');
  } catch {
    return null;
  }
  const field = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? NaN);
  return {
    mainS,
    othersS,
    mainVoluntarySwitches: field('voluntary_ctxt_switches'),
    mainInvoluntarySwitches: field('nonvoluntary_ctxt_switches'),
  };
}

/** `b - a`, field by field. */
export function threadCpuDelta(a: ThreadCpu | null, b: ThreadCpu | null): ThreadCpu | null {
  if (!a || !b) return null;
  return {
    mainS: b.mainS - a.mainS,
    othersS: b.othersS - a.othersS,
    mainVoluntarySwitches: b.mainVoluntarySwitches - a.mainVoluntarySwitches,
    mainInvoluntarySwitches: b.mainInvoluntarySwitches - a.mainInvoluntarySwitches,
  };
}
