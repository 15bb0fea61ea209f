/* eslint-disable no-loss-of-precision -- reference values are quoted with every digit the reference tool printed */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  betaCdf,
  chiSquareCdf,
  chiSquareSf,
  logBeta,
  logGamma,
  regularizedBeta,
  regularizedGammaP,
  regularizedGammaQ,
} from './gamma.ts';
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

describe('logGamma', () => {
  // mpmath loggamma at 50 digits.
  it.each([
    [0.001, 6.9071788853838536617],
    [0.1, 2.252712651734205902],
    [0.5, 0.57236494292470008707],
    [1.5, -0.12078223763524522235],
    [3.7, 1.4280723266653881292],
    [9.99, 12.77931521435019336],
    [10, 12.801827480081469611],
    [10.5, 13.940625219403763633],
    [25.3, 55.746181183584592334],
    [100, 359.13420536957539878],
    [12345.678, 103959.91990554605982],
    [1e7, 151180949.36947391394],
  ])('lnΓ(%d) is within 4e-15 of the 50-digit reference (absolute below 1, relative above)', (x, expected) => {
    expect(Math.abs(logGamma(x) - expected)).toBeLessThan(4e-15 * Math.max(1, Math.abs(expected)));
  });

  it('lnΓ(½) = ln √π and lnΓ(1) = lnΓ(2) = 0', () => {
    expect(logGamma(0.5)).toBeCloseTo(0.5 * Math.log(Math.PI), 15);
    expect(Math.abs(logGamma(1))).toBeLessThan(1e-15);
    expect(Math.abs(logGamma(2))).toBeLessThan(1e-15);
  });

  it('lnΓ(n) = ln((n − 1)!) for n = 1..170, from exact BigInt factorials', () => {
    for (let n = 1; n <= 170; n++) {
      const expected = Math.log(Number(factorial(n - 1)));
      expect(Math.abs(logGamma(n) - expected)).toBeLessThan(4e-15 * Math.max(1, expected));
    }
  });

  it('satisfies Γ(x + 1) = x Γ(x), including across the Lanczos/Stirling switch at 10', () => {
    fc.assert(
      fc.property(fc.double({ min: 1e-3, max: 1e6, noNaN: true }), (x) => {
        const lhs = logGamma(x + 1) - logGamma(x);
        expect(Math.abs(lhs - Math.log(x))).toBeLessThan(1e-14 * Math.max(1, Math.abs(logGamma(x + 1))));
      }),
      { numRuns: 1000 },
    );
    for (const x of [9, 9.5, 9.999999, 10]) expect(Math.abs(logGamma(x + 1) - logGamma(x) - Math.log(x))).toBeLessThan(1e-14);
  });

  it('is NaN outside x > 0', () => {
    expect(logGamma(0)).toBeNaN();
    expect(logGamma(-1.5)).toBeNaN();
    expect(logGamma(Number.NaN)).toBeNaN();
  });
});

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

  it('is the Poisson tail for integer shape: Q(k, x) = e^{−x} Σ_{j<k} x^j/j!', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 25 }), fc.double({ min: 1e-3, max: 60, noNaN: true }), (k, x) => {
        let term = Math.exp(-x);
        let sum = 0;
        for (let j = 0; j < k; j++) {
          sum += term;
          term *= x / (j + 1);
        }
        expect(relErr(regularizedGammaQ(k, x), sum)).toBeLessThan(1e-12);
      }),
      { numRuns: 1000 },
    );
  });

  it('P + Q = 1 and the CDF complements the survival function', () => {
    fc.assert(
      fc.property(fc.double({ min: 0.05, max: 200, noNaN: true }), fc.double({ min: 0, max: 400, noNaN: true }), (a, x) => {
        expect(Math.abs(regularizedGammaP(a, x) + regularizedGammaQ(a, x) - 1)).toBeLessThan(1e-14);
        expect(Math.abs(chiSquareCdf(2 * x, 2 * a) + chiSquareSf(2 * x, 2 * a) - 1)).toBeLessThan(1e-14);
      }),
      { numRuns: 1000 },
    );
  });

  it('handles the domain edges', () => {
    expect(chiSquareSf(0, 3)).toBe(1);
    expect(chiSquareSf(-1, 3)).toBe(1);
    expect(chiSquareSf(Infinity, 3)).toBe(0);
    expect(chiSquareSf(1, 0)).toBeNaN();
    expect(regularizedGammaP(0, 1)).toBeNaN();
  });
});

