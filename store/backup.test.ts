import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  backupDue,
  BackupError,
  MANIFEST,
  pruneScheduledBackups,
  runScheduledBackup,
  scheduledBackupName,
  verifyBackup,
  type BackupManifest,
} from './backup.ts';
import { gatedWrites } from './write-gate.ts';
import type { Store } from './store.ts';

/**
 * The parts of backups that need no engine: what restore accepts (manifest, checksums, paths),
 * the daily schedule's pruning and timing, and the write gate. The engine's side (a live backup,
 * a restore, a SIGKILLed writer) is tests/backup-restore.test.ts.
 */

const roots: string[] = [];
afterAll(async () => {
  for (const r of roots) await rm(r, { recursive: true, force: true });
});

async function tempRoot(): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), 'farol-backup-unit-'));
  roots.push(root);
  return root;
}

/** A backup directory holding `files` (path under clickhouse/ → content) and a manifest describing `listed` (default: the same). */
async function fakeBackup(dir: string, files: Record<string, string>, opts: { createdAt?: string; manifest?: Partial<BackupManifest> } = {}): Promise<void> {
  const listed: BackupManifest['files'] = [];
  for (const [path, text] of Object.entries(files)) {
    const full = join(dir, 'clickhouse', path);
    await mkdir(join(full, '..'), { recursive: true });
    await writeFile(full, text);
    listed.push({ path: `clickhouse/${path}`, bytes: Buffer.byteLength(text), sha256: createHash('sha256').update(text).digest('hex') });
  }
  const manifest: BackupManifest = {
    format: 'farol-backup',
    version: 1,
    createdAt: opts.createdAt ?? '2026-12-06T03:00:00.000Z',
    database: 'farol',
    schemaVersion: 8,
    point: null,
    excludedTables: [],
    files: listed,
    ...opts.manifest,
  };
  await writeFile(join(dir, MANIFEST), JSON.stringify(manifest));
}

describe('verifyBackup', () => {
  it('accepts a backup whose every file matches its manifest', async () => {
    const dir = join(await tempRoot(), 'b');
    await fakeBackup(dir, { '.backup': '<config/>', 'data/farol/events/all_1_1_0/data.bin': 'x'.repeat(3000) });
    expect((await verifyBackup(dir)).files).toHaveLength(2);
  });

  it.each([
    ['no manifest', async (dir: string) => rm(join(dir, MANIFEST)), /no valid farol-backup\.json/],
    ['a torn manifest', async (dir: string) => writeFile(join(dir, MANIFEST), '{"format":"farol-backup","vers'), /no valid/],
    ['a changed byte', async (dir: string) => writeFile(join(dir, 'clickhouse/data/a.bin'), 'hellp'), /does not match its checksum/],
    ['a truncated file', async (dir: string) => writeFile(join(dir, 'clickhouse/data/a.bin'), 'hell'), /does not match its checksum/],
    ['a missing file', async (dir: string) => rm(join(dir, 'clickhouse/data/a.bin')), /is missing/],
    ['a file not in the manifest', async (dir: string) => writeFile(join(dir, 'clickhouse/data/extra.bin'), 'x'), /not in the manifest/],
  ])('refuses %s', async (_name, spoil, message) => {
    const dir = join(await tempRoot(), 'b');
    await fakeBackup(dir, { '.backup': '<config/>', 'data/a.bin': 'hello' });
    await spoil(dir);
    await expect(verifyBackup(dir)).rejects.toThrow(message);
    await expect(verifyBackup(dir)).rejects.toBeInstanceOf(BackupError);
  });

  it.each(['../outside.bin', 'clickhouse/../../outside.bin', '/etc/passwd', 'clickhouse/./x', 'other/x', 'clickhouse/a\0b'])(
    'refuses a manifest naming %j',
    async (path) => {
      const root = await tempRoot();
      await writeFile(join(root, 'outside.bin'), 'secret');
      const dir = join(root, 'b');
      await fakeBackup(dir, { 'a.bin': 'a' });
      const sha256 = createHash('sha256').update('secret').digest('hex');
      await writeFile(
        join(dir, MANIFEST),
        JSON.stringify({ format: 'farol-backup', version: 1, createdAt: '2026-12-06T03:00:00.000Z', database: 'farol', schemaVersion: 8, point: null, excludedTables: [], files: [{ path, bytes: 6, sha256 }] }),
      );
      await expect(verifyBackup(dir)).rejects.toThrow(/outside the backup/);
    },
  );
});

