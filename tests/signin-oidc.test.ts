import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ControlPlane, Member } from '../control/control-plane.ts';
import { startApiOnChdb, type ApiOnChdb } from '../api/experiments/testing/api-harness.ts';
import { freePort, startIdp, type TestIdp } from './support/oidc-idp.ts';

/**
 * Sign-in with OpenID Connect (#14) against a real provider (`oidc-provider` on a loopback port)
 * and the real API on a real port: the authorization code flow with PKCE followed redirect by
 * redirect; an identity signs in its member; the first sign-in with a verified email claims its
 * invitation (role and sites applied); an unverified email claims nothing; a tampered state or
 * nonce, a callback without the browser's flow cookie, and a replayed callback are refused.
 */

let api: ApiOnChdb;
let idp: TestIdp;
let control: ControlPlane;
let account = '';
let owner: Member;
let ownerToken = '';

/** Cookies by host, like a browser's jar. */
type Jar = Map<string, Map<string, string>>;

function cookieHeader(jar: Jar, url: URL): string {
  return [...(jar.get(url.host) ?? new Map<string, string>())].map(([k, v]) => `${k}=${v}`).join('; ');
}

function keep(jar: Jar, url: URL, res: Response): void {
  const mine = jar.get(url.host) ?? new Map<string, string>();
  jar.set(url.host, mine);
  for (const c of res.headers.getSetCookie()) {
    const [pair = ''] = c.split(';');
    const eq = pair.indexOf('=');
    const name = pair.slice(0, eq);
    const value = pair.slice(eq + 1);
    if (/Max-Age=0/i.test(c) || value === '') mine.delete(name);
    else mine.set(name, value);
  }
}

async function get(jar: Jar, href: string): Promise<Response> {
  const url = new URL(href);
  const res = await fetch(url, { redirect: 'manual', headers: { cookie: cookieHeader(jar, url) } });
  keep(jar, url, res);
  return res;
}

/** Starts a sign-in at Farol; returns the provider's authorization URL (the browser holds Farol's flow cookie). */
async function start(jar: Jar): Promise<URL> {
  const res = await get(jar, `${api.url}/api/v1/auth/oidc/start`);
  expect(res.status).toBe(302);
  return new URL(res.headers.get('location') ?? '');
}

/** Follows the provider's redirects (login, consent) until it sends the browser back to Farol; returns that callback URL. */
async function throughProvider(jar: Jar, authorize: URL): Promise<URL> {
  let next = authorize.href;
  for (let i = 0; i < 10; i++) {
    const res = await get(jar, next);
    const location = res.headers.get('location');
    if (location === null) throw new Error(`provider answered ${res.status}: ${await res.text()}`);
    const url = new URL(location, next);
    if (url.href.startsWith(`${api.url}/api/v1/auth/oidc/callback`)) return url;
    next = url.href;
  }
  throw new Error('too many redirects');
}

async function signIn(subject: string, tamper?: (authorize: URL) => void): Promise<{ jar: Jar; res: Response; body: string }> {
  idp.nextLogin = subject;
  const jar: Jar = new Map();
  const authorize = await start(jar);
  tamper?.(authorize);
  const callback = await throughProvider(jar, authorize);
  const res = await get(jar, callback.href);
  return { jar, res, body: await res.text() };
}

async function asSession(jar: Jar, path: string): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await get(jar, `${api.url}${path}`);
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

const errorCode = (body: string): string => String((JSON.parse(body) as { error?: { code?: string } }).error?.code);

beforeAll(async () => {
  const port = await freePort();
  const publicUrl = `http://127.0.0.1:${port}`;
  idp = await startIdp(`${publicUrl}/api/v1/auth/oidc/callback`);
  api = await startApiOnChdb({
    database: 'farol_signin_oidc_test',
    env: {
      FAROL_PORT: String(port),
      FAROL_PUBLIC_URL: publicUrl,
      FAROL_OIDC_ISSUER: idp.issuer,
      FAROL_OIDC_CLIENT_ID: idp.clientId,
      FAROL_OIDC_CLIENT_SECRET: idp.clientSecret,
    },
    seed: async (c) => {
      control = c;
      account = (await c.createAccount({ name: 'A' })).id;
      await c.addSite(account, { domain: 'a1.test' });
      await c.addSite(account, { domain: 'a2.test' });
      owner = await c.addMember(account, { name: 'owner', role: 'owner' });
      ownerToken = (await c.issueToken(owner.id)).token;
      await c.people.setIdentity(owner.id, account, { email: 'owner@a.test', oidcIssuer: '', oidcSubject: '' });
    },
  });
  expect(api.url).toBe(publicUrl);
  idp.users.set('owner-sub', { email: 'owner@a.test', email_verified: true, name: 'The Owner' });
  idp.users.set('invitee-sub', { email: 'invitee@a.test', email_verified: true, name: 'Invitee' });
  idp.users.set('unverified-sub', { email: 'sneaky@a.test', email_verified: false });
  idp.users.set('stranger-sub', { email: 'stranger@a.test', email_verified: true });
}, 60_000);

