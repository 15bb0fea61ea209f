import { z } from 'zod';
import { parseDimension, scopeOf, type DimensionRef } from './dimensions.ts';
import { fieldName, firstIssue } from '../../schemas/issues.ts';
import { ApiQueryError } from './errors.ts';
import { comparisonModes, dateRangeShortcuts, type ComparisonMode, type DateRangeShortcut } from './time.ts';

/**
 * The body of `POST /api/v2/query` (Plausible's Stats API v2 shape) and the checks on how its
 * parts combine. `parseQuery` turns an unknown body into a {@link ParsedQuery} or throws an
 * {@link ApiQueryError} naming the field at fault (`metrics[1]`, `filters[0][2][0]`, …).
 */

export const metricNames = [
  'visitors',
  'visits',
  'pageviews',
  'views_per_visit',
  'bounce_rate',
  'visit_duration',
  'events',
  'conversion_rate',
  'group_conversion_rate',
  'percentage',
  'total_revenue',
  'average_revenue',
] as const;
export type Metric = (typeof metricNames)[number];

/** Metrics computed over sessions only; Plausible refuses them with event dimensions other than `event:page`. */
export const sessionOnlyMetrics: ReadonlySet<Metric> = new Set(['bounce_rate', 'visit_duration', 'views_per_visit']);

export const filterOperators = ['is', 'is_not', 'contains', 'contains_not', 'matches', 'matches_not'] as const;
export type FilterOperator = (typeof filterOperators)[number];

/** Limits on a query's size, so one request cannot build an unbounded statement. */
export const limits = {
  metrics: 20,
  dimensions: 6,
  filters: 50,
  filterDepth: 8,
  filterLeaves: 100,
  clauses: 100,
  clauseLength: 2000,
  /**
   * Filter values in all, any operator. `contains` and `matches` spell out one condition per
   * value (ClickHouse refuses statements over 256 KiB), and every pattern is compiled.
   */
  values: 500,
  /** Characters of all filter values together. */
  valueChars: 65_536,
  /** `matches`/`matches_not` patterns in all, and the length of one. */
  patterns: 100,
  patternLength: 1000,
  orderBy: 20,
  maxLimit: 10_000,
  maxOffset: 1_000_000,
} as const;

const dateText = z.string().max(40);

export const queryBodySchema = z.strictObject({
  site_id: z.string().min(1).max(253),
  metrics: z
    .array(z.enum(metricNames, { error: `must be one of ${metricNames.join(', ')}` }))
    .min(1)
    .max(limits.metrics),
  date_range: z.union([z.enum(dateRangeShortcuts), z.tuple([dateText, dateText])], {
    error: `must be one of ${dateRangeShortcuts.join(', ')} or [from, to] ISO 8601 dates or date-times`,
  }),
  dimensions: z.array(z.string().max(400)).max(limits.dimensions).optional(),
  // Parsed by hand below: a recursive tuple grammar whose errors must point at the exact element.
  filters: z.array(z.unknown()).max(limits.filters).optional(),
  order_by: z
    .array(z.tuple([z.string().max(400), z.enum(['asc', 'desc'])]))
    .max(limits.orderBy)
    .optional(),
  include: z
    .strictObject({
      time_labels: z.boolean().optional(),
      total_rows: z.boolean().optional(),
      imports: z.boolean().optional(),
      comparisons: z
        .strictObject({
          mode: z.enum(comparisonModes),
          date_range: z.tuple([dateText, dateText]).optional(),
          match_day_of_week: z.boolean().optional(),
        })
        .optional(),
    })
    .optional(),
  pagination: z
    .strictObject({
      limit: z.number().int().min(1).max(limits.maxLimit).optional(),
      offset: z.number().int().min(0).max(limits.maxOffset).optional(),
    })
    .optional(),
});

