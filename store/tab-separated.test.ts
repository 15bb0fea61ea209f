import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventColumnTypes, formatDay, formatTimestamp, sessionColumnTypes } from './rows.ts';
import { encodeRows, StoreError, type Store } from './store.ts';
import { toTabSeparated, type InsertColumnType, type InsertSchema } from './tab-separated.ts';
import { storeHarnesses } from './testing/store-harness.ts';
import { openTestStore, removeTempDirs } from './testing/store.ts';

/**
 * The TabSeparated path stores exactly what the JSON path stores: random rows of `events` and
 * `sessions` (any UTF-16 text with tabs, newlines, backslashes, quotes, NUL and astral
 * characters; 64-bit ids to 2^64 − 1; times and days across the storable range; decimals to 12
 * digits, negative and null; maps and arrays) go through `insert` as TabSeparated into a table and
 * as JSONCompactEachRow into its twin, and both read back the same. A lone surrogate falls back
 * to JSON and is refused the same way. On embedded chDB and through the HTTP endpoint.
 */

// Text that TabSeparated escapes, or that could end a field, an element or a line, or that is not
// ASCII, among plain characters.
const unit = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom('\t', '\n', '\r', '\\', "'", '"', '\0', ',', ':', '[', ']', '{', '}', '\\N', 'é', '😀', '\u2028', '\x7f', '\b') },
  { weight: 6, arbitrary: fc.string({ minLength: 1, maxLength: 1, unit: 'binary' }) },
);
const text = fc.string({ unit, maxLength: 12 }).filter((s) => s.isWellFormed());
const uint64 = fc.oneof(fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }).map(String), fc.constantFrom('0', '18446744073709551615'));
// Years 1970–2148: where DateTime64(3) and Date both hold the day.
const LAST_MS = Date.UTC(2148, 11, 31, 23, 59, 59, 999);
const timestamp = fc.oneof(fc.integer({ min: 0, max: LAST_MS }), fc.constantFrom(0, LAST_MS)).map(formatTimestamp);
const day = fc.integer({ min: 0, max: Math.floor(LAST_MS / 86_400_000) }).map(formatDay);
const decimal = fc.oneof(
  fc.constant(null),
  fc.tuple(fc.boolean(), fc.bigInt({ min: 0n, max: 10n ** 18n - 1n })).map(([neg, v]) => {
    const digits = v.toString().padStart(7, '0');
    return `${neg ? '-' : ''}${digits.slice(0, -6)}.${digits.slice(-6)}`;
  }),
);

const values: Record<InsertColumnType, fc.Arbitrary<unknown>> = {
  String: text,
  'LowCardinality(String)': text,
  UInt8: fc.integer({ min: 0, max: 255 }),
  Int8: fc.integer({ min: -128, max: 127 }),
  UInt32: fc.oneof(fc.integer({ min: 0, max: 0xffff_ffff }), fc.constant(0xffff_ffff)),
  // A JS number is sent as a number by JSON and as its digits here.
  UInt64: fc.oneof({ weight: 5, arbitrary: uint64 }, { weight: 1, arbitrary: fc.maxSafeNat() }),
  Date: day,
  "DateTime64(3, 'UTC')": timestamp,
  'Nullable(Decimal(18, 6))': decimal,
  'Array(String)': fc.array(text, { maxLength: 4 }),
  'Array(LowCardinality(String))': fc.array(text, { maxLength: 4 }),
  'Map(String, String)': fc.dictionary(text, text, { maxKeys: 4, noNullPrototype: true }),
};

function rowOf(schema: InsertSchema): fc.Arbitrary<Record<string, unknown>> {
  // As plain objects, the rows the processor builds (fast-check's have no prototype).
  return fc.record(Object.fromEntries(Object.entries(schema).map(([name, type]) => [name, values[type]]))).map((r) => ({ ...r }));
}

const tables = [
  { name: 'events', schema: eventColumnTypes },
  { name: 'sessions', schema: sessionColumnTypes },
] as const;

