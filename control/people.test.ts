import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { TOTP, Secret } from 'otpauth';
import { csrfMatches, csrfTokenOf, hashPassword, hashSecret, isSecretShaped, newSecret, newTotp, totpValid, verifyPassword } from './people.ts';
import { parseCookies, sessionCookie, sessionSecretOf } from '../api/auth-cookies.ts';

/** The secrets of sign-in: what is stored, what is compared, what a cookie holds. */

describe('passwords', () => {
  it('are Argon2id with OWASP parameters, and verify only the right password', async () => {
    const stored = await hashPassword('correct horse battery staple');
    expect(stored).toMatch(/^\$argon2id\$v=19\$m=19456,t=2,p=1\$/);
    expect(await verifyPassword(stored, 'correct horse battery staple')).toBe(true);
    expect(await verifyPassword(stored, 'correct horse battery stapler')).toBe(false);
    // No account (or a member without a password) never verifies, and does not throw.
    expect(await verifyPassword(undefined, 'anything')).toBe(false);
    expect(await verifyPassword('', 'anything')).toBe(false);
    expect(await verifyPassword('not a phc string', 'anything')).toBe(false);
  });
});

describe('secrets', () => {
  it('are 256-bit base64url, stored only as their SHA-256', () => {
    const s = newSecret();
    expect(isSecretShaped(s)).toBe(true);
    expect(Buffer.from(s, 'base64url')).toHaveLength(32);
    expect(hashSecret(s)).toMatch(/^[0-9a-f]{64}$/);
    expect(hashSecret(s)).not.toContain(s);
    for (const bad of ['', 'x', `${s}=`, `${s.slice(0, 42)}\0`, 'a'.repeat(10_000)]) expect(isSecretShaped(bad)).toBe(false);
  });

  it('a CSRF token belongs to its session only and compares in constant time without throwing', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 200 }), (presented) => {
        const s = newSecret();
        expect(csrfMatches(s, presented)).toBe(presented === csrfTokenOf(s));
      }),
    );
    const s = newSecret();
    expect(csrfMatches(s, csrfTokenOf(s))).toBe(true);
    expect(csrfMatches(s, csrfTokenOf(newSecret()))).toBe(false);
    expect(csrfMatches(s, undefined)).toBe(false);
    expect(csrfTokenOf(s)).not.toContain(s.slice(0, 10));
  });
});

describe('TOTP', () => {
  it('accepts the current code (± one step), refuses others and junk', () => {
    const { secret, uri } = newTotp('ann@example.com');
    expect(uri).toContain('issuer=Farol');
    const t = new TOTP({ secret: Secret.fromBase32(secret), digits: 6, period: 30, algorithm: 'SHA1' });
    const now = Date.parse('2026-12-06T12:00:00Z');
    expect(totpValid(secret, t.generate({ timestamp: now }), now)).toBe(true);
    expect(totpValid(secret, t.generate({ timestamp: now - 30_000 }), now)).toBe(true);
    expect(totpValid(secret, t.generate({ timestamp: now - 120_000 }), now)).toBe(false);
    for (const junk of ['', '12345', '1234567', 'abcdef', '１２３４５６', '12345\0']) expect(totpValid(secret, junk, now)).toBe(false);
  });
});

describe('cookies', () => {
  it('parse hostile headers without throwing and read the session under either name', () => {
    fc.assert(fc.property(fc.string({ maxLength: 500 }), (h) => void parseCookies(h)));
    const s = newSecret();
    expect(sessionSecretOf(`a=1; farol_session=${s}; b=2`)).toBe(s);
    expect(sessionSecretOf(`__Host-farol_session=${s}`)).toBe(s);
    expect(sessionSecretOf(`farol_session=${s}`.padEnd(9000, ' '))).toBeUndefined();
    expect(sessionCookie(s, 3600, true)).toBe(`__Host-farol_session=${s}; Path=/; Max-Age=3600; HttpOnly; SameSite=Lax; Secure`);
  });
});
