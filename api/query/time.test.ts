import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { rollupGrain } from './planner.ts';
import {
  addMonths,
  autoGrain,
  comparisonRange,
  dateRange,
  instantRange,
  isoInZone,
  localDate,
  offsetAt,
  parseDateTime,
  resolveShortcut,
  startOfWeek,
  timeLabels,
  zonedToUtc,
} from './time.ts';

const HOUR = 3_600_000;
const at = (iso: string): number => Date.parse(iso);

describe('time zones', () => {
  it.each([
    ['America/New_York', '2026-03-08', '2026-03-08T05:00:00Z', '2026-03-09T04:00:00Z'],
    ['America/New_York', '2026-11-01', '2026-11-01T04:00:00Z', '2026-11-02T05:00:00Z'],
    ['Asia/Kolkata', '2026-01-15', '2026-01-14T18:30:00Z', '2026-01-15T18:30:00Z'],
    ['Australia/Lord_Howe', '2026-01-15', '2026-01-14T13:00:00Z', '2026-01-15T13:00:00Z'],
  ])('a local day in %s: %s runs from %s to %s', (tz, day, from, to) => {
    const r = dateRange(tz, day, day);
    expect([r.start, r.end]).toEqual([at(from), at(to)]);
  });

  it('reads wall-clock times in gaps with the offset before, in overlaps as the earlier instant', () => {
    expect(zonedToUtc('America/New_York', 2026, 3, 8, 2, 30)).toBe(at('2026-03-08T07:30:00Z'));
    expect(zonedToUtc('America/New_York', 2026, 11, 1, 1, 30)).toBe(at('2026-11-01T05:30:00Z'));
  });

  it('round-trips instants through local dates (property)', () => {
    const zones = ['UTC', 'America/New_York', 'Asia/Kolkata', 'Europe/Berlin', 'Pacific/Chatham'];
    fc.assert(
      fc.property(fc.integer({ min: at('2000-01-01T00:00:00Z'), max: at('2040-01-01T00:00:00Z') }), fc.constantFrom(...zones), (t, tz) => {
        const day = localDate(tz, t);
        const r = dateRange(tz, day, day);
        expect(r.start).toBeLessThanOrEqual(t);
        expect(r.end).toBeGreaterThan(t);
        expect(localDate(tz, r.start)).toBe(day);
      }),
    );
  });

  it('parses ISO date-times with and without offsets', () => {
    expect(parseDateTime('2026-01-15T10:00:00Z', 'Asia/Kolkata')?.instant).toBe(at('2026-01-15T10:00:00Z'));
    expect(parseDateTime('2026-01-15T10:00:00+02:00', 'UTC')?.instant).toBe(at('2026-01-15T08:00:00Z'));
    expect(parseDateTime('2026-01-15 10:00:00', 'Asia/Kolkata')?.instant).toBe(at('2026-01-15T04:30:00Z'));
    expect(parseDateTime('2026-01-15T10:00:00.250Z', 'UTC')).toEqual({ instant: at('2026-01-15T10:00:00.250Z'), fractional: true });
    for (const bad of ['2026-02-30T10:00:00Z', '2026-01-15T25:00:00Z', '2026-01-15', "2026-01-15T10:00:00Z' OR 1=1", '']) {
      expect(parseDateTime(bad, 'UTC'), bad).toBeUndefined();
    }
  });

  it('formats range ends with the site offset', () => {
    expect(isoInZone('UTC', at('2026-01-15T00:00:00Z'))).toBe('2026-01-15T00:00:00Z');
    expect(isoInZone('Asia/Kolkata', at('2026-01-14T18:30:00Z'))).toBe('2026-01-15T00:00:00+05:30');
    expect(isoInZone('America/New_York', at('2026-07-01T04:00:00Z'))).toBe('2026-07-01T00:00:00-04:00');
    expect(offsetAt('America/New_York', at('2026-07-01T04:00:00Z'))).toBe(-4 * HOUR);
  });
});

describe('date ranges', () => {
  const now = at('2026-07-10T15:00:00Z');

  it.each([
    ['day', '2026-07-10', '2026-07-10'],
    ['7d', '2026-07-04', '2026-07-10'],
    ['28d', '2026-06-13', '2026-07-10'],
    ['30d', '2026-06-11', '2026-07-10'],
    ['month', '2026-07-01', '2026-07-31'],
    ['6mo', '2026-02-01', '2026-07-31'],
    ['12mo', '2025-08-01', '2026-07-31'],
    ['year', '2026-01-01', '2026-12-31'],
  ] as const)('%s covers %s to %s', (shortcut, first, last) => {
    const r = resolveShortcut(shortcut, 'UTC', now, undefined);
    expect([r.firstDate, r.lastDate, r.dateBased]).toEqual([first, last, true]);
  });

  it('all starts at the first day with data; realtime is the last 30 minutes', () => {
    expect(resolveShortcut('all', 'UTC', now, '2026-03-02').firstDate).toBe('2026-03-02');
    expect(resolveShortcut('all', 'UTC', now, undefined).firstDate).toBe('2026-07-10');
    const rt = resolveShortcut('realtime', 'UTC', now, undefined);
    expect([rt.start, rt.end, rt.dateBased]).toEqual([now - 30 * 60_000, now + 1, false]);
  });

  it('resolves "today" in the site’s zone', () => {
    // 15:00 UTC on July 10 is already July 11 in Pacific/Kiritimati (+14).
    expect(resolveShortcut('day', 'Pacific/Kiritimati', now, undefined).firstDate).toBe('2026-07-11');
  });

  it('moves months with the day clamped', () => {
    expect(addMonths('2026-03-31', -1)).toBe('2026-02-28');
    expect(addMonths('2024-02-29', -12)).toBe('2023-02-28');
    expect(startOfWeek('2026-07-12')).toBe('2026-07-06');
  });

  it('picks the time grain as Plausible does', () => {
    expect(autoGrain(dateRange('UTC', '2026-07-10', '2026-07-10'))).toBe('hour');
    expect(autoGrain(dateRange('UTC', '2026-07-01', '2026-07-31'))).toBe('day');
    expect(autoGrain(dateRange('UTC', '2026-02-01', '2026-07-31'))).toBe('week');
    expect(autoGrain(dateRange('UTC', '2025-08-01', '2026-07-31'))).toBe('month');
  });
});

