/*
 * Page URL and referrer parsing. Only what an event may store survives: the hostname,
 * the decoded path, the utm_* values and which ad click ids were present (never their values,
 * which identify a click and so a person).
 */

import { RecentCache } from '../../lib/lru.ts';

export const MAX_HOSTNAME = 253;
export const MAX_PATHNAME = 2000;
export const MAX_QUERY_VALUE = 500;
export const MAX_REFERRER = 2000;

/** utm_* parameters of the page URL, trimmed; '' when absent. */
export interface Utm {
  source: string;
  medium: string;
  campaign: string;
  content: string;
  term: string;
}

/** What the enrichment keeps of a page URL. */
export interface PageUrl {
  /** Lowercase, without a leading `www.`. */
  hostname: string;
  /** Percent-decoded where valid, no query or fragment (unless hash mode); trailing slash kept. */
  pathname: string;
  utm: Utm;
  /** Names of the ad click ids present with a value, in {@link CLICK_ID_PARAMS} order. */
  clickIds: string[];
  /** Plausible's source fallback: `utm_source`, else `source`, else `ref`; '' when none. */
  ref: string;
}

/** Click-id parameters whose presence marks ad or platform traffic (values are never kept). */
export const CLICK_ID_PARAMS = [
  'gclid',
  'gbraid',
  'wbraid',
  'dclid',
  'msclkid',
  'fbclid',
  'ttclid',
  'twclid',
  'li_fat_id',
  'epik',
  'rdt_cid',
  'irclickid',
  'yclid',
  'sccid',
] as const;

export interface PageUrlOptions {
  /** Plausible's hash-based routing mode (`h` in the wire event): the fragment is part of the page. */
  hashMode?: boolean;
}

/*
 * Page URLs and referrers repeat (a site's pages, a handful of search engines and social sites),
 * and `new URL` is the costliest enrichment step left (~0.5 µs each): answers for short texts
 * without a query, fragment or credentials are kept, so the cache never holds a click id, a
 * campaign value or a password. Cached answers are frozen and shared: callers never mutate.
 */
const CACHEABLE_CHARS = 256;
const pageCache = new RecentCache<string, Readonly<PageUrl> | null>(4096);
const referrerCache = new RecentCache<string, Readonly<Referrer> | null>(1024);

function cacheable(text: string): boolean {
  return text.length <= CACHEABLE_CHARS && !text.includes('?') && !text.includes('#') && !text.includes('@');
}

/** Parses an absolute http(s) page URL; `null` for anything else. Never throws. */
export function parsePageUrl(url: string, opts?: PageUrlOptions): PageUrl | null {
  // Without a fragment, hash mode changes nothing: one cache serves both.
  if (!cacheable(url)) return pageUrlOf(url, opts);
  const hit = pageCache.get(url);
  if (hit !== undefined) return hit as PageUrl | null;
  const page = pageUrlOf(url, opts);
  if (page !== null) {
    Object.freeze(page.utm);
    Object.freeze(page.clickIds);
    Object.freeze(page);
  }
  pageCache.set(url, page);
  return page;
}

/** {@link parsePageUrl} without the cache (tests compare the two). */
export function pageUrlOf(url: string, opts?: PageUrlOptions): PageUrl | null {
  const u = parseUrl(url);
  if (u === null || (u.protocol !== 'https:' && u.protocol !== 'http:')) return null;
  let pathname = safeDecode(u.pathname);
  if (opts?.hashMode === true && u.hash.length > 1) pathname += safeDecode(u.hash);
  const page: PageUrl = {
    hostname: cut(stripWww(u.hostname), MAX_HOSTNAME),
    pathname: cut(pathname, MAX_PATHNAME),
    utm: { source: '', medium: '', campaign: '', content: '', term: '' },
    clickIds: [],
    ref: '',
  };
  // Most page views carry no query; skip building URLSearchParams for them.
  if (u.search.length > 1) readQuery(u.searchParams, page);
  return page;
}

/** A referrer reduced to what may be stored. */
export interface Referrer {
  /** Lowercase hostname without a leading `www.` (an app id for `android-app://` referrers). */
  host: string;
  /** Scheme, host and path; no credentials, query or fragment. */
  clean: string;
}

