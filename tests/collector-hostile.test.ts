import { mkdtemp, rm } from 'node:fs/promises';
import { request } from 'node:http';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LINGER_MAX_BYTES } from '../lib/http/body.ts';
import { createCollector, type Collector } from '../ingest/collector.ts';
import { openEnrichment, type EnrichRuntime } from '../ingest/main.ts';
import { openLocalHub, type LocalHub } from '../hub/local-hub.ts';
import { createLogger } from '../lib/log.ts';
import { Registry } from '../lib/metrics.ts';
import { loadConfig } from '../schemas/config.ts';
import { startTestCollector, type TestCollector } from './support/collector-harness.ts';
import { metricValue, parseMetrics, pollUntil } from './support/e2e.ts';
import { sendBodyRaw } from '../lib/testing/raw-http.ts';

/**
 * Hostile input on a real collector port (issue #8): strings that are not well-formed Unicode or
 * hold NUL in every field and form, an oversize body the client must still be able to read the
 * answer to, a bug answered 500 rather than taken for an outage, duplicate domains, and the cap on
 * body bytes held in memory across connections.
 */

const CHROME =
  'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36';

interface Answer {
  status: number;
  body: string;
  headers: Headers;
}

async function post(url: string, path: string, body: string | Buffer, headers: Record<string, string> = {}): Promise<Answer> {
  const res = await fetch(`${url}${path}`, { method: 'POST', body, headers: { 'content-type': 'text/plain', 'user-agent': CHROME, ...headers } });
  return { status: res.status, body: await res.text(), headers: res.headers };
}

async function get(url: string, path: string): Promise<Answer> {
  const res = await fetch(`${url}${path}`, { headers: { 'user-agent': CHROME } });
  return { status: res.status, body: await res.text(), headers: res.headers };
}

function errorOf(body: string): { code: string; message: string } {
  return (JSON.parse(body) as { error: { code: string; message: string } }).error;
}

/** An event as raw JSON text, each field given as raw JSON (so escapes reach the server as written). */
function rawEvent(fields: Record<string, string>): string {
  const all: Record<string, string> = { n: '"pageview"', u: '"https://example.com/p"', d: '"example.com"', ...fields };
  return `{${Object.entries(all)
    .map(([k, v]) => `"${k}":${v}`)
    .join(',')}}`;
}

// Each bad string as JSON escapes: what JSON.stringify writes for it, and what any sender may.
const BAD = [
  ['a lone high surrogate', '\\ud800'],
  ['a lone low surrogate', '\\uDC00'],
  ['a reversed pair', '\\ude00\\ud83d'],
  ['a high surrogate before a non-surrogate escape', '\\ud83d\\u0041'],
  ['NUL', '\\u0000'],
] as const;

// Where a string enters: the field as raw JSON with `X` standing for the bad escape, and the path
// the error must name.
const FIELDS = [
  ['name', { n: '"page X"' }, 'n'],
  ['long name', { name: '"page X"' }, 'name'],
  ['url', { u: '"https://example.com/X"' }, 'u'],
  ['domain', { d: '"example.comX"' }, 'd'],
  ['referrer', { r: '"https://ref.example/X"' }, 'r'],
  ['prop key', { p: '{"kX":"v"}' }, 'p'],
  ['prop value', { p: '{"k":"vX"}' }, 'p.k'],
  ['exp key', { exp: '{"heroX":"b"}' }, 'exp'],
  ['exp variation', { exp: '{"hero":"bX"}' }, 'exp.hero'],
  ['client id', { id: '"idX"' }, 'id'],
  ['ip', { ip: '"1.2.3.4X"' }, 'ip'],
  ['ua', { ua: '"Mozilla/5.0 X"' }, 'ua'],
  ['revenue currency', { revenue: '{"currency":"EUX","amount":1}' }, 'revenue.currency'],
  ['an unknown field', { zzz: '"X"' }, 'zzz'],
  ['a nested unknown value', { zzz: '[[{"a":["X"]}]]' }, 'zzz'],
] as const;

function fieldsWith(fields: Record<string, string>, bad: string): Record<string, string> {
  return Object.fromEntries(Object.entries(fields).map(([k, v]) => [k, v.replace('X', bad)]));
}

