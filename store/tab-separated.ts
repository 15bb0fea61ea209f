/**
 * Rows as ClickHouse's TabSeparated text, for the tables whose column types are known
 * (store/rows.ts `insertSchema`): the cheapest insert format both stores accept, measured on the
 * processor's rows (bench/insert-formats.ts): writing it costs JavaScript 1.3–1.9× less CPU than
 * JSON.stringify of each row plus the UTF-8 copy, and the engine about the same as
 * JSONCompactEachRow. The rows' values are already text (ids, times, decimals), so a row is mostly
 * ASCII copied into one reused buffer, whose bytes then travel without another copy (to the
 * engine, or between threads).
 *
 * Exactness comes first: a value is written here only in the one form the JSON path would send
 * for it (the forms store/rows.ts builds) — numbers, ids, times, days and decimals as the same
 * text, strings as the same characters — so ClickHouse stores the same values either way.
 * Anything else (a number out of its column's range, a time in another format, a value of another
 * type, a string that is not well-formed Unicode, which JSON sends as an escape ClickHouse
 * refuses) makes {@link toTabSeparated} answer undefined, and the caller sends the rows as JSON as
 * before: ClickHouse then stores or refuses them exactly as it always did (refused rows are found
 * by the processor's splitting, whose halves come back here).
 *
 * Why not RowBinary, which the engine reads faster still: chDB takes an insert's data inline
 * after the statement, and its statement splitter ends that data at the first blank line
 * (`\n\n`), which binary values contain (a 64-bit id with two 0x0A bytes). Text formats never do:
 * rows end with one newline and newlines inside values are escaped.
 *
 * Hand-written: it sits on the processor's hot path, and no maintained library writes it from
 * plain rows without a schema object per row.
 */

/** Column types this encoder writes (as `DESCRIBE TABLE` names them). */
export type InsertColumnType =
  | 'String'
  | 'LowCardinality(String)'
  | 'UInt8'
  | 'Int8'
  | 'UInt32'
  | 'UInt64'
  | 'Date'
  | "DateTime64(3, 'UTC')"
  | 'Nullable(Decimal(18, 6))'
  | 'Array(String)'
  | 'Array(LowCardinality(String))'
  | 'Map(String, String)';

/** A table's columns by name, with their types. */
export type InsertSchema = Readonly<Record<string, InsertColumnType>>;

/**
 * A growing byte buffer, one per thread and reused: {@link TextWriter.take} copies a batch out.
 * Strings go in code unit by code unit while they are ASCII (nearly every value: ids, paths,
 * countries, versions, times); a string with any other character goes through Buffer's UTF-8
 * writer once it is known to be well-formed.
 */
class TextWriter {
  buf: Buffer = Buffer.allocUnsafe(1 << 16);
  pos = 0;

  ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  byte(c: number): void {
    this.ensure(1);
    this.buf[this.pos++] = c;
  }

  /** ASCII text that needs no escaping (numbers, times, `\N`, `[]`). */
  plain(s: string): void {
    const n = s.length;
    this.ensure(n);
    const buf = this.buf;
    let p = this.pos;
    for (let i = 0; i < n; i++) buf[p++] = s.charCodeAt(i);
    this.pos = p;
  }

  /**
   * `s` escaped for a field (`quote` false) or inside a quoted array or map element (`quote`
   * true: the quote is escaped too); false when `s` is not well-formed Unicode.
   */
  escaped(s: string, quote: boolean): boolean {
    const n = s.length;
    // Worst case: every code unit escaped into two bytes.
    this.ensure(2 * n);
    const buf = this.buf;
    let p = this.pos;
    for (let i = 0; i < n; i++) {
      const c = s.charCodeAt(i);
      if (c >= 0x80) return this.utf8(s, quote);
      const e = ESCAPE[c] as number;
      if (e === 0 || (c === 0x27 && !quote)) buf[p++] = c;
      else {
        buf[p++] = 0x5c;
        buf[p++] = e;
      }
    }
    this.pos = p;
    return true;
  }

  private utf8(s: string, quote: boolean): boolean {
    if (!s.isWellFormed()) return false;
    const text = (quote ? quotedSpecial : tsvSpecial).test(s) ? s.replace(quote ? quotedSpecialAll : tsvSpecialAll, escapeChar) : s;
    const bytes = Buffer.byteLength(text, 'utf8');
    this.ensure(bytes);
    this.pos += this.buf.write(text, this.pos, bytes, 'utf8');
    return true;
  }

  take(): Buffer {
    return Buffer.from(this.buf.subarray(0, this.pos));
  }
}

