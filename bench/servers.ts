import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnTracked, type Child } from './children.ts';
import { httpsRequest, makeTestCert } from '../lib/testing/tls.ts';
import { configSchema } from '../schemas/config.ts';
import { ensureBuilt } from '../scripts/build.js';

/* The servers under test, each a single-threaded child process on 127.0.0.1. */

export const ROOT = fileURLToPath(new URL('..', import.meta.url));
export const HOST = '127.0.0.1';

/** A free TCP port on 127.0.0.1 (the OS picks it; the tiny race with other processes is accepted). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, HOST, () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      srv.close(() => (port > 0 ? resolve(port) : reject(new Error('no free port'))));
    });
  });
}

export interface Server {
  name: string;
  url: string;
  port: number;
  /** Where a Farol server's `/metrics` is served (FAROL_METRICS_PORT); none for the bare baseline. */
  metricsUrl?: string;
  child: Child;
  /** SIGKILLs the server and removes its temp data. Safe to call twice. */
  kill(): Promise<void>;
  /** SIGTERM (a clean exit, e.g. so --cpu-prof writes its profile), SIGKILL after `graceMs`. */
  stop(graceMs: number): Promise<number | string>;
}

/** The environment of a child: the harness's, minus any FAROL_* setting. */
function cleanEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith('FAROL_')) env[k] = v;
  return { ...env, ...extra };
}

/** Polls `GET /healthz` until it answers 200 (over HTTPS trusting `ca` when given); fails early if the child exits. */
export async function waitHealthy(url: string, child: Child, timeoutMs: number, ca?: Buffer): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.done) throw new Error(`server exited (${String(await child.exited)}) before it was healthy:\n${child.output.join('\n')}`);
    try {
      const status =
        ca === undefined
          ? await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(1000) }).then(async (res) => (await res.arrayBuffer(), res.status))
          : (await httpsRequest({ port: Number(new URL(url).port), path: '/healthz', ca })).status;
      if (status === 200) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`server at ${url} not healthy within ${timeoutMs} ms:\n${child.output.join('\n')}`);
}

async function started(name: string, port: number, child: Child, cleanup: () => void, ca?: Buffer): Promise<Server> {
  const url = `${ca === undefined ? 'http' : 'https'}://${HOST}:${port}`;
  const server: Server = {
    name,
    url,
    port,
    child,
    async kill() {
      await child.kill();
      cleanup();
    },
    async stop(graceMs) {
      const code = await child.stop('SIGTERM', graceMs);
      cleanup();
      return code;
    },
  };
  try {
    await waitHealthy(url, child, 60_000, ca);
  } catch (err) {
    await server.kill();
    throw err;
  }
  return server;
}

/** Starts bench/bare-server.ts (the bare uWebSockets.js baseline). */
export async function startBare(): Promise<Server> {
  const port = await freePort();
  const script = join(ROOT, 'bench', 'bare-server.ts');
  const child = spawnTracked(process.execPath, ['--import', 'tsx', script, '--port', String(port)], { cwd: ROOT, env: cleanEnv({}) });
  return started('bare uWS', port, child, () => undefined);
}

/** The setting the `--threads` sweep passes to Farol. */
export const COLLECTOR_THREADS_VAR = 'FAROL_COLLECTOR_THREADS';

/** What a thread count asked of Farol means for the checkout under test. */
export interface ThreadSetting {
  /** The value given to FAROL_COLLECTOR_THREADS, or null when the variable was left unset. */
  asked: number | null;
  /** Whether this checkout's config knows the variable (an older one ignores it: one thread). */
  honoured: boolean;
  /** Threads the collector ran, when known: the value asked, the config's numeric default, or 1 without the setting. */
  count: number | null;
  /** For tables: `2`, `default (auto)`, `1 (asked 2)` (a checkout without the setting). */
  label: string;
}

/**
 * Reads the config schema the child will parse (the same checkout): Farol picks only the
 * variables its schema names, so an unknown FAROL_COLLECTOR_THREADS is ignored, never an error.
 * Nothing asked: the harness's own FAROL_COLLECTOR_THREADS is what the child gets (startCollector).
 */
export function threadSetting(
  asked: number | undefined,
  shape: Record<string, { safeParse(v: unknown): { success: boolean; data?: unknown } }> = configSchema.shape,
  env: Record<string, string | undefined> = process.env,
): ThreadSetting {
  const inherited = env[COLLECTOR_THREADS_VAR]?.trim() ?? '';
  if (asked === undefined && /^\d+$/.test(inherited) && Number(inherited) > 0) asked = Number(inherited);
  const schema = Object.hasOwn(shape, COLLECTOR_THREADS_VAR) ? shape[COLLECTOR_THREADS_VAR] : undefined;
  if (schema === undefined) {
    return { asked: asked ?? null, honoured: false, count: 1, label: asked === undefined || asked === 1 ? '1' : `1 (asked ${asked})` };
  }
  if (asked !== undefined) return { asked, honoured: true, count: asked, label: String(asked) };
  const d = schema.safeParse(undefined);
  const value = d.success ? d.data : undefined;
  const count = typeof value === 'number' && Number.isInteger(value) && value > 0 ? value : null;
  return { asked: null, honoured: true, count, label: `default (${value === undefined ? 'unset' : String(value)})` };
}

