import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { hashLittle2, partitionForKey } from './partition-key.ts';

// The SDK's own mapping (internal, not exported): the oracle the broker must agree with.
const require = createRequire(import.meta.url);
const sdkMapper = require(join(dirname(require.resolve('@azure/event-hubs')), 'impl', 'partitionKeyToIdMapper.js')) as {
  mapPartitionKeyToId(key: string, partitionCount: number): number;
};

describe('partitionForKey', () => {
  it.each([
    ['', 0xdeadbeef, 0xdeadbeef],
    ['Four score and seven years ago', 0x17770551, 0xce7226e6],
  ])('matches lookup3 hashlittle2 reference output for %j', (key, c, b) => {
    const h = hashLittle2(Buffer.from(key, 'utf8'));
    expect([h.c >>> 0, h.b >>> 0]).toEqual([c, b]);
  });

  it('agrees with the SDK buffered producer for any key and partition count', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 80 }), fc.integer({ min: 1, max: 64 }), (key, count) => {
        expect(partitionForKey(key, count)).toBe(sdkMapper.mapPartitionKeyToId(key, count));
      }),
      { numRuns: 2_000 },
    );
  });
});
