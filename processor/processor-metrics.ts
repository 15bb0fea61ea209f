import type { Counter, Gauge, Histogram, Registry } from '../lib/metrics.ts';

/** The processor's Prometheus metrics, registered once per registry. */
export interface ProcessorMetrics {
  lagEvents: Gauge;
  lagSeconds: Gauge;
  rows: Counter;
  flushes: Counter;
  storeRetries: Counter;
  duplicates: Counter;
  dropped: Counter;
  deadLetters: Counter;
  flushSeconds: Histogram;
  /** Refreshers of the lag gauges, one per running processor, called right before rendering. */
  lagSources: Set<() => void>;
}

const registered = new WeakMap<Registry, ProcessorMetrics>();

/**
 * The processor metrics of `registry`, registering them on first use: a registry renders each
 * name once even when a processor is restarted in the same process.
 */
export function processorMetrics(registry: Registry): ProcessorMetrics {
  const known = registered.get(registry);
  if (known !== undefined) return known;
  const lagSources = new Set<() => void>();
  const lagEvents = registry.gauge('farol_processor_lag_events', 'Hub records of a partition not yet written to ClickHouse');
  const lagSeconds = registry.gauge(
    'farol_processor_lag_seconds',
    'Age of the oldest record of a partition the processor holds but has not yet written',
  );
  // One refresh serves both gauges; the events gauge renders first.
  lagEvents.onCollect(() => {
    for (const refresh of lagSources) refresh();
  });
  const metrics: ProcessorMetrics = {
    lagEvents,
    lagSeconds,
    rows: registry.counter('farol_processor_rows_total', 'Rows written to ClickHouse, by table'),
    flushes: registry.counter('farol_processor_flushes_total', 'Micro-batches written to ClickHouse'),
    storeRetries: registry.counter('farol_processor_store_retries_total', 'Failed ClickHouse inserts, each retried'),
    duplicates: registry.counter(
      'farol_processor_duplicates_total',
      'Events dropped because their client id was already counted within the dedup window',
    ),
    dropped: registry.counter('farol_processor_dropped_total', 'Hub records not stored on purpose (unreadable, of a deleted site), by reason'),
    deadLetters: registry.counter(
      'farol_processor_dead_letters_total',
      'Records and rows ClickHouse cannot store, written to the dead_letters table instead, by table and reason',
    ),
    flushSeconds: registry.histogram(
      'farol_processor_flush_seconds',
      'Time to write one micro-batch, retries included',
      [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    ),
    lagSources,
  };
  registered.set(registry, metrics);
  return metrics;
}
