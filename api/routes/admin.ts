import { ApiError } from '../../schemas/errors.ts';
import { asWriter, authenticate, authorizeAccount, authorizeSite, siteRequest } from '../auth.ts';
import { ControlPlane, memberInputSchema, memberPatchSchema, parseInput, tokenInputSchema, type Goal, type Member, type TokenInfo } from '../../control/control-plane.ts';
import {
  grantAccess,
  inScope,
  mayListMembers,
  mayRevokeTokens,
  memberAccess,
  seesMember,
  seesTokensOf,
  tokenIssueAccess,
  type Access,
  type Principal,
  type Role,
  type Site,
} from '../../control/model.ts';
import type { ApiRequest, ApiRouter } from '../http.ts';
import type { ApiDeps } from '../deps.ts';

/**
 * Admin endpoints, JSON with Bearer auth, each checked against the caller's role and site scope:
 *
 * - sites: `GET|POST /api/v1/sites`, `GET|PATCH|DELETE /api/v1/sites/:domain`,
 *   goals `GET|POST /api/v1/sites/:domain/goals`, `DELETE /api/v1/sites/:domain/goals/:name`;
 * - members: `GET|POST /api/v1/members`, `PATCH|DELETE /api/v1/members/:id`;
 * - tokens: `GET|POST /api/v1/tokens`, `DELETE /api/v1/tokens/:prefix` (display prefix or hash).
 *
 * Who may do what is decided by control/model.ts (every role's site list honoured; nobody
 * hands out more than it holds); these routes only ask it. Every write runs under the account's
 * lock on a freshly read principal ({@link asWriter}). Anything outside the caller's scope is
 * answered exactly like something that does not exist (404, same body, nothing echoed).
 */

function siteJson(s: Site & { createdAt?: string }): Record<string, unknown> {
  return { domain: s.domain, timezone: s.timezone, respect_dnt: s.respectDnt, created_at: s.createdAt };
}

function memberJson(m: Member): Record<string, unknown> {
  return { id: m.id, name: m.name, role: m.role, sites: m.sites, created_at: m.createdAt };
}

function tokenJson(t: TokenInfo): Record<string, unknown> {
  return { prefix: t.prefix, name: t.name, member_id: t.memberId, created_at: t.createdAt };
}

function goalJson(g: Goal): Record<string, unknown> {
  return { name: g.name, created_at: g.createdAt };
}

const memberNotFound = (field = 'id'): ApiError => new ApiError('API_NOT_FOUND', 'Member not found', field);
const siteNotFound = (): ApiError => new ApiError('API_NOT_FOUND', 'Site not found', 'sites');

/** Throws for an access rule's refusal: `notFound` for "absent or out of scope", 403 otherwise. */
function check(access: Access, notFound: () => ApiError): void {
  if (access === 'not_found') throw notFound();
  if (access === 'forbidden') throw new ApiError('API_FORBIDDEN');
}

/** The member an access rule allowed (it is never `ok` for an absent one), or its refusal. */
function allowedMember(access: Access, m: Member | null, field = 'id'): Member {
  check(access, () => memberNotFound(field));
  if (m === null) throw memberNotFound(field);
  return m;
}

/** Throws unless the principal may give a grant of `role` over `sites`. */
function authorizeGrant(p: Principal, role: Role, sites: readonly string[]): void {
  check(grantAccess(p, role, sites), siteNotFound);
}

