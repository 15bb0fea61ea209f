import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, SITE_A, SITE_B, startApiHarness, type ApiHarness, type Reply } from '../api/experiments/testing/api-harness.ts';
import { filterOperators, metricNames } from '../api/query/schema.ts';
import { dateRangeShortcuts } from '../api/query/time.ts';
import { eventRow } from '../store/rows.ts';
import { makeEvent } from '../schemas/testing/events.ts';

/**
 * Property tests of `POST /api/v2/query` on the real API over chDB (issue #8, finding 7): whatever
 * the body, the answer is a 200 or a coded 4xx, never a 5xx; every bad `date_range` is a 400 naming
 * it, every good one a 200.
 */

let h: ApiHarness;

async function query(body: unknown): Promise<Reply> {
  return call(h.url, 'POST', '/api/v2/query', h.tokens.viewer, body);
}

function errorOf(r: Reply): { code?: string; field?: string } {
  return (r.json as { error?: { code?: string; field?: string } } | undefined)?.error ?? {};
}

/** What every answer must be: a 200, or a 4xx with a catalogue code. */
function expectCoded(r: Reply, body: unknown): void {
  const context = JSON.stringify({ body, answer: r.json }).slice(0, 600);
  if (r.status === 200) return;
  expect(r.status, context).toBeGreaterThanOrEqual(400);
  expect(r.status, context).toBeLessThan(500);
  expect(errorOf(r).code, context).toMatch(/^API_[A-Z_]+$/);
}

beforeAll(async () => {
  h = await startApiHarness();
  // A few events, so accepted queries read rows: a day ago, with props and a referrer.
  const ts = Date.now() - 86_400_000;
  const rows = Array.from({ length: 20 }, (_, i) => {
    const e = makeEvent({
      id: `fuzz-${i}`,
      site: SITE_A,
      ts: ts + i * 60_000,
      name: i % 4 === 0 ? 'Signup' : 'pageview',
      hostname: SITE_A,
      pathname: `/p${i % 5}`,
      ...(i % 2 === 0 ? { referrer: 'https://ref.example/', source: 'ref.example', channel: 'Referral' } : {}),
      visitorId: String(1000 + (i % 7)),
      props: { plan: i % 3 === 0 ? 'pro' : 'free' },
      revenue: i % 4 === 0 ? { currency: 'EUR', amount: 9.5 } : null,
      exp: i % 2 === 0 ? { e1: 'A' } : {},
    });
    return eventRow(e, String(2000 + (i % 7)));
  });
  await h.store.insert('events', rows);
}, 120_000);

afterAll(async () => {
  await h?.close();
});

// ---------------------------------------------------------------------------------------------
// date_range

const pad = (n: number, width: number): string => String(Math.abs(n)).padStart(width, '0');

/** A year as ISO 8601 writes it: four digits, or signed six beyond 0000-9999. */
function yearText(y: number): string {
  return y >= 0 && y <= 9999 ? pad(y, 4) : `${y < 0 ? '-' : '+'}${pad(y, 6)}`;
}

const year = fc.oneof(
  fc.constantFrom(0, 1, 99, 100, 1899, 1900, 1969, 1970, 1971, 2024, 2099, 2100, 2106, 2149, 2299, 2300, 9999, 10_000, 275_760, -1, -271_821),
  fc.integer({ min: -300_000, max: 300_000 }),
  fc.integer({ min: 1965, max: 2110 }),
);
const month = fc.oneof({ weight: 6, arbitrary: fc.integer({ min: 1, max: 12 }) }, { weight: 1, arbitrary: fc.constantFrom(0, 13, 99) });
const dayOfMonth = fc.oneof({ weight: 6, arbitrary: fc.integer({ min: 1, max: 28 }) }, { weight: 1, arbitrary: fc.constantFrom(0, 29, 30, 31, 32) });
const date = fc.tuple(year, month, dayOfMonth).map(([y, m, d]) => `${yearText(y)}-${pad(m, 2)}-${pad(d, 2)}`);
const offset = fc.oneof(
  fc.constant(''),
  fc.constant('Z'),
  fc.tuple(fc.constantFrom('+', '-'), fc.integer({ min: 0, max: 25 }), fc.integer({ min: 0, max: 61 }), fc.boolean()).map(
    ([sign, hh, mm, colon]) => `${sign}${pad(hh, 2)}${colon ? ':' : ''}${pad(mm, 2)}`,
  ),
);
const dateTime = fc
  .tuple(date, fc.constantFrom('T', ' ', 't'), fc.integer({ min: 0, max: 25 }), fc.integer({ min: 0, max: 61 }), fc.option(fc.integer({ min: 0, max: 61 })), fc.option(fc.stringMatching(/^[0-9]{1,12}$/)), offset)
  .map(([d, sep, hh, mm, ss, frac, off]) => `${d}${sep}${pad(hh, 2)}:${pad(mm, 2)}${ss === null ? '' : `:${pad(ss, 2)}${frac === null ? '' : `.${frac}`}`}${off}`);