/** One condition on one dimension. */
export interface FilterLeaf {
  readonly kind: 'leaf';
  readonly op: FilterOperator;
  readonly dimension: DimensionRef;
  readonly values: readonly string[];
  readonly caseSensitive: boolean;
  /** Where it sits in the body, for errors. */
  readonly field: string;
  /** Added by the engine (comparison rows); left out of the totals percentages divide by. */
  readonly ignoreInTotals?: boolean;
}

export type FilterNode =
  | FilterLeaf
  | { readonly kind: 'and' | 'or'; readonly children: readonly FilterNode[] }
  | { readonly kind: 'not'; readonly child: FilterNode };

export interface OrderByEntry {
  /** A metric or a dimension name as in the query. */
  readonly key: string;
  readonly direction: 'asc' | 'desc';
}

export interface ComparisonRequest {
  readonly mode: ComparisonMode;
  readonly dateRange: readonly [string, string] | undefined;
  readonly matchDayOfWeek: boolean;
}

/** A validated query. Dimension `time` is still `auto` here: its grain depends on the range. */
export interface ParsedQuery {
  readonly siteId: string;
  readonly metrics: readonly Metric[];
  readonly dateRange: DateRangeShortcut | readonly [string, string];
  readonly dimensions: readonly DimensionRef[];
  /** Top-level filters, combined with AND. */
  readonly filters: readonly FilterNode[];
  readonly orderBy: readonly OrderByEntry[] | undefined;
  readonly include: {
    readonly timeLabels: boolean;
    readonly totalRows: boolean;
    readonly imports: boolean;
    readonly comparisons: ComparisonRequest | undefined;
  };
  readonly pagination: { readonly limit: number; readonly offset: number };
  /** The filters as sent (already validated), echoed in the response. */
  readonly rawFilters: readonly unknown[];
}

function fail(path: readonly PropertyKey[], message: string): never {
  throw new ApiQueryError(fieldName(path), message);
}

/** Validates a query body; throws {@link ApiQueryError} naming the field at fault. */
export function parseQuery(body: unknown): ParsedQuery {
  const result = queryBodySchema.safeParse(body);
  if (!result.success) {
    const { field, message } = firstIssue(result.error);
    throw new ApiQueryError(field, message);
  }
  const q = result.data;

  const metrics = q.metrics;
  metrics.forEach((m, i) => {
    if (metrics.indexOf(m) !== i) fail(['metrics', i], `metric ${m} is listed twice`);
  });

  const dimensionNames = q.dimensions ?? [];
  const dimensions = dimensionNames.map((name, i) => {
    if (dimensionNames.indexOf(name) !== i) fail(['dimensions', i], `dimension ${name} is listed twice`);
    const d = parseDimension(name);
    if (d === undefined) fail(['dimensions', i], `unknown dimension "${name}"`);
    return d;
  });
  if (dimensions.filter((d) => d.kind === 'time').length > 1) {
    fail(['dimensions'], 'at most one time dimension may be used');
  }

  const rawFilters = q.filters ?? [];
  const counter: Counter = { leaves: 0, values: 0, valueChars: 0, patterns: 0 };
  const filters = rawFilters.map((f, i) => parseFilter(f, ['filters', i], 0, counter));

  const orderBy = q.order_by?.map(([key, direction], i) => {
    if (!(metrics as readonly string[]).includes(key) && !dimensionNames.includes(key)) {
      fail(['order_by', i, 0], `order_by entry "${key}" is not a queried metric or dimension`);
    }
    return { key, direction };
  });

  const include = {
    timeLabels: q.include?.time_labels ?? false,
    totalRows: q.include?.total_rows ?? false,
    imports: q.include?.imports ?? false,
    comparisons:
      q.include?.comparisons === undefined
        ? undefined
        : {
            mode: q.include.comparisons.mode,
            dateRange: q.include.comparisons.date_range,
            matchDayOfWeek: q.include.comparisons.match_day_of_week ?? false,
          },
  };
  if (include.comparisons !== undefined) {
    const c = include.comparisons;
    if (c.mode === 'custom' && c.dateRange === undefined) {
      fail(['include', 'comparisons', 'date_range'], 'a custom comparison needs a date_range');
    }
    if (c.mode !== 'custom' && c.dateRange !== undefined) {
      fail(['include', 'comparisons', 'date_range'], 'date_range is only allowed with mode "custom"');
    }
  }

  const parsed: ParsedQuery = {
    siteId: q.site_id,
    metrics,
    dateRange: q.date_range,
    dimensions,
    filters,
    orderBy,
    include,
    pagination: { limit: q.pagination?.limit ?? limits.maxLimit, offset: q.pagination?.offset ?? 0 },
    rawFilters,
  };
  validateCombinations(parsed);
  return parsed;
}

