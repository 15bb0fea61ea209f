import { describe, expect, it } from 'vitest';
import { FarolError } from '../schemas/errors.ts';
import { createLogger, hideInLogs } from './log.ts';

const TOKEN = 'bootstrap-Xy7SECRET-0123456789';
const PASSWORD = 'pw"with\\quotes-Xy7SECRET';

function capture(): { lines: string[]; log: ReturnType<typeof createLogger> } {
  const lines: string[] = [];
  return { lines, log: createLogger('debug', { service: 'test' }, (l) => lines.push(l)) };
}

describe('logger', () => {
  it('never writes a registered secret, in any field, an error or the message', () => {
    hideInLogs([TOKEN, PASSWORD]);
    const { lines, log } = capture();
    const err = new Error(`auth failed for ${TOKEN} with ${PASSWORD}`);
    log.error({ err, nested: { list: [TOKEN, { deeper: `x${PASSWORD}x` }] } }, `startup with ${TOKEN}`);
    log.child({ bound: TOKEN }).info({}, 'child');
    expect(lines).toHaveLength(2);
    for (const line of lines) {
      expect(line).not.toContain('Xy7SECRET');
      expect(() => JSON.parse(line) as unknown).not.toThrow();
    }
    const first = JSON.parse(lines[0] ?? '{}') as { err: { message: string; stack: string }; msg: string };
    expect(first.err.message).toBe('auth failed for [redacted] with [redacted]');
    expect(first.err.stack).toContain('auth failed for [redacted]');
    expect(first.msg).toBe('startup with [redacted]');
  });

  it('cuts credentials out of what SDK errors quote: URLs, connection strings, bearer tokens', () => {
    const { lines, log } = capture();
    log.warn(
      {
        err: new Error('request to https://farol:Xy7SECRETpw@ch:8443/ failed'),
        conn: 'Endpoint=sb://ns/;SharedAccessKeyName=k;SharedAccessKey=Xy7SECRETkey=',
        header: 'Authorization: Bearer Xy7SECRETbearer',
      },
      'retrying',
    );
    expect(lines[0]).not.toContain('Xy7SECRET');
    expect(lines[0]).toContain('https://[redacted]@ch:8443/');
    expect(lines[0]).toContain('SharedAccessKey=[redacted]');
  });

  it('leaves ordinary lines as they are', () => {
    const { lines, log } = capture();
    log.info({ partition: 3, rows: 10, site: 'example.com' }, 'flushed');
    expect(JSON.parse(lines[0] ?? '{}')).toMatchObject({ level: 'info', service: 'test', partition: 3, rows: 10, site: 'example.com', msg: 'flushed' });
  });
});

describe('logged errors', () => {
  it('keep the code, field and status of a coded error and the cause chain, scrubbed', () => {
    const { lines, log } = capture();
    const root = Object.assign(new Error('connect ECONNREFUSED https://farol:Xy7SECRETpw@ch:8443/'), { code: 'ECONNREFUSED' });
    const err = new FarolError('API_UNAVAILABLE', undefined, { field: 'store', cause: root });
    log.error({ err }, 'storage error');
    const line = lines[0] ?? '';
    expect(line).not.toContain('Xy7SECRET');
    const logged = (JSON.parse(line) as { err: Record<string, unknown> }).err;
    expect(logged).toMatchObject({ code: 'API_UNAVAILABLE', field: 'store', status: 503, name: 'FarolError', cause: { code: 'ECONNREFUSED', message: 'connect ECONNREFUSED https://[redacted]@ch:8443/' } });
  });

  it('stop following causes after a few (a cycle ends)', () => {
    const { lines, log } = capture();
    const a = new Error('a');
    const b = new Error('b', { cause: a });
    (a as { cause?: unknown }).cause = b;
    log.error({ err: a }, 'cycle');
    expect(lines[0]?.match(/"message"/g)?.length).toBe(5);
  });
});
