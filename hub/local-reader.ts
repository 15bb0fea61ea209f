import { open } from 'node:fs/promises';
import { join } from 'node:path';
import type { HubRecord } from './hub.ts';
import { noopLog, type HubLog } from './local-common.ts';
import { listSegments, SegmentCursor, type SegmentFile } from './local-segment.ts';

/** Directory of partition `n` under a hub directory. */
export function partitionDir(hubDir: string, partition: number): string {
  return join(hubDir, `p-${partition}`);
}

/**
 * Reads one partition forward from an offset, across segments, keeping a cursor (file handle
 * and position) so that each read continues where the last one stopped.
 *
 * Reads only files, so it sees appends made by a writer in another process. It returns only
 * whole, crc-valid records: a torn tail of the newest segment is taken for a write in progress
 * and read again later; corruption in a sealed segment is logged and the rest of that segment is
 * skipped, as nothing will ever repair it.
 */
export class PartitionReader {
  private cursor: SegmentCursor | undefined;
  private cursorBase = 0;
  /** Offset of the next record the cursor will return. */
  private next: number;
  /** Records below this offset are read past but not returned (the start asked for). */
  private skipBelow: number;

  constructor(
    private readonly hubDir: string,
    readonly partition: number,
    startOffset: number,
    private readonly log: HubLog = noopLog,
    /**
     * The end of what may be read, when the writer says (FAROL_HUB_SYNC=interval: the records
     * made durable so far); undefined reads to the end of the files.
     */
    private readonly limit: () => number | undefined = () => undefined,
  ) {
    this.next = startOffset;
    this.skipBelow = startOffset;
  }

  /** Offset of the next record to be returned. */
  get nextOffset(): number {
    return Math.max(this.next, this.skipBelow);
  }

  /** Up to `max` records in offset order; empty once caught up with the log. */
  async read(max: number): Promise<HubRecord[]> {
    if (max < 1) return [];
    for (;;) {
      if (this.cursor === undefined && !(await this.openCursor())) return [];
      const first = await this.readCursor(max);
      if (first.records.length > 0) return first.records;
      // At the limit: what follows in this segment is not to be read yet, so it is not sealed.
      if (this.atLimit()) return [];
      const following = await this.segmentAfter(this.cursorBase);
      if (following === undefined) return [];
      // A newer segment exists, so this one is sealed: read it once more, to its real end, before
      // leaving it (appends may have landed between the read above and the roll).
      const last = await this.readCursor(max);
      if (last.records.length > 0) return last.records;
      if (last.stop === 'corrupt') {
        this.log.error(
          { partition: this.partition, segment: this.cursorBase, offset: this.next, resumeAt: following.base },
          'corrupt hub segment: skipping the rest of it',
        );
      }
      await this.switchTo(following);
    }
  }

  /** Closes the file handle; a later `read` reopens at `nextOffset`. */
  async reset(): Promise<void> {
    const cursor = this.cursor;
    this.cursor = undefined;
    if (cursor !== undefined) await cursor.close();
  }

  close(): Promise<void> {
    return this.reset();
  }

  private atLimit(): boolean {
    const limit = this.limit();
    return limit !== undefined && this.next >= limit;
  }

  /** Reads frames from the cursor until `max` records at or past `skipBelow`, the limit, or a stop. */
  private async readCursor(max: number): Promise<{ records: HubRecord[]; stop: 'limit' | 'end' | 'corrupt' }> {
    const cursor = this.cursor;
    if (cursor === undefined) return { records: [], stop: 'end' };
    const records: HubRecord[] = [];
    for (;;) {
      // Offsets are dense within a segment: reading at most `limit - next` frames stays below it.
      const room = (this.limit() ?? Number.POSITIVE_INFINITY) - this.next;
      if (room <= 0) return { records, stop: 'limit' };
      const r = await cursor.read(Math.min(max - records.length, room));
      for (const f of r.frames) {
        const offset = this.next++;
        if (offset >= this.skipBelow) {
          records.push({ partition: this.partition, offset, appendedAt: f.appendedAt, payload: f.payload });
        }
      }
      if (r.stop !== 'limit' || records.length >= max) return { records, stop: r.stop };
    }
  }

  /** Opens the segment holding `nextOffset`; false if the partition has no segment yet. */
  private async openCursor(): Promise<boolean> {
    const segments = await listSegments(partitionDir(this.hubDir, this.partition));
    const first = segments[0];
    if (first === undefined) return false;
    const target = this.nextOffset;
    let segment = segments.findLast((s) => s.base <= target);
    if (segment === undefined) {
      this.log.warn(
        { partition: this.partition, offset: target, oldest: first.base },
        'hub records were deleted by retention before being read; resuming at the oldest',
      );
      segment = first;
      this.skipBelow = first.base;
    } else {
      this.skipBelow = target;
    }
    this.cursor = new SegmentCursor(await open(segment.path, 'r'), 0);
    this.cursorBase = segment.base;
    this.next = segment.base;
    return true;
  }

  private async segmentAfter(base: number): Promise<SegmentFile | undefined> {
    const segments = await listSegments(partitionDir(this.hubDir, this.partition));
    return segments.find((s) => s.base > base);
  }

  private async switchTo(segment: SegmentFile): Promise<void> {
    if (segment.base > this.next) {
      this.log.error(
        { partition: this.partition, from: this.next, to: segment.base },
        'hub offsets missing between segments',
      );
    }
    const fh = await open(segment.path, 'r');
    await this.reset();
    this.skipBelow = Math.max(this.skipBelow, this.next);
    this.cursor = new SegmentCursor(fh, 0);
    this.cursorBase = segment.base;
    this.next = segment.base;
  }
}

/**
 * Reads up to `max` records of a partition of the hub at `hubDir`, from `fromOffset` (for tests
 * and tools). Stops early at the end of the log.
 */
export async function readPartition(
  hubDir: string,
  partition: number,
  fromOffset: number,
  max: number,
  log: HubLog = noopLog,
): Promise<HubRecord[]> {
  const reader = new PartitionReader(hubDir, partition, fromOffset, log);
  try {
    const out: HubRecord[] = [];
    while (out.length < max) {
      const batch = await reader.read(max - out.length);
      if (batch.length === 0) break;
      for (const r of batch) out.push(r);
    }
    return out;
  } finally {
    await reader.close();
  }
}
