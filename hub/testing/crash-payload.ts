/** The payload the crash writer publishes for record `id`: its content is checkable from the id alone. */
export function crashPayload(id: number): Buffer {
  return Buffer.from(JSON.stringify({ id, pad: 'x'.repeat(id % 300) }));
}

/** The key the crash writer publishes record `id` under (spreads over partitions). */
export function crashKey(id: number): string {
  return `site-${id % 5}|visitor-${id % 101}`;
}
