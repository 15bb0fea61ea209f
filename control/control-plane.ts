import { AsyncLocalStorage } from 'node:async_hooks';
import { createHash, randomBytes } from 'node:crypto';
import { z } from 'zod';
import type { Config } from '../schemas/config.ts';
import { ApiError } from '../schemas/errors.ts';
import { firstIssue } from '../schemas/issues.ts';
import { isTimeZone } from '../schemas/time-zone.ts';
import type { Store } from '../store/store.ts';
import { experimentRepository } from './experiments.ts';
import { redirectHostsRepository } from './redirect-hosts.ts';
import { keepsWayIn, roles, wayIn, type Principal, type Role, type Site, type WayIn } from './model.ts';
import { KnownSet } from './known-set.ts';
import { DEFAULT_SESSION_POLICY, hashSecret, isSecretShaped, People, type SessionPolicy } from './people.ts';
import type { ControlReader, SiteRegistration } from './reader.ts';

/**
 * The control plane over the Store: accounts, sites, members, API tokens and
 * goals, in the ReplacingMergeTree(updated_at, deleted) tables of schemas/migrations. A write is a
 * new row version; reads use FINAL and `deleted = 0`.
 *
 * This layer validates input (zod) and keeps the data consistent; it does not decide who may do
 * what: api/auth.ts and the admin routes do, and the CLI is an operator with the data dir.
 *
 * `authenticate`, `site` and `goals` are on every API request, so their answers are cached in
 * memory for `cacheTtlMs` (5 s by default). A local write clears the cache at once; a write by
 * another process (the CLI on a ClickHouse server, another `farol api`) is seen within the TTL,
 * which bounds how long a revoked token keeps working.
 *
 * Member and token writes of one account are serialised in this process ({@link ControlPlane.serial};
 * the admin routes hold the same lock while they authorize, on an uncached principal). ClickHouse
 * has no transactions, so a change that could take away the account's way in (model.ts
 * `keepsWayIn`: demoting or removing an account-wide owner, revoking such an owner's token) is
 * also checked after it is written, on a fresh read: if a concurrent change in another process
 * (a second `farol api` or the CLI on the same ClickHouse server) made the two together break the
 * invariant, it is undone and answered 409. Of two such changes racing, at least one sees the
 * other and is undone; at worst both are, and nothing changed. The limit: between such a write
 * and its undo the account may briefly have no owner, and a process killed right there leaves it
 * so (`farol members add <name> --role owner` and `farol tokens create` repair it).
 * A token or domain that does not exist is answered from a snapshot of all live ones
 * (known-set.ts), so random ones cost no query.
 */

// ---------------------------------------------------------------------------------------------
// Input schemas (shared by the admin endpoints and the CLI).

// A DNS hostname: dot-separated labels of letters, digits and inner hyphens. `localhost` is one.
const hostname = /^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$/;

export const domainSchema = z
  .string()
  .trim()
  .toLowerCase()
  .max(253)
  .regex(hostname, 'must be a hostname such as example.com (letters, digits, hyphens and dots)');

export const timezoneSchema = z.string().max(64).refine(isTimeZone, 'must be an IANA time zone such as Europe/Lisbon or UTC');

const nameSchema = z.string().trim().min(1).max(100);

export const siteInputSchema = z.strictObject({
  domain: domainSchema,
  timezone: timezoneSchema.default('UTC'),
  respect_dnt: z.boolean().default(false),
});

export const sitePatchSchema = z.strictObject({
  timezone: timezoneSchema.optional(),
  respect_dnt: z.boolean().optional(),
});

export const memberInputSchema = z.strictObject({
  name: nameSchema,
  role: z.enum(roles),
  /** [] = every site of the account. */
  sites: z.array(domainSchema).max(1000).default([]),
});

export const memberPatchSchema = z.strictObject({
  name: nameSchema.optional(),
  role: z.enum(roles).optional(),
  sites: z.array(domainSchema).max(1000).optional(),
});

export const tokenInputSchema = z.strictObject({
  member_id: z.string().min(1).max(64).optional(),
  name: nameSchema.default('token'),
});

export const goalInputSchema = z.strictObject({
  name: z.string().trim().min(1).max(120),
});

export const accountInputSchema = z.strictObject({ name: nameSchema });

/** Parses `input` or throws API_BAD_REQUEST naming the first bad field. */
export function parseInput<S extends z.ZodType>(schema: S, input: unknown, what = 'body'): z.output<S> {
  const r = schema.safeParse(input);
  if (r.success) return r.data;
  const { field, message } = firstIssue(r.error, what);
  throw new ApiError('API_BAD_REQUEST', `${field}: ${message}`, field);
}

// ---------------------------------------------------------------------------------------------
// Records.

export interface Account {
  readonly id: string;
  readonly name: string;
  readonly createdAt: string;
}

export interface Member {
  readonly id: string;
  readonly accountId: string;
  readonly name: string;
  readonly role: Role;
  readonly sites: readonly string[];
  readonly createdAt: string;
}

export interface TokenInfo {
  /** Display prefix (`farol_` and a few characters): tells tokens apart, useless to log in. */
  readonly prefix: string;
  readonly hash: string;
  readonly memberId: string;
  readonly accountId: string;
  readonly name: string;
  readonly createdAt: string;
}

export interface IssuedToken extends TokenInfo {
  /** The secret, shown once: only its SHA-256 is stored. */
  readonly token: string;
}

export interface Goal {
  readonly site: string;
  readonly name: string;
  readonly createdAt: string;
}

