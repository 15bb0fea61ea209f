import { REDACTED, redactCredentials } from '../schemas/secrets.ts';

/**
 * Structured JSON logs to stdout, one object a line (pino-like: `log.info({partition, rows}, 'flushed')`).
 * Never pass an IP or a raw User-Agent in a log field. Every string written is scrubbed of
 * credentials (URL user info, connection-string keys, bearer tokens) and of the secret values
 * registered with {@link hideInLogs}, so an SDK error quoting a connection string cannot leak it.
 */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent';
export type LogFields = Record<string, unknown>;

export interface Logger {
  debug(fields: LogFields, msg: string): void;
  info(fields: LogFields, msg: string): void;
  warn(fields: LogFields, msg: string): void;
  error(fields: LogFields, msg: string): void;
  child(fields: LogFields): Logger;
}

const rank: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 };

// Secret values of this process's configuration, longest first (a secret containing another is
// replaced whole).
let hidden: string[] = [];

/**
 * Registers secret values (tokens, passwords, connection-string keys) that no log line may
 * contain: they are replaced by `[redacted]`. Called once by the CLI with the configuration's.
 */
export function hideInLogs(values: Iterable<string>): void {
  hidden = [...new Set([...hidden, ...values])].filter((v) => v !== '').sort((a, b) => b.length - a.length);
}

/** `text` without credentials or registered secrets. */
function scrub(text: string): string {
  let out = redactCredentials(text);
  for (const secret of hidden) if (out.includes(secret)) out = out.split(secret).join(REDACTED);
  return out;
}

const scrubStrings = (_key: string, value: unknown): unknown => (typeof value === 'string' ? scrub(value) : value);

/** Causes followed at most (a cycle or a long chain stops here). */
const MAX_CAUSES = 4;

/**
 * An error as a log field: message, name and stack, the catalogue `code` (and `field`, `status`)
 * of a coded error or an SDK's own code, and its `cause` chain, each cause the same way.
 */
function errorField(err: Error, depth = 0): LogFields {
  const out: LogFields = { message: err.message, name: err.name, stack: err.stack };
  const e = err as Error & { code?: unknown; field?: unknown; status?: unknown };
  if (typeof e.code === 'string' || typeof e.code === 'number') out['code'] = e.code;
  if (typeof e.field === 'string') out['field'] = e.field;
  if (typeof e.status === 'number') out['status'] = e.status;
  const cause: unknown = err.cause;
  if (cause !== undefined && depth < MAX_CAUSES) out['cause'] = cause instanceof Error ? errorField(cause, depth + 1) : String(cause);
  return out;
}

function errorFields(fields: LogFields): LogFields {
  const err = fields['err'];
  if (!(err instanceof Error)) return fields;
  return { ...fields, err: errorField(err) };
}

/** A logger writing JSON lines through `write` (stdout by default). */
export function createLogger(
  level: LogLevel = 'info',
  bindings: LogFields = {},
  write: (line: string) => void = (line) => process.stdout.write(line),
): Logger {
  const min = rank[level];
  const emit = (lvl: Exclude<LogLevel, 'silent'>, fields: LogFields, msg: string): void => {
    if (rank[lvl] < min) return;
    write(`${JSON.stringify({ level: lvl, time: new Date().toISOString(), ...bindings, ...errorFields(fields), msg }, scrubStrings)}\n`);
  };
  return {
    debug: (f, m) => emit('debug', f, m),
    info: (f, m) => emit('info', f, m),
    warn: (f, m) => emit('warn', f, m),
    error: (f, m) => emit('error', f, m),
    child: (f) => createLogger(level, { ...bindings, ...f }, write),
  };
}

/** A logger that drops everything (tests, library defaults). */
export const silentLogger: Logger = createLogger('silent');
