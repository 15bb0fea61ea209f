import { decodeBinaryEvent, EVENT_CODEC_V1, STRING_FIELDS } from '../hub/event-codec.ts';
import type { HubRecord } from '../hub/hub.ts';
import type { EnrichedEvent } from '../schemas/enriched-event.ts';
import { DAY_MS, eventRow, formatDay, formatTimestamp, type EventRow, type SessionRow } from '../store/rows.ts';

/**
 * The processor's per-partition state and the one function that advances it: `processRange`.
 *
 * Everything here depends on event times only (never on the wall clock), and on the order of the
 * records, never on how they were cut into batches. That is what lets a restarted processor replay
 * a range from a snapshot and produce the same rows, byte for byte, with the same dedup token.
 */

/** Bounds of the state; the defaults are 30-minute sessions and a one-hour dedup window. */
export interface StateLimits {
  /** Inactivity after which a visitor's next event starts a new session (30 min). */
  sessionTimeoutMs: number;
  /** Events with the same client id within this window count once (1 h). */
  dedupWindowMs: number;
  /** Client ids remembered per partition at most; the oldest are forgotten first (1M). */
  dedupMaxEntries: number;
}

export const defaultStateLimits: StateLimits = {
  sessionTimeoutMs: 30 * 60_000,
  dedupWindowMs: 60 * 60_000,
  dedupMaxEntries: 1_000_000,
};

/** A visitor's current session, as of the last flush (then also the last row written for it). */
export interface Session {
  readonly site: string;
  readonly visitorId: string;
  /**
   * Registration of the site the session belongs to (the events' `epoch`), 0 while unknown. An
   * event of another registration never continues it: after a site is deleted and registered
   * again, its sessions in memory are unknown to the new registration.
   */
  epoch: number;
  /** UInt64 as decimal text, derived from the first event: a replay derives the same id. */
  readonly id: string;
  start: number;
  last: number;
  pageviews: number;
  events: number;
  /** Interactive events seen; a session stays a bounce while this is at most 1. */
  interactive: number;
  entryPage: string;
  exitPage: string;
  /** Version of the last row written for this session (0 before the first). */
  version: number;
  /** UTC day of the salt of `visitorId` (days since the epoch): the `salt_day` of its rows. */
  readonly saltDay: number;
  // Attribution: from the session's first event.
  readonly hostname: string;
  readonly referrer: string;
  readonly source: string;
  readonly channel: string;
  readonly utmSource: string;
  readonly utmMedium: string;
  readonly utmCampaign: string;
  readonly utmContent: string;
  readonly utmTerm: string;
  readonly country: string;
  readonly browser: string;
  readonly browserVersion: string;
  readonly os: string;
  readonly osVersion: string;
  readonly device: string;
  readonly screen: string;
}

/** What one partition's processor remembers between records. */
export interface PartitionState {
  readonly limits: StateLimits;
  /** Highest event time seen: the partition's clock for expiring sessions and client ids. */
  maxTs: number;
  /** `site \n visitorId` → session, in order of last touch (oldest first). */
  readonly sessions: Map<string, Session>;
  /** `site \n clientId` → time it was last counted, in order of insertion (oldest first). */
  readonly dedup: Map<string, number>;
}

/** Why a readable record cannot be stored: ClickHouse would refuse it and every row sent with it. */
export type UnstorableReason = 'malformed_unicode' | 'bad_timestamp';

/** A record the processor will not store, kept for the dead letters. */
export interface UnstorableRecord {
  offset: number;
  site: string;
  reason: UnstorableReason;
  payload: Buffer;
}

/** The latest registration of a site: its epoch (`created_at` in ms) and whether it was deleted. */
export interface Registration {
  epoch: number;
  deleted: boolean;
}

/** What {@link processRange} needs besides the state and the records. */
export interface ProcessOptions {
  /**
   * The latest known registration of `site` (undefined: none known), asked for an event of
   * registration `epoch`. It decides the event's fate (see {@link resolveEpoch}); the processor
   * logs the answers that did, so a replay decides the same way.
   */
  registration?: (site: string, epoch: number) => Registration | undefined;
}

