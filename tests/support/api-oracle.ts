import { rng } from '../../schemas/testing/oracle.ts';
import { GOALS, NON_INTERACTIVE, PAGES, type Origin, type WireBatch, type WireBatchEvent, type WireTraffic, type WireVisitor } from './wire-oracle.ts';

/**
 * The reporting API's oracle at the wire level: seeded traffic sent through the real collector,
 * and the truth about every Stats API v2 metric, breakdown and filter computed here in plain
 * JavaScript from what was sent, with the semantics of Plausible's Stats API v2 docs. The
 * truth never reads ClickHouse and never calls the product's enrichment: browsers, systems,
 * devices and sources come from hand-written tables, countries from the caller's lookup.
 *
 * Time: the collector stamps events with its own clock, so each event's time is only known to lie
 * between its batch's send and its `202`. Traffic goes out in two phases separated by a pause:
 * phase 1 holds every visit's first half (so every visit starts in it), phase 2 the rest. Counts
 * over "phase 1" or "phase 2" (date-time ranges split in the pause) are then exact, and so are the
 * rest of the metrics; visit durations and hour buckets are bounded by the batches' timings.
 */

/** What a browser's User-Agent must be recorded as (Plausible's labels), written by hand. */
export interface UaTruth {
  ua: string;
  browser: string;
  os: string;
  device: 'desktop' | 'mobile' | 'tablet';
}

export const UA_TRUTH: readonly UaTruth[] = [
  {
    ua: 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36',
    browser: 'Chrome',
    os: 'Windows',
    device: 'desktop',
  },
  {
    ua: 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.80',
    browser: 'Microsoft Edge',
    os: 'Windows',
    device: 'desktop',
  },
  { ua: 'Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0', browser: 'Firefox', os: 'Windows', device: 'desktop' },
  {
    ua: 'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15',
    browser: 'Safari',
    os: 'macOS',
    device: 'desktop',
  },
  {
    ua: 'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/123.0.0.0 Safari/537.36',
    browser: 'Chrome',
    os: 'macOS',
    device: 'desktop',
  },
  { ua: 'Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0', browser: 'Firefox', os: 'Linux', device: 'desktop' },
  {
    ua: 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36',
    browser: 'Chrome',
    os: 'Linux',
    device: 'desktop',
  },
  {
    ua: 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1',
    browser: 'Safari',
    os: 'iOS',
    device: 'mobile',
  },
  {
    ua: 'Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1',
    browser: 'Safari',
    os: 'iOS',
    device: 'tablet',
  },
  {
    ua: 'Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.6367.82 Mobile Safari/537.36',
    browser: 'Chrome',
    os: 'Android',
    device: 'mobile',
  },
  {
    ua: 'Mozilla/5.0 (Linux; Android 13; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/24.0 Chrome/117.0.0.0 Mobile Safari/537.36',
    browser: 'Samsung Browser',
    os: 'Android',
    device: 'mobile',
  },
  {
    ua: 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36 OPR/108.0.0.0',
    browser: 'Opera',
    os: 'Windows',
    device: 'desktop',
  },
];

/** Where a visit came from: the GA4 channel, the source shown ('' = Direct / None) and its utm_source. */
export interface ApiOrigin extends Origin {
  source: string;
  utmSource: string;
}

export const API_ORIGINS: readonly ApiOrigin[] = [
  { channel: 'Direct', source: '', utmSource: '' },
  { channel: 'Organic Search', referrer: 'https://www.google.com/', source: 'Google', utmSource: '' },
  { channel: 'Organic Search', referrer: 'https://duckduckgo.com/', source: 'DuckDuckGo', utmSource: '' },
  { channel: 'Organic Social', referrer: 'https://t.co/x', source: 'Twitter', utmSource: '' },
  { channel: 'Organic Social', referrer: 'https://www.facebook.com/', source: 'Facebook', utmSource: '' },
  { channel: 'Email', query: 'utm_source=newsletter&utm_medium=email&utm_campaign=spring', source: 'newsletter', utmSource: 'newsletter' },
  { channel: 'Paid Search', query: 'utm_source=google&utm_medium=cpc&utm_campaign=brand', source: 'Google', utmSource: 'google' },
  { channel: 'Referral', referrer: 'https://news.example.org/', source: 'news.example.org', utmSource: '' },
];

