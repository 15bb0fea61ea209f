import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ControlPlane, type Member } from '../control/control-plane.ts';
import type { Role } from '../control/model.ts';
import { hashPassword } from '../control/people.ts';
import { startApiOnChdb, type ApiOnChdb } from '../api/experiments/testing/api-harness.ts';

/**
 * Privilege escalation through the member and token endpoints, against the real API on a real
 * port (chDB on a temp dir), for machines (an API token in `Authorization: Bearer`) and for people
 * (a browser session: the cookie and the CSRF token the dashboard sends, minted through the real
 * password sign-in route). Table: credential (token | session) × principal (owner | admin | viewer,
 * account-wide | granted a1) × action (rename, set role, set sites, remove, issue a token, revoke a
 * token, create) × target (itself; an owner, admin or viewer granted a1 (inside a per-site grant),
 * a2 (outside), a1+a2, or the whole account; another account's owner). The expected answer comes
 * from the rule as the issue states it, written here on its own: nobody grants, issues or changes
 * anything beyond its own role and its own site list, and what is out of scope is "not found".
 * After every call the stored target is checked: changed only on success, and then only to a grant
 * the principal could give. Another account's member answers byte for byte like one that never
 * existed. Then what only sessions have (a cookie is never a bearer token nor a token a cookie; no
 * state changes without the CSRF token; a signed-out or expired session is nobody), and the
 * account's way in: two owners demoting (removing, revoking) each other at once, by token and by
 * session, through one server and through two control planes on one store, always leave an
 * account-wide owner with a live token.
 *
 * Speed (the file was ~140 s of CI for tokens alone): every principal has an account of its own
 * (a "world", with its own a1/a2 sites), so the control plane's per-account write lock, which made
 * the whole table one queue, now queues one principal's cases only, and the table is ordered so
 * that the cases in flight belong to different worlds; every case's target is made in one insert
 * per world before the table runs (ControlPlane.addMembers) instead of two queries under the lock
 * per case. Sessions are minted once per person through the sign-in route.
 */

const B1 = 'b1.test';
const PASSWORD = 'escalation test password';
let api: ApiOnChdb;
let control: ControlPlane;
let passwordHash = '';
/** Moves the control plane's clock (session expiry); only the last test touches it. */
let skew = 0;
let accountB = '';
let ownerB: Member;
let seq = 0;
const uniq = (p: string): string => `${p}-${++seq}`;

interface Grant {
  readonly role: Role;
  readonly sites: readonly string[];
}

type Kind = 'token' | 'session';
const KINDS: readonly Kind[] = ['token', 'session'];

/** How a request authenticates: a bearer token, or a session cookie with its CSRF token. */
interface Cred {
  kind: Kind;
  /** The token, or the session cookie's secret. */
  secret: string;
  csrf: string;
}

type Scope = 'wide' | 'a1';
const ROLES: readonly Role[] = ['owner', 'admin', 'viewer'];
const SCOPE_NAMES: readonly Scope[] = ['wide', 'a1'];

/** One principal in an account of its own. */
interface World {
  index: number;
  kind: Kind;
  account: string;
  a1: string;
  a2: string;
  own: ReadonlySet<string>;
  label: string;
  role: Role;
  sites: string[];
  member: Member;
  cred: Cred;
}
const worlds: World[] = [];
const worldOf = (kind: Kind, role: Role, scope: Scope): World => {
  const w = worlds.find((x) => x.kind === kind && x.role === role && x.sites.length === (scope === 'wide' ? 0 : 1));
  if (w === undefined) throw new Error('world missing');
  return w;
};

