import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { isSecretVariable, REDACTED, redactCredentials } from './secrets.ts';

/**
 * Configuration: environment variables and equivalent `--flags`, parsed once by
 * this schema. A bad value names the variable and what is allowed.
 */

const cidr = z.string().refine((s) => {
  const [addr, bits, extra] = s.split('/');
  if (extra !== undefined || !addr) return false;
  const family = isIP(addr);
  if (family === 0) return false;
  if (bits === undefined) return true;
  const n = Number(bits);
  return /^\d+$/.test(bits) && n >= 0 && n <= (family === 4 ? 32 : 128);
}, 'must be an IP address or CIDR');

/** `0`..`n` trusted hops, or a comma list of trusted proxy addresses/CIDRs. */
export const trustProxySchema = z.string().transform((s, ctx) => {
  const t = s.trim();
  if (/^\d+$/.test(t)) {
    const hops = Number(t);
    if (hops > 10) {
      ctx.addIssue({ code: 'custom', message: 'hop count must be 0 to 10' });
      return z.NEVER;
    }
    return { kind: 'hops' as const, hops };
  }
  const list = t.split(',').map((x) => x.trim()).filter(Boolean);
  for (const c of list) {
    if (!cidr.safeParse(c).success) {
      ctx.addIssue({ code: 'custom', message: `"${c}" is not an IP address or CIDR; use a hop count or a comma list of CIDRs` });
      return z.NEVER;
    }
  }
  return { kind: 'cidrs' as const, cidrs: list };
});
export type TrustProxy = z.output<typeof trustProxySchema>;

/**
 * A rate limit: `off`, or `<rate>[/s|/min][,<burst>]` (`100,1000`: 100 per second, bursts of
 * 1,000; `20/min`: 20 per minute, bursts of 20). The burst defaults to one period's worth.
 */
export const rateSchema = z.string().transform((s, ctx) => {
  const t = s.trim().toLowerCase();
  if (t === 'off') return null;
  const m = /^(\d+(?:\.\d+)?)(?:\/(s|sec|second|m|min|minute))?(?:,(\d+))?$/.exec(t.replaceAll(' ', ''));
  const amount = Number(m?.[1]);
  const perMinute = m?.[2] !== undefined && m[2].startsWith('m');
  const burst = m?.[3] === undefined ? Math.max(1, Math.ceil(amount)) : Number(m[3]);
  if (!m || !(amount > 0) || !Number.isFinite(amount) || !(burst >= 1) || !Number.isSafeInteger(burst)) {
    ctx.addIssue({ code: 'custom', message: 'must be "off" or <rate>[/s|/min][,<burst>] with a rate above 0, e.g. 100,1000 or 20/min' });
    return z.NEVER;
  }
  return { perSecond: perMinute ? amount / 60 : amount, burst };
});

/** Bounds of FAROL_HUB_SYNC=interval:<ms>: an OS crash or power loss may lose up to that much acknowledged data. */
export const HUB_SYNC_INTERVAL_MS = { min: 1, max: 60_000 } as const;

/**
 * When the local hub answers a publish: `always` once it is on disk (fdatasync per group commit),
 * or `interval:<ms>` once it reached the OS, with an fdatasync every `<ms>`.
 */
export const hubSyncSchema = z.string().transform((s, ctx) => {
  const t = s.trim().toLowerCase();
  if (t === 'always') return { mode: 'always' as const };
  const m = /^interval:(\d{1,5})(?:ms)?$/.exec(t);
  const ms = Number(m?.[1]);
  if (!m || ms < HUB_SYNC_INTERVAL_MS.min || ms > HUB_SYNC_INTERVAL_MS.max) {
    ctx.addIssue({ code: 'custom', message: `must be "always" or "interval:<ms>" with <ms> from ${HUB_SYNC_INTERVAL_MS.min} to ${HUB_SYNC_INTERVAL_MS.max}, e.g. interval:100` });
    return z.NEVER;
  }
  return { mode: 'interval' as const, intervalMs: ms };
});
export type HubSync = z.output<typeof hubSyncSchema>;

const LOOPBACK_HOSTS = new Set(['localhost', '::1', '[::1]']);

