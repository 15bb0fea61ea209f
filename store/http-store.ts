import { Readable } from 'node:stream';
import { ClickHouseLogLevel, createClient, type ClickHouseClient, type ClickHouseSettings } from '@clickhouse/client';
import {
  checkEncoded,
  checkTableName,
  encodeRows,
  engineError,
  engineErrorSummary,
  insertSettings,
  MAX_ENGINE_SUMMARY,
  normalizeParams,
  settingsClause,
  StoreError,
  storeErrorFromText,
  type EncodedRows,
  type ExecOptions,
  type InsertOptions,
  type QueryOptions,
  type QueryParams,
  type Store,
} from './store.ts';
import { redactCredentials } from '../schemas/secrets.ts';

/**
 * The server store: a ClickHouse server (or cluster) over HTTP(S) with @clickhouse/client.
 * Bound parameters travel as `param_<name>` URL parameters, never inside the SQL text.
 */

/** Options for {@link openHttpStore}. */
export interface HttpStoreOptions {
  /** FAROL_CLICKHOUSE_URL, e.g. `http://clickhouse:8123`. */
  url: string;
  username: string;
  password: string;
  /** Database unqualified names resolve in (created by `migrate`). */
  database: string;
  /** FAROL_CLICKHOUSE_CLUSTER: inserts through Distributed tables then wait for every shard. */
  cluster?: string | undefined;
  /** Per-request timeout (default 60 s). */
  requestTimeoutMs?: number;
  /** Gzip insert bodies: less network, more CPU (default off). */
  compressRequest?: boolean;
}

// Node's codes for a connection that failed or broke: the server is down or restarting.
const networkCodes = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
]);

// Errors carry a short message and never the original error (see storeErrorFromText): the
// server's text quotes rows, and a client error may quote the URL.
function toStoreError(err: unknown): StoreError {
  if (err instanceof StoreError) return err;
  if (!(err instanceof Error)) return storeErrorFromText(String(err));
  const { code, type } = err as Error & { code?: unknown; type?: unknown };
  // @clickhouse/client's ClickHouseError: `code` is the server's error code as text. The client
  // strips the `Code: N. DB::Exception:` prefix and the `(TYPE)` suffix; the StoreError has them,
  // so messages read the same from both stores.
  if (typeof code === 'string' && /^\d+$/.test(code)) {
    return engineError(Number(code), typeof type === 'string' ? type : undefined, engineErrorSummary(err.message.trim()));
  }
  const network = (typeof code === 'string' && networkCodes.has(code)) || /timeout|socket hang up/i.test(err.message);
  const what = redactCredentials(err.message.split('\n', 1)[0] ?? '').slice(0, MAX_ENGINE_SUMMARY);
  return new StoreError(`ClickHouse request failed: ${what}`, { retryable: network });
}

async function mapErrors<T>(call: Promise<T>): Promise<T> {
  try {
    return await call;
  } catch (err) {
    throw toStoreError(err);
  }
}

class HttpStore implements Store {
  readonly kind = 'http';
  readonly database: string;
  private readonly client: ClickHouseClient;
  private admin: ClickHouseClient | undefined;
  private closed = false;

  constructor(private readonly opts: HttpStoreOptions) {
    this.database = opts.database;
    this.client = this.createClient(opts.database);
  }

  private createClient(database: string | undefined): ClickHouseClient {
    return createClient({
      url: this.opts.url,
      username: this.opts.username,
      password: this.opts.password,
      ...(database === undefined ? {} : { database }),
      application: 'farol',
      request_timeout: this.opts.requestTimeoutMs ?? 60_000,
      compression: { request: this.opts.compressRequest ?? false, response: false },
      // Failures surface as StoreErrors for the caller to log once, in its structured format.
      log: { level: ClickHouseLogLevel.OFF },
      // A server's default, pinned in case a user profile changes it: JS numbers cannot hold
      // 64-bit integers, so they arrive as strings, as they do from the embedded store.
      clickhouse_settings: { output_format_json_quote_64bit_integers: 1 },
    });
  }

