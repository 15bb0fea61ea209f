import { access, constants, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pollUntil } from './support/e2e.ts';
import { runFarol, startFarol, type FarolProcess } from './support/farol-process.ts';

/**
 * `farol demo` end to end: it loads its 30 days into a fresh data dir, a second run adds nothing,
 * then a real `farol start` on that data dir serves the dashboard, which headless Chromium opens
 * with the token the demo printed: every top stat, the chart, every tab of every breakdown panel
 * and the experiment (whose variant must win) are populated. The screenshot is the README's
 * (docs/dashboard.png). Chromium is Debian's (/usr/bin/chromium); browsers are never downloaded.
 */

const CHROMIUM = '/usr/bin/chromium';
const SITE = 'demo.example.com';
/** The README's picture: rewritten only when FAROL_UPDATE_SCREENSHOT=1, so a test run leaves the checkout as it was. */
const SCREENSHOT = fileURLToPath(new URL('../docs/dashboard.png', import.meta.url));

interface DemoRun {
  code: number;
  stdout: string;
  stderr: string;
  token: string;
  stored: number;
  /** Events this run added (0 when it printed "already loaded"). */
  added: number;
}

async function demo(dataDir: string): Promise<DemoRun> {
  const r = await runFarol(['demo'], { FAROL_DATA_DIR: dataDir, FAROL_PORT: '8080' });
  const token = /^\s+(farol_[\w-]+)$/m.exec(r.stdout)?.[1] ?? '';
  const stored = Number(/\(([\d,]+) stored/.exec(r.stdout)?.[1]?.replace(/,/g, '') ?? NaN);
  const added = r.stdout.includes('already loaded, nothing added') ? 0 : Number(/([\d,]+) events added/.exec(r.stdout)?.[1]?.replace(/,/g, '') ?? NaN);
  return { ...r, token, stored, added };
}

describe('farol demo, then the dashboard', () => {
  let dataDir = '';
  let first: DemoRun | undefined;
  let second: DemoRun | undefined;
  let proc: FarolProcess | undefined;
  let browser: Browser | undefined;
  let page: Page | undefined;
  const pageErrors: string[] = [];

  const js = <T>(expression: string): Promise<T> => (page as Page).evaluate(expression) as Promise<T>;
  const ready = (): Promise<unknown> =>
    pollUntil(async () => ((await js<string | undefined>('document.body.dataset.state')) === 'ready' ? true : undefined), {
      timeoutMs: 30_000,
      intervalMs: 50,
      describe: () => 'the dashboard never became ready',
    });
  const api = async (path: string, body?: unknown): Promise<unknown> => {
    const res = await fetch(`${(proc as FarolProcess).url}${path}`, {
      method: body === undefined ? 'GET' : 'POST',
      headers: { authorization: `Bearer ${(first as DemoRun).token}` },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    expect(res.status, path).toBe(200);
    return res.json();
  };

  beforeAll(async () => {
    try {
      await access(CHROMIUM, constants.X_OK);
    } catch {
      throw new Error(`${CHROMIUM} is missing: install Debian's chromium (apt-get install chromium); this test never downloads a browser`);
    }
    // The browser starts while the demo loads (kept in `browser` at once, so afterAll closes it whatever fails).
    const launching = chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--headless=new', '--disable-gpu', '--disable-dev-shm-usage'] });
    void launching.then((b) => (browser = b), () => undefined);
    dataDir = await mkdtemp(join(tmpdir(), 'farol-demo-'));
    first = await demo(dataDir);
    second = await demo(dataDir);
    proc = await startFarol('start', { FAROL_DATA_DIR: dataDir, FAROL_HUB_PARTITIONS: '4' });
    browser = await launching;
    page = await browser.newPage({ viewport: { width: 1280, height: 1400 } });
    page.on('pageerror', (err) => pageErrors.push(err.message));
  }, 240_000);

  afterAll(async () => {
    await browser?.close();
    if (proc !== undefined) {
      proc.child.kill('SIGTERM');
      await proc.exited;
    }
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  }, 30_000);

  it('loads once: a second run adds only the demo traffic of the minutes since the first, and both print the URL and a working token', async () => {
    const [a, b] = [first as DemoRun, second as DemoRun];
    expect(a.code, a.stderr).toBe(0);
    expect(a.stdout).toMatch(/[\d,]+ events added/);
    expect(a.added).toBe(a.stored);
    expect(a.stdout).toContain(`http://127.0.0.1:8080/?site=${SITE}`);
    expect(a.stored).toBeGreaterThan(10_000);
    expect(b.code, b.stderr).toBe(0);
    // The demo's traffic runs up to the moment it is loaded: a visit that falls between the two
    // runs (~650 a day) is added by the second, and nothing the first stored is added again.
    expect(b.added).toBeLessThan(200);
    expect(b.stored).toBe(a.stored + b.added);
    if (b.added === 0) expect(b.stdout).toContain('already loaded, nothing added');
    expect(b.token).not.toBe(a.token);
    // What the API counts is what the demo stored, once.
    const r = (await api('/api/v2/query', { site_id: SITE, metrics: ['events'], date_range: '30d' })) as { results: { metrics: number[] }[] };
    expect(r.results[0]?.metrics[0]).toBe(b.stored);
    // Its token is a viewer's of the demo site only.
    const sites = (await api('/api/v1/sites')) as { sites: { domain: string }[] };
    expect(sites.sites.map((s) => s.domain)).toEqual([SITE]);
  });

  it('fills every panel of the dashboard, the experiment shows its effect; screenshot for the README', async () => {
    const p = page as Page;
    await p.goto(`${(proc as FarolProcess).url}/?site=${SITE}`);
    await p.waitForSelector('#login:not([hidden])');
    // The token box is the developer option (people sign in: tests/signin-browser.test.ts).
    await p.click('#dev-token summary');
    await p.fill('#token-input', (first as DemoRun).token);
    await p.click('#login-form button[type=submit]');
    await ready();

    const cards = await js<{ metric: string; value: string }[]>(
      `[...document.querySelectorAll('#top-stats .stat')].map((e) => ({ metric: e.dataset.metric ?? '', value: e.dataset.value ?? '' }))`,
    );
    expect(cards.map((c) => c.metric)).toEqual(['visitors', 'visits', 'pageviews', 'views_per_visit', 'bounce_rate', 'visit_duration']);
    for (const c of cards) expect(Number(c.value), c.metric).toBeGreaterThan(0);
    const points = JSON.parse((await p.getAttribute('#chart', 'data-points')) ?? '[]') as number[];
    expect(points.length).toBeGreaterThanOrEqual(28);
    // Every day of the range has visitors (today's may be early).
    expect(points.slice(0, -1).every((v) => v > 0), JSON.stringify(points)).toBe(true);

    // Every tab of every panel: rows with a value and a non-zero first metric.
    const tabs = await js<{ panel: string; tab: string }[]>(
      `[...document.querySelectorAll('#panels [data-panel]')].flatMap((s) => [...s.querySelectorAll('button[data-tab]')].map((b) => ({ panel: s.dataset.panel, tab: b.dataset.tab })))`,
    );
    expect(new Set(tabs.map((t) => t.panel))).toEqual(new Set(['pages', 'sources', 'locations', 'devices', 'goals']));
    const seen: string[] = [];
    for (const t of tabs) {
      const button = p.locator(`#panel-${t.panel} button[data-tab="${t.tab}"]`);
      if ((await button.getAttribute('aria-selected')) !== 'true') {
        await button.click();
        await ready();
      }
      const rows = await js<{ value: string; first: string }[]>(
        `[...document.querySelectorAll('#panel-${t.panel} tbody tr')].map((r) => ({ value: r.dataset.value ?? '', first: r.querySelector('td.num')?.dataset.value ?? '' }))`,
      );
      expect(rows.length, `${t.panel}/${t.tab}`).toBeGreaterThan(0);
      expect(Number(rows[0]?.first), `${t.panel}/${t.tab}`).toBeGreaterThan(0);
      seen.push(`${t.panel}/${t.tab}:${rows.length}`);
    }
    expect(seen.length).toBeGreaterThanOrEqual(12);
    // Goals: every goal the demo registered converted, Purchase included.
    const goals = await js<string[]>(`[...document.querySelectorAll('#panel-goals tbody tr')].map((r) => r.dataset.value ?? '')`);
    expect(new Set(goals)).toEqual(new Set(['Signup', 'Purchase', 'Outbound Link: Click', 'File Download', 'Visit /pricing']));
    // Revenue reached the store through the processor.
    const revenue = (await api('/api/v2/query', { site_id: SITE, metrics: ['total_revenue'], date_range: '30d', filters: [['is', 'event:goal', ['Purchase']]] })) as {
      results: { metrics: number[] }[];
    };
    expect(revenue.results[0]?.metrics[0]).toBeGreaterThan(0);

    // The experiment: both arms exposed, the variant better, significantly.
    await pollUntil(async () => ((await p.locator('#experiments tr[data-variation]').count()) === 2 ? true : undefined), {
      timeoutMs: 20_000,
      intervalMs: 100,
      describe: () => 'the experiment never showed its two variations',
    });
    const arms = await js<Record<string, Record<string, string>>>(
      `Object.fromEntries([...document.querySelectorAll('#experiments tr[data-variation]')].map((r) => [r.dataset.variation, Object.fromEntries([...r.querySelectorAll('td[data-field]')].map((td) => [td.dataset.field, td.dataset.value]))]))`,
    );
    expect(Number(arms['control']?.['exposures'])).toBeGreaterThan(1000);
    expect(Number(arms['annual-first']?.['exposures'])).toBeGreaterThan(1000);
    expect(Number(arms['annual-first']?.['rate'])).toBeGreaterThan(Number(arms['control']?.['rate']));
    expect(Number(arms['annual-first']?.['uplift'])).toBeGreaterThan(0);
    expect(Number(arms['annual-first']?.['p'])).toBeLessThan(0.05);
    expect(pageErrors).toEqual([]);

    // Back on the first tabs, for the picture.
    await p.goto(`${(proc as FarolProcess).url}/?site=${SITE}`);
    await ready();
    const picture = await p.screenshot({ fullPage: true });
    expect(picture.length).toBeGreaterThan(10_000);
    if (process.env['FAROL_UPDATE_SCREENSHOT'] === '1') {
      await mkdir(join(SCREENSHOT, '..'), { recursive: true });
      await writeFile(SCREENSHOT, picture);
    }
  }, 120_000);

  it('leaves the site alone once it holds events the demo did not write', async () => {
    const running = proc as FarolProcess;
    const res = await fetch(`${running.url}/api/event`, {
      method: 'POST',
      headers: { 'content-type': 'text/plain', 'user-agent': 'Mozilla/5.0 (X11; Linux x86_64; rv:130.0) Gecko/20100101 Firefox/130.0' },
      body: JSON.stringify({ n: 'pageview', u: `https://${SITE}/a-real-visit`, d: SITE }),
    });
    expect(res.status).toBe(202);
    const stored = (second as DemoRun).stored;
    await pollUntil(
      async () => {
        const r = (await api('/api/v2/query', { site_id: SITE, metrics: ['events'], date_range: '30d' })) as { results: { metrics: number[] }[] };
        return r.results[0]?.metrics[0] === stored + 1 ? true : undefined;
      },
      { timeoutMs: 20_000, intervalMs: 200, describe: () => 'the real event never showed' },
    );
    running.child.kill('SIGTERM');
    expect(await running.exited).toBe(0);
    const third = await demo(dataDir);
    expect(third.code).toBe(1);
    expect(third.stderr).toContain('holds events the demo did not write');
    expect(third.token).toBe('');
  }, 90_000);
});
