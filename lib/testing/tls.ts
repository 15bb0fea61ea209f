import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { request, type Agent } from 'node:https';
import { join } from 'node:path';

/*
 * Test and bench support for HTTPS: self-signed certificates made with the openssl command line
 * (node:crypto parses certificates but cannot issue one), and a node:https client that trusts
 * exactly the given CA and reports which certificate the server presented.
 */

export interface TestCert {
  cert: string;
  key: string;
  /** The certificate PEM: the CA a client trusts. */
  pem: Buffer;
  commonName: string;
}

/** A self-signed P-256 certificate for 127.0.0.1 and localhost, valid for 2 days, written under `dir`. */
export function makeTestCert(dir: string, name: string): TestCert {
  const cert = join(dir, `${name}.crt`);
  const key = join(dir, `${name}.key`);
  const commonName = `farol-test-${name}`;
  execFileSync(
    'openssl',
    [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
      '-keyout', key, '-out', cert, '-days', '2', '-subj', `/CN=${commonName}`,
      '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  return { cert, key, pem: readFileSync(cert), commonName };
}

export interface HttpsAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  /** CN of the certificate the server presented on this connection. */
  peerCommonName: string;
  /** The client port of the connection (the same port twice = the same kept-alive connection). */
  localPort: number;
}

/** One HTTPS request to 127.0.0.1:`port`, trusting only `ca`; `agent` keeps a connection alive across calls. */
export function httpsRequest(opts: {
  port: number;
  path: string;
  ca: Buffer | Buffer[];
  method?: string;
  body?: string;
  headers?: Record<string, string>;
  agent?: Agent;
}): Promise<HttpsAnswer> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port: opts.port,
        path: opts.path,
        method: opts.method ?? 'GET',
        ca: opts.ca,
        headers: opts.headers ?? {},
        ...(opts.agent === undefined ? { agent: false } : { agent: opts.agent }),
      },
      (res) => {
        const socket = res.socket as import('node:tls').TLSSocket;
        const peerCommonName = String(socket.getPeerCertificate().subject.CN);
        const localPort = socket.localPort ?? 0;
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body, peerCommonName, localPort }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.setTimeout(10_000, () => req.destroy(new Error('https request timed out')));
    req.end(opts.body);
  });
}
