import type { Logger } from '../lib/log.ts';
import { startReloading } from '../lib/reload.ts';
import type { Store } from '../store/store.ts';
import type { Registration } from './partition-state.ts';

/**
 * What the processor knows of the sites' registrations, so that events of a deleted one are
 * dropped (see `resolveEpoch` in partition-state.ts).
 *
 * Each registration of a site has an epoch: the `created_at` of its `sites` row, in milliseconds,
 * which the collector stamps on every event it accepts for it (`EnrichedEvent.epoch`). When a site
 * is deleted, events of that registration may still sit in the hub; written after the deletion,
 * they would bring its data back, and into a new registration of the same domain.
 *
 * The latest row of a domain only moves forward (a newer registration, or a deletion), and an
 * event naming an epoch newer than the last load asks for a load.
 */

export type { Registration } from './partition-state.ts';

/** Registrations by domain, as the processor last loaded them. */
export interface SiteEpochs {
  /**
   * The latest registration of `site` known, for an event of registration `epoch` (an epoch newer
   * than it, or an unknown site, asks for a load). Cheap: called per event.
   */
  latest(site: string, epoch: number): Registration | undefined;
  /** Loads now; resolves once a load that started after the call has finished. Never rejects. */
  refresh(): Promise<void>;
  stop(): void;
}

/** The latest row of every domain ever registered (deleted ones included). */
export async function loadRegistrations(store: Store): Promise<Map<string, Registration>> {
  // Without FINAL and grouped: a deleted row must be seen, and the newest row decides.
  const rows = await store.query<{ domain: string; epoch: string | number; deleted: string | number }>(
    `SELECT domain, toUnixTimestamp64Milli(argMax(created_at, updated_at)) AS epoch, argMax(deleted, updated_at) AS deleted
     FROM sites GROUP BY domain`,
  );
  return new Map(rows.map((r) => [r.domain, { epoch: Number(r.epoch), deleted: Number(r.deleted) === 1 }]));
}

/**
 * Loads the registrations every `intervalMs`, and at once (at most every `minIntervalMs`) when an
 * event names an epoch newer than what was loaded. A failed load keeps the last view.
 */
export function watchSiteEpochs(opts: {
  load: () => Promise<Map<string, Registration>>;
  intervalMs: number;
  minIntervalMs?: number;
  log: Logger;
}): SiteEpochs {
  let known = new Map<string, Registration>();
  let failing = false;
  let lastStart = 0;
  const minIntervalMs = opts.minIntervalMs ?? 1_000;
  const reloader = startReloading(async () => {
    lastStart = Date.now();
    try {
      known = await opts.load();
      failing = false;
    } catch (err) {
      if (!failing) opts.log.warn({ err }, 'cannot load the site registrations; keeping the last ones');
      failing = true;
    }
  }, opts.intervalMs);
  void reloader.refresh();
  return {
    latest(site, epoch) {
      const r = known.get(site);
      if ((r === undefined || epoch > r.epoch) && !reloader.loading && Date.now() - lastStart >= minIntervalMs) void reloader.refresh();
      return r;
    },
    refresh: () => reloader.refresh(),
    stop: () => reloader.stop(),
  };
}
