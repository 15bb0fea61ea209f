/**
 * `/metrics` of a process whose collector threads each keep their own registry: one exposition
 * with every family once and every sample summed across the threads (counters, histogram
 * buckets, sums and counts, and gauges of amounts such as in-flight requests), so dashboards see
 * the same names and labels as with one thread. The gauges of a state (`1` while ready) take the
 * lowest thread's value instead: the process is ready only when every thread is.
 */

/** Gauges that say whether something holds: the process-wide value is the minimum. */
const STATE_GAUGES = new Set(['farol_ingest_salt_ready']);

interface Family {
  help: string | undefined;
  type: string | undefined;
  /** Series (name and labels) → value, in the order first seen. */
  samples: Map<string, number>;
}

/** The family a sample line belongs to: histograms' `_bucket`/`_sum`/`_count` belong to their base name. */
function familyOf(series: string, families: Map<string, Family>): string {
  const name = series.split('{', 1)[0] ?? series;
  if (families.has(name)) return name;
  const base = name.replace(/_(bucket|sum|count)$/, '');
  return families.get(base)?.type === 'histogram' ? base : name;
}

/** Merges Prometheus text expositions (lib/metrics.ts's format: `# HELP`, `# TYPE`, then `series value` lines). */
export function sumExpositions(texts: readonly string[]): string {
  const families = new Map<string, Family>();
  const comments: string[] = [];
  const family = (name: string): Family => {
    let f = families.get(name);
    if (f === undefined) {
      f = { help: undefined, type: undefined, samples: new Map() };
      families.set(name, f);
    }
    return f;
  };
  for (const text of texts) {
    for (const line of text.split('\n')) {
      if (line === '') continue;
      const meta = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line);
      if (meta !== null) {
        const f = family(meta[2] ?? '');
        if (meta[1] === 'HELP') f.help ??= meta[3];
        else f.type ??= meta[3];
        continue;
      }
      if (line.startsWith('#')) {
        comments.push(line);
        continue;
      }
      const cut = line.lastIndexOf(' ');
      if (cut <= 0) continue;
      const series = line.slice(0, cut);
      const value = Number(line.slice(cut + 1));
      const name = familyOf(series, families);
      const f = family(name);
      const had = f.samples.get(series);
      f.samples.set(series, had === undefined ? value : STATE_GAUGES.has(name) ? Math.min(had, value) : had + value);
    }
  }
  const out: string[] = [];
  for (const [name, f] of families) {
    if (f.help !== undefined) out.push(`# HELP ${name} ${f.help}`);
    if (f.type !== undefined) out.push(`# TYPE ${name} ${f.type}`);
    for (const [series, value] of f.samples) out.push(`${series} ${value}`);
  }
  return `${[...out, ...comments].join('\n')}\n`;
}
