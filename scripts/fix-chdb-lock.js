#!/usr/bin/env node
// chdb 3.4.0 lists optional platform packages (@chdb/lib-darwin-*, -linux-arm64-gnu) that are not
// published on the npm registry, so `npm install` leaves them out of package-lock.json and
// `npm ci` then refuses the lock. This re-adds them as skipped optionals. Run after `npm install`.
import fs from 'node:fs';
import { URL } from 'node:url';

const file = new URL('../package-lock.json', import.meta.url);
const lock = JSON.parse(fs.readFileSync(file, 'utf8'));
const chdbLib = lock.packages['node_modules/@chdb/lib-linux-x64-gnu'];
if (!chdbLib) throw new Error('package-lock.json has no @chdb/lib-linux-x64-gnu: is chdb installed?');
const platforms = { 'darwin-arm64': ['darwin', 'arm64'], 'darwin-x64': ['darwin', 'x64'], 'linux-arm64-gnu': ['linux', 'arm64'] };
for (const [name, [os, cpu]] of Object.entries(platforms)) {
  lock.packages[`node_modules/@chdb/lib-${name}`] = { version: chdbLib.version, cpu: [cpu], os: [os], optional: true, license: 'Apache-2.0' };
}
const sorted = {};
for (const k of Object.keys(lock.packages).sort((a, b) => (a === '' ? -1 : b === '' ? 1 : a < b ? -1 : 1))) sorted[k] = lock.packages[k];
lock.packages = sorted;
fs.writeFileSync(file, `${JSON.stringify(lock, null, 2)}\n`);
