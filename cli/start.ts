import type { Config } from '../schemas/config.ts';
import { runCollector } from '../ingest/main.ts';

/**
 * `farol start`: the all-in-one process. For now the collector on the local hub; the processor,
 * reporting API and dashboard join it in this same process (only one process may open the
 * embedded engine's data dir).
 */
export async function runStart(config: Config): Promise<number> {
  return runCollector(config);
}
