import { createTransport, type Transporter } from 'nodemailer';
import { redactCredentials, REDACTED } from '../schemas/secrets.ts';

/**
 * Mail Farol sends: password-reset links, when FAROL_SMTP_URL and FAROL_SMTP_FROM are set (#14),
 * through `nodemailer` (a maintained client: STARTTLS, smtps, AUTH). Plain text only, one
 * recipient per message.
 *
 * The URL's credentials never leave this module: an error is rethrown as a {@link MailError} whose
 * message has them cut out (and the password itself, should a server echo it), so a log line or
 * an answer cannot carry them.
 */

export interface Mail {
  to: string;
  subject: string;
  text: string;
}

export interface Mailer {
  send(mail: Mail): Promise<void>;
  close(): void;
}

/** A failed send, its message free of the SMTP URL's credentials. */
export class MailError extends Error {
  override readonly name = 'MailError';
  constructor(
    message: string,
    /** nodemailer's code (ECONNECTION, EAUTH, ETIMEDOUT…), when it gave one. */
    readonly code: string | undefined,
  ) {
    super(message);
  }
}

/** The text of `err` without the SMTP URL's user and password. */
function scrub(err: unknown, secrets: readonly string[]): string {
  let text = err instanceof Error ? err.message : String(err);
  for (const s of secrets) if (s.length > 0) text = text.split(s).join(REDACTED);
  return redactCredentials(text).slice(0, 300);
}

/** A mailer over FAROL_SMTP_URL (validated by the configuration schema), sending as `from`. */
export function smtpMailer(url: string, from: string, opts: { timeoutMs?: number } = {}): Mailer {
  const u = new URL(url);
  const secrets = [decodeURIComponent(u.password), u.password, decodeURIComponent(u.username), u.username].filter((s) => s.length >= 4);
  const timeout = opts.timeoutMs ?? 15_000;
  const transport: Transporter = createTransport({
    host: u.hostname.replace(/^\[|\]$/g, ''),
    port: u.port === '' ? (u.protocol === 'smtps:' ? 465 : 587) : Number(u.port),
    secure: u.protocol === 'smtps:',
    ...(u.username === '' ? {} : { auth: { user: decodeURIComponent(u.username), pass: decodeURIComponent(u.password) } }),
    connectionTimeout: timeout,
    greetingTimeout: timeout,
    socketTimeout: timeout,
    // Never log through nodemailer's own logger (it would print the conversation).
    logger: false,
    debug: false,
  });
  return {
    async send(mail) {
      try {
        await transport.sendMail({ from, to: mail.to, subject: mail.subject, text: mail.text });
      } catch (err) {
        throw new MailError(`Sending mail through FAROL_SMTP_URL failed: ${scrub(err, secrets)}`, (err as { code?: string }).code);
      }
    },
    close() {
      transport.close();
    },
  };
}
