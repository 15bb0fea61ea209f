import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

/* Linux /proc readings of a child: memory (VmRSS, VmHWM) and CPU time (utime + stime). */

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

/** CPU seconds (user + system, all threads) used by `pid` so far; null once it is gone. */
export function readCpuSeconds(pid: number): number | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // The command name may hold spaces and parentheses: fields are counted after its last ')'.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  if (!Number.isFinite(utime) || !Number.isFinite(stime)) return null;
  return (utime + stime) / ticksPerSecond();
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
  try {
    const text = readFileSync(path, 'utf8');
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / ticksPerSecond();
  } catch {
    return null;
  }
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
