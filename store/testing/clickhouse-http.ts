import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { brotliDecompressSync, gunzipSync, gzipSync, inflateSync } from 'node:zlib';
import { drainPending, Session } from 'chdb';

/**
 * A ClickHouse HTTP endpoint backed by chDB, for tests of the server store without a server.
 *
 * It speaks the part of the ClickHouse HTTP interface @clickhouse/client uses: `GET /ping`,
 * `GET|POST /` with the query in the `query` URL parameter and/or the body (an INSERT's data
 * follows in the body), `database`, `param_<name>` bound parameters (URL or multipart body),
 * settings as URL parameters, `default_format`, `query_id`, `session_id`, gzip/deflate/br request
 * bodies, gzip responses when `enable_http_compression=1`, and errors as
 * `Code: N. DB::Exception: …` with the `X-ClickHouse-Exception-Code` header and the status a
 * server would send. Credentials are accepted without checking.
 *
 * chDB binds one data directory per process, so {@link startClickHouseHttp} runs the endpoint in
 * a child process: the test process stays free to open its own chDB directory, and stopping the
 * child is a real outage (connections refused) that {@link ClickHouseHttp.start} ends on the same
 * port with the same data.
 */

/** Options for {@link startClickHouseHttp} and {@link serveClickHouseHttp}. */
export interface ClickHouseHttpOptions {
  /** chDB data directory the endpoint owns. */
  dataDir: string;
  /** Port on 127.0.0.1; 0 (default) picks a free one, kept across restarts. */
  port?: number;
}

/** A running endpoint in a child process. */
export interface ClickHouseHttp {
  /** `http://127.0.0.1:<port>`. */
  readonly url: string;
  readonly port: number;
  /** Whether the child is serving. */
  readonly running: boolean;
  /** Graceful stop: closes connections and the engine, waits for the child to exit. */
  stop(): Promise<void>;
  /** SIGKILL, like a crash: for tests of what survives one. */
  kill(): Promise<void>;
  /** Starts again on the same port and data directory (after stop or kill). No-op if running. */
  start(): Promise<void>;
}

/** An endpoint served by this process (which then holds `dataDir` as its chDB directory). */
export interface ServedClickHouseHttp {
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

// ---------------------------------------------------------------------------------------------
// The engine: chDB sessions, one request at a time.

/** The native entry points used here; chdb's JS layer would re-escape already-formatted params. */
interface NativeChdb {
  QueryAsyncConnection(
    connection: unknown,
    sql: string,
    format: string,
    params?: Record<string, string>,
  ): Promise<{ bytes: Uint8Array; rowsRead: number; bytesRead: number; elapsed: number }>;
  InsertRawAsyncConnection(
    connection: unknown,
    prefix: string,
    data: Buffer,
    countLines: boolean,
  ): Promise<{ rowsWritten: number; bytesWritten: number; elapsed: number }>;
}

/**
 * chDB's addon. `param_*` values arrive already in ClickHouse's text form (escaped strings, array
 * literals); the public `queryBind` would escape them a second time, so this passes them to the
 * engine as they are, exactly like a server does. Loaded from chdb's own folder (an internal path).
 */
function loadNative(): NativeChdb {
  const chdbMain = createRequire(import.meta.url).resolve('chdb');
  const loader = createRequire(chdbMain)('./dist/loader.js') as { loadNative(): unknown };
  const native = loader.loadNative() as Partial<NativeChdb>;
  if (typeof native.QueryAsyncConnection !== 'function' || typeof native.InsertRawAsyncConnection !== 'function') {
    throw new Error('this chdb version lacks QueryAsyncConnection/InsertRawAsyncConnection');
  }
  return native as NativeChdb;
}

// Server defaults where chDB's differ: quoted 64-bit integers in JSON, synchronous inserts.
const engineDefaults: Record<string, string> = { output_format_json_quote_64bit_integers: '1', async_insert: '0' };
const engineArgs = Object.entries(engineDefaults).map(([name, value]) => `--${name}=${value}`);

interface Request {
  sql: string;
  /** Set for `INSERT … FORMAT x` in the URL with its data in the body. */
  insertData: Buffer | undefined;
  database: string;
  params: Record<string, string>;
  settings: Record<string, string>;
  format: string;
  sessionId: string | undefined;
}

interface Outcome {
  body: Buffer;
  summary: Record<string, string>;
}

class Engine {
  private readonly native = loadNative();
  private readonly named = new Map<string, Session>();
  private tail: Promise<unknown> = Promise.resolve();
  readonly version: string;

