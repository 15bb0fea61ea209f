import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openTestStore, removeTempDirs } from '../../store/testing/store.ts';
import type { Experiment, Goal } from '../../schemas/experiment.ts';
import { formatTimestamp } from '../../store/rows.ts';
import type { Store } from '../../store/store.ts';
import { rng } from '../../schemas/testing/oracle.ts';
import { ApiQueryError } from '../query/errors.ts';
import { experimentRepository } from '../../control/experiments.ts';
import { experimentReport, exposureCounts } from './results.ts';

/**
 * Exposure and conversion counts on embedded chDB against hand-inserted events, with the expected
 * counts computed here in plain JavaScript from the same event list (not through SQL).
 */

const MINUTE = 60_000;
const DAY = 86_400_000;
const base = Math.floor(Date.now() / DAY) * DAY - 3 * DAY;
const site = 'exp.test';
const other = 'other.test';

interface Ev {
  site: string;
  ts: number;
  visitor: string;
  name: string;
  path: string;
  exp: Record<string, string>;
}

let seq = 0;
function row(e: Ev): Record<string, unknown> {
  return {
    site: e.site,
    timestamp: formatTimestamp(e.ts),
    event_id: `e${seq++}`,
    name: e.name,
    session_id: e.visitor,
    visitor_id: e.visitor,
    hostname: e.site,
    pathname: e.path,
    exp_ids: Object.keys(e.exp),
    exp_variants: Object.values(e.exp),
  };
}

const pv = (visitor: string, minute: number, path: string, exp: Record<string, string> = {}, s = site): Ev => ({ site: s, ts: base + minute * MINUTE, visitor, name: 'pageview', path, exp });
const ev = (visitor: string, minute: number, name: string, exp: Record<string, string> = {}, s = site): Ev => ({ site: s, ts: base + minute * MINUTE, visitor, name, path: '/', exp });

// Hand-made cases, one visitor each (ids are UInt64 text).
const handmade: Ev[] = [
  // 101: exposed to A, then signs up: A, converted.
  pv('101', 10, '/', { exp1: 'A' }),
  ev('101', 12, 'Signup'),
  // 102: exposed to B, never converts.
  pv('102', 10, '/', { exp1: 'B' }),
  // 103: exposed to A twice: one visitor.
  pv('103', 10, '/', { exp1: 'A' }),
  pv('103', 20, '/pricing', { exp1: 'A' }),
  // 104: signs up before the exposure to B, not after: not a conversion.
  ev('104', 5, 'Signup'),
  pv('104', 30, '/', { exp1: 'B' }),
  // 105: B first, then A, then converts: counted in B only, converted.
  pv('105', 10, '/', { exp1: 'B' }),
  pv('105', 11, '/', { exp1: 'A' }),
  ev('105', 40, 'Signup'),
  // 106: one event exposing two experiments; converts on the same minute.
  pv('106', 10, '/', { exp2: 'X', exp1: 'B' }),
  ev('106', 10, 'Signup', { exp2: 'X', exp1: 'B' }),
  // 107: a key the definition does not have: ignored.
  pv('107', 10, '/', { exp1: 'Z' }),
  ev('107', 11, 'Signup'),
  // 108: exposed to A and B at the same instant: the smaller key (A).
  pv('108', 50, '/', { exp1: 'B' }),
  pv('108', 50, '/', { exp1: 'A' }),
  // Another site's events with the same experiment id and visitor ids: never counted.
  pv('101', 10, '/', { exp1: 'B' }, other),
  ev('101', 11, 'Signup', {}, other),
  pv('999', 10, '/', { exp1: 'A' }, other),
  ev('999', 11, 'Signup', {}, other),
  // 109: page goal by glob: /thanks/** matches /thanks/a/b after the exposure.
  pv('109', 10, '/', { exp1: 'A' }),
  pv('109', 15, '/thanks/a/b'),
  // 110: /thanks alone does not match /thanks/**; /thanks/x does, but before the exposure.
  pv('110', 10, '/thanks/x'),
  pv('110', 11, '/', { exp1: 'B' }),
  pv('110', 12, '/thanks'),
];

