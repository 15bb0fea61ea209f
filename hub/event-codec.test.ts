import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { EnrichedEvent } from '../schemas/enriched-event.ts';
import { makeEvent } from '../schemas/testing/events.ts';
import { decodeEvent, unstorableReason } from '../processor/partition-state.ts';
import { deadLetterRow } from '../processor/dead-letters.ts';
import { decodeBinaryEvent, encodeEvent, EVENT_CODEC_V1, payloadKind, payloadValue, STRING_FIELDS, UnencodableEventError } from './event-codec.ts';

// Hostile text: any UTF-16 unit (lone surrogates included), NUL, astral characters, plain ASCII.
const unit = fc.oneof(
  fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c)),
  fc.constantFrom('\0', '\ud800', '\udfff', '😀', '𝄞', 'é', '€', '"', '\\', '\u2028'),
  fc.constantFrom('a', 'b', '/', '-', '1'),
);
const text = fc.array(unit, { maxLength: 12 }).map((a) => a.join(''));
const cleanText = text.filter(isStorable);
const safeInt = fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER });

function isStorable(s: string): boolean {
  return (s as unknown as { isWellFormed(): boolean }).isWellFormed() && !s.includes('\0');
}

function eventArb(str: fc.Arbitrary<string>): fc.Arbitrary<EnrichedEvent> {
  const strings = Object.fromEntries(STRING_FIELDS.map((f) => [f, str])) as Record<(typeof STRING_FIELDS)[number], fc.Arbitrary<string>>;
  return fc
    .record({
      ...strings,
      visitorId: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }).map(String),
      device: fc.constantFrom('desktop', 'mobile', 'tablet'),
      clientId: fc.boolean(),
      interactive: fc.boolean(),
      ts: safeInt,
      epoch: fc.option(safeInt, { nil: undefined }),
      saltDay: fc.option(fc.integer({ min: 0, max: 2 ** 40 }), { nil: undefined }),
      clickIds: fc.array(str, { maxLength: 4 }),
      props: fc.dictionary(fc.oneof(str, fc.constantFrom('__proto__', '1', 'constructor')), str, { maxKeys: 5 }),
      exp: fc.dictionary(str, str, { maxKeys: 3 }),
      revenue: fc.option(fc.record({ currency: str, amount: fc.double({ noNaN: true, noDefaultInfinity: true }) }), { nil: null }),
    })
    .map((r) => {
      const e: EnrichedEvent = { v: 1, ...r, props: { ...r.props }, exp: { ...r.exp } } as EnrichedEvent;
      if (r.epoch === undefined) delete e.epoch;
      if (r.saltDay === undefined) delete e.saltDay;
      return e;
    });
}

function allStrings(e: EnrichedEvent): string[] {
  return [
    ...STRING_FIELDS.map((f) => e[f]),
    ...e.clickIds,
    ...Object.entries(e.props).flat(),
    ...Object.entries(e.exp).flat(),
    ...(e.revenue === null ? [] : [e.revenue.currency]),
  ];
}

/**
 * A binary record written by hand: no flags, ts 1, `counts` (click ids, props, exp), the given
 * string lengths in UTF-16 units, then `text` as UTF-8. The visitor id (string 21) should be digits.
 */
function forge(lengths: number[], text: string, counts: [number, number, number]): Buffer {
  const varint = (n: number): number[] => {
    const out: number[] = [];
    for (; n >= 0x80; n >>>= 7) out.push((n & 0x7f) | 0x80);
    out.push(n);
    return out;
  };
  const ts = Buffer.alloc(8);
  ts.writeDoubleLE(1);
  return Buffer.concat([Buffer.from([EVENT_CODEC_V1, 0]), ts, Buffer.from([...counts, ...lengths].flatMap(varint)), Buffer.from(text, 'utf8')]);
}

/** What a JSON record of `e` reads back as: the reference the binary form must equal. */
function viaJson(e: EnrichedEvent): unknown {
  return JSON.parse(JSON.stringify(e)) as unknown;
}

