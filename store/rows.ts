import type { EnrichedEvent } from '../schemas/enriched-event.ts';
import type { InsertColumnType, InsertSchema } from './tab-separated.ts';

/**
 * Row shapes of the raw tables (schemas/migrations/raw-tables.ts), as JSONEachRow objects.
 * UInt64 ids travel as decimal strings; times as `YYYY-MM-DD hh:mm:ss.fff` in UTC.
 */

/** One row of `events`. */
export type EventRow = {
  site: string;
  timestamp: string;
  event_id: string;
  event_id_from_client: 0 | 1;
  name: string;
  session_id: string;
  visitor_id: string;
  /** UTC day (`YYYY-MM-DD`) of the salt that produced `visitor_id`. */
  salt_day: string;
  hostname: string;
  pathname: string;
  referrer: string;
  source: string;
  channel: string;
  utm_source: string;
  utm_medium: string;
  utm_campaign: string;
  utm_content: string;
  utm_term: string;
  click_ids: string[];
  country: string;
  browser: string;
  browser_version: string;
  os: string;
  os_version: string;
  device: string;
  screen: string;
  interactive: 0 | 1;
  props: Record<string, string>;
  /** Decimal text with 6 places, or null without revenue. */
  revenue_amount: string | null;
  revenue_currency: string;
  exp_ids: string[];
  exp_variants: string[];
  /** The session's visit attributes (its first event's): migration 14. */
  session_referrer: string;
  session_source: string;
  session_channel: string;
  session_utm_source: string;
  session_utm_medium: string;
  session_utm_campaign: string;
  session_utm_content: string;
  session_utm_term: string;
};

/** The visit attributes a session takes from its first event and never changes. */
export type VisitAttributes = Pick<EnrichedEvent, 'referrer' | 'source' | 'channel' | 'utmSource' | 'utmMedium' | 'utmCampaign' | 'utmContent' | 'utmTerm'>;

/**
 * One row of `sessions`: a session's state. The processor writes the first state with sign 1,
 * then for each update the previous state again with sign −1 and the new one with sign 1 and
 * version + 1, in the same insert.
 */
export type SessionRow = {
  site: string;
  session_id: string;
  visitor_id: string;
  /** UTC day (`YYYY-MM-DD`) of the salt that produced `visitor_id`. */
  salt_day: string;
  /** First event's time. */
  start: string;
  /** Last event's time. */
  timestamp: string;
  /** Seconds from first to last event. */
  duration: number;
  pageviews: number;
  events: number;
  is_bounce: 0 | 1;
  entry_page: string;
  exit_page: string;
  hostname: string;
  referrer: string;
  source: string;
  channel: string;
  utm_source: string;
  utm_medium: string;
  utm_campaign: string;
  utm_content: string;
  utm_term: string;
  country: string;
  browser: string;
  browser_version: string;
  os: string;
  os_version: string;
  device: string;
  screen: string;
  sign: 1 | -1;
  version: number;
};

/** Milliseconds since the epoch as a DateTime64(3, 'UTC') text value. */
export function formatTimestamp(ms: number): string {
  // Integer times in years 1970..9999 (every event's) are written as bytes after a cached day
  // prefix and read out as one Latin-1 string: several times cheaper than a Date and toISOString
  // per row, and, unlike a template literal (a rope of five pieces for a string this long), a
  // flat string, which the TabSeparated writer reads without flattening it first (per timestamp
  // 1.0 → 0.3 µs to make it and 0.25–0.6 → 0.12 µs to write it).
  if (!Number.isSafeInteger(ms) || ms < 0 || ms >= MAX_FAST_MS) return new Date(ms).toISOString().slice(0, 23).replace('T', ' ');
  const day = Math.floor(ms / DAY_MS);
  if (day !== cachedDay) {
    cachedDay = day;
    stamp.write(new Date(day * DAY_MS).toISOString().slice(0, 11).replace('T', ' '), 0, 'latin1');
  }
  let rest = ms - day * DAY_MS;
  const milli = rest % 1000;
  rest = (rest - milli) / 1000;
  const sec = rest % 60;
  rest = (rest - sec) / 60;
  const min = rest % 60;
  const hour = (rest - min) / 60;
  twoDigits(11, hour);
  twoDigits(14, min);
  twoDigits(17, sec);
  const centis = (milli - (milli % 10)) / 10;
  twoDigits(20, centis);
  stamp[22] = 0x30 + (milli % 10);
  return stamp.toString('latin1', 0, 23);
}

/** `YYYY-MM-DD hh:mm:ss.fff`: the cached day, then the time, written in place per call. */
const stamp = Buffer.from('1970-01-01 00:00:00.000', 'latin1');

function twoDigits(at: number, n: number): void {
  const ones = n % 10;
  stamp[at] = 0x30 + (n - ones) / 10;
  stamp[at + 1] = 0x30 + ones;
}

/** Milliseconds in a day. */
export const DAY_MS = 86_400_000;
/** 10000-01-01T00:00:00Z: from there toISOString writes a six-digit year. */
const MAX_FAST_MS = 253_402_300_800_000;
let cachedDay = -1;

// Decimal64(6) is Decimal(18, 6): at most 12 digits before the point. More fails the whole batch's
// insert (DECIMAL value is too big), so the bound is on the text written, after rounding.
const storableAmount = /^-?\d{1,12}\.\d{6}$/;

/**
 * The revenue amount as Decimal text, or null when there is none or it cannot be stored: one
 * absurd amount must not make a batch of good events unwritable.
 */
