// @ts-check
// What the dashboard shows: periods, metrics, dimensions and the breakdown panels.

/** @typedef {'count' | 'ratio' | 'percent' | 'duration'} MetricKind */
/** @typedef {{ label: string, short: string, kind: MetricKind }} MetricInfo */
/** @typedef {{ key: string, label: string, dimension: string, metrics: string[] }} PanelTab */
/** @typedef {{ id: string, tabs: PanelTab[] }} Panel */

export const TOKEN_KEY = 'farol_token';
export const PERIODS = ['realtime', 'day', '7d', '28d', '30d', 'month', '6mo', '12mo', 'year', 'all', 'custom'];
export const COMPARES = ['off', 'previous_period', 'year_over_year'];
export const DEFAULT_PERIOD = '28d';
/** Rows per breakdown panel. */
export const ROWS = 10;

/** @type {Record<string, MetricInfo>} */
export const METRICS = {
  visitors: { label: 'Unique visitors', short: 'Visitors', kind: 'count' },
  visits: { label: 'Total visits', short: 'Visits', kind: 'count' },
  pageviews: { label: 'Total pageviews', short: 'Pageviews', kind: 'count' },
  views_per_visit: { label: 'Views per visit', short: 'Views per visit', kind: 'ratio' },
  bounce_rate: { label: 'Bounce rate', short: 'Bounce rate', kind: 'percent' },
  visit_duration: { label: 'Visit duration', short: 'Visit duration', kind: 'duration' },
  events: { label: 'Total events', short: 'Events', kind: 'count' },
  conversion_rate: { label: 'Conversion rate', short: 'CR', kind: 'percent' },
  percentage: { label: 'Percentage', short: '%', kind: 'percent' },
};
export const TOP_METRICS = ['visitors', 'visits', 'pageviews', 'views_per_visit', 'bounce_rate', 'visit_duration'];
/** Lower is better: its change is shown green when it goes down. */
export const LOWER_IS_BETTER = new Set(['bounce_rate']);
/** Changes the API gives in points rather than percent. */
export const POINT_CHANGES = new Set(['bounce_rate', 'conversion_rate', 'percentage']);

/** @type {Record<string, string>} */
export const DIMENSION_LABELS = {
  'event:page': 'Page',
  'visit:entry_page': 'Entry page',
  'visit:exit_page': 'Exit page',
  'visit:source': 'Source',
  'visit:channel': 'Channel',
  'visit:utm_medium': 'UTM medium',
  'visit:utm_source': 'UTM source',
  'visit:utm_campaign': 'UTM campaign',
  'visit:country': 'Country',
  'visit:device': 'Device',
  'visit:browser': 'Browser',
  'visit:os': 'OS',
  'event:goal': 'Goal',
};

/** @type {Panel[]} */
export const PANELS = [
  {
    id: 'pages',
    tabs: [
      { key: 'page', label: 'Top pages', dimension: 'event:page', metrics: ['visitors', 'pageviews'] },
      { key: 'entry', label: 'Entry pages', dimension: 'visit:entry_page', metrics: ['visitors', 'visits'] },
      { key: 'exit', label: 'Exit pages', dimension: 'visit:exit_page', metrics: ['visitors', 'visits'] },
    ],
  },
  {
    id: 'sources',
    tabs: [
      { key: 'channel', label: 'Channels', dimension: 'visit:channel', metrics: ['visitors'] },
      { key: 'source', label: 'Sources', dimension: 'visit:source', metrics: ['visitors'] },
      { key: 'utm_medium', label: 'UTM medium', dimension: 'visit:utm_medium', metrics: ['visitors'] },
      { key: 'utm_source', label: 'UTM source', dimension: 'visit:utm_source', metrics: ['visitors'] },
      { key: 'utm_campaign', label: 'UTM campaign', dimension: 'visit:utm_campaign', metrics: ['visitors'] },
    ],
  },
  {
    id: 'locations',
    tabs: [{ key: 'country', label: 'Countries', dimension: 'visit:country', metrics: ['visitors'] }],
  },
  {
    id: 'devices',
    tabs: [
      { key: 'device', label: 'Devices', dimension: 'visit:device', metrics: ['visitors'] },
      { key: 'browser', label: 'Browsers', dimension: 'visit:browser', metrics: ['visitors'] },
      { key: 'os', label: 'Operating systems', dimension: 'visit:os', metrics: ['visitors'] },
    ],
  },
  {
    id: 'goals',
    tabs: [{ key: 'goal', label: 'Goals', dimension: 'event:goal', metrics: ['visitors', 'events', 'conversion_rate'] }],
  },
];

