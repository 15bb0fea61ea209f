import { describe, expect, it } from 'vitest';
import { sessionCookie, secureCookies } from './auth-cookies.ts';

describe('session cookies', () => {
  it('are Secure when people reach Farol over https: an https public URL, or TLS served by Farol itself', () => {
    expect(secureCookies({ FAROL_PUBLIC_URL: 'https://stats.example.com', FAROL_TLS_CERT: undefined })).toBe(true);
    expect(secureCookies({ FAROL_PUBLIC_URL: undefined, FAROL_TLS_CERT: '/etc/farol/cert.pem' })).toBe(true);
    expect(secureCookies({ FAROL_PUBLIC_URL: 'http://stats.example.com', FAROL_TLS_CERT: '/etc/farol/cert.pem' })).toBe(true);
    expect(secureCookies({ FAROL_PUBLIC_URL: 'http://stats.example.com', FAROL_TLS_CERT: undefined })).toBe(false);
    expect(secureCookies({ FAROL_PUBLIC_URL: undefined, FAROL_TLS_CERT: undefined })).toBe(false);
  });

  it('say so in the header they set', () => {
    expect(sessionCookie('s3cret', 60, true)).toMatch(/; Secure/);
    expect(sessionCookie('s3cret', 60, false)).not.toMatch(/Secure/);
  });
});
