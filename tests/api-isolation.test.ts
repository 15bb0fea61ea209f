import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ControlPlane, Member } from '../control/control-plane.ts';
import type { Role } from '../control/model.ts';
import { csrfTokenOf } from '../control/people.ts';
import { callText, startApiOnChdb, type ApiOnChdb } from '../api/experiments/testing/api-harness.ts';

/**
 * Tenant isolation of every API endpoint, against the real API on a real port (chDB on a temp
 * dir): two accounts; in account A an owner, an admin and a viewer account-wide, and an owner, an
 * admin and a viewer granted one site (a site list binds every role, the owner's too). Every
 * site endpoint × principal × target (own site, own site outside a per-site grant, another
 * account's site, a site that does not exist) must answer the expected
 * 200/201/204 | 403 | 404, and a foreign target exactly like an absent one (same status, same
 * bytes, the domain never echoed). Member and token endpoints likewise with foreign/absent ids.
 * No token and a revoked token are 401 everywhere. A new endpoint is one row in a table.
 * The two matrices run twice: with each principal's API token, and with a browser session of the
 * same member (its cookie and CSRF token), so people signed in see exactly what their tokens do.
 */

let api: ApiOnChdb;
let control: ControlPlane;

type Who = 'owner' | 'admin' | 'viewer' | 'siteOwner' | 'siteAdmin' | 'siteViewer';
const WHO: readonly Who[] = ['owner', 'admin', 'viewer', 'siteOwner', 'siteAdmin', 'siteViewer'];
const ROLE: Record<Who, Role> = { owner: 'owner', admin: 'admin', viewer: 'viewer', siteOwner: 'owner', siteAdmin: 'admin', siteViewer: 'viewer' };
const rank: Record<Role, number> = { viewer: 0, admin: 1, owner: 2 };
const perSite = (w: Who): boolean => w === 'siteOwner' || w === 'siteAdmin' || w === 'siteViewer';

type Target = 'own' | 'outside' | 'foreign' | 'absent';
const TARGETS: readonly Target[] = ['own', 'outside', 'foreign', 'absent'];
const DOMAIN: Record<Target, string> = { own: 'a1.test', outside: 'a2.test', foreign: 'b1.test', absent: 'nope.test' };

const tokens = {} as Record<Who | 'ownerB', string>;
/** A browser session of each member: the cookie and the CSRF token the dashboard sends. */
const sessions = {} as Record<Who | 'ownerB', Session>;
interface Session {
  cookie: string;
  csrf: string;
}
type Credential = 'token' | 'session';
const credentialOf = (kind: Credential, w: Who | 'ownerB'): string | Session => (kind === 'token' ? tokens[w] : sessions[w]);
const members = {} as Record<Who | 'ownerB', Member>;
let accountA = '';
let accountB = '';
let seq = 0;
const uniq = (p: string): string => `${p}-${++seq}`;