/** Whether a listen address is reachable from this machine only. */
export function isLoopbackHost(host: string): boolean {
  return LOOPBACK_HOSTS.has(host.toLowerCase()) || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

/** The most collector threads one process runs (FAROL_COLLECTOR_THREADS). */
export const MAX_COLLECTOR_THREADS = 256;

/**
 * The cores this process may use: `os.availableParallelism()` (the CPU affinity), lowered to a
 * cgroup v2 CPU quota when there is one (`cpu.max`, as a container's CPU limit sets it): Node
 * counts the host's cores in a container, and a thread per host core would only add memory.
 */
export function availableCores(cpuMax = '/sys/fs/cgroup/cpu.max'): number {
  const cores = availableParallelism();
  let text: string;
  try {
    text = readFileSync(cpuMax, 'utf8');
  } catch {
    return cores;
  }
  const m = /^(\d+) (\d+)\s*$/.exec(text);
  if (m === null) return cores; // `max <period>`: no quota
  const quota = Number(m[1]) / Number(m[2]);
  return quota > 0 ? Math.max(1, Math.min(cores, Math.ceil(quota))) : cores;
}

const port = z.coerce.number().int().min(0).max(65535);
const positiveInt = z.coerce.number().int().positive();

/** How often a processor reloads the site registrations (processor/processor.ts). */
export const PROCESSOR_SITE_REFRESH_MS = 2_000;
/** What FAROL_SITE_DELETE_GRACE_MS allows past the longest reload: a write begun just before it. */
const SITE_DELETE_MARGIN_MS = 1_000;

/** Body bytes held in memory across all connections when FAROL_MAX_BODY_MEMORY is not set (64 MiB). */
export const DEFAULT_MAX_BODY_MEMORY = 64 * 1024 * 1024;

export const configSchema = z.object({
  FAROL_PORT: port.default(8080),
  FAROL_HOST: z.string().min(1).default('127.0.0.1'),
  /** `farol collector`: threads each serving the port (SO_REUSEPORT) with their own enrichment; default the machine's cores. */
  FAROL_COLLECTOR_THREADS: positiveInt.max(MAX_COLLECTOR_THREADS).default(() => Math.min(MAX_COLLECTOR_THREADS, availableCores())),
  /**
   * `farol start`: how much lower the CPU priority (nice) of every thread but ingest's is, 0–19;
   * 0 leaves them as they are (lib/thread-priority.ts).
   */
  FAROL_START_NICE: z.coerce.number().int().min(0).max(19).default(10),
  /** Port of the separate `/metrics` listener (every process kind); unset = no metrics endpoint. */
  FAROL_METRICS_PORT: port.optional(),
  FAROL_METRICS_HOST: z.string().min(1).default('127.0.0.1'),
  FAROL_DATA_DIR: z.string().min(1).default('./data'),
  FAROL_CLICKHOUSE_URL: z.url({ protocol: /^https?$/ }).optional(),
  FAROL_CLICKHOUSE_USER: z.string().default('default'),
  FAROL_CLICKHOUSE_PASSWORD: z.string().default(''),
  FAROL_CLICKHOUSE_DATABASE: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be a plain identifier').default('farol'),
  FAROL_CLICKHOUSE_CLUSTER: z.string().regex(/^[A-Za-z_][A-Za-z0-9_.-]*$/, 'must be a plain cluster name').optional(),
  FAROL_HUB: z.enum(['local', 'eventhubs']).default('local'),
  FAROL_HUB_PARTITIONS: positiveInt.max(1024).default(4),
  FAROL_HUB_RETENTION_HOURS: positiveInt.default(168),
  FAROL_HUB_RETENTION_BYTES: positiveInt.default(10 * 1024 ** 3),
  FAROL_EVENTHUBS_CONNECTION_STRING: z.string().optional(),
  FAROL_EVENTHUBS_NAME: z.string().optional(),
  FAROL_EVENTHUBS_CONSUMER_GROUP: z.string().default('$Default'),
  FAROL_CHECKPOINT_CONNECTION_STRING: z.string().optional(),
  FAROL_CHECKPOINT_CONTAINER: z
    .string()
    .regex(/^[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]$/, 'must be a blob container name: 3-63 lower-case letters, digits and single hyphens')
    .default('farol-checkpoints'),
  /** How processors share partitions: `greedy` claims a fair share at once, `balanced` one per interval. */
  FAROL_EVENTHUBS_LOAD_BALANCING: z.enum(['greedy', 'balanced']).default('greedy'),
  /** How often a processor renews its partition claims and looks for partitions to claim. */
  FAROL_EVENTHUBS_UPDATE_INTERVAL_MS: positiveInt.min(100).default(2_000),
  /** A claim not renewed for this long is taken by another processor (a dead one's partitions). */
  FAROL_EVENTHUBS_OWNERSHIP_EXPIRY_MS: positiveInt.min(1_000).default(10_000),
  /** Timeout of one Event Hubs send attempt; a failed send spools the events. */
  FAROL_EVENTHUBS_SEND_TIMEOUT_MS: positiveInt.default(5_000),
  /** Bound of the collector's on-disk spool (`FAROL_DATA_DIR/spool`) while Event Hubs is unavailable. */
  FAROL_SPOOL_MAX_BYTES: positiveInt.default(1024 ** 3),
  /** Local hub quota: past it ingest answers 503 (unset: half the disk space free at start, plus what the hub holds). */
  FAROL_HUB_MAX_BYTES: positiveInt.optional(),
  /** Local hub: `always` (a 202 waits for fdatasync) or `interval:<ms>` (a 202 once written to the OS; fdatasync every <ms>). */
  FAROL_HUB_SYNC: hubSyncSchema.default({ mode: 'always' }),
  FAROL_GEOIP_DB: z.string().optional(),
  FAROL_TRUST_PROXY: trustProxySchema.default({ kind: 'hops', hops: 0 }),
  FAROL_RETENTION_DAYS: positiveInt.default(395),
  FAROL_LOG_LEVEL: z.enum(['debug', 'info', 'warn', 'error', 'silent']).default('info'),
  /** The first owner's API token on an empty install (automated deploys); unset = random, printed once. */
  FAROL_BOOTSTRAP_TOKEN: z
    .string()
    .min(20, 'must be at least 20 characters')
    .max(256, 'must be at most 256 characters')
    .regex(/^\S+$/, 'must not contain spaces')
    .optional(),
  FAROL_MAX_BODY_BYTES: positiveInt.default(64 * 1024),
  FAROL_MAX_BATCH_BYTES: positiveInt.default(1024 * 1024),
  FAROL_BODY_TIMEOUT_MS: positiveInt.default(10_000),
  /** Events per second (and burst) one client may send a site, keyed on the salted visitor id. */
  FAROL_RATE_CLIENT: rateSchema.default({ perSecond: 100, burst: 1000 }),
  /** Events per second (and burst) one site may receive; off unless set. */
  FAROL_RATE_SITE: rateSchema.default(null),
  /** Failed API authentications per client (a keyed hash of its address, in memory only). */
  FAROL_RATE_AUTH: rateSchema.default({ perSecond: 20 / 60, burst: 20 }),
  /** Request body bytes held in memory across all connections; past it a request is answered 503. */
  FAROL_MAX_BODY_MEMORY: positiveInt.default(DEFAULT_MAX_BODY_MEMORY),
  /** Comma list of site domains the collector accepts; unset accepts any (until sites exist). */
  FAROL_SITES: z.string().optional(),
  /** Days a deleted site's domain stays reserved to its account (0: free at once). */
  FAROL_DOMAIN_RESERVATION_DAYS: z.coerce.number().int().min(0).max(3650).default(30),
  /** Time limit of each ClickHouse statement an API request runs (below the HTTP store's 60 s request timeout). */
  FAROL_API_QUERY_TIMEOUT_MS: positiveInt.min(10).max(55_000).default(10_000),
  /** Memory limit of each ClickHouse statement an API request runs. */
  FAROL_API_QUERY_MAX_MEMORY_BYTES: positiveInt.min(16 * 1024 ** 2).default(1024 ** 3),
  /** API requests reading ClickHouse one token may have running at once. */
  FAROL_API_QUERIES_PER_TOKEN: positiveInt.max(1000).default(4),
  /** Further requests of one token that wait for a slot (at most the query timeout); past them 429. */
  FAROL_API_QUERY_QUEUE_PER_TOKEN: z.coerce.number().int().min(0).max(10_000).default(16),
  /** PEM certificate (chain) file: serve HTTPS directly; re-read on SIGHUP. Set with FAROL_TLS_KEY. */
  FAROL_TLS_CERT: z.string().optional(),
  /** PEM private key file of FAROL_TLS_CERT (unencrypted; keep it readable by the service user only). */
  FAROL_TLS_KEY: z.string().optional(),
  // ---- sign-in (#14) ----
  /** The URL people open (scheme, host, port, no path): OpenID Connect's redirect URI; an https one marks cookies Secure. */
  FAROL_PUBLIC_URL: z
    .string()
    .refine((u) => URL.canParse(u) && /^https?:$/.test(new URL(u).protocol) && new URL(u).pathname === '/' && new URL(u).search === '', 'must be an http(s) URL with no path (e.g. https://stats.example.com)')
    .transform((u) => new URL(u).origin)
    .optional(),
  /** OpenID Connect issuer URL (its /.well-known/openid-configuration is read at start). */
  FAROL_OIDC_ISSUER: z.url({ protocol: /^https?$/ }).optional(),
  FAROL_OIDC_CLIENT_ID: z.string().min(1).max(512).optional(),
  FAROL_OIDC_CLIENT_SECRET: z.string().min(1).max(4096).optional(),
  /** A browser session ends after this long without a request. */
  FAROL_SESSION_IDLE_MINUTES: positiveInt.max(60 * 24 * 30).default(60 * 12),
  /** A browser session ends this long after sign-in, however active. */
  FAROL_SESSION_MAX_HOURS: positiveInt.max(24 * 90).default(24 * 7),
  /** Failed sign-ins per account and per client (a keyed hash of its address, in memory only). */
  FAROL_RATE_SIGNIN: rateSchema.default({ perSecond: 1 / 60, burst: 10 }),
  /**
   * Mail server for password-reset links (`smtp://user:password@host:587` with STARTTLS when the
   * server offers it, or `smtps://…:465`); unset: reset links are printed by `farol members reset`.
   */
  FAROL_SMTP_URL: z
    .string()
    .max(2048)
    .refine((u) => URL.canParse(u) && /^smtps?:$/.test(new URL(u).protocol) && new URL(u).hostname !== '', 'must be an smtp:// or smtps:// URL with a host (e.g. smtps://user:password@mail.example.com)')
    .optional(),
  /** The sender of reset mail: an address (`stats@example.com`). Required with FAROL_SMTP_URL. */
  FAROL_SMTP_FROM: z.string().trim().max(254).pipe(z.email()).optional(),
  /** Days the audit trail keeps a record. */
  FAROL_AUDIT_RETENTION_DAYS: positiveInt.max(3650).default(365),
  /** Daily backups of the embedded store go in a folder per backup here (`farol backup`); unset: none. */
  FAROL_BACKUP_DIR: z.string().min(1).optional(),
  /** How many of the newest complete daily backups are kept in FAROL_BACKUP_DIR. */
  FAROL_BACKUP_KEEP: positiveInt.max(1000).default(7),
  /** Longest wait between retries of a failed ClickHouse write (the wait doubles from 100 ms up to it). */
  FAROL_PROCESSOR_RETRY_MAX_MS: positiveInt.min(100).max(600_000).default(30_000),
  /**
   * A partition's micro-batch is written once its first record has waited this long, or once it
   * holds FAROL_PROCESSOR_FLUSH_RECORDS records: freshness against the engine's fixed cost per
   * insert (every insert creates new parts in each table it reaches).
   */
  FAROL_PROCESSOR_FLUSH_MS: positiveInt.min(50).max(60_000).default(1_000),
  /** See FAROL_PROCESSOR_FLUSH_MS. */
  // At most 100,000: a partition buffers up to 5x this many records (~0.5 KB each) in memory.
  FAROL_PROCESSOR_FLUSH_RECORDS: positiveInt.min(100).max(100_000).default(10_000),
  /** On SIGTERM, how long a processor's partitions get to write and checkpoint what they hold before giving up (exit 1). */
  FAROL_DRAIN_TIMEOUT_MS: positiveInt.min(100).max(600_000).default(15_000),
  /** How often a collector reloads the registered sites from the store (a local change through `farol start`'s API reloads at once). */
  FAROL_SITES_REFRESH_MS: positiveInt.min(100).max(600_000).default(5_000),
  /**
   * When processors or collectors may run in other processes, how long deleting a site waits
   * between marking it deleted and deleting its data: longer than their reloads (processors'
   * registrations every 2 s, plus a write begun before; collectors' sites every
   * FAROL_SITES_REFRESH_MS), so that none still writes or stamps the old registration.
   */
  FAROL_SITE_DELETE_GRACE_MS: positiveInt.max(600_000).default(6_000),
}).superRefine((c, ctx) => {
  if ((c.FAROL_TLS_CERT === undefined) !== (c.FAROL_TLS_KEY === undefined)) {
    const missing = c.FAROL_TLS_CERT === undefined ? 'FAROL_TLS_CERT' : 'FAROL_TLS_KEY';
    ctx.addIssue({ code: 'custom', path: [missing], message: 'FAROL_TLS_CERT and FAROL_TLS_KEY are set together (both or neither)' });
  }
  if (c.FAROL_HUB === 'eventhubs') {
    for (const key of ['FAROL_EVENTHUBS_CONNECTION_STRING', 'FAROL_EVENTHUBS_NAME'] as const) {
      if (!c[key]) ctx.addIssue({ code: 'custom', path: [key], message: 'required when FAROL_HUB=eventhubs' });
    }
  }
  // A hop count believes X-Forwarded-For from every peer: on an address others can reach, anyone
  // could forge their client address. Only a loopback listener has nothing but the local proxy in front.
  if (c.FAROL_TRUST_PROXY.kind === 'hops' && c.FAROL_TRUST_PROXY.hops > 0 && !isLoopbackHost(c.FAROL_HOST)) {
    ctx.addIssue({
      code: 'custom',
      path: ['FAROL_TRUST_PROXY'],
      message: `a hop count trusts X-Forwarded-For from any peer, and FAROL_HOST=${c.FAROL_HOST} is reachable by others: list the proxies' addresses instead (e.g. FAROL_TRUST_PROXY=10.0.0.0/8) or listen on 127.0.0.1`,
    });
  }
  const oidc = ['FAROL_OIDC_ISSUER', 'FAROL_OIDC_CLIENT_ID', 'FAROL_OIDC_CLIENT_SECRET'] as const;
  if (oidc.some((k) => c[k] !== undefined)) {
    for (const key of oidc) if (c[key] === undefined) ctx.addIssue({ code: 'custom', path: [key], message: 'required with the other FAROL_OIDC_ settings' });
    if (c.FAROL_PUBLIC_URL === undefined) ctx.addIssue({ code: 'custom', path: ['FAROL_PUBLIC_URL'], message: 'required with FAROL_OIDC_ISSUER (the redirect URI is FAROL_PUBLIC_URL/api/v1/auth/oidc/callback)' });
  }
  if ((c.FAROL_SMTP_URL === undefined) !== (c.FAROL_SMTP_FROM === undefined)) {
    const missing = c.FAROL_SMTP_URL === undefined ? 'FAROL_SMTP_URL' : 'FAROL_SMTP_FROM';
    ctx.addIssue({ code: 'custom', path: [missing], message: 'FAROL_SMTP_URL and FAROL_SMTP_FROM are set together (both or neither)' });
  }
  if (c.FAROL_SMTP_URL !== undefined && c.FAROL_PUBLIC_URL === undefined) {
    ctx.addIssue({ code: 'custom', path: ['FAROL_PUBLIC_URL'], message: 'required with FAROL_SMTP_URL (a mailed reset link is FAROL_PUBLIC_URL/#reset=…)' });
  }
  if (c.FAROL_SITE_DELETE_GRACE_MS < Math.max(c.FAROL_SITES_REFRESH_MS, PROCESSOR_SITE_REFRESH_MS) + SITE_DELETE_MARGIN_MS) {
    ctx.addIssue({
      code: 'custom',
      path: ['FAROL_SITE_DELETE_GRACE_MS'],
      message: `must be at least ${SITE_DELETE_MARGIN_MS} ms longer than FAROL_SITES_REFRESH_MS (${c.FAROL_SITES_REFRESH_MS}) and the processors' ${PROCESSOR_SITE_REFRESH_MS} ms reload of the sites`,
    });
  }
  if (c.FAROL_SESSION_IDLE_MINUTES > c.FAROL_SESSION_MAX_HOURS * 60) {
    ctx.addIssue({ code: 'custom', path: ['FAROL_SESSION_IDLE_MINUTES'], message: 'must not exceed FAROL_SESSION_MAX_HOURS' });
  }
  if (c.FAROL_MAX_BODY_MEMORY < Math.max(c.FAROL_MAX_BODY_BYTES, c.FAROL_MAX_BATCH_BYTES)) {
    ctx.addIssue({ code: 'custom', path: ['FAROL_MAX_BODY_MEMORY'], message: 'must be at least FAROL_MAX_BODY_BYTES and FAROL_MAX_BATCH_BYTES (one largest body must fit)' });
  }
  if (c.FAROL_EVENTHUBS_OWNERSHIP_EXPIRY_MS < 2 * c.FAROL_EVENTHUBS_UPDATE_INTERVAL_MS) {
    ctx.addIssue({
      code: 'custom',
      path: ['FAROL_EVENTHUBS_OWNERSHIP_EXPIRY_MS'],
      message: 'must be at least twice FAROL_EVENTHUBS_UPDATE_INTERVAL_MS (claims are renewed once per interval)',
    });
  }
});

export type Config = z.output<typeof configSchema>;

export class ConfigError extends Error {}

/**
 * Reads a command line with node:util's parseArgs: settings as flags (`--data-dir x` →
 * FAROL_DATA_DIR=x, `--port=1` → FAROL_PORT=1), the command's own string flags (`own`, which win
 * over a setting of the same name: an admin command's `--sites` is not FAROL_SITES), and the
 * positional arguments (`rest`). An unknown flag, or a flag without its value, is a ConfigError.
 */
export function flagsToEnv(
  args: string[],
  own: readonly string[] = [],
): { env: Record<string, string>; flags: Record<string, string>; rest: string[] } {
  const settings = new Map(Object.keys(configSchema.shape).map((key) => [key.slice('FAROL_'.length).toLowerCase().replaceAll('_', '-'), key]));
  for (const name of own) settings.delete(name);
  const options = Object.fromEntries([...settings.keys(), ...own].map((name) => [name, { type: 'string' as const }]));
  // Not strict: the messages below name the flag and its variable; a value is the next argument
  // whatever it looks like (`--name --x` names it "--x"), as before parseArgs.
  const { tokens } = parseArgs({ args, options, strict: false, allowPositionals: true, tokens: true });
  const env: Record<string, string> = {};
  const flags: Record<string, string> = {};
  const rest: string[] = [];
  for (const token of tokens) {
    if (token.kind === 'positional') rest.push(token.value);
    if (token.kind !== 'option') continue;
    const key = settings.get(token.name);
    if (key === undefined && !own.includes(token.name)) throw new ConfigError(`unknown flag ${token.rawName} (farol help lists them)`);
    if (token.value === undefined) throw new ConfigError(`${token.rawName}${key === undefined ? '' : ` (${key})`} needs a value`);
    if (key === undefined) flags[token.name] = token.value;
    else env[key] = token.value;
  }
  return { env, flags, rest };
}

/**
 * What a processor needs beyond the common configuration: with Event Hubs, blob storage for
 * checkpoints, partition ownership and the processor state. Throws ConfigError naming the variable.
 */
export function checkProcessorConfig(config: Config): void {
  if (config.FAROL_HUB === 'eventhubs' && !config.FAROL_CHECKPOINT_CONNECTION_STRING) {
    throw new ConfigError(
      'invalid configuration:\n  FAROL_CHECKPOINT_CONNECTION_STRING: required when FAROL_HUB=eventhubs ' +
        '(an Azure Storage connection string: processors keep checkpoints, partition ownership and their state there)',
    );
  }
}

/** Parses configuration from an environment; throws ConfigError naming each bad variable. */
export function loadConfig(env: Record<string, string | undefined>): Config {
  const picked: Record<string, string> = {};
  for (const key of Object.keys(configSchema.shape)) {
    const v = env[key];
    if (v !== undefined && v !== '') picked[key] = v;
  }
  const parsed = configSchema.safeParse(picked);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => {
      const name = String(i.path[0] ?? 'config');
      return `${name}${echo(name, picked[name])}: ${hideValue(name, picked[name], i.message)}`;
    });
    throw new ConfigError(`invalid configuration:\n  ${lines.join('\n  ')}`);
  }
  return parsed.data;
}

/**
 * How a bad value is shown in an error: never for a secret variable, else with any credentials
 * (a URL's `user:password@`, a connection string's keys) cut out, and at most 100 characters. A
 * value still holding an `@` (a malformed URL whose user info the redaction cannot find) is hidden.
 */
function echo(name: string, given: string | undefined): string {
  if (given === undefined) return '';
  const shown = redactCredentials(given);
  if (isSecretVariable(name) || shown.replaceAll(`${REDACTED}@`, '').includes('@')) return ' (value hidden)';
  return `=${JSON.stringify(shown.length > 100 ? `${shown.slice(0, 100)}…` : shown)}`;
}

/** An issue message with a secret variable's value taken out (a custom message may quote it). */
function hideValue(name: string, given: string | undefined, message: string): string {
  if (given === undefined || given === '') return redactCredentials(message);
  return redactCredentials(isSecretVariable(name) ? message.split(given).join(REDACTED) : message);
}
