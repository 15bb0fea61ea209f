import { describe, expect, it } from 'vitest';
import {
  eventRollupDimensions,
  latestVersion,
  renderBootstrap,
  renderMigrations,
  renderRetentionChange,
  retentionTables,
  sessionRollupDimensions,
} from './index.ts';

const single = { database: 'farol', retentionDays: 395 };
const cluster = { ...single, cluster: 'analytics-eu.1' };

function allSql(target: typeof single | typeof cluster): string[] {
  return [...renderBootstrap(target), ...renderMigrations(target).flatMap((m) => m.statements)];
}

function statementFor(sql: string[], start: string): string {
  const found = sql.find((s) => s.startsWith(start));
  if (found === undefined) throw new Error(`no statement starting with ${start}`);
  return found;
}

describe('renderMigrations', () => {
  it('numbers migrations 1..latest without gaps', () => {
    const versions = renderMigrations(single).map((m) => m.version);
    expect(versions).toEqual(Array.from({ length: latestVersion }, (_, i) => i + 1));
  });

  it('is idempotent SQL: every statement creates only if missing', () => {
    for (const sql of allSql(single)) {
      // Migration 12 drops each rollup view to create it again with its additive query; 13
      // materializes a projection, which builds the same parts again when run twice; 15 replaces it;
      // 16 changes a column's type and 17 a column's codec, which a second run leaves as they are.
      expect(sql).toMatch(
        /^(CREATE (DATABASE|TABLE|MATERIALIZED VIEW) IF NOT EXISTS |DROP VIEW IF EXISTS \S+_mv$|ALTER TABLE \S+ (ADD COLUMN IF NOT EXISTS|UPDATE salt_day = |DROP COLUMN IF EXISTS visitors$|ADD PROJECTION IF NOT EXISTS |MATERIALIZE PROJECTION by_page(_visit)?$|DROP PROJECTION IF EXISTS by_page$|(MODIFY COLUMN \w+ LowCardinality\(String\)(, |$))+|MODIFY COLUMN timestamp DateTime64\(3, 'UTC'\) CODEC\(Delta\(8\), LZ4\)$))/,
      );
    }
  });

  it("back-fills migration 14 a month at a time: a fresh dictionary, an update of that month's empty rows", () => {
    const m14 = renderMigrations(single).find((m) => m.version === 14);
    const sql = m14?.monthly?.(202603) ?? [];
    expect(sql).toHaveLength(4);
    expect(sql[0]).toBe('DROP DICTIONARY IF EXISTS farol.visit_attributes_backfill');
    // The month's sessions and the week before it (a session that began earlier still has events in it).
    expect(sql[1]).toContain("FROM farol.sessions WHERE sign = 1 AND start >= toDate(\\'2026-02-22\\') AND start < toDate(\\'2026-04-01\\')");
    expect(sql[2]).toMatch(/^ALTER TABLE farol\.events UPDATE session_referrer = dictGetOrDefault\(.* IN PARTITION 202603 WHERE session_referrer = '' AND .* AND session_utm_term = '' SETTINGS mutations_sync = 2/);
    expect(sql[3]).toBe(sql[0]);
    for (const bad of [202613, 202600, 19691, 1.5, Number.NaN]) expect(() => m14?.monthly?.(bad)).toThrow(/month/);
  });

  it('creates each view after the tables it reads and writes', () => {
    const sql = allSql(single);
    const index = (start: string): number => sql.findIndex((s) => s.startsWith(start));
    for (const [view, source, target] of [
      ['rollup_hourly_mv', 'events', 'rollup_hourly'],
      ['rollup_daily_mv', 'events', 'rollup_daily'],
      ['sessions_hourly_mv', 'sessions', 'sessions_hourly'],
      ['sessions_daily_mv', 'sessions', 'sessions_daily'],
    ] as const) {
      const at = index(`CREATE MATERIALIZED VIEW IF NOT EXISTS farol.${view}\n`);
      expect(at).toBeGreaterThan(index(`CREATE TABLE IF NOT EXISTS farol.${source}\n`));
      expect(at).toBeGreaterThan(index(`CREATE TABLE IF NOT EXISTS farol.${target}\n`));
    }
  });

  it('rejects names that would not be plain SQL identifiers', () => {
    expect(() => renderMigrations({ ...single, database: 'farol; DROP' })).toThrow(/database/);
    expect(() => renderMigrations({ ...single, cluster: "c' --" })).toThrow(/cluster/);
    expect(() => renderMigrations({ ...single, retentionDays: 0 })).toThrow(/retentionDays/);
    expect(() => renderBootstrap({ ...single, retentionDays: 1.5 })).toThrow(/retentionDays/);
  });
});

describe('single node', () => {
  const sql = allSql(single);

  it('creates the database and the migrations record first', () => {
    expect(sql[0]).toBe('CREATE DATABASE IF NOT EXISTS farol');
    expect(sql[1]).toContain('CREATE TABLE IF NOT EXISTS farol.schema_migrations');
    expect(sql[1]).toContain('ENGINE = ReplacingMergeTree(applied_at)');
  });

  it('keeps retried insert blocks on every MergeTree that receives them', () => {
    for (const name of ['events', 'sessions', 'rollup_hourly', 'rollup_daily', 'sessions_hourly', 'sessions_daily']) {
      expect(statementFor(sql, `CREATE TABLE IF NOT EXISTS farol.${name}\n`)).toContain(
        'SETTINGS non_replicated_deduplication_window = 10000',
      );
    }
  });

  it('orders events by site and time, partitions by month and expires them', () => {
    const events = statementFor(sql, 'CREATE TABLE IF NOT EXISTS farol.events\n');
    expect(events).toContain('ENGINE = MergeTree\n');
    expect(events).toContain('PARTITION BY toYYYYMM(timestamp)');
    expect(events).toContain('ORDER BY (site, toDate(timestamp), name, timestamp)');
    expect(events).toContain('TTL toDateTime(timestamp) + toIntervalDay(395)');
    expect(events).toContain("timestamp DateTime64(3, 'UTC')");
    expect(events).toContain('props Map(String, String)');
    expect(events).toContain('revenue_amount Nullable(Decimal64(6))');
  });

  it('collapses sessions by sign and version', () => {
    const sessions = statementFor(sql, 'CREATE TABLE IF NOT EXISTS farol.sessions\n');
    expect(sessions).toContain('ENGINE = VersionedCollapsingMergeTree(sign, version)');
    expect(sessions).toContain('ORDER BY (site, toDate(start), session_id)');
    expect(sessions).toContain('TTL toDateTime(start) + toIntervalDay(395)');
  });

  it('feeds rollups with exact unique counts and signed session sums', () => {
    const events = statementFor(sql, 'CREATE MATERIALIZED VIEW IF NOT EXISTS farol.rollup_hourly_mv');
    expect(events).toContain('TO farol.rollup_hourly\n');
    expect(events).toContain('FROM farol.events\n');
    expect(events).toContain('uniqExactState(visitor_id)');
    expect(events).not.toMatch(/\buniq(State|Combined)/);
    for (const dim of Object.keys(eventRollupDimensions)) expect(events).toContain(`('${dim}', `);

    const sessions = statementFor(sql, 'CREATE MATERIALIZED VIEW IF NOT EXISTS farol.sessions_daily_mv');
    expect(sessions).toContain('toDate(start) AS bucket');
    expect(sessions).toContain('sum(sign) AS visits');
    expect(sessions).toContain('sum(sign * is_bounce) AS bounces');
    expect(sessions).toContain('sum(sign * duration) AS duration');
    for (const dim of Object.keys(sessionRollupDimensions)) expect(sessions).toContain(`('${dim}', `);

    const table = statementFor(sql, 'CREATE TABLE IF NOT EXISTS farol.rollup_daily\n');
    expect(table).toContain('ENGINE = AggregatingMergeTree\n');
    expect(table).toContain('visitors AggregateFunction(uniqExact, UInt64)');
    expect(table).toContain('ORDER BY (site, dim, bucket, value)');
    expect(table).not.toContain('TTL');
  });

  it('keeps the control plane in replacing tables and no salts', () => {
    for (const name of ['accounts', 'sites', 'members', 'tokens', 'experiments']) {
      expect(statementFor(sql, `CREATE TABLE IF NOT EXISTS farol.${name}\n`)).toContain(
        'ENGINE = ReplacingMergeTree(updated_at, deleted)',
      );
    }
    // `salt_day` names a day, never a salt's bytes.
    expect(sql.join('\n')).not.toMatch(/salt(?!_day)|checkpoint/i);
  });

  it('changes retention with ALTER … MODIFY TTL', () => {
    expect(retentionTables.map((t) => renderRetentionChange({ ...single, retentionDays: 30 }, t))).toEqual([
      'ALTER TABLE farol.events MODIFY TTL toDateTime(timestamp) + toIntervalDay(30)',
      'ALTER TABLE farol.sessions MODIFY TTL toDateTime(start) + toIntervalDay(30)',
      'ALTER TABLE farol.dead_letters MODIFY TTL toDateTime(time) + toIntervalDay(30)',
    ]);
  });
});

describe('cluster', () => {
  const sql = allSql(cluster);

  it('runs every statement ON CLUSTER', () => {
    for (const s of sql) expect(s.split('\n')[0]).toContain(" ON CLUSTER 'analytics-eu.1'");
  });

  it('stores sharded tables in Replicated _local tables behind Distributed ones', () => {
    for (const [name, engine, args] of [
      ['events', 'ReplicatedMergeTree', ''],
      ['sessions', 'ReplicatedVersionedCollapsingMergeTree', ', sign, version'],
      ['rollup_hourly', 'ReplicatedAggregatingMergeTree', ''],
      ['sessions_daily', 'ReplicatedAggregatingMergeTree', ''],
      ['dead_letters', 'ReplicatedMergeTree', ''],
    ] as const) {
      const local = statementFor(sql, `CREATE TABLE IF NOT EXISTS farol.${name}_local ON CLUSTER`);
      expect(local).toContain(`ENGINE = ${engine}('/clickhouse/tables/{shard}/{database}/${name}_local', '{replica}'${args})`);
      expect(local).toContain('SETTINGS replicated_deduplication_window = 10000');
      expect(local).not.toContain('non_replicated_deduplication_window');
      const distributed = statementFor(sql, `CREATE TABLE IF NOT EXISTS farol.${name} ON CLUSTER`);
      expect(distributed).toContain(`AS farol.${name}_local`);
      expect(distributed).toContain(`ENGINE = Distributed('analytics-eu.1', 'farol', '${name}_local', `);
    }
    expect(statementFor(sql, 'CREATE TABLE IF NOT EXISTS farol.events ON CLUSTER')).toContain('cityHash64(site, visitor_id))');
  });

  it('points materialized views from local table to local table', () => {
    const view = statementFor(sql, 'CREATE MATERIALIZED VIEW IF NOT EXISTS farol.sessions_hourly_mv ON CLUSTER');
    expect(view).toContain('TO farol.sessions_hourly_local\n');
    expect(view).toContain('FROM farol.sessions_local\n');
  });

  it('replicates the control plane to every node without sharding', () => {
    const tokens = statementFor(sql, 'CREATE TABLE IF NOT EXISTS farol.tokens ON CLUSTER');
    expect(tokens).toContain(
      "ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/all/{database}/tokens', '{shard}-{replica}', updated_at, deleted)",
    );
    expect(sql.some((s) => s.includes('farol.tokens_local'))).toBe(false);
  });

  it('adds the page projection to the local events table, which holds the rows', () => {
    const projection = renderMigrations(cluster).find((m) => m.version === 13)?.statements ?? [];
    expect(projection).toEqual([
      "ALTER TABLE farol.events_local ON CLUSTER 'analytics-eu.1' ADD PROJECTION IF NOT EXISTS by_page (SELECT site, timestamp, name, pathname, session_id, visitor_id ORDER BY site, pathname, timestamp)",
      "ALTER TABLE farol.events_local ON CLUSTER 'analytics-eu.1' MATERIALIZE PROJECTION by_page",
    ]);
  });

  it('adds the visit attributes to both events tables and their projection to the local one, back-filled on each shard', () => {
    const m = renderMigrations(cluster);
    const columns = m.find((x) => x.version === 14)?.statements ?? [];
    expect(columns).toHaveLength(2);
    expect(columns[0]).toMatch(/^ALTER TABLE farol\.events_local ON CLUSTER 'analytics-eu\.1' ADD COLUMN IF NOT EXISTS session_referrer String DEFAULT '', .*session_channel LowCardinality\(String\)/);
    expect(columns[1]).toMatch(/^ALTER TABLE farol\.events ON CLUSTER 'analytics-eu\.1' ADD COLUMN IF NOT EXISTS session_referrer /);
    const backfill = m.find((x) => x.version === 14)?.monthly?.(202612) ?? [];
    expect(backfill[1]).toContain("CREATE DICTIONARY farol.visit_attributes_backfill ON CLUSTER 'analytics-eu.1' ");
    expect(backfill[1]).toContain('FROM farol.sessions_local WHERE');
    expect(backfill[2]).toMatch(/^ALTER TABLE farol\.events_local ON CLUSTER 'analytics-eu\.1' UPDATE /);
    const projection = m.find((x) => x.version === 15)?.statements ?? [];
    expect(projection).toEqual([
      "ALTER TABLE farol.events_local ON CLUSTER 'analytics-eu.1' DROP PROJECTION IF EXISTS by_page",
      "ALTER TABLE farol.events_local ON CLUSTER 'analytics-eu.1' ADD PROJECTION IF NOT EXISTS by_page_visit (SELECT site, timestamp, name, pathname, session_id, visitor_id, session_referrer, session_source, session_channel, session_utm_source, session_utm_medium, session_utm_campaign, session_utm_content, session_utm_term ORDER BY site, pathname, timestamp)",
      "ALTER TABLE farol.events_local ON CLUSTER 'analytics-eu.1' MATERIALIZE PROJECTION by_page_visit",
    ]);
  });

  it('changes the source columns of the shards’ tables and of the distributed ones', () => {
    const sql = renderMigrations(cluster).find((x) => x.version === 16)?.statements ?? [];
    const events = 'MODIFY COLUMN source LowCardinality(String), MODIFY COLUMN session_source LowCardinality(String)';
    expect(sql).toEqual([
      `ALTER TABLE farol.events_local ON CLUSTER 'analytics-eu.1' ${events}`,
      `ALTER TABLE farol.events ON CLUSTER 'analytics-eu.1' ${events}`,
      "ALTER TABLE farol.sessions_local ON CLUSTER 'analytics-eu.1' MODIFY COLUMN source LowCardinality(String)",
      "ALTER TABLE farol.sessions ON CLUSTER 'analytics-eu.1' MODIFY COLUMN source LowCardinality(String)",
    ]);
  });

  it('changes the timestamp codec of the shards’ events tables only (a Distributed table stores nothing)', () => {
    expect(renderMigrations(cluster).find((x) => x.version === 17)?.statements).toEqual([
      "ALTER TABLE farol.events_local ON CLUSTER 'analytics-eu.1' MODIFY COLUMN timestamp DateTime64(3, 'UTC') CODEC(Delta(8), LZ4)",
    ]);
  });

  it('alters the TTL of the local tables', () => {
    const first = retentionTables[0];
    expect(renderRetentionChange(cluster, first)).toBe(
      "ALTER TABLE farol.events_local ON CLUSTER 'analytics-eu.1' MODIFY TTL toDateTime(timestamp) + toIntervalDay(395)",
    );
  });
});
