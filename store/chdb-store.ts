import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { drainPending, Session } from 'chdb';
import {
  checkEncoded,
  checkTableName,
  encodeRows,
  fromJsonEachRow,
  insertSettings,
  normalizeParams,
  StoreError,
  storeErrorFromText,
  toJsonEachRow,
  type EncodedRows,
  type ExecOptions,
  type InsertOptions,
  settingsClause,
  type QueryOptions,
  type QueryParams,
  type Store,
} from './store.ts';
import { PRIVATE_DIR_MODE } from '../lib/private-dir.ts';
import { inlineParams } from './inline-params.ts';

/**
 * The embedded store: chDB (ClickHouse in-process) on `<dataDir>/clickhouse`.
 *
 * chDB binds one data directory per process, and a data directory must be opened by one process
 * only. Calls run off the event loop (chDB's async API on libuv threads). A few connections on the
 * same directory let a long report run beside the processor's inserts; each connection runs one
 * call at a time, since a connection carries per-call state (current database, bound parameters).
 */

/** Options for {@link openChdbStore}. */
export interface ChdbStoreOptions {
  /** FAROL_DATA_DIR; the engine's files go in its `clickhouse/` folder. */
  dataDir: string;
  /** Database unqualified names resolve in (created by `migrate`). */
  database: string;
  /** Connections opened at most (default: {@link defaultConnections}). */
  connections?: number;
  /** The engine's folder in `dataDir` (default `clickhouse`; `farol restore` builds another, then renames it). */
  folder?: string;
  /**
   * The one directory `BACKUP … TO File(…)` and `RESTORE … FROM File(…)` may use (ClickHouse's
   * `backups.allowed_path`); unset: neither can run.
   */
  backupsPath?: string;
  /** Bind every parameter instead of writing them as literals (tests compare the two). */
  bindParams?: boolean;
}

// Matches a ClickHouse server's defaults where chDB's differ, so both stores answer alike:
// 64-bit integers quoted in JSON (JavaScript numbers cannot hold them), synchronous inserts.
const engineArgs = ['--output_format_json_quote_64bit_integers=1', '--async_insert=0'];

interface Connection {
  session: Session;
  /** Whether `USE <database>` has run on this connection. */
  inDatabase: boolean;
}

/**
 * Connections opened at most when the caller names none. Each connection runs its calls on one of
 * libuv's threads for the whole call (chDB's async API), and that pool (UV_THREADPOOL_SIZE threads,
 * 4 unless set before Node starts) also runs every asynchronous file operation of the process: the
 * local hub's appends and their fdatasync, the processor's flush log and hub reads. With every
 * pool thread inside a long insert those waited for one to end: in `farol start` under load a
 * collector's 202 took 1–2 s (`npm run bench -- e2e`, p99) and a flush's intent up to 3 s. So two
 * threads always stay free: 4 connections (the most) from UV_THREADPOOL_SIZE=6 up, 2 with the
 * default pool. Parsed as libuv does (a number; 0 or not a number is 1 thread, at most 1024).
 */
export function defaultConnections(threadPoolSize: string | undefined = process.env['UV_THREADPOOL_SIZE']): number {
  const parsed = Number.parseInt(threadPoolSize ?? '4', 10);
  const threads = Math.min(1024, Number.isNaN(parsed) || parsed <= 0 ? 1 : parsed);
  return Math.max(1, Math.min(4, threads - 2));
}

/** Shape of chDB's typed errors (not exported as classes by the package). */
interface ChdbErrorLike {
  message: string;
  clickhouseCode?: number;
}

function toStoreError(err: unknown): StoreError {
  if (err instanceof StoreError) return err;
  if (err instanceof Error) return storeErrorFromText(err.message, (err as ChdbErrorLike).clickhouseCode);
  return storeErrorFromText(String(err));
}

/**
 * A small pool: a call takes an idle connection, opens one if under the cap, or waits. Reads wait
 * in a queue of their own that is served first: with the processor's inserts queued (a flush of
 * each partition, events and sessions), a dashboard's query waits for one running statement to
 * end, not for every queued insert.
 */
class ConnectionPool {
  private readonly all: Connection[] = [];
  private readonly idle: Connection[] = [];
  private readonly waitingReads: ((c: Connection) => void)[] = [];
  private readonly waiting: ((c: Connection) => void)[] = [];

  constructor(
    private readonly path: string,
    private readonly max: number,
    private readonly args: readonly string[],
  ) {
    // Opened now so a directory held by another engine fails at open, not at the first call.
    this.idle.push(this.open());
  }

