import { createMaterializedView, createShardedTable, onCluster, qualified, storageName, type MigrationTarget } from './ddl.ts';

/**
 * Rollups: AggregatingMergeTree tables fed by materialized views, per hour and per (UTC) day.
 *
 * Shape: one row per (site, dim, bucket, value). Each source row fans out with ARRAY JOIN into one
 * row per dimension it is counted under, plus a totals row (`dim = ''`, `value = ''`). So every
 * single-dimension breakdown without other filters, and every total, is answered from a rollup;
 * combinations of dimensions (a breakdown filtered by another dimension) go to the raw tables.
 * Storing every combination would make the rollups as large as the raw data.
 *
 * Exactness: visitors are `uniqExactState(visitor_id)` (never the approximate `uniq`), merged with
 * `uniqExactMerge`; counts are sums. Materialized views see each inserted block once, and a
 * retried insert with the same insert_deduplication_token is dropped in the views too
 * (deduplicate_blocks_in_dependent_materialized_views), so rollup totals equal raw totals.
 *
 * Time zones: hourly buckets serve any site time zone with a whole-hour offset; daily buckets are
 * UTC days and fit only UTC-aligned ranges. Rows are not counted in the site's zone because a
 * view cannot see the site's settings.
 */

/**
 * Dimensions of `rollup_hourly` / `rollup_daily` (from `events`), mapped to the column each takes
 * its value from. `page` counts pageviews only (top pages, pageview goals). Visit-level
 * dimensions (source, channel, utm_*) are not here: an event carries the referrer of its own
 * request, so only the session's entry values are meaningful; they live in the session rollups.
 */
export const eventRollupDimensions = {
  page: 'pathname',
  hostname: 'hostname',
  name: 'name',
  country: 'country',
  device: 'device',
  browser: 'browser',
  os: 'os',
} as const;

/**
 * Dimensions of `sessions_hourly` / `sessions_daily` (from `sessions`), mapped to their column.
 * All but `exit_page` are fixed for a session's life, so the −1/+1 pairs of one session fall on
 * the same value and sign sums stay exact. `exit_page` moves as the session goes on: its visits,
 * bounces and durations are exact (the −1 row cancels the old exit page) but its visitors state is
 * left empty, because a unique count cannot be un-counted; take exit-page visitors from raw rows.
 */
export const sessionRollupDimensions = {
  entry_page: 'entry_page',
  exit_page: 'exit_page',
  hostname: 'hostname',
  source: 'source',
  referrer: 'referrer',
  channel: 'channel',
  utm_source: 'utm_source',
  utm_medium: 'utm_medium',
  utm_campaign: 'utm_campaign',
  utm_content: 'utm_content',
  utm_term: 'utm_term',
  country: 'country',
  device: 'device',
  browser: 'browser',
  os: 'os',
} as const;

export type EventRollupDimension = keyof typeof eventRollupDimensions;
export type SessionRollupDimension = keyof typeof sessionRollupDimensions;

/** The rollup tables and the bucket each uses. */
export const rollupTables = {
  rollup_hourly: { source: 'events', grain: 'hour' },
  rollup_daily: { source: 'events', grain: 'day' },
  sessions_hourly: { source: 'sessions', grain: 'hour' },
  sessions_daily: { source: 'sessions', grain: 'day' },
} as const;

type Grain = 'hour' | 'day';

function bucketType(grain: Grain): string {
  return grain === 'hour' ? "DateTime('UTC')" : 'Date';
}

function bucketExpr(grain: Grain, column: string): string {
  return grain === 'hour' ? `toStartOfHour(${column})` : `toDate(${column})`;
}

function partition(grain: Grain): string {
  // Monthly parts for hours, yearly for days: both keep a part count that merges cope with.
  return grain === 'hour' ? 'toYYYYMM(bucket)' : 'toYear(bucket)';
}

/** `[('', ''), ('page', toString(pathname)), …]`: the ARRAY JOIN fan-out of one row. */
export function fanOut(dims: Record<string, string>): string {
  const pairs = Object.entries(dims).map(([dim, column]) => `('${dim}', toString(${column}))`);
  return `[('', ''), ${pairs.join(', ')}]`;
}

const eventRollupColumns = (grain: Grain): string => `  site LowCardinality(String),
  dim LowCardinality(String),
  bucket ${bucketType(grain)},
  value String,
  pageviews SimpleAggregateFunction(sum, UInt64),
  events SimpleAggregateFunction(sum, UInt64),
  visitors AggregateFunction(uniqExact, UInt64),
  revenue SimpleAggregateFunction(sum, Decimal128(6)),
  revenue_events SimpleAggregateFunction(sum, UInt64)`;

const sessionRollupColumns = (grain: Grain): string => `  site LowCardinality(String),
  dim LowCardinality(String),
  bucket ${bucketType(grain)},
  value String,
  visits SimpleAggregateFunction(sum, Int64),
  bounces SimpleAggregateFunction(sum, Int64),
  duration SimpleAggregateFunction(sum, Int64),
  pageviews SimpleAggregateFunction(sum, Int64),
  events SimpleAggregateFunction(sum, Int64),
  visitors AggregateFunction(uniqExact, UInt64)`;

