/**
 * The standard normal distribution: CDF, survival function, density and quantile.
 *
 * The CDF and density are @stdlib's (Φ(x) = ½·erfc(−x/√2)); the survival function is Φ(−x), so
 * the small upper tail is computed directly, never as `1 - Φ`. Rounding x/√2 costs a relative
 * error of about x²·ε in the far tails (1e−13 at x = −30), far below anything a p-value needs.
 *
 * The quantile stays M. J. Wichura's Algorithm AS 241 (PPND16, Applied Statistics 37, 1988), as
 * in R's `qnorm`: @stdlib's is μ + σ√2·erfinv(2p − 1), and forming 2p − 1 throws away the low
 * digits of a small p (relative error 4e−7 at p = 1e−12, −∞ below p ≈ 1.1e−16), while an
 * experiment's alpha may be any number above 0.
 */

import cdf from '@stdlib/stats-base-dists-normal-cdf';
import pdf from '@stdlib/stats-base-dists-normal-pdf';

/** Standard normal cumulative distribution function Φ(x) = P[Z ≤ x]. */
export function normalCdf(x: number): number {
  return cdf(x, 0, 1);
}

/** Standard normal survival function 1 − Φ(x) = P[Z > x], computed without cancellation. */
export function normalSf(x: number): number {
  return cdf(-x, 0, 1);
}

/** Standard normal density φ(x). */
export function normalPdf(x: number): number {
  return pdf(x, 0, 1);
}

function ratio8(r: number, num: readonly number[], den: readonly number[]): number {
  let n = num[7]!;
  let d = den[6]!;
  for (let i = 6; i >= 0; i--) n = n * r + num[i]!;
  for (let i = 5; i >= 0; i--) d = d * r + den[i]!;
  return n / (d * r + 1);
}

// AS 241 coefficients, lowest order first; the denominators' constant term is 1.
/* eslint-disable no-loss-of-precision -- published coefficients, quoted to their source's digits so they can be checked against it */
const AS241_A = [3.387132872796366608, 133.14166789178437745, 1971.5909503065514427, 13731.693765509461125, 45921.953931549871457, 67265.770927008700853, 33430.575583588128105, 2509.0809287301226727];
const AS241_B = [42.313330701600911252, 687.1870074920579083, 5394.1960214247511077, 21213.794301586595867, 39307.89580009271061, 28729.085735721942674, 5226.495278852854561];
const AS241_C = [1.42343711074968357734, 4.6303378461565452959, 5.7694972214606914055, 3.64784832476320460504, 1.27045825245236838258, 0.24178072517745061177, 0.0227238449892691845833, 7.7454501427834140764e-4];
const AS241_D = [2.05319162663775882187, 1.6763848301838038494, 0.68976733498510000455, 0.14810397642748007459, 0.0151986665636164571966, 5.475938084995344946e-4, 1.05075007164441684324e-9];
const AS241_E = [6.6579046435011037772, 5.4637849111641143699, 1.7848265399172913358, 0.29656057182850489123, 0.026532189526576123093, 0.0012426609473880784386, 2.71155556874348757815e-5, 2.01033439929228813265e-7];
const AS241_F = [0.59983220655588793769, 0.13692988092273580531, 0.0148753612908506148525, 7.868691311456132591e-4, 1.8463183175100546818e-5, 1.4215117583164458887e-7, 2.04426310338993978564e-15];

/* eslint-enable no-loss-of-precision */

/**
 * Standard normal quantile Φ⁻¹(p) (Wichura's AS 241).
 *
 * Returns −∞ at p = 0, +∞ at p = 1 and NaN outside [0, 1]. The upper tail loses accuracy to the
 * rounding of `p` itself near 1 (1 − p is only known to ~1e−16 absolute), so for an upper
 * critical value prefer `-normalQuantile(alpha / 2)` over `normalQuantile(1 - alpha / 2)`.
 */
export function normalQuantile(p: number): number {
  if (Number.isNaN(p) || p < 0 || p > 1) return NaN;
  if (p === 0) return -Infinity;
  if (p === 1) return Infinity;
  const q = p - 0.5;
  if (Math.abs(q) <= 0.425) {
    return q * ratio8(0.180625 - q * q, AS241_A, AS241_B);
  }
  // r = sqrt(−log(min(p, 1 − p))); the split at r = 5 is min(p, 1 − p) = exp(−25) ≈ 1.4e−11.
  const r = Math.sqrt(-Math.log(q < 0 ? p : 0.5 - p + 0.5));
  const val = r <= 5 ? ratio8(r - 1.6, AS241_C, AS241_D) : ratio8(r - 5, AS241_E, AS241_F);
  return q < 0 ? -val : val;
}
