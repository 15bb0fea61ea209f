/**
 * Insert formats for the processor's rows on embedded chDB: what JavaScript spends encoding a
 * flush's `events` and `sessions` rows, and what the engine spends inserting them (migrated
 * tables, materialized views and all), JSONCompactEachRow against TabSeparated, alternating so
 * both see the same machine. CPU time, not wall time: the machine may be shared.
 *
 *   node --import tsx bench/insert-formats.ts [--rows 2000,10000] [--rounds 12]
 *
 * RowBinary is not among them: chDB takes an insert's data inline after the statement and ends it
 * at the first blank line (`\n\n`), which binary values contain (see store/tab-separated.ts).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createPartitionState, processRange } from '../processor/partition-state.ts';
import { generateTraffic, rng } from '../schemas/testing/oracle.ts';
import { openChdbStore } from '../store/chdb-store.ts';
import { migrate } from '../store/migrate.ts';
import { insertSchema } from '../store/rows.ts';
import { commonColumns, toJsonCompactEachRow, type EncodedRows } from '../store/store.ts';
import { toTabSeparated } from '../store/tab-separated.ts';

const { values: args } = parseArgs({ options: { rows: { type: 'string', default: '2000,10000' }, rounds: { type: 'string', default: '12' } } });
const sizes = args.rows.split(',').map(Number);
const rounds = Number(args.rounds);

// Traffic like the bench's: 64-bit visitor ids, 200 paths, some campaigns, click ids and props.
const random = rng(7);
const paths = Array.from({ length: 200 }, (_, i) => `/section-${i % 13}/page-${i}`);
const events = generateTraffic({ sites: ['example.com', 'shop.example'], visitorsPerSite: 4000, eventsPerVisitor: 5, start: Date.now() - 3_600_000, seed: 3 }).map((e) => ({
  ...e,
  visitorId: (BigInt(Math.floor(random() * 2 ** 32)) * 2n ** 32n + BigInt(Math.floor(random() * 2 ** 32))).toString(),
  pathname: paths[Math.floor(random() * paths.length)] ?? '/',
  utmSource: random() < 0.3 ? 'newsletter' : '',
  clickIds: random() < 0.1 ? ['gclid'] : [],
  props: e.name === 'Signup' ? { plan: 'pro', method: 'email' } : {},
}));
const out = processRange(
  createPartitionState(),
  events.map((e, i) => ({ partition: 0, offset: i, appendedAt: 0, payload: Buffer.from(JSON.stringify(e)) })),
);

type Encode = (table: string, rows: readonly Record<string, unknown>[]) => EncodedRows;
const formats: Record<string, Encode> = {
  JSONCompactEachRow: (_table, rows) => {
    const columns = commonColumns(rows);
    const text = columns === undefined ? undefined : toJsonCompactEachRow(rows, columns);
    if (columns === undefined || text === undefined) throw new Error('rows not encodable');
    return { format: 'JSONCompactEachRow', columns, data: Buffer.from(text) };
  },
  TabSeparated: (table, rows) => {
    const columns = commonColumns(rows);
    const schema = insertSchema(table);
    const data = columns === undefined || schema === undefined ? undefined : toTabSeparated(rows, columns, schema);
    if (columns === undefined || data === undefined) throw new Error('rows not encodable');
    return { format: 'TabSeparated', columns, data };
  },
};

const cpuMicros = (since: NodeJS.CpuUsage): number => {
  const c = process.cpuUsage(since);
  return c.user + c.system;
};

const dir = mkdtempSync(join(tmpdir(), 'farol-insert-formats-'));
const store = openChdbStore({ dataDir: dir, database: 'farol' });
try {
  await migrate(store, { database: 'farol', retentionDays: 395 });
  const insertEncoded = store.insertEncoded?.bind(store);
  if (insertEncoded === undefined) throw new Error('the embedded store takes encoded inserts');
  const totals = new Map<string, { encode: number; insert: number; rows: number; bytes: number }>();
  let token = 0;
  for (const size of sizes) {
    for (let round = 0; round < rounds; round++) {
      const order = round % 2 === 0 ? Object.keys(formats) : Object.keys(formats).reverse();
      for (const name of order) {
        for (const table of ['events', 'sessions'] as const) {
          const rows = (table === 'events' ? out.events : out.sessions).slice(0, size);
          const encode = formats[name] as Encode;
          const c0 = process.cpuUsage();
          const encoded = encode(table, rows);
          const encodeCpu = cpuMicros(c0);
          // The process's CPU while the insert runs: the engine's threads (nothing else runs).
          const c1 = process.cpuUsage();
          await insertEncoded(table, encoded, { dedupToken: `bench-${token++}` });
          const insertCpu = cpuMicros(c1);
          if (round === 0) continue; // warm-up
          const key = `${size}\t${table}\t${name}`;
          const t = totals.get(key) ?? { encode: 0, insert: 0, rows: 0, bytes: 0 };
          t.encode += encodeCpu;
          t.insert += insertCpu;
          t.rows += rows.length;
          t.bytes += encoded.data.byteLength;
          totals.set(key, t);
        }
      }
    }
  }
  console.log('rows\ttable\tformat\tencode µs CPU/row\tinsert µs CPU/row\tbytes/row');
  for (const [key, t] of totals) {
    console.log(`${key}\t${(t.encode / t.rows).toFixed(2)}\t${(t.insert / t.rows).toFixed(2)}\t${(t.bytes / t.rows).toFixed(0)}`);
  }
} finally {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
}
