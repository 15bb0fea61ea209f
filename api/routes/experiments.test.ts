import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatTimestamp } from '../../store/rows.ts';
import { allPayloads, offSiteRedirects } from '../../schemas/testing/xss-payloads.ts';
import { call, SITE_A, SITE_A2, SITE_B, startApiHarness, type ApiHarness, type Reply } from '../experiments/testing/api-harness.ts';

/**
 * The experiment endpoints over HTTP: uWS on port 0 with every route module, the real control
 * plane on chDB, tokens of each role and of another account.
 */

let h: ApiHarness;
const base = (): string => h.url;

beforeAll(async () => {
  h = await startApiHarness();
}, 60_000);

afterAll(async () => {
  await h?.close();
});

const hero = {
  id: 'hero',
  name: 'Hero headline',
  goal: { type: 'event', name: 'Signup' },
  control: 'A',
  variations: [
    { key: 'A', weight: 50, changes: [] },
    { key: 'B', weight: 50, changes: [{ type: 'text', selector: 'h1', value: 'Start free' }] },
  ],
  pages: ['/', '/landing/*'],
};

const exps = (domain: string, id?: string): string => `/api/v1/sites/${encodeURIComponent(domain)}/experiments${id === undefined ? '' : `/${encodeURIComponent(id)}`}`;
const errorOf = (r: Reply): { code: string; field?: string; message: string } => (r.json as { error: { code: string; field?: string; message: string } }).error;

