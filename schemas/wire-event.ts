import { z } from 'zod';
import { firstIssue } from './issues.ts';
import { badStringInJson, badStringMessage } from './unicode.ts';

/**
 * The wire event: what a tracker or server sends to `/api/event` and `/api/batch`. Compatible with
 * Plausible's Events API (long and short field names), plus Farol's `exp` and `id`.
 */
export const MAX_PROPS = 30;
export const MAX_PROP_KEY = 300;
export const MAX_PROP_VALUE = 2000;
export const MAX_URL = 2000;
export const MAX_BATCH_EVENTS = 1000;

/** An amount sent as text (Plausible's tracker sends revenue amounts as strings). */
const AMOUNT_TEXT = /^-?\d+(\.\d+)?$/;

const propValue = z.union([z.string().max(MAX_PROP_VALUE), z.number().finite(), z.boolean()]);
/** Plausible's tracker once sent props as a JSON string; accept that too (its strings checked like the body's). */
const propsField = z.preprocess(
  (v, ctx) => {
    if (typeof v !== 'string') return v;
    let parsed: unknown;
    try {
      parsed = JSON.parse(v) as unknown;
    } catch {
      return v;
    }
    const bad = badStringInJson(v, parsed);
    if (bad !== undefined) {
      ctx.addIssue({ code: 'custom', message: `props JSON: ${badStringMessage(bad)}`, params: { code: 'ING_BAD_STRING' } });
      return z.NEVER;
    }
    return parsed;
  },
  z.record(z.string().min(1).max(MAX_PROP_KEY), propValue),
);
const revenueField = z.object({
  currency: z
    .string()
    .regex(/^[A-Za-z]{3}$/, 'must be a 3-letter ISO 4217 code')
    .transform((s) => s.toUpperCase()),
  // A decimal in text must still be a finite number (400 nines are Infinity, which no store holds).
  amount: z.union([z.number().finite(), z.string().regex(AMOUNT_TEXT).transform(Number).pipe(z.number().finite())]),
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

export type WireResult = { ok: true; event: WireEvent } | { ok: false; code: 'ING_BAD_EVENT' | 'ING_TOO_MANY_PROPS' | 'ING_BAD_STRING'; message: string };

function describe(error: z.ZodError): string {
  const { field, message, hasPath } = firstIssue(error);
  return hasPath ? `${field}: ${message}` : message;
}

/** Validates one decoded JSON value as a wire event and folds short names into long ones. */
export function parseWireEvent(value: unknown): WireResult {
  // What trackers send almost always passes the hand-written check, several times cheaper than
  // the schema; anything it is unsure of goes to the schema, which names the bad field.
  const raw = fastRawWireEvent(value);
  return raw === undefined ? parseWireEventBySchema(value) : normalize(raw);
}

/**
 * {@link parseWireEvent} with every value validated by `rawWireEventSchema`. The reference the
 * fast path must agree with (wire-event.test.ts checks it on generated input).
 */
export function parseWireEventBySchema(value: unknown): WireResult {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return { ok: false, code: 'ING_BAD_EVENT', message: 'event must be a JSON object' };
  }
  const parsed = rawWireEventSchema.safeParse(value);
  if (!parsed.success) {
    const first = parsed.error.issues[0];
    const code = first?.code === 'custom' && first.params?.['code'] === 'ING_BAD_STRING' ? 'ING_BAD_STRING' : 'ING_BAD_EVENT';
    return { ok: false, code, message: first ? describe(parsed.error) : 'invalid event' };
  }
  return normalize(parsed.data);
}

/** Required fields, site list and prop count of a raw event the schema (or the fast path) accepted. */
function normalize(raw: RawWireEvent): WireResult {
  const name = raw.name ?? raw.n;
  if (!name) return { ok: false, code: 'ING_BAD_EVENT', message: 'name: required' };
  const url = raw.url ?? raw.u;
  if (!url) return { ok: false, code: 'ING_BAD_EVENT', message: 'url: required' };
  const domain = raw.domain ?? raw.d;
  if (!domain) return { ok: false, code: 'ING_BAD_EVENT', message: 'domain: required' };
  const domains = siteDomains(domain);
  if (domains === undefined) return { ok: false, code: 'ING_BAD_EVENT', message: 'domain: must list 1 to 10 site domains' };
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

/** The lower-case site domains of a `domain` field, each once; undefined unless 1 to 10 of at most 253 characters. */
function siteDomains(domain: string): string[] | undefined {
  // Nearly every event names one site: no split, set or closures for it.
  if (!domain.includes(',')) {
    const d = domain.trim().toLowerCase();
    return d.length > 0 && d.length <= 253 ? [d] : undefined;
  }
  // A site listed twice (`a.com,A.com, a.com`) is stored once.
  const domains = [
    ...new Set(
      domain
        .split(',')
        .map((s) => s.trim().toLowerCase())
        .filter((s) => s.length > 0),
    ),
  ];
  return domains.length === 0 || domains.length > 10 || domains.some((d) => d.length > 253) ? undefined : domains;
}

// ---- The fast path: `rawWireEventSchema` for the common shape, written out by hand ----

const PLAIN = Object.prototype;
const expKey = /^[\w.-]+$/;
const currencyCode = /^[A-Za-z]{3}$/;

// What JSON.parse and object literals make; anything more exotic goes to the schema.
function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && Object.getPrototypeOf(v) === PLAIN;
}

function isText(v: unknown, min: number, max: number): v is string {
  return typeof v === 'string' && v.length >= min && v.length <= max;
}

/** A plain object of props the schema takes unchanged: keys 1..300, short strings, finite numbers, booleans. */
function isSimpleProps(v: unknown): v is Record<string, string | number | boolean> {
  if (!isPlainObject(v)) return false;
  for (const key in v) {
    // `__proto__` would be copied differently by the schema's record; leave it to the schema.
    if (key.length < 1 || key.length > MAX_PROP_KEY || key === '__proto__' || !Object.hasOwn(v, key)) return false;
    const p = v[key];
    if (typeof p === 'string') {
      if (p.length > MAX_PROP_VALUE) return false;
    } else if (typeof p === 'number') {
      if (!Number.isFinite(p)) return false;
    } else if (typeof p !== 'boolean') return false;
  }
  return true;
}

function isSimpleExp(v: unknown): v is Record<string, string> {
  if (!isPlainObject(v)) return false;
  for (const key in v) {
    if (!isText(key, 1, 100) || key === '__proto__' || !expKey.test(key) || !Object.hasOwn(v, key)) return false;
    const variation = v[key];
    if (!isText(variation, 1, 100) || !expKey.test(variation)) return false;
  }
  return true;
}

/** Revenue the schema would take as `{currency: upper case, amount}`; undefined for anything else. */
function simpleRevenue(v: unknown): { currency: string; amount: number } | undefined {
  if (!isPlainObject(v)) return undefined;
  let currency: unknown;
  let amount: unknown;
  for (const key in v) {
    if (key === 'currency') currency = v[key];
    else if (key === 'amount') amount = v[key];
    else return undefined;
  }
  if (typeof currency !== 'string' || !currencyCode.test(currency)) return undefined;
  // As the schema: a finite number, or decimal text that reads as one.
  const value = typeof amount === 'number' ? amount : typeof amount === 'string' && AMOUNT_TEXT.test(amount) ? Number(amount) : Number.NaN;
  if (!Number.isFinite(value)) return undefined;
  return { currency: currency.toUpperCase(), amount: value };
}

/**
 * The schema's output for a plain object holding only known keys with values of the expected
 * types and bounds, or undefined when the schema must decide (unknown keys, props sent as a JSON
 * string, amounts as text, anything invalid). Never accepts what the schema rejects.
 */
export function fastRawWireEvent(value: unknown): RawWireEvent | undefined {
  if (!isPlainObject(value)) return undefined;
  const raw: RawWireEvent = {};
  for (const key in value) {
    const v = value[key];
    if (v === undefined) return undefined;
    switch (key) {
      case 'name':
      case 'n':
        if (!isText(v, 1, 120)) return undefined;
        raw[key] = v;
        break;
      case 'url':
      case 'u':
        if (!isText(v, 1, MAX_URL)) return undefined;
        raw[key] = v;
        break;
      case 'domain':
      case 'd':
        if (!isText(v, 1, 1000)) return undefined;
        raw[key] = v;
        break;
      case 'referrer':
      case 'r':
        if (v !== null && !isText(v, 0, MAX_URL)) return undefined;
        raw[key] = v;
        break;
      case 'props':
      case 'p':
      case 'm':
        if (!isSimpleProps(v)) return undefined;
        raw[key] = v;
        break;
      case 'revenue':
      case '$':
        if (v === null) raw[key] = null;
        else {
          const revenue = simpleRevenue(v);
          if (revenue === undefined) return undefined;
          raw[key] = revenue;
        }
        break;
      case 'interactive':
      case 'i':
        if (typeof v !== 'boolean') return undefined;
        raw[key] = v;
        break;
      case 'w':
        if (!Number.isSafeInteger(v) || (v as number) < 0 || (v as number) > 100_000) return undefined;
        raw.w = v as number;
        break;
      case 'h':
        if (typeof v !== 'boolean' && !(typeof v === 'number' && Number.isFinite(v))) return undefined;
        raw.h = v;
        break;
      case 'exp':
        if (!isSimpleExp(v)) return undefined;
        raw.exp = v;
        break;
      case 'id':
        if (!isText(v, 1, 128)) return undefined;
        raw.id = v;
        break;
      case 'ip':
        if (!isText(v, 2, 64)) return undefined;
        raw.ip = v;
        break;
      case 'ua':
        if (!isText(v, 0, 1000)) return undefined;
        raw.ua = v;
        break;
      default:
        return undefined;
    }
  }
  return raw;
}
