/* eslint-disable no-loss-of-precision -- reference values are quoted with every digit the reference tool printed */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { chiSquareSf, logBeta } from './gamma.ts';
import { normalSf } from './normal.ts';

function relErr(actual: number, expected: number): number {
  return Math.abs(actual - expected) / Math.abs(expected);
}

/** n! as a BigInt. */
function factorial(n: number): bigint {
  let f = 1n;
  for (let i = 2n; i <= BigInt(n); i++) f *= i;
  return f;
}

describe('logBeta', () => {
  // mpmath log(beta(a, b)) at 50 digits, including arguments in the millions where the naive
  // lgamma difference would cancel ~1e8-sized terms.
  it.each([
    [0.5, 0.5, 1.1447298858494001741],
    [2, 3, -2.4849066497880003102],
    [5.5, 8.25, -8.9127616046049541461],
    [3, 1e6, -40.753387493330377006],
    [100001, 9900001, -560024.79126729318229],
    [5000001, 5000001, -6931479.6388560009286],
    [0.2, 1e7, -1.6995552997608795904],
  ])('ln B(%d, %d) is within 2e-15 of the reference', (a, b, expected) => {
    expect(Math.abs(logBeta(a, b) - expected)).toBeLessThan(2e-15 * Math.max(1, Math.abs(expected)));
    expect(logBeta(b, a)).toBe(logBeta(a, b));
  });

  it('B(a, b) = (a−1)!(b−1)!/(a+b−1)! for integers, from exact BigInt factorials', () => {
    for (const [a, b] of [[1, 1], [3, 7], [20, 45], [60, 100]] as const) {
      const expected =
        Math.log(Number(factorial(a - 1))) + Math.log(Number(factorial(b - 1))) - Math.log(Number(factorial(a + b - 1)));
      expect(Math.abs(logBeta(a, b) - expected)).toBeLessThan(1e-13 * Math.max(1, Math.abs(expected)));
    }
  });
  // The Bayesian closed form subtracts ln B values of arms with millions of exposures, so their
  // absolute error must stay at the rounding of ln B itself. B(a, b + 1) = B(a, b)·b/(a + b) holds
  // that: the naive lgamma difference misses it by ~ε·ln Γ(a + b), 30–1000× the bound below.
  it('keeps ln B(a, b + 1) − ln B(a, b) = ln(b/(a + b)) for a, b from 1e5 to 1e9', () => {
    fc.assert(
      fc.property(fc.integer({ min: 100_000, max: 1_000_000_000 }), fc.integer({ min: 100_000, max: 1_000_000_000 }), (a, b) => {
        const step = logBeta(a, b + 1) - logBeta(a, b);
        expect(Math.abs(step - Math.log(b / (a + b)))).toBeLessThan(4 * Number.EPSILON * Math.abs(logBeta(a, b)));
      }),
      { numRuns: 2000 },
    );
  });

  it('is NaN outside a, b > 0', () => {
    expect(logBeta(0, 2)).toBeNaN();
    expect(logBeta(2, -1)).toBeNaN();
    expect(logBeta(Number.NaN, 2)).toBeNaN();
  });
});

describe('chi-square distribution', () => {
  // Critical values from standard tables: the 5% points of χ² with 1 and 2 df, and the 0.1%
  // point 10.828 of 1 df (printed to 3 decimals).
  it('reproduces the table critical values', () => {
    expect(relErr(chiSquareSf(3.841458820694124, 1), 0.05)).toBeLessThan(1e-14);
    expect(relErr(chiSquareSf(5.991464547107979, 2), 0.05)).toBeLessThan(1e-14);
    expect(Math.abs(chiSquareSf(10.828, 1) - 0.001)).toBeLessThan(5e-7);
  });

  // mpmath gammainc(df/2, x/2, ∞, regularized) at 50 digits.
  it.each([
    [6.634896601021214, 1, 0.010000000000000008685],
    [7.814727903251178, 3, 0.050000000000000037632],
    [9.487729036781154, 4, 0.050000000000000057239],
    [11.070497693516351, 5, 0.050000000000000051957],
    [20, 10, 0.029252688076961072673],
    [0.5, 1, 0.47950012218695346232],
    [0.001, 3, 0.99999159208094195384],
    [50, 5, 1.3857973367009593204e-9],
    [100, 1, 1.5239706048321052132e-23],
    [10.828, 1, 0.00099976571958309236492],
  ])('P[χ² > %d | %d df] is within 1e-14 relative of the reference', (x, df, expected) => {
    expect(relErr(chiSquareSf(x, df), expected)).toBeLessThan(1e-14);
  });

  // Out to p ≈ e^{−700}; the prefactor e^{−x/2}(x/2)^a is an exponential of an x-sized exponent,
  // so the relative error there grows to ~x·ε.
  it('with 2 df has the closed form exp(−x/2)', () => {
    fc.assert(
      fc.property(fc.double({ min: 0, max: 1400, noNaN: true }), (x) => {
        expect(relErr(chiSquareSf(x, 2), Math.exp(-x / 2))).toBeLessThan(3e-13);
      }),
      { numRuns: 1000 },
    );
  });

  it('with 4 df has the closed form exp(−x/2)(1 + x/2)', () => {
    fc.assert(
      fc.property(fc.double({ min: 0, max: 1400, noNaN: true }), (x) => {
        expect(relErr(chiSquareSf(x, 4), Math.exp(-x / 2) * (1 + x / 2))).toBeLessThan(3e-13);
      }),
      { numRuns: 1000 },
    );
  });

  it('with 1 df is the two-sided normal tail 2·(1 − Φ(√x))', () => {
    fc.assert(
      fc.property(fc.double({ min: 1e-6, max: 1000, noNaN: true }), (x) => {
        expect(relErr(chiSquareSf(x, 1), 2 * normalSf(Math.sqrt(x)))).toBeLessThan(5e-13);
      }),
      { numRuns: 1000 },
    );
  });

  it('is the Poisson tail for even df: P[χ²_2k > 2x] = Q(k, x) = e^{−x} Σ_{j<k} x^j/j!', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 25 }), fc.double({ min: 1e-3, max: 60, noNaN: true }), (k, x) => {
        let term = Math.exp(-x);
        let sum = 0;
        for (let j = 0; j < k; j++) {
          sum += term;
          term *= x / (j + 1);
        }
        expect(relErr(chiSquareSf(2 * x, 2 * k), sum)).toBeLessThan(1e-12);
      }),
      { numRuns: 1000 },
    );
  });

  it('handles the domain edges', () => {
    expect(chiSquareSf(0, 3)).toBe(1);
    expect(chiSquareSf(-1, 3)).toBe(1);
    expect(chiSquareSf(Infinity, 3)).toBe(0);
    expect(chiSquareSf(1, 0)).toBeNaN();
    expect(chiSquareSf(Number.NaN, 3)).toBeNaN();
  });
});
