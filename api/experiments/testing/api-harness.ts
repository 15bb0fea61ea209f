import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '../../../lib/log.ts';
import { Registry } from '../../../lib/metrics.ts';
import { loadConfig } from '../../../schemas/config.ts';
import { openChdbStore } from '../../../store/chdb-store.ts';
import { migrate } from '../../../store/migrate.ts';
import type { Store } from '../../../store/store.ts';
import { ControlPlane, type ControlPlaneOptions } from '../../../control/control-plane.ts';
import type { Logger } from '../../../lib/log.ts';
import { listenApi, type ApiServer } from '../../server.ts';

/**
 * The real API for route tests: chDB on a temp dir, the real control plane (no cache, so a change
 * shows at once), every route module on uWS at 127.0.0.1 port 0, and two accounts with members of
 * each role and their tokens.
 */

export interface Tokens {
  /** Account A: owner, admin (every site), viewer (every site), viewer of `two.test` only. */
  owner: string;
  admin: string;
  viewer: string;
  scopedViewer: string;
  /** Account B's owner. */
  otherOwner: string;
}

export interface ApiHarness {
  url: string;
  store: Store;
  control: ControlPlane;
  tokens: Tokens;
  close(): Promise<void>;
}

export const SITE_A = 'one.test';
export const SITE_A2 = 'two.test';
export const SITE_B = 'other.test';

/** The real API over chDB on a temp dir, with its control plane. */
export interface ApiOnChdb {
  url: string;
  store: Store;
  control: ControlPlane;
  close(): Promise<void>;
}

/**
 * chDB on a temp dir (migrated), its control plane, and every route module on uWS at 127.0.0.1
 * port 0; `seed` fills the control plane before the server listens.
 */
export async function startApiOnChdb(opts: {
  database: string;
  /** The control plane's cache TTL (default: none, so a change shows at once). */
  cacheTtlMs?: number;
  now?: () => Date;
  seed?: (control: ControlPlane) => Promise<void>;
  /** What the API routes read through, around the real store (the control plane reads the real one). */
  wrapStore?: (store: Store) => Store;
  /** Extra configuration (`FAROL_API_…` limits). */
  env?: Record<string, string>;
  /** More control-plane options (a clock, session lifetimes). */
  control?: ControlPlaneOptions;
  /** The API's logger (default: silent). */
  log?: Logger;
}): Promise<ApiOnChdb> {
  const dir = await mkdtemp(join(tmpdir(), 'farol-routes-'));
  const store = openChdbStore({ dataDir: dir, database: opts.database });
  let server: ApiServer | undefined;
  try {
    await migrate(store, { database: opts.database, retentionDays: 395 });
    const control = new ControlPlane(store, { cacheTtlMs: opts.cacheTtlMs ?? 0, ...opts.control });
    await opts.seed?.(control);
    const config = loadConfig({ FAROL_DATA_DIR: dir, FAROL_PORT: '0', FAROL_HOST: '127.0.0.1', ...opts.env });
    const routeStore = opts.wrapStore?.(store) ?? store;
    server = await listenApi({ store: routeStore, control, config, log: opts.log ?? silentLogger, metrics: new Registry(), now: opts.now ?? (() => new Date()) });
    const s = server;
    return {
      url: `http://127.0.0.1:${s.port}`,
      store,
      control,
      async close() {
        await s.stop();
        await store.close();
        await rm(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await server?.stop();
    await store.close();
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}

/** Options of {@link startApiHarness}: see {@link startApiOnChdb}. */
export interface ApiHarnessOptions {
  wrapStore?: (store: Store) => Store;
  env?: Record<string, string>;
}

export async function startApiHarness(now: () => Date = () => new Date(), opts: ApiHarnessOptions = {}): Promise<ApiHarness> {
  let tokens: Tokens | undefined;
  const api = await startApiOnChdb({
    database: 'farol_routes_test',
    now,
    ...opts,
    seed: async (control) => {
      const a = await control.createAccount({ name: 'A' });
      const b = await control.createAccount({ name: 'B' });
      await control.addSite(a.id, { domain: SITE_A, timezone: 'UTC' });
      await control.addSite(a.id, { domain: SITE_A2, timezone: 'UTC' });
      await control.addSite(b.id, { domain: SITE_B, timezone: 'UTC' });
      const token = async (account: string, role: 'owner' | 'admin' | 'viewer', sites: string[] = []): Promise<string> => {
        const m = await control.addMember(account, { name: `${role}-${sites.join('+')}`, role, sites });
        return (await control.issueToken(m.id)).token;
      };
      tokens = {
        owner: await token(a.id, 'owner'),
        admin: await token(a.id, 'admin'),
        viewer: await token(a.id, 'viewer'),
        scopedViewer: await token(a.id, 'viewer', [SITE_A2]),
        otherOwner: await token(b.id, 'owner'),
      };
    },
  });
  if (tokens === undefined) throw new Error('seed did not run');
  return { ...api, tokens };
}

export interface Reply {
  status: number;
  headers: Headers;
  json: unknown;
  bytes: Uint8Array;
}

/** One request; `json` is the parsed body when it is JSON, else undefined. */
export async function call(base: string, method: string, path: string, token?: string, body?: unknown): Promise<Reply> {
  const headers: Record<string, string> = {};
  if (token !== undefined) headers['authorization'] = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(`${base}${path}`, { method, headers, ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }) });
  const bytes = new Uint8Array(await res.arrayBuffer());
  let json: unknown;
  if ((res.headers.get('content-type') ?? '').startsWith('application/json')) json = JSON.parse(new TextDecoder().decode(bytes)) as unknown;
  return { status: res.status, headers: res.headers, json, bytes };
}

/** {@link call} with the body as text: for comparing answers byte for byte. */
export async function callText(base: string, method: string, path: string, token?: string, body?: unknown): Promise<{ status: number; text: string }> {
  const r = await call(base, method, path, token, body);
  return { status: r.status, text: new TextDecoder().decode(r.bytes) };
}
