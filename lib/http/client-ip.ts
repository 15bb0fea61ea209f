import { BlockList, isIP } from 'node:net';
import type { HttpResponse } from 'uWebSockets.js';
import type { TrustProxy } from '../../schemas/config.ts';
import { ipFamily, normalizeIp } from '../ip.ts';

/*
 * Which address is the visitor's. X-Forwarded-For is written by the client and by every proxy on
 * the way, each appending the address it received the request from; only the entries appended by
 * proxies we trust can be believed, so the list is read from the right (the side our own proxies
 * write) and the walk stops at the first hop we do not trust. A spoofed left part is never reached.
 */

/** The request's socket address and X-Forwarded-For header, and the trusted-proxy setting. */
export interface ClientIpInput {
  /** Socket peer address as uWS reports it (IPv4 may come as IPv4-mapped IPv6, long form). */
  remote: string;
  /** The X-Forwarded-For header; '' or undefined when absent. */
  xff: string | undefined;
  trust: TrustProxy;
}

/**
 * The client's IP address, in canonical text (IPv4-mapped IPv6 becomes IPv4). With `hops` N the
 * Nth hop from the right is the client (the socket peer counts as hop 0); with CIDRs the walk from
 * the right skips trusted proxies and stops at the first untrusted address. A junk entry ends the
 * walk: the last valid address seen is the answer. Returns '' only when `remote` itself is junk
 * and nothing trustworthy follows.
 */
export function clientIp(input: ClientIpInput): string {
  const remote = canonicalIp(input.remote);
  const { trust, xff } = input;
  if (xff === undefined || xff === '') return remote;
  if (trust.kind === 'hops') return trust.hops === 0 ? remote : walkHops(remote, xff, trust.hops);
  return walkTrusted(remote, xff, trustedSet(trust.cidrs));
}

/**
 * Whether the socket peer is a trusted proxy, so a batch's per-event `ip` and `ua` may be believed
 * (as X-Forwarded-For is): only a peer inside the configured proxy CIDRs. A hop count never makes a
 * peer trusted: it says how many X-Forwarded-For entries to read, not who sent them, and a
 * per-event `ip` believed from anyone lets one request forge any number of visitors in any
 * countries.
 */
export function isTrustedRemote(remote: string, trust: TrustProxy): boolean {
  if (trust.kind === 'hops') return false;
  const ip = canonicalIp(remote);
  return ip !== '' && trustedSet(trust.cidrs).has(ip);
}

function walkHops(remote: string, xff: string, hops: number): string {
  let client = remote;
  let end = xff.length;
  for (let hop = 1; hop <= hops && end > 0; hop++) {
    const comma = xff.lastIndexOf(',', end - 1);
    const entry = parseForwardedEntry(xff.slice(comma + 1, end));
    // A trusted proxy never writes junk; the header was tampered with or mangled, stop here.
    if (entry === '') return client;
    client = entry;
    end = comma === -1 ? 0 : comma;
  }
  return client;
}

function walkTrusted(remote: string, xff: string, trusted: TrustedSet): string {
  if (remote === '' || !trusted.has(remote)) return remote;
  let client = remote;
  let end = xff.length;
  while (end > 0) {
    const comma = xff.lastIndexOf(',', end - 1);
    const entry = parseForwardedEntry(xff.slice(comma + 1, end));
    if (entry === '') return client;
    client = entry;
    if (!trusted.has(entry)) return client;
    end = comma === -1 ? 0 : comma;
  }
  // Every hop was a trusted proxy: the leftmost is as close to the client as we can get.
  return client;
}

/**
 * One X-Forwarded-For entry as a canonical IP, or '' for junk ("unknown", obfuscated nodes,
 * hostnames). Proxies such as Azure Application Gateway append a port: `1.2.3.4:5678`, `[::1]:80`.
 */
export function parseForwardedEntry(raw: string): string {
  const s = raw.trim();
  if (s.length === 0 || s.length > 64) return '';
  if (s.charCodeAt(0) === 91 /* [ */) {
    const close = s.indexOf(']');
    return close === -1 ? '' : normalizeIp(s.slice(1, close));
  }
  if (ipv4Value(s) >= 0) return s;
  if (isIP(s) !== 0) return normalizeIp(s);
  const colon = s.indexOf(':');
  if (colon > 0 && colon === s.lastIndexOf(':')) {
    const host = s.slice(0, colon);
    return isIP(host) === 4 ? host : '';
  }
  return '';
}

/**
 * {@link normalizeIp} with a fast path for the dotted quads nearly every request carries (the
 * socket peer, X-Forwarded-For entries): already canonical, no regular expression.
 */
function canonicalIp(text: string): string {
  return ipv4Value(text) >= 0 ? text : normalizeIp(text);
}

/**
 * The value of a dotted quad exactly as `isIP` accepts one (four decimal numbers 0–255, no
 * leading zeros, nothing else), or -1. Hand-written: it runs for every address of every request.
 */
