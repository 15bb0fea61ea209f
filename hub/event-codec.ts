import { isUtf8 } from 'node:buffer';
import type { EnrichedEvent } from '../schemas/enriched-event.ts';

/*
 * The binary form of an enriched event in a hub record, written by the collector and read by the
 * processor in place of JSON text (JSON.stringify + its escape scan + the UTF-8 copy on one side,
 * JSON.parse and a structural walk on the other, were a fifth of the per-event CPU).
 *
 * Written by hand rather than with a serialization library: it runs once per event on both hot
 * paths, and what it must guarantee (refuse NUL and lone surrogates, read JSON records of older
 * collectors forever) is specific to Farol.
 *
 * A payload's first byte says what it is: `{` (0x7b) is a JSON record (every record written before
 * this format, still read forever, on disk and on Event Hubs); EVENT_CODEC_V1 is this layout:
 *
 *   u8      0x01
 *   u8      flags: 1 clientId, 2 interactive, 4 epoch, 8 saltDay, 16 revenue
 *   f64 LE  ts, then epoch, saltDay, revenue amount when flagged
 *   varint  clickIds count, props count, exp count
 *   varint  length in UTF-16 code units of every string, in STRING_FIELDS order, then the revenue
 *           currency (when flagged), the click ids, each prop key and value, each exp key and value
 *   bytes   every string's UTF-8, back to back, to the end of the payload
 *
 * Strings are one UTF-8 run so the processor decodes them with one native call and cuts them by
 * length. Numbers are doubles: exact for every integer the schema allows (safe integers).
 */

/** The version byte of the binary layout above. */
export const EVENT_CODEC_V1 = 0x01;
/** The first byte of a JSON record. */
const JSON_OPEN = 0x7b;

const F_CLIENT_ID = 1;
const F_INTERACTIVE = 2;
const F_EPOCH = 4;
const F_SALT_DAY = 8;
const F_REVENUE = 16;

/** The event's string fields, in the order their lengths and bytes are written. */
export const STRING_FIELDS = [
  'id',
  'site',
  'name',
  'hostname',
  'pathname',
  'utmSource',
  'utmMedium',
  'utmCampaign',
  'utmContent',
  'utmTerm',
  'referrer',
  'source',
  'channel',
  'country',
  'browser',
  'browserVersion',
  'os',
  'osVersion',
  'device',
  'screen',
  'visitorId',
] as const satisfies readonly (keyof EnrichedEvent)[];

/** Thrown by {@link encodeEvent} for a string ClickHouse could not store (the collector answers 500). */
export class UnencodableEventError extends Error {
  constructor(what: string) {
    super(`an enriched event holds a string that is not well-formed Unicode or holds NUL (${what})`);
    this.name = 'UnencodableEventError';
  }
}

// ---- encoding ----

// Module state is safe: encoding is synchronous. Grows to the largest event seen (10 MB strings
// are refused long before: the wire event bounds every field).
let scratch = Buffer.allocUnsafe(4096);
const f64 = new Float64Array(1);
const f64Bytes = new Uint8Array(f64.buffer);
// The strings of one event, in layout order: the first `count` entries (reused, never shrunk, so
// encoding allocates nothing but the record).
const strings: string[] = [];
let count = 0;

function add(s: string): void {
  strings[count++] = s;
}

/**
 * The binary record of `e`. Throws {@link UnencodableEventError} when a string holds NUL or a lone
 * surrogate (nothing enrichment derives from checked input should; this keeps such a string from
 * reaching the hub, where ClickHouse would refuse it and stall the partition), or when a number
 * is not one the schema allows.
 */