  private open(): Connection {
    const c = { session: new Session(this.path, { connectionArgs: [...this.args] }), inDatabase: false };
    this.all.push(c);
    return c;
  }

  private acquire(read: boolean): Promise<Connection> {
    const free = this.idle.pop();
    if (free !== undefined) return Promise.resolve(free);
    if (this.all.length < this.max) return Promise.resolve(this.open());
    return new Promise((resolve) => (read ? this.waitingReads : this.waiting).push(resolve));
  }

  private release(c: Connection): void {
    const next = this.waitingReads.shift() ?? this.waiting.shift();
    if (next !== undefined) next(c);
    else this.idle.push(c);
  }

  /**
   * A fresh connection in place of `c`, which is closed. A statement that fails after it began
   * writing its result (a time or memory limit hit mid-stream) leaves that partial output on its
   * connection, and chDB hands it out at the head of the next result read there: another
   * caller's query would return rows it never asked for. Opened before `c` closes, so the engine
   * stays bound to the directory; if that fails, `c` stays.
   */
  private replace(c: Connection): Connection {
    let fresh: Connection;
    try {
      fresh = this.open();
    } catch {
      return c;
    }
    this.all.splice(this.all.indexOf(c), 1);
    c.session.close();
    return fresh;
  }

  /** Runs `fn` on a connection; `read`: a query, served before waiting writes. */
  async use<T>(read: boolean, fn: (c: Connection) => Promise<T>): Promise<T> {
    const c = await this.acquire(read);
    let failed = true;
    try {
      const result = await fn(c);
      failed = false;
      return result;
    } finally {
      this.release(failed ? this.replace(c) : c);
    }
  }

  closeAll(): void {
    for (const c of this.all) c.session.close();
  }
}

/** Numbers the stores of this process, so versions of two stores never match. */
let instances = 0;

class ChdbStore implements Store {
  readonly kind = 'chdb';
  private readonly pool: ConnectionPool;
  private readonly running = new Set<Promise<unknown>>();
  private closed = false;
  /** Ended inserts per table, and ended `exec` statements (any table): see {@link tableVersion}. */
  private readonly inserts = new Map<string, number>();
  private execs = 0;
  /** Writes under way per table (`undefined`: `exec` statements, any table), and the versions handed out meanwhile. */
  private readonly writing = new Map<string | undefined, number>();
  private unsettled = 0;
  private readonly instance = ++instances;

  constructor(
    readonly database: string,
    path: string,
    connections: number,
    args: readonly string[],
    private readonly bindParams: boolean,
  ) {
    this.pool = new ConnectionPool(path, connections, args);
  }

  /**
   * Runs `fn` on a connection, with the store's database selected unless told otherwise; `read`
   * (a query) waits ahead of writes for a connection.
   */
  private run<T>(withDatabase: boolean, fn: (s: Session) => Promise<T>, read = false): Promise<T> {
    if (this.closed) return Promise.reject(new StoreError('store is closed', { retryable: false }));
    const call = this.pool
      .use(read, async (c) => {
        if (withDatabase && !c.inDatabase) {
          // Selected lazily: before `migrate` creates the database, calls fail with
          // UNKNOWN_DATABASE just as they do against a server.
          await c.session.queryAsync(`USE ${this.database}`);
          c.inDatabase = true;
        }
        return await fn(c.session);
      })
      .catch((err: unknown) => {
        throw toStoreError(err);
      });
    this.running.add(call);
    const forget = (): void => {
      this.running.delete(call);
    };
    call.then(forget, forget);
    return call;
  }

  /**
   * While a write to the table (or any `exec`) is under way, a version no other call returns: its
   * rows may already be visible, so nothing read meanwhile may be taken as of the last version.
   */
  tableVersion(table: string): string {
    if ((this.writing.get(table) ?? 0) > 0 || (this.writing.get(undefined) ?? 0) > 0) return `${this.instance}:unsettled:${++this.unsettled}`;
    return `${this.instance}:${this.execs}:${this.inserts.get(table) ?? 0}`;
  }

  /** Runs a write, counted as under way until it ended, failed or not (then a reader that read before caches under the old value). */
  private async write<T>(table: string | undefined, fn: () => Promise<T>): Promise<T> {
    this.writing.set(table, (this.writing.get(table) ?? 0) + 1);
    try {
      return await fn();
    } finally {
      this.writing.set(table, (this.writing.get(table) ?? 1) - 1);
      if (table === undefined) this.execs++;
      else this.inserts.set(table, (this.inserts.get(table) ?? 0) + 1);
    }
  }

