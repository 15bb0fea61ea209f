import { isIPv4 } from 'node:net';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readHubEvents } from './support/collector-harness.ts';
import { startFarol, type FarolProcess } from './support/farol-process.ts';

const UA = 'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15';
const IPV4 = ['85.214.132.117', '193.0.6.139', '200.160.2.3'];
const IPV6 = ['2a00:1450:4001:80b::200e', '2001:db8:1234:5678:9abc:def0:1234:5678'];

function v4Bytes(ip: string): Buffer {
  return Buffer.from(ip.split('.').map(Number));
}

function v6Bytes(ip: string): Buffer {
  const [head = '', tail = ''] = ip.split('::');
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  const buf = Buffer.alloc(16);
  groups.forEach((g, i) => buf.writeUInt16BE(parseInt(g, 16), i * 2));
  return buf;
}

/** Every form an IP could leak in: text, full and compressed v6 text, packed bytes, integers, truncations. */
function needles(ip: string): Array<{ form: string; bytes: Buffer }> {
  const out: Array<{ form: string; bytes: Buffer }> = [{ form: 'text', bytes: Buffer.from(ip) }];
  if (isIPv4(ip)) {
    const packed = v4Bytes(ip);
    const int = packed.readUInt32BE(0);
    out.push(
      { form: 'packed BE', bytes: packed },
      { form: 'packed LE', bytes: Buffer.from(packed).reverse() },
      { form: 'uint32 decimal', bytes: Buffer.from(String(int)) },
      { form: 'hex', bytes: Buffer.from(packed.toString('hex')) },
      { form: 'mapped v6', bytes: Buffer.from(`::ffff:${ip}`) },
      { form: 'truncated /24', bytes: Buffer.from(`${ip.split('.').slice(0, 3).join('.')}.0`) },
    );
  } else {
    const packed = v6Bytes(ip);
    const full = Array.from({ length: 8 }, (_, i) => packed.readUInt16BE(i * 2).toString(16).padStart(4, '0')).join(':');
    out.push(
      { form: 'packed', bytes: packed },
      { form: 'expanded text', bytes: Buffer.from(full) },
      { form: 'hex', bytes: Buffer.from(packed.toString('hex')) },
      { form: 'packed /64 prefix', bytes: packed.subarray(0, 8) },
    );
  }
  return out;
}

async function allFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await allFiles(p)));
    else if (entry.isFile()) out.push(p);
  }
  return out;
}

describe('privacy', () => {
  let proc: FarolProcess | undefined;
  let dataDir = '';
  afterAll(async () => {
    proc?.child.kill('SIGKILL');
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  it('no trace of the client IPs exists under the data dir or in the logs', async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'farol-privacy-'));
    proc = await startFarol('start', { FAROL_DATA_DIR: dataDir, FAROL_TRUST_PROXY: '127.0.0.1/32', FAROL_LOG_LEVEL: 'debug', FAROL_SITES: 'site.test' });
    let sent = 0;
    for (const ip of [...IPV4, ...IPV6]) {
      for (let i = 0; i < 20; i++) {
        const res = await fetch(`${proc.url}/api/event`, {
          method: 'POST',
          body: JSON.stringify({ n: i % 4 ? 'pageview' : 'Signup', u: `https://site.test/p${i}?utm_source=x`, d: 'site.test', r: 'https://www.google.com/' }),
          headers: { 'user-agent': UA, 'x-forwarded-for': ip },
        });
        expect(res.status).toBe(202);
        sent++;
      }
      // Bad requests from the same IP must not leak it into error logs either.
      const bad = await fetch(`${proc.url}/api/event`, { method: 'POST', body: '{bad', headers: { 'x-forwarded-for': ip } });
      expect(bad.status).toBe(400);
      // A batch forwarding its visitor's ip/ua from a trusted proxy.
      const batch = await fetch(`${proc.url}/api/batch`, {
        method: 'POST',
        body: JSON.stringify([{ n: 'pageview', u: 'https://site.test/b', d: 'site.test', ip, ua: UA }]),
        headers: { 'user-agent': 'server/1.0' },
      });
      expect(batch.status).toBe(202);
      sent++;
      // Failed logins and bad API calls from the same IP are not logged with it either.
      const denied = await fetch(`${proc.url}/api/v2/query`, { method: 'POST', body: '{}', headers: { authorization: 'Bearer farol_wrong', 'x-forwarded-for': ip } });
      expect(denied.status).toBe(401);
    }
    // Nor do the metrics (served on their own listener) hold an IP.
    const metrics = await fetch(`${proc.metricsUrl}/metrics`);
    expect(metrics.status).toBe(200);
    const metricsText = await metrics.text();
    proc.child.kill('SIGTERM');
    expect(await proc.exited).toBe(0);

    // The events really were stored (so the grep below looked at real data).
    const events = await readHubEvents(join(dataDir, 'hub'), 4);
    expect(events.length).toBe(sent);
    expect(new Set(events.map((e) => e.country))).toEqual(new Set(['DE', 'NL', 'BR', '']));

    const files = await allFiles(dataDir);
    expect(files.length).toBeGreaterThan(2);
    const blobs = await Promise.all(files.map(async (f) => ({ f, data: await readFile(f) })));
    blobs.push({ f: 'stdout/stderr', data: Buffer.from(proc.output.join('\n')) }, { f: '/metrics', data: Buffer.from(metricsText) });
    const leaks: string[] = [];
    for (const ip of [...IPV4, ...IPV6]) {
      for (const n of needles(ip)) {
        for (const { f, data } of blobs) if (data.includes(n.bytes)) leaks.push(`${ip} as ${n.form} in ${f}`);
      }
    }
    expect(leaks).toEqual([]);
    // The raw User-Agent is not stored either.
    for (const { f, data } of blobs) expect(data.includes(Buffer.from(UA)), f).toBe(false);
  });
});
