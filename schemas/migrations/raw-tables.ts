import { createShardedTable, onCluster, qualified, retentionTtl, storageName, type MigrationTarget } from './ddl.ts';

/**
 * Raw tables: `events` (one row per stored event) and `sessions` (collapsing session states).
 * Both expire after FAROL_RETENTION_DAYS; the rollups fed from them do not.
 */

/** Raw tables whose TTL follows FAROL_RETENTION_DAYS, with the column the TTL counts from. */
export const retentionTables = [
  { name: 'events', column: 'timestamp' },
  { name: 'sessions', column: 'start' },
  { name: 'dead_letters', column: 'time' },
] as const;

// Columns mirror EnrichedEvent (schemas/enriched-event.ts) in snake_case, plus the processor's
// session id. LowCardinality where the value set is small per site (names, browsers, countries).
const eventColumns = `  site LowCardinality(String),
  timestamp DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
  event_id String,
  event_id_from_client UInt8,
  name LowCardinality(String),
  session_id UInt64,
  visitor_id UInt64,
  hostname LowCardinality(String),
  pathname String,
  referrer String,
  source String,
  channel LowCardinality(String),
  utm_source String,
  utm_medium String,
  utm_campaign String,
  utm_content String,
  utm_term String,
  click_ids Array(LowCardinality(String)),
  country LowCardinality(String),
  browser LowCardinality(String),
  browser_version LowCardinality(String),
  os LowCardinality(String),
  os_version LowCardinality(String),
  device LowCardinality(String),
  screen LowCardinality(String),
  interactive UInt8,
  props Map(String, String),
  revenue_amount Nullable(Decimal64(6)),
  revenue_currency LowCardinality(String),
  exp_ids Array(String),
  exp_variants Array(String)`;

/**
 * `events`: ordered by site, day, event name, time. Every query filters by site and a time range;
 * most raw queries also fix the name (pageviews vs one goal), so the name sits before the
 * timestamp to prune to those granules within a day. Sharded by visitor so one visitor's events
 * and sessions share a shard.
 */
export function eventsTable(t: MigrationTarget): string[] {
  return createShardedTable(t, {
    name: 'events',
    columns: eventColumns,
    engine: { family: 'MergeTree' },
    clauses:
      'PARTITION BY toYYYYMM(timestamp)\nORDER BY (site, toDate(timestamp), name, timestamp)\n' +
      retentionTtl(t, 'timestamp'),
    shardingKey: 'cityHash64(site, visitor_id)',
  });
}

const sessionColumns = `  site LowCardinality(String),
  session_id UInt64,
  visitor_id UInt64,
  start DateTime64(3, 'UTC'),
  timestamp DateTime64(3, 'UTC'),
  duration UInt32,
  pageviews UInt32,
  events UInt32,
  is_bounce UInt8,
  entry_page String,
  exit_page String,
  hostname LowCardinality(String),
  referrer String,
  source String,
  channel LowCardinality(String),
  utm_source String,
  utm_medium String,
  utm_campaign String,
  utm_content String,
  utm_term String,
  country LowCardinality(String),
  browser LowCardinality(String),
  browser_version LowCardinality(String),
  os LowCardinality(String),
  os_version LowCardinality(String),
  device LowCardinality(String),
  screen LowCardinality(String),
  sign Int8,
  version UInt32`;

/**
 * `sessions`: one row per session state. The processor writes a pair per update: −1 with the old
 * state (same version) and +1 with the new state (version + 1). Queries aggregate with the sign
 * (`sum(sign)` visits, `sum(sign * duration)`, …) and are exact before merges collapse the pairs;
 * VersionedCollapsingMergeTree collapses them even if the pair lands out of order.
 * `timestamp` is the last event's time; `duration` is in seconds.
 */
export function sessionsTable(t: MigrationTarget): string[] {
  return createShardedTable(t, {
    name: 'sessions',
    columns: sessionColumns,
    engine: { family: 'VersionedCollapsingMergeTree', args: ['sign', 'version'] },
    clauses:
      'PARTITION BY toYYYYMM(start)\nORDER BY (site, toDate(start), session_id)\n' + retentionTtl(t, 'start'),
    shardingKey: 'cityHash64(site, visitor_id)',
  });
}

/**
 * Migration 7, `dead_letters`: what the processor could not store, so that one bad record never
 * stops a partition. A row per hub record ClickHouse would refuse (`target_table` = 'events'),
 * or per events/sessions row it did refuse, with the reason (a Farol reason or ClickHouse's error
 * name), the error text and the payload as it was: the hub record's JSON (an enriched event,
 * which holds no IP) or the refused row's. `payload_encoding` is 'json', or 'base64' for bytes
 * that are not UTF-8 text. Expires with the raw events; deleted with its site.
 */
