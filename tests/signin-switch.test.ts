import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ControlPlane, Member } from '../control/control-plane.ts';
import { hashPassword } from '../control/people.ts';
import { startApiOnChdb, type ApiOnChdb } from '../api/experiments/testing/api-harness.ts';

/**
 * #14's account switcher against the real API on a real port (chDB on a temp dir, the control
 * plane's 5 s caches on): a person joins a second account by accepting its invitation while
 * signed in (never by a matching email), lists their memberships, switches the session, and every
 * request then acts as that membership (its role and sites); another tenant's account, an
 * unknown one and one the person was removed from are refused alike; removal moves the session
 * home; the account owners on either side cannot take the person over by a reset link.
 */

let api: ApiOnChdb;
let control: ControlPlane;
const PASSWORD = 'correct horse battery staple';
let accountA = '';
let accountB = '';
let accountC = '';
let pat: Member;
let ownerAToken = '';
let ownerBToken = '';
let ownerCToken = '';
let xff = 0;

interface Res {
  status: number;
  json: Record<string, unknown>;
  text: string;
  cookies: string[];
}

async function req(method: string, path: string, opts: { body?: unknown; cookie?: string; csrf?: string; token?: string } = {}): Promise<Res> {
  const headers: Record<string, string> = { 'x-forwarded-for': `198.51.100.${++xff}` };
  if (opts.body !== undefined) headers['content-type'] = 'application/json';
  if (opts.cookie !== undefined) headers['cookie'] = opts.cookie;
  if (opts.csrf !== undefined) headers['x-csrf-token'] = opts.csrf;
  if (opts.token !== undefined) headers['authorization'] = `Bearer ${opts.token}`;
  const res = await fetch(`${api.url}${path}`, { method, headers, redirect: 'manual', ...(opts.body === undefined ? {} : { body: JSON.stringify(opts.body) }) });
  const text = await res.text();
  let json: Record<string, unknown> = {};
  try {
    json = JSON.parse(text) as Record<string, unknown>;
  } catch {
    // 204
  }
  return { status: res.status, json, text, cookies: res.headers.getSetCookie() };
}

const code = (r: Res): string => `${r.status} ${String((r.json.error as { code?: string } | undefined)?.code ?? '')}`.trim();

async function signIn(email: string): Promise<{ cookie: string; csrf: string }> {
  const res = await req('POST', '/api/v1/auth/password', { body: { email, password: PASSWORD } });
  expect(res.status).toBe(200);
  return { cookie: (res.cookies[0] ?? '').split(';')[0] ?? '', csrf: String(res.json.csrf) };
}

async function invite(token: string, email: string, role: string, sites: string[] = []): Promise<string> {
  const r = await req('POST', '/api/v1/invitations', { token, body: { email, role, sites } });
  expect(r.status).toBe(201);
  return String(r.json.link).split('invite=')[1] ?? '';
}

type Membership = { account_id: string; account_name: string; member_id: string; role: string; current: boolean };
const memberships = async (s: { cookie: string }): Promise<Membership[]> => (await req('GET', '/api/v1/me/memberships', { cookie: s.cookie })).json.memberships as Membership[];
const sitesOf = async (s: { cookie: string }): Promise<string[]> =>
  ((await req('GET', '/api/v1/sites', { cookie: s.cookie })).json.sites as Array<{ domain: string }>).map((x) => x.domain).sort();

beforeAll(async () => {
  api = await startApiOnChdb({
    database: 'farol_switch_test',
    cacheTtlMs: 5_000,
    env: { FAROL_RATE_AUTH: 'off', FAROL_RATE_SIGNIN: 'off', FAROL_TRUST_PROXY: '127.0.0.1/32', FAROL_PUBLIC_URL: 'http://stats.test:8080' },
    seed: async (c) => {
      control = c;
      accountA = (await c.createAccount({ name: 'Alpha' })).id;
      accountB = (await c.createAccount({ name: 'Beta' })).id;
      accountC = (await c.createAccount({ name: 'Gamma' })).id;
      await c.addSite(accountA, { domain: 'a.test' });
      await c.addSite(accountB, { domain: 'b1.test' });
      await c.addSite(accountB, { domain: 'b2.test' });
      await c.addSite(accountC, { domain: 'c.test' });
      pat = await c.addMember(accountA, { name: 'Pat', role: 'owner' });
      await c.people.setIdentity(pat.id, accountA, { email: 'pat@a.test', passwordHash: await hashPassword(PASSWORD) });
      ownerAToken = (await c.issueToken((await c.addMember(accountA, { name: 'other owner A', role: 'owner' })).id)).token;
      ownerBToken = (await c.issueToken((await c.addMember(accountB, { name: 'owner B', role: 'owner' })).id)).token;
      ownerCToken = (await c.issueToken((await c.addMember(accountC, { name: 'owner C', role: 'owner' })).id)).token;
    },
  });
}, 60_000);

