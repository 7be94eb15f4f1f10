/**
 * The one CSV reader (`@router-fleet/protocol/csv`): the server's bulk imports and the simulator,
 * which reads the same fleet file it uploads, read CSV by the same rules.
 *
 * Strict RFC 4180: UTF-8 (a BOM is allowed), `,` or `;` as delimiter (detected from the header line,
 * since spreadsheets in German locales write `;`), double-quoted fields with `""` escapes, CRLF or
 * LF line ends; blank lines are skipped. Structural faults (bad encoding, a quote inside an unquoted
 * field, an unterminated quote, no header, an empty or repeated column name, too many rows) throw
 * {@link CsvError}; a row with the wrong number of cells is left for the caller's per-row report.
 */

/** A structural fault of a CSV file; the message names the line where it can. */
export class CsvError extends Error {
  override readonly name = 'CsvError';
}

/** One record of the file. */
export interface CsvRow {
  /** 1-based line number in the file where the row starts (the header is line 1). */
  readonly line: number;
  readonly cells: string[];
}

/** A parsed file: the trimmed column names and the data rows (cells as written). */
export interface CsvTable {
  readonly header: string[];
  readonly rows: CsvRow[];
}

/** Options of {@link parseCsv}. */
export interface CsvOptions {
  /** Most data rows accepted (more throw {@link CsvError}); default unlimited. */
  readonly maxRows?: number;
}

const decoder = new TextDecoder('utf-8', { fatal: true });

/** Decodes UTF-8 strictly (a string is returned as it is). Throws {@link CsvError}. */
export function decodeUtf8(input: Uint8Array | string): string {
  if (typeof input === 'string') return input;
  try {
    return decoder.decode(input);
  } catch {
    // The decoder's own message says nothing more than this one.
    throw new CsvError('The CSV file is not valid UTF-8.');
  }
}

/** Parses a CSV file with a header line. Throws {@link CsvError}. */
export function parseCsv(input: Uint8Array | string, options: CsvOptions = {}): CsvTable {
  const maxRows = options.maxRows ?? Number.POSITIVE_INFINITY;
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
      if (records.length > maxRows + 1) throw new CsvError(`The CSV file has more than ${maxRows} data rows.`);
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
      if (field !== '') throw new CsvError(`Line ${line}: a quote inside an unquoted field.`);
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
  if (quoted) throw new CsvError(`Line ${recordLine}: unterminated quoted field.`);
  if (field !== '' || cells.length > 0 || fieldStarted) endRecord();
  const header = records.shift();
  if (!header) throw new CsvError('The CSV file is empty (a header line is required).');
  const names = header.cells.map((h) => h.trim());
  const seen = new Set<string>();
  for (const name of names) {
    if (name === '') throw new CsvError('The header has an empty column name.');
    if (seen.has(name)) throw new CsvError(`The header names column "${name}" twice.`);
    seen.add(name);
  }
  return { header: names, rows: records };
}

/** Maps a row's trimmed cells to the header's names; `undefined` when the cell count is wrong. */
export function rowObject(header: readonly string[], row: CsvRow): Record<string, string> | undefined {
  if (row.cells.length !== header.length) return undefined;
  const out: Record<string, string> = {};
  header.forEach((name, i) => {
    out[name] = row.cells[i]!.trim();
  });
  return out;
}
