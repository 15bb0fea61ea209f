import { isUtf8 } from 'node:buffer';
import { decodeBinaryEvent, EVENT_CODEC_V1 } from '../hub/event-codec.ts';

/**
 * Rows of the `dead_letters` table (schemas/migrations/raw-tables.ts): what the processor could not
 * store, kept with the reason so that an operator can see it and replay it, while the partition
 * moves on. No IP is ever in one: hub records carry none.
 */

/** One row of `dead_letters` (`time` takes its default). */
export type DeadLetterRow = {
  site: string;
  hub_partition: number;
  hub_offset: number;
  /** The table the record or row was for: `events` (a hub record) or `sessions` (a session row). */
  target_table: string;
  reason: string;
  error: string;
  payload: string;
  payload_encoding: 'json' | 'base64';
};

/** Longest error text kept: ClickHouse's messages quote the rows they refuse, at length. */
const MAX_ERROR_CHARS = 2_000;

/** `String.prototype.toWellFormed` (Node 20; not in the ES2023 lib this project compiles against). */
function toWellFormed(s: string): string {
  return (s as unknown as { toWellFormed(): string }).toWellFormed();
}

/**
 * A dead letter for a hub record (`payload` as it was in the hub, a binary record as its event's
 * JSON) or a refused row (`payload`: the row's JSON). Every string is made well-formed, and bytes that are not UTF-8 travel as
 * base64, so ClickHouse can parse the dead letter even when it could not parse what it holds.
 */
export function deadLetterRow(d: {
  site: string;
  partition: number;
  offset: number;
  table: string;
  reason: string;
  error: string;
  payload: Buffer | string;
}): DeadLetterRow {
  let payload: string;
  let encoding: DeadLetterRow['payload_encoding'] = 'json';
  // A binary hub record is kept as the JSON of its event, which an operator can read and replay.
  const binary = typeof d.payload !== 'string' && d.payload[0] === EVENT_CODEC_V1 ? decodeBinaryEvent(d.payload) : undefined;
  if (binary !== undefined) payload = JSON.stringify(binary);
  else if (typeof d.payload === 'string') payload = toWellFormed(d.payload);
  else if (d.payload[0] !== EVENT_CODEC_V1 && isUtf8(d.payload)) payload = toWellFormed(d.payload.toString('utf8'));
  else {
    payload = d.payload.toString('base64');
    encoding = 'base64';
  }
  return {
    site: toWellFormed(d.site),
    hub_partition: d.partition,
    hub_offset: d.offset,
    target_table: d.table,
    reason: d.reason,
    error: toWellFormed(d.error.slice(0, MAX_ERROR_CHARS)),
    payload,
    payload_encoding: encoding,
  };
}

/**
 * The same dead letter reduced to ASCII (payload in base64, other text with non-ASCII characters
 * replaced): the last form tried when ClickHouse refuses even the dead letter.
 */
export function sanitizedDeadLetter(row: DeadLetterRow): DeadLetterRow {
  const ascii = (s: string): string => s.replace(/[^\x20-\x7e]/g, '?');
  return {
    ...row,
    site: ascii(row.site),
    error: ascii(row.error),
    payload: row.payload_encoding === 'base64' ? row.payload : Buffer.from(row.payload, 'utf8').toString('base64'),
    payload_encoding: 'base64',
  };
}
