/**
 * Experiment results (`GET /api/v2/experiments/:id/results`): composes the fixed-horizon
 * test, the Bayesian chance to beat control, the sample-ratio-mismatch check and the always-valid
 * sequential test into one validated, pure function `experimentResults(input) → output`.
 *
 * Verdict, in order of precedence:
 * 1. `srm_detected` — the exposure split contradicts the planned weights (p < `srmThreshold`);
 *    nothing else can be trusted until assignment is fixed.
 * 2. `insufficient_data` — some variation has fewer than `minExposures` exposures, or all of them
 *    together have fewer than `minConversions` conversions.
 * 3. From the sequential (always-valid) test only, so an analyst may look at any time: each
 *    treatment is a `winner` when its confidence sequence for p_B − p_A lies above 0, a `loser`
 *    when below 0, `no_difference` when inside ±(relativeEffect × control rate), else
 *    `keep_running`. With several treatments the sequential α is Bonferroni-split over them. The
 *    experiment is a `winner` if any treatment wins (the winner is the winning treatment with the
 *    highest rate), a `loser` if every treatment loses, `no_difference` if every treatment is
 *    settled without a win, else `keep_running`.
 *
 * The fixed-horizon p-values and intervals are reported for reference at level 1 − α, unadjusted;
 * they are only valid when read once at a planned sample size, so they never drive the verdict.
 */

import { z } from 'zod';
import { FarolError } from '../../schemas/errors.ts';
import { firstIssue } from '../../schemas/issues.ts';
import { chanceToBeatControl } from './bayes.ts';
import {
  confidenceSequence,
  DEFAULT_RELATIVE_EFFECT,
  defaultMixingVariance,
  msprtPValue,
  updateSequentialState,
} from './sequential.ts';
import { SRM_THRESHOLD, sampleRatioMismatch } from './srm.ts';
import { differenceInterval, relativeUpliftInterval, twoProportionZTest } from './two-proportion.ts';

/** Largest count accepted: well inside exact integer range, far beyond any real experiment. */
const MAX_COUNT = 1e12;

const count = z
  .number({ error: 'must be a number' })
  .int('must be an integer')
  .min(0, 'must be a non-negative integer')
  .max(MAX_COUNT, `must be at most ${MAX_COUNT}`);

const probability = z.number({ error: 'must be a number' }).min(0, 'must be between 0 and 1').max(1, 'must be between 0 and 1');

/** One variation's counts as read from the store, with its planned traffic weight. */
export const variationInputSchema = z.object({
  key: z.string({ error: 'must be a string' }).min(1, 'must not be empty').max(128, 'must be at most 128 characters'),
  /** Unique visitors exposed to the variation. */
  exposures: count,
  /** Unique visitors among them who converted on the goal. */
  conversions: count,
  /** Planned traffic weight (any positive scale); omit on every variation for an equal split. */
  weight: z.number({ error: 'must be a number' }).positive('must be positive').max(1e9, 'must be at most 1e9').optional(),
  /** Marks the control; exactly one variation has it. */
  control: z.boolean({ error: 'must be true or false' }).optional(),
});

/** Stored sequential state of one treatment, returned by a previous call as `sequentialState`. */
export const sequentialStateSchema = z.object({
  pValue: probability,
  low: z.number({ error: 'must be a number' }).min(-1, 'must be between -1 and 1').max(1, 'must be between -1 and 1'),
  high: z.number({ error: 'must be a number' }).min(-1, 'must be between -1 and 1').max(1, 'must be between -1 and 1'),
});

