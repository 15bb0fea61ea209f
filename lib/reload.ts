/**
 * Something loaded again and again (the registered sites, their registrations): `load` runs every
 * `intervalMs` and whenever {@link Reloader.refresh} asks. `load` keeps its last result and logs
 * when it fails; it must not reject.
 */
export interface Reloader {
  /**
   * Loads now. Resolves once a load that STARTED after this call has finished: a load already
   * under way may have read its source before the change that asks for the refresh.
   */
  refresh(): Promise<void>;
  /** True while a load runs. */
  readonly loading: boolean;
  stop(): void;
}

/** Starts the timer (no load yet: call `refresh` for the first). */
export function startReloading(load: () => Promise<void>, intervalMs: number): Reloader {
  let running: Promise<void> | null = null;
  let next: Promise<void> | null = null;
  const refresh = (): Promise<void> => {
    if (running === null) {
      running = load().finally(() => {
        running = null;
      });
      return running;
    }
    next ??= running.then(() => {
      next = null;
      return refresh();
    });
    return next;
  };
  const timer = setInterval(() => void refresh(), intervalMs);
  timer.unref();
  return {
    refresh,
    get loading() {
      return running !== null;
    },
    stop: () => clearInterval(timer),
  };
}
