import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  confidenceSequence,
  defaultMixingVariance,
  msprtPValue,
  msprtStatistic,
  updateSequentialState,
  type SequentialState,
} from './sequential.ts';
import { twoProportionZTest, type Arm } from './two-proportion.ts';
import { rng as mulberry32 } from '../../schemas/testing/oracle.ts';

const arm = (exposures: number, conversions: number): Arm => ({ exposures, conversions });

const arms = fc
  .tuple(fc.integer({ min: 20, max: 200_000 }), fc.integer({ min: 20, max: 200_000 }), fc.double({ min: 0.001, max: 0.999, noNaN: true }), fc.double({ min: 0.001, max: 0.999, noNaN: true }))
  .map(([nA, nB, fA, fB]) => [arm(nA, Math.max(1, Math.floor(fA * nA))), arm(nB, Math.max(1, Math.floor(fB * nB)))] as const);

describe('mSPRT statistic', () => {
  it('matches the published formula Λ = √(V/(V+τ²))·exp(θ̂²τ²/(2V(V+τ²))) computed inline', () => {
    const a = arm(1000, 100);
    const b = arm(1000, 130);
    const tau2 = 1e-4;
    const V = (0.1 * 0.9) / 1000 + (0.13 * 0.87) / 1000;
    const theta = 0.03;
    const lambda = Math.sqrt(V / (V + tau2)) * Math.exp((theta * theta * tau2) / (2 * V * (V + tau2)));
    const s = msprtStatistic(a, b, tau2)!;
    expect(s.theta).toBeCloseTo(theta, 15);
    expect(s.variance).toBeCloseTo(V, 18);
    expect(Math.exp(s.logLambda)).toBeCloseTo(lambda, 12);
    expect(msprtPValue(a, b, tau2)).toBeCloseTo(Math.min(1, 1 / lambda), 12);
  });

  it('at θ̂ = 0, Λ = √(V/(V+τ²)) < 1 and the p-value is 1', () => {
    const a = arm(5000, 400);
    const b = arm(5000, 400);
    const tau2 = 2.5e-5;
    const V = 2 * ((0.08 * 0.92) / 5000);
    expect(Math.exp(msprtStatistic(a, b, tau2)!.logLambda)).toBeCloseTo(Math.sqrt(V / (V + tau2)), 14);
    expect(msprtPValue(a, b, tau2)).toBe(1);
  });

  it('Λ → 1 as τ² → 0 (a point mixture at θ = 0 is H0 itself)', () => {
    expect(msprtStatistic(arm(1000, 100), arm(1000, 150), 1e-20)!.logLambda).toBeCloseTo(0, 12);
  });

  it('never falls below its θ̂ = 0 value ½·ln(V/(V+τ²))', () => {
    fc.assert(
      fc.property(arms, fc.double({ min: 1e-8, max: 1e-2, noNaN: true }), ([a, b], tau2) => {
        const s = msprtStatistic(a, b, tau2)!;
        // ln Λ is ½ln(V/(V+τ²)) plus a term proportional to θ̂², so it can only grow with |θ̂|.
        const base = -0.5 * Math.log1p(tau2 / s.variance);
        expect(s.logLambda).toBeGreaterThanOrEqual(base - 1e-12);
      }),
    );
  });

  it('has no evidence without data or variance', () => {
    expect(msprtStatistic(arm(0, 0), arm(10, 1), 1e-4)).toBeNull();
    expect(msprtPValue(arm(100, 0), arm(100, 0), 1e-4)).toBe(1);
    expect(msprtPValue(arm(100, 10), arm(100, 20), 0)).toBe(1);
    expect(confidenceSequence(arm(100, 0), arm(100, 0), 1e-4)).toEqual({ estimate: 0, low: -1, high: 1 });
  });

  it('defaultMixingVariance is (relative effect × baseline)²', () => {
    expect(defaultMixingVariance(0.05)).toBeCloseTo(0.005 ** 2, 18);
    expect(defaultMixingVariance(0.2, 0.25)).toBeCloseTo(0.05 ** 2, 18);
  });
});

describe('confidence sequence', () => {
  it('matches θ̂ ± √((V(V+τ²)/τ²)(ln((V+τ²)/V) − 2 ln α)) computed inline', () => {
    const tau2 = 1e-4;
    const V = (0.1 * 0.9) / 1000 + (0.13 * 0.87) / 1000;
    const half = Math.sqrt(((V * (V + tau2)) / tau2) * (Math.log((V + tau2) / V) - 2 * Math.log(0.05)));
    const cs = confidenceSequence(arm(1000, 100), arm(1000, 130), tau2, 0.05);
    expect(cs.low).toBeCloseTo(0.03 - half, 14);
    expect(cs.high).toBeCloseTo(0.03 + half, 14);
  });

  it('excludes 0 exactly when the always-valid p-value is below α', () => {
    fc.assert(
      fc.property(arms, fc.double({ min: 1e-8, max: 1e-2, noNaN: true }), fc.double({ min: 0.001, max: 0.2, noNaN: true }), ([a, b], tau2, alpha) => {
        const p = msprtPValue(a, b, tau2);
        fc.pre(Math.abs(p - alpha) > 1e-9 * alpha);
        const cs = confidenceSequence(a, b, tau2, alpha);
        expect(cs.low > 0 || cs.high < 0).toBe(p < alpha);
      }),
      { numRuns: 2000 },
    );
  });

  it('contains θ̂ and is wider than the fixed-horizon interval θ̂ ± z·√V', () => {
    fc.assert(
      fc.property(arms, fc.double({ min: 1e-8, max: 1e-2, noNaN: true }), ([a, b], tau2) => {
        const cs = confidenceSequence(a, b, tau2, 0.05);
        const s = msprtStatistic(a, b, tau2)!;
        expect(cs.low).toBeLessThanOrEqual(s.theta);
        expect(cs.high).toBeGreaterThanOrEqual(s.theta);
        const fixedHalf = 1.959963984540054 * Math.sqrt(s.variance);
        if (cs.low > -1 && cs.high < 1) expect(cs.high - cs.low).toBeGreaterThan(2 * fixedHalf);
      }),
    );
  });
});

