import { createEverywhereTable, type MigrationTarget } from './ddl.ts';

/**
 * Control-plane tables: accounts, sites, members, API tokens, experiments.
 *
 * They are small and change rarely, so each is a ReplacingMergeTree(updated_at, deleted): an
 * update or a deletion is a new row with a later `updated_at` (deleted = 1), and readers use
 * `FINAL` to see the latest state, dropping deleted rows. No ALTER … UPDATE mutations.
 *
 * Not here, on purpose:
 * - salts: the visitor-hash salts live only on the collector's disk and are deleted after 48 h
 *   so that nobody can link an id back to an IP; a copy in ClickHouse would outlive them.
 * - processor checkpoints: they live with the hub (local log, or Azure Blob), next to the offsets
 *   they describe.
 */

const replacing = { family: 'ReplacingMergeTree', args: ['updated_at', 'deleted'] };

const audit = `  created_at DateTime64(3, 'UTC') DEFAULT now64(3),
  updated_at DateTime64(3, 'UTC') DEFAULT now64(3),
  deleted UInt8 DEFAULT 0`;

/** CREATE statements for the control-plane tables. */
export function controlPlaneTables(t: MigrationTarget): string[] {
  return [
    createEverywhereTable(t, {
      name: 'accounts',
      columns: `  id String,\n  name String,\n${audit}`,
      engine: replacing,
      clauses: 'ORDER BY id',
    }),
    createEverywhereTable(t, {
      name: 'sites',
      // timezone: IANA name used for date ranges and day/week/month buckets.
      // respect_dnt: drop events from browsers sending DNT or GPC.
      columns: `  domain String,
  account_id String,
  timezone String DEFAULT 'UTC',
  respect_dnt UInt8 DEFAULT 0,
${audit}`,
      engine: replacing,
      clauses: 'ORDER BY domain',
    }),
    createEverywhereTable(t, {
      name: 'members',
      // sites: the grant's scope, [] = the whole account.
      columns: `  id String,
  account_id String,
  name String,
  role LowCardinality(String),
  sites Array(String),
${audit}`,
      engine: replacing,
      clauses: 'ORDER BY id',
    }),
    createEverywhereTable(t, {
      name: 'tokens',
      // hash: hex SHA-256 of the token; the token itself is shown once and never stored.
      // prefix: its first characters, so a listing can tell tokens apart. Revoked = deleted.
      columns: `  hash String,
  member_id String,
  account_id String,
  name String,
  prefix String,
${audit}`,
      engine: replacing,
      clauses: 'ORDER BY hash',
    }),
    createEverywhereTable(t, {
      name: 'experiments',
      // definition: the validated JSON of variations, DOM changes, goal and traffic split.
      columns: `  id String,
  site String,
  name String,
  status LowCardinality(String),
  definition String,
${audit}`,
      engine: replacing,
      clauses: 'ORDER BY (site, id)',
    }),
  ];
}

/**
 * Migration 6: goals per site (the names `event:goal` reports: custom event names or pageview
 * paths). Same replacing pattern as the other control-plane tables.
 */
export function goalsTable(t: MigrationTarget): string[] {
  return [
    createEverywhereTable(t, {
      name: 'goals',
      columns: `  site String,\n  name String,\n${audit}`,
      engine: replacing,
      clauses: 'ORDER BY (site, name)',
    }),
  ];
}

/**
 * Migration 7: what keeps experiments from reaching beyond a site.
 * - `redirect_hosts`: hosts an owner allows a site's experiments to redirect to, besides the
 *   site's own domain and its subdomains (one row per site, latest wins).
 * - `domain_reservations`: a deleted site's domain stays reserved to the account that held it
 *   until `until`, so another account cannot register it and receive the old tracker's traffic
 *   or serve it experiments. Released early = deleted.
 */
export function experimentBoundaryTables(t: MigrationTarget): string[] {
  return [
    createEverywhereTable(t, {
      name: 'redirect_hosts',
      columns: `  site String,\n  hosts Array(String),\n${audit}`,
      engine: replacing,
      clauses: 'ORDER BY site',
    }),
    createEverywhereTable(t, {
      name: 'domain_reservations',
      columns: `  domain String,\n  account_id String,\n  until DateTime64(3, 'UTC'),\n${audit}`,
      engine: replacing,
      clauses: 'ORDER BY domain',
    }),
  ];
}

/**
 * Migration 9 (#14): people sign in.
 * - `identities`: how a member signs in, one row per member: an email (lower-case) with an
 *   Argon2id password hash (PHC string) and an optional TOTP secret, and/or an OpenID Connect
 *   identity (issuer + subject).
 * - `browser_sessions`: `hash` is the SHA-256 of the cookie's random id (never stored itself);
 *   `id` is a public name for the audit trail and listings. Revoked = deleted.
 * - `invitations`: `hash` of the single-use link's secret; claimed or withdrawn = deleted.
 * - `reset_links`: one-time password-reset links, by the hash of their secret; used = deleted.
 * - `audit_log`: append-only, who (member, or `operator` for the CLI) did what from which session
 *   or token (their public id / display prefix), never an address or a secret; rows older than
 *   FAROL_AUDIT_RETENTION_DAYS are deleted by the API (control/people.ts `pruneAudit`).
 */
export function signInTables(t: MigrationTarget): string[] {
  return [
    createEverywhereTable(t, {
      name: 'identities',
      columns: `  member_id String,
  account_id String,
  email String,
  password_hash String,
  totp_secret String,
  oidc_issuer String,
  oidc_subject String,
${audit}`,
      engine: replacing,
      clauses: 'ORDER BY member_id',
    }),
    createEverywhereTable(t, {
      name: 'browser_sessions',
      columns: `  hash String,
  id String,
  member_id String,
  account_id String,
  method LowCardinality(String),
  expires_at DateTime64(3, 'UTC'),
  last_seen_at DateTime64(3, 'UTC'),
${audit}`,
      engine: replacing,
      clauses: 'ORDER BY hash',
    }),
    createEverywhereTable(t, {
      name: 'invitations',
      columns: `  id String,
  hash String,
  account_id String,
  email String,
  role LowCardinality(String),
  sites Array(String),
  invited_by String,
  expires_at DateTime64(3, 'UTC'),
${audit}`,
      engine: replacing,
      clauses: 'ORDER BY id',
    }),
    createEverywhereTable(t, {
      name: 'reset_links',
      columns: `  hash String,
  member_id String,
  account_id String,
  expires_at DateTime64(3, 'UTC'),
${audit}`,
      engine: replacing,
      clauses: 'ORDER BY hash',
    }),
    createEverywhereTable(t, {
      name: 'audit_log',
      columns: `  at DateTime64(3, 'UTC'),
  account_id String,
  actor String,
  via LowCardinality(String),
  via_id String,
  action LowCardinality(String),
  target String,
  detail String`,
      engine: { family: 'MergeTree' },
      clauses: 'ORDER BY (account_id, at)',
    }),
  ];
}

/**
 * Memberships linked to a person (#14's account switcher): `person_id` is the member whose
 * identity signs in (its home membership), `member_id` another account's member the same person
 * became by accepting that account's invitation while signed in. Only that action writes a link
 * (never a matching email); removing either member deletes it. A browser session switched to a
 * linked membership acts as that member (its `browser_sessions` row names it).
 */
export function personLinksTable(t: MigrationTarget): string[] {
  return [
    createEverywhereTable(t, {
      name: 'person_links',
      columns: `  person_id String,
  member_id String,
  account_id String,
${audit}`,
      engine: replacing,
      clauses: 'ORDER BY (person_id, member_id)',
    }),
  ];
}
