import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { ConfigError, type Config } from '../../schemas/config.ts';
import type { Logger } from '../log.ts';
import type { TlsFiles } from './server.ts';

/**
 * HTTPS served directly (FAROL_TLS_CERT / FAROL_TLS_KEY): the files are checked here with
 * node:crypto before uWebSockets.js loads them, so a wrong path, a file that is not PEM or a key
 * that does not belong to the certificate is a message naming the variable instead of uSockets'
 * bare "App construction failed".
 */

/** Sent by the API and dashboard when serving HTTPS: one year, this host only (no includeSubDomains, no preload: the operator's other hosts are not ours to pin). */
export const HSTS = 'max-age=31536000';

/** What a log line may say about a certificate (never the key). */
export interface CertInfo {
  subject: string;
  validTo: string;
  fingerprint256: string;
}

/** The configured TLS files, checked, or undefined when TLS is off. Throws ConfigError naming the variable. */
export function configuredTls(config: Config): TlsFiles | undefined {
  const cert = config.FAROL_TLS_CERT;
  const key = config.FAROL_TLS_KEY;
  if (cert === undefined || key === undefined) return undefined;
  const files = { cert, key };
  checkTlsFiles(files, (message) => new ConfigError(`invalid configuration:\n  ${message}`));
  return files;
}

/**
 * Reads and checks the certificate and key; `fail` makes the error (a ConfigError at start, a
 * plain Error on reload). The messages name the variable and the path, never file contents.
 */
export function checkTlsFiles(files: TlsFiles, fail: (message: string) => Error = (m) => new Error(m)): CertInfo {
  const read = (name: string, path: string): Buffer => {
    try {
      return readFileSync(path);
    } catch (err) {
      throw fail(`${name}: cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
    }
  };
  const certPem = read('FAROL_TLS_CERT', files.cert);
  const keyPem = read('FAROL_TLS_KEY', files.key);
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(certPem);
  } catch {
    throw fail(`FAROL_TLS_CERT: ${files.cert} is not a PEM certificate`);
  }
  let key: KeyObject;
  try {
    key = createPrivateKey(keyPem);
  } catch {
    // Encrypted keys land here too: uWS could take a passphrase, but it would be one more secret in the environment.
    throw fail(`FAROL_TLS_KEY: ${files.key} is not an unencrypted PEM private key`);
  }
  if (!cert.checkPrivateKey(key)) throw fail(`FAROL_TLS_KEY: ${files.key} is not the private key of the certificate in ${files.cert}`);
  return { subject: cert.subject.replaceAll('\n', ', '), validTo: cert.validTo, fingerprint256: cert.fingerprint256 };
}

/**
 * Re-reads the certificate on SIGHUP (certbot and cert-manager renew in place, then signal):
 * each server in `reloaders` starts a listener with the new files beside the old one, then stops
 * the old one; open connections keep their certificate until they close. A failed reload is
 * logged and the old certificate stays. Returns a function that removes the handler.
 */
export function reloadTlsOnSighup(files: TlsFiles, reloaders: ReadonlyArray<() => void>, log: Logger): () => void {
  const handler = (): void => {
    try {
      const info = checkTlsFiles(files);
      for (const reload of reloaders) reload();
      log.info({ ...info }, 'tls certificate reloaded');
    } catch (err) {
      log.error({ err: err instanceof Error ? err.message : String(err) }, 'tls certificate reload failed; still serving the previous certificate');
    }
  };
  process.on('SIGHUP', handler);
  return () => process.off('SIGHUP', handler);
}
