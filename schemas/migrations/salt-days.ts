import { createShardedTable, onCluster, qualified, storageName, type MigrationTarget } from './ddl.ts';
import { eventRollupDimensions, sessionRollupDimensions } from './rollups.ts';

/**
 * Migration 11: the salt day, and the exact unique-visitor tables of closed salt days.
 *
 * A visitor id is the hash of day D's salt: handed out during UTC day D, carried into D+1 by a
 * visit that spans midnight, and never again (the salt is deleted at D+2 00:00 UTC). So ids of
 * different salt days never coincide, and the distinct visitors of any range are the sum, over
 * salt days, of the distinct ids of that salt day seen in the range.
 *
 * `salt_day` (events and sessions) is the UTC day of the salt that produced `visitor_id`: the
 * collector knows it when hashing; rows written before it existed take it from the data (below).
 *
 * `salt_day_visitors` holds, per (site, side, dimension, value, salt day), how many visitors were
 * seen in each set of hours of the salt day's 48-hour life: `hours` has bit i set when the visitor
 * was seen (event side: had an event; session side: started a session) in hour i after D 00:00
 * UTC. A visitor is in exactly one row per value, so the salt day's distinct visitors in any range
 * of whole UTC hours = Σ visitors of the rows whose `hours` meets the range's hours: a salt day
 * the range covers whole is a plain sum, one it cuts needs no raw event. Rows are written by the
 * closing job (processor/salt-days.ts) once the salt day's life is over, under a generation `gen`;
 * `salt_day_closes` records the generations that are complete. Readers take the latest complete
 * generation of each (site, salt day): a job killed half-way leaves rows nobody reads.
 *
 * `salt_day_segments` is the same count cut along a site zone's local days instead of UTC hours:
 * a salt day's 48 hours meet at most three local dates of any real zone (L0, the local date of
 * D 00:00 UTC, then L0+1 and L0+2), and a range of whole local days meets a contiguous run of
 * them. So one row per (site, side, dimension, value, salt day, zone) holds the visitors seen on
 * each run: `v1`, `v2`, `v4` on L0, L0+1, L0+2 alone, `v3` on L0 or L0+1, `v6` on L0+1 or L0+2,
 * `v7` on any (the column's number is the bit set of the dates). A dashboard range of local days
 * reads one row per salt day and value, however many visitors there were; `salt_day_closes.zones`
 * names the zones a generation has rows for (a site's zone when it closed; a zone change
 * recomputes).
 */

/**
 * Dimensions of `salt_day_visitors`, per side: the rollups' own, so every breakdown the rollups
 * answer has its visitors here.
 */
export const saltDayEventDimensions = eventRollupDimensions;
export const saltDaySessionDimensions = sessionRollupDimensions;

/** Hours in a salt day's life (its own UTC day and the next). */
export const SALT_DAY_HOURS = 48;

function saltDayColumns(t: MigrationTarget, table: 'events' | 'sessions', from: string): string[] {
  const name = qualified(t, storageName(t, table));
  const statements = [
    `ALTER TABLE ${name}${onCluster(t)} ADD COLUMN IF NOT EXISTS salt_day Date DEFAULT toDate(${from}) AFTER visitor_id`,
  ];
  if (t.cluster !== undefined) {
    statements.push(
      `ALTER TABLE ${qualified(t, table)}${onCluster(t)} ADD COLUMN IF NOT EXISTS salt_day Date DEFAULT toDate(${from}) AFTER visitor_id`,
    );
  }
  return statements;
}

/**
 * Back-fill of rows stored before the salt day was: an id seen on UTC day X whose visitor also had
 * events on X−1 is X−1's id carried over midnight (an id of X's salt cannot exist on X−1);
 * every other row's salt day is its own day (the column's default). Events of one visitor live on
 * one shard, so the sub-query on the shard's own table sees them all. Re-running sets the same
 * values.
 */
function backfill(t: MigrationTarget, table: 'events' | 'sessions', from: string): string {
  const events = qualified(t, storageName(t, 'events'));
  return (
    `ALTER TABLE ${qualified(t, storageName(t, table))}${onCluster(t)} UPDATE salt_day = toDate(${from}) - 1` +
    ` WHERE (site, visitor_id, toDate(${from}) - 1) IN (SELECT site, visitor_id, toDate(timestamp) FROM ${events})` +
    ' SETTINGS mutations_sync = 2'
  );
}

/** Migration 11: `salt_day` on the raw tables (back-filled), and the closed-salt-day tables. */
export function saltDayTables(t: MigrationTarget): string[] {
  return [
    ...saltDayColumns(t, 'events', 'timestamp'),
    ...saltDayColumns(t, 'sessions', 'start'),
    backfill(t, 'events', 'timestamp'),
    backfill(t, 'sessions', 'start'),
    ...createShardedTable(t, {
      name: 'salt_day_visitors',
      columns: `  site LowCardinality(String),
  side LowCardinality(String),
  dim LowCardinality(String),
  salt_day Date,
  value String,
  hours UInt64,
  gen UInt64,
  visitors UInt64`,
      engine: { family: 'MergeTree' },
      // dim before the day: a breakdown reads one dimension's rows over a range of salt days.
      clauses: 'PARTITION BY toYYYYMM(salt_day)\nORDER BY (site, side, dim, salt_day, gen, value, hours)',
      shardingKey: 'cityHash64(site, salt_day)',
    }),
    ...createShardedTable(t, {
      name: 'salt_day_segments',
      columns: `  site LowCardinality(String),
  side LowCardinality(String),
  dim LowCardinality(String),
  salt_day Date,
  tz LowCardinality(String),
  gen UInt64,
  value String,
  v1 UInt64,
  v2 UInt64,
  v4 UInt64,
  v3 UInt64,
  v6 UInt64,
  v7 UInt64`,
      engine: { family: 'MergeTree' },
      clauses: 'PARTITION BY toYYYYMM(salt_day)\nORDER BY (site, side, dim, tz, salt_day, gen, value)',
      shardingKey: 'cityHash64(site, salt_day)',
    }),
    // Provisional generations of open salt days (today's and yesterday's): segments of the rows
    // before a watermark; readers add the visitors seen since (see processor/salt-days.ts).
    // `event_rows`: the events of any salt day in [salt_day 00:00 UTC, watermark) when it was made.
    ...createShardedTable(t, {
      name: 'salt_day_provisional',
      columns: `  site LowCardinality(String),
  salt_day Date,
  gen UInt64,
  watermark DateTime64(3, 'UTC'),
  session_watermark DateTime64(3, 'UTC'),
  event_rows UInt64,
  zones Array(String),
  made_at DateTime64(3, 'UTC') DEFAULT now64(3)`,
      engine: { family: 'ReplacingMergeTree', args: ['gen'] },
      clauses: 'ORDER BY (site, salt_day)',
      shardingKey: 'cityHash64(site, salt_day)',
    }),
    ...createShardedTable(t, {
      name: 'salt_day_closes',
      columns: `  site LowCardinality(String),
  salt_day Date,
  gen UInt64,
  event_rows UInt64,
  session_rows UInt64,
  zones Array(String),
  closed_at DateTime64(3, 'UTC') DEFAULT now64(3)`,
      engine: { family: 'ReplacingMergeTree', args: ['gen'] },
      clauses: 'ORDER BY (site, salt_day)',
      shardingKey: 'cityHash64(site, salt_day)',
    }),
  ];
}
