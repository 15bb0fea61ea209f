import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { EnrichedEvent } from '../schemas/enriched-event.ts';
import { makeEvent } from '../schemas/testing/events.ts';
import { eventRow } from './rows.ts';
import { commonColumns, engineErrorSummary, MAX_ENGINE_SUMMARY, storeErrorFromText, toCompactValues, toJsonCompactEachRow } from './store.ts';

const event: EnrichedEvent = makeEvent({
  id: 'e-1',
  site: 'example.com',
  hostname: 'example.com',
  clickIds: ['gclid'],
  screen: 'Desktop',
  props: { plan: 'pro' },
});

describe('commonColumns', () => {
  it('takes every column of the processor’s rows, so they travel as JSONCompactEachRow', () => {
    const columns = commonColumns([eventRow(event, '1'), eventRow({ ...event, revenue: { currency: 'EUR', amount: 1 } }, '2')]);
    expect(columns).toHaveLength(40);
    expect(columns).toEqual(Object.keys(eventRow(event, '1')));
  });

  it('takes the first row’s keys when every row holds exactly those', () => {
    expect(commonColumns([{ a: 1, b: 'x' }, { b: 'y', a: 2 }])).toEqual(['a', 'b']);
    expect(commonColumns([{ a: null, b: [] }])).toEqual(['a', 'b']);
  });

  it.each([
    ['no rows', []],
    ['a row without keys', [{}]],
    ['a missing key', [{ a: 1, b: 2 }, { a: 1 }]],
    ['an extra key', [{ a: 1 }, { a: 1, b: 2 }]],
    ['a key that is not a plain identifier', [{ 'a; DROP TABLE t': 1 }]],
    ['a row that is not a plain object', [{ a: 1 }, Object.assign(Object.create({ inherited: 1 }) as object, { a: 2 })]],
  ])('refuses %s', (_label, rows: Record<string, unknown>[]) => {
    expect(commonColumns(rows)).toBeUndefined();
  });
});

describe('toJsonCompactEachRow and toCompactValues', () => {
  it.each([
    ['another key in place of a column', [{ a: 1, b: 2 }, { a: 1, c: 2 }]],
    ['an undefined value', [{ a: 1 }, { a: undefined }]],
    ['a function value', [{ a: () => 1 }]],
    ['a symbol value', [{ a: Symbol('s') }]],
  ])('refuse %s', (_label, rows: Record<string, unknown>[]) => {
    const columns = commonColumns(rows);
    expect(columns).toBeDefined();
    expect(toJsonCompactEachRow(rows, columns ?? [])).toBeUndefined();
    expect(toCompactValues(rows, columns ?? [])).toBeUndefined();
  });

  it('write what JSONEachRow would store, or refuse', () => {
    const value = fc.oneof(
      fc.string(),
      fc.string({ unit: 'grapheme' }),
      fc.string({ unit: 'binary' }),
      fc.double(),
      fc.integer(),
      fc.boolean(),
      fc.constant(null),
      fc.constant(undefined),
      fc.array(fc.string()),
      fc.dictionary(fc.string(), fc.string()),
    );
    const keys = fc.constantFrom('site', 'name', 'ts', 'props', 'x_1');
    const row = fc.dictionary(keys, value, { noNullPrototype: true });
    // Rows of one shape, as the processor writes, and rows whose keys differ.
    const sameShape = fc
      .uniqueArray(keys, { minLength: 1, maxLength: 5 })
      .chain((ks) => fc.array(fc.record(Object.fromEntries(ks.map((k) => [k, value])), { noNullPrototype: true }), { minLength: 1, maxLength: 5 }));
    const rows = fc.oneof(sameShape, fc.array(row, { minLength: 1, maxLength: 4 }));
    let compactCount = 0;
    fc.assert(
      fc.property(rows, (list: Record<string, unknown>[]) => {
        const columns = commonColumns(list);
        const text = columns === undefined ? undefined : toJsonCompactEachRow(list, columns);
        const values = columns === undefined ? undefined : toCompactValues(list, columns);
        expect(values === undefined).toBe(text === undefined);
        if (columns === undefined || text === undefined || values === undefined) return;
        compactCount++;
        const lines = text.split('\n');
        expect(lines.pop()).toBe('');
        const parsed = lines.map((l) => JSON.parse(l) as unknown[]);
        expect(JSON.parse(JSON.stringify(values))).toEqual(parsed);
        for (const [i, original] of list.entries()) {
          // What JSONEachRow would send for this row: exactly these columns, these values.
          const viaObject = JSON.parse(JSON.stringify(original)) as Record<string, unknown>;
          expect(Object.keys(viaObject).sort()).toEqual([...columns].sort());
          expect(parsed[i]).toEqual(columns.map((c) => viaObject[c]));
        }
      }),
      { numRuns: 2000 },
    );
    expect(compactCount).toBeGreaterThan(200);
  });
});

