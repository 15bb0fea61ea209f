import { describe, expect, it } from 'vitest';
import { silentLogger } from '../lib/log.ts';
import { watchSites } from './site-watch.ts';

/** The collector's set of registered sites: a refresh sees every change made before it was asked. */
describe('watchSites', () => {
  it('a refresh asked during a load waits for a load that starts after it', async () => {
    const table = new Set(['a.test']);
    let release: (() => void) | undefined;
    let loads = 0;
    const watch = await watchSites({
      log: silentLogger,
      intervalMs: 3_600_000,
      load: async () => {
        loads++;
        const snapshot = [...table];
        // From the second load on, each read is held until the test lets it finish.
        if (loads > 1) await new Promise<void>((resolve) => (release = resolve));
        return snapshot;
      },
    });
    expect(watch.has('a.test')).toBe(true);
    const first = watch.refresh(); // reads the table now: without b.test
    table.add('b.test');
    const second = watch.refresh(); // asked after the change
    release?.();
    await first;
    expect(watch.has('b.test')).toBe(false);
    await new Promise((r) => setTimeout(r, 10));
    release?.();
    await second;
    expect(watch.has('b.test')).toBe(true);
    watch.stop();
  });

  it('accepts every domain until a first load succeeds, then keeps the last list through failures', async () => {
    let fail = true;
    const watch = await watchSites({
      log: silentLogger,
      intervalMs: 3_600_000,
      extra: ['extra.test'],
      load: async () => {
        if (fail) throw new Error('ClickHouse down');
        return ['a.test'];
      },
    });
    expect(watch.has('anything.test')).toBe(true);
    fail = false;
    await watch.refresh();
    expect([watch.has('a.test'), watch.has('anything.test'), watch.has('extra.test')]).toEqual([true, false, true]);
    fail = true;
    await watch.refresh();
    expect([watch.has('a.test'), watch.has('anything.test')]).toEqual([true, false]);
    watch.stop();
  });
});