/** The rows one range produces, and what it dropped. */
export interface RangeOutput {
  events: EventRow[];
  /** Offset of the record of each event row (same order as `events`). */
  eventOffsets: number[];
  /** Per touched session: the previous row with sign −1 (if any), then the new row with sign 1. */
  sessions: SessionRow[];
  /**
   * Offset of the record that first touched each row's session in this range (same order as
   * `sessions`): a key of the row that does not depend on which other records were dropped.
   */
  sessionOffsets: number[];
  /** Readable records ClickHouse could not store (not applied to the state). */
  unstorable: UnstorableRecord[];
  duplicates: number;
  invalid: number;
  /** Events of a deleted registration of their site, dropped. */
  deletedSite: number;
}

export function createPartitionState(limits: StateLimits = defaultStateLimits): PartitionState {
  return { limits, maxTs: 0, sessions: new Map(), dedup: new Map() };
}

/**
 * Applies `records` (ordered, one partition) to `state` and returns the rows to write.
 * Mutates `state`. Deterministic: the same state and records give the same rows, and the final
 * state does not depend on how a sequence of records is split into calls.
 */
export function processRange(state: PartitionState, records: readonly HubRecord[], opts: ProcessOptions = {}): RangeOutput {
  const events: EventRow[] = [];
  const eventOffsets: number[] = [];
  const unstorable: UnstorableRecord[] = [];
  // Session → its row as written before this range (undefined for a session born here) and the
  // offset that first touched it. A Map keeps first-touch order, so rows come out in the same
  // order on every replay.
  const touched = new Map<Session, Touch>();
  let duplicates = 0;
  let invalid = 0;
  let deletedSite = 0;
  for (const record of records) {
    const e = decodeEvent(record.payload);
    if (e === undefined) {
      invalid++;
      continue;
    }
    // Before the event can touch the state: a record that cannot be stored changes nothing.
    // A binary record's strings were checked by its decoder (well-formed, or no event at all).
    const reason = unstorableReason(e, record.payload[0] === EVENT_CODEC_V1);
    if (reason !== undefined) {
      unstorable.push({ offset: record.offset, site: e.site, reason, payload: record.payload });
      continue;
    }
    // The clock moves with every storable event, whatever becomes of it.
    if (e.ts > state.maxTs) state.maxTs = e.ts;
    const epoch = resolveEpoch(state, e, opts);
    if (epoch === undefined) {
      deletedSite++;
      continue;
    }
    if (e.clientId && isDuplicate(state, e, epoch)) {
      duplicates++;
      continue;
    }
    const saltDay = saltDayOf(state, e);
    const session = applyToSession(state, e, epoch, saltDay, record.offset, touched);
    events.push(eventRow(e, session.id, saltDay, session));
    eventOffsets.push(record.offset);
  }
  evictSessions(state);
  const { sessions, sessionOffsets } = sessionRows(touched);
  return { events, eventOffsets, sessions, sessionOffsets, unstorable, duplicates, invalid, deletedSite };
}

/** A session touched in a range: its row as written before the range, and who touched it first. */
interface Touch {
  previous: SessionRow | undefined;
  offset: number;
}

/**
 * The registration an event belongs to, or undefined when it belongs to a deleted one (dropped:
 * events still in the hub after a site was deleted must not bring its data back).
 *
 * The collector stamps the registration it knew; a newer one may exist: the partition holds a
 * session of it, or the sites table says so. An event accepted (its `ts`) at or after that newer
 * registration was created belongs to it (a collector whose view of the sites was a few seconds
 * old); one accepted before belongs to the old registration, which was deleted for the newer one
 * to exist. An event of the latest registration, or an older one, is dropped when the latest is
 * deleted. 0 (a collector that knows no registrations) matches any.
 */
function resolveEpoch(state: PartitionState, e: EnrichedEvent, opts: ProcessOptions): number | undefined {
  const epoch = e.epoch ?? 0;
  if (epoch === 0) return 0;
  const session = state.sessions.get(`${e.site}\n${e.visitorId}`);
  let newer = session !== undefined && session.epoch > epoch ? session.epoch : 0;
  const latest = opts.registration?.(e.site, epoch);
  // Unless the partition already knows a newer registration than the table's answer.
  if (latest !== undefined && epoch <= latest.epoch && latest.epoch >= newer) {
    if (latest.deleted) return undefined;
    if (latest.epoch > epoch) newer = latest.epoch;
  }
  if (newer === 0) return epoch;
  return e.ts >= newer ? newer : undefined;
}

