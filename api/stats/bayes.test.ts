/* eslint-disable no-loss-of-precision -- reference values are quoted with every digit the reference tool printed */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  chanceToBeatControl,
  EXACT_MAX_TERMS,
  posterior,
  probabilityBBeatsA,
  probabilityBBeatsAExact,
  probabilityBBeatsANormal,
} from './bayes.ts';
import { rng as mulberry32 } from '../../schemas/testing/oracle.ts';

const arm = (exposures: number, conversions: number) => ({ exposures, conversions });

// ---- Independent references -------------------------------------------------------------------

function factorial(n: number): bigint {
  let f = 1n;
  for (let i = 2n; i <= BigInt(n); i++) f *= i;
  return f;
}

/**
 * Exact P(p_B > p_A) in rational arithmetic, derived independently of Evan Miller's sum:
 * P = E_A[1 − I_{p_A}(α_B, β_B)] and 1 − I_x(α_B, β_B) = P[Bin(m, x) < α_B] with m = α_B + β_B − 1,
 * so P = Σ_{j<α_B} C(m, j)·B(α_A + j, β_A + m − j)/B(α_A, β_A), every Beta function a ratio of
 * factorials.
 */
function exactRational(aA: number, bA: number, aB: number, bB: number): number {
  const m = aB + bB - 1;
  // B(a, b) = (a−1)!(b−1)!/(a+b−1)!; all terms share the denominator (α_A+β_A+m−1)!·(α_A−1)!(β_A−1)!.
  const den = factorial(aA + bA + m - 1) * factorial(aA - 1) * factorial(bA - 1);
  let num = 0n;
  for (let j = 0; j < aB; j++) {
    const choose = factorial(m) / (factorial(j) * factorial(m - j));
    num += choose * factorial(aA + j - 1) * factorial(bA + m - j - 1) * factorial(aA + bA - 1);
  }
  const scale = 10n ** 40n;
  return Number((num * scale) / den) / 1e40;
}

/** Standard normal by Box–Muller. */
function normal(rng: () => number): number {
  const u = 1 - rng();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rng());
}

/** Gamma(shape, 1) for shape ≥ 1 by Marsaglia & Tsang (2000). */
function gamma(shape: number, rng: () => number): number {
  const d = shape - 1 / 3;
  const c = 1 / Math.sqrt(9 * d);
  for (;;) {
    const x = normal(rng);
    const v0 = 1 + c * x;
    if (v0 <= 0) continue;
    const v = v0 * v0 * v0;
    const u = rng();
    if (u < 1 - 0.0331 * x * x * x * x) return d * v;
    if (Math.log(u) < 0.5 * x * x + d * (1 - v + Math.log(v))) return d * v;
  }
}

function betaSample(a: number, b: number, rng: () => number): number {
  const x = gamma(a, rng);
  return x / (x + gamma(b, rng));
}

// ---- Tests -------------------------------------------------------------------------------------

describe('probabilityBBeatsAExact (Evan Miller closed form)', () => {
  it('agrees with exact rational arithmetic on small integer posteriors', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 25 }), fc.integer({ min: 1, max: 25 }), fc.integer({ min: 1, max: 25 }), fc.integer({ min: 1, max: 25 }), (aA, bA, aB, bB) => {
        const expected = exactRational(aA, bA, aB, bB);
        const actual = probabilityBBeatsAExact({ alpha: aA, beta: bA }, { alpha: aB, beta: bB });
        expect(Math.abs(actual - expected)).toBeLessThan(1e-13);
      }),
      { numRuns: 300 },
    );
  });

  it('reproduces hand-integrated cases', () => {
    // p_A ~ U(0,1), p_B ~ Beta(2,1) (density 2y): ∫₀¹ (1 − x²) dx = 2/3.
    expect(probabilityBBeatsAExact({ alpha: 1, beta: 1 }, { alpha: 2, beta: 1 })).toBeCloseTo(2 / 3, 14);
    // p_B ~ Beta(1,2) (density 2(1−y)): ∫₀¹ (1 − x)² dx = 1/3.
    expect(probabilityBBeatsAExact({ alpha: 1, beta: 1 }, { alpha: 1, beta: 2 })).toBeCloseTo(1 / 3, 14);
    // A ~ Beta(1,2) (0 of 1 converted), B ~ Beta(2,1) (1 of 1): 5/6.
    expect(chanceToBeatControl(arm(1, 0), arm(1, 1)).probability).toBeCloseTo(5 / 6, 14);
  });

  // References by numerical integration of ∫ f_A(x)(1 − I_x(α_B, β_B)) dx: mpmath quad at 30
  // digits (first four), SciPy quad over Boost's beta functions (last, where mpmath is too slow).
  it.each([
    [1000, 100, 1000, 120, 0.92318343897355975351, 1e-13],
    [1000, 200, 1000, 250, 0.99628332913044021416, 1e-13],
    [10, 3, 12, 6, 0.81538565082783685557, 1e-14],
    [10000, 1000, 10000, 1040, 0.82493749129727530442, 1e-12],
    [10_000_000, 100_000, 10_000_000, 100_300, 0.7497483552500916, 5e-10],
  ])('control %d/%d vs treatment %d/%d → %d', (nA, cA, nB, cB, expected, tol) => {
    const p = probabilityBBeatsAExact(posterior(arm(nA, cA)), posterior(arm(nB, cB)));
    expect(Math.abs(p - expected)).toBeLessThan(tol);
  });

  it('is ½ for identical posteriors, and P(B > A) + P(A > B) = 1', () => {
    for (const [n, c] of [[10, 3], [1000, 100], [1000, 500], [20_000, 3000], [1_000_000, 10_000]] as const) {
      const p = posterior(arm(n, c));
      expect(Math.abs(probabilityBBeatsAExact(p, p) - 0.5)).toBeLessThan(1e-11);
    }
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 5000 }), fc.integer({ min: 1, max: 5000 }), fc.integer({ min: 1, max: 5000 }), fc.integer({ min: 1, max: 5000 }), (aA, bA, aB, bB) => {
        const a = { alpha: aA, beta: bA };
        const b = { alpha: aB, beta: bB };
        expect(Math.abs(probabilityBBeatsAExact(a, b) + probabilityBBeatsAExact(b, a) - 1)).toBeLessThan(1e-10); // sums of ~5,000 terms: 1e-12 was met only most of the time
      }),
      { numRuns: 300 },
    );
  });

  it('rejects non-integer parameters', () => {
    expect(() => probabilityBBeatsAExact({ alpha: 1.5, beta: 2 }, { alpha: 2, beta: 2 })).toThrow(RangeError);
  });
});

