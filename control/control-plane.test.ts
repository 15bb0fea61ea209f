import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiError } from '../schemas/errors.ts';
import { openChdbStore } from '../store/chdb-store.ts';
import { migrate } from '../store/migrate.ts';
import type { Store } from '../store/store.ts';
import { experimentSchema } from '../schemas/experiment.ts';
import { experimentRepository } from './experiments.ts';
import { redirectHostsRepository } from './redirect-hosts.ts';
import { ControlPlane, hashToken } from './control-plane.ts';

/** The control plane on embedded chDB: validation, tokens, caching and revocation, bootstrap. */

const database = 'farol_control_test';
let dir = '';
let store: Store;
const extraStores: Store[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'farol-control-'));
  store = openChdbStore({ dataDir: dir, database });
  await migrate(store, { database, retentionDays: 395 });
});

afterAll(async () => {
  for (const s of extraStores) await s.close();
  await store?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    if (err instanceof ApiError) return `${err.status} ${err.code} ${err.field ?? ''}`.trim();
    throw err;
  }
  return 'ok';
}

describe('validation', () => {
  it('normalizes domains to lower case and rejects what is not a hostname', async () => {
    const cp = new ControlPlane(store);
    const acc = await cp.createAccount({ name: 'validation' });
    const site = await cp.addSite(acc.id, { domain: '  Shop.Example.COM ', timezone: 'Europe/Lisbon' });
    expect(site).toMatchObject({ domain: 'shop.example.com', timezone: 'Europe/Lisbon', respectDnt: false, accountId: acc.id });
    expect((await cp.site('SHOP.example.com'))?.domain).toBe('shop.example.com');
    for (const domain of ['http://x.com', 'a b.com', '-x.com', 'x..com', 'x.com/', `${'a'.repeat(64)}.com`, '', 'ü.com']) {
      expect(await code(cp.addSite(acc.id, { domain })), domain).toBe('400 API_BAD_REQUEST domain');
    }
    expect(await code(cp.addSite(acc.id, { domain: 'tz.com', timezone: 'Mars/Base' }))).toBe('400 API_BAD_REQUEST timezone');
    // An unknown key is named itself, as the query engine and the experiment routes name it (one formatter).
    expect(await code(cp.addSite(acc.id, { domain: 'tz.com', extra: 1 }))).toBe('400 API_BAD_REQUEST extra');
    expect(await code(cp.addSite(acc.id, { domain: 'shop.example.com' }))).toBe('409 API_CONFLICT domain');
    expect(await code(cp.addMember(acc.id, { name: 'x', role: 'root' }))).toBe('400 API_BAD_REQUEST role');
  });
});

