import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeFrames, encodeFrames, parseSegmentFileName, segmentFileName, wholeFramesWithin } from './local-format.ts';

const payloadsArb = fc.array(
  fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)),
  { maxLength: 20 },
);
const timestampArb = fc.integer({ min: 1, max: 2 ** 50 });

describe('record framing', () => {
  it('round-trips any payloads and timestamp', () => {
    fc.assert(
      fc.property(payloadsArb, timestampArb, (payloads, ts) => {
        const encoded = encodeFrames(payloads, ts);
        const d = decodeFrames(encoded, Number.POSITIVE_INFINITY);
        expect(d.stop).toBe('short');
        expect(d.end).toBe(encoded.length);
        expect(d.frames.map((f) => f.payload)).toEqual(payloads);
        expect(d.frames.every((f) => f.appendedAt === ts)).toBe(true);
      }),
    );
  });

  it('decodes exactly the whole frames of any truncated buffer', () => {
    fc.assert(
      fc.property(payloadsArb, timestampArb, fc.double({ min: 0, max: 1, noNaN: true }), (payloads, ts, at) => {
        const encoded = encodeFrames(payloads, ts);
        const cut = Math.floor(encoded.length * at);
        const d = decodeFrames(encoded.subarray(0, cut), Number.POSITIVE_INFINITY);
        const whole = wholeFramesWithin(encoded, cut);
        expect(d.stop).toBe('short');
        expect(d.frames.map((f) => f.payload)).toEqual(payloads.slice(0, whole.count));
        expect(d.end).toBe(whole.bytes);
      }),
    );
  });

  it('never yields a payload that was not written when a byte is damaged', () => {
    fc.assert(
      fc.property(
        payloadsArb.filter((p) => p.length > 0),
        timestampArb,
        fc.nat(),
        fc.integer({ min: 1, max: 255 }),
        (payloads, ts, where, xor) => {
          const encoded = encodeFrames(payloads, ts);
          const i = where % encoded.length;
          encoded[i] = (encoded[i] ?? 0) ^ xor;
          const got = decodeFrames(encoded, Number.POSITIVE_INFINITY).frames.map((f) => f.payload);
          expect(got).toEqual(payloads.slice(0, got.length));
        },
      ),
    );
  });

  it('honours the frame limit', () => {
    const encoded = encodeFrames([Buffer.from('a'), Buffer.from('b'), Buffer.from('c')], 1);
    const d = decodeFrames(encoded, 2);
    expect(d.stop).toBe('limit');
    expect(d.frames.map((f) => f.payload.toString())).toEqual(['a', 'b']);
  });

  it('treats a zero-filled header as corrupt, not as an empty record', () => {
    expect(decodeFrames(Buffer.alloc(32), 10)).toMatchObject({ frames: [], stop: 'corrupt' });
  });

  it('names segments by zero-padded base offset', () => {
    expect(segmentFileName(42)).toBe('00000000000000000042.log');
    expect(parseSegmentFileName('00000000000000000042.log')).toBe(42);
    expect(parseSegmentFileName('00000000000000000042.log.tmp')).toBeUndefined();
  });
});
