import { readFile } from 'node:fs/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../schemas/config.ts';
import { startTestCollector, type TestCollector } from './support/collector-harness.ts';

/*
 * Finding 4 of issue #8: with FAROL_TRUST_PROXY set to a hop count, a batch's per-event `ip` and
 * `ua` were believed from any connection, so one request could forge any number of visitors in any
 * countries. They are honoured only from a peer inside the configured proxy CIDRs.
 */

const CHROME_WIN = 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36';
const SAFARI_IPHONE =
  'Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1';
/** Forged visitors in 4 countries (US, BR, JP, FR by the bundled database). */
const FORGED_PREFIXES = ['8.8.', '200.160.', '133.242.', '62.210.'];

let c: TestCollector | undefined;
afterEach(async () => {
  await c?.stop();
  c = undefined;
});

/** 200 events, each claiming its own visitor ip (4 countries) and an iPhone's UA, from one request. */
async function forgedBatch(collector: TestCollector): Promise<number> {
  const events = Array.from({ length: 200 }, (_, i) => ({
    n: 'pageview',
    u: `https://example.com/p/${i}`,
    d: 'example.com',
    id: `forged-${i}`,
    ip: `${FORGED_PREFIXES[i % 4]}${i % 250}.${(i * 7) % 250}`,
    ua: SAFARI_IPHONE,
  }));
  const res = await fetch(`${collector.url}/api/batch`, {
    method: 'POST',
    body: JSON.stringify(events),
    headers: { 'content-type': 'application/json', 'user-agent': CHROME_WIN, 'x-forwarded-for': '85.214.132.117' },
  });
  await res.arrayBuffer();
  return res.status;
}

describe('per-event ip and ua in /api/batch', () => {
  it('are ignored with a hop count: the request is one visitor, where its own address says', async () => {
    c = await startTestCollector({ FAROL_TRUST_PROXY: '1', FAROL_SITES: 'example.com' });
    expect(await forgedBatch(c)).toBe(202);
    const events = await c.events();
    expect(events).toHaveLength(200);
    expect(new Set(events.map((e) => e.visitorId)).size).toBe(1);
    // X-Forwarded-For still gives the client with one trusted hop: 85.214/16 is in Germany.
    expect(new Set(events.map((e) => e.country))).toEqual(new Set(['DE']));
    expect(new Set(events.map((e) => e.browser))).toEqual(new Set(['Chrome']));
  });

  it('are honoured from a peer inside the trusted CIDRs', async () => {
    c = await startTestCollector({ FAROL_TRUST_PROXY: '127.0.0.1/32', FAROL_SITES: 'example.com' });
    expect(await forgedBatch(c)).toBe(202);
    const events = await c.events();
    expect(events).toHaveLength(200);
    expect(new Set(events.map((e) => e.visitorId)).size).toBe(200);
    expect(new Set(events.map((e) => e.country)).size).toBeGreaterThanOrEqual(4);
    expect(new Set(events.map((e) => e.browser))).toEqual(new Set(['Safari']));
  });

  it('are ignored from a peer outside the trusted CIDRs (and so is its X-Forwarded-For)', async () => {
    c = await startTestCollector({ FAROL_TRUST_PROXY: '10.0.0.0/8,192.168.0.0/16', FAROL_SITES: 'example.com' });
    expect(await forgedBatch(c)).toBe(202);
    const events = await c.events();
    expect(events).toHaveLength(200);
    expect(new Set(events.map((e) => e.visitorId)).size).toBe(1);
    // The client is the loopback peer itself: no country.
    expect(new Set(events.map((e) => e.country))).toEqual(new Set(['']));
    expect(new Set(events.map((e) => e.browser))).toEqual(new Set(['Chrome']));
  });
});

describe('trusting a hop count', () => {
  it('is refused on an address others can reach, naming the variable', () => {
    for (const host of ['0.0.0.0', '::', '192.0.2.10']) {
      expect(() => loadConfig({ FAROL_HOST: host, FAROL_TRUST_PROXY: '1' })).toThrow(/FAROL_TRUST_PROXY/);
    }
    for (const host of ['127.0.0.1', 'localhost', '::1']) {
      expect(loadConfig({ FAROL_HOST: host, FAROL_TRUST_PROXY: '2' }).FAROL_TRUST_PROXY).toEqual({ kind: 'hops', hops: 2 });
    }
    expect(loadConfig({ FAROL_HOST: '0.0.0.0', FAROL_TRUST_PROXY: '10.0.0.0/8' }).FAROL_HOST).toBe('0.0.0.0');
    expect(loadConfig({ FAROL_HOST: '0.0.0.0', FAROL_TRUST_PROXY: '0' }).FAROL_HOST).toBe('0.0.0.0');
  });

  it('is not what deploy/farol.env ships: its settings load, and trust no one beyond loopback on a public address', async () => {
    const text = await readFile(new URL('../deploy/farol.env', import.meta.url), 'utf8');
    const env: Record<string, string> = {};
    for (const line of text.split('\n')) {
      const m = /^(FAROL_[A-Z_]+)=(.*)$/.exec(line.trim());
      if (m?.[1] !== undefined && m[2] !== undefined) env[m[1]] = m[2];
    }
    const config = loadConfig(env);
    expect(config.FAROL_TRUST_PROXY.kind === 'hops' && config.FAROL_TRUST_PROXY.hops > 0).toBe(false);
  });
});