describe('collector: strings must be well-formed Unicode without NUL', () => {
  let c: TestCollector;
  beforeAll(async () => {
    c = await startTestCollector({ FAROL_SITES: 'example.com' });
  });
  afterAll(() => c.stop());

  const cases = FIELDS.flatMap(([field, fields, path]) => BAD.map(([what, esc]) => [field, what, fields, path, esc] as const));

  it.each(cases)('POST /api/event: %s holding %s → 400 ING_BAD_STRING naming it', async (_field, _what, fields, path, esc) => {
    const before = (await c.events()).length;
    const body = rawEvent(fieldsWith(fields, esc));
    const r = await post(c.url, '/api/event', body);
    expect(r.status).toBe(400);
    const err = errorOf(r.body);
    expect(err.code).toBe('ING_BAD_STRING');
    expect(err.message.startsWith(`${path}`)).toBe(true);
    expect((await c.events()).length).toBe(before);
  });

  it.each(BAD)('POST /api/batch: the second event holding %s → 400 naming [1]', async (_what, esc) => {
    const good = rawEvent({});
    const bad = rawEvent({ p: `{"plan":"pro${esc}"}` });
    const r = await post(c.url, '/api/batch', `[${good},${bad},${good}]`);
    expect(r.status).toBe(400);
    expect(errorOf(r.body)).toMatchObject({ code: 'ING_BAD_STRING' });
    expect(errorOf(r.body).message.startsWith('[1].p.plan:')).toBe(true);
  });

  it.each(BAD)('props sent as a JSON string holding %s → 400', async (_what, esc) => {
    const inner = JSON.stringify(`{"k":"v${esc}"}`); // the escape survives as an escape inside the string
    const r = await post(c.url, '/api/event', rawEvent({ p: inner }));
    expect(r.status).toBe(400);
    expect(errorOf(r.body).code).toBe('ING_BAD_STRING');
  });

  it.each([
    ['props with a lone surrogate', { p: '{"k":"\\ud800"}' }],
    ['props with NUL', { p: '{"k":"a\\u0000"}' }],
    ['a prop key with NUL', { p: '{"a\\u0000":"v"}' }],
    ['exp with a lone surrogate', { exp: '{"hero":"\\udfff"}' }],
  ])('GET /api/event and /e.gif: %s in a JSON parameter → 400 ING_BAD_STRING', async (_what, json) => {
    const before = (await c.events()).length;
    for (const route of ['/api/event', '/e.gif']) {
      const q = new URLSearchParams({ n: 'pageview', u: 'https://example.com/q', d: 'example.com', ...json });
      const r = await get(c.url, `${route}?${q}`);
      expect(r.status).toBe(400);
      expect(errorOf(r.body).code).toBe('ING_BAD_STRING');
    }
    expect((await c.events()).length).toBe(before);
  });

  it.each(['n=page%00view', 'u=https://example.com/%00', 'd=example.com%00', 'r=%00', 'id=a%00', 'ua=x%00', 'k%00=v'])(
    'GET /api/event and /e.gif with %s → 400 ING_BAD_STRING',
    async (param) => {
      for (const route of ['/api/event', '/e.gif']) {
        const r = await get(c.url, `${route}?n=pageview&u=https://example.com/g&d=example.com&${param}`);
        expect(r.status).toBe(400);
        expect(errorOf(r.body).code).toBe('ING_BAD_STRING');
      }
    },
  );

  it('accepts what is well-formed: escaped pairs, escaped backslashes, other control characters', async () => {
    const body = rawEvent({
      id: '"ok-escapes"',
      p: '{"emoji":"\\ud83d\\ude00","upper":"\\uD83D\\uDE00","literal":"\\\\ud800 \\\\u0000","tab":"a\\u0009b","bell":"\\u0007"}',
    });
    const r = await post(c.url, '/api/event', body);
    expect(r.status).toBe(202);
    const e = (await c.events()).find((x) => x.id === 'ok-escapes');
    expect(e?.props).toEqual({ emoji: '😀', upper: '😀', literal: '\\ud800 \\u0000', tab: 'a\tb', bell: '\u0007' });
  });

  it('keeps NUL out of what enrichment decodes: %00 in the path and a utm value stays encoded', async () => {
    const r = await post(c.url, '/api/event', rawEvent({ id: '"pct-00"', u: '"https://example.com/a%00b?utm_source=x%00y"' }));
    expect(r.status).toBe(202);
    const e = (await c.events()).find((x) => x.id === 'pct-00');
    expect(e).toMatchObject({ pathname: '/a%00b', utmSource: 'x%00y' });
  });

  it('stores an event listing one site several times once', async () => {
    const r = await post(c.url, '/api/event', rawEvent({ id: '"dup-domains"', d: '"example.com,example.com,EXAMPLE.com, example.com"' }));
    expect(r.status).toBe(202);
    const copies = (await c.events()).filter((x) => x.id === 'dup-domains');
    expect(copies.map((x) => x.site)).toEqual(['example.com']);
  });
});

