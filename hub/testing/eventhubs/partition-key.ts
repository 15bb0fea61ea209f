/**
 * The broker hashes partition keys as the service does. It shares the product's implementation
 * (hub/eventhubs-producer.ts); partition-key.test.ts checks it against the SDK's own mapper and
 * published lookup3 reference values, so neither side only confirms itself.
 */
export { eventHubsPartitionForKey as partitionForKey, hashLittle2 } from '../../eventhubs-producer.ts';
