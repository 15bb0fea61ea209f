import { z } from 'zod';

/**
 * The enriched event: what the collector publishes to the hub and the processor stores.
 * It holds nothing that identifies a person: no IP, no raw User-Agent.
 */
export const enrichedEventSchema = z.object({
  /** Schema version of this record. */
  v: z.literal(1),
  /** Event id: the client's `id` when it sent one (then `clientId` is true), else a random UUID. */
  id: z.string().min(1).max(128),
  clientId: z.boolean(),
  site: z.string().min(1).max(253),
  /**
   * Which registration of the site the collector accepted the event for: the `created_at` of its
   * `sites` row in milliseconds. A site deleted and registered again gets a new epoch, so the
   * processor never continues a session of the old registration, and drops events of a deleted
   * one still in the hub. 0 or absent: unknown (a collector that cannot read the sites table).
   */
  epoch: z.number().int().nonnegative().optional(),
  /** Milliseconds since the epoch, set by the collector. */
  ts: z.number().int().nonnegative(),
  name: z.string().min(1).max(120),
  hostname: z.string().max(253),
  pathname: z.string().max(2000),
  utmSource: z.string().max(500),
  utmMedium: z.string().max(500),
  utmCampaign: z.string().max(500),
  utmContent: z.string().max(500),
  utmTerm: z.string().max(500),
  /** Names of the ad click ids present in the URL (gclid, fbclid, …); their values are not kept. */
  clickIds: z.array(z.string()),
  /** Referrer without query or fragment, '' when direct or same site. */
  referrer: z.string().max(2000),
  /** Referrer source: a friendly name or the referrer's domain, or utm_source. */
  source: z.string().max(500),
  channel: z.string(),
  /** ISO 3166-1 alpha-2, '' when unknown. */
  country: z.string().max(2),
  browser: z.string(),
  browserVersion: z.string(),
  os: z.string(),
  osVersion: z.string(),
  device: z.enum(['desktop', 'mobile', 'tablet']),
  screen: z.string(),
  /** Keyed 64-bit hash of (daily salt, site, IP, UA), as a decimal string (a ClickHouse UInt64). */
  visitorId: z.string().regex(/^\d{1,20}$/),
  /**
   * UTC day (days since the epoch) of the salt that produced `visitorId`: the event's own day, or
   * the day before for a visit carried over midnight. Absent in records of older collectors: the
   * processor derives it (processor/partition-state.ts).
   */
  saltDay: z.number().int().nonnegative().optional(),
  interactive: z.boolean(),
  props: z.record(z.string(), z.string()),
  revenue: z.object({ currency: z.string().length(3), amount: z.number() }).nullable(),
  exp: z.record(z.string(), z.string()),
});

export type EnrichedEvent = z.infer<typeof enrichedEventSchema>;

export const channels = [
  'Direct',
  'Cross-network',
  'Paid Shopping',
  'Paid Search',
  'Paid Social',
  'Paid Video',
  'Paid Other',
  'Display',
  'Organic Shopping',
  'Organic Social',
  'Organic Video',
  'Organic Search',
  'Email',
  'Affiliates',
  'SMS',
  'Audio',
  'Mobile Push Notifications',
  'AI Assistants',
  'Referral',
  'Unassigned',
] as const;

export type Channel = (typeof channels)[number];
