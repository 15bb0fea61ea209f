import { describe, expect, it } from 'vitest';
import type { MachineInfo } from './report.ts';
import {
  CPU_TARGETS,
  markdownReport,
  mdCell,
  README_BEGIN,
  README_END,
  replaceReadmeTable,
  rowFromPhase,
  scalingTable,
  shortNumber,
  svgChart,
  xmlEscape,
  type ResultDoc,
  type ResultRow,
} from './results.ts';

/* The Markdown table and SVG chart a bench run writes: structure, escaping, never NaN. */

const machine: MachineInfo = {
  cpuModel: 'AMD EPYC <7B13> & "co"',
  cores: 2,
  node: 'v20.20.2',
  os: 'Linux 6.1 x64',
  totalMemMb: 8192,
  loadAvgAtStart: [1.5, 1.2, 1],
  gitCommit: 'abc1234',
  gitDirty: false,
};

function row(over: Partial<ResultRow>): ResultRow {
  return {
    scenario: 'collector',
    process: 'collector',
    threads: '1',
    eventsPerRequest: 1,
    requestsPerSec: 20_000,
    eventsPerSec: 20_000,
    p99Ms: 4.2,
    wallS: 10,
    events: 200_000,
    cpuS: 2.5,
    eventsPerCpuS: 80_000,
    wrkCpuS: 1,
    wrkEventsPerCpuS: 200_000,
    vsBare: 0.61,
    machineBusyCores: 1.4,
    otherCores: 0.1,
    ...over,
  };
}

const doc = (rows: ResultRow[], over: Partial<ResultDoc> = {}): ResultDoc => ({
  title: 'collector, batch',
  command: 'npm run bench -- --threads 1,2',
  startedAt: '2026-12-07T08:00:00.000Z',
  machine,
  rows,
  checks: [
    { scenario: 'collector', name: 'events per collector CPU-second', value: '80,000', target: '≥ 60,000', pass: true, kind: 'target' },
    { scenario: 'batch', name: 'events per collector CPU-second', value: '120,000', target: '≥ 250,000', pass: false, kind: 'target' },
    { scenario: 'batch', name: 'rejected events', value: '3', target: '0', pass: false, kind: 'correctness' },
  ],
  ...over,
});

const ROWS = [
  row({ process: 'bare uWS', threads: '—', eventsPerCpuS: 150_000, vsBare: null }),
  row({}),
  row({ threads: '2', eventsPerCpuS: 70_000 }),
  row({ scenario: 'batch', process: 'bare uWS', threads: '—', eventsPerCpuS: 3_000_000 }),
  row({ scenario: 'batch', threads: '1', eventsPerCpuS: 120_000 }),
  row({ scenario: 'e2e', process: 'farol start', eventsPerCpuS: 30_000 }),
];

