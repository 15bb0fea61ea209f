#!/usr/bin/env node
// `npm test`'s checks before the tests, side by side instead of one after another: the type check,
// lint and the import arrows (each its npm script), and dist/ built from the current sources (the
// tests start the compiled farol; built here, the first of them does not wait for it). tsc and
// eslint each use one core, so on the 2-core CI box two at a time take about half as long
// (~80 s → ~45 s there). Each job's output is printed whole when it ends, so the logs of two jobs
// never interleave; the exit code is 1 if any job failed, after all of them ran.
import { Buffer } from 'node:buffer';
import { spawn } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { performance } from 'node:perf_hooks';
import process from 'node:process';
import { fileURLToPath, URL } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
// Under npm, npm_execpath is npm's own script: run the scripts with the same npm.
const npm = process.env.npm_execpath ? [process.execPath, process.env.npm_execpath] : ['npm'];
const build = `const { ensureBuilt } = await import(${JSON.stringify(new URL('build.js', import.meta.url).href)}); ensureBuilt();`;

/** Longest first (on the 2-core box: lint ~42 s, typecheck ~32 s, build ~20 s, depcheck ~7 s). */
const jobs = [
  { name: 'lint', argv: [...npm, 'run', 'lint'] },
  { name: 'typecheck', argv: [...npm, 'run', 'typecheck'] },
  { name: 'build', argv: [process.execPath, '--input-type=module', '-e', build] },
  { name: 'depcheck', argv: [...npm, 'run', 'depcheck'] },
];

function run(job) {
  const started = performance.now();
  const [command, ...args] = job.argv;
  const child = spawn(command, args, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  const chunks = [];
  child.stdout.on('data', (d) => chunks.push(d));
  child.stderr.on('data', (d) => chunks.push(d));
  return new Promise((resolve) => {
    let ended = false;
    const done = (code, error) => {
      if (ended) return;
      ended = true;
      const seconds = ((performance.now() - started) / 1000).toFixed(1);
      const ok = code === 0;
      process.stdout.write(`── ${job.name}: ${ok ? 'ok' : `FAILED (${error ?? `exit ${code}`})`} in ${seconds} s\n`);
      const output = Buffer.concat(chunks).toString();
      if (output.trim() !== '') process.stdout.write(output.endsWith('\n') ? output : `${output}\n`);
      resolve(ok);
    };
    child.on('error', (err) => done(null, err.message));
    child.on('close', (code, signal) => done(code, signal ?? undefined));
  });
}

const queue = [...jobs];
const results = [];
const slots = Math.max(1, Math.min(jobs.length, availableParallelism()));
await Promise.all(
  Array.from({ length: slots }, async () => {
    for (let job = queue.shift(); job !== undefined; job = queue.shift()) results.push(await run(job));
  }),
);
process.exitCode = results.every(Boolean) ? 0 : 1;