export interface BootstrapResult {
  accountId: string;
  ownerId: string;
  /** The owner token issued by this run (undefined when bootstrap was already complete). */
  issued?: { token: string; prefix: string; fromEnv: boolean };
  /** Sites this run registered. */
  sitesAdded: string[];
}

export interface ControlPlaneOptions {
  /** Clock in epoch ms (tests move it to expire the cache). */
  now?: () => number;
  /** How long authenticate/site/goals answers are reused (default 5000 ms; 0 = no cache). */
  cacheTtlMs?: number;
  /** FAROL_CLICKHOUSE_CLUSTER: deleting a site's data then runs ON CLUSTER on the local tables. */
  cluster?: string | undefined;
  /** How long a deleted site's domain stays reserved to its account (FAROL_DOMAIN_RESERVATION_DAYS; default 30 days, 0 = not at all). */
  reservationMs?: number;
  /**
   * How long deleting a site waits, between marking it deleted and deleting its data, for
   * processors in other processes to learn of it (default 0: none run elsewhere);
   * FAROL_SITE_DELETE_GRACE_MS (schemas/config.ts) where they may.
   */
  deleteGraceMs?: number;
  /** Browser sessions' idle and absolute lifetimes (FAROL_SESSION_IDLE_MINUTES, FAROL_SESSION_MAX_HOURS). */
  sessionPolicy?: SessionPolicy;
}

/** The control plane's options from the configuration. */
export function controlPlaneOptions(config: Config): ControlPlaneOptions {
  return {
    cluster: config.FAROL_CLICKHOUSE_CLUSTER,
    reservationMs: config.FAROL_DOMAIN_RESERVATION_DAYS * 86_400_000,
    sessionPolicy: { idleMs: config.FAROL_SESSION_IDLE_MINUTES * 60_000, absoluteMs: config.FAROL_SESSION_MAX_HOURS * 3_600_000 },
  };
}

/** A deleted site's domain, reserved to the account that held it. */
export interface Reservation {
  readonly domain: string;
  readonly accountId: string;
  /** ISO 8601: when another account may register the domain. */
  readonly until: string;
}

/** Tables holding a site's analytics: raw events and sessions, every rollup, closed salt days. */
const SITE_DATA_TABLES = [
  'events',
  'sessions',
  'rollup_hourly',
  'rollup_daily',
  'sessions_hourly',
  'sessions_daily',
  'dead_letters',
  'salt_day_visitors',
  'salt_day_segments',
  'salt_day_provisional',
  'salt_day_closes',
] as const;

/** Prefix of every token Farol issues. */
export const TOKEN_PREFIX = 'farol_';

/** Hex SHA-256 of a token: what the tokens table stores. */
export function hashToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

/** A new token: `farol_` + 32 random bytes, base64url. */
export function newToken(): string {
  return TOKEN_PREFIX + randomBytes(32).toString('base64url');
}

/** What a listing shows of a token. Farol tokens keep 6 random characters; others (FAROL_BOOTSTRAP_TOKEN) 4. */
export function displayPrefix(token: string): string {
  return token.startsWith(TOKEN_PREFIX) ? token.slice(0, TOKEN_PREFIX.length + 6) : token.slice(0, 4);
}

function newId(kind: 'acc' | 'mem'): string {
  return `${kind}_${randomBytes(9).toString('base64url')}`;
}

/** ClickHouse `DateTime64(3)` text (UTC) for epoch ms. */
function chTime(ms: number): string {
  return new Date(ms).toISOString().slice(0, 23).replace('T', ' ');
}

/** ClickHouse DateTime64 text → ISO 8601. */
function isoTime(ch: string): string {
  return `${ch.replace(' ', 'T')}Z`;
}

interface SiteRow {
  domain: string;
  account_id: string;
  timezone: string;
  respect_dnt: number;
  created_at: string;
}

interface MemberRow {
  id: string;
  account_id: string;
  name: string;
  role: string;
  sites: string[];
  created_at: string;
}

interface TokenRow {
  hash: string;
  member_id: string;
  account_id: string;
  name: string;
  prefix: string;
  created_at: string;
}

function toSite(r: SiteRow): Site & { createdAt: string } {
  return { domain: r.domain, accountId: r.account_id, timezone: r.timezone, respectDnt: Number(r.respect_dnt) === 1, createdAt: isoTime(r.created_at) };
}

function toMember(r: MemberRow): Member {
  return { id: r.id, accountId: r.account_id, name: r.name, role: r.role as Role, sites: r.sites, createdAt: isoTime(r.created_at) };
}

function toToken(r: TokenRow): TokenInfo {
  return { prefix: r.prefix, hash: r.hash, memberId: r.member_id, accountId: r.account_id, name: r.name, createdAt: isoTime(r.created_at) };
}

const memberNotFound = (field: string): ApiError => new ApiError('API_NOT_FOUND', 'Member not found', field);

function isAccountWideOwner(r: MemberRow): boolean {
  return r.role === 'owner' && r.sites.length === 0;
}

/** 409 naming what a change would take away from the account (model.ts `keepsWayIn`). */
function refuseLoss(loss: 'ok' | 'owner' | 'token'): void {
  if (loss === 'owner') throw new ApiError('API_CONFLICT', 'An account keeps at least one account-wide owner', 'role');
  if (loss === 'token') throw new ApiError('API_CONFLICT', 'An account keeps at least one account-wide owner with a live token: issue another first', 'token');
}

