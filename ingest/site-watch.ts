import type { SiteRegistration } from '../control/reader.ts';
import type { Logger } from '../lib/log.ts';
import { startReloading } from '../lib/reload.ts';

/** The set of domains the collector accepts, kept fresh from the control plane. */
export interface SiteWatch {
  has(domain: string): boolean;
  /** The epoch of the domain's registration, stamped on its events; 0 when unknown. */
  epoch(domain: string): number;
  /** Reloads now (after a local site change); failures keep the last set. */
  refresh(): Promise<void>;
  stop(): void;
}

/**
 * Polls `load` (the registered sites, `ControlReader.registeredSites`; or bare domains) every `intervalMs`;
 * `extra` (FAROL_SITES) are accepted too. Until a first load succeeds (ClickHouse unreachable at
 * start) every domain is accepted, with a warning: refusing all traffic would lose it, the
 * processor stores it anyway.
 */
export async function watchSites(opts: {
  load: () => Promise<Iterable<string | SiteRegistration>>;
  extra?: readonly string[];
  intervalMs?: number;
  log: Logger;
}): Promise<SiteWatch> {
  const extra = new Set(opts.extra ?? []);
  // Domain → epoch (0 when the loader does not know it).
  let known: Map<string, number> | null = null;
  let failing = false;
  const reloader = startReloading(async () => {
    try {
      const entries = [...(await opts.load())].map((s) => (typeof s === 'string' ? { domain: s, epoch: 0 } : s));
      known = new Map(entries.map((s) => [s.domain.toLowerCase(), s.epoch]));
      if (failing) opts.log.info({ sites: known.size }, 'site list loaded again');
      failing = false;
    } catch (err) {
      if (!failing) {
        opts.log.warn({ err, acceptingAll: known === null }, 'cannot load the registered sites; keeping the last list');
      }
      failing = true;
    }
  }, opts.intervalMs ?? 5_000);
  await reloader.refresh();
  return {
    has: (domain) => extra.has(domain) || known === null || known.has(domain),
    epoch: (domain) => known?.get(domain) ?? 0,
    refresh: () => reloader.refresh(),
    stop: () => reloader.stop(),
  };
}

