/**
 * Frequentist comparison of two conversion rates (control A, treatment B) at a fixed horizon.
 *
 * - Test: the pooled two-proportion z-test, z = (p̂_B − p̂_A) / √(p̄(1 − p̄)(1/n_A + 1/n_B)) with
 *   p̄ the pooled rate, two-sided p-value 2·(1 − Φ(|z|)). This is the textbook test (equivalent to
 *   Pearson's chi-square on the 2×2 table without continuity correction).
 * - Interval on the difference: the unpooled Wald interval
 *   (p̂_B − p̂_A) ± z_{1−α/2}·√(p̂_A(1 − p̂_A)/n_A + p̂_B(1 − p̂_B)/n_B).
 * - Interval on the relative uplift p_B/p_A − 1: the delta method on the log of the ratio,
 *   ln(p̂_B/p̂_A) ± z_{1−α/2}·√((1 − p̂_A)/(n_A p̂_A) + (1 − p̂_B)/(n_B p̂_B)), exponentiated, minus 1
 *   (Katz et al. 1978). It is asymmetric around the point estimate, always contains it, and never
 *   goes below −100%. Fieller's interval is not used: it can be unbounded.
 *
 * The test (pooled SE) and the difference interval (unpooled SE) use different standard errors,
 * as most tools do; near the significance boundary they can disagree. With equal sample sizes the
 * pooled SE is never smaller, so "p < α" implies "interval excludes 0", not the converse.
 */

import { normalQuantile, normalSf } from './normal.ts';

/** Unique exposed visitors and, among them, unique converting visitors. */
export interface Arm {
  exposures: number;
  conversions: number;
}

/** A point estimate with a two-sided interval. */
export interface Interval {
  estimate: number;
  low: number;
  high: number;
}

function rate(arm: Arm): number {
  if (!(arm.exposures > 0)) throw new RangeError('exposures must be positive to compute a rate');
  return arm.conversions / arm.exposures;
}

/** Two-sided critical value z_{1−α/2}, computed from the lower tail to avoid rounding 1 − α/2. */
export function criticalValue(alpha: number): number {
  return -normalQuantile(alpha / 2);
}

/**
 * Pooled two-proportion z-test of H0: p_A = p_B. Returns z (positive when B converts better) and
 * the two-sided p-value. When the pooled rate is 0 or 1 the arms are identical: z = 0, p = 1.
 * Both arms need at least one exposure.
 */
export function twoProportionZTest(control: Arm, treatment: Arm): { z: number; pValue: number } {
  const pA = rate(control);
  const pB = rate(treatment);
  const pooled = (control.conversions + treatment.conversions) / (control.exposures + treatment.exposures);
  const se = Math.sqrt(pooled * (1 - pooled) * (1 / control.exposures + 1 / treatment.exposures));
  if (!(se > 0)) return { z: 0, pValue: 1 };
  const z = (pB - pA) / se;
  return { z, pValue: Math.min(1, 2 * normalSf(Math.abs(z))) };
}

/**
 * Unpooled Wald interval for p_B − p_A at confidence 1 − α. Degenerates to a zero-width interval
 * when both observed rates are 0 or 1 (the Wald interval's known weakness at tiny counts).
 */
export function differenceInterval(control: Arm, treatment: Arm, alpha = 0.05): Interval & { standardError: number } {
  const pA = rate(control);
  const pB = rate(treatment);
  const se = Math.sqrt((pA * (1 - pA)) / control.exposures + (pB * (1 - pB)) / treatment.exposures);
  const estimate = pB - pA;
  const half = criticalValue(alpha) * se;
  return { estimate, low: estimate - half, high: estimate + half, standardError: se };
}

/**
 * Interval for the relative uplift p_B/p_A − 1 at confidence 1 − α, by the delta method on
 * ln(p_B/p_A). Returns null when either observed rate is 0 (the log ratio is undefined); the
 * point estimate alone is then `differenceInterval(...).estimate / p̂_A` where p̂_A > 0.
 */
export function relativeUpliftInterval(control: Arm, treatment: Arm, alpha = 0.05): Interval | null {
  const pA = rate(control);
  const pB = rate(treatment);
  if (!(pA > 0) || !(pB > 0)) return null;
  const logRatio = Math.log(pB / pA);
  const se = Math.sqrt((1 - pA) / control.conversions + (1 - pB) / treatment.conversions);
  const half = criticalValue(alpha) * se;
  return { estimate: Math.expm1(logRatio), low: Math.expm1(logRatio - half), high: Math.expm1(logRatio + half) };
}