const oddText = fc.oneof(
  fc.constantFrom('2024-02-30', '2023-02-29', '2024-2-3', '', ' 2024-01-01', '2024-01-01 ', '2024-01-01\u0000', '２０２４-01-01', '2024-01-01T', '2024-W01', '\ud800', 'NaN'),
  fc.string({ maxLength: 30 }),
);
const endpoint = fc.oneof({ weight: 3, arbitrary: date }, { weight: 3, arbitrary: dateTime }, { weight: 1, arbitrary: oddText }, { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 1 }) });
/** Two real dates days apart, anywhere from year 100 to 9999: the near-bounds cases. */
const nearPair = fc
  .tuple(fc.oneof(year, fc.constantFrom(1970, 2099, 9999)), month, fc.integer({ min: 1, max: 28 }), fc.integer({ min: 0, max: 400 }))
  .filter(([y]) => y >= 100 && y <= 9999)
  .map(([y, m, d, days]) => {
    const from = `${yearText(y)}-${pad(m, 2)}-${pad(d, 2)}`;
    const t = Date.parse(`${from}T00:00:00Z`) + days * 86_400_000;
    const to = Number.isNaN(t) || t >= Date.UTC(10_000, 0, 1) ? from : new Date(t).toISOString().slice(0, 10);
    return [from, to];
  });
const dateRange = fc.oneof(
  { weight: 4, arbitrary: fc.tuple(endpoint, endpoint) },
  { weight: 3, arbitrary: nearPair },
  { weight: 1, arbitrary: fc.constantFrom(...dateRangeShortcuts) },
  { weight: 1, arbitrary: fc.array(endpoint, { maxLength: 4 }) },
  { weight: 1, arbitrary: fc.constant(Array.from({ length: 10_000 }, () => '2024-01-01')) },
  { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 2 }) },
);

/** Whether `text` is a real calendar date `YYYY-MM-DD` (a check written apart from the engine's). */
function calendarDate(text: unknown): text is string {
  if (typeof text !== 'string' || !/^\d{4}-\d{2}-\d{2}$/.test(text) || text < '0100') return false;
  const t = Date.parse(`${text}T00:00:00Z`);
  return !Number.isNaN(t) && new Date(t).toISOString().startsWith(text);
}

const inSpan = (text: string): boolean => text >= '1970-01-01' && text <= '2099-12-31';

describe('date_range', () => {
  it('9999-12-31 and friends are 400s naming date_range', async () => {
    for (const range of [
      ['9999-12-31', '9999-12-31'],
      ['2024-01-01', '9999-12-31'],
      ['1969-12-31', '1970-01-02'],
      ['2100-01-01', '2100-01-02'],
      ['2024-02-30', '2024-03-01'],
      ['+275760-09-13', '+275760-09-13'],
      ['9999-12-31T23:59:59Z', '9999-12-31T23:59:59Z'],
      ['1970-01-01T00:00:00+01:00', '1970-01-02T00:00:00Z'],
    ]) {
      const r = await query({ site_id: SITE_A, metrics: ['visitors'], date_range: range });
      expect(r.status, JSON.stringify({ range, answer: r.json })).toBe(400);
      expect(errorOf(r)).toMatchObject({ code: 'API_BAD_QUERY' });
      expect(errorOf(r).field).toMatch(/^date_range/);
    }
  });

  it('a comparison that would reach before 1970 is a 400 naming it', async () => {
    for (const mode of ['previous_period', 'year_over_year'] as const) {
      const r = await query({ site_id: SITE_A, metrics: ['visitors'], date_range: ['1970-01-01', '1970-01-31'], include: { comparisons: { mode } } });
      expect(r.status, JSON.stringify(r.json)).toBe(400);
      expect(errorOf(r).field).toBe('include.comparisons');
    }
  });

  it('any date_range answers 200 or a 400 naming date_range: dates outside 1970-2099 are refused, pairs inside a year or less apart answered (property)', async () => {
    await fc.assert(
      fc.asyncProperty(dateRange, fc.boolean(), async (range, compare) => {
        const body = { site_id: SITE_A, metrics: ['visitors', 'pageviews'], date_range: range, ...(compare ? { include: { comparisons: { mode: 'year_over_year' } } } : {}) };
        const r = await query(body);
        const context = JSON.stringify({ range: JSON.stringify(range).slice(0, 200), compare, answer: r.json });
        if (r.status !== 200) {
          expect(r.status, context).toBe(400);
          // A string that is not well-formed Unicode (or holds NUL) is refused at the door, as in every body.
          expect(errorOf(r).code, context).toMatch(/^API_BAD_(QUERY|REQUEST)$/);
          expect(errorOf(r).field, context).toMatch(compare ? /^(date_range|include\.comparisons)/ : /^date_range/);
        }
        const [from, to] = Array.isArray(range) && range.length === 2 ? (range as unknown[]) : [];
        if (calendarDate(from) && calendarDate(to)) {
          // Outside the span ClickHouse's date types hold: refused, never read wrapped around.
          if (!inSpan(from) || !inSpan(to)) expect(errorOf(r).field, context).toMatch(/^date_range/);
          // Inside it, a year or less apart (the comparison a year back still after 1970): answered.
          else if (from <= to && from >= '1971-01-01' && Date.parse(to) - Date.parse(from) <= 366 * 86_400_000) expect(r.status, context).toBe(200);
        }
      }),
      { numRuns: 250 },
    );
  }, 300_000);

  it('valid date pairs anywhere in the span answer 200 (property)', async () => {
    const day = fc.integer({ min: 0, max: Date.UTC(2099, 11, 31) / 86_400_000 }).map((n) => new Date(n * 86_400_000).toISOString().slice(0, 10));
    await fc.assert(
      fc.asyncProperty(day, fc.integer({ min: 0, max: 7300 }), async (from, days) => {
        const to = new Date(Date.parse(from) + days * 86_400_000).toISOString().slice(0, 10);
        if (to > '2099-12-31') return;
        const r = await query({ site_id: SITE_A, metrics: ['visitors'], date_range: [from, to] });
        expect(r.status, JSON.stringify({ from, to, answer: r.json })).toBe(200);
      }),
      { numRuns: 100 },
    );
  }, 300_000);
});

