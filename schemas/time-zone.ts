/**
 * Site time zones: one rule for the control plane, which stores a site's zone, and the query
 * engine, which computes the site's days in JavaScript (Intl) and buckets rows in ClickHouse
 * (`toTimeZone`). Two engines with two copies of the tz database must agree on every zone a site
 * may hold, so a zone is valid when:
 * - it is written as a tz-database name (`Europe/Lisbon`, `Etc/GMT+5`, `UTC`), not an offset
 *   (`+01:00`, which some runtimes' Intl accepts but ClickHouse does not), at most 64 characters;
 * - this runtime's Intl knows it (aliases included: `Asia/Kolkata`, `US/Eastern`, `europe/lisbon`);
 * - its canonical name (Intl's spelling) is known to the ClickHouse Farol ships: time-zone.test.ts
 *   checks every zone the rule accepts against chDB's `system.time_zones`, and
 *   {@link UNKNOWN_TO_CLICKHOUSE} lists the few newer than chDB's tz database.
 * Both sides use the canonical name, so `europe/lisbon` (which Intl accepts in any case and
 * ClickHouse does not) and `Etc/GMT+5` (which the query engine used to refuse for missing from
 * `Intl.supportedValuesOf`) work the same in both.
 */

const NAME = /^[A-Za-z][A-Za-z0-9_+-]*(?:\/[A-Za-z0-9_+-]+)*$/;
const MAX_LENGTH = 64;

/** Zones this Node knows and the bundled ClickHouse does not (yet). */
export const UNKNOWN_TO_CLICKHOUSE: ReadonlySet<string> = new Set(['America/Coyhaique']);

// Canonically spelled zones seen so far (a finite set: only names Intl returns are kept).
const canonical = new Set<string>();

/** The canonical name of `tz` when it is a valid site time zone (see above), else undefined. */
export function canonicalTimeZone(tz: string): string | undefined {
  if (canonical.has(tz)) return tz;
  if (tz.length === 0 || tz.length > MAX_LENGTH || !NAME.test(tz)) return undefined;
  let resolved: string;
  try {
    resolved = new Intl.DateTimeFormat('en-US', { timeZone: tz }).resolvedOptions().timeZone;
  } catch {
    return undefined;
  }
  if (UNKNOWN_TO_CLICKHOUSE.has(resolved)) return undefined;
  if (resolved === tz) canonical.add(tz);
  return resolved;
}

/** Whether `tz` is a valid site time zone. */
export function isTimeZone(tz: string): boolean {
  return canonicalTimeZone(tz) !== undefined;
}
