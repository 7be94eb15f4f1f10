import { CsvError, type CsvTable, parseCsv as parseCsvFile } from '@router-fleet/protocol/csv';
import { AppError } from './errors.js';

export { type CsvRow, type CsvTable, rowObject } from '@router-fleet/protocol/csv';

/**
 * The bulk-import files are read by protocol's one CSV reader (`@router-fleet/protocol/csv`: strict
 * RFC 4180, `,` or `;`, BOM allowed); its structural faults become SERVER_CSV_INVALID. A row with
 * the wrong number of cells is left for the caller's per-row report.
 */
export function parseCsv(input: Buffer | string, maxRows: number): CsvTable {
  try {
    return parseCsvFile(input, { maxRows });
  } catch (err) {
    if (err instanceof CsvError) throw new AppError('SERVER_CSV_INVALID', err.message, { details: { in: 'csv', field: '', rule: 'format' } });
    throw err;
  }
}

export interface RowError {
  /** Line in the file. */
  readonly line: number;
  readonly code: string;
  readonly message: string;
  /**
   * For SERVER_VALIDATION and SERVER_CSV_INVALID: which column breaks which rule, as the
   * `ValidationDetails` of a refused request with `in: csv` (`field` '' for the row as a whole).
   */
  readonly details?: RowErrorDetails;
}

export interface RowErrorDetails {
  readonly in: 'csv';
  readonly field: string;
  readonly rule: string;
  readonly limit?: number;
}

/** A row's entry in an import report: the error's code and message, and its field details if it has any. */
export function rowError(line: number, err: { readonly code: string; readonly message: string; readonly details?: unknown }): RowError {
  const d = err.details as { field?: unknown; rule?: unknown; limit?: unknown } | undefined;
  const details: RowErrorDetails | undefined =
    d && typeof d.field === 'string' && typeof d.rule === 'string'
      ? { in: 'csv', field: d.field, rule: d.rule, ...(typeof d.limit === 'number' ? { limit: d.limit } : {}) }
      : undefined;
  return { line, code: err.code, message: err.message, ...(details ? { details } : {}) };
}

export interface ImportReport {
  readonly rows: number;
  readonly imported: number;
  readonly failed: number;
  readonly partial: boolean;
  readonly errors: RowError[];
}