// ---------------------------------------------------------------------------------------------
// The whole body

const oddString = fc.oneof(
  fc.string({ maxLength: 20 }),
  fc.string({ unit: 'binary', maxLength: 20 }),
  fc.constantFrom('\ud800', 'a\udfffb', '\u0000', "' OR 1=1 --", '{p0:String}', '(', '(a)\\1', '[', '\\', 'x'.repeat(3000), '(?i)', '.*', '^$'),
);
const anything = fc.oneof(fc.jsonValue({ maxDepth: 3 }), oddString, fc.constantFrom(1e308, -1e308, 0, -0, 2 ** 53, 1.5, null, true));
/** Mostly `arb`, sometimes anything: most bodies get past the validator to the engine. */
const maybe = <T>(arb: fc.Arbitrary<T>): fc.Arbitrary<T | unknown> => fc.oneof({ weight: 15, arbitrary: arb }, { weight: 1, arbitrary: anything });
const dimensionNames = ['event:page', 'event:hostname', 'event:goal', 'event:name', 'event:props:plan', "event:props:it's", 'visit:entry_page', 'visit:exit_page', 'visit:source', 'visit:referrer', 'visit:channel', 'visit:utm_source', 'visit:device', 'visit:browser', 'visit:os', 'visit:country', 'visit:country_name', 'visit:screen', 'time', 'time:hour', 'time:day', 'time:week', 'time:month', 'experiment:variation'];
const dimension = fc.oneof({ weight: 6, arbitrary: fc.constantFrom(...dimensionNames) }, { weight: 1, arbitrary: oddString });
const filterValue = fc.oneof({ weight: 4, arbitrary: oddString }, { weight: 1, arbitrary: fc.constantFrom('/p1', 'pro', 'PT', 'Signup', 'Desktop') }, { weight: 1, arbitrary: anything });
const leaf = fc
  .tuple(maybe(fc.constantFrom(...filterOperators)), dimension, maybe(fc.array(filterValue, { minLength: 1, maxLength: 4 })), fc.option(maybe(fc.record({ case_sensitive: fc.boolean() })), { nil: undefined }))
  .map(([op, dim, values, opts]) => (opts === undefined ? [op, dim, values] : [op, dim, values, opts]));
