import type { HttpRequest, HttpResponse, TemplatedApp } from 'uWebSockets.js';
import type { EnrichedEvent } from '../schemas/enriched-event.ts';
import { FarolError, transportError, type IngestErrorCode } from '../schemas/errors.ts';
import { MAX_BATCH_EVENTS, parseWireEvent, type WireEvent } from '../schemas/wire-event.ts';
import { encodeEvent } from '../hub/event-codec.ts';
import type { HubProducer } from '../hub/hub.ts';
import { HubError } from '../hub/local-common.ts';
import type { Logger } from '../lib/log.ts';
import type { CounterHandle, Registry } from '../lib/metrics.ts';
import { badStringInJson, badStringMessage } from '../schemas/unicode.ts';
import { bodyMemoryOf, decodeJson, endAnswer, readBody, type Answer, type BodyMemory, type BodyOptions, type BodyResult } from '../lib/http/body.ts';
import { remoteAddress } from '../lib/http/client-ip.ts';
import { httpServerOf, type TlsFiles } from '../lib/http/server.ts';
import { statusLine } from '../lib/http/status.ts';
import { enrichEvent, type EnrichDeps } from './pipeline.ts';
import { clientKey, createRateLimiter, type IngestRates } from './rate-limit.ts';

/**
 * The collector: uWebSockets.js routes for the Plausible-style ingest API. Each request runs
 * read → decode → validate → enrich → publish; a `202` goes out only once the hub made the events
 * durable. Every failure is a coded 4xx/5xx answer, never a crash.
 */

export interface CollectorLimits {
  maxBodyBytes: number;
  maxBatchBytes: number;
  bodyTimeoutMs: number;
  /** Per-client and per-site event rates (none when omitted). */
  rates?: IngestRates;
  /** Body bytes held in memory across all connections (FAROL_MAX_BODY_MEMORY). */
  maxBodyMemory: number;
}

export interface CollectorDeps {
  hub: HubProducer;
  enrich: EnrichDeps;
  /** The client IP from the socket address and X-Forwarded-For, per the trusted-proxy setting. */
  clientIp(remote: string, xff: string): string;
  /** Whether the socket peer is a trusted proxy (then per-event `ip`/`ua` are honoured). */
  trustedRemote(remote: string): boolean;
  /** Whether today's visitor salt is held (shared salts; /readyz is 503 while not). */
  saltsReady?: () => boolean;
  limits: CollectorLimits;
  log: Logger;
  metrics: Registry;
  /** Serve HTTPS with these files (checked by the caller). */
  tls?: TlsFiles;
}

export interface Collector {
  app: TemplatedApp;
  /**
   * Adds routes to the app (the API in `farol start`), on the same HTTP layer: its route table
   * answers their 404/405 and drain waits for their requests too. Call before `listen`.
   */
  mount(register: (app: TemplatedApp) => unknown): void;
  /** Listens on host:port (0 = any free port); resolves the bound port. */
  listen(host: string, port: number): Promise<number>;
  /** Stops accepting, waits for in-flight requests to be answered. */
  drain(): Promise<void>;
  /** TLS: serves new connections with the certificate files as they are now (see HttpServer.reloadTls). */
  reloadTls(): void;
  /** Closes every connection, keep-alive ones included (see HttpServer.closeConnections): after drain, before a thread ends. */
  closeConnections(): void;
}

/** A route's name and its request counters by status, resolved once per status. */
interface Route {
  name: string;
  byStatus: Map<number, CounterHandle>;
}

/**
 * Per-request context: everything read from the request before the first await. A class with
 * prototype methods, and the body options itself, so that a request allocates no closures for
 * them (the collector's hot path).
 */
class RequestCtx implements BodyOptions {
  aborted = false;
  readonly dialect = 'ingest' as const;
  limit = 0;
  timeoutMs = 0;
  contentLength = 0;

  constructor(
    readonly res: HttpResponse,
    readonly route: Route,
    readonly remote: string,
    readonly xff: string,
    readonly ua: string,
    readonly memory: BodyMemory,
  ) {}

  onAborted(): void {
    this.aborted = true;
  }
}

/** The answer `send` is writing, for {@link writeAnswer} inside `res.cork` (synchronous). */
const out: { res: HttpResponse | undefined; code: number; body: string | Buffer; contentType: string | null; answer: Answer; retryAfterS: number | undefined } = {
  res: undefined,
  code: 0,
  body: '',
  contentType: null,
  answer: 'keep',
  retryAfterS: undefined,
};

function writeAnswer(): void {
  const res = out.res!;
  res.writeStatus(statusLine(out.code));
  res.writeHeader('Access-Control-Allow-Origin', '*');
  // Rate limited: when the bucket allows; hub unavailable, full or draining: come back soon.
  if (out.retryAfterS !== undefined) res.writeHeader('Retry-After', String(out.retryAfterS));
  else if (out.code === 503) res.writeHeader('Retry-After', '5');
  if (out.contentType) res.writeHeader('Content-Type', out.contentType);
  endAnswer(res, out.body, out.answer);
}

