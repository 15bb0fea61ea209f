import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import uWS from 'uWebSockets.js';
import type { HttpResponse, TemplatedApp } from 'uWebSockets.js';

/**
 * The baseline for `npm run bench`: a bare uWebSockets.js endpoint doing only what any ingest
 * server must (the collector is held to ≥ 70% of this one's requests/s).
 * `POST /api/event` (and `/api/batch`) read the whole body, copying each chunk as uWS requires,
 * and answer `202` with an empty body inside `res.cork`. No parsing, validation or storage.
 *
 * Run as a child process: `node --import tsx bench/bare-server.ts --port 9001`.
 */

function readAndAccept(res: HttpResponse): void {
  let aborted = false;
  res.onAborted(() => {
    aborted = true;
  });
  const chunks: Buffer[] = [];
  res.onData((chunk, isLast) => {
    // uWS reuses the chunk's memory once this callback returns.
    chunks.push(Buffer.copyBytesFrom(new Uint8Array(chunk)));
    if (!isLast || aborted) return;
    // The body would be handed on here; hold a reference so the copy is not optimized away.
    lastBodyBytes = chunks.length === 1 ? chunks[0]!.length : Buffer.concat(chunks).length;
    res.cork(() => {
      res.writeStatus('202 Accepted').end();
    });
  });
}

let lastBodyBytes = 0;

/** Builds the bare app (not listening). */
export function createBareApp(): TemplatedApp {
  const app = uWS.App();
  app.post('/api/event', readAndAccept);
  app.post('/api/batch', readAndAccept);
  // Readiness probe for the harness; not on the measured path.
  app.get('/healthz', (res) => {
    res.cork(() => {
      res.writeStatus('200 OK').end(`{"status":"ok","lastBodyBytes":${lastBodyBytes}}`);
    });
  });
  app.any('/*', (res) => {
    res.onData(() => undefined);
    res.cork(() => {
      res.writeStatus('404 Not Found').end();
    });
  });
  return app;
}

function portArg(argv: string[]): number {
  let port = NaN;
  try {
    port = Number(parseArgs({ args: argv, options: { port: { type: 'string' } } }).values.port ?? NaN);
  } catch {
    // an unknown option or a missing value: the usage below
  }
  if (!Number.isInteger(port) || port <= 0 || port > 65535) {
    process.stderr.write('usage: node --import tsx bench/bare-server.ts --port <1-65535>\n');
    process.exit(2);
  }
  return port;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const port = portArg(process.argv.slice(2));
  // A clean exit on SIGTERM, so `node --cpu-prof bench/bare-server.ts` writes its profile.
  process.on('SIGTERM', () => process.exit(0));
  createBareApp().listen('127.0.0.1', port, (socket) => {
    if (!socket) {
      process.stderr.write(`bare-server: cannot listen on 127.0.0.1:${port}\n`);
      process.exit(1);
    }
    process.stdout.write(`bare-server listening on 127.0.0.1:${port}\n`);
  });
}
