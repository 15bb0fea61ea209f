import { experimentSchema, parseWith, redirectProblems, storedExperimentSchema, type Experiment, type TrackerExperiment } from '../schemas/experiment.ts';
import { formatTimestamp } from '../store/rows.ts';
import type { Store } from '../store/store.ts';

/**
 * Experiment storage on the control-plane table `experiments` (schemas/migrations/control-plane.ts,
 * a ReplacingMergeTree(updated_at, deleted)). Every write is a new row with a later `updated_at`;
 * a deletion is a row with `deleted = 1`. Reads take each (site, id)'s latest row with argMax
 * rather than FINAL, so they are exact before merges and on a Distributed table alike.
 */

/** An experiment as the admin API shows it: its definition plus when it was created and last changed. */
export interface StoredExperiment {
  experiment: Experiment;
  created_at: string;
  updated_at: string;
}

export interface ExperimentRepository {
  /** The site's experiments, by id. */
  list(site: string): Promise<StoredExperiment[]>;
  get(site: string, id: string): Promise<StoredExperiment | null>;
  /** Writes a new version (create or update); `createdAt` is kept from the first version. */
  put(experiment: Experiment, createdAt?: string): Promise<StoredExperiment>;
  /** Marks it deleted; false when there was nothing to delete. */
  remove(site: string, id: string): Promise<boolean>;
  /**
   * What the tracker needs for the site's running experiments (GET /api/config/:domain): only
   * those whose every change passes today's safety rules, redirects within the site's domain or
   * `redirectHosts` (a definition stored by an older version, or a redirect to a host an owner has
   * since removed, is left out and reported to `refused`).
   */
  trackerConfig(site: string, redirectHosts?: readonly string[], refused?: (id: string, field: string, message: string) => void): Promise<TrackerExperiment[]>;
}

interface Row {
  id: string;
  definition: string;
  created: string;
  updated: string;
}

const iso = (text: string): string => `${text.replace(' ', 'T')}Z`;

export function experimentRepository(store: Store, now: () => Date): ExperimentRepository {
  // Versions of one process are strictly ordered even within a millisecond.
  let last = 0;
  const stamp = (): number => {
    last = Math.max(now().getTime(), last + 1);
    return last;
  };

  async function read(site: string, id: string | undefined): Promise<StoredExperiment[]> {
    const rows = await store.query<Row>(
      `SELECT id,
              argMax(definition, updated_at) AS definition,
              toString(min(created_at)) AS created,
              toString(max(updated_at)) AS updated
       FROM experiments
       WHERE site = {site:String} ${id === undefined ? '' : 'AND id = {id:String}'}
       GROUP BY id
       HAVING argMax(deleted, updated_at) = 0
       ORDER BY id`,
      id === undefined ? { site } : { site, id },
    );
    return rows.map((r) => ({
      // Stored definitions were validated when written; parsing again keeps the types honest
      // should the table have been edited by hand. Not with today's safety rules: a definition an
      // older version stored stays readable (and fixable); trackerConfig never serves it.
      experiment: storedExperimentSchema.parse(JSON.parse(r.definition)),
      created_at: iso(r.created),
      updated_at: iso(r.updated),
    }));
  }

  async function write(e: Experiment, createdAt: number, updatedAt: number, deleted: 0 | 1): Promise<void> {
    await store.insert('experiments', [
      {
        id: e.id,
        site: e.site,
        name: e.name,
        status: e.status,
        definition: JSON.stringify(e),
        created_at: formatTimestamp(createdAt),
        updated_at: formatTimestamp(updatedAt),
        deleted,
      },
    ]);
  }

  return {
    list: (site) => read(site, undefined),
    async get(site, id) {
      return (await read(site, id))[0] ?? null;
    },
    async put(experiment, createdAt) {
      const updated = stamp();
      const created = createdAt === undefined ? updated : Date.parse(createdAt);
      await write(experiment, created, updated, 0);
      return { experiment, created_at: new Date(created).toISOString(), updated_at: new Date(updated).toISOString() };
    },
    async remove(site, id) {
      const current = (await read(site, id))[0];
      if (current === undefined) return false;
      await write(current.experiment, Date.parse(current.created_at), stamp(), 1);
      return true;
    },
    async trackerConfig(site, redirectHosts = [], refused = () => undefined) {
      const running = (await read(site, undefined)).filter((s) => {
        if (s.experiment.status !== 'running') return false;
        const safe = parseWith(experimentSchema, s.experiment);
        const problem = safe.ok ? redirectProblems(s.experiment, redirectHosts) : safe;
        if (problem !== undefined) refused(s.experiment.id, problem.field, problem.message);
        return problem === undefined;
      });
      return running.map(({ experiment: e }) => {
        const out: TrackerExperiment = { id: e.id, variations: e.variations.map((v) => ({ key: v.key, weight: v.weight, changes: v.changes })) };
        if (e.pages !== undefined) out.pages = e.pages;
        return out;
      });
    },
  };
}
