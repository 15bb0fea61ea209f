import { createHash } from 'node:crypto';
import { z } from 'zod';
import { ApiError } from '../../schemas/errors.ts';
import { TokenBuckets } from '../../lib/token-bucket.ts';
import { parseInput, type Member } from '../../control/control-plane.ts';
import { grantAccess, type Principal } from '../../control/model.ts';
import {
  csrfTokenOf,
  emailSchema,
  hashPassword,
  newTotp,
  passwordSchema,
  totpCodeSchema,
  totpValid,
  verifyPassword,
  type Identity,
  type Invitation,
} from '../../control/people.ts';
import { authenticate, credentialOf } from '../auth.ts';
import { clientKeyer } from '../auth-guard.ts';
import { clearSessionCookie, flowCookie, parseCookies, secureCookies, sessionCookie, sessionSecretOf } from '../auth-cookies.ts';
import { FLOW_COOKIE, FLOW_TTL_MS, oidcClient, type OidcClient } from '../oidc.ts';
import { smtpMailer, type Mailer } from '../mail.ts';
import { linkTo } from './team.ts';
import type { ApiReply, ApiRequest, ApiRouter } from '../http.ts';
import type { ApiDeps } from '../deps.ts';

/**
 * People sign in and out (#14):
 *
 * - `GET /api/v1/auth/config`: which ways in exist (password; OpenID Connect when configured).
 * - `POST /api/v1/auth/password` `{email, password, totp?}`: a session cookie, or 401. Failed
 *   attempts are throttled per account and per client (FAROL_RATE_SIGNIN): past the budget every
 *   attempt is 429 before any check, right password or not.
 * - `GET /api/v1/auth/oidc/start` → the provider; `GET /api/v1/auth/oidc/callback` → `/` signed in.
 *   An identity (issuer + subject) signs in its member; otherwise the first sign-in with a
 *   verified email claims the oldest open invitation for it (or links the member that signs in
 *   with that email by password).
 * - `POST /api/v1/auth/invitation` `{token, name, password}`: accepts an invitation by its link
 *   with a password; `POST /api/v1/auth/reset` `{token, password}`: a one-time reset link.
 * - `POST /api/v1/auth/forgot` `{email}` (with FAROL_SMTP_URL): mails a one-time reset link to the
 *   member that signs in with this email. The answer (202) is the same whether or not one does,
 *   and is given before any lookup: the lookup, the link and the mail happen after it, so neither
 *   the answer nor its timing tells whether the email exists. Throttled per email and per client
 *   (FAROL_RATE_SIGNIN, every request counts: each may send a mail). A mail server outage is
 *   logged (`reset mail not sent`, its reason without the URL's credentials) and counted.
 * - `GET /api/v1/auth/session`: who the request acts as, and the session's CSRF token.
 * - `POST /api/v1/auth/signout` (this session; for a session begun at an identity provider that
 *   advertises `end_session_endpoint`, the answer's `end_session_url` signs out there too:
 *   RP-initiated logout), `POST /api/v1/auth/signout-all` (every session of
 *   the member); `GET /api/v1/me/sessions`, `DELETE /api/v1/me/sessions/:id`.
 * - `POST /api/v1/me/password` `{current, password}`; `GET /api/v1/me/totp` (a new secret) and
 *   `POST /api/v1/me/totp` `{secret, code}` to turn the second factor on; `POST /api/v1/me/totp/off`
 *   `{code}` (a current code) to turn it off.
 *
 * - Several accounts (the switcher): `POST /api/v1/me/memberships` `{token}` accepts an invitation
 *   as the signed-in person (a browser session): the new member is linked to the person, never by
 *   email. `GET /api/v1/me/memberships` lists the person's memberships (a token: its own only);
 *   `POST /api/v1/auth/switch` `{account_id}` moves this session to the person's membership of
 *   that account: every request then acts as that member. Any other id is the same 404.
 *
 * The sign-in POSTs need `Content-Type: application/json`, which a cross-site form cannot send:
 * another site cannot sign a browser in to an account of its choosing.
 */

