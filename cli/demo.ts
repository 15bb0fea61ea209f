import type { Config } from '../schemas/config.ts';
import { experimentSchema } from '../schemas/experiment.ts';
import { createLogger, type Logger } from '../lib/log.ts';
import { Registry } from '../lib/metrics.ts';
import { ApiError } from '../schemas/errors.ts';
import type { Store } from '../store/store.ts';
import { migrate } from '../store/migrate.ts';
import { ControlPlane, controlPlaneOptions } from '../control/control-plane.ts';
import { experimentRepository } from '../control/experiments.ts';
import { startLocalProcessor, type ProcessorRuntime } from '../processor/main.ts';
import { drainedFully } from '../wiring/drain.ts';
import { openConfiguredLocalHub } from '../wiring/hub.ts';
import { DataDirLockedError, migrationTarget, openStoreForAdmin } from '../wiring/store.ts';
import { demoEvents, GOALS, type DemoPlan } from './demo-traffic.ts';

/**
 * `farol demo`: 30 days of realistic traffic for the site `demo.example.com` (sources, campaigns,
 * countries, devices, goals with revenue, a running experiment whose variant converts better),
 * written the way real traffic is: enriched events published to the hub, and the processor —
 * this process's own, on the configured store — sessionizing them and writing every table it
 * writes. Nothing here knows a table but `events`, read to leave out what is stored already, so a
 * second run adds nothing (and a run cut short is completed by the next). Then it prints the
 * dashboard's URL and a viewer token for the site. Like the admin commands it needs the data dir
 * to itself on the embedded engine: run it while `farol start` is stopped.
 */

export const DEMO_SITE = 'demo.example.com';
const EXPERIMENT_ID = 'pricing-annual-first';
const DAYS = 30;
const SESSIONS_PER_DAY = 650;
const SEED = 20_261_206;
const DAY_MS = 86_400_000;
/** Events per hub publish (one durable write per partition each). */
const PUBLISH_BATCH = 2000;

interface Io {
  out: (s: string) => void;
  err: (s: string) => void;
  /** Whether `err` is a terminal (the progress bar redraws one line). */
  tty: boolean;
}

const defaultIo: Io = { out: (s) => process.stdout.write(s), err: (s) => process.stderr.write(s), tty: process.stderr.isTTY === true };

export async function runDemo(config: Config, io: Io = defaultIo): Promise<number> {
  if (config.FAROL_HUB !== 'local') {
    io.err('farol demo: loads through the local hub (FAROL_HUB=local); with Event Hubs, run it on a machine with the local hub and a ClickHouse server (FAROL_CLICKHOUSE_URL)\n');
    return 2;
  }
  const started = Date.now();
  // The processor's routine lines would bury the progress bar; warnings and errors still show.
  const log = createLogger(config.FAROL_LOG_LEVEL === 'debug' ? 'debug' : 'warn', { service: 'demo' });
  let store: Store;
  try {
    store = await openStoreForAdmin(config);
  } catch (err) {
    if (!(err instanceof DataDirLockedError)) throw err;
    io.err(`farol demo: ${err.message}\n`);
    return 1;
  }
  try {
    await migrate(store, migrationTarget(config));
    const control = new ControlPlane(store, { ...controlPlaneOptions(config), cacheTtlMs: 0, deleteGraceMs: 0 });
    // Before the first `farol start`: account and owner exist after this; start prints the owner's token.
    const boot = await control.bootstrap({ issueToken: false });
    const existing = await control.site(DEMO_SITE);
    // An operator's command, yet never one to mix invented traffic into a site that has real events.
    if (existing !== null && (await foreignEvents(store)) > 0) {
      io.err(`farol demo: ${DEMO_SITE} is registered and holds events the demo did not write; it is left alone\n`);
      return 1;
    }
    const site = existing ?? (await control.addSite(boot.accountId, { domain: DEMO_SITE, timezone: 'UTC' }));
    const goals = new Set((await control.listGoals(DEMO_SITE)).map((g) => g.name));
    for (const name of GOALS) if (!goals.has(name)) await control.addGoal(DEMO_SITE, { name });
    const firstDayMs = await ensureExperiment(store, started);
    const plan: DemoPlan = {
      site: DEMO_SITE,
      epoch: (await control.registeredSites()).find((r) => r.domain === DEMO_SITE)?.epoch ?? 0,
      firstDayMs,
      days: DAYS,
      sessionsPerDay: SESSIONS_PER_DAY,
      untilMs: started,
      seed: SEED,
      experiment: { id: EXPERIMENT_ID, control: 'control', variant: 'annual-first', goal: 'Signup', controlRate: 0.05, variantRate: 0.08 },
    };
    const loaded = await load(config, store, plan, log, io);
    if (loaded === undefined) return 1;
    const token = await viewerToken(control, site.accountId);
    const host = config.FAROL_HOST === '0.0.0.0' || config.FAROL_HOST === '::' ? '127.0.0.1' : config.FAROL_HOST;
    const url = `http://${host.includes(':') ? `[${host}]` : host}:${config.FAROL_PORT}/?site=${DEMO_SITE}`;
    io.out(
      `demo site ${DEMO_SITE}: ${loaded.added === 0 ? 'already loaded, nothing added' : `${loaded.added.toLocaleString('en-US')} events added`} ` +
        `(${loaded.stored.toLocaleString('en-US')} stored, 30 days) in ${((Date.now() - started) / 1000).toFixed(1)} s\n\n` +
        `start Farol (npm start, or farol start) and open the dashboard:\n  ${url}\n` +
        `sign in with this viewer token for ${DEMO_SITE} (shown once; the sign-in page's "Developer option"):\n  ${token}\n`,
    );
    return 0;
  } catch (err) {
    if (err instanceof ApiError) {
      io.err(`farol demo: ${err.message}\n`);
      return 1;
    }
    throw err;
  } finally {
    await store.close();
  }
}

