import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { hash as argon2Hash, verify as argon2Verify } from '@node-rs/argon2';
import { Secret, TOTP } from 'otpauth';
import { z } from 'zod';
import { ApiError } from '../schemas/errors.ts';
import type { Store } from '../store/store.ts';
import { roles, type Principal, type Role } from './model.ts';

/**
 * People who sign in (#14): identities of members (email + Argon2id password, optional TOTP, and/or
 * an OpenID Connect issuer + subject), browser sessions, invitations, password-reset links and
 * the audit trail, over the tables of schemas/migrations/control-plane.ts `signInTables`.
 *
 * Every secret handed to a browser or printed (a session id, an invitation or reset link) is 32
 * random bytes, base64url, and only its SHA-256 is stored: a copy of the tables signs nobody in.
 * A session has a separate public id (`ses_…`) for listings and the audit trail. TOTP secrets
 * must be stored as they are (the code is an HMAC of the time under them).
 *
 * Who may do what is decided by model.ts and the routes, as for members and tokens; this layer
 * validates and stores. Writes go through the {@link PeopleHost} (the control plane), which
 * stamps them and clears every cache.
 */

/** What the control plane lends this module: its clock, its write path and its account lock. */
export interface PeopleHost {
  now(): number;
  /** A strictly increasing ClickHouse timestamp. */
  stamp(): { ms: number; text: string };
  /** Inserts a row version and clears the caches. */
  write(table: string, row: Record<string, unknown>): Promise<void>;
  serial<T>(accountId: string, fn: () => Promise<T>): Promise<T>;
  /** Forgets the cached principals of an account (a session moved out of it). */
  forget(accountId: string): void;
}

export interface SessionPolicy {
  /** A session ends after this long without a request. */
  idleMs: number;
  /** …and this long after sign-in, however active. */
  absoluteMs: number;
}

export const DEFAULT_SESSION_POLICY: SessionPolicy = { idleMs: 12 * 3_600_000, absoluteMs: 7 * 86_400_000 };

/** How often a session's last use is written (idle expiry is this coarse). */
const TOUCH_EVERY_MS = 60_000;

/** Invitations and reset links live this long. */
export const INVITATION_TTL_MS = 7 * 86_400_000;
export const RESET_LINK_TTL_MS = 86_400_000;

// ---- input ----------------------------------------------------------------------------------

export const emailSchema = z.string().trim().toLowerCase().max(254).pipe(z.email());

/**
 * A password: 12 to 1,024 characters. The cap keeps a 10 MB "password" from reaching Argon2 (its
 * cost is in memory and passes, not length, but the body is hashed once per attempt).
 */
export const passwordSchema = z.string().min(12, 'must be at least 12 characters').max(1024);

/** A six-digit TOTP code. */
export const totpCodeSchema = z.string().regex(/^\d{6}$/, 'must be 6 digits');

export const invitationInputSchema = z.strictObject({
  email: emailSchema,
  role: z.enum(roles),
  /** [] = every site of the account. */
  sites: z.array(z.string().trim().toLowerCase().min(1).max(253)).max(1000).default([]),
});

// ---- secrets --------------------------------------------------------------------------------

/** A secret for a cookie or a link: 32 random bytes (256 bits), base64url. */
export function newSecret(): string {
  return randomBytes(32).toString('base64url');
}

/** What is stored of a secret: its hex SHA-256. */
export function hashSecret(secret: string): string {
  return createHash('sha256').update(secret, 'utf8').digest('hex');
}

/** Whether `s` has the shape of a secret Farol made (a cheap refusal before any lookup). */
export function isSecretShaped(s: string): boolean {
  return /^[A-Za-z0-9_-]{43}$/.test(s);
}

function publicId(kind: 'ses' | 'inv'): string {
  return `${kind}_${randomBytes(9).toString('base64url')}`;
}

