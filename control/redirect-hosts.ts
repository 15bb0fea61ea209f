import { formatTimestamp } from '../store/rows.ts';
import type { Store } from '../store/store.ts';

/**
 * Hosts an owner allows a site's experiments to redirect to, besides the site's own domain and
 * its subdomains (schemas/experiment-safety.ts), in the control-plane table `redirect_hosts`
 * (schemas/migrations/control-plane.ts, a ReplacingMergeTree(updated_at, deleted): one row per
 * site, the latest wins; cleared when the site is deleted).
 */
export interface RedirectHostsRepository {
  /** The allowed hosts of a site, sorted; [] when none were set. */
  get(site: string): Promise<string[]>;
  /** Replaces the list (the caller validated the hosts and checked that an owner asks). */
  set(site: string, hosts: readonly string[]): Promise<string[]>;
  clear(site: string): Promise<void>;
}

export function redirectHostsRepository(store: Store, now: () => Date): RedirectHostsRepository {
  // Versions of one process are strictly ordered even within a millisecond.
  let last = 0;
  const stamp = (): string => {
    last = Math.max(now().getTime(), last + 1);
    return formatTimestamp(last);
  };
  const write = async (site: string, hosts: readonly string[], deleted: 0 | 1): Promise<void> => {
    const at = stamp();
    await store.insert('redirect_hosts', [{ site, hosts, created_at: at, updated_at: at, deleted }]);
  };
  return {
    async get(site) {
      const rows = await store.query<{ hosts: string[] }>('SELECT hosts FROM redirect_hosts FINAL WHERE site = {site:String} AND deleted = 0', { site });
      return rows[0]?.hosts ?? [];
    },
    async set(site, hosts) {
      const sorted = [...new Set(hosts)].sort();
      await write(site, sorted, 0);
      return sorted;
    },
    async clear(site) {
      if ((await this.get(site)).length > 0) await write(site, [], 1);
    },
  };
}
