import { ApiError } from '../schemas/errors.ts';
import { accountAccess, siteAccess, type Need, type Principal, type Site } from '../control/model.ts';
import type { ControlReader } from '../control/reader.ts';
import { bearerToken, type ApiRequest } from './http.ts';

/**
 * Authentication and authorization for every API endpoint, on top of the control plane's token
 * lookup. Nothing else decides access: routes call `authenticate`, then `authorizeSite` or
 * `authorizeAccount`.
 */

/** The part of the control plane's read side access needs. */
export type AccessLookup = Pick<ControlReader, 'authenticate' | 'site'>;

/** The principal of a request; 401 without a valid token. */
export async function authenticate(control: AccessLookup, req: ApiRequest): Promise<Principal> {
  const token = bearerToken(req);
  if (token === undefined) throw new ApiError('API_UNAUTHORIZED');
  const p = await control.authenticate(token);
  if (p === null) throw new ApiError('API_UNAUTHORIZED', 'Token is unknown or revoked');
  return p;
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
  /** Runs `fn` alone among this process's control-plane writes to the account. */
  serial<T>(accountId: string, fn: () => Promise<T>): Promise<T>;
  /** The principal behind the same token as stored now, or null when revoked since. */
  reauthenticate(p: Principal): Promise<Principal | null>;
}

/**
 * Runs a control-plane write as the request's principal: under the account's lock, and with the
 * grant read again inside it, so a member demoted or revoked by a write that went first (the
 * other owner's, in a race) acts with what it holds now, not with a cached answer.
 */
export async function asWriter<T>(control: WriteLookup, req: ApiRequest, fn: (p: Principal) => Promise<T>): Promise<T> {
  const cached = await authenticate(control, req);
  return control.serial(cached.accountId, async () => {
    const p = await control.reauthenticate(cached);
    if (p === null) throw new ApiError('API_UNAUTHORIZED', 'Token is unknown or revoked');
    return fn(p);
  });
}
