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