/**
 * Client addresses by range: 85.214/16 (DE), 200.160/16 (BR), 133.242/16 (JP), 8.8/16 (US),
 * 62.210/16 (FR), 41.0/16 (ZA); the country recorded is whatever the caller's lookup says.
 */
const V4_PREFIXES = ['85.214', '200.160', '133.242', '8.8', '62.210', '41.0'] as const;
const PURCHASE_CENTS = [999, 1950, 10_000, 4201] as const;
const PLANS = ['free', 'pro', 'team'] as const;
const FILES = ['guide.pdf', "it's.zip", 'data.csv'] as const;
const LANGS = ['en', 'pt-BR'] as const;

/** One visitor (one visit: the whole test fits in a session) and the events it sends, in order. */
export interface ApiVisitor extends WireVisitor {
  index: number;
  ua: string;
  uaTruth: UaTruth;
  apiOrigin: ApiOrigin;
  /** Events [0, split) go out in phase 1, the rest in phase 2. */
  split: number;
}

export interface ApiTraffic extends WireTraffic {
  visitors: ApiVisitor[];
}

export interface ApiTrafficOptions {
  seed: number;
  sites: readonly string[];
  /** Visitors per site. */
  visitors: number;
  idPrefix: string;
}

/** Seeded traffic with props on pageviews and goals, revenue, every origin, UA and page. */
export function generateApiTraffic(o: ApiTrafficOptions): ApiTraffic {
  const random = rng(o.seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)] as T;
  const int = (lo: number, hi: number): number => lo + Math.floor(random() * (hi - lo + 1));
  const ips = new Set<string>();
  while (ips.size < Math.max(60, o.visitors)) ips.add(`${pick(V4_PREFIXES)}.${int(0, 255)}.${int(1, 254)}`);
  const ipList = [...ips];
  const used = new Set<string>();
  const visitors: ApiVisitor[] = [];
  let events = 0;
  for (let n = 0; n < o.visitors * o.sites.length; n++) {
    const site = o.sites[n % o.sites.length] as string;
    let ip: string;
    let uaTruth: UaTruth;
    do {
      ip = pick(ipList);
      uaTruth = pick(UA_TRUTH);
    } while (used.has(`${site}\n${ip}\n${uaTruth.ua}`));
    used.add(`${site}\n${ip}\n${uaTruth.ua}`);
    const apiOrigin = pick(API_ORIGINS);
    const base = `${o.idPrefix}-${n.toString(36)}`;
    const list: WireBatchEvent[] = [];
    const add = (e: Omit<WireBatchEvent, 'id' | 'ip' | 'ua' | 'd'>): void => {
      list.push({ ...e, d: site, id: `${base}-${list.length}`, ip, ua: uaTruth.ua });
    };
    let page = pick(PAGES);
    add({
      n: 'pageview',
      u: `https://${site}${page.url}${apiOrigin.query === undefined ? '' : `?${apiOrigin.query}`}`,
      ...(apiOrigin.referrer === undefined ? {} : { r: apiOrigin.referrer }),
      ...(random() < 0.5 ? { p: { lang: pick(LANGS) } } : {}),
    });
    const shape = random();
    if (shape < 0.3) {
      // A bounce: one pageview.
    } else if (shape < 0.45) {
      // Still a bounce: then only non-interactive events.
      for (let j = int(1, 2); j > 0; j--) add({ n: NON_INTERACTIVE, u: `https://${site}${page.url}`, i: false });
    } else {
      for (let j = int(1, 8); j > 0; j--) {
        const roll = random();
        const from = `https://${site}${page.url}`;
        if (roll < 0.6) {
          page = pick(PAGES);
          add({ n: 'pageview', u: `https://${site}${page.url}`, r: from });
        } else if (roll < 0.7) {
          add({ n: NON_INTERACTIVE, u: from, i: false });
        } else {
          const goal = pick(GOALS);
          if (goal === 'Signup') add({ n: goal, u: from, p: { plan: pick(PLANS) } });
          else if (goal === 'Download') add({ n: goal, u: from, p: { file: pick(FILES) } });
          else add({ n: goal, u: from, revenue: { currency: 'EUR', amount: pick(PURCHASE_CENTS) / 100 } });
        }
      }
    }
    const split = list.length === 1 ? 1 : Math.ceil(list.length / 2);
    visitors.push({ index: n, site, ip, ua: uaTruth.ua, origin: apiOrigin, apiOrigin, uaTruth, events: list, split });
    events += list.length;
  }
  return { visitors, events, ips: ipList };
}

