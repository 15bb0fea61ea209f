// Beacon generators shared by the k6 scripts; the same mix as bench/wrk/common.lua (seeded
// Park-Miller generator, ~20 User-Agents, ~10 referrers, 200 paths, 10,000 public IPv4 addresses).

let state = 1;

export function seed(s) {
  state = (Math.floor(s) % 2147483646) + 1;
}

/** A pseudo-random integer in 1..n (16807 * (2^31 - 1) < 2^53, so doubles stay exact). */
export function rand(n) {
  state = (state * 16807) % 2147483647;
  return (state % n) + 1;
}

export function pick(list) {
  return list[rand(list.length) - 1];
}

export const USER_AGENTS = [
  'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36',
  'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/125.0.0.0 Safari/537.36',
  'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/125.0.0.0 Safari/537.36',
  'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/123.0.0.0 Safari/537.36',
  'Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36',
  'Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.6367.82 Mobile Safari/537.36',
  'Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/124.0.6367.88 Mobile/15E148 Safari/604.1',
  'Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0',
  'Mozilla/5.0 (Macintosh; Intel Mac OS X 14.4; rv:126.0) Gecko/20100101 Firefox/126.0',
  'Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:124.0) Gecko/20100101 Firefox/124.0',
  'Mozilla/5.0 (Android 14; Mobile; rv:125.0) Gecko/125.0 Firefox/125.0',
  'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4.1 Safari/605.1.15',
  'Mozilla/5.0 (iPhone; CPU iPhone OS 17_4_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4.1 Mobile/15E148 Safari/604.1',
  'Mozilla/5.0 (iPhone; CPU iPhone OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1',
  'Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1',
  'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.80',
  'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/125.0.0.0 Safari/537.36 Edg/125.0.2535.51',
  'Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36 EdgA/124.0.2478.64',
  'Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-A546B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/25.0 Chrome/121.0.0.0 Mobile Safari/537.36',
  'Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36',
];

// null is a direct visit (the tracker sends "r":null).
export const REFERRERS = [
  null,
  'https://www.google.com/',
  'https://www.google.com/',
  'https://www.bing.com/',
  'https://duckduckgo.com/',
  'https://t.co/',
  'https://l.facebook.com/',
  'https://www.linkedin.com/',
  'https://www.reddit.com/',
  'https://news.ycombinator.com/',
  'https://chatgpt.com/',
  'https://example.com/blog/',
];

const QUERIES = [
  '', '', '', '', '', '',
  '?utm_source=newsletter&utm_medium=email&utm_campaign=spring_launch',
  '?utm_source=google&utm_medium=cpc&utm_campaign=brand&gclid=Cj0KCQjw8J',
  '?utm_source=twitter&utm_medium=social&utm_campaign=launch_week',
  '?utm_source=partner&utm_medium=affiliate&utm_content=banner_a',
  '?ref=producthunt',
  '?fbclid=IwAR2xY',
];

const WIDTHS = [1440, 1920, 1366, 1536, 1280, 390, 393, 414, 360, 768, 820];

const PATHS = ['/', '/pricing', '/features', '/about', '/contact', '/signup', '/login', '/docs', '/blog', '/careers'];
for (let n = 1; n <= 80; n++) PATHS.push('/blog/post-' + n);
for (const s of ['getting-started', 'api', 'guides', 'integrations', 'self-hosting', 'faq']) {
  for (let n = 1; n <= 10; n++) PATHS.push('/docs/' + s + '/page-' + n);
}
for (let n = 1; n <= 50; n++) PATHS.push('/products/' + (1000 + n * 7));

const CUSTOM_EVENTS = [
  { n: 'Signup', p: { plan: 'pro', trial: true } },
  { n: 'Outbound Link: Click', p: { url: 'https://github.com/farol/farol' } },
  { n: 'File Download', p: { url: 'https://example.com/files/report.pdf' } },
  { n: 'Purchase', p: { sku: 'P-1042' }, $: { currency: 'EUR', amount: '49.90' } },
];

// Public unicast first octets (see common.lua for the ranges skipped).
const FIRST_OCTETS = [];
for (let a = 1; a <= 223; a++) {
  if ([10, 100, 127, 169, 172, 192, 198, 203].indexOf(a) === -1) FIRST_OCTETS.push(a);
}

/** `n` public-looking IPv4 addresses, the same for a given seed. */
export function ipPool(n, poolSeed) {
  const saved = state;
  seed(poolSeed);
  const pool = [];
  for (let i = 0; i < n; i++) pool.push(pick(FIRST_OCTETS) + '.' + (rand(256) - 1) + '.' + (rand(256) - 1) + '.' + rand(254));
  state = saved;
  return pool;
}

/** One tracker-style event object. */
export function event() {
  const url = 'https://example.com' + pick(PATHS) + pick(QUERIES);
  const custom = rand(10) === 1 ? pick(CUSTOM_EVENTS) : null;
  const e = { n: custom ? custom.n : 'pageview', u: url, d: 'example.com', r: pick(REFERRERS), w: pick(WIDTHS) };
  if (custom && custom.p) e.p = custom.p;
  if (custom && custom.$) e.$ = custom.$;
  return e;
}

/** `count` single-beacon requests: `{body, ua, ip}`. */
export function buildBeacons(count, seedValue) {
  const ips = ipPool(10000, 424242);
  seed(seedValue);
  const out = [];
  for (let i = 0; i < count; i++) out.push({ body: JSON.stringify(event()), ua: pick(USER_AGENTS), ip: pick(ips) });
  return out;
}

/** `count` batch bodies of `perRequest` events, each carrying its visitor's `ip` and `ua`. */
export function buildBatches(count, perRequest, seedValue) {
  const ips = ipPool(10000, 424242);
  seed(seedValue);
  const out = [];
  for (let i = 0; i < count; i++) {
    const events = [];
    for (let e = 0; e < perRequest; e++) {
      const ev = event();
      ev.ip = pick(ips);
      ev.ua = pick(USER_AGENTS);
      events.push(ev);
    }
    out.push({ body: JSON.stringify(events), ip: pick(ips) });
  }
  return out;
}