/** What the filters parsed so far hold, against the per-query {@link limits}. */
interface Counter {
  leaves: number;
  values: number;
  valueChars: number;
  patterns: number;
}

function parseFilter(raw: unknown, path: PropertyKey[], depth: number, counter: Counter): FilterNode {
  if (depth > limits.filterDepth) fail(path, `filters may nest at most ${limits.filterDepth} levels`);
  if (!Array.isArray(raw) || raw.length < 2) fail(path, 'a filter is [operator, dimension, values] or [and|or, [filters]] or [not, filter]');
  const op: unknown = raw[0];
  if (op === 'and' || op === 'or') {
    const children: unknown = raw[1];
    if (raw.length !== 2 || !Array.isArray(children) || children.length === 0) {
      fail(path, `"${op}" takes one non-empty list of filters`);
    }
    if (children.length > limits.filters) fail([...path, 1], `at most ${limits.filters} filters per group`);
    return { kind: op, children: children.map((c, i) => parseFilter(c, [...path, 1, i], depth + 1, counter)) };
  }
  if (op === 'not') {
    if (raw.length !== 2) fail(path, '"not" takes one filter');
    return { kind: 'not', child: parseFilter(raw[1], [...path, 1], depth + 1, counter) };
  }
  if (typeof op !== 'string' || !(filterOperators as readonly string[]).includes(op)) {
    fail([...path, 0], `unknown filter operator; use one of ${filterOperators.join(', ')}, and, or, not`);
  }
  const operator = op as FilterOperator;
  if (raw.length !== 3 && raw.length !== 4) fail(path, 'a filter is [operator, dimension, values, {case_sensitive}?]');
  counter.leaves++;
  if (counter.leaves > limits.filterLeaves) fail(path, `at most ${limits.filterLeaves} conditions per query`);

  const name: unknown = raw[1];
  if (typeof name !== 'string' || name.length > 400) fail([...path, 1], 'filter dimension must be a dimension name');
  const dimension = parseDimension(name);
  if (dimension === undefined) fail([...path, 1], `unknown dimension "${name}"`);
  if (dimension.kind === 'time') fail([...path, 1], 'time dimensions cannot be filtered; set date_range instead');

  const clauses: unknown = raw[2];
  if (!Array.isArray(clauses) || clauses.length === 0) fail([...path, 2], 'filter values must be a non-empty list');
  if (clauses.length > limits.clauses) fail([...path, 2], `at most ${limits.clauses} values per filter`);
  const pattern = operator === 'matches' || operator === 'matches_not';
  counter.values += clauses.length;
  if (counter.values > limits.values) fail([...path, 2], `at most ${limits.values} filter values per query`);
  if (pattern) {
    counter.patterns += clauses.length;
    if (counter.patterns > limits.patterns) fail([...path, 2], `at most ${limits.patterns} regular expressions per query`);
  }
  const values = clauses.map((v: unknown, i) => {
    if (typeof v === 'number' && Number.isSafeInteger(v)) return String(v);
    if (typeof v !== 'string') fail([...path, 2, i], 'filter values must be strings or integers');
    if (v.length > limits.clauseLength) fail([...path, 2, i], `filter values are at most ${limits.clauseLength} characters`);
    if (pattern && v.length > limits.patternLength) fail([...path, 2, i], `regular expressions are at most ${limits.patternLength} characters`);
    counter.valueChars += v.length;
    if (counter.valueChars > limits.valueChars) fail([...path, 2, i], `filter values may hold at most ${limits.valueChars} characters in all`);
    return v;
  });

  let caseSensitive = true;
  if (raw.length === 4) {
    const modifiers: unknown = raw[3];
    if (typeof modifiers !== 'object' || modifiers === null || Array.isArray(modifiers)) {
      fail([...path, 3], 'filter options must be an object like {"case_sensitive": false}');
    }
    for (const [key, value] of Object.entries(modifiers)) {
      if (key !== 'case_sensitive') fail([...path, 3, key], `unknown filter option ${key}`);
      if (typeof value !== 'boolean') fail([...path, 3, key], 'case_sensitive must be true or false');
      caseSensitive = value;
    }
  }

  if (dimension.kind === 'goal') {
    if (operator !== 'is') fail([...path, 0], 'event:goal can only be filtered with "is"');
    if (depth > 0) fail(path, 'event:goal can only be filtered at the top level');
  }
  if (dimension.kind === 'column' && dimension.name === 'visit:country' && (operator === 'is' || operator === 'is_not')) {
    values.forEach((v, i) => {
      if (!/^[A-Za-z]{2}$/.test(v) && v !== '') fail([...path, 2, i], 'visit:country values are 2-letter country codes');
    });
  }
  return { kind: 'leaf', op: operator, dimension, values, caseSensitive, field: fieldName(path) };
}

