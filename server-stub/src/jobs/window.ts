import { DAY, MINUTE } from '../clock.js';

export const WEEKDAYS = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'] as const;
export type Weekday = (typeof WEEKDAYS)[number];

/** A maintenance window: once (absolute) or weekly (UTC only in this version). */
export type MaintenanceWindow =
  | { start: string; end: string }
  | { days: Weekday[]; startTime: string; endTime: string; timeZone: 'UTC' };

export interface WindowSpan {
  notBefore: number;
  notAfter: number;
}

const HHMM = /^([01]\d|2[0-3]):([0-5]\d)$/;

function minutes(hhmm: string): number {
  const m = HHMM.exec(hhmm);
  if (!m) throw new Error(`not a time of day (HH:MM): ${hhmm}`);
  return Number(m[1]) * 60 + Number(m[2]);
}

/** Throws an Error with a message for the user when the window is malformed. */
export function validateWindow(w: MaintenanceWindow): void {
  if ('start' in w) {
    const s = Date.parse(w.start);
    const e = Date.parse(w.end);
    if (Number.isNaN(s) || Number.isNaN(e)) throw new Error('window start and end must be ISO 8601 date-times');
    if (e <= s) throw new Error('window end must be after its start');
    return;
  }
  if (w.days.length === 0) throw new Error('a weekly window needs at least one day');
  if (minutes(w.startTime) === minutes(w.endTime)) throw new Error('a weekly window needs startTime ≠ endTime');
}

/**
 * The window a device should install in, as seen at `now`: the current occurrence when `now` is
 * inside one, otherwise the next. Undefined when an absolute window has passed. A weekly window
 * whose endTime is before its startTime runs over midnight into the next day.
 */
export function nextWindow(w: MaintenanceWindow, now: number): WindowSpan | undefined {
  if ('start' in w) {
    const span = { notBefore: Date.parse(w.start), notAfter: Date.parse(w.end) };
    return span.notAfter > now ? span : undefined;
  }
  const start = minutes(w.startTime) * MINUTE;
  let length = minutes(w.endTime) * MINUTE - start;
  if (length <= 0) length += DAY;
  const days = new Set(w.days);
  const today = Math.floor(now / DAY) * DAY;
  // Yesterday's occurrence may still be running (over midnight); then the next 7 days.
  for (let i = -1; i <= 7; i++) {
    const day = today + i * DAY;
    const weekday = WEEKDAYS[new Date(day).getUTCDay()]!;
    if (!days.has(weekday)) continue;
    const span = { notBefore: day + start, notAfter: day + start + length };
    if (span.notAfter > now) return span;
  }
  return undefined;
}
