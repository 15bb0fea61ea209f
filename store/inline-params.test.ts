import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openChdbStore } from './chdb-store.ts';
import { inlineParams, quote } from './inline-params.ts';
import type { Store } from './store.ts';
import { removeTempDirs, tempDir } from './testing/store.ts';

/**
 * Parameters written as literals for the embedded engine (store/inline-params.ts): the same
 * answers as bound parameters for any value an attacker can send, and none can leave its literal.
 */

describe('inlineParams', () => {
  it('writes each placeholder outside quotes and comments as a typed literal, once', () => {
    const sql = "SELECT {a:String}, '{a:String}', `{a:String}`, \"{a:String}\" -- {a:String}\n, /* {a:String} */ { l : Array(String) }, {n:UInt32}";
    expect(inlineParams(sql, { a: "x{a:String}'", l: ['{n:UInt32}'], n: 7 })).toBe(
      "SELECT CAST('x{a:String}\\'' AS String), '{a:String}', `{a:String}`, \"{a:String}\" -- {a:String}\n, /* {a:String} */ CAST(['{n:UInt32}'] AS Array(String)), CAST('7' AS UInt32)",
    );
  });

  it('leaves to binding what it does not write: other types, missing names, values of another kind', () => {
    expect(inlineParams('SELECT {m:Map(String, String)}', { m: { a: 'b' } })).toBeUndefined();
    expect(inlineParams('SELECT {a:String}', {})).toBeUndefined();
    expect(inlineParams('SELECT {a:String}', { a: { toString: () => 'x' } })).toBeUndefined();
    expect(inlineParams('SELECT {a:Array(String)}', { a: 'x' })).toBeUndefined();
    expect(inlineParams('SELECT {a:Array(String)}', { a: ['x', null] })).toBeUndefined();
    for (const bad of [Number.NaN, Number.POSITIVE_INFINITY, 2 ** 53 + 2]) expect(inlineParams('SELECT {n:UInt64}', { n: bad })).toBeUndefined();
    // An aggregate function's parameter must be a literal: a bare integer, or binding.
    expect(inlineParams('SELECT groupUniqArray({n:UInt32})(x)', { n: 5001 })).toBe('SELECT groupUniqArray(5001)(x)');
    expect(inlineParams('SELECT groupUniqArray({n:UInt32})(x)', { n: '1; DROP' })).toBeUndefined();
    expect(inlineParams("SELECT {t:DateTime64(3, 'UTC')}", { t: '-3600.000' })).toBeUndefined();
    expect(inlineParams("SELECT {t:DateTime64(3, 'UTC')}", { t: '1794096000.123' })).toBe("SELECT fromUnixTimestamp64Milli(toInt64(1794096000123), 'UTC')");
    expect(inlineParams('SELECT {t:DateTime64(3)}', { t: '1794096000.123' })).toBeUndefined();
    expect(inlineParams('SELECT {d:Date}', { d: 20764 })).toBeUndefined();
    expect(inlineParams('SELECT {d:Array(Date)}', { d: ['2026-11-07'] })).toBe("SELECT CAST([CAST('2026-11-07' AS Date)] AS Array(Date))");
  });

  it('escapes what ends or escapes a literal, and control characters', () => {
    expect(quote("a'b\\c")).toBe("'a\\'b\\\\c'");
    expect(quote('\0\n\t\x7f\u{1F600}é')).toBe("'\\x00\\x0a\\x09\\x7f\u{1F600}é'");
  });
});

