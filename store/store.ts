import { insertSchema } from './rows.ts';
import { toTabSeparated } from './tab-separated.ts';

/**
 * The `Store`: where Farol keeps events, sessions, rollups and the control plane. Two
 * implementations, one contract (store/store.contract.test.ts): embedded chDB
 * (store/chdb-store.ts) and a ClickHouse server over HTTP (store/http-store.ts).
 *
 * SQL reaches the store with bound parameters only: `{name:Type}` placeholders in the text and
 * values in `params`. Nothing a user sends is ever spliced into SQL.
 */

/** Values for `{name:Type}` placeholders. Dates bind as epoch seconds with milliseconds. */
export type QueryParams = Record<string, unknown>;

/** Options for {@link Store.exec}. */
export interface ExecOptions {
  /**
   * Run without selecting the store's database. Only for statements that name every table in
   * full and must run before that database exists (`CREATE DATABASE`, migrations).
   */
  withoutDatabase?: boolean;
}

/**
 * ClickHouse settings one query runs with (`max_execution_time`, `max_memory_usage`, …): plain
 * setting names, numbers or simple words as values. The embedded store splices them into the
 * statement as a `SETTINGS` clause, so they are checked by {@link settingsClause}.
 */
export type QuerySettings = Readonly<Record<string, number | string>>;

/** Options for {@link Store.query}. */
export interface QueryOptions {
  /** Settings for this query only (the statement must not end with its own SETTINGS clause). */
  settings?: QuerySettings;
}

/** Options for {@link Store.insert}. */
export interface InsertOptions {
  /**
   * Idempotency key for this batch (e.g. partition + offset range). Retrying an insert with the
   * same token and the same rows stores nothing new, in the table and in the rollups its
   * materialized views feed.
   */
  dedupToken?: string;
}

/** Formats {@link encodeRows} writes. */
export const encodedFormats = ['TabSeparated', 'JSONCompactEachRow'] as const;

/** Rows encoded for one insert: `data` in `format`, values in `columns` order. */
export interface EncodedRows {
  format: (typeof encodedFormats)[number];
  columns: [string, ...string[]];
  data: Uint8Array;
}

/** A ClickHouse deployment as Farol uses it. */
export interface Store {
  readonly kind: 'chdb' | 'http';
  /** Database unqualified table names resolve in. */
  readonly database: string;
  /** Runs DDL or a command; any result rows are discarded. */
  exec(sql: string, params?: QueryParams, opts?: ExecOptions): Promise<void>;
  /**
   * Runs a query and returns its rows as JSON objects (JSONEachRow). 64-bit integers arrive as
   * strings, Decimals and 32-bit numbers as numbers, dates as `YYYY-MM-DD hh:mm:ss[.fff]` in UTC.
   */
  query<T = Record<string, unknown>>(sql: string, params?: QueryParams, opts?: QueryOptions): Promise<T[]>;
  /**
   * Inserts rows (keys are column names) as one block. No-op for no rows. Rows of `events` and
   * `sessions` travel as TabSeparated, other rows that all hold the same columns as
   * JSONCompactEachRow, both under an explicit column list (see {@link encodeRows}); others as
   * JSONEachRow, where a missing key means the column's default.
   */
  insert(table: string, rows: readonly Record<string, unknown>[], opts?: InsertOptions): Promise<void>;
  /**
   * Inserts rows already encoded by {@link encodeRows}, for a writer that encodes on another
   * thread (`farol start`'s processor thread): the bytes travel to the engine's thread without a
   * copy, and the engine reads them as they are.
   */
  insertEncoded?(table: string, encoded: EncodedRows, opts?: InsertOptions): Promise<void>;
  /**
   * Where this process is the engine's only writer (the embedded engine: one process per data
   * dir), a value that changes once a write that can change `table` has ended: an insert into it,
   * or any statement run with `exec` (mutations, DDL). A reader may keep what it read of the table
   * while the value stays the same. Absent where other processes write (a ClickHouse server).
   */
  tableVersion?(table: string): string;
  /** True when the engine answers. Never throws. */
  ping(): Promise<boolean>;
  /** Waits for running calls, then releases the engine or connections. Idempotent. */
  close(): Promise<void>;
}

