import { readdir, readFile } from 'node:fs/promises';
import { isIPv4 } from 'node:net';
import { join, relative, sep } from 'node:path';
import { crc32 } from 'node:zlib';
import { HEADER_BYTES } from '../../hub/local-format.ts';
import { openGeo } from '../../ingest/enrich/geo.ts';
import type { WireBatch } from './wire-oracle.ts';

/** Helpers of the end-to-end tests: sending batches, reading `/metrics`, waiting, grepping for IPs. */

/** The sender's own User-Agent; each event carries its visitor's `ua` (honoured from a trusted proxy). */
export const SENDER_UA = 'farol-e2e-sender/1.0 (server-side forwarder)';

/** Whether `now` is within `marginMin` minutes of 00:00 UTC (salts rotate and days change there). */
export function nearMidnightUtc(marginMin: number, now = Date.now()): boolean {
  const minuteOfDay = Math.floor(now / 60_000) % (24 * 60);
  return minuteOfDay < marginMin || minuteOfDay >= 24 * 60 - marginMin;
}

export type PostOutcome = { ok: true; status: number; accepted: number | null } | { ok: false; error: string };

/** POSTs one batch; a network failure (the server died, a reset) is an outcome, not a throw. */
export async function postBatch(url: string, batch: WireBatch, timeoutMs = 30_000): Promise<PostOutcome> {
  try {
    const res = await fetch(`${url}/api/batch`, {
      method: 'POST',
      body: batch.body,
      headers: { 'content-type': 'application/json', 'user-agent': SENDER_UA },
      // A short timeout is a client that gives up on (never sees) the answer.
      signal: AbortSignal.timeout(timeoutMs),
    });
    const text = await res.text();
    let accepted: number | null = null;
    if (res.status === 202) {
      try {
        accepted = (JSON.parse(text) as { accepted?: number }).accepted ?? null;
      } catch {
        accepted = null;
      }
    }
    return { ok: true, status: res.status, accepted };
  } catch (err) {
    return { ok: false, error: err instanceof Error ? `${err.name}: ${err.message}` : String(err) };
  }
}

/** A browser user agent (not a bot), for senders that post as a page would. */
const BROWSER_UA = 'Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0';

/**
 * Fires events from `workers` concurrent loops until `stop()`; records the ids that got a 202.
 * Requests in flight when the server dies simply fail: they were never acknowledged. Every fifth
 * request is a batch of three (`/api/batch`), the rest single events (`/api/event`).
 */
export function ackedLoad(url: string, workers: number, prefix: string): { acked: Set<string>; sent: () => number; stop: () => Promise<void> } {
  const acked = new Set<string>();
  let running = true;
  let n = 0;
  const loops = Array.from({ length: workers }, async (_, w) => {
    while (running) {
      const id = `${prefix}-${w}-${n++}`;
      const batch = n % 5 === 0;
      const body = batch
        ? JSON.stringify([0, 1, 2].map((k) => ({ n: 'pageview', u: `https://site.test/p/${k}`, d: 'site.test', id: `${id}.${k}` })))
        : JSON.stringify({ n: 'pageview', u: `https://site.test/p/${n % 50}`, d: 'site.test', id });
      try {
        const res = await fetch(`${url}/api/${batch ? 'batch' : 'event'}`, {
          method: 'POST',
          body,
          headers: { 'user-agent': BROWSER_UA, 'x-forwarded-for': `85.214.${w}.${n % 250}` },
        });
        await res.arrayBuffer();
        if (res.status === 202) {
          if (batch) for (const k of [0, 1, 2]) acked.add(`${id}.${k}`);
          else acked.add(id);
        }
      } catch {
        if (!running) return;
        await new Promise((r) => setTimeout(r, 5));
      }
    }
  });
  return {
    acked,
    sent: () => n,
    async stop() {
      running = false;
      await Promise.all(loops);
    },
  };
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `probe` until it returns a value other than undefined, or throws with `describe()`. */
export async function pollUntil<T>(
  probe: () => Promise<T | undefined>,
  opts: { timeoutMs: number; intervalMs?: number; describe: () => string },
): Promise<T> {
  const end = Date.now() + opts.timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > end) throw new Error(`timed out after ${opts.timeoutMs} ms: ${opts.describe()}`);
    await sleep(opts.intervalMs ?? 250);
  }
}