describe('sites, members and goals', () => {
  it('updates and deletes sites; a grant may only name the account’s own sites', async () => {
    const cp = new ControlPlane(store);
    const a = await cp.createAccount({ name: 'A' });
    const b = await cp.createAccount({ name: 'B' });
    await cp.addSite(a.id, { domain: 'a1.test' });
    await cp.addSite(b.id, { domain: 'b1.test' });
    expect(await cp.updateSite('a1.test', { timezone: 'Asia/Tokyo', respect_dnt: true })).toMatchObject({ timezone: 'Asia/Tokyo', respectDnt: true });
    expect(await cp.site('a1.test')).toMatchObject({ timezone: 'Asia/Tokyo', respectDnt: true });
    // Another account's site is "not found", exactly like one that does not exist.
    expect(await code(cp.addMember(a.id, { name: 'v', role: 'viewer', sites: ['b1.test'] }))).toBe('404 API_NOT_FOUND sites');
    expect(await code(cp.addMember(a.id, { name: 'v', role: 'viewer', sites: ['nope.test'] }))).toBe('404 API_NOT_FOUND sites');
    const v = await cp.addMember(a.id, { name: 'v', role: 'viewer', sites: ['a1.test', 'a1.test'] });
    expect(v.sites).toEqual(['a1.test']);
    expect((await cp.updateMember(v.id, { role: 'admin' })).role).toBe('admin');

    await cp.addGoal('a1.test', { name: 'Signup' });
    await cp.addGoal('a1.test', { name: '/thanks' });
    expect(await cp.goals('a1.test')).toEqual(['/thanks', 'Signup']);
    expect(await code(cp.addGoal('a1.test', { name: 'Signup' }))).toBe('409 API_CONFLICT name');
    await cp.deleteGoal('a1.test', 'Signup');
    expect(await cp.goals('a1.test')).toEqual(['/thanks']);
    expect(await cp.goals('b1.test')).toBeUndefined();

    expect((await cp.siteDomains()).sort()).toEqual(expect.arrayContaining(['a1.test', 'b1.test']));
    await cp.deleteSite('a1.test');
    expect(await cp.site('a1.test')).toBeNull();
    expect(await cp.siteDomains()).not.toContain('a1.test');
    expect(await cp.goals('a1.test')).toBeUndefined();
    expect(await code(cp.deleteSite('a1.test'))).toBe('404 API_NOT_FOUND domain');
  });

  it('registeredSites: the collector’s read, live sites with the epoch of their registration', async () => {
    let clock = Date.parse('2026-03-01T10:00:00.000Z');
    const cp = new ControlPlane(store, { now: () => clock, reservationMs: 0 });
    const acc = await cp.createAccount({ name: 'registrations' });
    const first = await cp.addSite(acc.id, { domain: 'Epoch.test' });
    clock += 1_000;
    const other = await cp.addSite(acc.id, { domain: 'epoch-gone.test' });
    const mine = async () => (await cp.registeredSites()).filter((s) => s.domain.startsWith('epoch')).sort((x, y) => x.domain.localeCompare(y.domain));
    expect(await mine()).toEqual([
      { domain: 'epoch-gone.test', epoch: Date.parse(other.createdAt) },
      { domain: 'epoch.test', epoch: Date.parse(first.createdAt) },
    ]);
    expect(Date.parse(other.createdAt)).toBe(Date.parse('2026-03-01T10:00:01.000Z'));
    await cp.deleteSite('epoch-gone.test');
    await cp.deleteSite('epoch.test');
    clock += 60_000;
    const again = await cp.addSite(acc.id, { domain: 'epoch.test' });
    // Registered again: a new epoch; deleted: gone.
    expect(await mine()).toEqual([{ domain: 'epoch.test', epoch: Date.parse(again.createdAt) }]);
    expect(Date.parse(again.createdAt)).toBe(Date.parse('2026-03-01T10:01:01.000Z'));
  });

  it('deleting a site deletes its data, goals and experiments: registered again, it starts empty', async () => {
    const cp = new ControlPlane(store);
    const acc = await cp.createAccount({ name: 'deleting' });
    await cp.addSite(acc.id, { domain: 'gone.test' });
    await cp.addSite(acc.id, { domain: 'kept.test' });
    await cp.addGoal('gone.test', { name: 'Signup' });
    const experiments = experimentRepository(store, () => new Date());
    const def = { id: 'hero', site: 'gone.test', name: 'Hero', status: 'running', control: 'a', goal: { type: 'event', name: 'Signup' } };
    await experiments.put(experimentSchema.parse({ ...def, variations: [{ key: 'a', weight: 50, changes: [] }, { key: 'b', weight: 50, changes: [] }] }));
    await store.exec(
      "INSERT INTO events (site, timestamp, name, pathname, visitor_id) SELECT if(number % 2 = 0, 'gone.test', 'kept.test'), now64(3), 'pageview', '/', number FROM numbers(10)",
    );
    const counts = async (table: string): Promise<Record<string, number>> => {
      const rows = await store.query<{ site: string; n: string }>(`SELECT site, count() AS n FROM ${table} WHERE site IN ('gone.test', 'kept.test') GROUP BY site`);
      return Object.fromEntries(rows.map((r) => [r.site, Number(r.n)]));
    };
    expect(await counts('events')).toEqual({ 'gone.test': 5, 'kept.test': 5 });
    expect(Object.keys(await counts('rollup_daily')).sort()).toEqual(['gone.test', 'kept.test']);

    await cp.deleteSite('gone.test');
    expect(await counts('events')).toEqual({ 'kept.test': 5 });
    for (const t of ['rollup_hourly', 'rollup_daily']) expect(Object.keys(await counts(t)), t).toEqual(['kept.test']);
    expect(await experiments.list('gone.test')).toEqual([]);

    const other = await cp.createAccount({ name: 'newcomer' });
    await cp.releaseReservation('gone.test'); // else it stays reserved to its account (below)
    await cp.addSite(other.id, { domain: 'gone.test' });
    expect(await cp.goals('gone.test')).toBeUndefined();
    expect(await experiments.list('gone.test')).toEqual([]);
    expect(await counts('events')).toEqual({ 'kept.test': 5 });
  });

  it('keeps an account-wide owner', async () => {
    const cp = new ControlPlane(store);
    const acc = await cp.createAccount({ name: 'owners' });
    const o1 = await cp.addMember(acc.id, { name: 'o1', role: 'owner' });
    expect(await code(cp.removeMember(o1.id))).toBe('409 API_CONFLICT role');
    expect(await code(cp.updateMember(o1.id, { role: 'admin' }))).toBe('409 API_CONFLICT role');
    const o2 = await cp.addMember(acc.id, { name: 'o2', role: 'owner' });
    await cp.removeMember(o1.id);
    expect((await cp.members(acc.id)).map((m) => m.id)).toEqual([o2.id]);
  });

  it('keeps an account-wide owner with a live token once one has it', async () => {
    const cp = new ControlPlane(store);
    const acc = await cp.createAccount({ name: 'way-in' });
    await cp.addSite(acc.id, { domain: 'way-in.test' });
    const o1 = await cp.addMember(acc.id, { name: 'o1', role: 'owner' });
    const o2 = await cp.addMember(acc.id, { name: 'o2', role: 'owner' });
    // No owner holds a token yet (an account the CLI is setting up): only "an owner" is kept.
    await cp.updateMember(o2.id, { role: 'admin' });
    await cp.updateMember(o2.id, { role: 'owner' });
    const t1 = await cp.issueToken(o1.id);
    // o1 is now the only way in: its token, its role, its account-wide grant and itself stay.
    expect(await code(cp.revokeToken(t1.hash))).toBe('409 API_CONFLICT token');
    expect(await code(cp.updateMember(o1.id, { role: 'admin' }))).toBe('409 API_CONFLICT token');
    expect(await code(cp.updateMember(o1.id, { sites: ['way-in.test'] }))).toBe('409 API_CONFLICT token');
    expect(await code(cp.removeMember(o1.id))).toBe('409 API_CONFLICT token');
    expect(await cp.authenticate(t1.token)).toMatchObject({ role: 'owner', sites: [] });
    // Rotating is issuing first, then revoking.
    const t2 = await cp.issueToken(o1.id);
    await cp.revokeToken(t1.hash);
    expect(await cp.authenticate(t2.token)).toMatchObject({ memberId: o1.id });
    // A per-site owner is no way into the account.
    const so = await cp.addMember(acc.id, { name: 'so', role: 'owner', sites: ['way-in.test'] });
    await cp.issueToken(so.id);
    expect(await code(cp.revokeToken(t2.hash))).toBe('409 API_CONFLICT token');
    // Another account-wide owner with a token is.
    await cp.issueToken(o2.id);
    await cp.removeMember(o1.id);
    expect(await cp.wayIn(acc.id)).toEqual({ owners: 1, ownersWithToken: 1 });
  });

  it('serialises sections per account, in call order, re-entrantly; other accounts run alongside', async () => {
    const cp = new ControlPlane(store);
    const log: string[] = [];
    let release = (): void => undefined;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const first = cp.serial('acc_x', async () => {
      log.push('x1 start');
      await gate;
      // Re-entrant: the same account's lock again, from inside, does not wait for itself.
      await cp.serial('acc_x', async () => log.push('x1 nested'));
      log.push('x1 end');
    });
    const second = cp.serial('acc_x', async () => {
      log.push('x2');
      throw new Error('boom');
    });
    const third = cp.serial('acc_x', async () => log.push('x3'));
    // Another account is not held up by acc_x's open section.
    await cp.serial('acc_y', async () => log.push('y'));
    expect(log).toEqual(['x1 start', 'y']);
    release();
    await first;
    await expect(second).rejects.toThrow('boom');
    await third;
    // A section that threw still let the next one run.
    expect(log).toEqual(['x1 start', 'y', 'x1 nested', 'x1 end', 'x2', 'x3']);
  });
});

