import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createRequire } from 'node:module';
import { createConnection, createServer } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

/** Options for {@link startAzurite}. */
export interface AzuriteOptions {
  /** Azurite's workspace (`--location`). */
  dataDir: string;
}

/** A running Azurite blob service on 127.0.0.1. */
export interface Azurite {
  readonly port: number;
  /** Full development-storage connection string with this instance's blob endpoint. */
  readonly connectionString: string;
  /** SIGKILLs the process and waits for it to exit. */
  stop(): Promise<void>;
}

const ACCOUNT = 'devstoreaccount1';
// The well-known development storage key, public in Azure's documentation.
const KEY = 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';
const HOST = '127.0.0.1';

async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, HOST);
  await once(server, 'listening');
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === 'string') throw new Error('azurite: no free port');
  return address.port;
}

async function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: HOST, port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/**
 * Spawns npm Azurite's blob service (`azurite-blob`) on a free port with `--skipApiVersionCheck`
 * (the storage SDK is newer than Azurite's API table) and `--loose`, and waits until it accepts
 * connections. Telemetry is disabled so the tests stay on 127.0.0.1.
 */
export async function startAzurite(options: AzuriteOptions): Promise<Azurite> {
  const main = createRequire(import.meta.url).resolve('azurite/dist/src/blob/main.js');
  const port = await freePort();
  const child = spawn(
    process.execPath,
    [
      main,
      '--blobHost', HOST,
      '--blobPort', String(port),
      '--location', options.dataDir,
      '--skipApiVersionCheck',
      '--silent',
      '--loose',
      '--disableTelemetry',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  const collect = (chunk: Buffer): void => {
    output = (output + chunk.toString('utf8')).slice(-4000);
  };
  child.stdout.on('data', collect);
  child.stderr.on('data', collect);
  const exited = once(child, 'exit');

  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGKILL');
    await exited;
  };

  const deadline = Date.now() + 30_000;
  while (!(await accepts(port))) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`azurite exited (${child.exitCode ?? child.signalCode}) before listening:\n${output}`);
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`azurite did not listen on ${port} within 30 s:\n${output}`);
    }
    await sleep(50);
  }

  return {
    port,
    connectionString:
      `DefaultEndpointsProtocol=http;AccountName=${ACCOUNT};AccountKey=${KEY};` +
      `BlobEndpoint=http://${HOST}:${port}/${ACCOUNT};`,
    stop,
  };
}