/** A line for reports when the checkout ignores FAROL_COLLECTOR_THREADS; null when it honours it. */
export function threadNote(): string | null {
  return threadSetting(undefined).honoured
    ? null
    : `${COLLECTOR_THREADS_VAR} is unknown to this checkout's config (schemas/config.ts), so Farol ignores it and runs one collector thread; "1 (asked N)" shows what the bench asked.`;
}

export interface CollectorStartOptions {
  /** Extra node flags for the child, e.g. `--cpu-prof`. */
  nodeArgs?: string[];
  /** `collector` (ingest only, the default) or `start` (all-in-one: + processor + chDB). */
  command?: 'collector' | 'start';
  /** Serve HTTPS with a self-signed certificate made in the data dir. */
  tls?: boolean;
  /** Run on this data dir, kept when the server is killed (default: a fresh temp dir, removed). */
  dataDir?: string;
  /** FAROL_HUB_SYNC of the server (default: Farol's, `always`). */
  hubSync?: string;
  /** FAROL_COLLECTOR_THREADS of the server (default: the harness's own FAROL_COLLECTOR_THREADS, else Farol's, the cores). */
  collectorThreads?: number;
}

/**
 * Starts `farol collector` (or `start`) on a fresh temp data dir (removed when the server is
 * killed). Compiled (`dist/cli/run.js`, built first when stale, as the `farol` bin and the Docker
 * image run it): through tsx the same sources cost ~12 µs more per request (tsx wraps every named
 * function to set its name), which no user pays. Under `--cpu-prof` through tsx, whose source
 * maps bench/cpu-profile.ts reads.
 */
let built = false;
/** dist/ from these sources (compiled once per harness run when missing or stale). */
function buildOnce(): void {
  if (built) return;
  ensureBuilt(ROOT);
  built = true;
}

/** FAROL_* settings of every Farol server started from now on (`--set`), under the bench's own. */
let serverEnv: Readonly<Record<string, string>> = {};
export function setServerEnv(env: Readonly<Record<string, string>>): void {
  serverEnv = { ...env };
}

export async function startCollector(opts: CollectorStartOptions = {}): Promise<Server & { dataDir: string; metricsUrl: string }> {
  const port = await freePort();
  const metricsPort = await freePort();
  const dataDir = opts.dataDir ?? mkdtempSync(join(tmpdir(), 'farol-bench-'));
  const cert = opts.tls ? makeTestCert(dataDir, 'bench') : undefined;
  const threads = opts.collectorThreads === undefined ? process.env.FAROL_COLLECTOR_THREADS : String(opts.collectorThreads);
  const env = cleanEnv({
    ...serverEnv,
    ...(cert === undefined ? {} : { FAROL_TLS_CERT: cert.cert, FAROL_TLS_KEY: cert.key }),
    FAROL_HOST: HOST,
    FAROL_PORT: String(port),
    FAROL_METRICS_HOST: HOST,
    FAROL_METRICS_PORT: String(metricsPort),
    FAROL_DATA_DIR: dataDir,
    FAROL_TRUST_PROXY: '127.0.0.1/32',
    FAROL_LOG_LEVEL: 'warn',
    // The load scripts send for example.com: `start` registers it (only registered sites are accepted).
    FAROL_SITES: 'example.com',
    // A known owner token: `start` then prints none (a printed token would read as a logged problem).
    FAROL_BOOTSTRAP_TOKEN: 'farol_bench_owner_token_not_secret',
    ...(opts.hubSync === undefined ? {} : { FAROL_HUB_SYNC: opts.hubSync }),
    ...(threads === undefined ? {} : { FAROL_COLLECTOR_THREADS: threads }),
  });
  const nodeArgs = opts.nodeArgs ?? [];
  const profiled = nodeArgs.some((a) => a.startsWith('--cpu-prof'));
  if (!profiled) buildOnce();
  const entry = profiled ? ['--import', 'tsx', join(ROOT, 'cli', 'run.ts')] : [join(ROOT, 'dist', 'cli', 'run.js')];
  const args = [...nodeArgs, ...entry, opts.command ?? 'collector'];
  const child = spawnTracked(process.execPath, args, { cwd: ROOT, env });
  const cleanup = (): void => {
    if (opts.dataDir === undefined) rmSync(dataDir, { recursive: true, force: true });
  };
  const name = opts.command === 'start' ? 'farol start' : 'collector';
  const server = await started(opts.tls ? `${name} (TLS)` : name, port, child, cleanup, cert?.pem);
  return { ...server, dataDir, metricsUrl: `http://${HOST}:${metricsPort}` };
}

export interface MetricSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parses Prometheus text exposition (the subset lib/metrics.ts writes). */
export function parseMetrics(text: string): MetricSample[] {
  const out: MetricSample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)$/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

/** Reads `/metrics` of a Farol server, from its metrics listener (never the public port). */
export async function fetchMetrics(server: Server): Promise<MetricSample[]> {
  if (server.metricsUrl === undefined) throw new Error(`${server.name} serves no metrics`);
  const res = await fetch(`${server.metricsUrl}/metrics`, { signal: AbortSignal.timeout(5000) });
  if (res.status !== 200) throw new Error(`GET /metrics answered ${res.status}`);
  return parseMetrics(await res.text());
}

/** Sum of a metric's samples whose labels match `where` (all samples when omitted). */
export function metricSum(samples: MetricSample[], name: string, where: (labels: Record<string, string>) => boolean = () => true): number {
  return samples.filter((s) => s.name === name && where(s.labels)).reduce((a, s) => a + s.value, 0);
}
