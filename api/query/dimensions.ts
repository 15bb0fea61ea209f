import {
  eventRollupDimensions,
  sessionRollupDimensions,
  type EventRollupDimension,
  type SessionRollupDimension,
} from '../../schemas/migrations/index.ts';

/**
 * The fixed map from API dimensions to ClickHouse columns. Only identifiers from this file reach
 * SQL text; everything a request carries (property keys, filter values, goal names, the site, the
 * time zone, dates) is bound as a parameter.
 *
 * Scope says where a dimension's value lives:
 * - `event`: on each event (page, name, hostname, props, goals, experiment exposures);
 * - `session`: fixed by the session's entry (source, referrer, channel, UTM tags, entry and exit
 *   pages). An event carries the referrer of its own request, so these are read from the session
 *   the event belongs to, never from the event row;
 * - `either`: the same on every event of a visitor and on its sessions (country and the
 *   User-Agent-derived device, browser, OS: the visitor id hashes the IP and the User-Agent).
 */

/** Columns of `events` a dimension may read. */
export type EventColumn = 'pathname' | 'hostname' | 'name' | 'country' | 'device' | 'browser' | 'browser_version' | 'os' | 'os_version';

/** Columns of `sessions` a dimension may read. */
export type SessionColumn =
  | 'entry_page'
  | 'exit_page'
  | 'source'
  | 'referrer'
  | 'channel'
  | 'utm_source'
  | 'utm_medium'
  | 'utm_campaign'
  | 'utm_content'
  | 'utm_term'
  | 'country'
  | 'device'
  | 'browser'
  | 'browser_version'
  | 'os'
  | 'os_version';

export type Scope = 'event' | 'session' | 'either';

/** A dimension read from one column. */
export interface ColumnDimension {
  readonly name: string;
  readonly scope: Scope;
  /** Column on `events` (event and either scope). */
  readonly eventColumn?: EventColumn;
  /**
   * Column on `sessions`. For `event:page` this is `entry_page`: session metrics broken down by
   * page count the visits that entered on it, as Plausible does.
   */
  readonly sessionColumn?: SessionColumn;
  /** Shown (and matched by filters) instead of an empty value, as Plausible labels them. */
  readonly emptyLabel?: string;
  /** Dimension of `rollup_hourly` / `rollup_daily` holding the same values for events. */
  readonly eventRollup?: EventRollupDimension;
  /** Dimension of `sessions_hourly` / `sessions_daily` holding the same values for sessions. */
  readonly sessionRollup?: SessionRollupDimension;
}

const DIRECT = 'Direct / None';
const NOT_SET = '(not set)';

function utm(column: 'utm_source' | 'utm_medium' | 'utm_campaign' | 'utm_content' | 'utm_term'): ColumnDimension {
  return { name: `visit:${column}`, scope: 'session', sessionColumn: column, emptyLabel: NOT_SET, sessionRollup: column };
}

