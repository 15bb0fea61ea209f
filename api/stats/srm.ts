/**
 * Sample ratio mismatch (SRM): does the observed split of exposures match the planned traffic
 * weights? Pearson's chi-square goodness-of-fit test, χ² = Σ (O_i − E_i)² / E_i with
 * E_i = N·w_i/Σw, on k − 1 degrees of freedom.
 *
 * An SRM means assignment or exposure logging is broken (bots, redirects, a variation that crashes
 * before its exposure beacon), so every other number of the experiment is suspect. The default
 * flag threshold is p < 0.001, stricter than the usual α because the check runs on every peek of
 * every experiment and a false alarm blocks a verdict; a true SRM in a live experiment usually has
 * a far smaller p-value. Practitioners' SRM checks commonly use thresholds of 0.001 or 0.0005.
 */

import { chiSquareSf } from './gamma.ts';

/** Default p-value below which a sample ratio mismatch is flagged. */
export const SRM_THRESHOLD = 0.001;

/** Outcome of the goodness-of-fit test. */
export interface SrmResult {
  chiSquare: number;
  degreesOfFreedom: number;
  pValue: number;
  /** Expected exposures per variation under the planned split. */
  expected: number[];
  detected: boolean;
  threshold: number;
}

/**
 * Chi-square goodness of fit of `observed` exposures against the planned `weights` (any positive
 * scale; they are normalised). With no exposures at all there is nothing to test: χ² = 0, p = 1.
 */
export function sampleRatioMismatch(observed: readonly number[], weights: readonly number[], threshold = SRM_THRESHOLD): SrmResult {
  if (observed.length !== weights.length) throw new RangeError('observed and weights must have the same length');
  if (observed.length < 2) throw new RangeError('at least two variations are needed');
  if (!weights.every((w) => w > 0 && Number.isFinite(w))) throw new RangeError('weights must be positive and finite');
  if (!observed.every((o) => o >= 0 && Number.isFinite(o))) throw new RangeError('observed counts must be non-negative');
  const total = observed.reduce((s, o) => s + o, 0);
  const weightSum = weights.reduce((s, w) => s + w, 0);
  const expected = weights.map((w) => (total * w) / weightSum);
  const degreesOfFreedom = observed.length - 1;
  let chiSquare = 0;
  if (total > 0) {
    for (let i = 0; i < observed.length; i++) {
      const e = expected[i]!;
      const diff = observed[i]! - e;
      chiSquare += (diff * diff) / e;
    }
  }
  const pValue = chiSquareSf(chiSquare, degreesOfFreedom);
  return { chiSquare, degreesOfFreedom, pValue, expected, detected: pValue < threshold, threshold };
}
