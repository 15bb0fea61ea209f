import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestCollector, type TestCollector } from './support/collector-harness.ts';

const CHROME_WIN =
  'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36';
const SAFARI_IPHONE =
  'Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1';
const GOOGLEBOT = 'Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)';

interface Sent {
  status: number;
  body: string;
}

async function post(c: TestCollector, path: string, body: string | Buffer, headers: Record<string, string> = {}): Promise<Sent> {
  const res = await fetch(`${c.url}${path}`, {
    method: 'POST',
    body,
    headers: { 'content-type': 'text/plain', 'user-agent': CHROME_WIN, 'x-forwarded-for': '85.214.132.117', ...headers },
  });
  return { status: res.status, body: await res.text() };
}

async function get(c: TestCollector, path: string, headers: Record<string, string> = {}): Promise<Sent & { type: string | null }> {
  const res = await fetch(`${c.url}${path}`, { headers: { 'user-agent': CHROME_WIN, 'x-forwarded-for': '85.214.132.117', ...headers } });
  return { status: res.status, body: await res.text(), type: res.headers.get('content-type') };
}

function event(over: Record<string, unknown> = {}): Record<string, unknown> {
  return { name: 'pageview', url: 'https://example.com/pricing', domain: 'example.com', ...over };
}

function errorCode(body: string): string {
  return (JSON.parse(body) as { error: { code: string } }).error.code;
}

/** Sends raw bytes on a socket and returns what came back before the server closed or `waitMs`. */
function rawRequest(port: number, chunks: Buffer[], gapMs: number, waitMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = connect(port, '127.0.0.1');
    let data = '';
    sock.on('data', (d) => (data += d.toString('latin1')));
    sock.on('error', reject);
    sock.on('close', () => resolve(data));
    setTimeout(() => {
      sock.destroy();
      resolve(data);
    }, waitMs);
    let i = 0;
    const next = (): void => {
      const chunk = chunks[i++];
      if (!chunk) return;
      sock.write(chunk);
      setTimeout(next, gapMs);
    };
    sock.on('connect', next);
  });
}