/** A request with a credential; `csrf: false` leaves the session's CSRF token out. */
async function call(method: string, path: string, cred: Cred, body?: unknown, opts: { csrf?: boolean } = {}): Promise<{ status: number; text: string }> {
  const headers: Record<string, string> = {};
  if (cred.kind === 'token') headers['authorization'] = `Bearer ${cred.secret}`;
  else {
    headers['cookie'] = `farol_session=${cred.secret}`;
    if (opts.csrf !== false && method !== 'GET') headers['x-csrf-token'] = cred.csrf;
  }
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(`${api.url}${path}`, { method, headers, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
  return { status: res.status, text: await res.text() };
}

/** Signs a member in through the real password route (giving it an email and the test's password first). */
async function sessionOf(m: Member): Promise<Cred> {
  const email = `${uniq('p')}@people.test`;
  await control.people.setIdentity(m.id, m.accountId, { email, passwordHash });
  const res = await fetch(`${api.url}/api/v1/auth/password`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ email, password: PASSWORD }) });
  const json = (await res.json()) as { csrf?: string };
  const secret = /^farol_session=([^;]+)/.exec(res.headers.getSetCookie()[0] ?? '')?.[1];
  if (res.status !== 200 || secret === undefined || json.csrf === undefined) throw new Error(`sign-in failed: ${res.status}`);
  return { kind: 'session', secret, csrf: json.csrf };
}

/** A credential of the kind for a member. */
async function credOf(kind: Kind, m: Member): Promise<Cred> {
  return kind === 'token' ? { kind, secret: (await control.issueToken(m.id)).token, csrf: '' } : sessionOf(m);
}

// ---- the rule, as the issue states it ----------------------------------------------------------

/** A grant over `outer` holds one over `inner`: account-wide holds all; a list, a non-empty part of itself. */
const holds = (outer: readonly string[], inner: readonly string[]): boolean => outer.length === 0 || (inner.length > 0 && inner.every((d) => outer.includes(d)));
/** What a principal may hand out: an owner any role, an admin viewers, a viewer nothing; never beyond its own sites. */
const mayGive = (p: Grant, g: Grant): boolean => (p.role === 'owner' || (p.role === 'admin' && g.role === 'viewer')) && holds(p.sites, g.sites);
/** Whom a principal sees at all: itself, and (not a viewer) the members its own grant holds. */
const sees = (p: Grant, t: Grant, self: boolean): boolean => self || (p.role !== 'viewer' && holds(p.sites, t.sites));

/** Expected answer for giving grant `g` (a new member, or a member's new grant) in world `w`. */
function grantStatus(w: World, g: Grant, ok: number): number {
  // Naming a site outside a per-site grant is "not found", like a site that does not exist.
  if (w.sites.length > 0 && g.sites.some((d) => !w.sites.includes(d))) return 404;
  if (!mayGive(w, g)) return 403;
  if (g.sites.some((d) => !w.own.has(d))) return 404;
  return ok;
}

// ---- targets and actions ------------------------------------------------------------------------

type SiteName = 'a1' | 'a2' | 'b1';
const sitesIn = (w: World, names: readonly SiteName[]): string[] => names.map((n) => (n === 'a1' ? w.a1 : n === 'a2' ? w.a2 : B1));

type TargetKind = 'self' | 'foreign' | `${Role}:${'a1' | 'a2' | 'a1+a2' | 'wide'}`;
const TARGET_SITES: Record<'a1' | 'a2' | 'a1+a2' | 'wide', SiteName[]> = { a1: ['a1'], a2: ['a2'], 'a1+a2': ['a1', 'a2'], wide: [] };
const TARGETS: TargetKind[] = ['self', ...ROLES.flatMap((r) => (['a1', 'a2', 'a1+a2', 'wide'] as const).map((s) => `${r}:${s}` as TargetKind)), 'foreign'];

interface Target {
  member: Member;
  self: boolean;
  foreign: boolean;
  /** The credential the call is made with: the principal's, or for `self` a fresh twin's. */
  actor: Cred;
}

