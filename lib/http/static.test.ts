import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { acceptsGzip, etagMatches, loadAsset, serveAsset } from './static.ts';

describe('static assets', () => {
  it.each([
    [undefined, false],
    ['"abc"', true],
    ['W/"abc"', true],
    ['"x", "abc"', true],
    ['*', true],
    ['"abcd"', false],
    ['abc', false],
    // The dashboard's rule, stricter than the tracker's was: `W/*` names no tag.
    ['W/*', false],
    ['W/abc', false],
  ])('If-None-Match %j matches "abc": %s', (header, expected) => {
    expect(etagMatches(header, '"abc"')).toBe(expected);
  });

  it.each([
    [undefined, false],
    ['gzip', true],
    ['gzip, deflate, br', true],
    ['br;q=1.0, gzip;q=0.8', true],
    ['gzip;q=0', false],
    ['identity', false],
    ['*', true],
    // The tracker's rule, stricter than the dashboard's was: a refusal in capitals is a refusal.
    ['GZIP', true],
    ['gzip;Q=0', false],
    ['gzip; q=0.000', false],
    ['*;q=0', false],
  ])('Accept-Encoding %j allows gzip: %s', (header, expected) => {
    expect(acceptsGzip(header)).toBe(expected);
  });

  it('serves the body, gzipped when accepted, and 304 for the held version, with the same headers on each', () => {
    const dir = mkdtempSync(join(tmpdir(), 'farol-static-'));
    const file = join(dir, 'a.js');
    writeFileSync(file, 'console.log("hello");\n'.repeat(20));
    const asset = loadAsset(file, 'text/javascript');
    expect(asset.etag).toMatch(/^"[\w-]{22}"$/);
    const headers = { 'Cache-Control': 'no-cache' };
    const plain = serveAsset(asset, { ifNoneMatch: undefined, acceptEncoding: undefined }, headers);
    expect(plain).toEqual({ status: 200, body: asset.body, contentType: 'text/javascript', headers: { ...headers, ETag: asset.etag, Vary: 'Accept-Encoding' } });
    const zipped = serveAsset(asset, { ifNoneMatch: '"stale"', acceptEncoding: 'gzip' }, headers);
    expect(zipped.headers['Content-Encoding']).toBe('gzip');
    expect(gunzipSync(zipped.body ?? Buffer.alloc(0))).toEqual(asset.body);
    const held = serveAsset(asset, { ifNoneMatch: `W/${asset.etag}`, acceptEncoding: 'gzip' }, headers);
    expect(held).toEqual({ status: 304, headers: { ...headers, ETag: asset.etag, Vary: 'Accept-Encoding' } });
  });
});
