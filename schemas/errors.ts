/**
 * The error catalogue: every coded error a Farol service answers with, its HTTP status and a
 * message template. Like fastify's lib/errors.js, one place names them all.
 */
export const ingestErrors = {
  ING_BAD_JSON: { status: 400, message: 'Body is not valid JSON' },
  ING_BAD_UTF8: { status: 400, message: 'Body is not valid UTF-8' },
  ING_BAD_EVENT: { status: 400, message: 'Event is invalid' },
  ING_BAD_BATCH: { status: 400, message: 'Batch must be a JSON array of events' },
  ING_BATCH_TOO_LARGE: { status: 413, message: 'Batch holds more events than allowed' },
  ING_BODY_TOO_LARGE: { status: 413, message: 'Body is larger than allowed' },
  ING_EMPTY_BODY: { status: 400, message: 'Body is empty' },
  ING_BAD_CONTENT_TYPE: { status: 415, message: 'Content-Type must be text/plain or application/json' },
  ING_TOO_MANY_PROPS: { status: 400, message: 'Too many props' },
  ING_BAD_URL: { status: 400, message: 'url is not an absolute http(s) URL' },
  ING_UNKNOWN_SITE: { status: 400, message: 'Unknown site' },
  ING_BODY_TIMEOUT: { status: 408, message: 'Body was not received in time' },
  ING_NOT_FOUND: { status: 404, message: 'No such endpoint' },
  ING_METHOD_NOT_ALLOWED: { status: 405, message: 'Method not allowed' },
  ING_HUB_UNAVAILABLE: { status: 503, message: 'Hub unavailable, retry later' },
  ING_SHUTTING_DOWN: { status: 503, message: 'Collector is shutting down' },
  ING_RATE_LIMITED: { status: 429, message: 'Too many events from this client or for this site; retry after the Retry-After seconds' },
  ING_HUB_FULL: { status: 503, message: 'The hub is at its disk quota; retry later' },
  ING_BAD_STRING: { status: 400, message: 'A string is not well-formed Unicode or holds NUL' },
  ING_BODY_MEMORY_FULL: { status: 503, message: 'Too many request bodies in memory, retry later' },
  // Event Hubs mode: the day's shared salt could not be read from blob storage (never minted locally).
  ING_SALT_UNAVAILABLE: { status: 503, message: "Today's visitor salt is not available yet, retry later" },
  // A bug, not a dependency being down: clients and metrics must see the difference.
  ING_INTERNAL: { status: 500, message: 'Internal error' },
} as const satisfies Record<string, { status: number; message: string }>;

export type IngestErrorCode = keyof typeof ingestErrors;

/** Errors of the reporting API, the admin endpoints and the tracker config. */
export const apiErrors = {
  API_UNAUTHORIZED: { status: 401, message: 'A valid API token is required (Authorization: Bearer <token>)' },
  API_FORBIDDEN: { status: 403, message: 'Your role does not allow this' },
  // One answer for "does not exist" and "not yours": a token never learns whether another
  // account's site, experiment or member exists.
  API_NOT_FOUND: { status: 404, message: 'Not found' },
  API_METHOD_NOT_ALLOWED: { status: 405, message: 'Method not allowed' },
  API_BAD_REQUEST: { status: 400, message: 'Request is invalid' },
  API_BAD_QUERY: { status: 400, message: 'Query is invalid' },
  API_BAD_EXPERIMENT_INPUT: { status: 400, message: 'Experiment input is invalid' },
  API_CONFLICT: { status: 409, message: 'Already exists' },
  API_BODY_TOO_LARGE: { status: 413, message: 'Body is larger than allowed' },
  API_UNAVAILABLE: { status: 503, message: 'Storage unavailable, retry later' },
  API_DOMAIN_RESERVED: { status: 409, message: 'This domain was deleted recently and stays reserved to the account that held it' },
  API_TOO_MANY_REQUESTS: { status: 429, message: 'Too many requests; retry after the time given in Retry-After' },
  // A query stopped by its own limit: the same query fails the same way, so not a 5xx to retry.
  API_QUERY_TIMEOUT: { status: 422, message: 'The query ran longer than allowed; narrow the date range, the filters or the breakdown' },
  API_QUERY_TOO_HEAVY: { status: 422, message: 'The query needs more memory than allowed; narrow the date range, the filters or the breakdown' },
  API_QUERY_TOO_LARGE: { status: 400, message: 'The query is too large to run; use fewer filters or filter values' },
  API_RATE_LIMITED: { status: 429, message: 'Too many failed authentications from this client; retry after the Retry-After seconds' },
  API_BODY_MEMORY_FULL: { status: 503, message: 'Too many request bodies in memory, retry later' },
  API_BODY_TIMEOUT: { status: 408, message: 'Body was not received in time' },
  API_INTERNAL: { status: 500, message: 'Internal error' },
  // Sign-in (#14). One answer for "no such email" and "wrong password".
  API_SIGNIN_FAILED: { status: 401, message: 'Email or password is wrong' },
  API_TOTP_REQUIRED: { status: 401, message: 'A code from your authenticator app is required' },
  API_SIGNIN_THROTTLED: { status: 429, message: 'Too many failed sign-ins; retry after the Retry-After seconds' },
  API_CSRF: { status: 403, message: 'A request signed in by cookie must carry the X-CSRF-Token header of its session' },
  API_LINK_INVALID: { status: 400, message: 'This link is unknown, used or expired' },
  API_NOT_INVITED: { status: 403, message: 'No member signs in with this identity, and no open invitation is for its verified email' },
  API_OIDC_FAILED: { status: 400, message: 'Sign-in with the identity provider failed; start again' },
  API_OIDC_OFF: { status: 404, message: 'Sign-in with an identity provider is not configured' },
  API_RESET_MAIL_OFF: { status: 404, message: 'Password reset by mail is not configured (FAROL_SMTP_URL); ask an owner for a reset link' },
} as const satisfies Record<string, { status: number; message: string }>;