/**
 * The CSRF token of a session: derived from its id (a one-way hash under a fixed label), so it is
 * bound to the session, needs no storage, and does not reveal the id. The dashboard reads it from
 * `GET /api/v1/auth/session` and sends it as `X-CSRF-Token` on every state-changing request.
 */
export function csrfTokenOf(sessionSecret: string): string {
  return createHash('sha256').update('farol-csrf\0').update(sessionSecret, 'utf8').digest('base64url');
}

/** Constant-time comparison of a presented CSRF token with the session's. */
export function csrfMatches(sessionSecret: string, presented: string | undefined): boolean {
  if (presented === undefined) return false;
  const want = Buffer.from(csrfTokenOf(sessionSecret));
  const got = Buffer.from(presented);
  return got.length === want.length && timingSafeEqual(got, want);
}

// ---- passwords and TOTP ---------------------------------------------------------------------

/**
 * Argon2id with the binding's defaults, which are OWASP's recommendation (19 MiB, 2 passes, 1
 * lane); the algorithm default of @node-rs/argon2 is Argon2id (checked by people.test.ts). No
 * lower setting exists, for tests or otherwise.
 */
export async function hashPassword(password: string): Promise<string> {
  return argon2Hash(password);
}

/** A hash to verify against when the account does not exist, so both cases take as long. */
let dummyHash: Promise<string> | undefined;

export async function verifyPassword(stored: string | undefined, password: string): Promise<boolean> {
  if (stored === undefined || stored === '') {
    dummyHash ??= hashPassword(newSecret());
    await argon2Verify(await dummyHash, password).catch(() => false);
    return false;
  }
  return argon2Verify(stored, password).catch(() => false);
}

/** A new TOTP secret (160 bits, base32) and its `otpauth://` URI for an authenticator app. */
export function newTotp(label: string): { secret: string; uri: string } {
  const secret = new Secret({ size: 20 }).base32;
  return { secret, uri: totpOf(secret, label).toString() };
}

function totpOf(secret: string, label = 'farol'): TOTP {
  return new TOTP({ issuer: 'Farol', label, algorithm: 'SHA1', digits: 6, period: 30, secret: Secret.fromBase32(secret) });
}

/** Whether `code` is the TOTP code of `secret` now (± one 30 s step). */
export function totpValid(secret: string, code: string, now: number): boolean {
  if (!totpCodeSchema.safeParse(code).success) return false;
  try {
    return totpOf(secret).validate({ token: code, timestamp: now, window: 1 }) !== null;
  } catch {
    return false;
  }
}

// ---- records --------------------------------------------------------------------------------

export interface Identity {
  readonly memberId: string;
  readonly accountId: string;
  /** Lower-case; '' when none. */
  readonly email: string;
  readonly passwordHash: string;
  readonly totpSecret: string;
  readonly oidcIssuer: string;
  readonly oidcSubject: string;
}

export interface SessionInfo {
  /** Public id (`ses_…`): listings and the audit trail name a session by it. */
  readonly id: string;
  readonly memberId: string;
  readonly accountId: string;
  /** How it signed in: `password`, `oidc`, `invitation`, `reset`. */
  readonly method: string;
  readonly createdAt: string;
  readonly lastSeenAt: string;
  readonly expiresAt: string;
}

export interface Invitation {
  readonly id: string;
  readonly accountId: string;
  readonly email: string;
  readonly role: Role;
  readonly sites: readonly string[];
  readonly invitedBy: string;
  readonly createdAt: string;
  readonly expiresAt: string;
}

/** A membership of a person: its home member (whose identity signs in) or one linked to it. */
export interface Membership {
  readonly memberId: string;
  readonly accountId: string;
  /** Whether this is the member whose identity signs in. */
  readonly home: boolean;
}

export interface AuditEntry {
  readonly at: string;
  /** A member id, or `operator` (the CLI). */
  readonly actor: string;
  /** `session`, `token`, `cli` or `signin`. */
  readonly via: string;
  /** The session's public id, or `tok:` and the first 12 hex digits of the token's hash. */
  readonly viaId: string;
  readonly action: string;
  readonly target: string;
  /** JSON of what changed, never a secret. */
  readonly detail: string;
}

