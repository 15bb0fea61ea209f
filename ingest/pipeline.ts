import { randomUUID } from 'node:crypto';
import type { Channel, EnrichedEvent } from '../schemas/enriched-event.ts';
import type { IngestErrorCode } from '../schemas/errors.ts';
import type { WireEvent } from '../schemas/wire-event.ts';

/**
 * The enrichment pipeline: a validated wire event plus the request's client IP and User-Agent in,
 * enriched events (one per target site) out. The IP and raw UA go no further than this step.
 */

export interface UaInfo {
  browser: string;
  browserVersion: string;
  os: string;
  osVersion: string;
  device: 'desktop' | 'mobile' | 'tablet';
  bot: boolean;
}

export interface PageUrl {
  hostname: string;
  pathname: string;
  utm: { source: string; medium: string; campaign: string; content: string; term: string };
  clickIds: string[];
  ref: string;
}

export interface ChannelInput {
  referrerHost: string;
  sameSite: boolean;
  utmSource: string;
  utmMedium: string;
  utmCampaign: string;
  clickIds: string[];
}

/** The enrichment steps, injected so tests and the collector wire the same pipeline. */
export interface EnrichDeps {
  parseUa(ua: string): UaInfo;
  country(ip: string): string;
  /** The visitor id, and the UTC day of the salt that produced it (EnrichedEvent.saltDay). */
  visitorId(site: string, ip: string, ua: string): { id: string; saltDay: number };
  parsePageUrl(url: string, opts: { hashMode: boolean }): PageUrl | null;
  parseReferrer(referrer: string): { host: string; clean: string } | null;
  classify(input: ChannelInput): { channel: Channel; source: string };
  /** Site check; false → ING_UNKNOWN_SITE. */
  knownSite(domain: string): boolean;
  /** The epoch of the site's registration (EnrichedEvent.epoch); 0 or absent: unknown. */
  siteEpoch?(domain: string): number;
  now(): number;
}

export type EnrichResult =
  | { kind: 'ok'; events: EnrichedEvent[] }
  | { kind: 'drop'; reason: 'bot' }
  | { kind: 'reject'; code: IngestErrorCode; message: string };

/** Plausible's screen classes from the window width; the device type stands in without one. */
function screenClass(width: number | null, device: UaInfo['device']): string {
  if (width === null) return device === 'desktop' ? 'Desktop' : device === 'tablet' ? 'Tablet' : 'Mobile';
  if (width < 576) return 'Mobile';
  if (width < 992) return 'Tablet';
  if (width < 1440) return 'Laptop';
  return 'Desktop';
}

function stripWww(host: string): string {
  return host.startsWith('www.') ? host.slice(4) : host;
}

// Most events carry no props: they share this one empty object (events are never mutated once built).
const NO_PROPS: Record<string, string> = Object.freeze({}) as Record<string, string>;

function stringifyProps(props: WireEvent['props']): Record<string, string> {
  let out: Record<string, string> | undefined;
  for (const k in props) {
    out ??= {};
    out[k] = String(props[k]);
  }
  return out ?? NO_PROPS;
}

/** Turns one wire event into enriched events, or says why it is dropped or rejected. */
export function enrichEvent(deps: EnrichDeps, wire: WireEvent, ip: string, ua: string): EnrichResult {
  const page = deps.parsePageUrl(wire.url, { hashMode: wire.hashMode });
  if (!page) return { kind: 'reject', code: 'ING_BAD_URL', message: 'url: must be an absolute http(s) URL' };
  for (const d of wire.domains) {
    if (!deps.knownSite(d)) return { kind: 'reject', code: 'ING_UNKNOWN_SITE', message: `domain: unknown site "${d}"` };
  }
  const uaInfo = deps.parseUa(ua);
  if (uaInfo.bot) return { kind: 'drop', reason: 'bot' };

  const ref = wire.referrer ? deps.parseReferrer(wire.referrer) : null;
  const sameSite = ref !== null && stripWww(ref.host) === page.hostname;
  const utmSource = page.utm.source || page.ref;
  const { channel, source } = deps.classify({
    referrerHost: ref && !sameSite ? ref.host : '',
    sameSite,
    utmSource,
    utmMedium: page.utm.medium,
    utmCampaign: page.utm.campaign,
    clickIds: page.clickIds,
  });
  const country = deps.country(ip);
  const ts = deps.now();
  const id = wire.id ?? randomUUID();
  const props = stringifyProps(wire.props);
  const screen = screenClass(wire.screenWidth, uaInfo.device);

  // A plain loop: no closure per event.
  const events: EnrichedEvent[] = [];
  for (let i = 0; i < wire.domains.length; i++) {
    const site = wire.domains[i]!;
    const visitor = deps.visitorId(site, ip, ua);
    events.push({
      v: 1,
      id,
      clientId: wire.id !== null,
      site,
      epoch: deps.siteEpoch?.(site) ?? 0,
      ts,
      name: wire.name,
      hostname: page.hostname,
      pathname: page.pathname,
      utmSource: page.utm.source,
      utmMedium: page.utm.medium,
      utmCampaign: page.utm.campaign,
      utmContent: page.utm.content,
      utmTerm: page.utm.term,
      clickIds: page.clickIds,
      referrer: ref && !sameSite ? ref.clean : '',
      source,
      channel,
      country,
      browser: uaInfo.browser,
      browserVersion: uaInfo.browserVersion,
      os: uaInfo.os,
      osVersion: uaInfo.osVersion,
      device: uaInfo.device,
      screen,
      visitorId: visitor.id,
      saltDay: visitor.saltDay,
      interactive: wire.interactive,
      props,
      revenue: wire.revenue,
      exp: wire.exp,
    });
  }
  return { kind: 'ok', events };
}
