import uWS from 'uWebSockets.js';
import type { TemplatedApp } from 'uWebSockets.js';
import type { ApiDeps, RouteDeps, RouteModule } from './deps.ts';
import { createRouter, type Router } from './http.ts';
import { createAuthGuard } from './auth-guard.ts';
import { queryLimitsOf, reportsOf } from './query-limits.ts';
import { queryRoutes } from './routes/query.ts';
import { adminRoutes } from './routes/admin.ts';
import { dashboardRoutes } from './routes/dashboard.ts';
import { trackerRoutes } from './routes/tracker.ts';
import { experimentRoutes } from './routes/experiments.ts';
import { exportRoutes } from './routes/export.ts';
import { reservationRoutes } from './routes/reservations.ts';

/**
 * The reporting API, admin endpoints, tracker and dashboard as route modules
 * on one uWebSockets.js app: `farol start` adds them to the collector's app (one port), `farol api`
 * serves them alone. Each module registers its routes; this file only lists them.
 */

const modules: readonly RouteModule[] = [queryRoutes, adminRoutes, dashboardRoutes, trackerRoutes, experimentRoutes, exportRoutes, reservationRoutes];

/** Registers every API route on `app`; returns the router (for drain and the 405 list). */
export function registerApi(app: TemplatedApp, deps: ApiDeps): Router {
  const rate = deps.config.FAROL_RATE_AUTH;
  const authGuard = rate === null ? undefined : createAuthGuard({ rate, trust: deps.config.FAROL_TRUST_PROXY, metrics: deps.metrics });
  const router = createRouter(app, { log: deps.log, metrics: deps.metrics, maxBodyMemory: deps.config.FAROL_MAX_BODY_MEMORY, ...(authGuard ? { authGuard } : {}) });
  const routeDeps: RouteDeps = { ...deps, reports: reportsOf(deps.store, queryLimitsOf(deps.config)) };
  for (const m of modules) m(router, routeDeps);
  return router;
}

export interface ApiServer {
  port: number;
  /** Stops listening and waits for requests in flight. */
  stop(): Promise<void>;
}

/** `farol api` without a collector: the API routes, health and a JSON 404 on one app (metrics: lib/metrics-server.ts). */
export async function listenApi(deps: ApiDeps): Promise<ApiServer> {
  const app = uWS.App();
  const router = registerApi(app, deps);
  app.get('/healthz', (res) => {
    res.cork(() => res.writeHeader('Content-Type', 'application/json').end('{"status":"ok"}'));
  });
  app.any('/*', (res, req) => {
    const known = router.paths.has(req.getUrl());
    res.onData(() => undefined);
    res.cork(() =>
      res
        .writeStatus(known ? '405 Method Not Allowed' : '404 Not Found')
        .writeHeader('Content-Type', 'application/json')
        .end(JSON.stringify({ error: known ? { code: 'API_METHOD_NOT_ALLOWED', message: 'Method not allowed' } : { code: 'API_NOT_FOUND', message: 'Not found' } })),
    );
  });
  const socket = await new Promise<uWS.us_listen_socket>((resolve, reject) => {
    app.listen(deps.config.FAROL_HOST, deps.config.FAROL_PORT, (s) => (s ? resolve(s) : reject(new Error(`cannot listen on ${deps.config.FAROL_HOST}:${deps.config.FAROL_PORT}`))));
  });
  const port = uWS.us_socket_local_port(socket);
  deps.log.info({ host: deps.config.FAROL_HOST, port }, 'api listening');
  return {
    port,
    async stop() {
      uWS.us_listen_socket_close(socket);
      await router.idle();
    },
  };
}
