import type { Config } from '../schemas/config.ts';
import { ApiError } from '../schemas/errors.ts';
import type { Store } from '../store/store.ts';
import type { ControlPlane } from '../control/control-plane.ts';

/**
 * `farol sites|members|tokens|accounts …`: the operator's admin commands. They act on the
 * configured store directly, as the operator (no token): on a ClickHouse server
 * (FAROL_CLICKHOUSE_URL) at any time; on the embedded engine only while no other process holds
 * the data dir (the embedded engine is single-process), which they say plainly.
 * They act on the first account (the bootstrap one) unless `--account <id>` names another.
 */

export const ADMIN_USAGE = `admin commands (on the configured store; embedded: only while farol start is stopped):
  farol sites add <domain> [--timezone Europe/Lisbon]
  farol sites list
  farol sites remove <domain>                        its domain stays reserved to the account (FAROL_DOMAIN_RESERVATION_DAYS)
  farol sites release <domain>                       ends a deleted domain's reservation early
  farol members add <name> --role owner|admin|viewer [--sites a.com,b.com]   (no --sites: every site)
  farol members list
  farol members remove <id>
  farol members reset <id> [--email you@example.com]  prints a one-time sign-in link that sets a new password
                                                     (and clears the second factor): an owner locked out
  farol tokens create --member <id> [--name ci]      prints the token once
  farol tokens list
  farol tokens revoke <prefix>
  farol accounts add <name>
  farol accounts list
  (--account <id> acts on another account than the first)`;

/** Flags of the admin commands; they win over the config flags (`--sites` is also FAROL_SITES). */
export const ADMIN_FLAGS = ['timezone', 'role', 'sites', 'member', 'name', 'account', 'email'] as const;

type Flag = (typeof ADMIN_FLAGS)[number];

class UsageError extends Error {}

function line(out: string[], ...cols: string[]): void {
  out.push(cols.join('  '));
}

