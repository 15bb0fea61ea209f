import { siteRequest } from '../auth.ts';
import { dateRangeParam } from '../export/date-range.ts';
import { buildExport } from '../export/export.ts';
import type { ApiRouter } from '../http.ts';
import type { QuerySite } from '../query/query.ts';
import type { RouteDeps } from '../deps.ts';

/**
 * `GET /api/v2/export?site_id=<domain>&date_range=30d`: a zip of CSV breakdowns
 * (api/export/export.ts) for a site the token may read. `date_range` takes the query API's forms
 * (`7d`, `month`, `2026-01-01,2026-01-31`, a JSON pair) and defaults to `30d`.
 */
export function exportRoutes(r: ApiRouter, deps: RouteDeps): void {
  r.get('/api/v2/export', async (req) => {
    const { principal, site } = await siteRequest(deps.control, req, req.query.get('site_id') ?? undefined, 'read');
    const goals = await deps.control.goals(site.domain);
    const querySite: QuerySite = goals === undefined ? { domain: site.domain, timezone: site.timezone } : { domain: site.domain, timezone: site.timezone, goals };
    const range = dateRangeParam(req.query, '30d');
    const { reports } = deps;
    const out = await reports.slots.run(principal.tokenHash, () => buildExport(reports.store, querySite, range, deps.now()));
    return {
      body: Buffer.from(out.zip.buffer, out.zip.byteOffset, out.zip.byteLength),
      contentType: 'application/zip',
      headers: { 'Content-Disposition': `attachment; filename="${out.filename}"`, 'Cache-Control': 'no-store' },
    };
  });
}
