import { CsvError, parseCsv } from '@router-fleet/protocol/csv';
import { SimError } from './errors.js';

/**
 * A fleet CSV's rows as objects keyed by the header, cells trimmed, missing cells `''`. Read by
 * protocol's one CSV reader, whose rules the server applies to the same file when the simulator
 * uploads it. A structurally broken file throws SIM_FILE_UNREADABLE.
 */
export function csvObjects(text: string, file = 'the fleet CSV'): Array<Record<string, string>> {
  let table;
  try {
    table = parseCsv(text);
  } catch (err) {
    if (err instanceof CsvError) throw new SimError('SIM_FILE_UNREADABLE', `cannot read ${file}: ${err.message}`);
    throw err;
  }
  const { header, rows } = table;
  return rows.map((r) => Object.fromEntries(header.map((h, i) => [h, (r.cells[i] ?? '').trim()])));
}
