import { describe, expect, it } from 'vitest';
import { CsvError, parseCsv, rowObject } from '../src/csv.js';

function refusal(input: Uint8Array | string, maxRows?: number): string {
  try {
    parseCsv(input, maxRows === undefined ? {} : { maxRows });
  } catch (err) {
    if (err instanceof CsvError) return err.message;
    throw err;
  }
  throw new Error('accepted');
}

describe('CSV reader', () => {
  it('reads quoted cells, doubled quotes, CRLF and LF, and skips blank lines', () => {
    const t = parseCsv('a,"b ""x"", y"\r\n1,2\n\n3,"multi\nline"\n');
    expect(t.header).toEqual(['a', 'b "x", y']);
    expect(t.rows).toEqual([
      { line: 2, cells: ['1', '2'] },
      { line: 4, cells: ['3', 'multi\nline'] },
    ]);
  });

  it('takes `;` when the header has no `,`, strips a BOM and decodes bytes as UTF-8', () => {
    const t = parseCsv(Buffer.from('\ufeffserial; name\nA1;Müller\n', 'utf8'));
    expect(t.header).toEqual(['serial', 'name']);
    expect(rowObject(t.header, t.rows[0]!)).toEqual({ serial: 'A1', name: 'Müller' });
  });

  it('leaves a row with the wrong cell count to the caller', () => {
    const t = parseCsv('a,b\n1\n1,2\n');
    expect(rowObject(t.header, t.rows[0]!)).toBeUndefined();
    expect(rowObject(t.header, t.rows[1]!)).toEqual({ a: '1', b: '2' });
  });

  it('refuses structural faults, naming the line', () => {
    expect(refusal(Buffer.from([0x61, 0x0a, 0xff, 0x0a]))).toBe('The CSV file is not valid UTF-8.');
    expect(refusal('a,b\n1,x"y"\n')).toBe('Line 2: a quote inside an unquoted field.');
    expect(refusal('a,b\n1,"open\n')).toBe('Line 2: unterminated quoted field.');
    expect(refusal('\n\n')).toMatch(/empty/);
    expect(refusal('a,,b\n')).toMatch(/empty column name/);
    expect(refusal('a,a\n')).toMatch(/"a" twice/);
    expect(refusal('a\n1\n2\n3\n', 2)).toBe('The CSV file has more than 2 data rows.');
    expect(parseCsv('a\n1\n2\n', { maxRows: 2 }).rows).toHaveLength(2);
  });
});
