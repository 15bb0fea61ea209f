import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { experimentResults, experimentResultsSchema, StatsInputError, type ExperimentInput } from './experiment.ts';

const control = (exposures: number, conversions: number, extra: object = {}) => ({ key: 'control', exposures, conversions, control: true, ...extra });
const variant = (key: string, exposures: number, conversions: number, extra: object = {}) => ({ key, exposures, conversions, ...extra });

function errorOf(input: unknown): StatsInputError {
  try {
    experimentResults(input);
  } catch (err) {
    if (err instanceof StatsInputError) return err;
    throw err;
  }
  throw new Error('expected a StatsInputError');
}

describe('experimentResults input validation', () => {
  const ok = { variations: [control(1000, 100), variant('B', 1000, 120)] };

  it.each([
    ['a negative count', { variations: [control(-1, 0), variant('B', 10, 1)] }, 'variations[0].exposures', /non-negative integer/],
    ['a fractional count', { variations: [control(10, 1), variant('B', 10, 1.5)] }, 'variations[1].conversions', /integer/],
    ['a count given as a string', { variations: [control(10, 1), { key: 'B', exposures: '10', conversions: 1 }] }, 'variations[1].exposures', /number/],
    ['conversions above exposures', { variations: [control(10, 1), variant('B', 10, 11)] }, 'variations[1].conversions', /must not exceed exposures \(10\)/],
    ['no control', { variations: [variant('A', 10, 1), variant('B', 10, 1)] }, 'variations', /exactly one variation must have control: true \(none has\)/],
    ['two controls', { variations: [control(10, 1), variant('B', 10, 1, { control: true })] }, 'variations', /found 2: control, B/],
    ['a duplicate key', { variations: [control(10, 1), variant('B', 10, 1), variant('B', 10, 2)] }, 'variations[2].key', /duplicates variations\[1\]\.key/],
    ['an empty key', { variations: [control(10, 1), variant('', 10, 1)] }, 'variations[1].key', /must not be empty/],
    ['a zero weight', { variations: [control(10, 1, { weight: 0 }), variant('B', 10, 1, { weight: 1 })] }, 'variations[0].weight', /positive/],
    ['weights on only some variations', { variations: [control(10, 1, { weight: 1 }), variant('B', 10, 1)] }, 'variations[1].weight', /every variation or on none/],
    ['a single variation', { variations: [control(10, 1)] }, 'variations', /at least two/],
    ['alpha of 0', { ...ok, alpha: 0 }, 'alpha', /above 0/],
    ['alpha above ½', { ...ok, alpha: 0.9 }, 'alpha', /at most 0.5/],
    ['a negative τ²', { ...ok, sequential: { tau2: -1 } }, 'sequential.tau2', /positive/],
    ['state for an unknown variation', { ...ok, sequential: { state: { Z: { pValue: 0.5, low: -0.1, high: 0.1 } } } }, 'sequential.state.Z', /not the key of a treatment/],
    ['a state p-value above 1', { ...ok, sequential: { state: { B: { pValue: 2, low: -0.1, high: 0.1 } } } }, 'sequential.state.B.pValue', /between 0 and 1/],
    ['not an object at all', 42, 'input', /./],
    ['variations not an array', { variations: 'A,B' }, 'variations', /array/],
  ])('rejects %s, naming the field', (_name, input, field, message) => {
    const err = errorOf(input);
    expect(err.field).toBe(field);
    expect(err.message.startsWith(`${field} `)).toBe(true);
    expect(err.message).toMatch(message);
  });

  it('is a coded 400 error that serialises like the rest of the catalogue', () => {
    const err = errorOf({ variations: [control(10, 1), variant('B', 10, 11)] });
    expect(err.status).toBe(400);
    expect(err.code).toBe('API_BAD_EXPERIMENT_INPUT');
    expect(JSON.parse(JSON.stringify(err))).toEqual({
      error: { code: 'API_BAD_EXPERIMENT_INPUT', field: 'variations[1].conversions', message: 'variations[1].conversions must not exceed exposures (10)' },
    });
  });

  it('accepts a valid input and fills defaults', () => {
    const r = experimentResults(ok);
    expect(r.alpha).toBe(0.05);
    expect(r.confidenceLevel).toBe(0.95);
    expect(r.srm.threshold).toBe(0.001);
  });
});

