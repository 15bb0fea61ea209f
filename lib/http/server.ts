import uWS from 'uWebSockets.js';
import type { HttpRequest, HttpResponse, TemplatedApp, us_listen_socket } from 'uWebSockets.js';
import { transportError, type Dialect, type FarolError } from '../../schemas/errors.ts';
import { statusLine } from './status.ts';

/**
 * The HTTP layer every Farol process shares, over one uWebSockets.js app: a route table (so a
 * path with another method is answered 405, an unknown path 404, in the vocabulary of the routes
 * that own it), one in-flight counter that drain waits on, and listen/close. Handlers are uWS
 * handlers registered as they are, with no wrapper: the collector's hot path pays nothing for the
 * layer; the API's JSON routes (api/http.ts) are built on the same table.
 */

export type Method = 'get' | 'head' | 'post' | 'put' | 'patch' | 'del' | 'options';
export type RawHandler = (res: HttpResponse, req: HttpRequest) => void;

/** Requests being handled; drain waits until there are none. */
export class Inflight {
  private n = 0;
  private waiters: Array<() => void> = [];

  get count(): number {
    return this.n;
  }

  begin(): void {
    this.n++;
  }

  end(): void {
    if (--this.n === 0 && this.waiters.length > 0) {
      const waiters = this.waiters;
      this.waiters = [];
      for (const w of waiters) w();
    }
  }

  /** Resolves once no request is in flight. */
  idle(): Promise<void> {
    return this.n === 0 ? Promise.resolve() : new Promise<void>((resolve) => this.waiters.push(resolve));
  }
}

export interface HttpServerOptions {
  /** The vocabulary of the 404 for a path no route owns (the collector's, or the API's alone). */
  dialect: Dialect;
  /** Answer CORS for any origin on 404/405 (the collector's public routes are called cross-origin). */
  cors?: boolean;
  /** Told of every request no route took, after its answer (metrics). */
  onUnrouted?(error: FarolError, dialect: Dialect): void;
  /** Serve HTTPS with this certificate and key (PEM files, checked by lib/http/tls.ts first). */
  tls?: TlsFiles;
}

/** PEM files of a certificate (chain) and its private key. */
export interface TlsFiles {
  cert: string;
  key: string;
}

export interface HttpServer {
  /** The app routes are added to (the first one: with TLS a reload serves the same routes from a new app). */
  readonly app: TemplatedApp;
  readonly inflight: Inflight;
  /** Whether it serves HTTPS (the API then sends HSTS). */
  readonly secure: boolean;
  /** Registers `handler` on uWS as it is and records the route for 404/405. Before `listen`. */
  route(method: Method, pattern: string, dialect: Dialect, handler: RawHandler): void;
  /** The vocabulary of the routes owning `url` (with any method), or undefined when none does. */
  dialectOf(url: string): Dialect | undefined;
  /** Listens on host:port (0: any free port); resolves the bound port. */
  listen(host: string, port: number): Promise<number>;
  /** Stops accepting connections; resolves once no request is in flight. */
  close(): Promise<void>;
  /**
   * Closes every connection of the app (and of the apps a TLS reload retired), keep-alive ones
   * included. A worker thread holding an app must call it before it ends: uWS aborts the whole
   * process when a thread ends with sockets open.
   */
  closeConnections(): void;
  /**
   * TLS only, after `listen`: loads the certificate files again into a new SSL app serving the
   * same routes, starts it on the same port, then stops the old listener. New connections get
   * the new certificate; open ones (keep-alive, requests in flight) stay on the old app until
   * they close. Throws (and keeps serving the old certificate) when the files do not load.
   */
  reloadTls(): void;
}

// One layer per uWS app: the collector and the API routes `farol start` mounts on its app share
// one route table and one in-flight counter.
const servers = new WeakMap<TemplatedApp, HttpServer>();

/** The HTTP layer of `app` (a new app when omitted), made with `opts` by its first caller. */
export function httpServerOf(app: TemplatedApp | undefined, opts: HttpServerOptions): HttpServer {
  const existing = app === undefined ? undefined : servers.get(app);
  if (existing !== undefined) return existing;
  const server = createHttpServer(app, opts);
  servers.set(server.app, server);
  return server;
}