describe('admin endpoints', () => {
  it('need a token, and a write needs the admin role', async () => {
    expect((await call(base(), 'GET', exps(SITE_A))).status).toBe(401);
    expect((await call(base(), 'GET', exps(SITE_A), 'not-a-token')).status).toBe(401);
    const viewerPost = await call(base(), 'POST', exps(SITE_A), h.tokens.viewer, hero);
    expect(viewerPost.status).toBe(403);
    expect(errorOf(viewerPost).code).toBe('API_FORBIDDEN');
  });

  it('create, read, list, update, start, stop and delete an experiment', async () => {
    const created = await call(base(), 'POST', exps(SITE_A), h.tokens.admin, hero);
    expect(created.status).toBe(201);
    expect(created.json).toMatchObject({ ...hero, site: SITE_A, status: 'draft' });
    expect(created.json).not.toHaveProperty('started_at');

    const again = await call(base(), 'POST', exps(SITE_A), h.tokens.admin, hero);
    expect(again.status).toBe(409);
    expect(errorOf(again).field).toBe('id');

    const generated = await call(base(), 'POST', exps(SITE_A), h.tokens.owner, { ...hero, id: undefined, status: 'running' });
    expect(generated.status).toBe(201);
    const genId = (generated.json as { id: string }).id;
    expect(genId).toMatch(/^exp_[\w-]+$/);
    expect(generated.json).toHaveProperty('started_at');

    const read = await call(base(), 'GET', exps(SITE_A, 'hero'), h.tokens.viewer);
    expect(read.status).toBe(200);
    expect(read.json).toEqual(created.json);

    const list = await call(base(), 'GET', exps(SITE_A), h.tokens.viewer);
    expect((list.json as { experiments: { id: string }[] }).experiments.map((e) => e.id).sort()).toEqual([genId, 'hero'].sort());

    const started = await call(base(), 'PATCH', exps(SITE_A, 'hero'), h.tokens.admin, { status: 'running', name: 'Renamed' });
    expect(started.status).toBe(200);
    expect(started.json).toMatchObject({ status: 'running', name: 'Renamed', goal: hero.goal });
    const startedAt = (started.json as { started_at: string }).started_at;
    expect(Date.parse(startedAt)).toBeGreaterThan(0);

    const stopped = await call(base(), 'PATCH', exps(SITE_A, 'hero'), h.tokens.admin, { status: 'stopped' });
    expect(stopped.json).toMatchObject({ status: 'stopped', started_at: startedAt });
    expect(stopped.json).toHaveProperty('stopped_at');
    const back = await call(base(), 'PATCH', exps(SITE_A, 'hero'), h.tokens.admin, { status: 'draft' });
    expect(back.status).toBe(400);
    expect(errorOf(back).field).toBe('status');
    const restarted = await call(base(), 'PATCH', exps(SITE_A, 'hero'), h.tokens.admin, { status: 'running', pages: null });
    expect(restarted.json).toMatchObject({ status: 'running', started_at: startedAt });
    expect(restarted.json).not.toHaveProperty('stopped_at');
    expect(restarted.json).not.toHaveProperty('pages');

    expect((await call(base(), 'DELETE', exps(SITE_A, genId), h.tokens.viewer)).status).toBe(403);
    const deleted = await call(base(), 'DELETE', exps(SITE_A, genId), h.tokens.admin);
    expect(deleted.status).toBe(204);
    expect((await call(base(), 'GET', exps(SITE_A, genId), h.tokens.admin)).status).toBe(404);
    expect((await call(base(), 'DELETE', exps(SITE_A, genId), h.tokens.admin)).status).toBe(404);
  });

  it.each([
    ['weights that do not add up', { ...hero, id: 'w', variations: [{ key: 'A', weight: 50 }, { key: 'B', weight: 40 }] }, 'variations'],
    ['a control that is not a variation', { ...hero, id: 'c', control: 'Z' }, 'control'],
    ['a bad id', { ...hero, id: 'no spaces' }, 'id'],
    ['a site in the body', { ...hero, id: 's', site: SITE_B }, 'site'],
    ['a stopped new experiment', { ...hero, id: 'st', status: 'stopped' }, 'status'],
    ['an onload attribute', { ...hero, id: 'x', variations: [hero.variations[0], { key: 'B', weight: 50, changes: [{ type: 'attribute', selector: 'img', name: 'onload', value: 'x()' }] }] }, 'variations[1].changes[0].name'],
  ])('refuse %s with a 400 naming the field', async (_name, body, field) => {
    const r = await call(base(), 'POST', exps(SITE_A), h.tokens.admin, body);
    expect(r.status).toBe(400);
    expect(errorOf(r)).toMatchObject({ code: 'API_BAD_REQUEST', field });
  });

  it('refuse a PATCH that breaks the definition, or names unknown fields, leaving it as it was', async () => {
    await call(base(), 'POST', exps(SITE_A), h.tokens.admin, { ...hero, id: 'patchme' });
    const bad = await call(base(), 'PATCH', exps(SITE_A, 'patchme'), h.tokens.admin, { control: 'Z' });
    expect(bad.status).toBe(400);
    expect(errorOf(bad).field).toBe('control');
    expect(errorOf(await call(base(), 'PATCH', exps(SITE_A, 'patchme'), h.tokens.admin, { id: 'other' })).field).toBe('id');
    expect(errorOf(await call(base(), 'PATCH', exps(SITE_A, 'patchme'), h.tokens.admin, '{not json')).field).toBe('body');
    expect(((await call(base(), 'GET', exps(SITE_A, 'patchme'), h.tokens.admin)).json as { control: string }).control).toBe('A');
  });

  it("answer another account's site, a site outside a grant and an absent site with one 404", async () => {
    await call(base(), 'POST', exps(SITE_B), h.tokens.otherOwner, { ...hero, id: 'theirs' });
    const outOfScope = await call(base(), 'GET', exps(SITE_B), h.tokens.owner);
    const absent = await call(base(), 'GET', exps('absent.test'), h.tokens.owner);
    const outsideGrant = await call(base(), 'GET', exps(SITE_A), h.tokens.scopedViewer);
    for (const r of [outOfScope, absent, outsideGrant]) expect(r.status).toBe(404);
    expect(outOfScope.json).toEqual(absent.json);
    expect(outsideGrant.json).toEqual(absent.json);
    // Writes too, and for an experiment id: nothing tells "exists elsewhere" from "absent".
    const writeOther = await call(base(), 'PATCH', exps(SITE_B, 'theirs'), h.tokens.owner, { name: 'mine' });
    const writeAbsent = await call(base(), 'PATCH', exps('absent.test', 'theirs'), h.tokens.owner, { name: 'mine' });
    expect(writeOther.status).toBe(404);
    expect(writeOther.json).toEqual(writeAbsent.json);
    const theirsViaMySite = await call(base(), 'GET', exps(SITE_A, 'theirs'), h.tokens.owner);
    const noneViaMySite = await call(base(), 'GET', exps(SITE_A, 'never-was'), h.tokens.owner);
    expect(theirsViaMySite.status).toBe(404);
    expect(theirsViaMySite.json).toEqual(noneViaMySite.json);
    expect((await call(base(), 'GET', exps(SITE_A2), h.tokens.scopedViewer)).status).toBe(200);
  });
});