describe('collector: a body over the cap is answered so that the client reads the 413', () => {
  let c: TestCollector;
  beforeAll(async () => {
    c = await startTestCollector({ FAROL_SITES: 'example.com' });
  });
  afterAll(() => c.stop());

  const big = Buffer.alloc(3_000_000, 97);

  it('fetch sending 3 MB to /api/event reads 413 ING_BODY_TOO_LARGE', async () => {
    const r = await post(c.url, '/api/event', big);
    expect(r.status).toBe(413);
    expect(errorOf(r.body).code).toBe('ING_BODY_TOO_LARGE');
  });

  it('fetch sending 3 MB to /api/batch reads 413 ING_BODY_TOO_LARGE', async () => {
    const r = await post(c.url, '/api/batch', big);
    expect(r.status).toBe(413);
    expect(errorOf(r.body).code).toBe('ING_BODY_TOO_LARGE');
  });

  it('fetch streaming 3 MB without a length (chunked) reads 413 ING_BODY_TOO_LARGE', async () => {
    let sent = 0;
    const body = new ReadableStream<Uint8Array>({
      async pull(ctl) {
        if (sent >= 3_000_000) ctl.close();
        else {
          // The first 64 KiB get the answer under way before the rest is written.
          if (sent === 120_000) await new Promise((r) => setTimeout(r, 100));
          ctl.enqueue(new Uint8Array(60_000).fill(97));
          sent += 60_000;
        }
      },
    });
    const res = await fetch(`${c.url}/api/event`, { method: 'POST', body, duplex: 'half', headers: { 'user-agent': CHROME } } as RequestInit);
    expect(res.status).toBe(413);
    expect(errorOf(await res.text()).code).toBe('ING_BODY_TOO_LARGE');
  });

  it('node:http writing a declared 3 MB body in pieces reads the 413 and its coded body', async () => {
    const outcome = await new Promise<{ status: number; body: string } | { error: string }>((resolve) => {
      const req = request(`${c.url}/api/event`, { method: 'POST', headers: { 'content-length': String(big.length), 'user-agent': CHROME } });
      req.on('response', (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        res.on('error', (e) => resolve({ error: e.message }));
      });
      req.on('error', (e: NodeJS.ErrnoException) => resolve({ error: e.code ?? e.message }));
      void (async () => {
        for (let at = 0; at < big.length; at += 256 * 1024) {
          if (!req.write(big.subarray(at, at + 256 * 1024))) await new Promise((r) => req.once('drain', r));
          await new Promise((r) => setTimeout(r, 5));
        }
        req.end();
      })();
    });
    expect(outcome).toMatchObject({ status: 413 });
    if ('body' in outcome) expect(errorOf(outcome.body).code).toBe('ING_BODY_TOO_LARGE');
  });

  it('a raw socket writing all of a declared 3 MB body reads the 413 and its coded body', async () => {
    const port = Number(new URL(c.url).port);
    const { reply, error, sent } = await sendBodyRaw(port, `POST /api/event HTTP/1.1\r\nHost: x\r\nContent-Length: ${big.length}\r\n\r\n`, big.length);
    expect(error).toBeNull();
    expect(sent).toBe(big.length);
    expect(reply).toMatch(/^HTTP\/1\.1 413 /);
    expect(reply).toContain('"code":"ING_BODY_TOO_LARGE"');
  });

  it('a raw socket writing 3 MB chunked reads the 413 and its coded body', async () => {
    const port = Number(new URL(c.url).port);
    const { reply, error, sent } = await sendBodyRaw(port, 'POST /api/event HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n', 3_000_000, { chunked: true });
    expect(error).toBeNull();
    expect(sent).toBe(3_000_000);
    expect(reply).toMatch(/^HTTP\/1\.1 413 /);
    expect(reply).toContain('ING_BODY_TOO_LARGE');
  });

  it('closes a connection that keeps streaming past the discard bound, after the 413 was read', async () => {
    const port = Number(new URL(c.url).port);
    const total = LINGER_MAX_BYTES + 4 * 1024 * 1024;
    const { reply, error, sent } = await sendBodyRaw(port, 'POST /api/event HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n', total, { chunked: true });
    expect(reply).toMatch(/^HTTP\/1\.1 413 /);
    // The server hung up mid-body: the client saw a reset, or could not write it all.
    expect(error !== null || sent < total).toBe(true);
  });

  it('still answers and holds no body memory afterwards', async () => {
    const r = await post(c.url, '/api/event', rawEvent({ id: '"after-big"' }));
    expect(r.status).toBe(202);
    expect(metricValue(parseMetrics(c.metrics.render()), 'farol_ingest_body_bytes_in_memory')).toBe(0);
  });
});