interface Action {
  name: string;
  /**
   * Runs the call; `absent` asks for the same call on something that does not exist: the member
   * (or token), or for a grant change the site it names.
   */
  run: (w: World, t: Target, absent?: 'member' | 'site', opts?: { csrf?: boolean }) => Promise<{ status: number; text: string }>;
  /** The expected status for an in-account target (foreign ones are always 404). */
  expected: (w: World, t: Target) => number;
  /** The target's grant after a success (undefined: removed, or unchanged). */
  after?: (w: World, t: Target) => Grant | 'removed';
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
    run: (_w, t, absent, o) => call('PATCH', memberPath(t, absent), t.actor, { name: uniq('renamed') }, o),
    expected: (w, t) => managed(w, t, 200),
  },
  ...ROLES.map(
    (role): Action => ({
      name: `set role ${role}`,
      run: (_w, t, absent, o) => call('PATCH', memberPath(t, absent), t.actor, { role }, o),
      expected: (w, t) => {
        const m = managed(w, t, 200);
        return m !== 200 ? m : grantStatus(w, { role, sites: [...t.member.sites] }, 200);
      },
      after: (_w, t) => ({ role, sites: [...t.member.sites] }),
    }),
  ),
  ...([['a1'], ['a1', 'a2'], [], ['b1']] as SiteName[][]).map(
    (names): Action => ({
      name: `set sites [${names.join(',')}]`,
      run: (w, t, absent, o) => call('PATCH', memberPath(t, absent), t.actor, { sites: absent === 'site' ? ['nope.test'] : sitesIn(w, names) }, o),
      expected: (w, t) => {
        const m = managed(w, t, 200);
        return m !== 200 ? m : grantStatus(w, { role: t.member.role, sites: sitesIn(w, names) }, 200);
      },
      after: (w, t) => ({ role: t.member.role, sites: sitesIn(w, names) }),
    }),
  ),
  {
    name: 'remove',
    run: (_w, t, absent, o) => call('DELETE', memberPath(t, absent), t.actor, undefined, o),
    expected: (w, t) => managed(w, t, 204),
    after: () => 'removed',
  },
  {
    name: 'issue a token for it',
    run: (_w, t, absent, o) => call('POST', '/api/v1/tokens', t.actor, { member_id: absent === 'member' ? ABSENT_ID : t.member.id }, o),
    expected: (w, t) => {
      if (!sees(w, t.member, t.self)) return 404;
      if (w.role === 'viewer') return 403;
      return t.self || mayGive(w, t.member) ? 201 : 403;
    },
  },
  {
    name: 'revoke its token',
    run: async (_w, t, absent, o) => call('DELETE', `/api/v1/tokens/${absent ? 'farol_zzzzzz' : (await control.issueToken(t.member.id)).prefix}`, t.actor, undefined, o),
    expected: (w, t) => {
      if (!t.self && !(sees(w, t.member, false) && mayGive(w, t.member))) return 404;
      return w.role === 'viewer' ? 403 : 204;
    },
  },
];

/** The targets of the table, made before it runs: `${world}|${action}|${target}` → target. */
const targets = new Map<string, Target>();
const targetKey = (w: World, action: Action, kind: TargetKind): string => `${w.index}|${action.name}|${kind}`;
function targetOf(w: World, action: Action, kind: TargetKind): Target {
  const t = targets.get(targetKey(w, action, kind));
  if (t === undefined) throw new Error('target missing');
  return t;
}

/** A fresh target member in `w` for every action × target kind, and a twin of the principal per action (for `self`), in one insert. */
async function makeTargets(w: World): Promise<void> {
  const plan: Array<{ action: Action; kind: TargetKind; input: { name: string; role: Role; sites: string[] } }> = [];
  for (const action of actions) {
    for (const kind of TARGETS) {
      if (kind === 'foreign') continue;
      if (kind === 'self') plan.push({ action, kind, input: { name: uniq('self'), role: w.role, sites: w.sites } });
      else {
        const [role, where] = kind.split(':') as [Role, keyof typeof TARGET_SITES];
        plan.push({ action, kind, input: { name: uniq('t'), role, sites: sitesIn(w, TARGET_SITES[where]) } });
      }
    }
  }
  const made = await control.addMembers(w.account, plan.map((p) => p.input));
  await Promise.all(
    plan.map(async ({ action, kind }, i) => {
      const member = made[i] as Member;
      const self = kind === 'self';
      targets.set(targetKey(w, action, kind), { member, self, foreign: false, actor: self ? await credOf(w.kind, member) : w.cred });
    }),
  );
  for (const action of actions) targets.set(targetKey(w, action, 'foreign'), { member: ownerB, self: false, foreign: true, actor: w.cred });
}