const MAX_CACHE_ENTRIES = 10_000;

/** A small TTL cache; null answers are cached too (an unknown token costs one lookup per TTL). */
class TtlCache<V> {
  private readonly entries = new Map<string, { value: V; expires: number }>();
  constructor(
    private readonly ttlMs: number,
    private readonly now: () => number,
  ) {}

  async get(key: string, load: () => Promise<V>): Promise<V> {
    if (this.ttlMs <= 0) return load();
    const hit = this.entries.get(key);
    const t = this.now();
    if (hit !== undefined && hit.expires > t) return hit.value;
    const value = await load();
    // Bounded: a flood of random tokens must not grow memory.
    if (this.entries.size >= MAX_CACHE_ENTRIES) this.entries.clear();
    this.entries.set(key, { value, expires: t + this.ttlMs });
    return value;
  }

  clear(): void {
    this.entries.clear();
  }

  /** Forgets the answers `which` picks. */
  drop(which: (value: V) => boolean): void {
    for (const [k, e] of this.entries) if (which(e.value)) this.entries.delete(k);
  }
}

const SITE_COLUMNS = 'domain, account_id, timezone, respect_dnt, created_at';
const MEMBER_COLUMNS = 'id, account_id, name, role, sites, created_at';
const TOKEN_COLUMNS = 'hash, member_id, account_id, name, prefix, created_at';

/** The control plane: its read side ({@link ControlReader}) for the API and the collector, plus the admin operations. */
export class ControlPlane implements ControlReader {
  private readonly now: () => number;
  private readonly principals: TtlCache<Principal | null>;
  private readonly sitesCache: TtlCache<(Site & { createdAt: string }) | null>;
  private readonly goalsCache: TtlCache<readonly string[] | undefined>;
  /** Every live token hash and site domain: unknown ones are answered without a query. */
  private readonly knownTokens: KnownSet;
  private readonly knownSites: KnownSet;
  private readonly siteListeners = new Set<() => void | Promise<void>>();
  private lastStamp = 0;
  private readonly cluster: string | undefined;
  /** Per account: the tail of the queue of {@link serial} sections. */
  private readonly queues = new Map<string, Promise<void>>();
  /** The accounts whose lock the current async context holds (re-entrancy). */
  private readonly held = new AsyncLocalStorage<ReadonlySet<string>>();
  private readonly reservationMs: number;
  private readonly deleteGraceMs: number;
  /** People who sign in: identities, browser sessions, invitations, reset links, the audit trail. */
  readonly people: People;

  constructor(
    private readonly store: Store,
    opts: ControlPlaneOptions = {},
  ) {
    this.now = opts.now ?? Date.now;
    this.cluster = opts.cluster;
    this.reservationMs = opts.reservationMs ?? 30 * 86_400_000;
    this.deleteGraceMs = opts.deleteGraceMs ?? 0;
    const ttl = opts.cacheTtlMs ?? 5_000;
    this.principals = new TtlCache(ttl, this.now);
    this.sitesCache = new TtlCache(ttl, this.now);
    this.goalsCache = new TtlCache(ttl, this.now);
    this.knownTokens = new KnownSet(async () => (await store.query<{ hash: string }>('SELECT hash FROM tokens FINAL WHERE deleted = 0')).map((r) => r.hash), ttl, this.now);
    this.knownSites = new KnownSet(() => this.siteDomains(), ttl, this.now);
    this.people = new People(
      store,
      { now: () => this.now(), stamp: () => this.stamp(), write: async (table, row) => this.write(table, row), serial: async (a, fn) => this.serial(a, fn), forget: (a) => this.invalidateFor('browser_sessions', a) },
      opts.sessionPolicy ?? DEFAULT_SESSION_POLICY,
      ttl,
    );
  }

  /** The control plane's clock (epoch ms): TOTP codes and expiries are checked against it. */
  clock(): number {
    return this.now();
  }

  /** Calls `listener` after every local change to the sites (the collector refreshes its set). */
  onSitesChanged(listener: () => void | Promise<void>): () => void {
    this.siteListeners.add(listener);
    return () => this.siteListeners.delete(listener);
  }

  /** Forgets every cached answer (after a local write). */
  invalidate(): void {
    this.principals.clear();
    this.sitesCache.clear();
    this.goalsCache.clear();
    this.knownTokens.invalidate();
    this.knownSites.invalidate();
    // Undefined while the constructor runs.
    (this.people as People | undefined)?.invalidate();
  }

  /**
   * Runs `fn` alone among this process's writes to the account's members and tokens: sections of
   * one account run one after another, in call order. Re-entrant: a section may call methods that
   * take the same lock.
   */
  async serial<T>(accountId: string, fn: () => Promise<T>): Promise<T> {
    const mine = this.held.getStore();
    if (mine?.has(accountId)) return fn();
    const previous = this.queues.get(accountId) ?? Promise.resolve();
    let release = (): void => undefined;
    const done = new Promise<void>((resolve) => (release = resolve));
    const tail = previous.then(() => done);
    this.queues.set(accountId, tail);
    await previous;
    try {
      return await this.held.run(new Set([...(mine ?? []), accountId]), fn);
    } finally {
      release();
      if (this.queues.get(accountId) === tail) this.queues.delete(accountId);
    }
  }

  /** A strictly increasing `updated_at`, so two writes in one millisecond still order. */
  private stamp(): { ms: number; text: string } {
    const ms = Math.max(this.now(), this.lastStamp + 1);
    this.lastStamp = ms;
    return { ms, text: chTime(ms) };
  }