/** Runs one admin command (its positional arguments and flags, read by cli/main.ts); returns the exit code. */
export async function runAdmin(
  group: string,
  config: Config,
  positional: string[],
  flags: Partial<Record<Flag, string>>,
  io: { out: (s: string) => void; err: (s: string) => void } = { out: (s) => process.stdout.write(s), err: (s) => process.stderr.write(s) },
): Promise<number> {
  const [action, ...operands] = positional;
  const known: Record<string, readonly string[]> = {
    sites: ['add', 'list', 'remove', 'release'],
    members: ['add', 'list', 'remove', 'reset'],
    tokens: ['create', 'list', 'revoke'],
    accounts: ['add', 'list'],
  };
  if (action === undefined || !known[group]?.includes(action)) {
    io.err(`farol ${group}: ${action === undefined ? 'missing action' : `unknown action "${action}"`}\n\n${ADMIN_USAGE}\n`);
    return 2;
  }
  const need = (i: number, what: string): string => {
    const v = operands[i];
    if (v === undefined || v === '') throw new UsageError(`${action} needs <${what}>`);
    return v;
  };

  const { openStoreForAdmin, DataDirLockedError, migrationTarget } = await import('../wiring/store.ts');
  let store: Store;
  try {
    store = await openStoreForAdmin(config);
  } catch (err) {
    if (!(err instanceof DataDirLockedError)) throw err;
    io.err(`farol ${group}: ${err.message}\n`);
    return 1;
  }
  try {
    const { migrate } = await import('../store/migrate.ts');
    const { ControlPlane, controlPlaneOptions } = await import('../control/control-plane.ts');
    await migrate(store, migrationTarget(config));
    // On a ClickHouse server processors may be running; on the embedded engine none can (this holds it).
    const control: ControlPlane = new ControlPlane(store, {
      ...controlPlaneOptions(config),
      cacheTtlMs: 0,
      deleteGraceMs: config.FAROL_CLICKHOUSE_URL === undefined ? 0 : config.FAROL_SITE_DELETE_GRACE_MS,
    });
    // Creates the default account and its owner if this runs before the first start; the owner's
    // token is left to `farol start`, which prints it.
    const boot = await control.bootstrap({ issueToken: false });
    const accountId = flags.account ?? boot.accountId;
    if ((await control.account(accountId)) === null) throw new ApiError('API_NOT_FOUND', `no account ${accountId}`);
    const out: string[] = [];
    const key = `${group} ${action}`;
    switch (key) {
      case 'sites add': {
        const s = await control.addSite(accountId, { domain: need(0, 'domain'), ...(flags.timezone ? { timezone: flags.timezone } : {}) });
        line(out, `added site ${s.domain} (time zone ${s.timezone})`);
        break;
      }
      case 'sites list':
        for (const s of await control.sites(accountId)) line(out, s.domain, s.timezone, s.respectDnt ? 'respect-dnt' : '-', s.createdAt);
        break;
      case 'sites remove': {
        const site = await control.site(need(0, 'domain'));
        if (site === null || site.accountId !== accountId) throw new ApiError('API_NOT_FOUND', 'Site not found');
        await control.deleteSite(site.domain);
        line(out, `removed site ${site.domain}`);
        break;
      }
      case 'sites release': {
        const domain = need(0, 'domain');
        await control.releaseReservation(domain);
        line(out, `released ${domain}: any account may register it now`);
        break;
      }
      case 'members add': {
        if (flags.role === undefined) throw new UsageError('members add needs --role owner|admin|viewer');
        const sites = flags.sites === undefined ? [] : flags.sites.split(',').map((s) => s.trim()).filter((s) => s !== '');
        // An empty list means "every site": `--sites ""` must not grant the whole account by accident.
        if (flags.sites !== undefined && sites.length === 0) throw new UsageError('--sites needs at least one domain (leave it out for every site of the account)');
        const m = await control.addMember(accountId, { name: need(0, 'name'), role: flags.role, sites });
        line(out, `added member ${m.id} (${m.name}, ${m.role}, ${m.sites.length === 0 ? 'all sites' : m.sites.join(',')})`);
        break;
      }
      case 'members list':
        for (const m of await control.members(accountId)) line(out, m.id, m.role, m.name, m.sites.length === 0 ? '*' : m.sites.join(','), m.createdAt);
        break;
      case 'members remove': {
        const m = await control.member(need(0, 'id'));
        if (m === null || m.accountId !== accountId) throw new ApiError('API_NOT_FOUND', 'Member not found');
        await control.removeMember(m.id);
        line(out, `removed member ${m.id} and revoked its tokens`);
        break;
      }
      case 'members reset': {
        const m = await control.member(need(0, 'id'));
        if (m === null || m.accountId !== accountId) throw new ApiError('API_NOT_FOUND', 'Member not found');
        const { emailSchema } = await import('../control/people.ts');
        const identity = await control.people.identity(m.id);
        if (flags.email !== undefined) {
          const email = emailSchema.safeParse(flags.email);
          if (!email.success) throw new UsageError('--email must be an email address');
          await control.people.setIdentity(m.id, m.accountId, { email: email.data });
        } else if ((identity?.email ?? '') === '') throw new UsageError(`member ${m.id} has no email to sign in with: add --email`);
        const { secret, expiresAt } = await control.people.resetLink(m.id, m.accountId);
        const base = config.FAROL_PUBLIC_URL ?? `http://${config.FAROL_HOST}:${config.FAROL_PORT}`;
        line(out, `one-time link for ${m.id} (${m.role}), valid until ${expiresAt}; open it to set a new password:`);
        line(out, `${base}/#reset=${secret}`);
        break;
      }
      case 'tokens create': {
        if (flags.member === undefined) throw new UsageError('tokens create needs --member <id>');
        const m = await control.member(flags.member);
        if (m === null || m.accountId !== accountId) throw new ApiError('API_NOT_FOUND', 'Member not found');
        const t = await control.issueToken(m.id, { name: flags.name ?? 'token' });
        line(out, `token for ${m.id} (${m.role}), shown once, store it now:`);
        line(out, t.token);
        break;
      }
      case 'tokens list':
        for (const t of await control.tokens(accountId)) line(out, t.prefix, t.memberId, t.name, t.createdAt);
        break;
      case 'tokens revoke': {
        const t = ControlPlane.pickToken(await control.tokens(accountId), need(0, 'prefix'));
        await control.revokeToken(t.hash);
        line(out, `revoked token ${t.prefix}`);
        break;
      }
      case 'accounts add': {
        const a = await control.createAccount({ name: need(0, 'name') });
        line(out, `added account ${a.id} (${a.name}); add its owner with: farol members add <name> --role owner --account ${a.id}`);
        break;
      }
      case 'accounts list':
        for (const a of await control.accounts()) line(out, a.id, a.name, a.createdAt);
        break;
    }
    if (!key.endsWith(' list')) {
      // A token named by itself (tokens revoke) is recorded by its display prefix only.
      const target = operands.map((o) => (o.length > 40 ? `${o.slice(0, 12)}…` : o)).join(' ');
      await control.people.audit(accountId, { actor: 'operator', via: 'cli', viaId: '', action: `cli ${key}`, target, detail: { ...(flags.role ? { role: flags.role } : {}), ...(flags.sites ? { sites: flags.sites } : {}) } });
    }
    io.out(out.length === 0 ? '' : `${out.join('\n')}\n`);
    return 0;
  } catch (err) {
    if (err instanceof UsageError) {
      io.err(`farol ${group}: ${err.message}\n\n${ADMIN_USAGE}\n`);
      return 2;
    }
    if (err instanceof ApiError) {
      io.err(`farol ${group}: ${err.message}\n`);
      return 1;
    }
    throw err;
  } finally {
    await store.close();
  }
}
