import { copyFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { Agent } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { httpsRequest, makeTestCert, type TestCert } from '../lib/testing/tls.ts';
import { pollUntil } from './support/e2e.ts';
import { logLines, runFarol, startFarol, type FarolProcess } from './support/farol-process.ts';

/**
 * HTTPS served directly (FAROL_TLS_CERT / FAROL_TLS_KEY) by `farol start`: beacons posted and the
 * API read over TLS by a client trusting only the test's own CA; HSTS on API and dashboard answers,
 * not on beacons; SIGHUP with a renewed certificate serves it to new connections while a kept-alive
 * connection goes on with the old one; a broken renewal keeps the previous certificate; a bad
 * setting is exit 2 naming the variable.
 */

const TOKEN = 'farol_tls_test_token_0123456789abcdef';
const UA = 'Mozilla/5.0 (X11; Linux x86_64; rv:130.0) Gecko/20100101 Firefox/130.0';
const dirs: string[] = [];
const procs: FarolProcess[] = [];

afterAll(async () => {
  for (const p of procs) p.child.kill('SIGKILL');
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function tempDir(prefix: string): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), prefix));
  dirs.push(d);
  return d;
}

const until = <T>(what: string, probe: () => Promise<T | undefined> | T | undefined): Promise<T> =>
  pollUntil(async () => probe(), { timeoutMs: 30_000, intervalMs: 100, describe: () => what });

describe('TLS', () => {
  it('refuses half or broken TLS settings with exit 2 naming the variable', async () => {
    const dir = await tempDir('farol-tls-cfg-');
    const a = makeTestCert(dir, 'a');
    const b = makeTestCert(dir, 'b');
    const env = { FAROL_DATA_DIR: dir, FAROL_PORT: '0' };
    const half = await runFarol(['start'], { ...env, FAROL_TLS_CERT: a.cert });
    expect([half.code, half.stderr]).toEqual([2, expect.stringContaining('FAROL_TLS_KEY') as unknown]);
    const mismatched = await runFarol(['collector'], { ...env, FAROL_TLS_CERT: a.cert, FAROL_TLS_KEY: b.key });
    expect([mismatched.code, mismatched.stderr]).toEqual([2, expect.stringContaining('FAROL_TLS_KEY') as unknown]);
    expect(mismatched.stderr).not.toContain('PRIVATE KEY');
    const missing = await runFarol(['api'], { ...env, FAROL_TLS_CERT: join(dir, 'nope.crt'), FAROL_TLS_KEY: a.key });
    expect([missing.code, missing.stderr]).toEqual([2, expect.stringContaining('FAROL_TLS_CERT') as unknown]);
  }, 60_000);

  it('serves beacons, API and dashboard over HTTPS and swaps the certificate on SIGHUP without dropping a kept-alive connection', async () => {
    const dir = await tempDir('farol-tls-');
    const a: TestCert = makeTestCert(dir, 'a');
    const b: TestCert = makeTestCert(dir, 'b');
    // The configured paths: renewed in place, as certbot or cert-manager do.
    const live = { cert: join(dir, 'live.crt'), key: join(dir, 'live.key') };
    copyFileSync(a.cert, live.cert);
    copyFileSync(a.key, live.key);
    const farol = await startFarol('start', { FAROL_DATA_DIR: join(dir, 'data'), FAROL_BOOTSTRAP_TOKEN: TOKEN, FAROL_TLS_CERT: live.cert, FAROL_TLS_KEY: live.key, FAROL_TRUST_PROXY: '127.0.0.1/32' });
    procs.push(farol);
    const { port } = farol;
    const ca = [a.pem, b.pem];

    // Plain HTTP is not served on the TLS port.
    await expect(fetch(`http://127.0.0.1:${port}/healthz`, { signal: AbortSignal.timeout(5000) })).rejects.toThrow();

    const keepAlive = new Agent({ keepAlive: true, maxSockets: 1 });
    const events = Array.from({ length: 6 }, (_, i) => ({ n: 'pageview', u: `https://localhost/p${i % 3}`, d: 'localhost', ip: `198.51.100.${i}`, ua: UA }));
    const batch = (list: unknown[]) =>
      httpsRequest({ port, path: '/api/batch', method: 'POST', ca, agent: keepAlive, body: JSON.stringify(list), headers: { 'content-type': 'application/json' } });
    const first = await batch(events.slice(0, 3));
    expect([first.status, first.body, first.peerCommonName]).toEqual([202, '{"accepted":3}', a.commonName]);
    // Beacons carry no HSTS (see README: it is host-wide and sent by the API and dashboard).
    expect(first.headers['strict-transport-security']).toBeUndefined();

    const query = (agent?: Agent) =>
      httpsRequest({
        port,
        path: '/api/v2/query',
        method: 'POST',
        ca,
        ...(agent ? { agent } : {}),
        headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
        body: JSON.stringify({ site_id: 'localhost', metrics: ['pageviews'], date_range: 'day' }),
      });
    const pageviews = async (want: number) =>
      until(`${want} pageviews`, async () => {
        const r = await query();
        expect(r.status).toBe(200);
        expect(r.headers['strict-transport-security']).toBe('max-age=31536000');
        const n = (JSON.parse(r.body) as { results: Array<{ metrics: number[] }> }).results[0]?.metrics[0] ?? 0;
        return n >= want ? n : undefined;
      });
    expect(await pageviews(3)).toBe(3);
    const page = await httpsRequest({ port, path: '/', ca });
    expect([page.status, page.headers['strict-transport-security']]).toEqual([200, 'max-age=31536000']);

    // Renew in place and signal: new connections get B, the kept-alive one stays on A.
    copyFileSync(b.cert, live.cert);
    copyFileSync(b.key, live.key);
    farol.child.kill('SIGHUP');
    await until('reload log', () => (logLines(farol.output, 'tls certificate reloaded').length > 0 ? true : undefined));
    const fresh = await httpsRequest({ port, path: '/healthz', ca });
    expect([fresh.status, fresh.peerCommonName]).toEqual([200, b.commonName]);
    const again = await batch(events.slice(3));
    expect([again.status, again.peerCommonName, again.localPort]).toEqual([202, a.commonName, first.localPort]);
    expect(await pageviews(6)).toBe(6);

    // A broken renewal (a key that is not PEM) is logged and changes nothing.
    writeFileSync(live.key, 'not a key\n');
    farol.child.kill('SIGHUP');
    await until('failed reload log', () => (logLines(farol.output, 'tls certificate reload failed; still serving the previous certificate').length > 0 ? true : undefined));
    expect((await httpsRequest({ port, path: '/healthz', ca })).peerCommonName).toBe(b.commonName);
    expect(farol.output.join('\n')).not.toContain('PRIVATE KEY');
    keepAlive.destroy();

    farol.child.kill('SIGTERM');
    expect(await farol.exited).toBe(0);
  }, 180_000);
});