interface IdentityRow {
  member_id: string;
  account_id: string;
  email: string;
  password_hash: string;
  totp_secret: string;
  oidc_issuer: string;
  oidc_subject: string;
  created_at: string;
}

interface SessionRow {
  hash: string;
  id: string;
  member_id: string;
  account_id: string;
  method: string;
  expires_at: string;
  last_seen_at: string;
  created_at: string;
}

interface InvitationRow {
  id: string;
  hash: string;
  account_id: string;
  email: string;
  role: string;
  sites: string[];
  invited_by: string;
  expires_at: string;
  created_at: string;
}

const IDENTITY_COLUMNS = 'member_id, account_id, email, password_hash, totp_secret, oidc_issuer, oidc_subject, created_at';
const SESSION_COLUMNS = 'hash, id, member_id, account_id, method, expires_at, last_seen_at, created_at';
const INVITATION_COLUMNS = 'id, hash, account_id, email, role, sites, invited_by, expires_at, created_at';

/** ClickHouse `DateTime64(3)` text (UTC) for epoch ms. */
export function chTime(ms: number): string {
  return new Date(ms).toISOString().slice(0, 23).replace('T', ' ');
}

/** ClickHouse DateTime64 text → epoch ms. */
function msOf(ch: string): number {
  return Date.parse(`${ch.replace(' ', 'T')}Z`);
}

const iso = (ch: string): string => new Date(msOf(ch)).toISOString();

function toIdentity(r: IdentityRow): Identity {
  return {
    memberId: r.member_id,
    accountId: r.account_id,
    email: r.email,
    passwordHash: r.password_hash,
    totpSecret: r.totp_secret,
    oidcIssuer: r.oidc_issuer,
    oidcSubject: r.oidc_subject,
  };
}

function toSession(r: SessionRow): SessionInfo {
  return { id: r.id, memberId: r.member_id, accountId: r.account_id, method: r.method, createdAt: iso(r.created_at), lastSeenAt: iso(r.last_seen_at), expiresAt: iso(r.expires_at) };
}

function toInvitation(r: InvitationRow): Invitation {
  return { id: r.id, accountId: r.account_id, email: r.email, role: r.role as Role, sites: r.sites, invitedBy: r.invited_by, createdAt: iso(r.created_at), expiresAt: iso(r.expires_at) };
}

const MAX_SESSION_CACHE = 10_000;

/** People: identities, sessions, invitations, reset links and the audit trail. */
export class People {
  /** Session rows by hash, for `sessionCacheMs` (expiry is checked on every use, not cached). */
  private readonly sessionCache = new Map<string, { row: SessionRow | null; until: number }>();

  constructor(
    private readonly store: Store,
    private readonly host: PeopleHost,
    private readonly policy: SessionPolicy = DEFAULT_SESSION_POLICY,
    private readonly sessionCacheMs = 5_000,
  ) {}

  invalidate(): void {
    this.sessionCache.clear();
  }

  // ---- identities ---------------------------------------------------------------------------

  async identity(memberId: string): Promise<Identity | null> {
    if (memberId.length > 64) return null;
    const rows = await this.store.query<IdentityRow>(`SELECT ${IDENTITY_COLUMNS} FROM identities FINAL WHERE member_id = {m:String} AND deleted = 0`, { m: memberId });
    return rows[0] === undefined ? null : toIdentity(rows[0]);
  }

  /** The live identity with this email (of a live member), or null. */
  async identityByEmail(email: string): Promise<Identity | null> {
    const rows = await this.store.query<IdentityRow>(
      // Live members among those the email's identities name, by the members' key (not every member).
      `SELECT ${IDENTITY_COLUMNS} FROM identities FINAL
       WHERE email = {e:String} AND deleted = 0
         AND member_id IN (SELECT id FROM members FINAL WHERE id IN (SELECT member_id FROM identities FINAL WHERE email = {e:String} AND deleted = 0) AND deleted = 0)
       ORDER BY created_at LIMIT 1`,
      { e: email },
    );
    return rows[0] === undefined ? null : toIdentity(rows[0]);
  }

