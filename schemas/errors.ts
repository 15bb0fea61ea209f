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
  API_INTERNAL: { status: 500, message: 'Internal error' },
} as const satisfies Record<string, { status: number; message: string }>;

export type ApiErrorCode = keyof typeof apiErrors;

/** A coded error of the API; `field` names the offending part of the request when there is one. */
export class ApiError extends Error {
  readonly status: number;
  /** Seconds to send as Retry-After (429 and 503 answers). */
  retryAfterS?: number;
  constructor(
    readonly code: ApiErrorCode,
    message?: string,
    readonly field?: string,
  ) {
    super(message ?? apiErrors[code].message);
    this.status = apiErrors[code].status;
  }

  toJSON(): { error: { code: string; message: string; field?: string } } {
    const error: { code: string; message: string; field?: string } = { code: this.code, message: this.message };
    if (this.field !== undefined) error.field = this.field;
    return { error };
  }
}

/** A typed error carrying a catalogue code; `message` may be more specific than the template. */
export class FarolError extends Error {
  readonly status: number;
  /** Seconds to send as Retry-After (429 and 503 answers). */
  retryAfterS?: number;
  constructor(
    readonly code: IngestErrorCode,
    message?: string,
  ) {
    super(message ?? ingestErrors[code].message);
    this.status = ingestErrors[code].status;
  }

  toJSON(): { error: { code: string; message: string } } {
    return { error: { code: this.code, message: this.message } };
  }
}