export const experimentInputSchema = z
  .object({
    variations: z
      .array(variationInputSchema, { error: 'must be an array of variations' })
      .min(2, 'must hold at least two variations (a control and a treatment)')
      .max(64, 'must hold at most 64 variations'),
    /** Significance level of every test; intervals are at 1 − alpha. */
    alpha: z.number({ error: 'must be a number' }).gt(0, 'must be above 0').max(0.5, 'must be at most 0.5').default(0.05),
    /** SRM p-value below which the split is flagged. */
    srmThreshold: z.number({ error: 'must be a number' }).gt(0, 'must be above 0').lt(1, 'must be below 1').default(SRM_THRESHOLD),
    /** Exposures every variation needs before a verdict. */
    minExposures: count.default(100),
    /** Conversions all variations together need before a verdict. */
    minConversions: count.default(10),
    sequential: z
      .object({
        /** Mixing variance τ² of the mSPRT; default (relativeEffect × pooled rate)² per comparison. */
        tau2: z.number({ error: 'must be a number' }).positive('must be positive').max(1, 'must be at most 1').optional(),
        /** Effect size, relative to the control rate, that scales τ and the no-difference margin. */
        relativeEffect: z.number({ error: 'must be a number' }).positive('must be positive').max(10, 'must be at most 10').default(DEFAULT_RELATIVE_EFFECT),
        /** `sequentialState` of the previous look, keyed by treatment key. */
        state: z.record(z.string(), sequentialStateSchema).optional(),
      })
      .prefault({}),
  })
  .superRefine((input, ctx) => {
    const seen = new Map<string, number>();
    input.variations.forEach((v, i) => {
      if (v.conversions > v.exposures) {
        ctx.addIssue({ code: 'custom', path: ['variations', i, 'conversions'], message: `must not exceed exposures (${v.exposures})` });
      }
      const first = seen.get(v.key);
      if (first !== undefined) {
        ctx.addIssue({ code: 'custom', path: ['variations', i, 'key'], message: `duplicates variations[${first}].key "${v.key}"` });
      } else seen.set(v.key, i);
    });
    const controls = input.variations.filter((v) => v.control === true);
    if (controls.length !== 1) {
      ctx.addIssue({
        code: 'custom',
        path: ['variations'],
        message:
          controls.length === 0
            ? 'exactly one variation must have control: true (none has)'
            : `exactly one variation must have control: true (found ${controls.length}: ${controls.map((c) => c.key).join(', ')})`,
      });
    }
    const weighted = input.variations.filter((v) => v.weight !== undefined).length;
    if (weighted > 0 && weighted < input.variations.length) {
      const i = input.variations.findIndex((v) => v.weight === undefined);
      ctx.addIssue({ code: 'custom', path: ['variations', i, 'weight'], message: 'must be given on every variation or on none' });
    }
    for (const key of Object.keys(input.sequential.state ?? {})) {
      const v = input.variations.find((x) => x.key === key);
      if (v === undefined || v.control === true) {
        ctx.addIssue({ code: 'custom', path: ['sequential', 'state', key], message: 'is not the key of a treatment variation' });
      }
    }
  });

/** What callers pass to {@link experimentResults}. */
export type ExperimentInput = z.input<typeof experimentInputSchema>;
/** The input after validation and defaults. */
export type ParsedExperimentInput = z.output<typeof experimentInputSchema>;

const interval = z.object({ low: z.number(), high: z.number() });

export const sequentialVerdictSchema = z.enum(['keep_running', 'winner', 'loser', 'no_difference']);
export const experimentVerdictSchema = z.enum(['insufficient_data', 'srm_detected', 'keep_running', 'winner', 'loser', 'no_difference']);