function createHttpServer(given: TemplatedApp | undefined, opts: HttpServerOptions): HttpServer {
  const tls = opts.tls;
  const makeApp = (): TemplatedApp => (tls === undefined ? uWS.App() : uWS.SSLApp({ cert_file_name: tls.cert, key_file_name: tls.key }));
  const first = given ?? makeApp();
  let current = first;
  // Every registration, so a TLS reload can serve the same routes from a new app.
  const registered: Array<{ method: Method | 'any'; pattern: string; handler: RawHandler }> = [];
  // Apps replaced by a reload: kept referenced while their connections may still be open.
  const retired: TemplatedApp[] = [];
  const inflight = new Inflight();
  const exact = new Map<string, Dialect>();
  const templated: Array<{ parts: string[]; dialect: Dialect }> = [];
  let socket: us_listen_socket | null = null;
  let bound: { host: string; port: number } | null = null;

  function dialectOf(url: string): Dialect | undefined {
    const hit = exact.get(url);
    if (hit !== undefined) return hit;
    if (templated.length === 0) return undefined;
    const parts = url.split('/');
    for (const t of templated) {
      if (t.parts.length === parts.length && t.parts.every((seg, i) => (seg.startsWith(':') ? parts[i] !== '' : seg === parts[i]))) return t.dialect;
    }
    return undefined;
  }

  function add(method: Method | 'any', pattern: string, handler: RawHandler): void {
    registered.push({ method, pattern, handler });
    current[method](pattern, handler);
  }

  add('any', '/*', (res, req) => {
    const url = req.getUrl();
    const owner = dialectOf(url);
    const error = owner === undefined ? transportError(opts.dialect, 'notFound') : transportError(owner, 'methodNotAllowed');
    // Read and drop any body, so a keep-alive connection stays usable.
    res.onData(() => undefined);
    res.cork(() => {
      res.writeStatus(statusLine(error.status));
      if (opts.cors) res.writeHeader('Access-Control-Allow-Origin', '*');
      res.writeHeader('Content-Type', 'application/json').end(JSON.stringify(error.toJSON()));
    });
    opts.onUnrouted?.(error, owner ?? opts.dialect);
  });

  // uWS listens synchronously: the callback has run when listen returns.
  function listenOn(app: TemplatedApp, host: string, port: number): us_listen_socket | null {
    let s: us_listen_socket | null = null;
    app.listen(host, port, (ls) => {
      s = ls || null;
    });
    return s;
  }

  return {
    app: first,
    inflight,
    secure: tls !== undefined,
    dialectOf,
    route(method, pattern, dialect, handler) {
      // A wildcard (the collector's OPTIONS preflight) owns no path: other methods stay 404.
      if (!pattern.includes('*')) {
        if (pattern.includes(':')) templated.push({ parts: pattern.split('/'), dialect });
        else exact.set(pattern, dialect);
      }
      add(method, pattern, handler);
    },
    listen(host, port) {
      let s = listenOn(current, host, port);
      // uSockets shares a port (SO_REUSEPORT) only when it was bound by number: a TLS reload
      // starts its new listener beside the old one, and collector threads bind the port the
      // first one got, so "any free port" is resolved first.
      if (s !== null && port === 0) {
        const chosen = uWS.us_socket_local_port(s);
        uWS.us_listen_socket_close(s);
        s = listenOn(current, host, chosen);
      }
      if (s === null) return Promise.reject(new Error(`cannot listen on ${host}:${port}`));
      socket = s;
      bound = { host, port: uWS.us_socket_local_port(s) };
      return Promise.resolve(bound.port);
    },
    async close() {
      if (socket) uWS.us_listen_socket_close(socket);
      socket = null;
      await inflight.idle();
    },
    closeConnections() {
      if (socket) uWS.us_listen_socket_close(socket);
      socket = null;
      // `close` exists on the app in this uWS build, untyped in its declarations.
      for (const app of [...retired, current]) (app as TemplatedApp & { close(): void }).close();
    },
    reloadTls() {
      if (tls === undefined) throw new Error('not serving TLS');
      if (socket === null || bound === null) throw new Error('not listening');
      // Throws "App construction failed" when the files do not load (or the key does not match).
      const next = makeApp();
      for (const r of registered) next[r.method](r.pattern, r.handler);
      const s = listenOn(next, bound.host, bound.port);
      if (s === null) throw new Error(`cannot listen again on ${bound.host}:${bound.port}`);
      // Only now: until the new listener is up, the old one keeps accepting.
      uWS.us_listen_socket_close(socket);
      socket = s;
      retired.push(current);
      current = next;
    },
  };
}