describe('experimentResults: a full three-arm example', () => {
  const input: ExperimentInput = {
    variations: [control(10_000, 1000), variant('B', 10_050, 1180), variant('C', 9950, 990)],
  };
  const r = experimentResults(input);
  const b = r.variations[1]!;
  const c = r.variations[2]!;

  it('validates against its own output schema', () => {
    expect(() => experimentResultsSchema.parse(r)).not.toThrow();
  });

  it('reports rates and uplifts computed by hand', () => {
    expect(r.controlKey).toBe('control');
    expect(r.variations[0]!.rate).toBe(0.1);
    expect(r.variations[0]!.vsControl).toBeNull();
    expect(b.rate).toBeCloseTo(1180 / 10_050, 15);
    expect(b.vsControl!.absoluteUplift).toBeCloseTo(1180 / 10_050 - 0.1, 15);
    expect(b.vsControl!.relativeUplift).toBeCloseTo(1180 / 10_050 / 0.1 - 1, 14);
    const pooled = 2180 / 20_050;
    const z = (1180 / 10_050 - 0.1) / Math.sqrt(pooled * (1 - pooled) * (1 / 10_000 + 1 / 10_050));
    expect(b.vsControl!.zScore).toBeCloseTo(z, 12);
  });

  it('runs the SRM test against the planned equal split: χ² = (0² + 50² + 50²)/10,000, p = e^{−χ²/2}', () => {
    expect(r.srm.chiSquare).toBeCloseTo(0.5, 12);
    expect(r.srm.degreesOfFreedom).toBe(2);
    expect(r.srm.pValue).toBeCloseTo(Math.exp(-0.25), 14);
    expect(r.srm.detected).toBe(false);
    expect(b.expectedShare).toBeCloseTo(1 / 3, 15);
    expect(b.observedShare).toBeCloseTo(10_050 / 30_000, 15);
  });

  it('is internally consistent', () => {
    for (const v of [b, c]) {
      const cmp = v.vsControl!;
      expect(cmp.absoluteInterval.low).toBeLessThanOrEqual(cmp.absoluteUplift);
      expect(cmp.absoluteInterval.high).toBeGreaterThanOrEqual(cmp.absoluteUplift);
      expect(cmp.relativeInterval!.low).toBeLessThanOrEqual(cmp.relativeUplift!);
      expect(cmp.relativeInterval!.high).toBeGreaterThanOrEqual(cmp.relativeUplift!);
      // Significance agrees between the test and both intervals here (far from the boundary).
      const significant = cmp.pValue < 0.05;
      expect(cmp.absoluteInterval.low > 0 || cmp.absoluteInterval.high < 0).toBe(significant);
      expect(cmp.relativeInterval!.low > 0 || cmp.relativeInterval!.high < 0).toBe(significant);
      // The confidence sequence is wider than the fixed-horizon interval, and contains the estimate.
      expect(cmp.sequential.interval.low).toBeLessThan(cmp.absoluteInterval.low);
      expect(cmp.sequential.interval.high).toBeGreaterThan(cmp.absoluteInterval.high);
      expect((cmp.sequential.pValue < cmp.sequential.alpha) === (cmp.sequential.interval.low > 0 || cmp.sequential.interval.high < 0)).toBe(true);
      // Bayesian and frequentist directions agree.
      expect(cmp.chanceToBeatControl > 0.5).toBe(cmp.zScore > 0);
    }
  });

  it('splits the sequential α over the two treatments and declares B the winner', () => {
    expect(b.vsControl!.sequential.alpha).toBe(0.025);
    expect(b.vsControl!.pValue).toBeLessThan(0.001);
    expect(b.vsControl!.chanceToBeatControl).toBeGreaterThan(0.999);
    expect(b.vsControl!.sequential.verdict).toBe('winner');
    expect(c.vsControl!.sequential.verdict).toBe('keep_running');
    expect(r.verdict).toBe('winner');
    expect(r.winner).toBe('B');
    expect(Object.keys(r.sequentialState).sort()).toEqual(['B', 'C']);
  });
});