export function adminRoutes(r: ApiRouter, deps: ApiDeps): void {
  const control = deps.control;
  /** A site write: authorized inside the account's lock, on the principal as stored now. */
  const siteWrite = async <T>(req: ApiRequest, fn: (site: Site) => Promise<T>): Promise<T> =>
    asWriter(control, req, async (p) => fn(await authorizeSite(control, p, req.params.domain, 'admin', 'domain')));

  // ---- sites ----------------------------------------------------------------------------------
  r.get('/api/v1/sites', async (req) => {
    const p = await authenticate(control, req);
    const sites = (await control.sites(p.accountId)).filter((s) => inScope(p, s));
    return { json: { sites: sites.map(siteJson) } };
  });

  r.post('/api/v1/sites', async (req) =>
    asWriter(control, req, async (p) => {
      authorizeAccount(p, 'admin');
      const site = await control.addSite(p.accountId, req.body ?? {});
      return { status: 201, json: { site: siteJson(site) } };
    }),
  );

  r.get('/api/v1/sites/:domain', async (req) => {
    const { site } = await siteRequest(control, req, req.params.domain, 'read', 'domain');
    return { json: { site: siteJson(site) } };
  });

  r.patch('/api/v1/sites/:domain', async (req) =>
    siteWrite(req, async (site) => ({ json: { site: siteJson(await control.updateSite(site.domain, req.body ?? {})) } })),
  );

  r.del('/api/v1/sites/:domain', async (req) =>
    siteWrite(req, async (site) => {
      await control.deleteSite(site.domain);
      return { status: 204 };
    }),
  );

  // ---- goals ----------------------------------------------------------------------------------
  r.get('/api/v1/sites/:domain/goals', async (req) => {
    const { site } = await siteRequest(control, req, req.params.domain, 'read', 'domain');
    return { json: { goals: (await control.listGoals(site.domain)).map(goalJson) } };
  });

  r.post('/api/v1/sites/:domain/goals', async (req) =>
    siteWrite(req, async (site) => ({ status: 201, json: { goal: goalJson(await control.addGoal(site.domain, req.body ?? {})) } })),
  );

  r.del('/api/v1/sites/:domain/goals/:name', async (req) =>
    siteWrite(req, async (site) => {
      await control.deleteGoal(site.domain, req.params.name ?? '');
      return { status: 204 };
    }),
  );

  // ---- members --------------------------------------------------------------------------------
  r.get('/api/v1/members', async (req) => {
    const p = await authenticate(control, req);
    if (!mayListMembers(p)) throw new ApiError('API_FORBIDDEN');
    const members = (await control.members(p.accountId)).filter((m) => seesMember(p, m));
    return { json: { members: members.map(memberJson) } };
  });

  r.post('/api/v1/members', async (req) =>
    asWriter(control, req, async (p) => {
      if (!mayListMembers(p)) throw new ApiError('API_FORBIDDEN');
      const input = parseInput(memberInputSchema, req.body ?? {});
      authorizeGrant(p, input.role, input.sites);
      const m = await control.addMember(p.accountId, input);
      return { status: 201, json: { member: memberJson(m) } };
    }),
  );

  r.patch('/api/v1/members/:id', async (req) =>
    asWriter(control, req, async (p) => {
      const m = await control.member(req.params.id ?? '');
      const cur = allowedMember(memberAccess(p, m), m);
      const patch = parseInput(memberPatchSchema, req.body ?? {});
      // The grant it would have afterwards must be one the caller could give, like a new one.
      authorizeGrant(p, patch.role ?? cur.role, patch.sites ?? cur.sites);
      const updated = await control.updateMember(cur.id, patch);
      return { json: { member: memberJson(updated) } };
    }),
  );

  r.del('/api/v1/members/:id', async (req) =>
    asWriter(control, req, async (p) => {
      const m = await control.member(req.params.id ?? '');
      await control.removeMember(allowedMember(memberAccess(p, m), m).id);
      return { status: 204 };
    }),
  );

  // ---- tokens ---------------------------------------------------------------------------------
  /** Tokens the principal may see: its own, and those of the members it manages. */
  async function visibleTokens(p: Principal): Promise<TokenInfo[]> {
    const members = new Map((await control.members(p.accountId)).map((m) => [m.id, m]));
    return (await control.tokens(p.accountId)).filter((t) => seesTokensOf(p, members.get(t.memberId)));
  }

  r.get('/api/v1/tokens', async (req) => {
    const p = await authenticate(control, req);
    return { json: { tokens: (await visibleTokens(p)).map(tokenJson) } };
  });

  r.post('/api/v1/tokens', async (req) =>
    asWriter(control, req, async (p) => {
      const input = parseInput(tokenInputSchema, req.body ?? {});
      const m = await control.member(input.member_id ?? p.memberId);
      const t = await control.issueToken(allowedMember(tokenIssueAccess(p, m), m, 'member_id').id, { name: input.name });
      return { status: 201, json: { token: t.token, ...tokenJson(t) } };
    }),
  );

  r.del('/api/v1/tokens/:prefix', async (req) =>
    asWriter(control, req, async (p) => {
      const t = ControlPlane.pickToken(await visibleTokens(p), req.params.prefix ?? '');
      if (!mayRevokeTokens(p)) throw new ApiError('API_FORBIDDEN');
      await control.revokeToken(t.hash);
      return { status: 204 };
    }),
  );
}
