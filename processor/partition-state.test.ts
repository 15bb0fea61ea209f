import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { encodeEvent } from '../hub/event-codec.ts';
import type { HubRecord } from '../hub/hub.ts';
import { deadLetterRow } from './dead-letters.ts';
import type { EnrichedEvent } from '../schemas/enriched-event.ts';
import { visitColumnsOnEvents } from '../schemas/migrations/index.ts';
import { makeEvent } from '../schemas/testing/events.ts';
import { computeTruth, generateTraffic } from '../schemas/testing/oracle.ts';
import {
  createPartitionState,
  decodeEvent,
  processRange,
  sessionId,
  unstorableReason,
  type PartitionState,
  type RangeOutput,
} from './partition-state.ts';
import { decodeSnapshot, encodeSnapshot, encodeSnapshotInSlices } from './snapshot.ts';

const MINUTE = 60_000;
const noon = Date.UTC(2026, 0, 15, 12);

function records(events: readonly EnrichedEvent[], firstOffset = 0): HubRecord[] {
  return events.map((e, i) => ({ partition: 0, offset: firstOffset + i, appendedAt: 0, payload: Buffer.from(JSON.stringify(e)) }));
}

/** Processes `events` in chunks cut at `cuts` (indexes), returning every chunk's output. */
function processInChunks(state: PartitionState, all: HubRecord[], cuts: number[]): RangeOutput[] {
  const bounds = [0, ...[...new Set(cuts)].filter((c) => c > 0 && c < all.length).sort((a, b) => a - b), all.length];
  const outputs: RangeOutput[] = [];
  for (let i = 0; i + 1 < bounds.length; i++) outputs.push(processRange(state, all.slice(bounds[i], bounds[i + 1])));
  return outputs;
}

/** Net session states after collapsing every −1/+1 pair, keyed by session id. */
function collapse(outputs: RangeOutput[]): Map<string, Record<string, unknown>> {
  const live = new Map<string, Record<string, unknown>>();
  const signs = new Map<string, number>();
  for (const row of outputs.flatMap((o) => o.sessions)) {
    signs.set(row.session_id, (signs.get(row.session_id) ?? 0) + row.sign);
    if (row.sign === 1) live.set(row.session_id, { ...row });
  }
  for (const [id, sign] of signs) expect(sign, `net sign of session ${id}`).toBe(1);
  return live;
}

const visitor = (overrides: Partial<EnrichedEvent>): EnrichedEvent => makeEvent({ site: 's.test', visitorId: '42', ...overrides });

function sessionsOf(events: EnrichedEvent[]): Array<Record<string, unknown>> {
  const state = createPartitionState();
  return [...collapse([processRange(state, records(events))]).values()];
}

