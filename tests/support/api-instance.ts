import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startFarol, type FarolProcess } from './farol-process.ts';

/**
 * A whole Farol for the reporting API's end-to-end tests: `farol start` as a child process on a
 * temp data dir, bootstrapped with a known owner token (the bootstrap site is `localhost`), its
 * collector and API on one port.
 */

/** The owner token the instances are bootstrapped with (FAROL_BOOTSTRAP_TOKEN). */
export const OWNER_TOKEN = 'farol-test-owner-token-0123456789abcdef';
export const BOOTSTRAP_SITE = 'localhost';

export interface ApiInstance {
  /** Collector and API base URL. */
  url: string;
  dataDir: string;
  proc: FarolProcess;
  /** POST /api/v2/query with the owner token: status and decoded JSON body. */
  query(body: unknown, token?: string): Promise<{ status: number; json: unknown }>;
  /** Registers a site through the admin endpoint (owner token); throws unless 201/200. */
  addSite(domain: string, timezone?: string): Promise<void>;
  /** SIGTERM and wait for exit 0 (drained); the data dir stays, e.g. to open its chDB. */
  halt(): Promise<void>;
  /** Halts (if running) and removes the data dir. */
  stop(): Promise<void>;
}

export async function startApiInstance(env: Record<string, string> = {}): Promise<ApiInstance> {
  const dataDir = await mkdtemp(join(tmpdir(), 'farol-api-e2e-'));
  let proc: FarolProcess;
  try {
    proc = await startFarol('start', { FAROL_DATA_DIR: dataDir, FAROL_TRUST_PROXY: '127.0.0.1/32', FAROL_BOOTSTRAP_TOKEN: OWNER_TOKEN, ...env });
  } catch (err) {
    await rm(dataDir, { recursive: true, force: true });
    throw err;
  }
  const url = proc.url;
  const post = async (path: string, body: unknown, token: string): Promise<{ status: number; json: unknown }> => {
    const res = await fetch(`${url}${path}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: typeof body === 'string' ? body : JSON.stringify(body),
      signal: AbortSignal.timeout(60_000),
    });
    const text = await res.text();
    let json: unknown = text;
    try {
      json = JSON.parse(text) as unknown;
    } catch {
      // not JSON: kept as text for the assertion message
    }
    return { status: res.status, json };
  };
  const halt = async (): Promise<void> => {
    if (proc.child.exitCode !== null || proc.child.signalCode !== null) return;
    proc.child.kill('SIGTERM');
    const code = await proc.exited;
    if (code !== 0) throw new Error(`farol start exited ${code} on SIGTERM:\n${proc.output.slice(-20).join('\n')}`);
  };
  return {
    url,
    dataDir,
    proc,
    query: (body, token = OWNER_TOKEN) => post('/api/v2/query', body, token),
    async addSite(domain, timezone = 'UTC') {
      const r = await post('/api/v1/sites', { domain, timezone }, OWNER_TOKEN);
      if (r.status !== 201 && r.status !== 200) throw new Error(`adding site ${domain}: ${r.status} ${JSON.stringify(r.json)}`);
    },
    halt,
    async stop() {
      try {
        await halt();
      } finally {
        await rm(dataDir, { recursive: true, force: true });
      }
    },
  };
}
