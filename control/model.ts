/**
 * The control plane's model: accounts own sites; members of an account
 * hold one role, account-wide (`sites: []`) or for a list of sites; an API token acts as its
 * member.
 *
 * Who may do what is decided here, in one place, for every endpoint; the routes only ask. The
 * site list of a grant is honoured for every role, the owner's too: an owner of sites `a` and `b`
 * is an owner of those two sites, not of the account. (Refusing per-site owners instead would
 * contradict "each grant is account-wide or a list of sites" and strand the grants already
 * stored; honouring them costs one rule, {@link covers}, applied everywhere.)
 *
 * - Sites: a site outside the principal's scope (another account's, or one of its own account's
 *   sites outside a per-site grant) is answered exactly like a site that does not exist (404), so
 *   a token never learns whether another account's site exists; in scope with too small a role is
 *   403. Creating a site is account-level: an account-wide admin or owner.
 * - Members and tokens: nobody hands out more than it holds. A principal gives, changes, removes
 *   or issues tokens for a grant only when that grant's role is one it may give (an owner any
 *   role, an admin viewers, a viewer none) and its sites are within its own (an account-wide grant
 *   covers every list; a list covers only a non-empty part of itself, never "account-wide").
 *   This holds for its own grant too: a per-site owner cannot widen itself, an admin cannot
 *   promote itself. A member whose grant is not within the principal's own is "not found".
 * - The account keeps a way in ({@link keepsWayIn}): the last account-wide owner cannot be
 *   removed or demoted, nor the last account-wide owner holding a live token lose it.
 */

export const roles = ['owner', 'admin', 'viewer'] as const;
export type Role = (typeof roles)[number];

/** What a request acts as: the member behind the bearer token or the browser session. */
export interface Principal {
  readonly accountId: string;
  readonly memberId: string;
  readonly role: Role;
  /** The grant's scope: [] = every site of the account. */
  readonly sites: readonly string[];
  /**
   * The credential's hash (hex SHA-256): the token's, e.g. to revoke "this token", or for a
   * browser session its cookie secret's (a key for per-credential limits either way).
   */
  readonly tokenHash: string;
  /** Set when the request came with a browser session: the session's public id (`ses_…`). */
  readonly session?: string;
}

export interface Site {
  readonly domain: string;
  readonly accountId: string;
  /** IANA time zone of the site's days and hours. */
  readonly timezone: string;
  readonly respectDnt: boolean;
}

/** A member as access rules see it: its account and its grant. */
export interface Grantee {
  readonly id: string;
  readonly accountId: string;
  readonly role: Role;
  /** [] = every site of the account. */
  readonly sites: readonly string[];
}

/** What an action needs: reading stats, administering (sites, experiments, tokens), or owning. */
export type Need = 'read' | 'admin' | 'owner';

/** The outcome of an access rule: `not_found` is also "out of scope" (indistinguishable). */
export type Access = 'ok' | 'not_found' | 'forbidden';

const rank: Record<Role, number> = { viewer: 0, admin: 1, owner: 2 };
const needRank: Record<Need, number> = { read: 0, admin: 1, owner: 2 };
/** The highest role rank each role may give: an owner any, an admin viewers, a viewer none. */
const givesUpTo: Record<Role, number> = { owner: rank.owner, admin: rank.viewer, viewer: -1 };

/**
 * Whether a grant over `outer` covers a grant over `inner`: account-wide covers everything; a
 * site list covers a non-empty list of its own sites (never `[]`, which means account-wide).
 */
export function covers(outer: readonly string[], inner: readonly string[]): boolean {
  if (outer.length === 0) return true;
  return inner.length > 0 && inner.every((d) => outer.includes(d));
}

// ---- sites ------------------------------------------------------------------------------------

/** Whether `site` is within the principal's scope at all (its account, and its grant). */
export function inScope(p: Principal, site: Site | null | undefined): site is Site {
  if (site === null || site === undefined) return false;
  if (site.accountId !== p.accountId) return false;
  return p.sites.length === 0 || p.sites.includes(site.domain);
}

/** `ok`, or why not: `not_found` (absent or out of scope, indistinguishable) or `forbidden`. */
export function siteAccess(p: Principal, site: Site | null | undefined, need: Need): Access {
  if (!inScope(p, site)) return 'not_found';
  return rank[p.role] >= needRank[need] ? 'ok' : 'forbidden';
}

