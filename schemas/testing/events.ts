import type { EnrichedEvent } from '../enriched-event.ts';

/** Fixtures of the events that travel the pipeline, for every part's tests. */

let eventCounter = 0;

/**
 * An enriched event (as the collector publishes it to the hub) with plausible defaults: a
 * desktop Firefox pageview of `/` on example.test from Portugal, at 2026-01-15 12:00 UTC, with a
 * fresh id unless `overrides` names one.
 */
export function makeEvent(overrides: Partial<EnrichedEvent> = {}): EnrichedEvent {
  eventCounter++;
  return {
    v: 1,
    id: `evt-${process.pid}-${eventCounter}`,
    clientId: false,
    site: 'example.test',
    ts: Date.UTC(2026, 0, 15, 12),
    name: 'pageview',
    hostname: 'example.test',
    pathname: '/',
    utmSource: '',
    utmMedium: '',
    utmCampaign: '',
    utmContent: '',
    utmTerm: '',
    clickIds: [],
    referrer: '',
    source: '',
    channel: 'Direct',
    country: 'PT',
    browser: 'Firefox',
    browserVersion: '128',
    os: 'Linux',
    osVersion: '',
    device: 'desktop',
    screen: 'desktop',
    visitorId: '1',
    interactive: true,
    props: {},
    revenue: null,
    exp: {},
    ...overrides,
  };
}

