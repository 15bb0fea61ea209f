import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { badStringMessage, findBadString, formatPath, hasBadEscape, isCleanString } from './unicode.ts';

/**
 * JSON text written the way any sender may write it: each code unit of a string raw or as a `\u`
 * escape (either case of hex), or a short escape. Raw lone surrogates never occur: the text stands
 * for what strict UTF-8 decoding gives.
 */
function encodeString(s: string, choices: number[]): string {
  let out = '"';
  let c = 0;
  for (let i = 0; i < s.length; i++) {
    const unit = s.charCodeAt(i);
    const pick = choices[c++ % choices.length] ?? 0;
    const hex = unit.toString(16).padStart(4, '0');
    const escape = `\\u${pick % 2 === 0 ? hex : hex.toUpperCase()}`;
    const high = unit >= 0xd800 && unit <= 0xdbff;
    const next = s.charCodeAt(i + 1);
    if (high && next >= 0xdc00 && next <= 0xdfff && pick % 3 !== 0) {
      out += s.slice(i, i + 2); // a raw pair
      i++;
    } else if (unit >= 0xd800 && unit <= 0xdfff) out += escape;
    else if (unit === 0x22) out += pick % 3 === 0 ? escape : '\\"';
    else if (unit === 0x5c) out += pick % 3 === 0 ? escape : '\\\\';
    else if (unit < 0x20) out += unit === 0x0a && pick % 3 !== 0 ? '\\n' : escape;
    else out += pick % 4 === 0 ? escape : String.fromCharCode(unit);
  }
  return `${out}"`;
}

type J = string | number | boolean | null | J[] | { [k: string]: J };

function encode(v: J, choices: number[]): string {
  if (typeof v === 'string') return encodeString(v, choices);
  if (Array.isArray(v)) return `[${v.map((x) => encode(x, choices)).join(',')}]`;
  if (v !== null && typeof v === 'object') return `{${Object.entries(v).map(([k, x]) => `${encodeString(k, choices)}:${encode(x, choices)}`).join(',')}}`;
  return JSON.stringify(v);
}

// Code units biased to the interesting ones: NUL, surrogates of both halves, backslash, `u`, quotes.
const unit = fc.oneof(
  fc.constantFrom('\0', '\ud800', '\udbff', '\udc00', '\udfff', '\\', 'u', '"', 'a', '\n', 'é', '😀'),
  fc.integer({ min: 0, max: 0xffff }).map((n) => String.fromCharCode(n)),
);
const text = fc.string({ unit, maxLength: 12 });
const value: fc.Arbitrary<J> = fc.letrec<{ v: J }>((tie) => ({
  v: fc.oneof(
    { depthSize: 'small' },
    text,
    fc.integer(),
    fc.boolean(),
    fc.constant(null),
    fc.array(tie('v'), { maxLength: 4 }),
    fc.dictionary(text, tie('v'), { maxKeys: 4 }),
  ),
})).v;

function hasBadStringByWalk(v: unknown): boolean {
  if (typeof v === 'string') return !isCleanString(v);
  if (Array.isArray(v)) return v.some(hasBadStringByWalk);
  if (v !== null && typeof v === 'object') return Object.entries(v).some(([k, x]) => !isCleanString(k) || hasBadStringByWalk(x));
  return false;
}

describe('hasBadEscape', () => {
  it('agrees with walking the parsed value, however the strings are escaped', () => {
    fc.assert(
      fc.property(value, fc.array(fc.nat(11), { minLength: 1, maxLength: 8 }), (v, choices) => {
        const json = encode(v, choices);
        const parsed = JSON.parse(json) as unknown;
        expect(hasBadEscape(json)).toBe(hasBadStringByWalk(parsed));
        expect(findBadString(parsed) !== undefined).toBe(hasBadStringByWalk(parsed));
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
    expect(formatPath(bad?.path ?? [], 'ingest')).toBe('[1].props.plan');
    expect(formatPath(bad?.path ?? [], 'api')).toBe('1.props.plan');
    const key = findBadString(JSON.parse('{"p":{"a\\u0000b":1}}'));
    expect(key).toEqual({ path: ['p', 'a\0b'], key: true, reason: 'NUL' });
    expect(key && badStringMessage(key, 'ingest')).toBe('p."a\\u0000b": a key that holds NUL (\\u0000)');
  });
});