describe('collector: valid events', () => {
  let c: TestCollector;
  beforeAll(async () => {
    c = await startTestCollector({ FAROL_TRUST_PROXY: '127.0.0.1/32', FAROL_SITES: 'example.com,shop.example.com,other.org' });
  });
  afterAll(() => c.stop());

  it('accepts a single event and publishes the enriched record', async () => {
    const r = await post(
      c,
      '/api/event',
      JSON.stringify(event({ url: 'https://www.example.com/blog/post?utm_source=newsletter&utm_medium=email&utm_campaign=launch&fbclid=abc', referrer: 'https://mail.example.net/inbox', props: { plan: 'pro', seats: 3, trial: true }, id: 'evt-single-1' })),
    );
    expect(r.status).toBe(202);
    expect(r.body).toBe('');
    const events = await c.events();
    const e = events.find((x) => x.id === 'evt-single-1');
    expect(e).toBeDefined();
    expect(e).toMatchObject({
      site: 'example.com',
      name: 'pageview',
      hostname: 'example.com',
      pathname: '/blog/post',
      utmSource: 'newsletter',
      utmMedium: 'email',
      utmCampaign: 'launch',
      country: 'DE',
      browser: 'Chrome',
      browserVersion: '124',
      os: 'Windows',
      device: 'desktop',
      channel: 'Email',
      clientId: true,
      props: { plan: 'pro', seats: '3', trial: 'true' },
    });
    expect(e?.clickIds).toContain('fbclid');
    expect(e?.visitorId).toMatch(/^\d+$/);
  });

  it('accepts the short field form and a batch, with one visitor id per (ip, ua)', async () => {
    const single = await post(c, '/api/event', JSON.stringify({ n: 'Signup', u: 'https://example.com/signup', d: 'example.com', r: 'https://www.google.com/', id: 'short-1', p: { ab: 'x' } }));
    expect(single.status).toBe(202);
    const batch = await post(
      c,
      '/api/batch',
      JSON.stringify([
        event({ id: 'batch-1', url: 'https://example.com/a', referrer: 'https://www.google.com/search?q=x' }),
        event({ id: 'batch-2', url: 'https://example.com/b', ip: '8.8.8.8', ua: SAFARI_IPHONE }),
        event({ id: 'batch-3', url: 'https://example.com/c', referrer: 'https://t.co/abc' }),
      ]),
    );
    expect(batch.status).toBe(202);
    expect(JSON.parse(batch.body)).toEqual({ accepted: 3 });
    const events = await c.events();
    const byId = new Map(events.map((e) => [e.id, e]));
    expect(byId.get('short-1')).toMatchObject({ name: 'Signup', pathname: '/signup', channel: 'Organic Search', source: 'Google', props: { ab: 'x' } });
    expect(byId.get('batch-1')).toMatchObject({ channel: 'Organic Search', country: 'DE' });
    // From a trusted proxy (the loopback peer is one here), a batch event's own ip/ua are honoured.
    expect(byId.get('batch-2')).toMatchObject({ country: 'US', browser: 'Safari', os: 'iOS', device: 'mobile', channel: 'Direct' });
    expect(byId.get('batch-3')).toMatchObject({ channel: 'Organic Social' });
    // Same IP + UA + site + day → one visitor; a different IP/UA → another.
    expect(byId.get('short-1')?.visitorId).toBe(byId.get('batch-1')?.visitorId);
    expect(byId.get('batch-2')?.visitorId).not.toBe(byId.get('batch-1')?.visitorId);
  });

  it('accepts GET /api/event and the pixel', async () => {
    const q = new URLSearchParams({ n: 'pageview', u: 'https://example.com/nojs', d: 'example.com', id: 'get-1', p: '{"k":"v"}' });
    const a = await get(c, `/api/event?${q}`, { 'x-forwarded-for': '2a00:1450:4001:80b::200e' });
    expect(a.status).toBe(202);
    q.set('id', 'gif-1');
    const b = await get(c, `/e.gif?${q}`, { 'x-forwarded-for': '133.242.0.1' });
    expect(b.status).toBe(200);
    expect(b.type).toBe('image/gif');
    const events = await c.events();
    expect(events.find((e) => e.id === 'get-1')).toMatchObject({ pathname: '/nojs', country: 'DE', props: { k: 'v' } });
    expect(events.find((e) => e.id === 'gif-1')).toMatchObject({ country: 'JP' });
  });

  it('fans a comma list of domains out to one event per site', async () => {
    const r = await post(c, '/api/event', JSON.stringify(event({ domain: 'example.com,shop.example.com', id: 'multi-1' })));
    expect(r.status).toBe(202);
    const sites = (await c.events()).filter((e) => e.id === 'multi-1').map((e) => e.site).sort();
    expect(sites).toEqual(['example.com', 'shop.example.com']);
  });

  it('answers bots 202 without storing them, and counts them', async () => {
    const before = (await c.events()).length;
    const r = await post(c, '/api/event', JSON.stringify(event({ id: 'bot-1' })), { 'user-agent': GOOGLEBOT });
    expect(r.status).toBe(202);
    expect((await c.events()).length).toBe(before);
    expect(c.metrics.render()).toMatch(/farol_ingest_dropped_total\{reason="bot"\} 1/);
  });

  it('answers CORS preflight and sets the allow-origin header', async () => {
    const pre = await fetch(`${c.url}/api/event`, { method: 'OPTIONS', headers: { origin: 'https://example.com', 'access-control-request-method': 'POST' } });
    expect(pre.status).toBe(204);
    expect(pre.headers.get('access-control-allow-origin')).toBe('*');
    expect(pre.headers.get('access-control-allow-methods')).toContain('POST');
    const res = await fetch(`${c.url}/api/event`, { method: 'POST', body: JSON.stringify(event()), headers: { 'user-agent': CHROME_WIN } });
    expect(res.status).toBe(202);
    expect(res.headers.get('access-control-allow-origin')).toBe('*');
  });

  it('serves health and readiness, and no metrics on the public port', async () => {
    expect((await get(c, '/healthz')).status).toBe(200);
    expect((await get(c, '/readyz')).status).toBe(200);
    // Metrics show every tenant's traffic: only the separate metrics listener serves them.
    const m = await get(c, '/metrics');
    expect(m.status).toBe(404);
    expect(m.body).not.toContain('farol_');
  });
});

