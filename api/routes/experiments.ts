import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import { ApiError } from '../../schemas/errors.ts';
import {
  experimentCreateSchema,
  experimentPatchSchema,
  experimentSchema,
  parseWith,
  redirectProblems,
  type Experiment,
  type TrackerExperiment,
} from '../../schemas/experiment.ts';
import { authorizeSite, recordWrite, siteRequest } from '../auth.ts';
import { domainSchema } from '../../control/control-plane.ts';
import { redirectHostsRepository } from '../../control/redirect-hosts.ts';
import { experimentRepository, type StoredExperiment } from '../../control/experiments.ts';
import { experimentReport } from '../experiments/results.ts';
import { dateRangeParam } from '../export/date-range.ts';
import type { ApiRequest, ApiRouter } from '../http.ts';
import type { RouteDeps } from '../deps.ts';

/**
 * Experiments:
 * - admin: `GET/POST /api/v1/sites/:domain/experiments`, `GET/PATCH/DELETE …/experiments/:id`
 *   (viewer reads, admin writes; a site out of scope and an absent one are the same 404);
 * - `GET /api/v2/experiments/:id/results?site_id=<domain>[&date_range=…]`;
 * - `GET /api/config/:domain`: the tracker's view of the site's running experiments, public;
 * - `GET|PUT /api/v1/sites/:domain/redirect-hosts`: hosts besides the site's own that its
 *   experiments may redirect to (admin reads, only an owner writes: an admin cannot widen it).
 *
 * Status moves: draft → running (sets `started_at`), running → stopped (sets `stopped_at`),
 * stopped → running (clears `stopped_at`, keeps `started_at`: results span the whole run). A
 * started experiment cannot go back to draft. A new one is draft or running.
 */

const BODY_LIMIT = 256 * 1024;
/** How long the public config of a site is reused in this process (writes here clear it). */
const CONFIG_TTL_MS = 5_000;
const CONFIG_CACHE_MAX = 10_000;

function notFound(): ApiError {
  return new ApiError('API_NOT_FOUND', 'Experiment not found', 'id');
}

function view(s: StoredExperiment): Record<string, unknown> {
  return { ...s.experiment, created_at: s.created_at, updated_at: s.updated_at };
}

function parsed<T>(r: { ok: true; value: T } | { ok: false; field: string; message: string }): T {
  if (!r.ok) throw new ApiError('API_BAD_REQUEST', `${r.field} ${r.message}`, r.field);
  return r.value;
}

const redirectHostsBody = z.strictObject({ redirect_hosts: z.array(domainSchema).max(100, 'must list at most 100 hosts') });