/** Parses a referrer (http, https or `android-app://`); `null` when empty or unusable. Never throws. */
export function parseReferrer(referrer: string): Referrer | null {
  if (referrer.length === 0) return null;
  if (!cacheable(referrer)) return referrerOf(referrer);
  const hit = referrerCache.get(referrer);
  if (hit !== undefined) return hit as Referrer | null;
  const parsed = referrerOf(referrer);
  if (parsed !== null) Object.freeze(parsed);
  referrerCache.set(referrer, parsed);
  return parsed;
}

/** {@link parseReferrer} without the cache (tests compare the two). */
export function referrerOf(referrer: string): Referrer | null {
  if (referrer.length === 0) return null;
  const u = parseUrl(referrer.trim());
  if (u === null) return null;
  if (u.protocol !== 'https:' && u.protocol !== 'http:' && u.protocol !== 'android-app:') return null;
  const host = cut(stripWww(u.hostname.toLowerCase()), MAX_HOSTNAME);
  if (host === '') return null;
  return { host, clean: cut(`${u.protocol}//${u.host}${u.pathname}`, MAX_REFERRER) };
}

function parseUrl(text: string): URL | null {
  try {
    return new URL(text);
  } catch {
    return null;
  }
}

function readQuery(params: URLSearchParams, page: PageUrl): void {
  let clickMask = 0;
  let source = '';
  let ref = '';
  for (const [key, raw] of params) {
    switch (key) {
      case 'utm_source':
        if (page.utm.source === '') page.utm.source = queryValue(raw);
        break;
      case 'utm_medium':
        if (page.utm.medium === '') page.utm.medium = queryValue(raw);
        break;
      case 'utm_campaign':
        if (page.utm.campaign === '') page.utm.campaign = queryValue(raw);
        break;
      case 'utm_content':
        if (page.utm.content === '') page.utm.content = queryValue(raw);
        break;
      case 'utm_term':
        if (page.utm.term === '') page.utm.term = queryValue(raw);
        break;
      case 'source':
        if (source === '') source = queryValue(raw);
        break;
      case 'ref':
        if (ref === '') ref = queryValue(raw);
        break;
      default: {
        const bit = CLICK_ID_BIT.get(key);
        if (bit !== undefined && raw.trim() !== '') clickMask |= bit;
      }
    }
  }
  page.ref = page.utm.source || source || ref;
  if (clickMask !== 0) {
    for (let i = 0; i < CLICK_ID_PARAMS.length; i++) {
      if ((clickMask & (1 << i)) !== 0) page.clickIds.push(CLICK_ID_PARAMS[i]!);
    }
  }
}

const CLICK_ID_BIT = new Map<string, number>(CLICK_ID_PARAMS.map((name, i) => [name, 1 << i]));

function queryValue(raw: string): string {
  return cut(keepNulEncoded(raw.trim()), MAX_QUERY_VALUE);
}

// `%00` decodes to NUL, which no stored string may hold (schemas/unicode.ts): it stays `%00`.
function keepNulEncoded(s: string): string {
  return s.includes('\0') ? s.replaceAll('\0', '%00') : s;
}

function stripWww(host: string): string {
  return host.startsWith('www.') ? host.slice(4) : host;
}

// Percent-decodes what is validly encoded and leaves malformed sequences (and NUL) as they are.
function safeDecode(s: string): string {
  if (!s.includes('%')) return s;
  try {
    return keepNulEncoded(decodeURIComponent(s));
  } catch {
    return keepNulEncoded(s.replace(/(?:%[0-9A-Fa-f]{2})+/g, decodeRun));
  }
}

function decodeRun(run: string): string {
  try {
    return decodeURIComponent(run);
  } catch {
    return run;
  }
}

// Truncates to `max` UTF-16 units without splitting a surrogate pair.
function cut(s: string, max: number): string {
  if (s.length <= max) return s;
  const last = s.charCodeAt(max - 1);
  return s.slice(0, last >= 0xd800 && last <= 0xdbff ? max - 1 : max);
}