describe('sessions', () => {
  it('keeps one session for gaps up to 30 minutes, even across midnight UTC', () => {
    const midnight = Date.UTC(2026, 0, 16);
    const sessions = sessionsOf([
      visitor({ ts: midnight - 10 * MINUTE, pathname: '/a' }),
      visitor({ ts: midnight + 10 * MINUTE, pathname: '/b' }),
      visitor({ ts: midnight + 40 * MINUTE, pathname: '/c' }),
    ]);
    expect(sessions).toHaveLength(1);
    expect(sessions[0]).toMatchObject({
      pageviews: 3,
      events: 3,
      is_bounce: 0,
      duration: 50 * 60,
      entry_page: '/a',
      exit_page: '/c',
      start: '2026-01-15 23:50:00.000',
      timestamp: '2026-01-16 00:40:00.000',
    });
  });

  it('starts a new session after a 31-minute gap', () => {
    const sessions = sessionsOf([
      visitor({ ts: noon, pathname: '/a' }),
      visitor({ ts: noon + 31 * MINUTE, pathname: '/b' }),
    ]);
    expect(sessions.map((s) => [s['entry_page'], s['pageviews'], s['is_bounce'], s['duration']])).toEqual([
      ['/a', 1, 1, 0],
      ['/b', 1, 1, 0],
    ]);
  });

  it('does not end a bounce with non-interactive events', () => {
    const [bounced] = sessionsOf([
      visitor({ ts: noon }),
      visitor({ ts: noon + MINUTE, name: 'scroll', interactive: false }),
      visitor({ ts: noon + 2 * MINUTE, name: 'video-progress', interactive: false }),
    ]);
    expect(bounced).toMatchObject({ is_bounce: 1, events: 3, pageviews: 1, duration: 120 });
    const [engaged] = sessionsOf([
      makeEvent({ site: 's.test', visitorId: '43', ts: noon }),
      makeEvent({ site: 's.test', visitorId: '43', ts: noon + MINUTE, name: 'Signup' }),
    ]);
    expect(engaged).toMatchObject({ is_bounce: 0, events: 2, pageviews: 1 });
  });

  it('takes attribution from the first event and entry page from the first pageview', () => {
    const [s] = sessionsOf([
      visitor({ ts: noon, name: 'Signup', source: 'Google', channel: 'Organic Search', utmCampaign: 'spring', country: 'DE' }),
      visitor({ ts: noon + MINUTE, pathname: '/landing', source: 'Bing', channel: 'Organic Search', country: 'FR' }),
      visitor({ ts: noon + 2 * MINUTE, name: 'Click', pathname: '/elsewhere' }),
    ]);
    expect(s).toMatchObject({ source: 'Google', utm_campaign: 'spring', country: 'DE', entry_page: '/landing', exit_page: '/landing' });
  });

  it('keeps bounce and duration right for a session spread over many flushes', () => {
    const events = [0, 5, 9, 14, 20].map((m, i) => visitor({ ts: noon + m * MINUTE, pathname: `/p${i}` }));
    const state = createPartitionState();
    const outputs = processInChunks(state, records(events), [1, 2, 3, 4]);
    // One first row, then one −1/+1 pair per later flush.
    expect(outputs.map((o) => o.sessions.map((r) => r.sign))).toEqual([[1], [-1, 1], [-1, 1], [-1, 1], [-1, 1]]);
    const second = outputs[1]?.sessions ?? [];
    expect(second[0]).toEqual({ ...outputs[0]?.sessions[0], sign: -1 });
    expect(second[1]).toMatchObject({ version: 2, is_bounce: 0, duration: 5 * 60 });
    const [final] = collapse(outputs).values();
    expect(final).toMatchObject({ pageviews: 5, duration: 20 * 60, is_bounce: 0, exit_page: '/p4', version: 5 });
  });

  it('writes one pair per session per flush, however many events it had', () => {
    const state = createPartitionState();
    processRange(state, records([visitor({ ts: noon })]));
    const out = processRange(
      state,
      records([1, 2, 3].map((m) => visitor({ ts: noon + m * MINUTE })), 1),
    );
    expect(out.events).toHaveLength(3);
    expect(out.sessions.map((r) => [r.sign, r.version, r.pageviews])).toEqual([
      [-1, 1, 1],
      [1, 2, 4],
    ]);
  });

  it('derives session ids from the first event, never at random', () => {
    const first = visitor({ ts: noon, id: 'first' });
    const [a] = sessionsOf([first]);
    const [b] = sessionsOf([first]);
    expect(a?.['session_id']).toBe(b?.['session_id']);
    expect(a?.['session_id']).toBe(sessionId(first));
    expect(sessionId(first)).toMatch(/^\d{1,20}$/);
    expect(sessionId({ ...first, id: 'other' })).not.toBe(sessionId(first));
    expect(BigInt(sessionId(first))).toBeLessThan(2n ** 64n);
  });

  it('forgets sessions idle longer than the timeout, by event time', () => {
    const state = createPartitionState();
    processRange(state, records([visitor({ ts: noon }), makeEvent({ site: 's.test', visitorId: '7', ts: noon + 10 * MINUTE })]));
    expect(state.sessions.size).toBe(2);
    processRange(state, records([makeEvent({ site: 's.test', visitorId: '7', ts: noon + 35 * MINUTE })], 2));
    expect([...state.sessions.values()].map((s) => s.visitorId)).toEqual(['7']);
  });
});

