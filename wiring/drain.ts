import type { Logger } from '../lib/log.ts';
import { within } from '../lib/within.ts';

/**
 * Ending a processor in bounded time on SIGTERM (`farol processor`, `farol start`): what a
 * processor holds gets a deadline to be written and checkpointed, then each client a deadline to
 * close, and the process says whether it drained fully (its exit code).
 */

/** What {@link boundedDrain} needs of a running processor (`ProcessorRuntime`). */
export interface Abandonable {
  /** Partitions opened and not closed yet. */
  unclosedPartitions(): number[];
  /** Makes the partitions still writing give up, without checkpointing what they did not write. */
  abandon(reason: string): void;
}

/** Bounds of an Event Hubs processor's drain (SIGTERM must end the process in bounded time). */
export interface DrainBounds {
  /** Writing, snapshotting and checkpointing what is held; past it, the drain gives up writing (15 s; FAROL_DRAIN_TIMEOUT_MS). */
  flushMs: number;
  /** After giving up, how long the partitions get to close (5 s). */
  abandonMs: number;
  /** Each SDK and storage client close (5 s). */
  closeMs: number;
}

export const defaultDrainBounds: DrainBounds = { flushMs: 15_000, abandonMs: 5_000, closeMs: 5_000 };

/**
 * A drain that gave up writing what the processor held (ClickHouse unreachable or too slow):
 * nothing is lost — those events were not checkpointed and the hub hands them to the next owner —
 * but the process did not drain cleanly, so it exits non-zero.
 */
export class DrainIncompleteError extends Error {
  override readonly name = 'DrainIncompleteError';
}

/**
 * Drains `runtime` in bounded time: its partitions get `flushMs` to write, snapshot and
 * checkpoint what they hold; past it the processor gives up writing (nothing further is
 * checkpointed: the hub keeps those events for the next run or owner) and gets `abandonMs` to
 * close. Then each of `closes` runs, bounded by `closeMs` (a hung client close is logged, not
 * waited for). Rejects with {@link DrainIncompleteError} when writes were given up.
 */
export async function boundedDrain(
  runtime: Abandonable,
  closing: Promise<void>,
  closes: ReadonlyArray<readonly [string, () => Promise<void>]>,
  bounds: DrainBounds,
  log: Logger,
): Promise<void> {
  let incomplete: string | undefined;
  if ((await within(closing, bounds.flushMs)) === 'timed out') {
    const partitions = runtime.unclosedPartitions();
    if (partitions.length === 0) {
      // Every partition wrote and checkpointed what it held: only the consumer's close is slow.
      log.warn({ ms: bounds.flushMs }, 'drain: the consumer did not close in time (everything was written); going on');
    } else {
      incomplete = `partitions ${partitions.join(', ')} did not finish writing and checkpointing in ${bounds.flushMs} ms`;
      log.error({ ms: bounds.flushMs, partitions }, 'drain: writes did not finish in time; giving up without checkpointing them (the hub keeps those events)');
      runtime.abandon(incomplete);
      if ((await within(closing, bounds.abandonMs)) === 'timed out') {
        log.error({ ms: bounds.abandonMs }, 'drain: the consumer did not close after giving up; going on');
      }
    }
  }
  for (const [what, close] of closes) {
    try {
      if ((await within(close(), bounds.closeMs)) === 'timed out') log.warn({ ms: bounds.closeMs }, `drain: ${what} did not finish in time; going on`);
    } catch (err) {
      log.warn({ err }, `drain: ${what} failed`);
    }
  }
  if (incomplete !== undefined) throw new DrainIncompleteError(incomplete);
}

/**
 * Drains `processor`; false (logged) when it gave up writing what it held: the events stay in the
 * hub for the next run or owner, and the process should exit non-zero.
 */
export async function drainedFully(processor: { drain(): Promise<void> }, log: Logger): Promise<boolean> {
  try {
    await processor.drain();
    return true;
  } catch (err) {
    if (!(err instanceof DrainIncompleteError)) throw err;
    log.error({ err }, 'stopped without draining everything; the hub keeps the rest for the next run or owner');
    return false;
  }
}

