import type { HttpRequest, HttpResponse, TemplatedApp } from 'uWebSockets.js';
import { DEFAULT_MAX_BODY_MEMORY } from '../schemas/config.ts';
import { ApiError, FarolError, transportError } from '../schemas/errors.ts';
import type { Logger } from '../lib/log.ts';
import type { CounterHandle, Registry } from '../lib/metrics.ts';
import { bodyMemoryOf, decodeJson, endAnswer, readBody, type Answer } from '../lib/http/body.ts';
import { remoteAddress } from '../lib/http/client-ip.ts';
import { httpServerOf, type HttpServer } from '../lib/http/server.ts';
import { statusLine } from '../lib/http/status.ts';
import { HSTS } from '../lib/http/tls.ts';
import { StoreError } from '../store/store.ts';
import type { AuthGuard } from './auth-guard.ts';

/**
 * JSON routes on the HTTP layer (lib/http) for the reporting API, the admin endpoints, the
 * tracker and the dashboard. uWS hands a request over synchronously and forbids touching it after
 * the first await, so the router copies what handlers need (method, path params, query, a few
 * headers) and reads a JSON body first; handlers are plain async functions returning a reply.
 * Every failure becomes a coded JSON error (schemas/errors.ts); nothing a client sends can crash
 * the process.
 */

export interface ApiRequest {
  readonly method: string;
  readonly url: string;
  /** Path parameters by name (`/api/v2/experiments/:id/results` → `{id}`), URL-decoded. */
  readonly params: Readonly<Record<string, string>>;
  readonly query: URLSearchParams;
  /** Lower-case header names; only those the router copies (authorization, content-type, …). */
  readonly headers: Readonly<Record<string, string>>;
  /** The decoded JSON body for POST/PUT/PATCH (undefined when empty); undefined for other methods. */
  readonly body: unknown;
  /** The route's pattern (`DELETE /api/v1/members/:id`): what the audit trail records as the action. */
  readonly route?: string;
  /** The client's key (a keyed hash of its address, never the address) on routes that ask for it ({@link RouteOptions.clientKey}). */
  readonly client?: string;
}

export interface ApiReply {
  status?: number;
  /** Serialized as JSON unless `body` is given. */
  json?: unknown;
  body?: string | Buffer;
  contentType?: string;
  /** Response headers; a list writes the header once per value (several `Set-Cookie`). */
  headers?: Readonly<Record<string, string | readonly string[]>>;
}

export type Handler = (req: ApiRequest) => Promise<ApiReply> | ApiReply;

export interface RouteOptions {
  /** Body limit in bytes for this route (default 1 MiB). */
  maxBodyBytes?: number;
  /** Answer CORS for any origin (the tracker's public routes). */
  cors?: boolean;
  /** Key the request's client (sign-in throttling): called before any await with the peer address and X-Forwarded-For; the result is `ApiRequest.client`. */
  clientKey?: (remote: string, xff: string) => string;
}

export interface ApiRouter {
  get(path: string, handler: Handler, opts?: RouteOptions): void;
  post(path: string, handler: Handler, opts?: RouteOptions): void;
  put(path: string, handler: Handler, opts?: RouteOptions): void;
  patch(path: string, handler: Handler, opts?: RouteOptions): void;
  del(path: string, handler: Handler, opts?: RouteOptions): void;
}

const COPIED_HEADERS = ['authorization', 'content-type', 'accept', 'accept-encoding', 'if-none-match', 'origin', 'cookie', 'x-csrf-token'] as const;
const DEFAULT_MAX_BODY = 1 << 20;
const BODY_TIMEOUT_MS = 10_000;

/** Turns a route pattern into uWS's form and the names of its parameters. */
function paramNames(path: string): string[] {
  return path
    .split('/')
    .filter((p) => p.startsWith(':'))
    .map((p) => p.slice(1));
}

/**
 * Maps anything a handler throws to a coded error: a {@link FarolError} (the query engine's, the
 * experiment statistics', the control plane's) is answered as it is; a storage failure is logged
 * and becomes 503, or 500 when retrying cannot cure it; anything else is a bug, logged, 500.
 */
