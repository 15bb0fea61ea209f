import { describe, expect, it } from 'vitest';
import { summarizeProfile, type CpuProfile } from './cpu-profile.ts';
import { parseMetrics } from './servers.ts';
import { parseWrkOutput } from './wrk.ts';

const WRK_REPORT = `Running 10s test @ http://127.0.0.1:40123
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     5.06ms    2.10ms  81.94ms   92.40%
    Req/Sec    11.49k     1.02k   12.80k    71.00%
  Latency Distribution
     50%  489.00us
     75%    4.87ms
     90%    8.50ms
     99%    1.02s
  114918 requests in 10.05s, 8.11MB read
  Socket errors: connect 0, read 3, write 0, timeout 7
  Non-2xx or 3xx responses: 12
Requests/sec:  11429.31
Transfer/sec:    826.13KB
`;

describe('parseWrkOutput', () => {
  it('reads totals, latency percentiles in any unit, errors and non-2xx', () => {
    const r = parseWrkOutput(WRK_REPORT);
    expect(r.requests).toBe(114918);
    expect(r.durationS).toBeCloseTo(10.05);
    expect(r.requestsPerSec).toBeCloseTo(11429.31);
    expect(r.latency.avgMs).toBeCloseTo(5.06);
    expect(r.latency.maxMs).toBeCloseTo(81.94);
    expect(r.latency.p50Ms).toBeCloseTo(0.489);
    expect(r.latency.p90Ms).toBeCloseTo(8.5);
    expect(r.latency.p99Ms).toBeCloseTo(1020);
    expect(r.socketErrors).toEqual({ connect: 0, read: 3, write: 0, timeout: 7 });
    expect(r.non2xx).toBe(12);
  });

  it('counts no errors when wrk prints none', () => {
    const clean = WRK_REPORT.split('\n')
      .filter((l) => !l.includes('Socket errors') && !l.includes('Non-2xx'))
      .join('\n');
    const r = parseWrkOutput(clean);
    expect(r.non2xx).toBe(0);
    expect(r.socketErrors.timeout).toBe(0);
  });

  it('refuses output without totals', () => {
    expect(() => parseWrkOutput('unable to connect to 127.0.0.1:1 Connection refused')).toThrow(/no request totals/);
  });
});

describe('parseMetrics', () => {
  it('reads samples with and without labels, skipping comments', () => {
    const samples = parseMetrics(
      [
        '# HELP farol_ingest_events_total Events made durable in the hub',
        '# TYPE farol_ingest_events_total counter',
        'farol_ingest_events_total 213988',
        'farol_ingest_requests_total{route="/api/event",status="202"} 213988',
        'farol_ingest_rejected_total{code="ING_BAD_JSON"} 2',
      ].join('\n'),
    );
    expect(samples).toEqual([
      { name: 'farol_ingest_events_total', labels: {}, value: 213988 },
      { name: 'farol_ingest_requests_total', labels: { route: '/api/event', status: '202' }, value: 213988 },
      { name: 'farol_ingest_rejected_total', labels: { code: 'ING_BAD_JSON' }, value: 2 },
    ]);
  });
});

describe('summarizeProfile', () => {
  const frame = (functionName: string, url = '') => ({ functionName, url, lineNumber: 0, columnNumber: 0 });
  // root → work → leaf; samples: work, leaf, leaf, idle (each 1 ms apart).
  const profile: CpuProfile = {
    nodes: [
      { id: 1, callFrame: frame('(root)'), children: [2, 4] },
      { id: 2, callFrame: frame('work', 'file:///x/lib/a.js'), children: [3] },
      { id: 3, callFrame: frame('leaf', 'file:///x/node_modules/zod/v4/core/schemas.js') },
      { id: 4, callFrame: frame('(idle)') },
    ],
    startTime: 0,
    endTime: 5000,
    samples: [2, 3, 3, 4, 4],
    timeDeltas: [0, 1000, 1000, 1000, 1000],
  };

  it('splits self time, idle time and categories; a window drops samples outside it', () => {
    const s = summarizeProfile(profile);
    expect(s.busyMs).toBe(3);
    expect(s.idleMs).toBe(1);
    expect(s.topSelf.map((f) => [f.function, f.ms])).toEqual([
      ['leaf', 2],
      ['work', 1],
    ]);
    expect(s.categories[0]).toMatchObject({ category: 'zod validation', ms: 2 });
    const windowed = summarizeProfile(profile, { fromUs: 1000, toUs: 3000 });
    expect(windowed.busyMs).toBe(2);
    expect(windowed.topSelf.map((f) => f.function)).toEqual(['leaf']);
  });
});
