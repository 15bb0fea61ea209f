import { chmod, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * The data dir holds salts, the hub log and every stored event: it is private to the service user.
 * Farol creates what it writes there with modes 0700/0600 (and the CLI runs
 * with umask 077, which covers the embedded engine's own files); this fixes what an older version
 * or an operator left more open.
 */

/** Directory mode of everything Farol creates in the data dir. */
export const PRIVATE_DIR_MODE = 0o700;
/** File mode of everything Farol creates in the data dir. */
export const PRIVATE_FILE_MODE = 0o600;

/** What {@link tightenDataDir} did. */
export interface Tightened {
  /** Paths whose group/other permissions were taken off. */
  changed: string[];
  /** Paths left open because this user may not change them (owned by another user). */
  refused: string[];
}

/**
 * Takes group and other permissions off `dir` and its direct entries (directories 0700, files
 * 0600, only where they were more open). Deeper entries are left as they are: with the data dir
 * and its folders closed, nobody else can reach them. A missing `dir` is left to be created by
 * whoever needs it.
 */
export async function tightenDataDir(dir: string): Promise<Tightened> {
  const out: Tightened = { changed: [], refused: [] };
  const tighten = async (path: string): Promise<void> => {
    const st = await stat(path);
    if ((st.mode & 0o077) === 0) return;
    try {
      await chmod(path, st.isDirectory() ? PRIVATE_DIR_MODE : PRIVATE_FILE_MODE);
      out.changed.push(path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EPERM') throw err;
      out.refused.push(path);
    }
  };
  try {
    await tighten(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return out;
    throw err;
  }
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    if (entry.isDirectory() || entry.isFile()) await tighten(join(dir, entry.name));
  }
  return out;
}
