// `npm run depcheck [-- <dir>]`: checks the import arrows of .dependency-cruiser.js over every
// top-level folder of <dir> (default: this repository); exits 1 naming each violation. Through
// dependency-cruiser's API, because its CLI (`depcruise`) refuses Node 20, which Farol supports;
// on Node >= 22 `npx depcruise <folders>` reads the same file and gives the same answer.
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import process from 'node:process';
import { fileURLToPath, URL } from 'node:url';
import { cruise } from 'dependency-cruiser';
import config from '../.dependency-cruiser.js';

process.chdir(process.argv[2] ?? fileURLToPath(new URL('..', import.meta.url)));
/** Whether git ignores `path` here (build output, data); false outside a git checkout. */
function ignored(path) {
  return spawnSync('git', ['check-ignore', '-q', path]).status === 0;
}

// Every top-level folder git does not ignore: a new one is held at least to the rules on what it
// imports from (no cycles, nothing imports cli/ or testing/).
const roots = readdirSync('.', { withFileTypes: true })
  .filter((d) => d.isDirectory() && !d.name.startsWith('.') && d.name !== 'node_modules' && !ignored(d.name))
  .map((d) => d.name);
const result = await cruise(roots, { ...config.options, ruleSet: { forbidden: config.forbidden }, validate: true, outputType: 'err' });
process.stdout.write(result.output);
process.exitCode = result.exitCode === 0 ? 0 : 1;
