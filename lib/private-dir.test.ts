import { chmod, mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { tightenDataDir } from './private-dir.ts';

const dirs: string[] = [];
afterAll(async () => {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

async function mode(path: string): Promise<number> {
  return (await stat(path)).mode & 0o777;
}

describe('tightenDataDir', () => {
  it('takes group and other permissions off the data dir and its entries, only where they were open', async () => {
    const root = await mkdtemp(join(tmpdir(), 'farol-private-'));
    dirs.push(root);
    const data = join(root, 'data');
    await mkdir(join(data, 'hub', 'p-0'), { recursive: true });
    await mkdir(join(data, 'salts'));
    await writeFile(join(data, 'loose.txt'), 'x');
    await chmod(data, 0o755);
    await chmod(join(data, 'hub'), 0o775);
    await chmod(join(data, 'salts'), 0o700);
    await chmod(join(data, 'loose.txt'), 0o644);
    const out = await tightenDataDir(data);
    expect(out.changed.sort()).toEqual([data, join(data, 'hub'), join(data, 'loose.txt')].sort());
    expect(out.refused).toEqual([]);
    expect(await mode(data)).toBe(0o700);
    expect(await mode(join(data, 'hub'))).toBe(0o700);
    expect(await mode(join(data, 'salts'))).toBe(0o700);
    expect(await mode(join(data, 'loose.txt'))).toBe(0o600);
    // Idempotent.
    expect((await tightenDataDir(data)).changed).toEqual([]);
  });

  it('leaves a missing data dir to be created', async () => {
    const root = await mkdtemp(join(tmpdir(), 'farol-private-'));
    dirs.push(root);
    expect(await tightenDataDir(join(root, 'nope'))).toEqual({ changed: [], refused: [] });
  });
});