  constructor(private readonly path: string) {
    // The first session binds the process to this directory and fails fast if another is held.
    const probe = new Session(path, { connectionArgs: engineArgs });
    this.version = probe.query('SELECT version()', 'TSV').trim();
    probe.close();
  }

  /**
   * Requests run one at a time: the engine clobbers bound parameters of calls running at once on
   * different connections, and tests value determinism over throughput.
   */
  run(req: Request): Promise<Outcome> {
    const result = this.tail.then(() => this.execute(req));
    this.tail = result.catch(() => undefined);
    return result;
  }

  private async execute(req: Request): Promise<Outcome> {
    // A session_id keeps its connection (and its temporary tables and SETs) like a server
    // session. Other requests share one connection: opening a connection per request cost about
    // as much as a small query itself, and the serial queue made every client wait for it. What
    // a request could leave on a shared connection is reset: the database is chosen per request,
    // URL settings are set back to their defaults after it, and a statement that changes the
    // connection itself (SET, USE, a temporary table) gets a connection of its own, as before.
    const named = req.sessionId === undefined ? undefined : this.session(req.sessionId);
    const own = named === undefined && changesConnection(req.sql) ? new Session(this.path, { connectionArgs: engineArgs }) : undefined;
    const session = named ?? own ?? this.shared();
    try {
      await this.native.QueryAsyncConnection(session.connection, `USE ${checkIdentifier(req.database)}`, 'TSV');
      const names = Object.keys(req.settings);
      if (names.length > 0) await this.native.QueryAsyncConnection(session.connection, setStatement(req.settings), 'TSV');
      try {
        return await this.statement(session, req);
      } finally {
        // URL settings last one request, also on a named or the shared connection.
        if (own === undefined && names.length > 0) {
          await this.native.QueryAsyncConnection(session.connection, resetStatement(names), 'TSV');
        }
      }
    } finally {
      own?.close();
    }
  }

  private sharedSession: Session | undefined;

  /** The connection of requests without a session_id (see {@link execute}). */
  private shared(): Session {
    this.sharedSession ??= new Session(this.path, { connectionArgs: engineArgs });
    return this.sharedSession;
  }

  private async statement(session: Session, req: Request): Promise<Outcome> {
    const start = process.hrtime.bigint();
    if (req.insertData !== undefined) {
      const r = await this.native.InsertRawAsyncConnection(session.connection, req.sql, req.insertData, true);
      return { body: Buffer.alloc(0), summary: summary({ written: r.rowsWritten, writtenBytes: r.bytesWritten, start }) };
    }
    const hasParams = Object.keys(req.params).length > 0;
    const r = hasParams
      ? await this.native.QueryAsyncConnection(session.connection, req.sql, req.format, req.params)
      : await this.native.QueryAsyncConnection(session.connection, req.sql, req.format);
    const body = Buffer.from(r.bytes.buffer, r.bytes.byteOffset, r.bytes.byteLength);
    return { body, summary: summary({ read: r.rowsRead, readBytes: r.bytesRead, resultBytes: body.length, start }) };
  }

  private session(id: string): Session {
    let s = this.named.get(id);
    if (s === undefined) {
      s = new Session(this.path, { connectionArgs: engineArgs });
      this.named.set(id, s);
    }
    return s;
  }