  /** The live identity with this OpenID Connect issuer and subject (of a live member), or null. */
  async identityByOidc(issuer: string, subject: string): Promise<Identity | null> {
    if (issuer === '' || subject === '') return null;
    const rows = await this.store.query<IdentityRow>(
      `SELECT ${IDENTITY_COLUMNS} FROM identities FINAL
       WHERE oidc_issuer = {i:String} AND oidc_subject = {s:String} AND deleted = 0
         AND member_id IN (SELECT id FROM members FINAL WHERE deleted = 0)
       LIMIT 1`,
      { i: issuer, s: subject },
    );
    return rows[0] === undefined ? null : toIdentity(rows[0]);
  }

  /**
   * Creates or changes a member's identity. An email another live member's identity holds is a
   * 409: an email signs in one member.
   */
  async setIdentity(memberId: string, accountId: string, change: Partial<Omit<Identity, 'memberId' | 'accountId'>>): Promise<Identity> {
    const cur = await this.identity(memberId);
    // A membership linked to a person signs in only as that person: an identity of its own would
    // let its account's owners sign in as it and reach the person's other accounts.
    if (cur === null && (await this.linkState(memberId)) === 'linked') throw new ApiError('API_CONFLICT', 'This member signs in as a person of another account', 'id');
    if (change.email !== undefined && change.email !== '' && change.email !== cur?.email) {
      const other = await this.identityByEmail(change.email);
      if (other !== null && other.memberId !== memberId) throw new ApiError('API_CONFLICT', 'Another member signs in with this email', 'email');
    }
    const s = this.host.stamp();
    const next: Identity = {
      memberId,
      accountId,
      email: change.email ?? cur?.email ?? '',
      passwordHash: change.passwordHash ?? cur?.passwordHash ?? '',
      totpSecret: change.totpSecret ?? cur?.totpSecret ?? '',
      oidcIssuer: change.oidcIssuer ?? cur?.oidcIssuer ?? '',
      oidcSubject: change.oidcSubject ?? cur?.oidcSubject ?? '',
    };
    await this.host.write('identities', {
      member_id: memberId,
      account_id: accountId,
      email: next.email,
      password_hash: next.passwordHash,
      totp_secret: next.totpSecret,
      oidc_issuer: next.oidcIssuer,
      oidc_subject: next.oidcSubject,
      created_at: s.text,
      updated_at: s.text,
      deleted: 0,
    });
    return next;
  }

  // ---- sessions -----------------------------------------------------------------------------

  /** Starts a browser session for a member; returns the cookie's secret (shown once) and the session. */
  async startSession(memberId: string, accountId: string, method: string): Promise<{ secret: string; session: SessionInfo }> {
    const secret = newSecret();
    const s = this.host.stamp();
    const row: SessionRow = {
      hash: hashSecret(secret),
      id: publicId('ses'),
      member_id: memberId,
      account_id: accountId,
      method,
      expires_at: chTime(s.ms + this.policy.absoluteMs),
      last_seen_at: s.text,
      created_at: s.text,
    };
    await this.host.write('browser_sessions', { ...row, updated_at: s.text, deleted: 0 });
    return { secret, session: toSession(row) };
  }

  private async sessionRow(hash: string, cached: boolean): Promise<SessionRow | null> {
    const t = this.host.now();
    const hit = cached ? this.sessionCache.get(hash) : undefined;
    if (hit !== undefined && hit.until > t) return hit.row;
    const rows = await this.store.query<SessionRow>(`SELECT ${SESSION_COLUMNS} FROM browser_sessions FINAL WHERE hash = {h:String} AND deleted = 0`, { h: hash });
    const row = rows[0] ?? null;
    if (this.sessionCacheMs > 0) {
      if (this.sessionCache.size >= MAX_SESSION_CACHE) this.sessionCache.clear();
      this.sessionCache.set(hash, { row, until: t + this.sessionCacheMs });
    }
    return row;
  }