describe('domain reservations', () => {
  const day = 86_400_000;

  it('keep a deleted domain for its account: another account gets 409 until the grace period ends, the holder may return any time', async () => {
    let clock = Date.parse('2030-03-01T00:00:00Z');
    const cp = new ControlPlane(store, { now: () => clock, cacheTtlMs: 0, reservationMs: 30 * day });
    const a = await cp.createAccount({ name: 'holder' });
    const b = await cp.createAccount({ name: 'claimant' });
    await cp.addSite(a.id, { domain: 'held.test' });
    await redirectHostsRepository(store, () => new Date(clock)).set('held.test', ['partner.test']);
    await cp.deleteSite('held.test');
    const until = new Date(clock + 30 * day).toISOString();
    expect(await cp.site('held.test')).toBeNull();
    expect(await redirectHostsRepository(store, () => new Date(clock)).get('held.test')).toEqual([]);
    expect(await code(cp.addSite(b.id, { domain: 'held.test' }))).toBe('409 API_DOMAIN_RESERVED domain');
    expect(await cp.reservations(a.id)).toEqual([{ domain: 'held.test', accountId: a.id, until }]);
    expect(await cp.reservations(b.id)).toEqual([]);
    // Not B's to release.
    expect(await code(cp.releaseReservation('held.test', b.id))).toBe('404 API_NOT_FOUND domain');

    clock += 30 * day - 1;
    expect(await code(cp.addSite(b.id, { domain: 'held.test' }))).toBe('409 API_DOMAIN_RESERVED domain');
    // The holder comes back (that ends the reservation), then deletes it again: reserved anew.
    await cp.addSite(a.id, { domain: 'held.test' });
    expect(await cp.reservations(a.id)).toEqual([]);
    await cp.deleteSite('held.test');
    clock += 30 * day - 1;
    expect(await code(cp.addSite(b.id, { domain: 'held.test' }))).toBe('409 API_DOMAIN_RESERVED domain');
    clock += 1;
    expect(await cp.reservations(a.id)).toEqual([]);
    expect(await cp.addSite(b.id, { domain: 'held.test' })).toMatchObject({ domain: 'held.test', accountId: b.id });
  });

  it('end early when the holder releases the domain, and not at all with 0 days', async () => {
    const cp = new ControlPlane(store, { cacheTtlMs: 0 });
    const a = await cp.createAccount({ name: 'releaser' });
    const b = await cp.createAccount({ name: 'next' });
    await cp.addSite(a.id, { domain: 'released.test' });
    await cp.deleteSite('released.test');
    expect(await code(cp.addSite(b.id, { domain: 'released.test' }))).toBe('409 API_DOMAIN_RESERVED domain');
    await cp.releaseReservation('released.test', a.id);
    expect(await code(cp.releaseReservation('released.test', a.id))).toBe('404 API_NOT_FOUND domain');
    expect((await cp.addSite(b.id, { domain: 'released.test' })).accountId).toBe(b.id);

    const none = new ControlPlane(store, { cacheTtlMs: 0, reservationMs: 0 });
    await none.addSite(a.id, { domain: 'unreserved.test' });
    await none.deleteSite('unreserved.test');
    expect(await none.reservations(a.id)).toEqual([]);
    expect((await none.addSite(b.id, { domain: 'unreserved.test' })).accountId).toBe(b.id);
  });
});

