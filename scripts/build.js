#!/usr/bin/env node
// The production build: tsc (tsconfig.build.json) compiles the TypeScript sources to dist/, then
// the files the code reads beside itself at run time (`new URL(..., import.meta.url)`: the
// dashboard, the tracker script) are copied next to the compiled modules. dist/build.json keeps a
// fingerprint of every input, so `ensureBuilt()` (the `farol` bin calls it on every start) can tell
// a dist/ built from these exact sources from a missing, partial or stale one and rebuild it.
//
// `node scripts/build.js` (npm run build) builds unconditionally.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import process from 'node:process';
import { fileURLToPath, pathToFileURL, URL } from 'node:url';

/** The checkout: `root` of the functions below (a test points them at a small project of its own). */
export const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SELF = fileURLToPath(import.meta.url);
const CONFIG = 'tsconfig.build.json';
/** Read at run time relative to the compiled module that reads them; copied as they are. */
const ASSETS = ['api/dashboard', 'ingest/tracker/script.js'];
const STAMP = 'build.json';

/** Tests and their helpers are not part of the build (tsconfig.build.json excludes them too). */
function isBuildInput(name, isDir) {
  return isDir ? name !== 'testing' && name !== 'node_modules' : !name.endsWith('.test.ts');
}

function walk(root, rel, out) {
  let entries;
  try {
    entries = readdirSync(join(root, rel), { withFileTypes: true });
  } catch (err) {
    if (err.code === 'ENOENT') return out; // an included folder that does not exist (yet)
    throw err;
  }
  for (const entry of entries) {
    if (!isBuildInput(entry.name, entry.isDirectory())) continue;
    const path = `${rel}/${entry.name}`;
    if (entry.isDirectory()) walk(root, path, out);
    else if (entry.isFile()) out.push(path);
  }
  return out;
}

/** The build's inputs besides this script, relative to `root`, sorted: the folders tsconfig.build.json includes and the tsconfig files. */
export function buildInputs(root = ROOT) {
  const { include } = JSON.parse(readFileSync(join(root, CONFIG), 'utf8'));
  return [...include.flatMap((dir) => walk(root, dir, [])), 'tsconfig.json', CONFIG].sort();
}

/**
 * A hash of every input of the build (names relative to `root`, and contents): the folders
 * tsconfig.build.json includes, the tsconfig files, and this script.
 */
export function sourceFingerprint(root = ROOT) {
  const files = buildInputs(root);
  const hash = createHash('sha256');
  // Names relative to the checkout: the same sources built elsewhere (a moved or copied checkout,
  // a container's build stage) keep their fingerprint.
  for (const file of files) hash.update(`${file}\0`).update(readFileSync(join(root, file))).update('\0');
  hash.update('scripts/build.js\0').update(readFileSync(SELF));
  return hash.digest('hex');
}

function builtFingerprint(root) {
  try {
    return JSON.parse(readFileSync(join(root, 'dist', STAMP), 'utf8')).fingerprint;
  } catch {
    return undefined;
  }
}

/**
 * Compiles into a fresh directory, then swaps it in as dist/: a reader never sees half a build,
 * and the fingerprint (taken before compiling: a source edited meanwhile reads as stale) is
 * written last.
 */
export function build(root = ROOT, fingerprint = sourceFingerprint(root)) {
  const dist = join(root, 'dist');
  const tmp = join(root, `.dist-${process.pid}`);
  const old = join(root, `.dist-old-${process.pid}`);
  rmSync(tmp, { recursive: true, force: true });
  try {
    const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
    // tsc reports on stdout: keep the command's stdout for the command.
    const run = spawnSync(process.execPath, [tsc, '-p', join(root, CONFIG), '--outDir', tmp], { stdio: ['ignore', 2, 2] });
    if (run.status !== 0) throw new Error(`tsc -p ${CONFIG} failed (${run.error?.message ?? `exit ${run.status ?? run.signal}`})`);
    for (const asset of ASSETS) cpSync(join(root, asset), join(tmp, asset), { recursive: true });
    writeFileSync(join(tmp, STAMP), `${JSON.stringify({ fingerprint })}\n`);
    // Another build may swap its own in between these renames: move whatever is there aside, retry.
    for (let attempt = 0; ; attempt++) {
      try {
        renameSync(dist, old);
      } catch (err) {
        if (err.code !== 'ENOENT') throw err;
      }
      try {
        renameSync(tmp, dist);
        break;
      } catch (err) {
        if ((err.code !== 'ENOTEMPTY' && err.code !== 'EEXIST') || attempt >= 5) throw err;
      } finally {
        rmSync(old, { recursive: true, force: true });
      }
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

/** Whether `root/dist` is a complete build of exactly the current sources. */
export function isCurrent(root = ROOT) {
  return builtFingerprint(root) === sourceFingerprint(root);
}

/** Builds dist/ unless it was built from exactly the current sources. Returns whether it built. */
export function ensureBuilt(root = ROOT) {
  const fingerprint = sourceFingerprint(root);
  const built = builtFingerprint(root);
  if (built === fingerprint) return false;
  process.stderr.write(`farol: compiling to dist/ (${built === undefined ? 'no complete build yet' : 'the sources changed since the last build'})\n`);
  build(root, fingerprint);
  return true;
}

if (process.argv[1] !== undefined && pathToFileURL(process.argv[1]).href === import.meta.url) {
  const t0 = performance.now();
  build();
  process.stderr.write(`built dist/ in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
}
