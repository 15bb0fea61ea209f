import type { EnrichedEvent } from '../enriched-event.ts';
import { makeEvent } from './events.ts';

/**
 * Synthetic traffic and the truth about it, computed the simple way (sort each visitor's events,
 * cut at long gaps), independently of the processor's incremental state, so tests can compare
 * what lands in ClickHouse against it.
 */

const MINUTE = 60_000;

/** A deterministic pseudo-random generator (mulberry32): the same seed gives the same traffic. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface TrafficOptions {
  sites: readonly string[];
  visitorsPerSite: number;
  /** Events per visitor (before retries are added). */
  eventsPerVisitor: number;
  /** Time of the earliest event. */
  start: number;
  seed: number;
}

const pages = ['/', '/pricing', '/docs', '/blog/a', '/blog/b', '/signup'];
const sources: Array<Pick<EnrichedEvent, 'source' | 'channel' | 'referrer'>> = [
  { source: '', channel: 'Direct', referrer: '' },
  { source: 'Google', channel: 'Organic Search', referrer: 'https://www.google.com/' },
  { source: 'news.example', channel: 'Referral', referrer: 'https://news.example/item' },
];
const countries = ['PT', 'DE', 'US', 'BR'];

/**
 * Traffic for several sites and visitors, sorted by time as a collector would stamp it: pageviews,
 * interactive and non-interactive custom events, gaps that start new sessions (31 min and more)
 * and some that do not (exactly 30 min), and client-id retries, both within the 1 h window
 * (duplicates) and after it (counted again).
 */
export function generateTraffic(o: TrafficOptions): EnrichedEvent[] {
  const random = rng(o.seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)] as T;
  const events: EnrichedEvent[] = [];
  for (const site of o.sites) {
    for (let v = 0; v < o.visitorsPerSite; v++) {
      const visitorId = String(1_000_000_000_000 + o.seed * 100_000 + v);
      const origin = pick(sources);
      const country = pick(countries);
      let ts = o.start + Math.floor(random() * 60 * MINUTE);
      for (let i = 0; i < o.eventsPerVisitor; i++) {
        const roll = random();
        const name = roll < 0.7 ? 'pageview' : roll < 0.85 ? 'Signup' : 'scroll';
        const withClientId = random() < 0.3;
        const e = makeEvent({
          id: `${site}-${visitorId}-${i}`,
          clientId: withClientId,
          site,
          ts,
          name,
          hostname: site,
          pathname: pick(pages),
          visitorId,
          interactive: name !== 'scroll',
          country,
          ...origin,
          revenue: name === 'Signup' ? { currency: 'EUR', amount: 10 + (i % 3) } : null,
        });
        events.push(e);
        if (withClientId && random() < 0.3) {
          // A sender retrying after a lost 202: same id within the hour, or long after it.
          const late = random() < 0.2;
          events.push({ ...e, ts: ts + (late ? 61 * MINUTE : 1 + Math.floor(random() * 20 * MINUTE)) });
        }
        ts += nextGap(random);
      }
    }
  }
  // Stable: events with the same time keep their generation order, as a visitor's order.
  return events.map((e, i) => ({ e, i })).sort((a, b) => a.e.ts - b.e.ts || a.i - b.i).map((x) => x.e);
}

function nextGap(random: () => number): number {
  const roll = random();
  if (roll < 0.08) return 31 * MINUTE + Math.floor(random() * 60 * MINUTE);
  if (roll < 0.1) return 30 * MINUTE;
  return 1_000 + Math.floor(random() * 10 * MINUTE);
}

/** A session as the oracle sees it. */
export interface TrueSession {
  site: string;
  visitorId: string;
  start: number;
  last: number;
  pageviews: number;
  events: number;
  bounce: 0 | 1;
  duration: number;
  entryPage: string;
  exitPage: string;
}

/** Totals of one site. */
export interface SiteTruth {
  events: number;
  pageviews: number;
  visitors: number;
  visits: number;
  bounces: number;
  duration: number;
}

