import type { AddressInfo } from 'node:net';
import { SMTPServer } from 'smtp-server';
import { pollUntil } from './e2e.ts';

/**
 * A real SMTP server for tests (`smtp-server`, in-process on 127.0.0.1, port 0): plain SMTP with
 * AUTH (PLAIN/LOGIN) for one user, no STARTTLS; every message accepted is kept in `inbox`.
 */

export interface Received {
  from: string;
  to: string[];
  raw: string;
}

export interface TestSmtp {
  port: number;
  /** FAROL_SMTP_URL for this server, with the user's credentials. */
  url: string;
  inbox: Received[];
  /** The next mail to `to` not taken yet (polled). */
  mailTo(to: string): Promise<Received>;
  close(): Promise<void>;
}

export async function startSmtp(user: string, pass: string): Promise<TestSmtp> {
  const inbox: Received[] = [];
  const server = new SMTPServer({
    secure: false,
    disabledCommands: ['STARTTLS'],
    allowInsecureAuth: true,
    authMethods: ['PLAIN', 'LOGIN'],
    logger: false,
    onAuth(auth, _session, cb) {
      if (auth.username === user && auth.password === pass) cb(null, { user });
      else cb(new Error('Invalid username or password'));
    },
    onData(stream, session, cb) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        inbox.push({ from: session.envelope.mailFrom === false ? '' : session.envelope.mailFrom.address, to: session.envelope.rcptTo.map((r) => r.address), raw: Buffer.concat(chunks).toString('utf8') });
        cb();
      });
    },
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.server.address() as AddressInfo).port;
  const taken = new Set<Received>();
  let closed = false;
  return {
    port,
    url: `smtp://${encodeURIComponent(user)}:${encodeURIComponent(pass)}@127.0.0.1:${port}`,
    inbox,
    async mailTo(to) {
      const m = await pollUntil(async () => inbox.find((x) => !taken.has(x) && x.to.includes(to)), { timeoutMs: 20_000, describe: () => `no mail to ${to}` });
      taken.add(m);
      return m;
    },
    async close() {
      if (closed) return;
      closed = true;
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** A message's text body, quoted-printable undone (nodemailer's encoding of long lines). */
export function bodyOf(raw: string): string {
  const at = raw.indexOf('\r\n\r\n');
  const body = raw.slice(at + 4);
  return /content-transfer-encoding:\s*quoted-printable/i.test(raw.slice(0, at))
    ? body.replace(/=\r\n/g, '').replace(/=([0-9A-F]{2})/g, (_m, hex: string) => String.fromCharCode(parseInt(hex, 16)))
    : body;
}
