import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ControlPlane, type Member } from '../control/control-plane.ts';
import type { Role } from '../control/model.ts';
import { callText, startApiOnChdb, type ApiOnChdb } from '../api/experiments/testing/api-harness.ts';

/**
 * Privilege escalation through the member and token endpoints, against the real API on a real
 * port (chDB on a temp dir). Table: principal (owner | admin | viewer, account-wide | granted
 * a1.test) × action (rename, set role, set sites, remove, issue a token, revoke a token, create)
 * × target (itself; an owner, admin or viewer granted a1 (inside a per-site grant), a2 (outside),
 * a1+a2, or the whole account; another account's owner). The expected answer comes from the rule
 * as the issue states it, written here on its own: nobody grants, issues or changes anything
 * beyond its own role and its own site list, and what is out of scope is "not found". After every
 * call the stored target is checked: changed only on success, and then only to a grant the
 * principal could give. Another account's member answers byte for byte like one that never
 * existed. Then the account's way in: two owners demoting (removing, revoking) each other at once,
 * through one server and through two control planes on one store, always leave an account-wide
 * owner with a live token.
 */

const A1 = 'a1.test';
const A2 = 'a2.test';
const B1 = 'b1.test';
let api: ApiOnChdb;
let control: ControlPlane;
let accountA = '';
let accountB = '';
let ownerB: Member;
let seq = 0;
const uniq = (p: string): string => `${p}-${++seq}`;

interface Grant {
  readonly role: Role;
  readonly sites: readonly string[];
}

type Scope = 'wide' | 'a1';
interface Who {
  label: string;
  role: Role;
  sites: string[];
  member: Member;
  token: string;
}
const ROLES: readonly Role[] = ['owner', 'admin', 'viewer'];
const SCOPES: Record<Scope, string[]> = { wide: [], a1: [A1] };
const principals: Who[] = [];

const call = async (method: string, path: string, token: string, body?: unknown): Promise<{ status: number; text: string }> => callText(api.url, method, path, token, body);

async function seed(c: ControlPlane): Promise<void> {
  control = c;
  accountA = (await control.createAccount({ name: 'A' })).id;
  accountB = (await control.createAccount({ name: 'B' })).id;
  await control.addSite(accountA, { domain: A1 });
  await control.addSite(accountA, { domain: A2 });
  await control.addSite(accountB, { domain: B1 });
  // An owner nobody in the table touches: demoting or removing an account-wide owner is never
  // refused for being the last one here (that is tested on its own below).
  const keeper = await control.addMember(accountA, { name: 'keeper', role: 'owner' });
  await control.issueToken(keeper.id);
  ownerB = await control.addMember(accountB, { name: 'ownerB', role: 'owner' });
  await control.issueToken(ownerB.id);
  for (const role of ROLES) {
    for (const scope of ['wide', 'a1'] as const) {
      const member = await control.addMember(accountA, { name: `${role}-${scope}`, role, sites: SCOPES[scope] });
      principals.push({ label: `${role} (${scope === 'wide' ? 'account-wide' : 'a1 only'})`, role, sites: SCOPES[scope], member, token: (await control.issueToken(member.id)).token });
    }
  }
}

beforeAll(async () => {
  // The cache TTL served by default: writes must be authorized on the grant as stored, not as cached.
  api = await startApiOnChdb({ database: 'farol_escalation_test', cacheTtlMs: 5_000, seed });
});

afterAll(async () => {
  await api?.close();
});

// ---- the rule, as the issue states it ----------------------------------------------------------

/** A grant over `outer` holds one over `inner`: account-wide holds all; a list, a non-empty part of itself. */
const holds = (outer: readonly string[], inner: readonly string[]): boolean => outer.length === 0 || (inner.length > 0 && inner.every((d) => outer.includes(d)));
/** What a principal may hand out: an owner any role, an admin viewers, a viewer nothing; never beyond its own sites. */
const mayGive = (p: Grant, g: Grant): boolean => (p.role === 'owner' || (p.role === 'admin' && g.role === 'viewer')) && holds(p.sites, g.sites);
/** Whom a principal sees at all: itself, and (not a viewer) the members its own grant holds. */
const sees = (p: Grant, t: Grant, self: boolean): boolean => self || (p.role !== 'viewer' && holds(p.sites, t.sites));
const OWN_SITES = new Set([A1, A2]);

