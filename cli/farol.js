#!/usr/bin/env node
// The `farol` bin (and `npm start`): runs the compiled JavaScript in dist/. dist/ is built on first
// use and rebuilt whenever the sources differ from those it was built from (scripts/build.js keeps
// a fingerprint of them), so a start never runs stale code. Development and the tests run the
// TypeScript sources through tsx instead: `node --import tsx cli/run.ts <command>`.
import { ensureBuilt } from '../scripts/build.js';

try {
  ensureBuilt();
} catch (err) {
  process.stderr.write(`farol: dist/ is missing or out of date and could not be built (${err instanceof Error ? err.message : String(err)}); run \`npm run build\` where the checkout is writable\n`);
  process.exit(1);
}
await import('../dist/cli/run.js');
