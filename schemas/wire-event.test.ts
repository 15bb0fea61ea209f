import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { fastRawWireEvent, parseWireEvent, parseWireEventBySchema, rawWireEventSchema } from './wire-event.ts';

/** Values near every bound the schema checks, of every JSON type. */
const anyValue = fc.oneof(
  fc.string({ maxLength: 12 }),
  fc.constantFrom('', 'x', 'pageview', 'https://example.com/a?utm_source=x', 'example.com, other.com', 'exp-1', 'a b', 'usd', 'EUR', 'EU1', '12.5', '{"a":1}', '__proto__'),
  fc.string({ minLength: 95, maxLength: 130 }),
  fc.string({ minLength: 990, maxLength: 1010 }),
  fc.string({ minLength: 1995, maxLength: 2005 }),
  fc.integer({ min: -10, max: 100_010 }),
  fc.double(),
  fc.constantFrom(0, -0, 1.5, 100_000, 100_001, Number.NaN, Number.POSITIVE_INFINITY),
  fc.boolean(),
  fc.constant(null),
  fc.constant(undefined),
  fc.array(fc.string(), { maxLength: 2 }),
);

const key = fc.constantFrom('name', 'n', 'url', 'u', 'domain', 'd', 'referrer', 'r', 'props', 'p', 'm', 'revenue', '$', 'interactive', 'i', 'w', 'h', 'exp', 'id', 'ip', 'ua', 'other', '__proto__');

const propValue = fc.oneof(fc.string({ maxLength: 8 }), fc.integer(), fc.boolean(), fc.constantFrom('v'.repeat(2000), 'v'.repeat(2001)), anyValue);
const propsValue = fc.oneof(
  fc.dictionary(fc.oneof(fc.string({ minLength: 1, maxLength: 5 }), fc.constantFrom('', '__proto__', 'k'.repeat(300), 'k'.repeat(301))), propValue, {
    maxKeys: 4,
  }),
  fc.dictionary(fc.string({ minLength: 1, maxLength: 3 }), fc.integer(), { minKeys: 29, maxKeys: 32 }),
  anyValue,
);
const revenueValue = fc.oneof(
  fc.record({ currency: anyValue, amount: anyValue }, { requiredKeys: [] }),
  fc.record({ currency: fc.constantFrom('EUR', 'usd', 'EU', 'EURO'), amount: fc.oneof(fc.double(), fc.constantFrom('10', '-1.50', '1e3', 'x', '-0', '007.5', '9'.repeat(400), '1.', '.5', ' 1')) }),
  fc.record({ currency: fc.constant('EUR'), amount: fc.constant(1), extra: anyValue }),
  anyValue,
);
const validExpPart = fc.constantFrom('exp-1', 'a.b_c', 'x'.repeat(100), 'Z9');
const expPart = fc.oneof(validExpPart, fc.constantFrom('bad key', '', 'x'.repeat(101), '__proto__', 'é'), fc.string({ maxLength: 4 }));
// Mostly valid entries, so that one bad key or value is what decides.
const expValue = fc.oneof(
  fc.dictionary(fc.oneof(validExpPart, validExpPart, expPart), fc.oneof(validExpPart, validExpPart, expPart, anyValue), { maxKeys: 3 }),
  anyValue,
);

/** Objects mixing known and unknown keys with valid and invalid values. */
const wireObject = fc
  .array(
    fc.tuple(key, anyValue, propsValue, revenueValue, expValue).map(([k, v, props, revenue, exp]) => {
      if (k === 'props' || k === 'p' || k === 'm') return [k, props] as const;
      if (k === 'revenue' || k === '$') return [k, revenue] as const;
      if (k === 'exp') return [k, exp] as const;
      return [k, v] as const;
    }),
    { maxLength: 8 },
  )
  .map((entries) => {
    const o: Record<string, unknown> = {};
    for (const [k, v] of entries) Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
    return o;
  });

