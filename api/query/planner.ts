import type { EventRollupDimension, SessionRollupDimension } from '../../schemas/migrations/index.ts';
import { scopeOf, type DimensionRef, type TimeGrain } from './dimensions.ts';
import { leaves, type FilterLeaf, type FilterNode, type Metric } from './schema.ts';
import { dayBoundaries, offsetAt, type ResolvedRange } from './time.ts';

/**
 * The planner: which rows answer each metric, and whether the rollups can give them.
 *
 * Metrics are computed on two sides, then joined on the dimension values:
 * - the event side counts events in the range (`pageviews`, `events`, revenue, and `visitors`
 *   unless the query is about sessions; `visits` as distinct sessions when broken down by an
 *   event dimension);
 * - the session side counts sessions that start in the range (`visits`, `bounce_rate`,
 *   `visit_duration`, `views_per_visit`, and `visitors` when the query is about sessions: it
 *   breaks down or filters by a session dimension such as source or entry page, and by no event
 *   dimension). On this side `event:page` reads the entry page, as Plausible's page breakdown does.
 *
 * Rollups answer a query when it has at most one non-time dimension that every needed rollup
 * holds, no filter other than top-level `is` on that same dimension, every metric is in the
 * rollup, and the range falls on the rollup's buckets in the site's zone: `*_daily` (UTC days)
 * when every bucket boundary is a UTC midnight, `*_hourly` when each is a whole UTC hour (any
 * zone with whole-hour offsets; half-hour zones read raw). Both give exactly the raw numbers:
 * - sums (pageviews, events, visits, bounces, durations, revenue) from the additive rollups;
 * - unique visitors per salt day (a visitor id belongs to one salt day; see
 *   schemas/migrations/salt-days.ts): closed salt days from `salt_day_visitors`, whose hour
 *   bitmaps answer any whole-hour range exactly, ranges cutting a salt day's life included; salt
 *   days not closed yet (today's and yesterday's) from the raw rows of those salt days only.
 *   Sessions are counted in their final state, so entry and exit pages are exact even when a
 *   session's exit page or start (an out-of-order event older than its first) moves.
 */

export type ResolvedDimension = Exclude<DimensionRef, { kind: 'time' }> | { kind: 'time'; name: string; grain: TimeGrain };

/** A conversion goal: a custom event name, or pageviews of a path (`Visit /path`, `*` wildcards). */
export type Goal =
  | { readonly kind: 'event'; readonly label: string; readonly name: string }
  | { readonly kind: 'page'; readonly label: string; readonly path: string; readonly wildcard: boolean };

/**
 * The goals `event:goal` ranges over: an explicit list (the filtered goals, else the site's
 * configured ones) or, with neither, every custom event name.
 */
export type GoalSet = { readonly kind: 'implicit' } | { readonly kind: 'list'; readonly goals: readonly Goal[] };

const PAGE_GOAL_PREFIX = 'Visit ';

/** The goal a display name stands for, as Plausible names them. */
export function goalFromLabel(label: string): Goal {
  if (label.startsWith(PAGE_GOAL_PREFIX) && label.length > PAGE_GOAL_PREFIX.length) {
    const path = label.slice(PAGE_GOAL_PREFIX.length);
    return { kind: 'page', label, path, wildcard: path.includes('*') };
  }
  return { kind: 'event', label, name: label };
}

export type EventComponent = 'visitors' | 'pageviews' | 'events' | 'visits' | 'revenue';
export type SessionComponent = 'visitors' | 'visits' | 'bounces' | 'duration' | 'pageviews';

/** One grouped read: the dimensions, the filters and which sums each side must produce. */
export interface CoreQuery {
  readonly dims: readonly ResolvedDimension[];
  /** Output column of each dimension (`d0`, `d1`, …), kept when a sub-query drops some dimensions. */
  readonly aliases: readonly string[];
  /** The user's filters (top level, combined with AND). */
  readonly filters: readonly FilterNode[];
  /** Engine-added filters (a comparison restricted to the main rows); not part of totals. */
  readonly restrictions: readonly FilterNode[];
  readonly range: ResolvedRange;
  readonly tz: string;
  readonly event: ReadonlySet<EventComponent>;
  readonly session: ReadonlySet<SessionComponent>;
  /** `event:page` is a dimension: on the session side it, and filters on it, read the entry page. */
  readonly pageAsEntry: boolean;
  /** Only pageviews count on the event side (a page breakdown without name or goal filters). */
  readonly pageviewsOnly: boolean;
  readonly goals: GoalSet;
  /**
   * Top-level `event:page` filters when the page is not a dimension: bounce rate then counts only
   * visits that entered on a matching page (as Plausible does).
   */
  readonly bouncePageLeaves: readonly FilterLeaf[];
}

/** Where a side's visitors come from. */
export type Side = 'event' | 'session';

