import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { badStringMessage, findBadString, formatPath, hasBadEscape, isCleanString } from './unicode.ts';
import { encodeJson, escapeChoices, hostileJson, Obj, type J } from './testing/hostile-json.ts';

function hasDuplicateKeys(v: J): boolean {
  if (v instanceof Obj) return new Set(v.entries.map(([k]) => k)).size < v.entries.length || v.entries.some(([, x]) => hasDuplicateKeys(x));
  return Array.isArray(v) && v.some(hasDuplicateKeys);
}

function hasBadStringByWalk(v: unknown): boolean {
  if (typeof v === 'string') return !isCleanString(v);
  if (Array.isArray(v)) return v.some(hasBadStringByWalk);
  if (v !== null && typeof v === 'object') return Object.entries(v).some(([k, x]) => !isCleanString(k) || hasBadStringByWalk(x));
  return false;
}

describe('hasBadEscape', () => {
  it('finds every bad string the parsed value holds, however the strings are escaped', () => {
    fc.assert(
      fc.property(hostileJson, escapeChoices, (v, choices) => {
        const json = encodeJson(v, choices);
        const parsed = JSON.parse(json) as unknown;
        const byWalk = hasBadStringByWalk(parsed);
        expect(findBadString(parsed) !== undefined).toBe(byWalk);
        // The scan never misses one; it refuses more only where a duplicate key dropped the bad
        // string from the parsed value (refusing is the safe side).
        if (byWalk) expect(hasBadEscape(json)).toBe(true);
        else if (hasBadEscape(json)) expect(hasDuplicateKeys(v)).toBe(true);
      }),
      { numRuns: 3000 },
    );
  });

  it.each([
    ['"\\u0000"', true],
    ['"\\ud800"', true],
    ['"\\uD800x"', true],
    ['"\\udc00"', true],
    ['"\\ud83d\\ude00"', false],
    ['"\\uD83D\\uDE00"', false],
    ['"\\ude00\\ud83d"', true],
    ['"\\ud83d\\u0041"', true],
    ['"\\\\ud800"', false],
    ['"\\\\u0000"', false],
    ['"\\\\\\u0000"', true],
    ['"\\u00000"', true],
    ['"\\u0001"', false],
    ['{"\\ud800":1}', true],
    ['"😀 \\n \\"\\u00e9"', false],
    ['"\\ud83d"', true],
  ])('%s → %s', (json, bad) => {
    expect(hasBadEscape(json)).toBe(bad);
    expect(findBadString(JSON.parse(json)) !== undefined).toBe(bad);
  });

  it('walks values nested deeper than the call stack without overflowing', () => {
    const deep = `${'['.repeat(50_000)}"\\u0000"${']'.repeat(50_000)}`;
    expect(hasBadEscape(deep)).toBe(true);
    expect(findBadString(JSON.parse(deep))?.path.length).toBe(50_000);
  });
});

describe('naming the refused string', () => {
  it('names the path of a value and of a key, ingest and API style', () => {
    const v = JSON.parse('[{"n":"x"},{"props":{"plan":"\\ud800"}}]') as unknown;
    const bad = findBadString(v);
    expect(bad).toEqual({ path: [1, 'props', 'plan'], key: false, reason: 'lone surrogate' });
    expect(formatPath(bad?.path ?? [])).toBe('[1].props.plan');
    const key = findBadString(JSON.parse('{"p":{"a\\u0000b":1}}'));
    expect(key).toEqual({ path: ['p', 'a\0b'], key: true, reason: 'NUL' });
    expect(key && badStringMessage(key)).toBe('p."a\\u0000b": a key that holds NUL (\\u0000)');
  });
});
