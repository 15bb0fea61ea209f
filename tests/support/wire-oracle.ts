import { rng } from '../../schemas/testing/oracle.ts';

/**
 * Wire-level synthetic traffic for end-to-end tests, and the truth about it computed the simple
 * way, independently of the collector's enrichment and the processor's sessionizer.
 *
 * The collector stamps every event with its own clock, so the generator cannot choose times: all
 * of one visitor's events land within the test's seconds or minutes, which makes exactly one
 * session per (site, visitor). Visitors are (ip, ua) pairs sent in `/api/batch` events (honoured
 * from a trusted proxy: FAROL_TRUST_PROXY=127.0.0.1/32); distinct pairs are distinct visitors of a
 * site. Countries come from the caller's lookup (the same DB-IP database the collector reads), channels from a small fixed
 * table of cases whose GA4 classification is unambiguous.
 *
 * Batches keep each visitor's events in generation order (a visitor belongs to one sender, and a
 * sender sends its batches one after another), so the session's first event, which carries the
 * landing referrer or UTM tags, is the first one the processor sees.
 */

/** One event as sent to `/api/batch` (short field names, like the tracker sends). */
export interface WireBatchEvent {
  n: string;
  u: string;
  d: string;
  r?: string;
  i?: boolean;
  p?: Record<string, string | number | boolean>;
  revenue?: { currency: string; amount: number };
  id: string;
  ip: string;
  ua: string;
}

/** Where a visit came from, and the GA4 channel that must be recorded for it. */
export interface Origin {
  channel: string;
  /** Referrer of the landing pageview. */
  referrer?: string;
  /** Query string of the landing page URL (utm tags). */
  query?: string;
}

/**
 * Unambiguous GA4 default-channel cases: untagged visits from a well-known search engine or social
 * network, tagged email and paid-search visits, an unknown referring site, and no referrer.
 */
export const ORIGINS: readonly Origin[] = [
  { channel: 'Direct' },
  { channel: 'Organic Search', referrer: 'https://www.google.com/' },
  { channel: 'Organic Search', referrer: 'https://duckduckgo.com/' },
  { channel: 'Organic Social', referrer: 'https://t.co/x' },
  { channel: 'Organic Social', referrer: 'https://www.facebook.com/' },
  { channel: 'Email', query: 'utm_source=newsletter&utm_medium=email&utm_campaign=spring' },
  { channel: 'Paid Search', query: 'utm_source=google&utm_medium=cpc&utm_campaign=brand' },
  { channel: 'Referral', referrer: 'https://news.example.org/' },
];

/** Real browsers' User-Agents (none of them a bot). */
export const BROWSER_UAS: readonly string[] = [
  'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36',
  'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.80',
  'Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0',
  'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15',
  'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/123.0.0.0 Safari/537.36',
  'Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0',
  'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36',
  'Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1',
  'Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1',
  'Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.6367.82 Mobile Safari/537.36',
  'Mozilla/5.0 (Linux; Android 13; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/24.0 Chrome/117.0.0.0 Mobile Safari/537.36',
  'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36 OPR/108.0.0.0',
];

/**
 * Address ranges whose DB-IP country is known (the truth still comes from the caller's lookup):
 * 85.214/16 DE, 200.160/16 BR, 133.242/16 JP, 8.8/16 mostly US, 62.210/16 FR, 41.0/16 ZA, and
 * 193.0/16, which spans several European countries. `v6` entries are IPv6 /32 prefixes.
 */
const V4_PREFIXES = ['85.214', '200.160', '133.242', '8.8', '62.210', '41.0', '193.0'] as const;
const V6_PREFIXES = ['2a01:4f8', '2001:4860'] as const;

/** Pages of every site; the percent-encoded one checks that paths are stored decoded. */
export const PAGES: readonly { url: string; path: string }[] = [
  { url: '/', path: '/' },
  { url: '/pricing', path: '/pricing' },
  { url: '/docs/getting-started', path: '/docs/getting-started' },
  { url: '/blog/privacy-first', path: '/blog/privacy-first' },
  { url: '/signup', path: '/signup' },
  { url: '/about', path: '/about' },
  { url: '/caf%C3%A9', path: '/café' },
];

