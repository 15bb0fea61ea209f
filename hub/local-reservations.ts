import { readFile, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { isErrnoException, type HubLog } from './local-common.ts';
import { fsyncDir, writeFileAtomic } from './local-segment.ts';

/**
 * Offset reservations of a hub in interval mode (FAROL_HUB_SYNC=interval), in `reserved.json`.
 *
 * A record acknowledged in interval mode may be read by a consumer in another process (which
 * reads the files) before it is fdatasynced, and an OS crash may then take it back. Its offset
 * must never be given to another record: a processor replaying a logged write by offset range
 * would take the newcomer for a record it already stored. So before any partition hands out an
 * offset past its reservation, a new reservation is made durable; after an OS crash (the boot id
 * changed since the file was written) every partition goes on from its reservation, leaving a gap
 * where records may have been lost. After a mere crash of Farol the page cache kept everything and
 * nothing is skipped; a clean close leaves no reservation outstanding.
 */

const FILE = 'reserved.json';
const schema = z.object({ version: z.literal(1), bootId: z.string().nullable(), reserved: z.array(z.number().int().min(0)) });

/** Offsets reserved per step: few durable writes (one per partition per this many records), bounded gaps. */
export const RESERVE_STEP = 1 << 20;

/** This boot of the OS (Linux); undefined elsewhere, where every restart counts as one after an OS crash. */
export async function bootId(): Promise<string | undefined> {
  try {
    return (await readFile('/proc/sys/kernel/random/boot_id', 'utf8')).trim() || undefined;
  } catch {
    return undefined;
  }
}

/**
 * Per partition, the least offset the next record may get because of reservations made before
 * an OS crash (0 where none); all 0 when there is no file or the OS has not restarted since it
 * was written. An unreadable file counts as an OS crash with nothing known: it is logged.
 */
export async function offsetsAfterOsCrash(hubDir: string, partitions: number, boot: string | undefined, log: HubLog): Promise<number[]> {
  const none = Array.from({ length: partitions }, () => 0);
  let text: string;
  try {
    text = await readFile(join(hubDir, FILE), 'utf8');
  } catch (err) {
    if (isErrnoException(err, 'ENOENT')) return none;
    throw err;
  }
  let parsed: z.infer<typeof schema>;
  try {
    parsed = schema.parse(JSON.parse(text));
  } catch (err) {
    log.error({ err, file: FILE }, 'unreadable hub offset reservations: offsets lost to an OS crash, if any, may be reused');
    return none;
  }
  if (boot !== undefined && parsed.bootId === boot) return none;
  return none.map((_, p) => parsed.reserved[p] ?? 0);
}

/** Writes and removes `reserved.json` for a writing hub in interval mode; serialized. */
export class Reservations {
  private chain: Promise<void> = Promise.resolve();

  constructor(
    private readonly hubDir: string,
    private readonly boot: string | undefined,
    /** Per partition, offsets below this may be handed out. */
    private readonly reserved: number[],
  ) {}

  /** Makes offsets up to `need` (excluded), plus a step, durable as reserved; resolves to the new end. */
  async reserve(partition: number, need: number): Promise<number> {
    const current = this.reserved[partition] ?? 0;
    if (need <= current) return current;
    this.reserved[partition] = need + RESERVE_STEP;
    await this.save();
    return this.reserved[partition] ?? need;
  }

  /** Writes the current reservations (each durable before it is relied on). */
  save(): Promise<void> {
    const body = `${JSON.stringify({ version: 1, bootId: this.boot ?? null, reserved: this.reserved })}\n`;
    const run = this.chain.then(() => writeFileAtomic(join(this.hubDir, FILE), body));
    this.chain = run.catch(() => {});
    return run;
  }
}

/** Removes `reserved.json` (a clean close, or a hub opened in `always` mode, which reserves nothing). */
export async function clearReservations(hubDir: string): Promise<void> {
  try {
    await unlink(join(hubDir, FILE));
  } catch (err) {
    if (isErrnoException(err, 'ENOENT')) return;
    throw err;
  }
  await fsyncDir(hubDir);
}