describe('client-id dedup', () => {
  const retry = (ts: number): EnrichedEvent => visitor({ id: 'client-1', clientId: true, ts });

  it('counts a client id once within an hour', () => {
    const state = createPartitionState();
    const out = processRange(state, records([retry(noon), retry(noon + 5 * MINUTE), retry(noon + 59 * MINUTE)]));
    expect(out.events).toHaveLength(1);
    expect(out.duplicates).toBe(2);
  });

  it('counts it again after an hour', () => {
    const state = createPartitionState();
    const out = processRange(state, records([retry(noon), retry(noon + 60 * MINUTE), retry(noon + 61 * MINUTE)]));
    expect(out.events.map((e) => e.timestamp)).toEqual(['2026-01-15 12:00:00.000', '2026-01-15 13:00:00.000']);
    expect(out.duplicates).toBe(1);
  });

  it('keeps ids without the client flag, and the same id on another site', () => {
    const state = createPartitionState();
    const out = processRange(state, records([
      visitor({ id: 'x', clientId: false, ts: noon }),
      visitor({ id: 'x', clientId: false, ts: noon + 1 }),
      visitor({ id: 'y', clientId: true, ts: noon + 2 }),
      visitor({ id: 'y', clientId: true, ts: noon + 3, site: 'other.test' }),
    ]));
    expect(out.events).toHaveLength(4);
  });

  it('survives a snapshot round trip, and stays bounded', () => {
    const state = createPartitionState({ sessionTimeoutMs: 30 * MINUTE, dedupWindowMs: 60 * MINUTE, dedupMaxEntries: 3 });
    processRange(state, records(['a', 'b', 'c', 'd'].map((id, i) => visitor({ id, clientId: true, ts: noon + i }))));
    expect([...state.dedup.keys()]).toEqual(['s.test\nb', 's.test\nc', 's.test\nd']);
    const restored = decodeSnapshot(encodeSnapshot(0, 3, state), state.limits).state;
    const out = processRange(restored, records([visitor({ id: 'd', clientId: true, ts: noon + 10 }), visitor({ id: 'a', clientId: true, ts: noon + 11 })], 4));
    expect(out.duplicates).toBe(1);
    expect(out.events).toHaveLength(1);
  });
});

/**
 * A state as far as future rows depend on it. Versions are left out: they count the flushes a
 * session was written in, so they follow the batch boundaries by design (the flush log replays
 * those boundaries exactly).
 */
function stateView(state: PartitionState): unknown {
  // Through the snapshot encoding: only what a restarted processor would get back.
  const { maxTs, sessions, dedup } = decodeSnapshot(encodeSnapshot(0, 0, state), state.limits).state;
  return { maxTs, dedup: [...dedup], sessions: [...sessions].map(([key, { version: _version, ...s }]) => [key, s]) };
}

function withoutVersions(sessions: Map<string, Record<string, unknown>>): Map<string, Record<string, unknown>> {
  return new Map([...sessions].map(([id, { version: _version, ...rest }]) => [id, rest]));
}

