import { ApiError } from '../../schemas/errors.ts';
import { authenticate, authorizeAccount, recordWrite } from '../auth.ts';
import type { Reservation } from '../../control/control-plane.ts';
import type { ApiRouter, ApiRequest } from '../http.ts';
import type { ApiDeps } from '../deps.ts';

/**
 * Reserved domains: a deleted site's domain stays reserved to its account for
 * FAROL_DOMAIN_RESERVATION_DAYS, so no other account receives the old tracker's beacons or serves
 * it experiments; the account may register it again at any time. An account-wide owner lists the
 * account's reservations and may end one early:
 * - `GET /api/v1/reservations` → `{reservations: [{domain, until}]}`;
 * - `DELETE /api/v1/reservations/:domain` → 204 (another account's reservation, or none: 404).
 */

function reservationJson(r: Reservation): Record<string, unknown> {
  return { domain: r.domain, until: r.until };
}

export function reservationRoutes(r: ApiRouter, deps: ApiDeps): void {
  const owner = async (req: ApiRequest) => {
    const p = await authenticate(deps.control, req);
    authorizeAccount(p, 'owner');
    // A reservation belongs to the whole account: a grant limited to some sites does not reach it.
    if (p.sites.length > 0) throw new ApiError('API_FORBIDDEN');
    return p;
  };

  r.get('/api/v1/reservations', async (req) => {
    const p = await owner(req);
    return { json: { reservations: (await deps.control.reservations(p.accountId)).map(reservationJson) } };
  });

  r.del('/api/v1/reservations/:domain', async (req) => {
    const p = await owner(req);
    await deps.control.releaseReservation((req.params['domain'] ?? '').toLowerCase(), p.accountId);
    await recordWrite(deps.control, req, p);
    return { status: 204 };
  });
}
