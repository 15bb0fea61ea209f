/**
 * The control plane's model (SPEC section 8): accounts own sites; members of an account hold one
 * role, account-wide (`sites: []`) or for a list of sites; an API token acts as its member.
 *
 * Access is decided here, in one place, for every endpoint:
 * - a site outside the principal's scope (another account's, or one of its own account's sites
 *   outside a per-site grant) is answered exactly like a site that does not exist (404), so a
 *   token never learns whether another account's site exists;
 * - a site in scope with too small a role is 403.
 */

export const roles = ['owner', 'admin', 'viewer'] as const;
export type Role = (typeof roles)[number];

/** What a request acts as: the member behind the bearer token. */
export interface Principal {
  readonly accountId: string;
  readonly memberId: string;
  readonly role: Role;
  /** The grant's scope: [] = every site of the account. */
  readonly sites: readonly string[];
  /** The token's hash (hex SHA-256), e.g. to revoke "this token". */
  readonly tokenHash: string;
}

export interface Site {
  readonly domain: string;
  readonly accountId: string;
  /** IANA time zone of the site's days and hours. */
  readonly timezone: string;
  readonly respectDnt: boolean;
}

/** What an action needs: reading stats, administering (sites, experiments, tokens), or owning. */
export type Need = 'read' | 'admin' | 'owner';

const rank: Record<Role, number> = { viewer: 0, admin: 1, owner: 2 };
const needRank: Record<Need, number> = { read: 0, admin: 1, owner: 2 };

/** Whether `site` is within the principal's scope at all (its account, and its grant). */
export function inScope(p: Principal, site: Site | null | undefined): site is Site {
  if (site === null || site === undefined) return false;
  if (site.accountId !== p.accountId) return false;
  return p.sites.length === 0 || p.sites.includes(site.domain);
}

/** `ok`, or why not: `not_found` (absent or out of scope, indistinguishable) or `forbidden`. */
export function siteAccess(p: Principal, site: Site | null | undefined, need: Need): 'ok' | 'not_found' | 'forbidden' {
  if (!inScope(p, site)) return 'not_found';
  return rank[p.role] >= needRank[need] ? 'ok' : 'forbidden';
}

/** Account-level actions (creating sites, members, listing the account): role only. */
export function accountAccess(p: Principal, need: Need): 'ok' | 'forbidden' {
  // A per-site grant is not an account-wide one: creating sites or members needs an account-wide
  // admin or the owner.
  if (need !== 'read' && p.sites.length > 0 && p.role !== 'owner') return 'forbidden';
  return rank[p.role] >= needRank[need] ? 'ok' : 'forbidden';
}
