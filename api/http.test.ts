import { connect } from 'node:net';
import uWS from 'uWebSockets.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../lib/log.ts';
import { Registry } from '../lib/metrics.ts';
import { StoreError } from '../store/store.ts';
import { createRouter } from './http.ts';
import { ApiQueryError } from './query/errors.ts';
import { call, SITE_A, startApiHarness, type ApiHarness } from './experiments/testing/api-harness.ts';
import { sendBodyRaw } from '../lib/testing/raw-http.ts';

/**
 * The API router on a real port (issue #8): bodies and parameters whose strings are not
 * well-formed Unicode or hold NUL are refused 400 naming the field, an oversize body is answered
 * so the client reads the 413, and only storage being unreachable is a 503: a bug is a 500.
 */

interface Out {
  status: number;
  json: { error?: { code: string; message: string; field?: string } } & Record<string, unknown>;
  retryAfter: string | null;
}

async function send(base: string, method: string, path: string, body?: string): Promise<Out> {
  const res = await fetch(`${base}${path}`, { method, ...(body === undefined ? {} : { body, headers: { 'content-type': 'application/json' } }) });
  return { status: res.status, json: (await res.json()) as Out['json'], retryAfter: res.headers.get('retry-after') };
}

describe('API router: errors, strings and oversize bodies', () => {
  let base = '';
  let socket: uWS.us_listen_socket | undefined;
  const logLines: string[] = [];
  const metrics = new Registry();

  beforeAll(async () => {
    const app = uWS.App();
    const r = createRouter(app, { log: createLogger('debug', {}, (l) => logLines.push(l)), metrics, bodyTimeoutMs: 300 });
    r.post('/echo', (req) => ({ json: { body: req.body, query: Object.fromEntries(req.query) } }));
    r.get('/echo/:name', (req) => ({ json: { name: req.params['name'], query: Object.fromEntries(req.query) } }));
    r.get('/boom', () => {
      throw new TypeError("Cannot read properties of undefined (reading 'x')");
    });
    r.get('/impostor', () => {
      // Shaped like a coded error, but not one: mapped by class, never by the look of a code.
      throw Object.assign(new Error('not a FarolError'), { code: 'API_FORBIDDEN', status: 403, field: 'x' });
    });
    r.get('/coded', () => {
      throw new ApiQueryError('metrics[1]', 'is not a metric');
    });
    r.get('/store-down', () => {
      throw new StoreError('ClickHouse request failed: connect ECONNREFUSED 127.0.0.1:8123', { retryable: true });
    });
    r.get('/store-busy', () => {
      throw new StoreError('Code: 241. DB::Exception: Memory limit exceeded (MEMORY_LIMIT_EXCEEDED)', { code: 241 });
    });
    r.get('/store-bug', () => {
      throw new StoreError('Code: 47. DB::Exception: Unknown identifier (UNKNOWN_IDENTIFIER)', { code: 47 });
    });
    socket = await new Promise<uWS.us_listen_socket>((resolve, reject) => app.listen('127.0.0.1', 0, (s) => (s ? resolve(s) : reject(new Error('listen')))));
    base = `http://127.0.0.1:${uWS.us_socket_local_port(socket)}`;
  });
  afterAll(() => {
    if (socket) uWS.us_listen_socket_close(socket);
  });

  it('answers an unexpected error 500 API_INTERNAL, without Retry-After, and logs it', async () => {
    const r = await send(base, 'GET', '/boom');
    expect(r.status).toBe(500);
    expect(r.json.error?.code).toBe('API_INTERNAL');
    expect(r.retryAfter).toBeNull();
    expect(logLines.some((l) => l.includes('unexpected API error'))).toBe(true);
  });

  it('answers a coded error as coded, and anything merely shaped like one 500 API_INTERNAL', async () => {
    const coded = await send(base, 'GET', '/coded');
    expect([coded.status, coded.json.error]).toEqual([400, { code: 'API_BAD_QUERY', message: 'is not a metric', field: 'metrics[1]' }]);
    const impostor = await send(base, 'GET', '/impostor');
    expect([impostor.status, impostor.json.error?.code]).toEqual([500, 'API_INTERNAL']);
  });

  it.each([
    ['/store-down', 503, 'API_UNAVAILABLE'],
    ['/store-busy', 503, 'API_UNAVAILABLE'],
    ['/store-bug', 500, 'API_INTERNAL'],
  ])('maps a store error %s → %i %s', async (path, status, code) => {
    const r = await send(base, 'GET', path);
    expect(r.status).toBe(status);
    expect(r.json.error?.code).toBe(code);
    expect(r.retryAfter !== null).toBe(status === 503);
  });

  it.each([
    ['a lone surrogate deep in an array', 'filters[0][2][1]', '{"filters":[["is","event:page",["/a","\\ud800"]]]}'],
    ['a lone low surrogate', 'name', '{"name":"x\\udc00"}'],
    ['NUL', 'site_id', '{"site_id":"a\\u0000"}'],
    ['NUL in a key', 'props."k\\u0000"', '{"props":{"k\\u0000":1}}'],
    ['a lone surrogate at the top', 'body', '"\\ud83d"'],
  ])('refuses a JSON body holding %s: 400 API_BAD_REQUEST naming %s', async (_what, field, body) => {
    const r = await send(base, 'POST', '/echo', body);
    expect(r.status).toBe(400);
    expect(r.json.error).toMatchObject({ code: 'API_BAD_REQUEST', field });
  });

  it('takes well-formed strings as sent: pairs, escaped backslashes, other control characters', async () => {
    const r = await send(base, 'POST', '/echo', '{"a":"\\ud83d\\ude00","b":"\\\\ud800","c":"\\u0001"}');
    expect(r.status).toBe(200);
    expect(r.json['body']).toEqual({ a: '😀', b: '\\ud800', c: '\u0001' });
  });

  it.each([
    ['/echo/x?site_id=a%00b', 'site_id'],
    ['/echo/a%00b', 'name'],
    ['/echo/x?k%00=v', 'query'],
  ])('refuses NUL in a parameter: GET %s → 400 naming %s', async (path, field) => {
    const r = await send(base, 'GET', path);
    expect(r.status).toBe(400);
    expect(r.json.error).toMatchObject({ code: 'API_BAD_REQUEST', field });
  });

  it('answers a 3 MB body 413 API_BODY_TOO_LARGE to a client that keeps writing', async () => {
    const port = Number(new URL(base).port);
    const total = 3_000_000;
    const out = await sendBodyRaw(port, `POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: ${total}\r\n\r\n`, total);
    expect(out.error).toBeNull();
    expect(out.sent).toBe(total);
    expect(out.reply).toMatch(/^HTTP\/1\.1 413 /);
    expect(out.reply).toContain('"code":"API_BODY_TOO_LARGE"');
  });

  it('answers a body that does not arrive in time 408 API_BODY_TIMEOUT, like the collector', async () => {
    const reply = await new Promise<string>((resolve, reject) => {
      const socket = connect(Number(new URL(base).port), '127.0.0.1', () => socket.write('POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n{"a'));
      let text = '';
      socket.on('data', (d) => (text += d.toString('latin1')));
      socket.on('close', () => resolve(text));
      socket.on('error', reject);
    });
    expect(reply).toMatch(/^HTTP\/1\.1 408 /);
    expect(reply).toContain('"code":"API_BODY_TIMEOUT"');
  });

  it.each([
    ['GET', '/nope', 404, 'API_NOT_FOUND'],
    ['POST', '/boom', 405, 'API_METHOD_NOT_ALLOWED'],
    // A templated route with another method is 405 too (it was a 404 when `farol api` ran alone).
    ['DELETE', '/echo/x', 405, 'API_METHOD_NOT_ALLOWED'],
    ['PUT', '/echo', 405, 'API_METHOD_NOT_ALLOWED'],
  ])('answers %s %s from the route table: %i %s', async (method, path, status, code) => {
    const r = await send(base, method, path);
    expect([r.status, r.json.error?.code]).toEqual([status, code]);
  });

  it('answers HEAD for every GET route: same status and headers, no body', async () => {
    const res = await fetch(`${base}/echo/x?a=1`, { method: 'HEAD' });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/json');
    expect(Number(res.headers.get('content-length'))).toBeGreaterThan(0);
    expect(await res.text()).toBe('');
  });

  it('times requests by route, the pattern rather than the URL', async () => {
    await send(base, 'GET', '/echo/one');
    await send(base, 'GET', '/echo/two');
    const text = metrics.render();
    expect(text).toMatch(/^farol_api_request_seconds_count\{route="GET \/echo\/:name"\} [2-9]\d*$/m);
    expect(text).not.toContain('route="GET /echo/one"');
    expect(text).toMatch(/^farol_api_requests_total\{route="GET \/echo\/:name",status="200"\} [2-9]\d*$/m);
  });
});