// For each ASCII code unit, the letter of its escape after the backslash, or 0: backslash, tab,
// line feed, carriage return and NUL in a field (the engine unescapes `\\`, `\t`, `\n`, `\r`,
// `\0`), and the quote inside a quoted element. Every other character is itself.
const ESCAPE = new Uint8Array(128);
ESCAPE[0x5c] = 0x5c;
ESCAPE[0x09] = 0x74;
ESCAPE[0x0a] = 0x6e;
ESCAPE[0x0d] = 0x72;
ESCAPE[0x00] = 0x30;
ESCAPE[0x27] = 0x27;
const tsvSpecial = /[\\\t\n\r\0]/;
const tsvSpecialAll = /[\\\t\n\r\0]/g;
const quotedSpecial = /[\\\t\n\r\0']/;
const quotedSpecialAll = /[\\\t\n\r\0']/g;
const escapes: Readonly<Record<string, string>> = { '\\': '\\\\', '\t': '\\t', '\n': '\\n', '\r': '\\r', '\0': '\\0', "'": "\\'" };
const escapeChar = (c: string): string => escapes[c] as string;

/** Writes `v` as a field; false when it is not in its column's form (nothing is kept then). */
type Field = (w: TextWriter, v: unknown) => boolean;

function text(w: TextWriter, v: unknown): boolean {
  return typeof v === 'string' && w.escaped(v, false);
}

function integer(min: number, max: number): Field {
  return (w, v) => {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) return false;
    w.plain(String(v));
    return true;
  };
}

const MAX_UINT64 = '18446744073709551615';
const uint64Text = /^(?:0|[1-9]\d{0,19})$/;

function uint64(w: TextWriter, v: unknown): boolean {
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v) || v < 0) return false;
    w.plain(String(v));
    return true;
  }
  if (typeof v !== 'string' || !uint64Text.test(v) || (v.length === 20 && v > MAX_UINT64)) return false;
  w.plain(v);
  return true;
}

let lastDay = '';

/** The two-digit number at `i` of `s`, or -1. */
function twoDigits(s: string, i: number): number {
  const a = s.charCodeAt(i) - 48;
  const b = s.charCodeAt(i + 1) - 48;
  return a >= 0 && a <= 9 && b >= 0 && b <= 9 ? a * 10 + b : -1;
}

/**
 * Whether `s` starts with `YYYY-MM-DD` of a real day in 1970–2148 (where Date and DateTime64
 * both hold it). Read in place (no substring): it runs for every time of every row.
 */
function validDay(s: string): boolean {
  if (lastDay !== '' && s.startsWith(lastDay)) return true;
  if (s.charCodeAt(4) !== 45 || s.charCodeAt(7) !== 45) return false;
  const century = twoDigits(s, 0);
  const yy = twoDigits(s, 2);
  const month = twoDigits(s, 5);
  const day = twoDigits(s, 8);
  if (century < 0 || yy < 0 || month < 1 || month > 12 || day < 1) return false;
  const year = century * 100 + yy;
  if (year < 1970 || year > 2148) return false;
  // Date.UTC rolls 02-30 over into March: only a day that exists passes.
  const d = new Date(Date.UTC(year, month - 1, day));
  if (d.getUTCMonth() !== month - 1 || d.getUTCDate() !== day) return false;
  lastDay = s.slice(0, 10);
  return true;
}

function date(w: TextWriter, v: unknown): boolean {
  if (typeof v !== 'string' || v.length !== 10 || !validDay(v)) return false;
  w.plain(v);
  return true;
}

/** `YYYY-MM-DD hh:mm:ss.fff`, formatTimestamp's form. */
function dateTime64(w: TextWriter, v: unknown): boolean {
  if (typeof v !== 'string' || v.length !== 23 || v.charCodeAt(10) !== 32 || v.charCodeAt(13) !== 58 || v.charCodeAt(16) !== 58 || v.charCodeAt(19) !== 46) {
    return false;
  }
  const hour = twoDigits(v, 11);
  const min = twoDigits(v, 14);
  const sec = twoDigits(v, 17);
  const ms = twoDigits(v, 20);
  const ms3 = v.charCodeAt(22) - 48;
  if (hour < 0 || hour > 23 || min < 0 || min > 59 || sec < 0 || sec > 59 || ms < 0 || ms3 < 0 || ms3 > 9 || !validDay(v)) return false;
  w.plain(v);
  return true;
}

/** Decimal(18, 6) text as rows.ts writes it (revenueAmount). */
const decimalText = /^-?\d{1,12}\.\d{6}$/;

function nullableDecimal(w: TextWriter, v: unknown): boolean {
  if (v === null) {
    w.plain('\\N');
    return true;
  }
  if (typeof v !== 'string' || !decimalText.test(v)) return false;
  w.plain(v);
  return true;
}

function quoted(w: TextWriter, s: string): boolean {
  w.byte(0x27);
  if (!w.escaped(s, true)) return false;
  w.byte(0x27);
  return true;
}