describe('determinism', () => {
  const traffic = generateTraffic({ sites: ['a.test', 'b.test'], visitorsPerSite: 15, eventsPerVisitor: 12, start: noon, seed: 7 });
  const all = records(traffic);

  it('reaches the same state and the same net sessions whatever the batch boundaries', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: all.length - 1 }), { maxLength: 25 }), (cuts) => {
        const whole = createPartitionState();
        const wholeOut = processInChunks(whole, all, []);
        const split = createPartitionState();
        const splitOut = processInChunks(split, all, cuts);
        expect(stateView(split)).toEqual(stateView(whole));
        expect(splitOut.flatMap((o) => o.events)).toEqual(wholeOut.flatMap((o) => o.events));
        expect(withoutVersions(collapse(splitOut))).toEqual(withoutVersions(collapse(wholeOut)));
      }),
      { numRuns: 40 },
    );
  });

  it('replays a range from a snapshot into byte-identical rows', () => {
    const state = createPartitionState();
    processRange(state, all.slice(0, 100));
    const snapshot = encodeSnapshot(0, 99, state);
    const first = processRange(decodeSnapshot(snapshot, state.limits).state, all.slice(100, 250));
    const again = processRange(decodeSnapshot(snapshot, state.limits).state, all.slice(100, 250));
    expect(JSON.stringify(again)).toBe(JSON.stringify(first));
    expect(first.sessions.length).toBeGreaterThan(0);
  });

  it('continues after a restart exactly as without one', () => {
    const straight = createPartitionState();
    const straightOut = processInChunks(straight, all, [120, 300]);
    const before = createPartitionState();
    const beforeOut = processInChunks(before, all.slice(0, 120), []);
    const restored = decodeSnapshot(encodeSnapshot(0, 119, before), before.limits).state;
    const afterOut = processInChunks(restored, all.slice(120), [180]);
    expect(JSON.stringify([...beforeOut, ...afterOut])).toBe(JSON.stringify(straightOut));
  });

  it("writes on every event its session's visit attributes, the same in every state row of it (migration 14 relies on it)", () => {
    const visit = visitColumnsOnEvents.map(([c]) => c);
    // Visitors whose later events arrive from other referrers and campaigns, out of order too.
    const mixed = traffic.map((e, i) => (i % 3 === 0 ? e : { ...e, referrer: `https://r${i % 5}.example/`, source: `r${i % 5}.example`, utmCampaign: `c${i % 4}` }));
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: mixed.length - 1 }), { maxLength: 10 }), (cuts) => {
        const outputs = processInChunks(createPartitionState(), records(mixed), cuts);
        const bySession = new Map<string, string>();
        for (const row of outputs.flatMap((o) => o.sessions)) {
          const attrs = JSON.stringify(visit.map((c) => row[c]));
          expect(bySession.get(row.session_id) ?? attrs, `session ${row.session_id}`).toBe(attrs);
          bySession.set(row.session_id, attrs);
        }
        const events = outputs.flatMap((o) => o.events);
        expect(events.length).toBeGreaterThan(0);
        let differing = 0;
        for (const e of events) {
          expect(JSON.stringify(visit.map((c) => e[`session_${c}` as keyof typeof e])), `event ${e.event_id}`).toBe(bySession.get(e.session_id));
          if (visit.some((c) => e[c] !== e[`session_${c}` as keyof typeof e])) differing++;
        }
        // Many events came from elsewhere than their session's first: their own columns keep that.
        expect(differing).toBeGreaterThan(events.length / 3);
      }),
      { numRuns: 15 },
    );
  });

  it('agrees with the oracle on every session', () => {
    const state = createPartitionState();
    const outputs = processInChunks(state, all, [50, 51, 200, 333]);
    const truth = computeTruth(traffic);
    const net = [...collapse(outputs).values()].map((s) => [s['visitor_id'], s['start'], s['pageviews'], s['events'], s['is_bounce'], s['duration'], s['entry_page'], s['exit_page']]);
    const expected = truth.sessions.map((s) => [s.visitorId, new Date(s.start).toISOString().slice(0, 23).replace('T', ' '), s.pageviews, s.events, s.bounce, s.duration, s.entryPage, s.exitPage]);
    const order = (rows: unknown[][]): string[] => rows.map((r) => JSON.stringify(r)).sort();
    expect(order(net)).toEqual(order(expected));
    expect(outputs.reduce((n, o) => n + o.duplicates, 0)).toBe(truth.duplicates);
    expect(truth.duplicates).toBeGreaterThan(0);
    expect(truth.sessions.filter((s) => s.bounce === 1).length).toBeGreaterThan(0);
  });
});