/** The common tracker shape, valid. */
const trackerEvent = fc.record(
  {
    n: fc.constantFrom('pageview', 'Signup'),
    u: fc.webUrl({ withQueryParameters: true }),
    d: fc.constantFrom('example.com', 'a.com,b.com'),
    r: fc.option(fc.webUrl(), { nil: null }),
    w: fc.nat(100_000),
    h: fc.oneof(fc.boolean(), fc.integer()),
    // fast-check's strings favour `__proto__`, which the fast path leaves to the schema on purpose.
    p: fc.dictionary(fc.string({ minLength: 1, maxLength: 10 }).filter((k) => k !== '__proto__'), fc.oneof(fc.string({ maxLength: 20 }), fc.integer(), fc.boolean()), {
      maxKeys: 3,
      noNullPrototype: true,
    }),
    $: fc.record({ currency: fc.constantFrom('EUR', 'usd'), amount: fc.double({ noNaN: true, noDefaultInfinity: true }) }, { noNullPrototype: true }),
    i: fc.boolean(),
    exp: fc.dictionary(fc.constantFrom('e1', 'e-2', 'x.y'), fc.constantFrom('a', 'control'), { noNullPrototype: true }),
    id: fc.string({ minLength: 1, maxLength: 20 }),
  },
  { requiredKeys: ['n', 'u', 'd'], noNullPrototype: true },
);

/** Strings at and around every length bound of the schema. */
const boundaryString = fc
  .tuple(fc.constantFrom(0, 1, 2, 3, 4, 64, 65, 100, 101, 120, 121, 128, 129, 300, 301, 1000, 1001, 2000, 2001), fc.constantFrom('a', 'é', ' ', '.', '-'))
  .map(([n, c]) => c.repeat(n));
const scalar = fc.oneof(boundaryString, boundaryString, anyValue);

/** A valid record plus one probed entry: its key or value decides. */
const withEntry = <K, V>(valid: fc.Arbitrary<Record<string, unknown>>, k: fc.Arbitrary<K>, v: fc.Arbitrary<V>): fc.Arbitrary<unknown> =>
  fc.tuple(valid, k, v).map(([base, key, value]) => {
    const o = JSON.parse(JSON.stringify(base)) as Record<string, unknown>;
    Object.defineProperty(o, String(key), { value, enumerable: true, writable: true, configurable: true });
    return o;
  });
const validProps = fc.dictionary(fc.string({ minLength: 1, maxLength: 5 }), fc.oneof(fc.string({ maxLength: 5 }), fc.integer(), fc.boolean()), {
  maxKeys: 3,
  noNullPrototype: true,
});
const validExp = fc.dictionary(validExpPart, validExpPart, { maxKeys: 2, noNullPrototype: true });

/** One field of an event set to a value near or past one of its bounds. */
const fieldChange: fc.Arbitrary<[string, unknown]> = fc.oneof(
  fc.tuple(fc.constantFrom('name', 'n', 'url', 'u', 'domain', 'd', 'referrer', 'r', 'id', 'ip', 'ua', 'other'), scalar),
  fc.tuple(fc.constantFrom('props', 'p', 'm'), fc.oneof(withEntry(validProps, fc.oneof(boundaryString, fc.constant('__proto__')), propValue), propsValue)),
  fc.tuple(fc.constant('exp'), fc.oneof(withEntry(validExp, fc.oneof(expPart, boundaryString), fc.oneof(expPart, boundaryString, anyValue)), expValue)),
  fc.tuple(fc.constantFrom('revenue', '$'), revenueValue),
  fc.tuple(fc.constantFrom('interactive', 'i', 'w', 'h'), fc.oneof(anyValue, fc.constantFrom(-1, 0, -0, 100_000, 100_001, 2.5, 'true', 1))),
);

/** A valid tracker event with one or two fields replaced or added: each bound gets probed alone. */
const mutatedEvent = fc.tuple(trackerEvent, fc.array(fieldChange, { minLength: 1, maxLength: 2 })).map(([event, changes]) => {
  const o = JSON.parse(JSON.stringify(event)) as Record<string, unknown>;
  for (const [k, v] of changes) Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
  return o;
});

const inputs = fc.oneof(mutatedEvent, mutatedEvent, mutatedEvent, wireObject, trackerEvent, fc.anything());

