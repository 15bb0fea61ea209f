import { access, constants } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chromium, type Browser, type Page } from 'playwright-core';
import { Secret, TOTP } from 'otpauth';
import { startApiOnChdb, type ApiOnChdb } from '../api/experiments/testing/api-harness.ts';
import { hashPassword } from '../control/people.ts';
import { freePort, startIdp, type TestIdp } from './support/oidc-idp.ts';
import { pollUntil } from './support/e2e.ts';
import { bodyOf, startSmtp, type TestSmtp } from './support/smtp.ts';

/**
 * The dashboard's sign-in in headless Chromium (Debian's; never downloaded) against a real
 * OpenID Connect provider (`oidc-provider` on a loopback port) and the real API: an invited
 * person clicks the provider button, comes back signed in with the invitation's role and site
 * list applied, sees the team page, and signs out (the session is then refused). Then a password
 * sign-in through the form; a person in two accounts joins the second from its invitation link
 * and switches between them in the header.
 */

const CHROMIUM = '/usr/bin/chromium';
let api: ApiOnChdb;
let idp: TestIdp;
let browser: Browser;
let ownerToken = '';
let smtp: TestSmtp;
let accountA = '';
let accountB = '';
let ownerBToken = '';

beforeAll(async () => {
  await access(CHROMIUM, constants.X_OK);
  const port = await freePort();
  const publicUrl = `http://127.0.0.1:${port}`;
  idp = await startIdp(`${publicUrl}/api/v1/auth/oidc/callback`);
  smtp = await startSmtp('farol', 'browser-smtp-pass');
  api = await startApiOnChdb({
    database: 'farol_signin_browser_test',
    env: { FAROL_PORT: String(port), FAROL_PUBLIC_URL: publicUrl, FAROL_OIDC_ISSUER: idp.issuer, FAROL_OIDC_CLIENT_ID: idp.clientId, FAROL_OIDC_CLIENT_SECRET: idp.clientSecret, FAROL_SMTP_URL: smtp.url, FAROL_SMTP_FROM: 'stats@farol.test' },
    seed: async (c) => {
      const account = (await c.createAccount({ name: 'A' })).id;
      accountA = account;
      await c.addSite(account, { domain: 'a1.test' });
      await c.addSite(account, { domain: 'a2.test' });
      const owner = await c.addMember(account, { name: 'owner', role: 'owner' });
      ownerToken = (await c.issueToken(owner.id)).token;
      await c.people.setIdentity(owner.id, account, { email: 'owner@a.test', passwordHash: await hashPassword('the owner password') });
      // A person of account A (admin of a1.test) whom account Beta invites.
      const multi = await c.addMember(account, { name: 'multi', role: 'admin', sites: ['a1.test'] });
      await c.people.setIdentity(multi.id, account, { email: 'multi@a.test', passwordHash: await hashPassword('the multi password') });
      accountB = (await c.createAccount({ name: 'Beta' })).id;
      await c.addSite(accountB, { domain: 'b1.test' });
      ownerBToken = (await c.issueToken((await c.addMember(accountB, { name: 'owner B', role: 'owner' })).id)).token;
    },
  });
  idp.users.set('invitee-sub', { email: 'invitee@a.test', email_verified: true, name: 'Invitee' });
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--headless=new', '--disable-gpu', '--disable-dev-shm-usage'] });
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await api?.close();
  await idp?.close();
  await smtp?.close();
});

/** Waits until the page says `state` (polled from here: the page's CSP forbids eval'd waits). */
async function until(page: Page, state: string): Promise<void> {
  await pollUntil(async () => ((await page.evaluate('document.body.dataset.state')) === state ? true : undefined), {
    timeoutMs: 20_000,
    intervalMs: 50,
    describe: () => `the dashboard never reached "${state}"`,
  });
}