/** `store` with its `query` replaced (to limit or count queries); every other call goes to `store`. */
export function withQuery(store: Store, query: Store['query']): Store {
  return {
    kind: store.kind,
    database: store.database,
    exec: (sql, params, opts) => store.exec(sql, params, opts),
    query,
    insert: (table, rows, opts) => store.insert(table, rows, opts),
    ...(store.tableVersion === undefined ? {} : { tableVersion: store.tableVersion.bind(store) }),
    ping: () => store.ping(),
    close: () => store.close(),
  };
}

// ClickHouse error codes worth retrying: the server is busy, restarting, or the network broke.
// A bad query (syntax, unknown table, type mismatch) will fail the same way again.
const retryableCodes = new Set([
  3, // UNEXPECTED_END_OF_FILE
  32, // ATTEMPT_TO_READ_AFTER_EOF
  159, // TIMEOUT_EXCEEDED
  202, // TOO_MANY_SIMULTANEOUS_QUERIES
  209, // SOCKET_TIMEOUT
  210, // NETWORK_ERROR
  241, // MEMORY_LIMIT_EXCEEDED
  242, // TABLE_IS_READ_ONLY
  252, // TOO_MANY_PARTS
  279, // ALL_CONNECTION_TRIES_FAILED
  285, // TOO_FEW_LIVE_REPLICAS
  319, // UNKNOWN_STATUS_OF_INSERT
  394, // QUERY_WAS_CANCELLED
  425, // SYSTEM_ERROR
  999, // KEEPER_EXCEPTION
]);

/** Whether an error with this ClickHouse code may succeed when retried. */
export function isRetryableCode(code: number | undefined): boolean {
  return code !== undefined && retryableCodes.has(code);
}

// ClickHouse error codes that say the rows sent cannot be stored as they are: a value it cannot
// parse or that does not fit its column, or a constraint the rows violate. Sending the same rows
// again fails again; sending the batch without the offending rows succeeds. Statement-level
// errors (unknown table or column, syntax) are not here: no subset of the rows would cure them.
const refusedDataCodes = new Set([
  6, // CANNOT_PARSE_TEXT
  25, // CANNOT_PARSE_ESCAPE_SEQUENCE (a lone surrogate escape in JSON)
  26, // CANNOT_PARSE_QUOTED_STRING
  27, // CANNOT_PARSE_INPUT_ASSERTION_FAILED
  38, // CANNOT_PARSE_DATE
  41, // CANNOT_PARSE_DATETIME
  69, // ARGUMENT_OUT_OF_BOUND
  70, // CANNOT_CONVERT_TYPE
  72, // CANNOT_PARSE_NUMBER
  117, // INCORRECT_DATA
  128, // TOO_LARGE_ARRAY_SIZE
  131, // TOO_LARGE_STRING_SIZE
  321, // VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
  349, // CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN
  407, // DECIMAL_OVERFLOW
  469, // VIOLATED_CONSTRAINT
]);

/** TOO_MANY_PARTS also names a batch whose rows span too many partitions: smaller batches pass. */
const tooManyPartitionsPerInsert = /Too many partitions for single INSERT block/;

/**
 * Whether an error with this code and message refuses the rows of an insert rather than the
 * statement or the connection: retrying the same rows cannot cure it, but a subset may pass.
 */
export function isRefusedDataError(code: number | undefined, message: string): boolean {
  if (code === undefined) return false;
  return refusedDataCodes.has(code) || (code === 252 && tooManyPartitionsPerInsert.test(message));
}

