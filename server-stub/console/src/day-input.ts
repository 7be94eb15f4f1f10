/**
 * Dates and times typed as text. The browser's own date and time inputs show the browser's locale
 * ("mm/dd/yyyy", AM/PM) whatever the console's language, so the console takes text in its language's
 * pattern instead: German dd.mm.yyyy, English dd/mm/yyyy, and ISO yyyy-mm-dd in either. The three
 * use different separators, so a text reads the same whichever language is shown. Times are 24-hour.
 */

/** `YYYY-MM-DD` of a real calendar day, or null. */
function isoDay(y: string, m: string, d: string): string | null {
  const year = Number(y);
  const month = Number(m);
  const day = Number(d);
  if (year < 1970 || year > 9999 || month < 1 || month > 12 || day < 1) return null;
  // Day 0 of the next month is the last day of this one.
  if (day > new Date(Date.UTC(year, month, 0)).getUTCDate()) return null;
  return `${String(year).padStart(4, '0')}-${String(month).padStart(2, '0')}-${String(day).padStart(2, '0')}`;
}

const DAY_PATTERNS: readonly [RegExp, (m: RegExpMatchArray) => string | null][] = [
  [/^(\d{1,2})\.(\d{1,2})\.(\d{4})$/, (m) => isoDay(m[3]!, m[2]!, m[1]!)],
  [/^(\d{1,2})\/(\d{1,2})\/(\d{4})$/, (m) => isoDay(m[3]!, m[2]!, m[1]!)],
  [/^(\d{4})-(\d{1,2})-(\d{1,2})$/, (m) => isoDay(m[1]!, m[2]!, m[3]!)],
];

/** A typed day (`11.01.2026`, `11/01/2026` or `2026-01-11`) as `YYYY-MM-DD`; null when it is none. */
export function parseDay(text: string): string | null {
  const s = text.trim();
  for (const [re, read] of DAY_PATTERNS) {
    const m = re.exec(s);
    if (m) return read(m);
  }
  return null;
}

/** A typed 24-hour time (`2:00`, `02:00`) as `HH:MM`; null when it is none. */
export function parseTime(text: string): string | null {
  const m = /^(\d{1,2}):(\d{2})$/.exec(text.trim());
  if (!m) return null;
  const h = Number(m[1]);
  const min = Number(m[2]);
  if (h > 23 || min > 59) return null;
  return `${String(h).padStart(2, '0')}:${String(min).padStart(2, '0')}`;
}

/** A typed day and time (`11.01.2026 14:30`, ISO with a `T` too) as `YYYY-MM-DDTHH:MM`; null when it is none. */
export function parseDayTime(text: string): string | null {
  const m = /^(\S+?)(?:\s+|T)(\d{1,2}:\d{2})$/.exec(text.trim());
  if (!m) return null;
  const day = parseDay(m[1]!);
  const time = parseTime(m[2]!);
  return day && time ? `${day}T${time}` : null;
}

/** `YYYY-MM-DD` as the language writes it in a field (the pattern `parseDay` reads back). */
export function dayText(day: string, language: 'en' | 'de'): string {
  const [y, m, d] = day.split('-');
  return language === 'de' ? `${d}.${m}.${y}` : `${d}/${m}/${y}`;
}
