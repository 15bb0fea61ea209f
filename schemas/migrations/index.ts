import {
  checkTarget,
  createEverywhereTable,
  onCluster,
  qualified,
  retentionTtl,
  storageName,
  type MigrationTarget,
} from './ddl.ts';
import { controlPlaneTables, experimentBoundaryTables, goalsTable, personLinksTable, signInTables } from './control-plane.ts';
import {
  deadLettersTable,
  eventsByPage,
  eventsByPageVisit,
  eventsTable,
  eventsTimestampLz4,
  retentionTables,
  sessionsTable,
  sourcesLowCardinality,
  visitAttributesBackfill,
  visitAttributesOnEvents,
} from './raw-tables.ts';
import { additiveRollups, eventRollups, sessionRollups } from './rollups.ts';
import { saltDayTables } from './salt-days.ts';

/**
 * The ClickHouse schema as versioned migrations. Rendering is pure: the same
 * SQL runs on embedded chDB and on a server; a cluster name adds ON CLUSTER and
 * Replicated/Distributed engines. Every statement is idempotent (IF NOT EXISTS, or an update that sets the same values again), so a run that
 * stopped half-way is finished by the next one; `store/migrate.ts` applies and records them.
 *
 * Never edit a released migration: add a new version.
 */

export type { MigrationTarget } from './ddl.ts';
export {
  eventRollupDimensions,
  sessionRollupDimensions,
  rollupTables,
  type EventRollupDimension,
  type SessionRollupDimension,
} from './rollups.ts';
export { retentionTables, visitColumnsOnEvents } from './raw-tables.ts';
export { saltDayEventDimensions, saltDaySessionDimensions, SALT_DAY_HOURS } from './salt-days.ts';

/** One migration, rendered for a target. */
export interface RenderedMigration {
  version: number;
  name: string;
  statements: string[];
  /** Moves existing data after the statements, per events month (partition): see {@link Migration}. */
  monthly?: (month: number) => string[];
}

interface Migration {
  version: number;
  name: string;
  render: (t: MigrationTarget) => string[];
  /**
   * Statements run once per month (`YYYYMM`) that `events` holds rows of, after `render`'s: a
   * back-fill whose memory must follow one month of data. Idempotent like the others.
   */
  monthly?: (t: MigrationTarget, month: number) => string[];
}

// Views are created after their source and target tables: a view created first would miss rows.
const migrations: readonly Migration[] = [
  { version: 1, name: 'events', render: eventsTable },
  { version: 2, name: 'sessions', render: sessionsTable },
  { version: 3, name: 'event rollups', render: eventRollups },
  { version: 4, name: 'session rollups', render: sessionRollups },
  { version: 5, name: 'control plane', render: controlPlaneTables },
  { version: 6, name: 'goals', render: goalsTable },
  { version: 7, name: 'redirect hosts and domain reservations', render: experimentBoundaryTables },
  { version: 8, name: 'dead letters', render: deadLettersTable },
  { version: 9, name: 'sign-in: identities, sessions, invitations, audit', render: signInTables },
  { version: 10, name: 'sign-in: memberships linked to a person', render: personLinksTable },
  { version: 11, name: 'salt days and closed-salt-day visitors', render: saltDayTables },
  { version: 12, name: 'additive rollups (no unique-visitor states)', render: additiveRollups },
  { version: 13, name: 'events by page (projection for page filters)', render: eventsByPage },
  { version: 14, name: 'visit attributes on events', render: visitAttributesOnEvents, monthly: visitAttributesBackfill },
  { version: 15, name: 'events by page with visit attributes (projection)', render: eventsByPageVisit },
  { version: 16, name: 'traffic sources as LowCardinality', render: sourcesLowCardinality },
  { version: 17, name: 'events timestamp compressed with LZ4', render: eventsTimestampLz4 },
];

/** Name of the table that records applied migrations. */
export const migrationsTable = 'schema_migrations';

/**
 * Statements that must exist before migrations can be looked up: the database and the
 * migrations record. They are idempotent and run on every `migrate`.
 */
export function renderBootstrap(target: MigrationTarget): string[] {
  const t = checkTarget(target);
  return [
    `CREATE DATABASE IF NOT EXISTS ${t.database}${onCluster(t)}`,
    createEverywhereTable(t, {
      name: migrationsTable,
      columns: `  version UInt32,\n  name String,\n  applied_at DateTime64(3, 'UTC') DEFAULT now64(3)`,
      // Two processes migrating at once may both record a version; the replacing engine folds it.
      engine: { family: 'ReplacingMergeTree', args: ['applied_at'] },
      clauses: 'ORDER BY version',
    }),
  ];
}

/** Every migration rendered for `target`, in version order. */
export function renderMigrations(target: MigrationTarget): RenderedMigration[] {
  const t = checkTarget(target);
  return migrations.map((m) => {
    const monthly = m.monthly;
    return { version: m.version, name: m.name, statements: m.render(t), ...(monthly === undefined ? {} : { monthly: (month: number) => monthly(t, month) }) };
  });
}

/** The latest schema version this build knows. */
export const latestVersion = Math.max(...migrations.map((m) => m.version));

/**
 * `ALTER … MODIFY TTL` for one raw table, for when FAROL_RETENTION_DAYS changed after the table
 * was created (migrations render the TTL only once, at creation).
 */
export function renderRetentionChange(target: MigrationTarget, table: (typeof retentionTables)[number]): string {
  const t = checkTarget(target);
  return `ALTER TABLE ${qualified(t, storageName(t, table.name))}${onCluster(t)} MODIFY ${retentionTtl(t, table.column)}`;
}
