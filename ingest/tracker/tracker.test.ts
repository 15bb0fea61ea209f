import { readFileSync } from 'node:fs';
import { createContext, runInContext } from 'node:vm';
import { gzipSync } from 'node:zlib';
import { Linter } from 'eslint';
import { describe, expect, it } from 'vitest';
import { ALLOWED_ELEMENTS, attributeNameProblem, urlProblem } from '../../schemas/experiment-safety.ts';
import { rng as prng } from '../../schemas/testing/oracle.ts';

/**
 * The tracker's pure parts (variation hashing and bucketing, page globs), run from the real
 * script.js in a Node vm context: without a `document` the script only publishes them as
 * `window.farolTest` and stops. The browser behaviour is tests/tracker.test.ts.
 */

const SOURCE = readFileSync(new URL('./script.js', import.meta.url), 'utf8');

interface Variation {
  key: string;
  weight?: number;
}
interface Experiment {
  id: string;
  variations: Variation[];
  pages?: string[];
}
interface Pure {
  hash(s: string): number;
  pick(x: Experiment, id: string): Variation | undefined;
  glob(g: string): RegExp;
  onPage(x: Experiment, path: string): boolean;
}

function loadPure(): Pure {
  const ctx = createContext({});
  (ctx as { window?: unknown }).window = ctx;
  runInContext(SOURCE, ctx);
  return (ctx as { farolTest: Pure }).farolTest;
}

const pure = loadPure();

/** Visitor ids shaped like the tracker's: two random uint32 in base 36. */
function visitorIds(n: number, seed: number): string[] {
  const rnd = prng(seed);
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    out.push(Math.floor(rnd() * 2 ** 32).toString(36) + Math.floor(rnd() * 2 ** 32).toString(36));
  }
  return out;
}

function shares(x: Experiment, ids: string[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const id of ids) {
    const v = pure.pick(x, id);
    if (v === undefined) throw new Error('no variation picked');
    counts[v.key] = (counts[v.key] ?? 0) + 1;
  }
  for (const k of Object.keys(counts)) counts[k] = (counts[k] ?? 0) / ids.length;
  return counts;
}

describe('the tracker source', () => {
  it('is under 3 KB gzipped', () => {
    const size = gzipSync(SOURCE).length;
    expect(size).toBeLessThan(3000);
  });

  it('parses as an ES2017 script (no later syntax slipped in)', () => {
    const messages = new Linter().verify(SOURCE, { languageOptions: { ecmaVersion: 2017, sourceType: 'script' } });
    expect(messages.filter((m) => m.fatal)).toEqual([]);
  });
});

describe('hash: FNV-1a 32-bit', () => {
  it.each([
    ['', 0x811c9dc5],
    ['a', 0xe40c292c],
    ['foobar', 0xbf9cf968],
  ])('hash(%j) is the published FNV-1a value', (input, expected) => {
    expect(pure.hash(input)).toBe(expected);
  });

  it('is an unsigned 32-bit integer', () => {
    for (const id of visitorIds(1000, 1)) {
      const h = pure.hash(`exp:${id}`);
      expect(Number.isInteger(h) && h >= 0 && h < 2 ** 32).toBe(true);
    }
  });
});

describe('pick: deterministic weighted bucketing', () => {
  const ids = visitorIds(20_000, 42);
  // 4 standard deviations of a share estimated from 20,000 visitors is under 1.5 points.
  const tolerance = 0.015;

  it('gives the same visitor the same variation every time', () => {
    const x: Experiment = { id: 'hero', variations: [{ key: 'control', weight: 50 }, { key: 'b', weight: 50 }] };
    for (const id of ids.slice(0, 500)) expect(pure.pick(x, id)?.key).toBe(pure.pick(structuredClone(x), id)?.key);
  });

  it('splits 50/50 within tolerance', () => {
    const s = shares({ id: 'hero', variations: [{ key: 'control', weight: 50 }, { key: 'b', weight: 50 }] }, ids);
    expect(Math.abs((s.control ?? 0) - 0.5)).toBeLessThan(tolerance);
    expect(Math.abs((s.b ?? 0) - 0.5)).toBeLessThan(tolerance);
  });

  it('follows unequal and fractional weights', () => {
    const s = shares({ id: 'price-test', variations: [{ key: 'a', weight: 0.2 }, { key: 'b', weight: 0.3 }, { key: 'c', weight: 0.5 }] }, ids);
    expect(Math.abs((s.a ?? 0) - 0.2)).toBeLessThan(tolerance);
    expect(Math.abs((s.b ?? 0) - 0.3)).toBeLessThan(tolerance);
    expect(Math.abs((s.c ?? 0) - 0.5)).toBeLessThan(tolerance);
  });

  it('never picks a zero-weight variation, and splits equally when no weight is given', () => {
    const zero = shares({ id: 'z', variations: [{ key: 'a', weight: 0 }, { key: 'b', weight: 1 }] }, ids);
    expect(zero).toEqual({ b: 1 });
    const equal = shares({ id: 'eq', variations: [{ key: 'a' }, { key: 'b' }, { key: 'c' }] }, ids);
    for (const k of ['a', 'b', 'c']) expect(Math.abs((equal[k] ?? 0) - 1 / 3)).toBeLessThan(tolerance);
  });

  it('assigns independently across experiments (the id is hashed with the experiment id)', () => {
    const x = { id: 'exp-one', variations: [{ key: 'a' }, { key: 'b' }] };
    const y = { id: 'exp-two', variations: [{ key: 'a' }, { key: 'b' }] };
    const cells: Record<string, number> = {};
    for (const id of ids) {
      const k = `${pure.pick(x, id)?.key}${pure.pick(y, id)?.key}`;
      cells[k] = (cells[k] ?? 0) + 1;
    }
    for (const k of ['aa', 'ab', 'ba', 'bb']) expect(Math.abs((cells[k] ?? 0) / ids.length - 0.25)).toBeLessThan(tolerance);
  });

  it('picks nothing from an experiment without variations', () => {
    expect(pure.pick({ id: 'empty', variations: [] }, 'abc')).toBeUndefined();
  });
});

