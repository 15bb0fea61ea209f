import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../lib/log.ts';
import type { ControlPlane } from '../control/control-plane.ts';
import { hashPassword } from '../control/people.ts';
import { startApiOnChdb, type ApiOnChdb } from '../api/experiments/testing/api-harness.ts';
import { pollUntil } from './support/e2e.ts';
import { runFarol } from './support/farol-process.ts';
import { bodyOf, startSmtp, type Received, type TestSmtp } from './support/smtp.ts';

/**
 * Password reset by mail (#14) against a real SMTP server (`smtp-server` in-process on 127.0.0.1,
 * port 0, with AUTH) and the real API on a real port (chDB on a temp dir), the control plane's
 * clock in the test's hands: a "forgot password" request mails a one-time link that resets once;
 * a second use, an expired link and a made-up one are refused; an unknown email gets the same
 * answer and no mail; requests are throttled per email and per client; a mail server outage is
 * logged clearly (no credential in it) and the API keeps serving; bad SMTP settings exit 2 naming
 * the variable. No password, SMTP password or reset token reaches a log line or an error answer.
 */

const SMTP_USER = 'farol-mailer';
const SMTP_PASS = 'smtp-pass-Zq81xT4w';
const PASSWORD = 'the first password of all';
const PUBLIC_URL = 'http://stats.test:8080';

let smtp: TestSmtp;
let api: ApiOnChdb;
let control: ControlPlane;
let clock = Date.parse('2026-12-06T12:00:00Z');
const logLines: string[] = [];
const secrets = new Set<string>([SMTP_PASS, PASSWORD]);
const bodies: string[] = [];
let account = '';
let xff = 0;
const newClient = (): string => `198.51.100.${++xff}`;

