import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadAsset, serveAsset, type StaticAsset } from '../../lib/http/static.ts';
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
const modules = ['app', 'account', 'api', 'chart', 'config', 'dom', 'experiments', 'format', 'panels', 'state'];

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

function serve(asset: StaticAsset, req: ApiRequest, html: boolean): ApiReply {
  const headers: Record<string, string> = { 'Cache-Control': 'no-cache', 'X-Content-Type-Options': 'nosniff' };
  if (html) {
    headers['Content-Security-Policy'] = DASHBOARD_CSP;
    headers['Referrer-Policy'] = 'no-referrer';
    headers['X-Frame-Options'] = 'DENY';
  }
  return serveAsset(asset, { ifNoneMatch: req.headers['if-none-match'], acceptEncoding: req.headers['accept-encoding'] }, headers);
}

/** `GET /` and `GET /dashboard/*`: the dashboard page, its script and style, and uPlot. */
export function dashboardRoutes(r: ApiRouter, _deps: ApiDeps): void {
  for (const f of files) {
    const asset = loadAsset(f.file, f.type);
    r.get(f.path, (req) => serve(asset, req, f.path === '/'));
  }
}