/**
 * The traffic of one phase: visitors with events in it (the pause between the phases keeps every
 * visitor's events in order, whichever sender carries them).
 */
export function phaseTraffic(t: ApiTraffic, phase: 1 | 2): ApiTraffic {
  const visitors = t.visitors
    .map((v) => ({ ...v, events: phase === 1 ? v.events.slice(0, v.split) : v.events.slice(v.split) }))
    .filter((v) => v.events.length > 0);
  return { visitors, events: visitors.reduce((n, v) => n + v.events.length, 0), ips: t.ips };
}

// ---------------------------------------------------------------------------------------------
// The model the truth is computed from

/** When an event was stamped: between its batch's send and its `202` (ms since the epoch). */
export type Window = readonly [number, number];

export interface ModelEvent {
  id: string;
  name: string;
  path: string;
  props: Readonly<Record<string, string>>;
  revenueCents: number | null;
  interactive: boolean;
  phase: 1 | 2;
  at: Window;
  session: ModelSession;
}

export interface ModelSession {
  visitor: number;
  site: string;
  country: string;
  browser: string;
  os: string;
  device: string;
  source: string;
  channel: string;
  utmSource: string;
  entryPage: string;
  exitPage: string;
  pageviews: number;
  bounce: boolean;
  start: Window;
  /** Bounds of floor((last − first) / 1 s), the recorded duration. */
  duration: readonly [number, number];
  events: ModelEvent[];
}

export interface Model {
  sessions: ModelSession[];
  events: ModelEvent[];
}

/**
 * The model of `site`'s traffic once sent: `windowOf(event id)` is the send window of the batch
 * that carried the event, `countryOf(ip)` the lookup the collector uses.
 */
export function buildModel(t: ApiTraffic, site: string, windowOf: (id: string) => Window, countryOf: (ip: string) => string): Model {
  const sessions: ModelSession[] = [];
  const events: ModelEvent[] = [];
  for (const v of t.visitors) {
    if (v.site !== site) continue;
    const first = v.events[0];
    const last = v.events[v.events.length - 1];
    if (first === undefined || last === undefined) continue;
    const pathOf = (e: WireBatchEvent): string => decodeURIComponent(new URL(e.u).pathname);
    const views = v.events.filter((e) => e.n === 'pageview');
    const [f0, f1] = windowOf(first.id);
    const [l0, l1] = windowOf(last.id);
    const s: ModelSession = {
      visitor: v.index,
      site,
      country: countryOf(v.ip),
      browser: v.uaTruth.browser,
      os: v.uaTruth.os,
      device: v.uaTruth.device,
      source: v.apiOrigin.source,
      channel: v.apiOrigin.channel,
      utmSource: v.apiOrigin.utmSource,
      entryPage: pathOf(views[0] ?? first),
      exitPage: pathOf(views[views.length - 1] ?? first),
      pageviews: views.length,
      bounce: v.events.filter((e) => e.i !== false).length <= 1,
      start: [f0, f1],
      duration: [Math.max(0, Math.floor((l0 - f1) / 1000)), Math.floor((l1 - f0) / 1000)],
      events: [],
    };
    v.events.forEach((e, i) => {
      const props: Record<string, string> = {};
      for (const [k, x] of Object.entries(e.p ?? {})) props[k] = String(x);
      const me: ModelEvent = {
        id: e.id,
        name: e.n,
        path: pathOf(e),
        props,
        revenueCents: e.revenue === undefined ? null : Math.round(e.revenue.amount * 100),
        interactive: e.i !== false,
        phase: i < v.split ? 1 : 2,
        at: windowOf(e.id),
        session: s,
      };
      s.events.push(me);
      events.push(me);
    });
    sessions.push(s);
  }
  return { sessions, events };
}

// ---------------------------------------------------------------------------------------------
// Truth of one query

export type Filter = readonly unknown[];

export type TruthValue = number | null | { lo: number; hi: number };

export interface TruthQuery {
  metrics: readonly string[];
  /** At most one, not a time dimension. */
  dimension?: string;
  filters?: readonly Filter[];
  /** Which phase's events (and visits starting in it); both when undefined. */
  phase?: 1 | 2;
}