async function makeWorld(index: number, kind: Kind, role: Role, scope: Scope): Promise<World> {
  const account = (await control.createAccount({ name: `${kind}-${role}-${scope}` })).id;
  const a1 = `a1-w${index}.test`;
  const a2 = `a2-w${index}.test`;
  await control.addSite(account, { domain: a1 });
  await control.addSite(account, { domain: a2 });
  // An owner nobody in the table touches: demoting or removing an account-wide owner is never
  // refused for being the last one here (that is tested on its own below).
  const keeper = await control.addMember(account, { name: 'keeper', role: 'owner' });
  await control.issueToken(keeper.id);
  const sites = scope === 'wide' ? [] : [a1];
  const member = await control.addMember(account, { name: `${role}-${scope}`, role, sites });
  const label = `${role} (${scope === 'wide' ? 'account-wide' : 'a1 only'}) by ${kind}`;
  const w: World = { index, kind, account, a1, a2, own: new Set([a1, a2]), label, role, sites, member, cred: await credOf(kind, member) };
  await makeTargets(w);
  return w;
}

beforeAll(async () => {
  // The cache TTL served by default: writes must be authorized on the grant as stored, not as cached.
  api = await startApiOnChdb({
    database: 'farol_escalation_test',
    cacheTtlMs: 5_000,
    control: { now: () => Date.now() + skew, sessionPolicy: { idleMs: 3_600_000, absoluteMs: 4 * 3_600_000 } },
    seed: async (c) => {
      control = c;
      accountB = (await c.createAccount({ name: 'B' })).id;
      await c.addSite(accountB, { domain: B1 });
      ownerB = await c.addMember(accountB, { name: 'ownerB', role: 'owner' });
      await c.issueToken(ownerB.id);
      passwordHash = await hashPassword(PASSWORD);
    },
  });
  const plan = KINDS.flatMap((kind) => ROLES.flatMap((role) => SCOPE_NAMES.map((scope) => ({ kind, role, scope }))));
  worlds.push(...(await Promise.all(plan.map(async (p, i) => makeWorld(i, p.kind, p.role, p.scope)))));
});

afterAll(async () => {
  await api?.close();
});

/**
 * The answer to a call on something absent, asked once per credential and call: it is the same
 * request every time (the absent id or site is fixed), and out-of-scope answers are compared with it.
 */
const absentAnswers = new Map<string, Promise<{ status: number; text: string }>>();
function once(key: string, ask: () => Promise<{ status: number; text: string }>): Promise<{ status: number; text: string }> {
  let p = absentAnswers.get(key);
  if (p === undefined) absentAnswers.set(key, (p = ask()));
  return p;
}

/** What each case of the tables left stored, checked all at once after them ("the table, read back"). */
const left: Array<{ account: string; label: string; id: string; stored: 'removed' | { grant: Grant; name: string | undefined } }> = [];
const creations: Array<{ account: string; label: string; name: string }> = [];

function sameGrant(m: Member | null, g: Grant): boolean {
  return m !== null && m.role === g.role && [...m.sites].sort().join(',') === [...g.sites].sort().join(',');
}

/** Cases ordered world-minor: the few in flight at once (vitest's maxConcurrency) are of different worlds, so they never wait for each other's account lock. */
function interleaved<T extends { kind: Kind; role: Role; scope: Scope }>(perWorld: (kind: Kind, role: Role, scope: Scope) => T[]): T[] {
  const lists = KINDS.flatMap((kind) => ROLES.flatMap((role) => SCOPE_NAMES.map((scope) => perWorld(kind, role, scope))));
  const out: T[] = [];
  for (let i = 0; i < Math.max(...lists.map((l) => l.length)); i++) for (const l of lists) if (l[i] !== undefined) out.push(l[i] as T);
  return out;
}

