import { readFileSync } from 'node:fs';
import { relative } from 'node:path';
import { defineConfig } from 'vitest/config';
import { BaseSequencer, type TestSpecification } from 'vitest/node';

/**
 * The files that take longest, longest first (tens of seconds each on the 2-core CI box). Without
 * a cache of earlier runs (a fresh CI checkout) vitest starts the largest files first, which put
 * several of these last: one worker then ran a long file alone at the end while the other idled.
 * Listed files start first, in this order; the rest follow in vitest's own order. A stale list
 * costs only that tail, never a test. The order is from each file run alone on the shared 2-core
 * machine (2026-12-07, load 5–16): api-escalation ~120 s, salt-days ~115 s, eventhubs-e2e ~110 s,
 * e2e-crash ~100 s, api-isolation and admin-cli ~95 s, e2e-outage ~90 s, down to ~20 s at the end;
 * demo, tracker, dashboard and query-engine (not measured then) keep their earlier places.
 */
const SLOW_FIRST = [
  'tests/api-escalation.test.ts',
  'processor/salt-days.test.ts',
  'tests/eventhubs-e2e.test.ts',
  'tests/e2e-crash.test.ts',
  'tests/api-isolation.test.ts',
  'tests/admin-cli.test.ts',
  'tests/e2e-outage.test.ts',
  'tests/demo.test.ts',
  'processor/dead-letters.test.ts',
  'tests/start-threads.test.ts',
  'tests/abuse.test.ts',
  'tests/backup-restore.test.ts',
  'tests/e2e-exact-embedded.test.ts',
  'store/tab-separated.test.ts',
  'tests/api-oracle.test.ts',
  'tests/e2e-exact-server.test.ts',
  'tests/secrets.test.ts',
  'tests/dead-letters-kill.test.ts',
  'hub/testing/eventhubs/broker.test.ts',
  'tests/site-reregister.test.ts',
  'tests/tracker.test.ts',
  'tests/durability.test.ts',
  'tests/api-process.test.ts',
  'tests/tls.test.ts',
  'tests/query-engine.test.ts',
  'tests/api-injection.test.ts',
  'tests/fuzz-pipeline.test.ts',
  'tests/privacy.test.ts',
  'tests/eventhubs-drain.test.ts',
  'scripts/build.test.ts',
  'processor/processor-crash.test.ts',
  'tests/api-query-fuzz.test.ts',
  'tests/dashboard.test.ts',
];

/**
 * Files that open no chDB and start no child process or browser (a few start an in-process server
 * and stop it in afterAll), and change no global state (no vi.mock, fake timers, process.env or
 * process handlers): they run without isolation, many in one reused worker process, instead of each
 * paying a fresh process and its module graph (about a second of CPU per file, more than most of
 * these files' tests take: 51 files went from ~53 s to ~22 s of CPU). Every other file keeps its
 * own process: chDB binds one data directory per process, and children, browsers and hooks must
 * not outlive their file. A file listed here must stay that pure; a new file is isolated until
 * listed.
 */
const SHARED_WORKER = [
  'api/auth-cookies.test.ts',
  'api/auth-guard.test.ts',
  'api/export/csv.test.ts',
  'api/query/schema.test.ts',
  'api/query/time.test.ts',
  'api/stats/bayes.test.ts',
  'api/stats/experiment.test.ts',
  'api/stats/gamma.test.ts',
  'api/stats/normal.test.ts',
  'api/stats/sequential.test.ts',
  'api/stats/srm.test.ts',
  'api/stats/two-proportion.test.ts',
  'bench/parse.test.ts',
  'bench/results.test.ts',
  'cli/demo-traffic.test.ts',
  'control/model.test.ts',
  'control/people.test.ts',
  'hub/event-codec.test.ts',
  'hub/local-format.test.ts',
  'hub/spool.test.ts',
  'hub/testing/eventhubs/partition-key.test.ts',
  'hub/testing/eventhubs/partition-log.test.ts',
  'ingest/enrich/channel.test.ts',
  'ingest/enrich/geo.test.ts',
  'ingest/enrich/salts.test.ts',
  'ingest/enrich/url.test.ts',
  'ingest/enrich/user-agent.test.ts',
  'ingest/enrich/visitor-hash.test.ts',
  'ingest/site-watch.test.ts',
  'ingest/thread-metrics.test.ts',
  'ingest/tracker/tracker.test.ts',
  'lib/http/client-ip.test.ts',
  'lib/http/static.test.ts',
  'lib/log.test.ts',
  'lib/lru.test.ts',
  'lib/metrics-server.test.ts',
  'lib/metrics.test.ts',
  'lib/private-dir.test.ts',
  'lib/token-bucket.test.ts',
  'processor/partition-state.test.ts',
  'processor/state-store.test.ts',
  'schemas/experiment.test.ts',
  'schemas/issues.test.ts',
  'schemas/migrations/migrations.test.ts',
  'schemas/secrets.test.ts',
  'schemas/time-zone.test.ts',
  'schemas/unicode.test.ts',
  'schemas/wire-event.test.ts',
  'store/rows.test.ts',
  'store/store.test.ts',
  'tests/collector-hostile.test.ts',
  'tests/collector.test.ts',
  'tests/deploy-kit.test.ts',
  'tests/proxy-trust.test.ts',
];

/** What makes a file unfit for a shared worker, as far as its own text shows: the config refuses to load then. */
const NOT_SHAREABLE = /\b(openTestStore|openChdbStore|startApiOnChdb|processorTestFile)\b|support\/farol-process|node:child_process|playwright-core|\bvi\.(mock|doMock|stubEnv|stubGlobal|useFakeTimers)\(|process\.env\b|process\.on\(/;
for (const file of SHARED_WORKER) {
  const hit = NOT_SHAREABLE.exec(readFileSync(new URL(file, import.meta.url), 'utf8'));
  if (hit !== null) throw new Error(`${file} uses ${hit[0]}: it needs a process of its own (remove it from SHARED_WORKER in vitest.config.ts)`);
}

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
    exclude: ['node_modules/**', 'data/**'],
    testTimeout: 60_000,
    hookTimeout: 180_000,
    pool: 'forks',
    // Two files at once on the 2-core CI box: most of the slow files wait on child processes,
    // chDB and polls rather than compute (vitest's default there is one).
    maxWorkers: 2,
    sequence: { sequencer: SlowFirstSequencer },
    projects: [
      { extends: true, test: { name: 'isolated', include: ['**/*.test.ts'], exclude: ['node_modules/**', 'data/**', ...SHARED_WORKER] } },
      { extends: true, test: { name: 'shared', include: SHARED_WORKER, isolate: false } },
    ],
  },
});