describe('GET /api/config/:domain', () => {
  it("serves exactly what the tracker needs of the site's running experiments, to any origin", async () => {
    await call(base(), 'POST', exps(SITE_A2), h.tokens.admin, { ...hero, id: 'cfg-run', status: 'running', variations: [{ key: 'A', weight: 30, changes: [] }, { key: 'B', weight: 70, changes: [{ type: 'redirect', url: '/b' }] }] });
    await call(base(), 'POST', exps(SITE_A2), h.tokens.admin, { ...hero, id: 'cfg-draft' });
    const r = await call(base(), 'GET', `/api/config/${SITE_A2}`);
    expect(r.status).toBe(200);
    expect(r.headers.get('access-control-allow-origin')).toBe('*');
    expect(r.headers.get('cache-control')).toBe('public, max-age=60');
    expect(r.json).toEqual({
      experiments: [
        {
          id: 'cfg-run',
          variations: [
            { key: 'A', weight: 30, changes: [] },
            { key: 'B', weight: 70, changes: [{ type: 'redirect', url: '/b' }] },
          ],
          pages: hero.pages,
        },
      ],
    });
    // Upper case as a tracker might send it.
    expect((await call(base(), 'GET', `/api/config/${SITE_A2.toUpperCase()}`)).json).toEqual(r.json);
  });

  it('drops an experiment once it stops (writes clear the cache)', async () => {
    await call(base(), 'PATCH', exps(SITE_A2, 'cfg-run'), h.tokens.admin, { status: 'stopped' });
    expect((await call(base(), 'GET', `/api/config/${SITE_A2}`)).json).toEqual({ experiments: [] });
  });

  it('answers an unknown domain with a 404 error', async () => {
    const r = await call(base(), 'GET', '/api/config/nobody.test');
    expect(r.status).toBe(404);
    expect(r.headers.get('access-control-allow-origin')).toBe('*');
    expect(errorOf(r).code).toBe('API_NOT_FOUND');
  });
});

