/* eslint-disable no-loss-of-precision -- reference values are quoted with every digit the reference tool printed */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { normalCdf, normalPdf, normalQuantile, normalSf } from './normal.ts';

/** |actual − expected| / |expected|. */
function relErr(actual: number, expected: number): number {
  return Math.abs(actual - expected) / Math.abs(expected);
}

describe('normalCdf', () => {
  // Published table values (as quoted in the task brief; they agree with Abramowitz & Stegun 26.2).
  it.each([
    [1.96, 0.9750021048517795, 1e-15],
    [-3, 0.0013498980316301, 1e-13],
    [-8, 6.22096057427178e-16, 1e-13],
  ])('Φ(%d) matches the published value %d', (x, expected, tol) => {
    expect(relErr(normalCdf(x), expected)).toBeLessThan(tol);
  });

  // Lower tail Φ(x) for x ≤ 0, reference values from mpmath's ncdf at 50 significant digits,
  // evaluated at the exact double x, down to the deep tail.
  const lowerTail: [number, number][] = [
    [-37, 5.7255712225245768227e-300],
    [-30, 4.9067139271481870595e-198],
    [-20, 2.7536241186062336951e-89],
    [-10, 7.619853024160526066e-24],
    [-8, 6.2209605742717841235e-16],
    [-7, 1.2798125438858350044e-12],
    [-6, 9.865876450376981407e-10],
    [-5.66, 7.5686497519977137143e-9],
    [-5, 2.8665157187919391167e-7],
    [-4, 0.000031671241833119921254],
    [-3, 0.0013498980316300945267],
    [-2.5, 0.006209665325776135167],
    [-1.96, 0.024997895148220436213],
    [-1.5, 0.066807201268858066004],
    [-1, 0.15865525393145705141],
    [-0.6745, 0.24999674286369916889],
    [-0.5, 0.30853753872598689636],
    [-0.3, 0.38208857781104736693],
  ];

  // Φ(x) = ½·erfc(−x/√2): rounding x/√2 (relative ε) moves erfc by ~x²·ε relative in the tail,
  // the precision @stdlib's formula allows (1.2e-13 measured at x = −30).
  const tailTolerance = (x: number) => 2e-15 + x * x * Number.EPSILON;

  it.each(lowerTail)('Φ(%d) is within 2e-15 + x²·ε relative of the 50-digit reference', (x, expected) => {
    expect(relErr(normalCdf(x), expected)).toBeLessThan(tailTolerance(x));
  });

  it.each(lowerTail)('the upper tail 1 − Φ(%d) is as accurate: normalSf(−x) = Φ(x)', (x, expected) => {
    expect(relErr(normalSf(-x), expected)).toBeLessThan(tailTolerance(x));
  });

  it('is exactly ½ at 0 and saturates at ±∞; NaN propagates', () => {
    expect(normalCdf(0)).toBe(0.5);
    expect(normalCdf(-Infinity)).toBe(0);
    expect(normalCdf(Infinity)).toBe(1);
    expect(normalSf(Infinity)).toBe(0);
    expect(normalCdf(-40)).toBe(0);
    expect(normalCdf(Number.NaN)).toBeNaN();
  });

  it('is symmetric and sums to 1 with its survival function', () => {
    fc.assert(
      fc.property(fc.double({ min: -40, max: 40, noNaN: true }), (x) => {
        expect(normalSf(x)).toBe(normalCdf(-x));
        expect(Math.abs(normalCdf(x) + normalSf(x) - 1)).toBeLessThanOrEqual(2.3e-16);
      }),
    );
  });

  it('is non-decreasing', () => {
    fc.assert(
      fc.property(fc.double({ min: -40, max: 40, noNaN: true }), fc.double({ min: -40, max: 40, noNaN: true }), (a, b) => {
        const [lo, hi] = a <= b ? [a, b] : [b, a];
        expect(normalCdf(lo)).toBeLessThanOrEqual(normalCdf(hi));
      }),
    );
  });

  it('has density 1/√(2π) at 0 and φ(x) = e^{−x²/2}/√(2π)', () => {
    expect(normalPdf(0)).toBeCloseTo(1 / Math.sqrt(2 * Math.PI), 16);
    for (const x of [-3, -1.25, 0.5, 2, 7.5]) {
      expect(relErr(normalPdf(x), Math.exp((-x * x) / 2) / Math.sqrt(2 * Math.PI))).toBeLessThan(1e-14);
    }
  });
});

