import { appendFileSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { PartitionLog } from './partition-log.ts';

const root = mkdtempSync(join(tmpdir(), 'farol-eh-log-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const freshPath = (): string => join(root, `p${n++}`, 'partition-0.log');
const msg = (s: string): Buffer => Buffer.from(s, 'utf8');

describe('PartitionLog', () => {
  it('numbers concurrent appends in call order and commits them together', async () => {
    const path = freshPath();
    let commits = 0;
    const log = await PartitionLog.open(path, () => commits++);
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) => log.append([{ message: msg(`m${i}`), partitionKey: i % 2 ? `k${i}` : undefined }])),
    );
    expect(results.map((r) => r[0]!.sequenceNumber)).toEqual(results.map((_, i) => i));
    expect(log.events.map((e) => e.message.toString())).toEqual(results.map((_, i) => `m${i}`));
    expect(commits).toBeLessThan(50); // group commit: fewer fsyncs than appends
    const offsets = log.events.map((e) => e.offset);
    expect(offsets[0]).toBe(0);
    expect([...offsets].sort((a, b) => a - b)).toEqual(offsets);
    await log.close();
    expect(statSync(path).size).toBeGreaterThan(0);
  });

  it('reloads exactly what was stored and drops a torn tail', async () => {
    const path = freshPath();
    const log = await PartitionLog.open(path);
    await log.append([
      { message: msg('a'), partitionKey: 'visitor-1' },
      { message: msg('b'), partitionKey: undefined },
    ]);
    await log.close();
    const size = statSync(path).size;
    appendFileSync(path, Buffer.from([40, 0, 0, 0, 1, 2])); // a record cut short by a crash

    const again = await PartitionLog.open(path);
    expect(statSync(path).size).toBe(size);
    expect(again.events.map((e) => [e.sequenceNumber, e.partitionKey, e.message.toString()])).toEqual([
      [0, 'visitor-1', 'a'],
      [1, undefined, 'b'],
    ]);
    const [c] = await again.append([{ message: msg('c'), partitionKey: undefined }]);
    expect(c).toMatchObject({ sequenceNumber: 2, offset: size });
    expect(again.indexAfterOffset(again.events[1]!.offset, false)).toBe(2);
    expect(again.indexAfterOffset(again.events[1]!.offset, true)).toBe(1);
    expect(again.indexAfterOffset(-1, false)).toBe(0);
    await again.close();
  });

  it('stops at a record whose checksum does not match', async () => {
    const path = freshPath();
    const log = await PartitionLog.open(path);
    await log.append([{ message: msg('first'), partitionKey: undefined }]);
    const [second] = await log.append([{ message: msg('second'), partitionKey: undefined }]);
    await log.close();
    const bytes = readFileSync(path);
    bytes[bytes.length - 1] = bytes[bytes.length - 1]! ^ 0xff;
    writeFileSync(path, bytes);
    const again = await PartitionLog.open(path);
    expect(again.count).toBe(1);
    expect(statSync(path).size).toBe(second!.offset);
    await again.close();
  });
});
