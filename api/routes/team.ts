import { z } from 'zod';
import { ApiError } from '../../schemas/errors.ts';
import { parseInput } from '../../control/control-plane.ts';
import { accountAccess, covers, grantAccess, mayListMembers, memberAccess, seesMember, type Access } from '../../control/model.ts';
import { emailSchema, invitationInputSchema, type Invitation } from '../../control/people.ts';
import { asWriter, authenticate } from '../auth.ts';
import type { ApiRouter } from '../http.ts';
import type { ApiDeps } from '../deps.ts';

/**
 * The team (#14), with the same access rules as members (control/model.ts):
 *
 * - `GET|POST /api/v1/invitations`, `DELETE /api/v1/invitations/:id`: owners and admins invite by
 *   email with a role and an optional site list, never beyond their own grant; they see and
 *   withdraw the invitations whose grant their own covers. The link (its secret) is answered
 *   once, on creation.
 * - `POST /api/v1/members/:id/reset-link` `{email?}`: a one-time password-reset link for a member
 *   the caller manages (`email` gives a member without one an email to sign in with); not for a
 *   person with memberships in other accounts, nor for a member linked to such a person (409).
 * - `GET /api/v1/audit?limit=`: the account's audit trail, for account-wide owners.
 */

function invitationJson(i: Invitation): Record<string, unknown> {
  return { id: i.id, email: i.email, role: i.role, sites: i.sites, invited_by: i.invitedBy, created_at: i.createdAt, expires_at: i.expiresAt };
}

function check(access: Access, what: string, field: string): void {
  if (access === 'not_found') throw new ApiError('API_NOT_FOUND', `${what} not found`, field);
  if (access === 'forbidden') throw new ApiError('API_FORBIDDEN');
}

const resetInput = z.strictObject({ email: emailSchema.optional() });

/** The URL people open: FAROL_PUBLIC_URL, else what the request came to (a relative link then). */
export function linkTo(publicUrl: string | undefined, fragment: string): string {
  return `${publicUrl ?? ''}/#${fragment}`;
}

export function teamRoutes(r: ApiRouter, deps: ApiDeps): void {
  const { control, config } = deps;
  const people = control.people;

  r.get('/api/v1/invitations', async (req) => {
    const p = await authenticate(control, req);
    if (!mayListMembers(p)) throw new ApiError('API_FORBIDDEN');
    const list = (await people.invitations(p.accountId)).filter((i) => covers(p.sites, i.sites));
    return { json: { invitations: list.map(invitationJson) } };
  });

  r.post('/api/v1/invitations', async (req) =>
    asWriter(control, req, async (p) => {
      if (!mayListMembers(p)) throw new ApiError('API_FORBIDDEN');
      const v = parseInput(invitationInputSchema, req.body ?? {});
      check(grantAccess(p, v.role, v.sites), 'Site', 'sites');
      // The sites must be the account's (like a member's grant).
      const own = new Set((await control.sites(p.accountId)).map((s) => s.domain));
      if (v.sites.some((d) => !own.has(d))) throw new ApiError('API_NOT_FOUND', 'Site not found', 'sites');
      // Someone who signs in with this email is invited like anyone else (they accept it signed in,
      // as themselves: #14's switcher); only a person already in this account is a conflict, so
      // the answer tells nothing about other accounts.
      const known = await people.identityByEmail(v.email);
      if (known !== null && (known.accountId === p.accountId || (await people.links(known.memberId)).some((l) => l.accountId === p.accountId))) {
        throw new ApiError('API_CONFLICT', 'A member already signs in with this email', 'email');
      }
      const { invitation, secret } = await people.invite(p.accountId, p.memberId, { email: v.email, role: v.role, sites: [...new Set(v.sites)].sort() });
      return { status: 201, json: { invitation: invitationJson(invitation), link: linkTo(config.FAROL_PUBLIC_URL, `invite=${secret}`) }, headers: { 'Cache-Control': 'no-store' } };
    }),
  );

  r.del('/api/v1/invitations/:id', async (req) =>
    asWriter(control, req, async (p) => {
      if (!mayListMembers(p)) throw new ApiError('API_FORBIDDEN');
      const inv = (await people.invitations(p.accountId)).find((i) => i.id === req.params.id);
      if (inv === undefined || !covers(p.sites, inv.sites)) throw new ApiError('API_NOT_FOUND', 'Invitation not found', 'id');
      check(grantAccess(p, inv.role, inv.sites), 'Invitation', 'id');
      await people.withdraw(p.accountId, inv.id);
      return { status: 204 };
    }),
  );

  r.post('/api/v1/members/:id/reset-link', async (req) =>
    asWriter(control, req, async (p) => {
      const m = await control.member(req.params.id ?? '');
      if (!seesMember(p, m)) throw new ApiError('API_NOT_FOUND', 'Member not found', 'id');
      check(memberAccess(p, m), 'Member', 'id');
      const v = parseInput(resetInput, req.body ?? {});
      // A person with memberships in other accounts resets their own password ("forgot"): a link
      // made here would let this account's owners sign in as them there.
      if (m.id !== p.memberId && (await people.links(m.id)).length > 0) throw new ApiError('API_CONFLICT', 'This person is also a member of other accounts: they reset their own password', 'id');
      const id = await people.identity(m.id);
      if (v.email !== undefined && v.email !== id?.email) await people.setIdentity(m.id, m.accountId, { email: v.email });
      else if ((id?.email ?? '') === '') throw new ApiError('API_BAD_REQUEST', 'This member has no email yet: give one', 'email');
      const { secret, expiresAt } = await people.resetLink(m.id, m.accountId);
      return { status: 201, json: { link: linkTo(config.FAROL_PUBLIC_URL, `reset=${secret}`), expires_at: expiresAt }, headers: { 'Cache-Control': 'no-store' } };
    }),
  );

  r.get('/api/v1/audit', async (req) => {
    const p = await authenticate(control, req);
    if (accountAccess(p, 'owner') !== 'ok') throw new ApiError('API_FORBIDDEN');
    const limit = Number(req.query.get('limit') ?? '200');
    const rows = await people.auditTrail(p.accountId, config.FAROL_AUDIT_RETENTION_DAYS, Number.isSafeInteger(limit) ? limit : 200);
    return {
      json: { entries: rows.map((e) => ({ at: e.at, actor: e.actor, via: e.via, via_id: e.viaId, action: e.action, target: e.target, detail: JSON.parse(e.detail) as unknown })) },
    };
  });
}