// Random traffic on day 1: 400 visitors, several experiments, goals before and after exposure.
function randomTraffic(seed: number): Ev[] {
  const r = rng(seed);
  const out: Ev[] = [];
  const paths = ['/', '/pricing', '/thanks/1', '/thanks/1/2', '/blog/x', '/thanks'];
  for (let v = 0; v < 400; v++) {
    const visitor = String(1_000_000 + v);
    const n = 1 + Math.floor(r() * 6);
    for (let i = 0; i < n; i++) {
      const minute = 24 * 60 + Math.floor(r() * 600);
      const exp: Record<string, string> = {};
      if (r() < 0.6) exp['exp1'] = ['A', 'B', 'C', 'Z'][Math.floor(r() * 4)] as string;
      if (r() < 0.3) exp['exp2'] = 'X';
      if (r() < 0.7) out.push(pv(visitor, minute, paths[Math.floor(r() * paths.length)] as string, exp));
      else out.push(ev(visitor, minute, r() < 0.5 ? 'Signup' : 'Other', exp));
    }
  }
  return out;
}

const events = [...handmade, ...randomTraffic(7)];

/** The expected counts, the plain way: per visitor, first exposure, then any goal at or after it. */
function expected(evs: readonly Ev[], s: string, exp: string, keys: readonly string[], goal: Goal, start: number, end: number): Map<string, { exposures: number; conversions: number }> {
  const inRange = evs.filter((e) => e.site === s && e.ts >= start && e.ts < end);
  const first = new Map<string, { ts: number; key: string }>();
  for (const e of inRange) {
    const key = e.exp[exp];
    if (key === undefined || !keys.includes(key)) continue;
    const f = first.get(e.visitor);
    if (f === undefined || e.ts < f.ts || (e.ts === f.ts && key < f.key)) first.set(e.visitor, { ts: e.ts, key });
  }
  const isGoal = (e: Ev): boolean => {
    if (goal.type === 'event') return e.name === goal.name;
    if (e.name !== 'pageview') return false;
    // Only the globs used here: a trailing /** or an exact path.
    if (goal.path.endsWith('/**')) return e.path.startsWith(goal.path.slice(0, -2));
    return e.path === goal.path;
  };
  const out = new Map(keys.map((k) => [k, { exposures: 0, conversions: 0 }]));
  for (const [visitor, f] of first) {
    const c = out.get(f.key)!;
    c.exposures++;
    if (inRange.some((e) => e.visitor === visitor && isGoal(e) && e.ts >= f.ts)) c.conversions++;
  }
  return out;
}

let store: Store;

beforeAll(async () => {
  store = await openTestStore('farol_results_test');
  await store.insert(
    'events',
    events.map((e) => row(e)),
  );
}, 60_000);

afterAll(async () => {
  await store.close();
  await removeTempDirs();
});

const keys = ['A', 'B', 'C'];
const signup: Goal = { type: 'event', name: 'Signup' };
const thanks: Goal = { type: 'pageview', path: '/thanks/**' };
const day0 = { start: base, end: base + DAY };

