import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TOTP, Secret } from 'otpauth';
import { createLogger } from '../lib/log.ts';
import type { ControlPlane, Member } from '../control/control-plane.ts';
import { hashPassword } from '../control/people.ts';
import { startApiOnChdb, type ApiOnChdb } from '../api/experiments/testing/api-harness.ts';

/**
 * People signing in (#14) against the real API on a real port (chDB on a temp dir), with the
 * control plane's clock in the test's hands: passwords with and without TOTP, throttling per
 * account and per client, cookies and CSRF, API tokens never taken from cookies, expired and
 * revoked sessions, invitations within the inviter's grant and single use, reset links single
 * use, the audit trail; and a scan that no secret the test used reaches the logs, the error
 * bodies or the audit trail.
 */

let api: ApiOnChdb;
let control: ControlPlane;
let clock = Date.parse('2026-12-06T12:00:00Z');
const logLines: string[] = [];
/** Every secret the test handles: none may appear in logs, error bodies or the audit trail. */
const secrets = new Set<string>();
/** Every error answer's body. */
const bodies: string[] = [];

const PASSWORD = 'correct horse battery staple';
let account = '';
let owner: Member;
let ownerToken = '';
let siteAdmin: Member;
let siteAdminToken = '';
let xffSeq = 0;

/** A distinct client per call site (X-Forwarded-For, trusted from 127.0.0.1): throttles stay apart. */
const newClient = (): string => `198.51.100.${++xffSeq}`;

interface Res {
  status: number;
  json: Record<string, unknown>;
  cookies: string[];
  headers: Headers;
}

async function req(method: string, path: string, opts: { body?: unknown; cookie?: string; csrf?: string; token?: string; client?: string; contentType?: string } = {}): Promise<Res> {
  const headers: Record<string, string> = { 'x-forwarded-for': opts.client ?? '203.0.113.1' };
  if (opts.body !== undefined) headers['content-type'] = opts.contentType ?? 'application/json';
  if (opts.cookie !== undefined) headers['cookie'] = opts.cookie;
  if (opts.csrf !== undefined) headers['x-csrf-token'] = opts.csrf;
  if (opts.token !== undefined) headers['authorization'] = `Bearer ${opts.token}`;
  const res = await fetch(`${api.url}${path}`, { method, headers, redirect: 'manual', ...(opts.body === undefined ? {} : { body: JSON.stringify(opts.body) }) });
  const text = await res.text();
  // Error answers: they must never echo a secret (answers that hand one out are the point of their route).
  if (res.status >= 400) bodies.push(text);
  let json: Record<string, unknown> = {};
  try {
    json = JSON.parse(text) as Record<string, unknown>;
  } catch {
    // empty (204) or not JSON
  }
  return { status: res.status, json, cookies: res.headers.getSetCookie(), headers: res.headers };
}

const code = (r: Res): string => `${r.status} ${String((r.json.error as { code?: string } | undefined)?.code ?? '')}`.trim();

/** Signs in by password; returns the cookie header value and the CSRF token. */
async function signIn(email: string, password: string, extra: { totp?: string; client?: string } = {}): Promise<{ cookie: string; csrf: string; res: Res }> {
  const res = await req('POST', '/api/v1/auth/password', { body: { email, password, ...(extra.totp === undefined ? {} : { totp: extra.totp }) }, client: extra.client ?? newClient() });
  const set = res.cookies[0] ?? '';
  const cookie = set.split(';')[0] ?? '';
  if (cookie !== '') secrets.add(cookie.split('=')[1] ?? '');
  return { cookie, csrf: String(res.json.csrf ?? ''), res };
}

beforeAll(async () => {
  api = await startApiOnChdb({
    database: 'farol_signin_test',
    cacheTtlMs: 5_000,
    env: { FAROL_RATE_AUTH: 'off', FAROL_RATE_SIGNIN: '3/min,3', FAROL_TRUST_PROXY: '127.0.0.1/32', FAROL_PUBLIC_URL: 'http://stats.test:8080', FAROL_SESSION_IDLE_MINUTES: '30', FAROL_SESSION_MAX_HOURS: '2' },
    control: { now: () => clock, sessionPolicy: { idleMs: 30 * 60_000, absoluteMs: 2 * 3_600_000 } },
    log: createLogger('debug', {}, (line) => logLines.push(line)),
    seed: async (c) => {
      control = c;
      account = (await c.createAccount({ name: 'A' })).id;
      await c.addSite(account, { domain: 'a1.test' });
      await c.addSite(account, { domain: 'a2.test' });
      owner = await c.addMember(account, { name: 'owner', role: 'owner' });
      ownerToken = (await c.issueToken(owner.id)).token;
      siteAdmin = await c.addMember(account, { name: 'site admin', role: 'admin', sites: ['a1.test'] });
      siteAdminToken = (await c.issueToken(siteAdmin.id)).token;
      await c.people.setIdentity(owner.id, account, { email: 'owner@a.test', passwordHash: await hashPassword(PASSWORD) });
      secrets.add(ownerToken).add(siteAdminToken).add(PASSWORD);
    },
  });
}, 60_000);