/** Goals: custom event names whose conversions (unique visitors) are counted. */
export const GOALS = ['Signup', 'Purchase', 'Download'] as const;
/** A custom event sent with `interactive: false`: it never ends a bounce. */
export const NON_INTERACTIVE = 'Engagement';

const PURCHASE_AMOUNTS = [9.99, 19.5, 100, 42.01] as const;

/** One visitor of one site and the events it sends, in order. */
export interface WireVisitor {
  site: string;
  ip: string;
  ua: string;
  origin: Origin;
  events: WireBatchEvent[];
}

export interface WireTraffic {
  visitors: WireVisitor[];
  /** Events, all visitors. */
  events: number;
  /** Every client IP used (canonical text). */
  ips: string[];
}

export interface WireTrafficOptions {
  seed: number;
  sites: readonly string[];
  /** Visitors are added until at least this many events exist. */
  targetEvents: number;
  /** Makes event ids unique across tests that share a store. */
  idPrefix: string;
}

/** Seeded traffic: the same options give the same visitors, events, ids and IPs. */
export function generateWireTraffic(o: WireTrafficOptions): WireTraffic {
  const random = rng(o.seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)] as T;
  const int = (lo: number, hi: number): number => lo + Math.floor(random() * (hi - lo + 1));
  // Enough addresses that (ip, ua) pairs stay plentiful per site; a few visitors share an IP (NAT).
  const ipCount = Math.max(200, Math.ceil(o.targetEvents / 20));
  const ips = new Set<string>();
  while (ips.size < ipCount) {
    if (random() < 0.05) {
      const hex = (): string => int(1, 0xffff).toString(16);
      ips.add(`${pick(V6_PREFIXES)}:${hex()}:${hex()}::${hex()}`);
    } else {
      ips.add(`${pick(V4_PREFIXES)}.${int(0, 255)}.${int(1, 254)}`);
    }
  }
  const ipList = [...ips];
  const used = new Set<string>();
  const visitors: WireVisitor[] = [];
  let events = 0;
  let v = 0;
  while (events < o.targetEvents) {
    const site = o.sites[v % o.sites.length] as string;
    let ip: string;
    let ua: string;
    do {
      ip = pick(ipList);
      ua = pick(BROWSER_UAS);
    } while (used.has(`${site}\n${ip}\n${ua}`));
    used.add(`${site}\n${ip}\n${ua}`);
    const origin = pick(ORIGINS);
    const visitor: WireVisitor = { site, ip, ua, origin, events: [] };
    const base = `${o.idPrefix}-${v.toString(36)}`;
    let k = 0;
    const add = (e: Omit<WireBatchEvent, 'id' | 'ip' | 'ua' | 'd'>): void => {
      visitor.events.push({ ...e, d: site, id: `${base}-${k++}`, ip, ua });
    };
    // Landing pageview: carries the referrer or the utm tags that decide the visit's channel.
    let page = pick(PAGES);
    add({
      n: 'pageview',
      u: `https://${site}${page.url}${origin.query === undefined ? '' : `?${origin.query}`}`,
      ...(origin.referrer === undefined ? {} : { r: origin.referrer }),
    });
    const shape = random();
    if (shape < 0.35) {
      // A bounce: one pageview.
    } else if (shape < 0.5) {
      // Still a bounce: one pageview, then only non-interactive events.
      for (let j = int(1, 3); j > 0; j--) add({ n: NON_INTERACTIVE, u: `https://${site}${page.url}`, i: false });
    } else {
      // Browses on: pageviews (internal referrers), goals, non-interactive events.
      for (let j = int(1, 11); j > 0; j--) {
        const roll = random();
        const from = `https://${site}${page.url}`;
        if (roll < 0.6) {
          page = pick(PAGES);
          add({ n: 'pageview', u: `https://${site}${page.url}`, r: from });
        } else if (roll < 0.75) {
          add({ n: NON_INTERACTIVE, u: from, i: false });
        } else {
          const goal = pick(GOALS);
          add({
            n: goal,
            u: from,
            ...(goal === 'Signup' ? { p: { plan: pick(['free', 'pro', 'team']) } } : {}),
            ...(goal === 'Purchase' ? { revenue: { currency: 'EUR', amount: pick(PURCHASE_AMOUNTS) } } : {}),
          });
        }
      }
    }
    visitors.push(visitor);
    events += visitor.events.length;
    v++;
  }
  return { visitors, events, ips: ipList };
}

