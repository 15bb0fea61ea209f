import { ApiError } from '../../schemas/errors.ts';
import { authenticate, authorizeAccount, siteRequest } from '../auth.ts';
import { ControlPlane, memberInputSchema, memberPatchSchema, parseInput, tokenInputSchema, type Goal, type Member, type TokenInfo } from '../control/control-plane.ts';
import { inScope, type Principal, type Site } from '../control/model.ts';
import type { ApiRouter } from '../http.ts';
import type { ApiDeps } from '../server.ts';

/**
 * Admin endpoints (SPEC section 8 roles), JSON with Bearer auth:
 *
 * - sites: `GET|POST /api/v1/sites`, `GET|PATCH|DELETE /api/v1/sites/:domain`,
 *   goals `GET|POST /api/v1/sites/:domain/goals`, `DELETE /api/v1/sites/:domain/goals/:name`;
 * - members: `GET|POST /api/v1/members`, `PATCH|DELETE /api/v1/members/:id`;
 * - tokens: `GET|POST /api/v1/tokens`, `DELETE /api/v1/tokens/:prefix` (display prefix or hash).
 *
 * Roles: an owner does everything in the account. An admin manages sites, goals and tokens in its
 * scope, and viewers inside its grant; it never creates an owner or an admin, never widens a
 * grant, and issues tokens only for itself or such viewers. A viewer reads stats and lists its own
 * tokens. Anything outside the caller's scope is answered exactly like something that does not
 * exist (404, same body, nothing echoed).
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

/** Whether a grant of `sites` stays inside the principal's own grant (never widens it). */
function grantWithin(p: Principal, sites: readonly string[]): boolean {
  if (p.sites.length === 0) return true;
  return sites.length > 0 && sites.every((d) => p.sites.includes(d));
}

/** Whether the principal may see member `m` at all; if not, it is "not found". */
function visibleMember(p: Principal, m: Member | null): m is Member {
  if (m === null || m.accountId !== p.accountId) return false;
  if (m.id === p.memberId || p.role === 'owner') return true;
  if (p.role === 'viewer') return false;
  return p.sites.length === 0 || (m.sites.length > 0 && m.sites.every((d) => p.sites.includes(d)));
}

/** Whether the principal may change, remove or issue tokens for another member `m` (visible). */
function manages(p: Principal, m: Member): boolean {
  if (p.role === 'owner') return true;
  if (p.role !== 'admin' || m.id === p.memberId) return false;
  return m.role === 'viewer' && grantWithin(p, m.sites);
}

/** The sites of a grant the caller names: one outside its own grant is "not found", like a foreign one. */
function checkNamedSites(p: Principal, sites: readonly string[] | undefined): void {
  if (sites === undefined || p.sites.length === 0) return;
  for (const d of sites) if (!p.sites.includes(d)) throw new ApiError('API_NOT_FOUND', 'Site not found', 'sites');
}

function noViewers(p: Principal): void {
  if (p.role === 'viewer') throw new ApiError('API_FORBIDDEN');
}

