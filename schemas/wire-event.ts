import { z } from 'zod';

/**
 * The wire event: what a tracker or server sends to `/api/event` and `/api/batch`. Compatible with
 * Plausible's Events API (long and short field names), plus Farol's `exp` and `id`.
 */
export const MAX_PROPS = 30;
export const MAX_PROP_KEY = 300;
export const MAX_PROP_VALUE = 2000;
export const MAX_URL = 2000;
export const MAX_BATCH_EVENTS = 1000;

const propValue = z.union([z.string().max(MAX_PROP_VALUE), z.number().finite(), z.boolean()]);
/** Plausible's tracker once sent props as a JSON string; accept that too. */
const propsField = z.preprocess(
  (v) => {
    if (typeof v !== 'string') return v;
    try {
      return JSON.parse(v) as unknown;
    } catch {
      return v;
    }
  },
  z.record(z.string().min(1).max(MAX_PROP_KEY), propValue),
);
const revenueField = z.object({
  currency: z
    .string()
    .regex(/^[A-Za-z]{3}$/, 'must be a 3-letter ISO 4217 code')
    .transform((s) => s.toUpperCase()),
  amount: z.union([z.number().finite(), z.string().regex(/^-?\d+(\.\d+)?$/).transform(Number)]),
});
const expField = z.record(
  z.string().min(1).max(100).regex(/^[\w.-]+$/, 'experiment ids are letters, digits, _ . -'),
  z.string().min(1).max(100).regex(/^[\w.-]+$/, 'variation keys are letters, digits, _ . -'),
);

/** Raw shape: every field optional, long and short forms side by side. */
export const rawWireEventSchema = z.object({
  name: z.string().min(1).max(120).optional(),
  n: z.string().min(1).max(120).optional(),
  url: z.string().min(1).max(MAX_URL).optional(),
  u: z.string().min(1).max(MAX_URL).optional(),
  domain: z.string().min(1).max(1000).optional(),
  d: z.string().min(1).max(1000).optional(),
  referrer: z.string().max(MAX_URL).nullish(),
  r: z.string().max(MAX_URL).nullish(),
  props: propsField.optional(),
  p: propsField.optional(),
  m: propsField.optional(),
  revenue: revenueField.nullish(),
  $: revenueField.nullish(),
  interactive: z.boolean().optional(),
  i: z.boolean().optional(),
  w: z.number().int().min(0).max(100_000).optional(),
  h: z.union([z.boolean(), z.number()]).optional(),
  exp: expField.optional(),
  id: z.string().min(1).max(128).optional(),
  /** Only honoured from a trusted proxy (batch senders forwarding their visitors' events). */
  ip: z.string().min(2).max(64).optional(),
  ua: z.string().max(1000).optional(),
});

export type RawWireEvent = z.infer<typeof rawWireEventSchema>;

/** The normalized wire event every later step sees. */
export interface WireEvent {
  name: string;
  url: string;
  domains: string[];
  referrer: string;
  props: Record<string, string | number | boolean>;
  revenue: { currency: string; amount: number } | null;
  interactive: boolean;
  screenWidth: number | null;
  /** Plausible's hash mode: `#/path` routes count as paths. */
  hashMode: boolean;
  exp: Record<string, string>;
  id: string | null;
  ip: string | null;
  ua: string | null;
}

export type WireResult = { ok: true; event: WireEvent } | { ok: false; code: 'ING_BAD_EVENT' | 'ING_TOO_MANY_PROPS'; message: string };

function describe(issue: z.core.$ZodIssue): string {
  const path = issue.path.map(String).join('.');
  return path ? `${path}: ${issue.message}` : issue.message;
}

/** Validates one decoded JSON value as a wire event and folds short names into long ones. */
export function parseWireEvent(value: unknown): WireResult {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return { ok: false, code: 'ING_BAD_EVENT', message: 'event must be a JSON object' };
  }
  const parsed = rawWireEventSchema.safeParse(value);
  if (!parsed.success) {
    const first = parsed.error.issues[0];
    return { ok: false, code: 'ING_BAD_EVENT', message: first ? describe(first) : 'invalid event' };
  }
  const raw = parsed.data;
  const name = raw.name ?? raw.n;
  if (!name) return { ok: false, code: 'ING_BAD_EVENT', message: 'name: required' };
  const url = raw.url ?? raw.u;
  if (!url) return { ok: false, code: 'ING_BAD_EVENT', message: 'url: required' };
  const domain = raw.domain ?? raw.d;
  if (!domain) return { ok: false, code: 'ING_BAD_EVENT', message: 'domain: required' };
  const domains = domain
    .split(',')
    .map((s) => s.trim().toLowerCase())
    .filter((s) => s.length > 0);
  if (domains.length === 0 || domains.length > 10 || domains.some((d) => d.length > 253)) {
    return { ok: false, code: 'ING_BAD_EVENT', message: 'domain: must list 1 to 10 site domains' };
  }
  const props = raw.props ?? raw.p ?? raw.m ?? {};
  const keys = Object.keys(props);
  if (keys.length > MAX_PROPS) {
    return { ok: false, code: 'ING_TOO_MANY_PROPS', message: `props: at most ${MAX_PROPS} keys, got ${keys.length}` };
  }
  return {
    ok: true,
    event: {
      name,
      url,
      domains,
      referrer: raw.referrer ?? raw.r ?? '',
      props,
      revenue: raw.revenue ?? raw.$ ?? null,
      interactive: raw.interactive ?? raw.i ?? true,
      screenWidth: raw.w ?? null,
      hashMode: raw.h === true || raw.h === 1,
      exp: raw.exp ?? {},
      id: raw.id ?? null,
      ip: raw.ip ?? null,
      ua: raw.ua ?? null,
    },
  };
}
