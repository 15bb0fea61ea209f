import { describe, expect, it } from 'vitest';
import { canonicalTimeZone, isTimeZone } from './time-zone.ts';

describe('time-zone rule', () => {
  it.each([
    ['UTC', true],
    ['Etc/UTC', true],
    ['Europe/Lisbon', true],
    ['America/New_York', true],
    ['America/Argentina/Buenos_Aires', true],
    ['Asia/Kolkata', true],
    ['Asia/Calcutta', true],
    ['US/Eastern', true],
    ['Etc/GMT+5', true],
    ['Etc/GMT-14', true],
    ['europe/lisbon', true],
    ['Nope/Zone', false],
    ['Mars/Olympus', false],
    ['+01:00', false],
    ['GMT+5', false],
    ["UTC'; DROP TABLE events --", false],
    ['Europe/Lisbon; DROP', false],
    ['utc/', false],
    ['', false],
    [`Europe/${'A'.repeat(70)}`, false],
    ['America/Coyhaique', false],
  ])('%s is a site time zone: %s', (tz, ok) => {
    expect(isTimeZone(tz)).toBe(ok);
  });

  it('gives both engines one spelling', () => {
    expect(canonicalTimeZone('europe/lisbon')).toBe('Europe/Lisbon');
    expect(canonicalTimeZone('Etc/GMT+5')).toBe('Etc/GMT+5');
    expect(canonicalTimeZone('utc')).toBe('UTC');
  });
});
