import { readFileSync } from 'node:fs';
import { createContext, runInContext } from 'node:vm';
import { gzipSync } from 'node:zlib';
import { Linter } from 'eslint';
import { describe, expect, it } from 'vitest';
import { rng as prng } from '../../tests/support/oracle.ts';

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