/** One Prometheus sample. */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parses Prometheus text (the subset Farol renders: `name{a="b"} value`). */
export function parseMetrics(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$/.exec(line);
    if (m === null) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1] as string] = l[2] as string;
    out.push({ name: m[1] as string, labels, value: Number(m[3]) });
  }
  return out;
}

/** Reads `/metrics` of a Farol process from its metrics listener (`FarolProcess.metricsUrl`). */
export async function fetchMetrics(metricsUrl: string): Promise<Sample[]> {
  const res = await fetch(`${metricsUrl}/metrics`, { signal: AbortSignal.timeout(10_000) });
  // A 404 (the public port serves no metrics) must not read as "every metric is 0".
  if (res.status !== 200) throw new Error(`GET ${metricsUrl}/metrics answered ${res.status}`);
  return parseMetrics(await res.text());
}

/** Sum of the samples of `name` whose labels include `labels`. */
export function metricValue(samples: readonly Sample[], name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const s of samples) {
    if (s.name !== name) continue;
    if (Object.entries(labels).every(([k, v]) => s.labels[k] === v)) sum += s.value;
  }
  return sum;
}

/** What `/metrics` says about the processor's progress. */
export interface ProcessorProgress {
  /** Lag (hub records not yet written) per partition, as rendered. */
  lag: number[];
  eventRows: number;
  duplicates: number;
  storeRetries: number;
  /** Events the collector made durable in the hub (resends included). */
  ingested: number;
}

export function processorProgress(samples: readonly Sample[]): ProcessorProgress {
  return {
    lag: samples.filter((s) => s.name === 'farol_processor_lag_events').map((s) => s.value),
    eventRows: metricValue(samples, 'farol_processor_rows_total', { table: 'events' }),
    duplicates: metricValue(samples, 'farol_processor_duplicates_total'),
    storeRetries: metricValue(samples, 'farol_processor_store_retries_total'),
    ingested: metricValue(samples, 'farol_ingest_events_total'),
  };
}

/**
 * Waits until every one of `partitions` reports lag 0 and, when given, the processor has written
 * `eventRows` event rows (this process's counter). The lag gauges read the hub's end offsets once
 * a second, so the condition must still hold at least 1.5 s after it is first seen. Returns early
 * when more rows than expected were written: waiting longer cannot fix that, the counts will show it.
 */
export async function waitForProcessor(
  metricsUrl: string,
  opts: { partitions: number; eventRows?: number; timeoutMs: number },
): Promise<ProcessorProgress> {
  let last: ProcessorProgress | undefined;
  let caughtUpAt: number | undefined;
  return pollUntil(
    async () => {
      const p = processorProgress(await fetchMetrics(metricsUrl));
      last = p;
      if (opts.eventRows !== undefined && p.eventRows > opts.eventRows) return p;
      const done = p.lag.length === opts.partitions && p.lag.every((l) => l === 0) && (opts.eventRows === undefined || p.eventRows === opts.eventRows);
      if (!done) {
        caughtUpAt = undefined;
        return undefined;
      }
      caughtUpAt ??= Date.now();
      return Date.now() - caughtUpAt >= 1_500 ? p : undefined;
    },
    { timeoutMs: opts.timeoutMs, intervalMs: 250, describe: () => `processor progress ${JSON.stringify(last)}, wanted ${JSON.stringify(opts)}` },
  );
}

// ---------------------------------------------------------------------------------------------
// Privacy: every byte under a data dir, searched for client IPs.

async function allFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await allFiles(p)));
    else if (entry.isFile()) out.push(p);
  }
  return out;
}

