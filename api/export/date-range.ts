import type { Store } from '../../store/store.ts';
import { ApiQueryError } from '../query/errors.ts';
import { runQuery, type QuerySite } from '../query/query.ts';

/**
 * `date_range` in a query string, for the GET endpoints (export, experiment results), with the
 * query API's forms and rules: a shortcut (`30d`, `month`, `all`, …) or a pair of ISO dates or
 * date-times, sent as `from,to` or as a JSON array. The query engine resolves and validates it,
 * so both answer alike and an error names `date_range`.
 */

const MAX_PARAM = 200;

/** The raw `date_range` value of a query string, shaped like the query API's body field; `fallback` when absent. */
export function dateRangeParam(query: URLSearchParams, fallback?: string): unknown {
  const text = query.get('date_range');
  if (text === null || text === '') return fallback;
  if (text.length > MAX_PARAM) throw new ApiQueryError('date_range', `must be at most ${MAX_PARAM} characters`);
  if (text.startsWith('[')) {
    try {
      return JSON.parse(text) as unknown;
    } catch {
      throw new ApiQueryError('date_range', 'is not a valid JSON array');
    }
  }
  return text.includes(',') ? text.split(',') : text;
}

/** A resolved range: UTC instants [start, end) and its first and last site-local days. */
export interface ResolvedDateRange {
  start: number;
  end: number;
  /** ISO 8601 in the site's zone, as the query API echoes them (the end is the last second). */
  iso: [string, string];
  /** Site-local dates `YYYY-MM-DD`. */
  firstDay: string;
  lastDay: string;
}

/** Resolves `raw` through the query engine (one cheap total), throwing its 400 naming `date_range`. */
export async function resolveDateRange(store: Store, site: QuerySite, raw: unknown, now: Date): Promise<ResolvedDateRange> {
  const r = await runQuery(store, site, { site_id: site.domain, metrics: ['visitors'], date_range: raw }, now);
  return fromEcho(r.query.date_range);
}

/** The range a query response echoes, back as instants. */
export function fromEcho(echo: readonly [string, string]): ResolvedDateRange {
  const [from, to] = echo;
  return {
    start: Date.parse(from),
    // The echo's end is the range's last second.
    end: Date.parse(to) + 1000,
    iso: [from, to],
    firstDay: from.slice(0, 10),
    lastDay: to.slice(0, 10),
  };
}
