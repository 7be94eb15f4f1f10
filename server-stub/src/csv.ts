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
    if (err instanceof CsvError) throw new AppError('SERVER_CSV_INVALID', err.message);
    throw err;
  }
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