function revenueAmount(revenue: EnrichedEvent['revenue']): string | null {
  // Past 1e21 toFixed writes an exponent, which the pattern refuses too.
  if (revenue === null || !Number.isFinite(revenue.amount)) return null;
  const text = revenue.amount.toFixed(6);
  return storableAmount.test(text) ? text : null;
}

/** A UTC day number (days since the epoch) as a Date text value, `YYYY-MM-DD`. */
export function formatDay(day: number): string {
  // Every row of a flush has one or two salt days: the last one is kept.
  if (day !== lastFormattedDay) {
    lastFormattedDayText = formatTimestamp(day * DAY_MS).slice(0, 10);
    lastFormattedDay = day;
  }
  return lastFormattedDayText;
}
let lastFormattedDay = Number.NaN;
let lastFormattedDayText = '';

/**
 * Maps an enriched event, its session id (UInt64 as decimal text), the UTC day of its visitor
 * id's salt (by default the event's `saltDay`, else its own day) and its session's visit
 * attributes (by default the event's own: the first event of its session) to an `events` row.
 */
export function eventRow(
  e: EnrichedEvent,
  sessionId: string,
  saltDay: number = e.saltDay ?? Math.floor(e.ts / DAY_MS),
  visit: VisitAttributes = e,
): EventRow {
  const amount = revenueAmount(e.revenue);
  return {
    site: e.site,
    timestamp: formatTimestamp(e.ts),
    event_id: e.id,
    event_id_from_client: e.clientId ? 1 : 0,
    name: e.name,
    session_id: sessionId,
    visitor_id: e.visitorId,
    salt_day: formatDay(saltDay),
    hostname: e.hostname,
    pathname: e.pathname,
    referrer: e.referrer,
    source: e.source,
    channel: e.channel,
    utm_source: e.utmSource,
    utm_medium: e.utmMedium,
    utm_campaign: e.utmCampaign,
    utm_content: e.utmContent,
    utm_term: e.utmTerm,
    click_ids: e.clickIds,
    country: e.country,
    browser: e.browser,
    browser_version: e.browserVersion,
    os: e.os,
    os_version: e.osVersion,
    device: e.device,
    screen: e.screen,
    interactive: e.interactive ? 1 : 0,
    props: e.props,
    revenue_amount: amount,
    revenue_currency: amount === null || e.revenue === null ? '' : e.revenue.currency,
    exp_ids: Object.keys(e.exp),
    exp_variants: Object.values(e.exp),
    session_referrer: visit.referrer,
    session_source: visit.source,
    session_channel: visit.channel,
    session_utm_source: visit.utmSource,
    session_utm_medium: visit.utmMedium,
    session_utm_campaign: visit.utmCampaign,
    session_utm_content: visit.utmContent,
    session_utm_term: visit.utmTerm,
  };
}

// Where an event and its session hold the same fields (the session's are its first event's).
const sharedColumnTypes = {
  site: 'LowCardinality(String)',
  session_id: 'UInt64',
  visitor_id: 'UInt64',
  salt_day: 'Date',
  timestamp: "DateTime64(3, 'UTC')",
  hostname: 'LowCardinality(String)',
  referrer: 'String',
  source: 'LowCardinality(String)',
  channel: 'LowCardinality(String)',
  utm_source: 'String',
  utm_medium: 'String',
  utm_campaign: 'String',
  utm_content: 'String',
  utm_term: 'String',
  country: 'LowCardinality(String)',
  browser: 'LowCardinality(String)',
  browser_version: 'LowCardinality(String)',
  os: 'LowCardinality(String)',
  os_version: 'LowCardinality(String)',
  device: 'LowCardinality(String)',
  screen: 'LowCardinality(String)',
} as const satisfies InsertSchema;

/**
 * Column types of `events` and `sessions` (schemas/migrations/raw-tables.ts and salt-days.ts), as
 * `DESCRIBE TABLE` names them: what the stores encode these tables' rows as TabSeparated by
 * (store/tab-separated.ts). Checked against the migrated tables by store/tab-separated.test.ts.
 */
export const eventColumnTypes = {
  ...sharedColumnTypes,
  event_id: 'String',
  event_id_from_client: 'UInt8',
  name: 'LowCardinality(String)',
  pathname: 'String',
  click_ids: 'Array(LowCardinality(String))',
  interactive: 'UInt8',
  props: 'Map(String, String)',
  revenue_amount: 'Nullable(Decimal(18, 6))',
  revenue_currency: 'LowCardinality(String)',
  exp_ids: 'Array(String)',
  exp_variants: 'Array(String)',
  session_referrer: 'String',
  session_source: 'LowCardinality(String)',
  session_channel: 'LowCardinality(String)',
  session_utm_source: 'String',
  session_utm_medium: 'String',
  session_utm_campaign: 'String',
  session_utm_content: 'String',
  session_utm_term: 'String',
} as const satisfies InsertSchema & Record<keyof EventRow, InsertColumnType>;

/** Column types of `sessions`; see {@link eventColumnTypes}. */
export const sessionColumnTypes = {
  ...sharedColumnTypes,
  start: "DateTime64(3, 'UTC')",
  duration: 'UInt32',
  pageviews: 'UInt32',
  events: 'UInt32',
  is_bounce: 'UInt8',
  entry_page: 'String',
  exit_page: 'String',
  sign: 'Int8',
  version: 'UInt32',
} as const satisfies InsertSchema & Record<keyof SessionRow, InsertColumnType>;

/**
 * The column types of a table the processor writes (`events` or `sessions`, in the store's
 * database), or undefined for any other table, whose rows travel as JSON.
 */
export function insertSchema(table: string): InsertSchema | undefined {
  return table === 'events' ? eventColumnTypes : table === 'sessions' ? sessionColumnTypes : undefined;
}
