/**
 * A small Prometheus registry: counters, gauges and histograms with fixed label sets, rendered in
 * the text exposition format for `/metrics`. Hot paths take a labelled handle once
 * (`counter.labels({route})`) and then increment it with a plain add; `inc(labels)` builds the
 * label key on every call.
 */
type Labels = Record<string, string>;

function labelKey(labels: Labels | undefined): string {
  if (!labels) return '';
  const parts: string[] = [];
  for (const k of Object.keys(labels).sort()) {
    const v = String(labels[k]).replaceAll('\\', '\\\\').replaceAll('"', '\\"').replaceAll('\n', '\\n');
    parts.push(`${k}="${v}"`);
  }
  return parts.length ? `{${parts.join(',')}}` : '';
}

interface Metric {
  render(): string;
}

/** One label set of a counter, resolved once; see {@link Counter.labels}. */
export interface CounterHandle {
  inc(by?: number): void;
}

/** The value of one label set. */
interface Cell {
  value: number;
}

export class Counter implements Metric {
  // Label key → cell, in the order label sets were first incremented (the render order).
  private readonly values = new Map<string, Cell>();
  constructor(
    readonly name: string,
    readonly help: string,
  ) {}
  inc(labels?: Labels, by = 1): void {
    this.cell(labelKey(labels)).value += by;
  }
  /**
   * A handle on one label set, for hot paths: its `inc` is an add, with no label key to build.
   * The label set appears in `/metrics` at its first increment, as with `inc(labels)`.
   */
  labels(labels?: Labels): CounterHandle {
    const key = labelKey(labels);
    let cell: Cell | undefined;
    return {
      inc: (by = 1) => {
        cell ??= this.cell(key);
        cell.value += by;
      },
    };
  }
  get(labels?: Labels): number {
    return this.values.get(labelKey(labels))?.value ?? 0;
  }
  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} counter`];
    for (const [k, c] of this.values) lines.push(`${this.name}${k} ${c.value}`);
    return lines.join('\n');
  }
  private cell(key: string): Cell {
    let cell = this.values.get(key);
    if (cell === undefined) {
      cell = { value: 0 };
      this.values.set(key, cell);
    }
    return cell;
  }
}

export class Gauge implements Metric {
  private readonly values = new Map<string, number>();
  private readonly collectors: Array<() => void> = [];
  constructor(
    readonly name: string,
    readonly help: string,
  ) {}
  set(value: number, labels?: Labels): void {
    this.values.set(labelKey(labels), value);
  }
  get(labels?: Labels): number {
    return this.values.get(labelKey(labels)) ?? 0;
  }
  /** Registers a callback that refreshes the gauge right before rendering. */
  onCollect(fn: () => void): void {
    this.collectors.push(fn);
  }
  render(): string {
    for (const fn of this.collectors) fn();
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} gauge`];
    for (const [k, v] of this.values) lines.push(`${this.name}${k} ${v}`);
    return lines.join('\n');
  }
}

/** One label set of a histogram, resolved once; see {@link Histogram.labels}. */
export interface HistogramHandle {
  observe(value: number): void;
}

/** The buckets, sum and count of one label set. */
interface Series {
  counts: number[];
  sum: number;
  count: number;
}

export class Histogram implements Metric {
  // Label key → series, in the order label sets were first observed (the render order).
  private readonly series = new Map<string, Series>();
  constructor(
    readonly name: string,
    readonly help: string,
    readonly buckets: number[],
  ) {}
  observe(value: number): void {
    this.add(this.seriesOf(''), value);
  }
  /** A handle on one label set (`{route}`), for hot paths; it appears in `/metrics` at its first observation. */
  labels(labels?: Labels): HistogramHandle {
    const key = labelKey(labels);
    let s: Series | undefined;
    return {
      observe: (value) => {
        s ??= this.seriesOf(key);
        this.add(s, value);
      },
    };
  }
  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} histogram`];
    // An unobserved, unlabelled histogram still shows its zero buckets, as before labels existed.
    const all = this.series.size === 0 ? new Map([['', this.emptySeries()]]) : this.series;
    for (const [key, s] of all) {
      const inner = key === '' ? '' : `${key.slice(1, -1)},`;
      const braces = key === '' ? '' : key;
      let cumulative = 0;
      for (let i = 0; i < this.buckets.length; i++) {
        cumulative += s.counts[i] ?? 0;
        lines.push(`${this.name}_bucket{${inner}le="${this.buckets[i]}"} ${cumulative}`);
      }
      lines.push(`${this.name}_bucket{${inner}le="+Inf"} ${s.count}`, `${this.name}_sum${braces} ${s.sum}`, `${this.name}_count${braces} ${s.count}`);
    }
    return lines.join('\n');
  }
  private emptySeries(): Series {
    return { counts: this.buckets.map(() => 0), sum: 0, count: 0 };
  }
  private seriesOf(key: string): Series {
    let s = this.series.get(key);
    if (s === undefined) {
      s = this.emptySeries();
      this.series.set(key, s);
    }
    return s;
  }
  private add(s: Series, value: number): void {
    s.sum += value;
    s.count++;
    for (let i = 0; i < this.buckets.length; i++) {
      if (value <= (this.buckets[i] ?? Infinity)) {
        s.counts[i] = (s.counts[i] ?? 0) + 1;
        return;
      }
    }
  }
}

export class Registry {
  private readonly metrics: Metric[] = [];
  counter(name: string, help: string): Counter {
    return this.add(new Counter(name, help));
  }
  gauge(name: string, help: string): Gauge {
    return this.add(new Gauge(name, help));
  }
  histogram(name: string, help: string, buckets: number[]): Histogram {
    return this.add(new Histogram(name, help, buckets));
  }
  render(): string {
    return `${this.metrics.map((m) => m.render()).join('\n')}\n`;
  }
  private add<M extends Metric>(m: M): M {
    this.metrics.push(m);
    return m;
  }
}
