import { describe, expect, it } from 'vitest';
import { Registry } from '../lib/metrics.ts';
import { sumExpositions } from './thread-metrics.ts';
import { recordsOf } from './thread-pool.ts';

function threadRegistry(events: number, latencies: number[], saltReady: number): string {
  const r = new Registry();
  const requests = r.counter('farol_ingest_requests_total', 'Ingest requests by route and status');
  requests.inc({ route: '/api/event', status: '202' }, events);
  if (events > 2) requests.inc({ route: '/api/batch', status: '400' });
  r.counter('farol_ingest_events_total', 'Events made durable in the hub').inc(undefined, events);
  const h = r.histogram('farol_ingest_publish_seconds', 'Publish time', [0.001, 0.01]);
  for (const l of latencies) h.observe(l);
  r.gauge('farol_ingest_inflight_requests', 'Requests being processed').set(2);
  r.gauge('farol_ingest_salt_ready', 'Salt held').set(saltReady);
  return r.render();
}

describe('sumExpositions', () => {
  it('sums counters, histograms and amounts across threads; a state gauge is the lowest', () => {
    const main = new Registry();
    main.gauge('farol_hub_ready', 'Hub ready').set(1);
    const merged = sumExpositions([main.render(), threadRegistry(3, [0.0005, 0.005], 1), threadRegistry(2, [0.5], 0)]);
    const lines = merged.split('\n');
    expect(lines.filter((l) => l.startsWith('# TYPE farol_ingest_requests_total '))).toHaveLength(1);
    expect(lines.filter((l) => l.startsWith('# HELP farol_ingest_publish_seconds '))).toHaveLength(1);
    expect(merged).toMatch(/^farol_ingest_requests_total\{route="\/api\/event",status="202"\} 5$/m);
    expect(merged).toMatch(/^farol_ingest_requests_total\{route="\/api\/batch",status="400"\} 1$/m);
    expect(merged).toMatch(/^farol_ingest_events_total 5$/m);
    expect(merged).toMatch(/^farol_ingest_publish_seconds_bucket\{le="0.001"\} 1$/m);
    expect(merged).toMatch(/^farol_ingest_publish_seconds_bucket\{le="0.01"\} 2$/m);
    expect(merged).toMatch(/^farol_ingest_publish_seconds_bucket\{le="\+Inf"\} 3$/m);
    expect(merged).toMatch(/^farol_ingest_publish_seconds_count 3$/m);
    expect(merged).toMatch(/^farol_ingest_publish_seconds_sum 0\.5055$/m);
    expect(merged).toMatch(/^farol_ingest_inflight_requests 4$/m);
    expect(merged).toMatch(/^farol_ingest_salt_ready 0$/m);
    expect(merged).toMatch(/^farol_hub_ready 1$/m);
    // The samples of a family follow its HELP and TYPE lines.
    const type = lines.indexOf('# TYPE farol_ingest_publish_seconds histogram');
    expect(lines[type + 1]).toMatch(/^farol_ingest_publish_seconds_bucket/);
  });

  it('keeps a comment of a thread that did not answer', () => {
    expect(sumExpositions(['# collector thread 1 did not answer: its metrics are missing\n'])).toContain('# collector thread 1 did not answer');
  });
});

describe('recordsOf', () => {
  it('views every record on the transferred bytes, without copying', () => {
    const payloads = new TextEncoder().encode('abcdef').buffer as ArrayBuffer;
    const items = recordsOf({ keys: ['k1', 'k2', 'k3'], lengths: [1, 0, 5], payloads });
    expect(items.map((i) => [i.key, i.payload.toString()])).toEqual([
      ['k1', 'a'],
      ['k2', ''],
      ['k3', 'bcdef'],
    ]);
    expect(items[2]?.payload.buffer).toBe(payloads);
  });

  it('refuses a batch whose lengths do not cover its bytes exactly', () => {
    const payloads = new ArrayBuffer(4);
    for (const lengths of [[5], [1, 2], [-1, 5], [1.5, 2.5], [Number.MAX_SAFE_INTEGER]]) {
      expect(() => recordsOf({ keys: lengths.map(() => 'k'), lengths, payloads }), JSON.stringify(lengths)).toThrow('malformed publish batch');
    }
    expect(() => recordsOf({ keys: ['k'], lengths: [4, 0], payloads })).toThrow('malformed publish batch');
  });
});
