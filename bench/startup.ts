import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { ROOT } from './servers.ts';

/**
 * Start-up time and RSS of `farol collector` (or `start`): from spawning the process to its
 * "collector listening" line, and its RSS at that moment (/proc). Each run gets a fresh data dir
 * and a fresh TMPDIR, so tsx's compile cache is cold, as under the systemd unit's PrivateTmp.
 * Variants run interleaved (the machine may be shared); medians are printed.
 *
 *   node --import tsx bench/startup.ts [--runs 6] [--command collector|start] [label=<node args> ...]
 *
 * Default variants: `compiled` (cli/farol.js: dist/, built first if stale) and `tsx`
 * (`--import tsx cli/run.ts`: the sources, as every start ran before the compiled build).
 * Build dist/ first (`npm run build`) so the compiled runs do not include a compilation.
 */

interface Variant {
  label: string;
  args: string[];
  ms: number[];
  rssMb: number[];
}

function once(v: Variant, command: string): Promise<void> {
  const tmp = mkdtempSync(join(tmpdir(), 'farol-startup-tmp-'));
  const data = mkdtempSync(join(tmpdir(), 'farol-startup-data-'));
  const t0 = performance.now();
  const child = spawn(process.execPath, [...v.args, command], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', TMPDIR: tmp, FAROL_PORT: '0', FAROL_METRICS_PORT: '', FAROL_DATA_DIR: data, FAROL_LOG_LEVEL: 'info', FAROL_BOOTSTRAP_TOKEN: 'farol_bench_owner_token_not_secret' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  let ready = false;
  return new Promise((resolve, reject) => {
    createInterface({ input: child.stdout }).on('line', (line) => {
      if (ready || !line.includes('collector listening')) return;
      ready = true;
      v.ms.push(performance.now() - t0);
      const rssKb = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))?.[1];
      v.rssMb.push(Number(rssKb) / 1024);
      child.kill('SIGKILL');
    });
    child.on('exit', () => {
      rmSync(tmp, { recursive: true, force: true });
      rmSync(data, { recursive: true, force: true });
      if (ready) resolve();
      else reject(new Error(`${v.label}: farol ${command} exited before listening:\n${stderr}`));
    });
  });
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
const list = (xs: number[]): string => xs.map((x) => x.toFixed(0)).join(' ');

const { values, positionals } = parseArgs({ options: { runs: { type: 'string', default: '6' }, command: { type: 'string', default: 'collector' } }, allowPositionals: true });
const runs = Number(values.runs);
if (!Number.isInteger(runs) || runs < 1 || (values.command !== 'collector' && values.command !== 'start')) {
  process.stderr.write('usage: node --import tsx bench/startup.ts [--runs 6] [--command collector|start] [label=<node args> ...]\n');
  process.exit(2);
}
const specs = positionals.length > 0 ? positionals : ['compiled=cli/farol.js', 'tsx=--import tsx cli/run.ts'];
const variants: Variant[] = specs.map((spec) => {
  const at = spec.indexOf('=');
  return { label: spec.slice(0, at), args: spec.slice(at + 1).split(' '), ms: [], rssMb: [] };
});
for (let i = 0; i < runs; i++) for (const v of variants) await once(v, values.command);
for (const v of variants) {
  process.stdout.write(`farol ${values.command} ${v.label}: ready ms [${list(v.ms)}] median ${median(v.ms).toFixed(0)}; RSS MB [${list(v.rssMb)}] median ${median(v.rssMb).toFixed(0)}\n`);
}
