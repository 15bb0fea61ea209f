import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import type { ApiDeps } from '../deps.ts';
import type { ApiReply, ApiRequest, ApiRouter } from '../http.ts';

/**
 * The dashboard (`/`): a static page with plain ES modules that talks to the same
 * public API as any client (`POST /api/v2/query`, `GET /api/v1/sites`, the experiment routes), so
 * what it shows is what the API answers. The files are read once when the routes are registered
 * and served from memory with a strong ETag (revalidated on every load: `no-cache`), gzipped when
 * the client accepts it. The page sends no inline script or style, so its CSP forbids both.
 */

const here = dirname(fileURLToPath(import.meta.url));
const assetsDir = join(here, '..', 'dashboard');
const uplotDir = join(dirname(createRequire(import.meta.url).resolve('uplot/package.json')), 'dist');

/** The page's ES modules, `app.js` first (the one index.html loads). */
const modules = ['app', 'api', 'chart', 'config', 'dom', 'experiments', 'format', 'panels', 'state'];

/** URL path → file and type. A fixed list: nothing a request carries ever names a file. */
const files: readonly { path: string; file: string; type: string }[] = [
  { path: '/', file: join(assetsDir, 'index.html'), type: 'text/html; charset=utf-8' },
  ...modules.map((m) => ({ path: `/dashboard/${m}.js`, file: join(assetsDir, `${m}.js`), type: 'text/javascript; charset=utf-8' })),
  { path: '/dashboard/style.css', file: join(assetsDir, 'style.css'), type: 'text/css; charset=utf-8' },
  { path: '/dashboard/uplot.esm.js', file: join(uplotDir, 'uPlot.esm.js'), type: 'text/javascript; charset=utf-8' },
  { path: '/dashboard/uplot.min.css', file: join(uplotDir, 'uPlot.min.css'), type: 'text/css; charset=utf-8' },
];

/** Content-Security-Policy of the page: only its own scripts, styles and API. */
export const DASHBOARD_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

interface Asset {
  body: Buffer;
  gzip: Buffer;
  etag: string;
  type: string;
}

function load(file: string, type: string): Asset {
  const body = readFileSync(file);
  const etag = `"${createHash('sha256').update(body).digest('base64url').slice(0, 27)}"`;
  return { body, gzip: gzipSync(body, { level: 9 }), etag, type };
}

/** Whether an If-None-Match header names `etag` (a list, weak forms and `*` included). */
export function etagMatches(header: string | undefined, etag: string): boolean {
  if (header === undefined) return false;
  return header.split(',').some((t) => {
    const tag = t.trim();
    return tag === '*' || tag === etag || tag === `W/${etag}`;
  });
}

/** Whether Accept-Encoding allows gzip (absent q=0). */
export function acceptsGzip(header: string | undefined): boolean {
  if (header === undefined) return false;
  return header.split(',').some((part) => {
    const [name, ...params] = part.trim().split(';');
    if (name?.trim().toLowerCase() !== 'gzip' && name?.trim() !== '*') return false;
    const q = params.map((p) => p.trim()).find((p) => p.startsWith('q='));
    return q === undefined || Number(q.slice(2)) > 0;
  });
}

function serve(asset: Asset, req: ApiRequest, html: boolean): ApiReply {
  const headers: Record<string, string> = {
    ETag: asset.etag,
    'Cache-Control': 'no-cache',
    Vary: 'Accept-Encoding',
    'X-Content-Type-Options': 'nosniff',
  };
  if (html) {
    headers['Content-Security-Policy'] = DASHBOARD_CSP;
    headers['Referrer-Policy'] = 'no-referrer';
    headers['X-Frame-Options'] = 'DENY';
  }
  if (etagMatches(req.headers['if-none-match'], asset.etag)) return { status: 304, headers };
  if (acceptsGzip(req.headers['accept-encoding'])) {
    return { body: asset.gzip, contentType: asset.type, headers: { ...headers, 'Content-Encoding': 'gzip' } };
  }
  return { body: asset.body, contentType: asset.type, headers };
}

/** `GET /` and `GET /dashboard/*`: the dashboard page, its script and style, and uPlot. */
export function dashboardRoutes(r: ApiRouter, _deps: ApiDeps): void {
  for (const f of files) {
    const asset = load(f.file, f.type);
    r.get(f.path, (req) => serve(asset, req, f.path === '/'));
  }
}