/** Checks that tags nest and close, and that text holds no raw `<` or stray `&`: well-formed enough for any SVG reader. */
function assertWellFormed(svg: string): void {
  const stack: string[] = [];
  const tag = /<(\/?)([A-Za-z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>/g;
  let last = 0;
  for (let m = tag.exec(svg); m !== null; m = tag.exec(svg)) {
    const text = svg.slice(last, m.index);
    expect(text).not.toMatch(/[<>]/);
    expect(text).not.toMatch(/&(?!(amp|lt|gt|quot|#39);)/);
    last = tag.lastIndex;
    const [, close, name, , selfClose] = m;
    if (close) expect(stack.pop()).toBe(name);
    else if (!selfClose) stack.push(name!);
  }
  expect(svg.slice(last).trim()).toBe('');
  expect(stack).toEqual([]);
}

describe('svgChart', () => {
  it('draws one bar per row with a value, a dashed target line per scenario that has one, the machine in the header', () => {
    const svg = svgChart(doc(ROWS));
    assertWellFormed(svg);
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    expect(svg.match(/<rect class="bar"/g)).toHaveLength(ROWS.length);
    expect(svg.match(/<line class="target"/g)).toHaveLength(2);
    expect(svg).toContain('target 60k');
    expect(svg).toContain('target 250k');
    expect(svg).toContain('AMD EPYC &lt;7B13&gt; &amp; &quot;co&quot;, 2 cores');
    expect(svg).toContain('commit abc1234');
    expect(svg).not.toMatch(/NaN|Infinity|undefined/);
  });

  it('a higher value gets a taller bar (log scale), the target line sits between', () => {
    const svg = svgChart(doc([row({ eventsPerCpuS: 30_000 }), row({ eventsPerCpuS: 90_000 })]));
    const heights = [...svg.matchAll(/<rect class="bar"[^>]* y="([\d.]+)"[^>]* height="([\d.]+)"/g)].map((m) => Number(m[2]));
    expect(heights).toHaveLength(2);
    expect(heights[1]!).toBeGreaterThan(heights[0]!);
    const targetY = Number(/<line class="target"[^>]* y1="([\d.]+)"/.exec(svg)?.[1]);
    const tops = [...svg.matchAll(/<rect class="bar"[^>]* y="([\d.]+)"/g)].map((m) => Number(m[1]));
    expect(targetY).toBeLessThan(tops[0]!);
    expect(targetY).toBeGreaterThan(tops[1]!);
  });

  it('never writes NaN: missing, zero, negative and infinite values get "n/a" and no bar; no rows at all still draws', () => {
    const odd = [row({ eventsPerCpuS: null }), row({ eventsPerCpuS: 0 }), row({ eventsPerCpuS: -5 }), row({ eventsPerCpuS: Number.NaN }), row({ eventsPerCpuS: Infinity })];
    for (const rows of [odd, []]) {
      const svg = svgChart(doc(rows, { machine: { ...machine, loadAvgAtStart: [Number.NaN] } }));
      assertWellFormed(svg);
      expect(svg).not.toMatch(/="[^"]*(NaN|Infinity)[^"]*"/);
      expect(svg.match(/<rect class="bar"/g)).toBeNull();
      expect(svg.match(/>n\/a</g) ?? []).toHaveLength(rows.length);
    }
  });

  it('escapes hostile labels (markup, quotes, NUL, lone surrogates) and stays well-formed', () => {
    const hostile = `</text><script>alert(1)</script>"'&\u0000\uD800x\uDC00`;
    const svg = svgChart(doc([row({ process: hostile, scenario: `<g onload="x">` })], { title: hostile, command: hostile }));
    assertWellFormed(svg);
    expect(svg).not.toContain('<script');
    expect(svg).not.toContain('\u0000');
    expect(svg).not.toMatch(/[\uD800-\uDFFF]/);
    expect(xmlEscape('a\uD83D\uDE00b')).toBe('a\uD83D\uDE00b'); // a real pair (😀) is kept
  });

  it('10,000 rows: finite coordinates, every bar drawn', () => {
    const many = Array.from({ length: 10_000 }, (_, i) => row({ eventsPerCpuS: 1 + i * 1e3, threads: String(i) }));
    const svg = svgChart(doc(many));
    expect(svg.match(/<rect class="bar"/g)).toHaveLength(10_000);
    expect(svg).not.toMatch(/NaN|Infinity/);
  });
});

describe('markdownReport', () => {
  it('has the machine, the command, one line per row and per check, verdicts', () => {
    const md = markdownReport(doc(ROWS, { notes: ['FAROL_COLLECTOR_THREADS is unknown | ignored'] }));
    const lines = md.split('\n');
    expect(lines[0]).toBe('# farol bench: collector, batch');
    expect(md).toContain('commit abc1234');
    expect(md).toContain('`npm run bench -- --threads 1,2`');
    expect(md).toContain('FAROL_COLLECTOR_THREADS is unknown \\| ignored');
    const tableLines = lines.filter((l) => l.startsWith('| '));
    // results: header, separator, rows; scaling (threads 2 ÷ 1 of the collector): 3 lines; checks: header, separator, 3
    expect(tableLines).toHaveLength(2 + ROWS.length + 3 + 2 + 3);
    const header = tableLines[0]!.split(' | ').length;
    for (const l of tableLines.slice(0, 2 + ROWS.length)) expect(l.replaceAll('\\|', '').split(' | ').length).toBe(header);
    expect(md).toContain('| collector | collector | 2 | 20,000 | 20,000 | 4.20 ms | 2.5 | 70,000 | 0.61 | 1.0 | 200,000 | 1.40 (0.10) |');
    expect(md).toMatch(/\| batch \| events per collector CPU-second \| 120,000 \| ≥ 250,000 \| not met \|/);
    expect(md).toMatch(/\| batch \| rejected events \| 3 \| 0 \| FAIL \(bug\) \|/);
    expect(md).not.toMatch(/NaN|undefined|Infinity/);
  });

  it('a thread sweep gets a scaling table against the first thread count of each process', () => {
    const md = markdownReport(doc(ROWS));
    expect(md).toContain('| collector | collector | 2 ÷ 1 | 1.00 | 1.00 | 0.88 |');
    // bare uWS has no thread count, batch and e2e ran one configuration: one line only.
    expect(scalingTable(ROWS).split('\n')).toHaveLength(3);
    expect(scalingTable([row({}), row({ scenario: 'batch' })])).toBe('');
    expect(scalingTable([row({ eventsPerCpuS: 0 }), row({ threads: '2', eventsPerCpuS: 5 })])).toContain('| — |');
  });

  it('prints a dash for what was not measured, never NaN', () => {
    const empty = row({ requestsPerSec: null, eventsPerSec: Number.NaN, p99Ms: null, cpuS: null, eventsPerCpuS: null, wrkCpuS: null, wrkEventsPerCpuS: null, vsBare: null, machineBusyCores: null });
    const md = markdownReport(doc([empty]));
    expect(md).toContain('| collector | collector | 1 | — | — | — | — | — | — | — | — | — |');
    expect(md).not.toMatch(/NaN/);
  });

  it('escapes cells: pipes, line breaks, markup', () => {
    expect(mdCell('a|b\nc\r\nd')).toBe('a\\|b c d');
    expect(mdCell('<script>x</script> & < 10 ms')).toBe('&lt;script>x&lt;/script> &amp; < 10 ms');
    expect(mdCell('back\\slash|')).toBe('back\\\\slash\\|');
  });
});

describe('replaceReadmeTable', () => {
  const readme = `# Farol\n\n## Benchmarks\n\nintro\n\n${README_BEGIN}\nold table\n${README_END}\n\n## Next\n`;

  it('replaces only the block between the markers, says when the machine was shared', () => {
    const out = replaceReadmeTable(readme, doc([row({ otherCores: 1.3 })]));
    expect(out.startsWith('# Farol\n\n## Benchmarks\n\nintro\n\n')).toBe(true);
    expect(out.endsWith(`${README_END}\n\n## Next\n`)).toBe(true);
    expect(out).not.toContain('old table');
    expect(out).toContain('**Shared machine**: other processes used up to 1.30 cores');
    expect(out).toContain('Measured 2026-12-07 with `npm run bench -- --threads 1,2` on AMD EPYC <7B13> &amp; "co", 2 cores, 8,192 MB, Linux 6.1 x64, Node v20.20.2, commit abc1234, load average at start 1.5 1.2 1.');
    // Targets and failed correctness checks only.
    expect(out).toContain('| batch | rejected events | 3 | 0 | FAIL (bug) |');
    // Idempotent: a second run replaces the first.
    expect(replaceReadmeTable(out, doc([row({})]))).not.toContain('Shared machine');
  });

  it('refuses a README without the markers', () => {
    expect(() => replaceReadmeTable('# Farol\n', doc([]))).toThrow(/bench:begin/);
  });
});

describe('rows and numbers', () => {
  it('rowFromPhase: events per CPU-second of the server and of wrk, and what else the machine ran', () => {
    const r = rowFromPhase(
      {
        cpu: { wallS: 10, processes: { server: 2 }, harnessS: 0.5, reapedChildrenS: 1, machine: { busyS: 15, totalS: 20, stealS: 0, cores: 2 } },
        requests: 1000,
        non2xx: 10,
        requestsPerSec: 100,
        latency: { p99Ms: 3 },
      },
      { scenario: 'batch', process: 'collector', threads: '1', eventsPerRequest: 100 },
    );
    expect(r.events).toBe(99_000);
    expect(r.eventsPerCpuS).toBe(49_500);
    expect(r.wrkEventsPerCpuS).toBe(99_000);
    expect(r.eventsPerSec).toBe(10_000);
    expect(r.machineBusyCores).toBe(1.5);
    expect(r.otherCores).toBeCloseTo(1.15);
  });

  it('a process gone at either end of the window gives no events per CPU-second', () => {
    const r = rowFromPhase(
      { cpu: { wallS: 10, processes: { server: null }, harnessS: null, reapedChildrenS: 0, machine: null }, requests: 5, non2xx: 0, requestsPerSec: 0.5, latency: { p99Ms: Number.NaN } },
      { scenario: 'collector', process: 'collector', threads: '1', eventsPerRequest: 1 },
    );
    expect(r.eventsPerCpuS).toBeNull();
    expect(r.wrkEventsPerCpuS).toBeNull();
    expect(r.p99Ms).toBeNull();
    expect(r.machineBusyCores).toBeNull();
  });

  it('shortNumber', () => {
    expect([shortNumber(60_000), shortNumber(250_000), shortNumber(1_250_000), shortNumber(63_210), shortNumber(812), shortNumber(0.5), shortNumber(null), shortNumber(Number.NaN)]).toEqual([
      '60k',
      '250k',
      '1.25M',
      '63.2k',
      '812',
      '0.50',
      'n/a',
      'n/a',
    ]);
    expect(CPU_TARGETS).toEqual({ collector: 60_000, batch: 250_000 });
  });
});