export function experimentRoutes(r: ApiRouter, deps: RouteDeps): void {
  const repo = experimentRepository(deps.store, deps.now);
  const redirects = redirectHostsRepository(deps.store, deps.now);
  /** An experiment about to be stored, checked against the site's redirect policy. */
  const checked = async (candidate: unknown): Promise<Experiment> => {
    const experiment = parsed(parseWith(experimentSchema, candidate));
    const off = redirectProblems(experiment, await redirects.get(experiment.site));
    if (off !== undefined) throw new ApiError('API_BAD_REQUEST', `${off.field} ${off.message}`, off.field);
    return experiment;
  };
  const configCache = new Map<string, { at: number; experiments: TrackerExperiment[] }>();

  const site = (req: ApiRequest, need: 'read' | 'admin') => siteRequest(deps.control, req, req.params['domain'], need, 'domain');
  const existing = async (domain: string, id: string | undefined): Promise<StoredExperiment> => {
    const s = id === undefined ? null : await repo.get(domain, id);
    if (s === null) throw notFound();
    return s;
  };
  const written = (domain: string): void => {
    configCache.delete(domain);
  };

  r.get('/api/v1/sites/:domain/experiments', async (req) => {
    const { site: s } = await site(req, 'read');
    return { json: { experiments: (await repo.list(s.domain)).map(view) } };
  });

  r.post(
    '/api/v1/sites/:domain/experiments',
    async (req) => {
      const { principal, site: s } = await site(req, 'admin');
      const input = parsed(parseWith(experimentCreateSchema, req.body ?? {}));
      if (input.status === 'stopped') throw new ApiError('API_BAD_REQUEST', 'status of a new experiment is draft or running', 'status');
      const id = input.id ?? `exp_${randomBytes(9).toString('base64url')}`;
      if ((await repo.get(s.domain, id)) !== null) throw new ApiError('API_CONFLICT', 'An experiment with this id exists', 'id');
      const { id: _id, status, ...editable } = input;
      const candidate: Record<string, unknown> = { id, site: s.domain, status: status ?? 'draft', ...editable };
      if (candidate['status'] === 'running') candidate['started_at'] = deps.now().toISOString();
      const stored = await repo.put(await checked(candidate));
      written(s.domain);
      await recordWrite(deps.control, req, principal);
      return { status: 201, json: view(stored) };
    },
    { maxBodyBytes: BODY_LIMIT },
  );

  r.get('/api/v1/sites/:domain/experiments/:id', async (req) => {
    const { site: s } = await site(req, 'read');
    return { json: view(await existing(s.domain, req.params['id'])) };
  });

  r.patch(
    '/api/v1/sites/:domain/experiments/:id',
    async (req) => {
      const { principal, site: s } = await site(req, 'admin');
      const current = await existing(s.domain, req.params['id']);
      const patch = parsed(parseWith(experimentPatchSchema, req.body ?? {}));
      const { status, pages, ...rest } = patch;
      const next: Record<string, unknown> = { ...current.experiment, ...rest };
      if (pages === null) delete next['pages'];
      else if (pages !== undefined) next['pages'] = pages;
      const from = current.experiment.status;
      if (status !== undefined && status !== from) {
        const now = deps.now().toISOString();
        if (status === 'draft') throw new ApiError('API_BAD_REQUEST', 'a started experiment cannot go back to draft', 'status');
        if (status === 'running') {
          next['started_at'] ??= now;
          delete next['stopped_at'];
        } else {
          // draft → stopped: it never ran; both ends are now.
          next['started_at'] ??= now;
          next['stopped_at'] = now;
        }
        next['status'] = status;
      }
      const stored = await repo.put(await checked(next), current.created_at);
      written(s.domain);
      await recordWrite(deps.control, req, principal);
      return { json: view(stored) };
    },
    { maxBodyBytes: BODY_LIMIT },
  );

  r.del('/api/v1/sites/:domain/experiments/:id', async (req) => {
    const { principal, site: s } = await site(req, 'admin');
    const id = req.params['id'];
    if (id === undefined || !(await repo.remove(s.domain, id))) throw notFound();
    written(s.domain);
    await recordWrite(deps.control, req, principal);
    return { status: 204 };
  });

  r.get('/api/v2/experiments/:id/results', async (req) => {
    const { principal, site: s } = await siteRequest(deps.control, req, req.query.get('site_id') ?? undefined, 'read');
    const current = await existing(s.domain, req.params['id']);
    const range = dateRangeParam(req.query);
    const { reports } = deps;
    const report = await reports.slots.run(principal.tokenHash, () =>
      experimentReport(reports.store, { domain: s.domain, timezone: s.timezone }, current.experiment, range, deps.now()),
    );
    return { json: report };
  });

  r.get('/api/v1/sites/:domain/redirect-hosts', async (req) => {
    const { site: s } = await site(req, 'admin');
    return { json: { redirect_hosts: await redirects.get(s.domain) } };
  });

  r.put('/api/v1/sites/:domain/redirect-hosts', async (req) => {
    const { principal, site: s } = await site(req, 'admin');
    await authorizeSite(deps.control, principal, s.domain, 'owner', 'domain');
    const body = parsed(parseWith(redirectHostsBody, req.body ?? {}));
    const hosts = await redirects.set(s.domain, body.redirect_hosts);
    written(s.domain);
    await recordWrite(deps.control, req, principal);
    return { json: { redirect_hosts: hosts } };
  });

  r.get(
    '/api/config/:domain',
    async (req) => {
      const domain = (req.params['domain'] ?? '').toLowerCase();
      const s = domain === '' ? null : await deps.control.site(domain);
      if (s === null) throw new ApiError('API_NOT_FOUND', 'Unknown site', 'domain');
      const t = deps.now().getTime();
      let hit = configCache.get(s.domain);
      if (hit === undefined || t - hit.at >= CONFIG_TTL_MS || t < hit.at) {
        const refused = (experiment: string, field: string, reason: string): void => deps.log.warn({ site: s.domain, experiment, field, reason }, 'experiment not served: a change breaks the safety rules');
        hit = { at: t, experiments: await repo.trackerConfig(s.domain, await redirects.get(s.domain), refused) };
        if (configCache.size >= CONFIG_CACHE_MAX) configCache.clear();
        configCache.set(s.domain, hit);
      }
      return { json: { experiments: hit.experiments }, headers: { 'Cache-Control': 'public, max-age=60' } };
    },
    { cors: true },
  );
}
