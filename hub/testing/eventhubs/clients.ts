import { BlobCheckpointStore } from '@azure/eventhubs-checkpointstore-blob';
import type { ContainerClient } from '@azure/storage-blob';
import { silentLogger } from '../../../lib/log.ts';
import { openEventHubsConsumer, type EventHubsConsumer } from '../../eventhubs-consumer.ts';
import type { EventHubsBroker } from './broker.ts';

/**
 * A consumer of `$Default` on the test broker's hub, checkpointing to `container`, with quick
 * greedy load balancing (500 ms updates, 3 s ownership expiry) so hand-overs take seconds.
 */
export function openTestConsumer(broker: EventHubsBroker, hubName: string, container: ContainerClient): Promise<EventHubsConsumer> {
  return openEventHubsConsumer({
    connectionString: broker.connectionString,
    eventHubName: hubName,
    consumerGroup: '$Default',
    checkpointStore: new BlobCheckpointStore(container),
    loadBalancing: { strategy: 'greedy', updateIntervalMs: 500, ownershipExpiryMs: 3_000 },
    log: silentLogger,
  });
}
