import type { ColumnDimension, SessionColumn, TimeGrain } from './dimensions.ts';
import {
  eventRollupOf,
  goalFromLabel,
  sessionRollupOf,
  type CoreQuery,
  type EventComponent,
  type Goal,
  type GoalSet,
  type ResolvedDimension,
  type SessionComponent,
  type Source,
} from './planner.ts';
import { leaves, type FilterLeaf, type FilterNode, type FilterOperator } from './schema.ts';
import { visitColumnsOnEvents } from '../../schemas/migrations/index.ts';
import { addDays, daysBetween, localDate, startOfMonth, startOfWeek, type IsoDate } from './time.ts';

/**
 * SQL for a {@link CoreQuery}, on the raw tables or the rollups. Identifiers come from the fixed
 * dimension table and from this file; every value a request carries (site, time zone, dates,
 * property keys, filter values, goal names) is a bound `{pN:Type}` parameter.
 *
 * Each side (events, sessions) is one grouped SELECT producing the dimension columns `d0…` and
 * the component sums below (zeros for what it does not compute); the sides are joined with
 * UNION ALL and summed per dimension tuple, so a side with no row for a tuple contributes zeros.
 */

/** Component sums every core SELECT returns, in this order. */
export const componentColumns = [
  'ev_visitors',
  'ev_pageviews',
  'ev_events',
  'ev_visits',
  'ev_revenue',
  'ev_revenue_n',
  'se_visitors',
  'se_visits',
  'se_bounces',
  'se_bounce_visits',
  'se_duration',
  'se_pageviews',
] as const;
export type ComponentColumn = (typeof componentColumns)[number];

type ParamType =
  | 'String'
  | 'Array(String)'
  | 'Date'
  | 'Array(Date)'
  | "DateTime64(3, 'UTC')"
  | 'UInt32'
  | 'Int64'
  | 'Array(Int64)'
  | 'Array(UInt64)'
  | 'Array(UInt32)'
  | 'Array(UInt8)';

/** Collects bound parameters and the tables a statement reads. */
export class SqlBuilder {
  readonly params: Record<string, unknown> = {};
  readonly tables = new Set<string>();
  /**
   * Whether event rows' copies of their session's visit attributes (`session_source`, …) are read
   * instead of joining the session: off only in the reference formulation, the oracle.
   */
  visitOnEvents = true;
  /**
   * Whether filters on a labelled column test its two cases apart ({@link labelledCondition})
   * instead of the labelled expression: off only in the reference formulation, the oracle.
   */
  splitLabels = true;
  private next = 0;

  /** A placeholder for `value`, bound as `type`. */
  bind(type: ParamType, value: unknown): string {
    const name = `p${this.next++}`;
    this.params[name] = value;
    return `{${name}:${type}}`;
  }
}

const zero = (c: ComponentColumn): string => (c === 'ev_revenue' ? `toFloat64(0) AS ${c}` : `toInt64(0) AS ${c}`);

function selectComponents(computed: Partial<Record<ComponentColumn, string>>): string[] {
  return componentColumns.map((c) => {
    const expr = computed[c];
    return expr === undefined ? zero(c) : `${expr} AS ${c}`;
  });
}

/** Range bounds for a side. */
interface Bounds {
  site: string;
  t0: string;
  t1: string;
}

function rangeBounds(b: SqlBuilder, q: CoreQuery, site: string): Bounds {
  return {
    site: b.bind('String', site),
    t0: b.bind("DateTime64(3, 'UTC')", new Date(q.range.start)),
    t1: b.bind("DateTime64(3, 'UTC')", new Date(q.range.end)),
  };
}

// ---------------------------------------------------------------------------------------------
// Expressions

function labelled(b: SqlBuilder, expr: string, def: ColumnDimension): string {
  return def.emptyLabel === undefined ? expr : `if(empty(${expr}), ${b.bind('String', def.emptyLabel)}, ${expr})`;
}

function propExpr(b: SqlBuilder, key: string): string {
  const k = b.bind('String', key);
  return `if(mapContains(e.props, ${k}), e.props[${k}], '(none)')`;
}

const variationsExpr = "arrayMap((i, v) -> concat(i, ':', v), e.exp_ids, e.exp_variants)";

/** Converts a page goal's glob (`/blog/**`, `/user/*`) into an anchored re2 pattern. */
export function globToRegex(glob: string): string {
  let out = '^';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i] as string;
    if (c === '*') {
      if (glob[i + 1] === '*') {
        out += '.*';
        i++;
      } else out += '[^/]*';
    } else out += /[\\^$.|?+()[\]{}]/.test(c) ? `\\${c}` : c;
  }
  return `${out}$`;
}

function goalCondition(b: SqlBuilder, g: Goal): string {
  if (g.kind === 'event') return `e.name = ${b.bind('String', g.name)}`;
  if (g.wildcard) return `(e.name = 'pageview' AND match(e.pathname, ${b.bind('String', globToRegex(g.path))}))`;
  return `(e.name = 'pageview' AND e.pathname = ${b.bind('String', g.path)})`;
}

function goalDimension(b: SqlBuilder, goals: GoalSet): string {
  if (goals.kind === 'implicit') return "arrayJoin(if(e.name != 'pageview', [CAST(e.name AS String)], emptyArrayString()))";
  if (goals.goals.length === 0) return 'arrayJoin(emptyArrayString())';
  const labels = goals.goals.map((g) => `if(${goalCondition(b, g)}, ${b.bind('String', g.label)}, '')`);
  return `arrayJoin(arrayFilter(x -> x != '', [${labels.join(', ')}]))`;
}

function timeExpr(b: SqlBuilder, q: CoreQuery, grain: TimeGrain, ts: string): string {
  const tz = b.bind('String', q.tz);
  const local = `toDate(toTimeZone(${ts}, ${tz}))`;
  switch (grain) {
    case 'hour':
      return `formatDateTime(toStartOfHour(toTimeZone(${ts}, ${tz})), '%Y-%m-%d %H:%i:%S')`;
    case 'day':
      return `toString(${local})`;
    case 'week':
      return `toString(greatest(toMonday(${local}), ${b.bind('Date', q.range.firstDate)}))`;
    case 'month':
      return `toString(toStartOfMonth(${local}))`;
  }
}

function dailyTimeExpr(b: SqlBuilder, q: CoreQuery, grain: TimeGrain): string {
  switch (grain) {
    case 'day':
      return 'toString(bucket)';
    case 'week':
      return `toString(greatest(toMonday(bucket), ${b.bind('Date', q.range.firstDate)}))`;
    case 'month':
      return 'toString(toStartOfMonth(bucket))';
    case 'hour':
      throw new Error('daily rollups have no hours');
  }
}

/** The column a session-side dimension reads (`event:page` reads the entry page). */
function sessionColumnOf(d: ResolvedDimension): SessionColumn {
  if (d.kind !== 'column' || d.def.sessionColumn === undefined) throw new Error(`${d.name} has no session column`);
  return d.def.sessionColumn;
}

/** Session columns every event row also holds as `session_<column>` (migration 14). */
const visitColumns: ReadonlySet<string> = new Set(visitColumnsOnEvents.map(([c]) => c));

/** Whether a session-scoped dimension is read from the event row's copy, not the joined session. */
function onEventRow(b: SqlBuilder, def: ColumnDimension): boolean {
  return b.visitOnEvents && def.scope === 'session' && def.sessionColumn !== undefined && visitColumns.has(def.sessionColumn);
}

/** A column dimension on an event row (`e`), with the session's attributes joined as `s`. */
function eventColumn(b: SqlBuilder, def: ColumnDimension): string {
  if (def.scope !== 'session') return `e.${def.eventColumn ?? ''}`;
  const column = def.sessionColumn ?? '';
  return onEventRow(b, def) ? `e.session_${column}` : `s.s_${column}`;
}

/** A dimension's value on an event row (`e`), with the session's attributes joined as `s`. */
function eventDimension(b: SqlBuilder, q: CoreQuery, d: ResolvedDimension): string {
  switch (d.kind) {
    case 'column':
      return labelled(b, eventColumn(b, d.def), d.def);
    case 'prop':
      return propExpr(b, d.key);
    case 'goal':
      return goalDimension(b, q.goals);
    case 'variation':
      return `arrayJoin(${variationsExpr})`;
    case 'time':
      return timeExpr(b, q, d.grain, 'e.timestamp');
  }
}

/** A dimension's value on a collapsed session row (`s`). */
/** A dimension of the session side, read from collapsed sessions (`s.s_…`) or from state rows (`from` = ''). */
function sessionDimension(b: SqlBuilder, q: CoreQuery, d: ResolvedDimension, from = 's.s_'): string {
  if (d.kind === 'time') return timeExpr(b, q, d.grain, `${from}start`);
  if (d.kind !== 'column') throw new Error(`${d.name} is not a session dimension`);
  return labelled(b, `${from}${sessionColumnOf(d)}`, d.def);
}

// ---------------------------------------------------------------------------------------------
// Filters

/** `leaf` applied to a scalar string expression. */
function scalarCondition(b: SqlBuilder, x: string, leaf: FilterLeaf): string {
  const positive = positiveCondition(b, x, leaf);
  return leaf.op.endsWith('_not') ? `NOT (${positive})` : `(${positive})`;
}