/** Whether a session of registration `sessionEpoch` may take an event of `eventEpoch` (0: unknown, matches any). */
function sameRegistration(sessionEpoch: number, eventEpoch: number): boolean {
  return sessionEpoch === eventEpoch || sessionEpoch === 0 || eventEpoch === 0;
}

/** True when a session can still take events: only the partition's event clock decides. */
export function isLive(state: PartitionState, s: Session): boolean {
  return s.last >= state.maxTs - state.limits.sessionTimeoutMs;
}

/** True when a remembered client id still suppresses repeats. */
export function isLiveClientId(state: PartitionState, countedAt: number): boolean {
  return countedAt >= state.maxTs - state.limits.dedupWindowMs;
}

/**
 * A client id seen within the window is a sender's retry: drop it. Otherwise remember it.
 * Expired entries are forgotten on every insert, before the size bound, so which entries the
 * bound evicts never depends on batch boundaries.
 */
function isDuplicate(state: PartitionState, e: EnrichedEvent, epoch: number): boolean {
  // A registration's client ids are its own: a site registered again starts with none remembered.
  // ('#' cannot occur in a domain.)
  const key = epoch === 0 ? `${e.site}\n${e.id}` : `${e.site}#${epoch}\n${e.id}`;
  const countedAt = state.dedup.get(key);
  if (countedAt !== undefined && isLiveClientId(state, countedAt) && Math.abs(e.ts - countedAt) < state.limits.dedupWindowMs) {
    return true;
  }
  // Re-inserted so the Map's order stays the order entries were counted in.
  state.dedup.delete(key);
  state.dedup.set(key, e.ts);
  evictClientIds(state);
  return false;
}

function evictClientIds(state: PartitionState): void {
  const { dedup } = state;
  for (const [key, countedAt] of dedup) {
    if (isLiveClientId(state, countedAt) && dedup.size <= state.limits.dedupMaxEntries) return;
    dedup.delete(key);
  }
}

/**
 * Adds the event to its visitor's live session, or starts one; returns that session. A session of
 * another registration of the site is unknown here: it is replaced, with no −1 row for it (its
 * rows were deleted with the site).
 */
/**
 * The UTC day of the salt of the event's visitor id. The collector sends it; it must be the
 * event's own day or the one before (a visit carried over midnight). A record of an older
 * collector has none: a live or recent session of the same id knows it (ids of different salt days
 * never coincide), else it is the event's own day; only a carried visit whose session this
 * partition no longer holds is then put on the wrong day.
 */
function saltDayOf(state: PartitionState, e: EnrichedEvent): number {
  const day = Math.floor(e.ts / DAY_MS);
  const plausible = (d: number | undefined): d is number => d === day || d === day - 1;
  if (plausible(e.saltDay)) return e.saltDay;
  const known = state.sessions.get(`${e.site}\n${e.visitorId}`)?.saltDay;
  return plausible(known) ? known : day;
}

function applyToSession(
  state: PartitionState,
  e: EnrichedEvent,
  epoch: number,
  saltDay: number,
  offset: number,
  touched: Map<Session, Touch>,
): Session {
  const key = `${e.site}\n${e.visitorId}`;
  const current = state.sessions.get(key);
  // Moved to the end on every touch, so the Map's head is the session idle the longest.
  state.sessions.delete(key);
  if (
    current !== undefined &&
    sameRegistration(current.epoch, epoch) &&
    isLive(state, current) &&
    e.ts - current.last <= state.limits.sessionTimeoutMs
  ) {
    if (!touched.has(current)) touched.set(current, { previous: sessionRow(current, -1, current.version), offset });
    // A session from before epochs were known takes the first one it sees.
    if (current.epoch === 0) current.epoch = epoch;
    extendSession(current, e);
    state.sessions.set(key, current);
    return current;
  }
  const started = newSession(e, epoch, saltDay);
  touched.set(started, { previous: undefined, offset });
  state.sessions.set(key, started);
  return started;
}

