import type { TimeGrain } from './dimensions.ts';

/**
 * Time-zone arithmetic for date ranges and time buckets. Ranges are resolved in the site's time
 * zone into UTC instants `[start, end)`; ClickHouse buckets rows with `toTimeZone(ts, {tz})`, and
 * the labels computed here must match the text it returns (`YYYY-MM-DD`, `YYYY-MM-DD hh:00:00`).
 */

const MINUTE = 60_000;
const HOUR = 3_600_000;
const DAY = 86_400_000;

const formatters = new Map<string, Intl.DateTimeFormat>();

function formatter(tz: string): Intl.DateTimeFormat {
  let f = formatters.get(tz);
  if (f === undefined) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone: tz,
      hourCycle: 'h23',
      year: 'numeric',
      month: '2-digit',
      day: '2-digit',
      hour: '2-digit',
      minute: '2-digit',
      second: '2-digit',
    });
    formatters.set(tz, f);
  }
  return f;
}

interface WallTime {
  year: number;
  month: number;
  day: number;
  hour: number;
  minute: number;
  second: number;
}

function wallTime(tz: string, instant: number): WallTime {
  const parts: Record<string, number> = {};
  for (const p of formatter(tz).formatToParts(new Date(instant))) {
    if (p.type !== 'literal') parts[p.type] = Number(p.value);
  }
  return {
    year: parts['year'] ?? 1970,
    month: parts['month'] ?? 1,
    day: parts['day'] ?? 1,
    hour: parts['hour'] ?? 0,
    minute: parts['minute'] ?? 0,
    second: parts['second'] ?? 0,
  };
}

/** The zone's UTC offset at `instant`, in milliseconds (whole minutes). */
export function offsetAt(tz: string, instant: number): number {
  const w = wallTime(tz, instant);
  const asUtc = Date.UTC(w.year, w.month - 1, w.day, w.hour, w.minute, w.second);
  const flooredInstant = Math.floor(instant / 1000) * 1000;
  return Math.round((asUtc - flooredInstant) / MINUTE) * MINUTE;
}

/**
 * The instant a wall-clock time in `tz` names. In a gap (spring forward) the time is read with
 * the offset before the gap (02:30 becomes 03:30); in an overlap (fall back) the earlier instant
 * is taken.
 */
export function zonedToUtc(tz: string, year: number, month: number, day: number, hour = 0, minute = 0, second = 0, ms = 0): number {
  const wall = Date.UTC(year, month - 1, day, hour, minute, second, ms);
  const first = wall - offsetAt(tz, wall);
  const second_ = wall - offsetAt(tz, first);
  if (first === second_) return first;
  // Two candidates: keep one whose wall time reads back as asked, the earlier if both do.
  const candidates = [first, second_].filter((t) => t + offsetAt(tz, t) === wall).sort((a, b) => a - b);
  // In a gap neither does: move forward by the gap, as Temporal's "compatible" does.
  return candidates[0] ?? Math.max(first, second_);
}

/**
 * The instants a query may read, `[start, end)`: from the Unix epoch (ClickHouse's Date and
 * DateTime begin there, and `toDate` of an earlier instant wraps to 2149) to the first days of
 * 2100 (Date and DateTime end in 2149 and 2106). Dates up to 2099-12-31 fit in every zone.
 */
export const SUPPORTED_SPAN = { start: 0, end: Date.UTC(2100, 0, 2), lastDate: '2099-12-31' } as const;

/** A calendar date as `YYYY-MM-DD`. */
export type IsoDate = string;

const isoDatePattern = /^(\d{4})-(\d{2})-(\d{2})$/;

/**
 * Parses `YYYY-MM-DD` into a real calendar date (rejects 2026-02-30; years 0100 to 9999), or
 * undefined. Any such date takes part in date arithmetic; which dates a query may name is
 * {@link SUPPORTED_SPAN}'s business.
 */
export function parseIsoDate(text: string): { year: number; month: number; day: number } | undefined {
  const m = isoDatePattern.exec(text);
  if (m === null) return undefined;
  const year = Number(m[1]);
  const month = Number(m[2]);
  const day = Number(m[3]);
  // Date.UTC reads years 0-99 as 1900-1999.
  if (year < 100) return undefined;
  const d = new Date(Date.UTC(year, month - 1, day));
  if (d.getUTCFullYear() !== year || d.getUTCMonth() !== month - 1 || d.getUTCDate() !== day) return undefined;
  return { year, month, day };
}