describe('engine error messages', () => {
  const M = 'Qk4MARK';
  // Texts as chDB and a ClickHouse server write them for a refused insert or a bad parameter.
  const refused = [
    `Code: 27. DB::Exception: Code: 27. DB::Exception: Cannot parse input: expected '"' before: '${M}"]\\n': (while reading the value of key b): (at row 1)\n: \nRow 1:\nColumn 0,   name: a, type: String, parsed text: "<DOUBLE QUOTE>${M}<DOUBLE QUOTE>"\nERROR. (CANNOT_PARSE_INPUT_ASSERTION_FAILED) (version 26.7.2.1)`,
    `Code: 25. DB::Exception: Cannot parse escape sequence: missing second part of surrogate pair: (while reading the value of key a): (at row 1)\n: \nRow 1:\nColumn 0,   name: a, type: String, parsed text: "<DOUBLE QUOTE>${M}<BACKSLASH>ud800"ERROR (CANNOT_PARSE_ESCAPE_SEQUENCE) (version 26.7.2.1)`,
    `Code: 457. DB::Exception: Value ${M} cannot be parsed as UInt8 for query parameter 'p' because it isn't parsed completely. (BAD_QUERY_PARAMETER)`,
    `Code: 6. DB::Exception: Cannot parse string '${M}' as DateTime64(3): syntax error at position 0. (CANNOT_PARSE_TEXT)`,
    `Code: 117. DB::Exception: Cannot parse JSON object here: {"a":"${M}"}. (INCORRECT_DATA)`,
    `Query failed: Code: 1000. DB::Exception: ${'long text without quotes '.repeat(20)}${M}. (POCO_EXCEPTION)`,
  ];

  it.each(refused)('keeps the code and name, never the data: %#', (text) => {
    const summary = engineErrorSummary(text);
    expect(summary).not.toContain(M);
    expect(summary.length).toBeLessThanOrEqual(MAX_ENGINE_SUMMARY + 2);
    const err = storeErrorFromText(text);
    expect(err.code).toBe(Number(/Code: (\d+)/.exec(text)?.[1]));
    expect(err.type).toBe(/\(([A-Z_]+)\)(?: \(version [^)]*\))?$/.exec(text)?.[1]);
    expect(err.message).toMatch(/^Code: \d+\. DB::Exception: .* \([A-Z_]+\)$/);
    expect(`${err.message}${err.stack}`).not.toContain(M);
  });

  it('keeps what says what went wrong', () => {
    expect(engineErrorSummary(refused[1] ?? '')).toBe('Cannot parse escape sequence: missing second part of surrogate pair: (while reading the value of key a): (at row 1)');
    expect(engineErrorSummary(refused[2] ?? '')).toBe('…');
    expect(storeErrorFromText('Code: 60. DB::Exception: Table farol.x does not exist. (UNKNOWN_TABLE) (version 24.8.1.1)').message).toBe(
      'Code: 60. DB::Exception: Table farol.x does not exist (UNKNOWN_TABLE)',
    );
  });

  it('never lets data through, whatever the text (property)', () => {
    fc.assert(
      fc.property(fc.string(), fc.string(), fc.constantFrom("'", '"', '`', ' before: ', ' parsed text: ', ' Value ', '{', '['), (head, tail, quote) => {
        const data = `${M}${tail}${M}`;
        const text = `Code: 27. DB::Exception: ${head.replaceAll(M, '')}${quote}${data}. (CANNOT_PARSE_INPUT_ASSERTION_FAILED)`;
        expect(engineErrorSummary(text)).not.toContain(M);
      }),
      { numRuns: 1000 },
    );
  });
});