describe('normalQuantile', () => {
  it.each([
    [0.975, 1.959963984540054],
    [0.001, -3.090232306167813],
  ])('Φ⁻¹(%d) matches the published value %d', (p, expected) => {
    expect(relErr(normalQuantile(p), expected)).toBeLessThan(5e-16);
  });

  // Reference quantiles from mpmath (root of ln Φ(z) = ln p at 50 digits, p the exact double).
  it.each([
    [1e-300, -37.047096299361199237],
    [1e-100, -21.273453560965324294],
    [1e-20, -9.2623400897984075796],
    [1e-12, -7.0344838253011319326],
    [1e-10, -6.3613409024040561991],
    [1e-6, -4.7534243088228989573],
    [0.001, -3.0902323061678135354],
    [0.01, -2.3263478740408410931],
    [0.025, -1.9599639845400542118],
    [0.05, -1.644853626951472688],
    [0.1, -1.2815515655446004353],
    [0.3, -0.52440051270804081597],
    [0.7, 0.52440051270804065631],
    [0.9, 1.2815515655446005935],
    [0.975, 1.9599639845400538556],
    [0.999, 3.0902323061678132778],
  ])('Φ⁻¹(%d) is within 1e-15 relative of the 50-digit reference', (p, expected) => {
    expect(relErr(normalQuantile(p), expected)).toBeLessThan(1e-15);
  });

  it('handles the ends of [0, 1] and rejects the outside', () => {
    expect(normalQuantile(0.5)).toBe(0);
    expect(normalQuantile(0)).toBe(-Infinity);
    expect(normalQuantile(1)).toBe(Infinity);
    expect(normalQuantile(-0.1)).toBeNaN();
    expect(normalQuantile(1.1)).toBeNaN();
    expect(normalQuantile(Number.NaN)).toBeNaN();
  });

  it('is the inverse of the CDF: Φ(Φ⁻¹(p)) = p over the whole lower half, down to 1e-300', () => {
    fc.assert(
      fc.property(fc.double({ min: -690, max: Math.log(0.5), noNaN: true }), (logP) => {
        const p = Math.exp(logP);
        const z = normalQuantile(p);
        // A relative error ε in z moves Φ by about z²·ε relative in the tail.
        expect(relErr(normalCdf(z), p)).toBeLessThan(1.5e-15 * Math.max(1, z * z));
        // Upper half by symmetry, through the survival function.
        expect(relErr(normalSf(-z), p)).toBeLessThan(1.5e-15 * Math.max(1, z * z));
      }),
      { numRuns: 2000 },
    );
  });

  it('is the inverse of the CDF: Φ⁻¹(Φ(x)) = x', () => {
    fc.assert(
      fc.property(fc.double({ min: -37, max: 0, noNaN: true }), (x) => {
        expect(Math.abs(normalQuantile(normalCdf(x)) - x)).toBeLessThan(1e-14 * Math.max(1, Math.abs(x)));
      }),
      { numRuns: 2000 },
    );
  });

  it('is increasing', () => {
    fc.assert(
      fc.property(fc.double({ min: 1e-300, max: 1, noNaN: true }), fc.double({ min: 1e-300, max: 1, noNaN: true }), (a, b) => {
        const [lo, hi] = a <= b ? [a, b] : [b, a];
        expect(normalQuantile(lo)).toBeLessThanOrEqual(normalQuantile(hi));
      }),
    );
  });
});
