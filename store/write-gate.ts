import type { Store } from './store.ts';

/**
 * A store whose writes (`insert`, `exec`) can be paused: while the gate is closed a write waits
 * for it to reopen; queries pass. `farol backup` closes it so that every table is copied at one
 * point: no control-plane change (a site, a member, a deletion's mutation) lands between the copy
 * of one table and the next.
 */
export interface WriteGate {
  /** The store to hand to everything that writes. */
  readonly store: Store;
  /**
   * Closes the gate and resolves once the writes already running have ended; the function it
   * resolves with reopens it. One closer at a time.
   */
  close(): Promise<() => void>;
}

/** Wraps `store` in a {@link WriteGate}, open. */
export function gatedWrites(store: Store): WriteGate {
  let closed: Promise<void> | undefined;
  const running = new Set<Promise<unknown>>();

  async function write<T>(fn: () => Promise<T>): Promise<T> {
    while (closed !== undefined) await closed;
    const call = fn();
    running.add(call);
    const forget = (): void => {
      running.delete(call);
    };
    call.then(forget, forget);
    return call;
  }

  const encoded = store.insertEncoded?.bind(store);
  return {
    store: {
      kind: store.kind,
      database: store.database,
      exec: (sql, params, opts) => write(() => store.exec(sql, params, opts)),
      query: (sql, params, opts) => store.query(sql, params, opts),
      insert: (table, rows, opts) => write(() => store.insert(table, rows, opts)),
      ...(encoded === undefined ? {} : { insertEncoded: (table, rows, opts) => write(() => encoded(table, rows, opts)) }),
      ...(store.tableVersion === undefined ? {} : { tableVersion: store.tableVersion.bind(store) }),
      ping: () => store.ping(),
      close: () => store.close(),
    },
    async close() {
      if (closed !== undefined) throw new Error('the write gate is already closed');
      let reopen!: () => void;
      closed = new Promise<void>((resolve) => {
        reopen = () => {
          closed = undefined;
          resolve();
        };
      });
      await Promise.allSettled([...running]);
      return reopen;
    },
  };
}