const filter = fc.letrec<{ node: unknown }>((tie) => ({
  node: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    leaf,
    fc.tuple(fc.constantFrom('and', 'or'), fc.array(tie('node'), { maxLength: 3 })),
    fc.tuple(fc.constant('not'), tie('node')),
    anything,
  ),
})).node;
const metrics = fc.subarray([...metricNames], { minLength: 1 });
const body = fc.oneof(
  { weight: 1, arbitrary: anything },
  {
    weight: 8,
    arbitrary: fc.record(
      {
        site_id: maybe(fc.oneof({ weight: 12, arbitrary: fc.constant(SITE_A) }, { weight: 1, arbitrary: fc.constantFrom(SITE_A.toUpperCase(), SITE_B, 'absent.test') })),
        metrics: maybe(metrics),
        date_range: maybe(fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...dateRangeShortcuts) }, { weight: 1, arbitrary: dateRange })),
        dimensions: maybe(fc.array(dimension, { maxLength: 3 })),
        filters: maybe(fc.array(filter, { maxLength: 3 })),
        order_by: maybe(fc.array(fc.tuple(fc.oneof(fc.constantFrom(...metricNames), dimension), fc.constantFrom('asc', 'desc')), { maxLength: 2 })),
        include: maybe(
          fc.record(
            {
              time_labels: maybe(fc.boolean()),
              total_rows: maybe(fc.boolean()),
              imports: maybe(fc.boolean()),
              comparisons: maybe(fc.record({ mode: maybe(fc.constantFrom('previous_period', 'year_over_year', 'custom')), date_range: maybe(dateRange), match_day_of_week: maybe(fc.boolean()) }, { requiredKeys: ['mode'] })),
            },
            { requiredKeys: [] },
          ),
        ),
        pagination: maybe(fc.record({ limit: maybe(fc.integer({ min: -1, max: 10_001 })), offset: maybe(fc.integer({ min: -1, max: 1_000_001 })) }, { requiredKeys: [] })),
      },
      { requiredKeys: ['site_id', 'metrics', 'date_range'] },
    ),
  },
);

/** Well-formed queries with odd values: most pass the validator, so the engine and ClickHouse see them. */
const engineBody = fc.record(
  {
    site_id: fc.constant(SITE_A),
    metrics: fc.subarray(['visitors', 'visits', 'pageviews', 'events', 'total_revenue', 'average_revenue'], { minLength: 1 }),
    date_range: fc.oneof({ weight: 3, arbitrary: fc.constantFrom(...dateRangeShortcuts) }, { weight: 1, arbitrary: fc.tuple(date, date) }),
    dimensions: fc.subarray(['event:page', 'event:name', 'event:props:plan', 'visit:source', 'visit:device', 'visit:country', 'experiment:variation', 'time'], { maxLength: 2 }),
    filters: fc.array(
      fc.letrec<{ node: unknown }>((tie) => ({
        node: fc.oneof(
          { depthSize: 'small', withCrossShrink: true },
          fc
            .tuple(fc.constantFrom(...filterOperators), fc.constantFrom('event:page', 'event:name', 'event:props:plan', "event:props:it's", 'visit:source', 'visit:referrer', 'visit:utm_source', 'experiment:variation', 'visit:entry_page'), fc.array(filterValue, { minLength: 1, maxLength: 4 }), fc.boolean())
            .map(([op, dim, values, cs]) => [op, dim, values.map((v) => (typeof v === 'string' ? v : String(v))), { case_sensitive: cs }]),
          fc.tuple(fc.constantFrom('and', 'or'), fc.array(tie('node'), { minLength: 1, maxLength: 3 })),
          fc.tuple(fc.constant('not'), tie('node')),
        ),
      })).node,
      { maxLength: 3 },
    ),
    include: fc.record({ total_rows: fc.boolean(), comparisons: fc.record({ mode: fc.constantFrom('previous_period', 'year_over_year') }) }, { requiredKeys: [] }),
    pagination: fc.record({ limit: fc.integer({ min: 1, max: 10_000 }), offset: fc.integer({ min: 0, max: 1_000_000 }) }, { requiredKeys: [] }),
  },
  { requiredKeys: ['site_id', 'metrics', 'date_range'] },
);

describe('any body', () => {
  it('answers 200 or a coded 4xx, never a 5xx (property)', async () => {
    await fc.assert(
      fc.asyncProperty(body, async (b) => {
        expectCoded(await query(b), b);
      }),
      { numRuns: 300 },
    );
  }, 600_000);

  it('well-formed queries with odd values reach ClickHouse and answer 200 or a coded 4xx, never a 5xx (property)', async () => {
    let ok = 0;
    await fc.assert(
      fc.asyncProperty(engineBody, async (b) => {
        const r = await query(b);
        expectCoded(r, b);
        if (r.status === 200) ok++;
      }),
      { numRuns: 150 },
    );
    // Many got past the validator (random dates and patterns are often refused).
    expect(ok).toBeGreaterThan(45);
  }, 600_000);

  it('bodies that are not JSON objects, or not JSON, are coded 400s', async () => {
    for (const raw of ['', 'null', '[]', '"x"', '{', '{"site_id":', '\u0000', '{"site_id":"one.test","metrics":["visitors"],"date_range":"7d","x":1}']) {
      const res = await fetch(`${h.url}/api/v2/query`, { method: 'POST', headers: { authorization: `Bearer ${h.tokens.viewer}`, 'content-type': 'application/json' }, body: raw });
      const json = (await res.json()) as { error?: { code?: string } };
      expect(res.status, raw).toBeGreaterThanOrEqual(400);
      expect(res.status, raw).toBeLessThan(500);
      expect(json.error?.code, raw).toMatch(/^API_/);
    }
  });
});
