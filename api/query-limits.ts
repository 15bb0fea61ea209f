import type { Config } from '../schemas/config.ts';
import { ApiError } from '../schemas/errors.ts';
import { StoreError, withQuery, type QueryOptions, type QueryParams, type QuerySettings, type Store } from '../store/store.ts';

/**
 * What one API request may cost ClickHouse: every query runs with a time and memory limit, and
 * each token with a concurrency limit (429 beyond it). Every route that reads ClickHouse on behalf
 * of a request (`POST /api/v2/query`, experiment results, export) reads through
 * {@link limitedStore} inside {@link TokenSlots.run}.
 */

export interface QueryLimits {
  /** ClickHouse `max_execution_time` of each statement, in ms. */
  readonly timeoutMs: number;
  /** ClickHouse `max_memory_usage` of each statement, in bytes. */
  readonly maxMemoryBytes: number;
  /** Requests one token may have reading ClickHouse at once. */
  readonly perToken: number;
  /** Requests of one token that may wait for a slot (each at most `timeoutMs`); past them 429. */
  readonly queuePerToken: number;
}

export function queryLimitsOf(config: Config): QueryLimits {
  return {
    timeoutMs: config.FAROL_API_QUERY_TIMEOUT_MS,
    maxMemoryBytes: config.FAROL_API_QUERY_MAX_MEMORY_BYTES,
    perToken: config.FAROL_API_QUERIES_PER_TOKEN,
    queuePerToken: config.FAROL_API_QUERY_QUEUE_PER_TOKEN,
  };
}

/**
 * Longest statement sent: ClickHouse parses at most `max_query_size` bytes (262144 by default,
 * and a statement's own SETTINGS clause comes too late to raise it), less room for the clause
 * the embedded store appends.
 */
export const MAX_STATEMENT_BYTES = 262_144 - 1024;

const TIMEOUT_EXCEEDED = 159;
const TOO_MANY_ROWS = 158;
const MEMORY_LIMIT_EXCEEDED = 241;
const TOO_MANY_BYTES = 307;
const SYNTAX_ERROR = 62;
const TOO_DEEP_AST = 167;
const TOO_BIG_AST = 168;

/**
 * The coded answer to a statement stopped by a limit of its own, or undefined for any other
 * failure. A limit is not an outage: retrying the same query fails the same way, so these are
 * 4xx without Retry-After. The server's total memory running out (other queries' doing) is an
 * outage, and stays a StoreError (503 with Retry-After).
 */
export function limitError(err: StoreError, limits: QueryLimits): ApiError | undefined {
  switch (err.code) {
    case TIMEOUT_EXCEEDED:
      return new ApiError(
        'API_QUERY_TIMEOUT',
        `The query ran longer than the ${limits.timeoutMs / 1000} s allowed; narrow the date range, the filters or the breakdown`,
      );
    case MEMORY_LIMIT_EXCEEDED:
      // "Query memory limit exceeded" (recent servers) or "Memory limit (for query) exceeded".
      if (!/query memory limit|memory limit \(for query\)/i.test(err.message)) return undefined;
      return new ApiError(
        'API_QUERY_TOO_HEAVY',
        `The query needs more than the ${Math.round(limits.maxMemoryBytes / 1024 ** 2)} MiB of memory allowed; narrow the date range, the filters or the breakdown`,
      );
    case TOO_MANY_ROWS:
    case TOO_MANY_BYTES:
      return new ApiError('API_QUERY_TOO_HEAVY', 'The query reads more than allowed; narrow the date range or the filters');
    case SYNTAX_ERROR:
      return /max query size exceeded/i.test(err.message) ? new ApiError('API_QUERY_TOO_LARGE') : undefined;
    case TOO_DEEP_AST:
    case TOO_BIG_AST:
      return new ApiError('API_QUERY_TOO_LARGE');
    default:
      return undefined;
  }
}

/** The ClickHouse settings of every API statement. */
export function limitSettings(limits: QueryLimits): QuerySettings {
  return {
    max_execution_time: limits.timeoutMs / 1000,
    // Pinned: `break` would answer partial results as if they were whole.
    timeout_overflow_mode: 'throw',
    max_memory_usage: limits.maxMemoryBytes,
  };
}

/**
 * `store` with every query run under `limits`: refused (400) before it is sent when the statement
 * is longer than ClickHouse parses, and answered with a coded error when a limit stops it. Other
 * calls pass through.
 */
export function limitedStore(store: Store, limits: QueryLimits): Store {
  const settings = limitSettings(limits);
  return withQuery(store, async <T = Record<string, unknown>>(sql: string, params?: QueryParams, opts?: QueryOptions): Promise<T[]> => {
    if (Buffer.byteLength(sql) > MAX_STATEMENT_BYTES) throw new ApiError('API_QUERY_TOO_LARGE');
    try {
      return await store.query<T>(sql, params, { ...opts, settings: { ...settings, ...opts?.settings } });
    } catch (err) {
      throw (err instanceof StoreError ? limitError(err, limits) : undefined) ?? err;
    }
  });
}

interface Waiter {
  go(): void;
  timer: NodeJS.Timeout;
}

interface TokenState {
  running: number;
  waiting: Waiter[];
}

/**
 * At most `perToken` requests per token reading ClickHouse at once; up to `queue` more wait for a
 * slot, in order, for at most `maxWaitMs` (the dashboard sends a burst of queries at once); past
 * that a request is refused (429) rather than left to pile up. A request keeps its slot until
 * its queries end, even if its client has gone: the engine is still working for it.
 */
export class TokenSlots {
  private readonly tokens = new Map<string, TokenState>();

  constructor(private readonly limits: Pick<QueryLimits, 'perToken' | 'queuePerToken' | 'timeoutMs'>) {}

  async run<T>(token: string, fn: () => Promise<T>): Promise<T> {
    let state = this.tokens.get(token);
    if (state === undefined) {
      state = { running: 0, waiting: [] };
      this.tokens.set(token, state);
    }
    // A slot is taken here, or handed over by a request that ends (see finally).
    if (state.running < this.limits.perToken) state.running++;
    else await this.wait(state);
    try {
      return await fn();
    } finally {
      const next = state.waiting.shift();
      if (next !== undefined) next.go();
      else if (--state.running === 0) this.tokens.delete(token);
    }
  }

  private wait(state: TokenState): Promise<void> {
    const { perToken, queuePerToken, timeoutMs } = this.limits;
    const busy = (): ApiError =>
      new ApiError('API_TOO_MANY_REQUESTS', `At most ${perToken} queries run at once with one token and ${queuePerToken} wait; retry when one has answered`);
    if (state.waiting.length >= queuePerToken) return Promise.reject(busy());
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        go: () => {
          clearTimeout(waiter.timer);
          resolve();
        },
        timer: setTimeout(() => {
          state.waiting.splice(state.waiting.indexOf(waiter), 1);
          reject(busy());
        }, timeoutMs),
      };
      state.waiting.push(waiter);
    });
  }

  /** Requests running or waiting (for tests and metrics). */
  inUse(): number {
    let n = 0;
    for (const s of this.tokens.values()) n += s.running + s.waiting.length;
    return n;
  }
}

/** What routes that read ClickHouse for a request use: the limited store and the token slots. */
export interface Reports {
  readonly store: Store;
  readonly slots: TokenSlots;
  readonly limits: QueryLimits;
}

export function reportsOf(store: Store, limits: QueryLimits): Reports {
  return { store: limitedStore(store, limits), slots: new TokenSlots(limits), limits };
}