  private async write(table: string, row: Record<string, unknown>): Promise<void> {
    await this.store.insert(table, [row]);
    this.invalidateFor(table, typeof row.account_id === 'string' ? row.account_id : undefined);
  }

  /**
   * Forgets the cached answers a written row can change. A member, token or session row belongs to
   * one account: it changes the principals of that account only (and may make an unknown
   * credential known, so the cached "nobody" answers go too); the other accounts' principals stay
   * cached, so one busy account's writes do not send every other request back to the store.
   * Identities, invitations and reset links are never cached. Anything else forgets everything.
   */
  private invalidateFor(table: string, accountId: string | undefined): void {
    const principalsOf = (): void => this.principals.drop((p) => p === null || p.accountId === accountId);
    if (accountId === undefined) return this.invalidate();
    switch (table) {
      case 'members':
        return principalsOf();
      case 'tokens':
        this.knownTokens.invalidate();
        return principalsOf();
      case 'browser_sessions':
        this.people.invalidate();
        return principalsOf();
      case 'identities':
      case 'invitations':
      case 'reset_links':
        return;
      default:
        return this.invalidate();
    }
  }

  // -------------------------------------------------------------------------------------------
  // ControlReader

  async authenticate(token: string): Promise<Principal | null> {
    if (token.length < 16 || token.length > 256) return null;
    const hash = hashToken(token);
    if (!(await this.knownTokens.has(hash))) return null;
    return this.principals.get(hash, async () => this.principalOf(hash));
  }

  /** The member behind a browser session's cookie secret, or null when unknown, signed out or expired. */
  async authenticateSession(secret: string): Promise<Principal | null> {
    if (!isSecretShaped(secret)) return null;
    const hash = hashSecret(secret);
    // Cached like a token's principal: a sign-out or a member change here clears it at once.
    return this.principals.get(`session:${hash}`, async () => this.people.principal(hash, async (id) => this.grantOf(id)));
  }

  /** The principal behind the same token or session as stored now (no cache): what a write is authorized on. */
  async reauthenticate(p: Principal): Promise<Principal | null> {
    if (p.session !== undefined) return this.people.principal(p.tokenHash, async (id) => this.grantOf(id), false);
    return this.principalOf(p.tokenHash);
  }

  private async grantOf(memberId: string): Promise<{ accountId: string; role: Role; sites: readonly string[] } | null> {
    const m = await this.memberRow(memberId);
    return m === null ? null : { accountId: m.account_id, role: m.role as Role, sites: m.sites };
  }

  private async principalOf(hash: string): Promise<Principal | null> {
    const rows = await this.store.query<{ member_id: string; account_id: string; role: string; sites: string[] }>(
      // The token's live member of the token's account, looked up by the members' key (a join
      // would read every member).
      `SELECT id AS member_id, account_id, role, sites FROM members FINAL
       WHERE (id, account_id) IN (SELECT member_id, account_id FROM tokens FINAL WHERE hash = {hash:String} AND deleted = 0) AND deleted = 0
       LIMIT 1`,
      { hash },
    );
    const r = rows[0];
    if (r === undefined) return null;
    return { accountId: r.account_id, memberId: r.member_id, role: r.role as Role, sites: r.sites, tokenHash: hash };
  }

  async site(domain: string): Promise<(Site & { createdAt: string }) | null> {
    const d = domain.toLowerCase();
    if (d.length > 253) return null;
    if (!(await this.knownSites.has(d))) return null;
    return this.sitesCache.get(d, async () => {
      const rows = await this.store.query<SiteRow>(`SELECT ${SITE_COLUMNS} FROM sites FINAL WHERE domain = {d:String} AND deleted = 0`, { d });
      return rows[0] === undefined ? null : toSite(rows[0]);
    });
  }

  async goals(domain: string): Promise<readonly string[] | undefined> {
    const d = domain.toLowerCase();
    return this.goalsCache.get(d, async () => {
      const names = (await this.listGoals(d)).map((g) => g.name);
      return names.length === 0 ? undefined : names;
    });
  }

  /** Uncached: the collector keeps its own copy, reloaded every few seconds and after each local change. */
  async registeredSites(): Promise<SiteRegistration[]> {
    const rows = await this.store.query<{ domain: string; epoch: string | number }>(
      'SELECT domain, toUnixTimestamp64Milli(created_at) AS epoch FROM sites FINAL WHERE deleted = 0',
    );
    return rows.map((r) => ({ domain: r.domain, epoch: Number(r.epoch) }));
  }

  // -------------------------------------------------------------------------------------------
  // Accounts

  async createAccount(input: unknown): Promise<Account> {
    const { name } = parseInput(accountInputSchema, input);
    const id = newId('acc');
    const s = this.stamp();
    await this.write('accounts', { id, name, created_at: s.text, updated_at: s.text, deleted: 0 });
    return { id, name, createdAt: isoTime(s.text) };
  }

  async accounts(): Promise<Account[]> {
    const rows = await this.store.query<{ id: string; name: string; created_at: string }>(
      'SELECT id, name, created_at FROM accounts FINAL WHERE deleted = 0 ORDER BY created_at, id',
    );
    return rows.map((r) => ({ id: r.id, name: r.name, createdAt: isoTime(r.created_at) }));
  }

