/**
 * Small pieces shared by the local hub's modules: the logger it accepts, its error type and the
 * counters it keeps.
 */

/** The structured logger the local hub writes to (a pino-like subset; `lib/log.ts` fits). */
export interface HubLog {
  info(fields: Record<string, unknown>, msg: string): void;
  warn(fields: Record<string, unknown>, msg: string): void;
  error(fields: Record<string, unknown>, msg: string): void;
}

/** The default logger: drops everything. */
export const noopLog: HubLog = { info: () => {}, warn: () => {}, error: () => {} };

/** Why a local hub operation failed. */
export type HubErrorCode =
  | 'HUB_CLOSED'
  | 'HUB_BAD_OPTIONS'
  | 'HUB_BAD_META'
  | 'HUB_PARTITION_MISMATCH'
  | 'HUB_LOCKED'
  | 'HUB_READ_ONLY'
  | 'HUB_PAYLOAD_TOO_LARGE'
  | 'HUB_GROUP_IN_USE'
  | 'HUB_FULL';

/** An error from the local hub, carrying a code callers can branch on. */
export class HubError extends Error {
  constructor(
    readonly code: HubErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'HubError';
  }
}

/** Counters a local hub keeps since it was opened (for tests, metrics and benchmarks). */
export interface LocalHubStats {
  /** `publish` calls that resolved. */
  publishes: number;
  /** Records made durable. */
  records: number;
  /** Bytes written to segments, headers included. */
  bytes: number;
  /** Group writes: one per partition per group commit. */
  writes: number;
  /** Durability barriers on segment files: O_DSYNC group writes and `fdatasync` calls. */
  fsyncs: number;
  /** Segments started because the active one was full. */
  rolls: number;
  /** Write or fsync failures (each rejects the publishes of its group). */
  writeErrors: number;
  /** Interval mode: failed background (or final) fsyncs of records already acknowledged. */
  syncErrors: number;
  /** `processBatch` failures (each is retried). */
  batchErrors: number;
  /** Segments deleted by retention. */
  segmentsDeleted: number;
  /** Publishes refused because the hub was at its quota (`maxBytes`). */
  quotaRefusals: number;
}

export function emptyStats(): LocalHubStats {
  return {
    publishes: 0,
    records: 0,
    bytes: 0,
    writes: 0,
    fsyncs: 0,
    rolls: 0,
    writeErrors: 0,
    syncErrors: 0,
    batchErrors: 0,
    segmentsDeleted: 0,
    quotaRefusals: 0,
  };
}

export function isErrnoException(err: unknown, code: string): boolean {
  return err instanceof Error && (err as NodeJS.ErrnoException).code === code;
}