  /**
   * A client with no current database. The server refuses any request naming a database that does
   * not exist yet, `CREATE DATABASE` included, so migrations start here.
   */
  private adminClient(): ClickHouseClient {
    this.admin ??= this.createClient(undefined);
    return this.admin;
  }

  private checkOpen(): void {
    if (this.closed) throw new StoreError('store is closed', { retryable: false });
  }

  async exec(sql: string, params?: QueryParams, opts?: ExecOptions): Promise<void> {
    this.checkOpen();
    const client = opts?.withoutDatabase === true ? this.adminClient() : this.client;
    const query_params = normalizeParams(params);
    await mapErrors(
      client.command({
        query: sql,
        ...(query_params === undefined ? {} : { query_params }),
        // Without it the server may answer 200 before a failing DDL has reported its error.
        clickhouse_settings: { wait_end_of_query: 1 },
      }),
    );
  }

  async query<T = Record<string, unknown>>(sql: string, params?: QueryParams, opts?: QueryOptions): Promise<T[]> {
    this.checkOpen();
    const query_params = normalizeParams(params);
    // Checked as the embedded store checks them, so both refuse the same settings.
    settingsClause(opts?.settings);
    return mapErrors(
      (async () => {
        const result = await this.client.query({
          query: sql,
          format: 'JSONEachRow',
          ...(query_params === undefined ? {} : { query_params }),
          ...(opts?.settings === undefined ? {} : { clickhouse_settings: { ...opts.settings } }),
        });
        return result.json<T>();
      })(),
    );
  }

  private insertSettings(opts: InsertOptions | undefined): ClickHouseSettings {
    return {
      ...insertSettings(opts),
      // A Distributed table queues inserts in the background by default, and the queue would
      // lose the dedup token's guarantee; foreground inserts reach every shard before we ack.
      ...(this.opts.cluster === undefined ? {} : { insert_distributed_sync: 1 as const }),
    };
  }

  async insert(table: string, rows: readonly Record<string, unknown>[], opts?: InsertOptions): Promise<void> {
    this.checkOpen();
    checkTableName(table);
    const clickhouse_settings = this.insertSettings(opts);
    if (rows.length === 0) return;
    const encoded = encodeRows(table, rows);
    if (encoded !== undefined) {
      await this.insertEncoded(table, encoded, opts);
      return;
    }
    await mapErrors(this.client.insert({ table, values: rows, format: 'JSONEachRow', clickhouse_settings }));
  }

  async insertEncoded(table: string, encoded: EncodedRows, opts?: InsertOptions): Promise<void> {
    this.checkOpen();
    checkTableName(table);
    const clickhouse_settings = this.insertSettings(opts);
    const { format, columns, data } = checkEncoded(encoded);
    if (data.byteLength === 0) return;
    // The bytes as they are, as the body of the statement (gzipped when compressRequest is on):
    // `insert` would take raw bytes for TabSeparated, but JSON formats only as objects.
    const values = Readable.from([Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength)], { objectMode: false });
    const query = `INSERT INTO ${table} (${columns.join(', ')}) FORMAT ${format}`;
    await mapErrors(
      (async () => {
        const result = await this.client.exec({ query, values, clickhouse_settings });
        // The answer of an INSERT is empty; read to its end so the connection is free again.
        for await (const _ of result.stream) void _;
      })(),
    );
  }

  async ping(): Promise<boolean> {
    if (this.closed) return false;
    try {
      const result = await this.client.ping();
      return result.success;
    } catch {
      return false;
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all([this.client.close(), this.admin?.close()]);
  }
}

/** Connects to a ClickHouse server over HTTP. No request is made until the first call. */
export function openHttpStore(opts: HttpStoreOptions): Store {
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(opts.database)) {
    throw new StoreError(`database "${opts.database}" must be a plain identifier`, { retryable: false });
  }
  return new HttpStore(opts);
}
