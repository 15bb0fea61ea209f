import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { constants, gzipSync } from 'node:zlib';
import type { ApiRequest, ApiRouter } from '../http.ts';

/**
 * `GET /js/script.js`: the tracker (ingest/tracker/script.js), read once when the
 * route is registered and served from memory, gzipped when the client accepts it, with an ETag so
 * browsers revalidate cheaply after the hour of caching.
 */

export const TRACKER_PATH = new URL('../../ingest/tracker/script.js', import.meta.url);

export interface TrackerAsset {
  /** The script as written. */
  body: Buffer;
  /** The same bytes gzipped (level 9): what most clients download. */
  gzip: Buffer;
  /** A strong validator of the content: `"<sha256 prefix>"`. */
  etag: string;
}

/** Reads the tracker source and prepares what the route serves. */
export function loadTracker(path: URL = TRACKER_PATH): TrackerAsset {
  const body = readFileSync(path);
  const gzip = gzipSync(body, { level: constants.Z_BEST_COMPRESSION });
  const etag = `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"`;
  return { body, gzip, etag };
}

/** Whether an If-None-Match header names this entity tag (weak comparison, `*` included). */
export function etagMatches(header: string | undefined, etag: string): boolean {
  if (header === undefined) return false;
  return header.split(',').some((t) => {
    const tag = t.trim().replace(/^W\//, '');
    return tag === '*' || tag === etag;
  });
}

/** Whether an Accept-Encoding header allows gzip (a `q=0` refuses it). */
export function acceptsGzip(header: string | undefined): boolean {
  if (header === undefined) return false;
  return header.split(',').some((part) => {
    const [coding, ...params] = part.trim().toLowerCase().split(';');
    if (coding?.trim() !== 'gzip' && coding?.trim() !== '*') return false;
    const q = params.map((p) => p.trim()).find((p) => p.startsWith('q='));
    return q === undefined || Number(q.slice(2)) > 0;
  });
}

export function trackerRoutes(r: ApiRouter): void {
  const asset = loadTracker();
  const common = { 'Cache-Control': 'public, max-age=3600', ETag: asset.etag, Vary: 'Accept-Encoding' };
  r.get(
    '/js/script.js',
    (req: ApiRequest) => {
      if (etagMatches(req.headers['if-none-match'], asset.etag)) return { status: 304, headers: common };
      const gzip = acceptsGzip(req.headers['accept-encoding']);
      return {
        body: gzip ? asset.gzip : asset.body,
        contentType: 'application/javascript; charset=utf-8',
        headers: gzip ? { ...common, 'Content-Encoding': 'gzip' } : common,
      };
    },
    { cors: true },
  );
}
