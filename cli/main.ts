import { ConfigError, flagsToEnv, loadConfig, type Config } from '../schemas/config.ts';
import { secretValues } from '../schemas/secrets.ts';
import { createLogger, hideInLogs } from '../lib/log.ts';
import { tightenDataDir } from '../lib/private-dir.ts';
import { ADMIN_FLAGS } from './admin.ts';

/**
 * The `farol` entry: parses the subcommand and configuration, then calls one `main`.
 * Returns the process exit code.
 */
const USAGE = `usage: farol <command> [--flags]

commands:
  start       all-in-one: collector + hub + processor + API on ClickHouse (embedded chDB by default)
  collector   ingest only; publishes to the configured hub
  processor   consumes the hub, sessionizes, writes ClickHouse
  api         reporting API + dashboard alone (start serves them too)
  migrate     applies the ClickHouse schema (idempotent, versioned)
  demo        loads 30 days of demo traffic for demo.example.com (idempotent; while start is stopped)
  backup <dir>   consistent backup of the embedded store (of a running start too; salts never)
  restore <dir>  restores a backup into an empty data dir (FAROL_DATA_DIR)
  sites, members, tokens, accounts
              admin: add sites, grant roles, issue API tokens (printed once); see below
  help        this text

Configuration comes from FAROL_* environment variables or the equivalent --flags
(e.g. --port 8080 --data-dir ./data --trust-proxy 1); see README.md.

  farol sites add <domain> [--timezone Europe/Lisbon] | sites list | sites remove <domain>
  farol members add <name> --role owner|admin|viewer [--sites a.com,b.com] | members list | members remove <id>
  farol members reset <id> [--email you@example.com]   a one-time password link (an owner locked out)
  farol tokens create --member <id> [--name ci] | tokens list | tokens revoke <prefix>
  farol accounts add <name> | accounts list          (--account <id>: another account than the first)`;

/** A command: its positional arguments, and its own flags' values (the admin commands'). */
type Command = (config: Config, args: string[], flags: Record<string, string>) => Promise<number>;

const ADMIN_GROUPS = ['sites', 'members', 'tokens', 'accounts'];

// Each command loads only its own modules: the embedded engine alone adds ~150 MB of RSS, which
// a collector that never opens it must not carry (the collector's RSS target is < 300 MB).
const commands: Record<string, Command> = {
  start: async (config) => (await import('./start.ts')).runStart(config),
  collector: async (config) => (await import('../ingest/main.ts')).runCollector(config),
  processor: async (config) => (await import('../processor/main.ts')).runProcessor(config),
  api: async (config) => (await import('../api/main.ts')).runApi(config),
  migrate: runMigrate,
  demo: async (config) => (await import('./demo.ts')).runDemo(config),
  backup: async (config, args) => (await import('./backup.ts')).runBackup(config, args),
  restore: async (config, args) => (await import('./backup.ts')).runRestore(config, args),
  ...Object.fromEntries(ADMIN_GROUPS.map((group) => [group, admin(group)])),
};

/** The commands `farol` knows (the deploy kit's validation checks its files name only these). */
export const commandNames = (): string[] => Object.keys(commands);

function admin(group: string): Command {
  return async (config, args, flags) => (await import('./admin.ts')).runAdmin(group, config, args, flags);
}

async function runMigrate(config: Config): Promise<number> {
  const { migrationTarget, openConfiguredStore } = await import('../wiring/store.ts');
  const { migrate } = await import('../store/migrate.ts');
  const store = await openConfiguredStore(config);
  try {
    const applied = await migrate(store, migrationTarget(config));
    process.stdout.write(applied.length ? `applied migrations ${applied.join(', ')}\n` : 'schema is up to date\n');
    return 0;
  } finally {
    await store.close();
  }
}

export async function main(argv: string[]): Promise<number> {
  // Everything this process creates (the embedded engine's files included) is private to the
  // service user: the data dir holds salts, the hub log and every stored event.
  process.umask(0o077);
  // A crash is logged like any error (scrubbed of secrets), not printed by Node, whose dump shows
  // an error's every property (an SDK's TypeError keeps the connection string it failed on).
  process.on('uncaughtException', (err) => {
    createLogger('error').error({ err }, 'farol crashed');
    // Collector threads close their connections first: uWS aborts the process (134) when it
    // exits with a thread's sockets open. Bounded; a second crash meanwhile exits at once.
    process.removeAllListeners('uncaughtException').on('uncaughtException', () => process.exit(1));
    setTimeout(() => process.exit(1), 10_000);
    void import('../ingest/thread-pool.ts')
      .then((threads) => threads.closeThreadsNow())
      .finally(() => process.exit(1));
  });
  const [name, ...rest] = argv;
  if (!name || name === 'help' || name === '--help' || name === '-h') {
    process.stdout.write(`${USAGE}\n`);
    return name ? 0 : 1;
  }
  const command = Object.hasOwn(commands, name) ? commands[name] : undefined;
  if (!command) {
    process.stderr.write(`farol: unknown command "${name}"\n\n${USAGE}\n`);
    return 1;
  }
  let config: Config;
  let parsed: ReturnType<typeof flagsToEnv>;
  try {
    parsed = flagsToEnv(rest, ADMIN_GROUPS.includes(name) ? ADMIN_FLAGS : []);
    const env = { ...process.env, ...parsed.env };
    // Before anything can fail and log: no log line may hold a configured secret.
    hideInLogs(secretValues(env));
    config = loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`farol ${name}: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  const log = createLogger(config.FAROL_LOG_LEVEL);
  try {
    const dir = await tightenDataDir(config.FAROL_DATA_DIR);
    if (dir.changed.length > 0) log.warn({ paths: dir.changed }, 'took group and other permissions off the data dir');
    if (dir.refused.length > 0) log.warn({ paths: dir.refused }, 'the data dir is open to other users and this user cannot change that');
    return await command(config, parsed.rest, parsed.flags);
  } catch (err) {
    // A setting found bad only when a command reads what it names (FAROL_TLS_CERT's file).
    if (err instanceof ConfigError) {
      process.stderr.write(`farol ${name}: ${err.message}\n`);
      return 2;
    }
    log.error({ err }, `farol ${name} failed`);
    return 1;
  }
}
