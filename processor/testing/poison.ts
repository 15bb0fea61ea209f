import { expect } from 'vitest';
import type { EnrichedEvent } from '../../schemas/enriched-event.ts';
import type { Store } from '../../store/store.ts';
import { makeEvent } from '../../schemas/testing/events.ts';
import { computeTruth, generateTraffic, keepOnly, rng, type Truth } from '../../schemas/testing/oracle.ts';
import { expectStoreMatchesTruth } from './harness.ts';

/**
 * Traffic with records ClickHouse cannot store mixed in, for the dead-letter tests: lone
 * surrogates (the processor sets them aside), a `poison` prop and a `/poison-exit` exit page
 * (refused by the CHECK constraints {@link addPoisonConstraints} adds), and the exact truth of
 * what must then be stored.
 */

const LONE = '\ud800';
/** The exit page the sessions constraint refuses. */
export const POISON_EXIT = '/poison-exit';

/** Real CHECK constraints that make ClickHouse refuse the poisoned rows of `mix`. */
export async function addPoisonConstraints(store: Store): Promise<void> {
  await store.exec("ALTER TABLE events ADD CONSTRAINT test_no_poison CHECK props['poison'] = ''");
  await store.exec(`ALTER TABLE sessions ADD CONSTRAINT test_no_poison_exit CHECK exit_page != '${POISON_EXIT}'`);
}

/** Traffic with poison mixed in: the good records, the poisonous ones, and all of them in hub order. */
export interface Mix {
  site: string;
  good: EnrichedEvent[];
  /** Lone surrogates: set aside by the processor. */
  unparseable: EnrichedEvent[];
  /** A `poison` prop: refused by the events constraint. */
  refused: EnrichedEvent[];
  all: EnrichedEvent[];
}

/**
 * Traffic with poison after some events, each on the visitor of the event before it (same
 * partition, same session) at the same time, so the hub stays in time order as the oracle wants.
 */
export function mix(site: string, seed: number, start: number, kinds: { unparseable: boolean; refused: boolean; exits: boolean }): Mix {
  const good = generateTraffic({ sites: [site], visitorsPerSite: 20, eventsPerVisitor: 20, start, seed });
  const random = rng(seed + 1);
  const unparseable: EnrichedEvent[] = [];
  const refused: EnrichedEvent[] = [];
  const all: EnrichedEvent[] = [];
  const variants: Array<Partial<EnrichedEvent>> = [
    { props: { k: LONE } },
    { pathname: `/p${LONE}` },
    { name: `Sign${LONE}` },
    { props: { [`\udc00k`]: 'v' } },
    { referrer: `https://r.test/${LONE}`, source: 'r.test' },
  ];
  good.forEach((e, i) => {
    // Exit-page poison is an ordinary pageview: its event is stored, the session rows showing it as
    // the exit page are refused.
    all.push(kinds.exits && random() < 0.02 ? (good[i] = { ...e, name: 'pageview', pathname: POISON_EXIT }) : e);
    const at = { site, visitorId: e.visitorId, hostname: site, ts: e.ts };
    if (kinds.unparseable && random() < 0.03) {
      const p = makeEvent({ ...at, id: `${site}-u${i}`, ...variants[unparseable.length % variants.length] });
      unparseable.push(p);
      all.push(p);
    }
    if (kinds.refused && random() < 0.02) {
      const p = makeEvent({ ...at, id: `${site}-r${i}`, name: 'Signup', props: { poison: 'yes' } });
      refused.push(p);
      all.push(p);
    }
  });
  return { site, good, unparseable, refused, all };
}

/**
 * What must be stored: every good record once. Records set aside never count; refused event rows
 * are left out (their events still count in their sessions), and so are sessions ending on the
 * poisoned exit page.
 */
function expected(m: Mix): Truth {
  const refusedIds = new Set(m.refused.map((e) => e.id));
  const unparseable = new Set(m.unparseable);
  return keepOnly(computeTruth(m.all.filter((e) => !unparseable.has(e))), {
    event: (e) => !refusedIds.has(e.id),
    session: (s) => s.exitPage !== POISON_EXIT,
  });
}

interface DeadLetter {
  hub_partition: number;
  hub_offset: string;
  target_table: string;
  reason: string;
  error: string;
  payload: string;
  payload_encoding: string;
}

async function deadLetters(store: Store, site: string): Promise<DeadLetter[]> {
  return store.query<DeadLetter>(
    `SELECT hub_partition, hub_offset, target_table, reason, error, payload, payload_encoding
     FROM dead_letters WHERE site = {site:String} ORDER BY hub_partition, hub_offset, target_table, payload`,
    { site },
  );
}

/** Asserts the store holds exactly what `m` should leave, and each dead letter exactly once. */
export async function expectExact(store: Store, m: Mix): Promise<void> {
  await expectStoreMatchesTruth(store, [m.site], expected(m));
  const dead = await deadLetters(store, m.site);
  const distinct = new Set(dead.map((d) => JSON.stringify([d.hub_partition, d.hub_offset, d.target_table, d.payload])));
  expect(distinct.size, 'a dead letter written twice').toBe(dead.length);
  const events = dead.filter((d) => d.target_table === 'events');
  const ids = (xs: readonly EnrichedEvent[]): string[] => xs.map((e) => e.id).sort();
  expect(events.map((d) => (JSON.parse(d.payload) as EnrichedEvent).id).sort()).toEqual(ids([...m.unparseable, ...m.refused]));
  // The payload is the hub record as it was, escapes included.
  const published = new Map([...m.unparseable, ...m.refused].map((e) => [e.id, JSON.stringify(e)]));
  for (const d of events) {
    const id = (JSON.parse(d.payload) as EnrichedEvent).id;
    expect(d.payload).toBe(published.get(id));
    expect(d.payload_encoding).toBe('json');
    expect(d.reason).toBe(m.refused.some((e) => e.id === id) ? 'VIOLATED_CONSTRAINT' : 'malformed_unicode');
  }
  for (const d of dead.filter((x) => x.target_table === 'sessions')) {
    expect([d.reason, (JSON.parse(d.payload) as { exit_page: string }).exit_page]).toEqual(['VIOLATED_CONSTRAINT', POISON_EXIT]);
  }
}