/** Every leaf of a filter tree, with its depth (0 = top level). */
export function* leaves(nodes: readonly FilterNode[], depth = 0): Generator<{ leaf: FilterLeaf; depth: number }> {
  for (const n of nodes) {
    if (n.kind === 'leaf') yield { leaf: n, depth };
    else if (n.kind === 'not') yield* leaves([n.child], depth + 1);
    else yield* leaves(n.children, depth + 1);
  }
}

/** Plausible's rules on which metrics, dimensions and filters go together. */
function validateCombinations(q: ParsedQuery): void {
  const goalDimension = q.dimensions.some((d) => d.kind === 'goal');
  const goalFilter = q.filters.some((f) => f.kind === 'leaf' && f.dimension.kind === 'goal');
  const eventDimensions = q.dimensions.filter((d) => scopeOf(d) === 'event' && d.name !== 'event:page');
  const allLeaves = [...leaves(q.filters)];
  q.metrics.forEach((m, i) => {
    if ((m === 'conversion_rate' || m === 'group_conversion_rate') && !goalDimension && !goalFilter) {
      fail(['metrics', i], `metric ${m} needs an event:goal dimension or an event:goal filter`);
    }
    if ((m === 'conversion_rate' || m === 'group_conversion_rate') && allLeaves.some((l) => l.depth > 0 && l.leaf.dimension.kind === 'prop')) {
      fail(['metrics', i], `with ${m}, custom property filters can only be used at the top level`);
    }
    if (m === 'percentage' && q.dimensions.length === 0) fail(['metrics', i], 'metric percentage needs at least one dimension');
    if (sessionOnlyMetrics.has(m) && eventDimensions.length > 0) {
      fail(['metrics', i], `session metric ${m} cannot be queried with event dimension ${eventDimensions[0]?.name ?? ''}`);
    }
    if (m === 'views_per_visit' && allLeaves.some((l) => l.leaf.dimension.name === 'event:page')) {
      fail(['metrics', i], 'metric views_per_visit cannot be queried with a filter on event:page');
    }
  });
  if (q.include.timeLabels && !q.dimensions.some((d) => d.kind === 'time')) {
    fail(['include', 'time_labels'], 'time_labels needs a time dimension');
  }
}