/** Every failure a store reports: the engine's error, or the connection's. */
export class StoreError extends Error {
  override readonly name = 'StoreError';
  /** ClickHouse error code (60 = UNKNOWN_TABLE, 62 = SYNTAX_ERROR, …); unset for network errors. */
  readonly code: number | undefined;
  /** ClickHouse error name, e.g. `UNKNOWN_TABLE`. */
  readonly type: string | undefined;
  /** True when retrying later may succeed (server down or busy), false for a bad statement. */
  readonly retryable: boolean;
  /**
   * True when the store refused the rows of an insert (a value it cannot parse, a constraint):
   * the same rows fail again, the batch without the offending rows passes. Never retryable.
   */
  readonly refusedData: boolean;

  constructor(
    message: string,
    details: { code?: number | undefined; type?: string | undefined; retryable?: boolean; refusedData?: boolean; cause?: unknown },
  ) {
    super(message, { cause: details.cause });
    this.code = details.code;
    this.type = details.type;
    this.refusedData = details.refusedData ?? isRefusedDataError(details.code, message);
    this.retryable = !this.refusedData && (details.retryable ?? isRetryableCode(details.code));
  }
}

// The `(UNKNOWN_TABLE) (version 24.8.1.1)` that ends an exception text.
const ENGINE_ERROR_NAME = /\s*\(([A-Z][A-Z0-9_]{2,})\)(?: \(version [^)]*\))?\.?\s*$/;

/** Longest summary of an engine message a StoreError carries. */
export const MAX_ENGINE_SUMMARY = 160;