describe('the daily schedule', () => {
  it('names backups by their UTC start, sortable', () => {
    expect(scheduledBackupName(new Date('2026-12-06T03:15:09.123Z'))).toBe('farol-20261206T031509Z');
  });

  it('is due with no backup, or once the newest is 23 hours old', () => {
    const newest = new Date('2026-12-06T03:00:00Z');
    expect(backupDue(undefined, newest)).toBe(true);
    expect(backupDue(newest, new Date('2026-12-07T01:59:59Z'))).toBe(false);
    expect(backupDue(newest, new Date('2026-12-07T02:00:00Z'))).toBe(true);
  });

  it('keeps the N newest complete backups, deletes cut-short ones and never touches other folders', async () => {
    const root = await tempRoot();
    const days = ['2026-12-01', '2026-12-02', '2026-12-03', '2026-12-04'];
    for (const day of days) {
      const at = new Date(`${day}T03:00:00Z`);
      await fakeBackup(join(root, scheduledBackupName(at)), { 'a.bin': day }, { createdAt: at.toISOString() });
    }
    // Cut short (no manifest), and folders the schedule did not make.
    await mkdir(join(root, 'farol-20261205T030000Z', 'clickhouse'), { recursive: true });
    await fakeBackup(join(root, 'my-own-backup'), { 'a.bin': 'mine' }, { createdAt: '2020-01-01T00:00:00.000Z' });
    await mkdir(join(root, 'notes'));

    const deleted = await pruneScheduledBackups(root, 2);
    expect(deleted.sort()).toEqual(['farol-20261201T030000Z', 'farol-20261202T030000Z', 'farol-20261205T030000Z']);
    expect((await readdir(root)).sort()).toEqual(['farol-20261203T030000Z', 'farol-20261204T030000Z', 'my-own-backup', 'notes']);
    expect(await pruneScheduledBackups(join(root, 'missing'), 2)).toEqual([]);
  });
});

describe('one check of the daily schedule', () => {
  it('takes a backup when due, then keeps the newest; takes none when the newest is recent', async () => {
    const root = join(await tempRoot(), 'daily');
    const taken: string[] = [];
    let checkAt = new Date('2026-12-01T03:00:00Z');
    const backup = async (target: string): Promise<void> => {
      taken.push(target);
      await fakeBackup(target, { 'a.bin': target }, { createdAt: checkAt.toISOString() });
    };
    for (let day = 0; day < 4; day++) {
      checkAt = new Date(Date.parse('2026-12-01T03:00:00Z') + day * 86_400_000);
      const run = await runScheduledBackup({ root, keep: 2, now: checkAt, backup });
      expect(run.taken).toBe(scheduledBackupName(checkAt));
      // An hour later: not due.
      expect(await runScheduledBackup({ root, keep: 2, now: new Date(checkAt.getTime() + 3_600_000), backup })).toEqual({ deleted: [] });
    }
    expect(taken).toHaveLength(4);
    expect((await readdir(root)).sort()).toEqual(['farol-20261203T030000Z', 'farol-20261204T030000Z']);
  });

  it('a failed backup is reported, and what it left is deleted', async () => {
    const root = join(await tempRoot(), 'daily');
    const run = await runScheduledBackup({
      root,
      keep: 2,
      now: new Date('2026-12-06T03:00:00Z'),
      backup: async (target) => {
        await mkdir(join(target, 'clickhouse'), { recursive: true });
        throw new BackupError('disk full');
      },
    });
    expect(run).toMatchObject({ failed: expect.any(BackupError), deleted: ['farol-20261206T030000Z'] });
    expect(await readdir(root)).toEqual([]);
  });
});

describe('gatedWrites', () => {
  it('holds writes while closed, waits for running ones, lets queries pass', async () => {
    const log: string[] = [];
    let finishRunning!: () => void;
    const store: Store = {
      kind: 'chdb',
      database: 'farol',
      exec: async (sql) => {
        log.push(`exec ${sql}`);
        if (sql === 'slow') await new Promise<void>((r) => (finishRunning = r));
      },
      query: async <T>(sql: string) => {
        log.push(`query ${sql}`);
        return [] as T[];
      },
      insert: async (table) => {
        log.push(`insert ${table}`);
      },
      ping: async () => true,
      close: async () => {},
    };
    const gate = gatedWrites(store);
    const slow = gate.store.exec('slow');
    let closedAt: number | undefined;
    const closing = gate.close().then((reopen) => {
      closedAt = log.length;
      return reopen;
    });
    await Promise.resolve();
    expect(closedAt).toBeUndefined();
    finishRunning();
    await slow;
    const reopen = await closing;
    const held = gate.store.insert('events', [{ a: 1 }]);
    await gate.store.query('SELECT 1');
    expect(log).toEqual(['exec slow', 'query SELECT 1']);
    await expect(gate.close()).rejects.toThrow(/already closed/);
    reopen();
    await held;
    expect(log).toEqual(['exec slow', 'query SELECT 1', 'insert events']);
  });
});