function dayNumber(date: IsoDate): number {
  const p = parseIsoDate(date);
  if (p === undefined) throw new Error(`bad date ${date}`);
  return Date.UTC(p.year, p.month - 1, p.day) / DAY;
}

function fromDayNumber(n: number): IsoDate {
  return new Date(n * DAY).toISOString().slice(0, 10);
}

/** `date` plus `days` (negative to go back). */
export function addDays(date: IsoDate, days: number): IsoDate {
  return fromDayNumber(dayNumber(date) + days);
}

/** Days from `a` to `b` (b − a). */
export function daysBetween(a: IsoDate, b: IsoDate): number {
  return dayNumber(b) - dayNumber(a);
}

/** `date` moved by whole months, the day clamped to the target month's length (Mar 31 − 1 month = Feb 28). */
export function addMonths(date: IsoDate, months: number): IsoDate {
  const p = parseIsoDate(date);
  if (p === undefined) throw new Error(`bad date ${date}`);
  const index = p.year * 12 + (p.month - 1) + months;
  const year = Math.floor(index / 12);
  const month = index - year * 12;
  const last = new Date(Date.UTC(year, month + 1, 0)).getUTCDate();
  return fromDayNumber(Date.UTC(year, month, Math.min(p.day, last)) / DAY);
}

export function startOfMonth(date: IsoDate): IsoDate {
  return `${date.slice(0, 8)}01`;
}

export function endOfMonth(date: IsoDate): IsoDate {
  return addDays(addMonths(startOfMonth(date), 1), -1);
}

/** Monday of `date`'s ISO week. */
export function startOfWeek(date: IsoDate): IsoDate {
  const n = dayNumber(date);
  // Day 0 (1970-01-01) was a Thursday: Monday-based weekday = (n + 3) mod 7.
  return fromDayNumber(n - ((((n + 3) % 7) + 7) % 7));
}

/** ISO weekday, 1 = Monday … 7 = Sunday. */
export function weekday(date: IsoDate): number {
  const n = dayNumber(date);
  return ((((n + 3) % 7) + 7) % 7) + 1;
}

/** The site-local date of an instant. */
export function localDate(tz: string, instant: number): IsoDate {
  const w = wallTime(tz, instant);
  return `${String(w.year).padStart(4, '0')}-${String(w.month).padStart(2, '0')}-${String(w.day).padStart(2, '0')}`;
}

const dayStarts = new Map<string, number>();

/** The instant a site-local date begins. */
export function startOfLocalDay(tz: string, date: IsoDate): number {
  const key = `${tz}\n${date}`;
  const cached = dayStarts.get(key);
  if (cached !== undefined) return cached;
  const p = parseIsoDate(date);
  if (p === undefined) throw new Error(`bad date ${date}`);
  const start = zonedToUtc(tz, p.year, p.month, p.day);
  // Bounded: planning a long range looks up every day in it, many queries share the days.
  if (dayStarts.size >= 100_000) dayStarts.clear();
  dayStarts.set(key, start);
  return start;
}

/** A resolved range: UTC instants `[start, end)` and the site-local dates it covers. */
export interface ResolvedRange {
  start: number;
  end: number;
  /** Site-local date of `start`. */
  firstDate: IsoDate;
  /** Site-local date of the last instant in the range. */
  lastDate: IsoDate;
  /** True for ranges of whole site-local days (shortcuts and `[date, date]`). */
  dateBased: boolean;
}

/** A range of whole site-local days `[first, last]`. */
export function dateRange(tz: string, first: IsoDate, last: IsoDate): ResolvedRange {
  return { start: startOfLocalDay(tz, first), end: startOfLocalDay(tz, addDays(last, 1)), firstDate: first, lastDate: last, dateBased: true };
}

/** A range between two instants, `[start, end)`. */
export function instantRange(tz: string, start: number, end: number): ResolvedRange {
  return { start, end, firstDate: localDate(tz, start), lastDate: localDate(tz, end - 1), dateBased: false };
}

export const dateRangeShortcuts = ['day', '7d', '28d', '30d', 'month', '6mo', '12mo', 'year', 'all', 'realtime'] as const;
export type DateRangeShortcut = (typeof dateRangeShortcuts)[number];