  async account(id: string): Promise<Account | null> {
    const rows = await this.store.query<{ id: string; name: string; created_at: string }>(
      'SELECT id, name, created_at FROM accounts FINAL WHERE id = {id:String} AND deleted = 0',
      { id },
    );
    const r = rows[0];
    return r === undefined ? null : { id: r.id, name: r.name, createdAt: isoTime(r.created_at) };
  }

  // -------------------------------------------------------------------------------------------
  // Sites

  /** Every live site domain (answers for unknown domains without a query). */
  async siteDomains(): Promise<string[]> {
    const rows = await this.store.query<{ domain: string }>('SELECT domain FROM sites FINAL WHERE deleted = 0');
    return rows.map((r) => r.domain);
  }

  /** The account's live sites, by domain. */
  async sites(accountId: string): Promise<Array<Site & { createdAt: string }>> {
    const rows = await this.store.query<SiteRow>(
      `SELECT ${SITE_COLUMNS} FROM sites FINAL WHERE account_id = {a:String} AND deleted = 0 ORDER BY domain`,
      { a: accountId },
    );
    return rows.map(toSite);
  }

  /** Registers a site; 409 when the domain is already registered (domains are global: the collector keys on them). */
  async addSite(accountId: string, input: unknown): Promise<Site & { createdAt: string }> {
    const v = parseInput(siteInputSchema, input);
    const existing = await this.uncachedSite(v.domain);
    if (existing !== null) throw new ApiError('API_CONFLICT', 'A site with this domain is already registered', 'domain');
    const held = await this.reservation(v.domain);
    if (held !== null && held.accountId !== accountId) {
      throw new ApiError('API_DOMAIN_RESERVED', `This domain was deleted recently and stays reserved to the account that held it until ${held.until}`, 'domain');
    }
    const s = this.stamp();
    const row = { domain: v.domain, account_id: accountId, timezone: v.timezone, respect_dnt: v.respect_dnt ? 1 : 0, created_at: s.text, updated_at: s.text, deleted: 0 };
    await this.write('sites', row);
    if (held !== null) await this.releaseReservation(v.domain);
    await this.sitesChanged();
    return toSite(row);
  }

  /** Changes a site's settings (the caller has checked it may). */
  async updateSite(domain: string, input: unknown): Promise<Site & { createdAt: string }> {
    const patch = parseInput(sitePatchSchema, input);
    const cur = await this.uncachedSiteRow(domain);
    if (cur === null) throw new ApiError('API_NOT_FOUND', 'Site not found', 'domain');
    const row = {
      ...cur,
      timezone: patch.timezone ?? cur.timezone,
      respect_dnt: patch.respect_dnt === undefined ? Number(cur.respect_dnt) : patch.respect_dnt ? 1 : 0,
      updated_at: this.stamp().text,
      deleted: 0,
    };
    await this.write('sites', row);
    await this.sitesChanged();
    return toSite(row);
  }

  /** Deletes a site (its goals go with it). */
  async deleteSite(domain: string): Promise<void> {
    const cur = await this.uncachedSiteRow(domain);
    if (cur === null) throw new ApiError('API_NOT_FOUND', 'Site not found', 'domain');
    // Reserved before the site row goes: from then on no other account may take the domain (and
    // with it the old tracker's beacons and config requests) until the grace period ends.
    if (this.reservationMs > 0) {
      const s = this.stamp();
      await this.write('domain_reservations', { domain: cur.domain, account_id: cur.account_id, until: chTime(this.now() + this.reservationMs), created_at: s.text, updated_at: s.text, deleted: 0 });
    }
    // The site goes first, so the collector stops taking its events; then everything that was
    // the site's: a domain registered again later (by any account) starts empty.
    await this.write('sites', { ...cur, updated_at: this.stamp().text, deleted: 1 });
    await this.sitesChanged();
    if (this.deleteGraceMs > 0) await new Promise((resolve) => setTimeout(resolve, this.deleteGraceMs));
    for (const g of await this.listGoals(cur.domain)) await this.deleteGoal(cur.domain, g.name);
    const experiments = experimentRepository(this.store, () => new Date(this.now()));
    for (const e of await experiments.list(cur.domain)) await experiments.remove(cur.domain, e.experiment.id);
    await redirectHostsRepository(this.store, () => new Date(this.now())).clear(cur.domain);
    for (const table of SITE_DATA_TABLES) {
      const name = this.cluster === undefined ? table : `${table}_local ON CLUSTER '${this.cluster.replaceAll("'", '')}'`;
      await this.store.exec(`ALTER TABLE ${name} DELETE WHERE site = {d:String} SETTINGS mutations_sync = 2`, { d: cur.domain });
    }
  }

  private async uncachedSiteRow(domain: string): Promise<SiteRow | null> {
    const rows = await this.store.query<SiteRow>(`SELECT ${SITE_COLUMNS} FROM sites FINAL WHERE domain = {d:String} AND deleted = 0`, {
      d: domain.toLowerCase(),
    });
    return rows[0] ?? null;
  }

  private async uncachedSite(domain: string): Promise<Site | null> {
    const r = await this.uncachedSiteRow(domain);
    return r === null ? null : toSite(r);
  }

  /** The reservation of a deleted domain, while it lasts; null when the domain is free. */
  async reservation(domain: string): Promise<Reservation | null> {
    const rows = await this.store.query<{ domain: string; account_id: string; until: string }>(
      'SELECT domain, account_id, until FROM domain_reservations FINAL WHERE domain = {d:String} AND deleted = 0',
      { d: domain.toLowerCase() },
    );
    const r = rows[0];
    if (r === undefined || Date.parse(isoTime(r.until)) <= this.now()) return null;
    return { domain: r.domain, accountId: r.account_id, until: isoTime(r.until) };
  }

