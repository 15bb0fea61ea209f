import type { EnrichedEvent } from '../schemas/enriched-event.ts';

/*
 * Realistic web traffic: the distributions `npm run bench -- query` draws its 10M-event site from
 * (bench/query.ts turns them into SQL) and `farol demo` draws its enriched events from (below), so
 * the demo looks like the data the dashboard is measured on. Pure and deterministic: the same seed
 * and first day give the same events, with the same ids, every time.
 */

export const NAMED_PAGES = [
  '/', '/pricing', '/features', '/blog', '/docs', '/about', '/signup', '/login', '/contact', '/docs/getting-started',
  '/integrations', '/changelog', '/careers', '/customers', '/security', '/privacy', '/terms', '/docs/api', '/blog/launch', '/status',
];
/** Distinct paths: ranks 1…N drawn with density ∝ 1/rank. */
export const PATHS = 3000;
export const REFERRAL_DOMAINS = 500;

// ~150 countries, roughly by traffic: drawn with density ∝ 1/rank.
export const COUNTRIES = (
  'US DE GB IN FR CA BR NL ES IT PL AU JP SE CH RU TR MX ID KR BE AT UA CZ DK NO FI PT IE IL ' +
  'AR CO CL PE VN TH MY SG PH PK BD NG ZA EG KE MA TN DZ GH RO HU GR BG RS HR SI SK LT LV EE BY ' +
  'KZ UZ GE AM AZ IR IQ SA AE QA KW BH OM JO LB CY MT LU IS NZ TW HK CN MN NP LK MM KH LA EC VE ' +
  'UY PY BO CR PA GT HN SV NI DO CU JM TT PR ET TZ UG RW CM CI SN ZM ZW MZ AO NA BW MU MG SD LY ' +
  'AL MK BA ME MD XK AF KG TJ TM BN FJ PG BT MV BB BS BZ GY SR HT LR SL GN ML BF NE TD'
).split(' ');

/** Acquisition: how a session arrived (weights in ‰). The last is the long tail of referral sites. */
export const ACQUISITION: { weight: number; source: string; referrer: string; channel: string; utmSource: string; utmMedium: string; click: string }[] = [
  { weight: 330, source: '', referrer: '', channel: 'Direct', utmSource: '', utmMedium: '', click: '' },
  { weight: 300, source: 'Google', referrer: 'https://www.google.com/', channel: 'Organic Search', utmSource: '', utmMedium: '', click: '' },
  { weight: 30, source: 'Bing', referrer: 'https://www.bing.com/', channel: 'Organic Search', utmSource: '', utmMedium: '', click: '' },
  { weight: 20, source: 'DuckDuckGo', referrer: 'https://duckduckgo.com/', channel: 'Organic Search', utmSource: '', utmMedium: '', click: '' },
  { weight: 30, source: 'Facebook', referrer: 'https://www.facebook.com/', channel: 'Organic Social', utmSource: '', utmMedium: '', click: '' },
  { weight: 25, source: 'Reddit', referrer: 'https://www.reddit.com/', channel: 'Organic Social', utmSource: '', utmMedium: '', click: '' },
  { weight: 15, source: 'X', referrer: 'https://t.co/', channel: 'Organic Social', utmSource: '', utmMedium: '', click: '' },
  { weight: 15, source: 'LinkedIn', referrer: 'https://www.linkedin.com/', channel: 'Organic Social', utmSource: '', utmMedium: '', click: '' },
  { weight: 20, source: 'Hacker News', referrer: 'https://news.ycombinator.com/', channel: 'Referral', utmSource: '', utmMedium: '', click: '' },
  { weight: 20, source: 'ChatGPT', referrer: 'https://chatgpt.com/', channel: 'AI Assistants', utmSource: '', utmMedium: '', click: '' },
  { weight: 40, source: 'newsletter', referrer: '', channel: 'Email', utmSource: 'newsletter', utmMedium: 'email', click: '' },
  { weight: 45, source: 'Google', referrer: 'https://www.google.com/', channel: 'Paid Search', utmSource: 'google', utmMedium: 'cpc', click: 'gclid' },
  { weight: 30, source: 'Facebook', referrer: 'https://www.facebook.com/', channel: 'Paid Social', utmSource: 'facebook', utmMedium: 'paid_social', click: 'fbclid' },
  { weight: 80, source: '', referrer: '', channel: 'Referral', utmSource: '', utmMedium: '', click: '' },
];

/** Custom events, with weights in %, placed after a session's pageviews. */
export const CUSTOM_EVENTS = [
  { name: 'Outbound Link: Click', weight: 35 },
  { name: 'File Download', weight: 15 },
  { name: 'Signup', weight: 25 },
  { name: 'Purchase', weight: 10 },
  { name: '404', weight: 15 },
];