describe('regularized incomplete beta', () => {
  it('I_x(1, b) = 1 − (1 − x)^b', () => {
    fc.assert(
      fc.property(fc.double({ min: 1e-9, max: 1 - 1e-9, noNaN: true }), fc.double({ min: 0.01, max: 1e4, noNaN: true }), (x, b) => {
        const expected = -Math.expm1(b * Math.log1p(-x));
        expect(Math.abs(regularizedBeta(x, 1, b) - expected)).toBeLessThan(2e-12 * expected + 1e-300);
      }),
      { numRuns: 1000 },
    );
  });

  it('I_x(a, 1) = x^a', () => {
    fc.assert(
      fc.property(fc.double({ min: 1e-9, max: 1 - 1e-9, noNaN: true }), fc.double({ min: 0.01, max: 1e4, noNaN: true }), (x, a) => {
        const expected = Math.pow(x, a);
        expect(Math.abs(regularizedBeta(x, a, 1) - expected)).toBeLessThan(2e-12 * expected + 1e-300);
      }),
      { numRuns: 1000 },
    );
  });

  it('I_x(½, ½) = (2/π)·arcsin(√x)', () => {
    fc.assert(
      fc.property(fc.double({ min: 1e-9, max: 1 - 1e-9, noNaN: true }), (x) => {
        // Above ½ the complement keeps the reference itself accurate (arcsin is steep near 1).
        const expected = x <= 0.5 ? (2 / Math.PI) * Math.asin(Math.sqrt(x)) : 1 - (2 / Math.PI) * Math.asin(Math.sqrt(1 - x));
        expect(relErr(regularizedBeta(x, 0.5, 0.5), expected)).toBeLessThan(1e-13);
      }),
      { numRuns: 1000 },
    );
  });

  it('is the binomial tail for integers: I_x(a, b) = P[Bin(a + b − 1, x) ≥ a]', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 40 }), fc.integer({ min: 1, max: 40 }), fc.double({ min: 0.01, max: 0.99, noNaN: true }), (a, b, x) => {
        const n = a + b - 1;
        let tail = 0;
        for (let j = a; j <= n; j++) {
          const logC = Math.log(Number(factorial(n))) - Math.log(Number(factorial(j))) - Math.log(Number(factorial(n - j)));
          tail += Math.exp(logC + j * Math.log(x) + (n - j) * Math.log1p(-x));
        }
        expect(Math.abs(regularizedBeta(x, a, b) - tail)).toBeLessThan(1e-13 * Math.max(tail, 1e-3));
      }),
      { numRuns: 500 },
    );
  });

  it('is symmetric: I_x(a, b) = 1 − I_{1−x}(b, a)', () => {
    fc.assert(
      fc.property(
        fc.double({ min: 0.001, max: 0.999, noNaN: true }),
        fc.double({ min: 0.1, max: 5000, noNaN: true }),
        fc.double({ min: 0.1, max: 5000, noNaN: true }),
        (x, a, b) => {
          expect(Math.abs(regularizedBeta(x, a, b) + regularizedBeta(1 - x, b, a) - 1)).toBeLessThan(1e-11);
        },
      ),
      { numRuns: 500 },
    );
  });

  // References: mpmath betainc at 40 digits, or for large integer parameters the exact binomial
  // tail summed in 40-digit arithmetic (both agree with SciPy's betainc).
  it.each([
    [0.3, 2.5, 4, 0.35219758590676721388, 1e-14],
    [0.5, 10, 10, 0.5, 2e-15],
    [0.9, 50, 5, 0.3614471397273780478, 1e-14],
    [0.35, 30, 70, 0.86157547586610909494, 1e-14],
    [0.999, 2, 3, 0.999999996003, 1e-15],
    [0.2, 0.5, 0.5, 0.29516723530086655719, 1e-14],
    [0.0101, 100, 9900, 0.55289696791123677854, 1e-12],
    // Parameters of 1e4–1e5: the prefactor x^a(1−x)^b/B(a, b) is an exponential of ~1e4-sized
    // logs, so ~1e−12 relative is what double precision allows here.
    [0.1, 10000, 90000, 0.50112139435694962717, 5e-12],
    [0.101, 10000, 90000, 0.8540114993903499807, 5e-12],
  ])('I_%d(%d, %d) matches the reference', (x, a, b, expected, tol) => {
    expect(relErr(betaCdf(x, a, b), expected)).toBeLessThan(tol);
  });

  it('handles the domain edges', () => {
    expect(regularizedBeta(0, 2, 3)).toBe(0);
    expect(regularizedBeta(1, 2, 3)).toBe(1);
    expect(regularizedBeta(0.5, 0, 3)).toBeNaN();
  });
});
