import { main } from './main.ts';

// The `farol` process: the command's exit code, then a guard. The command has finished (drained
// and closed what it opened); a handle something failed to release (an SDK socket or timer) must
// not keep the process alive past that: name it and exit. Production runs this compiled
// (dist/cli/run.js, through cli/farol.js); development and the tests through tsx
// (`node --import tsx cli/run.ts <command>`).
process.exitCode = await main(process.argv.slice(2));
setTimeout(() => {
  process.stderr.write(`farol: still running 2 s after the command ended (open: ${process.getActiveResourcesInfo().join(', ')}); exiting\n`);
  process.exit();
}, 2_000).unref();
