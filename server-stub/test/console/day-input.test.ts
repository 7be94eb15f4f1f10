import { describe, expect, it } from 'vitest';
import { dayText, parseDay, parseDayTime, parseTime } from '../../console/src/day-input.js';

describe('days and times typed in the console', () => {
  it('reads a day in the German, English and ISO patterns', () => {
    expect(parseDay('11.01.2026')).toBe('2026-01-11');
    expect(parseDay(' 1.2.2026 ')).toBe('2026-02-01');
    expect(parseDay('11/01/2026')).toBe('2026-01-11');
    expect(parseDay('2026-01-11')).toBe('2026-01-11');
  });

  it('refuses what is no calendar day', () => {
    for (const text of ['', '31.02.2027', '29.02.2027', '00.01.2026', '11.13.2026', '01/11', '2026/01/11', '11.01.26', 'morgen', '11.01.2026x']) {
      expect(parseDay(text), text).toBeNull();
    }
    expect(parseDay('29.02.2028')).toBe('2028-02-29');
  });

  it('reads 24-hour times and a day with a time', () => {
    expect(parseTime('2:00')).toBe('02:00');
    expect(parseTime('23:59')).toBe('23:59');
    for (const text of ['24:00', '12:60', '2 pm', '1200', '']) expect(parseTime(text), text).toBeNull();
    expect(parseDayTime('11.01.2026 14:30')).toBe('2026-01-11T14:30');
    expect(parseDayTime('11/01/2026  9:05')).toBe('2026-01-11T09:05');
    expect(parseDayTime('2026-01-11T14:30')).toBe('2026-01-11T14:30');
    expect(parseDayTime('11.01.2026')).toBeNull();
    expect(parseDayTime('31.02.2026 14:30')).toBeNull();
  });

  it('writes a day in the language\'s pattern, which reads back', () => {
    expect(dayText('2026-01-11', 'de')).toBe('11.01.2026');
    expect(dayText('2026-01-11', 'en')).toBe('11/01/2026');
    expect(parseDay(dayText('2026-01-11', 'de'))).toBe('2026-01-11');
  });
});