// Each case acts on a target of its own (a fresh member, or a fresh twin for `self`; `foreign` is
// never changed), the principals are never targets, and each world's untouched keeper keeps the
// account-wide owner rule out of the way, so no case can change another's expected answer.
describe.concurrent('member and token actions: credential × principal × action × target', () => {
  const table = interleaved((kind, role, scope) => actions.flatMap((action) => TARGETS.map((target) => ({ kind, role, scope, action, target }))));
  it.each(table.map((c) => [`${c.kind} · ${c.role} (${c.scope}) · ${c.action.name} · ${c.target}`, c] as const))('%s', async (_label, { kind, role, scope, action, target }) => {
    const w = worldOf(kind, role, scope);
    const t = targetOf(w, action, target);
    const expected = t.foreign ? 404 : action.expected(w, t);
    const res = await action.run(w, t);
    expect(res.status, `${w.label} ${action.name} on ${target}: ${res.text}`).toBe(expected);

    const ok = res.status < 300;
    const label = `${w.label} ${action.name} on ${target} (${res.status})`;
    if (!ok || action.after === undefined) {
      // Refused, or an action that changes no grant: the target is as it was (a rename renames).
      left.push({ account: t.member.accountId, label, id: t.member.id, stored: { grant: t.member, name: ok && action.name === 'rename' ? undefined : t.member.name } });
    } else {
      const g = action.after(w, t);
      if (g !== 'removed') expect(mayGive(w, g), `${w.label} gave ${JSON.stringify(g)}`).toBe(true);
      // Whatever changed, the principal could have given it (checked above); stored as the case left it.
      left.push({ account: t.member.accountId, label, id: t.member.id, stored: g === 'removed' ? 'removed' : { grant: g, name: t.member.name } });
    }
    if (res.status === 404) {
      expect(res.text).not.toContain(t.member.id);
      // Out of scope is answered byte for byte like absent: the member, or the site a grant names.
      const what = res.text.includes('"field":"sites"') ? 'site' : 'member';
      const absent = await once(`${t.actor.secret}|${action.name}|${what}`, async () => action.run(w, t, what));
      expect(absent.status).toBe(404);
      expect(res.text).toBe(absent.text);
    }
  });
});

describe.concurrent('creating members: credential × principal × grant', () => {
  const GRANTS: Array<{ name: string; sites: SiteName[] | 'nope' }> = [
    { name: 'a1 (inside)', sites: ['a1'] },
    { name: 'a2 (outside)', sites: ['a2'] },
    { name: 'a1+a2', sites: ['a1', 'a2'] },
    { name: 'account-wide', sites: [] },
    { name: 'b1 (another account’s)', sites: ['b1'] },
    { name: 'nope (absent)', sites: 'nope' },
  ];
  const table = interleaved((kind, role, scope) => ROLES.flatMap((newRole) => GRANTS.map((g) => ({ kind, role, scope, newRole, g }))));
  it.each(table.map((c) => [`${c.kind} · ${c.role} (${c.scope}) creates ${c.newRole} on ${c.g.name}`, c] as const))('%s', async (_label, { kind, role, scope, newRole, g }) => {
    const w = worldOf(kind, role, scope);
    const sites = g.sites === 'nope' ? ['nope.test'] : sitesIn(w, g.sites);
    const name = uniq('new');
    const res = await call('POST', '/api/v1/members', w.cred, { name, role: newRole, sites });
    const expected = w.role === 'viewer' ? 403 : grantStatus(w, { role: newRole, sites }, 201);
    expect(res.status, res.text).toBe(expected);
    if (res.status === 201) {
      const m = (JSON.parse(res.text) as { member: { id: string; role: Role; sites: string[] } }).member;
      expect(mayGive(w, m)).toBe(true);
      left.push({ account: w.account, label: `${w.label} created ${name}`, id: m.id, stored: { grant: { role: newRole, sites }, name } });
    } else creations.push({ account: w.account, label: `${w.label} refused ${name} (${res.status})`, name });
    if (res.status === 404) {
      // A site of another account and one of the principal's own account outside its grant read like an absent one.
      const absent = await once(`${w.cred.secret}|create ${newRole}`, async () => call('POST', '/api/v1/members', w.cred, { name, role: newRole, sites: ['nope.test'] }));
      expect(res.text).toBe(absent.text);
      expect(res.text).not.toContain(sites.join());
    }
  });
});