function extendSession(s: Session, e: EnrichedEvent): void {
  const pageview = e.name === 'pageview';
  if (e.ts < s.start) s.start = e.ts;
  // A late (out-of-order) event counts, but does not move the exit page back.
  if (e.ts >= s.last) {
    s.last = e.ts;
    if (pageview) s.exitPage = e.pathname;
  }
  if (pageview) {
    s.pageviews++;
    if (s.entryPage === '') s.entryPage = e.pathname;
  }
  s.events++;
  if (e.interactive) s.interactive++;
}

function newSession(e: EnrichedEvent, epoch: number, saltDay: number): Session {
  const pageview = e.name === 'pageview';
  return {
    site: e.site,
    visitorId: e.visitorId,
    epoch,
    id: sessionId(e),
    start: e.ts,
    last: e.ts,
    pageviews: pageview ? 1 : 0,
    events: 1,
    interactive: e.interactive ? 1 : 0,
    entryPage: pageview ? e.pathname : '',
    exitPage: pageview ? e.pathname : '',
    version: 0,
    saltDay,
    hostname: e.hostname,
    referrer: e.referrer,
    source: e.source,
    channel: e.channel,
    utmSource: e.utmSource,
    utmMedium: e.utmMedium,
    utmCampaign: e.utmCampaign,
    utmContent: e.utmContent,
    utmTerm: e.utmTerm,
    country: e.country,
    browser: e.browser,
    browserVersion: e.browserVersion,
    os: e.os,
    osVersion: e.osVersion,
    device: e.device,
    screen: e.screen,
  };
}

/** Forgets sessions that can no longer take events, from the longest idle on. */
function evictSessions(state: PartitionState): void {
  for (const [key, s] of state.sessions) {
    if (isLive(state, s)) return;
    state.sessions.delete(key);
  }
}

/** The −1/+1 pairs (or a first +1) of every session touched in a range; bumps their versions. */
function sessionRows(touched: Map<Session, Touch>): { sessions: SessionRow[]; sessionOffsets: number[] } {
  const sessions: SessionRow[] = [];
  const sessionOffsets: number[] = [];
  for (const [s, { previous, offset }] of touched) {
    if (previous !== undefined) {
      sessions.push(previous);
      sessionOffsets.push(offset);
    }
    s.version++;
    sessions.push(sessionRow(s, 1, s.version));
    sessionOffsets.push(offset);
  }
  return { sessions, sessionOffsets };
}

/** The `sessions` row of a session's current state. */
export function sessionRow(s: Session, sign: 1 | -1, version: number): SessionRow {
  return {
    site: s.site,
    session_id: s.id,
    visitor_id: s.visitorId,
    salt_day: formatDay(s.saltDay),
    start: formatTimestamp(s.start),
    timestamp: formatTimestamp(s.last),
    duration: Math.floor((s.last - s.start) / 1000),
    pageviews: s.pageviews,
    events: s.events,
    is_bounce: s.interactive <= 1 ? 1 : 0,
    entry_page: s.entryPage,
    exit_page: s.exitPage,
    hostname: s.hostname,
    referrer: s.referrer,
    source: s.source,
    channel: s.channel,
    utm_source: s.utmSource,
    utm_medium: s.utmMedium,
    utm_campaign: s.utmCampaign,
    utm_content: s.utmContent,
    utm_term: s.utmTerm,
    country: s.country,
    browser: s.browser,
    browser_version: s.browserVersion,
    os: s.os,
    os_version: s.osVersion,
    device: s.device,
    screen: s.screen,
    sign,
    version,
  };
}

/**
 * Session id: a 64-bit hash of the visitor and the session's first event. Never random: a replay
 * after a crash must give the session the id its rows already carry in ClickHouse. Not a secret
 * (the visitor id already is the keyed hash), so a fast non-cryptographic mix is enough.
 */
export function sessionId(first: Pick<EnrichedEvent, 'site' | 'visitorId' | 'id' | 'ts'>): string {
  const text = `${first.site}\0${first.visitorId}\0${first.id}\0${first.ts}`;
  let h1 = 0xdeadbeef;
  let h2 = 0x41c6ce57;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    h1 = Math.imul(h1 ^ c, 2654435761);
    h2 = Math.imul(h2 ^ c, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507);
  h1 ^= Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507);
  h2 ^= Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return ((BigInt(h2 >>> 0) << 32n) | BigInt(h1 >>> 0)).toString();
}

// Fields checked by the structural guard below: every string field of the event.
const stringFields = STRING_FIELDS;

