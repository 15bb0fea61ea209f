import { isbot } from 'isbot';
import UAParser from 'ua-parser-js';
import type { EnrichedEvent } from '../../schemas/enriched-event.ts';
import { RecentCache } from '../../lib/lru.ts';

/*
 * User-Agent → browser, OS, device and bot flag. Parsing costs ~10 µs and a site's traffic comes
 * from a few hundred distinct UAs, so answers are kept in a bounded cache of recent ones; the bot
 * test is cached with them. Cached answers are frozen and shared: callers copy fields, never mutate.
 */

/** What the enrichment keeps of a User-Agent. */
export interface UaInfo {
  /** Plausible-style label ('Chrome', 'Safari', 'Microsoft Edge', …), '' when unknown. */
  browser: string;
  /** Major version only. */
  browserVersion: string;
  os: string;
  /** Major or major.minor ('17.4', '10.15', '10'), as the UA reveals it. */
  osVersion: string;
  device: EnrichedEvent['device'];
  bot: boolean;
}

/** A cached UA parser; `size` is the number of cached answers (for tests and metrics). */
export interface UaParser {
  (ua: string): Readonly<UaInfo>;
  readonly size: number;
}

export interface UaParserOptions {
  /** Distinct UAs to remember (rounded down to an even number, at least 2); those unused longest go first. */
  cacheSize: number;
}

// ua-parser-js 1.x stops reading after 500 characters (its ReDoS guard); cutting the key there too
// bounds the cache's memory without changing any answer it gives.
const UA_MAX = 500;

/** Creates a UA parser with its own bounded cache. */
export function createUaParser(opts: UaParserOptions): UaParser {
  const cache = new RecentCache<string, Readonly<UaInfo>>(opts.cacheSize);

  function parse(rawUa: string): Readonly<UaInfo> {
    const ua = rawUa.length > UA_MAX ? rawUa.slice(0, UA_MAX) : rawUa;
    const hit = cache.get(ua);
    if (hit !== undefined) return hit;
    const info = Object.freeze(parseUncached(ua));
    cache.set(ua, info);
    return info;
  }

  Object.defineProperty(parse, 'size', { get: () => cache.size });
  return parse as UaParser;
}

function parseUncached(ua: string): UaInfo {
  const r = UAParser(ua);
  const browser = browserLabel(r.browser.name);
  return {
    browser,
    // A version without a browser name (ua-parser's WebKit fallback) means nothing.
    browserVersion: browser === '' ? '' : majorVersion(r.browser.version),
    os: osLabel(r.os.name),
    osVersion: osVersion(r.os.version),
    device: deviceType(r.device.type),
    bot: isBotUa(ua),
  };
}

// ua-parser-js names → the labels Plausible shows, so dashboards read the same. Names not listed
// pass through: ua-parser's vocabulary is finite, so cardinality stays bounded.
const BROWSER_LABELS: Readonly<Record<string, string>> = {
  'Mobile Safari': 'Safari',
  'Safari Mobile': 'Safari',
  'Chrome Mobile': 'Chrome',
  'Mobile Chrome': 'Chrome',
  'Chrome WebView': 'Chrome',
  'Chrome Headless': 'Chrome',
  'Mobile Firefox': 'Firefox',
  'Firefox Mobile': 'Firefox',
  Edge: 'Microsoft Edge',
  'Samsung Internet': 'Samsung Browser',
  'Opera Mini': 'Opera',
  'Opera Mobi': 'Opera',
  'Opera Touch': 'Opera',
  'Opera GX': 'Opera',
  IE: 'Internet Explorer',
  IEMobile: 'Internet Explorer',
  Yandex: 'Yandex Browser',
  UCBrowser: 'UC Browser',
  DuckDuckGo: 'DuckDuckGo Privacy Browser',
  GSA: 'Google App',
  // ua-parser's last resort for an unrecognized WebKit; it says nothing about the browser.
  WebKit: '',
};

const OS_LABELS: Readonly<Record<string, string>> = {
  'Mac OS': 'macOS',
  'Chromium OS': 'Chrome OS',
  Ubuntu: 'Linux',
  Debian: 'Linux',
  Fedora: 'Linux',
  Arch: 'Linux',
  Mint: 'Linux',
  Gentoo: 'Linux',
  SUSE: 'Linux',
  CentOS: 'Linux',
  RedHat: 'Linux',
};

function browserLabel(name: string | undefined): string {
  if (name === undefined) return '';
  // Own keys only: a name like `constructor` must not find Object.prototype's.
  return (Object.hasOwn(BROWSER_LABELS, name) ? BROWSER_LABELS[name] : undefined) ?? name;
}

function osLabel(name: string | undefined): string {
  if (name === undefined) return '';
  return (Object.hasOwn(OS_LABELS, name) ? OS_LABELS[name] : undefined) ?? name;
}

function majorVersion(version: string | undefined): string {
  if (version === undefined) return '';
  const dot = version.indexOf('.');
  return dot === -1 ? version : version.slice(0, dot);
}

// Keeps at most major.minor: 17.4.1 → 17.4, 10.15.7 → 10.15, 14 → 14.
function osVersion(version: string | undefined): string {
  if (version === undefined) return '';
  const first = version.indexOf('.');
  if (first === -1) return version;
  const second = version.indexOf('.', first + 1);
  return second === -1 ? version : version.slice(0, second);
}

// ua-parser's device types folded to three. Watches count as mobile (small touch screen); TVs,
// consoles and embedded (car) browsers as desktop (large screen, no touch). No type means desktop:
// an iPad in desktop mode sends a Mac UA and cannot be told apart.
function deviceType(type: string | undefined): UaInfo['device'] {
  switch (type) {
    case 'mobile':
    case 'wearable':
      return 'mobile';
    case 'tablet':
      return 'tablet';
    default:
      return 'desktop';
  }
}

// isbot 5 lists these today; kept as a floor so a future isbot list change cannot let headless
// browsers and HTTP libraries (the bulk of fake traffic) through.
const AUTOMATION = /headless|phantomjs|puppeteer|playwright|selenium|python-requests|curl\/|wget\/|go-http-client/i;

function isBotUa(ua: string): boolean {
  if (ua.trim() === '') return true;
  return isbot(ua) || AUTOMATION.test(ua);
}
