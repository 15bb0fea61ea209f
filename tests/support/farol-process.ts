import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';

const BIN = fileURLToPath(new URL('../../cli/farol.js', import.meta.url));

export interface FarolProcess {
  child: ChildProcess;
  port: number;
  url: string;
  /** Every stdout/stderr line so far (structured logs), for privacy greps. */
  output: string[];
  /** Resolves with the exit code (or signal name). */
  exited: Promise<number | string>;
}

/**
 * Starts `farol <command>` as a child process on a free port and resolves once its collector (or,
 * for `farol api`, its API) listens. The process inherits nothing from the test's FAROL_* environment.
 */
export function startFarol(command: string, env: Record<string, string>, timeoutMs = 90_000): Promise<FarolProcess> {
  const clean: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith('FAROL_')) clean[k] = v;
  const child = spawn(process.execPath, [BIN, command], {
    env: { ...clean, FAROL_PORT: '0', FAROL_LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output: string[] = [];
  const exited = new Promise<number | string>((resolve) => child.on('exit', (code, sig) => resolve(code ?? sig ?? -1)));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`farol ${command} did not start in ${timeoutMs} ms:\n${output.join('\n')}`));
    }, timeoutMs);
    const onLine = (line: string): void => {
      output.push(line);
      if (!line.includes('collector listening') && !line.includes('"api listening"')) return;
      try {
        const port = (JSON.parse(line) as { port: number }).port;
        clearTimeout(timer);
        resolve({ child, port, url: `http://127.0.0.1:${port}`, output, exited });
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
export function runFarol(args: string[], env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  const clean: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith('FAROL_')) clean[k] = v;
  const child = spawn(process.execPath, [BIN, ...args], { env: { ...clean, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) => child.on('exit', (code) => resolve({ code: code ?? -1, stdout, stderr })));
}

/** A `farol` child that listens on no port (`farol processor`). */
export interface FarolChild {
  child: ChildProcess;
  output: string[];
  exited: Promise<number | string>;
}

/** `farol processor` as a child; resolves once it owns its consumer (it listens on no port). */
export function startFarolProcessor(env: Record<string, string>, timeoutMs = 60_000): Promise<FarolChild> {
  const clean: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith('FAROL_')) clean[k] = v;
  const child = spawn(process.execPath, [BIN, 'processor'], { env: { ...clean, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const output: string[] = [];
  const exited = new Promise<number | string>((resolve) => child.on('exit', (code, sig) => resolve(code ?? sig ?? -1)));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`farol processor did not start in ${timeoutMs} ms:\n${output.join('\n')}`));
    }, timeoutMs);
    createInterface({ input: child.stdout }).on('line', (line) => {
      output.push(line);
      if (line.includes('"processor started"')) {
        clearTimeout(timer);
        resolve({ child, output, exited });
      }
    });
    createInterface({ input: child.stderr }).on('line', (l) => output.push(l));
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`farol processor exited (${code}) before starting:\n${output.join('\n')}`));
    });
  });
}