  /** The account's reserved domains, while their reservations last. */
  async reservations(accountId: string): Promise<Reservation[]> {
    const rows = await this.store.query<{ domain: string; until: string }>(
      'SELECT domain, until FROM domain_reservations FINAL WHERE account_id = {a:String} AND deleted = 0 ORDER BY domain',
      { a: accountId },
    );
    return rows.filter((r) => Date.parse(isoTime(r.until)) > this.now()).map((r) => ({ domain: r.domain, accountId, until: isoTime(r.until) }));
  }

  /** Ends a reservation early (its account's owner, or the operator when `accountId` is undefined); 404 when none. */
  async releaseReservation(domain: string, accountId?: string): Promise<void> {
    const held = await this.reservation(domain);
    if (held === null || (accountId !== undefined && held.accountId !== accountId)) throw new ApiError('API_NOT_FOUND', 'Reservation not found', 'domain');
    const s = this.stamp();
    await this.write('domain_reservations', { domain: held.domain, account_id: held.accountId, until: chTime(Date.parse(held.until)), created_at: s.text, updated_at: s.text, deleted: 1 });
  }

  /** Runs the listeners and waits for them: a site added answers only once the collector takes it. */
  private async sitesChanged(): Promise<void> {
    await Promise.all([...this.siteListeners].map(async (l) => l()));
  }

  // -------------------------------------------------------------------------------------------
  // Goals

  async listGoals(domain: string): Promise<Goal[]> {
    const rows = await this.store.query<{ site: string; name: string; created_at: string }>(
      'SELECT site, name, created_at FROM goals FINAL WHERE site = {d:String} AND deleted = 0 ORDER BY name',
      { d: domain.toLowerCase() },
    );
    return rows.map((r) => ({ site: r.site, name: r.name, createdAt: isoTime(r.created_at) }));
  }

  /** Adds a goal (a custom event name or a pageview path); 409 if the site has it already. */
  async addGoal(domain: string, input: unknown): Promise<Goal> {
    const { name } = parseInput(goalInputSchema, input);
    const d = domain.toLowerCase();
    if ((await this.listGoals(d)).some((g) => g.name === name)) throw new ApiError('API_CONFLICT', 'The site has this goal already', 'name');
    const s = this.stamp();
    await this.write('goals', { site: d, name, created_at: s.text, updated_at: s.text, deleted: 0 });
    return { site: d, name, createdAt: isoTime(s.text) };
  }

  async deleteGoal(domain: string, name: string): Promise<void> {
    const d = domain.toLowerCase();
    const g = (await this.listGoals(d)).find((x) => x.name === name);
    if (g === undefined) throw new ApiError('API_NOT_FOUND', 'Goal not found', 'name');
    const s = this.stamp();
    await this.write('goals', { site: d, name, created_at: chTime(Date.parse(g.createdAt)), updated_at: s.text, deleted: 1 });
  }

  // -------------------------------------------------------------------------------------------
  // Members

  async members(accountId: string): Promise<Member[]> {
    const rows = await this.store.query<MemberRow>(
      `SELECT ${MEMBER_COLUMNS} FROM members FINAL WHERE account_id = {a:String} AND deleted = 0 ORDER BY created_at, id`,
      { a: accountId },
    );
    return rows.map(toMember);
  }

  async member(id: string): Promise<Member | null> {
    if (id.length > 64) return null;
    const rows = await this.store.query<MemberRow>(`SELECT ${MEMBER_COLUMNS} FROM members FINAL WHERE id = {id:String} AND deleted = 0`, { id });
    return rows[0] === undefined ? null : toMember(rows[0]);
  }

  /** Sites of a grant must be the account's: any other domain is "not found", whoever owns it. */
  private async checkGrant(accountId: string, sites: readonly string[]): Promise<string[]> {
    const own = new Set((await this.sites(accountId)).map((s) => s.domain));
    const unique = [...new Set(sites)];
    for (const d of unique) if (!own.has(d)) throw new ApiError('API_NOT_FOUND', 'Site not found', 'sites');
    return unique.sort();
  }

  async addMember(accountId: string, input: unknown): Promise<Member> {
    const v = parseInput(memberInputSchema, input);
    return this.serial(accountId, async () => {
      const sites = await this.checkGrant(accountId, v.sites);
      const s = this.stamp();
      const row = { id: newId('mem'), account_id: accountId, name: v.name, role: v.role, sites, created_at: s.text, updated_at: s.text, deleted: 0 };
      await this.write('members', row);
      return toMember(row);
    });
  }

  /**
   * Adds several members to an account in one write (one insert, however many): what a seed or an
   * import uses. Every input is validated first; one bad input adds none.
   */
  async addMembers(accountId: string, inputs: readonly unknown[]): Promise<Member[]> {
    const vs = inputs.map((input) => parseInput(memberInputSchema, input));
    return this.serial(accountId, async () => {
      const own = new Set((await this.sites(accountId)).map((s) => s.domain));
      const rows = vs.map((v) => {
        if (v.sites.some((d) => !own.has(d))) throw new ApiError('API_NOT_FOUND', 'Site not found', 'sites');
        const s = this.stamp();
        return { id: newId('mem'), account_id: accountId, name: v.name, role: v.role, sites: [...new Set(v.sites)].sort(), created_at: s.text, updated_at: s.text, deleted: 0 };
      });
      if (rows.length > 0) {
        await this.store.insert('members', rows);
        this.invalidateFor('members', accountId);
      }
      return rows.map(toMember);
    });
  }