  async close(): Promise<void> {
    await this.tail;
    for (const s of this.named.values()) s.close();
    this.named.clear();
    this.sharedSession?.close();
    this.sharedSession = undefined;
    await drainPending();
  }
}

function summary(n: {
  read?: number;
  readBytes?: number;
  written?: number;
  writtenBytes?: number;
  resultBytes?: number;
  start: bigint;
}): Record<string, string> {
  return {
    read_rows: String(n.read ?? 0),
    read_bytes: String(n.readBytes ?? 0),
    written_rows: String(n.written ?? 0),
    written_bytes: String(n.writtenBytes ?? 0),
    total_rows_to_read: String(n.read ?? 0),
    result_rows: '0',
    result_bytes: String(n.resultBytes ?? 0),
    elapsed_ns: String(process.hrtime.bigint() - n.start),
  };
}

/** `SET` of the named settings back to what a connection starts with (the engine's arguments, else the default). */
function resetStatement(names: readonly string[]): string {
  return `SET ${names.map((n) => (Object.hasOwn(engineDefaults, n) ? `${n} = ${engineDefaults[n]}` : `${n} = DEFAULT`)).join(', ')}`;
}

/** Whether a statement changes its connection beyond itself: SET, USE, or a temporary table. */
function changesConnection(sql: string): boolean {
  return /^\s*(?:SET\b|USE\b|(?:CREATE|DROP)\s+(?:OR\s+REPLACE\s+)?TEMPORARY\b)/i.test(sql);
}

const identifierRe = /^[A-Za-z_][A-Za-z0-9_]*$/;

function checkIdentifier(name: string): string {
  if (!identifierRe.test(name)) throw new HttpError(81, 'UNKNOWN_DATABASE', `Database ${name} does not exist`);
  return name;
}

/** `SET a = '1', b = 'x'`: names checked, values quoted (the engine converts them to the setting's type). */
function setStatement(settings: Record<string, string>): string {
  const parts = Object.entries(settings).map(([name, value]) => {
    if (!identifierRe.test(name)) throw new HttpError(115, 'UNKNOWN_SETTING', `Unknown setting '${name}'`);
    return `${name} = '${value.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
  });
  return `SET ${parts.join(', ')}`;
}

// ---------------------------------------------------------------------------------------------
// HTTP: request parsing and responses.

/** An error produced by the endpoint itself, in ClickHouse's shape. */
class HttpError extends Error {
  constructor(
    readonly code: number,
    readonly type: string,
    message: string,
  ) {
    super(`Code: ${code}. DB::Exception: ${message}. (${type})`);
  }
}

// URL parameters that are not settings: the HTTP interface's own, and settings that only
// govern how a server streams its answer (this endpoint always answers in one piece).
const notSettings = new Set([
  'query',
  'database',
  'default_format',
  'query_id',
  'session_id',
  'session_timeout',
  'session_check',
  'user',
  'password',
  'quota_key',
  'role',
  'compress',
  'decompress',
  'buffer_size',
  'wait_end_of_query',
  'http_wait_end_of_query',
  'enable_http_compression',
  'http_zlib_compression_level',
  'http_response_compression_method',
  'send_progress_in_http_headers',
  'http_headers_progress_interval_ms',
  'http_send_progress_interval_ms',
  'http_response_buffer_size',
  'http_native_compression_disable_checksumming_on_decompress',
]);

// Error name → HTTP status, as a server's exceptionCodeToHTTPStatus maps them; others are 500.
const statusByType: Record<string, number> = {
  REQUIRED_PASSWORD: 401,
  UNKNOWN_USER: 403,
  WRONG_PASSWORD: 403,
  AUTHENTICATION_FAILED: 403,
  SET_NON_GRANTED_ROLE: 403,
  ACCESS_DENIED: 403,
  BAD_ARGUMENTS: 400,
  CANNOT_COMPILE_REGEXP: 400,
  CANNOT_PARSE_TEXT: 400,
  CANNOT_PARSE_ESCAPE_SEQUENCE: 400,
  CANNOT_PARSE_QUOTED_STRING: 400,
  CANNOT_PARSE_DATE: 400,
  CANNOT_PARSE_DATETIME: 400,
  CANNOT_PARSE_NUMBER: 400,
  CANNOT_PARSE_INPUT_ASSERTION_FAILED: 400,
  DUPLICATE_COLUMN: 400,
  ILLEGAL_COLUMN: 400,
  THERE_IS_NO_COLUMN: 400,
  SYNTAX_ERROR: 400,
  INCORRECT_DATA: 400,
  TYPE_MISMATCH: 400,
  VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE: 400,
  UNKNOWN_TABLE: 404,
  UNKNOWN_FUNCTION: 404,
  UNKNOWN_IDENTIFIER: 404,
  UNKNOWN_TYPE: 404,
  UNKNOWN_STORAGE: 404,
  UNKNOWN_DATABASE: 404,
  UNKNOWN_SETTING: 404,
  UNKNOWN_AGGREGATE_FUNCTION: 404,
  UNKNOWN_FORMAT: 404,
  NOT_IMPLEMENTED: 501,
  SOCKET_TIMEOUT: 503,
  TIMEOUT_EXCEEDED: 408,
};

const maxBodyBytes = 512 * 1024 * 1024;

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    const buf = chunk as Buffer;
    size += buf.length;
    if (size > maxBodyBytes) throw new HttpError(36, 'BAD_ARGUMENTS', 'Request body is too large');
    chunks.push(buf);
  }
  return decompress(Buffer.concat(chunks), req.headers['content-encoding']);
}

function decompress(body: Buffer, encoding: string | undefined): Buffer {
  switch (encoding?.toLowerCase()) {
    case undefined:
    case '':
    case 'identity':
      return body;
    case 'gzip':
      return gunzipSync(body);
    case 'deflate':
      return inflateSync(body);
    case 'br':
      return brotliDecompressSync(body);
    default:
      throw new HttpError(36, 'BAD_ARGUMENTS', `Unknown HTTP compression method ${encoding}`);
  }
}

/** The named fields of a multipart/form-data body (the client sends long parameters this way). */
function multipartFields(body: Buffer, contentType: string): Map<string, string> {
  const boundary = /boundary=(?:"([^"]+)"|([^;]+))/i.exec(contentType);
  const marker = `--${boundary?.[1] ?? boundary?.[2] ?? ''}`;
  const fields = new Map<string, string>();
  for (const part of body.toString('utf8').split(marker).slice(1)) {
    if (part.startsWith('--')) break;
    const split = part.indexOf('\r\n\r\n');
    if (split < 0) continue;
    const name = /name="([^"]*)"/i.exec(part.slice(0, split))?.[1];
    if (name !== undefined) fields.set(name, part.slice(split + 4).replace(/\r\n$/, ''));
  }
  return fields;
}

const insertWithFormat = /^\s*INSERT\s[\s\S]*\bFORMAT\s+\w+\s*$/i;

function parseRequest(req: IncomingMessage, url: URL, body: Buffer): Request {
  const contentType = req.headers['content-type'] ?? '';
  const form = contentType.toLowerCase().startsWith('multipart/form-data')
    ? multipartFields(body, contentType)
    : undefined;
  const urlQuery = url.searchParams.get('query') ?? form?.get('query') ?? '';
  const params: Record<string, string> = {};
  const settings: Record<string, string> = {};
  for (const [key, value] of [...url.searchParams, ...(form ?? new Map<string, string>())]) {
    if (key.startsWith('param_')) params[key.slice('param_'.length)] = value;
    else if (!notSettings.has(key)) settings[key] = value;
  }
  const text = form === undefined ? body.toString('utf8') : '';
  const isInsertData = text.length > 0 && insertWithFormat.test(urlQuery);
  const sql = isInsertData ? urlQuery : [urlQuery, text].filter((s) => s.trim().length > 0).join('\n');
  if (sql.trim().length === 0) throw new HttpError(62, 'SYNTAX_ERROR', 'Empty query');
  const header = req.headers['x-clickhouse-database'];
  return {
    sql,
    insertData: isInsertData ? body : undefined,
    database: url.searchParams.get('database') ?? (typeof header === 'string' ? header : 'default'),
    params,
    settings,
    format: url.searchParams.get('default_format') ?? 'TabSeparated',
    sessionId: url.searchParams.get('session_id') ?? undefined,
  };
}

/** The output format a query answers in: its own FORMAT clause, else the default. */
function outputFormat(req: Request): string {
  if (req.insertData !== undefined) return req.format;
  return /\bFORMAT\s+(\w+)\s*;?\s*$/i.exec(req.sql)?.[1] ?? req.format;
}

function contentType(format: string): string {
  if (/^JSON(EachRow|Lines|StringsEachRow|CompactEachRow)/.test(format)) return 'application/x-ndjson; charset=UTF-8';
  if (format.startsWith('JSON')) return 'application/json; charset=UTF-8';
  if (format.startsWith('CSV')) return 'text/csv; charset=UTF-8; header=absent';
  return 'text/plain; charset=UTF-8';
}

function errorParts(err: unknown): { code: number; type: string; text: string } {
  if (err instanceof HttpError) return { code: err.code, type: err.type, text: err.message };
  const message = (err instanceof Error ? err.message : String(err)).replace(/^Query failed: /, '').trim();
  const code = Number(/Code: (\d+)\./.exec(message)?.[1] ?? 1001);
  const type = /\(([A-Z][A-Z0-9_]{2,})\)\.?\s*$/.exec(message)?.[1] ?? 'STD_EXCEPTION';
  const text = message.startsWith('Code:') ? message : `Code: ${code}. DB::Exception: ${message}. (${type})`;
  return { code, type, text };
}

async function handle(engine: Engine, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://127.0.0.1');
  const queryId = url.searchParams.get('query_id') ?? randomUUID();
  res.setHeader('X-ClickHouse-Server-Display-Name', 'farol-test-chdb');
  if (url.pathname === '/ping' || (url.pathname === '/' && req.method === 'GET' && !url.searchParams.has('query'))) {
    res.writeHead(200, { 'Content-Type': 'text/plain; charset=UTF-8' }).end('Ok.\n');
    return;
  }
  if (url.pathname !== '/') {
    res.writeHead(404, { 'Content-Type': 'text/plain; charset=UTF-8' }).end(`There is no handle ${url.pathname}\n`);
    return;
  }
  res.setHeader('X-ClickHouse-Query-Id', queryId);
  res.setHeader('X-ClickHouse-Timezone', 'UTC');
  try {
    const request = parseRequest(req, url, await readBody(req));
    const outcome = await engine.run(request);
    const gzip = url.searchParams.get('enable_http_compression') === '1' && /\bgzip\b/.test(req.headers['accept-encoding'] ?? '');
    const body = gzip ? gzipSync(outcome.body) : outcome.body;
    res.writeHead(200, {
      'Content-Type': contentType(outputFormat(request)),
      'X-ClickHouse-Format': outputFormat(request),
      'X-ClickHouse-Summary': JSON.stringify(outcome.summary),
      ...(gzip ? { 'Content-Encoding': 'gzip' } : {}),
    });
    res.end(body);
  } catch (err) {
    const { code, type, text } = errorParts(err);
    res.writeHead(statusByType[type] ?? 500, {
      'Content-Type': 'text/plain; charset=UTF-8',
      'X-ClickHouse-Exception-Code': String(code),
    });
    res.end(`${text} (version ${engine.version})\n`);
  }
}

/**
 * Serves the endpoint from this process. This process must hold no other chDB directory; tests
 * should prefer {@link startClickHouseHttp}, which runs it in a child.
 */
export async function serveClickHouseHttp(opts: ClickHouseHttpOptions): Promise<ServedClickHouseHttp> {
  const engine = new Engine(opts.dataDir);
  const server: Server = createServer((req, res) => {
    handle(engine, req, res).catch((err: unknown) => {
      res.destroy(err instanceof Error ? err : new Error(String(err)));
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    close: async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await closed;
      await engine.close();
    },
  };
}

// ---------------------------------------------------------------------------------------------
// The child process and its handle.

const childFlag = '--farol-clickhouse-http-child';
const thisFile = fileURLToPath(import.meta.url);
const repoRoot = fileURLToPath(new URL('../../', import.meta.url));

type ChildMessage = { type: 'ready'; port: number } | { type: 'failed'; message: string };

/** Spawns the child and resolves once it listens. */
function spawnChild(dataDir: string, port: number): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(process.execPath, ['--import', 'tsx', thisFile, childFlag, JSON.stringify({ dataDir, port })], {
    cwd: repoRoot,
    stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
  });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString('utf8')).slice(-4000);
  });
  return new Promise((resolve, reject) => {
    const onExit = (code: number | null): void => {
      reject(new Error(`clickhouse-http child exited (${code}) before listening: ${stderr}`));
    };
    child.once('exit', onExit);
    child.once('message', (raw) => {
      const msg = raw as ChildMessage;
      child.off('exit', onExit);
      if (msg.type === 'ready') {
        resolve({ child, port: msg.port });
      } else {
        child.kill('SIGKILL');
        reject(new Error(`clickhouse-http child failed: ${msg.message}`));
      }
    });
  });
}

function waitForExit(child: ChildProcess, graceMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/**
 * Starts the endpoint in a child process that owns `dataDir`. The child exits when this process
 * does (its IPC channel closes).
 */
export async function startClickHouseHttp(opts: ClickHouseHttpOptions): Promise<ClickHouseHttp> {
  let current = await spawnChild(opts.dataDir, opts.port ?? 0);
  let child: ChildProcess | undefined = current.child;
  const port = current.port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    get running() {
      return child !== undefined;
    },
    async stop() {
      if (child === undefined) return;
      const c = child;
      child = undefined;
      const exited = waitForExit(c, 10_000);
      if (c.connected) c.send({ type: 'stop' });
      await exited;
    },
    async kill() {
      if (child === undefined) return;
      const c = child;
      child = undefined;
      const exited = waitForExit(c, 10_000);
      c.kill('SIGKILL');
      await exited;
    },
    async start() {
      if (child !== undefined) return;
      current = await spawnChild(opts.dataDir, port);
      child = current.child;
    },
  };
}

/** Child side: serve, report the port, stop on request or when the parent goes away. */
async function runChild(config: { dataDir: string; port: number }): Promise<void> {
  const send = (msg: ChildMessage): void => {
    process.send?.(msg);
  };
  let served: ServedClickHouseHttp;
  try {
    served = await serveClickHouseHttp(config);
  } catch (err) {
    send({ type: 'failed', message: err instanceof Error ? err.message : String(err) });
    process.exit(1);
  }
  const shutdown = async (): Promise<void> => {
    await served.close();
    process.exit(0);
  };
  process.on('message', (msg) => {
    if ((msg as { type?: string }).type === 'stop') void shutdown();
  });
  process.on('disconnect', () => void shutdown());
  send({ type: 'ready', port: served.port });
}

if (process.argv.includes(childFlag) && process.argv[1] !== undefined && pathToFileURL(process.argv[1]).href === import.meta.url) {
  const config = JSON.parse(process.argv[process.argv.indexOf(childFlag) + 1] ?? '{}') as { dataDir: string; port: number };
  await runChild(config);
}