export function adminRoutes(r: ApiRouter, deps: ApiDeps): void {
  const control = deps.control;

  // ---- sites ----------------------------------------------------------------------------------
  r.get('/api/v1/sites', async (req) => {
    const p = await authenticate(control, req);
    const sites = (await control.sites(p.accountId)).filter((s) => inScope(p, s));
    return { json: { sites: sites.map(siteJson) } };
  });

  r.post('/api/v1/sites', async (req) => {
    const p = await authenticate(control, req);
    authorizeAccount(p, 'admin');
    const site = await control.addSite(p.accountId, req.body ?? {});
    return { status: 201, json: { site: siteJson(site) } };
  });

  r.get('/api/v1/sites/:domain', async (req) => {
    const { site } = await siteRequest(control, req, req.params.domain, 'read', 'domain');
    return { json: { site: siteJson(site) } };
  });

  r.patch('/api/v1/sites/:domain', async (req) => {
    const { site } = await siteRequest(control, req, req.params.domain, 'admin', 'domain');
    const updated = await control.updateSite(site.domain, req.body ?? {});
    return { json: { site: siteJson(updated) } };
  });

  r.del('/api/v1/sites/:domain', async (req) => {
    const { site } = await siteRequest(control, req, req.params.domain, 'admin', 'domain');
    await control.deleteSite(site.domain);
    return { status: 204 };
  });

  // ---- goals ----------------------------------------------------------------------------------
  r.get('/api/v1/sites/:domain/goals', async (req) => {
    const { site } = await siteRequest(control, req, req.params.domain, 'read', 'domain');
    return { json: { goals: (await control.listGoals(site.domain)).map(goalJson) } };
  });

  r.post('/api/v1/sites/:domain/goals', async (req) => {
    const { site } = await siteRequest(control, req, req.params.domain, 'admin', 'domain');
    const goal = await control.addGoal(site.domain, req.body ?? {});
    return { status: 201, json: { goal: goalJson(goal) } };
  });

  r.del('/api/v1/sites/:domain/goals/:name', async (req) => {
    const { site } = await siteRequest(control, req, req.params.domain, 'admin', 'domain');
    await control.deleteGoal(site.domain, req.params.name ?? '');
    return { status: 204 };
  });

  // ---- members --------------------------------------------------------------------------------
  r.get('/api/v1/members', async (req) => {
    const p = await authenticate(control, req);
    noViewers(p);
    const members = (await control.members(p.accountId)).filter((m) => visibleMember(p, m));
    return { json: { members: members.map(memberJson) } };
  });

  r.post('/api/v1/members', async (req) => {
    const p = await authenticate(control, req);
    noViewers(p);
    const input = parseInput(memberInputSchema, req.body ?? {});
    checkNamedSites(p, input.sites);
    if (p.role !== 'owner' && (input.role !== 'viewer' || !grantWithin(p, input.sites))) throw new ApiError('API_FORBIDDEN');
    const m = await control.addMember(p.accountId, input);
    return { status: 201, json: { member: memberJson(m) } };
  });

  r.patch('/api/v1/members/:id', async (req) => {
    const p = await authenticate(control, req);
    const m = await control.member(req.params.id ?? '');
    if (!visibleMember(p, m)) throw memberNotFound();
    if (!manages(p, m)) throw new ApiError('API_FORBIDDEN');
    const patch = parseInput(memberPatchSchema, req.body ?? {});
    checkNamedSites(p, patch.sites);
    if (p.role !== 'owner' && ((patch.role !== undefined && patch.role !== 'viewer') || !grantWithin(p, patch.sites ?? m.sites))) {
      throw new ApiError('API_FORBIDDEN');
    }
    const updated = await control.updateMember(m.id, patch);
    return { json: { member: memberJson(updated) } };
  });

  r.del('/api/v1/members/:id', async (req) => {
    const p = await authenticate(control, req);
    const m = await control.member(req.params.id ?? '');
    if (!visibleMember(p, m)) throw memberNotFound();
    if (!manages(p, m)) throw new ApiError('API_FORBIDDEN');
    await control.removeMember(m.id);
    return { status: 204 };
  });

  // ---- tokens ---------------------------------------------------------------------------------
  /** Tokens the principal may see: its own, and those of the members it manages. */
  async function visibleTokens(p: Principal): Promise<TokenInfo[]> {
    const all = await control.tokens(p.accountId);
    if (p.role === 'owner') return all;
    if (p.role === 'viewer') return all.filter((t) => t.memberId === p.memberId);
    const members = new Map((await control.members(p.accountId)).map((m) => [m.id, m]));
    return all.filter((t) => {
      if (t.memberId === p.memberId) return true;
      const m = members.get(t.memberId);
      return m !== undefined && visibleMember(p, m) && manages(p, m);
    });
  }

  r.get('/api/v1/tokens', async (req) => {
    const p = await authenticate(control, req);
    return { json: { tokens: (await visibleTokens(p)).map(tokenJson) } };
  });

  r.post('/api/v1/tokens', async (req) => {
    const p = await authenticate(control, req);
    const input = parseInput(tokenInputSchema, req.body ?? {});
    const m = await control.member(input.member_id ?? p.memberId);
    if (!visibleMember(p, m)) throw memberNotFound('member_id');
    noViewers(p);
    if (m.id !== p.memberId && !manages(p, m)) throw new ApiError('API_FORBIDDEN');
    const t = await control.issueToken(m.id, { name: input.name });
    return { status: 201, json: { token: t.token, ...tokenJson(t) } };
  });

  r.del('/api/v1/tokens/:prefix', async (req) => {
    const p = await authenticate(control, req);
    const t = ControlPlane.pickToken(await visibleTokens(p), req.params.prefix ?? '');
    noViewers(p);
    await control.revokeToken(t.hash);
    return { status: 204 };
  });
}