describe('experimentResults verdicts', () => {
  const verdictOf = (input: ExperimentInput) => experimentResults(input).verdict;

  it('srm_detected overrides everything when the split contradicts the plan', () => {
    const r = experimentResults({ variations: [control(10_000, 1000), variant('B', 11_000, 1500)] });
    expect(r.srm.detected).toBe(true);
    expect(r.verdict).toBe('srm_detected');
    expect(r.winner).toBeNull();
    // The same counts are fine under a planned 10:11 split.
    expect(verdictOf({ variations: [control(10_000, 1000, { weight: 10 }), variant('B', 11_000, 1500, { weight: 11 })] })).toBe('winner');
  });

  it('insufficient_data below the exposure or conversion minimums', () => {
    expect(verdictOf({ variations: [control(50, 10), variant('B', 50, 40)] })).toBe('insufficient_data');
    expect(verdictOf({ variations: [control(5000, 2), variant('B', 5000, 5)] })).toBe('insufficient_data');
    expect(verdictOf({ variations: [control(5000, 2), variant('B', 5000, 5)], minConversions: 5 })).not.toBe('insufficient_data');
  });

  it('keep_running while the confidence sequence still straddles 0 and the margin', () => {
    expect(verdictOf({ variations: [control(2000, 200), variant('B', 2000, 210)] })).toBe('keep_running');
  });

  it('loser when the treatment is clearly worse', () => {
    const r = experimentResults({ variations: [control(10_000, 1200), variant('B', 10_000, 900)] });
    expect(r.variations[1]!.vsControl!.sequential.verdict).toBe('loser');
    expect(r.verdict).toBe('loser');
    expect(r.winner).toBeNull();
  });

  it('no_difference when the confidence sequence fits inside ±10% of the control rate', () => {
    const r = experimentResults({ variations: [control(1_000_000, 100_000), variant('B', 1_000_000, 100_100)] });
    const seq = r.variations[1]!.vsControl!.sequential;
    expect(seq.interval.low).toBeGreaterThan(-0.01);
    expect(seq.interval.high).toBeLessThan(0.01);
    expect(r.verdict).toBe('no_difference');
    // A tighter margin keeps it running.
    expect(verdictOf({ variations: [control(1_000_000, 100_000), variant('B', 1_000_000, 100_100)], sequential: { relativeEffect: 0.01 } })).toBe('keep_running');
  });

  it('no_difference when every treatment is settled without a win (one loser, one equivalent)', () => {
    expect(
      verdictOf({ variations: [control(1_000_000, 100_000), variant('B', 1_000_000, 80_000), variant('C', 1_000_000, 100_050)] }),
    ).toBe('no_difference');
  });

  it('a winner among several treatments is the one with the highest rate', () => {
    const r = experimentResults({ variations: [control(20_000, 2000), variant('B', 20_000, 2400), variant('C', 20_000, 2600)] });
    expect(r.verdict).toBe('winner');
    expect(r.winner).toBe('C');
  });

  it('handles empty arms and a zero control rate without NaN', () => {
    const empty = experimentResults({ variations: [control(0, 0), variant('B', 0, 0)] });
    expect(empty.verdict).toBe('insufficient_data');
    expect(empty.variations[1]!.vsControl).toBeNull();
    expect(empty.variations[1]!.rate).toBeNull();
    expect(empty.variations[1]!.observedShare).toBeNull();
    const zero = experimentResults({ variations: [control(1000, 0), variant('B', 1000, 12)] });
    const cmp = zero.variations[1]!.vsControl!;
    expect(cmp.relativeUplift).toBeNull();
    expect(cmp.relativeInterval).toBeNull();
    expect(JSON.stringify(zero)).not.toMatch(/NaN/);
    expect(() => experimentResultsSchema.parse(zero)).not.toThrow();
  });
});