// Where ClickHouse starts quoting data in an exception: a quote (`before: '<row>…'`, `string
// '<value>'`), a JSON value, `parsed text`, or an unquoted `Value <v> cannot be parsed as …`.
const DATA_START = /['"`{[]|\bbefore:|\bhere:|\bparsed text|\bValue /;

/**
 * The first sentence of a ClickHouse exception text, cut where the text starts quoting data: an
 * insert that fails to parse quotes the row (an event's URL, props, visitor id), and that must not
 * reach a log or an answer, on every retry. At most {@link MAX_ENGINE_SUMMARY} characters.
 */
export function engineErrorSummary(text: string): string {
  let body = text.replace(/^Query failed: /, '').replace(/^(?:\s*Code: \d+\. DB::Exception: )+/, '');
  body = (body.split('\n', 1)[0] ?? '').replace(ENGINE_ERROR_NAME, '');
  const at = DATA_START.exec(body)?.index;
  let cut = at !== undefined;
  if (at !== undefined) body = body.slice(0, at);
  if (body.length > MAX_ENGINE_SUMMARY) {
    body = body.slice(0, MAX_ENGINE_SUMMARY);
    cut = true;
  }
  body = body.replace(/[\s:,.(]+$/, '');
  if (!cut) return body;
  return body === '' ? '…' : `${body} …`;
}

/**
 * Builds a StoreError from a ClickHouse exception text (`Code: 60. DB::Exception: … (UNKNOWN_TABLE)`):
 * its code, its name and a short summary ({@link engineErrorSummary}), never the data it quotes.
 * The original error is not kept as the cause, for the same reason.
 */
export function storeErrorFromText(text: string, fallbackCode?: number): StoreError {
  const full = text.replace(/^Query failed: /, '').trim();
  const parsed = /Code: (\d+)\./.exec(full)?.[1];
  const code = parsed === undefined ? fallbackCode : Number(parsed);
  const type = ENGINE_ERROR_NAME.exec(full)?.[1];
  return engineError(code, type, engineErrorSummary(full));
}

/** A StoreError for an engine exception, in one format for both stores: `Code: N. DB::Exception: <summary> (TYPE)`. */
export function engineError(code: number | undefined, type: string | undefined, summary: string): StoreError {
  const text = `${code === undefined ? '' : `Code: ${code}. DB::Exception: `}${summary}${type === undefined ? '' : ` (${type})`}`;
  return new StoreError(text, { code, type });
}

const tableName = /^([A-Za-z_][A-Za-z0-9_]*\.)?[A-Za-z_][A-Za-z0-9_]*$/;

/** Throws unless `table` is `name` or `db.name` with plain identifiers (it is spliced into SQL). */
export function checkTableName(table: string): string {
  if (!tableName.test(table)) throw new StoreError(`invalid table name "${table}"`, { retryable: false });
  return table;
}

const identifier = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * The column list shared by every row (the first row's keys, in order), or undefined when some
 * row holds another number of keys or is not a plain object. Column names must be plain
 * identifiers, since they are spliced into the INSERT. Values are checked while they are written
 * ({@link toJsonCompactEachRow}, {@link toCompactValues}).
 */
export function commonColumns(rows: readonly Record<string, unknown>[]): [string, ...string[]] | undefined {
  const first = rows[0];
  if (first === undefined) return undefined;
  const [head, ...rest] = Object.keys(first);
  if (head === undefined) return undefined;
  const columns: [string, ...string[]] = [head, ...rest];
  for (const c of columns) if (!identifier.test(c)) return undefined;
  for (const row of rows) {
    // Counting with for-in is far cheaper than Object.keys per row; a plain object has no
    // inherited enumerable keys, so the count is its own keys'.
    if (Object.getPrototypeOf(row) !== Object.prototype) return undefined;
    let keys = 0;
    for (const _key in row) keys++;
    if (keys !== columns.length) return undefined;
  }
  return columns;
}

/**
 * Whether a value is written the same positionally as in an object. JSON.stringify leaves out an
 * object's key whose value is undefined, a function or a symbol (the column then takes its
 * default), but writes null for it in an array. With the key counts equal, an undefined value
 * also catches a row that lacks one of the columns.
 */
function positional(v: unknown): boolean {
  return v !== undefined && typeof v !== 'function' && typeof v !== 'symbol';
}

/**
 * Rows as JSONCompactEachRow text: one JSON array per line, values in `columns` order (from
 * {@link commonColumns}), or undefined when a value cannot be written positionally. Values are
 * written as JSON.stringify writes them in an object, so the stored data is the same as with
 * JSONEachRow; the text is about 2.4 times smaller and ClickHouse parses it faster.
 */
export function toJsonCompactEachRow(rows: readonly Record<string, unknown>[], columns: readonly string[]): string | undefined {
  // One array reused for every row: it only lives until JSON.stringify returns.
  const values: unknown[] = new Array<unknown>(columns.length);
  let out = '';
  for (const row of rows) {
    for (let i = 0; i < columns.length; i++) {
      const v = row[columns[i] as string];
      if (!positional(v)) return undefined;
      values[i] = v;
    }
    out += `${JSON.stringify(values)}\n`;
  }
  return out;
}

/**
 * Rows as the bytes of one insert, or undefined when they do not all hold the same columns (or a
 * value cannot be written positionally): they then travel as JSONEachRow objects. Rows of a table
 * whose column types are known (`events`, `sessions`: store/rows.ts {@link insertSchema}) are
 * written as TabSeparated, which costs the engine and JavaScript least (measured: see
 * store/tab-separated.ts); any of their values not in the form that encoder takes sends the
 * batch as JSONCompactEachRow, the form every other table's rows take, so ClickHouse stores or
 * refuses the same values either way.
 */
export function encodeRows(table: string, rows: readonly Record<string, unknown>[]): EncodedRows | undefined {
  const columns = commonColumns(rows);
  if (columns === undefined) return undefined;
  const schema = insertSchema(table);
  const tsv = schema === undefined ? undefined : toTabSeparated(rows, columns, schema);
  if (tsv !== undefined) return { format: 'TabSeparated', columns, data: tsv };
  const text = toJsonCompactEachRow(rows, columns);
  return text === undefined ? undefined : { format: 'JSONCompactEachRow', columns, data: Buffer.from(text) };
}

/** Throws unless `encoded` is in a format {@link encodeRows} writes under plain column names (both are spliced into the INSERT). */
export function checkEncoded(encoded: EncodedRows): EncodedRows {
  if (!(encodedFormats as readonly string[]).includes(encoded.format)) {
    throw new StoreError(`unsupported insert format "${String(encoded.format)}"`, { retryable: false });
  }
  if (encoded.columns.length === 0 || !encoded.columns.every((c) => identifier.test(c))) {
    throw new StoreError('insert columns must be plain identifiers', { retryable: false });
  }
  return encoded;
}

/** Rows as value arrays in `columns` order, or undefined; see {@link toJsonCompactEachRow}. */
export function toCompactValues(rows: readonly Record<string, unknown>[], columns: readonly string[]): unknown[][] | undefined {
  const out: unknown[][] = [];
  for (const row of rows) {
    const values = new Array<unknown>(columns.length);
    for (let i = 0; i < columns.length; i++) {
      const v = row[columns[i] as string];
      if (!positional(v)) return undefined;
      values[i] = v;
    }
    out.push(values);
  }
  return out;
}

/** Rows as JSONEachRow text: one JSON object per line. */
export function toJsonEachRow(rows: readonly Record<string, unknown>[]): string {
  let out = '';
  for (const row of rows) out += `${JSON.stringify(row)}\n`;
  return out;
}

/** Parses JSONEachRow text into rows. */
export function fromJsonEachRow<T>(text: string): T[] {
  const rows: T[] = [];
  for (const line of text.split('\n')) {
    if (line.length > 0) rows.push(JSON.parse(line) as T);
  }
  return rows;
}

/**
 * Brings parameter values to one form both engines bind identically: booleans as 1/0 (ClickHouse
 * parses `true` only for Bool), dates as epoch seconds with milliseconds, bigints as text.
 */
export function normalizeParams(params: QueryParams | undefined): QueryParams | undefined {
  if (params === undefined) return undefined;
  const out: QueryParams = {};
  for (const [key, value] of Object.entries(params)) {
    if (typeof value === 'boolean') out[key] = value ? 1 : 0;
    else if (value instanceof Date) out[key] = (value.getTime() / 1000).toFixed(3);
    else if (typeof value === 'bigint') out[key] = value.toString();
    else out[key] = value;
  }
  return out;
}

const settingName = /^[a-z_][a-z0-9_]*$/;
const settingWord = /^[A-Za-z0-9_.]*$/;

/**
 * `settings` as the text of a `SETTINGS` clause (`max_execution_time = 10, …`), or undefined when
 * there are none. Throws on a name that is not a plain identifier or a value that is neither a
 * finite number nor a plain word: they are spliced into SQL.
 */
export function settingsClause(settings: QuerySettings | undefined): string | undefined {
  if (settings === undefined) return undefined;
  const parts: string[] = [];
  for (const [name, value] of Object.entries(settings)) {
    if (!settingName.test(name)) throw new StoreError(`invalid setting name "${name}"`, { retryable: false });
    if (typeof value === 'number') {
      if (!Number.isFinite(value)) throw new StoreError(`setting ${name} must be a finite number`, { retryable: false });
      parts.push(`${name} = ${value}`);
    } else {
      if (!settingWord.test(value)) throw new StoreError(`setting ${name} must be a number or a plain word`, { retryable: false });
      parts.push(`${name} = '${value}'`);
    }
  }
  return parts.length === 0 ? undefined : parts.join(', ');
}

/** ClickHouse settings an insert runs with. */
export type InsertSettings = {
  async_insert: 0;
  insert_deduplicate?: 1;
  insert_deduplication_token?: string;
  deduplicate_blocks_in_dependent_materialized_views?: 1;
};

/**
 * Settings for every insert. async_insert is off so a returned insert is in the table (chDB
 * defaults it on); the dedup token, when given, also guards the blocks the materialized views
 * write, so a replayed batch counts once in the rollups too.
 */
export function insertSettings(opts: InsertOptions | undefined): InsertSettings {
  if (opts?.dedupToken === undefined) return { async_insert: 0 };
  if (opts.dedupToken.length === 0) throw new StoreError('dedupToken must not be empty', { retryable: false });
  return {
    async_insert: 0,
    insert_deduplicate: 1,
    insert_deduplication_token: opts.dedupToken,
    deduplicate_blocks_in_dependent_materialized_views: 1,
  };
}
