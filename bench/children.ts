import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';

/*
 * Every child the harness starts (servers, wrk) is tracked here and SIGKILLed when the harness
 * exits for any reason (normal end, error, Ctrl-C), so no server outlives a run and keeps a port
 * or a core busy for the next one.
 */

const live = new Set<ChildProcess>();
let hooked = false;

function killAll(): void {
  for (const child of live) {
    try {
      child.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
  live.clear();
}

function hookExit(): void {
  if (hooked) return;
  hooked = true;
  process.on('exit', killAll);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(sig, () => {
      killAll();
      process.stderr.write(`\nbench: ${sig}, children killed\n`);
      process.exit(130);
    });
  }
}

export interface Child {
  process: ChildProcess;
  pid: number;
  /** The last lines of stdout and stderr, for error reports. */
  output: string[];
  /** Resolves with the exit code, or the signal name. */
  exited: Promise<number | string>;
  /** True once the child has exited. */
  readonly done: boolean;
  /** SIGKILLs the child (no-op once exited) and waits for it to be gone. */
  kill(): Promise<void>;
  /** Sends `signal`, waits up to `graceMs` for a clean exit, then SIGKILLs. */
  stop(signal: NodeJS.Signals, graceMs: number): Promise<number | string>;
}

const KEEP_LINES = 200;

/** Spawns a tracked child; stdout/stderr are captured (the tail is kept in `output`). */
export function spawnTracked(command: string, args: string[], options: SpawnOptions): Child {
  hookExit();
  const child = spawn(command, args, { ...options, stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(child);
  const output: string[] = [];
  const collect = (chunk: Buffer): void => {
    for (const line of chunk.toString('utf8').split('\n')) {
      if (line === '') continue;
      output.push(line);
      if (output.length > KEEP_LINES) output.shift();
    }
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  let done = false;
  const exited = new Promise<number | string>((resolve) => {
    child.on('error', (err) => {
      output.push(`spawn error: ${err.message}`);
      done = true;
      live.delete(child);
      resolve(-1);
    });
    child.on('exit', (code, signal) => {
      done = true;
      live.delete(child);
      resolve(code ?? signal ?? -1);
    });
  });
  const handle: Child = {
    process: child,
    pid: child.pid ?? -1,
    output,
    exited,
    get done() {
      return done;
    },
    async kill() {
      if (done) return;
      child.kill('SIGKILL');
      await exited;
    },
    async stop(signal, graceMs) {
      if (done) return exited;
      child.kill(signal);
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<'timeout'>((resolve) => {
        timer = setTimeout(() => resolve('timeout'), graceMs);
      });
      const first = await Promise.race([exited, timeout]);
      clearTimeout(timer);
      if (first === 'timeout') {
        child.kill('SIGKILL');
        return exited;
      }
      return first;
    },
  };
  return handle;
}
