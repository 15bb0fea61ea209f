import { existsSync, readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createContext, runInContext } from 'node:vm';
import { gunzipSync } from 'node:zlib';
import uWS from 'uWebSockets.js';
import fc from 'fast-check';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRouter } from '../api/http.ts';
import { loadTracker, TRACKER_PATH, trackerRoutes } from '../api/routes/tracker.ts';
import { createLogger } from '../lib/log.ts';
import { ALLOWED_ELEMENTS, htmlProblem, INERT_ATTRIBUTES, URL_ATTRIBUTES } from '../schemas/experiment-safety.ts';
import { changeProblem, type Change } from '../schemas/experiment.ts';
import { Registry } from '../lib/metrics.ts';
import { BOOTSTRAP_SITE, OWNER_TOKEN, startApiInstance, type ApiInstance } from './support/api-instance.ts';
import { startTestCollector, type TestCollector } from './support/collector-harness.ts';
import { allPayloads, PWNED, redirectPayloads } from '../schemas/testing/xss-payloads.ts';

/**
 * The tracker (ingest/tracker/script.js) in a real headless Chromium: pages and the script come
 * from a small node:http server that also records beacons and answers /api/config/<domain>; one
 * case sends to the real collector, and one runs a whole `farol start` (script, config and
 * collector from Farol, an experiment created over the admin API, its results read back). Plus
 * the GET /js/script.js route on uWS.
 */

const CHROMIUM = '/usr/bin/chromium';
const CHROME_UA = 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36';
const SOURCE = readFileSync(TRACKER_PATH, 'utf8');

type Json = Record<string, unknown>;
interface Beacon {
  contentType: string;
  body: Json;
}
interface ConfigReply {
  body: unknown;
  delayMs: number;
  /** Sent as is instead of `body` as JSON (broken answers). */
  raw?: string;
}

/** The test site: pages by path, recorded beacons, config replies by domain. */
class TestSite {
  readonly beacons: Beacon[] = [];
  readonly pages = new Map<string, string>();
  readonly configs = new Map<string, ConfigReply>();
  /** Config answers actually written, by domain. */
  readonly configServed = new Map<string, number>();
  private server: Server | undefined;
  url = '';
  port = 0;

  async start(): Promise<void> {
    const script = loadTracker().body;
    this.server = createServer((req, res) => void this.handle(req, res, script));
    await new Promise<void>((resolve) => this.server?.listen(0, '127.0.0.1', resolve));
    this.port = (this.server.address() as AddressInfo).port;
    this.url = `http://127.0.0.1:${this.port}`;
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise((resolve) => this.server?.close(resolve));
  }

  /** Beacons sent for one site domain (every test uses its own). */
  for(domain: string): Json[] {
    return this.beacons.filter((b) => b.body.d === domain).map((b) => b.body);
  }

  private async handle(req: IncomingMessage, res: ServerResponse, script: Buffer): Promise<void> {
    const url = new URL(req.url ?? '/', this.url);
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    if (url.pathname === '/js/script.js') {
      res.writeHead(200, { 'content-type': 'application/javascript' }).end(script);
    } else if (url.pathname === '/pwn.js') {
      // What a hijacked <script src> would run (tracker safety tests).
      res.writeHead(200, { 'content-type': 'application/javascript' }).end(`top.${PWNED}=1`);
    } else if (url.pathname === '/api/event' && req.method === 'POST') {
      this.beacons.push({ contentType: req.headers['content-type'] ?? '', body: JSON.parse(Buffer.concat(chunks).toString('utf8')) as Json });
      res.writeHead(202, { 'access-control-allow-origin': '*' }).end();
    } else if (url.pathname.startsWith('/api/config/')) {
      const domain = decodeURIComponent(url.pathname.slice('/api/config/'.length));
      const reply = this.configs.get(domain) ?? { body: { experiments: [] }, delayMs: 0 };
      if (reply.delayMs > 0) await new Promise((r) => setTimeout(r, reply.delayMs));
      res.writeHead(200, { 'content-type': 'application/json', 'access-control-allow-origin': '*' }).end(reply.raw ?? JSON.stringify(reply.body));
      this.configServed.set(domain, (this.configServed.get(domain) ?? 0) + 1);
    } else if (this.pages.has(url.pathname)) {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(this.pages.get(url.pathname));
    } else if (url.pathname.startsWith('/files/')) {
      res.writeHead(200, { 'content-type': 'application/octet-stream' }).end('file');
    } else {
      res.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><title>elsewhere</title>elsewhere');
    }
  }
}

interface PageOpts {
  domain: string;
  /** Extra attributes of the tracker's script tag (default: data-allow-automation). */
  attrs?: string;
  head?: string;
  body?: string;
  /** Embed with `defer` (the usual snippet) instead of synchronously in the head. */
  defer?: boolean;
}

function html(o: PageOpts): string {
  const attrs = o.attrs ?? 'data-allow-automation';
  return (
    `<!doctype html><html><head><meta charset="utf-8"><title>t</title>${o.head ?? ''}` +
    `<script ${o.defer === false ? '' : 'defer '}data-domain="${o.domain}" ${attrs} src="/js/script.js"></script>` +
    `</head><body>${o.body ?? '<p>hello</p>'}</body></html>`
  );
}

/** Polls until `f` returns a value other than undefined/false (never asserts on timing). */
async function until<T>(f: () => T | undefined | false | Promise<T | undefined | false>, what: string, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await f();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/**
 * Evaluates `expression` in the page. Page code is passed as text: this project type-checks
 * without the DOM library, and the text runs in the browser as written.
 */
function js<T = unknown>(page: Page, expression: string): Promise<T> {
  return page.evaluate(expression) as Promise<T>;
}

/** The tracker's variation picker, from the script itself (see ingest/tracker/tracker.test.ts). */
function pickVariation(x: Json, id: string): string | undefined {
  const ctx = createContext({});
  (ctx as { window?: unknown }).window = ctx;
  runInContext(SOURCE, ctx);
  return (ctx as { farolTest: { pick(x: Json, id: string): { key: string } | undefined } }).farolTest.pick(x, id)?.key;
}

/** A visitor id that the tracker assigns to `key` of experiment `x`. */
function visitorFor(x: Json, key: string): string {
  for (let i = 0; ; i++) if (pickVariation(x, `v${i}`) === key) return `v${i}`;
}

const site = new TestSite();
let browser: Browser;

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`Chromium not found at ${CHROMIUM}: the tracker browser tests need it (apt-get install chromium); they never download browsers`);
  }
  await site.start();
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--headless=new', '--disable-gpu', '--disable-dev-shm-usage'],
  });
});