function stringArray(w: TextWriter, v: unknown): boolean {
  if (!Array.isArray(v)) return false;
  w.byte(0x5b);
  for (let i = 0; i < v.length; i++) {
    const item: unknown = v[i];
    if (typeof item !== 'string') return false;
    if (i > 0) w.byte(0x2c);
    if (!quoted(w, item)) return false;
  }
  w.byte(0x5d);
  return true;
}

function stringMap(w: TextWriter, v: unknown): boolean {
  if (typeof v !== 'object' || v === null || Object.getPrototypeOf(v) !== Object.prototype) return false;
  w.byte(0x7b);
  // for-in walks a plain object's own keys in the order JSON.stringify writes them (which the map
  // keeps), without the array Object.keys would allocate for every row.
  let first = true;
  for (const k in v) {
    const item = (v as Record<string, unknown>)[k];
    if (typeof item !== 'string') return false;
    if (!first) w.byte(0x2c);
    first = false;
    if (!quoted(w, k)) return false;
    w.byte(0x3a);
    if (!quoted(w, item)) return false;
  }
  w.byte(0x7d);
  return true;
}

const fields: Record<InsertColumnType, Field> = {
  String: text,
  'LowCardinality(String)': text,
  UInt8: integer(0, 255),
  Int8: integer(-128, 127),
  UInt32: integer(0, 0xffff_ffff),
  UInt64: uint64,
  Date: date,
  "DateTime64(3, 'UTC')": dateTime64,
  'Nullable(Decimal(18, 6))': nullableDecimal,
  'Array(String)': stringArray,
  'Array(LowCardinality(String))': stringArray,
  'Map(String, String)': stringMap,
};

const writer = new TextWriter();

/** Writes `rows` in its column list's order; false at the first value not in its column's form. */
type RowsWriter = (w: TextWriter, rows: readonly Record<string, unknown>[]) => boolean;

/** Compiled writers by column list and types; a handful in practice (one per table and row shape). */
const compiled = new Map<string, RowsWriter>();
const COMPILED_ENTRIES = 64;

/**
 * A loop over the rows that reads each column by its constant name and calls its field writer at
 * a call site of its own. Generated code (`new Function`), because this loop is the processor's
 * largest cost after GC (`--cpu-prof` of `npm run bench -- processor`): in one loop over a
 * column-name array every `row[name]` is a keyed lookup that V8 cannot cache across 30–40 names,
 * and every writer call goes through one call site that sees a dozen functions, so none is
 * inlined. The source holds only the column names as JSON string literals and the writers'
 * positions, never a value, and the names are the schema's own (checked by the caller). A process
 * that refuses code generation (`node --disallow-code-generation-from-strings`) gets the plain loop.
 */
function rowsWriter(columns: readonly string[], types: readonly InsertColumnType[]): RowsWriter {
  const key = JSON.stringify([columns, types]);
  let run = compiled.get(key);
  if (run !== undefined) return run;
  const writers = types.map((t) => fields[t]);
  const last = columns.length - 1;
  const body = [
    `const [${columns.map((_, i) => `f${i}`).join(', ')}] = writers;`,
    'return (w, rows) => {',
    '  for (let r = 0; r < rows.length; r++) {',
    '    const row = rows[r];',
    ...columns.map((c, i) => `    if (!f${i}(w, row[${JSON.stringify(c)}])) return false;\n    w.byte(${i === last ? 0x0a : 0x09});`),
    '  }',
    '  return true;',
    '};',
  ].join('\n');
  try {
    run = (new Function('writers', body) as (writers: readonly Field[]) => RowsWriter)(writers);
  } catch {
    // Code generation refused (node --disallow-code-generation-from-strings): the plain loop.
    run = (w, rows) => {
      for (const row of rows) {
        for (let i = 0; i <= last; i++) {
          if (!(writers[i] as Field)(w, row[columns[i] as string])) return false;
          w.byte(i === last ? 0x0a : 0x09);
        }
      }
      return true;
    };
  }
  if (compiled.size >= COMPILED_ENTRIES) compiled.delete(compiled.keys().next().value as string);
  compiled.set(key, run);
  return run;
}

/**
 * `rows` as TabSeparated lines in `columns` order (a fresh Buffer), or undefined when a column is
 * not in `schema` or a value is not in the form the JSON path sends for its type (see the module's
 * note).
 */
export function toTabSeparated(rows: readonly Record<string, unknown>[], columns: readonly string[], schema: InsertSchema): Buffer | undefined {
  const types: InsertColumnType[] = [];
  for (const c of columns) {
    const type = Object.hasOwn(schema, c) ? schema[c] : undefined;
    if (type === undefined) return undefined;
    types.push(type);
  }
  writer.pos = 0;
  if (!rowsWriter(columns, types)(writer, rows)) return undefined;
  return writer.take();
}