describe('parseWireEvent', () => {
  it('answers exactly as the schema does: same events, same errors', () => {
    fc.assert(
      fc.property(inputs, (value) => {
        expect(parseWireEvent(value)).toEqual(parseWireEventBySchema(value));
      }),
      { numRuns: 5000 },
    );
  });

  it('takes the fast path only for what the schema accepts, with the same output', () => {
    fc.assert(
      fc.property(inputs, (value) => {
        const fast = fastRawWireEvent(value);
        if (fast === undefined) return;
        const bySchema = rawWireEventSchema.safeParse(value);
        expect(bySchema.success).toBe(true);
        expect(fast).toEqual(bySchema.data);
      }),
      { numRuns: 5000 },
    );
  });

  it('takes the fast path for what trackers send', () => {
    const beacon = { n: 'pageview', u: 'https://example.com/a?utm_source=x', d: 'example.com', r: 'https://www.google.com/', w: 1440 };
    expect(fastRawWireEvent(beacon)).toEqual(beacon);
    const custom = { n: 'Signup', u: 'https://example.com/', d: 'example.com', r: null, p: { plan: 'pro', seats: 3 }, $: { currency: 'eur', amount: 9.5 } };
    expect(fastRawWireEvent(custom)).toEqual({ ...custom, $: { currency: 'EUR', amount: 9.5 } });
    // Plausible's tracker sends the amount as text.
    const purchase = { n: 'Purchase', u: 'https://example.com/', d: 'example.com', p: { sku: 'P-1042' }, $: { currency: 'EUR', amount: '49.90' } };
    expect(fastRawWireEvent(purchase)).toEqual({ ...purchase, $: { currency: 'EUR', amount: 49.9 } });
    // Text past any number is refused (it read as Infinity, which the hub cannot hold: a 500).
    expect(parseWireEvent({ ...purchase, $: { currency: 'EUR', amount: '9'.repeat(400) } })).toMatchObject({ ok: false, code: 'ING_BAD_EVENT' });
    // As the collector sees them: parsed from JSON.
    const sent = fc.sample(trackerEvent, 300).map((e) => JSON.parse(JSON.stringify(e)) as unknown);
    expect(sent.filter((e) => fastRawWireEvent(e) === undefined)).toEqual([]);
  });

  it.each([
    ['props as a JSON string', { n: 'x', u: 'https://e.com/', d: 'e.com', p: '{"a":1}' }],
    ['an amount as text past any number', { n: 'x', u: 'https://e.com/', d: 'e.com', $: { currency: 'EUR', amount: '9'.repeat(400) } }],
    ['an amount as text that is no decimal', { n: 'x', u: 'https://e.com/', d: 'e.com', $: { currency: 'EUR', amount: '1e3' } }],
    ['an unknown key', { n: 'x', u: 'https://e.com/', d: 'e.com', extra: 1 }],
    ['an invalid value', { n: '', u: 'https://e.com/', d: 'e.com' }],
  ])('leaves %s to the schema', (_label, value) => {
    expect(fastRawWireEvent(value)).toBeUndefined();
  });
});

describe('site domains', () => {
  const long = `${'a'.repeat(249)}.com`;
  it.each<[string, string[] | null]>([
    [' Example.COM ', ['example.com']],
    ['a.com,A.com, a.com', ['a.com']],
    ['a.com,,b.com,', ['a.com', 'b.com']],
    [long, [long]],
    [`${long}x`, null],
    [`a.com,${long}x`, null],
    ['   ', null],
    [',', null],
    [Array.from({ length: 10 }, (_, i) => `s${i}.com`).join(','), Array.from({ length: 10 }, (_, i) => `s${i}.com`)],
    [Array.from({ length: 11 }, (_, i) => `s${i}.com`).join(','), null],
  ])('%j', (d, expected) => {
    const r = parseWireEvent({ n: 'pageview', u: 'https://e.com/', d });
    expect(r.ok ? r.event.domains : null).toEqual(expected);
    if (!r.ok) expect(r.message).toBe('domain: must list 1 to 10 site domains');
  });
});
