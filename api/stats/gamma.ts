/**
 * The two gamma-family functions the experiment statistics need, from @stdlib: log-beta (for the
 * Bayesian closed form) and the chi-square survival function (for the SRM check).
 *
 * @stdlib's `betaln` is R's `lbeta`: for large arguments it combines only the Stirling remainders,
 * so ln B(a, b) stays accurate when a and b are in the millions, where the naive
 * lgamma(a) + lgamma(b) − lgamma(a + b) would cancel ~1e8-sized terms (gamma.test.ts holds it).
 */

import betaln from '@stdlib/math-base-special-betaln';
import gammainc from '@stdlib/math-base-special-gammainc';

/** ln B(a, b) = ln Γ(a) + ln Γ(b) − ln Γ(a + b) for a, b > 0 (NaN otherwise). */
export function logBeta(a: number, b: number): number {
  if (!(a > 0) || !(b > 0)) return NaN;
  return betaln(a, b);
}

/**
 * Chi-square survival function P[χ²_df > x] = Q(df/2, x/2), the regularized upper incomplete
 * gamma function, computed directly in its small tail; 1 for x ≤ 0.
 */
export function chiSquareSf(x: number, df: number): number {
  if (Number.isNaN(x) || !(df > 0)) return NaN;
  if (x <= 0) return 1;
  if (x === Infinity) return 0;
  return gammainc(x / 2, df / 2, true, true);
}