async function req(method: string, path: string, body?: unknown, client = newClient()): Promise<{ status: number; json: Record<string, unknown>; text: string; headers: Headers }> {
  const headers: Record<string, string> = { 'x-forwarded-for': client };
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(`${api.url}${path}`, { method, headers, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
  const text = await res.text();
  if (res.status >= 400) bodies.push(text);
  // Every answer here is a JSON object, or empty.
  const json = (text === '' ? {} : JSON.parse(text)) as Record<string, unknown>;
  return { status: res.status, json, text, headers: res.headers };
}

const code = (r: { status: number; json: Record<string, unknown> }): string => `${r.status} ${String((r.json.error as { code?: string } | undefined)?.code ?? '')}`.trim();

const mailTo = async (to: string): Promise<Received> => smtp.mailTo(to);

function linkIn(m: Received): string {
  const link = /http:\/\/stats\.test:8080\/#reset=([A-Za-z0-9_-]{43})/.exec(bodyOf(m.raw));
  expect(link, bodyOf(m.raw)).not.toBeNull();
  const secret = link?.[1] ?? '';
  secrets.add(secret);
  return secret;
}

async function addPerson(email: string): Promise<string> {
  const m = await control.addMember(account, { name: email, role: 'viewer' });
  await control.people.setIdentity(m.id, account, { email, passwordHash: await hashPassword(PASSWORD) });
  return m.id;
}

beforeAll(async () => {
  smtp = await startSmtp(SMTP_USER, SMTP_PASS);
  api = await startApiOnChdb({
    database: 'farol_signin_mail_test',
    cacheTtlMs: 5_000,
    env: {
      FAROL_SMTP_URL: smtp.url,
      FAROL_SMTP_FROM: 'stats@farol.test',
      FAROL_PUBLIC_URL: PUBLIC_URL,
      FAROL_RATE_SIGNIN: '3/min,3',
      FAROL_TRUST_PROXY: '127.0.0.1/32',
    },
    control: { now: () => clock },
    log: createLogger('debug', {}, (line) => logLines.push(line)),
    seed: async (c) => {
      control = c;
      account = (await c.createAccount({ name: 'A' })).id;
    },
  });
}, 60_000);

afterAll(async () => {
  await api?.close();
  await smtp?.close();
});

describe('password reset by mail', () => {
  it('says it is on, and mails a one-time link that resets once and signs the person in', async () => {
    expect((await req('GET', '/api/v1/auth/config')).json).toMatchObject({ password: true, reset_mail: true });
    await addPerson('forgetful@a.test');
    const asked = await req('POST', '/api/v1/auth/forgot', { email: 'Forgetful@A.test ' });
    expect(asked.status).toBe(202);
    const mail = await mailTo('forgetful@a.test');
    expect(mail.from).toBe('stats@farol.test');
    expect(mail.raw).toMatch(/^Subject: Choose a new Farol password\r$/m);
    const secret = linkIn(mail);
    const newPassword = 'a fresh password from mail';
    secrets.add(newPassword);
    const used = await req('POST', '/api/v1/auth/reset', { token: secret, password: newPassword });
    expect(used.status).toBe(200);
    expect(used.headers.getSetCookie()[0]).toMatch(/^farol_session=/);
    secrets.add(/^farol_session=([^;]+)/.exec(used.headers.getSetCookie()[0] ?? '')?.[1] ?? '');
    // Used once: the same link again is refused, like a made-up one.
    expect(code(await req('POST', '/api/v1/auth/reset', { token: secret, password: 'yet another password' }))).toBe('400 API_LINK_INVALID');
    expect(code(await req('POST', '/api/v1/auth/reset', { token: 'B'.repeat(43), password: 'yet another password' }))).toBe('400 API_LINK_INVALID');
    expect((await req('POST', '/api/v1/auth/password', { email: 'forgetful@a.test', password: newPassword })).status).toBe(200);
    expect(code(await req('POST', '/api/v1/auth/password', { email: 'forgetful@a.test', password: PASSWORD }))).toBe('401 API_SIGNIN_FAILED');
    const trail = await control.people.auditTrail(account, 30, 100);
    expect(trail.map((e) => e.action)).toEqual(expect.arrayContaining(['password.reset.mail', 'password.reset']));
  });

  it('answers an unknown email the same, and mails nobody', async () => {
    await addPerson('known@a.test');
    const unknown = await req('POST', '/api/v1/auth/forgot', { email: 'nobody@a.test' });
    const known = await req('POST', '/api/v1/auth/forgot', { email: 'known@a.test' });
    expect([unknown.status, unknown.text]).toEqual([known.status, known.text]);
    expect(unknown.headers.get('content-length')).toBe(known.headers.get('content-length'));
    // The unknown request's work (one lookup) started first and is a strict part of the known
    // one's (the same lookup, then a link, then the SMTP conversation): once the known mail is
    // in, the unknown request has finished, without a mail.
    linkIn(await mailTo('known@a.test'));
    expect(smtp.inbox.filter((m) => m.to.includes('nobody@a.test'))).toEqual([]);
    // A removed member's email is unknown too.
    const gone = await addPerson('gone@a.test');
    await control.removeMember(gone);
    expect((await req('POST', '/api/v1/auth/forgot', { email: 'gone@a.test' })).text).toBe(known.text);
    expect(code(await req('POST', '/api/v1/auth/forgot', { email: 'not an email' }))).toBe('400 API_BAD_REQUEST');
  });

  it('refuses a link past its day', async () => {
    await addPerson('late@a.test');
    expect((await req('POST', '/api/v1/auth/forgot', { email: 'late@a.test' })).status).toBe(202);
    const secret = linkIn(await mailTo('late@a.test'));
    clock += 24 * 3_600_000 + 1_000;
    expect(code(await req('POST', '/api/v1/auth/reset', { token: secret, password: 'too late for this one' }))).toBe('400 API_LINK_INVALID');
  });

  it('throttles requests per email (any client) and per client (any email)', async () => {
    await addPerson('spammed@a.test');
    for (let i = 0; i < 3; i++) expect((await req('POST', '/api/v1/auth/forgot', { email: 'spammed@a.test' })).status).toBe(202);
    const blocked = await req('POST', '/api/v1/auth/forgot', { email: 'spammed@a.test' });
    expect(code(blocked)).toBe('429 API_SIGNIN_THROTTLED');
    expect(Number(blocked.headers.get('retry-after'))).toBeGreaterThan(0);
    const one = newClient();
    for (const e of ['c1@a.test', 'c2@a.test', 'c3@a.test']) expect((await req('POST', '/api/v1/auth/forgot', { email: e }, one)).status).toBe(202);
    expect(code(await req('POST', '/api/v1/auth/forgot', { email: 'c4@a.test' }, one))).toBe('429 API_SIGNIN_THROTTLED');
    // Asking for mail spends no sign-in budget: the spammed person still signs in.
    expect((await req('POST', '/api/v1/auth/password', { email: 'spammed@a.test', password: PASSWORD })).status).toBe(200);
  });

  it('logs a mail server outage clearly, without the credentials, and keeps serving', async () => {
    await addPerson('outage@a.test');
    await smtp.close();
    const before = logLines.length;
    expect((await req('POST', '/api/v1/auth/forgot', { email: 'outage@a.test' })).status).toBe(202);
    const line = await pollUntil(async () => logLines.slice(before).find((l) => l.includes('reset mail not sent')), { timeoutMs: 20_000, describe: () => 'the outage logged' });
    expect(line).toMatch(/FAROL_SMTP_URL failed/);
    expect(line).toMatch(/ECONNREFUSED|ECONNECTION|connect/i);
    expect(line).not.toContain(SMTP_USER);
    expect((await req('GET', '/api/v1/auth/config')).status).toBe(200);
    expect((await req('POST', '/api/v1/auth/password', { email: 'outage@a.test', password: PASSWORD })).status).toBe(200);
  });

  it('leaves no password, SMTP password or reset token in the logs or any error answer', () => {
    const everything = [...logLines, ...bodies].join('\n');
    expect(logLines.length).toBeGreaterThan(0);
    for (const s of secrets) if (s.length >= 8) expect(everything.includes(s), 'a secret in a log line or an answer').toBe(false);
  });
});

describe('SMTP settings', () => {
  it('a bad FAROL_SMTP_URL or FAROL_SMTP_FROM, or one without the other, exits 2 naming the variable and never echoes the password', async () => {
    const cases: Array<[Record<string, string>, string]> = [
      [{ FAROL_SMTP_URL: `http://u:${SMTP_PASS}@mail.test`, FAROL_SMTP_FROM: 'a@b.test', FAROL_PUBLIC_URL: PUBLIC_URL }, 'FAROL_SMTP_URL'],
      [{ FAROL_SMTP_URL: `smtps://u:${SMTP_PASS}@mail.test`, FAROL_SMTP_FROM: 'not an address', FAROL_PUBLIC_URL: PUBLIC_URL }, 'FAROL_SMTP_FROM'],
      [{ FAROL_SMTP_URL: `smtps://u:${SMTP_PASS}@mail.test`, FAROL_PUBLIC_URL: PUBLIC_URL }, 'FAROL_SMTP_FROM'],
      [{ FAROL_SMTP_URL: `smtps://u:${SMTP_PASS}@mail.test`, FAROL_SMTP_FROM: 'a@b.test' }, 'FAROL_PUBLIC_URL'],
    ];
    const results = await Promise.all(cases.map(async ([env]) => runFarol(['api'], env)));
    results.forEach((r, i) => {
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toContain(cases[i]?.[1]);
      expect(r.stderr).not.toContain(SMTP_PASS);
    });
  });
});