describe('tokens', () => {
  it('stores only a hash and a display prefix, authenticates, revokes', async () => {
    const cp = new ControlPlane(store);
    const acc = await cp.createAccount({ name: 'tokens' });
    await cp.addSite(acc.id, { domain: 'tok.test' });
    const m = await cp.addMember(acc.id, { name: 'ann', role: 'admin', sites: ['tok.test'] });
    const t = await cp.issueToken(m.id, { name: 'ci' });
    expect(t.token).toMatch(/^farol_[A-Za-z0-9_-]{43}$/);
    expect(t.prefix).toBe(t.token.slice(0, 12));
    expect(t.hash).toBe(hashToken(t.token));

    const stored = await store.query<Record<string, unknown>>('SELECT * FROM tokens WHERE member_id = {m:String}', { m: m.id });
    expect(JSON.stringify(stored)).not.toContain(t.token.slice(12));
    expect(stored[0]).toMatchObject({ hash: hashToken(t.token), prefix: t.prefix, name: 'ci', account_id: acc.id });

    expect(await cp.authenticate(t.token)).toEqual({ accountId: acc.id, memberId: m.id, role: 'admin', sites: ['tok.test'], tokenHash: t.hash });
    expect(await cp.authenticate(`${t.token}x`)).toBeNull();
    expect(await cp.authenticate('short')).toBeNull();
    expect((await cp.tokens(acc.id)).map((x) => x.prefix)).toEqual([t.prefix]);
    expect(JSON.stringify(await cp.tokens(acc.id))).not.toContain(t.token);

    expect(ControlPlane.pickToken(await cp.tokens(acc.id), t.prefix).hash).toBe(t.hash);
    const live = await cp.tokens(acc.id);
    expect(() => ControlPlane.pickToken(live, 'farol_nope')).toThrow(ApiError);
    await cp.revokeToken(t.hash);
    // A local revocation clears the cache: no grace period in this process.
    expect(await cp.authenticate(t.token)).toBeNull();
    expect(await cp.tokens(acc.id)).toEqual([]);
  });

  it('a revocation by another process takes effect within the cache TTL', async () => {
    let clock = 1_000_000;
    const api = new ControlPlane(store, { now: () => clock, cacheTtlMs: 5_000 });
    const cli = new ControlPlane(store);
    const acc = await cli.createAccount({ name: 'ttl' });
    const m = await cli.addMember(acc.id, { name: 'v', role: 'viewer' });
    const t = await cli.issueToken(m.id);
    expect((await api.authenticate(t.token))?.memberId).toBe(m.id);

    await cli.revokeToken(t.hash);
    // Cached: still the member for the rest of the TTL...
    clock += 4_000;
    expect((await api.authenticate(t.token))?.memberId).toBe(m.id);
    // ...and refused once it expires.
    clock += 1_001;
    expect(await api.authenticate(t.token)).toBeNull();

    // Removing a member disables its tokens too (the lookup joins live members). A token issued by
    // another process is known here at once, the clock not moving (a miss reloads the snapshot).
    const t2 = await cli.issueToken(m.id);
    expect((await api.authenticate(t2.token))?.role).toBe('viewer');
    const other = await cli.addMember(acc.id, { name: 'o', role: 'owner' });
    expect(other.role).toBe('owner');
    await cli.removeMember(m.id);
    clock += 5_001;
    expect(await api.authenticate(t2.token)).toBeNull();
  });

  it('unknown sites and tokens cost a bounded number of loads; ones another process creates are found at once', async () => {
    const clock = 0;
    let queries = 0;
    const counting: Store = { ...store, kind: store.kind, database: store.database, query: (sql, p) => (queries++, store.query(sql, p)) } as Store;
    const cp = new ControlPlane(counting, { now: () => clock });
    // A flood of random domains and tokens at once. Each set's misses share the loads that start
    // after them, at least 100 ms apart: two or three per set, however many requests.
    const floodStarted = performance.now();
    const flood = await Promise.all([
      ...Array.from({ length: 300 }, (_, i) => cp.site(`random-${i}.test`)),
      ...Array.from({ length: 300 }, (_, i) => cp.authenticate(`farol_${'x'.repeat(30)}${i}`)),
    ]);
    expect(flood.every((r) => r === null)).toBe(true);
    expect(queries).toBeLessThanOrEqual(2 * (2 + Math.floor((performance.now() - floodStarted) / 100)));
    expect(queries).toBeLessThan(20);
    // Misses one after another: each waits for a load of its own, and those are 100 ms apart.
    queries = 0;
    const started = performance.now();
    for (let i = 0; i < 6; i++) expect(await cp.site(`seq-${i}.test`)).toBeNull();
    const elapsed = performance.now() - started;
    expect(queries).toBeLessThanOrEqual(7);
    expect(elapsed).toBeGreaterThanOrEqual(4 * 100);
    // Another process adds a site and issues a token: both work here on the next request.
    const other = new ControlPlane(store);
    const acc = await other.createAccount({ name: 'fresh' });
    await other.addSite(acc.id, { domain: 'fresh-site.test' });
    const m = await other.addMember(acc.id, { name: 'fresh', role: 'viewer' });
    const t = await other.issueToken(m.id);
    expect((await cp.site('fresh-site.test'))?.domain).toBe('fresh-site.test');
    expect((await cp.authenticate(t.token))?.memberId).toBe(m.id);
  });
});