/** What `leaf` tests of `x`, as if its operator were not negated. */
function positiveCondition(b: SqlBuilder, x: string, leaf: FilterLeaf): string {
  if (leaf.op === 'is' || leaf.op === 'is_not') {
    return leaf.caseSensitive
      ? `${x} IN ${b.bind('Array(String)', leaf.values)}`
      : `has(arrayMap(v -> lowerUTF8(v), ${b.bind('Array(String)', leaf.values)}), lowerUTF8(${x}))`;
  }
  if (leaf.op === 'contains' || leaf.op === 'contains_not') {
    const fn = leaf.caseSensitive ? 'position' : 'positionCaseInsensitiveUTF8';
    return leaf.values.map((v) => `${fn}(${x}, ${b.bind('String', v)}) > 0`).join(' OR ');
  }
  return leaf.values.map((v) => `match(${x}, ${b.bind('String', leaf.caseSensitive ? v : `(?i)${v}`)})`).join(' OR ');
}

/**
 * `leaf` applied to a column whose empty value reads as the dimension's label ("Direct / None"),
 * without computing `if(empty(column), label, column)` for every row (at 10M events that
 * expression cost a filter on the visit's source ~120 of its ~480 ms): the condition is split into
 * the column's non-empty case and its empty case, where it is applied to the label, a constant.
 * A case-sensitive `is` list becomes the column's own `IN` (minus '', which no labelled value
 * is), with `empty(column)` added when the list holds the label; ClickHouse can move that to
 * PREWHERE.
 */
function labelledCondition(b: SqlBuilder, x: string, def: ColumnDimension, leaf: FilterLeaf): string {
  const label = def.emptyLabel;
  if (label === undefined || label === '' || !b.splitLabels) return scalarCondition(b, labelled(b, x, def), leaf);
  let positive: string;
  if ((leaf.op === 'is' || leaf.op === 'is_not') && leaf.caseSensitive) {
    const values = leaf.values.filter((v) => v !== '');
    const cases = values.length === 0 ? [] : [`${x} IN ${b.bind('Array(String)', values)}`];
    if (leaf.values.includes(label)) cases.push(`empty(${x})`);
    positive = cases.length === 0 ? '0' : cases.join(' OR ');
  } else {
    const onLabel = positiveCondition(b, b.bind('String', label), leaf);
    positive = `(notEmpty(${x}) AND (${positiveCondition(b, x, leaf)})) OR (empty(${x}) AND (${onLabel}))`;
  }
  return leaf.op.endsWith('_not') ? `NOT (${positive})` : `(${positive})`;
}

/** A leaf on an event row. Session-scoped dimensions read the joined session (`s`). */
function eventLeaf(b: SqlBuilder, q: CoreQuery, leaf: FilterLeaf): string {
  const d = leaf.dimension;
  switch (d.kind) {
    case 'goal': {
      const goals = leaf.values.map((label) => goalCondition(b, goalFromLabel(label)));
      return `(${goals.join(' OR ')})`;
    }
    case 'variation': {
      // An event may carry several exposures: "is not X" means none of them is X.
      const positiveOp = leaf.op.replace(/_not$/, '') as FilterOperator;
      const exists = `arrayExists(x -> ${scalarCondition(b, 'x', { ...leaf, op: positiveOp })}, ${variationsExpr})`;
      return positiveOp === leaf.op ? exists : `NOT ${exists}`;
    }
    case 'prop':
      return scalarCondition(b, propExpr(b, d.key), leaf);
    case 'column':
      return labelledCondition(b, eventColumn(b, d.def), d.def, leaf);
    case 'time':
      throw new Error('time dimensions cannot be filtered');
  }
}

/**
 * A leaf on a session: event dimensions become "had such an event in the range". `at` says what
 * it reads: a collapsed session (`s`, its latest state), or one raw state row of `sessions` (see
 * {@link sessionSideRaw} for why a condition on each state row is exact).
 */
function sessionLeaf(b: SqlBuilder, q: CoreQuery, bounds: Bounds, leaf: FilterLeaf, at: 'collapsed' | 'row'): string {
  const d = leaf.dimension;
  const prefix = at === 'collapsed' ? 's.s_' : '';
  if (d.kind === 'column' && (d.def.scope !== 'event' || (q.pageAsEntry && d.name === 'event:page'))) {
    return labelledCondition(b, `${prefix}${sessionColumnOf(d)}`, d.def, leaf);
  }
  const inner = eventLeaf(b, q, leaf);
  const id = at === 'collapsed' ? 's.session_id' : 'session_id';
  return `${id} IN (SELECT session_id FROM events AS e WHERE e.site = ${bounds.site} AND ${eventDays(bounds)} AND e.timestamp >= ${bounds.t0} AND e.timestamp < ${bounds.t1} AND ${inner})`;
}

/**
 * The range on the sort key's day column (`events` and `sessions` are ordered by site, then
 * `toDate(…)`): ClickHouse does not derive it from the timestamp bounds, and without it a short
 * range reads most granules of a merged part.
 */
function eventDays(bounds: Bounds): string {
  return `toDate(e.timestamp) >= toDate(${bounds.t0}) AND toDate(e.timestamp) <= toDate(${bounds.t1})`;
}

function compile(node: FilterNode, leaf: (l: FilterLeaf) => string): string {
  switch (node.kind) {
    case 'leaf':
      return leaf(node);
    case 'not':
      return `NOT (${compile(node.child, leaf)})`;
    case 'and':
    case 'or':
      return `(${node.children.map((c) => compile(c, leaf)).join(node.kind === 'and' ? ' AND ' : ' OR ')})`;
  }
}

/** Whether a filter reads a session-scoped dimension, which the event side takes from the joined session. */
/** Whether a leaf reads the joined session on the event side. */
function joinedLeaf(b: SqlBuilder, leaf: FilterLeaf): boolean {
  const d = leaf.dimension;
  return d.kind === 'column' && d.def.scope === 'session' && !onEventRow(b, d.def);
}

function readsJoinedSession(b: SqlBuilder, node: FilterNode): boolean {
  return [...leaves([node])].some(({ leaf }) => joinedLeaf(b, leaf));
}

function allFilters(q: CoreQuery): FilterNode[] {
  return [...q.filters, ...q.restrictions];
}

/** Whether every leaf of a filter reads a session-scoped dimension: the event row plays no part in it. */
function readsOnlyJoinedSession(b: SqlBuilder, node: FilterNode): boolean {
  return [...leaves([node])].every(({ leaf }) => joinedLeaf(b, leaf));
}

/** Filters split at their ANDs, so that each conjunct can be placed where it is cheapest. */
function conjuncts(nodes: readonly FilterNode[]): FilterNode[] {
  return nodes.flatMap((n) => (n.kind === 'and' ? conjuncts(n.children) : [n]));
}

const isAscii = (v: string): boolean => [...v].every((c) => c.charCodeAt(0) < 0x80);

/**
 * A session-scoped filter's value on a session the event side's join does not find (ClickHouse's
 * LEFT JOIN gives it empty columns, which read as the dimension's empty label), when it is known
 * for sure: undefined for patterns, and for case folding beyond ASCII, which only ClickHouse
 * decides. The labels are ASCII, so a value that is not cannot equal or be inside one byte-wise.
 */
