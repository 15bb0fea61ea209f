import { describe, expect, it } from 'vitest';
import { Registry } from './metrics.ts';

describe('Counter', () => {
  it('counts through labelled handles and inc(labels) into the same series', () => {
    const registry = new Registry();
    const c = registry.counter('farol_test_total', 'Test');
    const ok = c.labels({ status: '202', route: '/api/event' });
    expect(registry.render()).not.toContain('farol_test_total{');
    ok.inc();
    ok.inc(2);
    c.inc({ route: '/api/event', status: '202' });
    c.inc({ route: '/api/batch', status: '400' }, 5);
    c.labels().inc(7);
    expect(c.get({ route: '/api/event', status: '202' })).toBe(4);
    expect(registry.render().split('\n')).toEqual([
      '# HELP farol_test_total Test',
      '# TYPE farol_test_total counter',
      'farol_test_total{route="/api/event",status="202"} 4',
      'farol_test_total{route="/api/batch",status="400"} 5',
      'farol_test_total 7',
      '',
    ]);
  });
});

describe('Histogram', () => {
  it('keeps one series per label set, each with its own buckets, sum and count', () => {
    const registry = new Registry();
    const h = registry.histogram('farol_test_seconds', 'Test', [0.1, 1]);
    expect(registry.render()).toContain('farol_test_seconds_bucket{le="+Inf"} 0');
    const a = h.labels({ route: 'GET /a' });
    a.observe(0.05);
    a.observe(0.5);
    h.labels({ route: 'POST /b' }).observe(5);
    expect(registry.render().split('\n')).toEqual([
      '# HELP farol_test_seconds Test',
      '# TYPE farol_test_seconds histogram',
      'farol_test_seconds_bucket{route="GET /a",le="0.1"} 1',
      'farol_test_seconds_bucket{route="GET /a",le="1"} 2',
      'farol_test_seconds_bucket{route="GET /a",le="+Inf"} 2',
      'farol_test_seconds_sum{route="GET /a"} 0.55',
      'farol_test_seconds_count{route="GET /a"} 2',
      'farol_test_seconds_bucket{route="POST /b",le="0.1"} 0',
      'farol_test_seconds_bucket{route="POST /b",le="1"} 0',
      'farol_test_seconds_bucket{route="POST /b",le="+Inf"} 1',
      'farol_test_seconds_sum{route="POST /b"} 5',
      'farol_test_seconds_count{route="POST /b"} 1',
      '',
    ]);
  });
});