/**
 * Account-level actions (`read`: listings, which callers filter by scope; `admin`/`owner`:
 * creating sites): beyond reading, only an account-wide grant acts on the account, whatever its
 * role, since a new site lies outside every site list.
 */
export function accountAccess(p: Principal, need: Need): 'ok' | 'forbidden' {
  if (need !== 'read' && p.sites.length > 0) return 'forbidden';
  return rank[p.role] >= needRank[need] ? 'ok' : 'forbidden';
}

// ---- members and tokens ------------------------------------------------------------------------

/** Whether the principal may list the account's members (filtered by {@link seesMember}). */
export function mayListMembers(p: Principal): boolean {
  return p.role !== 'viewer';
}

/**
 * Whether member `m` exists for the principal at all (listings, ids): itself; for an admin or
 * owner, a member of its account whose grant its own covers. Anything else is "not found".
 */
export function seesMember(p: Principal, m: Grantee | null | undefined): m is Grantee {
  if (m === null || m === undefined || m.accountId !== p.accountId) return false;
  if (m.id === p.memberId) return true;
  return p.role !== 'viewer' && covers(p.sites, m.sites);
}

/**
 * Whether the principal may give a grant of `role` over `sites` (a new member, or a member's new
 * grant): `not_found` when `sites` names a site outside a per-site grant (like a site that does
 * not exist), `forbidden` when the role is above what it gives or the grant wider than its own.
 */
export function grantAccess(p: Principal, role: Role, sites: readonly string[]): Access {
  if (p.sites.length > 0 && sites.some((d) => !p.sites.includes(d))) return 'not_found';
  return rank[role] <= givesUpTo[p.role] && covers(p.sites, sites) ? 'ok' : 'forbidden';
}

/**
 * Whether the principal may change or remove member `m`, or issue tokens for it: `m` must be
 * visible and hold a grant the principal could give. So an owner manages itself (and may narrow
 * itself), an admin never itself.
 */
export function memberAccess(p: Principal, m: Grantee | null | undefined): Access {
  if (!seesMember(p, m)) return 'not_found';
  return grantAccess(p, m.role, m.sites) === 'ok' ? 'ok' : 'forbidden';
}

/** Whether the principal may issue a token acting as `m`: its own (not a viewer), or a managed member's. */
export function tokenIssueAccess(p: Principal, m: Grantee | null | undefined): Access {
  if (!seesMember(p, m)) return 'not_found';
  if (p.role === 'viewer') return 'forbidden';
  return m.id === p.memberId ? 'ok' : memberAccess(p, m);
}

/** Whether the principal sees the tokens of `m` (listing them, naming one): its own, and those of members it manages. */
export function seesTokensOf(p: Principal, m: Grantee | null | undefined): boolean {
  if (m === null || m === undefined) return false;
  return m.id === p.memberId ? m.accountId === p.accountId : memberAccess(p, m) === 'ok';
}

/** Whether the principal may revoke a token it sees (viewers revoke nothing). */
export function mayRevokeTokens(p: Principal): boolean {
  return p.role !== 'viewer';
}

// ---- the account's way in ----------------------------------------------------------------------

/** What keeps an account administrable: its account-wide owners, and how many of them hold a live token. */
export interface WayIn {
  readonly owners: number;
  readonly ownersWithToken: number;
}

/** The way in of an account, from its live members and live tokens. */
export function wayIn(members: readonly Grantee[], tokens: ReadonlyArray<{ readonly memberId: string }>): WayIn {
  const holders = new Set(tokens.map((t) => t.memberId));
  const owners = members.filter((m) => m.role === 'owner' && m.sites.length === 0);
  return { owners: owners.length, ownersWithToken: owners.filter((m) => holders.has(m.id)).length };
}

/**
 * Whether a change from `before` to `after` keeps the account's way in: `ok`, or what it would
 * take away: the last account-wide owner (`owner`), or the last such owner's last token (`token`).
 * An account that had none of either (a fresh one the CLI is setting up) loses nothing.
 */
export function keepsWayIn(before: WayIn, after: WayIn): 'ok' | 'owner' | 'token' {
  if (before.owners > 0 && after.owners === 0) return 'owner';
  if (before.ownersWithToken > 0 && after.ownersWithToken === 0) return 'token';
  return 'ok';
}
