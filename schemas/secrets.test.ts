import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from './config.ts';
import { isSecretVariable, redactCredentials, secretValues } from './secrets.ts';

const MARK = 'Zq9SECRETmark';

/** The message loadConfig throws for `env`. */
function configError(env: Record<string, string>): string {
  try {
    loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) return err.message;
    throw err;
  }
  throw new Error(`loadConfig accepted ${JSON.stringify(env)}`);
}

describe('redactCredentials', () => {
  it.each([
    ['URL user info', `https://farol:${MARK}@clickhouse.internal:8443/db`, 'https://[redacted]@clickhouse.internal:8443/db'],
    ['URL user info with an @ in the password', `http://u:p@${MARK}@host:8123`, 'http://[redacted]@host:8123'],
    ['URL user only', `http://${MARK}@host`, 'http://[redacted]@host'],
    [
      'Event Hubs connection string',
      `Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey=${MARK}/+x=;EntityPath=hub`,
      'Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey=[redacted];EntityPath=hub',
    ],
    [
      'storage connection string',
      `DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=${MARK}==;EndpointSuffix=core.windows.net`,
      'DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=[redacted];EndpointSuffix=core.windows.net',
    ],
    [
      'SAS connection string',
      `BlobEndpoint=https://acct.blob.core.windows.net/;SharedAccessSignature=sv=2022-11-02&ss=b&sig=${MARK}%2B%3D&se=2030`,
      'BlobEndpoint=https://acct.blob.core.windows.net/;SharedAccessSignature=[redacted]&ss=b&sig=[redacted]&se=2030',
    ],
    ['SAS URL', `https://acct.blob.core.windows.net/c?sv=2022&sig=${MARK}&se=1`, 'https://acct.blob.core.windows.net/c?sv=2022&sig=[redacted]&se=1'],
    ['password=', `host=x;password=${MARK};db=y`, 'host=x;password=[redacted];db=y'],
    ['Authorization header', `authorization: Bearer ${MARK}xyz`, 'authorization: Bearer [redacted]'],
    ['a Farol API token', `token farol_${MARK}${'A'.repeat(30)} leaked`, 'token farol_[redacted] leaked'],
  ])('%s', (_label, text, expected) => {
    expect(redactCredentials(text)).toBe(expected);
    expect(redactCredentials(text)).not.toContain(MARK);
  });

  it.each([
    'connect ECONNREFUSED 127.0.0.1:8123',
    'http://clickhouse:8123/?database=farol',
    'farol_processor_lag_events{partition="3"} 0',
    'token prefix farol_AbCdEf',
    'mailto ops@example.com',
  ])('leaves text without credentials alone: %s', (text) => {
    expect(redactCredentials(text)).toBe(text);
  });

  it('never cuts a JSON escape in half', () => {
    const line = JSON.stringify({ msg: `password=${MARK}\\"x and "https://u:${MARK}@h"` });
    const out = redactCredentials(line);
    expect(out).not.toContain(MARK);
    expect(() => JSON.parse(out) as unknown).not.toThrow();
  });
});

describe('secret variables', () => {
  it('are known by name, including ones added later', () => {
    for (const name of [
      'FAROL_BOOTSTRAP_TOKEN',
      'FAROL_CLICKHOUSE_PASSWORD',
      'FAROL_EVENTHUBS_CONNECTION_STRING',
      'FAROL_CHECKPOINT_CONNECTION_STRING',
      'FAROL_OIDC_CLIENT_SECRET',
      'FAROL_METRICS_TOKEN',
    ]) {
      expect(isSecretVariable(name), name).toBe(true);
    }
    for (const name of ['FAROL_PORT', 'FAROL_CLICKHOUSE_URL', 'FAROL_TLS_KEY', 'FAROL_DATA_DIR']) expect(isSecretVariable(name), name).toBe(false);
  });

  it('secretValues finds the values, the keys inside connection strings and URL passwords', () => {
    const values = secretValues({
      FAROL_BOOTSTRAP_TOKEN: `${MARK}-token`,
      FAROL_CLICKHOUSE_URL: `https://farol:${MARK}%40pw@ch:8443`,
      FAROL_EVENTHUBS_CONNECTION_STRING: `Endpoint=sb://x/;SharedAccessKeyName=k;SharedAccessKey=${MARK}-eh`,
      FAROL_PORT: '8080',
      FAROL_CLICKHOUSE_PASSWORD: 'abc',
      PATH: `/bin:${MARK}-not-farol`,
    });
    expect(values).toEqual(
      expect.arrayContaining([`${MARK}-token`, `${MARK}%40pw`, `${MARK}@pw`, `${MARK}-eh`, `Endpoint=sb://x/;SharedAccessKeyName=k;SharedAccessKey=${MARK}-eh`]),
    );
    // Too short to hunt for in free text; not a FAROL_ variable.
    expect(values).not.toContain('abc');
    expect(values.some((v) => v.includes('not-farol'))).toBe(false);
  });
});

describe('configuration errors', () => {
  it.each([
    ['FAROL_BOOTSTRAP_TOKEN', `has spaces ${MARK}`],
    ['FAROL_BOOTSTRAP_TOKEN', MARK],
    ['FAROL_BOOTSTRAP_TOKEN', `${MARK}${'x'.repeat(300)}`],
    ['FAROL_CLICKHOUSE_URL', `ftp://farol:${MARK}@clickhouse:21`],
    ['FAROL_CLICKHOUSE_URL', `https:/farol:${MARK}@clickhouse`],
    ['FAROL_CLICKHOUSE_URL', `not a url ${MARK}@x`],
  ])('name %s without echoing its secret', (name, value) => {
    const message = configError({ [name]: value });
    expect(message).toContain(name);
    expect(message).not.toContain(MARK);
  });

  it('still echo a bad value that holds no secret', () => {
    expect(configError({ FAROL_PORT: 'eighty' })).toContain('FAROL_PORT="eighty"');
    expect(configError({ FAROL_CLICKHOUSE_URL: 'ftp://clickhouse:21' })).toContain('FAROL_CLICKHOUSE_URL="ftp://clickhouse:21"');
  });
});