/** A treatment compared with the control. */
export const comparisonSchema = z.object({
  /** p̂_B − p̂_A. */
  absoluteUplift: z.number(),
  /** Unpooled Wald interval on p_B − p_A at 1 − α (fixed horizon). */
  absoluteInterval: interval,
  /** p̂_B/p̂_A − 1; null when the control rate is 0. */
  relativeUplift: z.number().nullable(),
  /** Delta-method interval on p_B/p_A − 1 at 1 − α; null when either rate is 0. */
  relativeInterval: interval.nullable(),
  /** Pooled two-proportion z statistic. */
  zScore: z.number(),
  /** Two-sided p-value of the pooled z-test (fixed horizon, unadjusted). */
  pValue: z.number(),
  /** P(p_B > p_A) under independent uniform priors. */
  chanceToBeatControl: z.number(),
  chanceToBeatControlMethod: z.enum(['exact', 'normal']),
  sequential: z.object({
    /** Always-valid p-value: running minimum over this and previous looks. */
    pValue: z.number(),
    /** 1/Λ at this look alone. */
    pValueNow: z.number(),
    /** Confidence sequence on p_B − p_A, intersected with previous looks. */
    interval,
    /** Level used (Bonferroni-split α). */
    alpha: z.number(),
    /** Mixing variance used. */
    tau2: z.number(),
    verdict: sequentialVerdictSchema,
  }),
});

export const variationResultSchema = z.object({
  key: z.string(),
  control: z.boolean(),
  exposures: z.number(),
  conversions: z.number(),
  /** Conversions / exposures; null without exposures. */
  rate: z.number().nullable(),
  /** Planned share of traffic. */
  expectedShare: z.number(),
  /** Observed share of exposures; null when nothing was exposed. */
  observedShare: z.number().nullable(),
  /** Null for the control and when either arm has no exposures. */
  vsControl: comparisonSchema.nullable(),
});

export const experimentResultsSchema = z.object({
  controlKey: z.string(),
  alpha: z.number(),
  confidenceLevel: z.number(),
  variations: z.array(variationResultSchema),
  srm: z.object({
    chiSquare: z.number(),
    degreesOfFreedom: z.number(),
    pValue: z.number(),
    threshold: z.number(),
    detected: z.boolean(),
  }),
  verdict: experimentVerdictSchema,
  /** Winning treatment when `verdict` is `winner`, else null. */
  winner: z.string().nullable(),
  /** Store and send back as `sequential.state` on the next look. */
  sequentialState: z.record(z.string(), sequentialStateSchema),
});

export type Comparison = z.infer<typeof comparisonSchema>;
export type VariationResult = z.infer<typeof variationResultSchema>;
export type ExperimentResults = z.infer<typeof experimentResultsSchema>;
export type ExperimentVerdict = z.infer<typeof experimentVerdictSchema>;
export type SequentialVerdict = z.infer<typeof sequentialVerdictSchema>;

/** Input rejected by validation; `field` is the path of the first bad field, e.g. `variations[1].conversions`. */
export class StatsInputError extends FarolError {
  declare readonly code: 'API_BAD_EXPERIMENT_INPUT';
  declare readonly field: string;
  constructor(field: string, message: string) {
    super('API_BAD_EXPERIMENT_INPUT', `${field} ${message}`, { field });
  }
}

/** Validates and fills defaults; throws {@link StatsInputError} naming the first bad field. */
export function parseExperimentInput(input: unknown): ParsedExperimentInput {
  const parsed = experimentInputSchema.safeParse(input);
  if (!parsed.success) {
    const { field, message } = firstIssue(parsed.error, 'input');
    throw new StatsInputError(field, message);
  }
  return parsed.data;
}

function sequentialVerdict(low: number, high: number, margin: number): SequentialVerdict {
  if (low > 0) return 'winner';
  if (high < 0) return 'loser';
  if (margin > 0 && low >= -margin && high <= margin) return 'no_difference';
  return 'keep_running';
}

/**
 * Computes every per-variation and per-experiment statistic from cumulative counts. Pure and
 * synchronous; throws {@link StatsInputError} on invalid input.
 */