export const CAMPAIGNS = ['spring-sale', 'black-friday', 'launch-week', 'retargeting', 'brand'];
export const TERMS = ['web analytics', 'privacy analytics', 'google analytics alternative', 'ab testing', 'cookieless analytics'];
export const PLANS = ['free', 'pro', 'team'];
/** The goals of the generated site: its conversions. */
export const GOALS = ['Signup', 'Purchase', 'Outbound Link: Click', 'File Download', 'Visit /pricing'];

// ---------------------------------------------------------------------------------------------
// The demo's events, drawn from the distributions above.

const DAY_MS = 86_400_000;

/** What {@link demoEvents} generates. */
export interface DemoPlan {
  site: string;
  /** The site registration's epoch, stamped on every event as a collector does. */
  epoch: number;
  /** UTC midnight of the first day. */
  firstDayMs: number;
  days: number;
  /** Sessions on an average weekday (weekends have fewer; the last days a little more). */
  sessionsPerDay: number;
  /** Sessions starting after this are not generated (the demo never writes the future). */
  untilMs: number;
  seed: number;
  /** A running experiment: half the visitors are exposed, and `variant` converts to `goal` better. */
  experiment: { id: string; control: string; variant: string; goal: string; controlRate: number; variantRate: number };
}

/** A 32-bit hash of integers (murmur3's finalizer over a running mix): the generator's only randomness. */
function hash(...xs: number[]): number {
  let h = 0x9e3779b9;
  for (const x of xs) {
    h = Math.imul(h ^ (x >>> 0), 0x85ebca6b);
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35);
    h ^= h >>> 16;
  }
  return h >>> 0;
}

/** A uniform draw in [0, 1). */
const draw = (...xs: number[]): number => hash(...xs) / 4_294_967_296;
/** A rank in 1…n drawn with density ∝ 1/rank. */
const zipf = (u: number, n: number): number => Math.min(n, Math.floor(Math.exp(u * Math.log(n + 1))));
/** An index into cumulative `weights` (any scale) for a uniform draw. */
function pick(weights: readonly number[], u: number): number {
  const total = weights.reduce((a, b) => a + b, 0);
  let at = u * total;
  for (let i = 0; i < weights.length; i++) {
    at -= weights[i] ?? 0;
    if (at < 0) return i;
  }
  return weights.length - 1;
}
const one = <T>(list: readonly T[], u: number): T => list[Math.min(list.length - 1, Math.floor(u * list.length))] as T;

function pagePath(rank: number): string {
  if (rank <= NAMED_PAGES.length) return NAMED_PAGES[rank - 1] as string;
  return `${['/blog/post-', '/docs/page-', '/products/item-'][rank % 3]}${rank}`;
}

/** Sessions of day `day` (0-based): a weekly rhythm and a slow rise, so the chart looks lived in. */
function sessionsOn(plan: DemoPlan, day: number): number {
  const weekday = new Date(plan.firstDayMs + day * DAY_MS).getUTCDay();
  const week = weekday === 0 || weekday === 6 ? 0.62 : 1;
  const trend = 0.85 + (0.3 * day) / Math.max(1, plan.days - 1);
  return Math.round(plan.sessionsPerDay * week * trend * (0.92 + 0.16 * draw(plan.seed, 7, day)));
}

/**
 * The demo's enriched events, day by day, each day's in time order (as a collector would have
 * published them). Event ids are `demo-<day>-<session>-<n>` (client ids): the same plan gives the
 * same ids, so a second load can leave out what is stored already.
 */