/** How long `realtime` looks back. */
export const REALTIME_MS = 30 * MINUTE;

/**
 * Resolves a shortcut against `now` in the site's zone. `7d`/`28d`/`30d` are that many days
 * ending today; `month`, `6mo`, `12mo` and `year` run to the end of the current month or year
 * (as Plausible's do); `all` starts at `statsStart` (the site's first day with data).
 */
export function resolveShortcut(shortcut: DateRangeShortcut, tz: string, now: number, statsStart: IsoDate | undefined): ResolvedRange {
  const today = localDate(tz, now);
  switch (shortcut) {
    case 'day':
      return dateRange(tz, today, today);
    case '7d':
      return dateRange(tz, addDays(today, -6), today);
    case '28d':
      return dateRange(tz, addDays(today, -27), today);
    case '30d':
      return dateRange(tz, addDays(today, -29), today);
    case 'month':
      return dateRange(tz, startOfMonth(today), endOfMonth(today));
    case '6mo':
      return dateRange(tz, addMonths(startOfMonth(today), -5), endOfMonth(today));
    case '12mo':
      return dateRange(tz, addMonths(startOfMonth(today), -11), endOfMonth(today));
    case 'year':
      return dateRange(tz, `${today.slice(0, 4)}-01-01`, `${today.slice(0, 4)}-12-31`);
    case 'all': {
      const first = statsStart !== undefined && statsStart < today ? statsStart : today;
      return dateRange(tz, first, today);
    }
    case 'realtime':
      // `now` itself is inside: an event stamped this millisecond counts.
      return instantRange(tz, now - REALTIME_MS, now + 1);
  }
}

const dateTimePattern = /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?(Z|[+-]\d{2}:?\d{2})?$/;

/** An ISO 8601 date-time as an instant; without an offset it is read in `tz`. */
export function parseDateTime(text: string, tz: string): { instant: number; fractional: boolean } | undefined {
  const m = dateTimePattern.exec(text);
  if (m === null) return undefined;
  const date = parseIsoDate(`${m[1]}-${m[2]}-${m[3]}`);
  if (date === undefined) return undefined;
  const hour = Number(m[4]);
  const minute = Number(m[5]);
  const second = m[6] === undefined ? 0 : Number(m[6]);
  if (hour > 23 || minute > 59 || second > 59) return undefined;
  const ms = m[7] === undefined ? 0 : Math.floor(Number(`0.${m[7]}`) * 1000);
  const zone = m[8];
  let instant: number;
  if (zone === undefined) {
    instant = zonedToUtc(tz, date.year, date.month, date.day, hour, minute, second, ms);
  } else {
    const wall = Date.UTC(date.year, date.month - 1, date.day, hour, minute, second, ms);
    if (zone === 'Z') instant = wall;
    else {
      const sign = zone.startsWith('-') ? -1 : 1;
      const digits = zone.slice(1).replace(':', '');
      const offH = Number(digits.slice(0, 2));
      const offM = Number(digits.slice(2, 4));
      if (offH > 23 || offM > 59) return undefined;
      instant = wall - sign * (offH * HOUR + offM * MINUTE);
    }
  }
  return { instant, fractional: m[7] !== undefined };
}

/** The grain `time` stands for over a range, as Plausible picks it. */
export function autoGrain(range: ResolvedRange): TimeGrain {
  const length = range.end - range.start;
  if (length <= 48 * HOUR) return 'hour';
  if (length <= 40 * DAY) return 'day';
  if (length <= 52 * 7 * DAY) return 'week';
  return 'month';
}

/** Longest range an hourly breakdown may cover (its labels are listed one by one). */
export const MAX_HOURLY_RANGE_MS = 400 * DAY;

function formatHour(tz: string, instant: number): string {
  const w = wallTime(tz, instant);
  const pad = (n: number): string => String(n).padStart(2, '0');
  return `${String(w.year).padStart(4, '0')}-${pad(w.month)}-${pad(w.day)} ${pad(w.hour)}:00:00`;
}

/**
 * Every bucket label of `grain` in `range`, in order: the values a time dimension can take.
 * Weeks start on Monday but never before the range's first day (as Plausible labels them).
 */