  /** Whether a session row is past its idle or absolute end at `t`. */
  private expired(r: SessionRow, t: number): boolean {
    return t >= msOf(r.expires_at) || t - msOf(r.last_seen_at) >= this.policy.idleMs;
  }

  /**
   * The session behind a cookie's secret, or null when unknown, signed out or expired. Its last
   * use is written at most once a minute.
   */
  async session(secret: string, cached = true): Promise<SessionInfo | null> {
    if (!isSecretShaped(secret)) return null;
    return this.sessionByHash(hashSecret(secret), cached);
  }

  /** {@link session} by the secret's hash. */
  async sessionByHash(hash: string, cached = true): Promise<SessionInfo | null> {
    const r = await this.sessionRow(hash, cached);
    const t = this.host.now();
    if (r === null || this.expired(r, t)) return null;
    if (t - msOf(r.last_seen_at) >= TOUCH_EVERY_MS) {
      // Straight to the store, dropping only this session's cached row: a write through the host
      // would clear every cache of the control plane once a minute per active session.
      const s = this.host.stamp();
      await this.store.insert('browser_sessions', [{ ...r, last_seen_at: s.text, updated_at: s.text, deleted: 0 }]);
      this.sessionCache.delete(hash);
    }
    return toSession(r);
  }

  /**
   * The principal of a session (by its secret's hash): its member's grant now (a removed member's
   * sessions end with it). A session switched to a linked membership acts as that member while
   * the link lives (an unlinked one ends even if the member stays).
   */
  async principal(hash: string, memberGrant: (memberId: string) => Promise<{ accountId: string; role: Role; sites: readonly string[] } | null>, cached = true): Promise<Principal | null> {
    const s = await this.sessionByHash(hash, cached);
    if (s === null) return null;
    const g = await memberGrant(s.memberId);
    if (g === null || g.accountId !== s.accountId) return null;
    if ((await this.linkState(s.memberId)) === 'unlinked') return null;
    return { accountId: s.accountId, memberId: s.memberId, role: g.role, sites: g.sites, tokenHash: hash, session: s.id };
  }

  /** The live sessions of a member's person (on any of its memberships), newest first. */
  async sessions(memberId: string): Promise<SessionInfo[]> {
    const members = await this.personMembers(await this.personOf(memberId));
    const rows = await this.store.query<SessionRow>(
      `SELECT ${SESSION_COLUMNS} FROM browser_sessions FINAL WHERE member_id IN {m:Array(String)} AND deleted = 0 ORDER BY created_at DESC`,
      { m: members },
    );
    const t = this.host.now();
    return rows.filter((r) => !this.expired(r, t)).map(toSession);
  }

  /** Ends one session by its public id (of `memberId`'s person); false when there was none. */
  async revokeSession(memberId: string, id: string): Promise<boolean> {
    const members = await this.personMembers(await this.personOf(memberId));
    const rows = await this.store.query<SessionRow>(
      `SELECT ${SESSION_COLUMNS} FROM browser_sessions FINAL WHERE member_id IN {m:Array(String)} AND id = {id:String} AND deleted = 0`,
      { m: members, id },
    );
    for (const r of rows) await this.endSession(r);
    return rows.length > 0;
  }

  /**
   * Ends every session of a member's person, on whichever membership each is (sign out
   * everywhere; a password reset); returns how many.
   */
  async revokeSessions(memberId: string): Promise<number> {
    return this.revokeSessionsOn(await this.personMembers(await this.personOf(memberId)));
  }

  private async sessionRowsOn(members: readonly string[]): Promise<SessionRow[]> {
    if (members.length === 0) return [];
    return this.store.query<SessionRow>(`SELECT ${SESSION_COLUMNS} FROM browser_sessions FINAL WHERE member_id IN {m:Array(String)} AND deleted = 0`, { m: [...members] });
  }