describe('bootstrap', () => {
  it('creates account, localhost, owner and one token once; a crash before the token is finished by the next run', async () => {
    // The same chDB directory (one per process), another database: an empty control plane.
    const db = 'farol_bootstrap_test';
    const other = openChdbStore({ dataDir: dir, database: db });
    extraStores.push(other);
    await migrate(other, { database: db, retentionDays: 395 });
    const cp = new ControlPlane(other);

    const shown: string[] = [];
    // Crash right after the token was shown, before it was stored.
    await expect(
      cp.bootstrap({
        announce: (tok) => {
          shown.push(tok);
          throw new Error('crash');
        },
      }),
    ).rejects.toThrow('crash');
    const accounts = await cp.accounts();
    expect(accounts.map((a) => a.name)).toEqual(['default']);
    const acc = accounts[0]!;
    expect((await cp.sites(acc.id)).map((s) => s.domain)).toEqual(['localhost']);
    expect(await cp.tokens(acc.id)).toEqual([]);
    expect(await cp.authenticate(shown[0]!)).toBeNull();

    // The restart completes it, with a new token that works.
    const r = await cp.bootstrap({ announce: (tok) => shown.push(tok), sites: ['Example.com', 'bad domain'] });
    expect(r.issued?.fromEnv).toBe(false);
    expect(shown).toHaveLength(2);
    expect(r.issued?.token).toBe(shown[1]);
    expect(r.sitesAdded).toEqual(['example.com']);
    expect(await cp.authenticate(shown[1]!)).toMatchObject({ role: 'owner', sites: [], accountId: acc.id });

    // Later runs issue nothing, even with a bootstrap token, and do not bring back a deleted localhost.
    await cp.deleteSite('localhost');
    const again = await cp.bootstrap({ token: 'x'.repeat(30), announce: (tok) => shown.push(tok) });
    expect(again.issued).toBeUndefined();
    expect(shown).toHaveLength(2);
    expect(await cp.site('localhost')).toBeNull();
    expect((await cp.accounts()).length).toBe(1);
    expect((await cp.members(acc.id)).length).toBe(1);
  });
});

