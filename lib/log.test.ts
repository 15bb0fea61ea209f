import { describe, expect, it } from 'vitest';
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