// Each row: what is sent, the expected status and error code.
type BadCase = [label: string, status: number, code: string, path: string, body: string | Buffer];
const bigProps = Object.fromEntries(Array.from({ length: 31 }, (_, i) => [`k${i}`, i]));
const badCases: BadCase[] = [
  ['truncated JSON', 400, 'ING_BAD_JSON', '/api/event', '{"name":"pageview"'],
  ['not JSON at all', 400, 'ING_BAD_JSON', '/api/event', 'hello world'],
  ['trailing garbage', 400, 'ING_BAD_JSON', '/api/event', `${JSON.stringify(event())}xyz`],
  ['single quotes', 400, 'ING_BAD_JSON', '/api/event', "{'name':'pageview'}"],
  ['empty body', 400, 'ING_EMPTY_BODY', '/api/event', ''],
  ['array to /api/event', 400, 'ING_BAD_EVENT', '/api/event', JSON.stringify([event()])],
  ['a JSON string', 400, 'ING_BAD_EVENT', '/api/event', '"pageview"'],
  ['null', 400, 'ING_BAD_EVENT', '/api/event', 'null'],
  ['a number', 400, 'ING_BAD_EVENT', '/api/event', '42'],
  ['missing name', 400, 'ING_BAD_EVENT', '/api/event', JSON.stringify({ url: 'https://example.com/', domain: 'example.com' })],
  ['missing url', 400, 'ING_BAD_EVENT', '/api/event', JSON.stringify({ name: 'pageview', domain: 'example.com' })],
  ['missing domain', 400, 'ING_BAD_EVENT', '/api/event', JSON.stringify({ name: 'pageview', url: 'https://example.com/' })],
  ['name is a number', 400, 'ING_BAD_EVENT', '/api/event', JSON.stringify(event({ name: 7 }))],
  ['url is an object', 400, 'ING_BAD_EVENT', '/api/event', JSON.stringify(event({ url: { href: 'x' } }))],
  ['domain is an array', 400, 'ING_BAD_EVENT', '/api/event', JSON.stringify(event({ domain: ['example.com'] }))],
  ['props is an array', 400, 'ING_BAD_EVENT', '/api/event', JSON.stringify(event({ props: ['a'] }))],
  ['nested prop value', 400, 'ING_BAD_EVENT', '/api/event', JSON.stringify(event({ props: { a: { b: 1 } } }))],
  ['null prop value', 400, 'ING_BAD_EVENT', '/api/event', JSON.stringify(event({ props: { a: null } }))],
  ['31 props', 400, 'ING_TOO_MANY_PROPS', '/api/event', JSON.stringify(event({ props: bigProps }))],
  ['prop key of 301 chars', 400, 'ING_BAD_EVENT', '/api/event', JSON.stringify(event({ props: { ['k'.repeat(301)]: 1 } }))],
  ['prop value of 2001 chars', 400, 'ING_BAD_EVENT', '/api/event', JSON.stringify(event({ props: { k: 'v'.repeat(2001) } }))],
  ['relative url', 400, 'ING_BAD_URL', '/api/event', JSON.stringify(event({ url: '/pricing' }))],
  ['javascript: url', 400, 'ING_BAD_URL', '/api/event', JSON.stringify(event({ url: 'javascript:alert(1)' }))],
  ['ftp url', 400, 'ING_BAD_URL', '/api/event', JSON.stringify(event({ url: 'ftp://example.com/file' }))],
  ['url over 2000 chars', 400, 'ING_BAD_EVENT', '/api/event', JSON.stringify(event({ url: `https://example.com/${'a'.repeat(2001)}` }))],
  ['name over 120 chars', 400, 'ING_BAD_EVENT', '/api/event', JSON.stringify(event({ name: 'n'.repeat(121) }))],
  ['interactive as a string', 400, 'ING_BAD_EVENT', '/api/event', JSON.stringify(event({ interactive: 'false' }))],
  ['revenue with a 2-letter currency', 400, 'ING_BAD_EVENT', '/api/event', JSON.stringify(event({ revenue: { currency: 'US', amount: 1 } }))],
  ['revenue amount not a number', 400, 'ING_BAD_EVENT', '/api/event', JSON.stringify(event({ revenue: { currency: 'USD', amount: 'abc' } }))],
  ['exp not an object', 400, 'ING_BAD_EVENT', '/api/event', JSON.stringify(event({ exp: 'hero:b' }))],
  ['exp variation with spaces', 400, 'ING_BAD_EVENT', '/api/event', JSON.stringify(event({ exp: { hero: 'b c' } }))],
  ['empty id', 400, 'ING_BAD_EVENT', '/api/event', JSON.stringify(event({ id: '' }))],
  ['id over 128 chars', 400, 'ING_BAD_EVENT', '/api/event', JSON.stringify(event({ id: 'i'.repeat(129) }))],
  ['negative window width', 400, 'ING_BAD_EVENT', '/api/event', JSON.stringify(event({ w: -5 }))],
  ['eleven domains', 400, 'ING_BAD_EVENT', '/api/event', JSON.stringify(event({ domain: Array.from({ length: 11 }, (_, i) => `s${i}.com`).join(',') }))],
  ['unknown site', 400, 'ING_UNKNOWN_SITE', '/api/event', JSON.stringify(event({ domain: 'not-registered.net' }))],
  ['one unknown site in a list', 400, 'ING_UNKNOWN_SITE', '/api/event', JSON.stringify(event({ domain: 'example.com,evil.net' }))],
  ['invalid UTF-8 byte', 400, 'ING_BAD_UTF8', '/api/event', Buffer.concat([Buffer.from('{"name":"'), Buffer.from([0xff, 0xfe]), Buffer.from('"}')])],
  ['overlong UTF-8', 400, 'ING_BAD_UTF8', '/api/event', Buffer.concat([Buffer.from('{"name":"'), Buffer.from([0xc0, 0xaf]), Buffer.from('"}')])],
  ['UTF-8 encoded surrogate', 400, 'ING_BAD_UTF8', '/api/event', Buffer.concat([Buffer.from('{"name":"'), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from('"}')])],
  ['truncated UTF-8 sequence', 400, 'ING_BAD_UTF8', '/api/event', Buffer.concat([Buffer.from('{"name":"'), Buffer.from([0xe2, 0x82])])],
  ['body over 64 KiB', 413, 'ING_BODY_TOO_LARGE', '/api/event', JSON.stringify(event({ props: { k: 'x'.repeat(70_000) } }))],
  ['batch not an array', 400, 'ING_BAD_BATCH', '/api/batch', JSON.stringify(event())],
  ['empty batch', 400, 'ING_BAD_BATCH', '/api/batch', '[]'],
  ['batch of 1001 events', 413, 'ING_BATCH_TOO_LARGE', '/api/batch', JSON.stringify(Array.from({ length: 1001 }, () => ({ n: 'x', u: 'https://a.co/', d: 'example.com' })))],
  ['batch over 1 MiB', 413, 'ING_BODY_TOO_LARGE', '/api/batch', JSON.stringify(Array.from({ length: 600 }, () => event({ props: { k: 'x'.repeat(1900) } })))],
  ['batch with one bad event', 400, 'ING_BAD_EVENT', '/api/batch', JSON.stringify([event(), event(), event({ url: 3 })])],
  ['batch of garbage', 400, 'ING_BAD_EVENT', '/api/batch', '[1,2,3]'],
  ['deeply nested JSON', 400, 'ING_BAD_EVENT', '/api/event', `${'['.repeat(20_000)}${']'.repeat(20_000)}`],
];