describe('changes that could run script, and redirects off the site', () => {
  const withChange = (id: string, change: unknown) => ({ ...hero, id, status: 'running', variations: [hero.variations[0], { key: 'B', weight: 50, changes: [change] }] });

  it.each(allPayloads.map((p, i) => [p[0], i, p[1], p[2]] as const))('refuse %s with a 400 naming the field', async (_label, i, change, field) => {
    const r = await call(base(), 'POST', exps(SITE_A), h.tokens.admin, withChange(`xss-${i}`, change));
    expect(r.status).toBe(400);
    expect(errorOf(r)).toMatchObject({ code: 'API_BAD_REQUEST', field: `variations[1].changes[0].${field}` });
  });

  it('refuse them in a PATCH too, leaving the experiment as it was', async () => {
    await call(base(), 'POST', exps(SITE_A), h.tokens.admin, { ...hero, id: 'patch-xss' });
    const r = await call(base(), 'PATCH', exps(SITE_A, 'patch-xss'), h.tokens.admin, { variations: withChange('x', { type: 'html', selector: '#box', value: '<img src=x onerror=alert(1)>' }).variations });
    expect(r.status).toBe(400);
    expect(errorOf(r).field).toBe('variations[1].changes[0].value');
    expect(((await call(base(), 'GET', exps(SITE_A, 'patch-xss'), h.tokens.admin)).json as { variations: unknown }).variations).toEqual(hero.variations);
  });

  it.each(offSiteRedirects)('refuse an admin a redirect to %s (off the site)', async (url) => {
    const r = await call(base(), 'POST', exps(SITE_A), h.tokens.admin, withChange('off-site', { type: 'redirect', url }));
    expect(r.status).toBe(400);
    expect(errorOf(r)).toMatchObject({ code: 'API_BAD_REQUEST', field: 'variations[1].changes[0].url' });
  });

  it('let only an owner allow another host; then a redirect there is accepted and served, until the owner takes the host back', async () => {
    const hosts = `/api/v1/sites/${SITE_A}/redirect-hosts`;
    const toPartner = withChange('to-partner', { type: 'redirect', url: 'https://shop.partner.test/b' });
    expect((await call(base(), 'POST', exps(SITE_A), h.tokens.admin, toPartner)).status).toBe(400);
    expect((await call(base(), 'GET', hosts, h.tokens.admin)).json).toEqual({ redirect_hosts: [] });

    // An admin cannot widen it, a viewer cannot read it, another account does not see the site.
    const byAdmin = await call(base(), 'PUT', hosts, h.tokens.admin, { redirect_hosts: ['partner.test'] });
    expect(byAdmin.status).toBe(403);
    expect(errorOf(byAdmin).code).toBe('API_FORBIDDEN');
    expect((await call(base(), 'GET', hosts, h.tokens.viewer)).status).toBe(403);
    expect((await call(base(), 'PUT', hosts, h.tokens.otherOwner, { redirect_hosts: ['partner.test'] })).status).toBe(404);
    const bad = await call(base(), 'PUT', hosts, h.tokens.owner, { redirect_hosts: ['https://partner.test/'] });
    expect(bad.status).toBe(400);
    expect(errorOf(bad).field).toBe('redirect_hosts[0]');
    expect((await call(base(), 'GET', hosts, h.tokens.admin)).json).toEqual({ redirect_hosts: [] });

    const byOwner = await call(base(), 'PUT', hosts, h.tokens.owner, { redirect_hosts: ['Partner.test', 'partner.test'] });
    expect(byOwner.status).toBe(200);
    expect(byOwner.json).toEqual({ redirect_hosts: ['partner.test'] });
    const created = await call(base(), 'POST', exps(SITE_A), h.tokens.admin, toPartner);
    expect(created.status, JSON.stringify(created.json)).toBe(201);
    const ids = async (): Promise<string[]> => ((await call(base(), 'GET', `/api/config/${SITE_A}`)).json as { experiments: { id: string }[] }).experiments.map((e) => e.id);
    expect(await ids()).toContain('to-partner');
    // Still only the allowed host: another one stays refused.
    expect((await call(base(), 'POST', exps(SITE_A), h.tokens.admin, withChange('to-evil', { type: 'redirect', url: 'https://evil.test/' }))).status).toBe(400);

    // Taken back: the running experiment is no longer served to the tracker.
    expect((await call(base(), 'PUT', hosts, h.tokens.owner, { redirect_hosts: [] })).status).toBe(200);
    expect(await ids()).not.toContain('to-partner');
    await call(base(), 'DELETE', exps(SITE_A, 'to-partner'), h.tokens.admin);
  });

  it('never serve an unsafe definition an older version stored, yet list it so an admin can fix it', async () => {
    const legacy = { ...withChange('legacy', { type: 'html', selector: '#box', value: '<img src=x onerror=alert(1)>' }), site: SITE_A2, started_at: new Date().toISOString() };
    await h.store.insert('experiments', [
      { id: 'legacy', site: SITE_A2, name: legacy.name, status: 'running', definition: JSON.stringify(legacy), created_at: formatTimestamp(Date.now()), updated_at: formatTimestamp(Date.now()), deleted: 0 },
    ]);
    const listed = await call(base(), 'GET', exps(SITE_A2), h.tokens.admin);
    expect((listed.json as { experiments: { id: string }[] }).experiments.map((e) => e.id)).toContain('legacy');
    const config = await call(base(), 'GET', `/api/config/${SITE_A2}`);
    expect(config.status).toBe(200);
    expect(JSON.stringify(config.json)).not.toContain('onerror');
    expect((config.json as { experiments: { id: string }[] }).experiments.map((e) => e.id)).not.toContain('legacy');
    // Fixing it makes it servable again.
    const fixed = await call(base(), 'PATCH', exps(SITE_A2, 'legacy'), h.tokens.admin, { variations: withChange('x', { type: 'html', selector: '#box', value: '<b>new</b>' }).variations });
    expect(fixed.status).toBe(200);
    expect(((await call(base(), 'GET', `/api/config/${SITE_A2}`)).json as { experiments: { id: string }[] }).experiments.map((e) => e.id)).toContain('legacy');
    await call(base(), 'DELETE', exps(SITE_A2, 'legacy'), h.tokens.admin);
  });
});

