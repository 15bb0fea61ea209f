import { ApiError } from '../schemas/errors.ts';
import { accountAccess, siteAccess, type Need, type Principal, type Site } from '../control/model.ts';
import type { ControlReader } from '../control/reader.ts';
import type { People } from '../control/people.ts';
import { csrfMatches } from '../control/people.ts';
import { sessionSecretOf } from './auth-cookies.ts';
import { bearerToken, type ApiRequest } from './http.ts';

/**
 * Authentication and authorization for every API endpoint, on top of the control plane's token
 * and session lookups. Nothing else decides access: routes call `authenticate`, then
 * `authorizeSite` or `authorizeAccount`.
 *
 * A request is authenticated by its `Authorization: Bearer` token (machines) or, without that
 * header, by its browser session cookie (people). A cookie is only ever looked up as a session:
 * an API token in a cookie authenticates nothing. A request authenticated by cookie that may
 * change state (anything but GET/HEAD) must carry its session's CSRF token in `X-CSRF-Token`
 * (control/people.ts `csrfTokenOf`); another site can make a browser send the cookie, but cannot
 * read the token.
 */

/** The part of the control plane's read side access needs. */
export type AccessLookup = Pick<ControlReader, 'authenticate' | 'authenticateSession' | 'site'>;

const SAFE_METHODS = new Set(['GET', 'HEAD']);

/** The principal of a request; 401 without a valid token or session, 403 for a cookie without its CSRF token. */
export async function authenticate(control: AccessLookup, req: ApiRequest): Promise<Principal> {
  if (req.headers.authorization !== undefined) {
    const token = bearerToken(req);
    if (token === undefined) throw new ApiError('API_UNAUTHORIZED');
    const p = await control.authenticate(token);
    if (p === null) throw new ApiError('API_UNAUTHORIZED', 'Token is unknown or revoked');
    return p;
  }
  const secret = sessionSecretOf(req.headers.cookie);
  if (secret === undefined) throw new ApiError('API_UNAUTHORIZED');
  const p = await control.authenticateSession(secret);
  if (p === null) throw new ApiError('API_UNAUTHORIZED', 'Signed out or the session expired; sign in again');
  if (!SAFE_METHODS.has(req.method) && !csrfMatches(secret, req.headers['x-csrf-token'])) throw new ApiError('API_CSRF');
  return p;
}

/** How the audit trail names the credential of a principal: its session's public id, or its token's hash's first 12 hex digits. */
export function credentialOf(p: Principal): { via: 'session' | 'token'; viaId: string } {
  return p.session !== undefined ? { via: 'session', viaId: p.session } : { via: 'token', viaId: `tok:${p.tokenHash.slice(0, 12)}` };
}

/** Body keys never written to the audit trail. */
const SECRET_KEY = /pass|secret|token|code|totp|key/i;

/** What the audit trail keeps of a request body: its fields but those that may hold a secret, values cut at 200 characters. */
export function auditDetail(body: unknown): Record<string, unknown> {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) return {};
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(body as Record<string, unknown>).slice(0, 20)) {
    if (SECRET_KEY.test(k)) continue;
    const text = JSON.stringify(v) ?? '';
    out[k.slice(0, 40)] = text.length > 200 ? `${text.slice(0, 200)}…` : v;
  }
  return out;
}

/** The audit target of a request: its path parameters, a token named by itself shown by its display prefix only. */
function auditTarget(req: ApiRequest): string {
  const parts = Object.entries(req.params).map(([k, v]) => `${k}=${v.length > 12 && /token|prefix/.test(k) ? `${v.slice(0, 12)}…` : v.slice(0, 120)}`);
  return parts.join(' ');
}

/**
 * The site `domain` if the principal may act on it with `need`. Absent and out-of-scope sites are
 * the same 404 (same code, same message, no domain echoed); in scope with too small a role is 403.
 */
export async function authorizeSite(control: AccessLookup, p: Principal, domain: unknown, need: Need, field = 'site_id'): Promise<Site> {
  if (typeof domain !== 'string' || domain === '') throw new ApiError('API_BAD_REQUEST', `${field} is required`, field);
  const site = await control.site(domain.toLowerCase());
  const access = siteAccess(p, site, need);
  if (access === 'not_found') throw new ApiError('API_NOT_FOUND', 'Site not found', field);
  if (access === 'forbidden') throw new ApiError('API_FORBIDDEN');
  return site as Site;
}

/** Throws 403 unless the principal may do an account-level action needing `need`. */
export function authorizeAccount(p: Principal, need: Need): void {
  if (accountAccess(p, need) !== 'ok') throw new ApiError('API_FORBIDDEN');
}

/** Authenticates and authorizes a site in one step. */
export async function siteRequest(control: AccessLookup, req: ApiRequest, domain: unknown, need: Need, field = 'site_id'): Promise<{ principal: Principal; site: Site }> {
  const principal = await authenticate(control, req);
  const site = await authorizeSite(control, principal, domain, need, field);
  return { principal, site };
}

/** What a control-plane write needs beyond {@link AccessLookup}: the account's lock and an uncached principal. */
export interface WriteLookup extends AccessLookup {
  /** Where every write is recorded. */
  readonly people: Pick<People, 'audit'>;
  /** Runs `fn` alone among this process's control-plane writes to the account. */
  serial<T>(accountId: string, fn: () => Promise<T>): Promise<T>;
  /** The principal behind the same token as stored now, or null when revoked since. */
  reauthenticate(p: Principal): Promise<Principal | null>;
}

/** Records a write that succeeded in the audit trail: who, from which session or token, the route, its target, the body's fields but secrets. */
export async function recordWrite(control: { readonly people: Pick<People, 'audit'> }, req: ApiRequest, p: Principal): Promise<void> {
  await control.people.audit(p.accountId, { actor: p.memberId, ...credentialOf(p), action: req.route ?? req.method, target: auditTarget(req), detail: auditDetail(req.body) });
}

/**
 * Runs a control-plane write as the request's principal: under the account's lock, and with the
 * grant read again inside it, so a member demoted or revoked by a write that went first (the
 * other owner's, in a race) acts with what it holds now, not with a cached answer. A write that
 * succeeds is recorded in the audit trail: who, from which session or token, the route and its
 * target, and the body's fields but secrets ({@link auditDetail}).
 */
export async function asWriter<T>(control: WriteLookup, req: ApiRequest, fn: (p: Principal) => Promise<T>): Promise<T> {
  const cached = await authenticate(control, req);
  return control.serial(cached.accountId, async () => {
    const p = await control.reauthenticate(cached);
    if (p === null) throw new ApiError('API_UNAUTHORIZED', 'Token is unknown or revoked');
    const out = await fn(p);
    await recordWrite(control, req, p);
    return out;
  });
}