describe('collector: a bug is a 500 with its own code, a hub failure stays 503', () => {
  let dir = '';
  let hub: LocalHub;
  let enrichment: EnrichRuntime;
  let collector: Collector;
  let url = '';
  let hubDown = false;
  const logLines: string[] = [];
  const metrics = new Registry();

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'farol-collector-bug-'));
    hub = await openLocalHub({ dir: join(dir, 'hub'), partitions: 1 });
    enrichment = await openEnrichment(loadConfig({ FAROL_DATA_DIR: dir }));
    collector = createCollector({
      hub: {
        partitionCount: 1,
        publish: (items) => (hubDown ? Promise.reject(new Error('EIO: the disk went away')) : hub.publish(items)),
        isReady: () => !hubDown,
        close: () => Promise.resolve(),
      },
      // An enrichment step with a bug for one User-Agent.
      enrich: {
        ...enrichment.deps,
        parseUa: (ua) => {
          if (ua.includes('Explode')) throw new TypeError("Cannot read properties of undefined (reading 'major')");
          return enrichment.deps.parseUa(ua);
        },
      },
      clientIp: (remote) => remote,
      trustedRemote: () => false,
      limits: { maxBodyBytes: 65_536, maxBatchBytes: 1 << 20, bodyTimeoutMs: 5_000, maxBodyMemory: 64 << 20 },
      log: createLogger('debug', {}, (line) => logLines.push(line)),
      metrics,
    });
    url = `http://127.0.0.1:${await collector.listen('127.0.0.1', 0)}`;
  });
  afterAll(async () => {
    await collector.drain();
    await hub.close();
    await enrichment.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('answers a throwing enrichment step 500 ING_INTERNAL, logged and counted', async () => {
    const r = await post(url, '/api/event', rawEvent({}), { 'user-agent': `${CHROME} Explode` });
    expect(r.status).toBe(500);
    expect(errorOf(r.body).code).toBe('ING_INTERNAL');
    expect(r.headers.get('retry-after')).toBeNull();
    expect(metrics.render()).toMatch(/farol_ingest_rejected_total\{code="ING_INTERNAL"\} 1/);
    expect(logLines.some((l) => l.includes('unexpected ingest error'))).toBe(true);
    const b = await post(url, '/api/batch', `[${rawEvent({})}]`, { 'user-agent': `${CHROME} Explode` });
    expect(b.status).toBe(500);
  });

  it('answers a failing hub 503 ING_HUB_UNAVAILABLE with Retry-After', async () => {
    hubDown = true;
    try {
      const r = await post(url, '/api/event', rawEvent({}));
      expect(r.status).toBe(503);
      expect(errorOf(r.body).code).toBe('ING_HUB_UNAVAILABLE');
      expect(r.headers.get('retry-after')).not.toBeNull();
    } finally {
      hubDown = false;
    }
    expect((await post(url, '/api/event', rawEvent({}))).status).toBe(202);
  });
});