describe('decodeEvent', () => {
  it('gives the same rows, duplicates and set-asides from binary records as from JSON ones, mixed in one range', () => {
    const traffic = generateTraffic({ sites: ['a.test', 'b.test'], visitorsPerSite: 10, eventsPerVisitor: 8, start: noon, seed: 11 });
    // One event ClickHouse cannot store (a time past year 9999): set aside from either form.
    const all = [...traffic, { ...traffic[3]!, id: 'late', ts: 253_402_300_800_000 }];
    const json = records(all);
    const mixed = all.map((e, i) => ({ ...json[i]!, payload: i % 2 === 0 ? encodeEvent(e) : json[i]!.payload }));
    const a = processRange(createPartitionState(), json);
    const b = processRange(createPartitionState(), mixed);
    expect(b.events).toEqual(a.events);
    expect(b.sessions).toEqual(a.sessions);
    expect([b.duplicates, b.invalid, b.unstorable.map((u) => [u.offset, u.reason])]).toEqual([a.duplicates, a.invalid, a.unstorable.map((u) => [u.offset, u.reason])]);
    expect(a.unstorable).toHaveLength(1);
    // Its dead letter reads the same either way: the event's JSON.
    const letter = (u: RangeOutput['unstorable'][number]) => deadLetterRow({ ...u, partition: 0, table: 'events', error: '' });
    const binaryUnstorable = processRange(createPartitionState(), [{ ...json[json.length - 1]!, payload: encodeEvent(all[all.length - 1]!) }]).unstorable[0]!;
    expect(JSON.parse(letter(binaryUnstorable).payload)).toEqual(JSON.parse(letter(a.unstorable[0]!).payload));
  });

  it('accepts an enriched event and rejects what would break an insert', () => {
    const good = makeEvent();
    expect(decodeEvent(Buffer.from(JSON.stringify(good)))).toEqual(good);
    const bad: unknown[] = [
      'not json',
      null,
      { ...good, v: 2 },
      { ...good, ts: -1 },
      { ...good, visitorId: 'abc' },
      { ...good, visitorId: '18446744073709551616' },
      { ...good, props: { a: 1 } },
      { ...good, clickIds: [1] },
      { ...good, revenue: { currency: 'EUR' } },
      { ...good, site: undefined },
      { ...good, epoch: -1 },
      { ...good, epoch: '1' },
    ];
    for (const b of bad) expect(decodeEvent(Buffer.from(typeof b === 'string' ? b : JSON.stringify(b)))).toBeUndefined();
  });

  it('counts unreadable records instead of failing the range', () => {
    const state = createPartitionState();
    const out = processRange(state, [
      ...records([visitor({ ts: noon })]),
      { partition: 0, offset: 1, appendedAt: 0, payload: Buffer.from('{') },
    ]);
    expect(out.invalid).toBe(1);
    expect(out.events).toHaveLength(1);
  });
});

