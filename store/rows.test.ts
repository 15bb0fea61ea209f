import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { EnrichedEvent } from '../schemas/enriched-event.ts';
import { eventRow, formatTimestamp } from './rows.ts';

const base: EnrichedEvent = {
  v: 1,
  id: 'client-7',
  clientId: true,
  site: 'example.com',
  ts: Date.UTC(2026, 1, 3, 4, 5, 6, 7),
  name: 'Signup',
  hostname: 'www.example.com',
  pathname: '/pricing',
  utmSource: 'newsletter',
  utmMedium: 'email',
  utmCampaign: 'spring',
  utmContent: 'hero',
  utmTerm: 'analytics',
  clickIds: ['gclid'],
  referrer: 'https://news.example.org/post',
  source: 'news.example.org',
  channel: 'Referral',
  country: 'PT',
  browser: 'Chrome',
  browserVersion: '126',
  os: 'macOS',
  osVersion: '14',
  device: 'desktop',
  screen: 'desktop',
  visitorId: '18446744073709551615',
  interactive: false,
  props: { plan: 'pro' },
  revenue: { currency: 'EUR', amount: 0.1 + 0.2 },
  exp: { hero: 'b', pricing: 'control' },
};

describe('eventRow', () => {
  it('stores the salt day given, else the event\'s, else its own UTC day', () => {
    const day = Math.floor(base.ts / 86_400_000);
    expect(eventRow(base, '1', day - 1).salt_day).toBe('2026-02-02');
    expect(eventRow({ ...base, saltDay: day - 1 }, '1').salt_day).toBe('2026-02-02');
    expect(eventRow(base, '1').salt_day).toBe('2026-02-03');
  });

  it('maps every field to its events column', () => {
    expect(eventRow(base, '99')).toEqual({
      site: 'example.com',
      timestamp: '2026-02-03 04:05:06.007',
      event_id: 'client-7',
      event_id_from_client: 1,
      name: 'Signup',
      session_id: '99',
      visitor_id: '18446744073709551615',
      salt_day: '2026-02-03',
      hostname: 'www.example.com',
      pathname: '/pricing',
      referrer: 'https://news.example.org/post',
      source: 'news.example.org',
      channel: 'Referral',
      utm_source: 'newsletter',
      utm_medium: 'email',
      utm_campaign: 'spring',
      utm_content: 'hero',
      utm_term: 'analytics',
      click_ids: ['gclid'],
      country: 'PT',
      browser: 'Chrome',
      browser_version: '126',
      os: 'macOS',
      os_version: '14',
      device: 'desktop',
      screen: 'desktop',
      interactive: 0,
      props: { plan: 'pro' },
      revenue_amount: '0.300000',
      revenue_currency: 'EUR',
      exp_ids: ['hero', 'pricing'],
      exp_variants: ['b', 'control'],
      // Without a session given, the event is its session's first: its own visit attributes.
      session_referrer: 'https://news.example.org/post',
      session_source: 'news.example.org',
      session_channel: 'Referral',
      session_utm_source: 'newsletter',
      session_utm_medium: 'email',
      session_utm_campaign: 'spring',
      session_utm_content: 'hero',
      session_utm_term: 'analytics',
    });
  });

  it("writes its session's visit attributes, not its own, when given", () => {
    const session = { referrer: 'https://a.example/', source: 'a.example', channel: 'Referral', utmSource: 's', utmMedium: 'm', utmCampaign: 'c', utmContent: 'x', utmTerm: 't' };
    const row = eventRow(base, '99', undefined, session);
    expect([row.referrer, row.source, row.utm_term]).toEqual(['https://news.example.org/post', 'news.example.org', 'analytics']);
    expect([
      row.session_referrer,
      row.session_source,
      row.session_channel,
      row.session_utm_source,
      row.session_utm_medium,
      row.session_utm_campaign,
      row.session_utm_content,
      row.session_utm_term,
    ]).toEqual(['https://a.example/', 'a.example', 'Referral', 's', 'm', 'c', 'x', 't']);
  });

  it.each([
    ['no revenue', null],
    ['an amount Decimal64(6) cannot hold', { currency: 'USD', amount: 1e13 }],
    // 13 digits before the point, under the old 9e12 bound (found by the fuzz suite: its insert failed)
    ['an amount of 13 integer digits', { currency: 'USD', amount: -3_742_804_198_504.25 }],
    ['an amount toFixed writes with an exponent', { currency: 'USD', amount: 1e300 }],
    ['a non-finite amount', { currency: 'USD', amount: Number.POSITIVE_INFINITY }],
  ])('stores %s as a null amount without currency', (_label, revenue) => {
    const row = eventRow({ ...base, revenue }, '1');
    expect(row.revenue_amount).toBeNull();
    expect(row.revenue_currency).toBe('');
  });

  it('keeps amounts of up to 12 integer digits', () => {
    expect(eventRow({ ...base, revenue: { currency: 'USD', amount: -999_999_999_999.5 } }, '1').revenue_amount).toBe('-999999999999.500000');
    expect(eventRow({ ...base, revenue: { currency: 'USD', amount: 6e-7 } }, '1').revenue_amount).toBe('0.000001');
  });
});

describe('formatTimestamp', () => {
  it('renders epoch milliseconds as UTC DateTime64(3) text', () => {
    expect(formatTimestamp(0)).toBe('1970-01-01 00:00:00.000');
    expect(formatTimestamp(Date.UTC(2030, 11, 31, 23, 59, 59, 999))).toBe('2030-12-31 23:59:59.999');
  });

  it('matches Date.toISOString for any time, across day boundaries and out of the fast range', () => {
    const iso = (ms: number): string => new Date(ms).toISOString().slice(0, 23).replace('T', ' ');
    const times = fc.oneof(
      fc.integer({ min: 0, max: 253_402_300_799_999 }),
      fc.integer({ min: 0, max: 3_000_000 }).map((d) => Date.UTC(2026, 0, 1) + (d - 1_500_000)),
      fc.integer({ min: -8_640_000_000_000_000, max: 8_640_000_000_000_000 }),
      fc.double({ min: 0, max: 4e12, noNaN: true }),
    );
    fc.assert(fc.property(fc.array(times, { maxLength: 20 }), (list) => list.every((ms) => formatTimestamp(ms) === iso(ms))));
  });
});
