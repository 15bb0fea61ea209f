/**
 * DDL rendering helpers shared by the migrations: one place decides how a table is created on a
 * single node (embedded chDB or one server) and on a cluster (ON CLUSTER, Replicated + Distributed).
 * Only validated identifiers and integers reach the SQL text: these strings come from
 * configuration, never from a request.
 */

/** What a migration is rendered for. */
export interface MigrationTarget {
  /** Database holding every Farol table (FAROL_CLICKHOUSE_DATABASE). */
  database: string;
  /** Cluster name (FAROL_CLICKHOUSE_CLUSTER); unset on a single node. */
  cluster?: string | undefined;
  /** Raw-event TTL in days (FAROL_RETENTION_DAYS). */
  retentionDays: number;
}

const identifier = /^[A-Za-z_][A-Za-z0-9_]*$/;
// Cluster names come from the server's remote_servers config and may hold dots and dashes, so
// they are rendered as quoted string literals rather than identifiers.
const clusterName = /^[A-Za-z_][A-Za-z0-9_.-]*$/;

/** How many recent insert blocks a table remembers, to drop a retried insert. */
export const dedupWindow = 10_000;

/** Throws unless the target is safe to render; returns it for chaining. */
export function checkTarget(t: MigrationTarget): MigrationTarget {
  if (!identifier.test(t.database)) {
    throw new Error(`database "${t.database}" must be a plain identifier ([A-Za-z_][A-Za-z0-9_]*)`);
  }
  if (t.cluster !== undefined && !clusterName.test(t.cluster)) {
    throw new Error(`cluster "${t.cluster}" must match [A-Za-z_][A-Za-z0-9_.-]*`);
  }
  if (!Number.isInteger(t.retentionDays) || t.retentionDays < 1 || t.retentionDays > 100_000) {
    throw new Error(`retentionDays must be an integer from 1 to 100000, got ${t.retentionDays}`);
  }
  return t;
}

/** ` ON CLUSTER '<name>'` on a cluster, '' on a single node. */
export function onCluster(t: MigrationTarget): string {
  return t.cluster === undefined ? '' : ` ON CLUSTER '${t.cluster}'`;
}

/** `db.name`, the only way statements name tables, so they never depend on a current database. */
export function qualified(t: MigrationTarget, name: string): string {
  return `${t.database}.${name}`;
}

/** The MergeTree family member a table uses, with its engine arguments. */
export interface EngineSpec {
  /** `MergeTree`, `AggregatingMergeTree`, `VersionedCollapsingMergeTree`, … (without Replicated). */
  family: string;
  /** Engine arguments after the replication path and replica, e.g. `['sign', 'version']`. */
  args?: string[];
}

/** A table stored on every shard and read through a Distributed table on a cluster. */
export interface ShardedTable {
  name: string;
  columns: string;
  engine: EngineSpec;
  /** Everything after ENGINE = …: PARTITION BY, ORDER BY, TTL (without SETTINGS). */
  clauses: string;
  /** Distributed sharding key, e.g. `cityHash64(site, visitor_id)`. */
  shardingKey: string;
}

/**
 * Name of the table that physically holds the rows: `<name>_local` on a cluster (behind a
 * Distributed `<name>`), `<name>` on a single node. Materialized views read and write these.
 */
export function storageName(t: MigrationTarget, name: string): string {
  return t.cluster === undefined ? name : `${name}_local`;
}

function engineArgs(spec: EngineSpec, replication: string[]): string {
  const args = [...replication, ...(spec.args ?? [])];
  return args.length === 0 ? '' : `(${args.join(', ')})`;
}

function settingsClause(t: MigrationTarget): string {
  // Non-replicated MergeTree keeps no insert-block hashes unless told to: without this window a
  // retried insert (same insert_deduplication_token) would be stored twice. Replicated tables
  // remember blocks in Keeper; the window is set as wide so a replay after a long outage still
  // lands on remembered blocks.
  return t.cluster === undefined
    ? `\nSETTINGS non_replicated_deduplication_window = ${dedupWindow}`
    : `\nSETTINGS replicated_deduplication_window = ${dedupWindow}`;
}

/**
 * CREATE statements for a sharded table: one MergeTree table on a single node; on a cluster a
 * Replicated `<name>_local` on every node plus a Distributed `<name>` over it.
 */
export function createShardedTable(t: MigrationTarget, table: ShardedTable): string[] {
  const local = storageName(t, table.name);
  const replication =
    t.cluster === undefined ? [] : [`'/clickhouse/tables/{shard}/{database}/${local}'`, `'{replica}'`];
  const family = t.cluster === undefined ? table.engine.family : `Replicated${table.engine.family}`;
  const statements = [
    `CREATE TABLE IF NOT EXISTS ${qualified(t, local)}${onCluster(t)}\n(\n${table.columns}\n)\n` +
      `ENGINE = ${family}${engineArgs(table.engine, replication)}\n${table.clauses}${settingsClause(t)}`,
  ];
  if (t.cluster !== undefined) {
    statements.push(
      `CREATE TABLE IF NOT EXISTS ${qualified(t, table.name)}${onCluster(t)} AS ${qualified(t, local)}\n` +
        `ENGINE = Distributed('${t.cluster}', '${t.database}', '${local}', ${table.shardingKey})`,
    );
  }
  return statements;
}

/** A small table every node holds in full: control plane, migration records. */
export interface ReplicatedEverywhereTable {
  name: string;
  columns: string;
  engine: EngineSpec;
  clauses: string;
}

/**
 * CREATE statement for a table that is small and read everywhere. On a cluster it is replicated to
 * every node under one Keeper path (no `{shard}`), so each node answers lookups locally and no
 * Distributed table is needed; the replica name includes the shard so it stays unique cluster-wide.
 */
export function createEverywhereTable(t: MigrationTarget, table: ReplicatedEverywhereTable): string {
  const replication =
    t.cluster === undefined ? [] : [`'/clickhouse/tables/all/{database}/${table.name}'`, `'{shard}-{replica}'`];
  const family = t.cluster === undefined ? table.engine.family : `Replicated${table.engine.family}`;
  return (
    `CREATE TABLE IF NOT EXISTS ${qualified(t, table.name)}${onCluster(t)}\n(\n${table.columns}\n)\n` +
    `ENGINE = ${family}${engineArgs(table.engine, replication)}\n${table.clauses}`
  );
}

/** CREATE for a materialized view that reads inserts into `source` and writes `target` (storage names). */
export function createMaterializedView(
  t: MigrationTarget,
  view: { name: string; source: string; target: string; select: (from: string) => string },
): string {
  return (
    `CREATE MATERIALIZED VIEW IF NOT EXISTS ${qualified(t, view.name)}${onCluster(t)}\n` +
    `TO ${qualified(t, storageName(t, view.target))}\nAS ${view.select(qualified(t, storageName(t, view.source)))}`
  );
}

/** The TTL expression for raw tables keyed by `column`. */
export function retentionTtl(t: MigrationTarget, column: string): string {
  return `TTL toDateTime(${column}) + toIntervalDay(${t.retentionDays})`;
}
