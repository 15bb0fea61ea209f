/**
 * Bayesian chance to beat control: P(p_B > p_A) for independent Beta posteriors.
 *
 * With a uniform Beta(1, 1) prior, an arm with n exposures and c conversions has posterior
 * Beta(1 + c, 1 + n − c). For integer parameters the probability has Evan Miller's closed form
 * ("Formulas for Bayesian A/B Testing", 2015):
 *
 *   P(p_B > p_A) = Σ_{i=0}^{α_B−1} B(α_A + i, β_A + β_B) / ((β_B + i) · B(1 + i, β_B) · B(α_A, β_A))
 *
 * a sum of α_B positive terms. The same identity applied to P(p_A > p_B) and to the complements
 * 1 − p (which swap α and β) gives sums of α_A, β_A or β_B terms, so the shortest one is used.
 * Terms follow the ratio T_{i+1}/T_i = (α_A + i)(β_B + i) / ((α_A + β_A + β_B + i)(1 + i)) and
 * are accumulated in log space. Above {@link EXACT_MAX_TERMS} terms (every arm with both more
 * than ~100k conversions and ~100k non-conversions) the posteriors are so concentrated that a
 * normal approximation of p_B − p_A, with a one-term Edgeworth correction for skewness, agrees
 * with the exact sum to better than 1e−5 (see bayes.test.ts), at O(1) cost.
 */

import { logBeta } from './gamma.ts';
import { normalCdf, normalPdf } from './normal.ts';

/** Parameters of a Beta(alpha, beta) distribution. */
export interface BetaParams {
  alpha: number;
  beta: number;
}

/** The result and how it was obtained. */
export interface BeatProbability {
  probability: number;
  method: 'exact' | 'normal';
}

/** Longest closed-form sum evaluated before switching to the normal approximation. */
export const EXACT_MAX_TERMS = 100_000;

/**
 * Σ_{i=0}^{a2−1} T_i = P(X2 > X1) for X1 ~ Beta(a1, b1), X2 ~ Beta(a2, b2), a2 a positive integer.
 */
function millerSum(a1: number, b1: number, a2: number, b2: number): number {
  // T_0 = B(a1, b1 + b2) / B(a1, b1), since (β_B + 0)·B(1, β_B) = 1.
  let logTerm = logBeta(a1, b1 + b2) - logBeta(a1, b1);
  // Running log-sum-exp: sum = Σ exp(logTerm_i − max).
  let max = logTerm;
  let sum = 1;
  const s = a1 + b1 + b2;
  for (let i = 0; i < a2 - 1; i++) {
    logTerm += Math.log(((a1 + i) * (b2 + i)) / ((s + i) * (1 + i)));
    if (logTerm > max) {
      sum = sum * Math.exp(max - logTerm) + 1;
      max = logTerm;
    } else {
      sum += Math.exp(logTerm - max);
    }
  }
  return Math.exp(max + Math.log(sum));
}

function isPositiveInteger(x: number): boolean {
  return Number.isInteger(x) && x >= 1;
}

/**
 * Exact P(p_B > p_A) by the closed-form sum; every parameter must be a positive integer.
 * Costs min(α_A, β_A, α_B, β_B) terms.
 */
export function probabilityBBeatsAExact(a: BetaParams, b: BetaParams): number {
  if (![a.alpha, a.beta, b.alpha, b.beta].every(isPositiveInteger)) {
    throw new RangeError('the closed form needs positive integer Beta parameters');
  }
  const shortest = Math.min(b.alpha, a.alpha, a.beta, b.beta);
  let p: number;
  // P(B > A) directly (sum over α_B), as 1 − P(A > B) (sum over α_A), or through q = 1 − p, for
  // which B > A ⇔ q_A > q_B with q ~ Beta(β, α) (sums over β_A, β_B).
  if (shortest === b.alpha) p = millerSum(a.alpha, a.beta, b.alpha, b.beta);
  else if (shortest === a.beta) p = millerSum(b.beta, b.alpha, a.beta, a.alpha);
  else if (shortest === a.alpha) p = 1 - millerSum(b.alpha, b.beta, a.alpha, a.beta);
  else p = 1 - millerSum(a.beta, a.alpha, b.beta, b.alpha);
  return Math.min(1, Math.max(0, p));
}

function betaMoments(p: BetaParams): { mean: number; variance: number; third: number } {
  const { alpha: a, beta: b } = p;
  const s = a + b;
  const variance = (a * b) / (s * s * (s + 1));
  // Third central moment of Beta(a, b): 2ab(b − a) / (s³ (s + 1)(s + 2)).
  const third = (2 * a * b * (b - a)) / (s * s * s * (s + 1) * (s + 2));
  return { mean: a / s, variance, third };
}

/**
 * Normal approximation of P(p_B > p_A) for large parameters: D = p_B − p_A has mean μ, variance σ²
 * and third cumulant κ₃ = κ₃(B) − κ₃(A); P(D > 0) ≈ Φ(μ/σ) + (γ/6)(w² − 1)φ(w) with w = −μ/σ and
 * γ = κ₃/σ³ (one-term Edgeworth expansion). Set `skewCorrection: false` for the plain normal.
 */
export function probabilityBBeatsANormal(a: BetaParams, b: BetaParams, options: { skewCorrection?: boolean } = {}): number {
  const ma = betaMoments(a);
  const mb = betaMoments(b);
  const mu = mb.mean - ma.mean;
  const sigma = Math.sqrt(ma.variance + mb.variance);
  if (!(sigma > 0)) return mu > 0 ? 1 : mu < 0 ? 0 : 0.5;
  const w = -mu / sigma;
  let p = normalCdf(mu / sigma);
  if (options.skewCorrection !== false) {
    const gamma = (mb.third - ma.third) / (sigma * sigma * sigma);
    p += (gamma / 6) * (w * w - 1) * normalPdf(w);
  }
  return Math.min(1, Math.max(0, p));
}

/**
 * P(p_B > p_A) for Beta posteriors: exact closed form when the parameters are integers and the
 * shortest sum has at most `exactMaxTerms` terms, otherwise the normal approximation.
 */
export function probabilityBBeatsA(a: BetaParams, b: BetaParams, options: { exactMaxTerms?: number } = {}): BeatProbability {
  const maxTerms = options.exactMaxTerms ?? EXACT_MAX_TERMS;
  const integers = [a.alpha, a.beta, b.alpha, b.beta].every(isPositiveInteger);
  if (integers && Math.min(a.alpha, a.beta, b.alpha, b.beta) <= maxTerms) {
    return { probability: probabilityBBeatsAExact(a, b), method: 'exact' };
  }
  return { probability: probabilityBBeatsANormal(a, b), method: 'normal' };
}

/** Posterior Beta(1 + conversions, 1 + non-conversions) of an arm under a uniform prior. */
export function posterior(arm: { exposures: number; conversions: number }): BetaParams {
  return { alpha: 1 + arm.conversions, beta: 1 + arm.exposures - arm.conversions };
}

/**
 * Chance that the treatment's true conversion rate beats the control's, under independent
 * uniform priors: P(p_treatment > p_control | data).
 */
export function chanceToBeatControl(
  control: { exposures: number; conversions: number },
  treatment: { exposures: number; conversions: number },
  options: { exactMaxTerms?: number } = {},
): BeatProbability {
  return probabilityBBeatsA(posterior(control), posterior(treatment), options);
}