/** The shape of a whole query: its main read, and the reads its ratios divide by. */
export interface QueryShape {
  readonly main: CoreQuery;
  readonly visitorSide: Side;
  readonly visitsSide: Side;
  /** Totals for `percentage` (no dimensions, same filters, visitors on the same side). */
  readonly percentageTotal: CoreQuery | undefined;
  /** Totals for `conversion_rate` (no dimensions, goal and property filters dropped). */
  readonly conversionTotal: CoreQuery | undefined;
  /** Per-group totals for `group_conversion_rate` (goal dimension, goal and property filters dropped). */
  readonly groupTotals: CoreQuery | undefined;
}

function allLeaves(nodes: readonly FilterNode[]): FilterLeaf[] {
  return [...leaves(nodes)].map((l) => l.leaf);
}

function isGoalOrPropFilter(n: FilterNode): boolean {
  return n.kind === 'leaf' && (n.dimension.kind === 'goal' || n.dimension.kind === 'prop');
}

/** The goal set for `event:goal` given the top-level filters and the site's configured goals. */
export function goalSet(filters: readonly FilterNode[], configured: readonly string[] | undefined): GoalSet {
  let labels: string[] | undefined;
  for (const f of filters) {
    if (f.kind === 'leaf' && f.dimension.kind === 'goal') {
      const values = f.values;
      labels = labels === undefined ? [...values] : labels.filter((l) => values.includes(l));
    }
  }
  labels ??= configured === undefined ? undefined : [...configured];
  if (labels === undefined) return { kind: 'implicit' };
  return { kind: 'list', goals: [...new Set(labels)].map(goalFromLabel) };
}

interface CoreInput {
  dims: readonly ResolvedDimension[];
  aliases: readonly string[];
  filters: readonly FilterNode[];
  restrictions: readonly FilterNode[];
  range: ResolvedRange;
  tz: string;
  event: Set<EventComponent>;
  session: Set<SessionComponent>;
  configuredGoals: readonly string[] | undefined;
}

function core(input: CoreInput): CoreQuery {
  const all = [...input.filters, ...input.restrictions];
  const filterLeaves = allLeaves(all);
  const pageDim = input.dims.some((d) => d.name === 'event:page');
  const narrowsNames = filterLeaves.some((l) => l.dimension.kind === 'goal' || l.dimension.name === 'event:name');
  const bouncePageLeaves =
    !pageDim && input.session.has('bounces')
      ? all.filter((f): f is FilterLeaf => f.kind === 'leaf' && f.dimension.name === 'event:page')
      : [];
  return {
    dims: input.dims,
    aliases: input.aliases,
    filters: input.filters,
    restrictions: input.restrictions,
    range: input.range,
    tz: input.tz,
    event: input.event,
    session: input.session,
    pageAsEntry: pageDim,
    pageviewsOnly: pageDim && !narrowsNames,
    goals: goalSet(all, input.configuredGoals),
    bouncePageLeaves,
  };
}

export interface ShapeInput {
  metrics: readonly Metric[];
  dims: readonly ResolvedDimension[];
  filters: readonly FilterNode[];
  restrictions?: readonly FilterNode[];
  range: ResolvedRange;
  tz: string;
  configuredGoals: readonly string[] | undefined;
}

/** Decides which side computes each metric and which totals the ratios need. */
export function shapeQuery(input: ShapeInput): QueryShape {
  const restrictions = input.restrictions ?? [];
  const filterLeaves = allLeaves([...input.filters, ...restrictions]);
  const scopes = [...input.dims.map(scopeOf), ...filterLeaves.map((l) => scopeOf(l.dimension))];
  const visitorSide: Side = scopes.includes('session') && !scopes.includes('event') ? 'session' : 'event';
  const visitsSide: Side = input.dims.some((d) => scopeOf(d) === 'event' && d.name !== 'event:page') ? 'event' : 'session';

  const event = new Set<EventComponent>();
  const session = new Set<SessionComponent>();
  const addVisitors = (side: Side): void => {
    if (side === 'event') event.add('visitors');
    else session.add('visitors');
  };
  for (const m of input.metrics) {
    switch (m) {
      case 'visitors':
      case 'percentage':
        addVisitors(visitorSide);
        break;
      case 'conversion_rate':
      case 'group_conversion_rate':
        event.add('visitors');
        break;
      case 'visits':
        if (visitsSide === 'event') event.add('visits');
        else session.add('visits');
        break;
      case 'pageviews':
        event.add('pageviews');
        break;
      case 'events':
        event.add('events');
        break;
      case 'views_per_visit':
        session.add('visits').add('pageviews');
        break;
      case 'bounce_rate':
        session.add('visits').add('bounces');
        break;
      case 'visit_duration':
        session.add('visits').add('duration');
        break;
      case 'total_revenue':
      case 'average_revenue':
        event.add('revenue');
        break;
    }
  }

  const aliases = input.dims.map((_, i) => `d${i}`);
  const base = { range: input.range, tz: input.tz, configuredGoals: input.configuredGoals };
  const main = core({ ...base, dims: input.dims, aliases, filters: input.filters, restrictions, event, session });

  const percentageTotal = input.metrics.includes('percentage')
    ? core({
        ...base,
        dims: [],
        aliases: [],
        filters: input.filters,
        restrictions: [],
        event: new Set(visitorSide === 'event' ? ['visitors'] : []),
        session: new Set(visitorSide === 'session' ? ['visitors'] : []),
      })
    : undefined;
  const withoutGoals = input.filters.filter((f) => !isGoalOrPropFilter(f));
  const conversionTotal = input.metrics.includes('conversion_rate')
    ? core({ ...base, dims: [], aliases: [], filters: withoutGoals, restrictions: [], event: new Set(['visitors']), session: new Set() })
    : undefined;
  let groupTotals: CoreQuery | undefined;
  if (input.metrics.includes('group_conversion_rate')) {
    const kept = input.dims.map((d, i) => ({ d, alias: aliases[i] ?? `d${i}` })).filter((x) => x.d.kind !== 'goal');
    groupTotals = core({
      ...base,
      dims: kept.map((x) => x.d),
      aliases: kept.map((x) => x.alias),
      filters: withoutGoals,
      restrictions: [],
      event: new Set(['visitors']),
      session: new Set(),
    });
  }
  return { main, visitorSide, visitsSide, percentageTotal, conversionTotal, groupTotals };
}

