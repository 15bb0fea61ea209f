import type { Config } from '../schemas/config.ts';
import { openHttpStore } from '../store/http-store.ts';
import type { Store } from '../store/store.ts';

/**
 * The ClickHouse server at `url` (FAROL_CLICKHOUSE_URL) with the configured credentials, database
 * and cluster. Apart from store.ts so that a process that never opens the embedded engine (the
 * standalone collector) does not load it.
 */
export function openServerStore(config: Config, url: string): Store {
  return openHttpStore({
    url,
    username: config.FAROL_CLICKHOUSE_USER,
    password: config.FAROL_CLICKHOUSE_PASSWORD,
    database: config.FAROL_CLICKHOUSE_DATABASE,
    cluster: config.FAROL_CLICKHOUSE_CLUSTER,
  });
}