function onEmptySession(node: FilterNode): boolean | undefined {
  switch (node.kind) {
    case 'leaf': {
      const d = node.dimension;
      const x = d.kind === 'column' ? (d.def.emptyLabel ?? '') : '';
      if (node.op === 'matches' || node.op === 'matches_not' || !isAscii(x)) return undefined;
      if (!node.caseSensitive && !node.values.every(isAscii)) return undefined;
      const fold = (v: string): string => (node.caseSensitive ? v : v.toLowerCase());
      const positive =
        node.op === 'is' || node.op === 'is_not' ? node.values.some((v) => fold(v) === fold(x)) : node.values.some((v) => fold(x).includes(fold(v)));
      return node.op.endsWith('_not') ? !positive : positive;
    }
    case 'not': {
      const v = onEmptySession(node.child);
      return v === undefined ? undefined : !v;
    }
    case 'and':
    case 'or': {
      const vs = node.children.map(onEmptySession);
      const decisive = node.kind === 'and' ? false : true;
      if (vs.includes(decisive)) return decisive;
      return vs.every((v) => v === !decisive) ? !decisive : undefined;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Raw sides

/** Session columns (beyond the counters) a side must read. */
function sessionColumnsFor(b: SqlBuilder, q: CoreQuery, context: 'event' | 'session'): Set<SessionColumn> {
  const cols = new Set<SessionColumn>();
  const want = (d: ResolvedDimension | FilterLeaf['dimension']): void => {
    if (d.kind !== 'column' || d.def.sessionColumn === undefined) return;
    if (context === 'event' && d.def.scope === 'session' && !onEventRow(b, d.def)) cols.add(d.def.sessionColumn);
    if (context === 'session' && (d.def.scope !== 'event' || (q.pageAsEntry && d.name === 'event:page'))) cols.add(d.def.sessionColumn);
  };
  for (const d of q.dims) want(d);
  for (const { leaf } of leaves(allFilters(q))) want(leaf.dimension);
  if (context === 'session' && q.bouncePageLeaves.length > 0) cols.add('entry_page');
  return cols;
}

function groupBy(q: CoreQuery): string {
  return q.aliases.length === 0 ? '' : ` GROUP BY ${q.aliases.join(', ')}`;
}

/**
 * Restricts a raw side to the rows of some salt days (bound `Array(Date)`), within some time
 * intervals `[t0, t1)` (bound DateTime64): the open salt days of a range the rollups answer.
 */
interface SaltDayNarrowing {
  saltDays: string;
  intervals: ReadonlyArray<readonly [string, string]>;
  /** Only the visitors this sub-query returns (a provisional generation's tail). */
  visitors?: string;
  /**
   * A provisional generation's watermark (bound DateTime64): visitors are counted over all rows
   * minus over those it saw (events before it; sessions whose latest event is before it).
   */
  before?: string;
}

function narrowed(n: SaltDayNarrowing | undefined, alias: string, time: string): string[] {
  if (n === undefined) return [];
  const within = n.intervals.map(
    ([t0, t1]) => `(toDate(${alias}${time}) >= toDate(${t0}) AND toDate(${alias}${time}) <= toDate(${t1}) AND ${alias}${time} >= ${t0} AND ${alias}${time} < ${t1})`,
  );
  const out = [`${alias}salt_day IN ${n.saltDays}`, `(${within.join(' OR ')})`];
  if (n.visitors !== undefined) out.push(n.visitors.startsWith('arrayMap') ? `has(${n.visitors}, ${alias}visitor_id)` : `${alias}visitor_id IN (${n.visitors})`);
  return out;
}

/**
 * How the raw sides place their filters. `pushed`, what queries run: each filter goes where it
 * reads the fewest rows (below). `reference`: the plain formulation (every session of the range
 * collapsed, then filtered), kept as the oracle the exactness tests compare `pushed` with.
 */
export type RawFormulation = 'pushed' | 'reference';

/**
 * Sessions of the event side: those an event in the range can belong to, on the sort key. A
 * session with events in the range started before its end and ended (its latest state's
 * timestamp) after its start; older states may be cut off, the latest is still found. It
 * started at most a day before the range's first UTC day: a session belongs to one visitor id, an
 * id lives on its salt day and the next only (the salt is deleted after), and an event's
 * timestamp is the collector's clock that picked the salt. So only the range's days and the one
 * before are read, not the site's whole history.
 */
function eventSessionsWhere(bounds: Bounds): string {
  return (
    `site = ${bounds.site} AND toDate(start) >= toDate(${bounds.t0}) - 1 AND toDate(start) <= toDate(${bounds.t1})` +
    ` AND start < ${bounds.t1} AND timestamp >= ${bounds.t0}`
  );
}

/**
 * The latest state of each session among the state rows that `prewhere` and `where` keep, one row
 * per session, without aggregating them: its +1 row that no −1 row cancels (same session and
 * version). A collapsing aggregation (`GROUP BY session_id HAVING sum(sign) > 0`, `argMax(…,
 * version)`) gives the same rows, as the sessions table is written: every state but the latest
 * has a +1 row and an equal −1 row (merges drop such pairs together), the latest a lone +1 row;
 * a condition on a state row keeps or drops both rows of a pair. So a session whose latest state
 * passes keeps exactly that row, and one whose latest state fails keeps none (its older pairs all
 * cancel). The −1 rows are few next to the sessions read (merges collapse most pairs), and the
 * aggregation it replaces, which copies every string attribute into a per-session state, cost
 * most of a filtered breakdown's time: sources of `/pricing` at 10M events read 485k state rows
 * of 403k sessions.
 */
function latestStates(columns: string, prewhere: string | undefined, where: string): string {
  const pre = prewhere === undefined ? '' : ` AND ${prewhere}`;
  return (
    `SELECT ${columns} FROM sessions PREWHERE sign = 1${pre} WHERE ${where}` +
    ` AND (session_id, version) NOT IN (SELECT session_id, version FROM sessions PREWHERE sign = -1${pre} WHERE ${where})`
  );
}

function eventSideRaw(b: SqlBuilder, q: CoreQuery, site: string, narrowing?: SaltDayNarrowing, formulation: RawFormulation = 'pushed'): string {
  b.tables.add('events');
  const bounds = rangeBounds(b, q, site);
  const dims = q.dims.map((d, i) => `CAST(${eventDimension(b, q, d)} AS String) AS ${q.aliases[i] ?? ''}`);
  const computed: Partial<Record<ComponentColumn, string>> = {};
  if (q.event.has('visitors')) {
    // A provisional generation's tail: the visitors over all rows minus those over the rows it saw.
    computed.ev_visitors =
      narrowing?.before === undefined
        ? 'toInt64(uniqExact(e.visitor_id))'
        : `toInt64(uniqExact(e.visitor_id)) - toInt64(uniqExactIf(e.visitor_id, e.timestamp < ${narrowing.before}))`;
  }
  if (q.event.has('pageviews')) computed.ev_pageviews = "toInt64(countIf(e.name = 'pageview'))";
  if (q.event.has('events')) computed.ev_events = 'toInt64(count())';
  if (q.event.has('visits')) computed.ev_visits = 'toInt64(uniqExact(e.session_id))';
  if (q.event.has('revenue')) {
    computed.ev_revenue = 'toFloat64(sum(ifNull(e.revenue_amount, toDecimal64(0, 6))))';
    computed.ev_revenue_n = 'toInt64(countIf(e.revenue_amount IS NOT NULL))';
  }
  const where = [`e.site = ${bounds.site}`, eventDays(bounds), `e.timestamp >= ${bounds.t0}`, `e.timestamp < ${bounds.t1}`];
  where.push(...narrowed(narrowing, 'e.', 'timestamp'));
  if (q.pageviewsOnly) where.push("e.name = 'pageview'");

  // Filters on the event row alone, on the session's attributes alone, and on both.
  const onRow: FilterNode[] = [];
  const onSession: FilterNode[] = [];
  const onBoth: FilterNode[] = [];
  for (const f of formulation === 'pushed' ? conjuncts(allFilters(q)) : allFilters(q)) {
    if (!readsJoinedSession(b, f)) onRow.push(f);
    else if (formulation === 'pushed' && readsOnlyJoinedSession(b, f)) onSession.push(f);
    else onBoth.push(f);
  }
  // The conditions on the event row alone, which also bound the sessions joined below.
  where.push(...onRow.map((f) => compile(f, (l) => eventLeaf(b, q, l))));
  const onEvent = [...where];
  const rowOf = (f: FilterNode): string => compile(f, (l) => sessionLeaf(b, q, bounds, l, 'row'));

  const joinColumns = sessionColumnsFor(b, q, 'event');
  const dimsJoin = q.dims.some((d) => d.kind === 'column' && d.def.scope === 'session' && !onEventRow(b, d.def));
  // Whether each attribute filter is false on a session the join would not find.
  const falseOnMissing = onSession.map((f) => onEmptySession(f) === false);
  let join = '';
  if (!dimsJoin && onBoth.length === 0 && onSession.length > 0 && falseOnMissing.every(Boolean)) {
    // Only filters read the session (a page breakdown for one source): no join, the event keeps
    // to the sessions whose latest state passes them. Its session missing, the joined row would
    // have failed them too.
    b.tables.add('sessions');
    where.push(`e.session_id IN (SELECT session_id FROM sessions PREWHERE ${onSession.map(rowOf).join(' AND ')} WHERE ${eventSessionsWhere(bounds)} GROUP BY session_id HAVING sum(sign) > 0)`);
  } else if (joinColumns.size > 0) {
    b.tables.add('sessions');
    const columns = [...joinColumns];
    // A filtered breakdown (a page, a goal, a country) needs the sessions of the few events that
    // pass its filters, not every session of the range: the session ids of the events that pass
    // the event-row conditions (a superset of the rows the WHERE keeps) bound the aggregation.
    // Without a filter on the event row that set is every session, so it is left out. Attribute
    // filters false on a missing session narrow it too: an event whose session they drop fails
    // them on the empty joined row as it did on its session's.
    const narrow: string[] = [];
    if (onRow.length > 0) narrow.push(`session_id IN (SELECT e.session_id FROM events AS e WHERE ${onEvent.join(' AND ')})`);
    onSession.forEach((f, i) => {
      if (falseOnMissing[i] === true) narrow.push(rowOf(f));
    });
    const prewhere = narrow.length === 0 ? undefined : narrow.join(' AND ');
    // The reference collapses the states by aggregation, the oracle of the latest-state rows.
    const latest =
      formulation === 'reference'
        ? `SELECT session_id, ${columns.map((c) => `argMax(${c}, version) AS s_${c}`).join(', ')} FROM sessions${prewhere === undefined ? '' : ` PREWHERE ${prewhere}`} WHERE ${eventSessionsWhere(bounds)} GROUP BY session_id HAVING sum(sign) > 0`
        : latestStates(`session_id, ${columns.map((c) => `${c} AS s_${c}`).join(', ')}`, prewhere, eventSessionsWhere(bounds));
    join = ` LEFT JOIN (${latest}) AS s ON e.session_id = s.session_id`;
    where.push(...[...onSession, ...onBoth].map((f) => compile(f, (l) => eventLeaf(b, q, l))));
  }
  return `SELECT ${[...dims, ...selectComponents(computed)].join(', ')} FROM events AS e${join} WHERE ${where.join(' AND ')}${groupBy(q)}`;
}

/**
 * The session side: one row per session that starts in the range, in its latest state, from its
 * state rows (a +1 row per version; a −1 copy of each state but the latest, with its version).
 *
 * Filters are applied to each state row, before the collapse (`pushed`), which is exact: a state's
 * −1 and +1 rows are equal but for the sign, so a condition keeps or drops both; the pairs of
 * older states cancel in every sum whether kept or not, and the latest state's lone +1 row is kept
 * exactly when it passes. So a session whose latest state fails nets to zero rows (dropped by
 * `s_n > 0`, as a state whose start moved out of the range is), and one whose latest state passes
 * keeps its sums and its argMax of the latest version. Event leaves read the session id only, the
 * same on every row. The aggregation then holds the sessions that pass, not every session of the
 * range.
 */
function sessionSideRaw(b: SqlBuilder, q: CoreQuery, site: string, narrowing?: SaltDayNarrowing, formulation: RawFormulation = 'pushed'): string {
  b.tables.add('sessions');
  const bounds = rangeBounds(b, q, site);
  const narrow = narrowed(narrowing, '', 'start').map((w) => ` AND ${w}`).join('');
  const columns = sessionColumnsFor(b, q, 'session');
  const attrs = [...columns].map((c) => `, argMax(${c}, version) AS s_${c}`).join('');
  const at = formulation === 'pushed' ? 'row' : 'collapsed';
  const filters = allFilters(q).map((f) => compile(f, (l) => sessionLeaf(b, q, bounds, l, at)));
  if (filters.some((w) => w.includes('FROM events'))) b.tables.add('events');
  const prewhere = at === 'row' && filters.length > 0 ? ` PREWHERE ${filters.join(' AND ')}` : '';
  const where = at === 'collapsed' && filters.length > 0 ? ` WHERE ${filters.join(' AND ')}` : '';
  const range = `site = ${bounds.site} AND toDate(start) >= toDate(${bounds.t0}) AND toDate(start) <= toDate(${bounds.t1}) AND start >= ${bounds.t0} AND start < ${bounds.t1}${narrow}`;
  if (at === 'row' && narrowing === undefined && !q.session.has('visitors')) return sessionSideRows(b, q, prewhere, range);
  // The −1/+1 pairs of earlier states cancel (a state whose start moved out of the range nets to zero).
  const collapsed =
    '(SELECT session_id, argMax(visitor_id, version) AS s_visitor, argMax(start, version) AS s_start, argMax(timestamp, version) AS s_latest,' +
    ' sum(sign) AS s_n, sum(sign * is_bounce) AS s_bounce, sum(sign * duration) AS s_duration, sum(sign * pageviews) AS s_pageviews' +
    `${attrs} FROM sessions${prewhere} WHERE ${range}` +
    ' GROUP BY session_id HAVING s_n > 0) AS s';
  const dims = q.dims.map((d, i) => `CAST(${sessionDimension(b, q, d)} AS String) AS ${q.aliases[i] ?? ''}`);
  const computed: Partial<Record<ComponentColumn, string>> = {};
  if (q.session.has('visitors')) {
    computed.se_visitors =
      narrowing?.before === undefined
        ? 'toInt64(uniqExact(s.s_visitor))'
        : `toInt64(uniqExact(s.s_visitor)) - toInt64(uniqExactIf(s.s_visitor, s.s_latest < ${narrowing.before}))`;
  }
  if (q.session.has('visits')) computed.se_visits = 'toInt64(count())';
  if (q.session.has('bounces')) {
    if (q.bouncePageLeaves.length > 0) {
      const entered = q.bouncePageLeaves.map((l) => scalarCondition(b, 's.s_entry_page', l)).join(' AND ');
      computed.se_bounces = `toInt64(sumIf(s.s_bounce, ${entered}))`;
      computed.se_bounce_visits = `toInt64(countIf(${entered}))`;
    } else {
      computed.se_bounces = 'toInt64(sum(s.s_bounce))';
      computed.se_bounce_visits = 'toInt64(count())';
    }
  }
  if (q.session.has('duration')) computed.se_duration = 'toInt64(sum(s.s_duration))';
  if (q.session.has('pageviews')) computed.se_pageviews = 'toInt64(sum(s.s_pageviews))';
  return `SELECT ${[...dims, ...selectComponents(computed)].join(', ')} FROM ${collapsed}${where}${groupBy(q)}`;
}

/**
 * The session side without unique visitors, straight from the state rows: every sum is of sign ×
 * a column (visits, bounces, durations, pageviews), grouped by columns of the row. Exact without
 * collapsing the states by id first: an earlier state's −1 row is a copy of its +1 row, so both
 * pass the same filters, fall in the same range (their start is the same) and the same group, and
 * cancel; only each session's latest state counts, as in the collapsed form. A group counts when
 * its visits are above zero, as a group of collapsed sessions exists when one of them does. At
 * 10M events, sources for one page with bounce rate and visit duration: the collapse by id of the
 * page's ~400k sessions was most of the session side's time.
 */
function sessionSideRows(b: SqlBuilder, q: CoreQuery, prewhere: string, range: string): string {
  const dims = q.dims.map((d, i) => `CAST(${sessionDimension(b, q, d, '')} AS String) AS ${q.aliases[i] ?? ''}`);
  const computed: Partial<Record<ComponentColumn, string>> = {};
  if (q.session.has('visits')) computed.se_visits = 'toInt64(sum(sign))';
  if (q.session.has('bounces')) {
    const entered = q.bouncePageLeaves.map((l) => scalarCondition(b, 'entry_page', l)).join(' AND ');
    computed.se_bounces = entered === '' ? 'toInt64(sum(sign * is_bounce))' : `toInt64(sumIf(sign * is_bounce, ${entered}))`;
    computed.se_bounce_visits = entered === '' ? 'toInt64(sum(sign))' : `toInt64(sumIf(sign, ${entered}))`;
  }
  if (q.session.has('duration')) computed.se_duration = 'toInt64(sum(sign * duration))';
  if (q.session.has('pageviews')) computed.se_pageviews = 'toInt64(sum(sign * pageviews))';
  const having = q.aliases.length === 0 ? '' : ' HAVING sum(sign) > 0';
  return `SELECT ${[...dims, ...selectComponents(computed)].join(', ')} FROM sessions${prewhere} WHERE ${range}${groupBy(q)}${having}`;
}

/** The one event-row filter leaf `q` has, when a fused read can answer it (see {@link fusedRaw}). */
function fusableLeaf(q: CoreQuery): FilterLeaf | undefined {
  const only = conjuncts(allFilters(q));
  const leaf = only[0];
  if (only.length !== 1 || leaf?.kind !== 'leaf' || leaf.op.endsWith('_not')) return undefined;
  const d = leaf.dimension;
  const onEventRow = d.kind === 'goal' || d.kind === 'prop' || d.kind === 'variation' || (d.kind === 'column' && d.def.scope === 'event');
  return onEventRow ? leaf : undefined;
}

/**
 * Both raw sides in one read, for the dashboard's click-to-filter breakdown of visit attributes
 * for one page, goal or property (sources for `/pricing`: visitors, bounce rate, visit duration).
 * The two sides would each collapse the same sessions — those with an event in the range that
 * passes the one positive filter — so they are collapsed once.
 *
 * Exact against the two sides because, with one positive condition on the event row, the
 * session side's "had such an event in the range" keeps the very sessions whose events the event
 * side counts; the event side's sessions (`eventSessionsWhere`, started up to a day early) are a
 * superset of the session side's (started in the range), told apart by the latest state's start.
 * The events drive the join, as on the event side: an event whose session row is missing counts
 * its visitor under the empty labels. A session id belongs to one visitor (it is derived from the
 * visitor id), so each session's events give one visitor. Undefined when `q` does not fit: other
 * filters (per-leaf session conditions would differ from per-event ones), event-side sums beyond
 * counts, a dimension not read from the session alone, or dimensions all on the event row.
 */
function fusedRaw(b: SqlBuilder, q: CoreQuery, site: string): string | undefined {
  const leaf = fusableLeaf(q);
  const eventOk = [...q.event].every((c) => c !== 'revenue');
  const dimsOk = q.dims.every((d) => d.kind === 'column' && d.def.scope === 'session');
  // Dimensions every event row holds (a source for one page): the event side reads `events`
  // alone (the page's projection), cheaper than joining its sessions' states to both sides.
  const eventSideJoins = q.dims.some((d) => d.kind === 'column' && !onEventRow(b, d.def));
  if (leaf === undefined || !eventOk || q.session.size === 0 || !dimsOk || !eventSideJoins || q.pageviewsOnly || q.pageAsEntry) return undefined;
  b.tables.add('events');
  b.tables.add('sessions');
  const bounds = rangeBounds(b, q, site);
  const onEvent = `e.site = ${bounds.site} AND ${eventDays(bounds)} AND e.timestamp >= ${bounds.t0} AND e.timestamp < ${bounds.t1} AND ${eventLeaf(b, q, leaf)}`;
  const columns = new Set(sessionColumnsFor(b, q, 'session'));
  for (const c of sessionColumnsFor(b, q, 'event')) columns.add(c);
  const attrs = [...columns].map((c) => `, ${c} AS s_${c}`).join('');
  const sessions = `(${latestStates(
    `session_id, visitor_id AS s_visitor, start AS s_start, is_bounce AS s_bounce, duration AS s_duration, pageviews AS s_pageviews${attrs}`,
    `session_id IN (SELECT e.session_id FROM events AS e WHERE ${onEvent})`,
    eventSessionsWhere(bounds),
  )}) AS s`;
  const perSession =
    "(SELECT e.session_id AS sid, any(e.visitor_id) AS visitor, count() AS n_events, countIf(e.name = 'pageview') AS n_pageviews" +
    ` FROM events AS e WHERE ${onEvent} GROUP BY sid) AS ev`;
  // A missing session reads as the column defaults: its start (1970) is never in the range.
  const started = `s.s_start >= ${bounds.t0}`;
  const computed: Partial<Record<ComponentColumn, string>> = {};
  if (q.event.has('visitors')) computed.ev_visitors = 'toInt64(uniqExact(ev.visitor))';
  if (q.event.has('pageviews')) computed.ev_pageviews = 'toInt64(sum(ev.n_pageviews))';
  if (q.event.has('events')) computed.ev_events = 'toInt64(sum(ev.n_events))';
  if (q.event.has('visits')) computed.ev_visits = 'toInt64(count())';
  if (q.session.has('visitors')) computed.se_visitors = `toInt64(uniqExactIf(s.s_visitor, ${started}))`;
  if (q.session.has('visits')) computed.se_visits = `toInt64(countIf(${started}))`;
  if (q.session.has('bounces')) {
    const entered = [started, ...q.bouncePageLeaves.map((l) => scalarCondition(b, 's.s_entry_page', l))].join(' AND ');
    computed.se_bounces = `toInt64(sumIf(s.s_bounce, ${entered}))`;
    computed.se_bounce_visits = `toInt64(countIf(${entered}))`;
  }
  if (q.session.has('duration')) computed.se_duration = `toInt64(sumIf(s.s_duration, ${started}))`;
  if (q.session.has('pageviews')) computed.se_pageviews = `toInt64(sumIf(s.s_pageviews, ${started}))`;
  const dims = q.dims.map((d, i) => `CAST(${sessionDimension(b, q, d)} AS String) AS ${q.aliases[i] ?? ''}`);
  return `SELECT ${[...dims, ...selectComponents(computed)].join(', ')} FROM ${perSession} LEFT JOIN ${sessions} ON ev.sid = s.session_id${groupBy(q)}`;
}

/**
 * The raw sides of `q` (the branches {@link coreSelect} sums), in either formulation; `pushed`
 * fuses them into one read where {@link fusedRaw} applies.
 */
export function rawSides(b: SqlBuilder, q: CoreQuery, site: string, formulation: RawFormulation): string[] {
  if (formulation === 'reference') {
    b.visitOnEvents = false;
    b.splitLabels = false;
  }
  const fused = formulation === 'pushed' && q.event.size > 0 ? fusedRaw(b, q, site) : undefined;
  if (fused !== undefined) return [fused];
  const sides: string[] = [];
  if (q.event.size > 0) sides.push(eventSideRaw(b, q, site, undefined, formulation));
  if (q.session.size > 0) sides.push(sessionSideRaw(b, q, site, undefined, formulation));
  return sides;
}

// ---------------------------------------------------------------------------------------------
// Rollup sides

function bucketBounds(b: SqlBuilder, q: CoreQuery, grain: 'day' | 'hour'): string {
  if (grain === 'day') {
    const d0 = new Date(q.range.start).toISOString().slice(0, 10);
    const d1 = new Date(q.range.end).toISOString().slice(0, 10);
    return `bucket >= ${b.bind('Date', d0)} AND bucket < ${b.bind('Date', d1)}`;
  }
  return `bucket >= ${b.bind("DateTime64(3, 'UTC')", new Date(q.range.start))} AND bucket < ${b.bind("DateTime64(3, 'UTC')", new Date(q.range.end))}`;
}

function rollupTime(b: SqlBuilder, q: CoreQuery, grain: 'day' | 'hour', d: Extract<ResolvedDimension, { kind: 'time' }>): string {
  return grain === 'day' ? dailyTimeExpr(b, q, d.grain) : timeExpr(b, q, d.grain, 'bucket');
}

/** The rollup rows of the breakdown dimension, its value expression, and the value filters. */
function rollupSelection(b: SqlBuilder, q: CoreQuery, side: 'event' | 'session'): { rows: string; value: string | undefined } {
  const dim = q.dims.find((d) => d.kind !== 'time');
  if (dim === undefined) return { rows: "dim = ''", value: undefined };
  if (dim.kind === 'goal') {
    if (q.goals.kind === 'implicit') return { rows: "dim = 'name' AND value != 'pageview'", value: 'value' };
    const events = q.goals.goals.filter((g) => g.kind === 'event').map((g) => g.name);
    const pages = q.goals.goals.flatMap((g) => (g.kind === 'page' ? [g.path] : []));
    const parts: string[] = [];
    if (events.length > 0) parts.push(`(dim = 'name' AND value IN ${b.bind('Array(String)', events)})`);
    if (pages.length > 0) parts.push(`(dim = 'page' AND value IN ${b.bind('Array(String)', pages)})`);
    return { rows: parts.length === 0 ? '0' : `(${parts.join(' OR ')})`, value: "if(dim = 'page', concat('Visit ', value), value)" };
  }
  const name = side === 'event' ? eventRollupOf(dim, q.goals) : sessionRollupOf(dim);
  if (name === undefined || name === 'goal' || dim.kind !== 'column') throw new Error(`no ${side} rollup by ${dim.name}`);
  return { rows: `dim = ${b.bind('String', name)}`, value: labelled(b, 'value', dim.def) };
}

/** Where a rollup or `salt_day_visitors` read takes the breakdown's rows, and its filters. */
function rollupWhere(b: SqlBuilder, q: CoreQuery, site: string, side: 'event' | 'session'): { value: string | undefined; where: string[] } {
  const selection = rollupSelection(b, q, side);
  const where = [`site = ${b.bind('String', site)}`, selection.rows];
  // The planner only sends top-level `is` filters on the breakdown dimension here; goal filters
  // already narrowed the goal set.
  for (const f of allFilters(q)) {
    if (f.kind !== 'leaf' || f.dimension.kind === 'goal' || selection.value === undefined) continue;
    where.push(scalarCondition(b, selection.value, f));
  }
  return { value: selection.value, where };
}

/** The additive sums of a side from its rollup; its unique visitors come from {@link visitorBranches}. */
function rollupSide(b: SqlBuilder, q: CoreQuery, site: string, side: 'event' | 'session', grain: 'day' | 'hour'): string {
  const table = side === 'event' ? (grain === 'day' ? 'rollup_daily' : 'rollup_hourly') : grain === 'day' ? 'sessions_daily' : 'sessions_hourly';
  b.tables.add(table);
  const { value, where } = rollupWhere(b, q, site, side);
  const dims = q.dims.map((d, i) => {
    const expr = d.kind === 'time' ? rollupTime(b, q, grain, d) : (value ?? "''");
    return `CAST(${expr} AS String) AS ${q.aliases[i] ?? ''}`;
  });
  where.push(bucketBounds(b, q, grain));
  const computed: Partial<Record<ComponentColumn, string>> = {};
  let having = '';
  if (side === 'event') {
    if (q.event.has('pageviews')) computed.ev_pageviews = 'toInt64(sum(pageviews))';
    if (q.event.has('events')) computed.ev_events = 'toInt64(sum(events))';
    if (q.event.has('revenue')) {
      computed.ev_revenue = 'toFloat64(sum(revenue))';
      computed.ev_revenue_n = 'toInt64(sum(revenue_events))';
    }
  } else {
    computed.se_visits = 'toInt64(sum(visits))';
    if (q.session.has('bounces')) {
      computed.se_bounces = 'toInt64(sum(bounces))';
      computed.se_bounce_visits = 'toInt64(sum(visits))';
    }
    if (q.session.has('duration')) computed.se_duration = 'toInt64(sum(duration))';
    if (q.session.has('pageviews')) computed.se_pageviews = 'toInt64(sum(pageviews))';
    // Values whose sessions all moved on (an old exit page) net to zero visits: not a row.
    if (q.aliases.length > 0) having = ' HAVING se_visits > 0';
  }
  return `SELECT ${[...dims, ...selectComponents(computed)].join(', ')} FROM ${table} WHERE ${where.join(' AND ')}${groupBy(q)}${having}`;
}

/** A provisional generation of an open salt day: segments of the rows before its watermarks. */
export interface ProvisionalSaltDay {
  readonly gen: string;
  /** Events before it (ms) are in the generation. */
  readonly watermark: number;
  /** Sessions whose latest event is before it (ms) are in the generation. */
  readonly sessionWatermark: number;
  /**
   * The visitor ids seen since (events at or after the watermark; sessions whose latest event is
   * at or after the session watermark), when few enough to bind; undefined: read by a sub-query.
   */
  readonly eventTail?: readonly string[];
  readonly sessionTail?: readonly string[];
  readonly zones: readonly string[];
}

/** The salt days a site has closed: each (UTC day number) → its latest complete generation. */
export interface SaltDays {
  readonly closed: ReadonlyMap<number, string>;
  /** The zones each closed salt day's latest generation has `salt_day_segments` rows for. */
  readonly zones: ReadonlyMap<number, readonly string[]>;
  /** Open salt days with a provisional generation that still holds (see processor/salt-days.ts). */
  readonly provisional?: ReadonlyMap<number, ProvisionalSaltDay>;
  /**
   * The site's first closed salt day: the closing job closes a site's days oldest first, so any
   * before it held no rows when it ran (late rows for them are read once the job closes them).
   */
  readonly first: number | undefined;
  /**
   * A salt day's `salt_day_segments` counts of one (side, zone, dimension, value) at a closed or
   * provisional generation, when known to the caller ({@link keptValues}; they cannot change: a
   * generation's rows are complete once recorded, and a recomputation is a new generation).
   */
  readonly segmentCounts?: (side: 'event' | 'session', tz: string, day: number, gen: string, dim: string, value: string) => SegmentCounts | undefined;
  /** Every value's counts of one (side, zone, dimension) at a generation, when kept (few values): as {@link segmentCounts}. */
  readonly dimensionCounts?: (side: 'event' | 'session', tz: string, day: number, gen: string, dim: string) => ReadonlyMap<string, SegmentCounts> | undefined;
}

const DAY_MS = 86_400_000;
const HOUR_S = 3600;

/** A UTC day number as `YYYY-MM-DD`. */
function isoDay(day: number): string {
  return new Date(day * DAY_MS).toISOString().slice(0, 10);
}

/**
 * The salt days whose ids can appear in `[start, end)`: from the day before the start's (its ids
 * are carried into the start's day) to the last instant's.
 */
export function saltDaySpan(start: number, end: number): [number, number] {
  return [Math.floor(start / DAY_MS) - 1, Math.floor((end - 1) / DAY_MS)];
}

/**
 * The unique visitors of a side answered from the rollups (the range's boundaries are whole UTC
 * hours): closed salt days from `salt_day_visitors`, open ones (not closed yet) from the raw rows
 * of those salt days only, within their lives. Ids of different salt days never coincide, so the
 * branches add up exactly.
 */
function visitorBranches(
  b: SqlBuilder,
  q: CoreQuery,
  site: string,
  side: 'event' | 'session',
  saltDays: SaltDays | undefined,
  constants?: ConstantRow[],
): string[] {
  const [first, last] = saltDaySpan(q.range.start, q.range.end);
  const closed: number[] = [];
  const open: number[] = [];
  for (let d = Math.max(first, saltDays?.first ?? first); d <= last; d++) (saltDays?.closed.has(d) === true ? closed : open).push(d);
  const branches: string[] = [];
  // Open salt days with a provisional generation: its segments, plus the visitors seen since.
  const provisional = (saltDays?.provisional === undefined ? [] : open).flatMap((d) => {
    const p = saltDays?.provisional?.get(d);
    if (p === undefined || segmentPlan(q, [d], new Map([[d, p.zones]])) === undefined) return [];
    return [{ day: d, p }];
  });
  const closedGens = saltDays?.closed ?? new Map<number, string>();
  const closedPlan = closed.length === 0 ? [] : segmentPlan(q, closed, saltDays?.zones);
  const provisionalPlan = segmentPlan(q, provisional.map((x) => x.day), new Map(provisional.map((x) => [x.day, x.p.zones]))) ?? [];
  if (closedPlan === undefined) branches.push(closedVisitors(b, q, site, side, closed, closedGens));
  // Closed and provisional generations live in the same table: one read for both, or none when
  // their counts are known (SaltDays.segmentCounts).
  const shares = [...(closedPlan ?? []), ...provisionalPlan];
  if (shares.length > 0) {
    const gens = new Map([...closedGens, ...provisional.map((x) => [x.day, x.p.gen] as const)]);
    const known = knownCounts(q, side, shares, gens, saltDays);
    if (known === undefined) branches.push(segmentVisitors(b, q, site, side, shares, gens));
    else if (constants !== undefined) constants.push(...visitorConstants(b, q, side, shares, known));
    else branches.push(constantVisitors(b, q, side, shares, known));
  }
  for (const { day, p } of provisional) branches.push(...tailBranches(b, q, site, side, day, p));
  const rawOpen = open.filter((d) => !provisional.some((x) => x.day === d));
  const intervals = openIntervals(rawOpen, q.range.start, q.range.end);
  if (intervals.length > 0) {
    const time = (ms: number): string => b.bind("DateTime64(3, 'UTC')", new Date(ms));
    const narrowing: SaltDayNarrowing = {
      saltDays: b.bind('Array(Date)', rawOpen.map(isoDay)),
      intervals: intervals.map(([t0, t1]) => [time(t0), time(t1)] as const),
    };
    const only: CoreQuery = {
      ...q,
      event: new Set<EventComponent>(side === 'event' ? ['visitors'] : []),
      session: new Set<SessionComponent>(side === 'session' ? ['visitors'] : []),
    };
    branches.push(side === 'event' ? eventSideRaw(b, only, site, narrowing) : sessionSideRaw(b, only, site, narrowing));
  }
  return branches;
}

/** `q` reduced to one side's visitors. */
function visitorsOnly(q: CoreQuery, side: 'event' | 'session'): CoreQuery {
  return {
    ...q,
    event: new Set<EventComponent>(side === 'event' ? ['visitors'] : []),
    session: new Set<SessionComponent>(side === 'session' ? ['visitors'] : []),
  };
}

/**
 * The exact correction of a provisional generation of salt day `day`: for the visitors with rows
 * it did not see (events at or after its watermark; sessions whose latest event is at or after its
 * session watermark), their visitors over all their rows of the salt day in the range, minus
 * their visitors over the rows it saw (which its segments counted). Few visitors: the sub-query
 * picks them on the sort key's day, and the rest of their rows by id.
 */
function tailBranches(b: SqlBuilder, q: CoreQuery, site: string, side: 'event' | 'session', day: number, p: ProvisionalSaltDay): string[] {
  const t0 = Math.max(q.range.start, day * DAY_MS);
  const t1 = Math.min(q.range.end, (day + 2) * DAY_MS);
  const ids = side === 'event' ? p.eventTail : p.sessionTail;
  // No visitor seen since: the generation's segments are the whole answer.
  if (t0 >= t1 || ids?.length === 0) return [];
  const time = (ms: number): string => b.bind("DateTime64(3, 'UTC')", new Date(ms));
  const mark = time(side === 'event' ? p.watermark : p.sessionWatermark);
  let visitors: string;
  // Ids as text: 64-bit, beyond a JavaScript number.
  if (ids !== undefined) visitors = `arrayMap(x -> toUInt64(x), ${b.bind('Array(String)', ids)})`;
  else {
    const siteParam = b.bind('String', site);
    const saltDay = b.bind('Date', isoDay(day));
    visitors =
      side === 'event'
        ? `SELECT visitor_id FROM events WHERE site = ${siteParam} AND salt_day = ${saltDay} AND toDate(timestamp) >= toDate(${mark}) AND toDate(timestamp) <= ${saltDay} + 1 AND timestamp >= ${mark}`
        : `SELECT visitor_id FROM sessions WHERE site = ${siteParam} AND salt_day = ${saltDay} AND toDate(start) >= ${saltDay} AND toDate(start) <= ${saltDay} + 1 AND timestamp >= ${mark}`;
  }
  const narrowing: SaltDayNarrowing = { saltDays: b.bind('Array(Date)', [isoDay(day)]), intervals: [[time(t0), time(t1)]], visitors, before: mark };
  const only = visitorsOnly(q, side);
  return [side === 'event' ? eventSideRaw(b, only, site, narrowing) : sessionSideRaw(b, only, site, narrowing)];
}

/** Where ids of the open salt days can be seen in `[start, end)`: their lives, merged, cut to the range. */
function openIntervals(open: readonly number[], start: number, end: number): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  for (const d of open) {
    const t0 = Math.max(start, d * DAY_MS);
    const t1 = Math.min(end, (d + 2) * DAY_MS);
    if (t0 >= t1) continue;
    const prev = out.at(-1);
    if (prev !== undefined && t0 <= prev[1]) prev[1] = Math.max(prev[1], t1);
    else out.push([t0, t1]);
  }
  return out;
}

/**
 * Visitors of closed salt days: Σ visitors of the rows whose hours meet the range's hours of the
 * salt day's life (bit i = hour i after its 00:00 UTC). With a time dimension, a row counts once
 * in each bucket that one of its hours in the range falls in.
 */
function closedVisitors(
  b: SqlBuilder,
  q: CoreQuery,
  site: string,
  side: 'event' | 'session',
  days: readonly number[],
  gens: ReadonlyMap<number, string>,
): string {
  b.tables.add('salt_day_visitors');
  const { value, where } = rollupWhere(b, q, site, side);
  const life = "toInt64(toUnixTimestamp(toDateTime(salt_day, 'UTC')))";
  const hourOf = (ms: number): string => `least(48, greatest(0, intDiv(${b.bind('Int64', Math.floor(ms / 1000))} - ${life}, ${HOUR_S})))`;
  const lo = hourOf(q.range.start);
  const hi = hourOf(q.range.end);
  where.push(
    `side = '${side}'`,
    `salt_day IN ${b.bind('Array(Date)', days.map(isoDay))}`,
    // Generations are µs since the epoch: exact as JavaScript numbers until the year 2255.
    `gen IN ${b.bind('Array(UInt64)', days.map((d) => Number(gens.get(d) ?? 0)))}`,
    `bitAnd(hours, bitShiftLeft(toUInt64(1), ${hi}) - bitShiftLeft(toUInt64(1), ${lo})) != 0`,
  );
  const dims = q.dims.map((d, i) => {
    let expr = value ?? "''";
    if (d.kind === 'time') {
      const label = timeExpr(b, q, d.grain, "(toDateTime(salt_day, 'UTC') + toIntervalHour(i))");
      expr = `arrayJoin(arrayDistinct(arrayMap(i -> ${label}, arrayFilter(i -> bitTest(hours, i) AND i >= ${lo} AND i < ${hi}, range(48)))))`;
    }
    return `CAST(${expr} AS String) AS ${q.aliases[i] ?? ''}`;
  });
  const column: ComponentColumn = side === 'event' ? 'ev_visitors' : 'se_visitors';
  return `SELECT ${[...dims, ...selectComponents({ [column]: 'toInt64(sum(visitors))' })].join(', ')} FROM salt_day_visitors WHERE ${where.join(' AND ')}${groupBy(q)}`;
}

/** One closed salt day's share of a range of local days: which of its local dates it covers, per time bucket. */
interface SegmentShare {
  readonly day: number;
  /** Bucket label ('' without a time dimension) → bit set of the covered dates (bit k = L0 + k). */
  readonly buckets: ReadonlyArray<readonly [string, number]>;
}

/**
 * How `salt_day_segments` answers the closed salt days `days` for `q`, or undefined when it
 * cannot: the range must be whole local days of the query's zone (a date-based range; hourly
 * buckets read the hour bitmaps), every salt day must have rows for that zone, and its 48 hours
 * must meet at most three local dates (every real zone; checked, not assumed).
 */
function segmentPlan(q: CoreQuery, days: readonly number[], zones: ReadonlyMap<number, readonly string[]> | undefined): SegmentShare[] | undefined {
  if (!q.range.dateBased || zones === undefined) return undefined;
  const time = q.dims.find((d): d is Extract<ResolvedDimension, { kind: 'time' }> => d.kind === 'time');
  if (time?.grain === 'hour') return undefined;
  const label = (date: IsoDate): string => {
    switch (time?.grain) {
      case undefined:
        return '';
      case 'week': {
        const monday = startOfWeek(date);
        return monday < q.range.firstDate ? q.range.firstDate : monday;
      }
      case 'month':
        return startOfMonth(date);
      default:
        return date;
    }
  };
  const shares: SegmentShare[] = [];
  for (const day of days) {
    if (zones.get(day)?.includes(q.tz) !== true) return undefined;
    const l0 = localDate(q.tz, day * DAY_MS);
    if (daysBetween(l0, localDate(q.tz, (day + 2) * DAY_MS - 1)) > 2) return undefined;
    const buckets = new Map<string, number>();
    for (let k = 0; k < 3; k++) {
      const date = addDays(l0, k);
      if (date < q.range.firstDate || date > q.range.lastDate) continue;
      const key = label(date);
      buckets.set(key, (buckets.get(key) ?? 0) | (1 << k));
    }
    if (buckets.size > 0) shares.push({ day, buckets: [...buckets] });
  }
  return shares;
}

/** The `salt_day_segments` column of a run of local dates (bit k = L0 + k): runs are contiguous. */
function segmentColumn(dates: number): string {
  if (![1, 2, 4, 3, 6, 7].includes(dates)) throw new Error(`no segment column for dates ${dates}`);
  return `v${dates}`;
}

/** The column of each run of local dates in a `salt_day_segments` row (see {@link segmentColumn}). */
export type SegmentRuns = 1 | 2 | 3 | 4 | 6 | 7;
/** A salt day's `salt_day_segments` counts of one (side, value, zone, generation): visitors per run of local dates. */
export type SegmentCounts = Readonly<Record<SegmentRuns, number>>;

/** A `salt_day_segments` row a kept count stands for: its dimension and value, and the label an answer shows. */
export interface KeptValue {
  readonly dim: string;
  readonly value: string;
  readonly label: string;
}

/**
 * The segment rows `q` reads when they are few and named ahead ({@link SaltDays.segmentCounts}):
 * the totals (dim `''`) without a breakdown value, or each goal of a goal list; undefined for any
 * other breakdown (its values are not known before the read).
 */
export function keptValues(q: CoreQuery): KeptValue[] | undefined {
  if (q.dims.length > 1) return undefined;
  const d = q.dims[0];
  if (d === undefined || d.kind === 'time') return [{ dim: '', value: '', label: '' }];
  if (d.kind !== 'goal' || q.goals.kind !== 'list') return undefined;
  const out: KeptValue[] = [];
  for (const g of q.goals.goals) {
    // The rollup selection's rows and label (rollupSelection): `Visit <path>` for pageview goals.
    if (g.kind === 'event') out.push({ dim: 'name', value: g.name, label: g.name });
    else if (!g.wildcard) out.push({ dim: 'page', value: g.path, label: `Visit ${g.path}` });
    else return undefined;
  }
  return out;
}

/**
 * The `salt_day_segments` dimension of a breakdown by one column dimension, on `side`, whose
 * values are kept per salt day when few ({@link SaltDays.dimensionCounts}); undefined otherwise.
 */
export function keptDimension(q: CoreQuery, side: 'event' | 'session'): string | undefined {
  const d = q.dims[0];
  if (q.dims.length !== 1 || d?.kind !== 'column') return undefined;
  return side === 'event' ? d.def.eventRollup : d.def.sessionRollup;
}

/** Per salt day of a plan, the known counts of each kept value. */
type KnownCounts = ReadonlyArray<ReadonlyArray<{ readonly label: string; readonly counts: SegmentCounts }>>;

/** The segment counts of `q`'s salt days, when every one is known: undefined otherwise. */
function knownCounts(
  q: CoreQuery,
  side: 'event' | 'session',
  shares: readonly SegmentShare[],
  gens: ReadonlyMap<number, string>,
  saltDays: SaltDays | undefined,
): KnownCounts | undefined {
  const dim = keptDimension(q, side);
  if (dim !== undefined) return knownDimension(q, side, dim, shares, gens, saltDays);
  const lookup = saltDays?.segmentCounts;
  const values = lookup === undefined ? undefined : keptValues(q);
  if (lookup === undefined || values === undefined) return undefined;
  const out: { label: string; counts: SegmentCounts }[][] = [];
  for (const s of shares) {
    const gen = gens.get(s.day);
    const day: { label: string; counts: SegmentCounts }[] = [];
    for (const v of values) {
      const counts = gen === undefined ? undefined : lookup(side, q.tz, s.day, gen, v.dim, v.value);
      if (counts === undefined) return undefined;
      day.push({ label: v.label, counts });
    }
    out.push(day);
  }
  return out;
}

/**
 * The kept counts of every value of a column breakdown, labelled as the rollup read labels them
 * and kept to its filters (the planner sends only case-sensitive `is` on the dimension here;
 * anything else reads the table).
 */
function knownDimension(
  q: CoreQuery,
  side: 'event' | 'session',
  dim: string,
  shares: readonly SegmentShare[],
  gens: ReadonlyMap<number, string>,
  saltDays: SaltDays | undefined,
): KnownCounts | undefined {
  const lookup = saltDays?.dimensionCounts;
  const d = q.dims[0];
  if (lookup === undefined || d?.kind !== 'column') return undefined;
  const wanted: (readonly string[])[] = [];
  for (const f of allFilters(q)) {
    if (f.kind !== 'leaf' || f.op !== 'is' || !f.caseSensitive || f.dimension.name !== d.name) return undefined;
    wanted.push(f.values);
  }
  const out: { label: string; counts: SegmentCounts }[][] = [];
  for (const s of shares) {
    const gen = gens.get(s.day);
    const values = gen === undefined ? undefined : lookup(side, q.tz, s.day, gen, dim);
    if (values === undefined) return undefined;
    const day: { label: string; counts: SegmentCounts }[] = [];
    for (const [value, counts] of values) {
      const label = value === '' && d.def.emptyLabel !== undefined ? d.def.emptyLabel : value;
      if (wanted.every((vs) => vs.includes(label))) day.push({ label, counts });
    }
    out.push(day);
  }
  return out;
}

/** A row an answer takes from memory, not from a statement: its dimension values and the sums it adds. */
export interface ConstantRow {
  readonly dims: readonly string[];
  readonly sums: Partial<Record<ComponentColumn, number>>;
}

/**
 * Visitors of salt days whose `salt_day_segments` counts are known: the same sums
 * {@link segmentVisitors} makes, added up here (a table read less). A value or bucket with no
 * visitor is no row, as there; without dimensions, one row.
 */
function visitorConstants(b: SqlBuilder, q: CoreQuery, side: 'event' | 'session', shares: readonly SegmentShare[], known: KnownCounts): ConstantRow[] {
  // The counts are that table's (read when first needed), so the answer still names it.
  b.tables.add('salt_day_segments');
  const column: ComponentColumn = side === 'event' ? 'ev_visitors' : 'se_visitors';
  const byRow = new Map<string, number>();
  const timed = q.dims[0]?.kind === 'time';
  shares.forEach((s, i) => {
    for (const [bucket, dates] of s.buckets) {
      segmentColumn(dates);
      for (const { label, counts } of known[i] ?? []) {
        const row = timed ? bucket : label;
        byRow.set(row, (byRow.get(row) ?? 0) + counts[dates as SegmentRuns]);
      }
    }
  });
  if (q.aliases.length === 0) return [{ dims: [], sums: { [column]: [...byRow.values()].reduce((a, n) => a + n, 0) } }];
  return [...byRow].filter(([, n]) => n > 0).map(([row, n]) => ({ dims: [row], sums: { [column]: n } }));
}

/** {@link visitorConstants} as a branch of a statement, bound as constants. */
function constantVisitors(b: SqlBuilder, q: CoreQuery, side: 'event' | 'session', shares: readonly SegmentShare[], known: KnownCounts): string {
  const column: ComponentColumn = side === 'event' ? 'ev_visitors' : 'se_visitors';
  const rows = visitorConstants(b, q, side, shares, known);
  const alias = q.aliases[0];
  if (alias === undefined) return `SELECT ${selectComponents({ [column]: b.bind('Int64', rows[0]?.sums[column] ?? 0) }).join(', ')}`;
  const pairs = `arrayZip(${b.bind('Array(String)', rows.map((r) => r.dims[0] ?? ''))}, ${b.bind('Array(Int64)', rows.map((r) => r.sums[column] ?? 0))})`;
  return `SELECT ${[`CAST(x.1 AS String) AS ${alias}`, ...selectComponents({ [column]: 'x.2' })].join(', ')} FROM (SELECT arrayJoin(${pairs}) AS x)`;
}

/**
 * Visitors of closed salt days from `salt_day_segments`: per salt day, the count of the run of
 * local dates the range (or each time bucket) covers: one row per salt day and value.
 */
function segmentVisitors(
  b: SqlBuilder,
  q: CoreQuery,
  site: string,
  side: 'event' | 'session',
  shares: readonly SegmentShare[],
  gens: ReadonlyMap<number, string>,
): string {
  b.tables.add('salt_day_segments');
  const { value, where } = rollupWhere(b, q, site, side);
  where.push(
    `side = '${side}'`,
    `tz = ${b.bind('String', q.tz)}`,
    `salt_day IN ${b.bind('Array(Date)', shares.map((s) => isoDay(s.day)))}`,
    `gen IN ${b.bind('Array(UInt64)', shares.map((s) => Number(gens.get(s.day) ?? 0)))}`,
  );
  const column: ComponentColumn = side === 'event' ? 'ev_visitors' : 'se_visitors';
  // Entries (salt day, bucket, covered dates), matched to each row by its salt day.
  const entries = shares.flatMap((s) => s.buckets.map(([bucket, dates]) => ({ day: s.day, bucket, dates })));
  if (entries.length === shares.length) {
    // One bucket per salt day (no time dimension, or one bucket each): each row's count is one of
    // its columns, chosen by its salt day. Most days of a range share the same covered dates (all
    // three): those take the plain column, the few others are named (a 30-day read is then a
    // plain sum, about twice as fast as a per-row lookup).
    const byDates = new Map<number, number[]>();
    for (const e of entries) byDates.set(e.dates, [...(byDates.get(e.dates) ?? []), e.day]);
    const groups = [...byDates].sort((x, y) => y[1].length - x[1].length || x[0] - y[0]);
    const [common] = groups[0] ?? [7];
    const named = groups.slice(1).flatMap(([dates, days]) => [`salt_day IN ${b.bind('Array(Date)', days.map(isoDay))}`, segmentColumn(dates)]);
    const count = named.length === 0 ? segmentColumn(common) : `multiIf(${named.join(', ')}, ${segmentColumn(common)})`;
    const buckets = new Map(entries.map((e) => [e.day, e.bucket]));
    const bucketOf = (): string => {
      const labels = [...new Set(buckets.values())];
      if (labels.length === 1) return b.bind('String', labels[0] ?? '');
      const pairs = [...buckets].flatMap(([day, label]) => [`salt_day = ${b.bind('Date', isoDay(day))}`, b.bind('String', label)]);
      return `multiIf(${pairs.join(', ')}, '')`;
    };
    const dims = q.dims.map((d, i) => `CAST(${d.kind === 'time' ? bucketOf() : (value ?? "''")} AS String) AS ${q.aliases[i] ?? ''}`);
    // A value or bucket with no visitor in the dates covered is no row (as in raw answers).
    return `SELECT ${[...dims, ...selectComponents({ [column]: `toInt64(sum(${count}))` })].join(', ')} FROM salt_day_segments WHERE ${where.join(' AND ')}${groupBy(q)}${q.aliases.length > 0 ? ` HAVING ${column} > 0` : ''}`;
  }
  const entryDays = b.bind('Array(UInt32)', entries.map((e) => e.day));
  const entryDates = b.bind('Array(UInt8)', entries.map((e) => e.dates));
  // Several buckets per salt day (a time dimension): one row copy per bucket of its salt day.
  const pick = `arrayJoin(arrayFilter(i -> ${entryDays}[i] = toUInt32(salt_day), arrayEnumerate(${entryDays})))`;
  const count = `multiIf(m = 7, v7, m = 3, v3, m = 6, v6, m = 1, v1, m = 2, v2, m = 4, v4, 0)`;
  const dims = q.dims.map((d, i) => {
    const expr = d.kind === 'time' ? `${b.bind('Array(String)', entries.map((e) => e.bucket))}[i]` : (value ?? "''");
    return `CAST(${expr} AS String) AS ${q.aliases[i] ?? ''}`;
  });
  return `SELECT ${[...dims, ...selectComponents({ [column]: 'toInt64(sum(n))' })].join(', ')}
FROM (SELECT *, ${pick} AS i, ${entryDates}[i] AS m, ${count} AS n FROM salt_day_segments WHERE ${where.join(' AND ')}) WHERE n > 0${groupBy(q)}`;
}

/**
 * The grouped component sums of `q` as the statements' branches (each a grouped SELECT with the
 * columns `d0…` and {@link componentColumns}), and, when `constants` is given, the rows known
 * without a read ({@link ConstantRow}: visitors from kept segment counts) pushed there instead of
 * bound into a branch. From the rollups, unique visitors come from the closed salt days in
 * `saltDays` and from raw rows of the others.
 */
export function coreBranches(b: SqlBuilder, q: CoreQuery, site: string, source: Source, saltDays?: SaltDays, constants?: ConstantRow[]): string[] {
  const branches: string[] = [];
  if (source === 'raw') {
    branches.push(...rawSides(b, q, site, 'pushed'));
  } else {
    const grain = source === 'rollup_daily' ? 'day' : 'hour';
    // A side asked for nothing but visitors needs no sums.
    if ([...q.event].some((c) => c !== 'visitors')) branches.push(rollupSide(b, q, site, 'event', grain));
    if ([...q.session].some((c) => c !== 'visitors')) branches.push(rollupSide(b, q, site, 'session', grain));
    if (q.event.has('visitors')) branches.push(...visitorBranches(b, q, site, 'event', saltDays, constants));
    if (q.session.has('visitors')) branches.push(...visitorBranches(b, q, site, 'session', saltDays, constants));
  }
  return branches;
}

/** The branches of {@link coreBranches} summed per dimension tuple (one row with no dimensions). */
export function sumBranches(q: CoreQuery, branches: readonly string[]): string {
  if (branches.length === 0) throw new Error('a query computes at least one component');
  // One branch grouped by the dimensions is its own sum (a layer less to plan: planning, not rows,
  // is most of a rollup answer's time). Without dimensions the sum stays: it makes the one row.
  if (branches.length === 1 && q.aliases.length > 0) return branches[0] ?? '';
  const sums = componentColumns.map((c) => `sum(${c}) AS ${c}`);
  return `SELECT ${[...q.aliases, ...sums].join(', ')} FROM (${branches.join(' UNION ALL ')})${groupBy(q)}`;
}

/**
 * The grouped component sums of `q`: one row per dimension tuple (one row with no dimensions),
 * columns `d0…` and {@link componentColumns}, in one statement.
 */
export function coreSelect(b: SqlBuilder, q: CoreQuery, site: string, source: Source, saltDays?: SaltDays): string {
  return sumBranches(q, coreBranches(b, q, site, source, saltDays));
}

export interface FinalOptions {
  /** `ORDER BY` terms over the output columns. */
  orderBy: readonly string[];
  limit: number;
  offset: number;
  totalRows: boolean;
  /** Per-group totals joined on the dimensions they keep (`g_visitors`). */
  groupTotals?: { sql: string; aliases: readonly string[] };
  /** One-row totals (a core select without dimensions) added to every row as `alias`, from its `column`. */
  totals?: ReadonlyArray<{ sql: string; column: ComponentColumn; alias: string }>;
}

/** The main statement: core sums, optional group totals, order, page and row count. */
export function finalSelect(b: SqlBuilder, q: CoreQuery, core: string, o: FinalOptions): string {
  const order = o.orderBy.length === 0 ? '' : ` ORDER BY ${o.orderBy.join(', ')}`;
  const page = ` LIMIT ${b.bind('UInt32', o.limit)} OFFSET ${b.bind('UInt32', o.offset)}`;
  // Nothing to join or count: the core select (one SELECT, grouped) takes the order and the page
  // itself, a layer less to plan. Its columns are the dimensions and every component; readers
  // take a missing `g_visitors` as 0.
  const totals = o.totals ?? [];
  if (o.groupTotals === undefined && !o.totalRows && totals.length === 0) return `${core}${order}${page}`;
  const columns = [...q.aliases.map((a) => `m.${a} AS ${a}`), ...componentColumns.map((c) => `m.${c} AS ${c}`)];
  let from = `(${core}) AS m`;
  if (o.groupTotals !== undefined) {
    columns.push('g.ev_visitors AS g_visitors');
    const keys = o.groupTotals.aliases;
    from +=
      keys.length === 0
        ? ` CROSS JOIN (${o.groupTotals.sql}) AS g`
        : ` LEFT JOIN (${o.groupTotals.sql}) AS g ON ${keys.map((k) => `m.${k} = g.${k}`).join(' AND ')}`;
  } else {
    columns.push('toInt64(0) AS g_visitors');
  }
  // Totals in the same statement (a statement less to plan): one row each, crossed with every row.
  totals.forEach((t, i) => {
    columns.push(`t${i}.${t.alias} AS ${t.alias}`);
    from += ` CROSS JOIN (SELECT ${t.column} AS ${t.alias} FROM (${t.sql})) AS t${i}`;
  });
  if (o.totalRows) columns.push('count() OVER () AS total_rows');
  return `SELECT ${columns.join(', ')} FROM ${from}${order}${page}`;
}
