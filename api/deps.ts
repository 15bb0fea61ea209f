import type { Config } from '../schemas/config.ts';
import type { Store } from '../store/store.ts';
import type { Logger } from '../lib/log.ts';
import type { Registry } from '../lib/metrics.ts';
import type { ControlPlane } from '../control/control-plane.ts';
import type { ApiRouter } from './http.ts';
import type { Reports } from './query-limits.ts';

/**
 * What the API's route modules are given. Apart from server.ts, which lists the modules, so that
 * a route importing its dependencies' types does not import the module that imports it.
 */

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