describe('a deleted domain stays reserved to its account', () => {
  it('another account cannot register it (nor get its config) until the owner releases it; the account itself may', async () => {
    const domain = 'reserved.test';
    expect((await call(base(), 'POST', '/api/v1/sites', h.tokens.owner, { domain })).status).toBe(201);
    expect((await call(base(), 'POST', exps(domain), h.tokens.admin, { ...hero, id: 'old', status: 'running' })).status).toBe(201);
    expect((await call(base(), 'DELETE', `/api/v1/sites/${domain}`, h.tokens.admin)).status).toBe(204);

    const taken = await call(base(), 'POST', '/api/v1/sites', h.tokens.otherOwner, { domain });
    expect(taken.status).toBe(409);
    expect(errorOf(taken)).toMatchObject({ code: 'API_DOMAIN_RESERVED', field: 'domain' });
    expect((await call(base(), 'GET', `/api/config/${domain}`)).status).toBe(404);

    const listed = await call(base(), 'GET', '/api/v1/reservations', h.tokens.owner);
    expect((listed.json as { reservations: { domain: string; until: string }[] }).reservations.map((r) => r.domain)).toContain(domain);
    expect((await call(base(), 'GET', '/api/v1/reservations', h.tokens.otherOwner)).json).toEqual({ reservations: [] });
    // Only the holder's owner releases it: not its admin, not another account's owner.
    expect((await call(base(), 'DELETE', `/api/v1/reservations/${domain}`, h.tokens.admin)).status).toBe(403);
    expect((await call(base(), 'DELETE', `/api/v1/reservations/${domain}`, h.tokens.otherOwner)).status).toBe(404);
    expect((await call(base(), 'POST', '/api/v1/sites', h.tokens.otherOwner, { domain })).status).toBe(409);

    // The holder may come back at any time, delete it again, then release it early.
    expect((await call(base(), 'POST', '/api/v1/sites', h.tokens.owner, { domain })).status).toBe(201);
    expect((await call(base(), 'DELETE', `/api/v1/sites/${domain}`, h.tokens.owner)).status).toBe(204);
    expect((await call(base(), 'DELETE', `/api/v1/reservations/${domain}`, h.tokens.owner)).status).toBe(204);
    expect((await call(base(), 'POST', '/api/v1/sites', h.tokens.otherOwner, { domain })).status).toBe(201);
    expect((await call(base(), 'GET', `/api/config/${domain}`)).json).toEqual({ experiments: [] });
  });
});

