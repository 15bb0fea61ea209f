import type { ConsumerHandlers, HubRecord } from '../hub.ts';

/** Handlers that record what they see, checking the order of calls per partition. */
export function recorder(): ConsumerHandlers & {
  records: Map<number, HubRecord[]>;
  opened: Map<number, number[]>;
  open: Set<number>;
  closed: number[];
  errors: string[];
} {
  const records = new Map<number, HubRecord[]>();
  const opened = new Map<number, number[]>();
  const open = new Set<number>();
  const inFlight = new Set<number>();
  const closed: number[] = [];
  const errors: string[] = [];
  return {
    records,
    opened,
    open,
    closed,
    errors,
    partitionOpened: async (p, start) => {
      if (open.has(p)) errors.push(`partition ${p} opened twice`);
      open.add(p);
      opened.set(p, [...(opened.get(p) ?? []), start]);
    },
    processBatch: async (batch) => {
      const p = batch.partition;
      if (!open.has(p)) errors.push(`batch of partition ${p} before open`);
      if (inFlight.has(p)) errors.push(`concurrent batches on partition ${p}`);
      inFlight.add(p);
      await new Promise((r) => setTimeout(r, 5));
      const list = records.get(p) ?? [];
      list.push(...batch.records);
      records.set(p, list);
      inFlight.delete(p);
    },
    partitionClosed: async (p) => {
      if (inFlight.has(p)) errors.push(`partition ${p} closed during a batch`);
      open.delete(p);
      closed.push(p);
    },
  };
}

/** How many records a recorder holds, over every partition. */
export const total = (m: Map<number, HubRecord[]>): number => [...m.values()].reduce((n, l) => n + l.length, 0);
