import { appendFile, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { StoreError, type Store } from './store.ts';

const UNKNOWN_DATABASE = 81;

/**
 * Blocks the engine's insert deduplication remembers but never committed, and the repair of the
 * embedded engine's memory of them.
 *
 * Farol inserts every range with a deduplication token so that a replay after a crash counts
 * once. A plain (non-replicated) MergeTree keeps those tokens in `deduplication_logs/` beside the
 * table's parts, and ClickHouse appends a block's record there before it renames the new part
 * from its temporary name into the table. A kill in between (SIGKILL of `farol start`, which runs
 * the engine in-process, or of a single-node ClickHouse server) leaves a record of a block whose
 * part the next start deletes as temporary: the replay of that range then carries a token the
 * engine believes it has, and is dropped as a duplicate. The rows would be lost without an error.
 * (Replicated tables commit the token and the part together in Keeper and do not have this gap.)
 *
 * {@link lostBlocks} finds such records: an ADD whose part no part on disk covers (same partition,
 * block range inside another part's: merges keep covering what they merged). On the embedded
 * engine, which Farol owns, {@link forgetLostBlocks} appends the DROP record ClickHouse itself
 * writes when it forgets a block, while the table is detached, so the replay inserts the range
 * again. Materialized views' target tables are repaired the same way: a view's block that did
 * commit stays remembered, and the replay's copy of it is still dropped there.
 */

/** One remembered block with no part behind it. */
export interface LostBlock {
  table: string;
  part: string;
  blockId: string;
}

interface PartInfo {
  partition: string;
  min: number;
  max: number;
}

/** `<partition>_<min>_<max>_<level>[_<mutation>]`; partition ids hold no `_`. */
function parsePart(name: string): PartInfo | undefined {
  const m = /^([^_/]+)_(\d+)_(\d+)_(\d+)(?:_(\d+))?$/.exec(name);
  if (m === null) return undefined;
  return { partition: m[1] as string, min: Number(m[2]), max: Number(m[3]) };
}

/** The log's records in order: `<op>\t<part>\t<block id>` lines; undefined if any is not an ADD (1) or DROP (2). */
async function readRecords(dir: string): Promise<Array<{ op: '1' | '2'; part: string; blockId: string }> | undefined> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return [];
  }
  const logs = names
    .map((n) => ({ n, number: /^deduplication_log_(\d+)\.txt$/.exec(n)?.[1] }))
    .filter((x): x is { n: string; number: string } => x.number !== undefined)
    .sort((a, b) => Number(a.number) - Number(b.number));
  const out: Array<{ op: '1' | '2'; part: string; blockId: string }> = [];
  for (const { n } of logs) {
    const text = await readFile(join(dir, n), 'utf8');
    for (const line of text.split('\n')) {
      if (line === '') continue;
      const [op, part, blockId, ...rest] = line.split('\t');
      // A record this code does not know (a newer engine's rollback records): leave the log alone.
      if ((op !== '1' && op !== '2') || part === undefined || blockId === undefined || rest.length > 0) return undefined;
      out.push({ op, part, blockId });
    }
  }
  return out;
}

/** The blocks the table's deduplication log remembers with no part on disk that covers them. */
export async function lostBlocks(table: string, tableDir: string): Promise<LostBlock[]> {
  const records = await readRecords(join(tableDir, 'deduplication_logs'));
  if (records === undefined || records.length === 0) return [];
  const remembered = new Map<string, string>();
  for (const r of records) {
    if (r.op === '2') remembered.delete(r.blockId);
    else remembered.set(r.blockId, r.part);
  }
  const parts = (await readdir(tableDir)).map(parsePart).filter((p) => p !== undefined);
  const lost: LostBlock[] = [];
  for (const [blockId, part] of remembered) {
    const info = parsePart(part);
    if (info === undefined) continue;
    const covered = parts.some((p) => p.partition === info.partition && p.min <= info.min && info.max <= p.max);
    if (!covered) lost.push({ table, part, blockId });
  }
  return lost;
}

/** The MergeTree tables of `database` and their folders (the engine's answer: a server's are not readable here). */
async function tableDirs(store: Store, database: string): Promise<Array<{ name: string; dir: string }>> {
  try {
    return await store.query<{ name: string; dir: string }>(
      `SELECT name, data_paths[1] AS dir FROM system.tables
       WHERE database = {db:String} AND engine LIKE '%MergeTree' AND length(data_paths) > 0`,
      { db: database },
    );
  } catch (err) {
    // A new data dir: the store's database is created by the first migration.
    if (err instanceof StoreError && err.code === UNKNOWN_DATABASE) return [];
    throw err;
  }
}

/** {@link lostBlocks} of every MergeTree table of the embedded engine's `database`. */
export async function lostBlocksOf(store: Store, database: string): Promise<LostBlock[]> {
  const out: LostBlock[] = [];
  for (const t of await tableDirs(store, database)) out.push(...(await lostBlocks(t.name, t.dir)));
  return out;
}

/**
 * Makes the embedded engine forget the blocks it remembers but never committed (see the top of
 * this file): per table with any, DETACH, append a DROP record for each, ATTACH (the engine reads
 * its log again). Run at start, before anything replays. Returns what it forgot.
 */
export async function forgetLostBlocks(store: Store, database: string): Promise<LostBlock[]> {
  const forgotten: LostBlock[] = [];
  for (const { name: table, dir } of await tableDirs(store, database)) {
    const blocks = await lostBlocks(table, dir);
    if (blocks.length === 0) continue;
    const logs = (await readdir(join(dir, 'deduplication_logs'))).filter((n) => /^deduplication_log_\d+\.txt$/.test(n));
    const newest = logs.sort((a, b) => Number(/\d+/.exec(a)?.[0]) - Number(/\d+/.exec(b)?.[0])).at(-1);
    if (newest === undefined) continue;
    const name = `\`${database}\`.\`${table}\``;
    await store.exec(`DETACH TABLE ${name} SETTINGS check_table_dependencies = 0`);
    try {
      await appendFile(join(dir, 'deduplication_logs', newest), blocks.map((b) => `2\t${b.part}\t${b.blockId}\n`).join(''));
    } finally {
      await store.exec(`ATTACH TABLE ${name}`);
    }
    forgotten.push(...blocks);
  }
  return forgotten;
}