/** Expected answer for giving grant `g` (a new member, or a member's new grant). */
function grantStatus(p: Grant, g: Grant, ok: number): number {
  // Naming a site outside a per-site grant is "not found", like a site that does not exist.
  if (p.sites.length > 0 && g.sites.some((d) => !p.sites.includes(d))) return 404;
  if (!mayGive(p, g)) return 403;
  if (g.sites.some((d) => !OWN_SITES.has(d))) return 404;
  return ok;
}

// ---- targets and actions ------------------------------------------------------------------------

type TargetKind = 'self' | 'foreign' | `${Role}:${'a1' | 'a2' | 'a1+a2' | 'wide'}`;
const TARGET_SITES = { a1: [A1], a2: [A2], 'a1+a2': [A1, A2], wide: [] as string[] } as const;
const TARGETS: TargetKind[] = ['self', ...ROLES.flatMap((r) => (['a1', 'a2', 'a1+a2', 'wide'] as const).map((s) => `${r}:${s}` as TargetKind)), 'foreign'];

interface Target {
  member: Member;
  self: boolean;
  foreign: boolean;
  /** The token the call is made with: the principal's, or for `self` a fresh twin's. */
  actor: string;
}

/** A fresh target per case (or, for `self`, a fresh member with the principal's grant acting on itself). */
async function makeTarget(p: Who, kind: TargetKind): Promise<Target> {
  if (kind === 'foreign') return { member: ownerB, self: false, foreign: true, actor: p.token };
  if (kind === 'self') {
    const twin = await control.addMember(accountA, { name: uniq('self'), role: p.role, sites: p.sites });
    return { member: twin, self: true, foreign: false, actor: (await control.issueToken(twin.id)).token };
  }
  const [role, where] = kind.split(':') as [Role, keyof typeof TARGET_SITES];
  const member = await control.addMember(accountA, { name: uniq('t'), role, sites: [...TARGET_SITES[where]] });
  return { member, self: false, foreign: false, actor: p.token };
}

interface Action {
  name: string;
  /**
   * Runs the call; `absent` asks for the same call on something that does not exist: the member
   * (or token), or for a grant change the site it names.
   */
  run: (t: Target, absent?: 'member' | 'site') => Promise<{ status: number; text: string }>;
  /** The expected status for an in-account target (foreign ones are always 404). */
  expected: (p: Grant, t: Target) => number;
  /** The target's grant after a success (undefined: removed, or unchanged). */
  after?: (t: Target) => Grant | 'removed';
}

const ABSENT_ID = 'mem_doesnotexist';
const memberPath = (t: Target, absent?: 'member' | 'site'): string => `/api/v1/members/${absent === 'member' ? ABSENT_ID : t.member.id}`;

/** Status of acting on member `t` (rename, set grant, remove): seen, then managed. */
function managed(p: Grant, t: Target, ok: number): number {
  if (!sees(p, t.member, t.self)) return 404;
  return mayGive(p, t.member) ? ok : 403;
}

const actions: Action[] = [
  {
    name: 'rename',
    run: (t, absent) => call('PATCH', memberPath(t, absent), t.actor, { name: uniq('renamed') }),
    expected: (p, t) => managed(p, t, 200),
  },
  ...ROLES.map(
    (role): Action => ({
      name: `set role ${role}`,
      run: (t, absent) => call('PATCH', memberPath(t, absent), t.actor, { role }),
      expected: (p, t) => {
        const m = managed(p, t, 200);
        return m !== 200 ? m : grantStatus(p, { role, sites: [...t.member.sites] }, 200);
      },
      after: (t) => ({ role, sites: [...t.member.sites] }),
    }),
  ),
  ...[[A1], [A1, A2], [], [B1]].map(
    (sites): Action => ({
      name: `set sites [${sites.join(',')}]`,
      run: (t, absent) => call('PATCH', memberPath(t, absent), t.actor, { sites: absent === 'site' ? ['nope.test'] : sites }),
      expected: (p, t) => {
        const m = managed(p, t, 200);
        return m !== 200 ? m : grantStatus(p, { role: t.member.role, sites }, 200);
      },
      after: (t) => ({ role: t.member.role, sites }),
    }),
  ),
  {
    name: 'remove',
    run: (t, absent) => call('DELETE', memberPath(t, absent), t.actor),
    expected: (p, t) => managed(p, t, 204),
    after: () => 'removed',
  },
  {
    name: 'issue a token for it',
    run: (t, absent) => call('POST', '/api/v1/tokens', t.actor, { member_id: absent === 'member' ? ABSENT_ID : t.member.id }),
    expected: (p, t) => {
      if (!sees(p, t.member, t.self)) return 404;
      if (p.role === 'viewer') return 403;
      return t.self || mayGive(p, t.member) ? 201 : 403;
    },
  },
  {
    name: 'revoke its token',
    run: async (t, absent) => call('DELETE', `/api/v1/tokens/${absent ? 'farol_zzzzzz' : (await control.issueToken(t.member.id)).prefix}`, t.actor),
    expected: (p, t) => {
      if (!t.self && !(sees(p, t.member, false) && mayGive(p, t.member))) return 404;
      return p.role === 'viewer' ? 403 : 204;
    },
  },
];