afterAll(async () => {
  await api?.close();
});

describe('password sign-in', () => {
  it('answers a wrong password and an unknown email alike, and a right one with an HttpOnly SameSite=Lax cookie (not Secure over http)', async () => {
    const wrong = await signIn('owner@a.test', 'not the password at all');
    const unknown = await signIn('nobody@a.test', PASSWORD);
    expect(code(wrong.res)).toBe('401 API_SIGNIN_FAILED');
    expect(unknown.res.json).toEqual(wrong.res.json);
    const ok = await signIn('OWNER@a.test ', PASSWORD);
    expect(ok.res.status).toBe(200);
    expect(ok.res.cookies[0]).toMatch(/^farol_session=[A-Za-z0-9_-]{43}; Path=\/; Max-Age=7200; HttpOnly; SameSite=Lax$/);
    expect(ok.csrf).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const me = await req('GET', '/api/v1/auth/session', { cookie: ok.cookie });
    expect(me.json).toMatchObject({ member: { id: owner.id, role: 'owner' }, email: 'owner@a.test', via: 'session', csrf: ok.csrf });
  });

  it('without FAROL_SMTP_URL has no reset mail: the link is given by an owner or the CLI', async () => {
    expect((await req('GET', '/api/v1/auth/config')).json).toMatchObject({ password: true, reset_mail: false });
    expect(code(await req('POST', '/api/v1/auth/forgot', { body: { email: 'owner@a.test' }, client: newClient() }))).toBe('404 API_RESET_MAIL_OFF');
  });

  it('refuses a sign-in body that is not JSON (another site cannot post it from a form)', async () => {
    const r = await fetch(`${api.url}/api/v1/auth/password`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: JSON.stringify({ email: 'owner@a.test', password: PASSWORD }) });
    expect(r.status).toBe(400);
    expect(r.headers.getSetCookie()).toEqual([]);
  });

  it('throttles failed sign-ins per account (any client) and per client (any account), right password or not', async () => {
    // Per account: three failures from three clients; the fourth client with the right password waits.
    await control.people.setIdentity((await control.addMember(account, { name: 'victim', role: 'viewer' })).id, account, { email: 'victim@a.test', passwordHash: await hashPassword(PASSWORD) });
    for (let i = 0; i < 3; i++) expect(code((await signIn('victim@a.test', 'wrong password guess')).res)).toBe('401 API_SIGNIN_FAILED');
    const blocked = await signIn('victim@a.test', PASSWORD);
    expect(code(blocked.res)).toBe('429 API_SIGNIN_THROTTLED');
    expect(Number(blocked.res.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(blocked.res.cookies).toEqual([]);
    // Per client: one client guessing three emails is then refused for the owner's right password.
    const guesser = newClient();
    for (const e of ['x1@a.test', 'x2@a.test', 'x3@a.test']) expect(code((await signIn(e, 'guess guess guess', { client: guesser })).res)).toBe('401 API_SIGNIN_FAILED');
    expect(code((await signIn('owner@a.test', PASSWORD, { client: guesser })).res)).toBe('429 API_SIGNIN_THROTTLED');
    // Another client still signs the owner in.
    expect((await signIn('owner@a.test', PASSWORD)).res.status).toBe(200);
  });

  it('with TOTP on, asks for the code, refuses a wrong one, and accepts the current one', async () => {
    const m = await control.addMember(account, { name: 'two-factor', role: 'viewer' });
    await control.people.setIdentity(m.id, account, { email: 'tf@a.test', passwordHash: await hashPassword(PASSWORD) });
    const s = await signIn('tf@a.test', PASSWORD);
    const enrol = await req('GET', '/api/v1/me/totp', { cookie: s.cookie });
    const secret = String(enrol.json.secret);
    secrets.add(secret);
    expect(String(enrol.json.uri)).toMatch(/^otpauth:\/\/totp\//);
    const totp = new TOTP({ secret: Secret.fromBase32(secret), digits: 6, period: 30, algorithm: 'SHA1' });
    const now = (): string => totp.generate({ timestamp: clock });
    // Without the CSRF token the cookie does not change anything.
    expect(code(await req('POST', '/api/v1/me/totp', { cookie: s.cookie, body: { secret, code: now() } }))).toBe('403 API_CSRF');
    expect((await req('POST', '/api/v1/me/totp', { cookie: s.cookie, csrf: s.csrf, body: { secret, code: now() } })).status).toBe(204);
    expect(code((await signIn('tf@a.test', PASSWORD)).res)).toBe('401 API_TOTP_REQUIRED');
    const wrongCode = now() === '000000' ? '111111' : '000000';
    expect(code((await signIn('tf@a.test', PASSWORD, { totp: wrongCode })).res)).toBe('401 API_TOTP_REQUIRED');
    // A code from ten minutes ago is refused too.
    expect(code((await signIn('tf@a.test', PASSWORD, { totp: totp.generate({ timestamp: clock - 600_000 }) })).res)).toBe('401 API_TOTP_REQUIRED');
    expect((await signIn('tf@a.test', PASSWORD, { totp: now() })).res.status).toBe(200);
    // A wrong password with the right code is still the one answer for a wrong password.
    expect(code((await signIn('tf@a.test', 'wrong password here', { totp: now() })).res)).toBe('401 API_SIGNIN_FAILED');
    // Turning it off takes a current code (a session alone, an unlocked laptop, is not enough).
    expect(code(await req('POST', '/api/v1/me/totp/off', { cookie: s.cookie, csrf: s.csrf, body: { code: wrongCode } }))).toBe('400 API_BAD_REQUEST');
    expect(code(await req('POST', '/api/v1/me/totp/off', { cookie: s.cookie, body: { code: now() } }))).toBe('403 API_CSRF');
    expect((await req('POST', '/api/v1/me/totp/off', { cookie: s.cookie, csrf: s.csrf, body: { code: now() } })).status).toBe(204);
    // (Signing in again would meet this account's throttle after the three failures above.)
    expect((await req('GET', '/api/v1/auth/session', { cookie: s.cookie })).json).toMatchObject({ totp: false });
    expect(code(await req('POST', '/api/v1/me/totp/off', { cookie: s.cookie, csrf: s.csrf, body: { code: now() } }))).toBe('400 API_BAD_REQUEST');
  });
});

describe('cookies, CSRF and tokens', () => {
  it('needs the session CSRF token on every state-changing request by cookie, and never takes a token from a cookie', async () => {
    const s = await signIn('owner@a.test', PASSWORD);
    expect((await req('GET', '/api/v1/sites', { cookie: s.cookie })).status).toBe(200);
    expect(code(await req('POST', '/api/v1/sites', { cookie: s.cookie, body: { domain: 'csrf.test' } }))).toBe('403 API_CSRF');
    expect(code(await req('POST', '/api/v1/sites', { cookie: s.cookie, csrf: 'x'.repeat(43), body: { domain: 'csrf.test' } }))).toBe('403 API_CSRF');
    // Another session's token is not this one's.
    const other = await signIn('owner@a.test', PASSWORD);
    expect(code(await req('POST', '/api/v1/sites', { cookie: s.cookie, csrf: other.csrf, body: { domain: 'csrf.test' } }))).toBe('403 API_CSRF');
    expect(code(await req('DELETE', '/api/v1/sites/a2.test', { cookie: s.cookie }))).toBe('403 API_CSRF');
    expect((await req('POST', '/api/v1/sites', { cookie: s.cookie, csrf: s.csrf, body: { domain: 'csrf.test' } })).status).toBe(201);
    // An API token in the session cookie (either name) is nobody; in the header it still works, without CSRF.
    for (const name of ['farol_session', '__Host-farol_session']) expect(code(await req('GET', '/api/v1/sites', { cookie: `${name}=${ownerToken}` }))).toBe('401 API_UNAUTHORIZED');
    expect((await req('POST', '/api/v1/sites', { token: ownerToken, body: { domain: 'token.test' } })).status).toBe(201);
    // A bearer header wins over a cookie: a bad token with a good cookie is refused.
    expect(code(await req('GET', '/api/v1/sites', { cookie: s.cookie, token: 'farol_wrong_token_value_000000000' }))).toBe('401 API_UNAUTHORIZED');
  });
});

describe('sessions', () => {
  it('end after the idle time, after the absolute lifetime, on sign-out, and everywhere at once', async () => {
    const start = clock;
    try {
      const idle = await signIn('owner@a.test', PASSWORD);
      clock += 29 * 60_000;
      expect((await req('GET', '/api/v1/sites', { cookie: idle.cookie })).status).toBe(200);
      clock += 29 * 60_000; // active 29 minutes ago: still alive
      expect((await req('GET', '/api/v1/sites', { cookie: idle.cookie })).status).toBe(200);
      clock += 31 * 60_000;
      expect(code(await req('GET', '/api/v1/sites', { cookie: idle.cookie }))).toBe('401 API_UNAUTHORIZED');

      const active = await signIn('owner@a.test', PASSWORD);
      for (let i = 0; i < 4; i++) {
        clock += 25 * 60_000;
        expect((await req('GET', '/api/v1/sites', { cookie: active.cookie })).status).toBe(200);
      }
      clock += 25 * 60_000; // 125 minutes after sign-in: past the 2 h lifetime, however active
      expect(code(await req('GET', '/api/v1/sites', { cookie: active.cookie }))).toBe('401 API_UNAUTHORIZED');

      const a = await signIn('owner@a.test', PASSWORD);
      const b = await signIn('owner@a.test', PASSWORD);
      expect(code(await req('POST', '/api/v1/auth/signout', { cookie: a.cookie }))).toBe('403 API_CSRF');
      const out = await req('POST', '/api/v1/auth/signout', { cookie: a.cookie, csrf: a.csrf });
      expect(out.status).toBe(204);
      expect(out.cookies[0]).toMatch(/^farol_session=; Path=\/; Max-Age=0; HttpOnly; SameSite=Lax$/);
      expect(code(await req('GET', '/api/v1/sites', { cookie: a.cookie }))).toBe('401 API_UNAUTHORIZED');
      expect((await req('GET', '/api/v1/sites', { cookie: b.cookie })).status).toBe(200);
      const c = await signIn('owner@a.test', PASSWORD);
      expect((await req('POST', '/api/v1/auth/signout-all', { cookie: c.cookie, csrf: c.csrf })).status).toBe(200);
      for (const s of [b, c]) expect(code(await req('GET', '/api/v1/sites', { cookie: s.cookie }))).toBe('401 API_UNAUTHORIZED');
      // Tokens are machines': signing out everywhere leaves them working.
      expect((await req('GET', '/api/v1/sites', { token: ownerToken })).status).toBe(200);
    } finally {
      clock = start + 4 * 3_600_000;
    }
  });

  it("end with their member: a removed member's session authenticates nothing", async () => {
    const m = await control.addMember(account, { name: 'leaver', role: 'viewer' });
    await control.people.setIdentity(m.id, account, { email: 'leaver@a.test', passwordHash: await hashPassword(PASSWORD) });
    const s = await signIn('leaver@a.test', PASSWORD);
    expect((await req('GET', '/api/v1/sites', { cookie: s.cookie })).status).toBe(200);
    expect((await req('DELETE', `/api/v1/members/${m.id}`, { token: ownerToken })).status).toBe(204);
    expect(code(await req('GET', '/api/v1/sites', { cookie: s.cookie }))).toBe('401 API_UNAUTHORIZED');
  });
});

describe('invitations', () => {
  it('stay within the inviter’s grant, apply their role and sites, and are single use', async () => {
    // A per-site admin invites viewers of its own site only.
    expect(code(await req('POST', '/api/v1/invitations', { token: siteAdminToken, body: { email: 'v@a.test', role: 'admin', sites: ['a1.test'] } }))).toBe('403 API_FORBIDDEN');
    expect(code(await req('POST', '/api/v1/invitations', { token: siteAdminToken, body: { email: 'v@a.test', role: 'viewer', sites: [] } }))).toBe('403 API_FORBIDDEN');
    expect(code(await req('POST', '/api/v1/invitations', { token: siteAdminToken, body: { email: 'v@a.test', role: 'viewer', sites: ['a2.test'] } }))).toBe('404 API_NOT_FOUND');
    expect(code(await req('POST', '/api/v1/invitations', { token: ownerToken, body: { email: 'owner@a.test', role: 'viewer' } }))).toBe('409 API_CONFLICT');
    const made = await req('POST', '/api/v1/invitations', { token: siteAdminToken, body: { email: 'New.Viewer@a.test', role: 'viewer', sites: ['a1.test'] } });
    expect(made.status).toBe(201);
    const link = String(made.json.link);
    expect(link).toMatch(/^http:\/\/stats\.test:8080\/#invite=[A-Za-z0-9_-]{43}$/);
    const secret = link.split('invite=')[1] ?? '';
    secrets.add(secret);
    const listed = await req('GET', '/api/v1/invitations', { token: siteAdminToken });
    expect(listed.json.invitations).toMatchObject([{ email: 'new.viewer@a.test', role: 'viewer', sites: ['a1.test'], invited_by: siteAdmin.id }]);
    expect(JSON.stringify(listed.json)).not.toContain(secret);

    const newPassword = 'a new viewer password';
    secrets.add(newPassword);
    const accepted = await req('POST', '/api/v1/auth/invitation', { body: { token: secret, name: 'New Viewer', password: newPassword }, client: newClient() });
    expect(accepted.status).toBe(201);
    const cookie = (accepted.cookies[0] ?? '').split(';')[0] ?? '';
    secrets.add(cookie.split('=')[1] ?? '');
    const me = await req('GET', '/api/v1/auth/session', { cookie });
    expect(me.json).toMatchObject({ member: { name: 'New Viewer', role: 'viewer', sites: ['a1.test'] }, email: 'new.viewer@a.test' });
    const sites = await req('GET', '/api/v1/sites', { cookie });
    expect((sites.json.sites as Array<{ domain: string }>).map((s) => s.domain)).toEqual(['a1.test']);
    // Single use: the same link again, and a made-up one, are the same refusal.
    expect(code(await req('POST', '/api/v1/auth/invitation', { body: { token: secret, name: 'Again', password: newPassword }, client: newClient() }))).toBe('400 API_LINK_INVALID');
    expect(code(await req('POST', '/api/v1/auth/invitation', { body: { token: 'A'.repeat(43), name: 'X', password: newPassword }, client: newClient() }))).toBe('400 API_LINK_INVALID');
    expect((await signIn('new.viewer@a.test', newPassword)).res.status).toBe(200);
  });

  it('lose their power with their inviter: one sent by an admin demoted since is refused', async () => {
    const admin = await control.addMember(account, { name: 'soon viewer', role: 'admin' });
    const t = (await control.issueToken(admin.id)).token;
    secrets.add(t);
    const made = await req('POST', '/api/v1/invitations', { token: t, body: { email: 'late@a.test', role: 'viewer' } });
    const secret = String(made.json.link).split('invite=')[1] ?? '';
    secrets.add(secret);
    await control.updateMember(admin.id, { role: 'viewer' });
    expect(code(await req('POST', '/api/v1/auth/invitation', { body: { token: secret, name: 'Late', password: PASSWORD }, client: newClient() }))).toBe('400 API_LINK_INVALID');
  });

  it('can be withdrawn, and expire', async () => {
    const a = await req('POST', '/api/v1/invitations', { token: ownerToken, body: { email: 'w@a.test', role: 'viewer' } });
    const b = await req('POST', '/api/v1/invitations', { token: ownerToken, body: { email: 'e@a.test', role: 'viewer' } });
    const [sa, sb] = [a, b].map((r) => String(r.json.link).split('invite=')[1] ?? '');
    secrets.add(sa ?? '').add(sb ?? '');
    expect((await req('DELETE', `/api/v1/invitations/${String((a.json.invitation as { id: string }).id)}`, { token: ownerToken })).status).toBe(204);
    expect(code(await req('POST', '/api/v1/auth/invitation', { body: { token: sa, name: 'W', password: PASSWORD }, client: newClient() }))).toBe('400 API_LINK_INVALID');
    clock += 8 * 86_400_000;
    expect(code(await req('POST', '/api/v1/auth/invitation', { body: { token: sb, name: 'E', password: PASSWORD }, client: newClient() }))).toBe('400 API_LINK_INVALID');
  });
});

describe('password reset', () => {
  it('is a one-time link that replaces the password and the second factor and ends every session', async () => {
    const m = await control.addMember(account, { name: 'forgetful', role: 'admin', sites: ['a1.test'] });
    // A per-site admin cannot reset a member it does not manage (an admin like itself).
    expect(code(await req('POST', `/api/v1/members/${m.id}/reset-link`, { token: siteAdminToken, body: { email: 'f@a.test' } }))).toBe('403 API_FORBIDDEN');
    const made = await req('POST', `/api/v1/members/${m.id}/reset-link`, { token: ownerToken, body: { email: 'f@a.test' } });
    expect(made.status).toBe(201);
    const secret = String(made.json.link).split('reset=')[1] ?? '';
    secrets.add(secret);
    const newPassword = 'my brand new password';
    secrets.add(newPassword);
    const used = await req('POST', '/api/v1/auth/reset', { body: { token: secret, password: newPassword }, client: newClient() });
    expect(used.status).toBe(200);
    secrets.add(((used.cookies[0] ?? '').split(';')[0] ?? '').split('=')[1] ?? '');
    expect(code(await req('POST', '/api/v1/auth/reset', { body: { token: secret, password: 'another new password' }, client: newClient() }))).toBe('400 API_LINK_INVALID');
    expect((await signIn('f@a.test', newPassword)).res.status).toBe(200);
    expect(code(await req('POST', '/api/v1/auth/reset', { body: { token: secret, password: 'short' }, client: newClient() }))).toBe('400 API_BAD_REQUEST');
  });
});

describe('audit trail', () => {
  it('records who did what from which session or token, is for account-wide owners, and holds no secret', async () => {
    const s = await signIn('owner@a.test', PASSWORD);
    // Experiment routes are recorded too.
    expect((await req('PUT', '/api/v1/sites/a1.test/redirect-hosts', { cookie: s.cookie, csrf: s.csrf, body: { redirect_hosts: ['shop.example'] } })).status).toBe(200);
    expect((await req('POST', '/api/v1/sites/a1.test/goals', { cookie: s.cookie, csrf: s.csrf, body: { name: 'Signup' } })).status).toBe(201);
    expect(code(await req('GET', '/api/v1/audit', { token: siteAdminToken }))).toBe('403 API_FORBIDDEN');
    const trail = await req('GET', '/api/v1/audit?limit=1000', { cookie: s.cookie });
    expect(trail.status).toBe(200);
    const entries = trail.json.entries as Array<Record<string, unknown>>;
    const sessionId = String((await req('GET', '/api/v1/auth/session', { cookie: s.cookie })).json.via_id);
    expect(entries[0]).toMatchObject({ actor: owner.id, via: 'session', via_id: sessionId, action: 'POST /api/v1/sites/:domain/goals', target: 'domain=a1.test', detail: { name: 'Signup' } });
    const actions = new Set(entries.map((e) => e.action));
    for (const a of ['signin.password', 'signin.failed', 'signin.invitation', 'invitation.claim', 'POST /api/v1/invitations', 'password.reset', 'signout', 'signout.all', 'totp.enable', 'totp.disable', 'DELETE /api/v1/members/:id', 'PUT /api/v1/sites/:domain/redirect-hosts']) {
      expect(actions, a).toContain(a);
    }
    expect(entries.some((e) => e.via === 'token' && /^tok:[0-9a-f]{12}$/.test(String(e.via_id)))).toBe(true);
    const raw = await api.store.query<Record<string, unknown>>('SELECT * FROM audit_log');
    const text = JSON.stringify(raw);
    for (const secret of secrets) if (secret.length >= 8) expect(text.includes(secret), 'a secret in the audit trail').toBe(false);
    expect(text).not.toMatch(/\b(?:\d{1,3}\.){3}\d{1,3}\b/);
  });

  it('keeps records for the retention only', async () => {
    const all = await control.people.auditTrail(account, 3650, 10_000);
    const oldest = Math.min(...all.map((e) => Date.parse(e.at)));
    // Everything recorded before the invitations expired (8 days back) is older than 2 days now.
    expect(clock - oldest).toBeGreaterThan(2 * 86_400_000);
    await control.people.pruneAudit(2);
    const kept = await control.people.auditTrail(account, 3650, 10_000);
    expect(kept.length).toBeGreaterThan(0);
    expect(kept.length).toBeLessThan(all.length);
    expect(kept.every((e) => clock - Date.parse(e.at) <= 2 * 86_400_000)).toBe(true);
  });

  it('leaves no password, session id, TOTP secret or token in the logs or any error answer', () => {
    const everything = [...logLines, ...bodies].join('\n');
    expect(secrets.size).toBeGreaterThan(10);
    for (const secret of secrets) if (secret.length >= 8) expect(everything.includes(secret), 'a secret in a log line or an answer').toBe(false);
  });
});
