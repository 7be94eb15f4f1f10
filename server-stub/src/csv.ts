import { AppError } from './errors.js';

/**
 * A strict RFC 4180 reader for the bulk-import files: UTF-8 (a BOM is allowed), `,` or `;` as
 * delimiter (detected from the header line, since spreadsheets in German locales write `;`),
 * double-quoted fields with `""` escapes, CRLF or LF line ends; blank lines are skipped. Structural
 * faults (bad encoding, an unterminated quote, no header, too many rows) throw SERVER_CSV_INVALID;
 * a row with the wrong number of cells is left for the caller's per-row report.
 */
export interface CsvRow {
  /** 1-based line number in the file where the row starts (the header is line 1). */
  readonly line: number;
  readonly cells: string[];
}

export interface CsvTable {
  readonly header: string[];
  readonly rows: CsvRow[];
}

const decoder = new TextDecoder('utf-8', { fatal: true });

export function decodeUtf8(input: Buffer | string): string {
  if (typeof input === 'string') return input;
  try {
    return decoder.decode(input);
  } catch {
    throw new AppError('SERVER_CSV_INVALID', 'The CSV file is not valid UTF-8.');
  }
}

export function parseCsv(input: Buffer | string, maxRows: number): CsvTable {
  let text = decodeUtf8(input);
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  const firstLineEnd = text.search(/\r?\n/);
  const firstLine = firstLineEnd === -1 ? text : text.slice(0, firstLineEnd);
  const delimiter = !firstLine.includes(',') && firstLine.includes(';') ? ';' : ',';

  const records: CsvRow[] = [];
  let cells: string[] = [];
  let field = '';
  let quoted = false;
  let fieldStarted = false;
  let line = 1;
  let recordLine = 1;
  const n = text.length;
  const endRecord = () => {
    cells.push(field);
    const blank = cells.length === 1 && cells[0] === '' && !fieldStarted;
    if (!blank) {
      records.push({ line: recordLine, cells });
      if (records.length > maxRows + 1) {
        throw new AppError('SERVER_CSV_INVALID', `The CSV file has more than ${maxRows} data rows.`);
      }
    }
    cells = [];
    field = '';
    fieldStarted = false;
  };
  for (let i = 0; i < n; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"') {
        if (text[i + 1] === '"') {
          field += '"';
          i++;
        } else {
          quoted = false;
        }
      } else {
        if (c === '\n') line++;
        field += c;
      }
      continue;
    }
    if (c === '"') {
      if (field !== '') throw new AppError('SERVER_CSV_INVALID', `Line ${line}: a quote inside an unquoted field.`);
      quoted = true;
      fieldStarted = true;
    } else if (c === delimiter) {
      cells.push(field);
      field = '';
      fieldStarted = true;
    } else if (c === '\n' || c === '\r') {
      if (c === '\r' && text[i + 1] === '\n') i++;
      endRecord();
      line++;
      recordLine = line;
    } else {
      field += c;
    }
  }
  if (quoted) throw new AppError('SERVER_CSV_INVALID', `Line ${recordLine}: unterminated quoted field.`);
  if (field !== '' || cells.length > 0 || fieldStarted) endRecord();
  const header = records.shift();
  if (!header) throw new AppError('SERVER_CSV_INVALID', 'The CSV file is empty (a header line is required).');
  const names = header.cells.map((h) => h.trim());
  const seen = new Set<string>();
  for (const name of names) {
    if (name === '') throw new AppError('SERVER_CSV_INVALID', 'The header has an empty column name.');
    if (seen.has(name)) throw new AppError('SERVER_CSV_INVALID', `The header names column "${name}" twice.`);
    seen.add(name);
  }
  return { header: names, rows: records };
}

export interface RowError {
  /** Line in the file. */
  readonly line: number;
  readonly code: string;
  readonly message: string;
}

export interface ImportReport {
  readonly rows: number;
  readonly imported: number;
  readonly failed: number;
  readonly partial: boolean;
  readonly errors: RowError[];
}

/** Maps a row's cells to the header's names; `undefined` when the cell count is wrong. */
export function rowObject(header: readonly string[], row: CsvRow): Record<string, string> | undefined {
  if (row.cells.length !== header.length) return undefined;
  const out: Record<string, string> = {};
  header.forEach((name, i) => {
    out[name] = row.cells[i]!.trim();
  });
  return out;
}