export function toApiError(err: unknown, log: Logger, route: string): FarolError {
  if (err instanceof FarolError) return err;
  if (err instanceof StoreError) {
    log.error({ err, route }, 'storage error');
    // The engine refusing our statement (a ClickHouse error code retrying cannot cure) is a bug,
    // not storage being down: 500, so nobody retries it as an outage.
    if (err.code !== undefined && !err.retryable) return new ApiError('API_INTERNAL', undefined, undefined, err);
    return new ApiError('API_UNAVAILABLE', undefined, undefined, err);
  }
  log.error({ err, route }, 'unexpected API error');
  return transportError('api', 'internal', undefined, { cause: err });
}

export interface RouterDeps {
  log: Logger;
  metrics: Registry;
  /** The failed-authentication limit (none when omitted). */
  authGuard?: AuthGuard;
  /** Body bytes held in memory across all connections of the app (FAROL_MAX_BODY_MEMORY; 64 MiB). */
  maxBodyMemory?: number;
  /** The whole body must arrive within this (default 10 s; a slow sender is answered 408). */
  bodyTimeoutMs?: number;
}

export interface Router extends ApiRouter {
  /** The HTTP layer the routes are on (its in-flight counter is what drain waits for). */
  readonly server: HttpServer;
}

/** JSON routes on `app`'s HTTP layer (made here, answering 404 in the API's vocabulary, when the app has none yet). */
export function createRouter(app: TemplatedApp, deps: RouterDeps): Router {
  const { log, metrics } = deps;
  const server = httpServerOf(app, { dialect: 'api' });
  const { inflight, secure } = server;
  const bodyMemory = bodyMemoryOf(app, deps.maxBodyMemory ?? DEFAULT_MAX_BODY_MEMORY);
  const requests = metrics.counter('farol_api_requests_total', 'API requests by route and status');
  const seconds = metrics.histogram('farol_api_request_seconds', 'API request time by route', [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10]);
  const counters = new Map<string, CounterHandle>();

  function count(route: string, status: number): void {
    const key = `${route} ${status}`;
    let c = counters.get(key);
    if (c === undefined) {
      c = requests.labels({ route, status: String(status) });
      counters.set(key, c);
    }
    c.inc();
  }

  const done = (): void => inflight.end();

  function register(method: 'get' | 'head' | 'post' | 'put' | 'patch' | 'del', path: string, handler: Handler, opts: RouteOptions = {}): void {
    // Every GET route answers HEAD too: same status and headers, no body.
    if (method === 'get') register('head', path, handler, opts);
    const names = paramNames(path);
    const route = `${method === 'del' ? 'DELETE' : method.toUpperCase()} ${path}`;
    const withBody = method === 'post' || method === 'put' || method === 'patch';
    const limit = opts.maxBodyBytes ?? DEFAULT_MAX_BODY;
    const timing = seconds.labels({ route });
    server.route(method, path, 'api', (res: HttpResponse, req: HttpRequest) => {
      inflight.begin();
      const started = performance.now();
      let aborted = false;
      res.onAborted(() => {
        aborted = true;
      });
      const params: Record<string, string> = {};
      // A NUL (`%00`) in a path or query parameter is refused like one in a body (see below).
      let badParam: string | undefined;
      names.forEach((name, i) => {
        const raw = req.getParameter(i) ?? '';
        try {
          params[name] = decodeURIComponent(raw);
        } catch {
          params[name] = raw;
        }
        if (params[name]?.includes('\0')) badParam ??= name;
      });
      const headers: Record<string, string> = {};
      for (const h of COPIED_HEADERS) {
        const v = req.getHeader(h);
        if (v !== '') headers[h] = v;
      }
      // Only requests presenting a token are counted and limited; the key is computed now, while
      // uWS still lets us read the address.
      const guard = deps.authGuard;
      const client =
        guard !== undefined && headers['authorization'] !== undefined
          ? guard.clientKey(remoteAddress(res), req.getHeader('x-forwarded-for'))
          : undefined;
      const request = {
        route,
        ...(opts.clientKey ? { client: opts.clientKey(remoteAddress(res), req.getHeader('x-forwarded-for')) } : {}),
        method: method === 'del' ? 'DELETE' : method.toUpperCase(),
        url: req.getUrl(),
        params,
        query: new URLSearchParams(req.getQuery() ?? ''),
        headers,
        body: undefined as unknown,
      };
      for (const [k, v] of request.query) if (k.includes('\0') || v.includes('\0')) badParam ??= k.includes('\0') ? 'query' : k;

      const reply = (out: ApiReply, answer: Answer = 'keep'): void => {
        const status = out.status ?? 200;
        count(route, status);
        if (status === 401 && client !== undefined) guard?.failed(client);
        timing.observe((performance.now() - started) / 1000);
        if (aborted) return;
        aborted = true;
        res.cork(() => {
          res.writeStatus(statusLine(status));
          if (opts.cors) res.writeHeader('Access-Control-Allow-Origin', '*');
          if (secure) res.writeHeader('Strict-Transport-Security', HSTS);
          let body: string | Buffer = '';
          let type = out.contentType;
          if (out.body !== undefined) body = out.body;
          else if (out.json !== undefined) {
            body = JSON.stringify(out.json);
            type ??= 'application/json';
          }
          if (type) res.writeHeader('Content-Type', type);
          for (const [k, v] of Object.entries(out.headers ?? {})) for (const one of typeof v === 'string' ? [v] : v) res.writeHeader(k, one);
          if (method === 'head') res.endWithoutBody(typeof body === 'string' ? Buffer.byteLength(body) : body.length);
          else endAnswer(res, body, answer);
        });
      };
      const fail = (err: unknown, answer: Answer = 'keep'): void => {
        const e = toApiError(err, log, route);
        const retryAfter = e.retryAfterS ?? (e.status === 503 ? 5 : e.status === 429 ? 1 : undefined);
        reply({ status: e.status, json: e.toJSON(), headers: retryAfter === undefined ? {} : { 'Retry-After': String(retryAfter) } }, answer);
      };
      const run = (): void => {
        if (badParam !== undefined) {
          fail(new ApiError('API_BAD_REQUEST', `${badParam}: holds NUL (%00)`, badParam));
          done();
          return;
        }
        Promise.resolve()
          .then(() => {
            const wait = client === undefined ? 0 : (guard?.blocked(client) ?? 0);
            if (wait > 0) {
              const limited = new ApiError('API_RATE_LIMITED');
              limited.retryAfterS = wait;
              throw limited;
            }
            return handler(request);
          })
          .then(reply, fail)
          .finally(done);
      };

      if (!withBody) {
        run();
        return;
      }
      const contentLength = Number(req.getHeader('content-length') || '0');
      const bodyOpts = { dialect: 'api' as const, limit, timeoutMs: deps.bodyTimeoutMs ?? BODY_TIMEOUT_MS, contentLength, memory: bodyMemory, onAborted: () => (aborted = true) };
      readBody(res, bodyOpts, (result) => {
        if (!result.ok) {
          fail(result.error, result.answer);
          done();
          return;
        }
        // An empty body is no body (a POST without one); anything else must be JSON.
        if (result.body.length > 0) {
          try {
            request.body = decodeJson(result.body, 'api');
          } catch (e) {
            fail(e);
            done();
            return;
          }
        }
        run();
      });
    });
  }

  return {
    get: (p, h, o) => register('get', p, h, o),
    post: (p, h, o) => register('post', p, h, o),
    put: (p, h, o) => register('put', p, h, o),
    patch: (p, h, o) => register('patch', p, h, o),
    del: (p, h, o) => register('del', p, h, o),
    server,
  };
}

/** The bearer token of a request, or undefined. */
export function bearerToken(req: ApiRequest): string | undefined {
  const h = req.headers.authorization;
  if (h === undefined) return undefined;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(h);
  return m?.[1];
}
