import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openChdbStore } from '../chdb-store.ts';
import { openHttpStore } from '../http-store.ts';
import type { Store } from '../store.ts';
import { startClickHouseHttp } from './clickhouse-http.ts';

/** A store for a test suite, on a temp dir of its own, and how to remove both. */
export interface StoreHarness {
  store: Store;
  teardown(): Promise<void>;
}

/**
 * Every Store a suite runs against, by name: embedded chDB on a temp dir, and the HTTP store
 * against the test endpoint (chDB in a child process on another temp dir).
 */
export function storeHarnesses(database: string, dirPrefix: string): Record<'chdb' | 'http', () => Promise<StoreHarness>> {
  return {
    chdb: () => {
      const dir = mkdtempSync(join(tmpdir(), `${dirPrefix}-chdb-`));
      const store = openChdbStore({ dataDir: dir, database });
      return Promise.resolve({
        store,
        teardown: async () => {
          await store.close();
          rmSync(dir, { recursive: true, force: true });
        },
      });
    },
    http: async () => {
      const dir = mkdtempSync(join(tmpdir(), `${dirPrefix}-http-`));
      const server = await startClickHouseHttp({ dataDir: dir });
      const store = openHttpStore({ url: server.url, username: 'default', password: '', database });
      return {
        store,
        teardown: async () => {
          await store.close();
          await server.stop();
          rmSync(dir, { recursive: true, force: true });
        },
      };
    },
  };
}
