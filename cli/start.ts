import type { Config } from '../schemas/config.ts';
import { openConfiguredLocalHub, startCollector } from '../ingest/main.ts';
import { openConfiguredStore, migrationTarget, startLocalProcessor } from '../processor/main.ts';
import { migrate } from '../store/migrate.ts';
import { createLogger } from '../lib/log.ts';
import { Registry } from '../lib/metrics.ts';
import { untilSignal } from '../lib/signals.ts';

/**
 * `farol start`: the all-in-one process: collector + local hub + processor on the configured store
 * (embedded chDB by default; only one process may open its data dir, so they share this one).
 * SIGTERM drains in flow order: stop ingest, flush the processor and checkpoint, close.
 */
export async function runStart(config: Config): Promise<number> {
  const log = createLogger(config.FAROL_LOG_LEVEL, { service: 'farol' });
  const metrics = new Registry();
  const store = openConfiguredStore(config);
  try {
    const applied = await migrate(store, migrationTarget(config));
    if (applied.length > 0) log.info({ versions: applied }, 'migrations applied');
    const hub = await openConfiguredLocalHub(config, log);
    try {
      const processor = await startLocalProcessor(config, { hub, store, log, metrics });
      const collector = await startCollector(config, { hub, log, metrics });
      const signal = await untilSignal();
      log.info({ signal }, 'draining');
      await collector.stop();
      await processor.drain();
    } finally {
      await hub.close();
    }
  } finally {
    await store.close();
  }
  log.info({}, 'stopped');
  return 0;
}
