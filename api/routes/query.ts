import { runQuery } from '../query/query.ts';
import { siteRequest } from '../auth.ts';
import type { RouteDeps } from '../deps.ts';
import type { ApiRouter } from '../http.ts';

/** `POST /api/v2/query`: Plausible Stats API v2 queries for a site in scope. */
export function queryRoutes(r: ApiRouter, deps: RouteDeps): void {
  r.post('/api/v2/query', async (req) => {
    const body = req.body;
    const siteId = typeof body === 'object' && body !== null && !Array.isArray(body) ? (body as Record<string, unknown>).site_id : undefined;
    const { principal, site } = await siteRequest(deps.control, req, siteId, 'read');
    const goals = await deps.control.goals(site.domain);
    const querySite = goals === undefined ? { domain: site.domain, timezone: site.timezone } : { domain: site.domain, timezone: site.timezone, goals };
    const { reports } = deps;
    const json = await reports.slots.run(principal.tokenHash, () => runQuery(reports.store, querySite, body, deps.now()));
    return { json };
  });
}