/** Pageviews and unique visitors of one breakdown value. */
export interface ViewsAndVisitors {
  pageviews: number;
  visitors: number;
}

/** Everything the e2e tests compare, per site. Stored rows, rollups and the truth share this shape. */
export interface SiteCounts {
  events: number;
  pageviews: number;
  visitors: number;
  visits: number;
  bounces: number;
  /** Sum of revenue amounts, in cents. */
  revenueCents: number;
  pages: Record<string, ViewsAndVisitors>;
  countries: Record<string, ViewsAndVisitors>;
  /** Visits per channel. */
  channels: Record<string, number>;
  /** Events and unique visitors per event name (pageview, goals, the non-interactive one). */
  names: Record<string, { events: number; visitors: number }>;
  /** Conversions per goal: unique visitors who sent it. */
  goals: Record<string, number>;
}

export interface WireTruth {
  sites: Record<string, SiteCounts>;
  totalEvents: number;
  /** `site \n event id` of every event that must be stored exactly once. */
  eventKeys: Set<string>;
}

/** An empty SiteCounts. */
export function emptyCounts(): SiteCounts {
  return {
    events: 0,
    pageviews: 0,
    visitors: 0,
    visits: 0,
    bounces: 0,
    revenueCents: 0,
    pages: {},
    countries: {},
    channels: {},
    names: {},
    goals: {},
  };
}

