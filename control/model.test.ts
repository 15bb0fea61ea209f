import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { accountAccess, grantAccess, keepsWayIn, memberAccess, roles, seesMember, seesTokensOf, tokenIssueAccess, wayIn, type Grantee, type Principal, type Role } from './model.ts';

/**
 * The access rules as properties over any principal and any member: whatever they allow stays
 * within the principal's own role and own site list, in its own account.
 */

const rank: Record<Role, number> = { viewer: 0, admin: 1, owner: 2 };
const SITES = ['a.test', 'b.test', 'c.test'];
const ACCOUNTS = ['acc_1', 'acc_2'];

const sitesArb = fc.subarray(SITES);
const grantee = fc.record({ id: fc.constantFrom('mem_1', 'mem_2', 'mem_3'), accountId: fc.constantFrom(...ACCOUNTS), role: fc.constantFrom(...roles), sites: sitesArb });
const principal = grantee.map((g): Principal => ({ accountId: g.accountId, memberId: g.id, role: g.role, sites: g.sites, tokenHash: 'h' }));

/** The statement of the issue: a grant no wider than the principal's, with a role no higher. */
function within(p: Principal, role: Role, sites: readonly string[]): boolean {
  const sitesWithin = p.sites.length === 0 || (sites.length > 0 && sites.every((d) => p.sites.includes(d)));
  return rank[role] <= rank[p.role] && sitesWithin;
}

describe('access rules', () => {
  it('never give a role above the giver’s or sites beyond its own', () => {
    fc.assert(
      fc.property(principal, fc.constantFrom(...roles), sitesArb, (p, role, sites) => {
        if (grantAccess(p, role, sites) === 'ok') expect(within(p, role, sites)).toBe(true);
        // Admins give viewers only; viewers give nothing.
        if (p.role !== 'owner' && role !== 'viewer') expect(grantAccess(p, role, sites)).not.toBe('ok');
        if (p.role === 'viewer') expect(grantAccess(p, role, sites)).not.toBe('ok');
      }),
      { numRuns: 2000 },
    );
  });

  it('manage, issue tokens for and see the tokens of members only within the principal’s grant, in its account', () => {
    fc.assert(
      fc.property(principal, grantee, (p, m) => {
        const self = m.id === p.memberId && m.accountId === p.accountId;
        if (memberAccess(p, m) === 'ok') expect(m.accountId === p.accountId && within(p, m.role, m.sites)).toBe(true);
        if (tokenIssueAccess(p, m) === 'ok') expect(m.accountId === p.accountId && (self || within(p, m.role, m.sites))).toBe(true);
        if (seesTokensOf(p, m)) expect(m.accountId === p.accountId && (self || within(p, m.role, m.sites))).toBe(true);
        if (seesMember(p, m) && !self) expect(p.role !== 'viewer' && m.accountId === p.accountId).toBe(true);
        // Another account's member is never anything but "not found".
        if (m.accountId !== p.accountId) expect([memberAccess(p, m), tokenIssueAccess(p, m)]).toEqual(['not_found', 'not_found']);
      }),
      { numRuns: 2000 },
    );
  });

  it('act on the account (create sites) only with an account-wide grant', () => {
    fc.assert(
      fc.property(principal, (p) => {
        if (accountAccess(p, 'admin') === 'ok') expect(p.sites.length === 0 && p.role !== 'viewer').toBe(true);
      }),
    );
  });
});

describe('the way in', () => {
  const m = (id: string, role: Role, sites: string[] = []): Grantee => ({ id, accountId: 'acc_1', role, sites });

  it('counts account-wide owners, and those holding a live token', () => {
    const members = [m('o1', 'owner'), m('o2', 'owner'), m('so', 'owner', ['a.test']), m('ad', 'admin')];
    expect(wayIn(members, [{ memberId: 'o2' }, { memberId: 'so' }, { memberId: 'ad' }])).toEqual({ owners: 2, ownersWithToken: 1 });
  });

  it.each([
    [{ owners: 2, ownersWithToken: 1 }, { owners: 1, ownersWithToken: 1 }, 'ok'],
    [{ owners: 1, ownersWithToken: 1 }, { owners: 0, ownersWithToken: 0 }, 'owner'],
    [{ owners: 2, ownersWithToken: 1 }, { owners: 2, ownersWithToken: 0 }, 'token'],
    // An account being set up (owners without tokens yet) loses nothing by a change among them.
    [{ owners: 2, ownersWithToken: 0 }, { owners: 1, ownersWithToken: 0 }, 'ok'],
    [{ owners: 0, ownersWithToken: 0 }, { owners: 0, ownersWithToken: 0 }, 'ok'],
  ] as const)('%o → %o: %s', (before, after, expected) => {
    expect(keepsWayIn(before, after)).toBe(expected);
  });
});
