/**
 * Maps a partition key to a partition index the way Event Hubs clients do: Bob Jenkins' lookup3
 * `hashlittle2` (seeds 0) over the key's UTF-8 bytes, the two outputs XOR-ed and narrowed to a
 * signed 16-bit integer, then `|v mod partitionCount|`. The buffered producer hashes client-side
 * with this function, so the broker must agree for "same key → same partition" to hold across
 * both producers.
 */
export function partitionForKey(key: string, partitionCount: number): number {
  const { b, c } = hashLittle2(Buffer.from(key, 'utf8'));
  const int16 = ((c ^ b) << 16) >> 16;
  return Math.abs(int16 % partitionCount);
}

function rot(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

/** lookup3 `hashlittle2` with both seeds 0; returns the primary (c) and secondary (b) hashes. */
export function hashLittle2(key: Buffer): { b: number; c: number } {
  let a = (0xdeadbeef + key.length) | 0;
  let b = a;
  let c = a;
  let i = 0;
  let left = key.length;
  while (left > 12) {
    a = (a + key.readUInt32LE(i)) | 0;
    b = (b + key.readUInt32LE(i + 4)) | 0;
    c = (c + key.readUInt32LE(i + 8)) | 0;
    // mix(a, b, c)
    a = (a - c) | 0; a ^= rot(c, 4); c = (c + b) | 0;
    b = (b - a) | 0; b ^= rot(a, 6); a = (a + c) | 0;
    c = (c - b) | 0; c ^= rot(b, 8); b = (b + a) | 0;
    a = (a - c) | 0; a ^= rot(c, 16); c = (c + b) | 0;
    b = (b - a) | 0; b ^= rot(a, 19); a = (a + c) | 0;
    c = (c - b) | 0; c ^= rot(b, 4); b = (b + a) | 0;
    i += 12;
    left -= 12;
  }
  if (left === 0) return { b, c };
  // The last 1..12 bytes are added little-endian; zero padding adds nothing, as in the original.
  const tail = Buffer.alloc(12);
  key.copy(tail, 0, i);
  a = (a + tail.readUInt32LE(0)) | 0;
  b = (b + tail.readUInt32LE(4)) | 0;
  c = (c + tail.readUInt32LE(8)) | 0;
  // final(a, b, c)
  c ^= b; c = (c - rot(b, 14)) | 0;
  a ^= c; a = (a - rot(c, 11)) | 0;
  b ^= a; b = (b - rot(a, 25)) | 0;
  c ^= b; c = (c - rot(b, 16)) | 0;
  a ^= c; a = (a - rot(c, 4)) | 0;
  b ^= a; b = (b - rot(a, 14)) | 0;
  c ^= b; c = (c - rot(b, 24)) | 0;
  return { b, c };
}
