import type { EnrichedEvent } from '../schemas/enriched-event.ts';
import { FarolError } from '../schemas/errors.ts';
import type { Registry } from '../lib/metrics.ts';
import { TokenBuckets, type Rate } from '../lib/token-bucket.ts';

/**
 * The collector's ingest rates (429 + Retry-After): per client and per site, in events. A client is
 * a visitor of a site as the pipeline identifies it: the salted visitor id (site + visitor id, the
 * hub's partition key), never the IP. Checked after enrichment and before the hub, so a refused
 * request costs no disk. A request is all-or-nothing: it passes only if every bucket it touches
 * may spend, and then spends them all.
 */

export interface IngestRates {
  /** Per client (site + visitor id); null = off. */
  client: Rate | null;
  /** Per site; null = off. */
  site: Rate | null;
  /** Bound on remembered clients (default 100,000). */
  maxClients?: number;
  now?: () => number;
}

export interface RateLimiter {
  /**
   * Throws ING_RATE_LIMITED (with `retryAfterS`) unless every event may pass; spends otherwise.
   * `keys[i]` is event i's client key, {@link clientKey} (the hub's partition key too: made once).
   */
  admit(events: readonly EnrichedEvent[], keys: readonly string[]): void;
}

/** A client of a site: the salted visitor id with its site, never the IP (the hub's partition key). */
export function clientKey(e: EnrichedEvent): string {
  return `${e.site}:${e.visitorId}`;
}

export function createRateLimiter(rates: IngestRates, metrics: Registry): RateLimiter {
  const opts = rates.now === undefined ? {} : { now: rates.now };
  const clients = rates.client === null ? null : new TokenBuckets(rates.client, { ...opts, maxKeys: rates.maxClients ?? 100_000 });
  // Sites are registered ones only (unknown sites were refused), so their count is bounded anyway.
  const sites = rates.site === null ? null : new TokenBuckets(rates.site, { ...opts, maxKeys: 100_000 });
  const limited = metrics.counter('farol_ingest_rate_limited_total', 'Events refused with 429, by the limit that refused them');
  const limitedClient = limited.labels({ scope: 'client' });
  const limitedSite = limited.labels({ scope: 'site' });
  const tracked = metrics.gauge('farol_ingest_rate_limit_clients', 'Clients whose ingest rate is being tracked (bounded)');
  tracked.onCollect(() => tracked.set(clients?.size ?? 0));

  const refuse = (seconds: number, scope: 'client' | 'site', events: number): never => {
    (scope === 'client' ? limitedClient : limitedSite).inc(events);
    const err = new FarolError('ING_RATE_LIMITED', scope === 'client' ? 'Too many events from this client; retry later' : 'Too many events for this site; retry later');
    err.retryAfterS = seconds;
    throw err;
  };

  // The usual request holds one event: no grouping, one lookup per limit.
  const admitOne = (e: EnrichedEvent, key: string): void => {
    if (sites === null) {
      const wait = clients?.take(key) ?? 0;
      if (wait > 0) refuse(wait, 'client', 1);
      return;
    }
    const waitClient = clients?.wait(key) ?? 0;
    if (waitClient > 0) refuse(waitClient, 'client', 1);
    const waitSite = sites?.wait(e.site) ?? 0;
    if (waitSite > 0) refuse(waitSite, 'site', 1);
    clients?.spend(key);
    sites?.spend(e.site);
  };

  const admitMany = (events: readonly EnrichedEvent[], keys: readonly string[]): void => {
    const byClient = new Map<string, number>();
    const bySite = new Map<string, number>();
    for (let i = 0; i < events.length; i++) {
      const e = events[i]!;
      if (clients !== null) {
        const k = keys[i]!;
        byClient.set(k, (byClient.get(k) ?? 0) + 1);
      }
      if (sites !== null) bySite.set(e.site, (bySite.get(e.site) ?? 0) + 1);
    }
    if (clients !== null) for (const [k, n] of byClient) {
      const w = clients.wait(k, n);
      if (w > 0) refuse(w, 'client', events.length);
    }
    if (sites !== null) for (const [k, n] of bySite) {
      const w = sites.wait(k, n);
      if (w > 0) refuse(w, 'site', events.length);
    }
    for (const [k, n] of byClient) clients?.spend(k, n);
    for (const [k, n] of bySite) sites?.spend(k, n);
  };

  return {
    admit(events, keys) {
      if (events.length === 0 || (clients === null && sites === null)) return;
      const only = events.length === 1 ? events[0] : undefined;
      if (only !== undefined) admitOne(only, keys[0]!);
      else admitMany(events, keys);
    },
  };
}
