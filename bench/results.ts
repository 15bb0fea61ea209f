import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { CpuUsage } from './proc.ts';
import type { MachineInfo } from './report.ts';

/*
 * What a run leaves in bench/results/ beside its JSON: a Markdown table and an SVG chart of the
 * figures that transfer between machines (events per CPU-second of each process, all threads;
 * ratios against the bare baseline measured in the same run), with the machine in the header.
 * The SVG is written by hand: a few rectangles and lines need no charting dependency.
 */

export interface Check {
  name: string;
  value: string;
  target: string;
  pass: boolean;
  /** A missed `target` is noise-prone and reported; a failed `correctness` check is a bug. */
  kind: 'target' | 'correctness';
}

/** What a row needs of a wrk phase (bench/scenario.ts LoadPhase). */
export interface PhaseReadings {
  cpu: CpuUsage;
  requests: number;
  non2xx: number;
  requestsPerSec: number;
  latency: { p99Ms: number };
}

/** One measured process in one configuration: the unit of the table and of a bar in the chart. */
export interface ResultRow {
  scenario: string;
  /** `bare uWS`, `collector`, `collector @ ½ rate`, `farol start`, … */
  process: string;
  /** FAROL_COLLECTOR_THREADS as run (see ThreadSetting.label); `—` for the bare baseline. */
  threads: string;
  eventsPerRequest: number;
  requestsPerSec: number | null;
  eventsPerSec: number | null;
  p99Ms: number | null;
  wallS: number | null;
  /** Events the process took in the window. */
  events: number | null;
  /** CPU seconds of the process over the window, all threads. */
  cpuS: number | null;
  eventsPerCpuS: number | null;
  /** The load generator's CPU seconds and events per its CPU-second (is wrk the limit?). */
  wrkCpuS: number | null;
  wrkEventsPerCpuS: number | null;
  /** req/s ÷ the bare baseline's req/s of the same scenario and run. */
  vsBare: number | null;
  /** Busy cores of the whole machine over the window, and of that what no process of the bench used (other load). */
  machineBusyCores: number | null;
  otherCores: number | null;
}

/** Events per CPU-second targets drawn in the chart, by scenario (issue #12, SPEC §10). */
export const CPU_TARGETS: Record<string, number> = { collector: 60_000, batch: 250_000 };

const per = (a: number | null, b: number | null): number | null => (a === null || b === null || !(b > 0) || !Number.isFinite(a) ? null : a / b);

/** What a row says besides the CPU readings. */
export interface RowFacts {
  scenario: string;
  process: string;
  threads: string;
  eventsPerRequest: number;
  /** Events the process took (or stored) in the window. */
  events: number;
  requestsPerSec: number | null;
  eventsPerSec: number | null;
  p99Ms: number | null;
  vsBare?: number | null;
}

/** A row from a CPU window whose measured process is `processes.server` and whose load generator exited inside it. */
export function rowFromWindow(cpu: CpuUsage, f: RowFacts): ResultRow {
  const serverS = cpu.processes['server'] ?? null;
  const m = cpu.machine;
  const ours = (serverS ?? 0) + (cpu.reapedChildrenS ?? 0) + (cpu.harnessS ?? 0);
  return {
    scenario: f.scenario,
    process: f.process,
    threads: f.threads,
    eventsPerRequest: f.eventsPerRequest,
    requestsPerSec: f.requestsPerSec,
    eventsPerSec: f.eventsPerSec,
    p99Ms: f.p99Ms !== null && Number.isFinite(f.p99Ms) ? f.p99Ms : null,
    wallS: cpu.wallS,
    events: f.events,
    cpuS: serverS,
    eventsPerCpuS: per(f.events, serverS),
    wrkCpuS: cpu.reapedChildrenS,
    wrkEventsPerCpuS: per(f.events, cpu.reapedChildrenS),
    vsBare: f.vsBare ?? null,
    machineBusyCores: m ? per(m.busyS, cpu.wallS) : null,
    otherCores: m ? per(Math.max(0, m.busyS - ours), cpu.wallS) : null,
  };
}