describe('collector: bad input', () => {
  let c: TestCollector;
  beforeAll(async () => {
    c = await startTestCollector({ FAROL_TRUST_PROXY: '127.0.0.1/32', FAROL_SITES: 'example.com', FAROL_BODY_TIMEOUT_MS: '500' });
  });
  afterAll(() => c.stop());

  it(`has at least 40 distinct cases (${badCases.length})`, () => {
    expect(new Set(badCases.map((b) => b[0])).size).toBeGreaterThanOrEqual(40);
  });

  it.each(badCases)('%s → %i %s', async (_label, status, code, path, body) => {
    const before = (await c.events()).length;
    const r = await post(c, path, body);
    expect(r.status).toBe(status);
    expect(errorCode(r.body)).toBe(code);
    expect((JSON.parse(r.body) as { error: { message: string } }).error.message.length).toBeGreaterThan(0);
    expect((await c.events()).length).toBe(before);
  });

  it('names the bad event of a batch by index and field', async () => {
    const r = await post(c, '/api/batch', JSON.stringify([event(), event({ props: { a: [1] } })]));
    expect(r.status).toBe(400);
    expect(r.body).toContain('[1].props');
  });

  it.each([
    ['missing params', '/api/event?n=pageview'],
    ['props not JSON', '/api/event?n=pageview&u=https://example.com/&d=example.com&p=%7Bnope'],
    ['interactive not a boolean', '/api/event?n=pageview&u=https://example.com/&d=example.com&i=maybe'],
    ['pixel with a relative url', '/e.gif?n=pageview&u=/x&d=example.com'],
  ])('GET with %s → 400', async (_label, path) => {
    const r = await get(c, path);
    expect(r.status).toBe(400);
    expect(errorCode(r.body)).toMatch(/^ING_BAD_(EVENT|URL)$/);
  });

  it('answers unknown paths 404 and wrong methods 405', async () => {
    const nf = await get(c, '/wp-login.php');
    expect(nf.status).toBe(404);
    expect(errorCode(nf.body)).toBe('ING_NOT_FOUND');
    const put = await fetch(`${c.url}/api/event`, { method: 'PUT', body: '{}' });
    expect(put.status).toBe(405);
    expect(errorCode(await put.text())).toBe('ING_METHOD_NOT_ALLOWED');
  });

  it('refuses a streamed body as soon as it crosses the cap', async () => {
    const port = Number(new URL(c.url).port);
    const head = Buffer.from('POST /api/event HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n');
    const chunk = Buffer.from(`8000\r\n${'a'.repeat(0x8000)}\r\n`);
    const reply = await rawRequest(port, [head, chunk, chunk, chunk, chunk], 20, 3000);
    expect(reply).toMatch(/^HTTP\/1\.1 413/);
    expect(reply).toContain('ING_BODY_TOO_LARGE');
  });

  it('times out a slow body with 408 and closes the connection', async () => {
    const port = Number(new URL(c.url).port);
    const head = Buffer.from('POST /api/event HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"name":');
    const reply = await rawRequest(port, [head], 10, 5000);
    expect(reply).toMatch(/^HTTP\/1\.1 408/);
    expect(reply).toContain('ING_BODY_TIMEOUT');
  });

  it('keeps each body deadline of interleaved slow requests: only the late ones are 408', async () => {
    const port = Number(new URL(c.url).port);
    const body = JSON.stringify(event({ id: 'slow-but-in-time' }));
    const head = (n: number): Buffer => Buffer.from(`POST /api/event HTTP/1.1\r\nHost: x\r\nContent-Length: ${n}\r\n\r\n`);
    const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
    const started = Date.now();
    // Two bodies that never end, started 150 ms apart, and one sent in two parts 300 ms apart
    // (within the 500 ms deadline) between them: the deadline list must time out the first two
    // only, each no earlier than its own deadline.
    const late1 = rawRequest(port, [head(100), Buffer.from('{"n":')], 10, 3000).then((r) => ({ r, at: Date.now() - started }));
    await sleep(150);
    const inTime = rawRequest(port, [Buffer.concat([head(Buffer.byteLength(body)), Buffer.from(body.slice(0, 10))]), Buffer.from(body.slice(10))], 300, 800);
    const late2 = rawRequest(port, [head(100), Buffer.from('{"n":')], 10, 3000).then((r) => ({ r, at: Date.now() - started }));
    const [a, b, ok] = await Promise.all([late1, late2, inTime]);
    expect(a.r).toMatch(/^HTTP\/1\.1 408/);
    expect(b.r).toMatch(/^HTTP\/1\.1 408/);
    expect(a.at).toBeGreaterThanOrEqual(490);
    expect(b.at).toBeGreaterThanOrEqual(490 + 150);
    expect(ok).toMatch(/^HTTP\/1\.1 202/);
  });

  it('does not crash on a prototype-polluting props key', async () => {
    const r = await post(c, '/api/event', '{"name":"pageview","url":"https://example.com/","domain":"example.com","props":{"__proto__":{"x":1}}}');
    expect([202, 400]).toContain(r.status);
    expect(({} as Record<string, unknown>)['x']).toBeUndefined();
  });

  it('stays alive and keeps accepting valid events afterwards', async () => {
    expect((await get(c, '/healthz')).status).toBe(200);
    const r = await post(c, '/api/event', JSON.stringify(event({ id: 'after-bad' })));
    expect(r.status).toBe(202);
    expect((await c.events()).some((e) => e.id === 'after-bad')).toBe(true);
    expect(c.metrics.render()).toMatch(/farol_ingest_rejected_total\{code="ING_BAD_JSON"\} [1-9]/);
  });
});
