import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runFarol, startFarol, type FarolProcess } from './support/farol-process.ts';

/**
 * `farol sites|members|tokens|accounts` as child processes on an embedded data dir, and what they
 * did seen through a real `farol start` on the same dir: sites accepted by the collector, tokens
 * that work and stop working once revoked, the bootstrap token printed once.
 */

// Each CLI run opens the embedded engine (seconds on a busy machine).
const SLOW = 400_000;
let dataDir = '';
let env: Record<string, string> = {};
const procs: FarolProcess[] = [];

beforeAll(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'farol-admin-cli-'));
  env = { FAROL_DATA_DIR: dataDir, FAROL_LOG_LEVEL: 'warn' };
});

afterAll(async () => {
  for (const p of procs) p.child.kill('SIGKILL');
  await Promise.all(procs.map((p) => p.exited));
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

async function farol(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return runFarol(args, env);
}

async function start(): Promise<FarolProcess> {
  const p = await startFarol('start', { ...env, FAROL_LOG_LEVEL: 'info' }, 120_000);
  procs.push(p);
  return p;
}

async function stop(p: FarolProcess): Promise<void> {
  p.child.kill('SIGTERM');
  expect(await p.exited).toBe(0);
}

function tokenLines(p: FarolProcess): string[] {
  return p.output.filter((l) => l.includes('bootstrap owner token (shown once)'));
}

describe('farol admin commands', () => {
  let viewerId = '';
  let viewerToken = '';
  let ownerToken = '';

  it('adds and lists sites, members and tokens before the first start', async () => {
    const added = await farol('sites', 'add', 'Shop.Example', '--timezone', 'Europe/Lisbon');
    expect(added.code, added.stderr).toBe(0);
    expect(added.stdout).toContain('added site shop.example (time zone Europe/Lisbon)');

    const bad = await farol('sites', 'add', 'not a domain');
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/domain: must be a hostname/);

    const list = await farol('sites', 'list');
    expect(list.code).toBe(0);
    // The bootstrap account's localhost exists already: the CLI completes the bootstrap too.
    expect(list.stdout.split('\n').map((l) => l.split('  ')[0])).toEqual(['localhost', 'shop.example', '']);

    // --sites is the admin grant here, not FAROL_SITES.
    const member = await farol('members', 'add', 'Ann', '--role', 'viewer', '--sites', 'shop.example');
    expect(member.code, member.stderr).toBe(0);
    viewerId = /added member (mem_\S+)/.exec(member.stdout)?.[1] ?? '';
    expect(viewerId).not.toBe('');
    const foreign = await farol('members', 'add', 'Bob', '--role', 'viewer', '--sites', 'nowhere.example');
    expect(foreign.code).toBe(1);
    expect(foreign.stderr).toContain('Site not found');
    // An empty --sites is not "every site" by accident.
    const empty = await farol('members', 'add', 'Eve', '--role', 'owner', '--sites', ' , ');
    expect(empty.code).toBe(2);
    expect(empty.stderr).toContain('--sites needs at least one domain');
    const members = await farol('members', 'list');
    expect(members.stdout).toContain(`${viewerId}  viewer  Ann  shop.example`);
    expect(members.stdout).not.toContain('Eve');
    expect(members.stdout).toMatch(/mem_\S+ {2}owner {2}owner {2}\*/);
    // The only account-wide owner stays.
    const ownerId = /(mem_\S+) {2}owner {2}owner/.exec(members.stdout)?.[1] ?? '';
    const last = await farol('members', 'remove', ownerId);
    expect(last.code).toBe(1);
    expect(last.stderr).toContain('keeps at least one account-wide owner');

    const token = await farol('tokens', 'create', '--member', viewerId, '--name', 'ci');
    expect(token.code, token.stderr).toBe(0);
    viewerToken = /^(farol_[A-Za-z0-9_-]{43})$/m.exec(token.stdout)?.[1] ?? '';
    expect(viewerToken).not.toBe('');
    const tokens = await farol('tokens', 'list');
    expect(tokens.stdout).toContain(`${viewerToken.slice(0, 12)}  ${viewerId}  ci`);
    expect(tokens.stdout).not.toContain(viewerToken);

    const usage = await farol('tokens', 'create');
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain('--member');
  }, SLOW);

  it('farol start prints the owner token once; the CLI’s site and token work there; the CLI refuses a held data dir', async () => {
    const p = await start();
    try {
      await startedChecks(p);
    } finally {
      await stop(p);
    }
  }, SLOW);

  async function startedChecks(p: FarolProcess): Promise<void> {
    expect(tokenLines(p)).toHaveLength(1);
    ownerToken = (JSON.parse(tokenLines(p)[0] ?? '{}') as { token: string }).token;
    expect(ownerToken).toMatch(/^farol_/);
    expect(p.output.some((l) => l.includes(`Farol owner API token (shown once, store it now): ${ownerToken}`))).toBe(true);

    const sites = await fetch(`${p.url}/api/v1/sites`, { headers: { authorization: `Bearer ${viewerToken}` } });
    expect(sites.status).toBe(200);
    expect(((await sites.json()) as { sites: Array<{ domain: string }> }).sites.map((s) => s.domain)).toEqual(['shop.example']);
    const owner = await fetch(`${p.url}/api/v1/sites`, { headers: { authorization: `Bearer ${ownerToken}` } });
    expect(((await owner.json()) as { sites: Array<{ domain: string }> }).sites.map((s) => s.domain)).toEqual(['localhost', 'shop.example']);

    const send = (d: string): Promise<Response> =>
      fetch(`${p.url}/api/event`, { method: 'POST', body: JSON.stringify({ n: 'pageview', u: `https://${d}/`, d }) });
    expect((await send('shop.example')).status).toBe(202);
    const unknown = await send('other.example');
    expect(unknown.status).toBe(400);
    expect(await unknown.text()).toContain('ING_UNKNOWN_SITE');

    // A site added through the API is accepted by the collector at once.
    const add = await fetch(`${p.url}/api/v1/sites`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ownerToken}` },
      body: JSON.stringify({ domain: 'other.example' }),
    });
    expect(add.status).toBe(201);
    expect((await send('other.example')).status).toBe(202);

    const held = await farol('sites', 'list');
    expect(held.code).toBe(1);
    expect(held.stderr).toContain('is in use by another farol process');
  }

  it('a revoked token stops working; a restart prints no token', async () => {
    const revoke = await farol('tokens', 'revoke', viewerToken.slice(0, 12));
    expect(revoke.code, revoke.stderr).toBe(0);
    const again = await farol('tokens', 'revoke', viewerToken.slice(0, 12));
    expect(again.code).toBe(1);

    // An owner locked out (#14): the operator prints a one-time link while farol is stopped.
    const ownerId = /(mem_\S+) {2}owner {2}owner/.exec((await farol('members', 'list')).stdout)?.[1] ?? '';
    const noEmail = await farol('members', 'reset', ownerId);
    expect(noEmail.code).toBe(2);
    expect(noEmail.stderr).toContain('--email');
    const reset = await farol('members', 'reset', ownerId, '--email', 'Owner@Example.com');
    expect(reset.code, reset.stderr).toBe(0);
    const resetSecret = /\/#reset=([A-Za-z0-9_-]{43})$/m.exec(reset.stdout)?.[1] ?? '';
    expect(resetSecret).not.toBe('');

    const p = await start();
    try {
      const useLink = async (): Promise<Response> =>
        fetch(`${p.url}/api/v1/auth/reset`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token: resetSecret, password: 'the owner is back in' }) });
      const used = await useLink();
      expect(used.status).toBe(200);
      expect(used.headers.getSetCookie()[0]).toMatch(/^farol_session=/);
      expect((await useLink()).status).toBe(400);
      const signIn = await fetch(`${p.url}/api/v1/auth/password`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ email: 'owner@example.com', password: 'the owner is back in' }) });
      expect(signIn.status).toBe(200);
      expect(p.output.join('\n')).not.toContain(resetSecret);
      expect(tokenLines(p)).toHaveLength(0);
      expect(p.output.join('\n')).not.toContain(ownerToken);
      const res = await fetch(`${p.url}/api/v1/sites`, { headers: { authorization: `Bearer ${viewerToken}` } });
      expect(res.status).toBe(401);
      const ok = await fetch(`${p.url}/api/v1/sites`, { headers: { authorization: `Bearer ${ownerToken}` } });
      expect(ok.status).toBe(200);
    } finally {
      await stop(p);
    }

    const removed = await farol('members', 'remove', viewerId);
    expect(removed.code).toBe(0);
    expect((await farol('members', 'list')).stdout).not.toContain(viewerId);
    expect((await farol('sites', 'remove', 'shop.example')).code).toBe(0);
    expect((await farol('sites', 'list')).stdout).not.toContain('shop.example');
    // Its domain stays reserved to the account until the operator releases it.
    const released = await farol('sites', 'release', 'shop.example');
    expect(released.code, released.stderr).toBe(0);
    expect((await farol('sites', 'release', 'shop.example')).code).toBe(1);
  }, SLOW);

  it('accounts: a second account is separate', async () => {
    const acc = await farol('accounts', 'add', 'Second');
    expect(acc.code).toBe(0);
    const id = /added account (acc_\S+)/.exec(acc.stdout)?.[1] ?? '';
    const add = await farol('sites', 'add', 'second.example', '--account', id);
    expect(add.code, add.stderr).toBe(0);
    expect((await farol('sites', 'list', '--account', id)).stdout.trim().split('  ')[0]).toBe('second.example');
    expect((await farol('sites', 'list')).stdout).not.toContain('second.example');
    // Another account's site cannot be removed from this one.
    expect((await farol('sites', 'remove', 'second.example')).code).toBe(1);
  }, SLOW);
});