describe('collector: body bytes held in memory are capped across connections', () => {
  let c: TestCollector;
  const CAP = 1024 * 1024;
  beforeAll(async () => {
    c = await startTestCollector({
      FAROL_SITES: 'example.com',
      FAROL_MAX_BODY_MEMORY: String(CAP),
      FAROL_MAX_BATCH_BYTES: String(256 * 1024),
      FAROL_BODY_TIMEOUT_MS: '60000',
    });
  });
  afterAll(() => c.stop());

  it('refuses past the cap with 503 ING_BODY_MEMORY_FULL, and releases the memory of aborted requests', async () => {
    const port = Number(new URL(c.url).port);
    const sockets: Socket[] = [];
    const replies: string[] = [];
    // 30 connections each declare a 200 KiB batch, send 100 KiB of it and stall: 3 MiB wanted.
    for (let i = 0; i < 30; i++) {
      const sock = connect(port, '127.0.0.1');
      const at = replies.push('') - 1;
      sock.on('data', (d) => (replies[at] += d.toString('latin1')));
      sock.on('error', () => undefined);
      await new Promise<void>((resolve) => sock.once('connect', () => resolve()));
      sock.write(`POST /api/batch HTTP/1.1\r\nHost: x\r\nContent-Length: ${200 * 1024}\r\n\r\n`);
      sock.write(Buffer.alloc(100 * 1024, 32));
      sockets.push(sock);
    }
    let maxSeen = 0;
    const refused = await pollUntil(
      async () => {
        maxSeen = Math.max(maxSeen, metricValue(parseMetrics(c.metrics.render()), 'farol_ingest_body_bytes_in_memory'));
        const n = replies.filter((r) => r.startsWith('HTTP/1.1 503')).length;
        const counted = metricValue(parseMetrics(c.metrics.render()), 'farol_ingest_rejected_total', { code: 'ING_BODY_MEMORY_FULL' });
        return n >= 15 && counted === n && maxSeen > CAP / 2 ? n : undefined;
      },
      { timeoutMs: 20_000, describe: () => `replies ${JSON.stringify(replies.map((r) => r.slice(0, 12)))}, max in memory ${maxSeen}` },
    );
    expect(maxSeen).toBeLessThanOrEqual(CAP);
    // Every sender was either refused or is still being read: no other answer.
    expect(refused + replies.filter((x) => x === '').length).toBe(30);
    for (const r of replies.filter((x) => x !== '')) {
      expect(r).toMatch(/^HTTP\/1\.1 503 /);
      expect(r).toContain('"code":"ING_BODY_MEMORY_FULL"');
      expect(r.toLowerCase()).toContain('retry-after:');
    }
    const m = parseMetrics(c.metrics.render());
    expect(metricValue(m, 'farol_ingest_body_bytes_in_memory')).toBeLessThanOrEqual(CAP);

    // The stalled senders go away: their memory is released at once, not at the body timeout.
    for (const s of sockets) s.destroy();
    await pollUntil(async () => (metricValue(parseMetrics(c.metrics.render()), 'farol_ingest_body_bytes_in_memory') === 0 ? true : undefined), {
      timeoutMs: 10_000,
      describe: () => 'body memory to return to 0',
    });
    const r = await post(c.url, '/api/event', rawEvent({ id: '"after-stall"' }));
    expect(r.status).toBe(202);
    expect((await c.events()).some((e) => e.id === 'after-stall')).toBe(true);
  });

  it('refuses bad values of FAROL_MAX_BODY_MEMORY, naming it', () => {
    expect(() => loadConfig({ FAROL_MAX_BODY_MEMORY: 'lots' })).toThrow(/FAROL_MAX_BODY_MEMORY/);
    expect(() => loadConfig({ FAROL_MAX_BODY_MEMORY: '1000' })).toThrow(/FAROL_MAX_BODY_MEMORY.*at least/);
  });
});