afterAll(async () => {
  await api?.close();
});

describe('account switcher', () => {
  let s: { cookie: string; csrf: string };
  let linked = '';

  it('never links by email: an invitation to the email of someone who signs in elsewhere links nothing until they accept it signed in', async () => {
    s = await signIn('pat@a.test');
    // Inviting an email that signs in in another account is allowed (no cross-tenant oracle)…
    const secret = await invite(ownerBToken, 'pat@a.test', 'viewer', ['b1.test']);
    // …but links nothing by itself, and cannot be taken as a new password identity for that email.
    expect((await memberships(s)).map((m) => m.account_id)).toEqual([accountA]);
    expect(code(await req('POST', '/api/v1/auth/invitation', { body: { token: secret, name: 'Imposter', password: 'a fresh password here' } }))).toBe('409 API_CONFLICT');
    // Account C's owner gives its own member Pat's email: refused, and no link appears.
    const mallory = await req('POST', '/api/v1/members', { token: ownerCToken, body: { name: 'Mallory', role: 'owner' } });
    expect(code(await req('POST', `/api/v1/members/${String((mallory.json.member as { id: string }).id)}/reset-link`, { token: ownerCToken, body: { email: 'pat@a.test' } }))).toBe('409 API_CONFLICT');
    expect((await memberships(s)).map((m) => m.account_id)).toEqual([accountA]);
  });

  it('links a membership when the signed-in person accepts an invitation (CSRF-checked, single use, sessions only, audited)', async () => {
    const secret = await invite(ownerBToken, 'pat+beta@a.test', 'viewer', ['b1.test']);
    expect(code(await req('POST', '/api/v1/me/memberships', { cookie: s.cookie, body: { token: secret } }))).toBe('403 API_CSRF');
    expect(code(await req('POST', '/api/v1/me/memberships', { token: ownerAToken, body: { token: secret } }))).toBe('400 API_BAD_REQUEST');
    const joined = await req('POST', '/api/v1/me/memberships', { cookie: s.cookie, csrf: s.csrf, body: { token: secret } });
    expect(joined.status).toBe(201);
    expect(joined.json.membership).toMatchObject({ account_id: accountB, account_name: 'Beta', role: 'viewer' });
    linked = (joined.json.membership as { member_id: string }).member_id;
    expect(code(await req('POST', '/api/v1/me/memberships', { cookie: s.cookie, csrf: s.csrf, body: { token: secret } }))).toBe('400 API_LINK_INVALID');
    // A second invitation into an account the person is in already: refused.
    const again = await invite(ownerBToken, 'pat+again@a.test', 'admin');
    expect(code(await req('POST', '/api/v1/me/memberships', { cookie: s.cookie, csrf: s.csrf, body: { token: again } }))).toBe('409 API_CONFLICT');
    expect(await memberships(s)).toMatchObject([
      { account_id: accountA, account_name: 'Alpha', member_id: pat.id, role: 'owner', current: true },
      { account_id: accountB, account_name: 'Beta', member_id: linked, role: 'viewer', current: false },
    ]);
    const audit = await req('GET', '/api/v1/audit', { token: ownerBToken });
    const entry = (audit.json.entries as Array<{ action: string; actor: string; via: string; target: string }>).find((e) => e.action === 'membership.link');
    expect(entry).toMatchObject({ actor: linked, via: 'session', target: `member=${linked}` });
    expect(audit.text).not.toMatch(/198\.51\.100|127\.0\.0\.1/);
    expect(audit.text).not.toContain(accountA);
  });

  it('switches the session: every request then acts as that membership, role and sites included', async () => {
    expect(await sitesOf(s)).toEqual(['a.test']);
    expect(code(await req('POST', '/api/v1/auth/switch', { cookie: s.cookie, body: { account_id: accountB } }))).toBe('403 API_CSRF');
    expect(code(await req('POST', '/api/v1/auth/switch', { token: ownerAToken, body: { account_id: accountB } }))).toBe('400 API_BAD_REQUEST');
    const sw = await req('POST', '/api/v1/auth/switch', { cookie: s.cookie, csrf: s.csrf, body: { account_id: accountB } });
    expect(sw.status).toBe(200);
    expect(sw.json).toMatchObject({ account_id: accountB, member: { id: linked, role: 'viewer' } });
    // At once, despite the 5 s caches: a viewer of b1.test in Beta.
    expect(await sitesOf(s)).toEqual(['b1.test']);
    expect((await req('GET', '/api/v1/auth/session', { cookie: s.cookie })).json).toMatchObject({ account_id: accountB, member: { id: linked }, email: 'pat@a.test', csrf: s.csrf });
    expect(code(await req('GET', '/api/v1/sites/b2.test', { cookie: s.cookie }))).toBe('404 API_NOT_FOUND');
    expect(code(await req('GET', '/api/v1/sites/a.test', { cookie: s.cookie }))).toBe('404 API_NOT_FOUND');
    expect(code(await req('POST', '/api/v1/sites', { cookie: s.cookie, csrf: s.csrf, body: { domain: 'new.test' } }))).toBe('403 API_FORBIDDEN');
    expect(code(await req('GET', '/api/v1/members', { cookie: s.cookie }))).toBe('403 API_FORBIDDEN');
    expect((await memberships(s)).find((m) => m.current)?.account_id).toBe(accountB);
    // And back: an owner of Alpha again.
    expect((await req('POST', '/api/v1/auth/switch', { cookie: s.cookie, csrf: s.csrf, body: { account_id: accountA } })).status).toBe(200);
    expect(await sitesOf(s)).toEqual(['a.test']);
    expect((await req('GET', '/api/v1/members', { cookie: s.cookie })).status).toBe(200);
  });

  it("refuses another tenant's account, an unknown one and a malformed one with the same answer", async () => {
    const answers = await Promise.all(
      [accountC, 'acc_doesnotexist', '', 'x'.repeat(64)].map(async (id) => req('POST', '/api/v1/auth/switch', { cookie: s.cookie, csrf: s.csrf, body: { account_id: id } })),
    );
    for (const a of answers) expect(a.text).toBe(answers[0]?.text);
    expect(code(answers[0] as Res)).toBe('404 API_NOT_FOUND');
    // Malformed ids are refused before any lookup, whoever's they would be.
    for (const bad of ['x'.repeat(65), '\u0000', '\ud800', 1e308, ['acc']]) {
      expect(code(await req('POST', '/api/v1/auth/switch', { cookie: s.cookie, csrf: s.csrf, body: { account_id: bad } }))).toBe('400 API_BAD_REQUEST');
    }
    expect(await sitesOf(s)).toEqual(['a.test']);
  });

  it('keeps owners on either side from taking the person over with a reset link', async () => {
    expect(code(await req('POST', `/api/v1/members/${linked}/reset-link`, { token: ownerBToken, body: { email: 'owner-b-controls@b.test' } }))).toBe('409 API_CONFLICT');
    expect(code(await req('POST', `/api/v1/members/${pat.id}/reset-link`, { token: ownerAToken, body: {} }))).toBe('409 API_CONFLICT');
    await expect(control.people.setIdentity(linked, accountB, { email: 'sneaky@b.test' })).rejects.toThrow(/another account/);
  });

  it('removal drops the link and moves the session home; the removed membership is then refused like any other', async () => {
    expect((await req('POST', '/api/v1/auth/switch', { cookie: s.cookie, csrf: s.csrf, body: { account_id: accountB } })).status).toBe(200);
    expect(await sitesOf(s)).toEqual(['b1.test']);
    expect((await req('DELETE', `/api/v1/members/${linked}`, { token: ownerBToken })).status).toBe(204);
    expect(await sitesOf(s)).toEqual(['a.test']);
    expect((await req('GET', '/api/v1/auth/session', { cookie: s.cookie })).json).toMatchObject({ account_id: accountA, member: { id: pat.id } });
    expect((await memberships(s)).map((m) => m.account_id)).toEqual([accountA]);
    const gone = await req('POST', '/api/v1/auth/switch', { cookie: s.cookie, csrf: s.csrf, body: { account_id: accountB } });
    const other = await req('POST', '/api/v1/auth/switch', { cookie: s.cookie, csrf: s.csrf, body: { account_id: accountC } });
    expect(code(gone)).toBe('404 API_NOT_FOUND');
    expect(gone.text).toBe(other.text);
    expect((await req('GET', '/api/v1/audit', { token: ownerBToken })).text).toContain('membership.unlink');
  });

  it("removing the person's home member ends the sessions on their linked memberships too", async () => {
    const secret = await invite(ownerCToken, 'pat@c.test', 'admin');
    expect((await req('POST', '/api/v1/me/memberships', { cookie: s.cookie, csrf: s.csrf, body: { token: secret } })).status).toBe(201);
    expect((await req('POST', '/api/v1/auth/switch', { cookie: s.cookie, csrf: s.csrf, body: { account_id: accountC } })).status).toBe(200);
    expect(await sitesOf(s)).toEqual(['c.test']);
    expect((await req('DELETE', `/api/v1/members/${pat.id}`, { token: ownerAToken })).status).toBe(204);
    expect(code(await req('GET', '/api/v1/sites', { cookie: s.cookie }))).toBe('401 API_UNAUTHORIZED');
  });
});