export function* demoEvents(plan: DemoPlan): Generator<EnrichedEvent[]> {
  const { seed, site } = plan;
  for (let day = 0; day < plan.days; day++) {
    const dayStart = plan.firstDayMs + day * DAY_MS;
    const sessions = sessionsOn(plan, day);
    // ~1.75 sessions per daily visitor, as the bench's site.
    const pool = Math.max(1, Math.round(sessions * 0.8));
    const events: EnrichedEvent[] = [];
    for (let s = 0; s < sessions; s++) {
      const u = (k: number): number => draw(seed, day, s, k);
      const start = dayStart + Math.min(82_800_000, Math.floor((86_400_000 * (u(1) + u(2))) / 2)) + Math.floor(u(3) * 1000);
      if (start > plan.untilMs) continue;
      const vk = hash(seed, day, s, 4) % pool;
      // What belongs to the person (device, country, browser) is stable across their days.
      const vu = (k: number): number => draw(seed, 1_000_003, vk, k);
      // Visitor ids rotate daily, as the collector's salted hash does.
      const visitorId = ((BigInt(hash(seed, 2, vk, day)) << 32n) | BigInt(hash(seed, 3, vk, day))).toString();
      const country = COUNTRIES[zipf(vu(1), COUNTRIES.length) - 1] ?? 'US';
      const device = vu(2) < 0.55 ? 'desktop' : vu(2) < 0.95 ? 'mobile' : 'tablet';
      const os =
        device === 'desktop'
          ? vu(3) < 0.6 ? 'Windows' : vu(3) < 0.9 ? 'Mac OS' : vu(3) < 0.98 ? 'Linux' : 'Chromium OS'
          : device === 'mobile'
            ? vu(3) < 0.6 ? 'Android' : 'iOS'
            : vu(3) < 0.7 ? 'iOS' : 'Android';
      const browser =
        os === 'iOS'
          ? vu(5) < 0.8 ? 'Mobile Safari' : 'Chrome'
          : os === 'Mac OS'
            ? vu(5) < 0.55 ? 'Safari' : vu(5) < 0.95 ? 'Chrome' : 'Firefox'
            : os === 'Android'
              ? vu(5) < 0.75 ? 'Chrome' : vu(5) < 0.95 ? 'Samsung Browser' : 'Firefox'
              : vu(5) < 0.65 ? 'Chrome' : vu(5) < 0.85 ? 'Edge' : vu(5) < 0.97 ? 'Firefox' : 'Opera';
      const screen = device === 'mobile' ? 'Mobile' : device === 'tablet' ? 'Tablet' : vu(7) < 0.5 ? 'Laptop' : 'Desktop';
      const ai = pick(ACQUISITION.map((a) => a.weight), u(5));
      const acq = ACQUISITION[ai] as (typeof ACQUISITION)[number];
      const longTail = ai === ACQUISITION.length - 1;
      const source = longTail ? `site${zipf(u(6), REFERRAL_DOMAINS)}.example.net` : acq.source;
      const referrer = longTail ? `https://${source}/` : acq.referrer;
      const campaign = acq.utmSource === '' ? '' : one(CAMPAIGNS, u(7));
      const hostname = u(9) < 0.95 ? site : `docs.${site}`;
      const pageviews = u(10) < 0.45 ? 1 : 2 + Math.min(28, Math.floor(-Math.log(1 - u(11)) * 2.5));
      const customs = u(12) < 0.7 ? 0 : u(13) < 0.3 ? 2 : 1;
      const pages = Array.from({ length: pageviews }, (_, i) => pagePath(zipf(draw(seed, day, s, 100 + i), PATHS)));
      const exposed = vk % 2 === 0;
      const arm = vk % 4 === 0 ? plan.experiment.control : plan.experiment.variant;
      const names: string[] = [...pages.map(() => 'pageview')];
      for (let i = 0; i < customs; i++) names.push((CUSTOM_EVENTS[pick(CUSTOM_EVENTS.map((c) => c.weight), draw(seed, day, s, 300 + i))] as { name: string }).name);
      // The experiment's real effect: exposed visitors convert at their arm's rate.
      const rate = arm === plan.experiment.control ? plan.experiment.controlRate : plan.experiment.variantRate;
      if (exposed && u(14) < rate) names.push(plan.experiment.goal);
      let t = start;
      names.forEach((name, i) => {
        if (i > 0) t += 1000 + Math.floor(-Math.log(1 - draw(seed, day, s, 200 + i)) * 40_000);
        const first = i === 0;
        const path = name === 'pageview' ? (pages[i] as string) : (pages[pages.length - 1] as string);
        const e = draw(seed, day, s, 400 + i);
        const props: Record<string, string> =
          name === 'Outbound Link: Click'
            ? { url: `https://github.com/example/repo-${Math.floor(e * 50)}` }
            : name === 'File Download'
              ? { url: `https://${site}/files/report-${Math.floor(e * 20)}.pdf` }
              : name === 'Signup' || name === 'Purchase'
                ? { plan: PLANS[hash(seed, vk, 5) % PLANS.length] as string }
                : name === '404'
                  ? { path }
                  : {};
        events.push({
          v: 1,
          id: `demo-${day}-${s}-${i}`,
          clientId: true,
          site,
          epoch: plan.epoch,
          ts: t,
          name,
          hostname,
          pathname: path,
          // A landing page carries how the visit arrived; the next pages are same-site navigation.
          utmSource: first ? acq.utmSource : '',
          utmMedium: first ? acq.utmMedium : '',
          utmCampaign: first ? campaign : '',
          utmContent: first && acq.utmMedium === 'paid_social' ? one(['carousel', 'video', 'static'], u(8)) : '',
          utmTerm: first && acq.utmMedium === 'cpc' ? one(TERMS, u(8)) : '',
          clickIds: first && acq.click !== '' ? [acq.click] : [],
          referrer: first ? referrer : '',
          source: first ? source : '',
          channel: first ? acq.channel : 'Direct',
          country,
          browser,
          browserVersion: String(120 + Math.floor(vu(6) * 12)),
          os,
          osVersion: String(10 + Math.floor(vu(4) * 8)),
          device,
          screen,
          visitorId,
          interactive: true,
          props,
          revenue: name === 'Purchase' ? { currency: 'USD', amount: (999 + Math.floor(e * 49_000)) / 100 } : null,
          exp: exposed && name === 'pageview' ? { [plan.experiment.id]: arm } : {},
        });
      });
    }
    events.sort((a, b) => a.ts - b.ts || (a.id < b.id ? -1 : 1));
    yield events;
  }
}