export function deadLettersTable(t: MigrationTarget): string[] {
  return createShardedTable(t, {
    name: 'dead_letters',
    columns: `  time DateTime64(3, 'UTC') DEFAULT now64(3),
  site String,
  hub_partition UInt32,
  hub_offset UInt64,
  target_table LowCardinality(String),
  reason LowCardinality(String),
  error String,
  payload String,
  payload_encoding LowCardinality(String)`,
    engine: { family: 'MergeTree' },
    clauses: 'PARTITION BY toYYYYMM(time)\nORDER BY (site, time)\n' + retentionTtl(t, 'time'),
    // Deterministic, so a retried insert sends each row to the shard that has its dedup token.
    shardingKey: 'cityHash64(site, hub_partition, hub_offset)',
  });
}

/**
 * Migration 13, projection `by_page` of `events`: the columns a page filter reads (site, time,
 * name, page, session and visitor ids), ordered by site and page. A filtered breakdown for one
 * page (the dashboard's click on a page row) then reads that page's granules, not the page column
 * of every event of the range: popular pages are in every granule of `events`' own order, and a
 * `session_id IN (events of the page)` sub-query reads it once per side. ClickHouse keeps it
 * exact: maintained on every insert, merge, TTL and ALTER … DELETE, and a part without it (older
 * than the projection until MATERIALIZE reaches it) is read from its columns. MATERIALIZE builds it
 * for existing parts in the background, so the migration does not wait on a large table.
 */
export function eventsByPage(t: MigrationTarget): string[] {
  const events = `${qualified(t, storageName(t, 'events'))}${onCluster(t)}`;
  return [
    `ALTER TABLE ${events} ADD PROJECTION IF NOT EXISTS by_page (SELECT site, timestamp, name, pathname, session_id, visitor_id ORDER BY site, pathname, timestamp)`,
    `ALTER TABLE ${events} MATERIALIZE PROJECTION by_page`,
  ];
}

/**
 * The visit attributes a session keeps from its first event (referrer, source, channel, UTM), in
 * the order migration 14 adds them to `events` as `session_<name>`, with their types.
 */
export const visitColumnsOnEvents = [
  ['referrer', 'String'],
  ['source', 'String'],
  ['channel', 'LowCardinality(String)'],
  ['utm_source', 'String'],
  ['utm_medium', 'String'],
  ['utm_campaign', 'String'],
  ['utm_content', 'String'],
  ['utm_term', 'String'],
] as const;

/**
 * Migration 14: each event row carries its session's visit attributes (`session_source`, …), so
 * a breakdown of events by a visit attribute (goals by source) or an event breakdown filtered by
 * one (pages for one source) reads `events` alone instead of joining every session of the range.
 * Exact because the processor fixes these attributes when a session starts (its first event) and
 * never changes them, and writes them on every event row of the session. Rows stored before it
 * are back-filled by {@link visitAttributesBackfill}.
 */
export function visitAttributesOnEvents(t: MigrationTarget): string[] {
  const add = visitColumnsOnEvents.map(([c, type]) => `ADD COLUMN IF NOT EXISTS session_${c} ${type} DEFAULT ''`).join(', ');
  const statements = [`ALTER TABLE ${qualified(t, storageName(t, 'events'))}${onCluster(t)} ${add}`];
  if (t.cluster !== undefined) statements.push(`ALTER TABLE ${qualified(t, 'events')}${onCluster(t)} ${add}`);
  return statements;
}

/** How long before an events partition's month its sessions' rows are looked for. */
export const BACKFILL_SESSION_LEAD_DAYS = 7;

/**
 * The back-fill of migration 14 for the events of one month (`YYYYMM`, the partition key): each
 * event takes the attributes of its session's row (any state row: they all hold the same), through
 * a dictionary loaded from that month's sessions and the {@link BACKFILL_SESSION_LEAD_DAYS} before
 * it (on a cluster, on each shard from its own rows: a visitor's events and sessions share a
 * shard), so memory follows one month of sessions, not the whole table (about 225 bytes per
 * session measured with this layout, against ~1 KB for one hash map per attribute). An event whose
 * session has no row there keeps empty values, as the join gave it. Only rows whose attributes are
 * all empty are updated, so rows a processor wrote meanwhile keep theirs, and a rerun sets the same
 * values. Statements for `run`, in order.
 */
