import { DAY_MS } from '../../store/rows.ts';
import { StoreError, type Store } from '../../store/store.ts';
import { canonicalTimeZone } from '../../schemas/time-zone.ts';
import { ApiQueryError } from './errors.ts';
import {
  chooseSource,
  shapeQuery,
  type CoreQuery,
  type QueryShape,
  type ResolvedDimension,
  type Source,
  type SourceDecision,
} from './planner.ts';
import { leaves, limits, parseQuery, type FilterLeaf, type FilterNode, type Metric, type OrderByEntry, type ParsedQuery } from './schema.ts';
import {
  coreBranches,
  coreSelect,
  componentColumns,
  sumBranches,
  type ConstantRow,
  finalSelect,
  keptDimension,
  keptValues,
  saltDaySpan,
  SqlBuilder,
  type ComponentColumn,
  type ProvisionalSaltDay,
  type SaltDays,
  type KeptValue,
  type SegmentCounts,
  type SegmentRuns,
} from './sql.ts';
import {
  autoGrain,
  comparisonRange,
  dateRange,
  instantRange,
  isoInZone,
  localDate,
  MAX_HOURLY_RANGE_MS,
  parseDateTime,
  parseIsoDate,
  resolveShortcut,
  SUPPORTED_SPAN,
  timeLabels,
  type IsoDate,
  type ResolvedRange,
} from './time.ts';

/**
 * The query engine of `POST /api/v2/query`: validates a Plausible Stats API v2 query,
 * plans it onto the rollups or the raw tables, runs it and shapes the response
 * `{results: [{metrics, dimensions, comparison?}], meta, query}`.
 */

/** The site a query runs for, as the control plane knows it. */
export interface QuerySite {
  readonly domain: string;
  /** IANA time zone: date ranges and time buckets are the site's local days and hours. */
  readonly timezone: string;
  /**
   * Configured goals by display name (`Signup`, `Visit /pricing`, `Visit /blog/**`). Without
   * them every custom event name is a goal, and `Visit <path>` filters name pageview goals.
   */
  readonly goals?: readonly string[];
}

export interface RunOptions {
  /** `raw` skips the rollups (tests, benchmarks); `auto` (default) lets the planner choose. */
  readonly source?: 'auto' | 'raw';
  /**
   * A range that meets only salt days not closed yet reads raw rows when the site's last known
   * count of events in them is below this ({@link RAW_OPEN_ROWS}; 0: never by this rule).
   */
  readonly rawOpenRows?: number;
}

/**
 * Below this many events in the open salt days (the last two UTC days), reading them raw costs
 * less than the salt-day lookups and provisional segments (`npm run bench -- query`, quiet 2-core
 * machine: a day range answered raw in 11–27 ms at 1M events (66k open) against ~50 through the
 * lookups, and in 23–60 ms at 10M (660k open) against 46–77).
 */
export const RAW_OPEN_ROWS = 2_000_000;

export type MetricValue = number | null;

export interface ResultRow {
  dimensions: string[];
  metrics: MetricValue[];
  /** With `include.comparisons`: the same row in the comparison range, and the change to it. */
  comparison?: { dimensions: (string | null)[]; metrics: MetricValue[]; change: MetricValue[] };
}

export interface QueryMeta {
  /** What answered the main read: a rollup grain or the raw tables. */
  source: Source;
  /** Every table read, totals included. */
  tables: string[];
  /** Why the rollups could not answer, when `source` is `raw`. */
  source_reason?: string;
  time_labels?: string[];
  total_rows?: number;
  /** The range comparisons were read from, as ISO 8601 in the site's zone. */
  comparison_date_range?: [string, string];
  imports_included?: false;
}

export interface QueryResponse {
  results: ResultRow[];
  meta: QueryMeta;
  /** The query as run: resolved date range and time grain, effective order and page. */
  query: {
    site_id: string;
    metrics: Metric[];
    date_range: [string, string];
    filters: unknown[];
    dimensions: string[];
    order_by: [string, 'asc' | 'desc'][];
    include: Record<string, unknown>;
    pagination: { limit: number; offset: number };
  };
}

/** Longest custom range accepted. */
const MAX_RANGE_MS = 20 * 366 * 86_400_000;

/**
 * Runs a `POST /api/v2/query` body for `site` as of `now`. Throws {@link ApiQueryError} (400,
 * naming the field) for a query Farol refuses; store failures propagate as they are.
 */
