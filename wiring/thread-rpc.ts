import { z } from 'zod';
import { encodedFormats, encodeRows, StoreError, type EncodedRows, type Store } from '../store/store.ts';

/**
 * Calls between the threads of one process (`farol start`: the ingest thread and the main thread,
 * see cli/ingest-thread.ts), over a worker's message port. Each side answers the methods it was
 * given and calls the other's; arguments and answers travel by structured clone (no JSON). A
 * failure travels as its name, message and the fields callers branch on (a {@link StoreError}
 * arrives as one, retryable or not as it was thrown).
 */

/** What a worker and its `parentPort` share. */
export interface RpcPort {
  postMessage(value: unknown, transfer?: readonly ArrayBuffer[]): void;
  on(event: 'message', listener: (value: unknown) => void): unknown;
  off(event: 'message', listener: (value: unknown) => void): unknown;
}

export type RpcHandlers = Readonly<Record<string, (...args: never[]) => unknown>>;

export interface RpcEndpoint {
  /** Calls `method` on the other side; rejects with its error, or when the endpoint is closed. */
  call<T = unknown>(method: string, ...args: unknown[]): Promise<T>;
  /** {@link call} with `transfer` moved to the other side, not copied (unusable here afterwards). */
  callTransferring<T = unknown>(method: string, args: unknown[], transfer: readonly ArrayBuffer[]): Promise<T>;
  /** Rejects every call not answered yet and every later one (the other side is gone). */
  close(reason: string): void;
}

const errorSchema = z.object({
  name: z.string(),
  message: z.string(),
  code: z.union([z.string(), z.number()]).optional(),
  type: z.string().optional(),
  retryable: z.boolean().optional(),
  refusedData: z.boolean().optional(),
});
type WireError = z.infer<typeof errorSchema>;

const messageSchema = z.discriminatedUnion('rpc', [
  z.object({ rpc: z.literal('call'), id: z.number().int(), method: z.string(), args: z.array(z.unknown()) }),
  z.object({ rpc: z.literal('ok'), id: z.number().int(), value: z.unknown() }),
  z.object({ rpc: z.literal('fail'), id: z.number().int(), error: errorSchema }),
]);

function toWire(err: unknown): WireError {
  if (!(err instanceof Error)) return { name: 'Error', message: String(err) };
  const e = err as Error & { code?: unknown };
  const out: WireError = { name: err.name, message: err.message };
  if (typeof e.code === 'string' || typeof e.code === 'number') out.code = e.code;
  if (err instanceof StoreError) {
    if (err.type !== undefined) out.type = err.type;
    out.retryable = err.retryable;
    out.refusedData = err.refusedData;
  }
  return out;
}

function fromWire(w: WireError): Error {
  if (w.name === 'StoreError') {
    return new StoreError(w.message, {
      code: typeof w.code === 'number' ? w.code : undefined,
      type: w.type,
      retryable: w.retryable ?? false,
      refusedData: w.refusedData ?? false,
    });
  }
  const err = new Error(w.message) as Error & { code?: string | number };
  err.name = w.name;
  if (w.code !== undefined) err.code = w.code;
  return err;
}

/** Answers `handlers` on `port` and calls the other side's. Messages that are not calls or answers are left to other listeners. */
export function rpcEndpoint(port: RpcPort, handlers: RpcHandlers): RpcEndpoint {
  let nextId = 1;
  let closed: string | undefined;
  const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();

  const answer = (id: number, run: () => unknown): void => {
    Promise.resolve()
      .then(run)
      .then(
        (value) => {
          try {
            port.postMessage({ rpc: 'ok', id, value });
          } catch (err) {
            port.postMessage({ rpc: 'fail', id, error: toWire(err) });
          }
        },
        (err: unknown) => port.postMessage({ rpc: 'fail', id, error: toWire(err) }),
      )
      .catch(() => undefined); // the port closed meanwhile: nobody waits for the answer
  };

  const listener = (raw: unknown): void => {
    if (typeof raw !== 'object' || raw === null || !('rpc' in raw)) return;
    const parsed = messageSchema.safeParse(raw);
    if (!parsed.success) return;
    const m = parsed.data;
    if (m.rpc === 'call') {
      const handler = Object.hasOwn(handlers, m.method) ? handlers[m.method] : undefined;
      answer(m.id, () => {
        if (handler === undefined) throw new Error(`no method ${m.method} on this thread`);
        return (handler as (...args: unknown[]) => unknown)(...m.args);
      });
      return;
    }
    const waiter = pending.get(m.id);
    if (waiter === undefined) return;
    pending.delete(m.id);
    if (m.rpc === 'ok') waiter.resolve(m.value);
    else waiter.reject(fromWire(m.error));
  };
  port.on('message', listener);

  const send = <T>(method: string, args: unknown[], transfer: readonly ArrayBuffer[]): Promise<T> => {
    if (closed !== undefined) return Promise.reject(new Error(closed));
    const id = nextId++;
    return new Promise<T>((resolve, reject) => {
      pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      try {
        port.postMessage({ rpc: 'call', id, method, args }, transfer);
      } catch (err) {
        pending.delete(id);
        reject(err instanceof Error ? err : new Error(String(err)));
      }
    });
  };

  return {
    call: <T>(method: string, ...args: unknown[]) => send<T>(method, args, []),
    callTransferring: send,
    close(reason) {
      if (closed !== undefined) return;
      closed = reason;
      port.off('message', listener);
      for (const w of pending.values()) w.reject(new Error(reason));
      pending.clear();
    },
  };
}