describe('records ClickHouse cannot store', () => {
  const lone = '\ud800';
  it.each<[string, Partial<EnrichedEvent>, string]>([
    ['a prop value', { props: { k: lone } }, 'malformed_unicode'],
    ['a prop key', { props: { [`k${lone}`]: 'v' } }, 'malformed_unicode'],
    ['the name', { name: `Sign${lone}up` }, 'malformed_unicode'],
    ['the pathname', { pathname: `/\udc00` }, 'malformed_unicode'],
    ['the referrer', { referrer: `https://r.test/${lone}` }, 'malformed_unicode'],
    ['the event id', { id: `id${lone}`, clientId: true }, 'malformed_unicode'],
    ['a click id', { clickIds: [lone] }, 'malformed_unicode'],
    ['an experiment', { exp: { e1: lone } }, 'malformed_unicode'],
    ['the revenue currency', { revenue: { currency: `E${lone}R`, amount: 1 } }, 'malformed_unicode'],
    ['a time past the year 9999', { ts: Date.UTC(10_000, 0, 1) }, 'bad_timestamp'],
    ['the largest safe time', { ts: Number.MAX_SAFE_INTEGER }, 'bad_timestamp'],
  ])('sets aside a record with a lone surrogate or bad time in %s, before it touches the state', (_what, bad, reason) => {
    const state = createPartitionState();
    const before = visitor({ ts: noon, pathname: '/a' });
    const poison = visitor({ ts: noon + MINUTE, ...bad });
    const after = visitor({ ts: noon + 2 * MINUTE, pathname: '/b' });
    expect(unstorableReason(poison)).toBe(reason);
    const out = processRange(state, records([before, poison, after], 10));
    expect(out.unstorable).toEqual([{ offset: 11, site: 's.test', reason, payload: Buffer.from(JSON.stringify(poison)) }]);
    expect(out.eventOffsets).toEqual([10, 12]);
    // The session and the clock only know the good events: exactly as if the poison never came.
    const clean = createPartitionState();
    const expected = processRange(clean, records([before, after], 10));
    expect(out.sessions).toEqual(expected.sessions);
    expect(out.events).toEqual(expected.events);
    expect(state.maxTs).toBe(clean.maxTs);
  });

  it('stores what ClickHouse takes as it is: NUL, noncharacters, astral characters, years up to 9999', () => {
    for (const e of [
      visitor({ pathname: '/a\u0000b' }),
      visitor({ props: { k: '\uffff\ud83d\ude00' } }),
      visitor({ ts: Date.UTC(9999, 11, 31, 23, 59, 59, 999) }),
    ]) {
      expect(unstorableReason(e)).toBeUndefined();
    }
  });

  it('keys each row by the record offset that made it, whatever else the range dropped', () => {
    const a = visitor({ visitorId: '1', ts: noon });
    const b = visitor({ visitorId: '2', ts: noon + 1 });
    const a2 = visitor({ visitorId: '1', ts: noon + 2 });
    const state = createPartitionState();
    processRange(state, records([a], 0));
    const out = processRange(state, records([b, a2], 5));
    // b starts its session at 5; a's session is first touched at 6 (−1 of its old state, then +1).
    expect(out.sessions.map((r, i) => [r.visitor_id, r.sign, out.sessionOffsets[i]])).toEqual([
      ['2', 1, 5],
      ['1', -1, 6],
      ['1', 1, 6],
    ]);
  });
});

