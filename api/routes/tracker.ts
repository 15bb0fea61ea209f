import { loadAsset, serveAsset, type StaticAsset } from '../../lib/http/static.ts';
import type { ApiRequest, ApiRouter } from '../http.ts';

/**
 * `GET /js/script.js`: the tracker (ingest/tracker/script.js), read once when the
 * route is registered and served from memory, gzipped when the client accepts it, with an ETag so
 * browsers revalidate cheaply after the hour of caching.
 */

export const TRACKER_PATH = new URL('../../ingest/tracker/script.js', import.meta.url);

/** Reads the tracker source and prepares what the route serves. */
export function loadTracker(path: URL = TRACKER_PATH): StaticAsset {
  return loadAsset(path, 'application/javascript; charset=utf-8');
}

const CACHING = { 'Cache-Control': 'public, max-age=3600' };

export function trackerRoutes(r: ApiRouter): void {
  const asset = loadTracker();
  r.get(
    '/js/script.js',
    (req: ApiRequest) => serveAsset(asset, { ifNoneMatch: req.headers['if-none-match'], acceptEncoding: req.headers['accept-encoding'] }, CACHING),
    { cors: true },
  );
}