async function call(method: string, path: string, cred: string | Session | undefined, body?: unknown): Promise<{ status: number; text: string }> {
  if (cred === undefined || typeof cred === 'string') return callText(api.url, method, path, cred, body);
  const headers: Record<string, string> = { cookie: cred.cookie, 'x-csrf-token': cred.csrf };
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(`${api.url}${path}`, { method, headers, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
  return { status: res.status, text: await res.text() };
}

async function startSession(m: Member): Promise<Session> {
  const { secret } = await control.people.startSession(m.id, m.accountId, 'test');
  return { cookie: `farol_session=${secret}`, csrf: csrfTokenOf(secret) };
}

async function seed(c: ControlPlane): Promise<void> {
  control = c;
  accountA = (await control.createAccount({ name: 'A' })).id;
  accountB = (await control.createAccount({ name: 'B' })).id;
  await control.addSite(accountA, { domain: 'a1.test' });
  await control.addSite(accountA, { domain: 'a2.test' });
  await control.addSite(accountB, { domain: 'b1.test' });
  for (const w of WHO) {
    members[w] = await control.addMember(accountA, { name: w, role: ROLE[w], sites: perSite(w) ? ['a1.test'] : [] });
    tokens[w] = (await control.issueToken(members[w].id)).token;
    sessions[w] = await startSession(members[w]);
  }
  members.ownerB = await control.addMember(accountB, { name: 'ownerB', role: 'owner' });
  tokens.ownerB = (await control.issueToken(members.ownerB.id)).token;
  sessions.ownerB = await startSession(members.ownerB);
}

beforeAll(async () => {
  // Hundreds of deliberate 401s from one client: the failed-auth limit (tests/abuse.test.ts) would
  // answer 429 part way through the table.
  // The default cache TTL, as served: a revocation here must still take effect at once.
  api = await startApiOnChdb({ database: 'farol_isolation_test', cacheTtlMs: 5_000, seed, env: { FAROL_RATE_AUTH: 'off' } });
});

afterAll(async () => {
  await api?.close();
});

/** In scope: A's own site for everyone in A; A's other site only for account-wide grants. */
function inScope(w: Who, t: Target): boolean {
  return t === 'own' || (t === 'outside' && !perSite(w));
}

interface SiteRow {
  name: string;
  method: string;
  path: (domain: string) => string;
  body?: (domain: string) => unknown;
  need: Role;
  ok: number;
  /** Makes what the call acts on exist on every real site (so foreign 404s are about scope). */
  setup?: (domain: string) => Promise<void>;
  /** Puts things back after a successful destructive call. */
  restore?: (domain: string) => Promise<void>;
}

const goalName = 'to-delete';
const siteRows: SiteRow[] = [
  { name: 'query', method: 'POST', path: () => '/api/v2/query', body: (d) => ({ site_id: d, metrics: ['visitors'], date_range: '7d' }), need: 'viewer', ok: 200 },
  { name: 'export', method: 'GET', path: (d) => `/api/v2/export?site_id=${d}&date_range=7d`, need: 'viewer', ok: 200 },
  { name: 'get site', method: 'GET', path: (d) => `/api/v1/sites/${d}`, need: 'viewer', ok: 200 },
  { name: 'patch site', method: 'PATCH', path: (d) => `/api/v1/sites/${d}`, body: () => ({ timezone: 'UTC' }), need: 'admin', ok: 200 },
  { name: 'list goals', method: 'GET', path: (d) => `/api/v1/sites/${d}/goals`, need: 'viewer', ok: 200 },
  { name: 'add goal', method: 'POST', path: (d) => `/api/v1/sites/${d}/goals`, body: () => ({ name: uniq('goal') }), need: 'admin', ok: 201 },
  {
    name: 'delete goal',
    method: 'DELETE',
    path: (d) => `/api/v1/sites/${d}/goals/${goalName}`,
    need: 'admin',
    ok: 204,
    setup: async (d) => {
      if (d === DOMAIN.absent) return;
      if (!(await control.listGoals(d)).some((g) => g.name === goalName)) await control.addGoal(d, { name: goalName });
    },
  },
  { name: 'list experiments', method: 'GET', path: (d) => `/api/v1/sites/${d}/experiments`, need: 'viewer', ok: 200 },
  // An invalid experiment: allowed callers get 400, which still proves scope and role came first.
  { name: 'create experiment (invalid body)', method: 'POST', path: (d) => `/api/v1/sites/${d}/experiments`, body: () => ({}), need: 'admin', ok: 400 },
  {
    name: 'delete site',
    method: 'DELETE',
    path: (d) => `/api/v1/sites/${d}`,
    need: 'admin',
    ok: 204,
    restore: async (d) => {
      await control.addSite(d === DOMAIN.foreign ? accountB : accountA, { domain: d });
    },
  },
];

/**
 * By session, the site rows that differ in how they authenticate (a read by POST, reads and writes
 * by every method, each needing the CSRF token): scope and roles are the same code as by token,
 * and the slowest rows (deleting a site's data) would double the suite's time for nothing.
 */
const SESSION_SITE_ROWS = new Set(['query', 'get site', 'patch site', 'add goal', 'delete goal']);

describe.each(['token', 'session'] as const)('site endpoints: principal (by %s) × target', (kind) => {
  const cases = siteRows.filter((row) => kind === 'token' || SESSION_SITE_ROWS.has(row.name)).flatMap((row) => WHO.map((who) => ({ row, who })));
  it.each(cases.map((c) => [`${c.row.name} as ${c.who}`, c] as const))('%s', async (_label, { row, who }) => {
    const bodies: Partial<Record<Target, string>> = {};
    for (const t of TARGETS) {
      const d = DOMAIN[t];
      await row.setup?.(d);
      const res = await call(row.method, row.path(d), credentialOf(kind, who), row.body?.(d));
      const expected = !inScope(who, t) ? 404 : rank[ROLE[who]] >= rank[row.need] ? row.ok : 403;
      expect(res.status, `${row.name} as ${who} on ${t} (${d}): ${res.text}`).toBe(expected);
      if (res.status === 404) {
        expect(res.text).not.toContain(d);
        bodies[t] = res.text;
      }
      if (res.status === row.ok && row.restore) await row.restore(d);
    }
    // Another account's site is answered byte for byte like one that does not exist.
    expect(bodies.foreign).toBeDefined();
    expect(bodies.foreign).toBe(bodies.absent);
    if (bodies.outside !== undefined) expect(bodies.outside).toBe(bodies.absent);
  });
});

/** Expected status per principal, for account-level rows. */
type ByWho = Record<Who, number>;
const all = (n: number): ByWho => ({ owner: n, admin: n, viewer: n, siteOwner: n, siteAdmin: n, siteViewer: n });

interface AccountRow {
  name: string;
  method: string;
  path: () => Promise<string> | string;
  body?: () => unknown;
  expect: ByWho;
  /** Another account's id/domain: must answer like `absentTwin`. */
  twin?: { foreign: () => Promise<{ path: string; body?: unknown }>; absent: () => { path: string; body?: unknown } };
}

async function freshViewer(sites: string[] = ['a1.test']): Promise<Member> {
  return control.addMember(accountA, { name: uniq('v'), role: 'viewer', sites });
}

const accountRows: AccountRow[] = [
  { name: 'list sites', method: 'GET', path: () => '/api/v1/sites', expect: all(200) },
  { name: 'add site', method: 'POST', path: () => '/api/v1/sites', body: () => ({ domain: `${uniq('new')}.test` }), expect: { owner: 201, admin: 201, viewer: 403, siteOwner: 403, siteAdmin: 403, siteViewer: 403 } },
  { name: 'list members', method: 'GET', path: () => '/api/v1/members', expect: { owner: 200, admin: 200, viewer: 403, siteOwner: 200, siteAdmin: 200, siteViewer: 403 } },
  {
    name: 'add viewer in a1',
    method: 'POST',
    path: () => '/api/v1/members',
    body: () => ({ name: uniq('m'), role: 'viewer', sites: ['a1.test'] }),
    expect: { owner: 201, admin: 201, viewer: 403, siteOwner: 201, siteAdmin: 201, siteViewer: 403 },
  },
  {
    name: 'add owner',
    method: 'POST',
    path: () => '/api/v1/members',
    body: () => ({ name: uniq('o'), role: 'owner' }),
    expect: { owner: 201, admin: 403, viewer: 403, siteOwner: 403, siteAdmin: 403, siteViewer: 403 },
  },
  {
    name: 'add account-wide viewer (widens a per-site grant)',
    method: 'POST',
    path: () => '/api/v1/members',
    body: () => ({ name: uniq('w'), role: 'viewer', sites: [] }),
    expect: { owner: 201, admin: 201, viewer: 403, siteOwner: 403, siteAdmin: 403, siteViewer: 403 },
  },
  {
    name: 'add viewer on a foreign site',
    method: 'POST',
    path: () => '/api/v1/members',
    body: () => ({ name: uniq('f'), role: 'viewer', sites: ['b1.test'] }),
    expect: { owner: 404, admin: 404, viewer: 403, siteOwner: 404, siteAdmin: 404, siteViewer: 403 },
    twin: { foreign: async () => ({ path: '/api/v1/members', body: { name: 'x', role: 'viewer', sites: ['b1.test'] } }), absent: () => ({ path: '/api/v1/members', body: { name: 'x', role: 'viewer', sites: ['nope.test'] } }) },
  },
  {
    name: 'patch a viewer of a1',
    method: 'PATCH',
    path: async () => `/api/v1/members/${(await freshViewer()).id}`,
    body: () => ({ name: uniq('renamed') }),
    expect: { owner: 200, admin: 200, viewer: 404, siteOwner: 200, siteAdmin: 200, siteViewer: 404 },
    twin: { foreign: async () => ({ path: `/api/v1/members/${members.ownerB.id}`, body: { name: 'x' } }), absent: () => ({ path: '/api/v1/members/mem_doesnotexist', body: { name: 'x' } }) },
  },
  {
    name: 'promote a viewer to admin',
    method: 'PATCH',
    path: async () => `/api/v1/members/${(await freshViewer()).id}`,
    body: () => ({ role: 'admin' }),
    expect: { owner: 200, admin: 403, viewer: 404, siteOwner: 200, siteAdmin: 403, siteViewer: 404 },
  },
  {
    name: 'delete a viewer of a1',
    method: 'DELETE',
    path: async () => `/api/v1/members/${(await freshViewer()).id}`,
    expect: { owner: 204, admin: 204, viewer: 404, siteOwner: 204, siteAdmin: 204, siteViewer: 404 },
    twin: { foreign: async () => ({ path: `/api/v1/members/${members.ownerB.id}` }), absent: () => ({ path: '/api/v1/members/mem_doesnotexist' }) },
  },
  {
    name: 'delete the account-wide admin',
    method: 'DELETE',
    path: async () => `/api/v1/members/${(await control.addMember(accountA, { name: uniq('adm'), role: 'admin' })).id}`,
    expect: { owner: 204, admin: 403, viewer: 404, siteOwner: 404, siteAdmin: 404, siteViewer: 404 },
  },
  { name: 'list tokens', method: 'GET', path: () => '/api/v1/tokens', expect: all(200) },
  { name: 'create own token', method: 'POST', path: () => '/api/v1/tokens', body: () => ({ name: 'mine' }), expect: { owner: 201, admin: 201, viewer: 403, siteOwner: 201, siteAdmin: 201, siteViewer: 403 } },
  {
    name: 'create a token for a viewer of a1',
    method: 'POST',
    path: () => '/api/v1/tokens',
    expect: { owner: 201, admin: 201, viewer: 404, siteOwner: 201, siteAdmin: 201, siteViewer: 404 },
    twin: { foreign: async () => ({ path: '/api/v1/tokens', body: { member_id: members.ownerB.id } }), absent: () => ({ path: '/api/v1/tokens', body: { member_id: 'mem_doesnotexist' } }) },
  },
  {
    name: 'create a token for the owner',
    method: 'POST',
    path: () => '/api/v1/tokens',
    body: () => ({ member_id: members.owner.id }),
    expect: { owner: 201, admin: 403, viewer: 404, siteOwner: 404, siteAdmin: 404, siteViewer: 404 },
  },
  {
    name: 'revoke a viewer’s token',
    method: 'DELETE',
    path: async () => `/api/v1/tokens/${(await control.issueToken((await freshViewer()).id)).prefix}`,
    expect: { owner: 204, admin: 204, viewer: 404, siteOwner: 204, siteAdmin: 204, siteViewer: 404 },
    twin: {
      foreign: async () => ({ path: `/api/v1/tokens/${(await control.issueToken(members.ownerB.id)).prefix}` }),
      absent: () => ({ path: '/api/v1/tokens/farol_zzzzzz' }),
    },
  },
];

describe.each(['token', 'session'] as const)('account endpoints: principal (by %s) × row', (kind) => {
  const cases = accountRows.flatMap((row) => WHO.map((who) => ({ row, who })));
  it.each(cases.map((c) => [`${c.row.name} as ${c.who}`, c] as const))('%s', async (_label, { row, who }) => {
    // The "token for a viewer of a1" row needs a fresh viewer per call.
    const body = row.body ? row.body() : row.name === 'create a token for a viewer of a1' ? { member_id: (await freshViewer()).id } : undefined;
    const res = await call(row.method, await row.path(), credentialOf(kind, who), body);
    expect(res.status, `${row.name} as ${who}: ${res.text}`).toBe(row.expect[who]);
    if (row.twin) {
      const f = await row.twin.foreign();
      const a = row.twin.absent();
      const foreign = await call(row.method, f.path, credentialOf(kind, who), f.body);
      const absent = await call(row.method, a.path, credentialOf(kind, who), a.body);
      expect(foreign.status).toBe(absent.status);
      expect(foreign.text).toBe(absent.text);
      expect([403, 404]).toContain(foreign.status);
    }
  });

  it('listings never show another account or what is outside a grant', async () => {
    const sites = async (w: Who | 'ownerB'): Promise<string[]> =>
      ((JSON.parse((await call('GET', '/api/v1/sites', tokens[w])).text) as { sites: Array<{ domain: string }> }).sites.map((s) => s.domain));
    expect(await sites('siteViewer')).toEqual(['a1.test']);
    expect(await sites('owner')).toEqual(expect.arrayContaining(['a1.test', 'a2.test']));
    expect(await sites('owner')).not.toContain('b1.test');
    expect(await sites('ownerB')).toEqual(['b1.test']);

    const memberIds = (JSON.parse((await call('GET', '/api/v1/members', tokens.owner)).text) as { members: Array<{ id: string }> }).members.map((m) => m.id);
    expect(memberIds).toContain(members.viewer.id);
    expect(memberIds).not.toContain(members.ownerB.id);
    const siteAdminSees = (JSON.parse((await call('GET', '/api/v1/members', tokens.siteAdmin)).text) as { members: Array<{ id: string; sites: string[] }> }).members;
    expect(siteAdminSees.every((m) => m.id === members.siteAdmin.id || (m.sites.length > 0 && m.sites.every((s) => s === 'a1.test')))).toBe(true);
    // A per-site owner too sees only its own grant: no account-wide member, no a2.test.
    expect(await sites('siteOwner')).toEqual(['a1.test']);
    const siteOwnerSees = JSON.parse((await call('GET', '/api/v1/members', tokens.siteOwner)).text) as { members: Array<{ id: string; sites: string[] }> };
    expect(siteOwnerSees.members.map((m) => m.id)).toContain(members.siteViewer.id);
    expect(siteOwnerSees.members.every((m) => m.sites.length > 0 && m.sites.every((s) => s === 'a1.test'))).toBe(true);
    const siteOwnerTokens = (JSON.parse((await call('GET', '/api/v1/tokens', tokens.siteOwner)).text) as { tokens: Array<{ member_id: string }> }).tokens;
    expect(siteOwnerTokens.map((t) => t.member_id)).toContain(members.siteOwner.id);
    for (const w of ['owner', 'admin', 'viewer'] as const) expect(siteOwnerTokens.map((t) => t.member_id)).not.toContain(members[w].id);

    const viewerTokens = (JSON.parse((await call('GET', '/api/v1/tokens', tokens.viewer)).text) as { tokens: Array<{ member_id: string }> }).tokens;
    expect(viewerTokens.length).toBeGreaterThan(0);
    expect(viewerTokens.every((t) => t.member_id === members.viewer.id)).toBe(true);
    const ownerTokens = (JSON.parse((await call('GET', '/api/v1/tokens', tokens.owner)).text) as { tokens: Array<{ member_id: string; prefix: string }> }).tokens;
    expect(ownerTokens.some((t) => t.member_id === members.ownerB.id)).toBe(false);
    expect(JSON.stringify(ownerTokens)).not.toContain(tokens.viewer);
  });
});

describe('authentication', () => {
  const endpoints: Array<[string, string, unknown]> = [
    ...siteRows.map((r) => [r.method, r.path(DOMAIN.own), r.body?.(DOMAIN.own)] as [string, string, unknown]),
    ['GET', '/api/v1/sites', undefined],
    ['POST', '/api/v1/sites', { domain: 'x.test' }],
    ['GET', '/api/v1/members', undefined],
    ['POST', '/api/v1/members', { name: 'x', role: 'viewer' }],
    ['PATCH', `/api/v1/members/mem_x`, { name: 'x' }],
    ['DELETE', `/api/v1/members/mem_x`, undefined],
    ['GET', '/api/v1/tokens', undefined],
    ['POST', '/api/v1/tokens', {}],
    ['DELETE', '/api/v1/tokens/farol_abcdef', undefined],
  ];

  it.each(endpoints)('%s %s: 401 without a token, with a bad one, and with a revoked one', async (method, path, body) => {
    expect((await call(method, path, undefined, body)).status).toBe(401);
    expect((await call(method, path, 'farol_not-a-real-token-at-all-000000000000', body)).status).toBe(401);
    const m = await control.addMember(accountA, { name: uniq('rev'), role: 'owner' });
    const t = await control.issueToken(m.id);
    await control.revokeToken(t.hash);
    const res = await call(method, path, t.token, body);
    expect(res.status).toBe(401);
    expect(res.text).toContain('API_UNAUTHORIZED');
  });

  it('a token revoked through the API stops working at once', async () => {
    const m = await freshViewer();
    const t = await control.issueToken(m.id);
    expect((await call('GET', '/api/v1/sites', t.token)).status).toBe(200);
    expect((await call('DELETE', `/api/v1/tokens/${t.prefix}`, tokens.owner)).status).toBe(204);
    expect((await call('GET', '/api/v1/sites', t.token)).status).toBe(401);
  });
});
