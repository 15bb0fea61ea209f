/* eslint-disable no-loss-of-precision -- reference values are quoted with every digit the reference tool printed */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { criticalValue, differenceInterval, relativeUpliftInterval, twoProportionZTest } from './two-proportion.ts';

/** z_{0.975} from standard tables. */
const Z975 = 1.959963984540054;

const arm = (exposures: number, conversions: number) => ({ exposures, conversions });

/** Arbitrary pair of arms with at least one exposure each. */
const arms = fc
  .tuple(fc.integer({ min: 1, max: 1_000_000 }), fc.integer({ min: 1, max: 1_000_000 }), fc.double({ min: 0, max: 1, noNaN: true }), fc.double({ min: 0, max: 1, noNaN: true }))
  .map(([nA, nB, fA, fB]) => [arm(nA, Math.floor(fA * nA)), arm(nB, Math.floor(fB * nB))] as const);

describe('twoProportionZTest: worked example 200/1000 vs 250/1000', () => {
  const control = arm(1000, 200);
  const treatment = arm(1000, 250);

  it('matches the hand computation with the plain formula', () => {
    // Pooled p = 450/2000 = 0.225; se = √(0.225·0.775·(1/1000 + 1/1000)); z = 0.05/se.
    const pooled = 0.225;
    const se = Math.sqrt(pooled * (1 - pooled) * (2 / 1000));
    const z = (0.25 - 0.2) / se;
    expect(z).toBeCloseTo(2.6774, 4);
    const result = twoProportionZTest(control, treatment);
    expect(result.z).toBeCloseTo(z, 12);
    // Two-sided p-value for z = 2.677397763008329…, from mpmath (2·Φ(−z) at 40 digits); a printed
    // table gives Φ(2.68) = 0.99632, i.e. p ≈ 0.0074.
    expect(result.pValue).toBeCloseTo(0.0074196492610256749, 14);
  });

  it('z² equals Pearson’s chi-square on the 2×2 table, computed cell by cell', () => {
    const cells = [
      [200, 800],
      [250, 750],
    ];
    const rowTotals = [1000, 1000];
    const colTotals = [450, 1550];
    let chi2 = 0;
    for (let r = 0; r < 2; r++) {
      for (let c = 0; c < 2; c++) {
        const expected = (rowTotals[r]! * colTotals[c]!) / 2000;
        chi2 += (cells[r]![c]! - expected) ** 2 / expected;
      }
    }
    expect(twoProportionZTest(control, treatment).z ** 2).toBeCloseTo(chi2, 10);
  });

  it('gives the unpooled Wald interval on the difference', () => {
    const se = Math.sqrt((0.2 * 0.8) / 1000 + (0.25 * 0.75) / 1000);
    const ci = differenceInterval(control, treatment);
    expect(ci.estimate).toBeCloseTo(0.05, 15);
    expect(ci.standardError).toBeCloseTo(se, 15);
    expect(ci.low).toBeCloseTo(0.05 - Z975 * se, 14);
    expect(ci.high).toBeCloseTo(0.05 + Z975 * se, 14);
    // se = √0.0003475 = 0.018641, so [0.05 − 0.036536, 0.05 + 0.036536] by hand.
    expect(ci.low).toBeCloseTo(0.013464, 5);
    expect(ci.high).toBeCloseTo(0.086536, 5);
  });

  it('gives the delta-method interval on the relative uplift (log ratio)', () => {
    // ln(0.25/0.2) ± 1.96·√((1 − 0.2)/200 + (1 − 0.25)/250), exponentiated, minus 1.
    const se = Math.sqrt(0.8 / 200 + 0.75 / 250);
    const ci = relativeUpliftInterval(control, treatment);
    expect(ci).not.toBeNull();
    expect(ci!.estimate).toBeCloseTo(0.25, 14);
    expect(ci!.low).toBeCloseTo(1.25 * Math.exp(-Z975 * se) - 1, 14);
    expect(ci!.high).toBeCloseTo(1.25 * Math.exp(Z975 * se) - 1, 14);
    // ≈ [+6.1%, +47.3%]: asymmetric around +25%.
    expect(ci!.low).toBeCloseTo(0.0613, 3);
    expect(ci!.high).toBeCloseTo(0.4729, 3);
  });

  it('uses the table critical value for α = 0.05 and follows α', () => {
    expect(criticalValue(0.05)).toBeCloseTo(Z975, 15);
    expect(criticalValue(0.01)).toBeCloseTo(2.5758293035489004, 14);
    const wide = differenceInterval(control, treatment, 0.01);
    const narrow = differenceInterval(control, treatment, 0.05);
    expect(wide.high - wide.low).toBeGreaterThan(narrow.high - narrow.low);
  });
});

