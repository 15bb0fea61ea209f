/**
 * The standard normal distribution: CDF, survival function, density and quantile.
 *
 * The CDF is W. J. Cody's rational Chebyshev approximation (ACM TOMS Algorithm 715, SPECFUN
 * ANORM), the same three-range scheme R's `pnorm` uses; it keeps relative accuracy near machine
 * precision in both tails because the small tail is computed directly, never as `1 - Φ`. The
 * quantile is M. J. Wichura's Algorithm AS 241 (PPND16, Applied Statistics 37, 1988), accurate to
 * about 1 part in 10^16, as in R's `qnorm`.
 */

/* eslint-disable no-loss-of-precision -- published coefficients, quoted to their source's digits so they can be checked against it */
const A = [2.2352520354606839287, 161.02823106855587881, 1067.6894854603709582, 18154.981253343561249, 0.065682337918207449113] as const;
const B = [47.20258190468824187, 976.09855173777669322, 10260.932208618978205, 45507.789335026729956] as const;
const C = [
  0.39894151208813466764, 8.8831497943883759412, 93.506656132177855979, 597.27027639480026226, 2494.5375852903726711,
  6848.1904505362823326, 11602.651437647350124, 9842.7148383839780218, 1.0765576773720192317e-8,
] as const;
const D = [
  22.266688044328115691, 235.38790178262499861, 1519.377599407554805, 6485.558298266760755, 18615.571640885098091,
  34900.952721145977266, 38912.003286093271411, 19685.429676859990727,
] as const;
const P = [0.21589853405795699, 0.1274011611602473639, 0.022235277870649807, 0.001421619193227893466, 2.9112874951168792e-5, 0.02307344176494017303] as const;
const Q = [1.28426009614491121, 0.468238212480865118, 0.0659881378689285515, 0.00378239633202758244, 7.29751555083966205e-5] as const;

/* eslint-enable no-loss-of-precision */

/** 1/√(2π), the double nearest to 0.398942280401432677939946…. */
const ONE_OVER_SQRT_2PI = 0.3989422804014327;
const SQRT_32 = Math.sqrt(32);
/** Beyond this |x| the smaller tail underflows to 0 (Φ(−37.5193) ≈ 2.2e−308). */
const TAIL_LIMIT = 37.5193;

/** exp(−y²/2) split as exp(−s²/2)·exp(−(y−s)(y+s)/2) with s = y rounded down to 1/16, so the large square is exact. */
function gaussianFactor(y: number): number {
  const s = Math.trunc(y * 16) / 16;
  const del = (y - s) * (y + s);
  return Math.exp(-s * s * 0.5) * Math.exp(-del * 0.5);
}

/** Φ(−|x|), the smaller of the two tails, for |x| > 0.67448975. */
function smallTail(y: number): number {
  if (y <= SQRT_32) {
    let num = C[8] * y;
    let den = y;
    for (let i = 0; i < 7; i++) {
      num = (num + C[i]!) * y;
      den = (den + D[i]!) * y;
    }
    return gaussianFactor(y) * ((num + C[7]) / (den + D[7]));
  }
  if (y >= TAIL_LIMIT) return 0;
  const xsq = 1 / (y * y);
  let num = P[5] * xsq;
  let den = xsq;
  for (let i = 0; i < 4; i++) {
    num = (num + P[i]!) * xsq;
    den = (den + Q[i]!) * xsq;
  }
  const r = (ONE_OVER_SQRT_2PI - (xsq * (num + P[4])) / (den + Q[4])) / y;
  return gaussianFactor(y) * r;
}

/** Both tails at once: `lower` = Φ(x) = P[Z ≤ x], `upper` = 1 − Φ(x) = P[Z > x]. */
function bothTails(x: number): { lower: number; upper: number } {
  if (Number.isNaN(x)) return { lower: NaN, upper: NaN };
  const y = Math.abs(x);
  if (y <= 0.67448975) {
    let num = 0;
    let den = 0;
    if (y > Number.EPSILON * 0.5) {
      const xsq = x * x;
      num = A[4] * xsq;
      den = xsq;
      for (let i = 0; i < 3; i++) {
        num = (num + A[i]!) * xsq;
        den = (den + B[i]!) * xsq;
      }
    }
    const t = (x * (num + A[3])) / (den + B[3]);
    return { lower: 0.5 + t, upper: 0.5 - t };
  }
  const small = smallTail(y);
  return x > 0 ? { lower: 1 - small, upper: small } : { lower: small, upper: 1 - small };
}

/**
 * Standard normal cumulative distribution function Φ(x) = P[Z ≤ x].
 *
 * Relative error below about 1e−15 for x ≤ 0 down to the underflow limit (x ≈ −37.5); for
 * x > 0 use {@link normalSf} when the upper tail itself is wanted.
 */
export function normalCdf(x: number): number {
  return bothTails(x).lower;
}

/** Standard normal survival function 1 − Φ(x) = P[Z > x], computed without cancellation. */
export function normalSf(x: number): number {
  return bothTails(x).upper;
}

/** Standard normal density φ(x). */
export function normalPdf(x: number): number {
  return ONE_OVER_SQRT_2PI * gaussianFactor(Math.abs(x));
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