export async function runQuery(store: Store, site: QuerySite, body: unknown, now: Date, options: RunOptions = {}): Promise<QueryResponse> {
  // The zone as both engines spell it (see schemas/time-zone.ts); a stored zone outside the rule is a bug.
  const zone = canonicalTimeZone(site.timezone);
  if (zone === undefined) throw new Error(`site ${site.domain} has an unsupported time zone ${site.timezone}`);
  site = { ...site, timezone: zone };
  const q = parseQuery(body);
  // Domains are case-insensitive (the collector and the site lookup lower-case them).
  if (q.siteId.toLowerCase() !== site.domain) throw new ApiQueryError('site_id', 'site_id does not match the site queried');
  checkGoals(q.filters, site.goals);
  // Before any data is read: ClickHouse compiles a pattern only when rows reach it, so an invalid
  // one would otherwise pass or fail depending on the data.
  await checkRegexes(store, q.filters);
  const tz = site.timezone;
  const nowMs = now.getTime();
  const range = await resolveRange(store, site, q.dateRange, nowMs, 'date_range');
  const dims = resolveDimensions(q, range);
  const forceRaw = options.source === 'raw';
  const order = effectiveOrder(q);
  const tables = new Set<string>();

  const shape = shapeQuery({ metrics: q.metrics, dims, filters: q.filters, range, tz, configuredGoals: site.goals });
  const plan: Plan = { forceRaw, nowMs, rawOpenRows: options.rawOpenRows ?? RAW_OPEN_ROWS };
  const main = await execute(store, site.domain, q, shape, order, { limit: q.pagination.limit, offset: q.pagination.offset, totalRows: q.include.totalRows }, plan, tables);
  let results = main.rows.map((r) => ({ dimensions: r.dims, metrics: computeMetrics(q.metrics, r.components, shape, main.totals) }) as ResultRow);

  const timeIndex = dims.findIndex((d) => d.kind === 'time');
  const timeDim = timeIndex < 0 ? undefined : (dims[timeIndex] as Extract<ResolvedDimension, { kind: 'time' }>);
  const labels = timeDim === undefined ? undefined : timeLabels(range, tz, timeDim.grain);

  const meta: QueryMeta = { source: main.decision.source, tables: [] };
  if (main.decision.reason !== undefined) meta.source_reason = main.decision.reason;

  const comparisons = q.include.comparisons;
  if (comparisons !== undefined) {
    if (q.dateRange === 'realtime') throw new ApiQueryError('include.comparisons', 'realtime ranges cannot be compared');
    const custom =
      comparisons.dateRange === undefined ? undefined : resolvePair(comparisons.dateRange, tz, 'include.comparisons.date_range');
    const compRange = comparisonRange(range, tz, nowMs, comparisons.mode, custom, comparisons.matchDayOfWeek);
    checkSpan(compRange, 'include.comparisons');
    meta.comparison_date_range = [isoInZone(tz, compRange.start), isoInZone(tz, lastSecond(compRange))];

    // A time series compares every bucket, with empty ones shown as zeros (as Plausible does).
    if (timeDim !== undefined && labels !== undefined && dims.length === 1 && q.pagination.offset === 0) {
      const present = new Set(results.map((r) => r.dimensions[0]));
      const zeros = emptyComponents();
      for (const label of labels) {
        if (!present.has(label)) results.push({ dimensions: [label], metrics: computeMetrics(q.metrics, zeros, shape, main.totals) });
      }
      if (q.orderBy === undefined) results.sort((a, b) => ((a.dimensions[0] ?? '') < (b.dimensions[0] ?? '') ? -1 : 1));
      results = results.slice(0, q.pagination.limit);
    }

    const restrictions = restrictTo(dims, results);
    const compShape = shapeQuery({ metrics: q.metrics, dims, filters: q.filters, restrictions: restrictions ?? [], range: compRange, tz, configuredGoals: site.goals });
    const skip = restrictions === undefined;
    const comp = skip
      ? undefined
      : await execute(store, site.domain, q, compShape, order, { limit: limits.maxOffset, offset: 0, totalRows: false }, plan, tables);
    const compLabels = timeDim === undefined ? undefined : timeLabels(compRange, tz, timeDim.grain);
    const byDims = new Map<string, MetricValue[]>();
    for (const r of comp?.rows ?? []) byDims.set(JSON.stringify(r.dims), computeMetrics(q.metrics, r.components, compShape, comp?.totals ?? {}));
    const empty = computeMetrics(q.metrics, emptyComponents(), compShape, comp?.totals ?? {});
    for (const row of results) {
      const compDims = row.dimensions.map((v, i) => {
        if (i !== timeIndex) return v;
        const at = labels?.indexOf(v) ?? -1;
        return at < 0 ? null : (compLabels?.[at] ?? null);
      });
      const metrics = byDims.get(JSON.stringify(compDims)) ?? empty;
      row.comparison = { dimensions: compDims, metrics, change: q.metrics.map((m, i) => change(m, metrics[i] ?? null, row.metrics[i] ?? null)) };
    }
  }

  if (labels !== undefined && q.include.timeLabels) meta.time_labels = labels;
  if (q.include.totalRows) meta.total_rows = main.totalRows;
  if (q.include.imports) meta.imports_included = false;
  meta.tables = [...tables].sort();

  const include: Record<string, unknown> = {};
  if (q.include.timeLabels) include['time_labels'] = true;
  if (q.include.totalRows) include['total_rows'] = true;
  if (q.include.imports) include['imports'] = true;
  if (comparisons !== undefined) {
    include['comparisons'] = {
      mode: comparisons.mode,
      ...(comparisons.dateRange === undefined ? {} : { date_range: comparisons.dateRange }),
      ...(comparisons.matchDayOfWeek ? { match_day_of_week: true } : {}),
    };
  }
  return {
    results,
    meta,
    query: {
      site_id: site.domain,
      metrics: [...q.metrics],
      date_range: [isoInZone(tz, range.start), isoInZone(tz, lastSecond(range))],
      filters: [...q.rawFilters],
      dimensions: q.dimensions.map((d) => d.name),
      order_by: order.map((o) => [o.key, o.direction]),
      include,
      pagination: { ...q.pagination },
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Validation against the site

function checkGoals(filters: readonly FilterNode[], configured: readonly string[] | undefined): void {
  if (configured === undefined) return;
  for (const { leaf } of leaves(filters)) {
    if (leaf.dimension.kind !== 'goal') continue;
    leaf.values.forEach((v, i) => {
      if (!configured.includes(v)) throw new ApiQueryError(`${leaf.field}[2][${i}]`, `goal "${v}" is not configured for this site`);
    });
  }
}

function lastSecond(range: ResolvedRange): number {
  return Math.floor((range.end - 1) / 1000) * 1000;
}

async function resolveRange(
  store: Store,
  site: QuerySite,
  input: ParsedQuery['dateRange'],
  now: number,
  field: string,
): Promise<ResolvedRange> {
  if (typeof input !== 'string') return resolvePair(input, site.timezone, field);
  const start = input === 'all' ? await statsStart(store, site) : undefined;
  return resolveShortcut(input, site.timezone, now, start);
}

const spanText = `from 1970-01-01T00:00:00Z to ${SUPPORTED_SPAN.lastDate}`;

/** Refuses a range outside the instants ClickHouse's date types hold. */
function checkSpan(range: ResolvedRange, field: string): void {
  if (range.start < SUPPORTED_SPAN.start || range.end > SUPPORTED_SPAN.end) {
    throw new ApiQueryError(field, `the range must lie within ${spanText}`);
  }
}

function resolvePair(pair: readonly [string, string], tz: string, field: string): ResolvedRange {
  const [from, to] = pair;
  let range: ResolvedRange;
  if (parseIsoDate(from) !== undefined && parseIsoDate(to) !== undefined) {
    // Before any arithmetic: 9999-12-31 has no next day.
    pair.forEach((d, i) => {
      if (d > SUPPORTED_SPAN.lastDate) throw new ApiQueryError(`${field}[${i}]`, `dates must lie within ${spanText}`);
    });
    if (from > to) throw new ApiQueryError(field, 'the first date must not be after the second');
    range = dateRange(tz, from, to);
  } else {
    const a = parseDateTime(from, tz);
    if (a === undefined) throw new ApiQueryError(`${field}[0]`, 'must be an ISO 8601 date (YYYY-MM-DD) or date-time, like the other end');
    const b = parseDateTime(to, tz);
    if (b === undefined) throw new ApiQueryError(`${field}[1]`, 'must be an ISO 8601 date (YYYY-MM-DD) or date-time, like the other end');
    // The end is inclusive, to the second unless it carries a fraction.
    const end = b.instant + (b.fractional ? 1 : 1000);
    if (end <= a.instant) throw new ApiQueryError(field, 'the range must end after it starts');
    range = instantRange(tz, a.instant, end);
  }
  checkSpan(range, field);
  if (range.end - range.start > MAX_RANGE_MS) throw new ApiQueryError(field, 'the range may cover at most 20 years');
  return range;
}

/** The site's first day with data (rollups outlive raw events), for `all`. */
async function statsStart(store: Store, site: QuerySite): Promise<IsoDate | undefined> {
  const rows = await store.query<{ first: string; n: string }>(
    "SELECT toString(min(bucket)) AS first, count() AS n FROM rollup_hourly WHERE site = {site:String} AND dim = ''",
    { site: site.domain },
  );
  const row = rows[0];
  if (row === undefined || Number(row.n) === 0) return undefined;
  return localDate(site.timezone, Date.parse(`${row.first.replace(' ', 'T')}Z`));
}

function resolveDimensions(q: ParsedQuery, range: ResolvedRange): ResolvedDimension[] {
  return q.dimensions.map((d, i) => {
    if (d.kind !== 'time') return d;
    const grain = d.grain === 'auto' ? autoGrain(range) : d.grain;
    if (grain === 'hour' && range.end - range.start > MAX_HOURLY_RANGE_MS) {
      throw new ApiQueryError(`dimensions[${i}]`, 'hourly buckets are limited to ranges of 400 days');
    }
    return { kind: 'time', name: d.name, grain };
  });
}

/** The order the query asks for, or Plausible's default: the time dimension ascending, then the first metric descending. */
function effectiveOrder(q: ParsedQuery): OrderByEntry[] {
  if (q.orderBy !== undefined) return [...q.orderBy];
  const order: OrderByEntry[] = [];
  const time = q.dimensions.find((d) => d.kind === 'time');
  if (time !== undefined) order.push({ key: time.name, direction: 'asc' });
  const first = q.metrics[0];
  if (first !== undefined) order.push({ key: first, direction: 'desc' });
  return order;
}

// ---------------------------------------------------------------------------------------------
// Execution

type Components = Record<ComponentColumn | 'g_visitors', number>;

interface CoreRow {
  dims: string[];
  components: Components;
}

interface Totals {
  percentage?: number;
  conversion?: number;
}

interface Executed {
  rows: CoreRow[];
  totalRows: number;
  decision: SourceDecision;
  totals: Totals;
}

function emptyComponents(): Components {
  const c = { g_visitors: 0 } as Components;
  for (const k of componentColumns) c[k] = 0;
  return c;
}

function visitorsColumn(shape: QueryShape): ComponentColumn {
  return shape.visitorSide === 'event' ? 'ev_visitors' : 'se_visitors';
}

/** SQL ordering expression of a metric, over the output columns (ratios unrounded). */
function metricOrder(m: Metric, shape: QueryShape): string {
  const visitors = visitorsColumn(shape);
  switch (m) {
    case 'visitors':
    case 'percentage':
    case 'conversion_rate':
      return visitors;
    case 'visits':
      return shape.visitsSide === 'event' ? 'ev_visits' : 'se_visits';
    case 'pageviews':
      return 'ev_pageviews';
    case 'events':
      return 'ev_events';
    case 'views_per_visit':
      return 'if(se_visits = 0, 0, se_pageviews / se_visits)';
    case 'bounce_rate':
      return 'if(se_bounce_visits = 0, 0, se_bounces / se_bounce_visits)';
    case 'visit_duration':
      return 'if(se_visits = 0, 0, se_duration / se_visits)';
    case 'group_conversion_rate':
      return 'if(g_visitors = 0, 0, ev_visitors / g_visitors)';
    case 'total_revenue':
      return 'ev_revenue';
    case 'average_revenue':
      return 'if(ev_revenue_n = 0, 0, ev_revenue / ev_revenue_n)';
  }
}

/** One `ORDER BY` term: a dimension's output column, or a metric's ordering value. */
interface OrderTerm {
  readonly alias?: string;
  readonly metric?: Metric;
  readonly desc: boolean;
}

function orderTerms(q: ParsedQuery, order: readonly OrderByEntry[], shape: QueryShape): OrderTerm[] {
  const names = q.dimensions.map((d) => d.name);
  const aliases = shape.main.aliases;
  const used = new Set<string>();
  const terms: OrderTerm[] = order.map(({ key, direction }) => {
    const desc = direction === 'desc';
    const at = names.indexOf(key);
    if (at >= 0) {
      const alias = aliases[at] ?? '';
      used.add(alias);
      return { alias, desc };
    }
    return { metric: key as Metric, desc };
  });
  // Ties broken by the dimensions, so pages never overlap.
  for (const a of aliases) if (!used.has(a)) terms.push({ alias: a, desc: false });
  return terms;
}

function orderSql(terms: readonly OrderTerm[], shape: QueryShape): string[] {
  return terms.map((t) => `${t.alias ?? metricOrder(t.metric ?? 'visitors', shape)} ${t.desc ? 'DESC' : 'ASC'}`);
}

/** What a plain count metric (visitors, visits, pageviews, events) shows; undefined for the others. */
function countMetric(m: Metric, shape: QueryShape, c: Components): number | undefined {
  if (m === 'visitors') return c[visitorsColumn(shape)];
  if (m === 'visits') return shape.visitsSide === 'event' ? c.ev_visits : c.se_visits;
  if (m === 'pageviews') return c.ev_pageviews;
  if (m === 'events') return c.ev_events;
  return undefined;
}

/** {@link metricOrder}'s value, computed as ClickHouse does (Int64 sums; `/` in Float64). */
function metricOrderValue(m: Metric, shape: QueryShape, c: Components): number {
  const ratio = (x: number, y: number): number => (y === 0 ? 0 : x / y);
  switch (m) {
    case 'percentage':
    case 'conversion_rate':
      return c[visitorsColumn(shape)];
    case 'views_per_visit':
      return ratio(c.se_pageviews, c.se_visits);
    case 'bounce_rate':
      return ratio(c.se_bounces, c.se_bounce_visits);
    case 'visit_duration':
      return ratio(c.se_duration, c.se_visits);
    case 'group_conversion_rate':
      return ratio(c.ev_visitors, c.g_visitors);
    case 'total_revenue':
      return c.ev_revenue;
    case 'average_revenue':
      return ratio(c.ev_revenue, c.ev_revenue_n);
    default:
      return countMetric(m, shape, c) ?? 0;
  }
}

// Built once: a literal in the comparator would be a new RegExp on every comparison of a sort.
// eslint-disable-next-line no-control-regex
const ASCII = /^[\x00-\x7f]*$/;

/** Strings as ClickHouse orders them: by their UTF-8 bytes. */
function compareBytes(a: string, b: string): number {
  if (a === b) return 0;
  if (ASCII.test(a) && ASCII.test(b)) return a < b ? -1 : 1;
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/** The rows of an answer merged in memory, ordered by `terms` as the statement would order them. */
function compareRows(terms: readonly OrderTerm[], shape: QueryShape): (x: CoreRow, y: CoreRow) => number {
  const aliases = shape.main.aliases;
  return (x, y) => {
    for (const t of terms) {
      let d: number;
      if (t.alias !== undefined) {
        const i = aliases.indexOf(t.alias);
        d = compareBytes(x.dims[i] ?? '', y.dims[i] ?? '');
      } else {
        const m = t.metric ?? 'visitors';
        const a = metricOrderValue(m, shape, x.components);
        const b = metricOrderValue(m, shape, y.components);
        d = a === b ? 0 : a < b ? -1 : 1;
      }
      if (d !== 0) return t.desc ? -d : d;
    }
    return 0;
  };
}

interface Plan {
  readonly forceRaw: boolean;
  readonly nowMs: number;
  readonly rawOpenRows: number;
}

/** Whether every salt day whose ids can appear in `range` may still be open as of `now` (yesterday's or later). */
function openOnly(range: ResolvedRange, nowMs: number): boolean {
  return saltDaySpan(range.start, range.end)[0] >= Math.floor(nowMs / DAY_MS) - 1;
}

/**
 * Per site, the events in its open salt days as the last lookup counted them: a hint for choosing
 * raw rows (either answer is exact, so a stale hint costs time, never correctness). Bounded.
 */
const openRows = new Map<string, { rows: number; atMs: number }>();
const HINT_TTL_MS = 10 * 60_000;
const HINT_SITES = 10_000;

function openRowsHint(site: string, nowMs: number): number | undefined {
  const h = openRows.get(site);
  return h === undefined || Math.abs(nowMs - h.atMs) > HINT_TTL_MS ? undefined : h.rows;
}

function noteOpenRows(site: string, rows: number, nowMs: number): void {
  if (!openRows.has(site) && openRows.size >= HINT_SITES) openRows.delete(openRows.keys().next().value as string);
  openRows.set(site, { rows, atMs: nowMs });
}


interface Page {
  limit: number;
  offset: number;
  totalRows: boolean;
}

async function execute(
  store: Store,
  site: string,
  q: ParsedQuery,
  shape: QueryShape,
  order: readonly OrderByEntry[],
  page: Page,
  plan: Plan,
  tables: Set<string>,
): Promise<Executed> {
  const cheapRaw = !plan.forceRaw && openOnly(shape.main.range, plan.nowMs) && (openRowsHint(site, plan.nowMs) ?? Infinity) < plan.rawOpenRows;
  const forceRaw = plan.forceRaw || cheapRaw;
  const decision = cheapRaw ? { source: 'raw' as const, reason: 'the range meets only salt days not closed yet, with few events: raw rows cost less' } : chooseSource(shape.main, forceRaw);
  // Salt days matter to rollup answers only (a totals read of a raw answer may still use them).
  const needsSaltDays = !forceRaw && [shape.main, shape.groupTotals, shape.percentageTotal, shape.conversionTotal].some((c) => c !== undefined && chooseSource(c, false).source !== 'raw');
  const cores = [shape.main, shape.groupTotals, shape.percentageTotal, shape.conversionTotal].filter((c) => c !== undefined);
  // The open days' tails are read for the sides whose visitors the answer counts.
  const sides = { event: cores.some((c) => c.event.has('visitors')), session: cores.some((c) => c.session.has('visitors')) };
  const looked = needsSaltDays ? await closedSaltDays(store, site, shape.main.range, plan.nowMs, sides) : undefined;
  // Reads of rows named ahead (totals, goal lists) take the salt days' segment counts from memory,
  // read once per generation. (Hourly buckets and ranges of hours read the hour bitmaps instead.)
  // Only on the embedded engine, whose writes are visible when they end: on a server cluster a
  // generation's rows could still be on their way to a shard when its close is recorded.
  const keeps = store.tableVersion !== undefined;
  const named = cores.filter(
    (c) =>
      keeps &&
      c.range.dateBased &&
      keptValues(c) !== undefined &&
      c.dims.every((d) => d.kind !== 'time' || d.grain !== 'hour') &&
      chooseSource(c, forceRaw).source !== 'raw',
  );
  const withNamed = looked !== undefined && named.length > 0 ? await withSegmentCounts(store, site, named, looked, sides) : looked;
  // Breakdowns by one column dimension keep every value's counts when a salt day has few.
  const broken = cores.filter(
    (c) => keeps && c.range.dateBased && (keptDimension(c, 'event') !== undefined || keptDimension(c, 'session') !== undefined) && chooseSource(c, forceRaw).source !== 'raw',
  );
  const saltDays = withNamed !== undefined && broken.length > 0 ? await withDimensionCounts(store, site, broken, withNamed) : withNamed;
  // The totals ratios divide by, read in the main statement (one statement less); read on their
  // own only when it has no row to carry them.
  const folded: { kind: keyof Totals; core: CoreQuery; column: ComponentColumn; alias: string }[] = [];
  for (const [kind, c] of [['percentage', shape.percentageTotal], ['conversion', shape.conversionTotal]] as const) {
    if (c !== undefined) folded.push({ kind, core: c, column: c.event.size > 0 ? 'ev_visitors' : 'se_visitors', alias: `t_${kind}` });
  }
  const merged = await mergedInMemory(store, site, q, shape, orderTerms(q, order, shape), page, decision, folded, forceRaw, saltDays, tables);
  if (merged !== undefined) return merged;
  const b = new SqlBuilder();
  const core = coreSelect(b, shape.main, site, decision.source, saltDays);
  let groupTotals: { sql: string; aliases: readonly string[] } | undefined;
  if (shape.groupTotals !== undefined) {
    const g = shape.groupTotals;
    groupTotals = { sql: coreSelect(b, g, site, chooseSource(g, forceRaw).source, saltDays), aliases: g.aliases };
  }
  const totalsSql = folded.map((t) => ({ sql: coreSelect(b, t.core, site, chooseSource(t.core, forceRaw).source, saltDays), column: t.column, alias: t.alias }));
  const run = async (p: Page): Promise<Record<string, unknown>[]> => {
    const options = { orderBy: orderSql(orderTerms(q, order, shape), shape), ...p, ...(groupTotals === undefined ? {} : { groupTotals }), totals: totalsSql };
    return query(store, finalSelect(b, shape.main, core, options), b.params, q);
  };
  let raw = await run(page);
  let totalRows = raw.length;
  if (page.totalRows) {
    if (raw.length === 0 && page.offset > 0) {
      // Past the last row: the count still answers.
      const first = await run({ limit: 1, offset: 0, totalRows: true });
      totalRows = Number(first[0]?.['total_rows'] ?? 0);
      raw = [];
    } else totalRows = Number(raw[0]?.['total_rows'] ?? 0);
  }
  for (const t of b.tables) tables.add(t);
  const rows = raw.map((r) => coreRow(shape.main, r));

  const totals: Totals = {};
  const first = raw[0];
  for (const t of folded) {
    totals[t.kind] = first === undefined ? await total(store, site, q, t.core, forceRaw, tables, saltDays) : Number(first[t.alias] ?? 0);
  }
  return { rows, totalRows, decision, totals };
}

/** A row of a core read: its dimension values and components (a missing `g_visitors` reads 0). */
function coreRow(q: CoreQuery, r: Record<string, unknown>): CoreRow {
  const components = emptyComponents();
  for (const k of [...componentColumns, 'g_visitors'] as const) components[k] = Number(r[k] ?? 0);
  return { dims: q.aliases.map((a) => String(r[a] ?? '')), components };
}

/**
 * The answer of a read whose visitors are known from kept segment counts ({@link ConstantRow}),
 * merged in memory with the rows of the sums read from the rollups (if any): one statement less
 * to plan than a UNION of both (planning is most of a rollup answer's time; the read itself is
 * grouped and unordered), or none at all. Ordered and paged here as {@link finalSelect} would:
 * the same terms over the same Int64 sums and Float64 ratios, strings by their UTF-8 bytes, ties
 * broken by the dimensions. Undefined when the answer has no such rows, or joins group totals,
 * or a total it divides by needs a read: the statement then does all of it.
 */
async function mergedInMemory(
  store: Store,
  site: string,
  q: ParsedQuery,
  shape: QueryShape,
  terms: readonly OrderTerm[],
  page: Page,
  decision: SourceDecision,
  folded: readonly { kind: keyof Totals; core: CoreQuery; column: ComponentColumn }[],
  forceRaw: boolean,
  saltDays: SaltDays | undefined,
  tables: Set<string>,
): Promise<Executed | undefined> {
  if (decision.source === 'raw' || shape.groupTotals !== undefined || saltDays === undefined) return undefined;
  const b = new SqlBuilder();
  const totals: Totals = {};
  for (const t of folded) {
    const rows: ConstantRow[] = [];
    if (coreBranches(b, t.core, site, chooseSource(t.core, forceRaw).source, saltDays, rows).length > 0) return undefined;
    totals[t.kind] = rows.reduce((n, r) => n + (r.sums[t.column] ?? 0), 0);
  }
  const main = shape.main;
  const constants: ConstantRow[] = [];
  const branches = coreBranches(b, main, site, decision.source, saltDays, constants);
  if (constants.length === 0) return undefined;
  const byKey = new Map<string, CoreRow>();
  const add = (dims: readonly string[], sums: Partial<Record<ComponentColumn, number>>): void => {
    const key = JSON.stringify(dims);
    let row = byKey.get(key);
    if (row === undefined) byKey.set(key, (row = { dims: [...dims], components: emptyComponents() }));
    for (const [k, v] of Object.entries(sums) as [ComponentColumn, number][]) row.components[k] += v;
  };
  if (branches.length > 0) {
    for (const r of await query(store, sumBranches(main, branches), b.params, q)) {
      const row = coreRow(main, r);
      add(row.dims, row.components);
    }
  }
  for (const c of constants) add(c.dims, c.sums);
  for (const t of b.tables) tables.add(t);
  const all = [...byKey.values()].sort(compareRows(terms, shape));
  return { rows: all.slice(page.offset, page.offset + page.limit), totalRows: all.length, decision, totals };
}

/** Visitors of a totals read (no dimensions: one row). */
async function total(
  store: Store,
  site: string,
  q: ParsedQuery,
  core: CoreQuery,
  forceRaw: boolean,
  tables: Set<string>,
  saltDays: SaltDays | undefined,
): Promise<number> {
  const b = new SqlBuilder();
  const sql = coreSelect(b, core, site, chooseSource(core, forceRaw).source, saltDays);
  const rows = await query(store, sql, b.params, q);
  for (const t of b.tables) tables.add(t);
  const row = rows[0];
  return Number(row?.[core.event.size > 0 ? 'ev_visitors' : 'se_visitors'] ?? 0);
}

/**
 * The two small reads of {@link closedSaltDays} (the generations lookup, and the provisional
 * generations' check), kept while the store says none of the tables they read changed (the
 * embedded engine, whose only writer is this process: {@link Store.tableVersion}) and for at most
 * {@link READ_TTL_MS} (background merges and mutations the engine runs on its own settle
 * meanwhile). The panels of one dashboard load share them until the next insert ends: a statement
 * or two less per rollup answer. On a ClickHouse server they are read each time.
 *
 * An entry past half its life is read again beside the answer that found it (which still uses
 * it: it holds for the other half), so a steady flow of answers never waits for the re-read that
 * the age limit would otherwise put in front of one answer every 30 s.
 */
const smallReads = new Map<string, { version: string; atMs: number; rows: unknown[] }>();
const READ_TTL_MS = 30_000;
const READ_ENTRIES = 1_000;
/** Keys whose re-read is under way. */
const rereading = new Set<string>();

function keep(key: string, entry: { version: string; atMs: number; rows: unknown[] }): void {
  if (!smallReads.has(key) && smallReads.size >= READ_ENTRIES) smallReads.delete(smallReads.keys().next().value as string);
  smallReads.set(key, entry);
}

async function cachedRead<T>(store: Store, tables: readonly string[], key: string, read: () => Promise<T[]>): Promise<T[]> {
  const versionOf = store.tableVersion?.bind(store);
  if (versionOf === undefined) return read();
  const version = tables.map((t) => versionOf(t)).join('/');
  const now = performance.now();
  const hit = smallReads.get(key);
  if (hit !== undefined && hit.version === version && now - hit.atMs < READ_TTL_MS) {
    if (now - hit.atMs >= READ_TTL_MS / 2 && !rereading.has(key)) {
      rereading.add(key);
      // Kept under the version taken before the read, as below; a failed re-read leaves the entry
      // to expire (the next answer past its life reads in front, and sees the error).
      void read().then(
        (rows) => {
          rereading.delete(key);
          keep(key, { version, atMs: now, rows });
        },
        () => rereading.delete(key),
      );
    }
    return hit.rows as T[];
  }
  // The version is taken before the read: a write ending meanwhile moves it, and the next call reads again.
  const rows = await read();
  keep(key, { version, atMs: now, rows });
  return rows;
}

/**
 * Salt days' `salt_day_segments` counts of the rows an answer names ahead ({@link keptValues}: the
 * totals, a list of goals), per store, keyed by (site, side, zone, salt day, generation,
 * dimension, value). A generation's rows never change once it is recorded in `salt_day_closes`
 * or `salt_day_provisional` (the jobs write them first; late rows make a computation under a new
 * generation, which the lookup then names, and a provisional one that no longer holds is not
 * named), so a kept entry is the read it stands for. Kept on the embedded engine only (see
 * `execute`). Bounded: the oldest entries leave first.
 */
const segmentCountsCache = new WeakMap<Store, Map<string, SegmentCounts>>();
const SEGMENT_COUNTS_ENTRIES = 200_000;

const countsKey = (site: string, side: string, tz: string, day: number, gen: string, dim: string, value: string): string =>
  JSON.stringify([site, side, tz, day, gen, dim, value]);

/** The map `caches` keeps for `store`, made on first use. */
function cacheOf<T>(caches: WeakMap<Store, Map<string, T>>, store: Store): Map<string, T> {
  let cache = caches.get(store);
  if (cache === undefined) {
    cache = new Map();
    caches.set(store, cache);
  }
  return cache;
}

/**
 * The generations whose segment rows in `q`'s zone can answer its range: the closed ones, and the
 * provisional ones of open days (named by the lookup while they hold).
 */
function generationsOf(q: CoreQuery, saltDays: SaltDays): { day: number; gen: string }[] {
  const [first, last] = saltDaySpan(q.range.start, q.range.end);
  return [
    ...[...saltDays.closed].map(([day, gen]) => ({ day, gen, zones: saltDays.zones.get(day) })),
    ...[...(saltDays.provisional ?? [])].map(([day, p]) => ({ day, gen: p.gen, zones: p.zones })),
  ].filter(({ day, zones }) => day >= first && day <= last && zones?.includes(q.tz) === true);
}

/**
 * `saltDays` with {@link SaltDays.segmentCounts} for the zone of `cores`: the counts of the rows
 * they name of the salt days whose ids can appear in the range (closed, or open with a
 * provisional generation that holds), read in one statement for those not kept yet.
 */
async function withSegmentCounts(
  store: Store,
  site: string,
  cores: readonly CoreQuery[],
  saltDays: SaltDays,
  sides: { event: boolean; session: boolean },
): Promise<SaltDays> {
  const kept = cacheOf(segmentCountsCache, store);
  const q = cores[0];
  if (q === undefined) return saltDays;
  const values = new Map<string, KeptValue>();
  for (const c of cores) for (const v of keptValues(c) ?? []) values.set(JSON.stringify([v.dim, v.value]), v);
  const sideNames = (['event', 'session'] as const).filter((side) => sides[side]);
  const missing: { day: number; gen: string; side: 'event' | 'session'; v: KeptValue }[] = [];
  for (const { day, gen } of generationsOf(q, saltDays)) {
    for (const side of sideNames) {
      for (const v of values.values()) if (!kept.has(countsKey(site, side, q.tz, day, gen, v.dim, v.value))) missing.push({ day, gen, side, v });
    }
  }
  if (missing.length > 0) {
    const rows = await store.query<{ side: string; day: number | string; gen: string; dim: string; value: string } & Record<`v${SegmentRuns}`, string>>(
      `SELECT side, toUInt32(salt_day) AS day, toString(gen) AS gen, dim, value, sum(v1) AS v1, sum(v2) AS v2, sum(v3) AS v3, sum(v4) AS v4, sum(v6) AS v6, sum(v7) AS v7
       FROM salt_day_segments
       WHERE site = {site:String} AND side IN {sides:Array(String)} AND dim IN {dims:Array(String)} AND tz = {tz:String}
         AND salt_day IN {days:Array(Date)} AND gen IN {gens:Array(UInt64)} AND value IN {values:Array(String)}
       GROUP BY side, salt_day, gen, dim, value`,
      {
        site,
        sides: [...new Set(missing.map((m) => m.side))],
        dims: [...new Set(missing.map((m) => m.v.dim))],
        tz: q.tz,
        days: [...new Set(missing.map((m) => m.day))].map((d) => new Date(d * DAY_MS).toISOString().slice(0, 10)),
        // Generations are µs since the epoch: exact as JavaScript numbers until the year 2255.
        gens: [...new Set(missing.map((m) => m.gen))].map(Number),
        values: [...new Set(missing.map((m) => m.v.value))],
      },
    );
    // The read is a superset (each list on its own): only the exact rows named are kept.
    const found = new Map(rows.map((r) => [countsKey(site, r.side, q.tz, Number(r.day), r.gen, r.dim, r.value), r]));
    for (const { day, gen, side, v } of missing) {
      const key = countsKey(site, side, q.tz, day, gen, v.dim, v.value);
      // No row: no visitor on that side with that value (the sums over no rows are zeros).
      const r = found.get(key);
      const n = (k: SegmentRuns): number => Number(r?.[`v${k}`] ?? 0);
      if (!kept.has(key) && kept.size >= SEGMENT_COUNTS_ENTRIES) kept.delete(kept.keys().next().value as string);
      kept.set(key, { 1: n(1), 2: n(2), 3: n(3), 4: n(4), 6: n(6), 7: n(7) });
    }
  }
  return { ...saltDays, segmentCounts: (side, tz, day, gen, dim, value) => kept.get(countsKey(site, side, tz, day, gen, dim, value)) };
}

/**
 * Every value's counts of a breakdown's dimension per salt day and generation, as
 * {@link segmentCountsCache} keeps named rows, when a salt day has at most
 * {@link KEPT_DIMENSION_VALUES} values (countries, devices, channels, UTM sources…); `null` when
 * it has more (pages, say): those read the table. Bounded like it.
 */
const dimensionCountsCache = new WeakMap<Store, Map<string, ReadonlyMap<string, SegmentCounts> | null>>();
const DIMENSION_COUNTS_ENTRIES = 4_000;
const KEPT_DIMENSION_VALUES = 256;

const dimensionKey = (site: string, side: string, tz: string, day: number, gen: string, dim: string): string => JSON.stringify([site, side, tz, day, gen, dim]);

/** `saltDays` with {@link SaltDays.dimensionCounts} for the breakdowns of `cores`, read in one statement for those not kept yet. */
async function withDimensionCounts(store: Store, site: string, cores: readonly CoreQuery[], saltDays: SaltDays): Promise<SaltDays> {
  const kept = cacheOf(dimensionCountsCache, store);
  const q = cores[0];
  if (q === undefined) return saltDays;
  const wanted = new Map<string, { side: 'event' | 'session'; dim: string }>();
  for (const c of cores) {
    for (const side of ['event', 'session'] as const) {
      const dim = keptDimension(c, side);
      if (dim !== undefined && (side === 'event' ? c.event : c.session).has('visitors')) wanted.set(`${side}\n${dim}`, { side, dim });
    }
  }
  const missing: { day: number; gen: string; side: 'event' | 'session'; dim: string }[] = [];
  for (const { day, gen } of generationsOf(q, saltDays)) {
    for (const { side, dim } of wanted.values()) if (!kept.has(dimensionKey(site, side, q.tz, day, gen, dim))) missing.push({ day, gen, side, dim });
  }
  if (missing.length > 0) {
    const rows = await store.query<{ side: string; day: number | string; gen: string; dim: string; value: string } & Record<`v${SegmentRuns}`, string>>(
      `SELECT side, toUInt32(salt_day) AS day, toString(gen) AS gen, dim, value, sum(v1) AS v1, sum(v2) AS v2, sum(v3) AS v3, sum(v4) AS v4, sum(v6) AS v6, sum(v7) AS v7
       FROM salt_day_segments
       WHERE site = {site:String} AND side IN {sides:Array(String)} AND dim IN {dims:Array(String)} AND tz = {tz:String}
         AND salt_day IN {days:Array(Date)} AND gen IN {gens:Array(UInt64)}
       GROUP BY side, salt_day, gen, dim, value`,
      {
        site,
        sides: [...new Set(missing.map((m) => m.side))],
        dims: [...new Set(missing.map((m) => m.dim))],
        tz: q.tz,
        days: [...new Set(missing.map((m) => m.day))].map((d) => new Date(d * DAY_MS).toISOString().slice(0, 10)),
        gens: [...new Set(missing.map((m) => m.gen))].map(Number),
      },
    );
    // The read is a superset (each list on its own): only the exact (side, day, generation, dimension) named are kept.
    const found = new Map<string, Map<string, SegmentCounts>>();
    for (const r of rows) {
      const key = dimensionKey(site, r.side, q.tz, Number(r.day), r.gen, r.dim);
      let values = found.get(key);
      if (values === undefined) found.set(key, (values = new Map()));
      const n = (k: SegmentRuns): number => Number(r[`v${k}`]);
      values.set(r.value, { 1: n(1), 2: n(2), 3: n(3), 4: n(4), 6: n(6), 7: n(7) });
    }
    for (const { day, gen, side, dim } of missing) {
      const key = dimensionKey(site, side, q.tz, day, gen, dim);
      // No row: no visitor on that side (an empty breakdown).
      const values = found.get(key) ?? new Map<string, SegmentCounts>();
      if (!kept.has(key) && kept.size >= DIMENSION_COUNTS_ENTRIES) kept.delete(kept.keys().next().value as string);
      kept.set(key, values.size > KEPT_DIMENSION_VALUES ? null : values);
    }
  }
  return { ...saltDays, dimensionCounts: (side, tz, day, gen, dim) => kept.get(dimensionKey(site, side, tz, day, gen, dim)) ?? undefined };
}

/** Past this many visitors seen since a provisional generation's watermark, they are not bound by id. */
const TAIL_IDS = 5_000;

interface LookupRow {
  kind: string;
  day: number | string;
  gen: string;
  zones: string[];
  w: string;
  ws: string;
  n: string | number;
}

/**
 * The site's salt days whose ids can appear in `range`, in two small reads: the closed ones with
 * their latest complete generation (the rollups' unique visitors read them from
 * `salt_day_segments` or `salt_day_visitors`); the open ones' provisional generations, kept only
 * while they hold — the events in [their day, their watermark) are as many as when they were made
 * (a late event makes the day read raw) — with the ids of the visitors seen since (events at or
 * after the watermark; sessions whose latest event is at or after the session watermark), usually
 * few: bound by id, or past {@link TAIL_IDS} read by a sub-query in the answer.
 */
async function closedSaltDays(
  store: Store,
  site: string,
  range: ResolvedRange,
  nowMs: number,
  sides: { event: boolean; session: boolean },
): Promise<SaltDays> {
  const [first, last] = saltDaySpan(range.start, range.end);
  // The small tables first: the site's closes (all of them: one row per salt day, and the first
  // closed day is their least), and the provisional generations of the range's days.
  // Rows as stored, the latest generation of each day picked here: a GROUP BY over these small
  // tables cost twice the read.
  const stored = await cachedRead(store, ['salt_day_closes', 'salt_day_provisional'], `lookup\n${store.database}\n${site}\n${first}\n${last}`, () =>
    store.query<LookupRow>(
      `SELECT 'c' AS kind, toUInt32(salt_day) AS day, toString(gen) AS gen, zones, '0' AS w, '0' AS ws, toUInt64(0) AS n
       FROM salt_day_closes WHERE site = {site:String}
       UNION ALL
       SELECT 'p', toUInt32(salt_day), toString(gen), zones, toString(toUnixTimestamp64Milli(watermark)), toString(toUnixTimestamp64Milli(session_watermark)), event_rows
       FROM salt_day_provisional WHERE site = {site:String} AND salt_day >= toDate({first:UInt32}) AND salt_day <= toDate({last:UInt32})`,
      { site, first: Math.max(0, first), last: Math.max(0, last) },
    ),
  );
  const latest = new Map<string, LookupRow>();
  for (const r of stored) {
    const key = `${r.kind}${Number(r.day)}`;
    const seen = latest.get(key);
    if (seen === undefined || BigInt(r.gen) > BigInt(seen.gen)) latest.set(key, r);
  }
  const meta = [...latest.values()];
  const closes = meta.filter((r) => r.kind === 'c');
  const firstClosed = closes.length === 0 ? undefined : Math.min(...closes.map((r) => Number(r.day)));
  const days = closes.filter((r) => Number(r.day) >= first && Number(r.day) <= last);
  const closed = new Map(days.map((r) => [Number(r.day), r.gen]));
  const zones = new Map(days.map((r) => [Number(r.day), r.zones]));
  const provisional = new Map<number, ProvisionalSaltDay>();
  // A closed day's older provisional rows may stay: the close wins.
  const candidates = meta.filter((r) => r.kind === 'p' && !closed.has(Number(r.day)));
  if (candidates.length > 0) {
    // Per provisional generation, in one read: the events in [its day 00:00 UTC, its watermark)
    // (the sort key's days and the timestamp only: a late event there makes the day read raw), and
    // the ids of the visitors seen since on each side (few: read after the timestamp filter).
    const params: Record<string, unknown> = { site, limit: TAIL_IDS + 1 };
    const bind = (name: string, value: unknown, type: string): string => {
      params[name] = value;
      return `{${name}:${type}}`;
    };
    const days = candidates.map((r, i) => ({
      day: bind(`d${i}`, Number(r.day), 'UInt32'),
      w: bind(`w${i}`, new Date(Number(r.w)), "DateTime64(3, 'UTC')"),
      ws: bind(`ws${i}`, new Date(Number(r.ws)), "DateTime64(3, 'UTC')"),
    }));
    // Each generation's events in [its day 00:00 UTC, its watermark): the sort key's days and the
    // timestamp alone, which ClickHouse answers from the primary key (a part per generation).
    const counts = days.map(
      ({ day, w }) => `SELECT 'n' AS kind, ${day} AS day, count() AS n, emptyArrayString() AS ids FROM events
         WHERE site = {site:String} AND toDate(timestamp) >= toDate(${day}) AND toDate(timestamp) <= toDate(${w}) AND timestamp < ${w}`,
    );
    // The visitors seen since, every generation in one read per side (a statement's parts cost
    // more than their rows here): rows after the earliest watermark, each kept against its own.
    const since = (mark: 'w' | 'ws'): { from: string; own: string; days: string } => ({
      from: days.length === 1 ? (days[0]?.[mark] ?? '') : `least(${days.map((d) => d[mark]).join(', ')})`,
      own: days.length === 1 ? (days[0]?.[mark] ?? '') : `multiIf(${days.map((d) => `salt_day = toDate(${d.day}), ${d[mark]}`).join(', ')}, toDateTime64(0, 3, 'UTC'))`,
      days: `(${days.map((d) => `toDate(${d.day})`).join(', ')})`,
    });
    const tails: string[] = [];
    if (sides.event) {
      const e = since('w');
      tails.push(`SELECT 'e', toUInt32(salt_day), toUInt64(0), arrayMap(x -> toString(x), groupUniqArray({limit:UInt32})(visitor_id)) FROM events
         WHERE site = {site:String} AND toDate(timestamp) >= toDate(${e.from}) AND timestamp >= ${e.from} AND salt_day IN ${e.days} AND timestamp >= ${e.own}
         GROUP BY salt_day`);
    }
    if (sides.session) {
      const s = since('ws');
      // A session of salt day d starts on d or d + 1.
      const lo = bind('dmin', Math.min(...candidates.map((r) => Number(r.day))), 'UInt32');
      const hi = bind('dmax', Math.max(...candidates.map((r) => Number(r.day))), 'UInt32');
      tails.push(`SELECT 's', toUInt32(salt_day), toUInt64(0), arrayMap(x -> toString(x), groupUniqArray({limit:UInt32})(visitor_id)) FROM sessions
         WHERE site = {site:String} AND toDate(start) >= toDate(${lo}) AND toDate(start) <= toDate(${hi}) + 1
           AND timestamp >= ${s.from} AND salt_day IN ${s.days} AND timestamp >= ${s.own}
         GROUP BY salt_day`);
    }
    const parts = [...counts, ...tails];
    const sql = parts.join('\nUNION ALL\n');
    // Keyed by the statement and its values, which hold the generations checked and the sides read.
    const checks = await cachedRead(store, ['events', 'sessions'], `check\n${store.database}\n${sql}\n${JSON.stringify(params)}`, () =>
      store.query<{ kind: string; day: number | string; n: string | number; ids: string[] }>(sql, params),
    );
    const of = (kind: string, day: number) => checks.find((x) => x.kind === kind && Number(x.day) === day);
    const tail = (ids: string[] | undefined): string[] | undefined => (ids === undefined ? [] : ids.length > TAIL_IDS ? undefined : ids);
    noteOpenRows(site, Math.max(...checks.filter((x) => x.kind === 'n').map((x) => Number(x.n))), nowMs);
    for (const r of candidates) {
      const day = Number(r.day);
      if (Number(of('n', day)?.n ?? -1) !== Number(r.n)) continue;
      // A side not read is bound by a sub-query, should an answer need it after all.
      const eventTail = sides.event ? tail(of('e', day)?.ids) : undefined;
      const sessionTail = sides.session ? tail(of('s', day)?.ids) : undefined;
      provisional.set(day, {
        gen: r.gen,
        watermark: Number(r.w),
        sessionWatermark: Number(r.ws),
        zones: r.zones,
        ...(eventTail === undefined ? {} : { eventTail }),
        ...(sessionTail === undefined ? {} : { sessionTail }),
      });
    }
  }
  return { closed, zones, first: firstClosed, provisional };
}

const CANNOT_COMPILE_REGEXP = 427;

async function query(store: Store, sql: string, params: Record<string, unknown>, q: ParsedQuery): Promise<Record<string, unknown>[]> {
  try {
    return await store.query(sql, params);
  } catch (err) {
    if (err instanceof StoreError && err.code === CANNOT_COMPILE_REGEXP) throw await badRegex(store, q.filters, err);
    throw err;
  }
}

/** Each distinct pattern the query's `matches` filters compile, as ClickHouse gets it, with the first value spelling it. */
function patternsOf(filters: readonly FilterNode[]): { pattern: string; field: string }[] {
  const out = new Map<string, string>();
  for (const { leaf } of leaves(filters)) {
    if (leaf.op !== 'matches' && leaf.op !== 'matches_not') continue;
    leaf.values.forEach((v, i) => {
      const pattern = leaf.caseSensitive ? v : `(?i)${v}`;
      if (!out.has(pattern)) out.set(pattern, `${leaf.field}[2][${i}]`);
    });
  }
  return [...out].map(([pattern, field]) => ({ pattern, field }));
}

/** Whether re2, as ClickHouse's `match` uses it, compiles every one of `patterns`: one call. */
async function compiles(store: Store, patterns: readonly string[]): Promise<boolean> {
  try {
    await store.query("SELECT arrayMap(p -> match('', p), {ps:Array(String)}) AS ok", { ps: patterns });
    return true;
  } catch (err) {
    if (err instanceof StoreError && err.code === CANNOT_COMPILE_REGEXP) return false;
    throw err;
  }
}

/**
 * Index of the first of `patterns` re2 refuses, or undefined: one call when they all compile,
 * else a bisection (about 2·log2(n) more).
 */
async function firstInvalid(store: Store, patterns: readonly string[], offset = 0, known = false): Promise<number | undefined> {
  if (!known && (await compiles(store, patterns))) return undefined;
  if (patterns.length === 1) return offset;
  const half = Math.ceil(patterns.length / 2);
  const left = await firstInvalid(store, patterns.slice(0, half), offset);
  return left ?? firstInvalid(store, patterns.slice(half), offset + half, true);
}

/** Finds which `matches` value ClickHouse's re2 refuses, to name it; undefined if none. */
async function invalidRegex(store: Store, filters: readonly FilterNode[]): Promise<ApiQueryError | undefined> {
  const patterns = patternsOf(filters);
  if (patterns.length === 0) return undefined;
  const at = await firstInvalid(store, patterns.map((p) => p.pattern));
  const bad = at === undefined ? undefined : patterns[at];
  return bad === undefined ? undefined : new ApiQueryError(bad.field, 'not a valid re2 regular expression');
}

/** Refuses a query whose `matches` patterns re2 cannot compile, naming the value. */
async function checkRegexes(store: Store, filters: readonly FilterNode[]): Promise<void> {
  const err = await invalidRegex(store, filters);
  if (err !== undefined) throw err;
}

async function badRegex(store: Store, filters: readonly FilterNode[], cause: StoreError): Promise<ApiQueryError> {
  return (await invalidRegex(store, filters)) ?? new ApiQueryError('filters', `a regular expression is not valid re2: ${cause.message.slice(0, 200)}`);
}

// ---------------------------------------------------------------------------------------------
// Metrics and comparisons

function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

function computeMetrics(metrics: readonly Metric[], c: Components, shape: QueryShape, totals: Totals): MetricValue[] {
  const visitors = c[visitorsColumn(shape)];
  return metrics.map((m) => {
    switch (m) {
      case 'visitors':
      case 'visits':
      case 'pageviews':
      case 'events':
        return countMetric(m, shape, c) ?? 0;
      case 'views_per_visit':
        return c.se_visits === 0 ? 0 : round(c.se_pageviews / c.se_visits, 2);
      case 'bounce_rate':
        return c.se_bounce_visits === 0 ? 0 : Math.round((c.se_bounces / c.se_bounce_visits) * 100);
      case 'visit_duration':
        return c.se_visits === 0 ? 0 : Math.round(c.se_duration / c.se_visits);
      case 'percentage': {
        const all = totals.percentage ?? 0;
        return all > 0 ? round((visitors / all) * 100, 1) : null;
      }
      case 'conversion_rate': {
        const all = totals.conversion ?? 0;
        return all > 0 ? round((c.ev_visitors / all) * 100, 1) : 0;
      }
      case 'group_conversion_rate':
        return c.g_visitors > 0 ? round((c.ev_visitors / c.g_visitors) * 100, 1) : 0;
      case 'total_revenue':
        return round(c.ev_revenue, 2);
      case 'average_revenue':
        return c.ev_revenue_n === 0 ? null : round(c.ev_revenue / c.ev_revenue_n, 2);
    }
  });
}

/** Change from the comparison to the main value: points for rates, percent for counts (as Plausible). */
function change(metric: Metric, previous: MetricValue, current: MetricValue): MetricValue {
  if (previous === null || current === null) return null;
  if (metric === 'bounce_rate') return previous > 0 ? current - previous : null;
  if (metric === 'conversion_rate' || metric === 'group_conversion_rate' || metric === 'percentage') return round(current - previous, 1);
  if (previous === 0) return current > 0 ? 100 : 0;
  return Math.round(((current - previous) / previous) * 100);
}

/**
 * Filters that make the comparison read only the main rows' values: per non-time dimension, an
 * `is` on the values shown (time buckets are matched by position instead). Undefined when there
 * is nothing to compare.
 */
function restrictTo(dims: readonly ResolvedDimension[], rows: readonly ResultRow[]): FilterNode[] | undefined {
  const restrictions: FilterLeaf[] = [];
  for (let i = 0; i < dims.length; i++) {
    const d = dims[i];
    if (d === undefined || d.kind === 'time') continue;
    if (rows.length === 0) return undefined;
    const values = [...new Set(rows.map((r) => r.dimensions[i] ?? ''))];
    restrictions.push({ kind: 'leaf', op: 'is', dimension: d, values, caseSensitive: true, field: 'include.comparisons' });
  }
  return restrictions;
}