describe('exposureCounts on hand-made cases (day 0)', () => {
  it('counts each case as documented, for an event goal', async () => {
    const got = await exposureCounts(store, { site, experimentId: 'exp1', keys, goal: signup, ...day0 });
    // A: 101 (conv), 103, 108, 109. B: 102, 104 (signup before: no), 105 (conv), 106 (conv), 110.
    expect(Object.fromEntries(got)).toEqual({
      A: { exposures: 4, conversions: 1 },
      B: { exposures: 5, conversions: 2 },
      C: { exposures: 0, conversions: 0 },
    });
    expect(got).toEqual(expected(events, site, 'exp1', keys, signup, day0.start, day0.end));
  });

  it('counts a page goal by glob, after the exposure only', async () => {
    const got = await exposureCounts(store, { site, experimentId: 'exp1', keys, goal: thanks, ...day0 });
    // Only 109 converts: 110's /thanks/x is before its exposure and /thanks does not match.
    expect(got.get('A')).toEqual({ exposures: 4, conversions: 1 });
    expect(got.get('B')).toEqual({ exposures: 5, conversions: 0 });
    const exact = await exposureCounts(store, { site, experimentId: 'exp1', keys, goal: { type: 'pageview', path: '/thanks' }, ...day0 });
    expect(exact.get('B')).toEqual({ exposures: 5, conversions: 1 });
  });

  it('counts the other experiment of a shared event on its own', async () => {
    const got = await exposureCounts(store, { site, experimentId: 'exp2', keys: ['X', 'Y'], goal: signup, ...day0 });
    expect(Object.fromEntries(got)).toEqual({ X: { exposures: 1, conversions: 1 }, Y: { exposures: 0, conversions: 0 } });
  });

  it("never counts another site's events, and finds nothing for an unknown experiment", async () => {
    const otherCounts = await exposureCounts(store, { site: other, experimentId: 'exp1', keys, goal: signup, ...day0 });
    expect(otherCounts.get('A')).toEqual({ exposures: 1, conversions: 1 });
    expect(otherCounts.get('B')).toEqual({ exposures: 1, conversions: 1 });
    const none = await exposureCounts(store, { site, experimentId: 'nope', keys, goal: signup, ...day0 });
    expect([...none.values()].every((c) => c.exposures === 0)).toBe(true);
  });

  it('leaves out events outside the range', async () => {
    // Up to minute 30: 104 exposed at 30 is out, 105's signup at 40 and 108 at 50 too.
    const got = await exposureCounts(store, { site, experimentId: 'exp1', keys, goal: signup, start: base, end: base + 30 * MINUTE });
    expect(got.get('B')).toEqual({ exposures: 4, conversions: 1 });
    expect(got.get('A')).toEqual({ exposures: 3, conversions: 1 });
  });
});

describe('exposureCounts on random traffic (day 1)', () => {
  it.each([
    ['an event goal', signup],
    ['a page glob goal', thanks],
  ])('equals the plain computation for %s', async (_name, goal) => {
    const start = base + DAY;
    const end = base + 2 * DAY;
    const got = await exposureCounts(store, { site, experimentId: 'exp1', keys, goal, start, end });
    const want = expected(events, site, 'exp1', keys, goal, start, end);
    expect(got).toEqual(want);
    // Not a vacuous comparison.
    expect([...want.values()].reduce((s, c) => s + c.conversions, 0)).toBeGreaterThan(20);
  });
});