describe('updateSequentialState', () => {
  it('keeps the running minimum p-value and intersects intervals', () => {
    const first: SequentialState = { pValue: 0.3, low: -0.02, high: 0.05 };
    const second: SequentialState = { pValue: 0.5, low: -0.03, high: 0.04 };
    expect(updateSequentialState(undefined, first)).toEqual(first);
    expect(updateSequentialState(first, second)).toEqual({ pValue: 0.3, low: -0.02, high: 0.04 });
  });

  it('falls back to the current interval when the intersection is empty', () => {
    const prev: SequentialState = { pValue: 0.01, low: 0.01, high: 0.03 };
    const now: SequentialState = { pValue: 0.02, low: -0.05, high: -0.005 };
    expect(updateSequentialState(prev, now)).toEqual({ pValue: 0.01, low: -0.05, high: -0.005 });
  });
});

/**
 * Simulates `runs` experiments of `visitors` visitors split 50/50, peeking every `every` visitors,
 * and counts the runs in which (a) the mSPRT ever rejected at α, (b) a naive fixed-horizon z-test
 * ever had p < α, (c) the confidence sequence ever excluded the true difference.
 */
function simulate(opts: { pA: number; pB: number; runs: number; visitors: number; every: number; alpha: number; seed: number }) {
  const rng = mulberry32(opts.seed);
  let sequential = 0;
  let naive = 0;
  let miscovered = 0;
  let wrongDirection = 0;
  const truth = opts.pB - opts.pA;
  for (let r = 0; r < opts.runs; r++) {
    const a = arm(0, 0);
    const b = arm(0, 0);
    let state: SequentialState | undefined;
    let naiveHit = false;
    let missed = false;
    for (let v = 1; v <= opts.visitors; v++) {
      if (rng() < 0.5) {
        a.exposures++;
        if (rng() < opts.pA) a.conversions++;
      } else {
        b.exposures++;
        if (rng() < opts.pB) b.conversions++;
      }
      if (v % opts.every !== 0 || a.exposures === 0 || b.exposures === 0) continue;
      const pooled = (a.conversions + b.conversions) / (a.exposures + b.exposures);
      const tau2 = defaultMixingVariance(pooled);
      const cs = confidenceSequence(a, b, tau2, opts.alpha);
      state = updateSequentialState(state, { pValue: msprtPValue(a, b, tau2), low: cs.low, high: cs.high });
      if (cs.low > truth || cs.high < truth) missed = true;
      if (twoProportionZTest(a, b).pValue < opts.alpha) naiveHit = true;
    }
    if (state !== undefined && state.pValue <= opts.alpha) {
      sequential++;
      if (truth > 0 && state.high < 0) wrongDirection++;
    }
    if (naiveHit) naive++;
    if (missed) miscovered++;
  }
  return { sequential: sequential / opts.runs, naive: naive / opts.runs, miscovered: miscovered / opts.runs, wrongDirection };
}

describe('always-valid under continuous peeking (simulation, seeded)', () => {
  const alpha = 0.05;

  it.each([
    [0.1, 400, 11],
    [0.02, 400, 12],
  ])('A/A at %d conversion: peeking every 100 up to 20,000 keeps the mSPRT at ≤ α while the naive z-test inflates', (p, runs, seed) => {
    const r = simulate({ pA: p, pB: p, runs, visitors: 20_000, every: 100, alpha, seed });
    console.info(`A/A p=${p}, ${runs} runs, 200 peeks: mSPRT ever rejected ${r.sequential}, naive z-test ever p<0.05 ${r.naive}`);
    const mcTolerance = 3 * Math.sqrt((alpha * (1 - alpha)) / runs);
    expect(r.sequential).toBeLessThanOrEqual(alpha + mcTolerance);
    expect(r.naive).toBeGreaterThan(0.2);
    expect(r.naive).toBeGreaterThan(4 * r.sequential);
  });

  it('with a real effect (10% → 12%) it rejects, in the right direction, and keeps covering the truth', () => {
    const runs = 200;
    const r = simulate({ pA: 0.1, pB: 0.12, runs, visitors: 20_000, every: 100, alpha, seed: 21 });
    console.info(`10% vs 12%, ${runs} runs: mSPRT rejected ${r.sequential}, naive ${r.naive}, CS ever missed the true +0.02 in ${r.miscovered}`);
    expect(r.sequential).toBeGreaterThan(0.8);
    expect(r.wrongDirection).toBe(0);
    expect(r.miscovered).toBeLessThanOrEqual(alpha + 3 * Math.sqrt((alpha * (1 - alpha)) / runs));
  });

  it('eventually rejects a small effect given enough traffic', () => {
    const r = simulate({ pA: 0.1, pB: 0.11, runs: 20, visitors: 150_000, every: 1000, alpha, seed: 5 });
    expect(r.sequential).toBeGreaterThanOrEqual(0.9);
  });
});
