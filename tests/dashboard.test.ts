import { access, constants, mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ExperimentResults } from '../api/stats/experiment.ts';
import { geoCountries, pollUntil, sendAllOnce } from './support/e2e.ts';
import { startFarol, type FarolProcess } from './support/farol-process.ts';
import { computeWireTruth, generateWireTraffic, planBatches, type SiteCounts, type WireBatchEvent, type WireVisitor } from './support/wire-oracle.ts';

/**
 * The dashboard against a real `farol start` (collector, hub, processor, API and dashboard on one
 * port, bootstrapped with a known owner token and the site `localhost`): known traffic goes in
 * through the collector, then headless Chromium opens `/`, signs in with the token and every
 * number it shows is compared with `POST /api/v2/query` answers and with the oracle's truth.
 * Chromium is Debian's (/usr/bin/chromium); browsers are never downloaded.
 */

const CHROMIUM = '/usr/bin/chromium';
const TOKEN = 'farol-dashboard-test-owner-token-0123456789';
const SITE = 'localhost';
const ARTIFACTS = fileURLToPath(new URL('../test-artifacts/', import.meta.url));
const UPLOT_ESM = fileURLToPath(new URL('../node_modules/uplot/dist/uPlot.esm.js', import.meta.url));
const DASHBOARD_DIR = fileURLToPath(new URL('../api/dashboard/', import.meta.url));

/**
 * Experiments created through the API, and the visitors sent to each
 * arm: every one exposed once, the first `conversions` of them then sending the goal. The second
 * one's split contradicts its 50/50 weights (a sample ratio mismatch).
 */
const EXPERIMENTS = [
  { id: 'hero', name: 'Hero headline', arms: { control: { exposures: 40, conversions: 4 }, bold: { exposures: 40, conversions: 12 } } },
  { id: 'pricing-srm', name: 'Pricing table', arms: { control: { exposures: 45, conversions: 2 }, annual: { exposures: 10, conversions: 1 } } },
] as const;

/** Page paths whose text is markup: they must show as text and never run. */
const XSS_PATHS = ['/<img src=x onerror="window.__xss=1">', '/<script>window.__xss=2</script>'];

interface QueryAnswer {
  results: { dimensions: string[]; metrics: (number | null)[]; comparison?: { dimensions: (string | null)[]; metrics: (number | null)[]; change: (number | null)[] } }[];
  meta: { time_labels?: string[] };
}

interface StatCard {
  metric: string;
  value: string;
  text: string;
  change: string | undefined;
}

