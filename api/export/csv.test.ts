import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { csvCell, toCsv } from './csv.ts';
import { parseCsv } from './testing/parse-csv.ts';

describe('csvCell', () => {
  it.each([
    ['plain', 'plain'],
    ['a,b', '"a,b"'],
    ['say "hi"', '"say ""hi"""'],
    ['two\nlines', '"two\nlines"'],
    ['cr\rhere', '"cr\rhere"'],
    ['=SUM(A1)', "'=SUM(A1)"],
    ['+1', "'+1"],
    ['-1', "'-1"],
    ['@cmd', "'@cmd"],
    ['\tx', "'\tx"],
    ['=a,"b"', '"\'=a,""b"""'],
    ['a=b', 'a=b'],
    ['', ''],
  ])('writes %j as %j', (value, cell) => {
    expect(csvCell(value)).toBe(cell);
  });

  it('writes numbers as they are, negatives included, and null as empty', () => {
    expect(csvCell(-1.5)).toBe('-1.5');
    expect(csvCell(42)).toBe('42');
    expect(csvCell(null)).toBe('');
    expect(csvCell(Number.NaN)).toBe('');
  });
});

describe('toCsv', () => {
  it('round-trips any text through an RFC 4180 reader, formulas defused', () => {
    fc.assert(
      fc.property(fc.array(fc.array(fc.string({ unit: 'binary' }), { minLength: 1, maxLength: 4 }), { maxLength: 6 }), (rows) => {
        const width = Math.max(1, ...rows.map((r) => r.length));
        const full = rows.map((r) => [...r, ...Array.from({ length: width - r.length }, () => '')]);
        const header = Array.from({ length: width }, (_, i) => `c${i}`);
        const parsed = parseCsv(toCsv(header, full));
        expect(parsed[0]).toEqual(header);
        expect(parsed.slice(1)).toEqual(full.map((r) => r.map((v) => (/^[=+\-@\t\r]/.test(v) ? `'${v}` : v))));
      }),
      { numRuns: 300 },
    );
  });

  it('keeps a value holding a quote, a comma, a newline and a formula in one cell', () => {
    const nasty = 'x",\n=cmd';
    const text = toCsv(['name', 'visitors'], [[nasty, 3], [`=${nasty}`, 1]]);
    expect(text).toBe('name,visitors\r\n"x"",\n=cmd",3\r\n"\'=x"",\n=cmd",1\r\n');
    expect(parseCsv(text)).toEqual([
      ['name', 'visitors'],
      [nasty, '3'],
      [`'=${nasty}`, '1'],
    ]);
  });
});