const uint64Text = /^\d{1,20}$/;

/**
 * The event in a hub record, or undefined when it cannot be stored. The collector validated it
 * with the zod schema before publishing; this cheaper structural check (a zod parse would triple
 * the per-event cost) only guards against a record that would make every insert of its batch
 * fail, which would stall the partition.
 */
export function decodeEvent(payload: Buffer): EnrichedEvent | undefined {
  // Binary records (hub/event-codec.ts) are well-typed by construction; JSON ones are walked.
  if (payload[0] === EVENT_CODEC_V1) {
    const e = decodeBinaryEvent(payload);
    return e !== undefined && isUint64Text(e.visitorId) ? e : undefined;
  }
  let value: unknown;
  try {
    value = JSON.parse(payload.toString('utf8'));
  } catch {
    return undefined;
  }
  return isStorableEvent(value) ? value : undefined;
}

function isStorableEvent(value: unknown): value is EnrichedEvent {
  if (typeof value !== 'object' || value === null) return false;
  const o = value as Record<string, unknown>;
  if (o['v'] !== 1 || !Number.isSafeInteger(o['ts']) || (o['ts'] as number) < 0) return false;
  const epoch = o['epoch'];
  if (epoch !== undefined && (!Number.isSafeInteger(epoch) || (epoch as number) < 0)) return false;
  if (typeof o['clientId'] !== 'boolean' || typeof o['interactive'] !== 'boolean') return false;
  for (const field of stringFields) if (typeof o[field] !== 'string') return false;
  if (!isUint64Text(o['visitorId'] as string)) return false;
  const clickIds = o['clickIds'];
  if (!Array.isArray(clickIds) || !clickIds.every((c) => typeof c === 'string')) return false;
  return isStringRecord(o['props']) && isStringRecord(o['exp']) && isRevenue(o['revenue']);
}

function isUint64Text(s: string): boolean {
  // Only a 20-digit number can exceed 2^64 - 1, so the BigInt is rarely built.
  return uint64Text.test(s) && (s.length < 20 || BigInt(s) <= 0xffffffffffffffffn);
}

function isStringRecord(value: unknown): boolean {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  for (const v of Object.values(value)) if (typeof v !== 'string') return false;
  return true;
}

function isRevenue(value: unknown): boolean {
  if (value === null) return true;
  if (typeof value !== 'object' || value === undefined) return false;
  const r = value as Record<string, unknown>;
  return typeof r['currency'] === 'string' && typeof r['amount'] === 'number';
}

/** 10000-01-01T00:00:00Z: from there a time has no four-digit year, and ClickHouse cannot read it. */
const MAX_STORABLE_TS = 253_402_300_800_000;

/** `String.prototype.isWellFormed` (Node 20; not in the ES2023 lib this project compiles against). */
function wellFormed(s: string): boolean {
  return (s as unknown as { isWellFormed(): boolean }).isWellFormed();
}

/**
 * Why ClickHouse would refuse this (structurally valid) event, failing every row sent with it, or
 * undefined when it can be stored. Checked before the event touches the state, so a refused
 * event leaves no trace in sessions either: a lone surrogate in any string (ClickHouse's JSON
 * parser rejects the escape JSON.stringify writes for it), or a time it cannot represent.
 */
export function unstorableReason(e: EnrichedEvent, stringsWellFormed = false): UnstorableReason | undefined {
  if (e.ts >= MAX_STORABLE_TS) return 'bad_timestamp';
  // `decodeBinaryEvent` returns only well-formed strings (valid UTF-8, never cut inside a pair):
  // the 21+ checks below would find nothing (tested against it on forged records).
  if (stringsWellFormed) return undefined;
  for (const field of stringFields) if (!wellFormed(e[field])) return 'malformed_unicode';
  for (const c of e.clickIds) if (!wellFormed(c)) return 'malformed_unicode';
  if (!wellFormedRecord(e.props) || !wellFormedRecord(e.exp)) return 'malformed_unicode';
  if (e.revenue !== null && !wellFormed(e.revenue.currency)) return 'malformed_unicode';
  return undefined;
}

function wellFormedRecord(r: Record<string, string>): boolean {
  for (const k in r) if (!wellFormed(k) || !wellFormed(r[k] as string)) return false;
  return true;
}