function sameGrant(m: Member | null, g: Grant): boolean {
  return m !== null && m.role === g.role && [...m.sites].sort().join(',') === [...g.sites].sort().join(',');
}

// The table's cases run a few at a time (vitest's maxConcurrency): each acts on a target of its own
// (a fresh member, or a fresh twin for `self`; `foreign` is never changed), the principals are never
// targets, and the untouched keeper keeps the account-wide owner rule out of the way, so no case can
// change another's expected answer. The file is bound by chDB's per-query latency, not by CPU.
describe.concurrent('member and token actions: principal × action × target', () => {
  const table = ROLES.flatMap((role) =>
    (['wide', 'a1'] as const).flatMap((scope) => actions.flatMap((action) => TARGETS.map((target) => ({ role, scope, action, target })))),
  );
  it.each(table.map((c) => [`${c.role} (${c.scope}) · ${c.action.name} · ${c.target}`, c] as const))('%s', async (_label, { role, scope, action, target }) => {
    const p = principals.find((w) => w.role === role && w.sites.join() === SCOPES[scope].join());
    if (p === undefined) throw new Error('principal missing');
    const t = await makeTarget(p, target);
    const before = await control.member(t.member.id);
    const expected = t.foreign ? 404 : action.expected(p, t);
    const res = await action.run(t);
    expect(res.status, `${p.label} ${action.name} on ${target}: ${res.text}`).toBe(expected);

    const now = await control.member(t.member.id);
    const ok = res.status < 300;
    if (!ok || action.after === undefined) {
      // Refused, or an action that changes no grant: the target is as it was.
      expect(sameGrant(now, t.member)).toBe(true);
      expect(now?.name === before?.name || action.name === 'rename').toBe(true);
    } else {
      const g = action.after(t);
      if (g === 'removed') expect(now).toBeNull();
      else {
        expect(sameGrant(now, g)).toBe(true);
        // Whatever changed, the principal could have given it.
        expect(mayGive(p, g), `${p.label} gave ${JSON.stringify(g)}`).toBe(true);
      }
    }
    if (res.status === 404) {
      expect(res.text).not.toContain(t.member.id);
      // Out of scope is answered byte for byte like absent: the member, or the site a grant names.
      const absent = await action.run(t, res.text.includes('"field":"sites"') ? 'site' : 'member');
      expect(absent.status).toBe(404);
      expect(res.text).toBe(absent.text);
    }
  });
});

describe.concurrent('creating members: principal × grant', () => {
  const GRANTS: Array<{ name: string; sites: string[] }> = [
    { name: 'a1 (inside)', sites: [A1] },
    { name: 'a2 (outside)', sites: [A2] },
    { name: 'a1+a2', sites: [A1, A2] },
    { name: 'account-wide', sites: [] },
    { name: 'b1 (another account’s)', sites: [B1] },
    { name: 'nope (absent)', sites: ['nope.test'] },
  ];
  const table = ROLES.flatMap((role) => (['wide', 'a1'] as const).flatMap((scope) => ROLES.flatMap((newRole) => GRANTS.map((g) => ({ role, scope, newRole, g })))));
  it.each(table.map((c) => [`${c.role} (${c.scope}) creates ${c.newRole} on ${c.g.name}`, c] as const))('%s', async (_label, { role, scope, newRole, g }) => {
    const p = principals.find((w) => w.role === role && w.sites.join() === SCOPES[scope].join());
    if (p === undefined) throw new Error('principal missing');
    const name = uniq('new');
    const res = await call('POST', '/api/v1/members', p.token, { name, role: newRole, sites: g.sites });
    const expected = p.role === 'viewer' ? 403 : grantStatus(p, { role: newRole, sites: g.sites }, 201);
    expect(res.status, res.text).toBe(expected);
    const created = (await control.members(accountA)).find((m) => m.name === name);
    if (res.status === 201) expect(created !== undefined && mayGive(p, created)).toBe(true);
    else expect(created).toBeUndefined();
    if (res.status === 404) {
      // A site of another account and one of the principal's own account outside its grant read like an absent one.
      const absent = await call('POST', '/api/v1/members', p.token, { name, role: newRole, sites: ['nope.test'] });
      expect(res.text).toBe(absent.text);
      expect(res.text).not.toContain(g.sites.join());
    }
  });
});