afterAll(async () => {
  await api?.close();
  await idp?.close();
});

describe('OpenID Connect sign-in', () => {
  it('says it is on', async () => {
    expect(await (await fetch(`${api.url}/api/v1/auth/config`)).json()).toEqual({ password: true, oidc: true, reset_mail: false });
  });

  it('sends PKCE (S256), state and nonce to the provider', async () => {
    const authorize = await start(new Map());
    expect(authorize.origin).toBe(idp.issuer);
    expect(authorize.searchParams.get('code_challenge_method')).toBe('S256');
    for (const p of ['code_challenge', 'state', 'nonce']) expect(authorize.searchParams.get(p)?.length ?? 0).toBeGreaterThanOrEqual(32);
    expect(authorize.searchParams.get('redirect_uri')).toBe(`${api.url}/api/v1/auth/oidc/callback`);
  });

  it('links a member by its verified email on first sign-in, then by issuer and subject', async () => {
    const first = await signIn('owner-sub');
    expect(first.res.status).toBe(302);
    expect(first.res.headers.get('location')).toBe('/');
    expect((await asSession(first.jar, '/api/v1/auth/session')).json).toMatchObject({ member: { id: owner.id }, via: 'session' });
    // The email changes at the provider: issuer + subject still sign the same member in.
    idp.users.set('owner-sub', { email: 'renamed@a.test', email_verified: true });
    const again = await signIn('owner-sub');
    expect((await asSession(again.jar, '/api/v1/auth/session')).json).toMatchObject({ member: { id: owner.id } });
  });

  it('signs out at the provider too (RP-initiated logout) a session begun there', async () => {
    const s = await signIn('owner-sub');
    const csrf = String((await asSession(s.jar, '/api/v1/auth/session')).json.csrf);
    const cookie = cookieHeader(s.jar, new URL(api.url));
    const out = await fetch(`${api.url}/api/v1/auth/signout`, { method: 'POST', headers: { cookie, 'x-csrf-token': csrf } });
    expect(out.status).toBe(200);
    const end = new URL(String(((await out.json()) as { end_session_url?: string }).end_session_url));
    const advertised = ((await (await fetch(`${idp.issuer}/.well-known/openid-configuration`)).json()) as { end_session_endpoint?: string }).end_session_endpoint;
    expect(advertised).toBeDefined();
    expect(`${end.origin}${end.pathname}`).toBe(advertised);
    expect(end.searchParams.get('client_id')).toBe(idp.clientId);
    expect(end.searchParams.get('post_logout_redirect_uri')).toBe(`${api.url}/`);
    expect((await fetch(`${api.url}/api/v1/auth/session`, { headers: { cookie } })).status).toBe(401);
  });

  it('claims an invitation on the first sign-in of its verified email: role and sites applied, once', async () => {
    const made = await fetch(`${api.url}/api/v1/invitations`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ownerToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ email: 'Invitee@a.test', role: 'admin', sites: ['a2.test'] }),
    });
    expect(made.status).toBe(201);
    const s = await signIn('invitee-sub');
    expect(s.res.status).toBe(302);
    const me = await asSession(s.jar, '/api/v1/auth/session');
    expect(me.json).toMatchObject({ member: { name: 'Invitee', role: 'admin', sites: ['a2.test'] }, email: 'invitee@a.test' });
    const sites = await asSession(s.jar, '/api/v1/sites');
    expect((sites.json.sites as Array<{ domain: string }>).map((x) => x.domain)).toEqual(['a2.test']);
    const open = (await (await fetch(`${api.url}/api/v1/invitations`, { headers: { authorization: `Bearer ${ownerToken}` } })).json()) as { invitations: unknown[] };
    expect(open.invitations).toEqual([]);
    // Signing in again is the same member, not a second one.
    const again = await signIn('invitee-sub');
    expect((await asSession(again.jar, '/api/v1/auth/session')).json).toMatchObject({ member: { id: (me.json.member as { id: string }).id } });
    expect((await control.members(account)).filter((m) => m.name === 'Invitee')).toHaveLength(1);
  });

  it('claims nothing for an unverified email, and lets no stranger in', async () => {
    await fetch(`${api.url}/api/v1/invitations`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ownerToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ email: 'sneaky@a.test', role: 'owner' }),
    });
    for (const sub of ['unverified-sub', 'stranger-sub']) {
      const s = await signIn(sub);
      expect(s.res.status).toBe(403);
      expect(errorCode(s.body)).toBe('API_NOT_INVITED');
      expect(s.res.headers.getSetCookie().some((c) => c.startsWith('farol_session='))).toBe(false);
    }
  });

  it('refuses a tampered state, a tampered nonce, a callback from another browser, and a replayed callback', async () => {
    const state = await signIn('owner-sub', (u) => u.searchParams.set('state', `${u.searchParams.get('state') ?? ''}x`));
    expect(state.res.status).toBe(400);
    expect(errorCode(state.body)).toBe('API_OIDC_FAILED');

    const nonce = await signIn('owner-sub', (u) => u.searchParams.set('nonce', 'an-attacker-chosen-nonce-000000000000000'));
    expect(nonce.res.status).toBe(400);
    expect(errorCode(nonce.body)).toBe('API_OIDC_FAILED');

    // The provider's answer carried to a browser that did not start the sign-in (no flow cookie).
    idp.nextLogin = 'owner-sub';
    const jar: Jar = new Map();
    const callback = await throughProvider(jar, await start(jar));
    const elsewhere = await fetch(callback, { redirect: 'manual' });
    expect(elsewhere.status).toBe(400);
    expect(errorCode(await elsewhere.text())).toBe('API_OIDC_FAILED');

    // The same callback once in the right browser, then replayed: the flow is used up.
    const ok = await signIn('owner-sub');
    expect(ok.res.status).toBe(302);
    const jar2: Jar = new Map();
    const cb2 = await throughProvider(jar2, await start(jar2));
    const flow = cookieHeader(jar2, new URL(api.url));
    expect((await fetch(cb2, { redirect: 'manual', headers: { cookie: flow } })).status).toBe(302);
    expect((await fetch(cb2, { redirect: 'manual', headers: { cookie: flow } })).status).toBe(400);
  });

  it('an identity that signs in again sees every membership linked to it (joined while signed in, never by email)', async () => {
    const beta = (await control.createAccount({ name: 'Beta' })).id;
    const betaOwner = (await control.issueToken((await control.addMember(beta, { name: 'owner B', role: 'owner' })).id)).token;
    const invited = await fetch(`${api.url}/api/v1/invitations`, {
      method: 'POST',
      headers: { authorization: `Bearer ${betaOwner}`, 'content-type': 'application/json' },
      body: JSON.stringify({ email: 'owner@beta.test', role: 'viewer' }),
    });
    const secret = String(((await invited.json()) as { link?: string }).link).split('invite=')[1] ?? '';
    const first = await signIn('owner-sub');
    const csrf = String((await asSession(first.jar, '/api/v1/auth/session')).json.csrf);
    const url = new URL(`${api.url}/api/v1/me/memberships`);
    const joined = await fetch(url, { method: 'POST', headers: { cookie: cookieHeader(first.jar, url), 'x-csrf-token': csrf, 'content-type': 'application/json' }, body: JSON.stringify({ token: secret }) });
    expect(joined.status).toBe(201);
    // A new sign-in through the provider (another browser): both memberships, home current.
    const again = await signIn('owner-sub');
    const list = (await asSession(again.jar, '/api/v1/me/memberships')).json.memberships as Array<{ account_id: string; current: boolean }>;
    expect(list.map((m) => [m.account_id, m.current])).toEqual([
      [account, true],
      [beta, false],
    ]);
  });
});