const passwordLogin = z.strictObject({ email: emailSchema, password: z.string().max(1024), totp: z.string().max(16).optional() });
const acceptInput = z.strictObject({ token: z.string().max(64), name: z.string().trim().min(1).max(100), password: passwordSchema });
const resetInput = z.strictObject({ token: z.string().max(64), password: passwordSchema });
const changePassword = z.strictObject({ current: z.string().max(1024).default(''), password: passwordSchema });
const totpOffInput = z.strictObject({ code: totpCodeSchema });
const forgotInput = z.strictObject({ email: emailSchema });
const joinInput = z.strictObject({ token: z.string().max(64) });
const switchInput = z.strictObject({ account_id: z.string().max(64) });
const totpInput = z.strictObject({ secret: z.string().regex(/^[A-Z2-7]{32}$/, 'must be the secret GET /api/v1/me/totp gave'), code: totpCodeSchema });

function requireJson(req: ApiRequest): void {
  if (!(req.headers['content-type'] ?? '').toLowerCase().startsWith('application/json')) {
    throw new ApiError('API_BAD_REQUEST', 'Content-Type must be application/json', 'content-type');
  }
}

export function memberJson(m: Member): Record<string, unknown> {
  return { id: m.id, name: m.name, role: m.role, sites: m.sites, created_at: m.createdAt };
}

/** The sign-in routes' OpenID Connect client, when FAROL_OIDC_* are set. */
function configuredOidc(deps: ApiDeps): OidcClient | undefined {
  const c = deps.config;
  if (c.FAROL_OIDC_ISSUER === undefined || c.FAROL_OIDC_CLIENT_ID === undefined || c.FAROL_OIDC_CLIENT_SECRET === undefined || c.FAROL_PUBLIC_URL === undefined) return undefined;
  return oidcClient({ issuer: c.FAROL_OIDC_ISSUER, clientId: c.FAROL_OIDC_CLIENT_ID, clientSecret: c.FAROL_OIDC_CLIENT_SECRET, redirectUri: `${c.FAROL_PUBLIC_URL}/api/v1/auth/oidc/callback` });
}