function packedV6(ip: string): Buffer {
  const [head = '', tail = ''] = ip.split('::');
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  const buf = Buffer.alloc(16);
  groups.forEach((g, i) => buf.writeUInt16BE(parseInt(g, 16), i * 2));
  return buf;
}

/** Finds client IPs as text (any file) and as packed bytes (files that are not opaque). */
class IpMatcher {
  private readonly text = new Set<string>();
  /** Text up to the second separator ('85.214', '2a01:4f8'): where a search starts. */
  private readonly anchors = new Set<string>();
  private readonly maxLen: number;
  private readonly v4 = new Map<number, string>();
  private readonly v6 = new Map<number, { bytes: Buffer; ip: string }[]>();

  constructor(ips: readonly string[]) {
    let maxLen = 0;
    for (const ip of ips) {
      this.text.add(ip);
      maxLen = Math.max(maxLen, ip.length);
      const sepChar = isIPv4(ip) ? '.' : ':';
      const second = ip.indexOf(sepChar, ip.indexOf(sepChar) + 1);
      this.anchors.add(ip.slice(0, second + 1));
      if (isIPv4(ip)) {
        const be = Buffer.from(ip.split('.').map(Number));
        this.v4.set(be.readUInt32BE(0), `${ip} (packed BE)`);
        this.v4.set(be.readUInt32LE(0), `${ip} (packed LE)`);
      } else {
        const bytes = packedV6(ip);
        const key = bytes.readUInt32BE(0);
        this.v6.set(key, [...(this.v6.get(key) ?? []), { bytes, ip }]);
      }
    }
    this.maxLen = maxLen;
  }

  /** IPs whose text occurs in `data`, even glued to other characters. */
  textHits(data: Buffer): string[] {
    const s = data.toString('latin1');
    const hits = new Set<string>();
    for (const anchor of this.anchors) {
      for (let at = s.indexOf(anchor); at !== -1; at = s.indexOf(anchor, at + 1)) {
        for (let len = anchor.length + 1; len <= this.maxLen; len++) {
          const candidate = s.slice(at, at + len);
          if (this.text.has(candidate)) hits.add(candidate);
        }
      }
    }
    return [...hits];
  }

  /** IPs whose packed bytes (IPv4 both byte orders, IPv6 network order) occur in `data`. */
  packedHits(data: Buffer): string[] {
    const hits = new Set<string>();
    for (let i = 0; i + 4 <= data.length; i++) {
      const word = data.readUInt32BE(i);
      const v4 = this.v4.get(word);
      if (v4 !== undefined) hits.add(v4);
      const v6 = this.v6.get(word);
      if (v6 !== undefined) {
        for (const c of v6) if (data.subarray(i, i + 16).equals(c.bytes)) hits.add(`${c.ip} (packed)`);
      }
    }
    return [...hits];
  }
}

/**
 * The searchable bytes of a local hub segment: its payloads. Each 16-byte frame header is checked
 * to be derived data (the payload's length, its crc32, an append time within `timeRange`), so it
 * can hold no IP; searching it for packed 4-byte IPs would only find chance matches in crc32s.
 * A torn tail (a SIGKILL mid-write) is searched as it is.
 */
function segmentPayloads(data: Buffer, timeRange: [number, number]): { bytes: Buffer[]; bad: string | undefined } {
  const bytes: Buffer[] = [];
  let pos = 0;
  while (pos + HEADER_BYTES <= data.length) {
    const length = data.readUInt32LE(pos);
    const next = pos + HEADER_BYTES + length;
    if (next > data.length) break;
    const payload = data.subarray(pos + HEADER_BYTES, next);
    const at = data.readUInt32LE(pos + 8) + data.readUInt32LE(pos + 12) * 2 ** 32;
    if (crc32(payload) !== data.readUInt32LE(pos + 4) || at < timeRange[0] || at > timeRange[1]) {
      // Not a frame as written: search everything from here on.
      break;
    }
    bytes.push(payload);
    pos = next;
  }
  if (pos < data.length) bytes.push(data.subarray(pos));
  const trailing = data.length - pos;
  return { bytes, bad: trailing > 0 ? `${trailing} bytes after the last whole frame` : undefined };
}

