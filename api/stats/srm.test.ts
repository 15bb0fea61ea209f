/* eslint-disable no-loss-of-precision -- reference values are quoted with every digit the reference tool printed */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { SRM_THRESHOLD, sampleRatioMismatch } from './srm.ts';

describe('sampleRatioMismatch', () => {
  it('50/50 with 10,000 vs 10,300 exposures: χ² = 4.4335, p ≈ 0.0352 (not flagged at 0.001)', () => {
    // By hand: expected 10,150 each; χ² = 2·150²/10,150.
    const chi2 = (2 * 150 * 150) / 10150;
    const r = sampleRatioMismatch([10000, 10300], [1, 1]);
    expect(r.chiSquare).toBeCloseTo(chi2, 12);
    expect(r.chiSquare).toBeCloseTo(4.4335, 4);
    expect(r.degreesOfFreedom).toBe(1);
    // P[χ²₁ > 4.43349…] = erfc(√(χ²/2)), mpmath at 40 digits.
    expect(r.pValue).toBeCloseTo(0.035240223824274528308, 14);
    expect(r.expected).toEqual([10150, 10150]);
    expect(r.detected).toBe(false);
  });

  it('flags 10,000 vs 10,500 (χ² = 12.195, p ≈ 0.00048 < 0.001)', () => {
    const r = sampleRatioMismatch([10000, 10500], [1, 1]);
    expect(r.chiSquare).toBeCloseTo((2 * 250 * 250) / 10250, 12);
    expect(r.pValue).toBeCloseTo(0.00047914643458730044617, 15);
    expect(r.detected).toBe(true);
    expect(r.threshold).toBe(SRM_THRESHOLD);
    expect(sampleRatioMismatch([10000, 10500], [1, 1], 0.0001).detected).toBe(false);
  });

  it('a perfect split gives χ² = 0 and p = 1, with any weight scale', () => {
    expect(sampleRatioMismatch([5000, 5000], [1, 1])).toMatchObject({ chiSquare: 0, pValue: 1, detected: false });
    expect(sampleRatioMismatch([2000, 6000, 2000], [10, 30, 10])).toMatchObject({ chiSquare: 0, pValue: 1 });
  });

  it('three unequal weights: matches the hand formula and the 2-df closed form exp(−χ²/2)', () => {
    const observed = [2100, 5800, 2100];
    const weights = [0.2, 0.6, 0.2];
    const expected = [2000, 6000, 2000];
    const chi2 = observed.reduce((s, o, i) => s + (o - expected[i]!) ** 2 / expected[i]!, 0);
    const r = sampleRatioMismatch(observed, weights);
    expect(r.chiSquare).toBeCloseTo(chi2, 12);
    expect(r.degreesOfFreedom).toBe(2);
    expect(r.pValue).toBeCloseTo(Math.exp(-chi2 / 2), 14);
    r.expected.forEach((e, i) => expect(e).toBeCloseTo(expected[i]!, 9));
  });

  it('no exposures at all is no evidence', () => {
    expect(sampleRatioMismatch([0, 0], [1, 1])).toMatchObject({ chiSquare: 0, pValue: 1, detected: false });
  });

  it('p-value is in [0, 1] and falls as the split drifts from plan', () => {
    fc.assert(
      fc.property(fc.integer({ min: 100, max: 1_000_000 }), fc.integer({ min: 1, max: 50 }), (n, drift) => {
        const near = sampleRatioMismatch([n, n + drift], [1, 1]).pValue;
        const far = sampleRatioMismatch([n, n + 2 * drift], [1, 1]).pValue;
        expect(near).toBeGreaterThanOrEqual(0);
        expect(near).toBeLessThanOrEqual(1);
        expect(far).toBeLessThan(near);
      }),
    );
  });

  it('rejects malformed input', () => {
    expect(() => sampleRatioMismatch([1, 2], [1])).toThrow(RangeError);
    expect(() => sampleRatioMismatch([1], [1])).toThrow(RangeError);
    expect(() => sampleRatioMismatch([1, 2], [1, 0])).toThrow(RangeError);
    expect(() => sampleRatioMismatch([1, -2], [1, 1])).toThrow(RangeError);
  });
});