export function visitAttributesBackfill(t: MigrationTarget, month: number): string[] {
  if (!Number.isInteger(month) || month < 197001 || month > 299912 || month % 100 < 1 || month % 100 > 12) throw new Error(`bad month ${month}`);
  const first = Date.UTC(Math.floor(month / 100), (month % 100) - 1, 1);
  const next = Date.UTC(Math.floor(month / 100), month % 100, 1);
  const day = (ms: number): string => new Date(ms).toISOString().slice(0, 10);
  const dictionary = qualified(t, 'visit_attributes_backfill');
  const columns = visitColumnsOnEvents.map(([c]) => c).join(', ');
  const source =
    `SELECT site, session_id, ${columns} FROM ${qualified(t, storageName(t, 'sessions'))}` +
    ` WHERE sign = 1 AND start >= toDate(\\'${day(first - BACKFILL_SESSION_LEAD_DAYS * 86_400_000)}\\') AND start < toDate(\\'${day(next)}\\')`;
  const sets = visitColumnsOnEvents.map(([c]) => `session_${c} = dictGetOrDefault('${dictionary}', '${c}', (site, session_id), '')`).join(', ');
  const allEmpty = visitColumnsOnEvents.map(([c]) => `session_${c} = ''`).join(' AND ');
  return [
    `DROP DICTIONARY IF EXISTS ${dictionary}${onCluster(t)}`,
    `CREATE DICTIONARY ${dictionary}${onCluster(t)} (site String, session_id UInt64, ${visitColumnsOnEvents.map(([c]) => `${c} String`).join(', ')})` +
      ` PRIMARY KEY site, session_id SOURCE(CLICKHOUSE(QUERY '${source}')) LAYOUT(COMPLEX_KEY_HASHED_ARRAY()) LIFETIME(0)`,
    `ALTER TABLE ${qualified(t, storageName(t, 'events'))}${onCluster(t)} UPDATE ${sets} IN PARTITION ${month} WHERE ${allEmpty}` +
      ' SETTINGS mutations_sync = 2, allow_nondeterministic_mutations = 1',
    `DROP DICTIONARY IF EXISTS ${dictionary}${onCluster(t)}`,
  ];
}

/**
 * Migration 15, projection `by_page_visit` of `events`, in place of `by_page`: the same columns
 * plus the visit attributes of migration 14, in the same order. The dashboard's sources, channels
 * and UTM panels for one page (a click on a page row) then read that page's granules for the
 * visit attribute too, instead of every event's page and attribute. Built for existing parts in
 * the background (MATERIALIZE); a part without it is read from its columns, so answers stay exact.
 * Runs after migration 14's back-fill, so the back-fill does not rebuild it.
 */
export function eventsByPageVisit(t: MigrationTarget): string[] {
  const events = `${qualified(t, storageName(t, 'events'))}${onCluster(t)}`;
  const visit = visitColumnsOnEvents.map(([c]) => `session_${c}`).join(', ');
  return [
    `ALTER TABLE ${events} DROP PROJECTION IF EXISTS by_page`,
    `ALTER TABLE ${events} ADD PROJECTION IF NOT EXISTS by_page_visit (SELECT site, timestamp, name, pathname, session_id, visitor_id, ${visit} ORDER BY site, pathname, timestamp)`,
    `ALTER TABLE ${events} MATERIALIZE PROJECTION by_page_visit`,
  ];
}

/**
 * Migration 16: the traffic source columns become `LowCardinality(String)`: `source` of events
 * and sessions, and the visit's copy on events (`session_source`). A source is one of a few
 * hundred names (search engines, social sites, referring domains), and a filter or breakdown by
 * it then compares dictionary positions instead of strings: at 10M events, the events of one
 * source were counted in 86–96 ms instead of 163–218, and pages for that source took 347–401 ms
 * (medians of three rounds) instead of 430–518, the same data before and after. Only the type
 * changes: existing parts are converted by a background mutation (which also rebuilds
 * `by_page_visit`), and a part not converted yet is read as it is, so answers stay the same
 * throughout. On a cluster the shards' tables and the distributed ones change.
 */
export function sourcesLowCardinality(t: MigrationTarget): string[] {
  const columns = { events: ['source', 'session_source'], sessions: ['source'] };
  return Object.entries(columns).flatMap(([table, names]) => {
    const alter = names.map((c) => `MODIFY COLUMN ${c} LowCardinality(String)`).join(', ');
    const tables = t.cluster === undefined ? [table] : [storageName(t, table), table];
    return tables.map((name) => `ALTER TABLE ${qualified(t, name)}${onCluster(t)} ${alter}`);
  });
}

/**
 * Migration 17: `events.timestamp` is compressed with `Delta(8), LZ4` instead of
 * `Delta(8), ZSTD(1)`. Every raw read of a range (the one-filter breakdowns, the open salt days)
 * decodes the timestamps of every granule it reads, and LZ4 decodes several times faster: at 10M
 * events, the same parts merged alike, pages for a country took 178 ms instead of 226–275
 * (medians), sources for a page 204 instead of 237, a goal by source 62 instead of 88, pages for a
 * source 288 instead of 317. The column takes twice the space (35 MiB instead of 18 per 10M
 * events), small beside the rest of a row.
 *
 * Only the codec changes, in the table's metadata: new parts and every merge write LZ4, and a part
 * written before keeps ZSTD until a merge rewrites it (the key column cannot be rewritten by a
 * mutation), with the same answers either way. `OPTIMIZE TABLE events PARTITION <yyyymm> FINAL`
 * converts a month at once (see README, Upgrading). On a cluster the shards' tables change; a
 * Distributed table stores nothing.
 */
export function eventsTimestampLz4(t: MigrationTarget): string[] {
  return [`ALTER TABLE ${qualified(t, storageName(t, 'events'))}${onCluster(t)} MODIFY COLUMN timestamp DateTime64(3, 'UTC') CODEC(Delta(8), LZ4)`];
}