export interface IpLeakReport {
  files: number;
  bytes: number;
  /** `<ip> … in <file>`, none expected. */
  leaks: string[];
  /** Files searched as text only (chDB's compressed parts). */
  textOnlyFiles: number;
  /** Hub segments with bytes after their last whole frame (searched raw). */
  tornSegments: string[];
}

/**
 * Greps every file under `dataDir` (and `extra` blobs, e.g. logs) for `ips`: as text everywhere;
 * as packed bytes everywhere except under `clickhouse/` (compressed column files and 128-bit
 * checksums, where 4-byte matches happen by chance; the SQL check covers what those files hold).
 * Hub segments are searched frame by frame (payloads; headers verified as derived data).
 */
export async function findIpTraces(
  dataDir: string,
  ips: readonly string[],
  opts: { timeRange: [number, number]; extra?: { name: string; data: Buffer }[] },
): Promise<IpLeakReport> {
  const matcher = new IpMatcher(ips);
  const report: IpLeakReport = { files: 0, bytes: 0, leaks: [], textOnlyFiles: 0, tornSegments: [] };
  const blobs: { name: string; load: () => Promise<Buffer> }[] = (await allFiles(dataDir)).map((f) => ({
    name: relative(dataDir, f),
    load: () => readFile(f),
  }));
  for (const e of opts.extra ?? []) blobs.push({ name: e.name, load: () => Promise.resolve(e.data) });
  for (const blob of blobs) {
    const data = await blob.load();
    report.files++;
    report.bytes += data.length;
    for (const ip of matcher.textHits(data)) report.leaks.push(`${ip} as text in ${blob.name}`);
    if (blob.name.startsWith(`clickhouse${sep}`)) {
      report.textOnlyFiles++;
      continue;
    }
    let parts = [data];
    if (blob.name.startsWith(`hub${sep}`) && blob.name.endsWith('.log')) {
      const seg = segmentPayloads(data, opts.timeRange);
      parts = seg.bytes;
      if (seg.bad !== undefined) report.tornSegments.push(`${blob.name}: ${seg.bad}`);
    }
    for (const part of parts) for (const hit of matcher.packedHits(part)) report.leaks.push(`${hit} in ${blob.name}`);
  }
  report.leaks = [...new Set(report.leaks)];
  return report;
}

// ---------------------------------------------------------------------------------------------
// Sending.

/** Outcome of {@link sendAllOnce}: every batch that did not get `202 {"accepted": <its size>}`. */
export interface SendReport {
  batches: number;
  events: number;
  failures: string[];
}

/**
 * Sends every sender's batches once, the senders concurrently and each sender's batches one after
 * another (so each visitor's events arrive in order).
 */
export async function sendAllOnce(url: string, plans: readonly WireBatch[][]): Promise<SendReport> {
  const report: SendReport = { batches: 0, events: 0, failures: [] };
  await Promise.all(
    plans.map(async (batches) => {
      for (const b of batches) {
        const r = await postBatch(url, b);
        report.batches++;
        report.events += b.events.length;
        if (!r.ok) report.failures.push(`sender ${b.sender} batch ${b.seq}: ${r.error}`);
        else if (r.status !== 202 || r.accepted !== b.events.length) {
          report.failures.push(`sender ${b.sender} batch ${b.seq}: ${r.status} accepted=${r.accepted} of ${b.events.length}`);
        }
      }
    }),
  );
  return report;
}

/** Country of every IP per the bundled DB-IP database (the one the collector reads). */
export async function geoCountries(ips: readonly string[]): Promise<Map<string, string>> {
  const geo = await openGeo();
  try {
    return new Map(ips.map((ip) => [ip, geo.lookup(ip)]));
  } finally {
    geo.close();
  }
}