describe('Monte Carlo check with a seeded Marsaglia–Tsang beta sampler', () => {
  it('the test sampler itself reproduces Beta means', () => {
    const rng = mulberry32(1);
    const n = 50_000;
    let sum = 0;
    for (let i = 0; i < n; i++) sum += betaSample(3, 7, rng);
    // sd of Beta(3,7) = √(21/1100) ≈ 0.138; 5 standard errors.
    expect(Math.abs(sum / n - 0.3)).toBeLessThan((5 * 0.1382) / Math.sqrt(n));
  });

  it.each([
    [1000, 100, 1000, 120],
    [50, 5, 60, 9],
    [10, 3, 12, 6],
    [200, 20, 180, 18],
    [5000, 40, 5200, 35],
  ])('control %d/%d vs treatment %d/%d agrees within 4.5 Monte Carlo standard errors', (nA, cA, nB, cB) => {
    const a = posterior(arm(nA, cA));
    const b = posterior(arm(nB, cB));
    const rng = mulberry32(nA * 31 + cB);
    const draws = 100_000;
    let wins = 0;
    for (let i = 0; i < draws; i++) if (betaSample(b.alpha, b.beta, rng) > betaSample(a.alpha, a.beta, rng)) wins++;
    const mc = wins / draws;
    const exact = probabilityBBeatsAExact(a, b);
    const se = Math.sqrt((exact * (1 - exact)) / draws);
    expect(Math.abs(mc - exact)).toBeLessThan(4.5 * se + 1e-9);
  });
});

describe('normal approximation for large counts', () => {
  // Cases where both methods apply; the exact sum is the reference.
  it.each([
    [100_000, 10_000, 100_000, 10_150, 1e-5],
    [100_000, 20_000, 100_000, 20_200, 1e-5],
    [1_000_000, 100_000, 1_000_000, 100_300, 2e-6],
    [1_000_000, 500_000, 1_000_000, 501_000, 2e-6],
    [1_000_000, 100_000, 1_200_000, 120_300, 2e-6],
    [10_000_000, 100_000, 10_000_000, 100_300, 2e-6],
  ])('control %d/%d vs treatment %d/%d: |normal − exact| < %d', (nA, cA, nB, cB, tol) => {
    const a = posterior(arm(nA, cA));
    const b = posterior(arm(nB, cB));
    expect(Math.abs(probabilityBBeatsANormal(a, b) - probabilityBBeatsAExact(a, b))).toBeLessThan(tol);
  });

  it('the skewness correction matters when the arms differ in size', () => {
    const a = posterior(arm(1_000_000, 100_000));
    const b = posterior(arm(1_200_000, 120_300));
    const exact = probabilityBBeatsAExact(a, b);
    const corrected = Math.abs(probabilityBBeatsANormal(a, b) - exact);
    const plain = Math.abs(probabilityBBeatsANormal(a, b, { skewCorrection: false }) - exact);
    expect(corrected).toBeLessThan(plain / 10);
  });

  it('is what the dispatcher uses beyond the term budget, e.g. 10^7 visitors at 50%', () => {
    // Reference: SciPy quad of f_A(x)·(1 − F_B(x)) with Boost's beta functions.
    const r = chanceToBeatControl(arm(10_000_000, 5_000_000), arm(10_000_000, 5_003_000));
    expect(r.method).toBe('normal');
    expect(Math.abs(r.probability - 0.9101437521977047)).toBeLessThan(1e-6);
    const unequal = chanceToBeatControl(arm(10_000_000, 1_000_000), arm(9_000_000, 901_500));
    expect(unequal.method).toBe('normal');
    expect(Math.abs(unequal.probability - 0.8866167225376089)).toBeLessThan(1e-6);
  });

  it('dispatches on the shortest sum, not on the sample size', () => {
    // 10^7 visitors but only ~10^3 conversions: the sum over conversions is short, so exact.
    expect(chanceToBeatControl(arm(10_000_000, 1000), arm(10_000_000, 1100)).method).toBe('exact');
    expect(probabilityBBeatsA({ alpha: EXACT_MAX_TERMS, beta: 1e6 }, { alpha: 2e5, beta: 1e6 }).method).toBe('exact');
    expect(probabilityBBeatsA({ alpha: EXACT_MAX_TERMS + 1, beta: 1e6 }, { alpha: 2e5, beta: 1e6 }).method).toBe('normal');
    expect(probabilityBBeatsA({ alpha: 1.5, beta: 3 }, { alpha: 2, beta: 3 }).method).toBe('normal');
  });
});