  private async revokeSessionsOn(members: readonly string[]): Promise<number> {
    const rows = await this.sessionRowsOn(members);
    for (const r of rows) await this.endSession(r);
    return rows.length;
  }

  /**
   * Ends a session. Under the session's own lock, as {@link moveSession}: a move that read the
   * row before a sign-out cannot write it back alive after it.
   */
  private async endSession(r: SessionRow): Promise<void> {
    await this.host.serial(`session:${r.hash}`, async () => this.host.write('browser_sessions', { ...r, updated_at: this.host.stamp().text, deleted: 1 }));
  }

  /** Moves a session (by its secret's hash) to another member: it then acts as that member. */
  async moveSession(hash: string, to: { memberId: string; accountId: string }): Promise<void> {
    await this.host.serial(`session:${hash}`, async () => {
      const r = await this.sessionRow(hash, false);
      if (r === null) return;
      await this.host.write('browser_sessions', { ...r, member_id: to.memberId, account_id: to.accountId, updated_at: this.host.stamp().text, deleted: 0 });
      this.host.forget(r.account_id);
    });
  }

  // ---- memberships linked to a person -------------------------------------------------------

  /**
   * The person a member is: the home member its live link names, else the member itself. Only
   * {@link link} makes a link — an invitee's own action — never a matching email.
   */
  async personOf(memberId: string): Promise<string> {
    const rows = await this.store.query<{ person_id: string }>('SELECT person_id FROM person_links FINAL WHERE member_id = {m:String} AND deleted = 0 LIMIT 1', { m: memberId });
    return rows[0]?.person_id ?? memberId;
  }

  /** A member's link now: `none` (never linked: a home member), `linked`, or `unlinked` (its link was dropped). */
  private async linkState(memberId: string): Promise<'none' | 'linked' | 'unlinked'> {
    // Not FINAL: a deleted link's row must still be seen (FINAL drops it).
    const rows = await this.store.query<{ d: number }>(
      'SELECT argMax(deleted, updated_at) AS d FROM person_links WHERE member_id = {m:String} GROUP BY person_id',
      { m: memberId },
    );
    if (rows.length === 0) return 'none';
    return rows.some((r) => Number(r.d) === 0) ? 'linked' : 'unlinked';
  }

  /** The member ids of a person: its home member first, then the linked ones (live or not: callers check). */
  async personMembers(personId: string): Promise<string[]> {
    return [personId, ...(await this.links(personId)).map((l) => l.memberId)];
  }

  /** A person's live links, oldest first. */
  async links(personId: string): Promise<Membership[]> {
    const rows = await this.store.query<{ member_id: string; account_id: string }>(
      'SELECT member_id, account_id FROM person_links FINAL WHERE person_id = {p:String} AND deleted = 0 ORDER BY created_at, member_id LIMIT 1000',
      { p: personId },
    );
    return rows.map((r) => ({ memberId: r.member_id, accountId: r.account_id, home: false }));
  }

  /** Links a member (just made from an invitation the person accepted while signed in) to a person. */
  async link(personId: string, member: { memberId: string; accountId: string }): Promise<void> {
    const s = this.host.stamp();
    await this.host.write('person_links', { person_id: personId, member_id: member.memberId, account_id: member.accountId, created_at: s.text, updated_at: s.text, deleted: 0 });
  }