  /** Changes a member's name or grant. The last account-wide owner (or the last one with a token) cannot be demoted. */
  async updateMember(id: string, input: unknown): Promise<Member> {
    const patch = parseInput(memberPatchSchema, input);
    return this.underLock(async () => this.memberRow(id), memberNotFound('id'), async (cur) => {
      const sites = patch.sites === undefined ? cur.sites : await this.checkGrant(cur.account_id, patch.sites);
      const row = { ...cur, name: patch.name ?? cur.name, role: patch.role ?? (cur.role as Role), sites, updated_at: this.stamp().text, deleted: 0 };
      await this.keepingWayIn(
        cur.account_id,
        isAccountWideOwner(cur) ? { member: toMember(row) } : undefined,
        async () => this.write('members', row),
        async () => this.write('members', { ...cur, updated_at: this.stamp().text, deleted: 0 }),
      );
      return toMember(row);
    });
  }

  /** Removes a member and revokes its tokens. The last account-wide owner (or the last one with a token) cannot go. */
  async removeMember(id: string): Promise<void> {
    await this.underLock(async () => this.memberRow(id), memberNotFound('id'), async (cur) => {
      await this.keepingWayIn(
        cur.account_id,
        isAccountWideOwner(cur) ? { removedMember: id } : undefined,
        async () => this.write('members', { ...cur, updated_at: this.stamp().text, deleted: 1 }),
        async () => this.write('members', { ...cur, updated_at: this.stamp().text, deleted: 0 }),
      );
      // A removed member's tokens no longer authenticate (the lookup joins live members); they
      // are revoked after the check above, so an undone removal leaves them working.
      for (const t of await this.tokens(cur.account_id)) if (t.memberId === id) await this.revokeToken(t.hash);
      // The person it was (#14's switcher): its link goes; sessions on it move home or end.
      const dropped = await this.people.memberRemoved(id, async (person) => {
        const home = await this.memberRow(person);
        return home === null ? null : { accountId: home.account_id };
      });
      for (const l of dropped) {
        await this.people.audit(l.accountId, { actor: l.memberId, via: 'signin', viaId: '', action: 'membership.unlink', target: `member=${l.memberId}` });
      }
    });
  }

  /** Loads a row, then runs `fn` on it read again under its account's lock; `missing` when absent either time. */
  private async underLock<R extends { account_id: string }, T>(load: () => Promise<R | null>, missing: ApiError, fn: (row: R) => Promise<T>): Promise<T> {
    const first = await load();
    if (first === null) throw missing;
    // Already under this account's lock (a route's write): the row was read under it.
    if (this.held.getStore()?.has(first.account_id) === true) return fn(first);
    return this.serial(first.account_id, async () => {
      const row = await load();
      if (row === null) throw missing;
      return fn(row);
    });
  }

  /**
   * Writes a change; one that could take away the account's way in (`change` given: model.ts
   * `keepsWayIn`) is refused (409) when it would on the state read now, and once written is
   * checked again on a fresh read and undone (409) if a concurrent change elsewhere made the two
   * together break it. The caller holds the account's lock, so in this process the second check
   * only fails across processes.
   */
  private async keepingWayIn(
    accountId: string,
    change: { member?: Member; removedMember?: string; revokedToken?: string } | undefined,
    write: () => Promise<void>,
    undo: () => Promise<void>,
  ): Promise<void> {
    if (change === undefined) return write();
    const members = await this.members(accountId);
    const tokens = await this.tokens(accountId);
    const before = wayIn(members, tokens);
    const afterMembers = members
      .filter((m) => m.id !== change.removedMember)
      .map((m) => (change.member !== undefined && m.id === change.member.id ? change.member : m));
    const afterTokens = tokens.filter((t) => t.hash !== change.revokedToken);
    refuseLoss(keepsWayIn(before, wayIn(afterMembers, afterTokens)));
    await write();
    const kept = keepsWayIn(before, await this.wayIn(accountId));
    if (kept === 'ok') return;
    await undo();
    refuseLoss(kept);
  }

  /** The account's way in now (members and tokens read fresh). */
  async wayIn(accountId: string): Promise<WayIn> {
    return wayIn(await this.members(accountId), await this.tokens(accountId));
  }

  private async memberRow(id: string): Promise<MemberRow | null> {
    if (id.length > 64) return null;
    const rows = await this.store.query<MemberRow>(`SELECT ${MEMBER_COLUMNS} FROM members FINAL WHERE id = {id:String} AND deleted = 0`, { id });
    return rows[0] ?? null;
  }

  // -------------------------------------------------------------------------------------------
  // Tokens

  /**
   * Issues a token for a member and returns it once; only its hash and display prefix are stored.
   * `secret` sets the token (FAROL_BOOTSTRAP_TOKEN) instead of a random one.
   */
  async issueToken(memberId: string, input: unknown = {}, secret?: string): Promise<IssuedToken> {
    const { name } = parseInput(tokenInputSchema, input);
    return this.underLock(async () => this.memberRow(memberId), memberNotFound('member_id'), async (m) => {
      const token = secret ?? newToken();
      const s = this.stamp();
      const row = { hash: hashToken(token), member_id: m.id, account_id: m.account_id, name, prefix: displayPrefix(token), created_at: s.text, updated_at: s.text, deleted: 0 };
      await this.write('tokens', row);
      return { ...toToken(row), token };
    });
  }

