import type { TemplatedApp } from 'uWebSockets.js';
import type { Config } from '../schemas/config.ts';
import type { Store } from '../store/store.ts';
import type { Logger } from '../lib/log.ts';
import type { Registry } from '../lib/metrics.ts';
import type { AccessLookup } from './auth.ts';
import type { ControlPlane } from './control/control-plane.ts';
import { httpServerOf } from '../lib/http/server.ts';
import { createRouter, type ApiRouter, type Router } from './http.ts';
import { createAuthGuard } from './auth-guard.ts';
import { queryLimitsOf, reportsOf, type Reports } from './query-limits.ts';
import { queryRoutes } from './routes/query.ts';
import { adminRoutes } from './routes/admin.ts';
import { dashboardRoutes } from './routes/dashboard.ts';
import { trackerRoutes } from './routes/tracker.ts';
import { experimentRoutes } from './routes/experiments.ts';
import { exportRoutes } from './routes/export.ts';
import { reservationRoutes } from './routes/reservations.ts';

/**
 * The reporting API, admin endpoints, tracker and dashboard (SPEC sections 8-9) as route modules
 * on one uWebSockets.js app: `farol start` adds them to the collector's app (one port), `farol api`
 * serves them alone. Each module registers its routes; this file only lists them.
 */

/** What the API routes need from the control plane (api/control). */
export interface ApiControl extends AccessLookup {
  /** Configured goal names of a site (undefined: none configured, every custom event is a goal). */
  goals(domain: string): Promise<readonly string[] | undefined>;
}

export interface ApiDeps {
  store: Store;
  control: ControlPlane;
  config: Config;
  log: Logger;
  metrics: Registry;
  now: () => Date;
}

/** What route modules get: the process's dependencies, and the limits of ClickHouse reads made for a request. */
export interface RouteDeps extends ApiDeps {
  reports: Reports;
}

export type RouteModule = (r: ApiRouter, deps: RouteDeps) => void;

const modules: readonly RouteModule[] = [queryRoutes, adminRoutes, dashboardRoutes, trackerRoutes, experimentRoutes, exportRoutes, reservationRoutes];

/** Registers every API route on `app`'s HTTP layer; returns the router. */
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

/** `farol api` without a collector: the API routes and health on one app; 404/405 from the HTTP layer (metrics: lib/metrics-server.ts). */
export async function listenApi(deps: ApiDeps): Promise<ApiServer> {
  const server = httpServerOf(undefined, { dialect: 'api' });
  registerApi(server.app, deps);
  server.route('get', '/healthz', 'api', (res) => {
    res.cork(() => res.writeHeader('Content-Type', 'application/json').end('{"status":"ok"}'));
  });
  const port = await server.listen(deps.config.FAROL_HOST, deps.config.FAROL_PORT);
  deps.log.info({ host: deps.config.FAROL_HOST, port }, 'api listening');
  return { port, stop: () => server.close() };
}
