import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { constants, gzipSync } from 'node:zlib';

/**
 * Static assets served from memory (the tracker, the dashboard): read and gzipped once, with a
 * strong ETag so browsers revalidate with a 304 instead of downloading again.
 */

export interface StaticAsset {
  /** The file as written. */
  body: Buffer;
  /** The same bytes gzipped (level 9): what most clients download. */
  gzip: Buffer;
  /** A strong validator of the content: `"<sha256, 22 base64url characters: 132 bits>"`. */
  etag: string;
  /** Content-Type. */
  type: string;
}

/** Reads `file` and prepares what a route serves. */
export function loadAsset(file: string | URL, type: string): StaticAsset {
  const body = readFileSync(file);
  const gzip = gzipSync(body, { level: constants.Z_BEST_COMPRESSION });
  const etag = `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"`;
  return { body, gzip, etag, type };
}

/**
 * Whether an If-None-Match header names `etag`: a list, the weak form of the tag (`W/"…"`, weak
 * comparison as RFC 9110 wants for If-None-Match) and `*`; not `W/*`, which is no tag at all.
 */
export function etagMatches(header: string | undefined, etag: string): boolean {
  if (header === undefined) return false;
  return header.split(',').some((t) => {
    const tag = t.trim();
    return tag === '*' || tag === etag || tag === `W/${etag}`;
  });
}

/** Whether an Accept-Encoding header allows gzip: `gzip` or `*`, unless with q=0 (names and `q` in any case). */
export function acceptsGzip(header: string | undefined): boolean {
  if (header === undefined) return false;
  return header.split(',').some((part) => {
    const [coding, ...params] = part.trim().toLowerCase().split(';');
    if (coding?.trim() !== 'gzip' && coding?.trim() !== '*') return false;
    const q = params.map((p) => p.trim()).find((p) => p.startsWith('q='));
    return q === undefined || Number(q.slice(2)) > 0;
  });
}

export interface AssetReply {
  status: number;
  body?: Buffer;
  contentType?: string;
  headers: Record<string, string>;
}

/**
 * The answer to a GET of `asset`: 304 when the client holds this version, else the body, gzipped
 * when accepted. `headers` (caching, security) go on every answer, 304 included, with the ETag
 * and `Vary: Accept-Encoding`.
 */
export function serveAsset(
  asset: StaticAsset,
  request: { ifNoneMatch: string | undefined; acceptEncoding: string | undefined },
  headers: Readonly<Record<string, string>>,
): AssetReply {
  const common = { ...headers, ETag: asset.etag, Vary: 'Accept-Encoding' };
  if (etagMatches(request.ifNoneMatch, asset.etag)) return { status: 304, headers: common };
  if (acceptsGzip(request.acceptEncoding)) return { status: 200, body: asset.gzip, contentType: asset.type, headers: { ...common, 'Content-Encoding': 'gzip' } };
  return { status: 200, body: asset.body, contentType: asset.type, headers: common };
}