describe('experimentResults sequential state across looks', () => {
  it('keeps the running minimum p-value and the intersected interval from earlier looks', () => {
    const first = experimentResults({ variations: [control(5000, 500), variant('B', 5000, 620)] });
    const firstSeq = first.variations[1]!.vsControl!.sequential;
    expect(firstSeq.verdict).toBe('winner');
    // Later the effect looks weaker; without state it would not be significant.
    const laterCounts = [control(6000, 600), variant('B', 6000, 640)];
    const fresh = experimentResults({ variations: laterCounts }).variations[1]!.vsControl!.sequential;
    expect(fresh.pValue).toBeGreaterThan(0.05);
    const later = experimentResults({ variations: laterCounts, sequential: { state: first.sequentialState } });
    const seq = later.variations[1]!.vsControl!.sequential;
    expect(seq.pValueNow).toBe(fresh.pValueNow);
    expect(seq.pValue).toBe(firstSeq.pValue);
    expect(seq.interval.low).toBeGreaterThanOrEqual(firstSeq.interval.low);
    expect(seq.interval.high).toBeLessThanOrEqual(firstSeq.interval.high);
    expect(later.sequentialState.B).toEqual({ pValue: seq.pValue, low: seq.interval.low, high: seq.interval.high });
  });

  it('uses a caller-fixed τ²', () => {
    const r = experimentResults({ variations: [control(5000, 500), variant('B', 5000, 560)], sequential: { tau2: 4e-4 } });
    expect(r.variations[1]!.vsControl!.sequential.tau2).toBe(4e-4);
  });
});

describe('experimentResults properties', () => {
  const experiment = fc
    .tuple(
      fc.integer({ min: 2, max: 5 }),
      fc.array(fc.tuple(fc.integer({ min: 0, max: 2_000_000 }), fc.double({ min: 0, max: 1, noNaN: true }), fc.integer({ min: 1, max: 10 })), { minLength: 5, maxLength: 5 }),
    )
    .map(([k, arms]) => ({
      variations: arms.slice(0, k).map(([n, f, w], i) => ({
        key: i === 0 ? 'control' : `v${i}`,
        exposures: n,
        conversions: Math.floor(f * n),
        weight: w,
        control: i === 0,
      })),
    }));

  it('never throws on valid input, never emits NaN, and stays internally consistent', () => {
    fc.assert(
      fc.property(experiment, (input) => {
        const r = experimentResults(input);
        experimentResultsSchema.parse(r);
        expect(JSON.stringify(r)).not.toMatch(/NaN|Infinity/);
        const shares = r.variations.reduce((s, v) => s + v.expectedShare, 0);
        expect(shares).toBeCloseTo(1, 12);
        for (const v of r.variations) {
          const cmp = v.vsControl;
          if (cmp === null) continue;
          expect(cmp.pValue).toBeGreaterThanOrEqual(0);
          expect(cmp.pValue).toBeLessThanOrEqual(1);
          expect(cmp.chanceToBeatControl).toBeGreaterThanOrEqual(0);
          expect(cmp.chanceToBeatControl).toBeLessThanOrEqual(1);
          expect(cmp.absoluteInterval.low).toBeLessThanOrEqual(cmp.absoluteUplift);
          expect(cmp.absoluteInterval.high).toBeGreaterThanOrEqual(cmp.absoluteUplift);
          if (cmp.relativeInterval !== null && cmp.relativeUplift !== null) {
            expect(cmp.relativeInterval.low).toBeLessThanOrEqual(cmp.relativeUplift + 1e-12);
            expect(cmp.relativeInterval.high).toBeGreaterThanOrEqual(cmp.relativeUplift - 1e-12);
          }
          const seq = cmp.sequential;
          expect(seq.interval.low).toBeLessThanOrEqual(cmp.absoluteUplift);
          expect(seq.interval.high).toBeGreaterThanOrEqual(cmp.absoluteUplift);
          if (Math.abs(seq.pValue - seq.alpha) > 1e-9) {
            expect(seq.interval.low > 0 || seq.interval.high < 0).toBe(seq.pValue < seq.alpha);
          }
          if (seq.verdict === 'winner') expect(cmp.absoluteUplift).toBeGreaterThan(0);
          if (seq.verdict === 'loser') expect(cmp.absoluteUplift).toBeLessThan(0);
          if (Math.abs(cmp.zScore) > 1) expect(cmp.chanceToBeatControl > 0.5).toBe(cmp.zScore > 0);
        }
        if (r.verdict === 'winner') expect(r.winner).not.toBeNull();
        else expect(r.winner).toBeNull();
      }),
      { numRuns: 300 },
    );
  });
});