describe('glob: experiment page patterns', () => {
  it.each([
    ['/pricing', '/pricing', true],
    ['/pricing', '/pricing/', false],
    ['/pricing', '/pricingx', false],
    ['/blog/*', '/blog/hello', true],
    ['/blog/*', '/blog/', true],
    ['/blog/*', '/blog/2024/hello', false],
    ['/blog/**', '/blog/2024/hello', true],
    ['/blog/**', '/blog', false],
    ['/**/edit', '/posts/1/edit', true],
    ['/**', '/anything/at/all', true],
    ['/docs/*.html', '/docs/a.html', true],
    ['/docs/*.html', '/docs/aXhtml', false],
    ['/p(1)', '/p(1)', true],
    ['/a+b', '/aab', false],
  ])('%s on %s → %s', (pattern, path, expected) => {
    expect(pure.glob(pattern).test(path)).toBe(expected);
  });

  it('an experiment without pages runs everywhere; with pages only where one matches', () => {
    const base = { id: 'x', variations: [{ key: 'a' }] };
    expect(pure.onPage(base, '/any')).toBe(true);
    expect(pure.onPage({ ...base, pages: [] }, '/any')).toBe(true);
    expect(pure.onPage({ ...base, pages: ['/pricing', '/plans/*'] }, '/plans/pro')).toBe(true);
    expect(pure.onPage({ ...base, pages: ['/pricing', '/plans/*'] }, '/about')).toBe(false);
  });
});

describe('what a change may do: the same allowlists as the server (schemas/experiment-safety.ts)', () => {
  // The tracker's element allowlist and attribute check, taken from script.js as written and run
  // with a page URL (they are lines of their own; the rest of the script needs a document).
  const line = (start: string): string => {
    const found = SOURCE.split('\n').find((l) => l.startsWith(start));
    if (found === undefined) throw new Error(`script.js has no line starting with ${start}`);
    return found;
  };
  const ctx = createContext({ URL });
  const tracker = runInContext(`var L={href:'https://site.test/a/b'};${line('var EL=')}\n${line('function ok(')}\n({EL:EL,ok:ok})`, ctx) as {
    EL: RegExp;
    ok(name: string, value: string): boolean;
  };

  // Every element of the HTML standard, and the foreign ones that matter.
  const htmlElements =
    'a abbr address area article aside audio b base bdi bdo blockquote body br button canvas caption cite code col colgroup data datalist dd del details dfn dialog div dl dt em embed fieldset figcaption figure footer form h1 h2 h3 h4 h5 h6 head header hgroup hr html i iframe img input ins kbd label legend li link main map mark math menu meta meter nav noscript object ol optgroup option output p param picture portal pre progress q rp rt ruby s samp script search section select slot small source span strong style sub summary sup svg table tbody td template textarea tfoot th thead time title tr track u ul var video wbr frame frameset marquee'.split(' ');

  it('applies changes to, and keeps in html, exactly the allowed elements', () => {
    expect(htmlElements.filter((e) => tracker.EL.test(e))).toEqual(htmlElements.filter((e) => (ALLOWED_ELEMENTS as readonly string[]).includes(e)));
    for (const e of ALLOWED_ELEMENTS) expect(tracker.EL.test(e), e).toBe(true);
  });

  it('sets exactly the allowed attributes', () => {
    const names = ['alt', 'class', 'rel', 'target', 'title', 'href', 'src', 'aria-label', 'aria-hidden', 'aria-', 'style', 'onclick', 'onerror', 'ONCLICK', 'HREF', 'srcdoc', 'srcset', 'formaction', 'action', 'xlink:href', 'data', 'background', 'ping', 'id', 'name', 'data-x', 'hx-get', 'x-html', 'v-html', 'is', 'poster'];
    for (const n of names) expect(tracker.ok(n, '/x'), n).toBe(attributeNameProblem(n) === undefined);
  });

  it('sets href and src only to http(s) or relative URLs, however javascript:, data: or vbscript: is spelled', () => {
    const refused = ['javascript:alert(1)', 'JaVaScRiPt:alert(1)', 'java\tscript:alert(1)', 'java\nscript:alert(1)', '  javascript:alert(1)', '\u0000javascript:alert(1)', '\u0001javascript:alert(1)', 'javascript:alert(1)\n', 'data:text/html,<script>alert(1)</script>', 'vbscript:msgbox(1)', 'blob:https://site.test/x', 'file:///etc/passwd', 'mailto:a@b.test'];
    for (const url of refused) {
      expect(tracker.ok('href', url), url).toBe(false);
      expect(tracker.ok('src', url), url).toBe(false);
      expect(urlProblem(url), url).toBeDefined();
    }
    const accepted = ['/signup', 'signup?x=1', '#top', '?a=1', 'https://example.com/b', 'http://example.com:8080/', '//cdn.example.com/x.png'];
    for (const url of accepted) {
      expect(tracker.ok('href', url), url).toBe(true);
      expect(urlProblem(url), url).toBeUndefined();
    }
  });
});