describe('API: control-plane and query bodies with bad strings are 400, not 503', () => {
  let h: ApiHarness;
  beforeAll(async () => {
    h = await startApiHarness();
  }, 120_000);
  afterAll(() => h.close());

  it.each([
    ['POST', '/api/v1/sites', 'domain', '{"domain":"\\ud800.test","timezone":"UTC"}'],
    ['POST', '/api/v1/sites', 'domain', '{"domain":"nul\\u0000.test","timezone":"UTC"}'],
    ['PATCH', `/api/v1/sites/${SITE_A}`, 'timezone', '{"timezone":"Europe/\\udc00"}'],
    ['POST', `/api/v1/sites/${SITE_A}/goals`, 'name', '{"name":"Signup \\ud83d"}'],
    ['POST', '/api/v1/members', 'name', '{"name":"\\ud800","role":"viewer","sites":[]}'],
    ['POST', `/api/v1/sites/${SITE_A}/experiments`, 'name', '{"id":"hero","name":"Hero \\ud800","variations":[]}'],
    ['POST', '/api/v2/query', 'filters[0][2][0]', `{"site_id":"${SITE_A}","metrics":["visitors"],"date_range":"7d","filters":[["is","event:page",["/\\ud800"]]]}`],
  ])('%s %s with a bad string in %s → 400 naming it', async (method, path, field, body) => {
    const r = await call(h.url, method, path, h.tokens.owner, body);
    expect(r.status).toBe(400);
    expect(r.json).toMatchObject({ error: { code: 'API_BAD_REQUEST', field } });
  });

  it('still serves the same routes with good bodies', async () => {
    const r = await call(h.url, 'POST', `/api/v1/sites/${SITE_A}/goals`, h.tokens.owner, '{"name":"Signup 😀"}');
    expect([200, 201]).toContain(r.status);
  });
});
