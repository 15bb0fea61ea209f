/**
 * Always-valid inference for the difference of two conversion rates: the mixture sequential
 * probability ratio test (mSPRT) with a normal mixing distribution, after Johari, Koomen, Pekelis
 * and Walsh, "Always Valid Inference: Continuous Monitoring of A/B Tests" (Operations Research,
 * 2022; arXiv 2015/2017).
 *
 * With θ̂ = p̂_B − p̂_A, its variance V = p̂_A(1 − p̂_A)/n_A + p̂_B(1 − p̂_B)/n_B and a N(0, τ²)
 * mixture over the true difference θ under H1, the mixture likelihood ratio against H0: θ = 0 is
 *
 *   Λ = √(V / (V + τ²)) · exp(θ̂² τ² / (2 V (V + τ²))).
 *
 * Under H0, Λ is (asymptotically) a non-negative martingale with mean 1, so by Ville's inequality
 * P(Λ ever reaches 1/α) ≤ α: an analyst may look after every visitor and stop whenever
 * p = 1/Λ ≤ α without inflating the false-positive rate. The always-valid p-value is the running
 * minimum of 1/Λ over all looks; `msprtPValue` gives 1/Λ for the current cumulative counts and
 * {@link updateSequentialState} keeps the running minimum (the decision "1/Λ ≤ α now" is already
 * valid on its own; the running minimum only makes the reported p-value non-increasing).
 * Inverting the test gives the confidence sequence
 *
 *   θ̂ ± √( (V (V + τ²) / τ²) · (ln((V + τ²)/V) − 2 ln α) ),
 *
 * which covers the true θ at all times simultaneously with probability ≥ 1 − α; 0 lies outside it
 * exactly when 1/Λ < α. V is a plug-in estimate, so the guarantee is asymptotic (the normal
 * approximation of the binomial); the simulation in sequential.test.ts checks it at realistic
 * sizes.
 *
 * τ² (the mixing variance) is the prior scale of plausible true differences: the test is most
 * powerful for effects around τ, and still valid for any. {@link defaultMixingVariance} sets τ to
 * a relative effect (10% by default) of the baseline rate. Fix it in advance for an experiment,
 * for example from the planned minimum detectable effect; the default derives the baseline from
 * the pooled observed rate, a plug-in like V.
 */

import type { Arm } from './two-proportion.ts';

/** Default relative effect used to scale the mixing distribution (τ = 10% of the baseline rate). */
export const DEFAULT_RELATIVE_EFFECT = 0.1;

/** τ² = (relativeEffect · baselineRate)²: mixing variance for effects of that relative size. */
export function defaultMixingVariance(baselineRate: number, relativeEffect = DEFAULT_RELATIVE_EFFECT): number {
  const tau = relativeEffect * baselineRate;
  return tau * tau;
}

/** Statistic of the mSPRT at the current counts; null when the variance estimate is 0. */
export interface MsprtStatistic {
  /** θ̂ = p̂_B − p̂_A. */
  theta: number;
  /** V, the estimated variance of θ̂. */
  variance: number;
  /** ln Λ, kept in log space because Λ overflows for clear effects. */
  logLambda: number;
}

function thetaAndVariance(control: Arm, treatment: Arm): { theta: number; variance: number } | null {
  if (!(control.exposures > 0) || !(treatment.exposures > 0)) return null;
  const pA = control.conversions / control.exposures;
  const pB = treatment.conversions / treatment.exposures;
  const variance = (pA * (1 - pA)) / control.exposures + (pB * (1 - pB)) / treatment.exposures;
  return { theta: pB - pA, variance };
}

/**
 * ln Λ of the normal-mixture mSPRT for the current cumulative counts. Returns null when either
 * arm is empty, the variance estimate is 0 (both rates 0 or 1) or τ² is not positive: no evidence
 * can be claimed then.
 */
export function msprtStatistic(control: Arm, treatment: Arm, tau2: number): MsprtStatistic | null {
  const tv = thetaAndVariance(control, treatment);
  if (tv === null || !(tv.variance > 0) || !(tau2 > 0) || !Number.isFinite(tau2)) return null;
  const { theta, variance: v } = tv;
  const logLambda = -0.5 * Math.log1p(tau2 / v) + (theta * theta * tau2) / (2 * v * (v + tau2));
  return { theta, variance: v, logLambda };
}

/** 1/Λ capped at 1 for the current counts; 1 when {@link msprtStatistic} is null. Keep the running minimum across looks. */
export function msprtPValue(control: Arm, treatment: Arm, tau2: number): number {
  const s = msprtStatistic(control, treatment, tau2);
  if (s === null) return 1;
  return Math.min(1, Math.exp(-s.logLambda));
}

/**
 * Confidence sequence for θ = p_B − p_A at level 1 − α for the current counts, clipped to
 * [−1, 1]; the whole [−1, 1] when the statistic is undefined.
 */
export function confidenceSequence(control: Arm, treatment: Arm, tau2: number, alpha = 0.05): { estimate: number; low: number; high: number } {
  const tv = thetaAndVariance(control, treatment);
  const estimate = tv?.theta ?? 0;
  if (tv === null || !(tv.variance > 0) || !(tau2 > 0) || !Number.isFinite(tau2)) return { estimate, low: -1, high: 1 };
  const v = tv.variance;
  const half = Math.sqrt(((v * (v + tau2)) / tau2) * (Math.log1p(tau2 / v) - 2 * Math.log(alpha)));
  return { estimate, low: Math.max(-1, estimate - half), high: Math.min(1, estimate + half) };
}

/** What a caller stores between looks: the running minimum p-value and the intersected interval. */
export interface SequentialState {
  pValue: number;
  low: number;
  high: number;
}

/**
 * Folds the current look into the stored state: running minimum of the p-value and intersection
 * of the confidence sequences (both remain valid under continuous monitoring). If the intersection
 * is empty — possible only with probability ≤ α, or if α or τ² changed between looks — the current
 * interval is kept alone.
 */
export function updateSequentialState(previous: SequentialState | undefined, current: SequentialState): SequentialState {
  if (previous === undefined) return current;
  const low = Math.max(previous.low, current.low);
  const high = Math.min(previous.high, current.high);
  const pValue = Math.min(previous.pValue, current.pValue);
  return low <= high ? { pValue, low, high } : { pValue, low: current.low, high: current.high };
}
