/**
 * What counts as a secret in Farol's configuration and in text it prints (secrets never appear
 * in logs or error messages): the secret variables, whose values are never echoed,
 * and credentials inside URLs and connection strings, which are cut out wherever text is logged.
 */

/**
 * Whether a configuration variable holds a secret (its value is never echoed, not even when it is
 * invalid). By name, so a variable added later (`FAROL_…_TOKEN`, `…_SECRET`) is covered too.
 */
export function isSecretVariable(name: string): boolean {
  return /(?:TOKEN|PASSWORD|SECRET|CONNECTION_STRING|_SAS)$/.test(name);
}

export const REDACTED = '[redacted]';

// `scheme://user:password@host`: everything between `//` and the last `@` before the host ends.
// Backslashes and quotes end it too, so a match never cuts a JSON escape in half.
const URL_USERINFO = /\b([a-z][a-z0-9+.-]*:\/\/)[^\s/?#"'<>\\]+@/gi;
// `key=value` credentials of connection strings and query strings (Azure: SharedAccessKey,
// AccountKey, SAS `sig`; ClickHouse/ODBC style `password=`).
const KEYED =
  /\b(SharedAccessKey|AccountKey|SharedAccessSignature|sig|password|passwd|pwd|secret|client_secret|access_token|token|api_key|apikey|key)=([^;&\s"'<>,\\]*)/gi;
// HTTP credentials as they appear in a header dump.
const AUTH_HEADER = /\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]{8,}/g;
// Farol API tokens: `farol_` + 32 random bytes in base64url (43 characters). Display prefixes
// (`farol_` + 6 characters) stay readable.
const FAROL_TOKEN = /\bfarol_[A-Za-z0-9_-]{40,}/g;

/** `text` with credentials in URLs, connection strings and auth headers replaced by `[redacted]`. */
export function redactCredentials(text: string): string {
  if (!/[=@]|Bearer|Basic|farol_/.test(text)) return text;
  return text
    .replace(URL_USERINFO, `$1${REDACTED}@`)
    .replace(KEYED, (_m, key: string) => `${key}=${REDACTED}`)
    .replace(AUTH_HEADER, `$1 ${REDACTED}`)
    .replace(FAROL_TOKEN, `farol_${REDACTED}`);
}

/** Shorter secrets are not hunted for in free text: replacing them everywhere would mangle logs. */
export const MIN_HIDDEN_SECRET_LENGTH = 6;

/**
 * The secret values in a configuration: every secret variable's value, the credentials inside its
 * connection strings (`SharedAccessKey=…`, `AccountKey=…`, `sig=…`) and the passwords of URLs
 * (`https://user:password@host`), as given and URL-decoded. Values shorter than
 * {@link MIN_HIDDEN_SECRET_LENGTH} are left out.
 */
export function secretValues(env: Readonly<Record<string, unknown>>): string[] {
  const out = new Set<string>();
  const add = (v: string | undefined): void => {
    if (v === undefined) return;
    for (const form of [v, safeDecode(v)]) if (form.length >= MIN_HIDDEN_SECRET_LENGTH) out.add(form);
  };
  for (const [name, value] of Object.entries(env)) {
    if (typeof value !== 'string' || !name.startsWith('FAROL_')) continue;
    if (isSecretVariable(name)) add(value);
    for (const m of value.matchAll(new RegExp(KEYED.source, 'gi'))) add(m[2]);
    for (const m of value.matchAll(/\b[a-z][a-z0-9+.-]*:\/\/([^\s/?#]+)@/gi)) {
      const userinfo = m[1] ?? '';
      const colon = userinfo.indexOf(':');
      if (colon !== -1) add(userinfo.slice(colon + 1));
    }
  }
  return [...out];
}

function safeDecode(v: string): string {
  try {
    return decodeURIComponent(v);
  } catch {
    return v;
  }
}
