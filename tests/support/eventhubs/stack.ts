import { startClickHouseHttp, type ClickHouseHttp } from '../../../store/testing/clickhouse-http.ts';
import { startAzurite, type Azurite } from '../../../hub/testing/eventhubs/azurite.ts';
import { startEventHubsBroker, type EventHubsBroker } from '../../../hub/testing/eventhubs/broker.ts';

/** What a Farol deployment on Event Hubs needs besides Farol: the hub, blob storage, ClickHouse. */
export interface EventHubsStack {
  broker: EventHubsBroker;
  azurite: Azurite;
  clickhouse: ClickHouseHttp;
}

/**
 * Starts the Event Hubs test broker (one hub of `partitions`), Azurite and a ClickHouse endpoint,
 * each on a directory from `tempDir` (named after `name`), in parallel.
 */
export async function startEventHubsStack(opts: {
  name: string;
  hubName: string;
  partitions: number;
  tempDir: (prefix: string) => Promise<string>;
}): Promise<EventHubsStack> {
  const [broker, azurite, clickhouse] = await Promise.all([
    opts.tempDir(`${opts.name}-broker-`).then((dataDir) => startEventHubsBroker({ dataDir, hubName: opts.hubName, partitions: opts.partitions })),
    opts.tempDir(`${opts.name}-azurite-`).then((dataDir) => startAzurite({ dataDir })),
    opts.tempDir(`${opts.name}-ch-`).then((dataDir) => startClickHouseHttp({ dataDir })),
  ]);
  return { broker, azurite, clickhouse };
}