export function experimentResults(rawInput: unknown): ExperimentResults {
  const input = parseExperimentInput(rawInput);
  const { alpha, variations } = input;
  const control = variations.find((v) => v.control === true)!;
  const treatments = variations.length - 1;
  const sequentialAlpha = alpha / treatments;
  const weights = variations.map((v) => v.weight ?? 1);
  const weightSum = weights.reduce((s, w) => s + w, 0);
  const totalExposures = variations.reduce((s, v) => s + v.exposures, 0);
  const totalConversions = variations.reduce((s, v) => s + v.conversions, 0);

  const srm = sampleRatioMismatch(
    variations.map((v) => v.exposures),
    weights,
    input.srmThreshold,
  );

  const sequentialState: Record<string, z.infer<typeof sequentialStateSchema>> = {};
  const results: VariationResult[] = variations.map((v, i) => {
    const base = {
      key: v.key,
      control: v.control === true,
      exposures: v.exposures,
      conversions: v.conversions,
      rate: v.exposures > 0 ? v.conversions / v.exposures : null,
      expectedShare: weights[i]! / weightSum,
      observedShare: totalExposures > 0 ? v.exposures / totalExposures : null,
    };
    if (v === control || control.exposures === 0 || v.exposures === 0) {
      const previous = v === control ? undefined : input.sequential.state?.[v.key];
      if (previous !== undefined) sequentialState[v.key] = previous;
      return { ...base, vsControl: null };
    }
    const rateA = control.conversions / control.exposures;
    const diff = differenceInterval(control, v, alpha);
    const rel = relativeUpliftInterval(control, v, alpha);
    const test = twoProportionZTest(control, v);
    const bayes = chanceToBeatControl(control, v);

    const pooledRate = (control.conversions + v.conversions) / (control.exposures + v.exposures);
    const tau2 = input.sequential.tau2 ?? defaultMixingVariance(pooledRate, input.sequential.relativeEffect);
    const cs = confidenceSequence(control, v, tau2, sequentialAlpha);
    const now = { pValue: msprtPValue(control, v, tau2), low: cs.low, high: cs.high };
    const state = updateSequentialState(input.sequential.state?.[v.key], now);
    sequentialState[v.key] = state;

    const comparison: Comparison = {
      absoluteUplift: diff.estimate,
      absoluteInterval: { low: diff.low, high: diff.high },
      relativeUplift: rateA > 0 ? diff.estimate / rateA : null,
      relativeInterval: rel === null ? null : { low: rel.low, high: rel.high },
      zScore: test.z,
      pValue: test.pValue,
      chanceToBeatControl: bayes.probability,
      chanceToBeatControlMethod: bayes.method,
      sequential: {
        pValue: state.pValue,
        pValueNow: now.pValue,
        interval: { low: state.low, high: state.high },
        alpha: sequentialAlpha,
        tau2,
        verdict: sequentialVerdict(state.low, state.high, input.sequential.relativeEffect * rateA),
      },
    };
    return { ...base, vsControl: comparison };
  });

  let verdict: ExperimentVerdict;
  let winner: string | null = null;
  const compared = results.filter((r) => !r.control);
  if (srm.detected) verdict = 'srm_detected';
  else if (variations.some((v) => v.exposures < input.minExposures) || totalConversions < input.minConversions) {
    verdict = 'insufficient_data';
  } else {
    const verdicts = compared.map((r) => r.vsControl?.sequential.verdict ?? 'keep_running');
    const winners = compared.filter((r) => r.vsControl?.sequential.verdict === 'winner');
    if (winners.length > 0) {
      verdict = 'winner';
      winner = winners.reduce((best, r) => ((r.rate ?? 0) > (best.rate ?? 0) ? r : best)).key;
    } else if (verdicts.every((s) => s === 'loser')) verdict = 'loser';
    else if (verdicts.every((s) => s === 'loser' || s === 'no_difference')) verdict = 'no_difference';
    else verdict = 'keep_running';
  }

  return {
    controlKey: control.key,
    alpha,
    confidenceLevel: 1 - alpha,
    variations: results,
    srm: {
      chiSquare: srm.chiSquare,
      degreesOfFreedom: srm.degreesOfFreedom,
      pValue: srm.pValue,
      threshold: srm.threshold,
      detected: srm.detected,
    },
    verdict,
    winner,
    sequentialState,
  };
}