/** A row from a wrk phase against one server; `events` defaults to 2xx answers × events per request. */
export function rowFromPhase(
  p: PhaseReadings,
  r: { scenario: string; process: string; threads: string; eventsPerRequest: number; events?: number; vsBare?: number | null },
): ResultRow {
  return rowFromWindow(p.cpu, {
    ...r,
    events: r.events ?? (p.requests - p.non2xx) * r.eventsPerRequest,
    requestsPerSec: p.requestsPerSec,
    eventsPerSec: p.requestsPerSec * r.eventsPerRequest,
    p99Ms: p.latency.p99Ms,
  });
}

/** What a run's Markdown and SVG describe. */
export interface ResultDoc {
  /** e.g. `collector` or `collector, batch, e2e`. */
  title: string;
  /** The command that produced it, to paste into a shell. */
  command: string;
  startedAt: string;
  machine: MachineInfo;
  rows: ResultRow[];
  checks: Array<Check & { scenario: string }>;
  /** Lines printed under the header (e.g. that the checkout ignores FAROL_COLLECTOR_THREADS). */
  notes?: string[];
}

// ---- formatting ------------------------------------------------------------------------------

/** `63.2k`, `1.25M`, `812`: short numbers for chart labels; `n/a` for anything not finite. */
export function shortNumber(n: number | null): string {
  if (n === null || !Number.isFinite(n)) return 'n/a';
  const a = Math.abs(n);
  const trim = (x: string): string => x.replace(/\.0+$/, '');
  if (a >= 1e6) return `${trim((n / 1e6).toFixed(a >= 1e7 ? 1 : 2))}M`;
  if (a >= 1e3) return `${trim((n / 1e3).toFixed(a >= 1e5 ? 0 : 1))}k`;
  return a >= 10 || a === 0 ? n.toFixed(0) : n.toFixed(2);
}