export interface Truth {
  /** Events that count (client-id retries within the window removed), in input order. */
  stored: EnrichedEvent[];
  duplicates: number;
  sessions: TrueSession[];
  sites: Map<string, SiteTruth>;
}

/**
 * The truth for events in hub order: dedup by (site, client id) within `dedupWindowMs` of the
 * last counted one, then sessions cut where a visitor is idle more than `sessionTimeoutMs`.
 */
export function computeTruth(events: readonly EnrichedEvent[], sessionTimeoutMs = 30 * MINUTE, dedupWindowMs = 60 * MINUTE): Truth {
  const counted = new Map<string, number>();
  const stored: EnrichedEvent[] = [];
  for (const e of events) {
    if (e.clientId) {
      const key = JSON.stringify([e.site, e.id]);
      const at = counted.get(key);
      if (at !== undefined && Math.abs(e.ts - at) < dedupWindowMs) continue;
      counted.set(key, e.ts);
    }
    stored.push(e);
  }
  const byVisitor = new Map<string, EnrichedEvent[]>();
  for (const e of stored) {
    const key = JSON.stringify([e.site, e.visitorId]);
    const list = byVisitor.get(key) ?? [];
    list.push(e);
    byVisitor.set(key, list);
  }
  const sessions: TrueSession[] = [];
  for (const list of byVisitor.values()) {
    const sorted = [...list].sort((a, b) => a.ts - b.ts);
    let current: EnrichedEvent[] = [];
    for (const e of sorted) {
      const prev = current.at(-1);
      if (prev !== undefined && e.ts - prev.ts > sessionTimeoutMs) {
        sessions.push(summarize(current));
        current = [];
      }
      current.push(e);
    }
    if (current.length > 0) sessions.push(summarize(current));
  }
  return { stored, duplicates: events.length - stored.length, sessions, sites: siteTotals(stored, sessions) };
}

function summarize(events: EnrichedEvent[]): TrueSession {
  const first = events[0] as EnrichedEvent;
  const last = events.at(-1) as EnrichedEvent;
  const pageviews = events.filter((e) => e.name === 'pageview');
  const interactive = events.filter((e) => e.interactive).length;
  return {
    site: first.site,
    visitorId: first.visitorId,
    start: first.ts,
    last: last.ts,
    pageviews: pageviews.length,
    events: events.length,
    bounce: interactive <= 1 ? 1 : 0,
    duration: Math.floor((last.ts - first.ts) / 1000),
    entryPage: pageviews[0]?.pathname ?? '',
    exitPage: pageviews.at(-1)?.pathname ?? '',
  };
}

/**
 * The truth when only some of the counted events and sessions are stored (the rest refused by
 * ClickHouse and set aside): the site totals follow what is kept.
 */
export function keepOnly(truth: Truth, keep: { event: (e: EnrichedEvent) => boolean; session: (s: TrueSession) => boolean }): Truth {
  const stored = truth.stored.filter(keep.event);
  const sessions = truth.sessions.filter(keep.session);
  return { stored, duplicates: truth.duplicates, sessions, sites: siteTotals(stored, sessions) };
}

function siteTotals(stored: EnrichedEvent[], sessions: TrueSession[]): Map<string, SiteTruth> {
  const sites = new Map<string, SiteTruth & { visitorSet: Set<string> }>();
  const of = (site: string): SiteTruth & { visitorSet: Set<string> } => {
    let t = sites.get(site);
    if (t === undefined) {
      t = { events: 0, pageviews: 0, visitors: 0, visits: 0, bounces: 0, duration: 0, visitorSet: new Set() };
      sites.set(site, t);
    }
    return t;
  };
  for (const e of stored) {
    const t = of(e.site);
    t.events++;
    if (e.name === 'pageview') t.pageviews++;
    t.visitorSet.add(e.visitorId);
  }
  for (const s of sessions) {
    const t = of(s.site);
    t.visits++;
    t.bounces += s.bounce;
    t.duration += s.duration;
  }
  const out = new Map<string, SiteTruth>();
  for (const [site, { visitorSet, ...t }] of sites) out.set(site, { ...t, visitors: visitorSet.size });
  return out;
}