describe('dashboard sign-in', () => {
  it('signs an invited person in through the identity provider, with the invitation’s role and sites, and out again', async () => {
    const invited = await fetch(`${api.url}/api/v1/invitations`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ownerToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ email: 'invitee@a.test', role: 'admin', sites: ['a2.test'] }),
    });
    expect(invited.status).toBe(201);
    idp.nextLogin = 'invitee-sub';
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(`${api.url}/`);
    await page.waitForSelector('#oidc-signin:not([hidden])');
    // The token box is a developer option, folded away.
    expect(await page.isVisible('#token-input')).toBe(false);
    await page.click('#oidc-signin');
    await page.waitForURL(`${api.url}/`);
    await until(page, 'ready');
    expect(await page.textContent('#whoami')).toBe('invitee@a.test (admin)');
    expect(await page.$$eval('#site-select option', (os) => os.map((o) => o.getAttribute('value')))).toEqual(['a2.test']);
    const cookie = (await context.cookies()).find((c) => c.name === 'farol_session');
    expect(cookie).toMatchObject({ httpOnly: true, sameSite: 'Lax', secure: false, path: '/' });
    expect(await page.evaluate('document.cookie')).not.toContain('farol_session');

    await page.click('#team-button');
    await page.waitForSelector('#team-members tr[data-member]');
    expect(await page.textContent('#team-members')).toContain('Invitee');
    expect(await page.isVisible('#team-audit-section')).toBe(false);

    // Signed in at the provider: signing out sends the browser there to sign out too.
    await page.click('#sign-out');
    await page.waitForURL((u) => u.href.startsWith(idp.issuer));
    // The provider asks to confirm (no ID token hint is sent), then sends the browser back to the dashboard.
    await page.click('button[type=submit][value=yes], button[autofocus], form button');
    await page.waitForURL(`${api.url}/`);
    await page.waitForSelector('#login:not([hidden])');
    const after = await fetch(`${api.url}/api/v1/auth/session`, { headers: { cookie: `farol_session=${cookie?.value ?? ''}` } });
    expect(after.status).toBe(401);
    expect((await context.cookies()).some((c) => c.name === 'farol_session')).toBe(false);
    await context.close();
  });

  it('signs in with a password through the form; the person signs out another session, changes the password, turns two-factor sign-in on and off, and signs out everywhere', async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(`${api.url}/`);
    await page.waitForSelector('#password-form');
    await page.fill('#email-input', 'owner@a.test');
    await page.fill('#password-input', 'not the password');
    await page.click('#password-form button[type=submit]');
    await page.waitForSelector('#login-error:not([hidden])');
    expect(await page.textContent('#login-error')).toBe('Email or password is wrong');
    await page.fill('#password-input', 'the owner password');
    await page.click('#password-form button[type=submit]');
    await until(page, 'ready');
    expect(await page.textContent('#whoami')).toBe('owner@a.test (owner)');
    // The owner reads the audit trail on the team page; the invited admin above did not see it.
    await page.click('#team-button');
    await page.waitForSelector('#team-audit tr[data-action="signin.password"]');
    expect(await page.textContent('#team-audit')).toContain('signin.failed');
    // A state-changing request from the page carries the session's CSRF token: creating a token works.
    await page.fill('#token-name', 'from the browser');
    await page.click('#token-form button[type=submit]');
    await page.waitForSelector('#token-out:not([hidden])');
    expect(await page.textContent('#token-out')).toMatch(/farol_[A-Za-z0-9_-]{43}/);

    // The person's own sessions: this browser, and another one signed in elsewhere, signed out from here.
    const elsewhere = await fetch(`${api.url}/api/v1/auth/password`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ email: 'owner@a.test', password: 'the owner password' }) });
    const otherCookie = (elsewhere.headers.getSetCookie()[0] ?? '').split(';')[0] ?? '';
    const otherId = String(((await elsewhere.json()) as { session?: string }).session);
    // The team page is open: closed and opened again, it lists the new session.
    await page.click('#team-button');
    await page.click('#team-button');
    await page.waitForSelector(`#me-sessions [data-session="${otherId}"]`);
    expect(await page.$$eval('#me-sessions [data-current="true"]', (els) => els.length)).toBe(1);
    await page.click(`#me-sessions [data-session="${otherId}"] button`);
    await page.waitForSelector(`#me-sessions [data-session="${otherId}"]`, { state: 'detached' });
    expect((await fetch(`${api.url}/api/v1/auth/session`, { headers: { cookie: otherCookie } })).status).toBe(401);
    // Changing the password needs the current one.
    await page.fill('#me-current', 'not the owner password');
    await page.fill('#me-new', 'the owner password, changed');
    await page.click('#me-password-form button[type=submit]');
    await page.waitForSelector('#team-error:not([hidden])');
    await page.fill('#me-current', 'the owner password');
    await page.fill('#me-new', 'the owner password, changed');
    await page.click('#me-password-form button[type=submit]');
    await page.waitForSelector('#me-done:not([hidden])');
    const signIn = async (password: string): Promise<number> =>
      (await fetch(`${api.url}/api/v1/auth/password`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ email: 'owner@a.test', password }) })).status;
    expect([await signIn('the owner password'), await signIn('the owner password, changed')]).toEqual([401, 200]);
    // Two-factor sign-in: turned on with the key the page shows and a code from it, then off with a code.
    await page.waitForSelector('#totp-start:not([hidden])');
    expect(await page.textContent('#totp-state')).toBe('Two-factor sign-in is off.');
    await page.click('#totp-start');
    await page.waitForSelector('#totp-enrol:not([hidden])');
    const totp = new TOTP({ secret: Secret.fromBase32(String(await page.textContent('#totp-secret'))), digits: 6, period: 30, algorithm: 'SHA1' });
    await page.fill('#totp-code', totp.generate());
    await page.click('#totp-submit');
    await pollUntil(async () => ((await page.textContent('#totp-state')) === 'Two-factor sign-in is on.' ? true : undefined), { timeoutMs: 20_000, describe: () => 'two-factor never on' });
    expect(await signIn('the owner password, changed')).toBe(401);
    await page.fill('#totp-code', totp.generate());
    await page.click('#totp-submit');
    await pollUntil(async () => ((await page.textContent('#totp-state')) === 'Two-factor sign-in is off.' ? true : undefined), { timeoutMs: 20_000, describe: () => 'two-factor never off' });
    expect(await signIn('the owner password, changed')).toBe(200);
    // Sign out everywhere: this browser is back at the sign-in page, its cookie refused.
    const mine = (await context.cookies()).find((c) => c.name === 'farol_session')?.value ?? '';
    await page.click('#signout-all');
    await page.waitForSelector('#login:not([hidden])');
    expect((await fetch(`${api.url}/api/v1/auth/session`, { headers: { cookie: `farol_session=${mine}` } })).status).toBe(401);
    await context.close();
  });

  it('mails a reset link from "Forgot password?" and sets a new password through it', async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(`${api.url}/`);
    await page.waitForSelector('#forgot-open:not([hidden])');
    await page.fill('#email-input', 'owner@a.test');
    await page.click('#forgot-open');
    expect(await page.inputValue('#forgot-email')).toBe('owner@a.test');
    await page.click('#forgot-form button[type=submit]');
    await page.waitForSelector('#forgot-done:not([hidden])');
    expect(await page.textContent('#forgot-done')).toMatch(/link to choose a new password is on its way/);
    const link = /http:\/\/127\.0\.0\.1:\d+\/#reset=[A-Za-z0-9_-]{43}/.exec(bodyOf((await smtp.mailTo('owner@a.test')).raw))?.[0];
    expect(link).toBeDefined();
    // Opened from the mail: a page of its own.
    const opened = await context.newPage();
    await opened.goto(link ?? '');
    await opened.waitForSelector('#link-form:not([hidden])');
    expect(await opened.textContent('#link-title')).toBe('Choose a new password.');
    // The link leaves the address bar at once.
    expect(opened.url()).toBe(`${api.url}/`);
    await opened.fill('#link-password', 'a password from the mail');
    await opened.click('#link-form button[type=submit]');
    await until(opened, 'ready');
    expect(await opened.textContent('#whoami')).toBe('owner@a.test (owner)');
    await context.close();
    const again = await fetch(`${api.url}/api/v1/auth/reset`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token: link?.split('reset=')[1], password: 'one more new password' }) });
    expect(again.status).toBe(400);
  });

  it('lets a person signed in join a second account from its invitation link and switch between the two in the header', async () => {
    const invited = await fetch(`${api.url}/api/v1/invitations`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ownerBToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ email: 'multi+beta@a.test', role: 'viewer', sites: [] }),
    });
    const link = String(((await invited.json()) as { link?: string }).link);
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(link);
    await page.waitForSelector('#link-form:not([hidden])');
    // Already a Farol person: sign in first, then join as yourself (no second password).
    await page.click('#link-signin');
    await page.fill('#email-input', 'multi@a.test');
    await page.fill('#password-input', 'the multi password');
    await page.click('#password-form button[type=submit]');
    await until(page, 'ready');
    expect(await page.isVisible('#account-control')).toBe(false);
    await page.waitForSelector('#join:not([hidden])');
    await page.click('#join-accept');
    const sites = async (): Promise<string> => (await page.$$eval('#site-select option', (os) => os.map((o) => o.getAttribute('value')))).join(',');
    const shows = async (want: string, whoami: string): Promise<unknown> =>
      pollUntil(async () => ((await sites()) === want && (await page.textContent('#whoami')) === whoami ? true : undefined), { timeoutMs: 20_000, intervalMs: 50, describe: () => `never showed ${want}` });
    // Joined and switched into Beta: a viewer of its sites, the menu listing both accounts, Beta marked.
    await shows('b1.test', 'multi@a.test (viewer)');
    await page.waitForSelector('#account-control:not([hidden])');
    expect(await page.isVisible('#join')).toBe(false);
    expect(await page.$$eval('#account-select option', (os) => os.map((o) => o.textContent))).toEqual(['A (admin)', 'Beta (viewer)']);
    expect(await page.inputValue('#account-select')).toBe(accountB);
    expect(await page.isVisible('#team-button')).toBe(false);
    // Back to A from the menu: its data again, as its admin of a1.test.
    await page.selectOption('#account-select', accountA);
    await shows('a1.test', 'multi@a.test (admin)');
    expect(await page.inputValue('#account-select')).toBe(accountA);
    expect(await page.isVisible('#team-button')).toBe(true);
    await context.close();
  });
});