afterAll(async () => {
  await browser?.close();
  await site.stop();
});

/** A fresh browser profile (no cookies, no storage) and a page in it. */
async function fresh(): Promise<{ context: BrowserContext; page: Page }> {
  const context = await browser.newContext({ userAgent: CHROME_UA, viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  return { context, page };
}

describe('tracker in a browser: pageviews and events', () => {
  it('sends a pageview on load with the wire fields, as text/plain', async () => {
    site.pages.set('/pv', html({ domain: 'pv.test' }));
    const { context, page } = await fresh();
    await page.goto(`${site.url}/pv?utm_source=news`, { referer: 'https://news.example.org/story' });
    const [pv] = await until(() => site.for('pv.test').length === 1 && site.for('pv.test'), 'pageview');
    expect(pv).toEqual({ n: 'pageview', u: `${site.url}/pv?utm_source=news`, d: 'pv.test', r: 'https://news.example.org/story', w: 1280 });
    expect(site.beacons.find((b) => b.body.d === 'pv.test')?.contentType).toBe('text/plain');
    await context.close();
  });

  it('tracks localhost (the bootstrap site)', async () => {
    site.pages.set('/local', html({ domain: 'localhost' }));
    const { context, page } = await fresh();
    await page.goto(`http://localhost:${site.port}/local`);
    await until(() => site.for('localhost').length === 1, 'pageview on localhost');
    expect(site.for('localhost')[0]).toMatchObject({ n: 'pageview', u: `http://localhost:${site.port}/local`, d: 'localhost' });
    await context.close();
  });

  it('counts History API navigations once per new path, and back/forward', async () => {
    site.pages.set('/spa/one', html({ domain: 'spa.test' }));
    const { context, page } = await fresh();
    await page.goto(`${site.url}/spa/one`);
    await until(() => site.for('spa.test').length === 1, 'first pageview');
    await js(page, `history.pushState({}, '', '/spa/two')`);
    await until(() => site.for('spa.test').length === 2, 'pushState pageview');
    // Same path again: replaceState, pushState with only a query change, a hash change.
    await js(page, `history.replaceState({}, '', '/spa/two'); history.pushState({}, '', '/spa/two?tab=2'); location.hash = '#x'`);
    await js(page, `history.replaceState({}, '', '/spa/three')`);
    await until(() => site.for('spa.test').length === 3, 'replaceState pageview');
    await page.goBack(); // popstate back to /spa/two?tab=2
    await until(() => site.for('spa.test').length === 4, 'popstate pageview');
    const urls = site.for('spa.test').map((b) => [b.n, b.u]);
    expect(urls).toEqual([
      ['pageview', `${site.url}/spa/one`],
      ['pageview', `${site.url}/spa/two`],
      ['pageview', `${site.url}/spa/three`],
      ['pageview', `${site.url}/spa/two?tab=2`],
    ]);
    await context.close();
  });

  it('sends custom events with props and revenue, including calls queued before the script loaded', async () => {
    const stub = `<script>window.farol=window.farol||function(){(farol.q=farol.q||[]).push(arguments)};farol('Early',{props:{when:'before load'}})</script>`;
    site.pages.set('/custom', html({ domain: 'custom.test', head: stub }));
    const { context, page } = await fresh();
    await page.goto(`${site.url}/custom`);
    await until(() => site.for('custom.test').length === 2, 'pageview and queued event');
    const status = await js(
      page,
      `new Promise((resolve) => farol('Signup', { props: { plan: 'pro', seats: 3, trial: true }, revenue: { currency: 'EUR', amount: 29.5 }, callback: resolve }))`,
    );
    expect(status).toEqual({ status: 202 });
    const events = site.for('custom.test');
    expect(events.map((e) => e.n)).toEqual(['pageview', 'Early', 'Signup']);
    expect(events[1]).toMatchObject({ n: 'Early', u: `${site.url}/custom`, p: { when: 'before load' } });
    expect(events[2]).toEqual({
      n: 'Signup',
      u: `${site.url}/custom`,
      d: 'custom.test',
      r: null,
      w: 1280,
      p: { plan: 'pro', seats: 3, trial: true },
      $: { currency: 'EUR', amount: 29.5 },
    });
    // Non-interactive events (they do not end a bounce) and a custom URL, as Plausible's options.
    await js(page, `farol('Video Watched', { interactive: false, u: 'https://example.com/videos/1' })`);
    await until(() => site.for('custom.test').length === 4, 'non-interactive event');
    expect(site.for('custom.test')[3]).toEqual({ n: 'Video Watched', u: 'https://example.com/videos/1', d: 'custom.test', r: null, w: 1280, i: false });
    await context.close();
  });

  it('tracks outbound link clicks and file downloads, not internal links', async () => {
    const body =
      `<a id="in" href="#section">in page</a> <a id="file" href="/files/report.pdf?token=secret" download>report</a> ` +
      `<a id="out" href="http://localhost:${site.port}/elsewhere?q=1"><span id="inner">partner</span></a> <a id="menu" href="http://localhost:${site.port}/menu">menu</a>`;
    site.pages.set('/links', html({ domain: 'links.test', body }));
    const { context, page } = await fresh();
    await page.goto(`${site.url}/links`);
    await until(() => site.for('links.test').length === 1, 'pageview');
    await page.click('#in');
    const download = page.waitForEvent('download');
    await page.click('#file');
    await download;
    await until(() => site.for('links.test').length === 2, 'download event');
    await page.click('#menu', { button: 'right' }); // a context menu is not a visit
    await page.click('#out', { button: 'middle' }); // a middle click opens it in a new tab
    await until(() => site.for('links.test').length === 3, 'outbound event (middle click)');
    await page.click('#inner'); // a click inside the link counts for the link
    await until(() => site.for('links.test').length === 4, 'outbound event');
    const events = site.for('links.test');
    expect(events.map((e) => e.n)).toEqual(['pageview', 'File Download', 'Outbound Link: Click', 'Outbound Link: Click']);
    // u is location.href, fragment included, as Plausible's tracker sends it (the collector drops it).
    expect(events[1]).toMatchObject({ u: `${site.url}/links#section`, p: { url: `${site.url}/files/report.pdf` } });
    expect(events[2]).toMatchObject({ u: `${site.url}/links#section`, p: { url: `http://localhost:${site.port}/elsewhere?q=1` } });
    expect(events[3]).toEqual(events[2]);
    expect(JSON.stringify(site.for('links.test'))).not.toContain('/menu');
    await context.close();
  });

  it('sends nothing when opted out with localStorage.farol_ignore', async () => {
    const head = `<script>localStorage.farol_ignore='true'</script>`;
    site.pages.set('/optout', html({ domain: 'optout.test', head, body: `<a id="out" href="http://localhost:${site.port}/x" target="_blank">x</a>` }));
    const { context, page } = await fresh();
    await page.goto(`${site.url}/optout`);
    await page.waitForFunction(`document.readyState === 'complete'`);
    await js(page, `farol('Signup'); history.pushState({}, '', '/optout/two')`);
    await page.click('#out');
    // Opting back in makes the next event go out: every call above had its chance to send first.
    await js(page, `localStorage.removeItem('farol_ignore'); farol('Sentinel')`);
    await until(() => site.for('optout.test').length >= 1, 'sentinel');
    await new Promise((r) => setTimeout(r, 200));
    expect(site.for('optout.test').map((e) => e.n)).toEqual(['Sentinel']);
    await context.close();
  });

  it('ignores automated browsers (navigator.webdriver) unless data-allow-automation is set', async () => {
    site.pages.set('/robot', html({ domain: 'robot.test', attrs: '' }));
    const { context, page } = await fresh();
    await page.goto(`${site.url}/robot`);
    expect(await js(page, 'navigator.webdriver')).toBe(true);
    await js(page, `farol('Signup'); Object.defineProperty(navigator, 'webdriver', { get: () => false }); farol('Sentinel')`);
    await until(() => site.for('robot.test').length >= 1, 'sentinel');
    await new Promise((r) => setTimeout(r, 200));
    expect(site.for('robot.test').map((e) => e.n)).toEqual(['Sentinel']);
    await context.close();
  });

  it('falls back to navigator.sendBeacon without fetch', async () => {
    site.pages.set('/beacon', html({ domain: 'beacon.test', head: '<script>window.fetch=undefined</script>' }));
    const { context, page } = await fresh();
    await page.goto(`${site.url}/beacon`);
    await until(() => site.for('beacon.test').length === 1, 'pageview by sendBeacon');
    expect(site.beacons.find((b) => b.body.d === 'beacon.test')?.contentType).toMatch(/^text\/plain/);
    expect(site.for('beacon.test')[0]).toMatchObject({ n: 'pageview', u: `${site.url}/beacon` });
    await context.close();
  });
});

describe('tracker in a browser: experiments', () => {
  const hero = {
    id: 'hero',
    pages: ['/exp/**'],
    variations: [
      { key: 'control', weight: 50, changes: [] },
      {
        key: 'b',
        weight: 50,
        changes: [
          { type: 'text', selector: '#headline', value: 'Variant B' },
          { type: 'attribute', selector: '#cta', name: 'href', value: '/signup-b' },
          { type: 'css', value: '#cta{color:rgb(255, 0, 0)}' },
          { type: 'html', selector: '#box', value: '<em>new</em>' },
          { type: 'text', selector: '.late', value: 'Late B' },
        ],
      },
    ],
  };
  // Records, before each frame is painted, whether the page is visible and what the headline says.
  const frames =
    `<script>window.__frames=[];(function f(){var h=document.getElementById('headline');` +
    `__frames.push({o:getComputedStyle(document.documentElement).opacity,t:h?h.textContent:null});requestAnimationFrame(f)})()</script>`;
  const body =
    `<h1 id="headline">Original</h1><a id="cta" href="/signup">Sign up</a><div id="box"><b>old</b></div>` +
    // An element the page adds after the changes were applied (like a client-rendered widget).
    `<script>var t=setInterval(function(){if(document.getElementById('headline').textContent!=='Original'||document.readyState==='complete'&&window.__late){` +
    `clearInterval(t);var p=document.createElement('p');p.className='late';p.textContent='Late A';document.body.appendChild(p)}},10);` +
    `addEventListener('load',function(){setTimeout(function(){window.__late=1},300)})</script>`;
  const expPage = (domain: string): string => html({ domain, attrs: 'data-experiments data-allow-automation', defer: false, head: frames, body });

  interface Seen {
    headline: string | null;
    cta: string | null;
    color: string;
    box: string;
    late: string | null;
    opacity: string;
    guards: number;
    frames: Array<{ o: string; t: string | null }>;
  }
  const seen = (page: Page): Promise<Seen> =>
    js<Seen>(
      page,
      `({
        headline: document.getElementById('headline')?.textContent ?? null,
        cta: document.getElementById('cta')?.getAttribute('href') ?? null,
        color: getComputedStyle(document.getElementById('cta')).color,
        box: document.getElementById('box')?.innerHTML ?? '',
        late: document.querySelector('.late')?.textContent ?? null,
        opacity: getComputedStyle(document.documentElement).opacity,
        guards: [...document.querySelectorAll('style')].filter((s) => s.textContent.includes('opacity')).length,
        frames: window.__frames,
      })`,
    );

  /** Every frame painted while the page was visible showed the variation's headline. */
  function expectNoFlicker(s: Seen, headline: string): void {
    const painted = s.frames.filter((f) => f.o !== '0' && f.t !== null);
    expect(painted.length).toBeGreaterThan(0);
    expect(painted.every((f) => f.t === headline)).toBe(true);
    // The guard hid the page while the (delayed) config was on its way.
    expect(s.frames.some((f) => f.o === '0')).toBe(true);
  }

  it('applies the assigned variation before the page is visible, then shows it and reports the exposure', async () => {
    site.configs.set('exp.test', { body: { experiments: [hero] }, delayMs: 300 });
    site.pages.set('/exp/landing', expPage('exp.test'));
    const { context, page } = await fresh();
    await context.addCookies([{ name: 'farol_exp', value: visitorFor(hero, 'b'), url: site.url }]);
    await page.goto(`${site.url}/exp/landing`);
    await until(() => site.for('exp.test').length === 1, 'pageview');
    await page.waitForFunction(`document.querySelector('.late') !== null`);
    const s = await seen(page);
    expect(s).toMatchObject({ headline: 'Variant B', cta: '/signup-b', color: 'rgb(255, 0, 0)', box: '<em>new</em>', opacity: '1', guards: 0 });
    expectNoFlicker(s, 'Variant B');
    await until(async () => (await seen(page)).late === 'Late B', 'change applied to an element added later');
    expect(site.for('exp.test')[0]).toMatchObject({ n: 'pageview', u: `${site.url}/exp/landing`, exp: { hero: 'b' } });
    // Later events on the page carry the exposure too.
    await js(page, `farol('Signup')`);
    await until(() => site.for('exp.test').length === 2, 'custom event');
    expect(site.for('exp.test')[1]).toMatchObject({ n: 'Signup', exp: { hero: 'b' } });
    await context.close();
  });

  it('leaves the control untouched and still reports its exposure', async () => {
    site.configs.set('ctl.test', { body: { experiments: [hero] }, delayMs: 300 });
    site.pages.set('/exp/control', expPage('ctl.test'));
    const { context, page } = await fresh();
    await context.addCookies([{ name: 'farol_exp', value: visitorFor(hero, 'control'), url: site.url }]);
    await page.goto(`${site.url}/exp/control`);
    await until(() => site.for('ctl.test').length === 1, 'pageview');
    await page.waitForFunction(`getComputedStyle(document.documentElement).opacity === '1'`);
    const s = await seen(page);
    expect(s).toMatchObject({ headline: 'Original', cta: '/signup', box: '<b>old</b>', guards: 0 });
    expect(site.for('ctl.test')[0]).toMatchObject({ exp: { hero: 'control' } });
    await context.close();
  });

  it('keeps a new visitor in one variation across reloads (farol_exp cookie)', async () => {
    site.configs.set('sticky.test', { body: { experiments: [hero] }, delayMs: 0 });
    site.pages.set('/exp/sticky', expPage('sticky.test'));
    const { context, page } = await fresh();
    await page.goto(`${site.url}/exp/sticky`);
    await until(() => site.for('sticky.test').length === 1, 'first pageview');
    const cookies = await context.cookies();
    const cookie = cookies.find((c) => c.name === 'farol_exp');
    expect(cookie).toMatchObject({ path: '/', sameSite: 'Lax' });
    expect((cookie?.expires ?? 0) - Date.now() / 1000).toBeGreaterThan(364 * 86400);
    const expected = pickVariation(hero, cookie?.value ?? '');
    expect(expected === 'b' || expected === 'control').toBe(true);
    const headline = expected === 'b' ? 'Variant B' : 'Original';
    expect((await seen(page)).headline).toBe(headline);
    for (let i = 0; i < 2; i++) {
      await page.reload();
      await until(() => site.for('sticky.test').length === i + 2, 'pageview after reload');
      expect((await seen(page)).headline).toBe(headline);
    }
    expect(site.for('sticky.test').map((e) => e.exp)).toEqual([{ hero: expected }, { hero: expected }, { hero: expected }]);
    expect((await context.cookies()).find((c) => c.name === 'farol_exp')?.value).toBe(cookie?.value);
    await context.close();
  });

  it('shows the original page after the timeout when the config is late, and ignores the late config', async () => {
    site.configs.set('slow.test', { body: { experiments: [{ ...hero, variations: [{ key: 'b', weight: 1, changes: hero.variations[1]?.changes }] }] }, delayMs: 2500 });
    site.pages.set('/exp/slow', expPage('slow.test'));
    const { context, page } = await fresh();
    await page.goto(`${site.url}/exp/slow`);
    await until(() => site.for('slow.test').length === 1, 'pageview');
    expect(site.for('slow.test')[0]).toEqual({ n: 'pageview', u: `${site.url}/exp/slow`, d: 'slow.test', r: null, w: 1280 });
    await until(() => site.configServed.get('slow.test') === 1, 'late config');
    await new Promise((r) => setTimeout(r, 200));
    const s = await seen(page);
    expect(s).toMatchObject({ headline: 'Original', opacity: '1', guards: 0 });
    await context.close();
  });

  it('runs experiments on the pages they name across History API navigations', async () => {
    const promo = {
      id: 'promo',
      pages: ['/shop/promo'],
      variations: [
        {
          key: 'b',
          weight: 100,
          changes: [
            { type: 'text', selector: '.promo', value: 'Promo B' },
            { type: 'css', value: '.promo{color:rgb(0, 128, 0)}' },
          ],
        },
      ],
    };
    site.configs.set('spa-exp.test', { body: { experiments: [promo] }, delayMs: 0 });
    site.pages.set('/shop', html({ domain: 'spa-exp.test', attrs: 'data-experiments data-allow-automation', defer: false, body: '<main id="app"></main>' }));
    const { context, page } = await fresh();
    await page.goto(`${site.url}/shop`);
    await until(() => site.for('spa-exp.test').length === 1, 'first pageview');
    expect(site.for('spa-exp.test')[0]).not.toHaveProperty('exp');
    expect((await context.cookies()).some((c) => c.name === 'farol_exp')).toBe(false); // no experiment page yet
    // The app navigates, then renders the new view a little later.
    await js(page, `history.pushState({}, '', '/shop/promo'); setTimeout(() => { document.getElementById('app').innerHTML = '<p class="promo">Promo A</p>' }, 50)`);
    await until(() => site.for('spa-exp.test').length === 2, 'promo pageview');
    await page.waitForFunction(`document.querySelector('.promo')?.textContent === 'Promo B'`);
    expect(await js(page, `getComputedStyle(document.querySelector('.promo')).color`)).toBe('rgb(0, 128, 0)');
    expect(site.for('spa-exp.test')[1]).toMatchObject({ u: `${site.url}/shop/promo`, exp: { promo: 'b' } });
    await js(page, `history.pushState({}, '', '/shop/other'); document.getElementById('app').innerHTML = '<p class="promo">Other</p>'`);
    await until(() => site.for('spa-exp.test').length === 3, 'pageview off the experiment');
    expect(site.for('spa-exp.test')[2]).not.toHaveProperty('exp');
    expect(await js(page, `getComputedStyle(document.querySelector('.promo')).color`)).toBe('rgb(0, 0, 0)'); // its css is gone
    expect(await js(page, `document.querySelector('.promo').textContent`)).toBe('Other');
    await context.close();
  });

  it.each([
    ['not JSON', { body: null, raw: '<html>oops', delayMs: 0 }],
    ['not a list', { body: { experiments: { id: 'x' } }, delayMs: 0 }],
    ['broken entries', { body: { experiments: [null, { id: 'x', variations: [null, { key: 'b' }] }] }, delayMs: 0 }],
  ])('a config that is %s never stops tracking', async (label, reply) => {
    const domain = `broken-${label.replace(/\W/g, '')}.test`;
    site.configs.set(domain, reply);
    site.pages.set(`/exp/${domain}`, expPage(domain));
    const { context, page } = await fresh();
    await page.goto(`${site.url}/exp/${domain}`);
    await until(() => site.for(domain).length === 1, 'pageview');
    expect(site.for(domain)[0]).toEqual({ n: 'pageview', u: `${site.url}/exp/${domain}`, d: domain, r: null, w: 1280 });
    await page.waitForFunction(`getComputedStyle(document.documentElement).opacity === '1'`);
    expect((await seen(page)).headline).toBe('Original');
    await context.close();
  });

  it('redirect changes navigate with location.replace, carrying query, referrer and exposure', async () => {
    const landing = { id: 'landing', pages: ['/lp*'], variations: [{ key: 'b', weight: 1, changes: [{ type: 'redirect', url: '/lp-b' }] }] };
    site.configs.set('redir.test', { body: { experiments: [landing] }, delayMs: 0 });
    site.pages.set('/lp', expPage('redir.test'));
    site.pages.set('/lp-b', expPage('redir.test'));
    const { context, page } = await fresh();
    await page.goto(`${site.url}/lp?utm_source=news`, { referer: 'https://search.example/', waitUntil: 'commit' });
    await page.waitForURL(`${site.url}/lp-b?utm_source=news`);
    await until(() => site.for('redir.test').length === 1, 'pageview of the redirect target');
    await page.waitForFunction(`getComputedStyle(document.documentElement).opacity === '1'`);
    await js(page, `farol('Sentinel')`);
    await until(() => site.for('redir.test').length === 2, 'sentinel');
    const [pv, sentinel] = site.for('redir.test');
    // One pageview only: the original page is never counted, the target (also an /lp* page) does not redirect again.
    expect(pv).toEqual({ n: 'pageview', u: `${site.url}/lp-b?utm_source=news`, d: 'redir.test', r: 'https://search.example/', w: 1280, exp: { landing: 'b' } });
    expect(sentinel).toMatchObject({ n: 'Sentinel', exp: { landing: 'b' } });
    // location.replace: no history entry for /lp (as many entries as a page reached by one navigation).
    const plain = await context.newPage();
    await plain.goto(`${site.url}/elsewhere`);
    expect(await js(page, 'history.length')).toBe(await js(plain, 'history.length'));
    await context.close();
  });
});

describe('tracker in a browser: experiment changes never run script', () => {
  /**
   * A fresh page that counts every attempt of a payload to run (`window.__pwned` set, in any
   * document or frame of the page, across navigations) and every dialog.
   */
  async function watched(): Promise<{ context: BrowserContext; page: Page; pwned: () => number; dialogs: string[] }> {
    const { context, page } = await fresh();
    let pwned = 0;
    const dialogs: string[] = [];
    await context.exposeBinding('__farolPwned', () => {
      pwned++;
    });
    await context.addInitScript(`Object.defineProperty(window, '${PWNED}', { configurable: true, get() { return undefined }, set() { window.__farolPwned() } })`);
    page.on('dialog', (d) => {
      dialogs.push(d.message());
      void d.dismiss();
    });
    return { context, page, pwned: () => pwned, dialogs };
  }

  // Script gadgets the server cannot see (a selector matches whatever the page has under that id):
  // an empty <script> the page left in the DOM runs what is put into it, or the src it is given.
  const gadgets: Change[] = [
    { type: 'text', selector: '#dormant1', value: `top.${PWNED}=1` },
    { type: 'html', selector: '#dormant2', value: `top.${PWNED}=1` },
    { type: 'attribute', selector: '#dormant3', name: 'src', value: '/pwn.js' },
  ];
  const benign = [
    { type: 'text', selector: '#headline', value: 'Variant B' },
    { type: 'html', selector: '#box2', value: '<em>new</em> <a href="/ok?a=1&amp;b=2" title="t" target="_blank">ok</a> <img src="/px.png" alt="a">' },
    { type: 'attribute', selector: '#cta', name: 'href', value: '/signup-b' },
    { type: 'css', value: '#cta{color:rgb(255, 0, 0)}' },
  ];
  const body =
    '<h1 id="headline">Original</h1><a id="cta" href="/signup">Sign up</a><div id="box"><b>old</b></div><div id="box2"></div>' +
    [1, 2, 3].map((i) => `<script id="dormant${i}"></script><script id="probe${i}"></script>`).join('');
  const page = (domain: string): string => html({ domain, attrs: 'data-experiments data-allow-automation', defer: false, body });

  it('applies none of an attacker’s changes served straight to it (no server in between), and still the good ones', async () => {
    for (const g of gadgets) expect(changeProblem(g), JSON.stringify(g)).toBeUndefined(); // only the tracker can stop these
    const evil = allPayloads.map(([, change]) => change).filter((c) => c.type !== 'redirect');
    const x = { id: 'xss', variations: [{ key: 'b', weight: 1, changes: [...evil, ...gadgets, ...benign] }] };
    site.configs.set('xss.test', { body: { experiments: [x] }, delayMs: 0 });
    site.pages.set('/xss', page('xss.test'));
    const { context, page: p, pwned, dialogs } = await watched();
    await p.goto(`${site.url}/xss`);
    await until(() => site.for('xss.test').length === 1, 'pageview');
    expect(site.for('xss.test')[0]).toMatchObject({ exp: { xss: 'b' } });
    await p.waitForFunction(`document.readyState === 'complete' && document.querySelector('#box2 img') !== null && [...document.images].every((i) => i.complete)`);
    await p.evaluate('new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)))');

    const allowed = [...ALLOWED_ELEMENTS];
    const dom = await js<{ bad: string[]; urls: string[]; foreign: string[]; dormant: string[]; headline: string; cta: string; color: string; box2: string }>(
      p,
      `({
        bad: [...document.querySelectorAll('*')].flatMap((e) => [...e.attributes].filter((a) => /^on|^(srcdoc|formaction|action|xlink:href|srcset|style|data|background|ping)$/i.test(a.name)).map((a) => e.localName + ' ' + a.name)),
        urls: [...document.querySelectorAll('[href], [src]')].map((e) => e.getAttribute('href') ?? e.getAttribute('src')).filter((u) => !/^https?:$/.test(new URL(u, location.href).protocol)),
        foreign: [...document.querySelectorAll('#box *, #box2 *')].map((e) => e.localName).filter((n) => !${JSON.stringify(allowed)}.includes(n)),
        dormant: [1, 2, 3].map((i) => document.getElementById('dormant' + i)).map((s) => s.textContent + '|' + (s.getAttribute('src') ?? '')),
        headline: document.getElementById('headline').textContent,
        cta: document.getElementById('cta').getAttribute('href'),
        color: getComputedStyle(document.getElementById('cta')).color,
        box2: document.getElementById('box2').innerHTML,
      })`,
    );
    expect(pwned()).toBe(0);
    expect(dialogs).toEqual([]);
    expect(dom).toMatchObject({ bad: [], urls: [], foreign: [], dormant: ['|', '|', '|'] });
    // The good changes of the same variation still applied.
    expect(dom).toMatchObject({ headline: 'Variant B', cta: '/signup-b', color: 'rgb(255, 0, 0)' });
    expect(dom.box2).toBe(benign[1]?.value);

    // The gadgets are real in this browser: done by the page itself, each one runs.
    await js(p, `document.getElementById('probe1').textContent = 'top.${PWNED}=1'; document.getElementById('probe2').append('top.${PWNED}=1'); document.getElementById('probe3').src = '/pwn.js'`);
    await until(() => pwned() === 3, 'the probes to run');
    await context.close();
  });

  it('follows no javascript:, data: or vbscript: redirect, and still a good one', async () => {
    const evil = redirectPayloads.map(([, change]) => change).filter((c) => !String(c.url).startsWith('//'));
    const x = { id: 'xr', pages: ['/xss-redirect'], variations: [{ key: 'b', weight: 1, changes: [...evil, { type: 'redirect', url: '/xss-landed' }] }] };
    site.configs.set('xr.test', { body: { experiments: [x] }, delayMs: 0 });
    site.pages.set('/xss-redirect', page('xr.test'));
    site.pages.set('/xss-landed', page('xr.test'));
    const { context, page: p, pwned, dialogs } = await watched();
    await p.goto(`${site.url}/xss-redirect`, { waitUntil: 'commit' });
    await p.waitForURL(`${site.url}/xss-landed`);
    await until(() => site.for('xr.test').length === 1, 'pageview of the target');
    expect(site.for('xr.test')[0]).toMatchObject({ u: `${site.url}/xss-landed`, exp: { xr: 'b' } });
    expect(pwned()).toBe(0);
    expect(dialogs).toEqual([]);
    await context.close();
  });

  it.each([
    ['no data-domain', '/no-domain', ''],
    ['an empty data-domain', '/empty-domain', 'data-domain=""'],
  ])('runs no experiments with %s (no fallback to location.hostname)', async (_label, path, attr) => {
    const hijack = { id: 'hijack', variations: [{ key: 'b', weight: 1, changes: [{ type: 'text', selector: '#headline', value: 'Hijacked' }] }] };
    site.configs.set('127.0.0.1', { body: { experiments: [hijack] }, delayMs: 0 });
    site.pages.set(
      path,
      `<!doctype html><html><head><script ${attr} data-experiments data-allow-automation src="/js/script.js"></script></head><body><h1 id="headline">Original</h1></body></html>`,
    );
    const before = site.for('127.0.0.1').length;
    const { context, page: p } = await fresh();
    await p.goto(`${site.url}${path}`);
    // Still tracked (under the hostname, as Plausible does), but with no experiment and no config request.
    await until(() => site.for('127.0.0.1').length === before + 1, 'pageview');
    expect(site.for('127.0.0.1')[before]).not.toHaveProperty('exp');
    await p.waitForFunction(`getComputedStyle(document.documentElement).opacity === '1'`);
    expect(await js(p, `document.getElementById('headline').textContent`)).toBe('Original');
    expect(site.configServed.get('127.0.0.1')).toBeUndefined();
    await context.close();
  });

  it('agrees with the server: whatever html the server accepts, Chromium parses into allowed elements, attributes and URLs only', async () => {
    // Tag soup built from the pieces XSS vectors are made of; the server accepts a share of it.
    const piece = fc.constantFrom(
      '<', '>', '/', '=', '"', "'", ' ', '\t', '\n', '!--', '-->', '&', '#', ';', 'x', '1',
      'a', 'p', 'b', 'img', 'div', 'script', 'svg', 'math', 'style', 'iframe', 'table', 'td', 'template', 'noscript', 'textarea', 'title',
      'href', 'src', 'title', 'alt', 'class', 'onclick', 'onerror', 'srcdoc', 'xlink:href', 'aria-label',
      'javascript:', 'JaVaScRiPt:', 'java\tscript:', '&#106;', '&#x6A', '&#0000106', '&colon;', '&Tab;', '&amp;', '&lt;', 'data:', 'https://x.test/', '/ok', 'alert(1)',
    );
    const tag = fc
      .tuple(
        fc.constantFrom('a', 'p', 'b', 'img', 'div', 'td', 'table', 'script', 'svg', 'style', 'template', 'x-y', 'A', 'IMG'),
        fc.array(fc.tuple(fc.constantFrom(' ', '\n', '  ', '/', ''), fc.constantFrom('href', 'src', 'title', 'alt', 'onclick', 'class', 'HREF', 'srcdoc', 'aria-label'), fc.array(piece, { maxLength: 4 }).map((v) => v.join('')), fc.constantFrom('"', "'", '')), { maxLength: 3 }),
        fc.constantFrom('>', '/>', ' >', ''),
      )
      .map(([name, attrs, end]) => `<${name}${attrs.map(([sp, n, v, q]) => `${sp}${n}=${q}${v}${q}`).join('')}${end}`);
    const soup = fc.array(fc.oneof(piece, tag, tag.map((t) => `${t}x</${t.slice(1, t.search(/[\s/>]|$/))}>`)), { maxLength: 12 }).map((a) => a.join(''));
    const samples = fc.sample(soup, { numRuns: 100_000, seed: 8 });
    const accepted = [...new Set(samples.filter((h) => h.includes('<') && htmlProblem(h) === undefined))];
    expect(accepted.length).toBeGreaterThan(1500);
    expect(accepted.filter((h) => /<(a|img)[^>]*(href|src)=/i.test(h)).length).toBeGreaterThan(100);

    const { context, page: p } = await fresh();
    await p.goto(`${site.url}/elsewhere`);
    const allowedAttributes = [...INERT_ATTRIBUTES, ...URL_ATTRIBUTES];
    const violations = await js<string[]>(
      p,
      `(${JSON.stringify(accepted)}).flatMap((h) => {
        const elements = ${JSON.stringify([...ALLOWED_ELEMENTS])}, attributes = ${JSON.stringify(allowedAttributes)};
        const parsed = new DOMParser().parseFromString(h, 'text/html').body;
        return [...parsed.querySelectorAll('*')].flatMap((e) => {
          const out = [];
          if (!(e instanceof HTMLElement) || !elements.includes(e.localName)) out.push('element ' + e.localName);
          for (const a of [...e.attributes]) {
            if (!attributes.includes(a.name) && !/^aria-[a-z]+$/.test(a.name)) out.push('attribute ' + a.name);
            else if ((a.name === 'href' || a.name === 'src') && !/^https?:$/.test(new URL(a.value, location.href).protocol)) out.push('url ' + a.value);
          }
          return out.map((v) => JSON.stringify(h) + ': ' + v);
        });
      })`,
    );
    expect(violations).toEqual([]);
    await context.close();
  });
});

describe('tracker to the real collector', () => {
  let collector: TestCollector;
  beforeAll(async () => {
    collector = await startTestCollector();
  });
  afterAll(async () => {
    await collector?.stop();
  });

  it('pageview and a custom event with props, revenue and exposure are accepted and enriched', async () => {
    const x = { id: 'hero', variations: [{ key: 'b', weight: 1, changes: [{ type: 'text', selector: '#headline', value: 'Variant B' }] }] };
    site.configs.set('real.test', { body: { experiments: [x] }, delayMs: 0 });
    site.pages.set(
      '/real',
      html({ domain: 'real.test', attrs: `data-experiments data-allow-automation data-api="${collector.url}/api/event"`, body: '<h1 id="headline">Original</h1>' }),
    );
    const { context, page } = await fresh();
    await page.goto(`${site.url}/real?utm_source=newsletter`, { referer: 'https://www.google.com/' });
    await page.waitForFunction(`document.getElementById('headline')?.textContent === 'Variant B'`);
    await js(page, `farol('Signup', { props: { plan: 'pro', seats: 3 }, revenue: { currency: 'eur', amount: 29.5 } })`);
    const events = await until(async () => {
      const e = await collector.events();
      return e.length === 2 && e;
    }, 'two events in the hub');
    events.sort((a, b) => a.ts - b.ts || (a.name === 'pageview' ? -1 : 1));
    expect(events[0]).toMatchObject({
      site: 'real.test',
      name: 'pageview',
      hostname: '127.0.0.1',
      pathname: '/real',
      utmSource: 'newsletter',
      browser: 'Chrome',
      exp: { hero: 'b' },
      screen: 'Laptop',
    });
    expect(events[1]).toMatchObject({ site: 'real.test', name: 'Signup', props: { plan: 'pro', seats: '3' }, revenue: { currency: 'EUR', amount: 29.5 }, exp: { hero: 'b' } });
    expect(site.for('real.test')).toEqual([]);
    await context.close();
  });
});

describe('GET /js/script.js', () => {
  let app: uWS.TemplatedApp;
  let socket: uWS.us_listen_socket;
  let base: string;
  beforeAll(async () => {
    app = uWS.App();
    const router = createRouter(app, { log: createLogger('silent'), metrics: new Registry() });
    trackerRoutes(router);
    socket = await new Promise<uWS.us_listen_socket>((resolve, reject) => app.listen('127.0.0.1', 0, (s) => (s ? resolve(s) : reject(new Error('listen')))));
    base = `http://127.0.0.1:${uWS.us_socket_local_port(socket)}`;
  });
  afterAll(() => {
    uWS.us_listen_socket_close(socket);
  });

  it('serves the script with caching headers, plain or gzipped', async () => {
    const plain = await fetch(`${base}/js/script.js`, { headers: { 'accept-encoding': 'identity' } });
    expect(plain.status).toBe(200);
    expect(plain.headers.get('content-type')).toBe('application/javascript; charset=utf-8');
    expect(plain.headers.get('cache-control')).toBe('public, max-age=3600');
    expect(plain.headers.get('access-control-allow-origin')).toBe('*');
    expect(plain.headers.get('content-encoding')).toBeNull();
    expect(plain.headers.get('etag')).toMatch(/^"[\w-]{22}"$/);
    expect(await plain.text()).toBe(SOURCE);

    const zipped = await fetch(`${base}/js/script.js`, { headers: { 'accept-encoding': 'gzip, deflate' } });
    expect(zipped.headers.get('content-encoding')).toBe('gzip');
    expect(zipped.headers.get('vary')).toBe('Accept-Encoding');
    expect(zipped.headers.get('etag')).toBe(plain.headers.get('etag'));
    expect(await zipped.text()).toBe(SOURCE); // fetch decodes it
    expect(gunzipSync(loadTracker().gzip).toString('utf8')).toBe(SOURCE);
    expect(loadTracker().gzip.length).toBeLessThan(3000);

    const refused = await fetch(`${base}/js/script.js`, { headers: { 'accept-encoding': 'gzip;q=0, identity' } });
    expect(refused.headers.get('content-encoding')).toBeNull();
    await refused.arrayBuffer();
  });

  it('answers 304 to a matching If-None-Match and 200 to a stale one', async () => {
    const etag = (await fetch(`${base}/js/script.js`)).headers.get('etag') ?? '';
    const same = await fetch(`${base}/js/script.js`, { headers: { 'if-none-match': `"other", W/${etag}` } });
    expect(same.status).toBe(304);
    expect(same.headers.get('etag')).toBe(etag);
    expect(same.headers.get('cache-control')).toBe('public, max-age=3600');
    expect(await same.text()).toBe('');
    const stale = await fetch(`${base}/js/script.js`, { headers: { 'if-none-match': '"stale"' } });
    expect(stale.status).toBe(200);
    await stale.arrayBuffer();
  });
});

describe('tracker on the whole product (farol start)', () => {
  let farol: ApiInstance;
  beforeAll(async () => {
    farol = await startApiInstance();
  }, 120_000);
  afterAll(async () => {
    await farol?.stop();
  });

  it('serves the script and the config, and its beacons become experiment results', async () => {
    const auth = { authorization: `Bearer ${OWNER_TOKEN}`, 'content-type': 'application/json' };
    const changes = [{ type: 'text', selector: '#headline', value: 'Variant B' }];
    const hero = {
      id: 'hero',
      name: 'Hero headline',
      goal: { type: 'event', name: 'Signup' },
      control: 'control',
      status: 'running',
      pages: ['/shop'],
      variations: [
        { key: 'control', weight: 50, changes: [] },
        { key: 'b', weight: 50, changes },
      ],
    };
    const created = await fetch(`${farol.url}/api/v1/sites/${BOOTSTRAP_SITE}/experiments`, { method: 'POST', headers: auth, body: JSON.stringify(hero) });
    expect(created.status, await created.text()).toBe(201);

    // The page lives on another origin and loads everything from Farol, as a customer's site would.
    site.pages.set(
      '/shop',
      `<!doctype html><html><head><script src="${farol.url}/js/script.js" data-domain="${BOOTSTRAP_SITE}" data-experiments data-allow-automation></script>` +
        `</head><body><h1 id="headline">Original</h1></body></html>`,
    );
    // Two visitors (the collector tells them apart by User-Agent here: same IP), one per variation.
    for (const [key, version] of [
      ['b', '124'],
      ['control', '125'],
    ] as const) {
      const context = await browser.newContext({ userAgent: CHROME_UA.replace('124', version) });
      await context.addCookies([{ name: 'farol_exp', value: visitorFor(hero, key), url: site.url }]);
      const page = await context.newPage();
      await page.goto(`${site.url}/shop`);
      await page.waitForFunction(`getComputedStyle(document.documentElement).opacity === '1'`);
      expect(await js(page, `document.getElementById('headline').textContent`)).toBe(key === 'b' ? 'Variant B' : 'Original');
      if (key === 'b') expect(await js(page, `new Promise((resolve) => farol('Signup', { callback: resolve }))`)).toEqual({ status: 202 });
      await context.close();
    }

    const results = await until(async () => {
      const res = await fetch(`${farol.url}/api/v2/experiments/hero/results?site_id=${BOOTSTRAP_SITE}`, { headers: auth });
      if (res.status !== 200) throw new Error(`results: ${res.status} ${await res.text()}`);
      const json = (await res.json()) as { results: { variations: Array<{ key: string; exposures: number; conversions: number }> } };
      const v = json.results.variations;
      return v.reduce((n, x) => n + x.exposures, 0) === 2 && v.some((x) => x.conversions > 0) && v;
    }, 'experiment results', 60_000);
    expect(results.map((v) => ({ key: v.key, exposures: v.exposures, conversions: v.conversions }))).toEqual([
      { key: 'control', exposures: 1, conversions: 0 },
      { key: 'b', exposures: 1, conversions: 1 },
    ]);
  }, 120_000);
});
