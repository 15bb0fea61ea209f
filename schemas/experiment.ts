import { z } from 'zod';
import { attributeNameProblem, attributeProblem, CONTROL, cssProblem, htmlProblem, redirectProblem, selectorProblem, urlProblem } from './experiment-safety.ts';
import { fieldName, firstIssue } from './issues.ts';

/**
 * An A/B experiment's definition: what the tracker applies (variations with
 * their traffic weights and DOM changes, the pages it runs on) and what the results endpoint
 * measures (the goal, the control). Every string and array is bounded: definitions travel to
 * every visitor's browser in `GET /api/config/:domain`.
 */

export const ID_PATTERN = /^[\w.-]{1,100}$/;
/** Variation keys as the wire's `exp` values allow them (schemas/wire-event.ts). */
export const VARIATION_KEY_PATTERN = /^[\w.-]{1,100}$/;

export const limits = {
  name: 200,
  site: 253,
  variations: 20,
  changes: 50,
  pages: 50,
  path: 500,
  selector: 1000,
  text: 10_000,
  html: 50_000,
  css: 50_000,
  url: 2000,
  eventName: 120,
  attributeName: 100,
} as const;

export const experimentStatuses = ['draft', 'running', 'stopped'] as const;

export const experimentIdSchema = z.string().regex(ID_PATTERN, 'must be 1-100 letters, digits, _ . -');
const variationKeySchema = z.string().regex(VARIATION_KEY_PATTERN, 'must be 1-100 letters, digits, _ . -');

/**
 * A path glob as Plausible's page goals take them: `/pricing`, `/blog/*` (one segment),
 * `/blog/**` (any depth). No whitespace or control characters.
 */
export const pathGlobSchema = z
  .string()
  .min(1)
  .max(limits.path)
  .regex(/^\/[^\s\p{Cc}]*$/u, 'must be a path starting with / (globs: * one segment, ** any depth), without spaces');

const selector = z.string().min(1, 'must not be empty').max(limits.selector);

// Attribute names as HTML spells them; which ones a change may set is the safety check's call
// (schemas/experiment-safety.ts: an allowlist, never on…, style, srcdoc, formaction …).
const attributeName = z
  .string()
  .regex(/^[A-Za-z_:][\w:.-]*$/, 'must be an attribute name')
  .max(limits.attributeName);

// Absolute http(s) URLs or site paths; never javascript: or data: URLs, nor protocol-relative ones.
// Where they may lead (the site's hosts) is checked against the site by redirectProblems.
const redirectUrl = z
  .string()
  .max(limits.url)
  .refine((u) => /^https?:\/\/[^\s]+$/i.test(u) || /^\/(?!\/)[^\s]*$/.test(u), 'must be an absolute http(s) URL or a path starting with /');

export const changeSchema = z.discriminatedUnion(
  'type',
  [
    z.strictObject({ type: z.literal('text'), selector, value: z.string().max(limits.text) }),
    z.strictObject({ type: z.literal('html'), selector, value: z.string().max(limits.html) }),
    z.strictObject({ type: z.literal('attribute'), selector, name: attributeName, value: z.string().max(limits.text) }),
    z.strictObject({ type: z.literal('css'), value: z.string().min(1, 'must not be empty').max(limits.css) }),
    z.strictObject({ type: z.literal('redirect'), url: redirectUrl }),
  ],
  { error: 'must be a change of type text, html, attribute, css or redirect' },
);
export type Change = z.infer<typeof changeSchema>;

export const variationSchema = z.strictObject({
  key: variationKeySchema,
  /** Share of traffic in percent; the variations' weights add up to 100. */
  weight: z.number().min(0, 'must be between 0 and 100').max(100, 'must be between 0 and 100'),
  changes: z.array(changeSchema).max(limits.changes).default([]),
});
export type Variation = z.infer<typeof variationSchema>;

/** A conversion: a custom event by name, or a pageview of a path glob (Plausible's "Visit /blog/**"). */
export const goalSchema = z.discriminatedUnion(
  'type',
  [
    z.strictObject({ type: z.literal('event'), name: z.string().min(1).max(limits.eventName) }),
    z.strictObject({ type: z.literal('pageview'), path: pathGlobSchema }),
  ],
  { error: 'must be {type: "event", name} or {type: "pageview", path}' },
);
export type Goal = z.infer<typeof goalSchema>;

const instant = z.iso.datetime({ offset: true, error: 'must be an ISO 8601 date-time' });

/** The fields an admin sets; `site`, `status` and the run times are the server's. */
const editable = {
  name: z.string().min(1, 'must not be empty').max(limits.name),
  goal: goalSchema,
  /** Key of the control variation. */
  control: variationKeySchema,
  variations: z.array(variationSchema).min(2, 'must hold at least two variations').max(limits.variations),
  /** Path globs the experiment runs on; absent = every page. */
  pages: z.array(pathGlobSchema).min(1, 'must list at least one path (leave it out for every page)').max(limits.pages).optional(),
};

const experimentObject = z.strictObject({
  id: experimentIdSchema,
  site: z.string().min(1).max(limits.site),
  status: z.enum(experimentStatuses),
  ...editable,
  started_at: instant.optional(),
  stopped_at: instant.optional(),
});

type Draft = z.infer<typeof experimentObject>;