  async exec(sql: string, params?: QueryParams, opts?: ExecOptions): Promise<void> {
    const { statement, bound } = withLiterals(sql, params, this.bindParams);
    await this.write(undefined, () =>
      this.run(opts?.withoutDatabase !== true, (s) => (bound === undefined ? s.queryAsync(statement) : s.queryBindAsync(statement, bound))),
    );
  }

  async query<T = Record<string, unknown>>(sql: string, params?: QueryParams, opts?: QueryOptions): Promise<T[]> {
    const format = { format: 'JSONEachRow' };
    // chDB takes no per-call settings: they travel as the statement's own SETTINGS clause, after
    // a line break so a trailing comment cannot swallow them.
    const clause = settingsClause(opts?.settings);
    const { statement, bound } = withLiterals(clause === undefined ? sql : `${sql.replace(/[\s;]+$/, '')}\nSETTINGS ${clause}`, params, this.bindParams);
    const result = await this.run(true, (s) => (bound === undefined ? s.queryAsync(statement, format) : s.queryBindAsync(statement, bound, format)), true);
    return fromJsonEachRow<T>(result.text());
  }

  async insert(table: string, rows: readonly Record<string, unknown>[], opts?: InsertOptions): Promise<void> {
    checkTableName(table);
    const settings = insertSettings(opts);
    if (rows.length === 0) return;
    const encoded = encodeRows(table, rows);
    if (encoded === undefined) {
      const values = Buffer.from(toJsonEachRow(rows));
      await this.write(table, () => this.run(true, (s) => s.insert({ table, values, format: 'JSONEachRow', settings })));
      return;
    }
    await this.insertEncoded(table, encoded, opts);
  }

  async insertEncoded(table: string, encoded: EncodedRows, opts?: InsertOptions): Promise<void> {
    checkTableName(table);
    const settings = insertSettings(opts);
    const { format, columns, data } = checkEncoded(encoded);
    if (data.byteLength === 0) return;
    // A view of the bytes as they came (from another thread: a transferred buffer), not a copy.
    const values = Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    await this.write(table, () => this.run(true, (s) => s.insert({ table, columns: [...columns], values, format, settings })));
  }

  async ping(): Promise<boolean> {
    try {
      await this.run(false, (s) => s.queryAsync('SELECT 1'));
      return true;
    } catch {
      return false;
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.allSettled([...this.running]);
    this.pool.closeAll();
    // Frees the process's one data-directory slot, so another directory can be opened next.
    await drainPending();
  }
}

/**
 * The statement to run and the parameters still to bind: the parameters as literals when
 * {@link inlineParams} can write them all (chDB runs bound statements one at a time process-wide),
 * else bound as they are; `bindParams` binds always.
 */
function withLiterals(sql: string, params: QueryParams | undefined, bindParams: boolean): { statement: string; bound: QueryParams | undefined } {
  const bound = normalizeParams(params);
  if (bound === undefined || Object.keys(bound).length === 0) return { statement: sql, bound: undefined };
  const inlined = bindParams ? undefined : inlineParams(sql, bound);
  return inlined === undefined ? { statement: sql, bound } : { statement: inlined, bound: undefined };
}

/**
 * Opens the embedded engine on `<dataDir>/clickhouse`. Throws if this process already holds a
 * different chDB directory.
 */
export function openChdbStore(opts: ChdbStoreOptions): Store {
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(opts.database)) {
    throw new StoreError(`database "${opts.database}" must be a plain identifier`, { retryable: false });
  }
  const path = join(opts.dataDir, opts.folder ?? 'clickhouse');
  mkdirSync(path, { recursive: true, mode: PRIVATE_DIR_MODE });
  // An engine setting on the command line: a path with a quote or a space would not survive it.
  if (opts.backupsPath !== undefined && !/^\/[\w./-]*$/.test(opts.backupsPath)) {
    throw new StoreError(`backups path "${opts.backupsPath}" must be absolute, of letters, digits, '_', '-', '.' and '/'`, { retryable: false });
  }
  const args = opts.backupsPath === undefined ? engineArgs : [...engineArgs, `--backups.allowed_path=${opts.backupsPath}`];
  return new ChdbStore(opts.database, path, Math.max(1, opts.connections ?? defaultConnections()), args, opts.bindParams === true);
}