function fmt(n: number | null, digits = 0): string {
  if (n === null || !Number.isFinite(n)) return '—';
  return n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

function fmtMs(n: number | null): string {
  if (n === null || !Number.isFinite(n)) return '—';
  return n < 1 ? `${(n * 1000).toFixed(0)} µs` : `${n.toFixed(2)} ms`;
}

/** A Markdown table cell: no line breaks, `|` and backslashes escaped, no raw HTML (a `<` that could open a tag, and `&`, become entities). */
export function mdCell(s: string): string {
  return s
    .replace(/[\r\n]+/g, ' ')
    .replaceAll('\\', '\\\\')
    .replaceAll('|', '\\|')
    .replaceAll('&', '&amp;')
    .replace(/<(?=[A-Za-z/!?])/g, '&lt;');
}

function mdTable(header: string[], rows: string[][], rightFrom = 1): string {
  const line = (cells: string[]): string => `| ${cells.map(mdCell).join(' | ')} |`;
  return [line(header), `| ${header.map((_, i) => (i >= rightFrom ? '---:' : '---')).join(' | ')} |`, ...rows.map(line)].join('\n');
}

export function machineLine(m: MachineInfo): string {
  return `${m.cpuModel}, ${m.cores} cores, ${m.totalMemMb.toLocaleString('en-US')} MB, ${m.os}, Node ${m.node}, commit ${m.gitCommit}${m.gitDirty ? ' (+ local changes)' : ''}, load average at start ${m.loadAvgAtStart.join(' ')}`;
}

/** The results table: one line per process and configuration. */
export function resultsTable(rows: ResultRow[]): string {
  return mdTable(
    ['scenario', 'process', 'threads', 'req/s', 'events/s', 'p99', 'CPU-s', 'events per CPU-s', '÷ bare req/s', 'wrk CPU-s', 'events per wrk CPU-s', 'machine busy cores (other load)'],
    rows.map((r) => [
      r.scenario,
      r.process,
      r.threads,
      fmt(r.requestsPerSec),
      fmt(r.eventsPerSec),
      fmtMs(r.p99Ms),
      fmt(r.cpuS, 1),
      fmt(r.eventsPerCpuS),
      fmt(r.vsBare, 2),
      fmt(r.wrkCpuS, 1),
      fmt(r.wrkEventsPerCpuS),
      r.machineBusyCores === null ? '—' : `${fmt(r.machineBusyCores, 2)} (${fmt(r.otherCores, 2)})`,
    ]),
    3,
  );
}

/**
 * For a thread sweep: each configuration of a process against the scenario's first one (req/s,
 * events/s and events per CPU-second ratios). Empty when no process ran with several thread counts.
 */
export function scalingTable(rows: ResultRow[]): string {
  const out: string[][] = [];
  const firsts = new Map<string, ResultRow>();
  for (const r of rows) {
    if (r.threads === '—') continue;
    const key = `${r.scenario}\u0000${r.process}`;
    const first = firsts.get(key);
    if (first === undefined) {
      firsts.set(key, r);
      continue;
    }
    const ratio = (a: number | null, b: number | null): number | null => per(a, b);
    out.push([
      r.scenario,
      r.process,
      `${r.threads} ÷ ${first.threads}`,
      fmt(ratio(r.requestsPerSec, first.requestsPerSec), 2),
      fmt(ratio(r.eventsPerSec, first.eventsPerSec), 2),
      fmt(ratio(r.eventsPerCpuS, first.eventsPerCpuS), 2),
    ]);
  }
  return out.length === 0 ? '' : mdTable(['scenario', 'process', 'threads', 'req/s ratio', 'events/s ratio', 'events per CPU-s ratio'], out, 3);
}

export function verdict(c: Check): string {
  if (c.pass) return 'met';
  return c.kind === 'correctness' ? 'FAIL (bug)' : 'not met';
}

export function checksTable(checks: ResultDoc['checks']): string {
  return mdTable(
    ['scenario', 'check', 'measured', 'target', 'verdict'],
    checks.map((c) => [c.scenario, c.name, c.value, c.target, verdict(c)]),
    2,
  );
}

export function markdownReport(doc: ResultDoc): string {
  return [
    `# farol bench: ${mdCell(doc.title)}`,
    '',
    `${mdCell(machineLine(doc.machine))}. Started ${mdCell(doc.startedAt)}.`,
    '',
    `\`${doc.command.replaceAll('`', "'")}\``,
    '',
    ...(doc.notes ?? []).flatMap((n) => [mdCell(n), '']),
    resultsTable(doc.rows),
    '',
    'CPU-s: user + system time of the process over the measured window, all its threads and any process it started (/proc/<pid>/stat); wrk: the load generator, all its threads. ' +
      'Machine busy cores: /proc/stat over the window; in brackets what no process of the bench used (other load on a shared machine).',
    '',
    ...(scalingTable(doc.rows) === '' ? [] : [scalingTable(doc.rows), '']),
    checksTable(doc.checks),
    '',
  ].join('\n');
}

// ---- SVG -------------------------------------------------------------------------------------

/** Text for SVG content and attribute values. Drops what XML 1.0 forbids (controls, lone surrogates). */
export function xmlEscape(s: string): string {
  return (
    s
      // eslint-disable-next-line no-control-regex
      .replace(/[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, '')
      .replaceAll('&', '&amp;')
      .replaceAll('<', '&lt;')
      .replaceAll('>', '&gt;')
      .replaceAll('"', '&quot;')
      .replaceAll("'", '&#39;')
  );
}

/** A coordinate: finite, rounded to 0.1 px (never NaN in the file). */
function c(n: number): string {
  if (!Number.isFinite(n)) throw new Error(`chart coordinate is not finite: ${n}`);
  return String(Math.round(n * 10) / 10);
}

const COLOURS: Array<[RegExp, string]> = [
  [/^bare/, '#9aa0a6'],
  [/½ rate/, '#8ab4f8'],
  [/^farol start/, '#34a853'],
  [/./, '#1a73e8'],
];

function colour(process: string): string {
  return COLOURS.find(([re]) => re.test(process))?.[1] ?? '#1a73e8';
}

/**
 * Events per CPU-second of each process, one bar per row, grouped by scenario, on a log scale (the
 * bare baseline on batches is far above the rest), with each scenario's target drawn across its
 * bars. Rows without a finite positive value get a labelled gap, not a bar.
 */
export function svgChart(doc: ResultDoc): string {
  const W = 1000;
  const top = 92;
  const plotH = 300;
  const left = 78;
  const right = 20;
  const bottom = 150;
  const H = top + plotH + bottom;
  const rows = doc.rows;
  const values = rows.map((r) => r.eventsPerCpuS).filter((v): v is number => v !== null && Number.isFinite(v) && v > 0);
  const targets = [...new Set(rows.map((r) => r.scenario))].map((s) => CPU_TARGETS[s]).filter((t): t is number => t !== undefined);
  const all = [...values, ...targets];
  const lo = Math.pow(10, Math.floor(Math.log10(all.length > 0 ? Math.min(...all) : 1e4)));
  const hi = Math.pow(10, Math.max(Math.log10(lo) + 1, Math.ceil(Math.log10(all.length > 0 ? Math.max(...all) : 1e6))));
  const y = (v: number): number => top + plotH - ((Math.log10(v) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))) * plotH;

  // Bars: groups by scenario in order of appearance, a gap between groups.
  const groups: Array<{ scenario: string; rows: ResultRow[] }> = [];
  for (const r of rows) {
    const g = groups.find((x) => x.scenario === r.scenario);
    if (g) g.rows.push(r);
    else groups.push({ scenario: r.scenario, rows: [r] });
  }
  const slots = rows.length + Math.max(0, groups.length - 1);
  const slotW = (W - left - right) / Math.max(1, slots);
  const barW = Math.min(70, slotW * 0.7);

  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="system-ui, -apple-system, Segoe UI, Roboto, sans-serif" font-size="12">`,
    `<title>${xmlEscape(`farol bench: ${doc.title}, events per CPU-second of each process`)}</title>`,
    `<rect width="${W}" height="${H}" fill="#ffffff"/>`,
    `<text x="${left}" y="24" font-size="16" font-weight="600">${xmlEscape(`farol bench: ${doc.title}: events per CPU-second of each process (all threads)`)}</text>`,
    `<text x="${left}" y="44" fill="#444">${xmlEscape(machineLine(doc.machine))}</text>`,
    `<text x="${left}" y="62" fill="#444">${xmlEscape(`${doc.startedAt} · ${doc.command}`)}</text>`,
  );
  // Axis and decade grid lines.
  for (let v = lo; v <= hi * 1.0001; v *= 10) {
    out.push(
      `<line x1="${left}" x2="${W - right}" y1="${c(y(v))}" y2="${c(y(v))}" stroke="#e0e0e0"/>`,
      `<text x="${left - 6}" y="${c(y(v) + 4)}" text-anchor="end" fill="#444">${xmlEscape(shortNumber(v))}</text>`,
    );
  }
  out.push(
    `<line x1="${left}" x2="${left}" y1="${top}" y2="${top + plotH}" stroke="#444"/>`,
    `<line x1="${left}" x2="${W - right}" y1="${top + plotH}" y2="${top + plotH}" stroke="#444"/>`,
    `<text transform="translate(16 ${c(top + plotH / 2)}) rotate(-90)" text-anchor="middle" fill="#444">events per CPU-second (log scale)</text>`,
  );
  let slot = 0;
  for (const [gi, g] of groups.entries()) {
    if (gi > 0) slot++;
    const gx0 = left + slot * slotW;
    for (const r of g.rows) {
      const cx = left + slot * slotW + slotW / 2;
      const v = r.eventsPerCpuS;
      const label = `${r.process}${r.threads === '—' ? '' : ` · threads ${r.threads}`}`;
      if (v !== null && Number.isFinite(v) && v > 0) {
        const yt = y(v);
        out.push(
          `<rect class="bar" x="${c(cx - barW / 2)}" y="${c(yt)}" width="${c(barW)}" height="${c(top + plotH - yt)}" fill="${colour(r.process)}"><title>${xmlEscape(`${r.scenario}: ${label}: ${fmt(v)} events per CPU-second`)}</title></rect>`,
          `<text x="${c(cx)}" y="${c(yt - 4)}" text-anchor="middle">${xmlEscape(shortNumber(v))}</text>`,
        );
      } else {
        out.push(`<text x="${c(cx)}" y="${c(top + plotH - 4)}" text-anchor="middle" fill="#888">n/a</text>`);
      }
      out.push(
        `<text transform="translate(${c(cx + 4)} ${c(top + plotH + 14)}) rotate(-35)" text-anchor="end" fill="#222">${xmlEscape(label.length > 44 ? `${label.slice(0, 43)}…` : label)}</text>`,
      );
      slot++;
    }
    const gx1 = left + slot * slotW;
    out.push(`<text x="${c((gx0 + gx1) / 2)}" y="${c(top - 8)}" text-anchor="middle" font-weight="600">${xmlEscape(g.scenario)}</text>`);
    const target = CPU_TARGETS[g.scenario];
    if (target !== undefined) {
      out.push(
        `<line class="target" x1="${c(gx0)}" x2="${c(gx1)}" y1="${c(y(target))}" y2="${c(y(target))}" stroke="#d93025" stroke-width="2" stroke-dasharray="6 4"/>`,
        `<text x="${c(gx1 - 2)}" y="${c(y(target) - 4)}" text-anchor="end" fill="#d93025">${xmlEscape(`target ${shortNumber(target)}`)}</text>`,
      );
    }
  }
  out.push('</svg>', '');
  return out.join('\n');
}

/** Writes `<base>.md` and `<base>.svg`; returns their paths. */
export function writeResultFiles(base: string, doc: ResultDoc): { markdown: string; svg: string } {
  mkdirSync(dirname(base), { recursive: true });
  const markdown = `${base}.md`;
  const svg = `${base}.svg`;
  writeFileSync(markdown, markdownReport(doc));
  writeFileSync(svg, svgChart(doc));
  return { markdown, svg };
}

// ---- README ----------------------------------------------------------------------------------

export const README_BEGIN = '<!-- bench:begin (npm run bench -- --readme writes this block) -->';
export const README_END = '<!-- bench:end -->';

/** Other load above this many cores in any measured window makes the README block say "shared machine". */
const SHARED_CORES = 0.2;

/** The README's performance block: where and when it was measured, the results, the targets. */
export function readmeBlock(doc: ResultDoc): string {
  const others = doc.rows.map((r) => r.otherCores).filter((x): x is number => x !== null && Number.isFinite(x));
  const maxOther = others.length > 0 ? Math.max(...others) : null;
  const shared =
    maxOther !== null && maxOther > SHARED_CORES
      ? `**Shared machine**: other processes used up to ${maxOther.toFixed(2)} cores during the measured windows, so absolute numbers are low; the per-CPU-second figures and ratios move less.`
      : `Other load during the measured windows: at most ${maxOther === null ? '—' : maxOther.toFixed(2)} cores.`;
  const d = doc.startedAt.slice(0, 10);
  return [
    `Measured ${mdCell(d)} with \`${doc.command.replaceAll('`', "'")}\` on ${mdCell(machineLine(doc.machine))}. ${shared}`,
    '',
    ...(doc.notes ?? []).flatMap((n) => [mdCell(n), '']),
    resultsTable(doc.rows),
    '',
    ...(scalingTable(doc.rows) === '' ? [] : [scalingTable(doc.rows), '']),
    checksTable(doc.checks.filter((c) => c.kind === 'target' || !c.pass)),
  ].join('\n');
}

/** `readme` with the text between the bench markers replaced by this run's block; throws when the markers are missing. */
export function replaceReadmeTable(readme: string, doc: ResultDoc): string {
  const a = readme.indexOf(README_BEGIN);
  const b = readme.indexOf(README_END);
  if (a < 0 || b < a) throw new Error(`README.md has no ${README_BEGIN} … ${README_END} block`);
  return `${readme.slice(0, a + README_BEGIN.length)}\n${readmeBlock(doc)}\n${readme.slice(b)}`;
}