/** The first unsafe part of a change (schemas/experiment-safety.ts): which field and why. */
export function changeProblem(c: Change): { field: string; message: string } | undefined {
  const at = (field: string, message: string | undefined): { field: string; message: string } | undefined => (message === undefined ? undefined : { field, message });
  switch (c.type) {
    case 'text':
      return at('selector', selectorProblem(c.selector)) ?? at('value', CONTROL.test(c.value) ? 'must not hold control characters' : undefined);
    case 'html':
      return at('selector', selectorProblem(c.selector)) ?? at('value', htmlProblem(c.value));
    case 'attribute':
      return at('selector', selectorProblem(c.selector)) ?? at('name', attributeNameProblem(c.name)) ?? at('value', attributeProblem(c.name, c.value));
    case 'css':
      return at('value', cssProblem(c.value));
    case 'redirect':
      return at('url', urlProblem(c.url));
  }
}

/** Every change must be unable to run script on the customer's page. */
function checkChanges(e: Pick<Draft, 'variations'>, ctx: z.RefinementCtx): void {
  e.variations.forEach((v, i) =>
    v.changes.forEach((c, j) => {
      const p = changeProblem(c);
      if (p !== undefined) ctx.addIssue({ code: 'custom', path: ['variations', i, 'changes', j, p.field], message: p.message });
    }),
  );
}

/**
 * Redirects of an experiment that leave the site: the first one's field and why, or undefined.
 * A redirect may go to the site's domain, its subdomains, and the hosts an owner allowed for the
 * site (`allowedHosts`) and their subdomains.
 */
export function redirectProblems(e: Pick<Experiment, 'site' | 'variations'>, allowedHosts: readonly string[]): { field: string; message: string } | undefined {
  for (const [i, v] of e.variations.entries()) {
    for (const [j, c] of v.changes.entries()) {
      if (c.type !== 'redirect') continue;
      const message = redirectProblem(c.url, e.site, allowedHosts);
      if (message !== undefined) return { field: fieldName(['variations', i, 'changes', j, 'url']), message };
    }
  }
  return undefined;
}

/** Cross-field rules: unique keys, the control among them, weights adding up to 100. */
function checkDefinition(e: Pick<Draft, 'control' | 'variations'> & Partial<Pick<Draft, 'started_at' | 'stopped_at'>>, ctx: z.RefinementCtx): void {
  const seen = new Map<string, number>();
  e.variations.forEach((v, i) => {
    const first = seen.get(v.key);
    if (first !== undefined) ctx.addIssue({ code: 'custom', path: ['variations', i, 'key'], message: `duplicates variations[${first}].key "${v.key}"` });
    else seen.set(v.key, i);
  });
  const control = e.variations.findIndex((v) => v.key === e.control);
  if (control < 0) ctx.addIssue({ code: 'custom', path: ['control'], message: 'must be the key of one of the variations' });
  else if (e.variations[control]?.weight === 0) ctx.addIssue({ code: 'custom', path: ['variations', control, 'weight'], message: 'the control must get traffic (weight above 0)' });
  if (e.variations.filter((v, i) => i !== control && v.weight > 0).length === 0 && control >= 0) {
    ctx.addIssue({ code: 'custom', path: ['variations'], message: 'at least one variation besides the control must get traffic' });
  }
  const sum = e.variations.reduce((s, v) => s + v.weight, 0);
  if (Math.abs(sum - 100) > 1e-6) ctx.addIssue({ code: 'custom', path: ['variations'], message: `weights must add up to 100 (they add up to ${sum})` });
  if (e.started_at !== undefined && e.stopped_at !== undefined && Date.parse(e.stopped_at) < Date.parse(e.started_at)) {
    ctx.addIssue({ code: 'custom', path: ['stopped_at'], message: 'must not be before started_at' });
  }
}

/**
 * An experiment as stored by any version of Farol: its shape and cross-field rules. Definitions
 * stored before the safety rules are read with it (an admin can list, fix or delete them), but
 * never served to the tracker unless they pass {@link experimentSchema}.
 */
export const storedExperimentSchema = experimentObject.superRefine(checkDefinition);

/** An experiment as written now: also every change unable to run script. */
export const experimentSchema = storedExperimentSchema.superRefine(checkChanges);
export type Experiment = z.infer<typeof experimentSchema>;

/** `POST …/experiments` body: the editable fields, an optional id (generated when absent) and status. */
export const experimentCreateSchema = z.strictObject({
  id: experimentIdSchema.optional(),
  status: z.enum(experimentStatuses).optional(),
  ...editable,
});

/** `PATCH …/experiments/:id` body: any editable field, or the status; the merge is checked as a whole. */
export const experimentPatchSchema = z.strictObject({
  status: z.enum(experimentStatuses).optional(),
  name: editable.name.optional(),
  goal: editable.goal.optional(),
  control: editable.control.optional(),
  variations: editable.variations.optional(),
  // null removes the restriction (the experiment then runs on every page).
  pages: editable.pages.unwrap().nullable().optional(),
});

/** What the tracker receives per running experiment: nothing but what it needs to assign and apply. */
export interface TrackerExperiment {
  id: string;
  variations: { key: string; weight: number; changes: Change[] }[];
  pages?: string[];
}

export type Parsed<T> = { ok: true; value: T } | { ok: false; field: string; message: string };

/** Validates `value`; on failure names the first bad field (unknown keys included) and says why. */
export function parseWith<S extends z.ZodType>(schema: S, value: unknown): Parsed<z.infer<S>> {
  const r = schema.safeParse(value);
  if (r.success) return { ok: true, value: r.data };
  const { field, message } = firstIssue(r.error);
  return { ok: false, field, message };
}