export function timeLabels(range: ResolvedRange, tz: string, grain: TimeGrain): string[] {
  if (grain === 'hour') {
    // Quarter-hour steps catch zones whose hours start at :30 or :45 UTC; a repeated hour (when
    // clocks fall back) is one bucket.
    const seen = new Set<string>();
    for (let t = range.start; t < range.end; t += 15 * MINUTE) seen.add(formatHour(tz, t));
    return [...seen];
  }
  const out: string[] = [];
  const days = daysBetween(range.firstDate, range.lastDate);
  for (let i = 0; i <= days; i++) {
    const date = addDays(range.firstDate, i);
    const label =
      grain === 'day' ? date : grain === 'week' ? maxDate(startOfWeek(date), range.firstDate) : startOfMonth(date);
    if (out.at(-1) !== label) out.push(label);
  }
  return out;
}

function maxDate(a: IsoDate, b: IsoDate): IsoDate {
  return a > b ? a : b;
}

/**
 * The instants at which site-local days begin inside `[start, end]`, plus both ends: where bucket
 * boundaries fall. Used to check a range against rollup buckets.
 */
export function dayBoundaries(range: ResolvedRange, tz: string): number[] {
  const out = [range.start, range.end];
  const days = daysBetween(range.firstDate, range.lastDate);
  for (let i = 1; i <= days; i++) out.push(startOfLocalDay(tz, addDays(range.firstDate, i)));
  return out;
}

/** `instant` as ISO 8601 in the site's zone, with its offset (`Z` for UTC). */
export function isoInZone(tz: string, instant: number): string {
  const offset = offsetAt(tz, instant);
  const w = new Date(instant + offset);
  const text = w.toISOString().slice(0, 19);
  if (offset === 0) return `${text}Z`;
  const sign = offset < 0 ? '-' : '+';
  const abs = Math.abs(offset) / MINUTE;
  return `${text}${sign}${String(Math.floor(abs / 60)).padStart(2, '0')}:${String(abs % 60).padStart(2, '0')}`;
}

export const comparisonModes = ['previous_period', 'year_over_year', 'custom'] as const;
export type ComparisonMode = (typeof comparisonModes)[number];

/**
 * The range a comparison reads, as Plausible computes it: the previous period has as many days as
 * the main range up to today; year over year is the same dates a year earlier (up to today's date
 * a year ago); custom is the given dates. With `matchDayOfWeek` the comparison starts on the
 * next day with the main range's first weekday. Ranges of instants shift by their length, or
 * by a calendar year.
 */
export function comparisonRange(
  main: ResolvedRange,
  tz: string,
  now: number,
  mode: ComparisonMode,
  custom: ResolvedRange | undefined,
  matchDayOfWeek: boolean,
): ResolvedRange {
  if (mode === 'custom') {
    if (custom === undefined) throw new Error('custom comparison without a range');
    return custom;
  }
  if (!main.dateBased) {
    if (mode === 'previous_period') {
      const length = main.end - main.start;
      return instantRange(tz, main.start - length, main.start);
    }
    const shift = (t: number): number => {
      const d = new Date(t);
      d.setUTCFullYear(d.getUTCFullYear() - 1);
      return d.getTime();
    };
    return instantRange(tz, shift(main.start), shift(main.end));
  }
  const today = localDate(tz, now);
  const last = main.lastDate < today ? main.lastDate : today;
  const effectiveLast = last < main.firstDate ? main.firstDate : last;
  let first: IsoDate;
  let compLast: IsoDate;
  if (mode === 'previous_period') {
    const n = daysBetween(main.firstDate, effectiveLast) + 1;
    first = addDays(main.firstDate, -n);
    compLast = addDays(effectiveLast, -n);
  } else {
    first = addMonths(main.firstDate, -12);
    compLast = addMonths(effectiveLast, -12);
  }
  if (matchDayOfWeek) {
    const shifted = nearestWeekday(first, weekday(main.firstDate), main.firstDate);
    const by = daysBetween(first, shifted);
    first = shifted;
    compLast = addDays(compLast, by);
  }
  return dateRange(tz, first, compLast);
}

function nearestWeekday(date: IsoDate, target: number, reject: IsoDate): IsoDate {
  const current = weekday(date);
  if (current === target) return date;
  const forward = (target - current + 7) % 7;
  // The next such weekday, unless that is the main range's own first day; then the previous one.
  const candidates = [addDays(date, forward), addDays(date, forward - 7)].filter((d) => d !== reject);
  return candidates[0] ?? date;
}