const PIXEL = Buffer.from('R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7', 'base64');

export function createCollector(deps: CollectorDeps): Collector {
  const { hub, log, metrics, limits } = deps;
  const requests = metrics.counter('farol_ingest_requests_total', 'Ingest requests by route and status');
  const accepted = metrics.counter('farol_ingest_events_total', 'Events made durable in the hub');
  const dropped = metrics.counter('farol_ingest_dropped_total', 'Events answered 202 but not stored, by reason');
  const rejected = metrics.counter('farol_ingest_rejected_total', 'Events or requests rejected, by error code');
  const publishSeconds = metrics.histogram('farol_ingest_publish_seconds', 'Time from request to the hub accepting the events (on disk, or with FAROL_HUB_SYNC=interval written to the OS)', [
    0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1,
  ]);
  const inflightGauge = metrics.gauge('farol_ingest_inflight_requests', 'Requests being processed');
  const rateLimiter = createRateLimiter(limits.rates ?? { client: null, site: null }, metrics);

  let draining = false;
  const acceptedEvents = accepted.labels();
  const droppedBots = dropped.labels({ reason: 'bot' });
  const rejectedByCode = new Map<string, CounterHandle>();
  const routes = new Map<string, Route>();
  const other = route('other');

  // Requests no route takes (404/405, the mounted API's included) are counted as route `other`.
  const server = httpServerOf(undefined, {
    dialect: 'ingest',
    cors: true,
    onUnrouted(error, dialect) {
      countRequest(other, error.status);
      if (dialect === 'ingest') countRejected(error.code);
    },
    ...(deps.tls === undefined ? {} : { tls: deps.tls }),
  });
  const { app, inflight } = server;
  // All requests of the app (in `farol start`, the API's too): what drain waits for.
  inflightGauge.onCollect(() => inflightGauge.set(inflight.count));
  const bodyMemory = bodyMemoryOf(app, limits.maxBodyMemory);
  if (deps.saltsReady !== undefined) {
    const saltsReady = deps.saltsReady;
    const saltGauge = metrics.gauge('farol_ingest_salt_ready', "1 while today's shared visitor salt is held, 0 while events are refused for want of it (Event Hubs mode)");
    saltGauge.onCollect(() => saltGauge.set(saltsReady() ? 1 : 0));
  }
  const bodyBytesGauge = metrics.gauge('farol_ingest_body_bytes_in_memory', 'Request body bytes held in memory, all connections (capped by FAROL_MAX_BODY_MEMORY)');
  bodyBytesGauge.onCollect(() => bodyBytesGauge.set(bodyMemory.bytes));

  function route(name: string): Route {
    let r = routes.get(name);
    if (r === undefined) {
      r = { name, byStatus: new Map() };
      routes.set(name, r);
    }
    return r;
  }

  function countRequest(r: Route, code: number): void {
    let handle = r.byStatus.get(code);
    if (handle === undefined) {
      handle = requests.labels({ route: r.name, status: String(code) });
      r.byStatus.set(code, handle);
    }
    handle.inc();
  }

  function countRejected(code: string): void {
    let handle = rejectedByCode.get(code);
    if (handle === undefined) {
      handle = rejected.labels({ code });
      rejectedByCode.set(code, handle);
    }
    handle.inc();
  }

  /** A request's context; `watchAbort`: register its onAborted (readBody registers its own). */
  function begin(res: HttpResponse, req: HttpRequest, r: Route, watchAbort = true): RequestCtx {
    const ctx = new RequestCtx(res, r, remoteAddress(res), req.getHeader('x-forwarded-for'), req.getHeader('user-agent'), bodyMemory);
    if (watchAbort) res.onAborted(() => ctx.onAborted());
    inflight.begin();
    return ctx;
  }

  function end(): void {
    inflight.end();
  }

  function send(ctx: RequestCtx, code: number, body: string | Buffer, contentType: string | null, answer: Answer = 'keep', retryAfterS?: number): void {
    countRequest(ctx.route, code);
    if (ctx.aborted) return;
    ctx.aborted = true; // a response ends the request; nothing may write to it again
    // `cork` runs its callback at once: the answer goes through module state, not a closure.
    out.res = ctx.res;
    out.code = code;
    out.body = body;
    out.contentType = contentType;
    out.answer = answer;
    out.retryAfterS = retryAfterS;
    try {
      ctx.res.cork(writeAnswer);
    } finally {
      out.res = undefined;
      out.body = '';
    }
  }

  function sendError(ctx: RequestCtx, err: FarolError, answer: Answer = 'keep'): void {
    countRejected(err.code);
    send(ctx, err.status, JSON.stringify(err.toJSON()), 'application/json', answer, err.retryAfterS);
  }

  /** Anything but a coded error is a bug: logged, and answered 500 so it is not taken for an outage. */
  function sendFailure(ctx: RequestCtx, err: unknown): void {
    if (err instanceof FarolError) {
      sendError(ctx, err);
      return;
    }
    log.error({ err, route: ctx.route.name }, 'unexpected ingest error');
    sendError(ctx, transportError('ingest', 'internal', undefined, { cause: err }));
  }

  function fail(code: IngestErrorCode, message: string): FarolError {
    return new FarolError(code, message);
  }

  /** Validates and enriches a list of decoded wire values; all-or-nothing so a retry is simple. */
  function enrichAll(ctx: RequestCtx, values: unknown[], indexed: boolean): { events: EnrichedEvent[]; bots: number } {
    const trusted = deps.trustedRemote(ctx.remote);
    const requestIp = deps.clientIp(ctx.remote, ctx.xff);
    const events: EnrichedEvent[] = [];
    let bots = 0;
    for (let i = 0; i < values.length; i++) {
      const parsed = parseWireEvent(values[i]);
      if (!parsed.ok) throw fail(parsed.code, `${indexed ? `[${i}].` : ''}${parsed.message}`);
      const wire: WireEvent = parsed.event;
      const ip = trusted && wire.ip ? wire.ip : requestIp;
      const ua = trusted && wire.ua !== null ? wire.ua : ctx.ua;
      const result = enrichEvent(deps.enrich, wire, ip, ua);
      if (result.kind === 'reject') throw fail(result.code, `${indexed ? `[${i}].` : ''}${result.message}`);
      if (result.kind === 'drop') {
        bots++;
        continue;
      }
      for (const e of result.events) events.push(e);
    }
    return { events, bots };
  }

  /** The hub records of `events`: binary (hub/event-codec.ts), keyed by client. */
  function hubItems(events: EnrichedEvent[], keys: string[]): Array<{ key: string; payload: Buffer }> {
    // Every input string was checked; encodeEvent still refuses a string ClickHouse cannot store
    // (it would stop the partition) with a 500.
    const items: Array<{ key: string; payload: Buffer }> = [];
    for (let i = 0; i < events.length; i++) items.push({ key: keys[i]!, payload: encodeEvent(events[i]!) });
    return items;
  }

  /** What a failed hub publish answers. */
  function publishFailure(err: unknown, events: number): FarolError {
    // At its disk quota the hub refused the whole publish: nothing was written, a retry is safe.
    if (err instanceof HubError && err.code === 'HUB_FULL') return new FarolError('ING_HUB_FULL', undefined, { cause: err });
    log.error({ err, events }, 'hub publish failed');
    return new FarolError('ING_HUB_UNAVAILABLE', undefined, { cause: err });
  }

  /** Runs the shared tail of every ingest route: enrich, publish, answer. */
  async function ingest(ctx: RequestCtx, values: unknown[], indexed: boolean, answer: (ctx: RequestCtx, n: number) => void): Promise<void> {
    try {
      if (draining) throw new FarolError('ING_SHUTTING_DOWN');
      const { events, bots } = enrichAll(ctx, values, indexed);
      if (bots > 0) droppedBots.inc(bots);
      // The client key (site and salted visitor id) is the rate limit's and the hub's partition key.
      const keys: string[] = [];
      for (const e of events) keys.push(clientKey(e));
      rateLimiter.admit(events, keys);
      // Published here rather than in a function of its own: one promise less per request.
      if (events.length > 0) {
        const started = performance.now();
        const items = hubItems(events, keys);
        try {
          await hub.publish(items);
        } catch (err) {
          throw publishFailure(err, events.length);
        }
        publishSeconds.observe((performance.now() - started) / 1000);
        acceptedEvents.inc(events.length);
      }
      answer(ctx, values.length - bots);
    } catch (err) {
      sendFailure(ctx, err);
    } finally {
      end();
    }
  }

  function postRoute(path: string, limit: number, toValues: (json: unknown) => unknown[], answer: (ctx: RequestCtx, n: number) => void): void {
    const r = route(path);
    const indexed = path === '/api/batch';
    // One function for every request of the route: the request comes back as `ctx`.
    const bodyRead = (result: BodyResult, ctx: RequestCtx): void => {
      if (!result.ok) {
        sendError(ctx, result.error, result.answer);
        end();
        return;
      }
      let values: unknown[];
      try {
        values = toValues(decodeJson(result.body, 'ingest'));
      } catch (e) {
        sendFailure(ctx, e);
        end();
        return;
      }
      void ingest(ctx, values, indexed, answer);
    };
    server.route('post', path, 'ingest', (res, req) => {
      const ctx = begin(res, req, r, false);
      ctx.limit = limit;
      ctx.timeoutMs = limits.bodyTimeoutMs;
      ctx.contentLength = Number(req.getHeader('content-length') || '0');
      readBody(res, ctx, bodyRead);
    });
  }

  postRoute('/api/event', limits.maxBodyBytes, (json) => [json], (ctx) => send(ctx, 202, '', null));
  postRoute(
    '/api/batch',
    limits.maxBatchBytes,
    (json) => {
      if (!Array.isArray(json)) throw new FarolError('ING_BAD_BATCH');
      if (json.length === 0) throw new FarolError('ING_BAD_BATCH', 'batch is empty');
      if (json.length > MAX_BATCH_EVENTS) {
        throw new FarolError('ING_BATCH_TOO_LARGE', `batch holds ${json.length} events, limit ${MAX_BATCH_EVENTS}`);
      }
      return json;
    },
    (ctx, n) => send(ctx, 202, `{"accepted":${n}}`, 'application/json'),
  );

  function getRoute(path: string, answer: (ctx: RequestCtx) => void): void {
    const r = route(path);
    server.route('get', path, 'ingest', (res, req) => {
      const ctx = begin(res, req, r);
      let value: unknown;
      try {
        value = queryToWire(req.getQuery() ?? '');
      } catch (e) {
        sendFailure(ctx, e);
        end();
        return;
      }
      void ingest(ctx, [value], false, answer);
    });
  }
  getRoute('/api/event', (ctx) => send(ctx, 202, '', null));
  getRoute('/e.gif', (ctx) => send(ctx, 200, PIXEL, 'image/gif'));

  server.route('options', '/*', 'ingest', (res) => {
    res.cork(() => {
      res.writeStatus('204 No Content');
      res.writeHeader('Access-Control-Allow-Origin', '*');
      res.writeHeader('Access-Control-Allow-Methods', 'GET, POST, OPTIONS');
      res.writeHeader('Access-Control-Allow-Headers', 'Content-Type');
      res.writeHeader('Access-Control-Max-Age', '86400');
      res.end();
    });
  });

  function simple(path: string, handler: () => { code: number; body: string; type: string }): void {
    const r = route(path);
    server.route('get', path, 'ingest', (res, req) => {
      const ctx = begin(res, req, r);
      const out = handler();
      send(ctx, out.code, out.body, out.type);
      end();
    });
  }
  simple('/healthz', () => ({ code: 200, body: '{"status":"ok"}', type: 'application/json' }));
  simple('/readyz', () => {
    const saltless = deps.saltsReady !== undefined && !deps.saltsReady();
    return hub.isReady() && !draining && !saltless
      ? { code: 200, body: '{"status":"ready"}', type: 'application/json' }
      : { code: 503, body: `{"status":"${draining ? 'draining' : saltless ? 'salt unavailable' : 'hub unavailable'}"}`, type: 'application/json' };
  });

  return {
    app,
    mount(register) {
      register(app);
    },
    listen: (host, port) => server.listen(host, port),
    async drain() {
      draining = true;
      await server.close();
    },
    reloadTls: () => server.reloadTls(),
    closeConnections: () => server.closeConnections(),
  };
}