describe('time labels', () => {
  it('lists days, weeks clamped to the range, months', () => {
    const r = dateRange('UTC', '2026-07-08', '2026-07-21');
    expect(timeLabels(r, 'UTC', 'day')).toHaveLength(14);
    expect(timeLabels(r, 'UTC', 'week')).toEqual(['2026-07-08', '2026-07-13', '2026-07-20']);
    expect(timeLabels(dateRange('UTC', '2026-06-15', '2026-08-02'), 'UTC', 'month')).toEqual(['2026-06-01', '2026-07-01', '2026-08-01']);
  });

  it('lists local hours: 23 on the spring-forward day, half-hour zones at :30 UTC', () => {
    expect(timeLabels(dateRange('America/New_York', '2026-03-08', '2026-03-08'), 'America/New_York', 'hour')).toHaveLength(23);
    const india = timeLabels(dateRange('Asia/Kolkata', '2026-01-15', '2026-01-15'), 'Asia/Kolkata', 'hour');
    expect(india).toHaveLength(24);
    expect(india[0]).toBe('2026-01-15 00:00:00');
    expect(timeLabels(instantRange('UTC', at('2026-01-15T10:00:00Z'), at('2026-01-15T12:00:00Z')), 'UTC', 'hour')).toEqual([
      '2026-01-15 10:00:00',
      '2026-01-15 11:00:00',
    ]);
  });
});

describe('comparison ranges (as Plausible computes them)', () => {
  const now = at('2026-07-10T15:00:00Z');
  const dates = (r: { firstDate: string; lastDate: string }): [string, string] => [r.firstDate, r.lastDate];

  it('previous period: as many days as the range has up to today', () => {
    const month = dateRange('UTC', '2026-07-01', '2026-07-31');
    expect(dates(comparisonRange(month, 'UTC', now, 'previous_period', undefined, false))).toEqual(['2026-06-21', '2026-06-30']);
    const week = dateRange('UTC', '2026-06-01', '2026-06-07');
    expect(dates(comparisonRange(week, 'UTC', now, 'previous_period', undefined, false))).toEqual(['2026-05-25', '2026-05-31']);
  });

  it('year over year, with and without matching the weekday', () => {
    const r = dateRange('UTC', '2023-01-01', '2023-01-31');
    expect(dates(comparisonRange(r, 'UTC', now, 'year_over_year', undefined, false))).toEqual(['2022-01-01', '2022-01-31']);
    // Sunday 2023-01-01 is compared with Sunday 2022-01-02.
    expect(dates(comparisonRange(r, 'UTC', now, 'year_over_year', undefined, true))).toEqual(['2022-01-02', '2022-02-01']);
  });

  it('ranges of instants shift by their length', () => {
    const r = instantRange('UTC', at('2026-07-10T10:00:00Z'), at('2026-07-10T12:00:00Z'));
    const c = comparisonRange(r, 'UTC', now, 'previous_period', undefined, false);
    expect([c.start, c.end]).toEqual([at('2026-07-10T08:00:00Z'), at('2026-07-10T10:00:00Z')]);
  });
});

describe('rollup alignment', () => {
  it.each([
    ['UTC', undefined, 'day'],
    ['UTC', 'day', 'day'],
    ['UTC', 'hour', 'hour'],
    ['America/New_York', undefined, 'hour'],
    ['America/New_York', 'day', 'hour'],
    ['America/New_York', 'hour', 'hour'],
    ['Asia/Kolkata', undefined, undefined],
    ['Asia/Kolkata', 'day', undefined],
  ] as const)('%s by %s: %s', (tz, grain, expected) => {
    expect(rollupGrain(dateRange(tz, '2026-03-01', '2026-03-20'), tz, grain)).toBe(expected);
  });

  it('Europe/London is on UTC days in winter only', () => {
    expect(rollupGrain(dateRange('Europe/London', '2026-01-01', '2026-01-31'), 'Europe/London', 'day')).toBe('day');
    expect(rollupGrain(dateRange('Europe/London', '2026-03-20', '2026-04-10'), 'Europe/London', 'day')).toBe('hour');
  });
});