function rollupTable(t: MigrationTarget, name: string, columns: string, grain: Grain): string[] {
  return createShardedTable(t, {
    name,
    columns,
    engine: { family: 'AggregatingMergeTree' },
    // dim before bucket: a breakdown reads one dimension's rows over a time range.
    clauses: `PARTITION BY ${partition(grain)}\nORDER BY (site, dim, bucket, value)`,
    // Rows arrive through the views on each shard's local table, never through this key.
    shardingKey: 'rand()',
  });
}

function eventRollupSelect(grain: Grain, visitors: boolean): (from: string) => string {
  return (from) => `SELECT
  site,
  d.1 AS dim,
  ${bucketExpr(grain, 'timestamp')} AS bucket,
  d.2 AS value,
  countIf(name = 'pageview') AS pageviews,
  count() AS events,${visitors ? '\n  uniqExactState(visitor_id) AS visitors,' : ''}
  sum(ifNull(revenue_amount, 0)) AS revenue,
  countIf(revenue_amount IS NOT NULL) AS revenue_events
FROM ${from}
ARRAY JOIN arrayFilter(x -> x.1 != 'page' OR name = 'pageview', ${fanOut(eventRollupDimensions)}) AS d
GROUP BY site, dim, bucket, value`;
}

function sessionRollupSelect(grain: Grain, visitors: boolean): (from: string) => string {
  // Sessions are bucketed by their start, as visits are counted where they begin.
  return (from) => `SELECT
  site,
  d.1 AS dim,
  ${bucketExpr(grain, 'start')} AS bucket,
  d.2 AS value,
  sum(sign) AS visits,
  sum(sign * is_bounce) AS bounces,
  sum(sign * duration) AS duration,
  sum(sign * pageviews) AS pageviews,
  sum(sign * events) AS events${visitors ? ",\n  uniqExactStateIf(visitor_id, sign > 0 AND d.1 != 'exit_page') AS visitors" : ''}
FROM ${from}
ARRAY JOIN ${fanOut(sessionRollupDimensions)} AS d
GROUP BY site, dim, bucket, value`;
}

/** Event rollup tables and their views. */
export function eventRollups(t: MigrationTarget): string[] {
  return (['hour', 'day'] as const).flatMap((grain) => {
    const name = grain === 'hour' ? 'rollup_hourly' : 'rollup_daily';
    return [
      ...rollupTable(t, name, eventRollupColumns(grain), grain),
      createMaterializedView(t, { name: `${name}_mv`, source: 'events', target: name, select: eventRollupSelect(grain, true) }),
    ];
  });
}

/** Session rollup tables and their views. */
export function sessionRollups(t: MigrationTarget): string[] {
  return (['hour', 'day'] as const).flatMap((grain) => {
    const name = grain === 'hour' ? 'sessions_hourly' : 'sessions_daily';
    return [
      ...rollupTable(t, name, sessionRollupColumns(grain), grain),
      createMaterializedView(t, {
        name: `${name}_mv`,
        source: 'sessions',
        target: name,
        select: sessionRollupSelect(grain, true),
      }),
    ];
  });
}

/**
 * Migration 12: the rollups become purely additive. Their views stop writing `uniqExactState`
 * (unique visitors come from `salt_day_visitors` and the raw rows of open salt days), then the
 * `visitors` columns are dropped. Each view is dropped and created again with its new query, not
 * altered: after `ALTER … MODIFY QUERY` (chDB 3.4), a retried insert that the source table drops as
 * a duplicate still reached the view's table (tests/eventhubs-drain.test.ts: rollups above raw after
 * a replay), so the views would no longer be exact. Between the drop and the create an insert would
 * miss the view: stop processors of the old version while this migration runs (`farol migrate`
 * before rolling them; `farol start` migrates before it processes). Re-running creates the same
 * views and drops nothing more.
 */
export function additiveRollups(t: MigrationTarget): string[] {
  const out: string[] = [];
  for (const [name, spec] of Object.entries(rollupTables)) {
    const select = spec.source === 'events' ? eventRollupSelect(spec.grain, false) : sessionRollupSelect(spec.grain, false);
    out.push(`DROP VIEW IF EXISTS ${qualified(t, `${name}_mv`)}${onCluster(t)}`);
    out.push(createMaterializedView(t, { name: `${name}_mv`, source: spec.source, target: name, select }));
  }
  for (const name of Object.keys(rollupTables)) {
    out.push(`ALTER TABLE ${qualified(t, storageName(t, name))}${onCluster(t)} DROP COLUMN IF EXISTS visitors`);
    if (t.cluster !== undefined) out.push(`ALTER TABLE ${qualified(t, name)}${onCluster(t)} DROP COLUMN IF EXISTS visitors`);
  }
  return out;
}
