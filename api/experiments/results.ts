import type { Experiment, Goal } from '../../schemas/experiment.ts';
import type { Store } from '../../store/store.ts';
import { resolveDateRange } from '../export/date-range.ts';
import type { QuerySite } from '../query/query.ts';
import { globToRegex } from '../query/sql.ts';
import { experimentResults, type ExperimentResults } from '../stats/experiment.ts';

/**
 * `GET /api/v2/experiments/:id/results`: counts from the raw events, statistics
 * from api/stats.
 *
 * How visitors are counted:
 * - An exposure is an event of the site carrying the experiment's id in `exp_ids` (the tracker
 *   attaches `exp` once the visitor is assigned and the variation applied). Only variation keys of
 *   the definition count; anything else in `exp` is ignored (the ingest API is public).
 * - A visitor is a distinct `visitor_id`. Visitor ids are hashed with a salt that changes daily,
 *   so a visitor who comes back on another day is a new visitor with a new first exposure: over
 *   several days "visitors" overcount people, and a conversion on a later day than the exposure
 *   counts only if that day's id was exposed too (the tracker attaches `exp` to what it sends
 *   whenever the experiment applies, so a returning visitor usually is).
 * - A visitor seen in several variations (cookie cleared, two devices behind one daily id) counts
 *   in the variation of their first exposure only, ties broken by the smaller key: intent-to-treat,
 *   which keeps the sample-ratio test meaningful instead of dropping a variation-dependent subset.
 * - A conversion is an exposed visitor with a goal event (custom event by name, or a pageview of
 *   the path glob) at or after their first exposure, within the range. The exposing pageview
 *   itself counts when it matches the goal.
 */

export interface ExposureQuery {
  site: string;
  experimentId: string;
  /** Variation keys of the definition. */
  keys: readonly string[];
  goal: Goal;
  /** [start, end) in epoch milliseconds. */
  start: number;
  end: number;
}

export interface VariationCounts {
  exposures: number;
  conversions: number;
}

/** Exposed visitors and converted visitors per variation key (keys without exposures are 0). */
export async function exposureCounts(store: Store, q: ExposureQuery): Promise<Map<string, VariationCounts>> {
  const params: Record<string, unknown> = {
    site: q.site,
    exp: q.experimentId,
    keys: [...q.keys],
    t0: new Date(q.start),
    t1: new Date(q.end),
  };
  let goal: string;
  if (q.goal.type === 'event') {
    goal = 'name = {goal:String}';
    params['goal'] = q.goal.name;
  } else if (q.goal.path.includes('*')) {
    goal = "name = 'pageview' AND match(pathname, {goal:String})";
    params['goal'] = globToRegex(q.goal.path);
  } else {
    goal = "name = 'pageview' AND pathname = {goal:String}";
    params['goal'] = q.goal.path;
  }
  const range = "site = {site:String} AND timestamp >= {t0:DateTime64(3, 'UTC')} AND timestamp < {t1:DateTime64(3, 'UTC')}";
  const rows = await store.query<{ variation: string; exposures: string; conversions: string }>(
    `WITH exposed AS (
       SELECT visitor_id, argMin(v, (timestamp, v)) AS variation, min(timestamp) AS first_seen
       FROM (
         SELECT visitor_id, timestamp, arrayElement(exp_variants, indexOf(exp_ids, {exp:String})) AS v
         FROM events
         WHERE ${range} AND has(exp_ids, {exp:String})
       )
       WHERE v IN {keys:Array(String)}
       GROUP BY visitor_id
     ),
     converted AS (
       SELECT visitor_id, max(timestamp) AS last_goal, 1 AS hit
       FROM events
       WHERE ${range} AND ${goal} AND visitor_id IN (SELECT visitor_id FROM exposed)
       GROUP BY visitor_id
     )
     SELECT x.variation AS variation, count() AS exposures, countIf(c.hit = 1 AND c.last_goal >= x.first_seen) AS conversions
     FROM exposed AS x LEFT JOIN converted AS c ON c.visitor_id = x.visitor_id
     GROUP BY variation`,
    params,
  );
  const out = new Map<string, VariationCounts>(q.keys.map((k) => [k, { exposures: 0, conversions: 0 }]));
  for (const r of rows) out.set(r.variation, { exposures: Number(r.exposures), conversions: Number(r.conversions) });
  return out;
}

export interface ExperimentReport {
  experiment: Pick<Experiment, 'id' | 'name' | 'status' | 'goal' | 'control'> & { started_at?: string; stopped_at?: string };
  /** The range counted, ISO 8601 in the site's zone (the end is its last second). */
  date_range: [string, string];
  /** The statistics over the variations that get traffic (api/stats/experiment.ts). */
  results: ExperimentResults;
  /** Variations with weight 0 (no new traffic): counted, but out of the tests. */
  paused_variations: { key: string; exposures: number; conversions: number }[];
  meta: { visitors: 'distinct_daily_visitor_ids'; multiple_variations: 'first_exposure' };
}

/**
 * The results of `experiment` for `site`. Without `dateRange` the range is the experiment's run:
 * from `started_at` (or the beginning) to `stopped_at` (or now). With one, it is resolved by the
 * query engine exactly as `POST /api/v2/query` would (400 naming `date_range` when invalid).
 */
export async function experimentReport(store: Store, site: QuerySite, experiment: Experiment, dateRange: unknown, now: Date): Promise<ExperimentReport> {
  let start: number;
  let end: number;
  let echo: [string, string];
  if (dateRange === undefined) {
    start = experiment.started_at === undefined ? 0 : Date.parse(experiment.started_at);
    end = experiment.stopped_at === undefined ? now.getTime() + 1 : Date.parse(experiment.stopped_at) + 1;
    echo = [new Date(start).toISOString(), new Date(end - 1).toISOString()];
  } else {
    const r = await resolveDateRange(store, site, dateRange, now);
    ({ start, end } = r);
    echo = r.iso;
  }
  const counts = await exposureCounts(store, {
    site: site.domain,
    experimentId: experiment.id,
    keys: experiment.variations.map((v) => v.key),
    goal: experiment.goal,
    start,
    end,
  });
  const active = experiment.variations.filter((v) => v.weight > 0);
  const paused = experiment.variations.filter((v) => v.weight === 0);
  const results = experimentResults({
    variations: active.map((v) => ({
      key: v.key,
      ...(counts.get(v.key) ?? { exposures: 0, conversions: 0 }),
      weight: v.weight,
      control: v.key === experiment.control,
    })),
  });
  const summary: ExperimentReport['experiment'] = {
    id: experiment.id,
    name: experiment.name,
    status: experiment.status,
    goal: experiment.goal,
    control: experiment.control,
  };
  if (experiment.started_at !== undefined) summary.started_at = experiment.started_at;
  if (experiment.stopped_at !== undefined) summary.stopped_at = experiment.stopped_at;
  return {
    experiment: summary,
    date_range: echo,
    results,
    paused_variations: paused.map((v) => ({ key: v.key, ...(counts.get(v.key) ?? { exposures: 0, conversions: 0 }) })),
    meta: { visitors: 'distinct_daily_visitor_ids', multiple_variations: 'first_exposure' },
  };
}