describe('experimentReport', () => {
  const experiment: Experiment = {
    id: 'exp1',
    site,
    name: 'Test',
    status: 'running',
    goal: signup,
    control: 'A',
    variations: [
      { key: 'A', weight: 40, changes: [] },
      { key: 'B', weight: 40, changes: [] },
      { key: 'C', weight: 20, changes: [] },
    ],
    started_at: new Date(base + DAY).toISOString(),
  };
  const querySite = { domain: site, timezone: 'UTC' };
  const now = new Date(base + 3 * DAY);

  it("defaults to the experiment's run and feeds the counts to the statistics", async () => {
    const r = await experimentReport(store, querySite, experiment, undefined, now);
    const want = expected(events, site, 'exp1', keys, signup, base + DAY, now.getTime() + 1);
    expect(r.results.variations.map((v) => [v.key, v.exposures, v.conversions])).toEqual(keys.map((k) => [k, want.get(k)!.exposures, want.get(k)!.conversions]));
    expect(r.results.controlKey).toBe('A');
    expect(r.results.variations[2]!.expectedShare).toBeCloseTo(0.2, 12);
    expect(r.results.variations[1]!.vsControl?.pValue).toBeGreaterThan(0);
    expect(r.date_range[0]).toBe(experiment.started_at);
  });

  it('takes a date_range through the query engine, and names it when invalid', async () => {
    const from = new Date(base).toISOString().slice(0, 10);
    const r = await experimentReport(store, querySite, experiment, [from, from], now);
    expect(r.date_range).toEqual([`${from}T00:00:00Z`, `${from}T23:59:59Z`]);
    expect(r.results.variations.map((v) => v.exposures)).toEqual([4, 5, 0]);
    const err = await experimentReport(store, querySite, experiment, 'fortnight', now).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiQueryError);
    expect((err as ApiQueryError).field).toBe('date_range');
  });

  it('reports weight-0 variations apart from the tests', async () => {
    const paused = { ...experiment, variations: [{ key: 'A', weight: 50, changes: [] }, { key: 'B', weight: 50, changes: [] }, { key: 'C', weight: 0, changes: [] }] };
    const r = await experimentReport(store, querySite, paused, undefined, now);
    expect(r.results.variations.map((v) => v.key)).toEqual(['A', 'B']);
    const want = expected(events, site, 'exp1', keys, signup, base + DAY, now.getTime() + 1).get('C')!;
    expect(r.paused_variations).toEqual([{ key: 'C', ...want }]);
    expect(want.exposures).toBeGreaterThan(0);
  });
});

describe('experimentRepository', () => {
  let clock = base;
  const repo = () => experimentRepository(store, () => new Date(clock));
  const exp = (id: string, status: Experiment['status'], s = site): Experiment => ({
    id,
    site: s,
    name: `n-${id}`,
    status,
    goal: signup,
    control: 'A',
    variations: [
      { key: 'A', weight: 50, changes: [] },
      { key: 'B', weight: 50, changes: [{ type: 'text', selector: 'h1', value: 'Hi' }] },
    ],
  });

  it('creates, updates, lists per site, deletes, and serves only running ones to the tracker', async () => {
    const r = repo();
    const created = await r.put(exp('r1', 'draft'));
    clock += 1000;
    await r.put(exp('r2', 'running'));
    await r.put({ ...exp('r2', 'running', 'elsewhere.test'), pages: ['/x'] });
    expect((await r.list('repo.none')).length).toBe(0);
    const updated = await r.put({ ...exp('r1', 'running'), name: 'renamed', pages: ['/blog/**'] }, created.created_at);
    expect(updated.created_at).toBe(created.created_at);

    const list = await r.list(site);
    expect(list.map((s) => [s.experiment.id, s.experiment.name])).toEqual([
      ['r1', 'renamed'],
      ['r2', 'n-r2'],
    ]);
    expect(list[0]!.created_at).toBe(created.created_at);
    expect(Date.parse(list[0]!.updated_at)).toBeGreaterThan(Date.parse(created.updated_at));

    // Two writes within one millisecond still order.
    await r.put({ ...exp('r1', 'running'), name: 'again', pages: ['/blog/**'] }, created.created_at);
    expect((await r.get(site, 'r1'))?.experiment.name).toBe('again');

    expect(await r.trackerConfig(site)).toEqual([
      { id: 'r1', variations: [{ key: 'A', weight: 50, changes: [] }, { key: 'B', weight: 50, changes: [{ type: 'text', selector: 'h1', value: 'Hi' }] }], pages: ['/blog/**'] },
      { id: 'r2', variations: [{ key: 'A', weight: 50, changes: [] }, { key: 'B', weight: 50, changes: [{ type: 'text', selector: 'h1', value: 'Hi' }] }] },
    ]);

    expect(await r.remove(site, 'r2')).toBe(true);
    expect(await r.remove(site, 'r2')).toBe(false);
    expect(await r.get(site, 'r2')).toBeNull();
    expect((await r.trackerConfig(site)).map((e) => e.id)).toEqual(['r1']);
    // The other site's experiment of the same id is untouched.
    expect((await r.get('elsewhere.test', 'r2'))?.experiment.pages).toEqual(['/x']);
  });
});