describe('dashboard at / against farol start', () => {
  let dataDir = '';
  let proc: FarolProcess | undefined;
  let browser: Browser | undefined;
  let page: Page | undefined;
  let truth: SiteCounts | undefined;
  const pageErrors: string[] = [];

  const api = async (method: string, path: string, body?: unknown, token = TOKEN): Promise<{ status: number; json: unknown; headers: Headers }> => {
    if (proc === undefined) throw new Error('farol is not running');
    const res = await fetch(`${proc.url}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      signal: AbortSignal.timeout(30_000),
    });
    const text = await res.text();
    let json: unknown = text;
    try {
      json = JSON.parse(text) as unknown;
    } catch {
      // not JSON: kept as text
    }
    return { status: res.status, json, headers: res.headers };
  };

  const query = async (body: Record<string, unknown>): Promise<QueryAnswer> => {
    const r = await api('POST', '/api/v2/query', { site_id: SITE, ...body });
    if (r.status !== 200) throw new Error(`query ${JSON.stringify(body)} answered ${r.status}: ${JSON.stringify(r.json)}`);
    return r.json as QueryAnswer;
  };

  /** Evaluates an expression in the page (a string: the test's types know no DOM). */
  const js = <T>(expression: string): Promise<T> => (page as Page).evaluate(expression) as Promise<T>;

  /** Waits until the dashboard has no request in flight. */
  const ready = async (): Promise<void> => {
    // Polled from here: waitForFunction would eval in the page, which its CSP (rightly) forbids.
    await pollUntil(async () => ((await js<string | undefined>('document.body.dataset.state')) === 'ready' ? true : undefined), {
      timeoutMs: 20_000,
      intervalMs: 50,
      describe: () => 'the dashboard never became ready',
    });
  };

  const statCards = (): Promise<StatCard[]> =>
    js(`[...document.querySelectorAll('#top-stats .stat')].map((e) => ({
      metric: e.dataset.metric ?? '',
      value: e.dataset.value ?? '',
      text: e.querySelector('.stat-value')?.textContent ?? '',
      change: e.querySelector('.stat-change')?.dataset.change,
    }))`);

  /** The rows of a breakdown panel: the value, its label, and each metric as data and as text. */
  const panelRows = (panel: string): Promise<{ value: string; label: string; metrics: string[]; texts: string[] }[]> =>
    js(`[...document.querySelectorAll(${JSON.stringify(`#panel-${panel} tbody tr`)})].map((r) => ({
      value: r.dataset.value ?? '',
      label: r.querySelector('.row-filter')?.textContent ?? '',
      metrics: [...r.querySelectorAll('td.num')].map((td) => td.dataset.value ?? ''),
      texts: [...r.querySelectorAll('td.num')].map((td) => td.textContent ?? ''),
    }))`);

  /** Checks the top-stat cards against an API answer for the same metrics, numbers and text. */
  const expectCardsEqual = (cards: StatCard[], metrics: readonly string[], answer: QueryAnswer): void => {
    const row = answer.results[0];
    if (row === undefined) throw new Error('the API answered no row');
    expect(cards.map((c) => c.metric)).toEqual(metrics);
    cards.forEach((c, i) => {
      const value = row.metrics[i];
      expect(c.value, c.metric).toBe(String(value));
      if (c.metric === 'visitors' || c.metric === 'visits' || c.metric === 'pageviews') expect(Number(c.text.replace(/,/g, '')), c.metric).toBe(value);
      if (c.metric === 'views_per_visit') expect(Number(c.text), c.metric).toBe(value);
      if (c.metric === 'bounce_rate') expect(c.text).toBe(`${value}%`);
      if (row.comparison !== undefined) expect(c.change, c.metric).toBe(String(row.comparison.change[i]));
    });
  };

  beforeAll(async () => {
    try {
      await access(CHROMIUM, constants.X_OK);
    } catch {
      throw new Error(`${CHROMIUM} is missing: install Debian's chromium (apt-get install chromium); this test never downloads a browser`);
    }
    const traffic = generateWireTraffic({ seed: 20_261_130, sites: [SITE], targetEvents: 600, idPrefix: 'dash' });
    const ua = traffic.visitors[0]?.ua ?? '';
    // One visitor per markup path (a pageview each), from an address the other visitors use too.
    XSS_PATHS.forEach((path, i) => {
      const ip = `85.214.200.${10 + i}`;
      if (traffic.visitors.some((v) => v.ip === ip && v.ua === ua)) throw new Error(`generator already has visitor ${ip}`);
      const event: WireBatchEvent = { n: 'pageview', u: `https://${SITE}${encodeURI(path)}`, d: SITE, id: `dash-xss-${i}`, ip, ua };
      const visitor: WireVisitor = { site: SITE, ip, ua, origin: { channel: 'Direct' }, events: [event] };
      traffic.visitors.push(visitor);
      traffic.ips.push(ip);
    });

    dataDir = await mkdtemp(join(tmpdir(), 'farol-dashboard-'));
    proc = await startFarol('start', { FAROL_DATA_DIR: dataDir, FAROL_TRUST_PROXY: '127.0.0.1/32', FAROL_BOOTSTRAP_TOKEN: TOKEN, FAROL_HUB_PARTITIONS: '2' });

    // Experiments: created (running) before any exposure is sent.
    for (const plan of EXPERIMENTS) {
      const created = await api('POST', `/api/v1/sites/${SITE}/experiments`, {
        id: plan.id,
        name: plan.name,
        goal: { type: 'event', name: 'Signup' },
        control: 'control',
        variations: Object.keys(plan.arms).map((key) => ({ key, weight: 100 / Object.keys(plan.arms).length })),
        status: 'running',
      });
      if (created.status !== 201) throw new Error(`creating experiment ${plan.id} answered ${created.status}: ${JSON.stringify(created.json)}`);
    }
    // Exposed visitors, one per (arm, i), each from its own address.
    let n = 0;
    for (const plan of EXPERIMENTS) {
      for (const [key, arm] of Object.entries(plan.arms)) {
        for (let i = 0; i < arm.exposures; i++, n++) {
          const ip = `85.215.${Math.floor(n / 200)}.${(n % 200) + 1}`;
          const base = { d: SITE, u: `https://${SITE}/`, ip, ua, exp: { [plan.id]: key } };
          const events: (WireBatchEvent & { exp: Record<string, string> })[] = [{ ...base, n: 'pageview', id: `dash-exp-${n}-0` }];
          if (i < arm.conversions) events.push({ ...base, n: 'Signup', id: `dash-exp-${n}-1` });
          traffic.visitors.push({ site: SITE, ip, ua, origin: { channel: 'Direct' }, events });
          traffic.ips.push(ip);
        }
      }
    }

    const countries = await geoCountries(traffic.ips);
    truth = computeWireTruth(traffic, (ip) => countries.get(ip) ?? '').sites[SITE];
    if (truth === undefined) throw new Error('no truth for the site');
    for (const p of XSS_PATHS) expect(truth.pages[p]).toEqual({ pageviews: 1, visitors: 1 });
    const sent = await sendAllOnce(proc.url, planBatches(traffic, { senders: 2, batchSize: 100, seed: 5 }));
    expect(sent.failures).toEqual([]);
    const expected = truth;
    // Until the API shows every event (the processor flushes at least once a second).
    await pollUntil(
      async () => {
        const r = await api('POST', '/api/v2/query', { site_id: SITE, metrics: ['events', 'pageviews'], date_range: '28d' });
        const row = (r.json as QueryAnswer | undefined)?.results?.[0];
        return r.status === 200 && row?.metrics[0] === expected.events && row.metrics[1] === expected.pageviews ? true : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 300, describe: () => `the API never showed ${expected.events} events` },
    );

    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--headless=new', '--disable-gpu', '--disable-dev-shm-usage'] });
    page = await browser.newPage({ viewport: { width: 1280, height: 1400 } });
    page.on('pageerror', (err) => pageErrors.push(err.message));
    page.on('console', (m) => {
      if (m.type() === 'error' && /Content Security Policy/i.test(m.text())) pageErrors.push(m.text());
    });
  }, 180_000);

  afterAll(async () => {
    await browser?.close();
    if (proc !== undefined) {
      proc.child.kill('SIGTERM');
      await proc.exited;
    }
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  }, 30_000);

  it('serves the page and its assets from memory with ETag, no-cache, gzip and a CSP', async () => {
    const url = (proc as FarolProcess).url;
    const res = await fetch(`${url}/`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(res.headers.get('cache-control')).toBe('no-cache');
    expect(res.headers.get('content-security-policy')).toContain("script-src 'self'");
    expect(res.headers.get('content-security-policy')).not.toContain('unsafe');
    const etag = res.headers.get('etag') ?? '';
    expect(etag).toMatch(/^"[\w-]+"$/);
    const html = await res.text();
    expect(html).toContain('/dashboard/app.js');

    const again = await fetch(`${url}/`, { headers: { 'if-none-match': etag } });
    expect(again.status).toBe(304);
    expect(await again.text()).toBe('');

    // Node's fetch would decode gzip itself: read the raw bytes over the wire instead.
    const raw = await rawGet(url, '/dashboard/uplot.esm.js', { 'accept-encoding': 'gzip' });
    expect(raw.status).toBe(200);
    expect(raw.headers['content-encoding']).toBe('gzip');
    expect(raw.headers['content-type']).toBe('text/javascript; charset=utf-8');
    expect(gunzipSync(raw.body).equals(await readFile(UPLOT_ESM))).toBe(true);
    const plain = await rawGet(url, '/dashboard/uplot.esm.js', {});
    expect(plain.headers['content-encoding']).toBeUndefined();
    expect(plain.body.equals(await readFile(UPLOT_ESM))).toBe(true);

    for (const path of ['/dashboard/app.js', '/dashboard/style.css', '/dashboard/uplot.min.css']) {
      expect((await fetch(`${url}${path}`)).status, path).toBe(200);
    }
    // Every module of the page is served as it is on disk, and each one it imports or preloads too.
    const modules = (await readdir(DASHBOARD_DIR)).filter((f) => f.endsWith('.js'));
    expect(modules.length).toBeGreaterThan(1);
    const linked = new Set<string>();
    for (const m of modules) {
      const source = await readFile(join(DASHBOARD_DIR, m), 'utf8');
      const served = await fetch(`${url}/dashboard/${m}`);
      expect(served.status, m).toBe(200);
      expect(served.headers.get('content-type'), m).toBe('text/javascript; charset=utf-8');
      expect(await served.text(), m).toBe(source);
      for (const [, name] of source.matchAll(/from '\.\/([\w.-]+\.js)'/g)) linked.add(name!);
    }
    for (const [, name] of html.matchAll(/href="\/dashboard\/([\w.-]+\.js)"/g)) linked.add(name!);
    expect(linked.size).toBeGreaterThan(1);
    for (const name of linked) expect((await fetch(`${url}/dashboard/${name}`)).status, name).toBe(200);
    // Type-checking files stay off the wire.
    for (const path of ['/dashboard/tsconfig.json', '/dashboard/uplot.esm.d.ts']) expect((await fetch(`${url}${path}`)).status, path).toBe(404);
    expect((await fetch(`${url}/dashboard/../cli/main.ts`)).status).toBe(404);
    expect((await fetch(`${url}/dashboard/nope.js`)).status).toBe(404);
  });

  it('signs in with the token; the top stats equal the API and the truth', async () => {
    const p = page as Page;
    const t = truth as SiteCounts;
    await p.goto(`${(proc as FarolProcess).url}/`);
    await p.waitForSelector('#login:not([hidden])');
    // The token box is the developer option (people sign in: tests/signin-browser.test.ts).
    await p.click('#dev-token summary');
    await p.fill('#token-input', TOKEN);
    await p.click('#login-form button[type=submit]');
    await ready();
    expect(await js('localStorage.getItem("farol_token")')).toBe(TOKEN);
    expect(await p.inputValue('#site-select')).toBe(SITE);

    const metrics = ['visitors', 'visits', 'pageviews', 'views_per_visit', 'bounce_rate', 'visit_duration'];
    const answer = await query({ metrics, date_range: '28d' });
    expectCardsEqual(await statCards(), metrics, answer);
    // And the API equals what was sent.
    expect(answer.results[0]?.metrics.slice(0, 5)).toEqual([
      t.visitors,
      t.visits,
      t.pageviews,
      Math.round((t.pageviews / t.visits) * 100) / 100,
      Math.round((t.bounces / t.visits) * 100),
    ]);

    const footer = p.locator('footer a[href="https://db-ip.com"]');
    expect(await footer.textContent()).toBe('DB-IP');
    expect(await p.locator('footer').textContent()).toContain('IP geolocation by DB-IP');
  });

  it('shows the time series and the breakdowns as the API answers them', async () => {
    const p = page as Page;
    const t = truth as SiteCounts;
    const series = await query({ metrics: ['visitors'], date_range: '28d', dimensions: ['time'], include: { time_labels: true } });
    const labels = series.meta.time_labels ?? [];
    const byLabel = new Map(series.results.map((r) => [r.dimensions[0], r.metrics[0]]));
    const expected = labels.map((l) => byLabel.get(l) ?? 0);
    expect(JSON.parse((await p.getAttribute('#chart', 'data-points')) ?? '[]')).toEqual(expected);
    expect(await p.locator('#chart canvas').count()).toBe(1);

    const pages = await query({ metrics: ['visitors', 'pageviews'], date_range: '28d', dimensions: ['event:page'], pagination: { limit: 10 } });
    const rows = await panelRows('pages');
    expect(rows.map((r) => r.value)).toEqual(pages.results.map((r) => r.dimensions[0]));
    expect(rows.map((r) => r.metrics.map(Number))).toEqual(pages.results.map((r) => r.metrics));
    expect(rows.map((r) => r.texts.map((x) => Number(x.replace(/,/g, ''))))).toEqual(pages.results.map((r) => r.metrics));
    // Every page of the truth is listed (9 pages, 10 rows), with its counts.
    expect(Object.fromEntries(rows.map((r) => [r.value, { visitors: Number(r.metrics[0]), pageviews: Number(r.metrics[1]) }]))).toEqual(t.pages);

    const channels = await query({ metrics: ['visitors'], date_range: '28d', dimensions: ['visit:channel'], pagination: { limit: 10 } });
    const channelRows = await panelRows('sources');
    expect(channelRows.map((r) => [r.value, Number(r.metrics[0])])).toEqual(channels.results.map((r) => [r.dimensions[0], r.metrics[0]]));
    expect(Object.fromEntries(channelRows.map((r) => [r.value, Number(r.metrics[0])]))).toEqual(t.channels);

    const countries = await query({ metrics: ['visitors'], date_range: '28d', dimensions: ['visit:country'], pagination: { limit: 10 } });
    expect((await panelRows('locations')).map((r) => [r.value, Number(r.metrics[0])])).toEqual(countries.results.map((r) => [r.dimensions[0], r.metrics[0]]));

    const goals = await query({ metrics: ['visitors', 'events', 'conversion_rate'], date_range: '28d', dimensions: ['event:goal'], pagination: { limit: 10 } });
    const goalRows = await panelRows('goals');
    expect(goalRows.map((r) => [r.value, ...r.metrics.map(Number)])).toEqual(goals.results.map((r) => [r.dimensions[0], ...r.metrics]));
    expect(goalRows.length).toBeGreaterThan(0);

    // Another tab of a panel: browsers.
    await p.click('#panel-devices button[data-tab="browser"]');
    await ready();
    const browsers = await query({ metrics: ['visitors'], date_range: '28d', dimensions: ['visit:browser'], pagination: { limit: 10 } });
    expect((await panelRows('devices')).map((r) => [r.value, Number(r.metrics[0])])).toEqual(browsers.results.map((r) => [r.dimensions[0], r.metrics[0]]));
  });

  it('page paths holding markup render as text and never run', async () => {
    const p = page as Page;
    const rows = await panelRows('pages');
    for (const path of XSS_PATHS) {
      const row = rows.find((r) => r.value === path);
      expect(row?.label, path).toBe(path);
    }
    expect(await js('typeof window.__xss')).toBe('undefined');
    expect(await p.locator('#panels img').count()).toBe(0);
    expect(await p.locator('#panels script').count()).toBe(0);
  });

  it('clicking a page filters everything to it, shows a removable chip and keeps it in the URL', async () => {
    const p = page as Page;
    const t = truth as SiteCounts;
    const unfiltered = await statCards();
    await p.locator('#panel-pages tr[data-value="/pricing"] .row-filter').click();
    await ready();
    const chip = p.locator('#filters .chip');
    expect(await chip.count()).toBe(1);
    expect(await chip.getAttribute('data-dimension')).toBe('event:page');
    expect(await chip.locator('.chip-value').textContent()).toBe('/pricing');
    expect(new URL(p.url()).searchParams.getAll('f')).toEqual(['event:page|/pricing']);

    // Views per visit is refused with a page filter, so the card goes away.
    const metrics = ['visitors', 'visits', 'pageviews', 'bounce_rate', 'visit_duration'];
    const filtered = await query({ metrics, date_range: '28d', filters: [['is', 'event:page', ['/pricing']]] });
    const cards = await statCards();
    expectCardsEqual(cards, metrics, filtered);
    expect(filtered.results[0]?.metrics[0]).toBe(t.pages['/pricing']?.visitors);
    expect(filtered.results[0]?.metrics[2]).toBe(t.pages['/pricing']?.pageviews);
    expect(cards[0]?.value).not.toBe(unfiltered[0]?.value);
    const pages = await panelRows('pages');
    expect(pages.map((r) => r.value)).toEqual(['/pricing']);

    // The URL alone reproduces the view.
    await p.reload();
    await ready();
    expect(await p.locator('#filters .chip').count()).toBe(1);
    expectCardsEqual(await statCards(), metrics, filtered);

    // Remove the chip: back to the whole site.
    await p.click('#filters .chip-remove');
    await ready();
    expect(await p.locator('#filters .chip').count()).toBe(0);
    expect(new URL(p.url()).searchParams.getAll('f')).toEqual([]);
    expect(await statCards()).toEqual(unfiltered);

    // A markup path as a filter: the chip shows it as text too.
    const xss = XSS_PATHS[0] as string;
    const xssRow = p.locator('#panel-pages tbody tr').filter({ has: p.locator('.row-filter', { hasText: xss }) });
    await xssRow.locator('.row-filter').click();
    await ready();
    expect(await p.locator('#filters .chip-value').textContent()).toBe(xss);
    expect(await statCards().then((c) => c[0]?.value)).toBe('1');
    expect(await js('typeof window.__xss')).toBe('undefined');
    await p.click('#filters .chip-remove');
    await ready();
  });

  it('compares with the previous period: the changes are the API\u2019s', async () => {
    const p = page as Page;
    await p.selectOption('#compare-select', 'previous_period');
    await ready();
    expect(new URL(p.url()).searchParams.get('compare')).toBe('previous_period');
    const metrics = ['visitors', 'visits', 'pageviews', 'views_per_visit', 'bounce_rate', 'visit_duration'];
    const answer = await query({ metrics, date_range: '28d', include: { comparisons: { mode: 'previous_period' } } });
    expect(answer.results[0]?.comparison).toBeDefined();
    expectCardsEqual(await statCards(), metrics, answer);
    const series = await query({ metrics: ['visitors'], date_range: '28d', dimensions: ['time'], include: { time_labels: true, comparisons: { mode: 'previous_period' } } });
    const byLabel = new Map(series.results.map((r) => [r.dimensions[0], r]));
    const labels = series.meta.time_labels ?? [];
    expect(JSON.parse((await p.getAttribute('#chart', 'data-comparison')) ?? '[]')).toEqual(labels.map((l) => byLabel.get(l)?.comparison?.metrics[0] ?? 0));

    // Another range: today.
    await p.selectOption('#period-select', 'day');
    await ready();
    const today = await query({ metrics, date_range: 'day', include: { comparisons: { mode: 'previous_period' } } });
    expectCardsEqual(await statCards(), metrics, today);

    // A custom range (comparison still on), then realtime (no comparison: the API refuses one).
    const day = new Date().toISOString().slice(0, 10);
    const weekAgo = new Date(Date.now() - 6 * 86_400_000).toISOString().slice(0, 10);
    await p.selectOption('#period-select', 'custom');
    await p.fill('#custom-from', weekAgo);
    await p.fill('#custom-to', day);
    await p.click('#custom-range button[type=submit]');
    await ready();
    expect(Object.fromEntries(new URL(p.url()).searchParams)).toMatchObject({ period: 'custom', from: weekAgo, to: day });
    expectCardsEqual(await statCards(), metrics, await query({ metrics, date_range: [weekAgo, day], include: { comparisons: { mode: 'previous_period' } } }));

    await p.selectOption('#period-select', 'realtime');
    await ready();
    expect(await p.locator('#compare-select').isDisabled()).toBe(true);
    const realtime = await query({ metrics, date_range: 'realtime' });
    expect(realtime.results[0]?.metrics[0]).toBe((truth as SiteCounts).visitors);
    const cards = await statCards();
    expectCardsEqual(cards, metrics, realtime);
    expect(cards.every((c) => c.change === undefined)).toBe(true);

    await p.selectOption('#period-select', '28d');
    await p.selectOption('#compare-select', 'off');
    await ready();
    expect(new URL(p.url()).search).toBe(`?site=${SITE}&tab_devices=browser`);
  });

  it('lists the site\u2019s experiments with their results (counts, rate, uplift, chance, SRM, verdict) as the API answers them', async () => {
    const p = page as Page;
    const list = await api('GET', `/api/v1/sites/${SITE}/experiments`);
    expect(list.status).toBe(200);
    const listed = (list.json as { experiments: { id: string }[] }).experiments.map((e) => e.id).sort();
    expect(listed).toEqual(EXPERIMENTS.map((e) => e.id).sort());
    expect((await js<string[]>(`[...document.querySelectorAll('#experiments-body article.experiment')].map((a) => a.dataset.experiment)`)).sort()).toEqual(listed);

    for (const plan of EXPERIMENTS) {
      const r = await api('GET', `/api/v2/experiments/${plan.id}/results?site_id=${SITE}`);
      expect(r.status).toBe(200);
      const stats = (r.json as { results: ExperimentResults }).results;
      // The API counted what was sent.
      expect(Object.fromEntries(stats.variations.map((v) => [v.key, { exposures: v.exposures, conversions: v.conversions }]))).toEqual(plan.arms);
      const article = `#experiments-body article[data-experiment=${JSON.stringify(plan.id)}]`;
      const shown = await js<{ key: string; cells: Record<string, string> }[]>(
        `[...document.querySelectorAll(${JSON.stringify(`${article} tbody tr`)})].map((tr) => ({
          key: tr.dataset.variation,
          cells: Object.fromEntries([...tr.querySelectorAll('td[data-field]')].map((td) => [td.dataset.field, td.dataset.value])),
        }))`,
      );
      expect(shown).toEqual(
        stats.variations.map((v) => ({
          key: v.key,
          cells: {
            exposures: String(v.exposures),
            conversions: String(v.conversions),
            rate: String(v.rate),
            uplift: String(v.vsControl?.relativeUplift ?? null),
            chance: String(v.vsControl?.chanceToBeatControl ?? null),
            p: String(v.vsControl?.pValue ?? null),
          },
        })),
      );
      expect(await p.locator(`${article} .verdict`).getAttribute('data-verdict')).toBe(stats.verdict);
      expect(await p.locator(`${article} .srm`).count()).toBe(stats.srm.detected ? 1 : 0);
    }
    // The skewed split is flagged; the even one is not.
    expect(await p.locator('#experiments-body article[data-experiment="pricing-srm"] .srm').count()).toBe(1);
    expect(await p.locator('#experiments-body article[data-experiment="hero"] .srm').count()).toBe(0);
  });

  it('refuses a bad token and asks for another; saves a screenshot', async () => {
    const p = page as Page;
    await mkdir(ARTIFACTS, { recursive: true });
    await p.screenshot({ path: join(ARTIFACTS, 'dashboard.png'), fullPage: true });
    expect(pageErrors).toEqual([]);

    const context = await (browser as Browser).newContext();
    const other = await context.newPage();
    await other.addInitScript(`localStorage.setItem('farol_token', 'not-a-valid-token-0000000000')`);
    await other.goto(`${(proc as FarolProcess).url}/`);
    await other.waitForSelector('#login:not([hidden])');
    expect(await other.locator('#login-error').textContent()).toMatch(/refused/);
    expect(await other.locator('#dashboard').isHidden()).toBe(true);
    await context.close();
  });
});

/** A GET over a bare socket: headers and the body bytes exactly as sent (no transparent gunzip). */
async function rawGet(base: string, path: string, headers: Record<string, string>): Promise<{ status: number; headers: Record<string, string>; body: Buffer }> {
  const { request } = await import('node:http');
  return new Promise((resolve, reject) => {
    const req = request(`${base}${path}`, { headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const h: Record<string, string> = {};
        for (const [k, v] of Object.entries(res.headers)) if (typeof v === 'string') h[k] = v;
        resolve({ status: res.statusCode ?? 0, headers: h, body: Buffer.concat(chunks) });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}