// Every case above acts on a target no other case or test touches (a fresh member; a fresh twin
// for `self`; `foreign`, another account's owner, only ever refused), so what is stored now is
// what each case left: it is read back for all cases at once (one read per account instead of
// one per case) and checked case by case.
describe('the table, read back', () => {
  it('every target is stored as its case left it: changed only on success, refused creations absent', async () => {
    const stored = new Map<string, Member>();
    for (const account of new Set([...left.map((l) => l.account), ...creations.map((c) => c.account)])) for (const m of await control.members(account)) stored.set(m.id, m);
    expect(left.length).toBe(2 * ROLES.length * SCOPE_NAMES.length * (actions.length * TARGETS.length + ROLES.length * 6) - creations.length);
    const wrong: string[] = [];
    for (const l of left) {
      const now = stored.get(l.id) ?? null;
      if (l.stored === 'removed' ? now !== null : !sameGrant(now, l.stored.grant) || (l.stored.name !== undefined && now?.name !== l.stored.name)) {
        wrong.push(`${l.label}: ${JSON.stringify(now)}`);
      }
    }
    const names = new Set([...stored.values()].map((m) => m.name));
    for (const c of creations) if (names.has(c.name)) wrong.push(`${c.label}: created anyway`);
    expect(wrong).toEqual([]);
  });
});

describe.concurrent('the report: a per-site owner cannot take over the account', () => {
  it.each(KINDS)('by %s: cannot create an account-wide owner, issue a token for another owner, widen itself or add a site', async (kind) => {
    const w = worldOf(kind, 'owner', 'wide');
    const [A1, A2] = [w.a1, w.a2];
    const me = await control.addMember(w.account, { name: uniq('site-owner'), role: 'owner', sites: [A1] });
    const cred = await credOf(kind, me);
    expect((await call('POST', '/api/v1/members', cred, { name: 'boss', role: 'owner' })).status).toBe(403);
    expect((await call('POST', '/api/v1/tokens', cred, { member_id: w.member.id })).status).toBe(404);
    expect((await call('PATCH', `/api/v1/members/${me.id}`, cred, { sites: [] })).status).toBe(403);
    expect((await call('PATCH', `/api/v1/members/${me.id}`, cred, { sites: [A1, A2] })).status).toBe(404);
    expect((await call('POST', '/api/v1/sites', cred, { domain: `${uniq('mine')}.test` })).status).toBe(403);
    expect((await call('DELETE', `/api/v1/members/${w.member.id}`, cred)).status).toBe(404);
    expect(sameGrant(await control.member(me.id), { role: 'owner', sites: [A1] })).toBe(true);
    const sites = JSON.parse((await call('GET', '/api/v1/sites', cred)).text) as { sites: Array<{ domain: string }> };
    expect(sites.sites.map((s) => s.domain)).toEqual([A1]);
    // What it may do: run its own site, and give grants on it (an owner of a1, too).
    expect((await call('POST', '/api/v1/members', cred, { name: uniq('co'), role: 'owner', sites: [A1] })).status).toBe(201);
    expect((await call('PATCH', `/api/v1/sites/${A1}`, cred, { timezone: 'UTC' })).status).toBe(200);
  });
});

// ---- what only sessions have --------------------------------------------------------------------

const sessionWorlds = (): World[] => worlds.filter((w) => w.kind === 'session');
const code = (r: { text: string }): string => (JSON.parse(r.text) as { error?: { code?: string } }).error?.code ?? '';

