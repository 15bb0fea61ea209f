import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseDimension } from './dimensions.ts';
import { ApiQueryError } from './errors.ts';
import { filterOperators, metricNames, parseQuery } from './schema.ts';

const base = { site_id: 'example.com', metrics: ['visitors'], date_range: '7d' };

function fieldOf(body: unknown): string {
  try {
    parseQuery(body);
  } catch (err) {
    if (err instanceof ApiQueryError) return err.field;
    throw err;
  }
  throw new Error('expected a rejection');
}

describe('parseQuery', () => {
  it('accepts Plausible-shaped queries', () => {
    const q = parseQuery({
      ...base,
      metrics: ['visitors', 'pageviews', 'bounce_rate', 'percentage'],
      date_range: ['2026-01-01', '2026-01-31'],
      dimensions: ['visit:source', 'time:day'],
      filters: [
        ['is', 'visit:country', ['PT', 'DE']],
        ['contains', 'event:page', ['/blog'], { case_sensitive: false }],
        ['or', [['is', 'visit:device', ['mobile']], ['not', ['matches', 'event:props:plan', ['^pro']]]]],
      ],
      order_by: [['visitors', 'desc'], ['time:day', 'asc']],
      include: { time_labels: true, total_rows: true, comparisons: { mode: 'previous_period' } },
      pagination: { limit: 100, offset: 200 },
    });
    expect(q.dimensions.map((d) => d.kind)).toEqual(['column', 'time']);
    expect(q.filters).toHaveLength(3);
    expect(q.filters[1]).toMatchObject({ kind: 'leaf', op: 'contains', caseSensitive: false, field: 'filters[1]' });
    expect(q.pagination).toEqual({ limit: 100, offset: 200 });
    expect(parseQuery(base).pagination).toEqual({ limit: 10_000, offset: 0 });
  });

  it.each([
    [{ ...base, extra: 1 }, 'extra'],
    [{ ...base, site_id: '' }, 'site_id'],
    [{ ...base, metrics: [] }, 'metrics'],
    [{ ...base, metrics: ['visitors', 'nope'] }, 'metrics[1]'],
    [{ ...base, metrics: ['visitors', 'visitors'] }, 'metrics[1]'],
    [{ ...base, date_range: 'yesterday' }, 'date_range'],
    [{ ...base, date_range: ['2026-01-01'] }, 'date_range'],
    [{ ...base, dimensions: ['visit:city'] }, 'dimensions[0]'],
    [{ ...base, dimensions: ['event:props:'] }, 'dimensions[0]'],
    [{ ...base, dimensions: ['time:day', 'time:hour'] }, 'dimensions'],
    [{ ...base, dimensions: ['visit:source', 'visit:source'] }, 'dimensions[1]'],
    [{ ...base, filters: [['is', 'visit:source']] }, 'filters[0]'],
    [{ ...base, filters: [['equals', 'visit:source', ['x']]] }, 'filters[0][0]'],
    [{ ...base, filters: [['is', 'visit:source', []]] }, 'filters[0][2]'],
    [{ ...base, filters: [['is', 'visit:source', [{}]]] }, 'filters[0][2][0]'],
    [{ ...base, filters: [['is', 'visit:source', ['x'], { case_sensitive: 'no' }]] }, 'filters[0][3].case_sensitive'],
    [{ ...base, filters: [['is', 'visit:source', ['x'], { other: true }]] }, 'filters[0][3].other'],
    [{ ...base, filters: [['is', 'time:day', ['2026-01-01']]] }, 'filters[0][1]'],
    [{ ...base, filters: [['is', 'visit:country', ['Portugal']]] }, 'filters[0][2][0]'],
    [{ ...base, filters: [['contains', 'event:goal', ['Sign']]] }, 'filters[0][0]'],
    [{ ...base, filters: [['not', ['is', 'event:goal', ['Signup']]]] }, 'filters[0][1]'],
    [{ ...base, filters: [['and', []]] }, 'filters[0]'],
    [{ ...base, filters: [['or', [['is', 'visit:source', ['x']], ['is', 'nope', ['x']]]]] }, 'filters[0][1][1][1]'],
    [{ ...base, order_by: [['pageviews', 'desc']] }, 'order_by[0][0]'],
    [{ ...base, order_by: [['visitors', 'up']] }, 'order_by[0][1]'],
    [{ ...base, metrics: ['conversion_rate'] }, 'metrics[0]'],
    [{ ...base, metrics: ['visitors', 'group_conversion_rate'], dimensions: ['visit:source'] }, 'metrics[1]'],
    [{ ...base, metrics: ['percentage'] }, 'metrics[0]'],
    [{ ...base, metrics: ['bounce_rate'], dimensions: ['event:goal'] }, 'metrics[0]'],
    [{ ...base, metrics: ['visit_duration'], dimensions: ['event:props:plan'] }, 'metrics[0]'],
    [{ ...base, metrics: ['views_per_visit'], filters: [['is', 'event:page', ['/']]] }, 'metrics[0]'],
    [{ ...base, include: { time_labels: true } }, 'include.time_labels'],
    [{ ...base, include: { comparisons: { mode: 'custom' } } }, 'include.comparisons.date_range'],
    [{ ...base, include: { comparisons: { mode: 'previous_period', date_range: ['2026-01-01', '2026-01-02'] } } }, 'include.comparisons.date_range'],
    [{ ...base, include: { comparisons: { mode: 'last_week' } } }, 'include.comparisons.mode'],
    [{ ...base, pagination: { limit: 10_001 } }, 'pagination.limit'],
    [{ ...base, pagination: { offset: -1 } }, 'pagination.offset'],
    [{ ...base, metrics: ['visitors'], filters: [['and', [['is', 'event:props:plan', ['pro']]]]], dimensions: ['event:goal'] }, null],
    ['not an object', 'body'],
    [null, 'body'],
  ])('%j is refused at %s', (body, field) => {
    if (field === null) expect(() => parseQuery(body)).not.toThrow();
    else expect(fieldOf(body)).toBe(field);
  });

  it('allows session metrics with event:page (they read the entry page) and goals with conversion rates', () => {
    expect(() => parseQuery({ ...base, metrics: ['bounce_rate', 'visit_duration'], dimensions: ['event:page'] })).not.toThrow();
    expect(() => parseQuery({ ...base, metrics: ['conversion_rate'], filters: [['is', 'event:goal', ['Signup']]] })).not.toThrow();
    expect(() => parseQuery({ ...base, metrics: ['group_conversion_rate'], dimensions: ['event:goal'] })).not.toThrow();
  });

  it('bounds the size of a query', () => {
    const deep = Array.from({ length: 12 }).reduce<unknown>((f) => ['not', f], ['is', 'visit:source', ['x']]);
    expect(fieldOf({ ...base, filters: [deep] })).toMatch(/^filters\[0\](\[1\])+$/);
    expect(fieldOf({ ...base, filters: [['is', 'visit:source', Array.from({ length: 101 }, String)]] })).toBe('filters[0][2]');
    expect(fieldOf({ ...base, filters: [['is', 'visit:source', ['x'.repeat(2001)]]] })).toBe('filters[0][2][0]');
    expect(fieldOf({ ...base, dimensions: [`event:props:${'k'.repeat(301)}`] })).toBe('dimensions[0]');
  });

  it('never throws anything but a 400 naming a field, whatever the body (property)', () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 5 }), (body) => {
        try {
          parseQuery(body);
        } catch (err) {
          expect(err).toBeInstanceOf(ApiQueryError);
          expect((err as ApiQueryError).field.length).toBeGreaterThan(0);
        }
      }),
      { numRuns: 500 },
    );
  });

  it('accepts every well-formed filter tree and names the field of every malformed one (property)', () => {
    const dimension = fc.constantFrom('event:page', 'visit:source', 'visit:device', 'event:props:plan', 'experiment:variation', 'event:name');
    const leaf = fc.tuple(fc.constantFrom(...filterOperators), dimension, fc.array(fc.string({ maxLength: 20 }), { minLength: 1, maxLength: 4 }));
    const tree = fc.letrec<{ node: unknown }>((tie) => ({
      node: fc.oneof(
        { depthSize: 'small', withCrossShrink: true },
        leaf,
        fc.tuple(fc.constantFrom('and', 'or'), fc.array(tie('node'), { minLength: 1, maxLength: 3 })),
        fc.tuple(fc.constant('not'), tie('node')),
      ),
    })).node;
    fc.assert(
      fc.property(fc.array(tree, { maxLength: 3 }), (filters) => {
        let depth = 0;
        const measure = (f: unknown, d: number): void => {
          depth = Math.max(depth, d);
          if (Array.isArray(f) && (f[0] === 'and' || f[0] === 'or')) for (const c of f[1] as unknown[]) measure(c, d + 1);
          if (Array.isArray(f) && f[0] === 'not') measure(f[1], d + 1);
        };
        filters.forEach((f) => measure(f, 0));
        if (depth > 8) return;
        expect(parseQuery({ ...base, filters }).filters).toHaveLength(filters.length);
      }),
      { numRuns: 300 },
    );
  });

  it('knows every dimension name the API documents, and nothing that merely looks like one', () => {
    for (const name of ['event:page', 'event:hostname', 'event:goal', 'event:name', 'event:props:x', 'visit:entry_page', 'visit:utm_term', 'time', 'experiment:variation']) {
      expect(parseDimension(name), name).toBeDefined();
    }
    fc.assert(
      fc.property(fc.string(), (s) => {
        const d = parseDimension(s);
        if (d !== undefined && d.kind !== 'prop') expect(d.name).toBe(s);
      }),
    );
    for (const name of ['event:page ', 'EVENT:PAGE', 'visit:source;', 'constructor', '__proto__', 'toString']) expect(parseDimension(name), name).toBeUndefined();
    expect(metricNames).toContain('total_revenue');
  });
});