const SESSION_DIMS = new Set([
  'visit:entry_page',
  'visit:exit_page',
  'visit:source',
  'visit:referrer',
  'visit:channel',
  'visit:utm_source',
  'visit:utm_medium',
  'visit:utm_campaign',
  'visit:utm_content',
  'visit:utm_term',
]);
const EITHER_DIMS = new Set(['visit:country', 'visit:device', 'visit:browser', 'visit:os', 'visit:browser_version', 'visit:os_version']);

function scope(dim: string): 'event' | 'session' | 'either' {
  if (SESSION_DIMS.has(dim)) return 'session';
  if (EITHER_DIMS.has(dim)) return 'either';
  return 'event';
}

const orLabel = (v: string, label: string): string => (v === '' ? label : v);

/** A session's value of a visit (or "either") dimension, labelled as the API shows it. */
function sessionAttr(dim: string, s: ModelSession): string {
  switch (dim) {
    case 'visit:entry_page':
      return s.entryPage;
    case 'visit:exit_page':
      return s.exitPage;
    case 'visit:source':
      return orLabel(s.source, 'Direct / None');
    case 'visit:channel':
      return s.channel;
    case 'visit:utm_source':
      return orLabel(s.utmSource, '(not set)');
    case 'visit:country':
      return s.country;
    case 'visit:browser':
      return orLabel(s.browser, '(not set)');
    case 'visit:os':
      return orLabel(s.os, '(not set)');
    case 'visit:device':
      return s.device;
    default:
      throw new Error(`no truth for ${dim}`);
  }
}

/** An event's values of a dimension (goal: implicit goals, every custom event name). */
function eventAttr(dim: string, e: ModelEvent): string {
  if (dim === 'event:page') return e.path;
  if (dim === 'event:name') return e.name;
  if (dim === 'event:hostname') return e.session.site;
  if (dim.startsWith('event:props:')) return e.props[dim.slice('event:props:'.length)] ?? '(none)';
  return sessionAttr(dim, e.session);
}

function goalMatches(label: string, e: ModelEvent): boolean {
  if (label.startsWith('Visit ') && label.length > 'Visit '.length) return e.name === 'pageview' && e.path === label.slice('Visit '.length);
  return e.name === label;
}

function leafMatches(op: string, x: string, values: readonly string[], caseSensitive: boolean): boolean {
  const norm = (s: string): string => (caseSensitive ? s : s.toLowerCase());
  let positive: boolean;
  switch (op.replace(/_not$/, '')) {
    case 'is':
      positive = values.some((v) => norm(v) === norm(x));
      break;
    case 'contains':
      positive = values.some((v) => norm(x).includes(norm(v)));
      break;
    case 'matches':
      positive = values.some((v) => new RegExp(v, caseSensitive ? 'u' : 'iu').test(x));
      break;
    default:
      throw new Error(`no truth for operator ${op}`);
  }
  return op.endsWith('_not') ? !positive : positive;
}

interface Leaf {
  op: string;
  dim: string;
  values: string[];
  caseSensitive: boolean;
}

function asLeaf(f: Filter): Leaf | undefined {
  const [op, dim, values, opts] = f as [unknown, unknown, unknown, unknown];
  if (op === 'and' || op === 'or' || op === 'not') return undefined;
  const cs = (opts as { case_sensitive?: boolean } | undefined)?.case_sensitive ?? true;
  return { op: String(op), dim: String(dim), values: (values as unknown[]).map(String), caseSensitive: cs };
}

function evalFilter(f: Filter, leaf: (l: Leaf) => boolean): boolean {
  const l = asLeaf(f);
  if (l !== undefined) return leaf(l);
  const [op, arg] = f as [string, unknown];
  if (op === 'not') return !evalFilter(arg as Filter, leaf);
  const children = arg as Filter[];
  return op === 'and' ? children.every((c) => evalFilter(c, leaf)) : children.some((c) => evalFilter(c, leaf));
}

function filterLeaves(fs: readonly Filter[]): Leaf[] {
  const out: Leaf[] = [];
  const walk = (f: Filter): void => {
    const l = asLeaf(f);
    if (l !== undefined) out.push(l);
    else if (f[0] === 'not') walk(f[1] as Filter);
    else for (const c of f[1] as Filter[]) walk(c);
  };
  fs.forEach(walk);
  return out;
}

const round = (x: number, digits: number): number => Math.round(x * 10 ** digits) / 10 ** digits;

