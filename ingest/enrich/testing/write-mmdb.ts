import { writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';

/*
 * A minimal MaxMind DB (format 2.0) writer for tests, so the GeoLite2/GeoIP2 record shape can be
 * checked against the real reader without shipping MaxMind's licensed data. It follows the spec at
 * https://maxmind.github.io/MaxMind-DB/: a binary search tree of 24-bit records, 16 zero bytes, the
 * data section, then the metadata map after "\xAB\xCD\xEFMaxMind.com". Map keys that repeat are
 * written once and referenced by pointer, as real databases do, so the reader's pointer path runs.
 */

export type MmdbValue = string | number | boolean | MmdbValue[] | { [key: string]: MmdbValue };

export interface MmdbNetwork {
  /** `1.2.3.0/24`, `2a01:e00::/26`; in an IPv6 tree an IPv4 network lands under ::/96. */
  cidr: string;
  data: { [key: string]: MmdbValue };
}

export interface MmdbOptions {
  ipVersion: 4 | 6;
  networks: MmdbNetwork[];
  databaseType?: string;
}

type TreeRecord = TreeNode | { data: number } | null;
interface TreeNode {
  left: TreeRecord;
  right: TreeRecord;
}

const RECORD_BITS = 24;
const METADATA_MARKER = Buffer.from([0xab, 0xcd, 0xef, ...Buffer.from('MaxMind.com', 'latin1')]);

/** Builds the bytes of a MaxMind DB mapping each network to its data. */
export function buildMmdb(opts: MmdbOptions): Buffer {
  const data = new DataSection();
  const root: TreeNode = { left: null, right: null };
  for (const net of opts.networks) {
    const [bits, prefix] = networkBits(net.cidr, opts.ipVersion);
    insert(root, bits, prefix, data.add(net.data));
  }
  const nodes = numberNodes(root);
  const tree = encodeTree(nodes);
  // The metadata map is decoded on its own; keep it pointer-free.
  const metadata = new DataSection(false);
  metadata.add({
    node_count: nodes.length,
    record_size: RECORD_BITS,
    ip_version: opts.ipVersion,
    database_type: opts.databaseType ?? 'Farol-Test-Country',
    languages: ['en'],
    binary_format_major_version: 2,
    binary_format_minor_version: 0,
    build_epoch: 1_700_000_000,
    description: { en: 'Farol test database' },
  });
  return Buffer.concat([tree, Buffer.alloc(16), data.bytes(), METADATA_MARKER, metadata.bytes()]);
}

/** Writes {@link buildMmdb}'s bytes to `path`. */
export async function writeMmdb(path: string, opts: MmdbOptions): Promise<void> {
  await writeFile(path, buildMmdb(opts));
}

function insert(root: TreeNode, bits: boolean[], prefix: number, dataOffset: number): void {
  let node = root;
  for (let depth = 0; depth < prefix - 1; depth++) {
    const side = bits[depth] ? 'right' : 'left';
    let next = node[side];
    if (next === null) {
      next = { left: null, right: null };
      node[side] = next;
    }
    if ('data' in next) throw new Error('overlapping networks are not supported by this test writer');
    node = next;
  }
  node[bits[prefix - 1] ? 'right' : 'left'] = { data: dataOffset };
}

// Breadth-first numbering; the root must be node 0.
function numberNodes(root: TreeNode): TreeNode[] {
  const order: TreeNode[] = [root];
  for (let i = 0; i < order.length; i++) {
    const node = order[i]!;
    for (const child of [node.left, node.right]) {
      if (child !== null && !('data' in child)) order.push(child);
    }
  }
  return order;
}

function encodeTree(nodes: TreeNode[]): Buffer {
  const index = new Map(nodes.map((n, i) => [n, i]));
  const count = nodes.length;
  const recordValue = (r: TreeRecord): number => {
    if (r === null) return count; // "no data"
    if ('data' in r) return count + 16 + r.data; // data pointers skip the 16-byte separator
    return index.get(r)!;
  };
  const out = Buffer.alloc(count * 6);
  nodes.forEach((node, i) => {
    out.writeUIntBE(recordValue(node.left), i * 6, 3);
    out.writeUIntBE(recordValue(node.right), i * 6 + 3, 3);
  });
  return out;
}

function networkBits(cidr: string, ipVersion: 4 | 6): [boolean[], number] {
  const [addr = '', len] = cidr.split('/');
  const family = isIP(addr);
  if (family === 0) throw new Error(`not an IP network: ${cidr}`);
  let bytes = family === 4 ? ipv4Bytes(addr) : ipv6Bytes(addr);
  let prefix = len === undefined ? bytes.length * 8 : Number(len);
  if (family === 4 && ipVersion === 6) {
    bytes = [...new Array<number>(12).fill(0), ...bytes];
    prefix += 96;
  }
  if (family === 6 && ipVersion === 4) throw new Error('an IPv4 tree cannot hold IPv6 networks');
  const bits: boolean[] = [];
  for (const byte of bytes) for (let b = 7; b >= 0; b--) bits.push(((byte >> b) & 1) === 1);
  return [bits, prefix];
}

function ipv4Bytes(addr: string): number[] {
  return addr.split('.').map(Number);
}

function ipv6Bytes(addr: string): number[] {
  const [head = '', tail] = addr.split('::');
  const headGroups = head === '' ? [] : head.split(':');
  const tailGroups = tail === undefined || tail === '' ? [] : tail.split(':');
  const zeros = new Array<string>(8 - headGroups.length - tailGroups.length).fill('0');
  const groups = tail === undefined ? headGroups : [...headGroups, ...zeros, ...tailGroups];
  return groups.flatMap((g) => {
    const v = parseInt(g, 16);
    return [v >> 8, v & 0xff];
  });
}

// Encodes values into one data section, deduplicating strings with pointers.
class DataSection {
  private readonly chunks: Buffer[] = [];
  private length = 0;
  private readonly strings = new Map<string, number>();

  constructor(private readonly dedupe = true) {}

  /** Appends a value; returns its offset in the section. */
  add(value: MmdbValue): number {
    const offset = this.length;
    this.write(value);
    return offset;
  }

  bytes(): Buffer {
    return Buffer.concat(this.chunks);
  }

  private push(buf: Buffer): void {
    this.chunks.push(buf);
    this.length += buf.length;
  }

  private write(value: MmdbValue): void {
    if (typeof value === 'string') this.writeString(value);
    else if (typeof value === 'boolean') this.push(control(14, value ? 1 : 0));
    else if (typeof value === 'number') this.writeNumber(value);
    else if (Array.isArray(value)) {
      this.push(control(11, value.length));
      for (const v of value) this.write(v);
    } else {
      const keys = Object.keys(value);
      this.push(control(7, keys.length));
      for (const k of keys) {
        this.writeString(k);
        this.write(value[k]!);
      }
    }
  }

  private writeString(s: string): void {
    const seen = this.dedupe ? this.strings.get(s) : undefined;
    if (seen !== undefined) {
      this.push(pointer(seen));
      return;
    }
    this.strings.set(s, this.length);
    const bytes = Buffer.from(s, 'utf8');
    this.push(Buffer.concat([control(2, bytes.length), bytes]));
  }

  private writeNumber(n: number): void {
    if (Number.isInteger(n) && n >= 0 && n < 2 ** 32) {
      const bytes = uintBytes(n);
      this.push(Buffer.concat([control(6, bytes.length), bytes]));
      return;
    }
    const buf = Buffer.alloc(8);
    buf.writeDoubleBE(n);
    this.push(Buffer.concat([control(3, 8), buf]));
  }
}

// Big-endian bytes without leading zeros (0 encodes as no bytes).
function uintBytes(n: number): Buffer {
  const out: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) out.unshift(v % 256);
  return Buffer.from(out);
}