const columnDimensionList: readonly ColumnDimension[] = [
  { name: 'event:page', scope: 'event', eventColumn: 'pathname', sessionColumn: 'entry_page', eventRollup: 'page', sessionRollup: 'entry_page' },
  { name: 'event:hostname', scope: 'event', eventColumn: 'hostname', eventRollup: 'hostname' },
  { name: 'event:name', scope: 'event', eventColumn: 'name', eventRollup: 'name' },
  { name: 'visit:entry_page', scope: 'session', sessionColumn: 'entry_page', sessionRollup: 'entry_page' },
  { name: 'visit:exit_page', scope: 'session', sessionColumn: 'exit_page', sessionRollup: 'exit_page' },
  { name: 'visit:source', scope: 'session', sessionColumn: 'source', emptyLabel: DIRECT, sessionRollup: 'source' },
  { name: 'visit:referrer', scope: 'session', sessionColumn: 'referrer', emptyLabel: DIRECT, sessionRollup: 'referrer' },
  { name: 'visit:channel', scope: 'session', sessionColumn: 'channel', sessionRollup: 'channel' },
  utm('utm_source'),
  utm('utm_medium'),
  utm('utm_campaign'),
  utm('utm_content'),
  utm('utm_term'),
  {
    name: 'visit:device',
    scope: 'either',
    eventColumn: 'device',
    sessionColumn: 'device',
    emptyLabel: NOT_SET,
    eventRollup: 'device',
    sessionRollup: 'device',
  },
  {
    name: 'visit:browser',
    scope: 'either',
    eventColumn: 'browser',
    sessionColumn: 'browser',
    emptyLabel: NOT_SET,
    eventRollup: 'browser',
    sessionRollup: 'browser',
  },
  { name: 'visit:browser_version', scope: 'either', eventColumn: 'browser_version', sessionColumn: 'browser_version', emptyLabel: NOT_SET },
  { name: 'visit:os', scope: 'either', eventColumn: 'os', sessionColumn: 'os', emptyLabel: NOT_SET, eventRollup: 'os', sessionRollup: 'os' },
  { name: 'visit:os_version', scope: 'either', eventColumn: 'os_version', sessionColumn: 'os_version', emptyLabel: NOT_SET },
  { name: 'visit:country', scope: 'either', eventColumn: 'country', sessionColumn: 'country', eventRollup: 'country', sessionRollup: 'country' },
];

/** Column dimensions by API name. */
export const columnDimensions: ReadonlyMap<string, ColumnDimension> = new Map(columnDimensionList.map((d) => [d.name, d]));

// The rollup names above must exist in the schema: checked once at load, so a renamed rollup
// dimension fails every test instead of silently sending queries to the raw tables.
for (const d of columnDimensionList) {
  if (d.eventRollup !== undefined && !(d.eventRollup in eventRollupDimensions)) throw new Error(`no event rollup dimension ${d.eventRollup}`);
  if (d.sessionRollup !== undefined && !(d.sessionRollup in sessionRollupDimensions)) {
    throw new Error(`no session rollup dimension ${d.sessionRollup}`);
  }
}

export type TimeGrain = 'hour' | 'day' | 'week' | 'month';

/** A parsed dimension: which column, property, goal set or time bucket it reads. */
export type DimensionRef =
  | { readonly kind: 'column'; readonly name: string; readonly def: ColumnDimension }
  | { readonly kind: 'prop'; readonly name: string; readonly key: string }
  | { readonly kind: 'goal'; readonly name: 'event:goal' }
  | { readonly kind: 'variation'; readonly name: 'experiment:variation' }
  | { readonly kind: 'time'; readonly name: string; readonly grain: TimeGrain | 'auto' };

const timeDimensions: Record<string, TimeGrain | 'auto'> = {
  time: 'auto',
  'time:hour': 'hour',
  'time:day': 'day',
  'time:week': 'week',
  'time:month': 'month',
};

/** Longest custom property key accepted (the collector caps keys well below this). */
export const MAX_PROP_KEY = 300;

const PROPS_PREFIX = 'event:props:';

/** The dimension `name` stands for, or undefined when it is none Farol knows. */
export function parseDimension(name: string): DimensionRef | undefined {
  const column = columnDimensions.get(name);
  if (column !== undefined) return { kind: 'column', name, def: column };
  const grain = Object.hasOwn(timeDimensions, name) ? timeDimensions[name] : undefined;
  if (grain !== undefined) return { kind: 'time', name, grain };
  if (name === 'event:goal') return { kind: 'goal', name };
  if (name === 'experiment:variation') return { kind: 'variation', name };
  if (name.startsWith(PROPS_PREFIX)) {
    const key = name.slice(PROPS_PREFIX.length);
    if (key.length > 0 && key.length <= MAX_PROP_KEY) return { kind: 'prop', name, key };
  }
  return undefined;
}

/** Where a dimension's value lives; time buckets live everywhere. */
export function scopeOf(d: DimensionRef): Scope | 'time' {
  switch (d.kind) {
    case 'column':
      return d.def.scope;
    case 'time':
      return 'time';
    default:
      return 'event';
  }
}
