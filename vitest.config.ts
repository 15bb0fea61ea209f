import { relative } from 'node:path';
import { defineConfig } from 'vitest/config';
import { BaseSequencer, type TestSpecification } from 'vitest/node';

/**
 * The files that take longest, roughly longest first (tens of seconds each on the 2-core CI box).
 * Without a cache of earlier runs (a fresh CI checkout) vitest starts the largest files first,
 * which put several of these last: one worker then ran a long file alone at the end while the
 * other idled. Listed files start first, in this order; the rest follow in vitest's own order.
 * A stale list costs only that tail, never a test.
 */
const SLOW_FIRST = [
  'tests/eventhubs-e2e.test.ts',
  'tests/api-escalation.test.ts',
  'tests/e2e-outage.test.ts',
  'tests/admin-cli.test.ts',
  'tests/demo.test.ts',
  'tests/e2e-crash.test.ts',
  'tests/e2e-exact-server.test.ts',
  'tests/api-process.test.ts',
  'tests/site-reregister.test.ts',
  'tests/secrets.test.ts',
  'tests/tracker.test.ts',
  'tests/api-query-limits.test.ts',
  'tests/query-engine.test.ts',
  'tests/eventhubs-drain.test.ts',
  'tests/dead-letters-kill.test.ts',
  'store/store.contract.test.ts',
  'tests/api-query-fuzz.test.ts',
  'processor/dead-letters.test.ts',
  'tests/api-isolation.test.ts',
  'hub/testing/eventhubs/broker.test.ts',
  'tests/dashboard.test.ts',
  'tests/e2e-exact-embedded.test.ts',
  'tests/fuzz-pipeline.test.ts',
];

class SlowFirstSequencer extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const sorted = await super.sort(files);
    const rank = (f: TestSpecification): number => {
      const i = SLOW_FIRST.indexOf(relative(f.project.config.root, f.moduleId).replaceAll('\\', '/'));
      return i === -1 ? SLOW_FIRST.length : i;
    };
    return sorted
      .map((file, order) => ({ file, order, rank: rank(file) }))
      .sort((a, b) => a.rank - b.rank || a.order - b.order)
      .map((x) => x.file);
  }
}

export default defineConfig({
  test: {
    include: ['**/*.test.ts'],
    exclude: ['node_modules/**', 'data/**'],
    testTimeout: 60_000,
    hookTimeout: 180_000,
    pool: 'forks',
    // Two files at once on the 2-core CI box: most of the slow files wait on child processes,
    // chDB and polls rather than compute (vitest's default there is one).
    maxWorkers: 2,
    sequence: { sequencer: SlowFirstSequencer },
  },
});
