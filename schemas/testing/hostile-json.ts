import fc from 'fast-check';

/**
 * Arbitrary JSON text as any sender may write it, for property tests of everything that parses
 * input: strings of any UTF-16 code units (lone surrogates and NUL included) written raw or as
 * `\u` escapes in either case, numbers as raw tokens JSON.stringify never writes (`-0`, `1e309`,
 * 30-digit integers), objects with duplicate, empty and prototype-named keys, deep nesting.
 */

/** JSON text written exactly as given: numbers JSON.stringify never writes (`-0`, `1e309`), deep nesting. */
export class RawJson {
  constructor(readonly text: string) {}
}

/** An object as its entries in order: duplicate keys and `__proto__` are written as they are. */
export class Obj {
  constructor(readonly entries: ReadonlyArray<readonly [string, J]>) {}
}

export type J = string | number | boolean | null | RawJson | Obj | J[];

/**
 * Writes a string as JSON: per code unit, raw or as an escape, as `choices` says in turn. A lone
 * surrogate is always escaped (text for the wire is UTF-8: it cannot hold one raw); a valid pair
 * may stay raw.
 */
export function encodeString(s: string, choices: readonly number[]): string {
  let out = '"';
  let c = 0;
  for (let i = 0; i < s.length; i++) {
    const unit = s.charCodeAt(i);
    const pick = choices.length === 0 ? 1 : (choices[c++ % choices.length] ?? 1);
    const hex = unit.toString(16).padStart(4, '0');
    const escape = `\\u${pick % 2 === 0 ? hex : hex.toUpperCase()}`;
    const next = s.charCodeAt(i + 1);
    if (unit >= 0xd800 && unit <= 0xdbff && next >= 0xdc00 && next <= 0xdfff && pick % 3 !== 0) {
      out += s.slice(i, i + 2);
      i++;
    } else if (unit >= 0xd800 && unit <= 0xdfff) out += escape;
    else if (unit === 0x22) out += pick % 3 === 0 ? escape : '\\"';
    else if (unit === 0x5c) out += pick % 3 === 0 ? escape : '\\\\';
    else if (unit < 0x20) out += unit === 0x0a && pick % 3 !== 0 ? '\\n' : escape;
    else out += pick % 4 === 0 ? escape : String.fromCharCode(unit);
  }
  return `${out}"`;
}

/** Writes `v` as JSON text, escaping strings as `choices` says. */
export function encodeJson(v: J, choices: readonly number[] = []): string {
  if (typeof v === 'string') return encodeString(v, choices);
  if (v instanceof RawJson) return v.text;
  if (v instanceof Obj) return `{${v.entries.map(([k, x]) => `${encodeString(k, choices)}:${encodeJson(x, choices)}`).join(',')}}`;
  if (Array.isArray(v)) return `[${v.map((x) => encodeJson(x, choices)).join(',')}]`;
  return JSON.stringify(v);
}

/** Escape choices for {@link encodeJson}: which code units go raw, which as escapes. */
export const escapeChoices = fc.array(fc.nat(11), { minLength: 1, maxLength: 8 });

/** One UTF-16 code unit, biased to the dangerous ones. */
export const codeUnit = fc.oneof(
  fc.constantFrom('\0', '\ud800', '\udbff', '\udc00', '\udfff', '\\', 'u', '"', 'a', '\n', '\u2028', '\ufeff', '\uffff', 'é', '😀'),
  fc.integer({ min: 0, max: 0xffff }).map((n) => String.fromCharCode(n)),
);

/** Strings a hostile sender picks: any code units, odd names, sizes near and past the limits. */
export const hostileString: fc.Arbitrary<string> = fc.oneof(
  { weight: 4, arbitrary: fc.string({ unit: codeUnit, maxLength: 16 }) },
  { weight: 2, arbitrary: fc.string({ unit: 'binary', maxLength: 24 }) },
  { weight: 2, arbitrary: fc.constantFrom('', ' ', '__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty', '\\u0000', '\\ud800', 'null', 'NaN') },
  {
    weight: 1,
    arbitrary: fc
      .tuple(fc.constantFrom(1, 99, 100, 101, 120, 121, 128, 129, 253, 254, 300, 301, 1000, 1001, 2000, 2001, 5000), fc.constantFrom('x', 'é', '😀', '\0'))
      .map(([n, ch]) => ch.repeat(n).slice(0, n)),
  },
);

/** Numbers as JSON can write them: extremes, negative zero, past double range, long integers. */
export const numberToken: fc.Arbitrary<J> = fc.oneof(
  fc.integer(),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.constantFrom('1e308', '-1e308', '1e309', '-1e309', '-0', '0.0', '1E+2', '5e-324', '1e-400', '9007199254740993', '123456789012345678901234567890', '-0.0e0').map((t) => new RawJson(t)),
);

/** Any JSON value, hostile at every level. */
export const hostileJson: fc.Arbitrary<J> = fc.letrec<{ v: J }>((tie) => ({
  v: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    hostileString,
    numberToken,
    fc.boolean(),
    fc.constant(null),
    fc.array(tie('v'), { maxLength: 5 }),
    fc.array(fc.tuple(hostileString, tie('v')), { maxLength: 5 }).map((e) => new Obj(e)),
  ),
})).v;

/** JSON nested `depth` levels deep (arrays or objects) around a value, as text (no recursion). */
export function nested(depth: number, inner: J, objects: boolean): RawJson {
  const text = encodeJson(inner);
  return new RawJson(objects ? `${'{"a":'.repeat(depth)}${text}${'}'.repeat(depth)}` : `${'['.repeat(depth)}${text}${']'.repeat(depth)}`);
}
