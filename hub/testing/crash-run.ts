/**
 * The hub's kill -9 check, shared by the `always` and interval-mode tests: run crash-writer.ts,
 * SIGKILL it mid-load, then verify that every record it acknowledged is in the log, whole, at a
 * dense offset of its key's partition, and that the log takes appends again.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { expect } from 'vitest';
import { partitionForKey } from '../hub.ts';
import type { LocalHub } from '../local-hub.ts';
import { crashKey, crashPayload } from './crash-payload.ts';

const range = (from: number, to: number): number[] => Array.from({ length: to - from }, (_, i) => from + i);

/** Runs the crash writer on `dir` until it acknowledged `acks` records, SIGKILLs it, and returns the acknowledged ids. */
export async function killCrashWriterAfter(
  dir: string,
  acks: number,
  opts: { partitions: number; segmentBytes: number; syncIntervalMs?: number },
): Promise<Set<number>> {
  const script = fileURLToPath(new URL('./crash-writer.ts', import.meta.url));
  const repo = fileURLToPath(new URL('../..', import.meta.url));
  const args = [script, dir, String(opts.partitions), String(opts.segmentBytes)];
  if (opts.syncIntervalMs !== undefined) args.push(String(opts.syncIntervalMs));
  const child = spawn(process.execPath, ['--import', 'tsx', ...args], { cwd: repo, stdio: ['ignore', 'pipe', 'pipe'] });
  const acked = new Set<number>();
  let partial = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => {
    const lines = (partial + chunk.toString()).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) {
      const m = /^ack (\d+) (\d+)$/.exec(line);
      if (m) for (const id of range(Number(m[1]), Number(m[2]) + 1)) acked.add(id);
    }
  });
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  // 'close' (not 'exit'): every ack the child wrote has been read from the pipe.
  const closed = new Promise<void>((resolve) => child.on('close', () => resolve()));
  const deadline = Date.now() + 30_000;
  while (acked.size < acks && child.exitCode === null) {
    if (Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 10));
  }
  const exitCode = child.exitCode;
  child.kill('SIGKILL');
  await closed;
  expect(exitCode, stderr).toBeNull();
  expect(acked.size, 'the crash writer acknowledged too few records in time').toBeGreaterThanOrEqual(acks);
  return acked;
}

/** Every acknowledged record is in `hub` (reopened on the crashed directory), and it takes a new append. */
export async function expectAckedSurvived(hub: LocalHub, acked: Set<number>): Promise<void> {
  const found = new Set<number>();
  for (const p of range(0, hub.partitionCount)) {
    const records = await hub.read(p, 0, Number.POSITIVE_INFINITY);
    expect(records.map((r) => r.offset)).toEqual(range(0, records.length));
    for (const r of records) {
      const { id } = JSON.parse(r.payload.toString()) as { id: number };
      expect(r.payload.equals(crashPayload(id))).toBe(true);
      expect(partitionForKey(crashKey(id), hub.partitionCount)).toBe(p);
      found.add(id);
    }
  }
  expect([...acked].filter((id) => !found.has(id))).toEqual([]);

  const p = partitionForKey(crashKey(0), hub.partitionCount);
  const end = await hub.endOffset(p);
  await hub.publish([{ key: crashKey(0), payload: Buffer.from('after the crash') }]);
  expect((await hub.read(p, end, 10)).map((r) => [r.offset, r.payload.toString()])).toEqual([[end, 'after the crash']]);
}