const identifier = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** What `store.insertEncoded` takes from the other thread (checked: its format and columns reach SQL). */
const encodedSchema = z.object({
  format: z.enum(encodedFormats),
  columns: z.tuple([z.string().regex(identifier)], z.string().regex(identifier)),
  data: z.instanceof(Uint8Array),
});

/** The methods that serve `store` to another thread (see {@link storeOverRpc}). */
export function storeHandlers(store: Store): RpcHandlers {
  const encoded = store.insertEncoded?.bind(store);
  return {
    ...(encoded === undefined
      ? {}
      : {
          'store.insertEncoded': (table: string, rows: unknown, opts?: Parameters<Store['insert']>[2]) => encoded(table, encodedSchema.parse(rows), opts),
        }),
    'store.exec': (sql: string, params?: Parameters<Store['exec']>[1], opts?: Parameters<Store['exec']>[2]) => store.exec(sql, params, opts),
    'store.query': (sql: string, params?: Parameters<Store['query']>[1], opts?: Parameters<Store['query']>[2]) => store.query(sql, params, opts),
    'store.insert': (table: string, rows: Parameters<Store['insert']>[1], opts?: Parameters<Store['insert']>[2]) => store.insert(table, rows, opts),
    'store.ping': () => store.ping(),
  };
}

/**
 * `data` in an ArrayBuffer of its own, which can be transferred: a small Buffer is a view into
 * Node's shared pool, and transferring that would take the pool from every other Buffer.
 */
function ownBuffer(data: Uint8Array): Uint8Array & { buffer: ArrayBuffer } {
  const { buffer } = data;
  if (buffer instanceof ArrayBuffer && data.byteOffset === 0 && data.byteLength === buffer.byteLength) {
    return data as Uint8Array & { buffer: ArrayBuffer };
  }
  const own = new Uint8Array(new ArrayBuffer(data.byteLength));
  own.set(data);
  return own as Uint8Array & { buffer: ArrayBuffer };
}

/**
 * A {@link Store} whose calls run on the thread that owns the engine (its {@link storeHandlers}).
 * `close` closes nothing there: the owner closes the engine. With `encoded` (the owner's store
 * has `insertEncoded`), inserts are encoded here ({@link encodeRows}) and their bytes are
 * transferred, not copied: the owner's thread neither copies row objects nor builds the text,
 * and no string is cloned between the threads.
 */
export function storeOverRpc(rpc: RpcEndpoint, kind: Store['kind'], database: string, encoded: boolean): Store {
  const insert = async (table: string, rows: Parameters<Store['insert']>[1], opts?: Parameters<Store['insert']>[2]): Promise<void> => {
    if (rows.length === 0) return;
    const rowsEncoded = encoded ? encodeRows(table, rows) : undefined;
    if (rowsEncoded === undefined) {
      await rpc.call('store.insert', table, rows, opts);
      return;
    }
    const data = ownBuffer(rowsEncoded.data);
    const sent: EncodedRows = { format: rowsEncoded.format, columns: rowsEncoded.columns, data };
    await rpc.callTransferring('store.insertEncoded', [table, sent, opts], [data.buffer]);
  };
  return {
    kind,
    database,
    exec: (sql, params, opts) => rpc.call<undefined>('store.exec', sql, params, opts).then(() => undefined),
    query: <T>(sql: string, params?: Parameters<Store['query']>[1], opts?: Parameters<Store['query']>[2]) => rpc.call<T[]>('store.query', sql, params, opts),
    insert,
    ping: () => rpc.call<boolean>('store.ping').catch(() => false),
    close: async () => undefined,
  };
}