  /** The account's live tokens (never the secret). */
  async tokens(accountId: string): Promise<TokenInfo[]> {
    const rows = await this.store.query<TokenRow>(
      `SELECT ${TOKEN_COLUMNS} FROM tokens FINAL WHERE account_id = {a:String} AND deleted = 0 ORDER BY created_at, hash`,
      { a: accountId },
    );
    return rows.map(toToken);
  }

  /**
   * Revokes a token by hash; takes effect here at once, in other processes within the cache TTL.
   * The last token of the last account-wide owner holding one cannot be revoked (issue another first).
   */
  async revokeToken(hash: string): Promise<void> {
    await this.underLock(async () => this.tokenRow(hash), new ApiError('API_NOT_FOUND', 'Token not found', 'token'), async (cur) => {
      const holder = await this.memberRow(cur.member_id);
      await this.keepingWayIn(
        cur.account_id,
        holder !== null && isAccountWideOwner(holder) ? { revokedToken: hash } : undefined,
        async () => this.write('tokens', { ...cur, updated_at: this.stamp().text, deleted: 1 }),
        async () => this.write('tokens', { ...cur, updated_at: this.stamp().text, deleted: 0 }),
      );
    });
  }

  private async tokenRow(hash: string): Promise<TokenRow | null> {
    const rows = await this.store.query<TokenRow>(`SELECT ${TOKEN_COLUMNS} FROM tokens FINAL WHERE hash = {h:String} AND deleted = 0`, { h: hash });
    return rows[0] ?? null;
  }

  /**
   * The one token among `candidates` that `ref` names: its display prefix, its full hash, or the
   * token itself. 404 when none, 409 when a prefix is ambiguous.
   */
  static pickToken(candidates: readonly TokenInfo[], ref: string): TokenInfo {
    const byHash = candidates.find((t) => t.hash === ref || t.hash === hashToken(ref));
    if (byHash !== undefined) return byHash;
    const matches = candidates.filter((t) => t.prefix === ref);
    if (matches.length === 0 || matches[0] === undefined) throw new ApiError('API_NOT_FOUND', 'Token not found', 'token');
    if (matches.length > 1) throw new ApiError('API_CONFLICT', 'Several tokens have this prefix; revoke by hash', 'token');
    return matches[0];
  }

  // -------------------------------------------------------------------------------------------
  // Bootstrap

  /**
   * Makes a fresh install usable, and finishes one a crash interrupted: account "default", site
   * `localhost`, an owner member, and the owner's first token (`token`, else a random one).
   * Each step is done only if it never happened (deleted rows count as "happened", so deleting
   * `localhost` later does not bring it back); the token is the last step, so a crash before it
   * leaves an owner with no token ever, which the next run issues. `issueToken: false` (the CLI)
   * stops before the token, leaving it to the next `farol start`.
   * `sites` (FAROL_SITES) are registered in that account when no account holds them.
   */
  async bootstrap(
    opts: {
      token?: string | undefined;
      issueToken?: boolean;
      sites?: readonly string[];
      /** Called with the owner token just before it is stored (to print it). */
      announce?: (token: string, prefix: string) => void;
    } = {},
  ): Promise<BootstrapResult> {
    let account = (await this.accounts())[0];
    account ??= await this.createAccount({ name: 'default' });
    const a = { a: account.id };
    const everMembers = await this.store.query<{ n: string }>('SELECT count() AS n FROM members WHERE account_id = {a:String}', a);
    const sitesAdded: string[] = [];
    if (Number(everMembers[0]?.n ?? 0) === 0) {
      const everSites = await this.store.query<{ n: string }>('SELECT count() AS n FROM sites WHERE account_id = {a:String}', a);
      if (Number(everSites[0]?.n ?? 0) === 0 && (await this.uncachedSite('localhost')) === null) {
        await this.addSite(account.id, { domain: 'localhost' });
        sitesAdded.push('localhost');
      }
      await this.addMember(account.id, { name: 'owner', role: 'owner' });
    }
    for (const raw of opts.sites ?? []) {
      const d = domainSchema.safeParse(raw);
      if (!d.success || (await this.uncachedSite(d.data)) !== null) continue;
      const held = await this.reservation(d.data);
      if (held !== null && held.accountId !== account.id) continue;
      await this.addSite(account.id, { domain: d.data });
      sitesAdded.push(d.data);
    }
    const owner = (await this.members(account.id)).find((m) => m.role === 'owner');
    if (owner === undefined) return { accountId: account.id, ownerId: '', sitesAdded };
    const result: BootstrapResult = { accountId: account.id, ownerId: owner.id, sitesAdded };
    if (opts.issueToken === false) return result;
    const everTokens = await this.store.query<{ n: string }>('SELECT count() AS n FROM tokens WHERE member_id = {m:String}', { m: owner.id });
    if (Number(everTokens[0]?.n ?? 0) > 0) return result;
    const token = opts.token ?? newToken();
    // Shown before it is stored: a crash in between leaves no token, so the next run shows a new
    // one; the other order could store a token nobody ever saw.
    opts.announce?.(token, displayPrefix(token));
    const issued = await this.issueToken(owner.id, { name: 'bootstrap' }, token);
    result.issued = { token: issued.token, prefix: issued.prefix, fromEnv: opts.token !== undefined };
    return result;
  }
}