export type ApiErrorCode = keyof typeof apiErrors;

export type ErrorCode = IngestErrorCode | ApiErrorCode;

/** Every code of the catalogue, with its status and message template. */
export const errorCatalogue: Readonly<Record<ErrorCode, { readonly status: number; readonly message: string }>> = { ...ingestErrors, ...apiErrors };

/**
 * The two vocabularies Farol answers in: the collector's (`ING_…`, what trackers read) and the
 * API's (`API_…`, what dashboards and scripts read). A route belongs to one.
 */
export type Dialect = 'ingest' | 'api';

/**
 * Conditions of the transport itself (routing, body reading, JSON decoding) that every route can
 * meet, and the code each vocabulary answers them with: one condition, one place, instead of an
 * `ING_` and an `API_` twin mapped by hand. The API answers the decoding conditions with its
 * generic `API_BAD_REQUEST` (naming the field), as it always has.
 */
export const transportErrors = {
  notFound: { ingest: 'ING_NOT_FOUND', api: 'API_NOT_FOUND' },
  methodNotAllowed: { ingest: 'ING_METHOD_NOT_ALLOWED', api: 'API_METHOD_NOT_ALLOWED' },
  bodyTooLarge: { ingest: 'ING_BODY_TOO_LARGE', api: 'API_BODY_TOO_LARGE' },
  bodyTimeout: { ingest: 'ING_BODY_TIMEOUT', api: 'API_BODY_TIMEOUT' },
  bodyMemoryFull: { ingest: 'ING_BODY_MEMORY_FULL', api: 'API_BODY_MEMORY_FULL' },
  emptyBody: { ingest: 'ING_EMPTY_BODY', api: 'API_BAD_REQUEST' },
  badUtf8: { ingest: 'ING_BAD_UTF8', api: 'API_BAD_REQUEST' },
  badJson: { ingest: 'ING_BAD_JSON', api: 'API_BAD_REQUEST' },
  badString: { ingest: 'ING_BAD_STRING', api: 'API_BAD_REQUEST' },
  internal: { ingest: 'ING_INTERNAL', api: 'API_INTERNAL' },
} as const satisfies Record<string, Record<Dialect, ErrorCode>>;

export type TransportCondition = keyof typeof transportErrors;

export interface ErrorOptions {
  /** The offending part of the request (`filters[0][2]`, `props.k`, `body`). */
  field?: string | undefined;
  /** What caused it (kept in logs, never sent to the client). */
  cause?: unknown;
}

/**
 * The coded error every part of Farol throws: a catalogue code, its HTTP status, the field at
 * fault when there is one, and the cause. HTTP answers are made from it by `instanceof`; anything
 * else thrown is a bug, answered 500 with the `…_INTERNAL` code of the route's vocabulary.
 */
export class FarolError extends Error {
  readonly status: number;
  readonly field: string | undefined;
  /** Seconds to send as Retry-After (429 and 503 answers). */
  retryAfterS?: number;
  constructor(
    readonly code: ErrorCode,
    message?: string,
    opts: ErrorOptions = {},
  ) {
    super(message ?? errorCatalogue[code].message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = new.target.name;
    this.status = errorCatalogue[code].status;
    this.field = opts.field;
  }

  /** The error as answered on the wire: `{error: {code, message, field?}}` (never the cause). */
  toJSON(): { error: { code: string; message: string; field?: string } } {
    const error: { code: string; message: string; field?: string } = { code: this.code, message: this.message };
    if (this.field !== undefined) error.field = this.field;
    return { error };
  }
}

/** A transport condition as a coded error in `dialect`'s vocabulary. */
export function transportError(dialect: Dialect, condition: TransportCondition, message?: string, opts?: ErrorOptions): FarolError {
  return new FarolError(transportErrors[condition][dialect], message, opts);
}

/** A {@link FarolError} of the API's vocabulary: `field` names the offending part of the request. */
export class ApiError extends FarolError {
  declare readonly code: ApiErrorCode;
  constructor(code: ApiErrorCode, message?: string, field?: string, cause?: unknown) {
    super(code, message, { field, cause });
  }
}
