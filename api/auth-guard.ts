import { createHmac, randomBytes } from 'node:crypto';
import type { TrustProxy } from '../schemas/config.ts';
import type { Registry } from '../lib/metrics.ts';
import { TokenBuckets, type Rate } from '../lib/token-bucket.ts';
import { clientIp } from '../lib/http/client-ip.ts';

/**
 * The failed-authentication limit of the API: a client whose requests with an `Authorization`
 * header were answered 401 too often is answered 429 (with Retry-After) for every request that
 * carries one, valid token or not, before any lookup: guessing tokens (or a weak
 * FAROL_BOOTSTRAP_TOKEN) goes no faster than the budget, and a blocked client cannot tell a right
 * guess from a wrong one. Requests without the header (the tracker's config, the dashboard's
 * assets) are never counted nor refused.
 *
 * A client is a keyed hash of its address (X-Forwarded-For per FAROL_TRUST_PROXY; an IPv6 one by
 * its /64, which one host can hop within at will) under a random key that lives in this process's
 * memory only: the address itself is never stored, and the key dies with the process. Behind a
 * proxy that FAROL_TRUST_PROXY does not name, every client is the proxy: one budget for all.
 */

export interface AuthGuard {
  /** The client key of a request, from its socket address and X-Forwarded-For header. */
  clientKey(remote: string, xff: string): string;
  /** Seconds the client must wait before its next authenticated request (0: none). */
  blocked(client: string): number;
  /** Records a failed authentication (a 401 to a request with an Authorization header). */
  failed(client: string): void;
}

/**
 * A client's key: a keyed hash of its address (per FAROL_TRUST_PROXY; an IPv6 one by its /64)
 * under a random key of this keyer, kept in memory only. Also sign-in's per-client throttle.
 */
export function clientKeyer(trust: TrustProxy): (remote: string, xff: string) => string {
  const key = randomBytes(32);
  return (remote, xff) => createHmac('sha256', key).update(networkOf(clientIp({ remote, xff, trust }))).digest('base64url').slice(0, 22);
}

export function createAuthGuard(opts: { rate: Rate; trust: TrustProxy; metrics: Registry; now?: () => number; maxClients?: number }): AuthGuard {
  const clientKey = clientKeyer(opts.trust);
  const buckets = new TokenBuckets(opts.rate, { maxKeys: opts.maxClients ?? 100_000, ...(opts.now ? { now: opts.now } : {}) });
  const failures = opts.metrics.counter('farol_api_auth_failures_total', 'API requests with an Authorization header answered 401');
  const limited = opts.metrics.counter('farol_api_auth_limited_total', 'API requests refused with 429 after too many failed authentications');
  return {
    clientKey,
    blocked(client) {
      const wait = buckets.wait(client);
      if (wait > 0) limited.inc();
      return wait;
    },
    failed(client) {
      failures.inc();
      buckets.spend(client);
    },
  };
}

/** An IPv4 address itself; an IPv6 address's /64 (from the canonical text `clientIp` returns). */
export function networkOf(ip: string): string {
  if (!ip.includes(':')) return ip;
  const [head = '', tail] = ip.split('::');
  const left = head === '' ? [] : head.split(':');
  if (tail === undefined) return `${left.slice(0, 4).join(':')}::/64`;
  const right = tail === '' ? [] : tail.split(':');
  const groups = [...left, ...Array.from({ length: 8 - left.length - right.length }, () => '0'), ...right];
  return `${groups.slice(0, 4).join(':')}::/64`;
}