describe('sessions: cookies, bearer tokens and CSRF', () => {
  it('a session cookie is never a bearer token, and an API token never a cookie', async () => {
    for (const w of sessionWorlds()) {
      const asBearer = await call('GET', '/api/v1/members', { kind: 'token', secret: w.cred.secret, csrf: '' });
      expect([asBearer.status, code(asBearer)]).toEqual([401, 'API_UNAUTHORIZED']);
      const tw = worldOf('token', w.role, w.sites.length === 0 ? 'wide' : 'a1');
      for (const name of ['farol_session', '__Host-farol_session']) {
        const res = await fetch(`${api.url}/api/v1/members`, { headers: { cookie: `${name}=${tw.cred.secret}` } });
        expect(res.status).toBe(401);
      }
      expect((await call('GET', '/api/v1/sites', w.cred)).status).toBe(200);
    }
  });

  it.concurrent.each(ROLES.flatMap((role) => SCOPE_NAMES.map((scope) => [`${role} (${scope})`, role, scope] as const)))(
    '%s: every state-changing call of the table without the CSRF token, or with another session’s, is refused and changes nothing',
    async (_label, role, scope) => {
      const w = worldOf('session', role, scope);
      const other = worldOf('session', role === 'owner' ? 'admin' : 'owner', scope).cred;
      const [fresh] = await control.addMembers(w.account, [{ name: uniq('csrf'), role: 'viewer', sites: [w.a1] }]);
      const t: Target = { member: fresh as Member, self: false, foreign: false, actor: w.cred };
      for (const action of actions) {
        for (const res of [await action.run(w, t, undefined, { csrf: false }), await action.run(w, { ...t, actor: { ...w.cred, csrf: other.csrf } })]) {
          expect([res.status, code(res)], `${w.label} ${action.name}`).toEqual([403, 'API_CSRF']);
          const now = await control.member(t.member.id);
          expect(sameGrant(now, t.member) && now?.name === t.member.name).toBe(true);
        }
      }
      const create = await call('POST', '/api/v1/members', w.cred, { name: uniq('nocsrf'), role: 'viewer', sites: [w.a1] }, { csrf: false });
      expect([create.status, code(create)]).toEqual([403, 'API_CSRF']);
      // The same session with its token: the answer the rule gives (the CSRF token was all that was missing).
      const renamed = await actions[0]?.run(w, t);
      expect(renamed?.status).toBe(actions[0]?.expected(w, t));
    },
  );

  it('a signed-out session is nobody, and signing one out leaves the person’s other sessions', async () => {
    for (const w of sessionWorlds()) {
      const second = await sessionOf(w.member);
      expect((await call('GET', '/api/v1/members', second)).status).toBe(w.role === 'viewer' ? 403 : 200);
      expect((await call('POST', '/api/v1/auth/signout', second)).status).toBe(204);
      for (const [method, path, body] of [
        ['GET', '/api/v1/members', undefined],
        ['POST', '/api/v1/members', { name: uniq('late'), role: 'viewer', sites: [w.a1] }],
        ['PATCH', `/api/v1/members/${w.member.id}`, { name: 'late' }],
      ] as const) {
        const res = await call(method, path, second, body);
        expect([res.status, code(res)]).toEqual([401, 'API_UNAUTHORIZED']);
      }
      expect((await call('GET', '/api/v1/sites', w.cred)).status).toBe(200);
    }
  });
});

// ---- the account's way in -----------------------------------------------------------------------

/** Two account-wide owners with a token each (and, by session, signed in), in a fresh account. */
async function twoOwners(cp: ControlPlane, kind: Kind = 'token'): Promise<{ account: string; a: Member; b: Member; ca: Cred; cb: Cred }> {
  const account = (await cp.createAccount({ name: uniq('race') })).id;
  const [a, b] = (await cp.addMembers(account, [
    { name: 'a', role: 'owner' },
    { name: 'b', role: 'owner' },
  ])) as [Member, Member];
  const [ta, tb] = (await Promise.all([a, b].map(async (m) => (await cp.issueToken(m.id)).token))) as [string, string];
  if (kind === 'token') return { account, a, b, ca: { kind, secret: ta, csrf: '' }, cb: { kind, secret: tb, csrf: '' } };
  const [ca, cb] = await Promise.all([sessionOf(a), sessionOf(b)]);
  return { account, a, b, ca, cb };
}

/** Account-wide owners that still hold a live token. */
async function usableOwners(account: string): Promise<string[]> {
  const holders = new Set((await control.tokens(account)).map((t) => t.memberId));
  return (await control.members(account)).filter((m) => m.role === 'owner' && m.sites.length === 0 && holders.has(m.id)).map((m) => m.id);
}

/**
 * Rounds of each race. Through one server the account's lock orders the two calls, and without it
 * they overlap in nearly every round (removing the lock fails these tests within 5 rounds), so 5
 * find that class of bug; two control planes share no lock and meet by chance: 15 each.
 */
const ONE_SERVER_ROUNDS = 5;
const ROUNDS = 15;