/** A leaf on one event. */
function eventLeaf(l: Leaf, e: ModelEvent): boolean {
  if (l.dim === 'event:goal') return l.values.some((g) => goalMatches(g, e));
  return leafMatches(l.op, eventAttr(l.dim, e), l.values, l.caseSensitive);
}

/**
 * The truth of `q`: one entry per result row (keyed by the dimension value, '' without one),
 * each metric's value; `visit_duration` as bounds.
 */
export function truthOf(m: Model, q: TruthQuery): Map<string, TruthValue[]> {
  const filters = q.filters ?? [];
  const dim = q.dimension;
  const inPhase = (p: 1 | 2): boolean => q.phase === undefined || q.phase === p;
  const leaves = filterLeaves(filters);
  const scopes = [...(dim === undefined ? [] : [scope(dim)]), ...leaves.map((l) => scope(l.dim))];
  const visitorSide = scopes.includes('session') && !scopes.includes('event') ? 'session' : 'event';
  const visitsSide = dim !== undefined && scope(dim) === 'event' && dim !== 'event:page' ? 'event' : 'session';
  const pageDim = dim === 'event:page';
  const pageviewsOnly = pageDim && !leaves.some((l) => l.dim === 'event:goal' || l.dim === 'event:name');

  const rangeEvents = m.events.filter((e) => inPhase(e.phase));
  const rangeSessions = m.sessions.filter((s) => inPhase(s.events[0]?.phase ?? 1));

  const eventPasses = (e: ModelEvent, fs: readonly Filter[]): boolean => fs.every((f) => evalFilter(f, (l) => eventLeaf(l, e)));
  const sessionPasses = (s: ModelSession, fs: readonly Filter[]): boolean =>
    fs.every((f) =>
      evalFilter(f, (l) => {
        if (scope(l.dim) !== 'event') return leafMatches(l.op, sessionAttr(l.dim, s), l.values, l.caseSensitive);
        if (pageDim && l.dim === 'event:page') return leafMatches(l.op, s.entryPage, l.values, l.caseSensitive);
        // "Had an event in the range that matches."
        return s.events.some((e) => inPhase(e.phase) && eventLeaf(l, e));
      }),
    );

  const goalLabels = (): string[] | undefined => {
    let labels: string[] | undefined;
    for (const f of filters) {
      const l = asLeaf(f);
      if (l?.dim === 'event:goal') labels = labels === undefined ? [...l.values] : labels.filter((x) => l.values.includes(x));
    }
    return labels;
  };
  const eventKeys = (e: ModelEvent): string[] => {
    if (dim === undefined) return [''];
    if (dim === 'event:goal') {
      const labels = goalLabels();
      if (labels === undefined) return e.name === 'pageview' ? [] : [e.name];
      return labels.filter((g) => goalMatches(g, e));
    }
    return [eventAttr(dim, e)];
  };
  const sessionKey = (s: ModelSession): string => {
    if (dim === undefined) return '';
    if (dim === 'event:page') return s.entryPage;
    return sessionAttr(dim, s);
  };

  const events = rangeEvents.filter((e) => (!pageviewsOnly || e.name === 'pageview') && eventPasses(e, filters));
  const sessions = rangeSessions.filter((s) => sessionPasses(s, filters));
  const eventGroups = new Map<string, ModelEvent[]>();
  for (const e of events) for (const k of eventKeys(e)) eventGroups.set(k, [...(eventGroups.get(k) ?? []), e]);

  const needsEvent = q.metrics.some(
    (x) =>
      ['pageviews', 'events', 'conversion_rate', 'total_revenue', 'average_revenue'].includes(x) ||
      ((x === 'visitors' || x === 'percentage') && visitorSide === 'event') ||
      (x === 'visits' && visitsSide === 'event'),
  );
  const needsSession = q.metrics.some(
    (x) =>
      ['bounce_rate', 'visit_duration', 'views_per_visit'].includes(x) ||
      ((x === 'visitors' || x === 'percentage') && visitorSide === 'session') ||
      (x === 'visits' && visitsSide === 'session'),
  );
  // Session metrics are refused with event dimensions other than the page: no session groups then.
  const sessionGroups = new Map<string, ModelSession[]>();
  if (needsSession) {
    for (const s of sessions) {
      const k = sessionKey(s);
      sessionGroups.set(k, [...(sessionGroups.get(k) ?? []), s]);
    }
  }
  const keys = new Set<string>();
  if (needsEvent) for (const k of eventGroups.keys()) keys.add(k);
  if (needsSession) for (const k of sessionGroups.keys()) keys.add(k);
  if (dim === undefined) keys.add('');

  const uniq = (xs: readonly { visitor: number }[]): number => new Set(xs.map((x) => x.visitor)).size;
  const eventVisitors = (xs: readonly ModelEvent[]): number => uniq(xs.map((e) => e.session));
  const visitorsOf = (k: string): number =>
    visitorSide === 'session' ? uniq(sessionGroups.get(k) ?? []) : eventVisitors(eventGroups.get(k) ?? []);
  const totalVisitors = visitorSide === 'session' ? uniq(sessions) : eventVisitors(rangeEvents.filter((e) => eventPasses(e, filters)));
  const pageLeaves = pageDim
    ? []
    : filters.map(asLeaf).filter((l): l is Leaf => l !== undefined && l.dim === 'event:page');

  const out = new Map<string, TruthValue[]>();
  for (const k of keys) {
    const ev = eventGroups.get(k) ?? [];
    const se = sessionGroups.get(k) ?? [];
    out.set(
      k,
      q.metrics.map((metric): TruthValue => {
        switch (metric) {
          case 'visitors':
            return visitorsOf(k);
          case 'visits':
            return visitsSide === 'event' ? new Set(ev.map((e) => e.session)).size : se.length;
          case 'pageviews':
            return ev.filter((e) => e.name === 'pageview').length;
          case 'events':
            return ev.length;
          case 'bounce_rate': {
            const counted = pageLeaves.length === 0 ? se : se.filter((s) => pageLeaves.every((l) => leafMatches(l.op, s.entryPage, l.values, l.caseSensitive)));
            return counted.length === 0 ? 0 : Math.round((counted.filter((s) => s.bounce).length / counted.length) * 100);
          }
          case 'visit_duration': {
            if (se.length === 0) return 0;
            const lo = se.reduce((n, s) => n + s.duration[0], 0);
            const hi = se.reduce((n, s) => n + s.duration[1], 0);
            return { lo: Math.round(lo / se.length), hi: Math.round(hi / se.length) };
          }
          case 'views_per_visit':
            return se.length === 0 ? 0 : round(se.reduce((n, s) => n + s.pageviews, 0) / se.length, 2);
          case 'percentage':
            return totalVisitors === 0 ? null : round((visitorsOf(k) / totalVisitors) * 100, 1);
          case 'conversion_rate': {
            const kept = filters.filter((f) => {
              const l = asLeaf(f);
              return l === undefined || !(l.dim === 'event:goal' || l.dim.startsWith('event:props:'));
            });
            const all = eventVisitors(rangeEvents.filter((e) => eventPasses(e, kept)));
            return all === 0 ? 0 : round((eventVisitors(ev) / all) * 100, 1);
          }
          case 'total_revenue':
            return ev.reduce((n, e) => n + (e.revenueCents ?? 0), 0) / 100;
          case 'average_revenue': {
            const paid = ev.filter((e) => e.revenueCents !== null);
            return paid.length === 0 ? null : round(paid.reduce((n, e) => n + (e.revenueCents ?? 0), 0) / 100 / paid.length, 2);
          }
          default:
            throw new Error(`no truth for metric ${metric}`);
        }
      }),
    );
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Sending, with each batch's window

/** Batches sent, each with its send window. */
export interface TimedBatch {
  batch: WireBatch;
  at: Window;
  status: number;
  /** The answer's body when it was not a 202. */
  answer?: string;
}

/**
 * Sends every sender's batches once (senders concurrently, each sender's batches in order) and
 * records when each batch went out and when its answer came back.
 */
export async function sendTimed(url: string, plans: readonly WireBatch[][], userAgent: string): Promise<TimedBatch[]> {
  const out: TimedBatch[] = [];
  await Promise.all(
    plans.map(async (batches) => {
      for (const batch of batches) {
        const sent = Date.now();
        const res = await fetch(`${url}/api/batch`, {
          method: 'POST',
          body: batch.body,
          headers: { 'content-type': 'application/json', 'user-agent': userAgent },
          signal: AbortSignal.timeout(30_000),
        });
        const text = await res.text();
        out.push({ batch, at: [sent, Date.now()], status: res.status, ...(res.status === 202 ? {} : { answer: text }) });
      }
    }),
  );
  return out;
}
