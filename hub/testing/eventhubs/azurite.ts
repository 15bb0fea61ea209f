import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { request } from 'node:http';
import { createRequire } from 'node:module';
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

/**
 * Spawns npm Azurite's blob service (`azurite-blob`) with `--skipApiVersionCheck` (the storage SDK
 * is newer than Azurite's API table) and `--loose`, and waits until it answers HTTP. Azurite binds
 * port 0 itself and prints the port it got: a port picked here and handed over could be taken by
 * another test's server in between, and a client would then talk to that server (a CI run failed
 * with "socket hang up" this way, or so it looked). Telemetry is disabled so the tests stay on
 * 127.0.0.1.
 */
export async function startAzurite(options: AzuriteOptions): Promise<Azurite> {
  const main = createRequire(import.meta.url).resolve('azurite/dist/src/blob/main.js');
  const child = spawn(
    process.execPath,
    [
      main,
      '--blobHost', HOST,
      '--blobPort', '0',
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
  let port: number | undefined;
  while (port === undefined || !(await answers(port))) {
    port ??= listeningPort(output);
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`azurite exited (${child.exitCode ?? child.signalCode}) before listening:\n${output}`);
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`azurite did not answer within 30 s:\n${output}`);
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

/** The port from Azurite's "successfully listens on http://127.0.0.1:PORT" line, once printed. */
function listeningPort(output: string): number | undefined {
  const m = /listens on http:\/\/127\.0\.0\.1:(\d+)/.exec(output);
  return m === null ? undefined : Number(m[1]);
}

/** Whether Azurite's blob service answers an HTTP request on `port` (any status, but from Azurite). */
async function answers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request({ host: HOST, port, path: `/${ACCOUNT}?comp=list`, method: 'GET', timeout: 2_000 }, (res) => {
      res.resume();
      resolve(String(res.headers.server ?? '').startsWith('Azurite'));
    });
    req.once('timeout', () => req.destroy());
    req.once('error', () => resolve(false));
    req.end();
  });
}