export function encodeEvent(e: EnrichedEvent): Buffer {
  count = 0;
  // In STRING_FIELDS order, as named loads (a loop of e[field] is a megamorphic keyed load).
  add(e.id);
  add(e.site);
  add(e.name);
  add(e.hostname);
  add(e.pathname);
  add(e.utmSource);
  add(e.utmMedium);
  add(e.utmCampaign);
  add(e.utmContent);
  add(e.utmTerm);
  add(e.referrer);
  add(e.source);
  add(e.channel);
  add(e.country);
  add(e.browser);
  add(e.browserVersion);
  add(e.os);
  add(e.osVersion);
  add(e.device);
  add(e.screen);
  add(e.visitorId);
  let flags = (e.clientId ? F_CLIENT_ID : 0) | (e.interactive ? F_INTERACTIVE : 0);
  if (e.epoch !== undefined) flags |= F_EPOCH;
  if (e.saltDay !== undefined) flags |= F_SALT_DAY;
  if (e.revenue !== null) {
    flags |= F_REVENUE;
    add(e.revenue.currency);
  }
  const clickIds = e.clickIds;
  for (let i = 0; i < clickIds.length; i++) add(clickIds[i]!);
  let props = 0;
  for (const key in e.props) {
    add(key);
    add(e.props[key]!);
    props++;
  }
  let exps = 0;
  for (const key in e.exp) {
    add(key);
    add(e.exp[key]!);
    exps++;
  }
  let chars = 0;
  for (let i = 0; i < count; i++) chars += strings[i]!.length;
  // Header, 5 bytes per varint at most, 3 UTF-8 bytes per UTF-16 unit at most.
  const worst = 2 + 4 * 8 + 5 * (3 + count) + 3 * chars;
  if (worst > scratch.length) scratch = Buffer.allocUnsafe(Math.max(worst, 2 * scratch.length));
  const buf = scratch;
  buf[0] = EVENT_CODEC_V1;
  buf[1] = flags;
  let pos = writeF64(buf, 2, checkedInteger(e.ts, 'ts'));
  if (e.epoch !== undefined) pos = writeF64(buf, pos, checkedInteger(e.epoch, 'epoch'));
  if (e.saltDay !== undefined) pos = writeF64(buf, pos, checkedInteger(e.saltDay, 'saltDay'));
  if (e.revenue !== null) {
    if (!Number.isFinite(e.revenue.amount)) throw new UnencodableEventError('revenue.amount');
    pos = writeF64(buf, pos, e.revenue.amount);
  }
  pos = writeVarint(buf, pos, clickIds.length);
  pos = writeVarint(buf, pos, props);
  pos = writeVarint(buf, pos, exps);
  let all = '';
  for (let i = 0; i < count; i++) {
    const s = strings[i]!;
    pos = writeVarint(buf, pos, s.length);
    all += s;
  }
  pos = writeText(buf, pos, all);
  const out = Buffer.allocUnsafe(pos);
  buf.copy(out, 0, 0, pos);
  return out;
}

function checkedInteger(n: number, field: string): number {
  if (!Number.isSafeInteger(n) || n < 0) throw new UnencodableEventError(field);
  return n;
}

function writeF64(buf: Buffer, pos: number, n: number): number {
  f64[0] = n;
  for (let i = 0; i < 8; i++) buf[pos + i] = f64Bytes[i]!;
  return pos + 8;
}

function writeVarint(buf: Buffer, pos: number, n: number): number {
  while (n >= 0x80) {
    buf[pos++] = (n & 0x7f) | 0x80;
    n >>>= 7;
  }
  buf[pos] = n;
  return pos + 1;
}

// All strings as one (a rope) in one native UTF-8 write: enrichment's strings are often slices and
// ropes, on which a JS copy loop of charCodeAt is slower than V8 flattening them natively.
function writeText(buf: Buffer, pos: number, all: string): number {
  const written = buf.write(all, pos, 'utf8');
  if (all.indexOf('\0') !== -1) throw new UnencodableEventError('NUL');
  // Only ASCII takes one byte per UTF-16 unit; anything else is checked, string by string (two
  // lone halves in adjacent strings would pass as a pair in the joined text).
  if (written !== all.length) {
    if (!isWellFormed(all)) throw new UnencodableEventError('lone surrogate');
    let at = 0;
    for (let i = 0; i < count; i++) {
      const len = strings[i]!.length;
      if (len > 0) {
        const first = all.charCodeAt(at);
        const last = all.charCodeAt(at + len - 1);
        if ((first >= 0xdc00 && first <= 0xdfff) || (last >= 0xd800 && last <= 0xdbff)) throw new UnencodableEventError('lone surrogate');
      }
      at += len;
    }
  }
  return pos + written;
}