  /**
   * After a member was removed: its link goes, and the sessions on it move back to its person's
   * home membership (`homeLive` says whether that one still is) or end. A removed home member's
   * person can no longer sign in: every link of it goes and the sessions on them end.
   * Returns the dropped links, for the audit trail.
   */
  async memberRemoved(memberId: string, home: (personId: string) => Promise<{ accountId: string } | null>): Promise<Array<{ personId: string; memberId: string; accountId: string }>> {
    const dropped: Array<{ personId: string; memberId: string; accountId: string }> = [];
    const drop = async (personId: string, l: { memberId: string; accountId: string }): Promise<void> => {
      const s = this.host.stamp();
      await this.host.write('person_links', { person_id: personId, member_id: l.memberId, account_id: l.accountId, created_at: s.text, updated_at: s.text, deleted: 1 });
      dropped.push({ personId, ...l });
    };
    const person = await this.personOf(memberId);
    if (person !== memberId) {
      const mine = (await this.links(person)).find((l) => l.memberId === memberId);
      if (mine !== undefined) await drop(person, mine);
      const back = await home(person);
      for (const r of await this.sessionRowsOn([memberId])) {
        if (back === null) await this.endSession(r);
        else await this.moveSession(r.hash, { memberId: person, accountId: back.accountId });
      }
    } else {
      const linked = await this.links(memberId);
      for (const l of linked) await drop(memberId, l);
      await this.revokeSessionsOn([memberId, ...linked.map((l) => l.memberId)]);
    }
    return dropped;
  }

  // ---- invitations --------------------------------------------------------------------------

  /** Records an invitation (the caller checked the grant); returns it and its link's secret, shown once. */
  async invite(accountId: string, invitedBy: string, input: { email: string; role: Role; sites: readonly string[] }): Promise<{ invitation: Invitation; secret: string }> {
    const secret = newSecret();
    const s = this.host.stamp();
    const row: InvitationRow = {
      id: publicId('inv'),
      hash: hashSecret(secret),
      account_id: accountId,
      email: input.email,
      role: input.role,
      sites: [...input.sites],
      invited_by: invitedBy,
      expires_at: chTime(s.ms + INVITATION_TTL_MS),
      created_at: s.text,
    };
    await this.host.write('invitations', { ...row, updated_at: s.text, deleted: 0 });
    return { invitation: toInvitation(row), secret };
  }

  /** The account's open invitations (expired ones left out). */
  async invitations(accountId: string): Promise<Invitation[]> {
    const rows = await this.store.query<InvitationRow>(
      `SELECT ${INVITATION_COLUMNS} FROM invitations FINAL WHERE account_id = {a:String} AND deleted = 0 ORDER BY created_at, id`,
      { a: accountId },
    );
    const t = this.host.now();
    return rows.filter((r) => msOf(r.expires_at) > t).map(toInvitation);
  }

  private async invitationRows(where: string, params: Record<string, string>): Promise<InvitationRow[]> {
    const rows = await this.store.query<InvitationRow>(`SELECT ${INVITATION_COLUMNS} FROM invitations FINAL WHERE ${where} AND deleted = 0 ORDER BY created_at`, params);
    const t = this.host.now();
    return rows.filter((r) => msOf(r.expires_at) > t);
  }

  /** Withdraws an open invitation by id (of `accountId`); false when none. */
  async withdraw(accountId: string, id: string): Promise<boolean> {
    const rows = await this.invitationRows('account_id = {a:String} AND id = {id:String}', { a: accountId, id });
    for (const r of rows) await this.host.write('invitations', { ...r, updated_at: this.host.stamp().text, deleted: 1 });
    return rows.length > 0;
  }

  /**
   * Uses up an invitation: by its link's secret, or (OpenID Connect) the oldest open one for a
   * verified email. Single use under the account's lock: of two racing claims one gets null.
   * `claim` runs under the lock with the invitation (it creates the member); the invitation is
   * deleted first, so a failure in `claim` leaves it used rather than usable twice.
   */
  async claim<T>(by: { secret: string } | { email: string }, claim: (inv: Invitation) => Promise<T>): Promise<T | null> {
    if ('secret' in by && !isSecretShaped(by.secret)) return null;
    const find = async (): Promise<InvitationRow | undefined> =>
      'secret' in by ? (await this.invitationRows('hash = {h:String}', { h: hashSecret(by.secret) }))[0] : (await this.invitationRows('email = {e:String}', { e: by.email }))[0];
    const first = await find();
    if (first === undefined) return null;
    return this.host.serial(first.account_id, async () => {
      const row = await find();
      if (row?.id !== first.id) return null;
      await this.host.write('invitations', { ...row, updated_at: this.host.stamp().text, deleted: 1 });
      return claim(toInvitation(row));
    });
  }

