#!/usr/bin/env node
// `npm test`'s own set-up (the `pretest` script): the browser tests (tests/tracker.test.ts,
// tests/dashboard.test.ts) drive Debian's Chromium at /usr/bin/chromium through playwright-core,
// which never downloads a browser. When it is missing this installs Debian's package with apt-get
// (as root, or through passwordless sudo); where it cannot, it fails saying what to install.
import { spawnSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import process from 'node:process';
import { pathToFileURL } from 'node:url';

/** Where the browser tests look for Chromium. */
export const CHROMIUM = '/usr/bin/chromium';

function runnable(path) {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function succeeds(command, args) {
  return spawnSync(command, args, { stdio: 'ignore' }).status === 0;
}

/**
 * Makes sure `path` runs Chromium, installing Debian's `chromium` package when it does not.
 * Returns what it did; throws an Error whose message says what to do by hand.
 */
export function ensureChromium(path = CHROMIUM) {
  if (runnable(path)) return 'found';
  const by = `the browser tests need Chromium at ${path} (they never download a browser)`;
  if (!succeeds('apt-get', ['--version'])) throw new Error(`${by}: install your distribution's Chromium there`);
  const asRoot = process.getuid?.() === 0;
  if (!asRoot && !succeeds('sudo', ['-n', 'true'])) {
    throw new Error(`${by}: run \`sudo apt-get install chromium\` (npm test installs it itself only as root or with passwordless sudo)`);
  }
  process.stderr.write(`${path} is missing: installing Debian's chromium with apt-get\n`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  for (const args of [['update', '-qq'], ['install', '-y', '-qq', 'chromium']]) {
    const [command, argv] = asRoot ? ['apt-get', args] : ['sudo', ['-n', 'apt-get', ...args]];
    const run = spawnSync(command, argv, { stdio: ['ignore', 2, 2], env });
    if (run.status !== 0) throw new Error(`${by}: \`apt-get ${args.join(' ')}\` failed (exit ${run.status ?? run.signal})`);
  }
  if (!runnable(path)) throw new Error(`${by}: apt-get installed chromium, yet ${path} is still missing`);
  return 'installed';
}

if (process.argv[1] !== undefined && pathToFileURL(process.argv[1]).href === import.meta.url) {
  try {
    ensureChromium();
  } catch (err) {
    process.stderr.write(`npm test: ${err.message}\n`);
    process.exit(1);
  }
}