/** `String.prototype.isWellFormed` (Node 20; not in the ES2023 lib this project compiles against). */
function isWellFormed(s: string): boolean {
  return (s as unknown as { isWellFormed(): boolean }).isWellFormed();
}

// ---- decoding ----

/** What a hub payload holds: a JSON record, a binary one, or neither. */
export function payloadKind(payload: Buffer): 'json' | 'binary' | 'unknown' {
  const first = payload[0];
  return first === EVENT_CODEC_V1 ? 'binary' : first === JSON_OPEN ? 'json' : 'unknown';
}

/**
 * What a hub payload holds, either form, for tools and tests (the processor uses `decodeEvent`,
 * which also checks a JSON record's shape). Throws on a payload that is neither.
 */
export function payloadValue(payload: Buffer): unknown {
  if (payload[0] !== EVENT_CODEC_V1) return JSON.parse(payload.toString('utf8')) as unknown;
  const e = decodeBinaryEvent(payload);
  if (e === undefined) throw new Error('not a well-formed binary event record');
  return e;
}

/**
 * The event of a binary record, or undefined when the bytes are not a well-formed record of this
 * layout (wrong version, truncated, lengths that do not add up, bytes that are not UTF-8, a length
 * that cuts a surrogate pair, numbers the schema does not allow). Every string it returns is
 * well-formed Unicode (valid UTF-8, cut between characters): the processor relies on it to skip
 * its own checks (`unstorableReason` in processor/partition-state.ts). Never throws.
 */