describe('column types the encoder writes by', () => {
  it('are those of the migrated events and sessions tables', async () => {
    const store = await openTestStore('farol_schema');
    try {
      for (const t of tables) {
        const described = await store.query<{ name: string; type: string }>(`DESCRIBE TABLE ${t.name}`);
        expect(Object.fromEntries(described.map((c) => [c.name, c.type]))).toEqual(t.schema);
      }
    } finally {
      await store.close();
      await removeTempDirs();
    }
  });
});

const database = 'farol_tsv';
const harnesses = storeHarnesses(database, 'farol-tsv');

/** Every row of `table` as JSON text, sorted: the same multiset of rows reads the same. */
async function contents(store: Store, table: string): Promise<string[]> {
  return (await store.query(`SELECT * FROM ${table}`)).map((r) => JSON.stringify(r)).sort();
}

describe('toTabSeparated, one compiled loop per column list', () => {
  const fieldsOf = (buf: Buffer | undefined): string[][] =>
    (buf ?? Buffer.alloc(0)).toString('utf8').split('\n').slice(0, -1).map((line) => line.split('\t'));

  it('writes the same fields for any order or subset of the columns, and for names no identifier could hold', () => {
    // Names with a quote, a backslash, a line break, a backtick and `${`: each is read as the
    // property it names, never as code.
    const schema: InsertSchema = { id: 'UInt64', 'a"b\\c\n': 'String', '`${x}`': 'UInt8', "it's": 'Array(String)', t: "DateTime64(3, 'UTC')" };
    fc.assert(
      fc.property(fc.array(rowOf(schema), { minLength: 1, maxLength: 6 }), fc.shuffledSubarray(Object.keys(schema), { minLength: 1 }), (rows, subset) => {
        const all = Object.keys(schema);
        const whole = fieldsOf(toTabSeparated(rows, all, schema));
        expect(whole).toHaveLength(rows.length);
        const some = fieldsOf(toTabSeparated(rows, subset, schema));
        expect(some).toEqual(whole.map((fields) => subset.map((c) => fields[all.indexOf(c)])));
      }),
      { numRuns: 200 },
    );
  });

  it('writes the same bytes in a process that refuses code generation', () => {
    const schema: InsertSchema = { n: 'UInt8', s: 'String', m: 'Map(String, String)', t: "DateTime64(3, 'UTC')" };
    const rows = fc.sample(rowOf(schema), { numRuns: 20, seed: 11 });
    const dir = mkdtempSync(join(tmpdir(), 'farol-tsv-'));
    try {
      const script = join(dir, 'encode.mjs');
      writeFileSync(
        script,
        `const { toTabSeparated } = await import(process.argv[2]);
         let refused = false;
         try { new Function('return 1'); } catch { refused = true; }
         const rows = JSON.parse(process.argv[3]);
         process.stdout.write(JSON.stringify({ refused, text: toTabSeparated(rows, ['t', 's', 'm', 'n'], JSON.parse(process.argv[4]))?.toString('base64') }));`,
      );
      const out = execFileSync(
        process.execPath,
        ['--disallow-code-generation-from-strings', '--import', 'tsx', script, fileURLToPath(new URL('./tab-separated.ts', import.meta.url)), JSON.stringify(rows), JSON.stringify(schema)],
        { encoding: 'utf8' },
      );
      const child = JSON.parse(out) as { refused: boolean; text: string };
      expect(child.refused).toBe(true);
      expect(child.text).toBe(toTabSeparated(rows, ['t', 's', 'm', 'n'], schema)?.toString('base64'));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('still refuses a value out of its form in any column, after the loop for its list was compiled', () => {
    const schema: InsertSchema = { n: 'UInt8', s: 'String' };
    expect(toTabSeparated([{ n: 1, s: 'x' }], ['n', 's'], schema)?.toString()).toBe('1\tx\n');
    expect(toTabSeparated([{ n: 1, s: 'x' }, { n: 256, s: 'y' }], ['n', 's'], schema)).toBeUndefined();
    expect(toTabSeparated([{ n: 1, s: 'x' }, { n: 2, s: 'a\ud800' }], ['n', 's'], schema)).toBeUndefined();
    expect(toTabSeparated([{ n: 1, s: 'x' }], ['n', 'missing'], schema)).toBeUndefined();
    expect(toTabSeparated([{ n: 3, s: 'z' }], ['s', 'n'], schema)?.toString()).toBe('z\t3\n');
  });
});

describe.each(Object.keys(harnesses))('TabSeparated and JSON on the %s store', (kind) => {
  let store: Store;
  let teardown: () => Promise<void>;

  beforeAll(async () => {
    const make = harnesses[kind as keyof typeof harnesses];
    if (make === undefined) throw new Error(`no harness ${kind}`);
    ({ store, teardown } = await make());
    await store.exec(`CREATE DATABASE IF NOT EXISTS ${database}`, undefined, { withoutDatabase: true });
    // Plain tables with the raw tables' columns (no TTL to drop old rows, no views); the twin's
    // name has no known column types, so its rows travel as JSONCompactEachRow.
    for (const t of tables) {
      const columns = Object.entries(t.schema).map(([name, type]) => `${name} ${type}`).join(', ');
      await store.exec(`CREATE TABLE ${t.name} (${columns}) ENGINE = MergeTree ORDER BY tuple()`);
      await store.exec(`CREATE TABLE ${t.name}_json AS ${t.name}`);
    }
  });
  afterAll(async () => {
    await teardown();
  });

  it.each(tables)('stores the same $name rows either way', async (t) => {
    await fc.assert(
      fc.asyncProperty(fc.array(rowOf(t.schema), { minLength: 1, maxLength: 12 }), async (rows) => {
        expect(encodeRows(t.name, rows)?.format).toBe('TabSeparated');
        expect(encodeRows(`${t.name}_json`, rows)?.format).toBe('JSONCompactEachRow');
        await store.exec(`TRUNCATE TABLE ${t.name}`);
        await store.exec(`TRUNCATE TABLE ${t.name}_json`);
        await store.insert(t.name, rows);
        await store.insert(`${t.name}_json`, rows);
        const stored = await contents(store, t.name);
        expect(stored).toHaveLength(rows.length);
        expect(stored).toEqual(await contents(store, `${t.name}_json`));
      }),
      { numRuns: kind === 'chdb' ? 30 : 12 },
    );
  });

  it('falls back to JSON for a value out of its form, and is refused alike for a lone surrogate', async () => {
    const base = fc.sample(rowOf(eventColumnTypes), { numRuns: 1, seed: 7 })[0] as Record<string, unknown>;
    // Not in the encoder's forms, but JSON stores them: the batch goes as JSON, stored the same.
    for (const odd of [{ session_id: Number.MAX_SAFE_INTEGER + 2 }, { timestamp: '2026-01-15 12:00:00' }, { revenue_amount: '12.5' }]) {
      const rows = [{ ...base, ...odd }];
      expect(encodeRows('events', rows)?.format).toBe('JSONCompactEachRow');
      await store.exec('TRUNCATE TABLE events');
      await store.exec('TRUNCATE TABLE events_json');
      await store.insert('events', rows);
      await store.insert('events_json', rows);
      expect(await contents(store, 'events')).toEqual(await contents(store, 'events_json'));
    }
    const bad = [base, { ...base, pathname: 'a\ud800b' }];
    expect(encodeRows('events', bad)?.format).toBe('JSONCompactEachRow');
    const refused = await store.insert('events', bad).catch((e: unknown) => e);
    const refusedTwin = await store.insert('events_json', bad).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(StoreError);
    expect(refused).toMatchObject({ refusedData: true, code: (refusedTwin as StoreError).code });
  });
});
