import { readFileSync } from 'node:fs';
import { findSourceMap } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

/**
 * Summarizes a V8 `.cpuprofile` (from `node --cpu-prof`): self time per function, self time per
 * cost category (zod, UA parsing, geo, SipHash, hub, …), and inclusive time of Farol's own
 * functions, optionally restricted to a time window (the measured wrk run).
 *
 * CLI: `node --import tsx bench/cpu-profile.ts <file.cpuprofile> [--top 25]`
 */

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
  columnNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}

export interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface FunctionCost {
  function: string;
  where: string;
  category: string;
  ms: number;
  /** Percent of busy (non-idle) time in the window. */
  pct: number;
}

export interface ProfileSummary {
  windowMs: number;
  busyMs: number;
  idleMs: number;
  samples: number;
  topSelf: FunctionCost[];
  categories: Array<{ category: string; ms: number; pct: number }>;
  /** Inclusive time of functions in Farol's own sources (not node_modules), biggest first. */
  farolTotal: FunctionCost[];
}

const ROOT_URL = new URL('..', import.meta.url).href;

/** Maps a frame to its original source line (tsx runs TypeScript minified onto one line). */
export type Locate = (frame: CallFrame) => { line: number; text: string } | null;

function where(frame: CallFrame, locate: Locate | undefined): string {
  let url = frame.url;
  if (url === '') return '(native)';
  const loc = locate?.(frame) ?? null;
  if (url.startsWith(ROOT_URL)) url = url.slice(ROOT_URL.length);
  const nm = url.lastIndexOf('node_modules/');
  if (nm >= 0) url = url.slice(nm + 'node_modules/'.length);
  if (loc) return `${url}:${loc.line}${frame.functionName ? '' : `  \`${loc.text}\``}`;
  return `${url}:${frame.lineNumber + 1}:${frame.columnNumber + 1}`;
}

/** Farol's own TypeScript modules, which tsx transpiles (their profile positions need mapping). */
function isFarolTs(url: string): boolean {
  return url.startsWith(ROOT_URL) && url.endsWith('.ts') && !url.includes('/node_modules/') && !/\/(cli|bench|tests)\//.test(url);
}

/**
 * Builds a `Locate` for the profile's TypeScript frames by loading the same modules here: tsx
 * transpiles them the same way in this process, and Node keeps their source maps. Only library
 * modules are loaded (no `cli/`), which have no effects beyond defining things.
 */
export async function createLocator(profile: CpuProfile): Promise<Locate> {
  process.setSourceMapsEnabled(true);
  const urls = new Set(profile.nodes.map((n) => n.callFrame.url).filter(isFarolTs));
  const maps = new Map<string, { map: ReturnType<typeof findSourceMap>; lines: string[] }>();
  for (const url of urls) {
    try {
      await import(url);
      maps.set(url, { map: findSourceMap(url), lines: readFileSync(fileURLToPath(url), 'utf8').split('\n') });
    } catch {
      // leave this file's frames as generated positions
    }
  }
  return (frame) => {
    const entry = maps.get(frame.url);
    if (!entry?.map) return null;
    const e = entry.map.findEntry(frame.lineNumber, frame.columnNumber) as { originalLine?: number };
    if (typeof e.originalLine !== 'number') return null;
    const text = (entry.lines[e.originalLine] ?? '').trim();
    return { line: e.originalLine + 1, text: text.length > 70 ? `${text.slice(0, 67)}...` : text };
  };
}

/** Cost buckets, first match wins: what a reader of the collector's hot path wants to compare. */
const CATEGORIES: Array<[string, (f: CallFrame) => boolean]> = [
  ['(idle)', (f) => f.functionName === '(idle)'],
  ['GC', (f) => f.functionName === '(garbage collector)'],
  ['V8/native (program)', (f) => f.functionName === '(program)'],
  ['zod validation', (f) => /node_modules\/zod\//.test(f.url) || /schemas\/wire-event\.ts/.test(f.url)],
  ['UA parsing (ua-parser-js, isbot, cache)', (f) => /node_modules\/(ua-parser-js|isbot)\//.test(f.url) || /enrich\/user-agent\.ts/.test(f.url)],
  ['geo lookup (maxmind)', (f) => /node_modules\/(maxmind|mmdb-lib|tiny-lru)\//.test(f.url) || /enrich\/geo\.ts/.test(f.url)],
  ['IP parsing / client IP', (f) => /enrich\/(ip|client-ip)\.ts/.test(f.url)],
  ['visitor id (SipHash, salts)', (f) => /enrich\/(visitor-hash|salts)\.ts/.test(f.url)],
  ['URL / referrer parsing', (f) => /enrich\/url\.ts/.test(f.url) || /node:internal\/url/.test(f.url)],
  ['channel grouping', (f) => /enrich\/channel\.ts/.test(f.url)],
  ['enrichment pipeline', (f) => /ingest\/pipeline\.ts/.test(f.url)],
  ['body read / UTF-8 / JSON decode', (f) => /ingest\/body\.ts/.test(f.url) || /node:internal\/encoding/.test(f.url)],
  ['collector routes', (f) => /ingest\/collector\.ts/.test(f.url)],
  ['hub publish / group commit', (f) => /\/hub\//.test(f.url)],
  ['metrics', (f) => /lib\/metrics\.ts/.test(f.url)],
  ['logging', (f) => /lib\/log\.ts/.test(f.url)],
  ['uWS (JS side)', (f) => /node_modules\/uWebSockets\.js\//.test(f.url)],
  ['node fs / streams', (f) => /node:internal\/(fs|streams|stream_base)/.test(f.url) || /^node:fs/.test(f.url)],
  ['node buffer', (f) => /node:(internal\/)?buffer/.test(f.url)],
  ['node crypto (randomUUID)', (f) => /node:internal\/crypto/.test(f.url)],
  ['promises / microtasks / timers', (f) => /node:internal\/(process\/task_queues|timers|process\/promises)/.test(f.url)],
  ['other node internals', (f) => f.url.startsWith('node:')],
  ['JSON builtins', (f) => f.url === '' && /^(parse|stringify|JSONParse|JSONStringify)$/.test(f.functionName)],
  ['native / builtins (uWS calls, TextDecoder, …)', (f) => f.url === ''],
  ['other JS', () => true],
];

function categoryOf(frame: CallFrame): string {
  for (const [name, test] of CATEGORIES) if (test(frame)) return name;
  return 'other JS';
}

function keyOf(f: CallFrame): string {
  return `${f.functionName || '(anonymous)'}\u0000${f.url}\u0000${f.lineNumber}\u0000${f.columnNumber}`;
}

/** Summarizes `profile`; `fromUs`/`toUs` (profile clock = CLOCK_MONOTONIC µs) select a window. */
export function summarizeProfile(profile: CpuProfile, opts: { fromUs?: number; toUs?: number; top?: number; locate?: Locate } = {}): ProfileSummary {
  const top = opts.top ?? 25;
  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  for (const n of profile.nodes) {
    byId.set(n.id, n);
    for (const c of n.children ?? []) parent.set(c, n.id);
  }
  const selfUs = new Map<string, { frame: CallFrame; us: number }>();
  const totalUs = new Map<string, { frame: CallFrame; us: number }>();
  let idleUs = 0;
  let windowUs = 0;
  let counted = 0;
  let t = profile.startTime;
  const from = opts.fromUs ?? -Infinity;
  const to = opts.toUs ?? Infinity;
  for (let i = 0; i < profile.samples.length; i++) {
    t += profile.timeDeltas[i] ?? 0;
    // A sample stands for the time until the next one.
    const weight = profile.timeDeltas[i + 1] ?? 0;
    if (t < from || t >= to || weight <= 0) continue;
    const node = byId.get(profile.samples[i]!);
    if (!node) continue;
    counted++;
    windowUs += weight;
    const frame = node.callFrame;
    if (frame.functionName === '(idle)') {
      idleUs += weight;
      continue;
    }
    const k = keyOf(frame);
    const s = selfUs.get(k) ?? { frame, us: 0 };
    s.us += weight;
    selfUs.set(k, s);
    const seen = new Set<string>();
    for (let id: number | undefined = node.id; id !== undefined; id = parent.get(id)) {
      const f = byId.get(id)?.callFrame;
      if (!f || f.functionName === '(root)') continue;
      const fk = keyOf(f);
      if (seen.has(fk)) continue; // recursion counts once per sample
      seen.add(fk);
      const e = totalUs.get(fk) ?? { frame: f, us: 0 };
      e.us += weight;
      totalUs.set(fk, e);
    }
  }
  const busyUs = windowUs - idleUs;
  const cost = (e: { frame: CallFrame; us: number }): FunctionCost => ({
    function: e.frame.functionName || '(anonymous)',
    where: where(e.frame, opts.locate),
    category: categoryOf(e.frame),
    ms: e.us / 1000,
    pct: busyUs > 0 ? (100 * e.us) / busyUs : 0,
  });
  const cats = new Map<string, number>();
  for (const e of selfUs.values()) {
    const c = categoryOf(e.frame);
    cats.set(c, (cats.get(c) ?? 0) + e.us);
  }
  const isFarol = (f: CallFrame): boolean => f.url.startsWith(ROOT_URL) && !f.url.includes('/node_modules/') && !f.url.includes('/cli/');
  return {
    windowMs: windowUs / 1000,
    busyMs: busyUs / 1000,
    idleMs: idleUs / 1000,
    samples: counted,
    topSelf: [...selfUs.values()].sort((a, b) => b.us - a.us).slice(0, top).map(cost),
    categories: [...cats.entries()]
      .sort((a, b) => b[1] - a[1])
      .map(([category, us]) => ({ category, ms: us / 1000, pct: busyUs > 0 ? (100 * us) / busyUs : 0 })),
    farolTotal: [...totalUs.values()]
      .filter((e) => isFarol(e.frame))
      .sort((a, b) => b.us - a.us)
      .slice(0, top)
      .map(cost),
  };
}

/** The summary as text tables. */
export function formatProfileSummary(s: ProfileSummary): string {
  const pct = (n: number): string => `${n.toFixed(1).padStart(5)}%`;
  const ms = (n: number): string => `${n.toFixed(0).padStart(7)} ms`;
  const lines = [
    `CPU profile: ${s.samples} samples over ${(s.windowMs / 1000).toFixed(1)} s; busy ${(s.busyMs / 1000).toFixed(1)} s, idle ${(s.idleMs / 1000).toFixed(1)} s (percentages are of busy time)`,
    '',
    'self time by category:',
    ...s.categories.map((c) => `  ${pct(c.pct)} ${ms(c.ms)}  ${c.category}`),
    '',
    'top functions by self time:',
    ...s.topSelf.map((f) => `  ${pct(f.pct)} ${ms(f.ms)}  ${f.function}  ${f.where}  [${f.category}]`),
    '',
    "Farol's functions by total (inclusive) time:",
    ...s.farolTotal.map((f) => `  ${pct(f.pct)} ${ms(f.ms)}  ${f.function}  ${f.where}`),
  ];
  return lines.join('\n');
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  let file: string | undefined;
  let top = 25;
  try {
    const { values, positionals } = parseArgs({ options: { top: { type: 'string' } }, allowPositionals: true });
    [file] = positionals;
    if (positionals.length > 1) file = undefined;
    if (values.top !== undefined) top = Number(values.top);
  } catch {
    file = undefined; // an unknown option or a missing value: the usage below
  }
  if (!file || !Number.isInteger(top) || top < 1) {
    process.stderr.write('usage: node --import tsx bench/cpu-profile.ts <file.cpuprofile> [--top 25]\n');
    process.exit(2);
  }
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const locate = await createLocator(profile);
  process.stdout.write(`${formatProfileSummary(summarizeProfile(profile, { top, locate }))}\n`);
}
