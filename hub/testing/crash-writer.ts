/**
 * Publishes to a local hub as fast as it can until killed, printing `ack <firstId> <lastId>` for
 * every publish once it resolved. The crash test SIGKILLs it mid-load and checks that every
 * acknowledged record survived.
 *
 * Usage: node --import tsx hub/testing/crash-writer.ts <dir> <partitions> <segmentBytes> [syncIntervalMs]
 * (with `syncIntervalMs`, FAROL_HUB_SYNC=interval:<ms>: acknowledged once written to the OS).
 */
import { openLocalHub } from '../local-hub.ts';
import { crashKey, crashPayload } from './crash-payload.ts';

const [dir, partitions, segmentBytes, syncIntervalMs] = process.argv.slice(2);
if (dir === undefined) throw new Error('usage: crash-writer.ts <dir> <partitions> <segmentBytes> [syncIntervalMs]');
const hub = await openLocalHub({
  dir,
  partitions: Number(partitions ?? 4),
  segmentBytes: Number(segmentBytes ?? 65536),
  ...(syncIntervalMs === undefined ? {} : { syncIntervalMs: Number(syncIntervalMs) }),
});

let nextId = 0;

/** One of several concurrent publishers, so that groups hold many publishes. */
async function lane(): Promise<void> {
  for (;;) {
    const first = nextId;
    const count = 1 + (first % 7);
    nextId += count;
    const ids = Array.from({ length: count }, (_, i) => first + i);
    await hub.publish(ids.map((id) => ({ key: crashKey(id), payload: crashPayload(id) })));
    process.stdout.write(`ack ${first} ${first + count - 1}\n`);
  }
}

process.stdout.write('ready\n');
await Promise.all(Array.from({ length: 16 }, () => lane()));