// Control byte(s): type in the top 3 bits (0 + an extra byte for types ≥ 8), then the size.
function control(type: number, size: number): Buffer {
  const head: number[] = [];
  let sizeBits: number;
  const extra: number[] = [];
  if (size < 29) sizeBits = size;
  else if (size < 29 + 256) {
    sizeBits = 29;
    extra.push(size - 29);
  } else if (size < 285 + 65536) {
    sizeBits = 30;
    extra.push(((size - 285) >> 8) & 0xff, (size - 285) & 0xff);
  } else {
    sizeBits = 31;
    const v = size - 65821;
    extra.push((v >> 16) & 0xff, (v >> 8) & 0xff, v & 0xff);
  }
  if (type <= 7) head.push((type << 5) | sizeBits);
  else head.push(sizeBits, type - 7);
  return Buffer.from([...head, ...extra]);
}

// A pointer to `offset` in the same data section, in the smallest of the four sizes.
function pointer(offset: number): Buffer {
  if (offset < 2048) return Buffer.from([0x20 | (offset >> 8), offset & 0xff]);
  if (offset < 2048 + 524288) {
    const v = offset - 2048;
    return Buffer.from([0x28 | (v >> 16), (v >> 8) & 0xff, v & 0xff]);
  }
  if (offset < 526336 + 134217728) {
    const v = offset - 526336;
    return Buffer.from([0x30 | (v >> 24), (v >> 16) & 0xff, (v >> 8) & 0xff, v & 0xff]);
  }
  const b = Buffer.alloc(5);
  b[0] = 0x38;
  b.writeUInt32BE(offset, 1);
  return b;
}
