import type { QueryParams } from './store.ts';

/**
 * Query parameters written into the statement as typed literals, for the embedded engine.
 *
 * Why not bind them: chDB (3.4) runs every statement with bound parameters through one
 * process-wide queue (its parameter state is not isolated per connection, see `globalParamChain`
 * in node_modules/chdb/index.js), so a dashboard's panels, the API's reads and the processor's
 * closing job ran one at a time on a 2-core machine. Statements without parameters run side by
 * side. Hand-written rather than a library's: the literal forms must be exactly what ClickHouse's
 * own substitution gives (a typed `CAST` of a literal), and the escaping is the security boundary.
 *
 * Each `{name:Type}` outside string literals, quoted identifiers and comments becomes
 * `CAST(<literal> AS Type)`; in an aggregate function's parameters (`f({n:UInt32})(x)`), where
 * ClickHouse takes only literals, a bare integer literal, as its own substitution does. Strings
 * are single-quoted with `\` and `'` escaped (the only characters that end or escape a literal)
 * and control characters as `\xHH`, so no value can leave its literal; the text is sent as UTF-8
 * exactly as a bound value is (a lone surrogate becomes U+FFFD either way).
 *
 * Returns undefined, and the caller binds as before, when a placeholder's type or value is not one
 * this handles (a type outside {@link literalTypes}, a value of the wrong kind, an integer beyond
 * 2^53 as a number, a non-finite number) or a placeholder names no parameter.
 */
export function inlineParams(sql: string, params: QueryParams): string | undefined {
  let out = '';
  let last = 0;
  let i = 0;
  const n = sql.length;
  while (i < n) {
    const c = sql[i];
    if (c === "'" || c === '"' || c === '`') {
      i = skipQuoted(sql, i, c);
    } else if (c === '-' && sql[i + 1] === '-') {
      const end = sql.indexOf('\n', i);
      i = end === -1 ? n : end + 1;
    } else if (c === '/' && sql[i + 1] === '*') {
      const end = sql.indexOf('*/', i + 2);
      i = end === -1 ? n : end + 2;
    } else if (c === '{') {
      const m = placeholder.exec(sql.slice(i, i + 200));
      if (m === null) {
        i++;
        continue;
      }
      const [whole, name = '', type = ''] = m;
      if (!Object.hasOwn(params, name)) return undefined;
      const end = i + whole.length;
      const literal = literalFor(type.trim(), params[name], sql.startsWith(')(', end));
      if (literal === undefined) return undefined;
      out += sql.slice(last, i) + literal;
      last = end;
      i = end;
    } else {
      i++;
    }
  }
  return out + sql.slice(last);
}

/** `{name:Type}` as ClickHouse's parser reads it: an identifier, a colon, a type up to the brace. */
const placeholder = /^\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*:\s*([^{}]+?)\s*\}/;

/** The index after the quoted token starting at `i`: `\` escapes the next character, a doubled quote is one quote. */
function skipQuoted(sql: string, i: number, quote: string): number {
  let j = i + 1;
  while (j < sql.length) {
    const c = sql[j];
    if (c === '\\') j += 2;
    else if (c === quote) {
      if (sql[j + 1] === quote) j += 2;
      else return j + 1;
    } else j++;
  }
  return sql.length;
}

const integerTypes = new Set(['UInt8', 'UInt16', 'UInt32', 'UInt64', 'Int8', 'Int16', 'Int32', 'Int64']);
const scalarTypes = new Set(['String', 'Date', 'Float64', "DateTime64(3, 'UTC')", 'DateTime64(3)', 'DateTime', ...integerTypes]);

/** The parameter types written as literals; the rest are bound. */
export const literalTypes: ReadonlySet<string> = new Set([...scalarTypes, ...[...scalarTypes].map((t) => `Array(${t})`)]);

/**
 * Dates and times: a CAST of seconds since the epoch as text misreads short numbers ('0.000' fails as a
 * malformed date) and refuses negative ones, which bound values read as times, so such a time is
 * written as its milliseconds (`fromUnixTimestamp64Milli`, the type `DateTime64(3, 'UTC')` itself),
 * a time as `YYYY-MM-DD[ hh:mm:ss[.fff]]` text is cast as bound text is read, and the rest stay
 * bound. Before 1970 stays bound too: a bound '-0.001' reads as +1 ms, which a literal would not.
 */
const timeText = /^\d{4}-\d\d-\d\d( \d\d:\d\d:\d\d(\.\d{1,9})?)?$/;
const epochSeconds = /^(\d{1,12})\.(\d{3})$/;

function timeLiteral(type: string, text: string): string | undefined {
  // A date as anything but `YYYY-MM-DD` (a day number) is bound.
  if (type === 'Date') return /^\d{4}-\d\d-\d\d$/.test(text) ? `CAST(${quote(text)} AS Date)` : undefined;
  if (timeText.test(text)) return `CAST(${quote(text)} AS ${type})`;
  const m = epochSeconds.exec(text);
  if (m === null || type !== "DateTime64(3, 'UTC')") return undefined;
  return `fromUnixTimestamp64Milli(toInt64(${m[1] ?? ''}${m[2] ?? ''}), 'UTC')`;
}

function timeType(type: string): boolean {
  return type.startsWith('DateTime') || type === 'Date';
}

function literalFor(type: string, value: unknown, aggregateParameter: boolean): string | undefined {
  if (!literalTypes.has(type)) return undefined;
  if (type.startsWith('Array(')) {
    if (!Array.isArray(value)) return undefined;
    const element = type.slice(6, -1);
    const items: string[] = [];
    for (const v of value as unknown[]) {
      const item = scalarText(v);
      if (item === undefined) return undefined;
      const literal = timeType(element) ? timeLiteral(element, item) : quote(item);
      if (literal === undefined) return undefined;
      items.push(literal);
    }
    return `CAST([${items.join(', ')}] AS ${type})`;
  }
  const text = scalarText(value);
  if (text === undefined) return undefined;
  if (timeType(type)) return aggregateParameter ? undefined : timeLiteral(type, text);
  if (aggregateParameter) return integerTypes.has(type) && /^\d{1,15}$/.test(text) ? text : undefined;
  return `CAST(${quote(text)} AS ${type})`;
}

/**
 * The text a value is bound as (what chDB sends for it), which the type then parses: a string as
 * it is, a number in JavaScript's shortest form (an integer beyond 2^53 refused, as chDB does), a
 * bigint in decimal. Undefined for anything else (objects, NaN, infinities).
 */
function scalarText(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (typeof value === 'number') {
    if (!Number.isFinite(value) || (Number.isInteger(value) && !Number.isSafeInteger(value))) return undefined;
    return String(value);
  }
  if (typeof value === 'bigint') return value.toString();
  return undefined;
}

/** A single-quoted ClickHouse string literal of `s`. */
export function quote(s: string): string {
  let out = "'";
  let last = 0;
  for (let i = 0; i < s.length; i++) {
    const code = s.charCodeAt(i);
    if (code === 0x5c || code === 0x27 || code < 0x20 || code === 0x7f) {
      out += s.slice(last, i) + (code === 0x5c ? '\\\\' : code === 0x27 ? "\\'" : `\\x${code.toString(16).padStart(2, '0')}`);
      last = i + 1;
    }
  }
  return `${out}${s.slice(last)}'`;
}