/** Events of the demo site that are not the demo's (ids it never writes). */
async function foreignEvents(store: Store): Promise<number> {
  const rows = await store.query<{ n: string }>("SELECT count() AS n FROM events WHERE site = {site:String} AND NOT startsWith(event_id, 'demo-')", { site: DEMO_SITE });
  return Number(rows[0]?.n ?? 0);
}

/**
 * The running experiment (created once); its `started_at` is the demo's first day, so a later
 * run regenerates the very same events (and ids) and adds only the missing ones.
 */
async function ensureExperiment(store: Store, now: number): Promise<number> {
  const repo = experimentRepository(store, () => new Date());
  const existing = await repo.get(DEMO_SITE, EXPERIMENT_ID);
  const startedAt = existing?.experiment.started_at;
  if (startedAt !== undefined) return Date.parse(startedAt);
  const firstDayMs = Math.floor(now / DAY_MS) * DAY_MS - (DAYS - 1) * DAY_MS;
  await repo.put(
    experimentSchema.parse({
      id: EXPERIMENT_ID,
      site: DEMO_SITE,
      status: 'running',
      name: 'Pricing: annual plans first',
      goal: { type: 'event', name: 'Signup' },
      control: 'control',
      variations: [
        { key: 'control', weight: 50, changes: [] },
        { key: 'annual-first', weight: 50, changes: [{ type: 'text', selector: '#plans h2', value: 'Annual plans: two months free' }] },
      ],
      started_at: new Date(firstDayMs).toISOString(),
    }),
  );
  return firstDayMs;
}

/**
 * Publishes the plan's events that are not stored yet to the local hub and runs the processor
 * until it wrote everything (then drains it: flush, snapshot, checkpoint). Undefined when the
 * processor could not write everything (logged; the hub keeps the rest for the next run).
 */
async function load(config: Config, store: Store, plan: DemoPlan, log: Logger, io: Io): Promise<{ added: number; stored: number } | undefined> {
  const hub = await openConfiguredLocalHub(config, log);
  try {
    const processor = await startLocalProcessor(config, { hub, store, log, metrics: new Registry() });
    let drained = false;
    try {
      // Whatever an earlier run left in the hub is written first, so the ids read next are complete.
      await caughtUp(processor);
      const stored = new Set(
        (await store.query<{ id: string }>("SELECT event_id AS id FROM events WHERE site = {site:String} AND startsWith(event_id, 'demo-')", { site: plan.site })).map((r) => r.id),
      );
      const days = [...demoEvents(plan)].map((events) => events.filter((e) => !stored.has(e.id)));
      const total = days.reduce((a, d) => a + d.length, 0);
      const bar = progress(io, total);
      let added = 0;
      for (const events of days) {
        for (let i = 0; i < events.length; i += PUBLISH_BATCH) {
          const chunk = events.slice(i, i + PUBLISH_BATCH);
          // The collector's hub key: one visitor's events on one partition, in order.
          await hub.publish(chunk.map((e) => ({ key: `${e.site}:${e.visitorId}`, payload: Buffer.from(JSON.stringify(e)) })));
          added += chunk.length;
          bar(added);
        }
      }
      await caughtUp(processor, (left) => bar(total - left, 'writing'));
      drained = true;
      if (!(await drainedFully(processor, log))) return undefined;
      const rows = await store.query<{ n: string }>("SELECT count() AS n FROM events WHERE site = {site:String} AND startsWith(event_id, 'demo-')", { site: plan.site });
      bar.done();
      return { added, stored: Number(rows[0]?.n ?? 0) };
    } finally {
      if (!drained) await drainedFully(processor, log);
    }
  } finally {
    await hub.close();
  }
}

/** Resolves once the processor wrote every record in the hub (polled). */
async function caughtUp(processor: ProcessorRuntime, onLeft?: (left: number) => void): Promise<void> {
  for (;;) {
    const lag = await processor.lag();
    const left = lag.reduce((a, p) => a + Math.max(0, p.endOffset - 1 - p.flushedOffset), 0);
    onLeft?.(left);
    if (lag.length > 0 && left === 0) return;
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A progress bar on a terminal, else a line per quarter of each phase. */
function progress(io: Io, total: number): ((done: number, what?: string) => void) & { done(): void } {
  let last = '';
  const draw = (done: number, what = 'publishing'): void => {
    if (total === 0) return;
    const share = Math.min(1, done / total);
    const count = `${done.toLocaleString('en-US')} / ${total.toLocaleString('en-US')} events`;
    if (io.tty) {
      const filled = Math.round(share * 30);
      io.err(`\r${what.padEnd(10)} [${'#'.repeat(filled)}${'.'.repeat(30 - filled)}] ${count}`);
      return;
    }
    const key = `${what} ${Math.floor(share * 4)}`;
    if (key === last) return;
    last = key;
    io.err(`${what}: ${count}\n`);
  };
  return Object.assign(draw, { done: () => (io.tty && total > 0 ? io.err('\n') : undefined) });
}

/** The demo's viewer (created once, limited to the demo site) and a new token for it. */
async function viewerToken(control: ControlPlane, accountId: string): Promise<string> {
  const members = await control.members(accountId);
  const viewer =
    members.find((m) => m.name === 'demo viewer' && m.role === 'viewer' && m.sites.length === 1 && m.sites[0] === DEMO_SITE) ??
    (await control.addMember(accountId, { name: 'demo viewer', role: 'viewer', sites: [DEMO_SITE] }));
  return (await control.issueToken(viewer.id, { name: 'demo' })).token;
}