describe('literals through the engine', () => {
  let inline: Store;
  let bound: Store;

  beforeAll(async () => {
    const dataDir = await tempDir('inline');
    inline = openChdbStore({ dataDir, database: 'default' });
    bound = openChdbStore({ dataDir, database: 'default', bindParams: true });
  });

  afterAll(async () => {
    await inline.close();
    await bound.close();
    await removeTempDirs();
  });

  const both = async (sql: string, params: Record<string, unknown>): Promise<[unknown, unknown]> => {
    const [a, b] = await Promise.allSettled([inline.query(sql, params), bound.query(sql, params)]);
    // Both refuse what the type cannot hold, with their own error codes (parse error vs bad parameter).
    const settle = (r: PromiseSettledResult<unknown>): unknown => (r.status === 'fulfilled' ? r.value : 'refused');
    return [settle(a), settle(b)];
  };

  it('gives the answers bound parameters give, for any string and list an attacker can send', async () => {
    const text = fc.oneof(
      fc.string({ unit: 'binary', maxLength: 40 }),
      fc.constantFrom("'", "\\'", "\\", "'); DROP TABLE x; --", '{s:String}', '\0', '\u{D800}', 'a\u{DC00}b', '\x7f\x1b[0m', '%s%n', `${'x'.repeat(5000)}'`),
    );
    await fc.assert(
      fc.asyncProperty(text, fc.array(text, { maxLength: 5 }), async (s, a) => {
        const sql = 'SELECT {s:String} AS v, hex({s:String}) AS h, length({s:String}) AS n, {a:Array(String)} AS a, length({a:Array(String)}) AS k';
        const [x, y] = await both(sql, { s, a });
        expect(x).toEqual(y);
        expect(Array.isArray(x) && x.length === 1).toBe(true);
      }),
      { numRuns: 150 },
    );
  });

  it('gives the same typed values: times, dates, integers, limits, aggregate parameters', async () => {
    const cases: Array<[string, Record<string, unknown>]> = [
      ["SELECT {t:DateTime64(3, 'UTC')} AS t, toUnixTimestamp64Milli({t:DateTime64(3, 'UTC')}) AS ms", { t: '1794096000.123' }],
      ["SELECT {t:DateTime64(3, 'UTC')} AS t", { t: '2026-11-08 00:00:00.5' }],
      // Before 1970 (a range at the epoch in a zone behind UTC): bound, as a CAST of it fails.
      ["SELECT {t:DateTime64(3, 'UTC')} AS t, {ts:Array(DateTime64(3, 'UTC'))} AS ts", { t: '-3600.000', ts: ['-0.001', '5.000'] }],
      // The epoch and short numbers of seconds, which a CAST of the text misreads as a date.
      ["SELECT {t:DateTime64(3, 'UTC')} AS t, {ts:Array(DateTime64(3, 'UTC'))} AS ts", { t: '0.000', ts: ['0.000', '5.250', '86399.999', '4102444800.000'] }],
      ['SELECT {d:Date} AS d, {ds:Array(Date)} AS ds', { d: '1969-12-31', ds: ['1969-12-31', '2149-06-06'] }],
      ['SELECT {d:Date} AS d, {ds:Array(Date)} AS ds', { d: '2026-11-07', ds: ['2026-11-07', '2026-12-01'] }],
      ['SELECT {a:UInt32} AS a, {b:UInt64} AS b, {c:Int64} AS c, {u:Array(UInt64)} AS u, {f:Float64} AS f', { a: 4294967295, b: '18446744073709551615', c: -5, u: [1796646169432992, 0], f: 0.1 }],
      ['SELECT number FROM numbers(10) ORDER BY number LIMIT {n:UInt32} OFFSET {o:UInt32}', { n: 3, o: 2 }],
      ['SELECT groupUniqArray({n:UInt32})(number % 5) AS g FROM numbers(100)', { n: 3 }],
      ['SELECT toTypeName({a:UInt8}) AS t, {a:UInt8} + 1 AS p', { a: 255 }],
      // Values the type cannot hold fail in both.
      ['SELECT {a:UInt8} AS a', { a: 256 }],
      ['SELECT {a:UInt32} AS a', { a: 'abc' }],
      ["SELECT {t:DateTime64(3, 'UTC')} AS t", { t: 'not a time' }],
    ];
    for (const [sql, params] of cases) {
      const [x, y] = await both(sql, params);
      expect(x, sql).toEqual(y);
    }
  });

  it('answers statements run side by side each with its own values', async () => {
    const values = Array.from({ length: 64 }, (_, i) => `v${i}'\\${'x'.repeat(i)}`);
    const answers = await Promise.all(values.map((v, i) => inline.query<{ v: string; i: string }>('SELECT {v:String} AS v, {i:UInt32} AS i', { v, i })));
    expect(answers.map((r) => r[0]?.v)).toEqual(values);
    expect(answers.map((r) => Number(r[0]?.i))).toEqual(values.map((_, i) => i));
  });
});