describe('the report: a per-site owner cannot take over the account', () => {
  it('cannot create an account-wide owner, issue a token for another owner, widen itself or add a site', async () => {
    const me = await control.addMember(accountA, { name: uniq('site-owner'), role: 'owner', sites: [A1] });
    const token = (await control.issueToken(me.id)).token;
    const wideOwner = principals.find((w) => w.role === 'owner' && w.sites.length === 0);
    expect((await call('POST', '/api/v1/members', token, { name: 'boss', role: 'owner' })).status).toBe(403);
    expect((await call('POST', '/api/v1/tokens', token, { member_id: wideOwner?.member.id })).status).toBe(404);
    expect((await call('PATCH', `/api/v1/members/${me.id}`, token, { sites: [] })).status).toBe(403);
    expect((await call('PATCH', `/api/v1/members/${me.id}`, token, { sites: [A1, A2] })).status).toBe(404);
    expect((await call('POST', '/api/v1/sites', token, { domain: `${uniq('mine')}.test` })).status).toBe(403);
    expect((await call('DELETE', `/api/v1/members/${wideOwner?.member.id}`, token)).status).toBe(404);
    expect(sameGrant(await control.member(me.id), { role: 'owner', sites: [A1] })).toBe(true);
    const sites = JSON.parse((await call('GET', '/api/v1/sites', token)).text) as { sites: Array<{ domain: string }> };
    expect(sites.sites.map((s) => s.domain)).toEqual([A1]);
    // What it may do: run its own site, and give grants on it (an owner of a1, too).
    expect((await call('POST', '/api/v1/members', token, { name: uniq('co'), role: 'owner', sites: [A1] })).status).toBe(201);
    expect((await call('PATCH', `/api/v1/sites/${A1}`, token, { timezone: 'UTC' })).status).toBe(200);
  });
});

// ---- the account's way in -----------------------------------------------------------------------

/** Two account-wide owners with a token each, in a fresh account. */
async function twoOwners(cp: ControlPlane): Promise<{ account: string; a: Member; b: Member; ta: string; tb: string }> {
  const account = (await cp.createAccount({ name: uniq('race') })).id;
  const a = await cp.addMember(account, { name: 'a', role: 'owner' });
  const b = await cp.addMember(account, { name: 'b', role: 'owner' });
  return { account, a, b, ta: (await cp.issueToken(a.id)).token, tb: (await cp.issueToken(b.id)).token };
}

/** Account-wide owners that still hold a live token. */
async function usableOwners(account: string): Promise<string[]> {
  const holders = new Set((await control.tokens(account)).map((t) => t.memberId));
  return (await control.members(account)).filter((m) => m.role === 'owner' && m.sites.length === 0 && holders.has(m.id)).map((m) => m.id);
}

const ROUNDS = 15;

