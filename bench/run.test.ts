import { availableParallelism } from 'node:os';
import { describe, expect, it } from 'vitest';
import { parseCommandLine } from './run.ts';
import { threadSetting } from './servers.ts';

/*
 * The harness's command line. Its own file, not parse.test.ts: importing run.ts loads every
 * scenario, the query scenario's chDB among them, which parse.test.ts's shared worker must not.
 */
describe('parseCommandLine', () => {
  const parse = (...argv: string[]) => parseCommandLine(argv, 'stamp');

  it('without a scenario: the default set, one thread and every core (one where the checkout lacks the setting)', () => {
    const c = parse();
    expect(c.name).toBe('all');
    expect(c.scenarios.map((s) => s.name)).toEqual(['collector', 'batch', 'e2e']);
    expect(c.opts.collectorThreads).toEqual(threadSetting(undefined).honoured ? [...new Set([1, availableParallelism()])] : [1]);
    expect(c.opts.jsonPath).toMatch(/bench\/results\/all-stamp\.json$/);
  });

  it('--threads is the FAROL_COLLECTOR_THREADS sweep, --wrk-threads the load generator', () => {
    const c = parse('collector', '--threads', '1,2,4', '--wrk-threads', '2');
    expect(c.opts.collectorThreads).toEqual([1, 2, 4]);
    expect(c.opts.wrkThreads).toBe(2);
    expect(parse('collector').opts.collectorThreads).toBeUndefined();
  });

  it('--set gives every Farol server a FAROL_ setting (repeatable, the last of a name wins)', () => {
    const c = parse('e2e', '--set', 'FAROL_PROCESSOR_FLUSH_MS=2000', '--set', 'FAROL_PROCESSOR_FLUSH_RECORDS=1', '--set=FAROL_PROCESSOR_FLUSH_RECORDS=25000');
    expect(c.opts.serverEnv).toEqual({ FAROL_PROCESSOR_FLUSH_MS: '2000', FAROL_PROCESSOR_FLUSH_RECORDS: '25000' });
    expect(parse('e2e').opts.serverEnv).toBeUndefined();
  });

  it('--paced sets the e2e paced phase as a percentage of the sustained rate', () => {
    expect(parse('e2e', '--paced', '60').opts.pacedPercent).toBe(60);
    expect(parse('e2e').opts.pacedPercent).toBeUndefined();
  });

  it.each([
    [['e2e', '--set', 'PATH=/tmp']],
    [['e2e', '--set', 'FAROL_PROCESSOR_FLUSH_MS']],
    [['e2e', '--set', 'farol_x=1']],
    [['e2e', '--set', 'FAROL_X=a\u0000b']],
    [['e2e', '--set', `FAROL_X=${'x'.repeat(1001)}`]],
    [['e2e', '--paced', '0']],
    [['e2e', '--paced', '101']],
    [['e2e', '--paced', '50.5']],
    [['collector', '--threads', '0']],
    [['collector', '--threads', '1,,2']],
    [['collector', '--threads', '1.5']],
    [['collector', '--threads', '257']],
    [['collector', '--threads', Array.from({ length: 17 }, () => '1').join(',')]],
    [['query', '--threads', '2']],
    [['processor', '--threads', '2']],
    [['collector', '--tls', '--threads', '1,2']],
    [['collector', '--readme']],
    [['nosuch']],
  ])('refuses %j', (argv) => {
    expect(() => parse(...argv)).toThrow();
  });
});
