#!/usr/bin/env node
// The `farol` bin: loads tsx so the TypeScript sources run as they are, then hands over to cli/main.ts.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('./main.ts');
process.exitCode = await main(process.argv.slice(2));
// The command has finished (drained and closed what it opened). A handle something failed to
// release (an SDK socket or timer) must not keep the process alive past that: name it and exit.
setTimeout(() => {
  process.stderr.write(`farol: still running 2 s after the command ended (open: ${process.getActiveResourcesInfo().join(', ')}); exiting\n`);
  process.exit();
}, 2_000).unref();