describe('the account keeps an owner', () => {
  it('the last account-wide owner cannot be demoted, narrowed or removed, nor lose its last token', async () => {
    const { a, b, ta, account } = await twoOwners(control);
    const own = `${uniq('own')}.test`;
    await control.addSite(account, { domain: own });
    expect((await call('DELETE', `/api/v1/members/${b.id}`, ta)).status).toBe(204);
    for (const [method, body] of [
      ['PATCH', { role: 'admin' }],
      ['PATCH', { sites: [own] }],
      ['DELETE', undefined],
    ] as const) {
      const res = await call(method, `/api/v1/members/${a.id}`, ta, body);
      expect([res.status, res.text]).toEqual([409, expect.stringContaining('keeps at least one account-wide owner')]);
    }
    const mine = (JSON.parse((await call('GET', '/api/v1/tokens', ta)).text) as { tokens: Array<{ prefix: string }> }).tokens;
    expect(mine).toHaveLength(1);
    const revoke = await call('DELETE', `/api/v1/tokens/${mine[0]?.prefix}`, ta);
    expect([revoke.status, revoke.text]).toEqual([409, expect.stringContaining('issue another first')]);
    // Another owner without a token is no way in: the one holding a token still cannot leave.
    const c = await control.addMember(account, { name: 'c', role: 'owner' });
    expect((await call('DELETE', `/api/v1/members/${a.id}`, ta)).status).toBe(409);
    await control.issueToken(c.id);
    expect((await call('DELETE', `/api/v1/members/${a.id}`, ta)).status).toBe(204);
    expect(await usableOwners(account)).toEqual([c.id]);
  });

  it(`two owners demoting each other at once, ${ROUNDS} times, through one server: one owner always remains`, async () => {
    for (let i = 0; i < ROUNDS; i++) {
      const { account, a, b, ta, tb } = await twoOwners(control);
      const results = await Promise.all([
        call('PATCH', `/api/v1/members/${b.id}`, ta, { role: 'admin' }),
        call('PATCH', `/api/v1/members/${a.id}`, tb, { role: 'viewer' }),
      ]);
      expect((await usableOwners(account)).length, JSON.stringify(results)).toBe(1);
      // One went first; the other, read again under the lock, is no longer an owner (403) or
      // would leave none (409).
      expect(results.map((r) => r.status).sort()).toEqual([200, expect.any(Number)]);
      expect([403, 409]).toContain(results.map((r) => r.status).sort()[1]);
    }
  });

  it(`two owners removing each other, or revoking each other's tokens, at once through one server (${ROUNDS} times)`, async () => {
    for (let i = 0; i < ROUNDS; i++) {
      const { account, a, b, ta, tb } = await twoOwners(control);
      const prefix = async (token: string): Promise<string> =>
        (JSON.parse((await call('GET', '/api/v1/tokens', token)).text) as { tokens: Array<{ prefix: string; member_id: string }> }).tokens.find((t) => t.member_id === (token === ta ? a.id : b.id))?.prefix ?? '';
      const [pa, pb] = await Promise.all([prefix(ta), prefix(tb)]);
      const results =
        i % 2 === 0
          ? await Promise.all([call('DELETE', `/api/v1/members/${b.id}`, ta), call('DELETE', `/api/v1/members/${a.id}`, tb)])
          : await Promise.all([call('DELETE', `/api/v1/tokens/${pb}`, ta), call('DELETE', `/api/v1/tokens/${pa}`, tb)]);
      expect((await usableOwners(account)).length, JSON.stringify(results)).toBe(1);
    }
  });

  it(`two control planes on one store (two processes' view) demoting, removing and revoking each other at once (${ROUNDS} times each)`, async () => {
    // Separate instances share no lock: only the check after the write keeps the invariant.
    const one = new ControlPlane(api.store, { cacheTtlMs: 0 });
    const two = new ControlPlane(api.store, { cacheTtlMs: 0 });
    const races: Array<(o: Awaited<ReturnType<typeof twoOwners>>) => [Promise<unknown>, Promise<unknown>]> = [
      (o) => [one.updateMember(o.b.id, { role: 'admin' }), two.updateMember(o.a.id, { role: 'admin' })],
      (o) => [one.removeMember(o.b.id), two.removeMember(o.a.id)],
      (o) => [one.updateMember(o.b.id, { role: 'viewer' }), two.removeMember(o.a.id)],
      (o) => {
        const token = async (cp: ControlPlane, m: Member): Promise<void> => {
          const t = (await cp.tokens(o.account)).find((x) => x.memberId === m.id);
          if (t !== undefined) await cp.revokeToken(t.hash);
        };
        return [token(one, o.b), token(two, o.a)];
      },
    ];
    for (const race of races) {
      for (let i = 0; i < ROUNDS; i++) {
        const o = await twoOwners(one);
        const outcomes = await Promise.allSettled(race(o));
        expect((await usableOwners(o.account)).length, JSON.stringify(outcomes)).toBeGreaterThanOrEqual(1);
        for (const r of outcomes) if (r.status === 'rejected') expect(String(r.reason)).toMatch(/keeps at least one account-wide owner/);
      }
    }
  });
});
