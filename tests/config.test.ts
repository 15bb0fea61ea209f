import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { availableCores, flagsToEnv, loadConfig } from '../schemas/config.ts';
import { runFarol } from './support/farol-process.ts';

describe('configuration', () => {
  it('applies the documented defaults', () => {
    const c = loadConfig({});
    expect(c.FAROL_PORT).toBe(8080);
    expect(c.FAROL_HOST).toBe('127.0.0.1');
    expect(c.FAROL_DATA_DIR).toBe('./data');
    expect(c.FAROL_HUB).toBe('local');
    expect(c.FAROL_TRUST_PROXY).toEqual({ kind: 'hops', hops: 0 });
    expect(c.FAROL_RETENTION_DAYS).toBe(395);
    expect(c.FAROL_CLICKHOUSE_DATABASE).toBe('farol');
    expect([c.FAROL_API_QUERY_TIMEOUT_MS, c.FAROL_API_QUERY_MAX_MEMORY_BYTES, c.FAROL_API_QUERIES_PER_TOKEN, c.FAROL_API_QUERY_QUEUE_PER_TOKEN]).toEqual([10_000, 1024 ** 3, 4, 16]);
    expect([c.FAROL_BACKUP_DIR, c.FAROL_BACKUP_KEEP]).toEqual([undefined, 7]);
    expect([c.FAROL_PROCESSOR_RETRY_MAX_MS, c.FAROL_DRAIN_TIMEOUT_MS]).toEqual([30_000, 15_000]);
    expect([c.FAROL_PROCESSOR_FLUSH_MS, c.FAROL_PROCESSOR_FLUSH_RECORDS]).toEqual([1_000, 10_000]);
    expect([c.FAROL_SITES_REFRESH_MS, c.FAROL_SITE_DELETE_GRACE_MS]).toEqual([5_000, 6_000]);
    expect(c.FAROL_HUB_SYNC).toEqual({ mode: 'always' });
    expect(c.FAROL_START_NICE).toBe(10);
    expect([loadConfig({ FAROL_START_NICE: '0' }).FAROL_START_NICE, loadConfig({ FAROL_START_NICE: '19' }).FAROL_START_NICE]).toEqual([0, 19]);
  });

  it('reads FAROL_COLLECTOR_THREADS as 1 to 256, by default the cores', () => {
    expect(loadConfig({}).FAROL_COLLECTOR_THREADS).toBe(Math.min(256, availableCores()));
    expect(availableCores()).toBeLessThanOrEqual(availableParallelism());
    expect(loadConfig({ FAROL_COLLECTOR_THREADS: '1' }).FAROL_COLLECTOR_THREADS).toBe(1);
    expect(loadConfig({ FAROL_COLLECTOR_THREADS: '256' }).FAROL_COLLECTOR_THREADS).toBe(256);
    for (const bad of ['0', '257', '-1', '1.5', 'many', '1e308']) {
      expect(() => loadConfig({ FAROL_COLLECTOR_THREADS: bad }), bad).toThrow(/FAROL_COLLECTOR_THREADS/);
    }
    expect(flagsToEnv(['--collector-threads', '3']).env).toEqual({ FAROL_COLLECTOR_THREADS: '3' });
  });

  it('counts the cores of a cgroup CPU quota (a container limit), never more than the machine has', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'farol-cpumax-'));
    try {
      const cores = availableParallelism();
      const file = join(dir, 'cpu.max');
      const cases: Array<[string, number]> = [
        ['max 100000\n', cores],
        ['150000 100000\n', Math.min(cores, 2)],
        ['50000 100000\n', 1],
        [`${100000 * (cores + 8)} 100000\n`, cores],
        ['0 100000\n', cores],
        ['garbage', cores],
      ];
      for (const [text, want] of cases) {
        await writeFile(file, text);
        expect(availableCores(file), text).toBe(want);
      }
      expect(availableCores(join(dir, 'missing'))).toBe(cores);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('reads FAROL_HUB_SYNC as always or interval:<ms> (1 to 60000)', () => {
    expect(loadConfig({ FAROL_HUB_SYNC: 'always' }).FAROL_HUB_SYNC).toEqual({ mode: 'always' });
    expect(loadConfig({ FAROL_HUB_SYNC: 'interval:100' }).FAROL_HUB_SYNC).toEqual({ mode: 'interval', intervalMs: 100 });
    expect(loadConfig({ FAROL_HUB_SYNC: ' Interval:1ms ' }).FAROL_HUB_SYNC).toEqual({ mode: 'interval', intervalMs: 1 });
    expect(loadConfig({ FAROL_HUB_SYNC: 'interval:60000' }).FAROL_HUB_SYNC).toEqual({ mode: 'interval', intervalMs: 60_000 });
    expect(flagsToEnv(['--hub-sync', 'interval:250']).env).toEqual({ FAROL_HUB_SYNC: 'interval:250' });
  });

  it.each([
    ['FAROL_PORT', 'eighty'],
    ['FAROL_PORT', '70000'],
    ['FAROL_HUB', 'kafka'],
    ['FAROL_TRUST_PROXY', '10.0.0.0/33'],
    ['FAROL_TRUST_PROXY', 'yes'],
    ['FAROL_RETENTION_DAYS', '-1'],
    ['FAROL_LOG_LEVEL', 'loud'],
    ['FAROL_CLICKHOUSE_URL', 'ftp://x'],
    ['FAROL_CLICKHOUSE_DATABASE', 'farol; DROP'],
    ['FAROL_BOOTSTRAP_TOKEN', 'short'],
    ['FAROL_DOMAIN_RESERVATION_DAYS', '-1'],
    ['FAROL_DOMAIN_RESERVATION_DAYS', '1.5'],
    ['FAROL_API_QUERY_TIMEOUT_MS', '60000'],
    ['FAROL_API_QUERY_TIMEOUT_MS', '0'],
    ['FAROL_API_QUERY_MAX_MEMORY_BYTES', '1024'],
    ['FAROL_API_QUERIES_PER_TOKEN', '0'],
    ['FAROL_API_QUERY_QUEUE_PER_TOKEN', '-1'],
    ['FAROL_PUBLIC_URL', 'stats.example.com'],
    ['FAROL_PUBLIC_URL', 'https://stats.example.com/farol'],
    ['FAROL_PUBLIC_URL', 'ftp://stats.example.com'],
    ['FAROL_OIDC_ISSUER', 'not a url'],
    ['FAROL_SESSION_IDLE_MINUTES', '0'],
    ['FAROL_SESSION_MAX_HOURS', '1.5'],
    ['FAROL_RATE_SIGNIN', 'lots'],
    ['FAROL_AUDIT_RETENTION_DAYS', '0'],
    ['FAROL_BACKUP_KEEP', '0'],
    ['FAROL_BACKUP_KEEP', 'all'],
    ['FAROL_PROCESSOR_RETRY_MAX_MS', '0'],
    ['FAROL_PROCESSOR_RETRY_MAX_MS', '1e308'],
    ['FAROL_PROCESSOR_FLUSH_MS', '49'],
    ['FAROL_PROCESSOR_FLUSH_MS', '1e308'],
    ['FAROL_PROCESSOR_FLUSH_RECORDS', '0'],
    ['FAROL_PROCESSOR_FLUSH_RECORDS', '100001'],
    ['FAROL_PROCESSOR_FLUSH_RECORDS', 'many'],
    ['FAROL_DRAIN_TIMEOUT_MS', '-5'],
    ['FAROL_DRAIN_TIMEOUT_MS', 'soon'],
    ['FAROL_SITES_REFRESH_MS', '50'],
    ['FAROL_SITES_REFRESH_MS', 'often'],
    ['FAROL_SITE_DELETE_GRACE_MS', '0'],
    ['FAROL_SITE_DELETE_GRACE_MS', '2999'],
    ['FAROL_SITE_DELETE_GRACE_MS', '1e308'],
    ['FAROL_HUB_SYNC', 'never'],
    ['FAROL_HUB_SYNC', 'interval'],
    ['FAROL_HUB_SYNC', 'interval:0'],
    ['FAROL_HUB_SYNC', 'interval:60001'],
    ['FAROL_HUB_SYNC', 'interval:-5'],
    ['FAROL_HUB_SYNC', 'interval:1.5'],
    ['FAROL_HUB_SYNC', 'interval:1e308'],
    ['FAROL_HUB_SYNC', 'interval:100s'],
    ['FAROL_HUB_SYNC', 'interval:100\u0000'],
    ['FAROL_START_NICE', '-1'],
    ['FAROL_START_NICE', '20'],
    ['FAROL_START_NICE', '2.5'],
    ['FAROL_START_NICE', 'low'],
  ])('rejects %s=%s naming the variable', (key, value) => {
    expect(() => loadConfig({ [key]: value })).toThrow(new RegExp(key));
  });

  it('takes the sign-in settings together: the OpenID Connect trio and FAROL_PUBLIC_URL; an idle time within the lifetime', () => {
    const oidc = { FAROL_OIDC_ISSUER: 'https://id.example.com', FAROL_OIDC_CLIENT_ID: 'farol', FAROL_OIDC_CLIENT_SECRET: 's3cret-value-here' };
    expect(() => loadConfig({ FAROL_OIDC_ISSUER: oidc.FAROL_OIDC_ISSUER, FAROL_PUBLIC_URL: 'https://stats.example.com' })).toThrow(/FAROL_OIDC_CLIENT_ID/);
    expect(() => loadConfig(oidc)).toThrow(/FAROL_PUBLIC_URL/);
    expect(loadConfig({ ...oidc, FAROL_PUBLIC_URL: 'https://Stats.example.com/' }).FAROL_PUBLIC_URL).toBe('https://stats.example.com');
    expect(() => loadConfig({ FAROL_SESSION_IDLE_MINUTES: '600', FAROL_SESSION_MAX_HOURS: '2' })).toThrow(/FAROL_SESSION_IDLE_MINUTES/);
    let message = '';
    try {
      loadConfig({ ...oidc, FAROL_OIDC_CLIENT_SECRET: 'x'.repeat(5000) });
    } catch (err) {
      message = String(err);
    }
    expect(message).toContain('FAROL_OIDC_CLIENT_SECRET');
    expect(message).not.toContain('xxxxxxxx');
  });

  it('keeps a site deletion waiting longer than the collectors and processors take to learn of it', () => {
    // The processors reload every 2 s, the collectors every FAROL_SITES_REFRESH_MS; 1 s more for a write begun before.
    expect(loadConfig({ FAROL_SITES_REFRESH_MS: '500', FAROL_SITE_DELETE_GRACE_MS: '3000' }).FAROL_SITE_DELETE_GRACE_MS).toBe(3_000);
    expect(() => loadConfig({ FAROL_SITES_REFRESH_MS: '500', FAROL_SITE_DELETE_GRACE_MS: '2999' })).toThrow(/FAROL_SITE_DELETE_GRACE_MS/);
    expect(() => loadConfig({ FAROL_SITES_REFRESH_MS: '10000' })).toThrow(/FAROL_SITE_DELETE_GRACE_MS.*FAROL_SITES_REFRESH_MS \(10000\)/s);
    expect(loadConfig({ FAROL_SITES_REFRESH_MS: '10000', FAROL_SITE_DELETE_GRACE_MS: '11000' }).FAROL_SITES_REFRESH_MS).toBe(10_000);
  });

  it('requires the Event Hubs settings when FAROL_HUB=eventhubs', () => {
    expect(() => loadConfig({ FAROL_HUB: 'eventhubs' })).toThrow(/FAROL_EVENTHUBS_CONNECTION_STRING/);
  });

  it('parses trusted proxies as hops or CIDRs', () => {
    expect(loadConfig({ FAROL_TRUST_PROXY: '2' }).FAROL_TRUST_PROXY).toEqual({ kind: 'hops', hops: 2 });
    expect(loadConfig({ FAROL_TRUST_PROXY: '10.0.0.0/8, ::1' }).FAROL_TRUST_PROXY).toEqual({ kind: 'cidrs', cidrs: ['10.0.0.0/8', '::1'] });
  });

  it('maps --flags onto variables', () => {
    const { env, rest } = flagsToEnv(['--port', '9000', '--data-dir=/tmp/x', 'extra', '--trust-proxy', '1']);
    expect(env).toEqual({ FAROL_PORT: '9000', FAROL_DATA_DIR: '/tmp/x', FAROL_TRUST_PROXY: '1' });
    expect(rest).toEqual(['extra']);
  });

  it('reads a command’s own flags before the settings of the same name, and refuses unknown or valueless flags', () => {
    const admin = flagsToEnv(['add', 'Ann', '--role', 'viewer', '--sites=a.example', '--port', '1', '--name', '--odd'], ['role', 'sites', 'name']);
    expect(admin).toEqual({ env: { FAROL_PORT: '1' }, flags: { role: 'viewer', sites: 'a.example', name: '--odd' }, rest: ['add', 'Ann'] });
    expect(flagsToEnv(['--sites', 'a.example']).env).toEqual({ FAROL_SITES: 'a.example' });
    expect(() => flagsToEnv(['--data-dri', '/tmp/x'])).toThrow(/unknown flag --data-dri/);
    expect(() => flagsToEnv(['-p', '1'])).toThrow(/unknown flag -p/);
    expect(() => flagsToEnv(['--constructor', 'x'])).toThrow(/unknown flag --constructor/);
    expect(() => flagsToEnv(['--port'])).toThrow(/--port \(FAROL_PORT\) needs a value/);
    expect(() => flagsToEnv(['add', '--role'], ['role'])).toThrow(/^--role needs a value$/);
  });

  it('the CLI refuses an unknown flag (a typo must not fall back to a default) with exit 2', async () => {
    const r = await runFarol(['collector', '--data-dri', '/tmp/nowhere'], {});
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('unknown flag --data-dri');
    const admin = await runFarol(['sites', 'list', '--timezon', 'UTC'], {});
    expect(admin.code).toBe(2);
    expect(admin.stderr).toContain('unknown flag --timezon');
  });

  it('the CLI exits non-zero naming the bad variable', async () => {
    const r = await runFarol(['collector'], { FAROL_PORT: 'nope' });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('FAROL_PORT');
    const f = await runFarol(['collector', '--hub', 'kafka'], {});
    expect(f.code).toBe(2);
    expect(f.stderr).toContain('FAROL_HUB');
    const s = await runFarol(['collector', '--hub-sync', 'interval:0'], {});
    expect(s.code).toBe(2);
    expect(s.stderr).toContain('FAROL_HUB_SYNC');
    const t = await runFarol(['collector', '--collector-threads', '0'], {});
    expect(t.code).toBe(2);
    expect(t.stderr).toContain('FAROL_COLLECTOR_THREADS');
  });

  it('the CLI rejects an unknown command', async () => {
    const r = await runFarol(['frobnicate'], {});
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('unknown command');
  });
});
