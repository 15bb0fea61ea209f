import { isIP } from 'node:net';

/*
 * IP address text helpers shared by client-ip, geo and visitor hashing. One client must always map
 * to one string: uWS reports IPv4 clients of a dual-stack socket as IPv4-mapped IPv6, sometimes in
 * long form (0000:…:ffff:7f00:0001), while proxies write dotted IPv4 into X-Forwarded-For. Without
 * a canonical form the same visitor would hash to two ids and the geo lookup would miss.
 */

// Reused by every IPv6 parse; the per-event path parses at most a few addresses, synchronously.
const groups = new Uint16Array(8);

/**
 * The canonical text of an IP address: IPv4 dotted quad, IPv4-mapped IPv6 as IPv4, other IPv6 in
 * RFC 5952 form (lowercase, no leading zeros, longest zero run compressed, zone id dropped).
 * Returns '' when `text` is not an IP address.
 */
export function normalizeIp(text: string): string {
  const family = isIP(text);
  if (family === 4) return text;
  if (family === 6) return canonicalIpv6(text);
  return '';
}

/** 4 or 6 for canonical text from {@link normalizeIp}, 0 for ''. */
export function ipFamily(ip: string): 0 | 4 | 6 {
  if (ip === '') return 0;
  return ip.includes(':') ? 6 : 4;
}

const LONG_MAPPED_PREFIX = '0000:0000:0000:0000:0000:ffff:';

function canonicalIpv6(text: string): string {
  // Fast paths for the forms uWS reports IPv4 clients in, seen on every request.
  if (text.startsWith('::ffff:') && isIP(text.slice(7)) === 4) return text.slice(7);
  if (text.length === 39 && text.toLowerCase().startsWith(LONG_MAPPED_PREFIX)) {
    const hi = parseInt(text.slice(30, 34), 16);
    const lo = parseInt(text.slice(35, 39), 16);
    return `${hi >> 8}.${hi & 0xff}.${lo >> 8}.${lo & 0xff}`;
  }
  const zone = text.indexOf('%');
  const addr = zone === -1 ? text : text.slice(0, zone);
  parseIpv6Groups(addr);
  if (isIpv4Mapped()) {
    return `${groups[6]! >> 8}.${groups[6]! & 0xff}.${groups[7]! >> 8}.${groups[7]! & 0xff}`;
  }
  return formatIpv6();
}

// Fills `groups` from text that `isIP` already accepted as IPv6 (zone id removed). One pass over
// the characters, no intermediate arrays: this runs for every IPv6 request.
function parseIpv6Groups(addr: string): void {
  groups.fill(0);
  let count = 0;
  let gapAt = -1;
  let value = 0;
  let digits = 0;
  for (let i = 0; i < addr.length; i++) {
    const c = addr.charCodeAt(i);
    if (c === 58 /* : */) {
      if (digits > 0) groups[count++] = value;
      if (i + 1 < addr.length && addr.charCodeAt(i + 1) === 58) {
        gapAt = count;
        i++;
      }
      value = 0;
      digits = 0;
    } else if (c === 46 /* . */) {
      // Dotted IPv4 tail: it fills the last two groups.
      const start = addr.lastIndexOf(':') + 1;
      const ipv4 = ipv4Value(addr.slice(start));
      groups[count++] = ipv4 >>> 16;
      groups[count++] = ipv4 & 0xffff;
      digits = 0;
      break;
    } else {
      value = (value << 4) | hexDigit(c);
      digits++;
    }
  }
  if (digits > 0) groups[count++] = value;
  if (gapAt !== -1) {
    // Slide the groups after "::" to the end; the zeros between are the gap.
    const tail = count - gapAt;
    for (let j = 0; j < tail; j++) groups[7 - j] = groups[count - 1 - j]!;
    for (let j = gapAt; j < 8 - tail; j++) groups[j] = 0;
  }
}

function hexDigit(c: number): number {
  if (c <= 57) return c - 48;
  return (c | 0x20) - 87;
}

function ipv4Value(dotted: string): number {
  let value = 0;
  let octet = 0;
  for (let i = 0; i < dotted.length; i++) {
    const c = dotted.charCodeAt(i);
    if (c === 46) {
      value = value * 256 + octet;
      octet = 0;
    } else {
      octet = octet * 10 + (c - 48);
    }
  }
  return value * 256 + octet;
}

function isIpv4Mapped(): boolean {
  return groups[0] === 0 && groups[1] === 0 && groups[2] === 0 && groups[3] === 0 && groups[4] === 0 && groups[5] === 0xffff;
}

// RFC 5952 section 4: compress the longest run (≥ 2) of zero groups, the first one on a tie.
function formatIpv6(): string {
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  let out = '';
  for (let i = 0; i < 8; i++) {
    if (i === bestStart) {
      out += '::';
      i += bestLen - 1;
      continue;
    }
    if (out !== '' && !out.endsWith(':')) out += ':';
    out += groups[i]!.toString(16);
  }
  return out;
}

/**
 * True for addresses that can never locate a visitor: private, loopback, link-local, CGNAT,
 * documentation, multicast and reserved ranges. Takes canonical text from {@link normalizeIp}.
 */
export function isNonPublicIp(ip: string): boolean {
  const family = ipFamily(ip);
  if (family === 4) return isNonPublicIpv4(ip);
  if (family === 6) return isNonPublicIpv6(ip);
  return true;
}

function isNonPublicIpv4(ip: string): boolean {
  const dot1 = ip.indexOf('.');
  const dot2 = ip.indexOf('.', dot1 + 1);
  const dot3 = ip.indexOf('.', dot2 + 1);
  const a = Number(ip.slice(0, dot1));
  const b = Number(ip.slice(dot1 + 1, dot2));
  const c = Number(ip.slice(dot2 + 1, dot3));
  if (a === 0 || a === 10 || a === 127 || a >= 224) return true;
  if (a === 100 && b >= 64 && b < 128) return true;
  if (a === 169 && b === 254) return true;
  if (a === 172 && b >= 16 && b < 32) return true;
  if (a === 192 && b === 168) return true;
  if (a === 192 && b === 0 && (c === 0 || c === 2)) return true;
  if (a === 198 && (b === 18 || b === 19)) return true;
  if (a === 198 && b === 51 && c === 100) return true;
  return a === 203 && b === 0 && c === 113;
}

function isNonPublicIpv6(ip: string): boolean {
  if (ip === '::' || ip === '::1') return true;
  const colon = ip.indexOf(':');
  const first = colon === 0 ? 0 : parseInt(ip.slice(0, colon), 16);
  if ((first & 0xfe00) === 0xfc00) return true; // fc00::/7 unique local
  if ((first & 0xffc0) === 0xfe80) return true; // fe80::/10 link-local
  if ((first & 0xff00) === 0xff00) return true; // ff00::/8 multicast
  return first === 0x2001 && ip.startsWith('2001:db8:'); // documentation
}