/** Rebuilds every record with its keys sorted, so two counts compare (and print) alike. */
export function sortedCounts(sites: Record<string, SiteCounts>): Record<string, SiteCounts> {
  const sortKeys = <T>(r: Record<string, T>): Record<string, T> =>
    Object.fromEntries(Object.entries(r).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  const out: Record<string, SiteCounts> = {};
  for (const site of Object.keys(sites).sort()) {
    const c = sites[site] as SiteCounts;
    out[site] = {
      ...c,
      pages: sortKeys(c.pages),
      countries: sortKeys(c.countries),
      channels: sortKeys(c.channels),
      names: sortKeys(c.names),
      goals: sortKeys(c.goals),
    };
  }
  return out;
}

/**
 * The truth: every event counts once (ids are unique), one visit per visitor, a visit is a bounce
 * when it holds at most one interactive event, its channel is the origin's, and its country is
 * `countryOf(ip)`.
 */
export function computeWireTruth(traffic: WireTraffic, countryOf: (ip: string) => string): WireTruth {
  const sites: Record<string, SiteCounts> = {};
  const eventKeys = new Set<string>();
  // site → breakdown value → visitor keys, for the unique counts.
  const pageVisitors = new Map<string, Set<string>>();
  const countryVisitors = new Map<string, Set<string>>();
  const nameVisitors = new Map<string, Set<string>>();
  const addTo = (m: Map<string, Set<string>>, key: string, visitor: string): void => {
    let s = m.get(key);
    if (s === undefined) {
      s = new Set();
      m.set(key, s);
    }
    s.add(visitor);
  };
  let totalEvents = 0;
  for (const [index, v] of traffic.visitors.entries()) {
    const c = (sites[v.site] ??= emptyCounts());
    const who = String(index);
    const country = countryOf(v.ip);
    c.visitors++;
    c.visits++;
    c.channels[v.origin.channel] = (c.channels[v.origin.channel] ?? 0) + 1;
    let interactive = 0;
    for (const e of v.events) {
      const key = `${v.site}\n${e.id}`;
      if (eventKeys.has(key)) throw new Error(`generator bug: event id ${e.id} used twice`);
      eventKeys.add(key);
      totalEvents++;
      c.events++;
      if (e.i !== false) interactive++;
      const name = (c.names[e.n] ??= { events: 0, visitors: 0 });
      name.events++;
      addTo(nameVisitors, `${v.site}\n${e.n}`, who);
      const ctry = (c.countries[country] ??= { pageviews: 0, visitors: 0 });
      addTo(countryVisitors, `${v.site}\n${country}`, who);
      if (e.revenue !== undefined) c.revenueCents += Math.round(e.revenue.amount * 100);
      if (e.n === 'pageview') {
        c.pageviews++;
        ctry.pageviews++;
        const path = decodeURIComponent(new URL(e.u).pathname);
        const page = (c.pages[path] ??= { pageviews: 0, visitors: 0 });
        page.pageviews++;
        addTo(pageVisitors, `${v.site}\n${path}`, who);
      }
    }
    if (interactive <= 1) c.bounces++;
  }
  for (const [site, c] of Object.entries(sites)) {
    for (const [path, p] of Object.entries(c.pages)) p.visitors = pageVisitors.get(`${site}\n${path}`)?.size ?? 0;
    for (const [ctry, p] of Object.entries(c.countries)) p.visitors = countryVisitors.get(`${site}\n${ctry}`)?.size ?? 0;
    for (const [name, p] of Object.entries(c.names)) p.visitors = nameVisitors.get(`${site}\n${name}`)?.size ?? 0;
    for (const goal of GOALS) {
      const n = c.names[goal];
      if (n !== undefined) c.goals[goal] = n.visitors;
    }
  }
  return { sites: sortedCounts(sites), totalEvents, eventKeys };
}

/** One `/api/batch` request: its events and the JSON body (the same bytes on every resend). */
export interface WireBatch {
  sender: number;
  /** Position in the sender's sequence. */
  seq: number;
  events: WireBatchEvent[];
  body: string;
}

export interface BatchPlanOptions {
  senders: number;
  batchSize: number;
  seed: number;
  /** Visitors a sender interleaves at a time (default 40). */
  window?: number;
}

/**
 * Cuts the traffic into batches per sender. A visitor belongs to one sender; each sender
 * interleaves the events of a window of its visitors at random, keeping every visitor's order.
 */
export function planBatches(traffic: WireTraffic, o: BatchPlanOptions): WireBatch[][] {
  const random = rng(o.seed);
  const plans: WireBatch[][] = [];
  for (let s = 0; s < o.senders; s++) {
    const mine = traffic.visitors.filter((_, i) => i % o.senders === s);
    const stream: WireBatchEvent[] = [];
    const active: { events: WireBatchEvent[]; next: number }[] = [];
    let nextVisitor = 0;
    const refill = (): void => {
      while (active.length < (o.window ?? 40) && nextVisitor < mine.length) {
        active.push({ events: (mine[nextVisitor++] as WireVisitor).events, next: 0 });
      }
    };
    refill();
    while (active.length > 0) {
      const at = Math.floor(random() * active.length);
      const a = active[at] as { events: WireBatchEvent[]; next: number };
      stream.push(a.events[a.next++] as WireBatchEvent);
      if (a.next >= a.events.length) {
        active.splice(at, 1);
        refill();
      }
    }
    const batches: WireBatch[] = [];
    for (let i = 0; i < stream.length; i += o.batchSize) {
      const events = stream.slice(i, i + o.batchSize);
      batches.push({ sender: s, seq: batches.length, events, body: JSON.stringify(events) });
    }
    plans.push(batches);
  }
  return plans;
}