export function decodeBinaryEvent(payload: Buffer): EnrichedEvent | undefined {
  const n = payload.length;
  if (n < 10 || payload[0] !== EVENT_CODEC_V1) return undefined;
  const flags = payload[1]!;
  if (flags > 31) return undefined;
  let pos = 2;
  const ts = readF64(payload, pos);
  pos += 8;
  if (!Number.isSafeInteger(ts) || ts < 0) return undefined;
  let epoch: number | undefined;
  let saltDay: number | undefined;
  let amount = 0;
  if ((flags & F_EPOCH) !== 0) {
    if (pos + 8 > n) return undefined;
    epoch = readF64(payload, pos);
    pos += 8;
    if (!Number.isSafeInteger(epoch) || epoch < 0) return undefined;
  }
  if ((flags & F_SALT_DAY) !== 0) {
    if (pos + 8 > n) return undefined;
    saltDay = readF64(payload, pos);
    pos += 8;
    if (!Number.isSafeInteger(saltDay) || saltDay < 0) return undefined;
  }
  const hasRevenue = (flags & F_REVENUE) !== 0;
  if (hasRevenue) {
    if (pos + 8 > n) return undefined;
    // `+ 0` turns -0 into 0, as a JSON record would hold it.
    amount = readF64(payload, pos) + 0;
    pos += 8;
    if (!Number.isFinite(amount)) return undefined;
  }
  const header = readVarints(payload, pos, 3);
  if (header === undefined) return undefined;
  pos = header;
  const clickIdCount = varints[0]!;
  const propCount = varints[1]!;
  const expCount = varints[2]!;
  const count = STRING_FIELDS.length + (hasRevenue ? 1 : 0) + clickIdCount + 2 * propCount + 2 * expCount;
  // Every string takes a length byte at least: a count beyond the payload is corrupt.
  if (count > n - pos) return undefined;
  const textStart = readVarints(payload, pos, count);
  if (textStart === undefined) return undefined;
  const bytes = payload.subarray(textStart);
  if (!isUtf8(bytes)) return undefined;
  const decoded = bytes.toString('utf8');
  let total = 0;
  for (let i = 0; i < count; i++) total += varints[i]!;
  if (total !== decoded.length) return undefined;
  // Valid UTF-8 decodes to well-formed text; a cut inside a surrogate pair would still leave two
  // lone halves (the encoder never writes one: a forged or corrupt record). Only text with a
  // character beyond the BMP can have a pair, and only such text is longer in bytes than in units.
  if (decoded.length !== bytes.length && splitsPair(decoded, count)) return undefined;

  text = decoded;
  at = 0;
  k = 0;
  // Read in STRING_FIELDS order (object literals evaluate in source order).
  const e: EnrichedEvent = {
    v: 1,
    id: next(),
    clientId: (flags & F_CLIENT_ID) !== 0,
    site: next(),
    epoch: epoch ?? 0,
    ts,
    name: next(),
    hostname: next(),
    pathname: next(),
    utmSource: next(),
    utmMedium: next(),
    utmCampaign: next(),
    utmContent: next(),
    utmTerm: next(),
    clickIds: [],
    referrer: next(),
    source: next(),
    channel: next(),
    country: next(),
    browser: next(),
    browserVersion: next(),
    os: next(),
    osVersion: next(),
    device: next() as EnrichedEvent['device'],
    screen: next(),
    visitorId: next(),
    saltDay: saltDay ?? 0,
    interactive: (flags & F_INTERACTIVE) !== 0,
    props: {},
    revenue: null,
    exp: {},
  };
  // Records of collectors that did not write them yet (rare): absent, as in their JSON.
  if (epoch === undefined) delete e.epoch;
  if (saltDay === undefined) delete e.saltDay;
  if (hasRevenue) e.revenue = { currency: next(), amount };
  for (let i = 0; i < clickIdCount; i++) e.clickIds.push(next());
  for (let i = 0; i < propCount; i++) setOwn(e.props, next(), next());
  for (let i = 0; i < expCount; i++) setOwn(e.exp, next(), next());
  text = '';
  return e;
}

/** Whether a string boundary of `text` (cut by the first `count` lengths of `varints`) falls inside a surrogate pair. */
function splitsPair(text: string, count: number): boolean {
  let end = 0;
  for (let i = 0; i < count - 1; i++) {
    end += varints[i]!;
    const c = text.charCodeAt(end - 1);
    if (c >= 0xd800 && c <= 0xdbff) return true;
  }
  return false;
}

// The record being decoded: its strings' text, the read position in it, the next length's index.
let text = '';
let at = 0;
let k = 0;

function next(): string {
  const len = varints[k++]!;
  const s = text.slice(at, at + len);
  at += len;
  return s;
}

// A key like `__proto__` becomes an own property, as JSON.parse makes it, never the prototype.
function setOwn(o: Record<string, string>, key: string, value: string): void {
  if (key === '__proto__') Object.defineProperty(o, key, { value, enumerable: true, writable: true, configurable: true });
  else o[key] = value;
}

function readF64(buf: Buffer, pos: number): number {
  for (let i = 0; i < 8; i++) f64Bytes[i] = buf[pos + i]!;
  return f64[0]!;
}

// The varints of one record (reused; grows to the largest count seen).
let varints = new Float64Array(64);

/** Reads `count` varints from `pos` into `varints`; the position after them, or undefined if malformed. */
function readVarints(buf: Buffer, pos: number, count: number): number | undefined {
  if (count > varints.length) varints = new Float64Array(Math.max(count, 2 * varints.length));
  const n = buf.length;
  for (let i = 0; i < count; i++) {
    let value = 0;
    let shift = 0;
    for (;;) {
      if (pos >= n || shift > 28) return undefined;
      const b = buf[pos++]!;
      value += (b & 0x7f) * 2 ** shift;
      if (b < 0x80) break;
      shift += 7;
    }
    varints[i] = value;
  }
  return pos;
}