  // ---- reset links --------------------------------------------------------------------------

  /** A one-time password-reset link's secret for a member, valid for a day; shown once. */
  async resetLink(memberId: string, accountId: string): Promise<{ secret: string; expiresAt: string }> {
    const secret = newSecret();
    const s = this.host.stamp();
    const expires = chTime(s.ms + RESET_LINK_TTL_MS);
    await this.host.write('reset_links', { hash: hashSecret(secret), member_id: memberId, account_id: accountId, expires_at: expires, created_at: s.text, updated_at: s.text, deleted: 0 });
    return { secret, expiresAt: iso(expires) };
  }

  /** Uses up a reset link: the member it was for, or null when unknown, used or expired. */
  async useResetLink(secret: string): Promise<{ memberId: string; accountId: string } | null> {
    if (!isSecretShaped(secret)) return null;
    const h = hashSecret(secret);
    const find = async (): Promise<{ hash: string; member_id: string; account_id: string; expires_at: string; created_at: string } | undefined> =>
      (
        await this.store.query<{ hash: string; member_id: string; account_id: string; expires_at: string; created_at: string }>(
          'SELECT hash, member_id, account_id, expires_at, created_at FROM reset_links FINAL WHERE hash = {h:String} AND deleted = 0',
          { h },
        )
      )[0];
    const first = await find();
    if (first === undefined || msOf(first.expires_at) <= this.host.now()) return null;
    return this.host.serial(first.account_id, async () => {
      const row = await find();
      if (row === undefined) return null;
      await this.host.write('reset_links', { ...row, updated_at: this.host.stamp().text, deleted: 1 });
      return { memberId: row.member_id, accountId: row.account_id };
    });
  }

  // ---- audit trail --------------------------------------------------------------------------

  /** Appends a record. `detail` must hold no secret: callers pass names, ids, roles and site lists. */
  async audit(accountId: string, e: Omit<AuditEntry, 'at' | 'detail'> & { detail?: Record<string, unknown> }): Promise<void> {
    await this.store.insert('audit_log', [
      { at: chTime(this.host.now()), account_id: accountId, actor: e.actor, via: e.via, via_id: e.viaId, action: e.action, target: e.target.slice(0, 300), detail: JSON.stringify(e.detail ?? {}).slice(0, 4000) },
    ]);
  }

  /** The account's records within `retentionDays`, newest first. */
  async auditTrail(accountId: string, retentionDays: number, limit = 500): Promise<AuditEntry[]> {
    const rows = await this.store.query<{ at: string; actor: string; via: string; via_id: string; action: string; target: string; detail: string }>(
      `SELECT at, actor, via, via_id, action, target, detail FROM audit_log
       WHERE account_id = {a:String} AND at >= {since:DateTime64(3, 'UTC')} ORDER BY at DESC LIMIT {n:UInt32}`,
      { a: accountId, since: chTime(this.host.now() - retentionDays * 86_400_000), n: Math.max(1, Math.min(limit, 10_000)) },
    );
    return rows.map((r) => ({ at: iso(r.at), actor: r.actor, via: r.via, viaId: r.via_id, action: r.action, target: r.target, detail: r.detail }));
  }

  /** Deletes records older than `retentionDays` (the API runs it at start and daily; a replicated table passes it on). */
  async pruneAudit(retentionDays: number): Promise<void> {
    await this.store.exec("ALTER TABLE audit_log DELETE WHERE at < {since:DateTime64(3, 'UTC')} SETTINGS mutations_sync = 2", {
      since: chTime(this.host.now() - retentionDays * 86_400_000),
    });
  }
}
