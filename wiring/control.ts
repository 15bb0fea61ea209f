import type { TemplatedApp } from 'uWebSockets.js';
import { registerApi } from '../api/server.ts';
import { ControlPlane, controlPlaneOptions } from '../control/control-plane.ts';
import { watchSites } from '../ingest/site-watch.ts';
import type { Logger } from '../lib/log.ts';
import type { Registry } from '../lib/metrics.ts';
import type { Config } from '../schemas/config.ts';
import type { Store } from '../store/store.ts';

/**
 * Completes the bootstrap (account, `localhost`, owner, first owner token; FAROL_SITES registered)
 * and prints a newly issued random owner token once, as a JSON log line and a plain line. A token
 * from FAROL_BOOTSTRAP_TOKEN is not printed: the operator has it.
 */
export async function bootstrapControl(
  control: ControlPlane,
  config: Config,
  log: Logger,
  write: (text: string) => void = (t) => process.stdout.write(t),
): Promise<void> {
  const sites = (config.FAROL_SITES ?? '').split(',').map((s) => s.trim()).filter((s) => s !== '');
  const result = await control.bootstrap({
    token: config.FAROL_BOOTSTRAP_TOKEN,
    sites,
    announce: (token, prefix) => {
      if (config.FAROL_BOOTSTRAP_TOKEN !== undefined) return;
      // Written whatever the log level: it is the only way in, and it is never shown again.
      write(`${JSON.stringify({ level: 'info', time: new Date().toISOString(), msg: 'bootstrap owner token (shown once)', token, prefix })}\n`);
      write(`\nFarol owner API token (shown once, store it now): ${token}\n  use it as: Authorization: Bearer ${token}\n\n`);
    },
  });
  if (result.issued?.fromEnv) log.info({ prefix: result.issued.prefix }, 'bootstrap owner token set from FAROL_BOOTSTRAP_TOKEN');
  if (result.sitesAdded.length > 0) log.info({ sites: result.sitesAdded, account: result.accountId }, 'sites registered');
}

/**
 * The control plane of `farol start`'s collector: the registered sites it accepts (refreshed
 * every few seconds and right after a local change) and the API routes on the collector's app, so
 * collector, API and dashboard share one port; `bootstrap`: {@link bootstrapControl} first.
 */
export async function collectorControl(config: Config, store: Store, log: Logger, metrics: Registry, opts: { bootstrap: boolean }) {
  // With the local hub this process holds the only processor, told at once (onSitesChanged); on
  // Event Hubs others may run elsewhere.
  const control = new ControlPlane(store, {
    ...controlPlaneOptions(config),
    deleteGraceMs: config.FAROL_HUB === 'eventhubs' ? config.FAROL_SITE_DELETE_GRACE_MS : 0,
  });
  if (opts.bootstrap) await bootstrapControl(control, config, log);
  const sites = await watchSites({ load: () => control.registeredSites(), intervalMs: config.FAROL_SITES_REFRESH_MS, log });
  control.onSitesChanged(() => sites.refresh());
  const deps = { store, control, config, log, metrics, now: () => new Date() };
  return {
    control,
    stop: () => sites.stop(),
    collector: {
      knownSite: sites.has,
      siteEpoch: sites.epoch,
      routes: (app: TemplatedApp) => registerApi(app, deps),
    },
  };
}
