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
}

export interface HttpServer {
  readonly app: TemplatedApp;
  readonly inflight: Inflight;
  /** Registers `handler` on uWS as it is and records the route for 404/405. Before `listen`. */
  route(method: Method, pattern: string, dialect: Dialect, handler: RawHandler): void;
  /** The vocabulary of the routes owning `url` (with any method), or undefined when none does. */
  dialectOf(url: string): Dialect | undefined;
  /** Listens on host:port (0: any free port); resolves the bound port. */
  listen(host: string, port: number): Promise<number>;
  /** Stops accepting connections; resolves once no request is in flight. */
  close(): Promise<void>;
}

// One layer per uWS app: the collector and the API routes `farol start` mounts on its app share
// one route table and one in-flight counter.
const servers = new WeakMap<TemplatedApp, HttpServer>();

/** The HTTP layer of `app` (a new app when omitted), made with `opts` by its first caller. */
export function httpServerOf(app: TemplatedApp | undefined, opts: HttpServerOptions): HttpServer {
  const existing = app === undefined ? undefined : servers.get(app);
  if (existing !== undefined) return existing;
  const server = createHttpServer(app ?? uWS.App(), opts);
  servers.set(server.app, server);
  return server;
}

function createHttpServer(app: TemplatedApp, opts: HttpServerOptions): HttpServer {
  const inflight = new Inflight();
  const exact = new Map<string, Dialect>();
  const templated: Array<{ parts: string[]; dialect: Dialect }> = [];
  let socket: us_listen_socket | null = null;

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

  app.any('/*', (res, req) => {
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

  return {
    app,
    inflight,
    dialectOf,
    route(method, pattern, dialect, handler) {
      // A wildcard (the collector's OPTIONS preflight) owns no path: other methods stay 404.
      if (!pattern.includes('*')) {
        if (pattern.includes(':')) templated.push({ parts: pattern.split('/'), dialect });
        else exact.set(pattern, dialect);
      }
      app[method](pattern, handler);
    },
    listen(host, port) {
      return new Promise((resolve, reject) => {
        app.listen(host, port, (s) => {
          if (!s) {
            reject(new Error(`cannot listen on ${host}:${port}`));
            return;
          }
          socket = s;
          resolve(uWS.us_socket_local_port(s));
        });
      });
    },
    async close() {
      if (socket) uWS.us_listen_socket_close(socket);
      socket = null;
      await inflight.idle();
    },
  };
}