export function signinRoutes(r: ApiRouter, deps: ApiDeps): void {
  const { control, config } = deps;
  const people = control.people;
  const secure = secureCookies(config);
  const keyer = clientKeyer(config.FAROL_TRUST_PROXY);
  const rate = config.FAROL_RATE_SIGNIN;
  const accounts = rate === null ? undefined : new TokenBuckets(rate);
  const clients = rate === null ? undefined : new TokenBuckets(rate);
  const maxAgeS = config.FAROL_SESSION_MAX_HOURS * 3600;
  const oidc = configuredOidc(deps);
  const signins = deps.metrics.counter('farol_signins_total', 'Sign-ins by method and outcome');
  const mailer: Mailer | undefined =
    config.FAROL_SMTP_URL === undefined || config.FAROL_SMTP_FROM === undefined ? undefined : smtpMailer(config.FAROL_SMTP_URL, config.FAROL_SMTP_FROM);
  const resetMails = deps.metrics.counter('farol_reset_mails_total', 'Password-reset mails by outcome (sent, failed)');
  // Forgot-password requests have budgets of their own: asking for mail must not lock a person's sign-in.
  const forgotAccounts = rate === null ? undefined : new TokenBuckets(rate);
  const forgotClients = rate === null ? undefined : new TokenBuckets(rate);

  /** An in-memory key of an email for the per-account throttle (the email itself is not kept). */
  const accountKey = (email: string): string => createHash('sha256').update(email).digest('base64url').slice(0, 22);

  function throttled(account: string, client: string | undefined): void {
    const wait = Math.max(accounts?.wait(account) ?? 0, client === undefined ? 0 : (clients?.wait(client) ?? 0));
    if (wait > 0) {
      const e = new ApiError('API_SIGNIN_THROTTLED');
      e.retryAfterS = wait;
      throw e;
    }
  }

  function failed(account: string, client: string | undefined): void {
    accounts?.spend(account);
    if (client !== undefined) clients?.spend(client);
  }

  /** Starts a session for a member, records it, and answers with its cookie. */
  async function signIn(memberId: string, accountId: string, method: string, reply: ApiReply = {}): Promise<ApiReply> {
    const { secret, session } = await people.startSession(memberId, accountId, method);
    await people.audit(accountId, { actor: memberId, via: 'session', viaId: session.id, action: `signin.${method}`, target: `member=${memberId}` });
    signins.labels({ method, outcome: 'ok' }).inc();
    return { json: { csrf: csrfTokenOf(secret), session: session.id }, ...reply, headers: { ...reply.headers, 'Set-Cookie': sessionCookie(secret, maxAgeS, secure), 'Cache-Control': 'no-store' } };
  }

  /**
   * Creates the member an invitation is for, if its inviter may still give that grant (an inviter
   * demoted or removed since takes the invitation's power with it). Runs under the account's lock.
   */
  async function memberFor(inv: Invitation, name: string): Promise<Member> {
    const inviter = await control.member(inv.invitedBy);
    const asInviter: Principal | null =
      inviter === null ? null : { accountId: inviter.accountId, memberId: inviter.id, role: inviter.role, sites: inviter.sites, tokenHash: '' };
    if (asInviter === null || asInviter.accountId !== inv.accountId || grantAccess(asInviter, inv.role, inv.sites) !== 'ok') {
      throw new ApiError('API_LINK_INVALID', 'The person who sent this invitation may no longer give it');
    }
    const m = await control.addMember(inv.accountId, { name, role: inv.role, sites: [...inv.sites] });
    await people.audit(inv.accountId, { actor: m.id, via: 'signin', viaId: inv.id, action: 'invitation.claim', target: `invitation=${inv.id}`, detail: { role: inv.role, sites: inv.sites } });
    return m;
  }

  /**
   * The identity a request's credentials stand for: a session's person's (a session switched to
   * another account still is that person), a token's own member's (a token of a linked member
   * stands for that member only: its account's owners may hold it).
   */
  async function identityOf(p: Principal): Promise<Identity | null> {
    return people.identity(p.session === undefined ? p.memberId : await people.personOf(p.memberId));
  }

  r.get('/api/v1/auth/config', () => ({ json: { password: true, oidc: oidc !== undefined, reset_mail: mailer !== undefined } }));

  /** Mails a reset link to the member that signs in with `email`, if one does (after the request was answered). */
  async function mailResetLink(m: Mailer, email: string): Promise<void> {
    const id = await people.identityByEmail(email);
    if (id === null || (await control.member(id.memberId)) === null) return;
    const { secret, expiresAt } = await people.resetLink(id.memberId, id.accountId);
    const link = linkTo(config.FAROL_PUBLIC_URL, `reset=${secret}`);
    try {
      await m.send({
        to: id.email,
        subject: 'Choose a new Farol password',
        text: `Someone asked to choose a new password for ${id.email} on ${config.FAROL_PUBLIC_URL ?? 'Farol'}.\n\nOpen this link to choose one (it works once, until ${expiresAt}):\n\n${link}\n\nIf it was not you, ignore this mail: your password stays as it is.\n`,
      });
    } catch (err) {
      resetMails.labels({ outcome: 'failed' }).inc();
      // The MailError's message carries no credential; the member id says whose mail it was.
      deps.log.error({ member: id.memberId, reason: err instanceof Error ? err.message : String(err), code: (err as { code?: string }).code ?? null }, 'reset mail not sent');
      return;
    }
    resetMails.labels({ outcome: 'sent' }).inc();
    await people.audit(id.accountId, { actor: id.memberId, via: 'signin', viaId: '', action: 'password.reset.mail', target: `member=${id.memberId}` });
  }

  r.post(
    '/api/v1/auth/forgot',
    async (req) => {
      if (mailer === undefined) throw new ApiError('API_RESET_MAIL_OFF');
      requireJson(req);
      const v = parseInput(forgotInput, req.body ?? {});
      const key = accountKey(v.email);
      const wait = Math.max(forgotAccounts?.wait(key) ?? 0, req.client === undefined ? 0 : (forgotClients?.wait(req.client) ?? 0));
      if (wait > 0) {
        const e = new ApiError('API_SIGNIN_THROTTLED', 'Too many requests for reset mail; retry after the Retry-After seconds');
        e.retryAfterS = wait;
        throw e;
      }
      forgotAccounts?.spend(key);
      if (req.client !== undefined) forgotClients?.spend(req.client);
      mailResetLink(mailer, v.email).catch((err: unknown) => deps.log.error({ err }, 'reset mail not sent'));
      return { status: 202, json: { message: 'If a member signs in with this email, a link to choose a new password is on its way.' }, headers: { 'Cache-Control': 'no-store' } };
    },
    { clientKey: keyer },
  );

  r.post(
    '/api/v1/auth/password',
    async (req) => {
      requireJson(req);
      const v = parseInput(passwordLogin, req.body ?? {});
      const key = accountKey(v.email);
      throttled(key, req.client);
      const id = await people.identityByEmail(v.email);
      const ok = await verifyPassword(id?.passwordHash, v.password);
      if (id === null || !ok) {
        failed(key, req.client);
        signins.labels({ method: 'password', outcome: 'failed' }).inc();
        if (id !== null) await people.audit(id.accountId, { actor: id.memberId, via: 'signin', viaId: '', action: 'signin.failed', target: `member=${id.memberId}` });
        throw new ApiError('API_SIGNIN_FAILED');
      }
      if (id.totpSecret !== '') {
        if (v.totp === undefined) throw new ApiError('API_TOTP_REQUIRED', undefined, 'totp');
        if (!totpValid(id.totpSecret, v.totp, control.clock())) {
          failed(key, req.client);
          signins.labels({ method: 'password', outcome: 'failed' }).inc();
          await people.audit(id.accountId, { actor: id.memberId, via: 'signin', viaId: '', action: 'signin.failed', target: `member=${id.memberId}`, detail: { factor: 'totp' } });
          throw new ApiError('API_TOTP_REQUIRED', 'The authenticator code is wrong or too old', 'totp');
        }
      }
      return signIn(id.memberId, id.accountId, 'password');
    },
    { clientKey: keyer },
  );

  r.post(
    '/api/v1/auth/invitation',
    async (req) => {
      requireJson(req);
      const v = parseInput(acceptInput, req.body ?? {});
      const key = `link:${req.client ?? ''}`;
      throttled(key, req.client);
      const m = await people.claim({ secret: v.token }, async (inv) => {
        if ((await people.identityByEmail(inv.email)) !== null) throw new ApiError('API_CONFLICT', 'A member already signs in with this email: sign in, then accept the invitation', 'email');
        const member = await memberFor(inv, v.name);
        await people.setIdentity(member.id, member.accountId, { email: inv.email, passwordHash: await hashPassword(v.password) });
        return member;
      });
      if (m === null) {
        failed(key, req.client);
        throw new ApiError('API_LINK_INVALID');
      }
      return signIn(m.id, m.accountId, 'invitation', { status: 201 });
    },
    { clientKey: keyer },
  );

  r.post(
    '/api/v1/auth/reset',
    async (req) => {
      requireJson(req);
      const v = parseInput(resetInput, req.body ?? {});
      const key = `link:${req.client ?? ''}`;
      throttled(key, req.client);
      const used = await people.useResetLink(v.token);
      const m = used === null ? null : await control.member(used.memberId);
      if (used === null || m === null) {
        failed(key, req.client);
        throw new ApiError('API_LINK_INVALID');
      }
      // A reset replaces every credential a person holds in their head or phone: the password and
      // the second factor (a lost phone is what locks owners out); every session ends.
      await people.setIdentity(m.id, m.accountId, { passwordHash: await hashPassword(v.password), totpSecret: '' });
      await people.revokeSessions(m.id);
      await people.audit(m.accountId, { actor: m.id, via: 'signin', viaId: '', action: 'password.reset', target: `member=${m.id}` });
      return signIn(m.id, m.accountId, 'reset');
    },
    { clientKey: keyer },
  );

  r.get('/api/v1/auth/session', async (req) => {
    const p = await authenticate(control, req);
    const m = await control.member(p.memberId);
    if (m === null) throw new ApiError('API_UNAUTHORIZED');
    const id = await identityOf(p);
    const secret = p.session === undefined ? undefined : sessionSecretOf(req.headers.cookie);
    return {
      json: {
        member: memberJson(m),
        account_id: p.accountId,
        email: id?.email ?? null,
        totp: (id?.totpSecret ?? '') !== '',
        via: credentialOf(p).via,
        via_id: credentialOf(p).viaId,
        ...(secret === undefined ? {} : { csrf: csrfTokenOf(secret) }),
      },
      headers: { 'Cache-Control': 'no-store' },
    };
  });

  r.post('/api/v1/auth/signout', async (req) => {
    const p = await authenticate(control, req);
    if (p.session === undefined) throw new ApiError('API_BAD_REQUEST', 'Only a browser session signs out; revoke a token instead', 'authorization');
    const method = (await people.sessions(p.memberId)).find((s) => s.id === p.session)?.method ?? '';
    await people.revokeSession(p.memberId, p.session);
    await people.audit(p.accountId, { actor: p.memberId, ...credentialOf(p), action: 'signout', target: `session=${p.session}` });
    // Signed in through the identity provider: the dashboard sends the browser there to sign out too.
    const end = method.startsWith('oidc') && oidc !== undefined && config.FAROL_PUBLIC_URL !== undefined ? await oidc.endSessionUrl(`${config.FAROL_PUBLIC_URL}/`) : undefined;
    const headers = { 'Set-Cookie': clearSessionCookie(secure), 'Cache-Control': 'no-store' };
    return end === undefined ? { status: 204, headers } : { json: { end_session_url: end }, headers };
  });

  r.post('/api/v1/auth/signout-all', async (req) => {
    const p = await authenticate(control, req);
    const n = await people.revokeSessions(p.memberId);
    await people.audit(p.accountId, { actor: p.memberId, ...credentialOf(p), action: 'signout.all', target: `member=${p.memberId}`, detail: { sessions: n } });
    return { json: { revoked: n }, headers: { 'Set-Cookie': clearSessionCookie(secure) } };
  });

  // ---- several accounts: memberships linked to the person ----------------------------------------

  /** The live memberships of the person a session acts for, home first; [] for none. */
  async function membershipsOf(memberId: string): Promise<Array<{ member: Member; home: boolean }>> {
    const person = await people.personOf(memberId);
    const out: Array<{ member: Member; home: boolean }> = [];
    for (const id of await people.personMembers(person)) {
      const m = await control.member(id);
      if (m !== null) out.push({ member: m, home: id === person });
    }
    return out;
  }

  function sessionOnly(p: Principal): string {
    if (p.session === undefined) throw new ApiError('API_BAD_REQUEST', 'A token belongs to one member of one account; sign in to switch', 'authorization');
    return p.session;
  }

  r.get('/api/v1/me/memberships', async (req) => {
    const p = await authenticate(control, req);
    const list = p.session === undefined ? [{ member: await control.member(p.memberId), home: true }].filter((x): x is { member: Member; home: boolean } => x.member !== null) : await membershipsOf(p.memberId);
    const names = new Map<string, string>();
    for (const { member } of list) if (!names.has(member.accountId)) names.set(member.accountId, (await control.account(member.accountId))?.name ?? member.accountId);
    return {
      json: {
        memberships: list.map(({ member, home }) => ({
          account_id: member.accountId,
          account_name: names.get(member.accountId) ?? member.accountId,
          member_id: member.id,
          role: member.role,
          sites: member.sites,
          home,
          current: member.id === p.memberId,
        })),
      },
      headers: { 'Cache-Control': 'no-store' },
    };
  });

  r.post(
    '/api/v1/me/memberships',
    async (req) => {
      requireJson(req);
      const p = await authenticate(control, req);
      const viaId = sessionOnly(p);
      const v = parseInput(joinInput, req.body ?? {});
      const key = `link:${req.client ?? ''}`;
      throttled(key, req.client);
      const person = await people.personOf(p.memberId);
      const home = await control.member(person);
      if (home === null) throw new ApiError('API_UNAUTHORIZED');
      const m = await people.claim({ secret: v.token }, async (inv) => {
        // One membership per account: a person already in it keeps the one they have.
        if ((await membershipsOf(person)).some((x) => x.member.accountId === inv.accountId)) throw new ApiError('API_CONFLICT', 'You are already a member of this account', 'token');
        const member = await memberFor(inv, home.name);
        await people.link(person, { memberId: member.id, accountId: member.accountId });
        // Recorded in the account joined; no id of the person's other accounts goes there.
        await people.audit(inv.accountId, { actor: member.id, via: 'session', viaId, action: 'membership.link', target: `member=${member.id}`, detail: { invitation: inv.id, role: inv.role } });
        return member;
      });
      if (m === null) {
        failed(key, req.client);
        throw new ApiError('API_LINK_INVALID');
      }
      const name = (await control.account(m.accountId))?.name ?? m.accountId;
      return { status: 201, json: { membership: { account_id: m.accountId, account_name: name, member_id: m.id, role: m.role, sites: m.sites, home: false, current: false } } };
    },
    { clientKey: keyer },
  );

  r.post('/api/v1/auth/switch', async (req) => {
    requireJson(req);
    const p = await authenticate(control, req);
    const viaId = sessionOnly(p);
    const v = parseInput(switchInput, req.body ?? {});
    // Another tenant's account, an unknown one and one the person left: the same answer.
    const to = (await membershipsOf(p.memberId)).find((x) => x.member.accountId === v.account_id)?.member;
    if (to === undefined) throw new ApiError('API_NOT_FOUND', 'Account not found', 'account_id');
    if (to.id !== p.memberId) {
      await people.moveSession(p.tokenHash, { memberId: to.id, accountId: to.accountId });
      await people.audit(to.accountId, { actor: to.id, via: 'session', viaId, action: 'session.switch', target: `member=${to.id}`, });
    }
    return { json: { account_id: to.accountId, member: memberJson(to) }, headers: { 'Cache-Control': 'no-store' } };
  });

  // ---- OpenID Connect -------------------------------------------------------------------------
  r.get('/api/v1/auth/oidc/start', async () => {
    if (oidc === undefined) throw new ApiError('API_OIDC_OFF');
    const { url, flow } = await oidc.start();
    return { status: 302, headers: { Location: url, 'Set-Cookie': flowCookie(FLOW_COOKIE, flow, FLOW_TTL_MS / 1000, secure), 'Cache-Control': 'no-store' } };
  });

  r.get('/api/v1/auth/oidc/callback', async (req) => {
    if (oidc === undefined || config.FAROL_PUBLIC_URL === undefined) throw new ApiError('API_OIDC_OFF');
    const callback = new URL(`${config.FAROL_PUBLIC_URL}/api/v1/auth/oidc/callback?${req.query.toString()}`);
    const who = await oidc.finish(callback, parseCookies(req.headers.cookie).get(FLOW_COOKIE));
    const clearFlow = flowCookie(FLOW_COOKIE, '', 0, secure);
    let identity = await people.identityByOidc(who.issuer, who.subject);
    let method = 'oidc';
    if (identity === null && who.email !== undefined && who.emailVerified) {
      const email = who.email;
      // The member that signs in with this email by password becomes reachable through the provider too.
      const byEmail = await people.identityByEmail(email);
      if (byEmail !== null && byEmail.oidcSubject === '') {
        identity = await people.setIdentity(byEmail.memberId, byEmail.accountId, { oidcIssuer: who.issuer, oidcSubject: who.subject });
      } else if (byEmail === null) {
        const m = await people.claim({ email }, async (inv) => {
          const member = await memberFor(inv, who.name ?? email.split('@')[0] ?? email);
          await people.setIdentity(member.id, member.accountId, { email, oidcIssuer: who.issuer, oidcSubject: who.subject });
          return member;
        });
        if (m !== null) {
          identity = await people.identity(m.id);
          method = 'oidc.invitation';
        }
      }
    }
    if (identity === null) {
      signins.labels({ method: 'oidc', outcome: 'not_invited' }).inc();
      throw new ApiError('API_NOT_INVITED');
    }
    const out = await signIn(identity.memberId, identity.accountId, method);
    const cookie = out.headers?.['Set-Cookie'];
    return { status: 302, headers: { Location: '/', 'Cache-Control': 'no-store', 'Set-Cookie': [typeof cookie === 'string' ? cookie : '', clearFlow].filter((c) => c !== '') } };
  });

  // ---- the signed-in person's own credentials ---------------------------------------------------
  r.post('/api/v1/me/password', async (req) => {
    const p = await authenticate(control, req);
    const v = parseInput(changePassword, req.body ?? {});
    const id = await identityOf(p);
    if (id === null || id.email === '') throw new ApiError('API_BAD_REQUEST', 'This member has no email to sign in with; ask for a reset link', 'email');
    // Who holds a session but not the password (an unlocked laptop) cannot change it.
    if (id.passwordHash !== '' && !(await verifyPassword(id.passwordHash, v.current))) throw new ApiError('API_SIGNIN_FAILED', 'The current password is wrong', 'current');
    await people.setIdentity(id.memberId, id.accountId, { passwordHash: await hashPassword(v.password) });
    await people.audit(p.accountId, { actor: p.memberId, ...credentialOf(p), action: 'password.change', target: `member=${id.memberId}` });
    return { status: 204 };
  });

  r.get('/api/v1/me/totp', async (req) => {
    const p = await authenticate(control, req);
    const id = await identityOf(p);
    return { json: newTotp(id?.email || p.memberId), headers: { 'Cache-Control': 'no-store' } };
  });

  r.post('/api/v1/me/totp', async (req) => {
    const p = await authenticate(control, req);
    const v = parseInput(totpInput, req.body ?? {});
    const id = await identityOf(p);
    if (id === null || id.passwordHash === '') throw new ApiError('API_BAD_REQUEST', 'A second factor goes with a password; set one first', 'secret');
    if (!totpValid(v.secret, v.code, control.clock())) throw new ApiError('API_BAD_REQUEST', 'The code does not match the secret', 'code');
    await people.setIdentity(id.memberId, id.accountId, { totpSecret: v.secret });
    await people.audit(p.accountId, { actor: p.memberId, ...credentialOf(p), action: 'totp.enable', target: `member=${id.memberId}` });
    return { status: 204 };
  });

  r.post('/api/v1/me/totp/off', async (req) => {
    const p = await authenticate(control, req);
    const v = parseInput(totpOffInput, req.body ?? {});
    const id = await identityOf(p);
    if (id === null || id.totpSecret === '') throw new ApiError('API_BAD_REQUEST', 'The second factor is not on', 'code');
    // Who holds a session but not the authenticator (an unlocked laptop) cannot turn it off.
    if (!totpValid(id.totpSecret, v.code, control.clock())) throw new ApiError('API_BAD_REQUEST', 'The code does not match', 'code');
    await people.setIdentity(id.memberId, id.accountId, { totpSecret: '' });
    await people.audit(p.accountId, { actor: p.memberId, ...credentialOf(p), action: 'totp.disable', target: `member=${id.memberId}` });
    return { status: 204 };
  });

  r.get('/api/v1/me/sessions', async (req) => {
    const p = await authenticate(control, req);
    const list = await people.sessions(p.memberId);
    return { json: { sessions: list.map((s) => ({ id: s.id, method: s.method, created_at: s.createdAt, last_seen_at: s.lastSeenAt, expires_at: s.expiresAt, current: s.id === p.session })) } };
  });

  r.del('/api/v1/me/sessions/:id', async (req) => {
    const p = await authenticate(control, req);
    if (!(await people.revokeSession(p.memberId, req.params.id ?? ''))) throw new ApiError('API_NOT_FOUND', 'Session not found', 'id');
    await people.audit(p.accountId, { actor: p.memberId, ...credentialOf(p), action: 'signout', target: `session=${req.params.id ?? ''}` });
    return { status: 204 };
  });
}