export type Source = 'rollup_daily' | 'rollup_hourly' | 'raw';

export interface SourceDecision {
  readonly source: Source;
  /** Why the rollups could not answer (raw only). */
  readonly reason?: string;
}

const HOUR = 3_600_000;
const DAY = 86_400_000;

/** The event rollup dimension holding `d`'s values, if any. */
export function eventRollupOf(d: ResolvedDimension, goals: GoalSet): EventRollupDimension | 'goal' | undefined {
  if (d.kind === 'column') return d.def.eventRollup;
  if (d.kind === 'goal') {
    if (goals.kind === 'implicit') return 'goal';
    return goals.goals.every((g) => g.kind === 'event' || !g.wildcard) ? 'goal' : undefined;
  }
  return undefined;
}

/** The session rollup dimension holding `d`'s values on the session side, if any. */
export function sessionRollupOf(d: ResolvedDimension): SessionRollupDimension | undefined {
  return d.kind === 'column' ? d.def.sessionRollup : undefined;
}

/** Whether the rollups can answer `q`, and at which grain. */
export function chooseSource(q: CoreQuery, forceRaw: boolean): SourceDecision {
  const raw = (reason: string): SourceDecision => ({ source: 'raw', reason });
  if (forceRaw) return raw('raw requested');
  const nonTime = q.dims.filter((d) => d.kind !== 'time');
  if (nonTime.length > 1) return raw('more than one non-time dimension');
  const dim = nonTime[0];
  for (const f of [...q.filters, ...q.restrictions]) {
    if (f.kind !== 'leaf') return raw('filters combined with and/or/not');
    if (dim === undefined || f.dimension.name !== dim.name) return raw(`filter on ${f.dimension.name}, which is not the breakdown dimension`);
    if (f.op !== 'is' || !f.caseSensitive) return raw(`"${f.op}" filter (rollups answer case-sensitive "is" only)`);
  }
  if (q.event.size > 0) {
    if (q.event.has('visits')) return raw('visits counted from events');
    if (dim !== undefined && eventRollupOf(dim, q.goals) === undefined) return raw(`no event rollup by ${dim.name}`);
  }
  if (q.session.size > 0 && dim !== undefined) {
    const rollupDim = sessionRollupOf(dim);
    if (rollupDim === undefined) return raw(`no session rollup by ${dim.name}`);
  }
  const time = q.dims.find((d): d is Extract<ResolvedDimension, { kind: 'time' }> => d.kind === 'time');
  const grain = rollupGrain(q.range, q.tz, time?.grain);
  if (grain === undefined) return raw('date range does not fall on rollup buckets in the site time zone');
  return { source: grain === 'day' ? 'rollup_daily' : 'rollup_hourly' };
}

/**
 * The rollup grain whose buckets tile `range` and the requested time buckets: daily buckets are
 * UTC days, so every boundary must be a UTC midnight; hourly buckets are UTC hours, so every
 * boundary must be a whole UTC hour (and for hourly labels, the zone's offset whole hours).
 */
export function rollupGrain(range: ResolvedRange, tz: string, timeGrain: TimeGrain | undefined): 'day' | 'hour' | undefined {
  const bounds = timeGrain === undefined ? [range.start, range.end] : dayBoundaries(range, tz);
  if (timeGrain !== 'hour' && bounds.every((t) => t % DAY === 0)) return 'day';
  if (!bounds.every((t) => t % HOUR === 0)) return undefined;
  if (timeGrain === 'hour' && !bounds.every((t) => offsetAt(tz, t) % HOUR === 0)) return undefined;
  return 'hour';
}