describe('GET /api/v2/experiments/:id/results', () => {
  const t0 = Date.now() - 3_600_000;
  const rows = (site: string, visitor: number, minute: number, name: string, exp: Record<string, string>) => ({
    site,
    timestamp: formatTimestamp(t0 + minute * 60_000),
    event_id: `${site}-${visitor}-${minute}-${name}`,
    name,
    visitor_id: String(visitor),
    session_id: String(visitor),
    pathname: '/',
    exp_ids: Object.keys(exp),
    exp_variants: Object.values(exp),
  });

  beforeAll(async () => {
    await call(base(), 'POST', exps(SITE_A), h.tokens.admin, { ...hero, id: 'res', status: 'running' });
    // The experiment started now: move its start back so the events fall inside its run.
    const events = [];
    for (let v = 1; v <= 30; v++) {
      events.push(rows(SITE_A, v, 1, 'pageview', { res: v % 2 === 0 ? 'A' : 'B' }));
      if (v % 3 === 0) events.push(rows(SITE_A, v, 2, 'Signup', {}));
    }
    // Another site's events with the same experiment id.
    for (let v = 1; v <= 10; v++) events.push(rows(SITE_B, v, 1, 'pageview', { res: 'A' }), rows(SITE_B, v, 2, 'Signup', {}));
    await h.store.insert('events', events);
  });

  const results = (id: string, query: string, token = h.tokens.viewer) => call(base(), 'GET', `/api/v2/experiments/${id}/results?${query}`, token);

  it('counts exposed and converted visitors per variation over a date range', async () => {
    const range = `${new Date(t0 - 60_000).toISOString()},${new Date(t0 + 10 * 60_000).toISOString()}`;
    const r = await results('res', `site_id=${SITE_A}&date_range=${encodeURIComponent(range)}`);
    expect(r.status).toBe(200);
    const body = r.json as { results: { variations: { key: string; exposures: number; conversions: number; vsControl: unknown }[]; srm: { pValue: number }; verdict: string }; date_range: string[] };
    // Even visitors saw A, odd ones B; every third visitor signed up: A 15 (6, 12, …, 30 → 5), B 15 (3, 9, …, 27 → 5).
    expect(body.results.variations.map((v) => [v.key, v.exposures, v.conversions])).toEqual([
      ['A', 15, 5],
      ['B', 15, 5],
    ]);
    expect(body.results.variations[1]?.vsControl).toMatchObject({ pValue: 1 });
    expect(body.results.verdict).toBe('insufficient_data');
    expect(body.date_range).toHaveLength(2);
  });

  it('without a date range, counts from the start of the run (nothing yet here)', async () => {
    const r = await results('res', `site_id=${SITE_A}`);
    expect(r.status).toBe(200);
    const variations = (r.json as { results: { variations: { exposures: number }[] } }).results.variations;
    expect(variations.map((v) => v.exposures)).toEqual([0, 0]);
  });

  it('answers an unknown experiment, and one of another site, with the same 404', async () => {
    const unknown = await results('nope', `site_id=${SITE_A}`);
    expect(unknown.status).toBe(404);
    const theirs = await results('theirs', `site_id=${SITE_A}`);
    expect(theirs.json).toEqual(unknown.json);
    const otherSite = await results('theirs', `site_id=${SITE_B}`);
    const absentSite = await results('theirs', 'site_id=absent.test');
    expect(otherSite.status).toBe(404);
    expect(otherSite.json).toEqual(absentSite.json);
  });

  it('names a bad date_range, and needs a site and a token', async () => {
    const bad = await results('res', `site_id=${SITE_A}&date_range=fortnight`);
    expect(bad.status).toBe(400);
    expect(errorOf(bad).field).toBe('date_range');
    const badPair = await results('res', `site_id=${SITE_A}&date_range=2026-01-01,nope`);
    expect(badPair.status).toBe(400);
    expect(errorOf(badPair).field).toMatch(/^date_range/);
    expect((await results('res', '')).status).toBe(400);
    expect((await call(base(), 'GET', `/api/v2/experiments/res/results?site_id=${SITE_A}`)).status).toBe(401);
  });
});