// The tests of this block each work in accounts of their own: they run side by side.
describe.concurrent('the account keeps an owner', () => {
  it.each(KINDS)('by %s: the last account-wide owner cannot be demoted, narrowed or removed, nor lose its last token', async (kind) => {
    const { a, b, ca, account } = await twoOwners(control, kind);
    const own = `${uniq('own')}.test`;
    await control.addSite(account, { domain: own });
    expect((await call('DELETE', `/api/v1/members/${b.id}`, ca)).status).toBe(204);
    for (const [method, body] of [
      ['PATCH', { role: 'admin' }],
      ['PATCH', { sites: [own] }],
      ['DELETE', undefined],
    ] as const) {
      const res = await call(method, `/api/v1/members/${a.id}`, ca, body);
      expect([res.status, res.text]).toEqual([409, expect.stringContaining('keeps at least one account-wide owner')]);
    }
    const mine = (JSON.parse((await call('GET', '/api/v1/tokens', ca)).text) as { tokens: Array<{ prefix: string }> }).tokens;
    expect(mine).toHaveLength(1);
    const revoke = await call('DELETE', `/api/v1/tokens/${mine[0]?.prefix}`, ca);
    expect([revoke.status, revoke.text]).toEqual([409, expect.stringContaining('issue another first')]);
    // Another owner without a token is no way in: the one holding a token still cannot leave.
    const c = await control.addMember(account, { name: 'c', role: 'owner' });
    expect((await call('DELETE', `/api/v1/members/${a.id}`, ca)).status).toBe(409);
    await control.issueToken(c.id);
    expect((await call('DELETE', `/api/v1/members/${a.id}`, ca)).status).toBe(204);
    expect(await usableOwners(account)).toEqual([c.id]);
  });

  it.each(KINDS)(`by %s: two owners demoting each other at once, ${ONE_SERVER_ROUNDS} times, through one server: one owner always remains`, async (kind) => {
    for (let i = 0; i < ONE_SERVER_ROUNDS; i++) {
      const { account, a, b, ca, cb } = await twoOwners(control, kind);
      const results = await Promise.all([call('PATCH', `/api/v1/members/${b.id}`, ca, { role: 'admin' }), call('PATCH', `/api/v1/members/${a.id}`, cb, { role: 'viewer' })]);
      expect((await usableOwners(account)).length, JSON.stringify(results)).toBe(1);
      // One went first; the other, read again under the lock, is no longer an owner (403) or
      // would leave none (409); or, demoted before its own request was authorised, sees no
      // members at all any more, as any viewer (404). With statements side by side (the embedded
      // engine's reads no longer queue behind each other) that order happens too.
      expect(results.map((r) => r.status).sort()).toEqual([200, expect.any(Number)]);
      expect([403, 404, 409]).toContain(results.map((r) => r.status).sort()[1]);
    }
  });

  it.each(KINDS)(`by %s: two owners removing each other, or revoking each other's tokens, at once through one server (${ONE_SERVER_ROUNDS} times)`, async (kind) => {
    for (let i = 0; i < ONE_SERVER_ROUNDS; i++) {
      const { account, a, b, ca, cb } = await twoOwners(control, kind);
      const prefix = async (cred: Cred, of: Member): Promise<string> =>
        (JSON.parse((await call('GET', '/api/v1/tokens', cred)).text) as { tokens: Array<{ prefix: string; member_id: string }> }).tokens.find((t) => t.member_id === of.id)?.prefix ?? '';
      const [pa, pb] = await Promise.all([prefix(ca, a), prefix(cb, b)]);
      const results =
        i % 2 === 0
          ? await Promise.all([call('DELETE', `/api/v1/members/${b.id}`, ca), call('DELETE', `/api/v1/members/${a.id}`, cb)])
          : await Promise.all([call('DELETE', `/api/v1/tokens/${pb}`, ca), call('DELETE', `/api/v1/tokens/${pa}`, cb)]);
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

// Last: it moves the control plane's clock past every session's idle time.
describe('sessions: expiry', () => {
  it('an expired session is nobody; the same person’s token still works', async () => {
    skew += 61 * 60_000;
    for (const w of sessionWorlds()) {
      const res = await call('GET', '/api/v1/members', w.cred);
      expect([res.status, code(res)]).toEqual([401, 'API_UNAUTHORIZED']);
      const write = await call('PATCH', `/api/v1/members/${w.member.id}`, w.cred, { name: 'expired' });
      expect(write.status).toBe(401);
      const tw = worldOf('token', w.role, w.sites.length === 0 ? 'wide' : 'a1');
      expect((await call('GET', '/api/v1/sites', tw.cred)).status).toBe(200);
    }
  });
});