export function ipv4Value(s: string): number {
  const n = s.length;
  if (n < 7 || n > 15) return -1;
  let value = 0;
  let octet = 0;
  let digits = 0;
  let dots = 0;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c === 46 /* . */) {
      if (digits === 0 || dots === 3) return -1;
      value = value * 256 + octet;
      octet = 0;
      digits = 0;
      dots++;
    } else if (c >= 48 && c <= 57) {
      // A leading zero (`01`) is not a dotted quad for isIP.
      if (digits > 0 && octet === 0) return -1;
      octet = octet * 10 + (c - 48);
      if (octet > 255) return -1;
      digits++;
    } else {
      return -1;
    }
  }
  return dots === 3 && digits > 0 ? value * 256 + octet : -1;
}

// Up to this many IPv4 CIDRs are matched by arithmetic (no cache needed); more go to BlockList.
const V4_SCAN_MAX = 32;

// A compiled CIDR list with a small answer cache: `BlockList.check` costs ~1.5 µs a call. IPv4
// addresses against a short list (the usual proxy setting) are matched by prefix arithmetic
// instead, exact and without the cache (visitors' addresses would churn it).
class TrustedSet {
  private readonly v4 = new BlockList();
  private readonly v6 = new BlockList();
  private readonly cache = new Map<string, boolean>();
  // IPv4 CIDRs as network and mask values.
  private readonly v4Nets: number[] = [];
  private readonly v4Masks: number[] = [];

  constructor(cidrs: readonly string[]) {
    for (const cidr of cidrs) this.add(cidr);
  }

  has(ip: string): boolean {
    if (this.v4Nets.length <= V4_SCAN_MAX) {
      const v = ipv4Value(ip);
      if (v >= 0) {
        for (let i = 0; i < this.v4Nets.length; i++) if ((v & this.v4Masks[i]!) >>> 0 === this.v4Nets[i]) return true;
        return false;
      }
    }
    const hit = this.cache.get(ip);
    if (hit !== undefined) return hit;
    const family = ipFamily(ip);
    const answer = family === 4 ? this.v4.check(ip, 'ipv4') : family === 6 ? this.v6.check(ip, 'ipv6') : false;
    // Proxy addresses repeat on every request; clearing on overflow keeps memory bounded and the
    // proxies come straight back.
    if (this.cache.size >= TRUST_CACHE_MAX) this.cache.clear();
    this.cache.set(ip, answer);
    return answer;
  }

  private add(cidr: string): void {
    const slash = cidr.indexOf('/');
    const addr = normalizeIp(slash === -1 ? cidr : cidr.slice(0, slash));
    const family = ipFamily(addr);
    if (family === 0) return;
    const maxBits = family === 4 ? 32 : 128;
    const bits = slash === -1 ? maxBits : Number(cidr.slice(slash + 1));
    // An IPv4-mapped IPv6 CIDR was normalized to its IPv4 address; its prefix loses the 96 bits.
    const prefix = family === 4 && cidr.includes(':') ? Math.max(0, bits - 96) : bits;
    if (family === 4) {
      this.v4.addSubnet(addr, prefix, 'ipv4');
      const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
      this.v4Masks.push(mask);
      this.v4Nets.push((ipv4Value(addr) & mask) >>> 0);
    } else this.v6.addSubnet(addr, prefix, 'ipv6');
  }
}

const TRUST_CACHE_MAX = 4096;

// The configuration is parsed once, so its CIDR array identity is stable for the process.
const compiled = new WeakMap<readonly string[], TrustedSet>();

function trustedSet(cidrs: readonly string[]): TrustedSet {
  let set = compiled.get(cidrs);
  if (set === undefined) {
    set = new TrustedSet(cidrs);
    compiled.set(cidrs, set);
  }
  return set;
}

/**
 * The socket peer's address as text. IPv4 peers of the dual-stack socket (nearly all) are written
 * as a dotted quad from the 16 binary bytes, which skips uWS's long IPv6 text and its parsing in
 * `normalizeIp`; anything else is uWS's text, as before.
 */
export function remoteAddress(res: HttpResponse): string {
  const b = new Uint8Array(res.getRemoteAddress());
  if (
    b.length === 16 &&
    b[10] === 0xff &&
    b[11] === 0xff &&
    b[0] === 0 &&
    b[1] === 0 &&
    b[2] === 0 &&
    b[3] === 0 &&
    b[4] === 0 &&
    b[5] === 0 &&
    b[6] === 0 &&
    b[7] === 0 &&
    b[8] === 0 &&
    b[9] === 0
  ) {
    return dottedQuad(b[12]!, b[13]!, b[14]!, b[15]!);
  }
  if (b.length === 4) return dottedQuad(b[0]!, b[1]!, b[2]!, b[3]!);
  return Buffer.from(res.getRemoteAddressAsText()).toString('latin1');
}

// The last peer's text: behind a proxy (or a load generator) nearly every request comes from
// the same address, which is then not formatted again. An address, not a secret: it is the text
// every request of that peer gets anyway.
let lastPeer = -1;
let lastPeerText = '';

function dottedQuad(a: number, b: number, c: number, d: number): string {
  const value = ((a << 24) | (b << 16) | (c << 8) | d) >>> 0;
  if (value !== lastPeer) {
    lastPeer = value;
    lastPeerText = `${a}.${b}.${c}.${d}`;
  }
  return lastPeerText;
}
