import type { TemplatedApp } from 'uWebSockets.js';
import type { ApiDeps, RouteDeps, RouteModule } from './deps.ts';
import { httpServerOf, type TlsFiles } from '../lib/http/server.ts';
import { reloadTlsOnSighup } from '../lib/http/tls.ts';
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
import { signinRoutes } from './routes/signin.ts';
import { teamRoutes } from './routes/team.ts';

/**
 * The reporting API, admin endpoints, tracker and dashboard as route modules
 * on one uWebSockets.js app: `farol start` adds them to the collector's app (one port), `farol api`
 * serves them alone. Each module registers its routes; this file only lists them.
 */

const modules: readonly RouteModule[] = [queryRoutes, adminRoutes, dashboardRoutes, trackerRoutes, experimentRoutes, exportRoutes, reservationRoutes, signinRoutes, teamRoutes];

/** Registers every API route on `app`'s HTTP layer; returns the router. */
export function registerApi(app: TemplatedApp, deps: ApiDeps): Router {
  const rate = deps.config.FAROL_RATE_AUTH;
  const authGuard = rate === null ? undefined : createAuthGuard({ rate, trust: deps.config.FAROL_TRUST_PROXY, metrics: deps.metrics });
  const router = createRouter(app, { log: deps.log, metrics: deps.metrics, maxBodyMemory: deps.config.FAROL_MAX_BODY_MEMORY, ...(authGuard ? { authGuard } : {}) });
  const routeDeps: RouteDeps = { ...deps, reports: reportsOf(deps.store, queryLimitsOf(deps.config)) };
  for (const m of modules) m(router, routeDeps);
  // The audit trail keeps FAROL_AUDIT_RETENTION_DAYS: pruned a minute after start, then daily.
  const prune = (): void => {
    deps.control.people.pruneAudit(deps.config.FAROL_AUDIT_RETENTION_DAYS).catch((err: unknown) => deps.log.warn({ err }, 'audit trail prune failed'));
    setTimeout(prune, 86_400_000).unref();
  };
  setTimeout(prune, 60_000).unref();
  return router;
}

export interface ApiServer {
  port: number;
  /** Stops listening and waits for requests in flight. */
  stop(): Promise<void>;
}

/** `farol api` without a collector: the API routes and health on one app; 404/405 from the HTTP layer (metrics: lib/metrics-server.ts). */
export async function listenApi(deps: ApiDeps, tls?: TlsFiles): Promise<ApiServer> {
  const server = httpServerOf(undefined, { dialect: 'api', ...(tls === undefined ? {} : { tls }) });
  registerApi(server.app, deps);
  server.route('get', '/healthz', 'api', (res) => {
    res.cork(() => res.writeHeader('Content-Type', 'application/json').end('{"status":"ok"}'));
  });
  const port = await server.listen(deps.config.FAROL_HOST, deps.config.FAROL_PORT);
  deps.log.info({ host: deps.config.FAROL_HOST, port, tls: tls !== undefined }, 'api listening');
  const unhook = tls === undefined ? () => undefined : reloadTlsOnSighup(tls, [() => server.reloadTls()], deps.log);
  return {
    port,
    stop: () => {
      unhook();
      return server.close();
    },
  };
}