describe('site registrations (epochs)', () => {
  // Registration 1 long ago; the site deleted and registered again (2) at 11:50; events around noon.
  const E1 = Date.UTC(2026, 0, 1);
  const E2 = noon - 10 * MINUTE;
  const latest = (r: { epoch: number; deleted: boolean }) => (site: string) => (site === 's.test' ? r : undefined);

  it('never continues a session of another registration: the new one starts fresh, with no −1 row', () => {
    const state = createPartitionState();
    processRange(state, records([visitor({ ts: E2 - 5 * MINUTE, epoch: E1, pathname: '/old' })], 0));
    const out = processRange(state, records([visitor({ ts: E2 + MINUTE, epoch: E2, pathname: '/new' })], 1));
    expect(out.sessions).toHaveLength(1);
    expect(out.sessions[0]).toMatchObject({ sign: 1, version: 1, entry_page: '/new', pageviews: 1, is_bounce: 1 });
  });

  it('drops an event of an older registration accepted before the partition’s newer one was created', () => {
    const state = createPartitionState();
    processRange(state, records([visitor({ ts: E2 + MINUTE, epoch: E2 })], 0));
    const out = processRange(state, records([visitor({ ts: E2 - MINUTE, epoch: E1 }), visitor({ ts: E2 + 2 * MINUTE, epoch: E2 })], 1));
    expect(out.deletedSite).toBe(1);
    expect(out.eventOffsets).toEqual([2]);
    expect(out.sessions.map((r) => [r.sign, r.pageviews])).toEqual([
      [-1, 1],
      [1, 2],
    ]);
  });

  it('moves an event stamped with the old registration but accepted after the new one was created to the new one', () => {
    // A collector whose site list was a few seconds old: the visitor belongs to the new registration.
    const state = createPartitionState();
    processRange(state, records([visitor({ ts: E2 + MINUTE, epoch: E2, id: 'c1', clientId: true })], 0));
    const out = processRange(state, records([visitor({ ts: E2 + 2 * MINUTE, epoch: E1, id: 'c1', clientId: true }), visitor({ ts: E2 + 3 * MINUTE, epoch: E1 })], 1));
    expect([out.deletedSite, out.duplicates, out.events.length]).toEqual([0, 1, 1]);
    expect(out.sessions.map((r) => [r.sign, r.pageviews])).toEqual([
      [-1, 1],
      [1, 2],
    ]);
  });

  it('decides by the sites table when the partition knows no newer registration', () => {
    const state = createPartitionState();
    const out = processRange(
      state,
      records([visitor({ ts: E2 - MINUTE, epoch: E1 }), visitor({ ts: E2 + MINUTE, epoch: E1, visitorId: '7' }), visitor({ ts: E2 + 2 * MINUTE, epoch: E2, visitorId: '8' })]),
      { registration: latest({ epoch: E2, deleted: false }) },
    );
    expect([out.deletedSite, out.eventOffsets]).toEqual([1, [1, 2]]);
    // The dropped event still moved the clock.
    const gone = createPartitionState();
    const dropped = processRange(gone, records([visitor({ ts: noon + 50 * MINUTE, epoch: E2 }), visitor({ ts: noon, epoch: E1 })]), {
      registration: latest({ epoch: E2, deleted: true }),
    });
    expect([dropped.deletedSite, dropped.events.length, gone.maxTs]).toEqual([2, 0, noon + 50 * MINUTE]);
  });

  it('keeps events of a registration newer than the table knows, and of one the partition knows newer than the table', () => {
    const state = createPartitionState();
    const stale = { registration: latest({ epoch: E1, deleted: true }) };
    expect(processRange(state, records([visitor({ ts: E2 + MINUTE, epoch: E2 })], 0), stale).deletedSite).toBe(0);
    expect(processRange(state, records([visitor({ ts: E2 + 2 * MINUTE, epoch: E1 })], 1), stale).deletedSite).toBe(0);
  });

  it('lets events and sessions of an unknown registration (0, from before epochs) match any', () => {
    const state = createPartitionState();
    processRange(state, records([visitor({ ts: noon })], 0));
    const out = processRange(state, records([visitor({ ts: noon + MINUTE, epoch: E2 })], 1));
    expect(out.sessions.map((r) => [r.sign, r.pageviews])).toEqual([
      [-1, 1],
      [1, 2],
    ]);
    // The session took the registration it met: an event of another one no longer continues it.
    const next = processRange(state, records([visitor({ ts: noon + 2 * MINUTE, epoch: noon })], 2));
    expect(next.sessions.map((r) => [r.sign, r.pageviews])).toEqual([[1, 1]]);
  });

  it('remembers client ids per registration', () => {
    const state = createPartitionState();
    const out = processRange(
      state,
      records([
        visitor({ ts: E2 - MINUTE, id: 'c1', clientId: true, epoch: E1, visitorId: '1' }),
        visitor({ ts: E2 + MINUTE, id: 'c1', clientId: true, epoch: E2 }),
        visitor({ ts: E2 + 2 * MINUTE, id: 'c1', clientId: true, epoch: E2 }),
      ]),
    );
    expect([out.events.length, out.duplicates]).toEqual([2, 1]);
  });

  it('reads snapshots written before epochs existed', () => {
    const state = createPartitionState();
    processRange(state, records([visitor({ ts: noon, epoch: E2 })]));
    const current = JSON.parse(encodeSnapshot(0, 0, state).toString()) as { sessions: unknown[][] };
    // Snapshots from then had neither the epoch nor the salt day (both appended since).
    const old = { ...current, sessions: current.sessions.map((t) => t.slice(0, -2)) };
    const back = decodeSnapshot(Buffer.from(JSON.stringify(old)), state.limits);
    expect([...back.state.sessions.values()].map((s) => s.epoch)).toEqual([0]);
    expect(current.sessions[0]?.at(-2)).toBe(E2);
  });

  it('stores the salt day the collector sent, and derives it for records of older collectors', () => {
    const day = Math.floor(noon / 86_400_000);
    const midnight = (day + 1) * 86_400_000;
    const state = createPartitionState();
    const out = processRange(
      state,
      records([
        // Carried over midnight, as the collector says: the previous day's salt.
        visitor({ visitorId: '1', ts: midnight - 60_000, saltDay: day }),
        visitor({ visitorId: '1', ts: midnight + 60_000, saltDay: day }),
        // An older collector's record of the same visit: its session knows the salt day.
        visitor({ visitorId: '1', ts: midnight + 120_000 }),
        // An older collector's record of a new visitor: its own day.
        visitor({ visitorId: '2', ts: midnight + 60_000 }),
        // A salt day the event's time cannot have (two days back): its own day instead.
        visitor({ visitorId: '3', ts: midnight + 60_000, saltDay: day - 1 }),
      ]),
    );
    const iso = (d: number): string => new Date(d * 86_400_000).toISOString().slice(0, 10);
    expect(out.events.map((e) => [e.visitor_id, e.salt_day])).toEqual([
      ['1', iso(day)],
      ['1', iso(day)],
      ['1', iso(day)],
      ['2', iso(day + 1)],
      ['3', iso(day + 1)],
    ]);
    expect(out.sessions.filter((r) => r.sign > 0).map((r) => [r.visitor_id, r.salt_day])).toEqual([
      ['1', iso(day)],
      ['2', iso(day + 1)],
      ['3', iso(day + 1)],
    ]);
  });

  it('reads snapshots written before salt days existed: a session takes its start day', () => {
    const state = createPartitionState();
    processRange(state, records([visitor({ ts: noon, epoch: E2, saltDay: Math.floor(noon / 86_400_000) - 1 })]));
    const current = JSON.parse(encodeSnapshot(0, 0, state).toString()) as { sessions: unknown[][] };
    expect(current.sessions[0]?.at(-1)).toBe(Math.floor(noon / 86_400_000) - 1);
    const old = { ...current, sessions: current.sessions.map((t) => t.slice(0, -1)) };
    const back = decodeSnapshot(Buffer.from(JSON.stringify(old)), state.limits);
    expect([...back.state.sessions.values()].map((s) => [s.epoch, s.saltDay])).toEqual([[E2, Math.floor(noon / 86_400_000)]]);
  });
});

describe('snapshot encoding', () => {
  it('writes the same bytes in slices as at once, and reads them back', async () => {
    const state = createPartitionState();
    const many = Array.from({ length: 12_000 }, (_, i) =>
      makeEvent({ site: 'big.test', visitorId: String(10_000 + i), ts: noon + i, clientId: i % 3 === 0, pathname: `/"quoted"\n${i}` }),
    );
    processRange(state, records(many));
    const whole = encodeSnapshot(3, 11_999, state);
    expect((await encodeSnapshotInSlices(3, 11_999, state)).equals(whole)).toBe(true);
    const parsed = JSON.parse(whole.toString()) as { sessions: unknown[]; dedup: unknown[] };
    expect([parsed.sessions.length, parsed.dedup.length]).toEqual([12_000, 4_000]);
    const back = decodeSnapshot(whole, state.limits);
    expect([back.partition, back.offset]).toEqual([3, 11_999]);
    expect(encodeSnapshot(3, 11_999, back.state).equals(whole)).toBe(true);
    expect(encodeSnapshot(0, -1, createPartitionState()).toString()).toBe('{"v":1,"partition":0,"offset":-1,"maxTs":0,"sessions":[],"dedup":[]}');
  });
});