describe('binary hub records', () => {
  it('round-trip every storable event exactly as its JSON record reads back', () => {
    fc.assert(
      fc.property(eventArb(cleanText), (e) => {
        const payload = encodeEvent(e);
        expect(payload[0]).toBe(EVENT_CODEC_V1);
        expect(payloadKind(payload)).toBe('binary');
        const back = decodeBinaryEvent(payload);
        expect(back).toEqual(viaJson(e));
        expect(Object.keys(back?.props ?? {})).toEqual(Object.keys(e.props));
        // The processor reads both forms alike.
        expect(decodeEvent(payload)).toEqual(decodeEvent(Buffer.from(JSON.stringify(e))));
      }),
      { numRuns: 300 },
    );
  });

  it('refuse an event holding NUL or a lone surrogate anywhere, and encode any other', () => {
    fc.assert(
      fc.property(eventArb(text), (e) => {
        const storable = allStrings(e).every(isStorable);
        if (storable) expect(decodeBinaryEvent(encodeEvent(e))).toEqual(viaJson(e));
        else expect(() => encodeEvent(e)).toThrow(UnencodableEventError);
      }),
      { numRuns: 300 },
    );
    // Two lone halves in adjacent strings must not pass as the pair they form once joined.
    expect(() => encodeEvent(makeEvent({ referrer: 'a\ud83d', source: '\ude00b' }))).toThrow(UnencodableEventError);
    expect(() => encodeEvent(makeEvent({ props: { ['k\ud83d']: '\ude00' } }))).toThrow(UnencodableEventError);
    expect(decodeBinaryEvent(encodeEvent(makeEvent({ referrer: 'a\ud83d\ude00', source: '😀b' })))).toMatchObject({ referrer: 'a😀', source: '😀b' });
    // The refusal leaves nothing behind for the next event.
    expect(() => encodeEvent(makeEvent({ props: { k: 'a\0' } }))).toThrow(UnencodableEventError);
    const next = makeEvent({ pathname: '/é' });
    expect(decodeBinaryEvent(encodeEvent(next))).toEqual(next);
  });

  it('refuse numbers the schema does not allow', () => {
    for (const bad of [{ ts: -1 }, { ts: 1.5 }, { ts: 2 ** 53 }, { epoch: -1 }, { saltDay: Number.NaN }, { revenue: { currency: 'EUR', amount: Infinity } }]) {
      expect(() => encodeEvent(makeEvent(bad))).toThrow(UnencodableEventError);
    }
  });

  it('carry 10 MB strings and astral characters', () => {
    const big = '😀'.repeat(1024) + 'x'.repeat(10 * 1024 * 1024) + 'é';
    const e = makeEvent({ pathname: big, props: { [big]: big } });
    expect(decodeBinaryEvent(encodeEvent(e))).toEqual(e);
    // A small event after the large one encodes into a buffer of its own size.
    expect(encodeEvent(makeEvent()).length).toBeLessThan(200);
  });

  it('never throw on corrupt bytes: a truncated, extended or flipped record reads as undefined or as well-formed strings', () => {
    fc.assert(
      fc.property(eventArb(cleanText), fc.nat(), fc.integer({ min: 0, max: 255 }), (e, where, byte) => {
        const payload = encodeEvent(e);
        for (let cut = 0; cut < payload.length; cut++) expect(decodeBinaryEvent(payload.subarray(0, cut))).toBeUndefined();
        expect(decodeBinaryEvent(Buffer.concat([payload, Buffer.from([0x61])]))).toBeUndefined();
        const flipped = Buffer.from(payload);
        flipped[where % payload.length] = byte;
        const got = decodeBinaryEvent(flipped);
        if (got !== undefined) for (const s of allStrings(got)) expect((s as unknown as { isWellFormed(): boolean }).isWellFormed()).toBe(true);
      }),
      { numRuns: 200 },
    );
  });

  it('refuse forged headers: huge counts, overlong varints, bytes that are not UTF-8, a bad visitor id', () => {
    const good = encodeEvent(makeEvent());
    const header = good.subarray(0, 10);
    const forged = [
      Buffer.concat([header, Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f, 0, 0])]),
      Buffer.concat([header, Buffer.from([0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01])]),
      Buffer.from([EVENT_CODEC_V1, 0xff, ...good.subarray(2)]),
      Buffer.concat([good.subarray(0, good.length - 1), Buffer.from([0xff])]),
      // An encoded surrogate (ED A0 80) is not UTF-8.
      Buffer.concat([good.subarray(0, good.length - 3), Buffer.from([0xed, 0xa0, 0x80])]),
    ];
    for (const f of forged) expect(decodeBinaryEvent(f)).toBeUndefined();
    expect(decodeEvent(encodeEvent(makeEvent({ visitorId: 'abc' })))).toBeUndefined();
    expect(decodeEvent(encodeEvent(makeEvent({ visitorId: '18446744073709551616' })))).toBeUndefined();
    expect(payloadKind(Buffer.from('{"v":1}'))).toBe('json');
    expect(payloadValue(Buffer.from('{"v":1}'))).toEqual({ v: 1 });
    expect(payloadValue(good)).toEqual(decodeBinaryEvent(good));
    expect(() => payloadValue(forged[0]!)).toThrow();
    expect(payloadKind(Buffer.from([0x02]))).toBe('unknown');
  });

  it('return only well-formed strings, whatever lengths a forged record gives: the processor skips its own string checks on them', () => {
    const splitPair = forge([...Array<number>(20).fill(0), 1, 1], '😀', [1, 0, 0]);
    // Valid UTF-8 and lengths that add up, but the cut leaves two lone halves.
    expect(decodeBinaryEvent(splitPair)).toBeUndefined();
    expect(decodeBinaryEvent(forge([...Array<number>(20).fill(0), 1, 2], '1😀', [1, 0, 0]))).toMatchObject({ visitorId: '1', clickIds: ['😀'] });
    let decoded = 0;
    let refused = 0;
    fc.assert(
      fc.property(
        fc.array(fc.constantFrom('😀', '𝄞', 'é', '€', 'a', '1', '\uffff'), { maxLength: 30 }),
        fc.tuple(fc.nat(3), fc.nat(3), fc.nat(2)),
        fc.array(fc.nat(), { minLength: 40, maxLength: 40 }),
        (chars, counts, cuts) => {
          const text = chars.join('');
          const n = STRING_FIELDS.length + counts[0] + 2 * counts[1] + 2 * counts[2];
          // n lengths adding up to the text's length, cut at arbitrary UTF-16 positions.
          const points = cuts.slice(0, n - 1).map((c) => c % (text.length + 1)).sort((a, b) => a - b);
          const lengths = [...points, text.length].map((p, i) => p - (i === 0 ? 0 : points[i - 1]!));
          const e = decodeBinaryEvent(forge(lengths, text, counts));
          if (e === undefined) {
            refused++;
            return;
          }
          decoded++;
          for (const s of allStrings(e)) expect((s as unknown as { isWellFormed(): boolean }).isWellFormed()).toBe(true);
          expect(unstorableReason(e)).toBe(unstorableReason(e, true));
        },
      ),
      { numRuns: 400 },
    );
    // Both outcomes were exercised (a generator that never cut a pair would prove nothing).
    expect(decoded).toBeGreaterThan(20);
    expect(refused).toBeGreaterThan(20);
  });

  it('store a binary record in a dead letter as readable JSON', () => {
    const e = makeEvent({ pathname: '/é', props: { plan: 'pro' } });
    const row = deadLetterRow({ site: e.site, partition: 0, offset: 7, table: 'events', reason: 'x', error: 'y', payload: encodeEvent(e) });
    expect(row.payload_encoding).toBe('json');
    expect(JSON.parse(row.payload)).toEqual(e);
    // Corrupt binary bytes travel as base64, as any non-UTF-8 payload.
    const corrupt = Buffer.from([EVENT_CODEC_V1, 0xff, 0xfe]);
    const bad = deadLetterRow({ site: e.site, partition: 0, offset: 8, table: 'events', reason: 'x', error: 'y', payload: corrupt });
    expect([bad.payload_encoding, bad.payload]).toEqual(['base64', corrupt.toString('base64')]);
  });
});
