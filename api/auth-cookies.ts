import type { Config } from '../schemas/config.ts';

/**
 * The browser session's cookie. `HttpOnly` (no script reads it), `SameSite=Lax` (not sent on a
 * cross-site POST or fetch; sent on the top-level GET back from the identity provider), `Path=/`.
 * It is `Secure`, and named with the `__Host-` prefix (which browsers honour only for a Secure,
 * host-only cookie), when {@link secureCookies}: FAROL_PUBLIC_URL is an https URL or Farol serves TLS itself.
 */

const PLAIN = 'farol_session';
const HOST = '__Host-farol_session';

/**
 * Whether cookies are marked Secure: people reach Farol over https — FAROL_PUBLIC_URL's scheme
 * (a deployment behind a TLS-terminating proxy sets FAROL_PUBLIC_URL=https://…), or Farol serves
 * TLS itself (FAROL_TLS_CERT).
 */
export function secureCookies(config: Pick<Config, 'FAROL_PUBLIC_URL' | 'FAROL_TLS_CERT'>): boolean {
  return config.FAROL_PUBLIC_URL?.startsWith('https:') === true || config.FAROL_TLS_CERT !== undefined;
}

/** The cookies of a `Cookie` header by name (the first of a repeated name); a header past 8 KiB is ignored. */
export function parseCookies(header: string | undefined): Map<string, string> {
  const out = new Map<string, string>();
  if (header === undefined || header.length > 8192) return out;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    const name = part.slice(0, eq).trim();
    if (!out.has(name)) out.set(name, part.slice(eq + 1).trim());
  }
  return out;
}

/** The session secret a request's cookies carry (either name), or undefined. */
export function sessionSecretOf(cookieHeader: string | undefined): string | undefined {
  const c = parseCookies(cookieHeader);
  return c.get(HOST) ?? c.get(PLAIN);
}

/** `Set-Cookie` for a new session, living as long as its absolute lifetime. */
export function sessionCookie(secret: string, maxAgeS: number, secure: boolean): string {
  return `${secure ? HOST : PLAIN}=${secret}; Path=/; Max-Age=${Math.floor(maxAgeS)}; HttpOnly; SameSite=Lax${secure ? '; Secure' : ''}`;
}

/** `Set-Cookie` that removes the session cookie. */
export function clearSessionCookie(secure: boolean): string {
  return `${secure ? HOST : PLAIN}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax${secure ? '; Secure' : ''}`;
}

/** A short-lived cookie binding an OpenID Connect sign-in to the browser that started it. */
export function flowCookie(name: string, value: string, maxAgeS: number, secure: boolean): string {
  return `${name}=${value}; Path=/api/v1/auth/oidc; Max-Age=${Math.floor(maxAgeS)}; HttpOnly; SameSite=Lax${secure ? '; Secure' : ''}`;
}
