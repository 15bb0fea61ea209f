/**
 * The hub: a partitioned, ordered, durable transport between collectors and processors.
 * Implementations: the local segment log (`local-hub.ts`) and Azure Event Hubs
 * (`eventhubs-producer.ts`, `eventhubs-consumer.ts`).
 *
 * Offsets are per-partition sequence numbers starting at 0, dense and increasing, so a processor
 * can derive a deduplication token from (partition, first offset, last offset).
 */

/** One record as read back from a partition. */
export interface HubRecord {
  partition: number;
  offset: number;
  /** Milliseconds since the epoch when the hub appended it. */
  appendedAt: number;
  payload: Buffer;
}

/** The producer side, used by collectors. */
export interface HubProducer {
  readonly partitionCount: number;
  /**
   * Appends payloads, each to the partition its key hashes to. Resolves only once every payload
   * is durable (fsynced for the local log); rejects if that cannot be guaranteed.
   */
  publish(items: ReadonlyArray<{ key: string; payload: Buffer }>): Promise<void>;
  /** True while the hub can take writes (for /readyz). */
  isReady(): boolean;
  close(): Promise<void>;
}

/** What a consumer's handler sees for each batch it is given. */
export interface PartitionBatch {
  partition: number;
  records: HubRecord[];
}

export interface ConsumerHandlers {
  /** Called with ordered records of one partition; the next batch of that partition waits for it. */
  processBatch(batch: PartitionBatch): Promise<void>;
  /** Called when this consumer starts owning a partition, before its first batch. */
  partitionOpened?(partition: number, startOffset: number): Promise<void>;
  /** Called when this consumer stops owning a partition (shutdown or takeover). */
  partitionClosed?(partition: number): Promise<void>;
}

export interface SubscribeOptions {
  maxBatchSize: number;
  /** How long to wait for more records before handing over a partial batch. */
  maxWaitMs: number;
}

export interface Subscription {
  /** Stops delivering; resolves after in-flight batches have finished. */
  close(): Promise<void>;
}

/** The consumer side, used by processors. Checkpoints are per consumer group and partition. */
export interface HubConsumer {
  readonly partitionCount: number;
  /** Starts delivering every owned partition from its checkpoint (or the beginning). */
  subscribe(handlers: ConsumerHandlers, options: SubscribeOptions): Subscription;
  /** Durably records that every record up to and including `offset` is processed. */
  checkpoint(partition: number, offset: number): Promise<void>;
  /** The last checkpointed offset, or -1 if none. */
  getCheckpoint(partition: number): Promise<number>;
  /** Offset the next appended record of the partition will get (for lag). */
  endOffset(partition: number): Promise<number>;
  close(): Promise<void>;
}

/**
 * Partition for a key: FNV-1a 32-bit over UTF-16 code units, mod the partition count.
 * Stable across processes and versions: changing it would split visitors across partitions.
 */
export function partitionForKey(key: string, partitionCount: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0) % partitionCount;
}
