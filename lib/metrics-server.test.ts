import { describe, expect, it } from 'vitest';
import { loadConfig } from '../schemas/config.ts';
import { silentLogger } from './log.ts';
import { configuredMetrics, listenMetrics } from './metrics-server.ts';
import { Registry } from './metrics.ts';

describe('metrics listener', () => {
  it('serves the registry at /metrics and nothing else', async () => {
    const registry = new Registry();
    registry.counter('farol_test_total', 'A test counter').inc({ site: 'a.test' }, 3);
    const server = await listenMetrics(registry, '127.0.0.1', 0, silentLogger);
    try {
      const url = `http://127.0.0.1:${server.port}`;
      const res = await fetch(`${url}/metrics`);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toContain('text/plain');
      expect(await res.text()).toContain('farol_test_total{site="a.test"} 3');
      for (const path of ['/', '/api/event', '/metrics/x', '/healthz']) {
        const other = await fetch(`${url}${path}`);
        expect(other.status, path).toBe(404);
        expect(await other.text()).not.toContain('farol_');
      }
      expect((await fetch(`${url}/metrics`, { method: 'POST', body: 'x' })).status).toBe(404);
    } finally {
      server.close();
    }
  });

  it('is off unless FAROL_METRICS_PORT is set, and on 127.0.0.1 by default', async () => {
    expect(await configuredMetrics(loadConfig({}), new Registry(), silentLogger)).toBeUndefined();
    const config = loadConfig({ FAROL_METRICS_PORT: '0' });
    expect(config.FAROL_METRICS_HOST).toBe('127.0.0.1');
    const server = await configuredMetrics(config, new Registry(), silentLogger);
    expect(server?.port).toBeGreaterThan(0);
    server?.close();
    expect(() => loadConfig({ FAROL_METRICS_PORT: '70000' })).toThrow(/FAROL_METRICS_PORT/);
  });
});