const QUERY_JSON_FIELDS = new Set(['p', 'props', 'm', 'exp', '$', 'revenue']);
const QUERY_BOOL_FIELDS = new Set(['i', 'interactive']);

/**
 * The query-string form of an event (no-JS and pixel use): `?n=pageview&u=…&d=…&p={"k":"v"}`.
 * Percent-decoding makes invalid UTF-8 U+FFFD (well-formed); NUL (`%00`) and, in the JSON fields,
 * `\u` escapes of NUL or a lone surrogate are refused.
 */
export function queryToWire(query: string): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of new URLSearchParams(query)) {
    if (k.includes('\0') || v.includes('\0')) throw new FarolError('ING_BAD_STRING', `${k.includes('\0') ? 'a parameter name' : k}: holds NUL (%00)`);
    if (QUERY_JSON_FIELDS.has(k)) {
      try {
        out[k] = JSON.parse(v) as unknown;
      } catch {
        throw new FarolError('ING_BAD_EVENT', `${k}: is not valid JSON`);
      }
      const bad = badStringInJson(v, out[k]);
      if (bad !== undefined) throw new FarolError('ING_BAD_STRING', badStringMessage({ ...bad, path: [k, ...bad.path] }));
    } else if (QUERY_BOOL_FIELDS.has(k)) {
      if (v !== 'true' && v !== 'false') throw new FarolError('ING_BAD_EVENT', `${k}: must be true or false`);
      out[k] = v === 'true';
    } else if (k === 'w') {
      out[k] = Number(v);
    } else {
      out[k] = v;
    }
  }
  return out;
}