describe('two-proportion properties', () => {
  it('p-value in [0, 1], z antisymmetric under swapping the arms, same p', () => {
    fc.assert(
      fc.property(arms, ([a, b]) => {
        const ab = twoProportionZTest(a, b);
        const ba = twoProportionZTest(b, a);
        expect(ab.pValue).toBeGreaterThanOrEqual(0);
        expect(ab.pValue).toBeLessThanOrEqual(1);
        expect(ab.z).toBeCloseTo(-ba.z, 10);
        expect(ab.pValue).toBeCloseTo(ba.pValue, 12);
        const diff = b.conversions / b.exposures - a.conversions / a.exposures;
        if (diff !== 0 && ab.z !== 0) expect(Math.sign(ab.z)).toBe(Math.sign(diff));
      }),
    );
  });

  it('intervals contain their point estimates; the relative one stays above −100%', () => {
    fc.assert(
      fc.property(arms, ([a, b]) => {
        const d = differenceInterval(a, b);
        expect(d.low).toBeLessThanOrEqual(d.estimate);
        expect(d.high).toBeGreaterThanOrEqual(d.estimate);
        const r = relativeUpliftInterval(a, b);
        if (a.conversions === 0 || b.conversions === 0) expect(r).toBeNull();
        else {
          expect(r!.low).toBeLessThanOrEqual(r!.estimate);
          expect(r!.high).toBeGreaterThanOrEqual(r!.estimate);
          expect(r!.low).toBeGreaterThan(-1);
          expect(r!.estimate).toBeCloseTo(b.conversions / b.exposures / (a.conversions / a.exposures) - 1, 10);
        }
      }),
    );
  });

  it('with equal sample sizes, a significant pooled test implies the Wald interval excludes 0', () => {
    // Pooled variance − unpooled variance = (p_A − p_B)²/(2n) ≥ 0 when n_A = n_B, so the pooled z is
    // never larger; the converse can fail in a thin band, which the next test pins down.
    fc.assert(
      fc.property(fc.integer({ min: 10, max: 100_000 }), fc.double({ min: 0, max: 1, noNaN: true }), fc.double({ min: 0, max: 1, noNaN: true }), (n, fA, fB) => {
        const a = arm(n, Math.floor(fA * n));
        const b = arm(n, Math.floor(fB * n));
        if (twoProportionZTest(a, b).pValue < 0.05) {
          const ci = differenceInterval(a, b);
          expect(ci.low > 0 || ci.high < 0).toBe(true);
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('documents the band where the pooled test and the unpooled interval disagree', () => {
    // 276/1000 vs 316/1000: pooled z = 1.9594 (p ≈ 0.0501) while the unpooled interval starts at +0.00003.
    const a = arm(1000, 276);
    const b = arm(1000, 316);
    expect(twoProportionZTest(a, b).pValue).toBeGreaterThan(0.05);
    expect(differenceInterval(a, b).low).toBeGreaterThan(0);
  });

  it('treats identical all-zero or all-one arms as no evidence', () => {
    expect(twoProportionZTest(arm(100, 0), arm(200, 0))).toEqual({ z: 0, pValue: 1 });
    expect(twoProportionZTest(arm(100, 100), arm(200, 200))).toEqual({ z: 0, pValue: 1 });
    const ci = differenceInterval(arm(100, 0), arm(200, 0));
    expect([ci.low, ci.high]).toEqual([0, 0]);
    expect(relativeUpliftInterval(arm(100, 0), arm(200, 5))).toBeNull();
  });

  it('refuses an arm without exposures', () => {
    expect(() => twoProportionZTest(arm(0, 0), arm(10, 1))).toThrow(RangeError);
  });
});
